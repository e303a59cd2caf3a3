//! Golden signals: request latency histograms and byte counts per (direction, peer
//! service, route, status class), and TCP connection durations and bytes per (direction,
//! peer service). Label values come from bounded sets: peer services the registry or the
//! configuration names, routes the traffic settings name, five status classes. Whatever
//! falls outside (an unregistered caller, more series than [`MAX_SERIES`]) is counted under
//! [`UNKNOWN`], so no request can add a series of its own choosing.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (documented in docs/observability.md).
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Most series one family holds; later label sets are counted as [`UNKNOWN`].
pub const MAX_SERIES: usize = 1000;

/// The label value of whatever is not known by name.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug)]
struct Series {
    labels: Box<[Box<str>]>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_nanos: u128,
    bytes_in: u64,
    bytes_out: u64,
}

impl Series {
    fn new(labels: &[&str]) -> Self {
        Self {
            labels: labels.iter().map(|l| Box::from(*l)).collect(),
            buckets: [0; BUCKETS.len()],
            count: 0,
            sum_nanos: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    fn is(&self, labels: &[&str]) -> bool {
        self.labels.len() == labels.len() && self.labels.iter().zip(labels).all(|(a, b)| &**a == *b)
    }
}

/// A histogram family with two byte counters per series (HTTP: request and response
/// bodies; TCP: received from and sent to the side that connected).
#[derive(Debug)]
pub struct Histograms {
    labels: &'static [&'static str],
    series: Mutex<Vec<Series>>,
}

impl Histograms {
    pub const fn new(labels: &'static [&'static str]) -> Self {
        Self {
            labels,
            series: Mutex::new(Vec::new()),
        }
    }

    /// Counts one observation of `took`, with `bytes_in` received and `bytes_out` sent.
    pub fn observe(&self, labels: &[&str], took: Duration, bytes_in: u64, bytes_out: u64) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let index = match series.iter().position(|s| s.is(labels)) {
            Some(i) => i,
            None if series.len() < MAX_SERIES => {
                series.push(Series::new(labels));
                series.len() - 1
            }
            None => {
                // Full: the same labels with every free-form value made `unknown`.
                let collapsed: Vec<&str> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if self.is_free(i) { UNKNOWN } else { *v })
                    .collect();
                match series.iter().position(|s| s.is(&collapsed)) {
                    Some(i) => i,
                    None => {
                        series.push(Series::new(&collapsed));
                        series.len() - 1
                    }
                }
            }
        };
        let s = &mut series[index];
        let seconds = took.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|le| seconds <= *le) {
            s.buckets[b] += 1;
        }
        s.count += 1;
        s.sum_nanos += took.as_nanos();
        s.bytes_in += bytes_in;
        s.bytes_out += bytes_out;
    }

    /// Labels whose values come from outside the proxy's own fixed sets.
    fn is_free(&self, i: usize) -> bool {
        matches!(self.labels.get(i), Some(&("peer" | "route")))
    }

    /// How many series there are (tests bound it).
    pub fn len(&self) -> usize {
        self.series.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Observations counted under `labels` (tests read it).
    pub fn count(&self, labels: &[&str]) -> u64 {
        self.series.lock().map_or(0, |series| {
            series.iter().find(|s| s.is(labels)).map_or(0, |s| s.count)
        })
    }

    /// The Prometheus text of the histogram `name` and the counters `bytes` (received,
    /// sent), each with its help.
    pub fn render(&self, out: &mut String, name: (&str, &str), bytes: [(&str, &str); 2]) {
        let Ok(series) = self.series.lock() else {
            return;
        };
        let mut sorted: Vec<&Series> = series.iter().collect();
        sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
        let (hist, help) = name;
        let _ = writeln!(out, "# HELP {hist} {help}\n# TYPE {hist} histogram");
        for s in &sorted {
            let labels = self.pairs(s);
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(out, "{hist}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{hist}_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "{hist}_sum{{{labels}}} {}", s.sum_nanos as f64 / 1e9);
            let _ = writeln!(out, "{hist}_count{{{labels}}} {}", s.count);
        }
        for (which, (counter, help)) in bytes.iter().enumerate() {
            let _ = writeln!(out, "# HELP {counter} {help}\n# TYPE {counter} counter");
            for s in &sorted {
                let value = if which == 0 { s.bytes_in } else { s.bytes_out };
                let _ = writeln!(out, "{counter}{{{}}} {value}", self.pairs(s));
            }
        }
    }

    fn pairs(&self, s: &Series) -> String {
        self.labels
            .iter()
            .zip(s.labels.iter())
            .map(|(k, v)| format!("{k}=\"{}\"", crate::metrics::escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

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
            http: Histograms::new(&["direction", "peer", "route", "class"]),
            tcp: Histograms::new(&["direction", "peer"]),
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
            [
                (
                    "signet_proxy_http_request_bytes_total",
                    "Request body bytes, by direction, peer service, route and status class.",
                ),
                (
                    "signet_proxy_http_response_bytes_total",
                    "Response body bytes, by direction, peer service, route and status class.",
                ),
            ],
        );
        self.tcp.render(
            out,
            (
                "signet_proxy_tcp_connection_duration_seconds",
                "How long proxied TCP connections stayed open, by direction and peer service.",
            ),
            [
                (
                    "signet_proxy_tcp_received_bytes_total",
                    "Bytes received from the connecting side of proxied TCP connections.",
                ),
                (
                    "signet_proxy_tcp_sent_bytes_total",
                    "Bytes sent to the connecting side of proxied TCP connections.",
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_in_seconds() {
        let h = Histograms::new(&["direction", "peer", "route", "class"]);
        let l = ["inbound", "frontend", "default", "2xx"];
        h.observe(&l, Duration::from_micros(800), 10, 20);
        h.observe(&l, Duration::from_millis(20), 0, 5);
        h.observe(&l, Duration::from_secs(100), 0, 0);
        let mut out = String::new();
        h.render(&mut out, ("d", "h"), [("i", "h"), ("o", "h")]);
        let p = "direction=\"inbound\",peer=\"frontend\",route=\"default\",class=\"2xx\"";
        for line in [
            format!("d_bucket{{{p},le=\"0.001\"}} 1"),
            format!("d_bucket{{{p},le=\"0.01\"}} 1"),
            format!("d_bucket{{{p},le=\"0.025\"}} 2"),
            format!("d_bucket{{{p},le=\"60\"}} 2"),
            format!("d_bucket{{{p},le=\"+Inf\"}} 3"),
            format!("d_count{{{p}}} 3"),
            format!("d_sum{{{p}}} 100.0208"),
            format!("i{{{p}}} 10"),
            format!("o{{{p}}} 25"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }

    #[test]
    fn series_stay_bounded_whatever_the_label_values() {
        let h = Histograms::new(&["direction", "peer", "route", "class"]);
        for i in 0..5_000 {
            let peer = format!("peer-{i}");
            let route = format!("route-{}", i % 7);
            h.observe(&["inbound", &peer, &route, "2xx"], Duration::ZERO, 0, 0);
        }
        assert_eq!(h.len(), MAX_SERIES + 1);
        assert_eq!(
            h.count(&["inbound", UNKNOWN, UNKNOWN, "2xx"]),
            5_000 - MAX_SERIES as u64
        );
        // Fixed labels keep their values when the rest collapse.
        h.observe(&["outbound", "x", "y", "5xx"], Duration::ZERO, 0, 0);
        assert_eq!(h.count(&["outbound", UNKNOWN, UNKNOWN, "5xx"]), 1);
    }
}
