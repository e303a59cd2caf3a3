#!/usr/bin/env bash
# Several signet-proxy builds side by side (and nginx, with --nginx), each as an outbound +
# inbound pair in front of the harness's upstream, measured in interleaved rounds at one fixed
# rate: p50/p99 (oha, latency-corrected) and the user and system CPU each proxy spent per
# request (from /proc/<pid>/stat). For A/B-ing a change: build, copy the binary aside, build
# again, compare.
#
#   bench/compare-builds.sh [--rate 1000] [--rounds 4] [--secs 6] [--nginx] [--base-port 19080] \
#       before=/tmp/signet-proxy.before after=target/release/signet-proxy [after-audit=...:audit]
#
# A `:audit` suffix runs that build with every decision recorded (as signet-audit-sidecar.sh);
# `:shadow` with a shadow candidate decided beside the enforced policy (`:audit:shadow` both);
# `:trace=RATIO` with spans for that share of traces, exported over OTLP/HTTP to a sink
# (bench/otlp-sink.py); `:log` with a JSON access-log line per request; `:split` with the
# outbound route splitting 90/10 between two subsets. Suffixes combine, in the order trace,
# split, log, audit, shadow from the left (e.g. `x=bin:trace=0.01:log`). A last suffix
# `:nginx-in` or `:nginx-out` runs that side of the pair as nginx instead, to tell which side
# of the pair a difference comes from. Each round starts one build later than the last, so
# no build always runs first; `bench/paired.py LOG nginx` then reads the paired differences.
# Uses the harness's PKI, adapters and tools (run bench/harness/run.sh once to install them).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=${SIGNET_BENCH_WORK:-$HOME/.cache/signet-bench}
rate=1000 rounds=4 secs=6 nginx=0 base=19080 builds=()
while [ $# -gt 0 ]; do
  case $1 in
    --rate) rate=$2; shift 2;; --rounds) rounds=$2; shift 2;; --secs) secs=$2; shift 2;;
    --base-port) base=$2; shift 2;; --nginx) nginx=1; shift;;
    -h|--help) sed -n '2,20p' "$0"; exit 0;;
    *=*) builds+=("$1"); shift;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
