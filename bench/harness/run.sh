#!/usr/bin/env bash
# run.sh - side-by-side benchmark of mTLS sidecar-proxy pairs on loopback.
#
#   load generator -> outbound sidecar (plain HTTP in, mTLS out)
#                  -> inbound sidecar (mTLS in, verifies client chain + identity, plain HTTP out)
#                  -> upstream (nginx, fixed 2-byte body)
# plus "direct" (load generator -> upstream): the physical floor.
#
# Every topology is started once, all run side by side; the measurements are interleaved
# (round r visits the topologies in an order rotated by r) so drift hits all of them equally.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
  cat <<EOF
Usage: $0 [options]
  --rounds N           interleaved rounds per measurement (default 3)
  --duration S         seconds per load run (default 10)
  --conns N            connections for max-throughput runs (default 64)
  --wrk-threads N      wrk threads for max-throughput runs (default 2)
  --rates LIST         fixed request rates (open loop) for latency runs (default 1000,5000)
  --lat-conns N        connections for fixed-rate runs (default 16)
  --workers LIST       sidecar worker counts; each sidecar runs once per count (default 1,2)
  --hs-clients N       parallel clients in the new-connection (handshake) test (default 2)
  --tests LIST         subset of thr,lat,hs (default thr,lat,hs)
  --only LIST          only these sidecars (default: all built-in + added); 'direct' always runs
  --sidecar NAME=CMD   add a sidecar topology (repeatable); see "Sidecar contract" below
  --fixed-workers NAME that sidecar ignores SC_WORKERS: run it once (repeatable; stunnel is built in)
  --base-port P        first sidecar port on 127.0.0.1 (default 18100; upstream uses P-20)
  --gate-pct X         before each run wait (up to --gate-wait s) until foreign CPU load < X% (default 10)
  --gate-wait S        (default 20)
  --retries N          repeat a run up to N times when foreign CPU during it was >= --contam-pct (default 1)
  --contam-pct X       (default 15)
  --lg-cpus LIST       pin the load generators to these CPUs (taskset list, e.g. 0); pair with
                       SIGNET_BENCH_SIDECAR_CPUS=1 for the adapters, to keep them off each other's core
  --nice N             run this script and everything it starts at nice N (e.g. -10 on a shared
                       machine, so co-tenant jobs at nice 0 disturb the measurements less; default 0)
  --no-install         do not apt-get/cargo install missing tools
  --out DIR            results directory (default \$SIGNET_BENCH_WORK or ~/.cache/signet-bench, /results/<timestamp>)
  -h, --help           this text

Built-in sidecars: nginx, haproxy, stunnel  (adapters in $HERE/sidecars/).

Sidecar contract: CMD is run twice, as 'CMD outbound' and 'CMD inbound', each in its own
process group, and must stay in the foreground until SIGTERM (exec the proxy). Environment:
  SC_ROLE          outbound | inbound
  SC_LISTEN_PORT   port to listen on, on 127.0.0.1 (outbound: plain HTTP/1.1; inbound: mTLS)
  SC_TARGET_PORT   port to forward to, on 127.0.0.1 (outbound: the inbound sidecar, mTLS;
                   inbound: the upstream app, plain HTTP/1.1)
  SC_CA            trust bundle (root CA PEM)
  SC_CERT SC_KEY   own leaf certificate / PKCS#8 key (PEM); SC_CHAIN = leaf+CA; SC_PEM = cert+key
  SC_SELF_ID       own SPIFFE ID       (spiffe://bench.local/ns/default/sa/<client|server>)
  SC_PEER_ID       SPIFFE ID the peer must present (inbound: allow only this client ID)
  SC_PEER_SA       peer service-account name; SC_PEER_DNS: peer's DNS SAN (<sa>.bench.local)
  SC_WORKERS       worker threads to use
  SC_RUNDIR        private scratch directory (configs, logs)
Keep-alive / connection reuse to the next hop is expected, as a real sidecar does.
Example: $0 --sidecar 'mesh=/path/to/mesh-adapter.sh' --only mesh,nginx --rounds 5
EOF
}

