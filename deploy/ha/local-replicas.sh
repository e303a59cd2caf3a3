#!/usr/bin/env bash
# Three signet-cp replicas on one PostgreSQL, on this machine, with no containers: makes a
# PostgreSQL cluster in DIR (Debian's `postgresql` package: initdb and pg_ctl), starts the
# first replica, gives the other two copies of its CA and operator credentials (until the
# CA's material lives in the database), starts them, and prints the address list proxies
# take (`control_plane.address`). Ctrl-C stops everything; DIR is kept.
#
#   deploy/ha/local-replicas.sh [DIR]          # default: a new temporary directory
#
# Binaries: signet-cp beside this script's repository build (target/release, else
# target/debug) or on PATH.
set -euo pipefail
dir=${1:-$(mktemp -d -t signet-ha-XXXXXX)}
mkdir -p "$dir"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cp_bin=$(command -v signet-cp || true)
for b in "$here/target/release/signet-cp" "$here/target/debug/signet-cp"; do
  if [ -x "$b" ]; then cp_bin=$b; break; fi
done
[ -n "$cp_bin" ] || { echo "signet-cp not found: cargo build --release first" >&2; exit 1; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
  chown postgres: "$dir"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
if [ ! -d "$dir/pg" ]; then
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg" -U signet --auth=trust -E UTF8 >/dev/null
fi
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U signet signet 2>/dev/null || true
store="postgres://signet@127.0.0.1:$pg_port/signet"
echo "PostgreSQL     $store"

pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null || true
}
trap stop EXIT INT TERM

start_replica() {
  local n=$1
  mkdir -p "$dir/replica-$n"
  "$cp_bin" --data-dir "$dir/replica-$n" --store "$store" \
    --grpc-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    > "$dir/replica-$n.json" 2> "$dir/replica-$n.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$dir/replica-$n.json" ] && break; sleep 0.1; done
  [ -s "$dir/replica-$n.json" ] || { echo "replica $n did not start: $(tail -1 "$dir/replica-$n.log")" >&2; exit 1; }
  python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["grpc"], d["api"], d["metrics"])' "$dir/replica-$n.json"
}

read -r grpc1 api1 metrics1 < <(start_replica 1)
for n in 2 3; do
  mkdir -p "$dir/replica-$n"
  cp -r "$dir/replica-1/ca" "$dir/replica-$n/"
  cp "$dir/replica-1/admin.token" "$dir/replica-1/operators.cedar" "$dir/replica-1/bundle.pem" "$dir/replica-$n/"
done
read -r grpc2 api2 metrics2 < <(start_replica 2)
read -r grpc3 api3 metrics3 < <(start_replica 3)
echo "replica 1      grpc $grpc1  api $api1  ready http://$metrics1/ready"
echo "replica 2      grpc $grpc2  api $api2  ready http://$metrics2/ready"
echo "replica 3      grpc $grpc3  api $api3  ready http://$metrics3/ready"
echo
echo "Proxies:       [control_plane] address = \"$grpc1,$grpc2,$grpc3\""
echo "               ca = \"$dir/replica-1/bundle.pem\""
echo "meshctl:       set -a; . $dir/replica-1/meshctl.env; set +a; meshctl status"
echo "Ctrl-C stops everything; $dir is kept."
wait
