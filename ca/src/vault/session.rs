//! One authenticated connection to Vault: TLS, login, token upkeep, and errors that carry
//! Vault's own message.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustify_derive::Endpoint;
use serde::{Deserialize, Serialize};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{VaultAuth, VaultSettings};
use crate::authority::{AuthorityError, VaultStatus};

/// Time allowed for one request to Vault.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Vault call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The settings cannot work (bad address, unreadable CA file...).
    #[error("{0}")]
    Config(String),
    /// Vault was not reached (refused, TLS failure, timeout).
    #[error("cannot reach Vault at {address}: {message}")]
    Unreachable { address: String, message: String },
    /// Vault answered with an error status.
    #[error("Vault at {address} refused {what} ({code}): {message}")]
    Refused {
        address: String,
        what: String,
        code: u16,
        message: String,
    },
    /// Vault answered something Signet cannot use.
    #[error("Vault at {address}, {what}: {message}")]
    Unexpected {
        address: String,
        what: String,
        message: String,
    },
}

impl VaultError {
    fn denied(&self) -> bool {
        matches!(self, Self::Refused { code: 403, .. })
    }
}

impl From<VaultError> for AuthorityError {
    fn from(e: VaultError) -> Self {
        match &e {
            VaultError::Unreachable { .. } => Self::Unavailable(e.to_string()),
            VaultError::Refused { code, .. } if *code >= 500 => Self::Unavailable(e.to_string()),
            _ => Self::Sign(e.to_string()),
        }
    }
}

/// `GET auth/token/lookup-self`, with only the fields read here.
#[derive(Debug, Default, Endpoint, Serialize)]
#[endpoint(path = "auth/token/lookup-self", response = "TokenLookup")]
struct LookupSelfRequest {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenLookup {
    ttl: u64,
    creation_ttl: u64,
    renewable: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Token {
    /// `None`: the token never expires.
    expires: Option<SystemTime>,
    lifetime: Duration,
    renewable: bool,
}

impl Token {
    fn remaining(&self) -> Option<Duration> {
        self.expires.map(|e| {
            e.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }
}

#[derive(Debug, Default)]
struct Upkeep {
    token: Token,
    logins: u64,
    renewals: u64,
    last_error: Option<String>,
}

/// An authenticated Vault client whose token is kept alive by [`VaultSession::maintain`].
pub struct VaultSession {
    settings: VaultSettings,
    client: Mutex<Arc<VaultClient>>,
    upkeep: Mutex<Upkeep>,
    /// One login at a time, however many calls saw the token refused at once.
    login: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for VaultSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSession")
            .field("address", &self.settings.address)
            .field("auth", &self.settings.auth)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The whole error, sources included: reqwest's top-level message alone says nothing.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl VaultSession {
    /// Checks the settings, logs in, and learns the token's lifetime.
    pub async fn connect(settings: VaultSettings) -> Result<Self, VaultError> {
        let session = Self::new(settings)?;
        session.authenticate().await?;
        Ok(session)
    }

    /// Checks the settings; talks to nobody yet.
    pub fn new(settings: VaultSettings) -> Result<Self, VaultError> {
        // vaultrs is built without a crypto provider so that ring stays the only one; the
        // process default must be set before its first client (a no-op when already set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        check_address(&settings.address)?;
        if let Some(ca) = &settings.ca_cert {
            let pem = std::fs::read_to_string(ca).map_err(|e| {
                VaultError::Config(format!("--vault-ca-cert `{}`: {e}", ca.display()))
            })?;
            if super::certificates(&pem).map_or(true, |c| c.is_empty()) {
                return Err(VaultError::Config(format!(
                    "--vault-ca-cert `{}`: no PEM certificate in it",
                    ca.display()
                )));
            }
        }
        let token = match &settings.auth {
            VaultAuth::Token { token } if token.trim().is_empty() => {
                return Err(VaultError::Config("the Vault token is empty".to_owned()));
            }
            VaultAuth::Token { token } => token.clone(),
            VaultAuth::AppRole { .. } => String::new(),
        };
        Ok(Self {
            client: Mutex::new(Arc::new(build_client(&settings, &token)?)),
            settings,
            upkeep: Mutex::new(Upkeep::default()),
            login: tokio::sync::Mutex::new(()),
        })
    }

    /// Logs in (AppRole) and learns the token's lifetime.
    pub async fn authenticate(&self) -> Result<(), VaultError> {
        if matches!(self.settings.auth, VaultAuth::AppRole { .. }) {
            self.log_in().await?;
        }
        self.lookup().await.map(drop)
    }

    /// The settings this session was made from.
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    fn client(&self) -> Arc<VaultClient> {
        Arc::clone(&lock(&self.client))
    }

    fn describe(&self, what: &str, e: ClientError) -> VaultError {
        let address = self.settings.address.clone();
        match e {
            ClientError::APIError { code, errors } => VaultError::Refused {
                address,
                what: what.to_owned(),
                code,
                message: if errors.is_empty() {
                    "no message".to_owned()
                } else {
                    errors.join("; ")
                },
            },
            ClientError::RestClientError { source } => {
                let message = chain(&source);
                if message.contains("error decoding") || message.contains("deserializ") {
                    VaultError::Unexpected {
                        address,
                        what: what.to_owned(),
                        message,
                    }
                } else {
                    VaultError::Unreachable { address, message }
                }
            }
            other => VaultError::Unexpected {
                address,
                what: what.to_owned(),
                message: chain(&other),
            },
        }
    }

    /// Runs one Vault call; a refused token is replaced by logging in again (AppRole) and
    /// the call retried once. The outcome is remembered for [`Self::status`].
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, VaultError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut result = f(self.client()).await.map_err(|e| self.describe(what, e));
        if let Err(e) = &result
            && e.denied()
            && matches!(self.settings.auth, VaultAuth::AppRole { .. })
        {
            tracing::warn!(error = %e, "Vault refused the token; logging in again");
            match self.log_in().await {
                Ok(()) => result = f(self.client()).await.map_err(|e| self.describe(what, e)),
                Err(login) => result = Err(login),
            }
        }
        lock(&self.upkeep).last_error = result.as_ref().err().map(ToString::to_string);
        result
    }

    async fn log_in(&self) -> Result<(), VaultError> {
        let VaultAuth::AppRole {
            role_id,
            secret_id,
            mount,
        } = &self.settings.auth
        else {
            return Ok(());
        };
        let _one = self.login.lock().await;
        let anonymous = build_client(&self.settings, "")?;
        let auth = vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id)
            .await
            .map_err(|e| self.describe("the AppRole login", e))?;
        *lock(&self.client) = Arc::new(build_client(&self.settings, &auth.client_token)?);
        let mut upkeep = lock(&self.upkeep);
        upkeep.logins += 1;
        upkeep.token = token_of(auth.lease_duration, auth.lease_duration, auth.renewable);
        tracing::info!(
            ttl_secs = auth.lease_duration,
            "logged in to Vault with AppRole"
        );
        Ok(())
    }

