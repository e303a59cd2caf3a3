//! Golden signals gathered from the proxies' heartbeats, for `meshctl stats`: each proxy
//! reports its request histograms (cumulative since it started); the book keeps a spaced
//! history per proxy instance and answers, over a window, per service or per caller ->
//! service edge: requests, rate, success rate and latency quantiles. Inbound series are
//! used (the served side's view), as `linkerd viz stat` does. No Prometheus needed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::server::pb;

/// Longest window answered.
pub const MAX_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Samples kept per proxy are at least this far apart (the newest is always kept).
const SPACING: Duration = Duration::from_secs(5);
/// Most series kept from one heartbeat.
pub const MAX_SERIES: usize = 256;

#[derive(Debug)]
struct Sample {
    at: Instant,
    stats: Arc<Vec<pb::TrafficStats>>,
}

#[derive(Debug)]
struct History {
    service: String,
    namespace: String,
    /// Oldest first; the last is the newest report.
    samples: VecDeque<Sample>,
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// One row per service.
    Service,
    /// One row per caller -> service edge.
    Edge,
}

/// One row of golden signals over the window.
pub use crate::model::StatsRow as Row;

/// The book.
#[derive(Debug, Default)]
pub struct StatsBook {
    by_instance: Mutex<HashMap<String, History>>,
}

fn key(s: &pb::TrafficStats) -> (&str, &str, &str, &str) {
    (&s.direction, &s.peer, &s.route, &s.class)
}

#[derive(Debug, Default)]
struct Tally {
    proxies: usize,
    requests: u64,
    failures: u64,
    rate: f64,
    buckets: Vec<u64>,
}

impl StatsBook {
    /// Records what `instance` (of `service` in `namespace`) reported now.
    pub fn record(
        &self,
        instance: &str,
        (service, namespace): (&str, &str),
        mut stats: Vec<pb::TrafficStats>,
    ) {
        self.record_at(
            instance,
            (service, namespace),
            {
                stats.truncate(MAX_SERIES);
                stats
            },
            Instant::now(),
        );
    }

    fn record_at(
        &self,
        instance: &str,
        (service, namespace): (&str, &str),
        stats: Vec<pb::TrafficStats>,
        at: Instant,
    ) {
        let Ok(mut book) = self.by_instance.lock() else {
            return;
        };
        let history = book.entry(instance.to_owned()).or_insert_with(|| History {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            samples: VecDeque::new(),
        });
        let sample = Sample {
            at,
            stats: Arc::new(stats),
        };
        // A newest sample that came less than SPACING after the one before it is only
        // provisional: the next report replaces it.
        let n = history.samples.len();
        if n >= 2
            && history.samples[n - 1]
                .at
                .duration_since(history.samples[n - 2].at)
                < SPACING
        {
            history.samples[n - 1] = sample;
        } else {
            history.samples.push_back(sample);
        }
        while history
            .samples
            .front()
            .is_some_and(|s| at.duration_since(s.at) > MAX_WINDOW + SPACING)
        {
            history.samples.pop_front();
        }
    }

    /// Forgets instances that left the registry.
    pub fn forget(&self, instances: &[String]) {
        if let Ok(mut book) = self.by_instance.lock() {
            for i in instances {
                book.remove(i);
            }
        }
    }

    /// Inbound requests each proxy instance of `service` reported over the last `window`
    /// (instances with fewer than two reports in it count nothing yet).
    pub fn inbound_by_instance(&self, service: &str, window: Duration) -> Vec<(String, u64)> {
        let now = Instant::now();
        let Ok(book) = self.by_instance.lock() else {
            return Vec::new();
        };
        book.iter()
            .filter(|(_, h)| h.service == service)
            .filter_map(|(instance, h)| {
                let latest = h.samples.back()?;
                let since = now.checked_sub(window);
                let base = h
                    .samples
                    .iter()
                    .rev()
                    .find(|s| since.is_some_and(|t| s.at <= t))
                    .or(h.samples.front())
                    .filter(|b| b.at < latest.at)?;
                let count = |stats: &[pb::TrafficStats]| -> u64 {
                    stats
                        .iter()
                        .filter(|s| s.direction == "inbound")
                        .map(|s| s.count)
                        .sum()
                };
                let (now_n, then_n) = (count(&latest.stats), count(&base.stats));
                // A restart in the window counts from zero.
                let n = if now_n >= then_n {
                    now_n - then_n
                } else {
                    now_n
                };
                Some((instance.clone(), n))
            })
            .collect()
    }

