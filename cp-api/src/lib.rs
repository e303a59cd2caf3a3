//! Signet's control plane: the gRPC API, its generated code and the server.
//!
//! Empty for now: the control-plane issue fills it (see `docs/architecture.md`).
