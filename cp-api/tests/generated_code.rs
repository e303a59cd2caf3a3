//! The checked-in gRPC code is what the `.proto` file generates today.
//!
//! Normal builds compile `src/gen/` and need no `protoc`; this test regenerates the code with
//! a pure-Rust protobuf compiler and fails on any difference. After changing the `.proto`,
//! run it with `SIGNET_REGENERATE=1` to rewrite the checked-in file.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::path::Path;

/// Regenerates `proto` (relative to `proto/`) and compares (or, with `SIGNET_REGENERATE`,
/// rewrites) `checked_in` (relative to the crate) with the file tonic writes as `generated`.
fn check(proto: &str, generated: &str, checked_in: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let descriptors =
        protox::compile([root.join("proto").join(proto)], [root.join("proto")]).unwrap();
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .out_dir(out.path())
        .compile_fds(descriptors)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join(generated)).unwrap();
    let checked_in = root.join(checked_in);
    if std::env::var_os("SIGNET_REGENERATE").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == fresh,
        "{} is stale: run `SIGNET_REGENERATE=1 cargo test -p signet-cp --test generated_code`",
        checked_in.display()
    );
}

#[test]
fn checked_in_code_matches_the_proto() {
    check(
        "signet/v1/mesh.proto",
        "signet.v1.rs",
        "src/gen/signet.v1.rs",
    );
}

/// The SPIFFE Workload API has no protobuf package: tonic names its file `_`.
#[test]
fn checked_in_workload_api_code_matches_the_proto() {
    check(
        "spiffe/workload/workload.proto",
        "_.rs",
        "src/gen/spiffe.workload.rs",
    );
}
