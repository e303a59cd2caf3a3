//! `GET /v1/ca` (and the `ca` of `GET /v1/status`).

use serde::{Deserialize, Serialize};

/// The certificate authority's state (`meshctl ca status`, the console's CA page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaStatus {
    pub trust_domain: String,
    /// `builtin`, `vault-intermediate` or `vault-sign`; `kind` is the same, kept for
    /// clients that read it.
    pub kind: String,
    pub backend: String,
    /// The issuing chain, issuer of SVIDs first.
    pub chain: Vec<ChainCertificate>,
    /// The intermediate signing SVIDs, when it is not the root itself.
    pub intermediate: Option<IssuingCertificate>,
    pub roots: Vec<Root>,
    pub bundle_sequence: u64,
    /// A Vault backend's mount, auth and token state (`None` for the built-in CA).
    pub vault: Option<VaultStatus>,
    pub next_renewal: Option<i64>,
    pub last_error: Option<String>,
    pub rotation: Option<Rotation>,
    pub warnings: Vec<String>,
    pub svid_ttl_seconds: u64,
    pub jwt: JwtStatus,
}

/// How the control plane signs in to Vault or OpenBao.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultAuthMethod {
    Token,
    AppRole,
}

/// A Vault or OpenBao backend's connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultStatus {
    pub address: String,
    pub mount: String,
    /// The PKI role signing through (`sign` mode).
    pub role: Option<String>,
    pub auth: VaultAuthMethod,
    /// What the current token has left (`None`: it never expires).
    pub token_ttl_seconds: Option<u64>,
    pub token_renewable: bool,
    /// Logins since start (AppRole: the first, then one per token that could not be
    /// renewed).
    pub logins: u64,
    /// Token renewals since start.
    pub renewals: u64,
}

/// A certificate of the issuing chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCertificate {
    /// `intermediate` or `root`.
    pub role: String,
    pub subject: String,
    pub sha256: String,
    pub not_after: i64,
}

/// The certificate signing SVIDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuingCertificate {
    pub subject: String,
    pub not_after: i64,
}

/// Where a root stands in the trust bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootState {
    /// Its chain signs SVIDs now.
    Active,
    /// Published ahead of a rotation; signs nothing yet.
    Staged,
    /// Replaced; published until the last SVID it signed expires.
    Retiring,
}

impl RootState {
    /// As it is written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staged => "staged",
            Self::Active => "active",
            Self::Retiring => "retiring",
        }
    }
}

/// A root in the trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    pub subject: String,
    pub sha256: String,
    pub not_after: Option<i64>,
    pub state: RootState,
    /// When a retiring root leaves the bundle.
    pub retire_at: Option<i64>,
}

/// A CA rotation in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// `staged`.
    pub phase: String,
    /// The backend rotated to.
    pub to: String,
    pub since: i64,
    /// Proxies (instances) that have not acknowledged the bundle with the staged roots.
    pub waiting_for: Vec<String>,
    /// Promoted by then whoever still waits.
    pub promote_by: i64,
    /// Not promoted before then (federated partners must fetch the new roots first).
    pub not_before: i64,
}

/// The JWT-SVID signing keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtStatus {
    pub svid_ttl_seconds: u64,
    pub key_lifetime_seconds: u64,
    pub signing_kid: Option<String>,
    pub keys: Vec<JwtKey>,
    pub rotation: Option<JwtRotation>,
}

/// Where a JWT signing key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JwtKeyState {
    Staged,
    Active,
    Retiring,
}

impl JwtKeyState {
    /// As it is written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staged => "staged",
            Self::Active => "active",
            Self::Retiring => "retiring",
        }
    }
}

/// One JWT signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtKey {
    pub kid: String,
    pub algorithm: String,
    pub state: JwtKeyState,
    pub created: i64,
    pub retire_at: Option<i64>,
}

/// A JWT signing key staged and waiting for proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtRotation {
    pub since: i64,
    pub waiting_for: Vec<String>,
    pub promote_by: i64,
}

/// One check `POST /v1/ca/setup` made of a Vault or OpenBao backend before switching to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `POST /v1/ca/setup`: every check passed; the backend is staged (`switched`) unless only
/// checking was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaSetup {
    pub checks: Vec<CaCheck>,
    pub switched: bool,
    /// The CA after staging (`None` for `check_only`).
    pub ca: Option<CaStatus>,
}

/// `POST /v1/ca/setup` answered 422: a check failed and nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaSetupRefused {
    /// The first failed check, in a sentence.
    pub error: String,
    pub checks: Vec<CaCheck>,
}

/// `POST /v1/ca/rotate`: the successor staged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaRotated {
    pub ca: CaStatus,
}
