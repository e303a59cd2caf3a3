//! Signet's control plane: the gRPC API (always built, with its generated code checked in),
//! and behind the `server` feature the `signet-cp` server.
//!
//! Proxies depend on this crate with `default-features = false` and see only [`api`].

/// The gRPC API: messages, clients and server traits, generated from
/// `proto/signet/v1/mesh.proto` (see `tests/generated_code.rs`).
pub mod api {
    /// Version 1.
    #[expect(
        clippy::allow_attributes,
        clippy::missing_const_for_fn,
        reason = "generated code"
    )]
    pub mod v1 {
        include!("gen/signet.v1.rs");
    }
}

#[cfg(feature = "server")]
pub mod server;
