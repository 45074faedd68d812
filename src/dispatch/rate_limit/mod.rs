//! Per-provider rate limits counted in message parts per second, as providers and carriers
//! bill them (a 3-part SMS uses three). One process alone limits in memory ([`local`]);
//! instances that share state through Redis hold the limit together ([`shared`]): the call
//! sites see one [`PartsLimiter`] either way.

mod local;
mod shared;
mod slowdown;
mod tenants;

use std::num::NonZeroU32;
use std::sync::Arc;

use self::local::LocalLimiter;
use self::shared::SharedLimiter;
use self::slowdown::Slowdown;
pub use self::tenants::TenantLimits;
use crate::config::{ChannelLimitConfig, StateBackend, StateConfig};
use crate::domain::Channel;
use crate::store::{RateBucket, RedisOptions, RedisRateBucket, StoreError};

/// One provider's limiter; unlimited when the rate is 0.
pub struct PartsLimiter {
    rate: u32,
    burst: u32,
    kind: Kind,
    slowdown: Slowdown,
}

enum Kind {
    Unlimited,
    Local(LocalLimiter),
    Shared(SharedLimiter),
}

impl PartsLimiter {
    /// `rate` parts per second with bursts of at most `burst` parts, counted by this process
    /// alone; `rate == 0` is unlimited.
    pub fn new(rate: u32, burst: u32) -> PartsLimiter {
        let kind = match NonZeroU32::new(rate) {
            Some(r) => Kind::Local(LocalLimiter::new(r, burst)),
            None => Kind::Unlimited,
        };
        PartsLimiter {
            rate,
            burst: burst.max(1),
            kind,
            slowdown: Slowdown::new(),
        }
    }

    /// The same limit held by every instance that takes its parts from `bucket` (the
    /// provider's bucket in Redis): together they send at most `rate` parts per second with
    /// bursts of at most `burst`. `provider` names the bucket in logs.
    pub fn shared(
        bucket: Arc<dyn RateBucket>,
        provider: &str,
        rate: u32,
        burst: u32,
    ) -> PartsLimiter {
        let kind = match NonZeroU32::new(rate) {
            Some(r) => Kind::Shared(SharedLimiter::new(bucket, provider, r, burst)),
            None => Kind::Unlimited,
        };
        PartsLimiter {
            rate,
            burst: burst.max(1),
            kind,
            slowdown: Slowdown::new(),
        }
    }

    /// The limiter a provider gets under the configured state backend: instances that share
    /// state through Redis share the provider's limit there too, or N instances would send N
    /// times the rate; any other backend means one process, which limits alone. Opens no
    /// connection yet.
    pub fn for_state(
        state: &StateConfig,
        provider: &str,
        rate: u32,
        burst: u32,
    ) -> Result<PartsLimiter, StoreError> {
        if state.backend != StateBackend::Redis || rate == 0 {
            return Ok(PartsLimiter::new(rate, burst));
        }
        let bucket = RedisRateBucket::open(&RedisOptions::from_config(&state.redis), provider)?;
        Ok(PartsLimiter::shared(
            Arc::new(bucket),
            provider,
            rate,
            burst,
        ))
    }

    /// The largest burst, in parts, as configured (ETAs start with it).
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Parts per second, 0 for unlimited.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The provider answered that it is sending too fast: its parts cost more tokens for a
    /// while (see [`slowdown`]). No effect without a rate.
    pub fn throttled(&self) {
        if self.rate > 0 {
            self.slowdown.throttled();
        }
    }

    /// The rate it is held to now, in parts per second (below `rate` after throttling).
    pub fn current_rate(&self) -> f64 {
        f64::from(self.rate) * 1_000.0 / f64::from(self.slowdown.factor().max(1))
    }

    /// Waits until `parts` tokens are granted. `keep_waiting` is asked between waits; when it
    /// answers false the wait is abandoned (tokens already taken stay spent) and this returns
    /// false. A shared limit that cannot reach its bucket waits for it, never sends without
    /// a decision.
    pub async fn acquire(&self, parts: u32, keep_waiting: &(dyn Fn() -> bool + Sync)) -> bool {
        match &self.kind {
            Kind::Unlimited => true,
            Kind::Local(l) => l.acquire(self.slowdown.cost(parts), keep_waiting).await,
            Kind::Shared(s) => s.acquire(self.slowdown.cost(parts), keep_waiting).await,
        }
    }
}

/// Limits on whole channels, over all their providers: a message takes its parts from its
/// channel's limiter as well as from its provider's.
#[derive(Default)]
pub struct ChannelLimits {
    limits: Vec<(Channel, PartsLimiter)>,
}

impl ChannelLimits {
    /// The configured channel limits under the state backend (shared in Redis like the
    /// providers' when instances share state).
    pub fn for_state(
        state: &StateConfig,
        limits: &[ChannelLimitConfig],
    ) -> Result<ChannelLimits, StoreError> {
        let limits = limits
            .iter()
            .map(|l| {
                let name = format!("channel:{}", l.channel.as_str());
                Ok((
                    l.channel,
                    PartsLimiter::for_state(state, &name, l.parts_per_second, l.burst_parts)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(ChannelLimits { limits })
    }

    /// The limiter of `channel`, if it has one.
    pub fn get(&self, channel: Channel) -> Option<&PartsLimiter> {
        self.limits
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, l)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
    async fn a_throttled_provider_is_held_to_half_its_rate() {
        let l = PartsLimiter::new(200, 1);
        l.throttled();
        assert_eq!(l.current_rate(), 100.0);
        let start = Instant::now();
        // 50 parts at an effective 100/s: about half a second, not a quarter.
        for _ in 0..50 {
            assert!(l.acquire(1, &|| true).await);
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
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

    #[test]
    fn only_a_redis_backend_with_a_rate_shares_the_limit() {
        let mut state = StateConfig::default();
        let l = PartsLimiter::for_state(&state, "p", 100, 10).expect("local");
        assert!(matches!(l.kind, Kind::Local(_)));
        state.backend = StateBackend::Redis;
        let l = PartsLimiter::for_state(&state, "p", 0, 10).expect("unlimited");
        assert!(matches!(l.kind, Kind::Unlimited));
        // Opening connects nothing, so no Redis is needed here.
        let l = PartsLimiter::for_state(&state, "p", 100, 10).expect("shared");
        assert!(matches!(l.kind, Kind::Shared(_)));
        assert_eq!((l.rate(), l.burst()), (100, 10));
    }
}
