#!/usr/bin/env bash
# Sidecar adapter: signet-proxy, for the side-by-side harness (bench/harness/run.sh; contract in
# bench/harness/sidecars/TEMPLATE.sh). Usage: signet-sidecar.sh outbound|inbound
#
# inbound:  mTLS on SC_LISTEN_PORT, a Cedar policy admits only SC_PEER_ID (connect and every
#           request), plain HTTP/1.1 to the app on SC_TARGET_PORT.
# outbound: plain HTTP/1.1 on SC_LISTEN_PORT, mTLS to SC_TARGET_PORT, the server must present
#           SC_PEER_ID.
set -euo pipefail
role=$1; d=$SC_RUNDIR; mkdir -p "$d/policies"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${SIGNET_PROXY_BIN:-$here/../target/release/signet-proxy}
sa=${SC_SELF_ID##*/}
cat > "$d/policies/bench.cedar" <<EOC
@id("only-the-bench-peer")
permit (principal == Mesh::Workload::"$SC_PEER_ID", action, resource);
EOC
if [ "$role" = outbound ]; then
  outbound="[[outbound]]
service = \"server\"
listen = \"127.0.0.1:$SC_LISTEN_PORT\"
endpoints = [\"127.0.0.1:$SC_TARGET_PORT\"]
identities = [\"$SC_PEER_ID\"]
upstream_http = \"${SIGNET_BENCH_UPSTREAM_HTTP:-same-as-app}\""
  inbound_listen=127.0.0.1:0; app=127.0.0.1:9
else
  outbound=""; inbound_listen=127.0.0.1:$SC_LISTEN_PORT; app=127.0.0.1:$SC_TARGET_PORT
fi
cat > "$d/signet.toml" <<EOC
[service]
name = "$sa"
namespace = "default"

[identity]
cert = "$SC_CERT"
key = "$SC_KEY"
bundle = "$SC_CA"

[policy]
dir = "$d/policies"

[inbound]
listen = "$inbound_listen"
app = "$app"

[admin]
listen = "127.0.0.1:0"

$outbound
EOC
if [ "${SIGNET_BENCH_SHADOW:-0}" = 1 ]; then
  # Shadow mode: a candidate that agrees with the enforced policy, so every connection and
  # request costs one more decision and nothing else (no disagreement to record). By default
  # its condition reads nothing request-specific (a cached lookup per request);
  # SIGNET_BENCH_SHADOW_WHEN replaces it, e.g. with one reading the path (a Cedar evaluation
  # per request).
  mkdir -p "$d/shadow"
  cat > "$d/shadow/candidate.cedar" <<EOC2
@id("candidate-bench-peer")
permit (principal == Mesh::Workload::"$SC_PEER_ID", action, resource)
when { ${SIGNET_BENCH_SHADOW_WHEN:-principal.namespace == "default"} };
EOC2
  sed -i "s|^dir = \"$d/policies\"|&\nshadow_dir = \"$d/shadow\"|" "$d/signet.toml"
fi
if [ "${SIGNET_BENCH_AUDIT:-0}" = 1 ]; then
  # Every decision recorded (connect and each request), signed spool in the run directory.
  cat >> "$d/signet.toml" <<EOC

[audit]
dir = "$d/audit"
sample_allows = 1
EOC
fi
if [ "${SIGNET_BENCH_SPLIT:-0}" = 1 ] && [ "$role" = outbound ]; then
  # A route splitting 90/10 between two subsets (both select the one upstream endpoint, so
  # every request is answered): the per-request subset draw and per-subset balancing.
  sed -i "s|^endpoints = \[\"127.0.0.1:$SC_TARGET_PORT\"\]|endpoints = [{ address = \"127.0.0.1:$SC_TARGET_PORT\", labels = { version = \"v1\", track = \"stable\" } }]|" "$d/signet.toml"
  cat > "$d/traffic.yaml" <<EOC
services:
  - service: server
    subsets:
      - {name: v1, labels: {version: v1}}
      - {name: stable, labels: {track: stable}}
    routes:
      - name: all
        split: [{subset: v1, weight: 90}, {subset: stable, weight: 10}]
EOC
  cat >> "$d/signet.toml" <<EOC

[traffic]
file = "$d/traffic.yaml"
EOC
fi
if [ -n "${SIGNET_BENCH_TRACE:-}" ]; then
  # Spans for this share of new traces, exported over OTLP/HTTP to bench/otlp-sink.py.
  cat >> "$d/signet.toml" <<EOC

[tracing]
otlp_endpoint = "http://127.0.0.1:${SIGNET_BENCH_OTLP_PORT:?}"
protocol = "http/protobuf"
sample_ratio = $SIGNET_BENCH_TRACE
EOC
fi
if [ "${SIGNET_BENCH_ACCESS_LOG:-0}" = 1 ]; then
  # A JSON access-log line per request, to a file in the run directory.
  cat >> "$d/signet.toml" <<EOC

[access_log]
path = "$d/access.log"
format = "json"
EOC
fi
export RUST_LOG=${RUST_LOG:-warn}
# SIGNET_BENCH_SIDECAR_CPUS (e.g. 1) pins the proxy, so the load generator can have the other
# core to itself (see run.sh --lg-cpus).
pin=()
[ -n "${SIGNET_BENCH_SIDECAR_CPUS:-}" ] && pin=(taskset -c "$SIGNET_BENCH_SIDECAR_CPUS")
exec "${pin[@]}" "$bin" --config "$d/signet.toml" --workers "$SC_WORKERS" > "$d/stdout.log" 2> "$d/stderr.log"
