//! Signet's control plane: the gRPC API (always built, with its generated code checked in),
//! and behind the `server` feature the `signet-cp` server.
//!
//! Proxies depend on this crate with `default-features = false` and see only [`api`].

/// The gRPC API: messages, clients and server traits, generated from
/// `proto/signet/v1/mesh.proto` (see `tests/generated_code.rs`).
pub mod api {
    /// The largest gRPC message either side of the control-plane API sends or accepts: set
    /// explicitly on the server and on every proxy client, so the two can never disagree.
    pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

    /// The largest policy slice one proxy may be sent. The rest of the message limit is
    /// room for the trust bundle, the deny-list ([`MAX_DENY_BYTES`]) and the upstreams that
    /// travel in the same `ProxyConfig`. The control plane refuses a change whose slice for
    /// any service could exceed it.
    pub const MAX_SLICE_BYTES: usize = 3 * 1024 * 1024;

    /// The largest deny-list, encoded; the control plane refuses an entry past it.
    pub const MAX_DENY_BYTES: usize = 512 * 1024;

    /// Messages <-> the domain types a proxy enforces, strictly.
    pub mod convert;

    /// Version 1.
    #[expect(
        clippy::allow_attributes,
        clippy::missing_const_for_fn,
        reason = "generated code"
    )]
    pub mod v1 {
        include!("gen/signet.v1.rs");
    }

    /// The SPIFFE Workload API (`proto/spiffe/workload/workload.proto`), which proxies
    /// serve to their local workloads.
    #[expect(
        clippy::allow_attributes,
        clippy::missing_const_for_fn,
        reason = "generated code"
    )]
    pub mod workload {
        include!("gen/spiffe.workload.rs");
    }
}

pub mod model;

#[cfg(feature = "server")]
pub mod server;