    async fn lookup(&self) -> Result<Token, VaultError> {
        let found = self
            .call("the token lookup", |c| async move {
                vaultrs::api::exec_with_result(&*c, LookupSelfRequest {}).await
            })
            .await?;
        let token = token_of(found.ttl, found.creation_ttl, found.renewable);
        lock(&self.upkeep).token = token;
        Ok(token)
    }

    /// Keeps the token alive: renews it once half its lifetime has passed, logs in again
    /// (AppRole) when it cannot be renewed or renewal no longer extends it. Returns when to
    /// call again.
    pub async fn maintain(&self) -> Result<Duration, VaultError> {
        let token = self.lookup().await?;
        let Some(remaining) = token.remaining() else {
            return Ok(Duration::from_secs(3600));
        };
        if remaining > token.lifetime / 2 {
            return Ok(next_check(remaining, token.lifetime));
        }
        let approle = matches!(self.settings.auth, VaultAuth::AppRole { .. });
        if token.renewable {
            let increment = format!("{}s", token.lifetime.as_secs().max(1));
            let renewed = self
                .call("the token renewal", |c| {
                    let increment = increment.clone();
                    async move { vaultrs::token::renew_self(&*c, Some(&increment)).await }
                })
                .await;
            match renewed {
                Ok(auth) if Duration::from_secs(auth.lease_duration) > token.lifetime / 2 => {
                    let mut upkeep = lock(&self.upkeep);
                    upkeep.renewals += 1;
                    upkeep.token = token_of(auth.lease_duration, auth.lease_duration, true);
                    tracing::debug!(ttl_secs = auth.lease_duration, "renewed the Vault token");
                    return Ok(next_check(
                        Duration::from_secs(auth.lease_duration),
                        token.lifetime,
                    ));
                }
                Ok(auth) if !approle => {
                    lock(&self.upkeep).renewals += 1;
                    return Err(self.expiring(auth.lease_duration));
                }
                Ok(_) => tracing::info!("the Vault token reached its maximum lifetime"),
                Err(e) if !approle => return Err(e),
                Err(e) => tracing::warn!(error = %e, "renewing the Vault token failed"),
            }
        } else if !approle {
            return Err(self.expiring(remaining.as_secs()));
        }
        self.log_in().await?;
        let token = lock(&self.upkeep).token;
        Ok(next_check(
            token.remaining().unwrap_or(token.lifetime),
            token.lifetime,
        ))
    }

