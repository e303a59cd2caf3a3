//! Prometheus text metrics shared by the proxy and the control plane: counter families keyed
//! by label values, and histogram families whose label values are bounded (whatever falls
//! outside the bound is counted under [`UNKNOWN`], so no caller can add series of its own
//! choosing).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// A counter family keyed by label values.
#[derive(Debug, Default)]
pub struct Family {
    /// Each series' label values and count, in first-seen order. A family holds tens of
    /// series, so a scan that allocates nothing beats a map keyed by owned strings on the
    /// request path.
    values: Mutex<Vec<(Box<[String]>, u64)>>,
}

fn same_labels(series: &[String], labels: &[&str]) -> bool {
    series.len() == labels.len() && series.iter().zip(labels).all(|(a, b)| a == b)
}

impl Family {
    /// Adds one to the series with `labels`.
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    /// Adds `n` to the series with `labels`.
    pub fn add(&self, labels: &[&str], n: u64) {
        let Ok(mut values) = self.values.lock() else {
            return;
        };
        match values
            .iter_mut()
            .find(|(series, _)| same_labels(series, labels))
        {
            Some((_, count)) => *count += n,
            None => values.push((labels.iter().map(|l| (*l).to_owned()).collect(), n)),
        }
    }

    /// The current value of one series (tests read it).
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.values
            .lock()
            .ok()
            .and_then(|values| {
                values
                    .iter()
                    .find(|(series, _)| same_labels(series, labels))
                    .map(|(_, count)| *count)
            })
            .unwrap_or(0)
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &[&str]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let Ok(values) = self.values.lock() else {
            return;
        };
        let mut sorted: Vec<&(Box<[String]>, u64)> = values.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (values, count) in sorted {
            let pairs: Vec<String> = labels
                .iter()
                .zip(values.iter())
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {count}", pairs.join(","));
        }
    }
}

/// A label value escaped for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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

/// Writes one metric family of `kind` (`counter`, `gauge`): its help, its type, and each
/// series as its label text (`{a="b"}`, or empty) and value.
pub fn family<L: std::fmt::Display, V: std::fmt::Display>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    series: &[(L, V)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in series {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// One histogram series, copied out.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub labels: Vec<String>,
    /// Observations per bucket of [`BUCKETS`], then those above the last bound.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
    pub bytes: [u64; 2],
}

/// The `q` quantile (0 to 1) of observations counted per bucket of [`BUCKETS`] (plus one
/// overflow bucket), interpolated linearly inside the bucket it falls in, as Prometheus's
/// `histogram_quantile` does; `None` without observations. Above the last bound it is that
/// bound.
pub fn quantile(q: f64, buckets: &[u64]) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        let upto = below + n;
        if (upto as f64) >= rank && *n > 0 {
            let Some(upper) = BUCKETS.get(i) else {
                return BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let within = (rank - below as f64) / *n as f64;
            return Some(lower + (upper - lower) * within);
        }
        below = upto;
    }
    BUCKETS.last().copied()
}

/// A histogram family with two byte counters per series (HTTP: request and response
/// bodies; TCP: received from and sent to the side that connected).
#[derive(Debug)]
pub struct Histograms {
    labels: &'static [&'static str],
    /// The labels whose values come from outside the process's own fixed sets: these are
    /// the ones made [`UNKNOWN`] past [`MAX_SERIES`].
    free: &'static [&'static str],
    series: Mutex<Vec<Series>>,
}

impl Histograms {
    /// A family with `labels`, of which `free` take values from outside (collapsed to
    /// [`UNKNOWN`] past the bound).
    pub const fn new(labels: &'static [&'static str], free: &'static [&'static str]) -> Self {
        Self {
            labels,
            free,
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

    fn is_free(&self, i: usize) -> bool {
        self.labels.get(i).is_some_and(|l| self.free.contains(l))
    }

    /// Every series as it stands: label values, per-bucket counts (not cumulative; the
    /// last entry counts what exceeded every bound), count, sum in seconds, and the two byte
    /// counters.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        self.series.lock().map_or_else(
            |_| Vec::new(),
            |series| {
                series
                    .iter()
                    .map(|s| {
                        let mut buckets = s.buckets.to_vec();
                        buckets.push(s.count - s.buckets.iter().sum::<u64>());
                        Snapshot {
                            labels: s.labels.iter().map(|l| l.to_string()).collect(),
                            buckets,
                            count: s.count,
                            sum_seconds: s.sum_nanos as f64 / 1e9,
                            bytes: [s.bytes_in, s.bytes_out],
                        }
                    })
                    .collect()
            },
        )
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
    pub fn render(&self, out: &mut String, name: (&str, &str), bytes: Option<[(&str, &str); 2]>) {
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
        for (which, (counter, help)) in bytes.iter().flatten().enumerate() {
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
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_in_seconds() {
        let h = Histograms::new(&["direction", "peer", "route", "class"], &["peer", "route"]);
        let l = ["inbound", "frontend", "default", "2xx"];
        h.observe(&l, Duration::from_micros(800), 10, 20);
        h.observe(&l, Duration::from_millis(20), 0, 5);
        h.observe(&l, Duration::from_secs(100), 0, 0);
        let mut out = String::new();
        h.render(&mut out, ("d", "h"), Some([("i", "h"), ("o", "h")]));
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
    fn quantiles_interpolate_inside_their_bucket() {
        let h = Histograms::new(&["a"], &[]);
        for _ in 0..90 {
            h.observe(&["x"], Duration::from_micros(1_500), 0, 0);
        }
        for _ in 0..10 {
            h.observe(&["x"], Duration::from_millis(40), 0, 0);
        }
        h.observe(&["y"], Duration::from_secs(100), 0, 0);
        let snap = h.snapshot();
        let x = snap.iter().find(|s| s.labels == ["x"]).unwrap();
        assert_eq!(x.count, 100);
        assert_eq!(x.buckets.len(), BUCKETS.len() + 1);
        // p50: rank 50 of 90 in (1 ms, 2.5 ms].
        let p50 = quantile(0.5, &x.buckets).unwrap();
        assert!((p50 - (0.001 + 0.0015 * 50.0 / 90.0)).abs() < 1e-9, "{p50}");
        // p95: rank 95, the 5th of 10 in (25 ms, 50 ms].
        let p95 = quantile(0.95, &x.buckets).unwrap();
        assert!((p95 - 0.0375).abs() < 1e-9, "{p95}");
        let y = snap.iter().find(|s| s.labels == ["y"]).unwrap();
        assert_eq!(y.buckets.last(), Some(&1));
        assert_eq!(quantile(0.99, &y.buckets), Some(60.0));
        assert_eq!(quantile(0.5, &[0; 16]), None);
    }

    #[test]
    fn series_stay_bounded_whatever_the_label_values() {
        let h = Histograms::new(&["direction", "peer", "route", "class"], &["peer", "route"]);
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
