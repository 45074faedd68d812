//! What the mock provider records: every message id it accepted (to count distinct ids and
//! duplicate deliveries), request outcomes, a service-time histogram, and what went back to
//! herald (receipts and clicks, with herald's answers). Served as JSON on `GET /stats`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

const SHARDS: usize = 64;

/// The ids accepted so far, sharded so handlers on several threads rarely meet.
pub struct Deliveries {
    shards: Vec<Mutex<HashSet<u128>>>,
}

impl Deliveries {
    pub fn new() -> Deliveries {
        Deliveries {
            shards: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }

    /// Records one delivery; answers whether the id was new.
    pub fn record(&self, id: u128) -> bool {
        self.shards[(id as usize) % SHARDS].lock().insert(id)
    }

    pub fn distinct(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().len() as u64).sum()
    }
}

/// A log-linear histogram of microseconds: 16 buckets per power of two (about 6% wide).
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

const LINEAR: usize = 32;
const SUB: usize = 16;

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..LINEAR + 64 * SUB).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(us: u64) -> usize {
        if us < LINEAR as u64 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize; // >= 5
        let sub = ((us >> (e - 4)) & 0xF) as usize;
        LINEAR + (e - 5) * SUB + sub
    }

    /// The middle of bucket `i`, in microseconds.
    fn value(i: usize) -> f64 {
        if i < LINEAR {
            return i as f64;
        }
        let e = (i - LINEAR) / SUB + 5;
        let sub = ((i - LINEAR) % SUB) as u64;
        let low = (16 + sub) << (e - 4);
        let width = 1u64 << (e - 4);
        low as f64 + width as f64 / 2.0
    }

    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(Self::index(us)) {
            b.fetch_add(1, Relaxed);
        }
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i) / 1000.0;
            }
        }
        0.0
    }
}

/// Counters of one mock run.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Messages in every request, answered or not.
    pub offered: AtomicU64,
    /// Messages accepted, duplicates included.
    pub received: AtomicU64,
    /// Accepted messages whose id had been accepted before.
    pub duplicates: AtomicU64,
    /// Requests answered 429.
    pub throttled: AtomicU64,
    /// Requests answered 5xx.
    pub errors: AtomicU64,
    /// Requests held past the client's timeout (never committed).
    pub timeouts: AtomicU64,
    /// Messages rejected for good (`retryable: false`).
    pub rejected: AtomicU64,
    /// Messages rejected with `retryable: true`.
    pub retryable_rejected: AtomicU64,
    /// Requests refused for a missing or wrong credential, or an unreadable body.
    pub bad_requests: AtomicU64,
    /// Single-message requests whose `Idempotency-Key` was not the message id.
    pub key_mismatches: AtomicU64,
}

/// Receipts and clicks sent back to herald, and herald's answers.
pub struct WayBack {
    epoch: Instant,
    /// Receipts planned (one per first acceptance of an id), by fate.
    pub planned: AtomicU64,
    pub planned_delivered: AtomicU64,
    pub planned_undelivered: AtomicU64,
    /// Receipts in requests herald answered 2xx.
    pub sent: AtomicU64,
    /// Receipts given up on after the last retry (or refused with a 4xx).
    pub failed: AtomicU64,
    /// Callback requests, retries included.
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Herald's answers, summed.
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub unknown: AtomicU64,
    /// Clicks planned (delivered, chosen, a loopback tracked link in the body).
    pub clicks_planned: AtomicU64,
    /// Chosen for a click, but the body held no loopback tracked link.
    pub clicks_skipped: AtomicU64,
    pub clicks_sent: AtomicU64,
    /// Clicks herald answered 302.
    pub clicks_redirected: AtomicU64,
    pub clicks_failed: AtomicU64,
    /// First request start and last answer, microseconds since `epoch` (+1; 0 = none yet).
    first_us: AtomicU64,
    last_us: AtomicU64,
}

