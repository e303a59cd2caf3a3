//! The checked-in gRPC code is what the `.proto` file generates today.
//!
//! Normal builds compile `src/gen/` and need no `protoc`; this test regenerates the code with
//! a pure-Rust protobuf compiler and fails on any difference. After changing the `.proto`,
//! run it with `SIGNET_REGENERATE=1` to rewrite the checked-in file.

use std::path::Path;

#[test]
fn checked_in_code_matches_the_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let descriptors = protox::compile(
        [root.join("proto/signet/v1/mesh.proto")],
        [root.join("proto")],
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .out_dir(out.path())
        .compile_fds(descriptors)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("signet.v1.rs")).unwrap();
    let checked_in = root.join("src/gen/signet.v1.rs");
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
