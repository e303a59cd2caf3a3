#!/usr/bin/env bash
# Runs every fuzz target briefly (default 20 s each). Not part of the test command: it needs
# cargo-fuzz and an instrumented build, which would double CI time. Run it before touching
# parsing code; longer runs: FUZZ_SECONDS=600 scripts/fuzz-smoke.sh.
set -euo pipefail
cd "$(dirname "$0")/../ca/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in spiffe_id csr; do
  mkdir -p "corpus/$target"
  # Checked-in seeds (a valid CSR, valid and invalid IDs) start the search past the parser.
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" \
    -- -max_total_time="${FUZZ_SECONDS:-20}"
done