    /// The rows over the last `window`, grouped `by`, for `service` only when given.
    pub fn rows(&self, window: Duration, by: By, service: Option<&str>) -> Vec<Row> {
        self.rows_at(window, by, service, Instant::now())
    }

    fn rows_at(&self, window: Duration, by: By, only: Option<&str>, now: Instant) -> Vec<Row> {
        let Ok(book) = self.by_instance.lock() else {
            return Vec::new();
        };
        let mut tallies: BTreeMap<(String, String, Option<String>), Tally> = BTreeMap::new();
        for history in book.values() {
            if only.is_some_and(|s| s != history.service) {
                continue;
            }
            let service_key = (history.service.clone(), history.namespace.clone(), None);
            let Some(latest) = history.samples.back() else {
                continue;
            };
            // The base: the newest sample at least `window` old, else the oldest one.
            let since = now.checked_sub(window);
            let base = history
                .samples
                .iter()
                .rev()
                .find(|s| since.is_some_and(|t| s.at <= t))
                .or(history.samples.front())
                .filter(|b| b.at < latest.at);
            let Some(base) = base else {
                tallies.entry(service_key).or_default().proxies += 1;
                continue;
            };
            let elapsed = latest.at.duration_since(base.at).as_secs_f64();
            let before: HashMap<_, &pb::TrafficStats> =
                base.stats.iter().map(|s| (key(s), s)).collect();
            let mut counted_service = false;
            for now_s in latest.stats.iter().filter(|s| s.direction == "inbound") {
                let was = before.get(&key(now_s)).filter(|b| b.count <= now_s.count);
                let count = now_s.count - was.map_or(0, |b| b.count);
                let buckets: Vec<u64> = now_s
                    .buckets
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        n.saturating_sub(was.and_then(|b| b.buckets.get(i)).copied().unwrap_or(0))
                    })
                    .collect();
                let k = match by {
                    By::Service => service_key.clone(),
                    By::Edge => (
                        history.service.clone(),
                        history.namespace.clone(),
                        Some(now_s.peer.clone()),
                    ),
                };
                let t = tallies.entry(k).or_default();
                if by == By::Edge || !counted_service {
                    t.proxies += 1;
                    counted_service = true;
                }
                t.requests += count;
                if now_s.class == "5xx" {
                    t.failures += count;
                }
                t.rate += count as f64 / elapsed;
                if t.buckets.len() < buckets.len() {
                    t.buckets.resize(buckets.len(), 0);
                }
                for (i, n) in buckets.iter().enumerate() {
                    t.buckets[i] += n;
                }
            }
            if !counted_service && by == By::Service {
                tallies.entry(service_key).or_default().proxies += 1;
            }
        }
        tallies
            .into_iter()
            .map(|((service, namespace, caller), t)| {
                let q = |q: f64| {
                    signet_metrics::quantile(q, &t.buckets).map(|s| (s * 1e6).round() / 1e3)
                };
                Row {
                    service,
                    namespace,
                    caller,
                    proxies: t.proxies as u64,
                    requests: t.requests,
                    requests_per_second: (t.rate * 100.0).round() / 100.0,
                    success_rate: (t.requests > 0).then(|| {
                        ((t.requests - t.failures) as f64 / t.requests as f64 * 1e4).round() / 1e4
                    }),
                    latency_ms_p50: q(0.5),
                    latency_ms_p95: q(0.95),
                    latency_ms_p99: q(0.99),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(peer: &str, class: &str, count: u64, buckets: Vec<u64>) -> pb::TrafficStats {
        pb::TrafficStats {
            direction: "inbound".to_owned(),
            peer: peer.to_owned(),
            route: "default".to_owned(),
            class: class.to_owned(),
            count,
            buckets,
            sum_seconds: 0.0,
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    fn b(at: usize, n: u64) -> Vec<u64> {
        let mut v = vec![0; 16];
        v[at] = n;
        v
    }

    #[test]
    fn rates_success_and_latency_come_from_the_deltas_over_the_window() {
        let book = StatsBook::default();
        let t0 = Instant::now();
        let cart = ("cart", "shop");
        // Before the window: 1,000 requests that must not count.
        book.record_at(
            "c1",
            cart,
            vec![series("frontend", "2xx", 1000, b(0, 1000))],
            t0,
        );
        book.record_at(
            "c1",
            cart,
            vec![
                series("frontend", "2xx", 1000 + 180, {
                    let mut v = b(0, 1000);
                    v[1] = 180;
                    v
                }),
                series("frontend", "5xx", 20, b(5, 20)),
                series("admin", "2xx", 10, b(0, 10)),
            ],
            t0 + Duration::from_secs(10),
        );
        let now = t0 + Duration::from_secs(10);
        let rows = book.rows_at(Duration::from_secs(10), By::Service, None, now);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!(r.requests, 210);
        assert_eq!(r.requests_per_second, 21.0);
        assert_eq!(r.success_rate, Some(0.9048));
        // p50: rank 105 of 190 below 2.5 ms... in (1 ms, 2.5 ms] after 10 in (0, 1 ms].
        assert!(r.latency_ms_p50.unwrap() > 1.0 && r.latency_ms_p50.unwrap() <= 2.5);
        assert!(r.latency_ms_p99.unwrap() > 25.0, "{r:?}");
        let edges = book.rows_at(Duration::from_secs(10), By::Edge, Some("cart"), now);
        let callers: Vec<_> = edges.iter().map(|e| e.caller.clone().unwrap()).collect();
        assert_eq!(callers, ["admin", "frontend"]);
        assert_eq!(edges[1].requests, 200);
        assert_eq!(edges[1].success_rate, Some(0.9));
        assert!(
            book.rows_at(Duration::from_secs(10), By::Service, Some("x"), now)
                .is_empty()
        );
    }

    #[test]
    fn a_restarted_proxy_counts_from_zero_and_one_report_gives_no_rate() {
        let book = StatsBook::default();
        let t0 = Instant::now();
        book.record_at(
            "c1",
            ("cart", "shop"),
            vec![series("f", "2xx", 500, b(0, 500))],
            t0,
        );
        let rows = book.rows_at(Duration::from_secs(60), By::Service, None, t0);
        assert_eq!(rows[0].requests, 0);
        assert_eq!(rows[0].success_rate, None);
        assert_eq!(rows[0].proxies, 1);
        book.record_at(
            "c1",
            ("cart", "shop"),
            vec![series("f", "2xx", 30, b(0, 30))],
            t0 + Duration::from_secs(6),
        );
        let rows = book.rows_at(
            Duration::from_secs(60),
            By::Service,
            None,
            t0 + Duration::from_secs(6),
        );
        assert_eq!(rows[0].requests, 30);
        assert_eq!(rows[0].requests_per_second, 5.0);
    }

    #[test]
    fn samples_are_spaced_and_old_ones_leave() {
        let book = StatsBook::default();
        let t0 = Instant::now();
        for i in 0..2_000 {
            book.record_at(
                "c1",
                ("cart", "shop"),
                Vec::new(),
                t0 + Duration::from_secs(i),
            );
        }
        let book = book.by_instance.lock().unwrap();
        let n = book["c1"].samples.len();
        assert!(
            n <= (MAX_WINDOW.as_secs() / SPACING.as_secs()) as usize + 3,
            "{n}"
        );
    }
}
