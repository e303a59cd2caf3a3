//! The SVID profile: what a workload certificate looks like, decided here and nowhere else.
//!
//! Issuance is three steps (template, sign, validate); this is the first. Nothing in the
//! template comes from the CSR except, later, its public key.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
    SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use signet_spiffe::SpiffeId;
use time::OffsetDateTime;

/// Lifetime rules for issued SVIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvidProfile {
    /// Lifetime when the request names none.
    pub default_ttl: Duration,
    /// Shortest lifetime granted (a shorter request is raised to this).
    pub min_ttl: Duration,
    /// Longest lifetime granted (a longer request is lowered to this).
    pub max_ttl: Duration,
    /// How far `notBefore` is set in the past, to tolerate clock skew between hosts.
    pub backdate: Duration,
}

impl Default for SvidProfile {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(30 * 24 * 3600),
            backdate: Duration::from_secs(10),
        }
    }
}

impl SvidProfile {
    /// What a workload's request for `requested` may ask the CA for: less than the
    /// configured lifetime, never more (a caller choosing its own lifetime would outlive the
    /// revocation horizon operators planned for). The control plane's own identity is not a
    /// workload request and is not capped by this.
    pub fn workload_request(&self, requested: Option<Duration>) -> Option<Duration> {
        requested.map(|ttl| ttl.min(self.default_ttl))
    }

    /// The lifetime to grant for a request.
    pub fn clamp_ttl(&self, requested: Option<Duration>) -> Duration {
        requested
            .unwrap_or(self.default_ttl)
            .clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }

    /// The validity window for a request at `now`, never past `issuer_not_after`.
    pub fn validity(
        &self,
        now: SystemTime,
        requested: Option<Duration>,
        issuer_not_after: SystemTime,
    ) -> (SystemTime, SystemTime) {
        let not_before = now.checked_sub(self.backdate).unwrap_or(now);
        let not_after = (now + self.clamp_ttl(requested)).min(issuer_not_after);
        (not_before, not_after)
    }

    /// The certificate parameters for `id` valid over `(not_before, not_after)`.
    pub fn template(
        &self,
        id: &SpiffeId,
        (not_before, not_after): (SystemTime, SystemTime),
    ) -> Result<CertificateParams, String> {
        let mut p = CertificateParams::default();
        // An empty subject, so no two leaves share one (RFC 5280 §4.1.2.6); rcgen then marks
        // the SAN critical, as that section requires.
        p.distinguished_name = DistinguishedName::new();
        let uri = id
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| e.to_string())?;
        p.subject_alt_names = vec![SanType::URI(uri)];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = OffsetDateTime::from(not_before);
        p.not_after = OffsetDateTime::from(not_after);
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }
}

/// A random, positive, non-zero 128-bit serial (RFC 5280 allows up to 20 octets).
pub(crate) fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    loop {
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "no secure random source".to_owned())?;
        // A clear top bit keeps the DER INTEGER positive without a leading zero byte.
        bytes[0] &= 0x7f;
        if bytes[0] != 0 {
            return Ok(SerialNumber::from_slice(&bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped_to_the_profile() {
        let p = SvidProfile::default();
        assert_eq!(p.clamp_ttl(None), Duration::from_secs(3600));
        assert_eq!(
            p.clamp_ttl(Some(Duration::from_secs(1))),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.clamp_ttl(Some(Duration::from_secs(365 * 86400))),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(
            p.clamp_ttl(Some(Duration::from_secs(600))),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn a_configured_lifetime_is_the_longest_granted() {
        let p = SvidProfile {
            default_ttl: Duration::from_secs(900),
            ..SvidProfile::default()
        };
        let granted = |ttl| p.clamp_ttl(p.workload_request(ttl));
        assert_eq!(granted(None), Duration::from_secs(900));
        assert_eq!(
            granted(Some(Duration::from_secs(30 * 86400))),
            Duration::from_secs(900)
        );
        assert_eq!(
            granted(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn validity_is_backdated_and_capped_by_the_issuer() {
        let p = SvidProfile::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let far = now + Duration::from_secs(86400);
        let (nb, na) = p.validity(now, Some(Duration::from_secs(600)), far);
        assert_eq!(nb, now - Duration::from_secs(10));
        assert_eq!(na, now + Duration::from_secs(600));

        let soon = now + Duration::from_secs(60);
        let (_, na) = p.validity(now, Some(Duration::from_secs(600)), soon);
        assert_eq!(na, soon, "never outlives the issuing certificate");
    }

    #[test]
    fn serials_are_random_positive_and_16_bytes() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }
}
