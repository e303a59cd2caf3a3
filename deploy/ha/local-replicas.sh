#!/usr/bin/env bash
# Three signet-cp replicas on one PostgreSQL, on this machine, with no containers: makes a
# PostgreSQL cluster in DIR (Debian's `postgresql` package: initdb and pg_ctl), a
# key-encryption key (DIR/ca.kek) the replicas share, starts the three replicas (the first
# makes the CA, sealed in the database, and the admin token; the others read the CA from
# the database), and prints the address list proxies take (`control_plane.address`).
# Ctrl-C (or SIGTERM) stops everything; DIR is kept, and running the script on it again
# starts the same mesh control plane.
#
#   deploy/ha/local-replicas.sh [DIR]          # default: a new temporary directory
#
# Binaries: signet-cp from SIGNET_BIN_DIR, else this repository's newest build
# (target/release or target/debug), else on PATH.
set -euo pipefail
dir=${1:-$(mktemp -d -t signet-ha-XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cp_bin=$(command -v signet-cp || true)
if [ -n "${SIGNET_BIN_DIR:-}" ]; then
  cp_bin=$SIGNET_BIN_DIR/signet-cp
else
  newest=$(ls -t "$here/target/release/signet-cp" "$here/target/debug/signet-cp" 2>/dev/null | head -1 || true)
  [ -n "$newest" ] && cp_bin=$newest
fi
[ -n "$cp_bin" ] || { echo "signet-cp not found: cargo build --release first" >&2; exit 1; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
  mkdir -p "$dir/pg-run"
  chown postgres: "$dir/pg-run"
  [ -d "$dir/pg" ] || { mkdir -p "$dir/pg"; chown postgres: "$dir/pg"; chmod 0700 "$dir/pg"; }
  chmod o+x "$dir"
else
  mkdir -p "$dir/pg-run"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
if [ ! -f "$dir/pg/PG_VERSION" ]; then
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg" -U signet --auth=trust -E UTF8 >/dev/null
fi
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg-run/pg.log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $dir/pg-run" start >/dev/null
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U signet signet 2>/dev/null || true
store="postgres://signet@127.0.0.1:$pg_port/signet"
echo "PostgreSQL     $store"

# The key that seals the CA in the database: the same for every replica, never in it.
if [ ! -f "$dir/ca.kek" ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$dir/ca.kek")
fi

pids=()
stop() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null || true
  echo "stopped; $dir is kept"
}
trap stop EXIT
trap 'exit 0' INT TERM

# Starts replica N in the background; sets grpcN, apiN, metricsN.
start_replica() {
  local n=$1
  mkdir -p "$dir/replica-$n"
  SIGNET_CP_STORE=$store "$cp_bin" --data-dir "$dir/replica-$n" --ca-kek-file "$dir/ca.kek" \
    --grpc-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    > "$dir/replica-$n.json" 2> "$dir/replica-$n.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$dir/replica-$n.json" ] && break; sleep 0.1; done
  [ -s "$dir/replica-$n.json" ] || { echo "replica $n did not start: $(tail -1 "$dir/replica-$n.log")" >&2; exit 1; }
  local addrs
  addrs=$(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["grpc"], d["api"], d["metrics"])' "$dir/replica-$n.json")
  read -r "grpc$n" "api$n" "metrics$n" <<< "$addrs"
}

start_replica 1
for n in 2 3; do
  # The operator's token, so each replica's meshctl.env carries it.
  mkdir -p "$dir/replica-$n"
  cp "$dir/replica-1/admin.token" "$dir/replica-$n/"
  start_replica "$n"
done
echo "replica 1      grpc $grpc1  api $api1  ready http://$metrics1/ready"
echo "replica 2      grpc $grpc2  api $api2  ready http://$metrics2/ready"
echo "replica 3      grpc $grpc3  api $api3  ready http://$metrics3/ready"
echo
echo "Proxies:       [control_plane] address = \"$grpc1,$grpc2,$grpc3\""
echo "               ca = \"$dir/replica-1/bundle.pem\""
echo "meshctl:       set -a; . $dir/replica-1/meshctl.env; set +a; meshctl status"
echo "Ctrl-C stops everything; $dir is kept."
wait
