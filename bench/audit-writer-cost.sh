#!/usr/bin/env bash
# CPU and context switches of the audit writer thread (and of its whole inbound proxy) at a
# fixed rate, for A/B-ing writer changes live: each build runs alone behind
# bench/compare-builds.sh with its audit trail on, and `perf stat` watches the inbound proxy's
# `audit-writer` thread, then the whole process, for 5 s each.
#
#   bench/audit-writer-cost.sh [--rate 5000] before=/tmp/signet-proxy.before after=target/release/signet-proxy ...
#
# Name builds more than once (a=... b=... a=... b=...) to alternate them. Needs perf.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rate=5000
if [ "${1:-}" = --rate ]; then rate=$2; shift 2; fi
[ $# -gt 0 ] || { sed -n '2,9p' "$0"; exit 2; }
command -v perf >/dev/null || { echo "perf is needed" >&2; exit 1; }
for spec in "$@"; do
  name=${spec%%=*} bin=$(realpath "${spec#*=}")
  log=$(mktemp)
  timeout 60 "$here/compare-builds.sh" --rate "$rate" --rounds 1 --secs 16 "$name=$bin:audit" >"$log" 2>&1 &
  runner=$!
  sleep 6
  pid=$(pgrep -f "$bin --config .*/$name-inbound/" | head -1)
  tid=$(ps -L -o tid=,comm= -p "$pid" | awk '$2 == "audit-writer" {print $1}')
  stat() { perf stat -x, -e task-clock,context-switches "$@" -- sleep 5 2>&1 \
    | awk -F, '{printf "%s %s  ", $3, $1}'; }
  echo "$name writer: $(stat -t "$tid")| process: $(stat -p "$pid")"
  wait "$runner" || true
  rm -f "$log"
done
