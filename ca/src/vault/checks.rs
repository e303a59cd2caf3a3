//! Everything about a Vault configuration that can be checked before the control plane
//! switches to it, reported check by check.

use std::sync::Arc;
use std::time::Duration;

use signet_spiffe::TrustDomain;

use super::endpoints::{MountRequest, RoleRequest};
use super::sign::read_ca_chain;
use super::{
    IntermediateOptions, VaultIntermediateAuthority, VaultMode, VaultSession, VaultSettings,
    VaultSignAuthority,
};
use crate::authority::{Authority, Clock};
use crate::local::{not_after, subject};
use crate::profile::SvidProfile;

/// One check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The outcome of [`preflight`]: every check made, and the authority when all passed.
#[derive(Debug)]
pub struct Preflight {
    pub checks: Vec<Check>,
    pub authority: Option<Arc<dyn Authority>>,
}

impl Preflight {
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            ok: true,
            detail: detail.into(),
        });
    }

    fn fail(mut self, name: &str, detail: impl Into<String>) -> Self {
        self.checks.push(Check {
            name: name.to_owned(),
            ok: false,
            detail: detail.into(),
        });
        self
    }
}

/// Checks `settings` in order (settings, reachability, auth, mount, root, role, a trial
/// issuance) and stops at the first failure; when every check passed, the authority is
/// open and ready (a trial SVID was signed and validated through it).
pub async fn preflight(
    settings: VaultSettings,
    trust_domain: &TrustDomain,
    profile: SvidProfile,
    clock: Arc<dyn Clock>,
    dir: std::path::PathBuf,
) -> Preflight {
    let mut out = Preflight {
        checks: Vec::new(),
        authority: None,
    };
    let mode = settings.mode;
    let session = match VaultSession::new(settings) {
        Ok(s) => s,
        Err(e) => return out.fail("settings", e.to_string()),
    };
    out.pass("settings", format!("{} mode", mode.backend()));
    match session.health().await {
        Ok(h) if !h.initialized => return out.fail("reachable", "Vault is not initialized"),
        Ok(h) if h.sealed => return out.fail("reachable", "Vault is sealed: unseal it first"),
        Ok(h) => out.pass("reachable", format!("version {}, unsealed", h.version)),
        Err(e) => return out.fail("reachable", e.to_string()),
    }
    match session.authenticate().await {
        Ok(()) => {
            let (status, _) = session.status(None);
            let ttl = status
                .token_ttl
                .map_or("never expires".to_owned(), |t| format!("expires in {t}s"));
            let renewable = if status.token_renewable {
                "renewable"
            } else {
                "not renewable"
            };
            out.pass("auth", format!("{}: token {ttl}, {renewable}", status.auth));
        }
        Err(e) => return out.fail("auth", e.to_string()),
    }
    let session = Arc::new(session);
    let mount = session.settings().mount().to_owned();
    match session
        .read(
            "reading the mount",
            MountRequest {
                mount: mount.clone(),
            },
        )
        .await
    {
        Ok(m) if m.kind != "pki" => {
            return out.fail(
                "mount",
                format!("`{mount}` is a `{}` secrets engine, not `pki`", m.kind),
            );
        }
        Ok(m) => {
            let max = Duration::from_secs(m.config.max_lease_ttl);
            let wanted = session.settings().intermediate_ttl();
            if mode == VaultMode::Intermediate && m.config.max_lease_ttl > 0 && max < wanted {
                return out.fail(
                    "mount",
                    format!(
                        "`{mount}` caps certificates at {}s but the intermediate asks {}s: `bao secrets tune -max-lease-ttl=...` or lower the intermediate TTL",
                        max.as_secs(),
                        wanted.as_secs()
                    ),
                );
            }
            out.pass("mount", format!("`{mount}` is a pki engine"));
        }
        Err(e) => return out.fail("mount", e.to_string()),
    }
    match read_ca_chain(&session, trust_domain).await {
        Ok((_, bundle)) => {
            let roots: Vec<String> = bundle
                .roots()
                .map(|r| {
                    let days = not_after(r)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
                        .map_or(0, |d| d.as_secs() / 86_400);
                    format!("{} (expires in {days} days)", subject(r))
                })
                .collect();
            out.pass("root", roots.join(", "));
        }
        Err(e) => return out.fail("root", e.to_string()),
    }
    if mode == VaultMode::Sign {
        let Some(role) = session.settings().role.clone() else {
            return out.fail("role", "vault-sign mode needs --vault-role");
        };
        let found = match session
            .read(
                "reading the role",
                RoleRequest {
                    mount: mount.clone(),
                    name: role.clone(),
                },
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return out.fail("role", e.to_string()),
        };
        let probe = format!("spiffe://{trust_domain}/ns/default/sa/default");
        if !found.allowed_uri_sans.iter().any(|p| glob(p, &probe)) {
            return out.fail(
                "role",
                format!(
                    "role `{role}` does not allow `spiffe://{trust_domain}/…` URI SANs (allowed_uri_sans = {:?}); set allowed_uri_sans=\"spiffe://{trust_domain}/*\"",
                    found.allowed_uri_sans
                ),
            );
        }
        if found.require_cn {
            return out.fail(
                "role",
                format!(
                    "role `{role}` requires a common name; SVIDs have none: set require_cn=false"
                ),
            );
        }
        if found.key_usage.len() != 1
            || !found.key_usage[0].eq_ignore_ascii_case("DigitalSignature")
        {
            return out.fail(
                "role",
                format!(
                    "role `{role}` grants key usage {:?}; SVIDs must carry exactly DigitalSignature: set key_usage=DigitalSignature",
                    found.key_usage
                ),
            );
        }
        if !(found.server_flag && found.client_flag) {
            return out.fail(
                "role",
                format!(
                    "role `{role}` must allow both server and client use (server_flag, client_flag)"
                ),
            );
        }
        if !matches!(found.key_type.as_str(), "ec" | "any") {
            return out.fail(
                "role",
                format!(
                    "role `{role}` accepts `{}` keys; workloads send ECDSA P-256: set key_type=ec (or any)",
                    found.key_type
                ),
            );
        }
        if found.max_ttl > 0 && Duration::from_secs(found.max_ttl) < profile.default_ttl {
            return out.fail(
                "role",
                format!(
                    "role `{role}` caps certificates at {}s, shorter than the SVID lifetime {}s: raise max_ttl",
                    found.max_ttl,
                    profile.default_ttl.as_secs()
                ),
            );
        }
        out.pass(
            "role",
            format!(
                "`{role}` allows spiffe://{trust_domain}/* URI SANs, key usage DigitalSignature, key type {}",
                found.key_type
            ),
        );
    }
    let opened: Result<Arc<dyn Authority>, _> = match mode {
        VaultMode::Sign => {
            VaultSignAuthority::open(Arc::clone(&session), trust_domain, profile, clock)
                .await
                .map(|a| Arc::new(a) as Arc<dyn Authority>)
        }
        VaultMode::Intermediate => VaultIntermediateAuthority::open(
            Arc::clone(&session),
            trust_domain,
            IntermediateOptions {
                dir,
                profile,
                clock,
            },
        )
        .await
        .map(|a| Arc::new(a) as Arc<dyn Authority>),
    };
    match opened {
        Ok(a) => {
            out.pass(
                "trial issuance",
                "an SVID was signed and passed Signet's validation",
            );
            out.authority = Some(a);
            out
        }
        Err(e) => out.fail("trial issuance", e.to_string()),
    }
}

/// Vault's glob for allowed URI SANs: `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn vault_globs() {
        let id = "spiffe://acme.internal/ns/shop/sa/cart";
        assert!(glob("spiffe://acme.internal/*", id));
        assert!(glob("*", id));
        assert!(glob("spiffe://*/ns/shop/*", id));
        assert!(glob(id, id));
        assert!(!glob("spiffe://other.internal/*", id));
        assert!(!glob("spiffe://acme.internal/ns/web/*", id));
        assert!(!glob("spiffe://acme.internal", id));
    }
}
