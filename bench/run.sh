#!/usr/bin/env bash
# The side-by-side benchmark: direct, Signet, nginx and HAProxy doing mTLS on loopback, in one
# interleaved run (see bench/README.md). Builds the release proxy first, then runs the harness.
#   bench/run.sh                  # defaults: 3 rounds, 10 s per run, rates 1000,5000, workers 1,2
#   bench/run.sh --rounds 5       # any harness option (bench/harness/run.sh --help)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cargo build --release --locked -p signet-proxy --manifest-path "$here/../Cargo.toml"
export SIGNET_BENCH_WORK=${SIGNET_BENCH_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-bench}
exec "$here/harness/run.sh" --sidecar "signet=$here/signet-sidecar.sh" \
  --only signet,nginx,haproxy "$@"