ROUNDS=3 DUR=10 CONNS=64 WRK_THREADS=2 RATES=1000,5000 LAT_CONNS=16 WORKERS=1,2 HS_CLIENTS=2
TESTS=thr,lat,hs ONLY="" INSTALL=1 OUT="" BASE_PORT=18100 GATE_PCT=10 GATE_WAIT=20 RETRIES=1 CONTAM_PCT=15 NICE=0
declare -A SIDECAR=( [nginx]="$HERE/sidecars/nginx.sh" [haproxy]="$HERE/sidecars/haproxy.sh" [stunnel]="$HERE/sidecars/stunnel.sh" )
SIDECAR_ORDER=(nginx haproxy stunnel)
declare -A FIXED=( [stunnel]=1 )
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift;; --duration) DUR=$2; shift;; --conns) CONNS=$2; shift;;
    --wrk-threads) WRK_THREADS=$2; shift;; --rates) RATES=$2; shift;; --lat-conns) LAT_CONNS=$2; shift;;
    --workers) WORKERS=$2; shift;; --hs-clients) HS_CLIENTS=$2; shift;; --tests) TESTS=$2; shift;;
    --only) ONLY=$2; shift;; --no-install) INSTALL=0;; --out) OUT=$2; shift;;
    --base-port) BASE_PORT=$2; shift;; --gate-pct) GATE_PCT=$2; shift;; --gate-wait) GATE_WAIT=$2; shift;;
    --retries) RETRIES=$2; shift;; --nice) NICE=$2; shift;; --lg-cpus) LG_CPUS=$2; shift;; --contam-pct) CONTAM_PCT=$2; shift;;
    --sidecar) n=${2%%=*}; c=${2#*=}; [ -n "$n" ] && [ "$n" != "$2" ] || { echo "bad --sidecar $2" >&2; exit 2; }
               [ -n "${SIDECAR[$n]+x}" ] || SIDECAR_ORDER+=("$n"); SIDECAR[$n]=$c; shift;;
    --fixed-workers) FIXED[$2]=1; shift;;
    -h|--help) usage; exit 0;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2;;
  esac; shift
done
WORK=${SIGNET_BENCH_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-bench}   # tools, PKI, results: never inside shared/
mkdir -p "$WORK"
OUT=${OUT:-$WORK/results/$(date +%Y%m%d-%H%M%S)}
[ "$NICE" != 0 ] && renice -n "$NICE" -p $$ >/dev/null
mkdir -p "$OUT/logs" "$OUT/run"
RAW=$OUT/raw.tsv; : > "$RAW"
PKI=$WORK/pki
export PATH=$WORK/tools/bin:$PATH
UP_PORT=$((BASE_PORT - 20))
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$OUT/run.log" >&2; }

# ---------------------------------------------------------------- install
need_install() { for b in nginx haproxy wrk h2load stunnel4 curl openssl python3; do command -v $b >/dev/null || return 0; done; return 1; }
if [ $INSTALL = 1 ]; then
  if need_install; then
    log "installing Debian packages"
    # keep package scripts from starting system nginx/haproxy services (we run our own instances)
    prc=0; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc=1; }
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy wrk nghttp2-client stunnel4 curl openssl python3 >/dev/null
    [ $prc = 1 ] && rm -f /usr/sbin/policy-rc.d
  fi
  if ! command -v oha >/dev/null; then
    log "building oha with cargo (a few minutes on 2 cores)"
    CARGO_TARGET_DIR=$WORK/cargo-target cargo install oha --locked --root "$WORK/tools" >"$OUT/logs/oha-build.log" 2>&1
  fi
fi
for b in nginx haproxy wrk stunnel oha curl openssl python3; do command -v $b >/dev/null || { echo "missing $b (run without --no-install)" >&2; exit 1; }; done
"$HERE/pki/gen.sh" "$PKI" >/dev/null