done
[ ${#builds[@]} -gt 0 ] || { echo "name=binary[:audit] needed (see --help)" >&2; exit 2; }
oha=$(command -v oha || echo "$work/tools/bin/oha")
[ -x "$oha" ] || { echo "oha not found: run bench/harness/run.sh once" >&2; exit 1; }
pki=$work/pki; "$here/harness/pki/gen.sh" "$pki" >/dev/null
run=$(mktemp -d); groups=()
cleanup() { for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done; sleep 0.3; rm -rf "$run"; }
trap cleanup EXIT

start() { # name role listen target adapter [binary] [audit] [shadow] [trace ratio] [log] [split]
  local name=$1 role=$2 listen=$3 target=$4 adapter=$5 self=client peer=server
  [ "$role" = inbound ] && { self=server; peer=client; }
  mkdir -p "$run/$name-$role"
  SIGNET_BENCH_TRACE=${9:-} SIGNET_BENCH_ACCESS_LOG=${10:-0} SIGNET_BENCH_SPLIT=${11:-0} \
  SIGNET_BENCH_OTLP_PORT=$((base + 5)) \
  SIGNET_PROXY_BIN=${6:-} SIGNET_BENCH_AUDIT=${7:-0} SIGNET_BENCH_SHADOW=${8:-0} SC_ROLE=$role SC_LISTEN_PORT=$listen \
    SC_TARGET_PORT=$target SC_CA=$pki/ca.crt SC_CERT=$pki/$self.crt SC_KEY=$pki/$self.key \
    SC_CHAIN=$pki/$self.chain.crt SC_PEM=$pki/$self.pem \
    SC_SELF_ID=spiffe://bench.local/ns/default/sa/$self \
    SC_PEER_ID=spiffe://bench.local/ns/default/sa/$peer SC_PEER_SA=$peer \
    SC_PEER_DNS=$peer.bench.local SC_WORKERS=1 SC_RUNDIR=$run/$name-$role \
    setsid bash -c "exec $adapter $role" >"$run/$name-$role.log" 2>&1 &
  groups+=($!)
}
pids_of() { ps -e -o pid=,pgid= | awk -v g="$1" '$2==g {print $1}'; }
# CPU ticks of a process group: field 12 of /proc/<pid>/stat after the command name is
# utime, 13 stime.
field_ticks() { local g=$1 f=$2 t=0 s p; for p in $(pids_of "$g"); do s=$(cat /proc/$p/stat 2>/dev/null) || continue
  s=${s##*) }; set -- $s; t=$((t + ${!f})); done; echo $t; }

UP_PORT=$base UP_RUNDIR=$run/upstream setsid "$here/harness/upstream/nginx-upstream.sh" >"$run/up.log" 2>&1 &
groups+=($!)
case " ${builds[*]} " in *:trace=*)
  setsid python3 "$here/otlp-sink.py" $((base + 5)) >"$run/otlp-sink.log" 2>&1 &
  groups+=($!);;
esac
declare -A port out_g in_g
names=()
i=1
if [ $nginx = 1 ]; then builds=("nginx=" "${builds[@]}"); fi
for spec in "${builds[@]}"; do
  name=${spec%%=*} bin=${spec#*=} audit=0 shadow=0 trace="" log=0 split=0 nginx_side=""
  case $bin in *:nginx-in) bin=${bin%:nginx-in}; nginx_side=inbound;; esac
  case $bin in *:nginx-out) bin=${bin%:nginx-out}; nginx_side=outbound;; esac
  case $bin in *:shadow) bin=${bin%:shadow}; shadow=1;; esac
  case $bin in *:audit) bin=${bin%:audit}; audit=1;; esac
  case $bin in *:log) bin=${bin%:log}; log=1;; esac
  case $bin in *:split) bin=${bin%:split}; split=1;; esac
  case $bin in *:trace=*) trace=${bin##*:trace=}; bin=${bin%:trace=*};; esac
  p=$((base + 10 * i)); i=$((i + 1))
  if [ "$name" = nginx ]; then adapter=$here/harness/sidecars/nginx.sh; bin=""
  else adapter=$here/signet-sidecar.sh; bin=$(realpath "$bin"); fi
  in_adapter=$adapter out_adapter=$adapter
  [ "$nginx_side" = inbound ] && in_adapter=$here/harness/sidecars/nginx.sh
  [ "$nginx_side" = outbound ] && out_adapter=$here/harness/sidecars/nginx.sh
  start "$name" inbound $((p + 1)) "$base" "$in_adapter" "$bin" $audit $shadow "$trace" $log $split; in_g[$name]=${groups[-1]}
  start "$name" outbound "$p" $((p + 1)) "$out_adapter" "$bin" $audit $shadow "$trace" $log $split; out_g[$name]=${groups[-1]}
  port[$name]=$p; names+=("$name")
done
sleep 1.5
for n in "${names[@]}"; do
  [ "$(curl -s -m 5 "http://127.0.0.1:${port[$n]}/")" = ok ] || { echo "$n did not answer; see $run/$n-*.log" >&2; exit 1; }
done

hz=$(getconf CLK_TCK); n_req=$((rate * secs)); results=$run/results.tsv
for r in $(seq "$rounds"); do
  # Each round starts one build later than the last: no build always runs first (or right
  # after a given other), so a drift within rounds cannot favour one.
  order=("${names[@]:$(( (r - 1) % ${#names[@]} ))}" "${names[@]:0:$(( (r - 1) % ${#names[@]} ))}")
  for n in "${order[@]}"; do
    ou0=$(field_ticks ${out_g[$n]} 12); os0=$(field_ticks ${out_g[$n]} 13)
    iu0=$(field_ticks ${in_g[$n]} 12); is0=$(field_ticks ${in_g[$n]} 13)
    json=$("$oha" -z "${secs}s" -q "$rate" -c 16 --latency-correction --no-tui --output-format json \
      "http://127.0.0.1:${port[$n]}/")
    ou1=$(field_ticks ${out_g[$n]} 12); os1=$(field_ticks ${out_g[$n]} 13)
    iu1=$(field_ticks ${in_g[$n]} 12); is1=$(field_ticks ${in_g[$n]} 13)
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); p = d["latencyPercentiles"]
us = lambda t: float(t) * 1e6 / float(sys.argv[3]) / float(sys.argv[4])
print("\t".join([sys.argv[2], "%.3f" % (p["p50"] * 1000), "%.3f" % (p["p99"] * 1000)]
                + ["%.1f" % us(t) for t in sys.argv[5:9]]))' \
      "$json" "$n" "$hz" "$n_req" $((ou1 - ou0)) $((os1 - os0)) $((iu1 - iu0)) $((is1 - is0)) \
      | tee -a "$results" | awk -v r="$r" '{printf "round %s %-12s p50 %s ms  p99 %s ms  out usr/sys %s/%s µs  in usr/sys %s/%s µs\n", r, $1, $2, $3, $4, $5, $6, $7}'
  done
done
echo "medians over $rounds rounds at $rate req/s:"
python3 - "$results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, *values = line.split("\t")
    rows[name].append([float(v) for v in values])
for name, runs in rows.items():
    m = [statistics.median(col) for col in zip(*runs)]
    print(f"{name:12} p50 {m[0]:.3f} ms  p99 {m[1]:.3f} ms  out usr/sys {m[2]:.1f}/{m[3]:.1f} µs  in usr/sys {m[4]:.1f}/{m[5]:.1f} µs")
PY
