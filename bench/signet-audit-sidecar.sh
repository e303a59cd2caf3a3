#!/usr/bin/env bash
# signet-proxy with its audit trail recording every decision (connect and every request): the
# same adapter as signet-sidecar.sh with SIGNET_BENCH_AUDIT=1, for audit-on vs audit-off runs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIGNET_BENCH_AUDIT=1 exec "$here/signet-sidecar.sh" "$@"
