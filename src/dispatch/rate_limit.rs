//! Per-provider rate limits counted in message parts per second, as providers and carriers
//! bill them (a 3-part SMS uses three). GCRA via `governor`: the long-run rate holds exactly
//! and no burst exceeds the configured burst. Waiting uses tokio's timer, so paused-time
//! tests and shutdown behave.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

/// One provider's limiter; unlimited when the rate is 0.
pub struct PartsLimiter {
    limiter: Option<DefaultDirectRateLimiter>,
    burst: u32,
    rate: u32,
}

impl PartsLimiter {
    /// `rate` parts per second with bursts of at most `burst` parts; `rate == 0` is unlimited.
    pub fn new(rate: u32, burst: u32) -> PartsLimiter {
        let limiter = NonZeroU32::new(rate).map(|r| {
            let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
            DefaultDirectRateLimiter::direct(Quota::per_second(r).allow_burst(burst))
        });
        PartsLimiter {
            limiter,
            burst: burst.max(1),
            rate,
        }
    }

    /// The largest burst, in parts.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Parts per second, 0 for unlimited.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Waits until `parts` tokens are granted. Messages larger than the burst take their
    /// tokens in burst-sized pieces. `keep_waiting` is asked between waits; when it answers
    /// false the wait is abandoned (tokens already taken stay spent) and this returns false.
    pub async fn acquire(&self, parts: u32, keep_waiting: &(dyn Fn() -> bool + Sync)) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        let clock = DefaultClock::default();
        let mut remaining = parts;
        while remaining > 0 {
            let take = remaining.min(self.burst);
            let n = NonZeroU32::new(take).unwrap_or(NonZeroU32::MIN);
            match limiter.check_n(n) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn holds_the_rate_counting_parts() {
        let l = PartsLimiter::new(200, 10);
        let start = Instant::now();
        // 10 burst + 100 more parts at 200/s takes about half a second.
        for _ in 0..55 {
            assert!(l.acquire(2, &|| true).await);
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let l = PartsLimiter::new(0, 0);
        assert!(l.acquire(1_000_000, &|| true).await);
    }

    #[tokio::test]
    async fn a_stop_request_abandons_the_wait() {
        let l = PartsLimiter::new(1, 1);
        assert!(l.acquire(1, &|| true).await);
        assert!(!l.acquire(1, &|| false).await);
    }
}