# ---------------------------------------------------------------- process control
PGIDS=()
LAST_PG=""
start_bg() {  # name cmd args...  -> sets LAST_PG; the process leads its own session/process group
  local name=$1; shift
  setsid "$@" >"$OUT/logs/$name.log" 2>&1 < /dev/null &
  LAST_PG=$!; PGIDS+=("$LAST_PG")
}
cleanup() {
  local g
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  local i alive
  for i in $(seq 50); do alive=0
    for g in "${PGIDS[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1; done
  for g in "${PGIDS[@]}"; do kill -0 -- "-$g" 2>/dev/null && kill -KILL -- "-$g" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
wait_port() { local i; for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

pg_pids() { ps -e -o pid=,pgid= | awk -v g="$1" '$2==g {print $1}'; }
pg_ticks() {  # utime+stime (clock ticks) summed over the process group
  local t=0 p s
  for p in $(pg_pids "$1"); do s=$(cat /proc/$p/stat 2>/dev/null) || continue; s=${s##*) }
    set -- $s; t=$((t + ${12} + ${13})); done; echo $t; }
pg_mem() {  # "rss_kb pss_kb" summed over the process group
  local r=0 q=0 p a b
  for p in $(pg_pids "$1"); do
    a=$(awk '/^VmRSS:/{print $2}' /proc/$p/status 2>/dev/null); b=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null)
    r=$((r + ${a:-0})); q=$((q + ${b:-0})); done; echo "$r $q"; }
HZ=$(getconf CLK_TCK); NCPU=$(nproc)
sys_stat() { awk '/^cpu /{print $2+$3+$4, $9; exit}' /proc/stat; }   # "user+nice+system steal" (ticks)
my_ticks() {  # CPU ticks of every process group this script started (sidecars + upstream)
  local t=0 p s; local -A want=(); for p in "${PGIDS[@]}"; do want[$p]=1; done
  while read -r p g; do [ -n "${want[$g]+x}" ] || continue
    s=$(cat /proc/$p/stat 2>/dev/null) || continue; s=${s##*) }; set -- $s; t=$((t + ${12} + ${13}))
  done < <(ps -e -o pid=,pgid=); echo $t; }
busy_pct() {  # machine-wide user+system CPU % over $1 s (nothing of ours is loaded when called)
  local a b; read -r a _ <<< "$(sys_stat)"; sleep $1; read -r b _ <<< "$(sys_stat)"
  awk -v d=$((b-a)) -v s=$1 -v hz=$HZ -v n=$NCPU 'BEGIN{printf "%.0f", d*100/(s*hz*n)}'; }
quiet_gate() {  # wait until foreign load is below GATE_PCT (or GATE_WAIT s passed); prints last reading
  local i b=0; for ((i=0; i*1 < GATE_WAIT; i++)); do b=$(busy_pct 0.5); [ "$b" -lt "$GATE_PCT" ] && break; sleep 0.5; done; echo $b; }
lg_run() {  # cpufile timeout cmd... : run a load generator, write its CPU ticks (user+sys) to cpufile
  local cf=$1 to=$2; shift 2; rm -f "$cf"
  [ -n "${LG_CPUS:-}" ] && set -- taskset -c "$LG_CPUS" "$@"
  CPUF=$cf timeout "$to" bash -c '"$@"; rc=$?; s=$(cat /proc/$$/stat); s=${s##*) }; set -- $s; echo $(( ${14} + ${15} )) > "$CPUF"; exit $rc' _ "$@"; }
MB_T0=0 MB_B0=0 MB_S0=0 MB_M0=0 LAST_FOREIGN=0
with_retries() {  # round test-label topo cmd... : rerun while foreign CPU load contaminated the run
  local r=$1 te=$2 t=$3 a; shift 3
  for ((a=1; a<=RETRIES+1; a++)); do
    LAST_FOREIGN=0; "$@"
    awk -v a=$LAST_FOREIGN -v c=$CONTAM_PCT 'BEGIN{exit !(a>=c)}' || break
    [ $a -le $RETRIES ] && log "   foreign CPU ${LAST_FOREIGN}% during r$r $te $t: repeating"
  done
  rec $r $te $t attempts $(( a > RETRIES+1 ? RETRIES+1 : a )); }
meas_begin() {  # round test topo : quiet gate, then snapshot machine counters
  rec $1 $2 $3 gate_busy_pct "$(quiet_gate)"
  MB_T0=$(date +%s.%N); read -r MB_B0 MB_S0 <<< "$(sys_stat)"; MB_M0=$(my_ticks); }
meas_end() {  # round test topo loadgen_ticks : foreign CPU (not ours, not the load generator) and steal during the run
  local t1 b1 s1 m1; t1=$(date +%s.%N); read -r b1 s1 <<< "$(sys_stat)"; m1=$(my_ticks)
  local cap; cap=$(awk -v a=$MB_T0 -v b=$t1 -v hz=$HZ -v n=$NCPU 'BEGIN{print (b-a)*hz*n}')
  local fp; fp=$(awk -v f=$(( (b1-MB_B0) - (m1-MB_M0) - ${4:-0} )) -v c=$cap 'BEGIN{v=f*100/c; if(v<0)v=0; printf "%.1f", v}')
  rec $1 $2 $3 foreign_pct $fp
  awk -v a=$fp -v b=$LAST_FOREIGN 'BEGIN{exit !(a>b)}' && LAST_FOREIGN=$fp
  rec $1 $2 $3 steal_pct $(awk -v f=$((s1-MB_S0)) -v c=$cap 'BEGIN{printf "%.1f", f*100/c}'); }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$RAW"; }   # round test topo key value

# ---------------------------------------------------------------- topology setup
IFS=, read -ra WLIST <<< "$WORKERS"
SEL=()
for n in "${SIDECAR_ORDER[@]}"; do
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$n,"* ]]; then continue; fi
  SEL+=("$n")
done
TOPOS=(direct)
declare -A OUTPORT INPORT PG_OUT PG_IN AUTHZ
port_free $UP_PORT || { echo "port $UP_PORT on 127.0.0.1 is in use (try --base-port)" >&2; exit 1; }
log "upstream: nginx on 127.0.0.1:$UP_PORT"
UP_PORT=$UP_PORT UP_RUNDIR=$OUT/run/upstream start_bg upstream "$HERE/upstream/nginx-upstream.sh"; UPG=$LAST_PG
wait_port $UP_PORT || { echo "upstream did not start" >&2; exit 1; }
OUTPORT[direct]=$UP_PORT
idx=0
for n in "${SEL[@]}"; do
  if [ -n "${FIXED[$n]+x}" ]; then ws=(${WLIST[-1]}); else ws=("${WLIST[@]}"); fi
  for w in "${ws[@]}"; do
    idx=$((idx+1)); t=$n; [ -n "${FIXED[$n]+x}" ] || t="$n/w$w"
    op=$((BASE_PORT + idx*10)); ip=$((op + 1)); OUTPORT[$t]=$op; INPORT[$t]=$ip; tn=${t//\//-}
    port_free $op && port_free $ip || { echo "port $op or $ip on 127.0.0.1 is in use (try --base-port)" >&2; exit 1; }
    SC_ROLE=inbound SC_LISTEN_PORT=$ip SC_TARGET_PORT=$UP_PORT SC_CA=$PKI/ca.crt \
      SC_CERT=$PKI/server.crt SC_KEY=$PKI/server.key SC_CHAIN=$PKI/server.chain.crt SC_PEM=$PKI/server.pem \
      SC_SELF_ID=spiffe://bench.local/ns/default/sa/server SC_PEER_ID=spiffe://bench.local/ns/default/sa/client \
      SC_PEER_SA=client SC_PEER_DNS=client.bench.local SC_WORKERS=$w SC_RUNDIR=$OUT/run/$tn-in \
      start_bg "$tn-in" bash -c "exec ${SIDECAR[$n]} inbound"; PG_IN[$t]=$LAST_PG
    SC_ROLE=outbound SC_LISTEN_PORT=$op SC_TARGET_PORT=$ip SC_CA=$PKI/ca.crt \
      SC_CERT=$PKI/client.crt SC_KEY=$PKI/client.key SC_CHAIN=$PKI/client.chain.crt SC_PEM=$PKI/client.pem \
      SC_SELF_ID=spiffe://bench.local/ns/default/sa/client SC_PEER_ID=spiffe://bench.local/ns/default/sa/server \
      SC_PEER_SA=server SC_PEER_DNS=server.bench.local SC_WORKERS=$w SC_RUNDIR=$OUT/run/$tn-out \
      start_bg "$tn-out" bash -c "exec ${SIDECAR[$n]} outbound"; PG_OUT[$t]=$LAST_PG
    wait_port $ip && wait_port $op || { echo "$t did not start; see $OUT/logs/$tn-*.log" >&2; exit 1; }
    TOPOS+=("$t")
  done
done

# smoke + security checks (a wrong client identity must be refused at the inbound sidecar)
for t in "${TOPOS[@]}"; do
  body=$(curl -s -m 5 "http://127.0.0.1:${OUTPORT[$t]}/" || true)
  [ "$body" = ok ] || { echo "$t: smoke request failed (got '$body')" >&2; exit 1; }
  [ "$t" = direct ] && continue
  ip=${INPORT[$t]}
  good=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert $PKI/ca.crt --cert $PKI/client.crt --key $PKI/client.key \
      --resolve server.bench.local:$ip:127.0.0.1 "https://server.bench.local:$ip/" || true)
  wrong=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert $PKI/ca.crt --cert $PKI/server.crt --key $PKI/server.key \
      --resolve server.bench.local:$ip:127.0.0.1 "https://server.bench.local:$ip/" || true)
  nocert=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert $PKI/ca.crt \
      --resolve server.bench.local:$ip:127.0.0.1 "https://server.bench.local:$ip/" || true)
  [ "$good" = 200 ] || { echo "$t: inbound refused the valid client ($good)" >&2; exit 1; }
  case $wrong in 200) AUTHZ[$t]="NO";; 403) AUTHZ[$t]="http-403";; *) AUTHZ[$t]="tls-reject";; esac
  case $nocert in 200) echo "$t: WARNING inbound accepted a client without certificate" >&2; AUTHZ[$t]+="/no-cert-ACCEPTED";; esac
  rec 0 check "$t" authz "${AUTHZ[$t]}"; rec 0 check "$t" nocert "$nocert"
