#!/usr/bin/env bash
# Runs every fuzz target briefly (default 20 s each; FUZZ_SECONDS=60 for the stop-note runs).
# Not part of the test command: it needs cargo-fuzz and an instrumented build, which would
# double CI time. Run it before touching parsing code.
#   ca/fuzz:    spiffe_id csr
#   proxy/fuzz: path headers config policy_bundle audit_lines proto_config
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
run() {
  local crate="$1"; shift
  cd "$root/$crate"
  for target in "$@"; do
    mkdir -p "corpus/$target"
    # Checked-in seeds (valid inputs of each kind) start the search past the parsers.
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" \
      -- -max_total_time="${FUZZ_SECONDS:-20}"
  done
}
run ca/fuzz spiffe_id csr
run proxy/fuzz path headers config policy_bundle audit_lines proto_config
