//! The keys JWT-SVIDs are signed with, kept sealed with the CA and rotated like it:
//! 1. **staged**: a new key is published in the trust bundle, not yet signing;
//! 2. **active** once every proxy has acknowledged a bundle carrying it (or after the
//!    rotation's patience): new tokens are signed with it;
//! 3. **retiring**: the previous key stays published until every token it signed has
//!    expired (the longest JWT-SVID lifetime after its last use), then leaves the bundle.
//!
//! A key is rotated when it has signed for `key_lifetime`, and with every CA rotation.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use signet_spiffe::jwt::{JwtAuthority, JwtSigner};

/// How JWT-SVIDs are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtProfile {
    /// The lifetime of a token whose request names none, and the longest granted.
    pub ttl: Duration,
    /// How long a key signs before the next one is staged.
    pub key_lifetime: Duration,
}

impl Default for JwtProfile {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            key_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// Shortest JWT-SVID lifetime granted.
pub const MIN_JWT_TTL: Duration = Duration::from_secs(5);
/// How long after its last token a retired key stays published, beyond the token lifetime:
/// validators' clocks may run behind.
const RETIRE_MARGIN: Duration = Duration::from_secs(30);

impl JwtProfile {
    /// The lifetime granted for a request of `requested` seconds (0: the default).
    pub fn grant(&self, requested: u32) -> Duration {
        if requested == 0 {
            return self.ttl;
        }
        Duration::from_secs(u64::from(requested)).clamp(MIN_JWT_TTL, self.ttl.max(MIN_JWT_TTL))
    }
}

/// Where a key is in its rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Published since `since` (unix seconds), first in bundle `sequence`.
    Staged {
        since: u64,
        sequence: u64,
    },
    Active,
    /// Published until `until` (unix seconds).
    Retiring {
        until: u64,
    },
}

impl Phase {
    /// The phase's name as operators see it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Staged { .. } => "staged",
            Self::Active => "active",
            Self::Retiring { .. } => "retiring",
        }
    }
}

/// One key as the sealed CA state keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// PKCS#8 DER, base64.
    pkcs8: String,
    /// Unix seconds.
    pub created: u64,
    #[serde(flatten)]
    pub phase: Phase,
}

impl StoredKey {
    /// A new key in `phase`.
    pub fn generate(now: u64, phase: Phase) -> Result<Self, String> {
        let pkcs8 = JwtSigner::generate_pkcs8().map_err(|e| e.to_string())?;
        Ok(Self {
            pkcs8: STANDARD.encode(pkcs8),
            created: now,
            phase,
        })
    }

    /// The signer this key is.
    pub fn signer(&self) -> Result<JwtSigner, String> {
        let der = STANDARD
            .decode(&self.pkcs8)
            .map_err(|_| "a JWT signing key in the CA state is not base64".to_owned())?;
        JwtSigner::from_pkcs8(&der).map_err(|e| format!("a JWT signing key: {e}"))
    }
}

/// The keys opened: the one signing now and every published one.
#[derive(Debug, Default, Clone)]
pub struct Opened {
    pub active: Option<Arc<JwtSigner>>,
    pub published: Vec<JwtAuthority>,
}

/// Opens every stored key.
pub fn open(keys: &[StoredKey]) -> Result<Opened, String> {
    let mut opened = Opened::default();
    for key in keys {
        let signer = key.signer()?;
        opened.published.push(signer.authority().clone());
        if key.phase == Phase::Active {
            opened.active = Some(Arc::new(signer));
        }
    }
    Ok(opened)
}

/// Whether a key is active.
pub fn has_active(keys: &[StoredKey]) -> bool {
    keys.iter().any(|k| k.phase == Phase::Active)
}

/// The staged key's start and bundle sequence.
pub fn staged(keys: &[StoredKey]) -> Option<(u64, u64)> {
    keys.iter().find_map(|k| match k.phase {
        Phase::Staged { since, sequence } => Some((since, sequence)),
        _ => None,
    })
}

/// Whether the active key has signed for its lifetime and no successor is staged yet.
pub fn due(keys: &[StoredKey], profile: &JwtProfile, now: u64) -> bool {
    staged(keys).is_none()
        && keys
            .iter()
            .find(|k| k.phase == Phase::Active)
            .is_none_or(|k| now.saturating_sub(k.created) >= profile.key_lifetime.as_secs())
}

/// Makes the staged key active and retires the active one; false when none is staged.
pub fn promote(keys: &mut [StoredKey], profile: &JwtProfile, now: u64) -> bool {
    if staged(keys).is_none() {
        return false;
    }
    let until = now + profile.ttl.as_secs() + RETIRE_MARGIN.as_secs();
    for key in keys.iter_mut() {
        key.phase = match key.phase {
            Phase::Active => Phase::Retiring { until },
            Phase::Staged { .. } => Phase::Active,
            ref other => other.clone(),
        };
    }
    true
}

/// Drops retired keys whose last token has expired; true when any left.
pub fn retire_expired(keys: &mut Vec<StoredKey>, now: u64) -> bool {
    let before = keys.len();
    keys.retain(|k| !matches!(k.phase, Phase::Retiring { until } if until <= now));
    keys.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> JwtProfile {
        JwtProfile {
            ttl: Duration::from_secs(60),
            key_lifetime: Duration::from_secs(100),
        }
    }

    #[test]
    fn a_key_is_staged_promoted_and_retired_after_its_last_token() {
        let mut keys = vec![StoredKey::generate(0, Phase::Active).unwrap()];
        let first = open(&keys).unwrap().active.unwrap().key_id().to_owned();
        assert!(!due(&keys, &profile(), 99));
        assert!(due(&keys, &profile(), 100));
        keys.push(
            StoredKey::generate(
                100,
                Phase::Staged {
                    since: 100,
                    sequence: 7,
                },
            )
            .unwrap(),
        );
        assert!(!due(&keys, &profile(), 500), "one staged key at a time");
        assert_eq!(staged(&keys), Some((100, 7)));
        let opened = open(&keys).unwrap();
        assert_eq!(opened.published.len(), 2);
        assert_eq!(
            opened.active.unwrap().key_id(),
            first,
            "staged keys do not sign"
        );

        assert!(promote(&mut keys, &profile(), 110));
        let opened = open(&keys).unwrap();
        assert_ne!(opened.active.unwrap().key_id(), first);
        assert_eq!(opened.published.len(), 2, "the old key still verifies");
        assert!(!promote(&mut keys, &profile(), 111));

        assert!(!retire_expired(&mut keys, 110 + 60 + 29));
        assert!(retire_expired(&mut keys, 110 + 60 + 30));
        assert_eq!(open(&keys).unwrap().published.len(), 1);
        assert!(has_active(&keys));
    }

    #[test]
    fn requested_lifetimes_are_clamped() {
        let p = profile();
        assert_eq!(p.grant(0), Duration::from_secs(60));
        assert_eq!(p.grant(1), MIN_JWT_TTL);
        assert_eq!(p.grant(30), Duration::from_secs(30));
        assert_eq!(p.grant(86_400), Duration::from_secs(60));
    }

    #[test]
    fn the_stored_form_round_trips() {
        let key = StoredKey::generate(
            5,
            Phase::Staged {
                since: 5,
                sequence: 2,
            },
        )
        .unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert!(json.contains(r#""phase":"staged""#), "{json}");
        let back: StoredKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.phase, key.phase);
        assert_eq!(
            back.signer().unwrap().key_id(),
            key.signer().unwrap().key_id()
        );
    }
}