done
log "topologies: ${TOPOS[*]}"

# idle memory (after one request each)
for t in "${TOPOS[@]}"; do
  [ "$t" = direct ] && continue
  read -r a b <<< "$(pg_mem ${PG_OUT[$t]})"; rec 0 idle "$t" rss_out_kb $a; rec 0 idle "$t" pss_out_kb $b
  read -r a b <<< "$(pg_mem ${PG_IN[$t]})";  rec 0 idle "$t" rss_in_kb $a;  rec 0 idle "$t" pss_in_kb $b
done

# versions / environment
{
  echo "date: $(date -Is)"; echo "kernel: $(uname -r)"; echo "cpu: $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}') x $(nproc)"
  echo "nginx: $(nginx -v 2>&1)"; echo "haproxy: $(haproxy -v | head -1)"; echo "stunnel: $(stunnel -version 2>&1 | head -1)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"; echo "oha: $(oha --version)"; echo "openssl: $(openssl version)"
  echo "h2load: $(h2load --version 2>/dev/null | head -1)"
  echo "params: nice=$NICE gate=${GATE_PCT}%/${GATE_WAIT}s retries=$RETRIES contam=${CONTAM_PCT}% rounds=$ROUNDS duration=${DUR}s conns=$CONNS wrk_threads=$WRK_THREADS rates=$RATES lat_conns=$LAT_CONNS workers=$WORKERS hs_clients=$HS_CLIENTS"
} > "$OUT/env.txt"

