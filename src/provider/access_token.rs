//! A bearer token an adapter fetches from its provider and reuses until shortly before it
//! expires (FCM's OAuth access token, WeChat's `access_token`, APNs' provider token).
//!
//! One fetch at a time: callers that find no fresh token wait for the one fetch in progress
//! rather than each asking the provider (WeChat counts every fetch against a daily quota, and a
//! new WeChat token retires the previous one). A token the provider refused is dropped with
//! [`TokenCache::invalidate`], naming the token it refused, so a caller holding an older
//! refusal cannot drop a token another caller has just fetched.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// A token and when it stops being used.
#[derive(Clone)]
struct Cached {
    value: Arc<str>,
    /// When the cache stops handing it out (its expiry less the margin).
    stale_at: DateTime<Utc>,
}

/// The token cache of one provider.
pub struct TokenCache {
    current: parking_lot::Mutex<Option<Cached>>,
    fetching: tokio::sync::Mutex<()>,
    /// A token is replaced this long before it expires, or at half its life if that is
    /// sooner: a request signed just before expiry still arrives in time.
    margin: Duration,
    clock: Arc<dyn Clock>,
}

impl TokenCache {
    pub fn new(margin: Duration, clock: Arc<dyn Clock>) -> TokenCache {
        TokenCache {
            current: parking_lot::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            margin,
            clock,
        }
    }

    /// The cached token if it is still fresh, else the one `fetch` answers with its lifetime.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Arc<str>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), E>>,
    {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let (value, lifetime) = fetch().await?;
        let keep = lifetime.saturating_sub(self.margin.min(lifetime / 2));
        let stale_at = self.clock.now()
            + chrono::Duration::from_std(keep).unwrap_or_else(|_| chrono::Duration::zero());
        let value: Arc<str> = Arc::from(value);
        *self.current.lock() = Some(Cached {
            value: value.clone(),
            stale_at,
        });
        Ok(value)
    }

    /// Drops `refused` if it is still the cached token; the next [`TokenCache::get`] fetches.
    pub fn invalidate(&self, refused: &str) {
        let mut current = self.current.lock();
        if current.as_ref().is_some_and(|c| &*c.value == refused) {
            *current = None;
        }
    }

    fn fresh(&self) -> Option<Arc<str>> {
        let now = self.clock.now();
        self.current
            .lock()
            .as_ref()
            .filter(|c| now < c.stale_at)
            .map(|c| c.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    #[tokio::test]
    async fn a_token_is_reused_until_its_margin_then_fetched_again() {
        let clock = Arc::new(ManualClock::new(at(0)));
        let cache = TokenCache::new(Duration::from_secs(300), clock.clone());
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>((format!("t{n}"), Duration::from_secs(3600)))
        };
        assert_eq!(&*cache.get(fetch).await.expect("token"), "t0");
        clock.set(at(3299));
        assert_eq!(&*cache.get(fetch).await.expect("token"), "t0");
        clock.set(at(3300));
        assert_eq!(&*cache.get(fetch).await.expect("token"), "t1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_the_refused_token_is_dropped() {
        let clock = Arc::new(ManualClock::new(at(0)));
        let cache = TokenCache::new(Duration::from_secs(60), clock);
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>((format!("t{n}"), Duration::from_secs(7200)))
        };
        cache.get(fetch).await.expect("token");
        cache.invalidate("t0");
        assert_eq!(&*cache.get(fetch).await.expect("token"), "t1");
        // A late refusal of the old token leaves the new one alone.
        cache.invalidate("t0");
        assert_eq!(&*cache.get(fetch).await.expect("token"), "t1");
    }

    #[tokio::test]
    async fn a_short_lived_token_is_kept_for_half_its_life() {
        let clock = Arc::new(ManualClock::new(at(0)));
        let cache = TokenCache::new(Duration::from_secs(300), clock.clone());
        let fetch = || async { Ok::<_, ()>(("t".to_string(), Duration::from_secs(100))) };
        cache.get(fetch).await.expect("token");
        clock.set(at(49));
        assert!(cache.fresh().is_some());
        clock.set(at(50));
        assert!(cache.fresh().is_none());
    }
}