    fn expiring(&self, secs: u64) -> VaultError {
        let e = VaultError::Unexpected {
            address: self.settings.address.clone(),
            what: "the token".to_owned(),
            message: format!(
                "it expires in {secs}s and cannot be renewed further; give Signet a new token with `meshctl ca setup` or use AppRole"
            ),
        };
        lock(&self.upkeep).last_error = Some(e.to_string());
        e
    }

    /// Reads one custom endpoint.
    pub(crate) async fn read<E>(&self, what: &str, endpoint: E) -> Result<E::Response, VaultError>
    where
        E: rustify::Endpoint + Clone,
    {
        self.call(what, |c| {
            let endpoint = endpoint.clone();
            async move { vaultrs::api::exec_with_result(&*c, endpoint).await }
        })
        .await
    }

    /// Vault's health, read without the token.
    pub(super) async fn health(&self) -> Result<super::endpoints::Health, VaultError> {
        let client = build_client(&self.settings, "")?;
        vaultrs::api::exec_with_no_result(&client, super::endpoints::HealthRequest {})
            .await
            .map_err(|e| self.describe("the health check", e))
    }

    /// The connection as `meshctl ca status` shows it.
    pub fn status(&self, role: Option<&str>) -> (VaultStatus, Option<String>) {
        let upkeep = lock(&self.upkeep);
        (
            VaultStatus {
                address: self.settings.address.clone(),
                mount: self.settings.mount().to_owned(),
                role: role.map(str::to_owned),
                auth: self.settings.auth.method().to_owned(),
                token_ttl: upkeep.token.remaining().map(|d| d.as_secs()),
                token_renewable: upkeep.token.renewable,
                logins: upkeep.logins,
                renewals: upkeep.renewals,
            },
            upkeep.last_error.clone(),
        )
    }
}

fn token_of(ttl: u64, lifetime: u64, renewable: bool) -> Token {
    Token {
        expires: (ttl > 0).then(|| SystemTime::now() + Duration::from_secs(ttl)),
        lifetime: Duration::from_secs(lifetime.max(ttl)),
        renewable,
    }
}

/// A third of what remains, so renewal at half-life is never missed by much, and never a
/// tight loop.
fn next_check(remaining: Duration, lifetime: Duration) -> Duration {
    let until_half = remaining.saturating_sub(lifetime / 2);
    until_half
        .max(remaining / 6)
        .clamp(Duration::from_secs(1), Duration::from_secs(600))
}

fn check_address(address: &str) -> Result<(), VaultError> {
    let url = url::Url::parse(address)
        .map_err(|e| VaultError::Config(format!("--vault-addr `{address}`: {e}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                tracing::warn!(%address, "Vault over plain http: accepted only because it is a loopback dev server");
                Ok(())
            } else {
                Err(VaultError::Config(format!(
                    "--vault-addr `{address}`: plain http is accepted only for a loopback dev server; use https"
                )))
            }
        }
        other => Err(VaultError::Config(format!(
            "--vault-addr `{address}`: scheme `{other}` is not http(s)"
        ))),
    }
}

fn build_client(settings: &VaultSettings, token: &str) -> Result<VaultClient, VaultError> {
    let built = VaultClientSettingsBuilder::default()
        .address(&settings.address)
        .token(token)
        .ca_certs(
            settings
                .ca_cert
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        )
        .verify(true)
        .identity(None)
        .timeout(Some(REQUEST_TIMEOUT))
        .build()
        .map_err(|e| VaultError::Config(format!("Vault client settings: {e}")))?;
    VaultClient::new(built).map_err(|e| VaultError::Config(format!("Vault client: {}", chain(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_address("http://127.0.0.1:8200").is_ok());
        assert!(check_address("http://localhost:8200").is_ok());
        assert!(check_address("https://vault.example:8200").is_ok());
        let e = check_address("http://vault.example:8200").unwrap_err();
        assert!(e.to_string().contains("use https"), "{e}");
        assert!(check_address("ftp://x").is_err());
        assert!(check_address("not a url").is_err());
    }

    #[test]
    fn checks_are_spaced_and_bounded() {
        let hour = Duration::from_secs(3600);
        // Fresh token: wait until about half-life.
        assert_eq!(next_check(hour, hour), Duration::from_secs(600));
        // Past half-life (renewal failed): retry soon, never a tight loop.
        assert_eq!(
            next_check(Duration::from_secs(3), hour),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_check(Duration::from_secs(8), Duration::from_secs(8)),
            Duration::from_secs(4)
        );
    }
}