# warm-up: fill connection pools / session caches
for t in "${TOPOS[@]}"; do timeout 20 wrk -t1 -c$CONNS -d2s "http://127.0.0.1:${OUTPORT[$t]}/" >/dev/null 2>&1 || true; done

# ---------------------------------------------------------------- measurements
cpu_snap() { [ "$1" = direct ] && { echo "0 0"; return; }; echo "$(pg_ticks ${PG_OUT[$1]}) $(pg_ticks ${PG_IN[$1]})"; }
cpu_rec() {  # round test topo "before" "after" nrequests
  local r=$1 te=$2 t=$3 n=$6; [ "$t" = direct ] && return 0; [ "${n:-0}" -gt 0 ] 2>/dev/null || return 0
  read -r o0 i0 <<< "$4"; read -r o1 i1 <<< "$5"
  rec $r $te $t cpu_out_us_per_req $(awk -v d=$((o1-o0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.2f", d*1e6/hz/n}')
  rec $r $te $t cpu_in_us_per_req  $(awk -v d=$((i1-i0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.2f", d*1e6/hz/n}')
}
mem_sample() {  # round topo -> records peak under load
  [ "$2" = direct ] && return 0
  read -r a b <<< "$(pg_mem ${PG_OUT[$2]})"; read -r c d <<< "$(pg_mem ${PG_IN[$2]})"
  echo "$a $b $c $d"
}

run_thr() {  # round topo
  local r=$1 t=$2 url="http://127.0.0.1:${OUTPORT[$2]}/" f="$OUT/logs/thr-r$1-${2//\//-}.txt"
  local c0 c1 m1 m2; meas_begin $r thr $t; c0=$(cpu_snap $t)
  lg_run "$f.cpu" $((DUR+30)) wrk -t$WRK_THREADS -c$CONNS -d${DUR}s --latency "$url" > "$f" 2>&1 &
  local wp=$!
  sleep $(awk -v d=$DUR 'BEGIN{print d/3}'); m1=$(mem_sample $r $t)
  sleep $(awk -v d=$DUR 'BEGIN{print d/3}'); m2=$(mem_sample $r $t)
  wait $wp || true
  c1=$(cpu_snap $t); meas_end $r thr $t "$(cat "$f.cpu" 2>/dev/null || echo 0)"
  local rps n non2xx errs p50 p99
  rps=$(awk '/^Requests\/sec:/{print $2}' "$f"); n=$(awk '/requests in/{print $1}' "$f")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$f"); errs=$(awk '/Socket errors/{s=0; for(i=1;i<=NF;i++) if($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$f")
  p50=$(awk '$1=="50%"{print $2}' "$f"); p99=$(awk '$1=="99%"{print $2}' "$f")
  rec $r thr $t rps "${rps:-0}"; rec $r thr $t errors $(( ${non2xx:-0} + ${errs:-0} ))
  rec $r thr $t wrk_p50 "$p50"; rec $r thr $t wrk_p99 "$p99"
  cpu_rec $r thr $t "$c0" "$c1" "${n:-0}"
  if [ "$t" != direct ]; then
    read -r a b c d <<< "$m1"; read -r e f2 g h <<< "$m2"
    rec $r thr $t rss_out_kb $(( a>e ? a : e )); rec $r thr $t pss_out_kb $(( b>f2 ? b : f2 ))
    rec $r thr $t rss_in_kb  $(( c>g ? c : g )); rec $r thr $t pss_in_kb  $(( d>h ? d : h ))
  fi
  log "r$r thr $t: ${rps:-?} rps (errors ${non2xx:-0}+${errs:-0})"
}

oha_parse() {  # json-file -> "rps success p50 p99 p999 ok_count other_status errors"
  python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); s=d["summary"]; p=d.get("latencyPercentiles") or {}
sc=d.get("statusCodeDistribution") or {}; er=d.get("errorDistribution") or {}
ok=sc.get("200",0); other=sum(v for k,v in sc.items() if k!="200")
errs=sum(v for k,v in er.items() if "deadline" not in k)
f=lambda x: "%.4f"%(x*1000) if x is not None else "nan"
print("%.1f %.4f %s %s %s %d %d %d"%(s.get("requestsPerSec") or 0, s.get("successRate") or 0, f(p.get("p50")), f(p.get("p99")), f(p.get("p99.9")), ok, other, errs))
PY
}

run_lat() {  # round topo rate
  local r=$1 t=$2 q=$3 f="$OUT/logs/lat$3-r$1-${2//\//-}.json" c0 c1
  meas_begin $r lat$q $t; c0=$(cpu_snap $t)
  lg_run "$f.cpu" $((DUR+30)) oha -z ${DUR}s -q $q -c $LAT_CONNS --latency-correction --no-tui --output-format json \
      "http://127.0.0.1:${OUTPORT[$t]}/" > "$f" 2>"$f.err" || true
  c1=$(cpu_snap $t); meas_end $r lat$q $t "$(cat "$f.cpu" 2>/dev/null || echo 0)"
  read -r rps succ p50 p99 p999 ok other errs <<< "$(oha_parse "$f")"
  rec $r lat$q $t achieved_rps $rps; rec $r lat$q $t p50_ms $p50; rec $r lat$q $t p99_ms $p99; rec $r lat$q $t p999_ms $p999
  rec $r lat$q $t errors $((other + errs))
  cpu_rec $r lat$q $t "$c0" "$c1" "$ok"
  log "r$r lat@$q $t: p50 ${p50}ms p99 ${p99}ms p99.9 ${p999}ms (achieved $rps rps, errors $((other+errs)))"
}

run_hs() {  # round topo : new mTLS connection per request, straight at the inbound sidecar
  [ "$2" = direct ] && return 0
  local r=$1 t=$2 ip=${INPORT[$2]} tn=${2//\//-}
  # (a) full handshakes: openssl s_time -new (no session resumption), HS_CLIENTS in parallel
  local g0 g1 t0 t1 pids=() i n=0 k
  meas_begin $r hs_full $t; g0=$(pg_ticks ${PG_IN[$t]}); t0=$(date +%s.%N)
  for i in $(seq $HS_CLIENTS); do
    lg_run "$OUT/logs/hs-r$r-$tn-$i.cpu" $((DUR+30)) openssl s_time -connect 127.0.0.1:$ip -new -time $DUR -www / \
      -cert $PKI/client.crt -key $PKI/client.key -CAfile $PKI/ca.crt > "$OUT/logs/hs-r$r-$tn-$i.txt" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait $i || true; done
  t1=$(date +%s.%N); g1=$(pg_ticks ${PG_IN[$t]})
  meas_end $r hs_full $t "$(cat "$OUT"/logs/hs-r$r-$tn-*.cpu 2>/dev/null | awk '{s+=$1} END{print s+0}')"
  for i in $(seq $HS_CLIENTS); do
    k=$(awk '/connections in .* real seconds/{print $1}' "$OUT/logs/hs-r$r-$tn-$i.txt"); n=$((n + ${k:-0})); done
  rec $r hs_full $t conns_per_s $(awk -v n=$n -v a=$t0 -v b=$t1 'BEGIN{printf "%.1f", n/(b-a)}')
  [ $n -gt 0 ] && rec $r hs_full $t cpu_in_us_per_conn $(awk -v d=$((g1-g0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.1f", d*1e6/hz/n}')
  log "r$r hs_full $t: $n conns in $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.1f", b-a}')s"
  # (b) oha (rustls client, may resume TLS 1.3 sessions), no keep-alive, 8 concurrent connections
  local f="$OUT/logs/hs2-r$r-$tn.json"
  meas_begin $r hs_oha $t; g0=$(pg_ticks ${PG_IN[$t]})
  lg_run "$f.cpu" $((DUR+30)) oha -z ${DUR}s -c 8 --disable-keepalive --no-tui --output-format json \
     --cacert $PKI/ca.crt --cert $PKI/client.crt --key $PKI/client.key \
     --connect-to server.bench.local:$ip:127.0.0.1:$ip "https://server.bench.local:$ip/" > "$f" 2>"$f.err" || true
  g1=$(pg_ticks ${PG_IN[$t]}); meas_end $r hs_oha $t "$(cat "$f.cpu" 2>/dev/null || echo 0)"
  read -r rps succ p50 p99 p999 ok other errs <<< "$(oha_parse "$f")"
  rec $r hs_oha $t conns_per_s $rps; rec $r hs_oha $t p50_ms $p50; rec $r hs_oha $t p99_ms $p99
  rec $r hs_oha $t errors $((other + errs))
  [ "$ok" -gt 0 ] && rec $r hs_oha $t cpu_in_us_per_conn $(awk -v d=$((g1-g0)) -v n=$ok -v hz=$HZ 'BEGIN{printf "%.1f", d*1e6/hz/n}')
  log "r$r hs_oha $t: $rps conn/s p50 ${p50}ms"
}

rotated() {  # round -> topologies rotated by round
  local r=$1 n=${#TOPOS[@]} i; for ((i=0; i<n; i++)); do echo "${TOPOS[$(( (i + r) % n ))]}"; done; }

IFS=, read -ra RLIST <<< "$RATES"
for r in $(seq 1 $ROUNDS); do
  rec $r env - loadavg "$(cut -d' ' -f1 /proc/loadavg)"
  log "=== round $r/$ROUNDS (load avg $(cut -d' ' -f1-3 /proc/loadavg))"
  mapfile -t ORDER < <(rotated $r)
  if [[ ",$TESTS," == *",thr,"* ]]; then for t in "${ORDER[@]}"; do with_retries $r thr "$t" run_thr $r "$t"; done; fi
  if [[ ",$TESTS," == *",lat,"* ]]; then for q in "${RLIST[@]}"; do for t in "${ORDER[@]}"; do with_retries $r lat$q "$t" run_lat $r "$t" $q; done; done; fi
  if [[ ",$TESTS," == *",hs,"* ]]; then for t in "${ORDER[@]}"; do [ "$t" = direct ] || with_retries $r hs "$t" run_hs $r "$t"; done; fi
done

# memory after the load (idle again)
sleep 2
for t in "${TOPOS[@]}"; do
  [ "$t" = direct ] && continue
  read -r a b <<< "$(pg_mem ${PG_OUT[$t]})"; rec 0 post "$t" rss_out_kb $a; rec 0 post "$t" pss_out_kb $b
  read -r a b <<< "$(pg_mem ${PG_IN[$t]})";  rec 0 post "$t" rss_in_kb $a;  rec 0 post "$t" pss_in_kb $b
done

python3 "$HERE/summarize.py" "$OUT" | tee "$OUT/summary.md"
log "raw data: $OUT/raw.tsv  logs: $OUT/logs"
