//! The Vault endpoints whose vaultrs response types do not fit what OpenBao answers (they
//! require fields OpenBao leaves out): declared here with only the fields Signet reads, each
//! defaulted, so a server that adds or omits fields still parses.

use rustify_derive::Endpoint;
use serde::{Deserialize, Serialize};

/// `GET /sys/health`.
#[derive(Debug, Clone, Default, Endpoint, Serialize)]
#[endpoint(path = "sys/health", response = "Health")]
pub(super) struct HealthRequest {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub version: String,
}

/// `GET /sys/mounts/<mount>`.
#[derive(Debug, Clone, Default, Endpoint, Serialize)]
#[endpoint(path = "sys/mounts/{self.mount}", response = "Mount")]
pub(super) struct MountRequest {
    #[endpoint(skip)]
    pub mount: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Mount {
    #[serde(rename = "type")]
    pub kind: String,
    pub config: MountConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MountConfig {
    pub max_lease_ttl: u64,
}

/// `GET /<mount>/roles/<name>`.
#[derive(Debug, Clone, Default, Endpoint, Serialize)]
#[endpoint(path = "{self.mount}/roles/{self.name}", response = "Role")]
pub(super) struct RoleRequest {
    #[endpoint(skip)]
    pub mount: String,
    #[endpoint(skip)]
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Role {
    pub allowed_uri_sans: Vec<String>,
    pub require_cn: bool,
    pub key_type: String,
    pub key_usage: Vec<String>,
    pub server_flag: bool,
    pub client_flag: bool,
    pub max_ttl: u64,
}

/// `GET /<mount>/cert/ca_chain`: the default issuer's chain.
#[derive(Debug, Clone, Default, Endpoint, Serialize)]
#[endpoint(path = "{self.mount}/cert/ca_chain", response = "CaChain")]
pub(super) struct CaChainRequest {
    #[endpoint(skip)]
    pub mount: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct CaChain {
    pub certificate: String,
    pub ca_chain: String,
}
