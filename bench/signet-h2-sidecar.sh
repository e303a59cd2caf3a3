#!/usr/bin/env bash
# signet-proxy multiplexing every request over one HTTP/2 connection between the proxies (for
# comparison with the default, which keeps HTTP/1.1 requests on HTTP/1.1 keep-alive).
export SIGNET_BENCH_UPSTREAM_HTTP=http2
exec "$(dirname "${BASH_SOURCE[0]}")/signet-sidecar.sh" "$@"
