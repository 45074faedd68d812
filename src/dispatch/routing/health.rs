//! A provider's circuit: closed while its recent calls mostly succeed, open (no traffic
//! routed to it) after too many fail or are too slow, half-open after `open_ms` to try it
//! again. Failures are what a message can be moved on for: refusals and transport failures
//! (`Unavailable`, `Transient`); a permanent refusal of one number or a throttle says the
//! provider is working.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::HealthConfig;

/// Where a circuit stands; the number is its `/metrics` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// Sub-windows the sliding window is counted in.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which sub-window (since the circuit's epoch) this bucket counts.
    slot: u64,
    calls: u64,
    failures: u64,
    latency_ms: u64,
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    opened_at: Option<Instant>,
    /// Successful probe calls since it went half-open.
    probes_ok: u32,
    buckets: [Bucket; BUCKETS],
}

/// One provider's health.
#[derive(Debug)]
pub struct Circuit {
    config: HealthConfig,
    epoch: Instant,
    inner: Mutex<Inner>,
    /// Whether the circuit is closed, readable without the lock: every message asks.
    closed: AtomicBool,
}

/// What a circuit's recent window holds, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthView {
    pub state: CircuitState,
    /// Messages answered in the window.
    pub calls: u64,
    /// Share of them that failed (0 when there were none).
    pub error_share: f64,
    /// Mean latency of the calls in the window, in milliseconds.
    pub mean_latency_ms: f64,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(config: HealthConfig) -> Circuit {
        Circuit {
            config,
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                opened_at: None,
                probes_ok: 0,
                buckets: [Bucket::default(); BUCKETS],
            }),
            closed: AtomicBool::new(true),
        }
    }

    fn bucket_ms(&self) -> u64 {
        (self.config.window_ms / BUCKETS as u64).max(1)
    }

    fn slot(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 / self.bucket_ms()
    }

    /// Whether traffic may be routed to it at `now`. An open circuit whose time is up turns
    /// half-open here, and lets traffic through to be tried.
    pub fn admits(&self, now: Instant) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        let mut g = self.inner.lock();
        match g.state {
            CircuitState::Closed | CircuitState::HalfOpen => true,
            CircuitState::Open => {
                let due = g
                    .opened_at
                    .is_none_or(|at| now >= at + Duration::from_millis(self.config.open_ms));
                if due {
                    g.state = CircuitState::HalfOpen;
                    g.probes_ok = 0;
                }
                due
            }
        }
    }

    /// Whether it is closed (no lock taken).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The state now (an open circuit past its time reads as half-open).
    pub fn state(&self, now: Instant) -> CircuitState {
        let g = self.inner.lock();
        match (g.state, g.opened_at) {
            (CircuitState::Open, Some(at))
                if now >= at + Duration::from_millis(self.config.open_ms) =>
            {
                CircuitState::HalfOpen
            }
            (s, _) => s,
        }
    }

    /// Records one call's answers: `calls` messages of which `failures` failed, taking
    /// `latency`. Answers the state after it.
    pub fn record(
        &self,
        now: Instant,
        calls: u64,
        failures: u64,
        latency: Duration,
    ) -> CircuitState {
        if calls == 0 {
            return self.inner.lock().state;
        }
        let slot = self.slot(now);
        let latency_ms = latency.as_millis() as u64;
        let mut g = self.inner.lock();
        match g.state {
            // A call that was under way when the circuit opened says nothing new.
            CircuitState::Open => {}
            CircuitState::HalfOpen => {
                if self.failing(calls, failures, latency_ms) {
                    self.open(&mut g, now);
                } else {
                    g.probes_ok += 1;
                    if g.probes_ok >= self.config.probe_calls {
                        g.state = CircuitState::Closed;
                        g.opened_at = None;
                        g.buckets = [Bucket::default(); BUCKETS];
                        self.closed.store(true, Ordering::Release);
                    }
                }
            }
            CircuitState::Closed => {
                let b = &mut g.buckets[(slot % BUCKETS as u64) as usize];
                if b.slot != slot {
                    *b = Bucket {
                        slot,
                        ..Bucket::default()
                    };
                }
                b.calls += calls;
                b.failures += failures;
                b.latency_ms += latency_ms * calls;
                let (c, f, l) = self.window(&g, slot);
                if c >= u64::from(self.config.min_calls) && self.failing(c, f, l / c.max(1)) {
                    self.open(&mut g, now);
                }
            }
        }
        g.state
    }

    fn open(&self, g: &mut Inner, now: Instant) {
        self.closed.store(false, Ordering::Release);
        g.state = CircuitState::Open;
        g.opened_at = Some(now);
        g.probes_ok = 0;
        g.buckets = [Bucket::default(); BUCKETS];
    }

    /// Whether `failures` of `calls` (at `mean_latency_ms` each) is a failing record.
    fn failing(&self, calls: u64, failures: u64, mean_latency_ms: u64) -> bool {
        let share = failures as f64 / calls.max(1) as f64;
        let slow = self.config.max_mean_latency_ms > 0
            && mean_latency_ms > self.config.max_mean_latency_ms;
        share >= self.config.max_error_share || slow
    }

    /// Calls, failures and latency sum (ms × calls) of the buckets still in the window.
    fn window(&self, g: &Inner, slot: u64) -> (u64, u64, u64) {
        let oldest = slot.saturating_sub(BUCKETS as u64 - 1);
        g.buckets
            .iter()
            .filter(|b| b.calls > 0 && b.slot >= oldest && b.slot <= slot)
            .fold((0, 0, 0), |(c, f, l), b| {
                (c + b.calls, f + b.failures, l + b.latency_ms)
            })
    }

    /// The window as `/metrics` shows it.
    pub fn view(&self, now: Instant) -> HealthView {
        let state = self.state(now);
        let g = self.inner.lock();
        let (calls, failures, latency) = self.window(&g, self.slot(now));
        HealthView {
            state,
            calls,
            error_share: if calls == 0 {
                0.0
            } else {
                failures as f64 / calls as f64
            },
            mean_latency_ms: if calls == 0 {
                0.0
            } else {
                latency as f64 / calls as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthConfig {
        HealthConfig {
            window_ms: 10_000,
            min_calls: 10,
            max_error_share: 0.5,
            max_mean_latency_ms: 0,
            open_ms: 5_000,
            probe_calls: 2,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn failures_open_it_and_successful_probes_close_it() {
        let c = Circuit::new(config());
        let t = Instant::now();
        // A few failures are not enough to judge by.
        assert_eq!(c.record(t, 4, 4, MS), CircuitState::Closed);
        assert_eq!(c.record(t, 10, 2, MS), CircuitState::Closed);
        // 12 failures of 24 is half.
        assert_eq!(c.record(t, 10, 6, MS), CircuitState::Open);
        assert!(!c.admits(t + Duration::from_millis(4_999)));
        let later = t + Duration::from_millis(5_000);
        assert_eq!(c.state(later), CircuitState::HalfOpen);
        assert!(c.admits(later));
        assert_eq!(c.record(later, 5, 0, MS), CircuitState::HalfOpen);
        assert_eq!(c.record(later, 5, 0, MS), CircuitState::Closed);
    }

    #[test]
    fn a_failing_probe_opens_it_again_for_a_full_period() {
        let c = Circuit::new(config());
        let t = Instant::now();
        c.record(t, 10, 10, MS);
        let probe = t + Duration::from_secs(6);
        assert!(c.admits(probe));
        assert_eq!(c.record(probe, 1, 1, MS), CircuitState::Open);
        assert!(!c.admits(probe + Duration::from_secs(4)));
        assert!(c.admits(probe + Duration::from_secs(5)));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let c = Circuit::new(config());
        let t = Instant::now();
        c.record(t, 9, 9, MS);
        // Eleven seconds later the nine failures are out of the window: 1 of 10 failed.
        let later = t + Duration::from_secs(11);
        assert_eq!(c.record(later, 10, 1, MS), CircuitState::Closed);
        assert_eq!(c.view(later).calls, 10);
    }

    #[test]
    fn slowness_opens_it_when_a_latency_limit_is_set() {
        let c = Circuit::new(HealthConfig {
            max_mean_latency_ms: 500,
            ..config()
        });
        let t = Instant::now();
        assert_eq!(
            c.record(t, 10, 0, Duration::from_millis(400)),
            CircuitState::Closed
        );
        assert_eq!(
            c.record(t, 10, 0, Duration::from_millis(900)),
            CircuitState::Open
        );
    }
}
