//! The in-process limiter, for a provider one process limits alone: GCRA via `governor`, so
//! the long-run rate holds exactly and no burst exceeds the configured burst. Waiting uses
//! tokio's timer, so paused-time tests and shutdown behave.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

/// A provider's limiter inside one process.
pub(super) struct LocalLimiter {
    limiter: DefaultDirectRateLimiter,
    burst: u32,
}

impl LocalLimiter {
    pub(super) fn new(rate: NonZeroU32, burst: u32) -> LocalLimiter {
        let burst = burst.max(1);
        let quota =
            Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        LocalLimiter {
            limiter: DefaultDirectRateLimiter::direct(quota),
            burst,
        }
    }

    /// See [`super::PartsLimiter::acquire`]. Messages larger than the burst take their tokens
    /// in burst-sized pieces.
    pub(super) async fn acquire(
        &self,
        parts: u32,
        keep_waiting: &(dyn Fn() -> bool + Sync),
    ) -> bool {
        let clock = DefaultClock::default();
        let mut remaining = parts;
        while remaining > 0 {
            let take = remaining.min(self.burst);
            let n = NonZeroU32::new(take).unwrap_or(NonZeroU32::MIN);
            match self.limiter.check_n(n) {
                Ok(Ok(())) => remaining -= take,
                Ok(Err(not_until)) => {
                    if !keep_waiting() {
                        return false;
                    }
                    let wait = not_until
                        .wait_time_from(clock.now())
                        .max(Duration::from_micros(50));
                    tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
                }
                // Cannot happen: `take` never exceeds the burst.
                Err(_) => remaining -= take,
            }
        }
        true
    }
}
