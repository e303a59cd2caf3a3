#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, every unit,
# integration and doc test. Installs what the tests need that a fresh Debian machine with
# Rust lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if ! command -v cargo-nextest >/dev/null; then
  cargo install cargo-nextest --locked
fi
cargo nextest run --workspace --all-targets --locked --no-fail-fast
# nextest does not run doc tests.
cargo test --workspace --doc --locked
