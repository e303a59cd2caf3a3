//! Envelope encryption of what the control plane keeps secret in its store (the built-in
//! CA's keys, Vault credentials): each value is encrypted under a fresh data key, and the
//! data key under the key-encryption key (KEK) every replica reads from a file or a
//! systemd credential. The KEK never enters the database, so a copy of the database alone
//! reveals nothing, and one KEK change re-wraps data keys without touching payloads.
//!
//! A sealed value: `SGS1`, the KEK's 8-byte id, the wrapped data key (nonce + AES-256-GCM
//! of 32 bytes), then the payload (nonce + AES-256-GCM). The payload's additional data
//! binds it to what it is (e.g. `ca <trust domain>`), so a value cannot be moved to another
//! place or trust domain and still open.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

const MAGIC: &[u8; 4] = b"SGS1";
const KEY_LEN: usize = 32;
const ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const HEADER_LEN: usize = MAGIC.len() + ID_LEN + WRAPPED_LEN;

/// The systemd credential a replica reads its KEK from when no file is named
/// (`LoadCredential=signet-ca-kek:/etc/signet/ca.kek`, or `LoadCredentialEncrypted=`).
pub const CREDENTIAL: &str = "signet-ca-kek";

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "sealed with another key-encryption key (id {sealed}; this replica's is {ours}): give \
         every replica the same --ca-kek-file"
    )]
    WrongKey { sealed: String, ours: String },
    #[error("the sealed value is damaged or was altered")]
    Damaged,
    #[error("no randomness: {0}")]
    Random(String),
}

/// A key-encryption key.
pub struct Kek {
    key: LessSafeKey,
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id()).finish()
    }
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"signet kek id\0".as_slice(), bytes].concat(),
        );
        let mut id = [0; ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..ID_LEN]);
        Self {
            key: aead_key(bytes),
            id,
        }
    }

    /// Reads a KEK file: 32 raw bytes, or 64 hex digits (`openssl rand -hex 32`). Refused
    /// when group or others may read it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("`{shown}`: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "`{shown}` may be read by group or others: chmod 600 it"
            ));
        }
        let raw = std::fs::read(path).map_err(|e| format!("`{shown}`: {e}"))?;
        Self::parse(&raw).map_err(|e| format!("`{shown}`: {e}"))
    }

    fn parse(raw: &[u8]) -> Result<Self, String> {
        if let Ok(bytes) = <[u8; KEY_LEN]>::try_from(raw) {
            return Ok(Self::from_bytes(&bytes));
        }
        let text = std::str::from_utf8(raw)
            .map(str::trim)
            .map_err(|_| "not a key: expected 32 bytes or 64 hex digits".to_owned())?;
        let bytes =
            hex(text).ok_or_else(|| "not a key: expected 32 bytes or 64 hex digits".to_owned())?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Makes a new KEK file (0600) holding 64 hex digits; refuses to replace one.
    pub fn generate(path: &Path) -> Result<Self, String> {
        let mut bytes = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "no randomness for a key-encryption key".to_owned())?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("creating `{}`: {e}", path.display()))?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("writing `{}`: {e}", path.display()))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The KEK's id as operators see it (hex): which key sealed a value, never the key.
    pub fn id(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts `plaintext` under a fresh data key, bound to `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let rng = SystemRandom::new();
        let mut dek = [0; KEY_LEN];
        rng.fill(&mut dek)
            .map_err(|_| SealError::Random("data key".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        encrypt_into(&self.key, &rng, &self.wrap_aad(), &dek, &mut out)?;
        encrypt_into(
            &aead_key(&dek),
            &rng,
            context.as_bytes(),
            plaintext,
            &mut out,
        )?;
        Ok(out)
    }

    /// Decrypts what [`Kek::seal`] made with this KEK and the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || &sealed[..MAGIC.len()] != MAGIC {
            return Err(SealError::Damaged);
        }
        let id = &sealed[MAGIC.len()..MAGIC.len() + ID_LEN];
        if id != self.id {
            return Err(SealError::WrongKey {
                sealed: id.iter().map(|b| format!("{b:02x}")).collect(),
                ours: self.id(),
            });
        }
        let wrapped = &sealed[MAGIC.len() + ID_LEN..HEADER_LEN];
        let dek = decrypt(&self.key, &self.wrap_aad(), wrapped)?;
        let dek: [u8; KEY_LEN] = dek.try_into().map_err(|_| SealError::Damaged)?;
        decrypt(&aead_key(&dek), context.as_bytes(), &sealed[HEADER_LEN..])
    }

    fn wrap_aad(&self) -> Vec<u8> {
        [b"signet data key\0".as_slice(), &self.id].concat()
    }
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // 32 bytes is always a valid AES-256 key.
    #[expect(clippy::expect_used, reason = "the length is fixed by the type")]
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

/// Appends nonce, ciphertext and tag.
fn encrypt_into(
    key: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    let mut nonce = [0; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| SealError::Random("nonce".into()))?;
    let mut data = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut data,
    )
    .map_err(|_| SealError::Damaged)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&data);
    Ok(())
}

fn decrypt(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let (nonce, data) = sealed
        .split_at_checked(NONCE_LEN)
        .ok_or(SealError::Damaged)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut data)
        .map_err(|_| SealError::Damaged)?;
    Ok(plain.to_vec())
}

fn hex(text: &str) -> Option<[u8; KEY_LEN]> {
    if text.len() != KEY_LEN * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; KEY_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(seed: u8) -> Kek {
        Kek::from_bytes(&[seed; KEY_LEN])
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_context_only() {
        let k = kek(1);
        let sealed = k.seal("ca a.test", b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(
            !sealed.windows(b"PRIVATE".len()).any(|w| w == b"PRIVATE"),
            "the payload is not in the clear"
        );
        assert_eq!(
            k.open("ca a.test", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        // Two seals of one value differ (fresh data key and nonces).
        assert_ne!(
            sealed,
            k.seal("ca a.test", b"-----BEGIN PRIVATE KEY-----").unwrap()
        );
        assert_eq!(k.open("ca b.test", &sealed), Err(SealError::Damaged));
        assert!(matches!(
            kek(2).open("ca a.test", &sealed),
            Err(SealError::WrongKey { .. })
        ));
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let k = kek(3);
        let sealed = k.seal("ctx", b"secret").unwrap();
        for i in MAGIC.len() + ID_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(k.open("ctx", &bad), Err(SealError::Damaged), "byte {i}");
        }
        assert_eq!(k.open("ctx", &sealed[..20]), Err(SealError::Damaged));
        assert_eq!(k.open("ctx", b""), Err(SealError::Damaged));
    }

    #[test]
    fn key_files_are_raw_or_hex_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made.kek");
        let generated = Kek::generate(&made).unwrap();
        assert_eq!(Kek::load(&made).unwrap().id(), generated.id());
        assert!(Kek::generate(&made).is_err(), "never replaces a key");

        let raw = dir.path().join("raw.kek");
        std::fs::write(&raw, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Kek::load(&raw).unwrap().id(), kek(7).id());

        std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Kek::load(&raw).unwrap_err().contains("chmod 600"));

        let short = dir.path().join("short.kek");
        std::fs::write(&short, "abcd\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Kek::load(&short).unwrap_err().contains("64 hex digits"));
        assert!(Kek::load(&dir.path().join("absent")).is_err());
    }
}
