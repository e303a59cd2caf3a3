//! One-time join tokens: how a new proxy proves which identity it may ask for.
//!
//! A token reads `<id>.<secret>` (16 and 64 hex digits). The store keeps the id in the clear
//! (to find the record) and only the SHA-256 of the secret; redeeming compares hashes in
//! constant time, then marks the token used with a compare-and-set so that two racing
//! redemptions cannot both succeed. Unknown ids and wrong secrets give the same error.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};
use signet_spiffe::SpiffeId;
use subtle::ConstantTimeEq as _;

use crate::authority::{BoxFuture, Clock, SystemClock};

const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A stored join token: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public half of the token.
    pub id: String,
    /// SHA-256 of the secret half.
    pub secret_sha256: [u8; 32],
    /// The identity the token lets its holder ask for.
    pub spiffe_id: SpiffeId,
    /// When it was made.
    pub created_at: SystemTime,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// When it was redeemed, if it was.
    pub used_at: Option<SystemTime>,
}

/// A storage failure (the SQLite store reports its errors here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("join token store: {0}")]
pub struct TokenStoreError(pub String);

/// Where join tokens live.
///
/// Contract: `insert` fails if the id exists; `mark_used` sets `used_at` only if it is unset
/// and reports whether it did, atomically with respect to concurrent calls.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Stores a new token record.
    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenStoreError>>;
    /// Looks a record up by id.
    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRecord>, TokenStoreError>>;
    /// Marks the token used at `at` unless it already was; `Ok(true)` if this call did it.
    fn mark_used<'a>(
        &'a self,
        id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>>;
}

/// Tokens in memory: for tests and single-process use.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    records: Mutex<HashMap<String, TokenRecord>>,
}

impl MemoryTokenStore {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, TokenRecord>) -> T,
    ) -> Result<T, TokenStoreError> {
        let mut guard = self
            .records
            .lock()
            .map_err(|_| TokenStoreError("lock poisoned".to_owned()))?;
        Ok(f(&mut guard))
    }
}

impl TokenStore for MemoryTokenStore {
    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        let result = self.with(|m| {
            if m.contains_key(&record.id) {
                return Err(TokenStoreError(format!("token id `{}` exists", record.id)));
            }
            m.insert(record.id.clone(), record);
            Ok(())
        });
        Box::pin(async move { result? })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRecord>, TokenStoreError>> {
        let result = self.with(|m| m.get(id).cloned());
        Box::pin(async move { result })
    }

    fn mark_used<'a>(
        &'a self,
        id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        let result = self.with(|m| match m.get_mut(id) {
            Some(r) if r.used_at.is_none() => {
                r.used_at = Some(at);
                true
            }
            _ => false,
        });
        Box::pin(async move { result })
    }
}

/// Why a token was not redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("join token is malformed (expected `<16 hex>.<64 hex>`)")]
    Malformed,
    #[error("join token is not valid")]
    Invalid,
    #[error("join token has expired")]
    Expired,
    #[error("join token was already used")]
    AlreadyUsed,
    #[error("join token TTL must be more than zero")]
    ZeroTtl,
    #[error("no secure random source")]
    Random,
    #[error(transparent)]
    Store(#[from] TokenStoreError),
}

/// A freshly made token: the secret text is shown once, to whoever asked for it.
pub struct NewToken {
    /// The whole token, `<id>.<secret>`, to give to the workload.
    pub token: String,
    /// What was stored.
    pub record: TokenRecord,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// Creates and redeems join tokens over a store.
#[derive(Debug, Clone)]
pub struct JoinTokens<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: TokenStore> JoinTokens<S> {
    /// Tokens kept in `store`, timed by the system clock.
    pub fn new(store: S) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    /// Tokens kept in `store`, timed by `clock`.
    pub fn with_clock(store: S, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Makes a single-use token for `spiffe_id`, valid for `ttl`.
    pub async fn create(&self, spiffe_id: SpiffeId, ttl: Duration) -> Result<NewToken, TokenError> {
        if ttl.is_zero() {
            return Err(TokenError::ZeroTtl);
        }
        let rng = SystemRandom::new();
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rng.fill(&mut id).map_err(|_| TokenError::Random)?;
        rng.fill(&mut secret).map_err(|_| TokenError::Random)?;
        let (id, secret) = (hex(&id), hex(&secret));
        let now = self.clock.now();
        let record = TokenRecord {
            secret_sha256: sha256(secret.as_bytes()),
            id: id.clone(),
            spiffe_id,
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        };
        self.store.insert(record.clone()).await?;
        Ok(NewToken {
            token: format!("{id}.{secret}"),
            record,
        })
    }

    /// The identity `token` would grant if redeemed now, without redeeming it: lets a caller
    /// check the rest of a request (a CSR) before the token is spent.
    pub async fn peek(&self, token: &str) -> Result<SpiffeId, TokenError> {
        self.valid(token).await.map(|(_, record)| record.spiffe_id)
    }

    /// Redeems `token` once and returns the identity it grants.
    pub async fn redeem(&self, token: &str) -> Result<SpiffeId, TokenError> {
        let (id, record) = self.valid(token).await?;
        if !self.store.mark_used(&id, self.clock.now()).await? {
            return Err(TokenError::AlreadyUsed);
        }
        Ok(record.spiffe_id)
    }

    /// The token's record if it could be redeemed now.
    async fn valid(&self, token: &str) -> Result<(String, TokenRecord), TokenError> {
        let (id, secret) = parse(token.trim()).ok_or(TokenError::Malformed)?;
        let record = self.store.get(id).await?;
        let presented = sha256(secret.as_bytes());
        // Compare against a dummy when the id is unknown so both paths cost the same.
        let stored = record.as_ref().map_or([0u8; 32], |r| r.secret_sha256);
        let matches: bool = presented.ct_eq(&stored).into();
        let Some(record) = record.filter(|_| matches) else {
            return Err(TokenError::Invalid);
        };
        if record.used_at.is_some() {
            return Err(TokenError::AlreadyUsed);
        }
        if self.clock.now() >= record.expires_at {
            return Err(TokenError::Expired);
        }
        Ok((id.to_owned(), record))
    }

    /// The store, for listing and auditing.
    pub fn store(&self) -> &S {
        &self.store
    }
}

fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex(id, 2 * ID_BYTES) && is_hex(secret, 2 * SECRET_BYTES)).then_some((id, secret))
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
