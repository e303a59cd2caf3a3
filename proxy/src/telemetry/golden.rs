//! Golden signals: request latency histograms and byte counts per (direction, peer
//! service, route, status class), and TCP connection durations and bytes per (direction,
//! peer service). Label values come from bounded sets: peer services the registry or the
//! configuration names, routes the traffic settings name, five status classes. Whatever
//! falls outside (an unregistered caller, more series than [`MAX_SERIES`]) is counted under
//! [`UNKNOWN`], so no request can add a series of its own choosing.

pub use signet_metrics::{BUCKETS, Histograms, MAX_SERIES, UNKNOWN};

/// The golden signals of one proxy.
#[derive(Debug)]
pub struct Golden {
    /// HTTP requests: `direction`, `peer`, `route`, `class`.
    pub http: Histograms,
    /// TCP connections: `direction`, `peer`.
    pub tcp: Histograms,
}

impl Default for Golden {
    fn default() -> Self {
        Self {
            http: Histograms::new(&["direction", "peer", "route", "class"], &["peer", "route"]),
            tcp: Histograms::new(&["direction", "peer"], &["peer"]),
        }
    }
}

impl Golden {
    pub fn render(&self, out: &mut String) {
        self.http.render(
            out,
            (
                "signet_proxy_http_request_duration_seconds",
                "Time from a request's arrival to the end of its response, by direction, peer service, route and status class.",
            ),
            Some([
                (
                    "signet_proxy_http_request_bytes_total",
                    "Request body bytes, by direction, peer service, route and status class.",
                ),
                (
                    "signet_proxy_http_response_bytes_total",
                    "Response body bytes, by direction, peer service, route and status class.",
                ),
            ]),
        );
        self.tcp.render(
            out,
            (
                "signet_proxy_tcp_connection_duration_seconds",
                "How long proxied TCP connections stayed open, by direction and peer service.",
            ),
            Some([
                (
                    "signet_proxy_tcp_received_bytes_total",
                    "Bytes received from the connecting side of proxied TCP connections.",
                ),
                (
                    "signet_proxy_tcp_sent_bytes_total",
                    "Bytes sent to the connecting side of proxied TCP connections.",
                ),
            ]),
        );
    }
}
