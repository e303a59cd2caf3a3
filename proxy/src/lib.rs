//! Signet's sidecar proxy, as a library: the `signet-proxy` binary wires these together, and
//! the control-plane source will feed the same state.
//!
//! - [`start`]: start-up as a library call ([`start::start`]) and draining.
//! - [`config`]: the TOML configuration and its checks.
//! - [`identity`]: SVID, trust bundle and deny-list, swapped under running listeners.
//! - [`state`]: what every listener shares ([`state::Proxy`]).
//! - [`inbound`]: mTLS in front of the local app; Cedar on every connection and request.
//! - [`outbound`]: local plain-text ports to upstream services over mTLS.
//! - [`headers`]: the headers the proxy vouches for, and hop-by-hop headers.
//! - [`path`]: canonical request paths, so what is authorized is what the app sees.
//! - [`traffic`]: the outbound request stack: routes, timeouts, retries with a budget,
//!   load balancing, circuit breaking, outlier detection.
//! - [`respond`]: every answer the proxy makes itself ([`respond::ProxyError`]).
//! - [`pool`]: pooled HTTP/1.1 and HTTP/2 connections.
//! - [`audit`]: decisions recorded in a signed, hash-chained spool.
//! - [`health`]: active health checks of the local app.
//! - [`accept`]: the one accept loop (admission, refusals counted, a span per connection).
//! - [`admin`]: `/live`, `/ready`, `/metrics`, `/identity`, `/config`.
//! - [`reload`]: watching the bootstrap files.
//! - [`control`]: the control-plane source (SVID, bundle, deny-list, policies, endpoints).
//! - [`telemetry`]: spans over OTLP, access logs, golden metrics.

pub mod accept;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod backoff;
pub mod config;
pub mod control;
pub mod headers;
pub mod health;
pub mod identity;
pub mod inbound;
pub mod intercept;
pub mod metrics;
pub mod netfilter;
pub mod outbound;
pub mod path;
pub mod pool;
pub mod reload;
pub mod respond;
pub mod shadow;
pub mod start;
pub mod state;
pub mod telemetry;
pub mod traffic;
pub mod workload_api;