impl WayBack {
    pub fn new() -> WayBack {
        WayBack {
            epoch: Instant::now(),
            planned: AtomicU64::new(0),
            planned_delivered: AtomicU64::new(0),
            planned_undelivered: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            clicks_planned: AtomicU64::new(0),
            clicks_skipped: AtomicU64::new(0),
            clicks_sent: AtomicU64::new(0),
            clicks_redirected: AtomicU64::new(0),
            clicks_failed: AtomicU64::new(0),
            first_us: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A callback request is about to start.
    pub fn mark_start(&self) {
        let now = self.now_us();
        let _ = self.first_us.compare_exchange(0, now, Relaxed, Relaxed);
    }

    /// A callback request has been answered (or given up on).
    pub fn mark_done(&self) {
        self.last_us.fetch_max(self.now_us(), Relaxed);
    }

    pub fn view(&self) -> WayBackView {
        let (first, last) = (self.first_us.load(Relaxed), self.last_us.load(Relaxed));
        WayBackView {
            planned: self.planned.load(Relaxed),
            planned_delivered: self.planned_delivered.load(Relaxed),
            planned_undelivered: self.planned_undelivered.load(Relaxed),
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            applied: self.applied.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            unknown: self.unknown.load(Relaxed),
            clicks_planned: self.clicks_planned.load(Relaxed),
            clicks_skipped: self.clicks_skipped.load(Relaxed),
            clicks_sent: self.clicks_sent.load(Relaxed),
            clicks_redirected: self.clicks_redirected.load(Relaxed),
            clicks_failed: self.clicks_failed.load(Relaxed),
            seconds: if first > 0 && last > first {
                (last - first) as f64 / 1e6
            } else {
                0.0
            },
        }
    }
}

/// [`WayBack`] as served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WayBackView {
    pub planned: u64,
    pub planned_delivered: u64,
    pub planned_undelivered: u64,
    pub sent: u64,
    pub failed: u64,
    pub requests: u64,
    pub retries: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub clicks_planned: u64,
    pub clicks_skipped: u64,
    pub clicks_sent: u64,
    pub clicks_redirected: u64,
    pub clicks_failed: u64,
    /// From the first callback request to the last answer.
    pub seconds: f64,
}

impl WayBackView {
    /// Receipts neither sent nor given up on yet.
    pub fn receipts_pending(&self) -> u64 {
        self.planned.saturating_sub(self.sent + self.failed)
    }

    /// Clicks not answered yet.
    pub fn clicks_pending(&self) -> u64 {
        self.clicks_planned
            .saturating_sub(self.clicks_redirected + self.clicks_failed)
    }
}

/// `GET /stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsView {
    pub received: u64,
    pub distinct: u64,
    pub duplicates: u64,
    pub throttled: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub rejected: u64,
    pub retryable_rejected: u64,
    pub requests: u64,
    pub offered: u64,
    pub bad_requests: u64,
    pub key_mismatches: u64,
    /// Service time of answered requests (body read to answer, simulated latency included),
    /// measured in the mock.
    pub latency_ms: LatencyView,
    /// Receipts and clicks sent back to herald.
    #[serde(default)]
    pub way_back: WayBackView,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyView {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Everything the mock records.
pub struct Stats {
    pub counters: Counters,
    pub deliveries: Deliveries,
    pub latency: Histogram,
    pub way_back: Arc<WayBack>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            counters: Counters::default(),
            deliveries: Deliveries::new(),
            latency: Histogram::new(),
            way_back: Arc::new(WayBack::new()),
        }
    }

    pub fn view(&self) -> StatsView {
        let c = &self.counters;
        let round = |v: f64| (v * 100.0).round() / 100.0;
        StatsView {
            received: c.received.load(Relaxed),
            distinct: self.deliveries.distinct(),
            duplicates: c.duplicates.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
            errors: c.errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            retryable_rejected: c.retryable_rejected.load(Relaxed),
            requests: c.requests.load(Relaxed),
            offered: c.offered.load(Relaxed),
            bad_requests: c.bad_requests.load(Relaxed),
            key_mismatches: c.key_mismatches.load(Relaxed),
            latency_ms: LatencyView {
                p50: round(self.latency.quantile_ms(0.50)),
                p90: round(self.latency.quantile_ms(0.90)),
                p99: round(self.latency.quantile_ms(0.99)),
                max: round(self.latency.quantile_ms(1.0)),
            },
            way_back: self.way_back.view(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let h = Histogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.07, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "{p99}");
        assert_eq!(Histogram::new().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn deliveries_count_distinct_ids() {
        let d = Deliveries::new();
        assert!(d.record(1));
        assert!(d.record(2));
        assert!(!d.record(1));
        assert_eq!(d.distinct(), 2);
    }
}
