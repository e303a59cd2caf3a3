//! Watching the bootstrap files: credentials, the deny-list, the policy directory and the
//! traffic document are re-read when they change. A change that fails to load is refused (logged and counted) and
//! the previous version stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use signet_policy::PolicyBundle;

use crate::config::IdentityConfig;
use crate::identity;
use crate::state::Proxy;

/// Size and modification time of each watched file.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            (
                p.clone(),
                meta.as_ref().map_or(0, std::fs::Metadata::len),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect()
}

/// The `.cedar` files of `dir`, sorted.
fn policy_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Loads the policy directory as a bundle with `version`.
pub fn load_policies(dir: &Path, version: u64) -> Result<PolicyBundle, String> {
    PolicyBundle::load(&[dir.to_path_buf()])
        .map(|b| b.with_version(version))
        .map_err(|e| {
            let more = e.problems.len().saturating_sub(1);
            let first = e
                .problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            if more > 0 {
                format!("{first} (and {more} more)")
            } else {
                first
            }
        })
}

/// The policy directories a file-configured proxy watches.
#[derive(Debug, Clone)]
pub struct PolicyDirs {
    /// The enforced policies.
    pub enforced: PathBuf,
    /// A shadow candidate's, if any.
    pub shadow: Option<PathBuf>,
}

/// Decides with the candidate in `dir` (as version `version`) beside the enforced policies;
/// a directory without `.cedar` files turns shadow mode off.
pub fn load_shadow(proxy: &Proxy, dir: &Path, version: u64) -> Result<(), String> {
    if policy_files(dir).is_empty() {
        proxy.run_shadow(None);
        return Ok(());
    }
    let bundle = load_policies(dir, version)?;
    proxy.run_shadow(Some(&bundle));
    Ok(())
}

/// Reads the traffic document at `path` and applies it as `version`; a document with any
/// problem changes nothing (the first problems are returned, each at `file:line`).
pub fn load_traffic(proxy: &Proxy, path: &Path, version: u64) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc = signet_traffic::load(&text, &path.display().to_string()).map_err(|e| {
        let more = e.problems.len().saturating_sub(1);
        let first = e.problems.first().cloned().unwrap_or_default();
        if more > 0 {
            format!("{first} (and {more} more)")
        } else {
            first
        }
    })?;
    let changed = proxy.apply_traffic(&doc, version);
    tracing::info!(version, ?changed, "traffic settings applied");
    Ok(())
}

/// Checks the watched files (`identity_config`'s, the policy directories, the traffic
/// document) every `limits.reload_interval` until shutdown. What they hold now is taken as
/// seen when this is called, not when the returned task first runs: a change made right
/// after start-up (a spawned task may run late) is still a change.
pub fn watch(
    proxy: Arc<Proxy>,
    identity_config: IdentityConfig,
    dirs: PolicyDirs,
    traffic: Option<PathBuf>,
    mut policy_version: u64,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let traffic_paths: Vec<PathBuf> = traffic.iter().cloned().collect();
    let mut traffic_seen = fingerprint(&traffic_paths);
    let mut traffic_version = 1;
    let dir = dirs.enforced;
    let shadow_root = dirs.shadow;
    let shadow_dir = shadow_root.clone();
    let shadow_files = move || shadow_dir.as_deref().map(policy_files).unwrap_or_default();
    let mut shadow = fingerprint(&shadow_files());
    let mut shadow_version = 1;
    let credential_paths = vec![
        identity_config.cert.clone(),
        identity_config.key.clone(),
        identity_config.bundle.clone(),
    ];
    let deny_paths: Vec<PathBuf> = identity_config.deny_list.iter().cloned().collect();
    let mut credentials = fingerprint(&credential_paths);
    let mut deny = fingerprint(&deny_paths);
    let mut policies = fingerprint(&policy_files(&dir));
    async move {
        let mut tick = tokio::time::interval(proxy.config.limits.reload_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = proxy.draining() => return,
            }
            let now = fingerprint(&credential_paths);
            if now != credentials {
                credentials = now;
                let result =
                    identity::load(&identity_config).and_then(|(c, key)| proxy.rotate(c, &key));
                report(&proxy, "identity", result);
            }
            let now = fingerprint(&deny_paths);
            if now != deny {
                deny = now;
                if let Some(path) = deny_paths.first() {
                    let result = identity::load_deny_list(path)
                        .map(|(ids, serials)| proxy.identity.deny(ids, serials));
                    report(&proxy, "deny-list", result);
                }
            }
            let now = fingerprint(&policy_files(&dir));
            if now != policies {
                policies = now;
                let result = load_policies(&dir, policy_version + 1).map(|bundle| {
                    policy_version += 1;
                    proxy.enforce(&bundle);
                });
                report(&proxy, "policy", result);
            }
            let now = fingerprint(&traffic_paths);
            if now != traffic_seen
                && let Some(path) = traffic_paths.first()
            {
                traffic_seen = now;
                let result = load_traffic(&proxy, path, traffic_version + 1);
                if result.is_ok() {
                    traffic_version += 1;
                }
                report(&proxy, "traffic", result);
            }
            let now = fingerprint(&shadow_files());
            if now != shadow
                && let Some(shadow_dir) = &shadow_root
            {
                shadow = now;
                shadow_version += 1;
                report(
                    &proxy,
                    "shadow",
                    load_shadow(&proxy, shadow_dir, shadow_version),
                );
            }
        }
    }
}

fn report(proxy: &Proxy, source: &str, result: Result<(), String>) {
    match result {
        Ok(()) => {
            proxy.metrics.reloads.inc(&[source]);
            tracing::info!(source, "reloaded");
        }
        Err(e) => {
            proxy.metrics.reload_failures.inc(&[source]);
            tracing::warn!(source, error = %e, "reload refused; keeping the previous version");
        }
    }
}
