//! The retry schedule for transient provider failures: exponential backoff with jitter,
//! bounded attempts and delays. Built once per chunk from the config and a seed, so delays
//! are reproducible in tests.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::RetryConfig;

/// The delays to wait before each retry; its length is `max_attempts - 1`.
pub fn schedule(config: &RetryConfig, seed: u64) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(config.initial_delay_ms))
        .with_max_delay(Duration::from_millis(
            config.max_delay_ms.max(config.initial_delay_ms),
        ))
        .with_factor(2.0)
        .with_max_times(config.max_attempts.saturating_sub(1) as usize)
        .with_jitter_seed(seed)
        .with_jitter()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_are_bounded_and_counted(attempts in 1u32..10, initial in 1u64..500, max in 1u64..5_000, seed: u64) {
            let cfg = RetryConfig { max_attempts: attempts, initial_delay_ms: initial, max_delay_ms: max };
            let delays: Vec<Duration> = schedule(&cfg, seed).collect();
            prop_assert_eq!(delays.len(), attempts as usize - 1);
            let cap = Duration::from_millis(max.max(initial));
            for d in delays {
                // Jitter adds at most one more delay's worth.
                prop_assert!(d <= cap * 2, "{d:?} > 2 * {cap:?}");
            }
        }
    }
}
