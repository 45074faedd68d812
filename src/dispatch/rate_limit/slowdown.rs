//! Slowing a provider down when it throttles: each throttled answer (HTTP 429,
//! `ESME_RTHROTTLED`) doubles what a part costs in its limiter's tokens, up to
//! [`MAX_FACTOR`] times, and every second without one takes a quarter of the extra off again,
//! so the provider's own limit is found and held rather than hit over and over.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// The slowest a throttling provider is driven: a sixteenth of its configured rate.
pub const MAX_FACTOR: u32 = 16_000;
/// The factor at the configured rate (thousandths).
const NORMAL: u32 = 1_000;
/// How often the factor eases back towards the configured rate.
const EASE_EVERY_MS: u64 = 1_000;

/// The cost multiplier of one provider's parts, in thousandths.
pub(super) struct Slowdown {
    factor: AtomicU32,
    /// Milliseconds since `epoch` of the last change (a throttle or an easing step).
    changed_ms: AtomicU64,
    epoch: Instant,
}

impl Slowdown {
    pub(super) fn new() -> Slowdown {
        Slowdown {
            factor: AtomicU32::new(NORMAL),
            changed_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The provider throttled: halve its rate (double the cost of a part).
    pub(super) fn throttled(&self) {
        let _ = self
            .factor
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                Some(f.saturating_mul(2).min(MAX_FACTOR))
            });
        self.changed_ms.store(self.now_ms(), Ordering::Release);
    }

    /// The current factor in thousandths, eased first if a second passed without a throttle.
    pub(super) fn factor(&self) -> u32 {
        let f = self.factor.load(Ordering::Acquire);
        if f <= NORMAL {
            return f;
        }
        let now = self.now_ms();
        let changed = self.changed_ms.load(Ordering::Acquire);
        if now.saturating_sub(changed) >= EASE_EVERY_MS
            && self
                .changed_ms
                .compare_exchange(changed, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let eased = (NORMAL + (f - NORMAL) * 3 / 4).max(NORMAL);
            let eased = if eased < NORMAL + 10 { NORMAL } else { eased };
            self.factor.store(eased, Ordering::Release);
            return eased;
        }
        f
    }

    /// Tokens `parts` cost at the current factor (at least `parts`).
    pub(super) fn cost(&self, parts: u32) -> u32 {
        let f = self.factor();
        if f == NORMAL {
            return parts;
        }
        ((u64::from(parts) * u64::from(f)).div_ceil(u64::from(NORMAL))).min(u64::from(u32::MAX))
            as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_double_the_cost_up_to_the_cap() {
        let s = Slowdown::new();
        assert_eq!(s.cost(3), 3);
        s.throttled();
        assert_eq!(s.cost(3), 6);
        for _ in 0..10 {
            s.throttled();
        }
        assert_eq!(s.cost(1), MAX_FACTOR / NORMAL);
    }

    #[test]
    fn the_cost_eases_back_after_quiet_seconds() {
        let s = Slowdown::new();
        s.throttled();
        s.throttled();
        assert_eq!(s.factor(), 4_000);
        // Two throttles two seconds ago (the clock's epoch moved back).
        let later = Slowdown {
            epoch: s.epoch - std::time::Duration::from_secs(2),
            ..Slowdown::new()
        };
        later.factor.store(4_000, Ordering::Release);
        assert_eq!(later.factor(), 3_250);
        // Eased once per second, not on every call.
        assert_eq!(later.factor(), 3_250);
    }
}
