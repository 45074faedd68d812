//! Whether the state backend answers, known without asking it on a request's path: a
//! background probe pings it every [`PROBE_EVERY`], and any caller whose store call failed
//! reports it at once. `/readyz`, intake and the dispatch gate read the cached answer.
//!
//! An outage starts at the first failure and ends only when a ping succeeds, so dispatch
//! calls the store again only after the backend answered the probe. This is also the one
//! place an outage is logged: one warning when it starts, one info line when it ends, however
//! many calls failed in between.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{StateStore, StoreError};

/// How often the probe pings the backend, up or down. A ping that gets no answer takes up to
/// the store's timeout on top.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The cached health of the state backend. Starts up: the store answered when it was built.
#[derive(Debug)]
pub struct StateHealth {
    /// Read on every lease and readiness check without taking the lock.
    up: AtomicBool,
    /// When the current outage started; `None` while up. Written together with `up`.
    down_since: Mutex<Option<Instant>>,
}

impl Default for StateHealth {
    fn default() -> Self {
        StateHealth::new()
    }
}

impl StateHealth {
    /// A backend taken to be up until a call or a probe fails.
    pub fn new() -> StateHealth {
        StateHealth {
            up: AtomicBool::new(true),
            down_since: Mutex::new(None),
        }
    }

    /// Whether the backend answered its last probe and no call failed since.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// How long the current outage has lasted; `None` while the backend is up.
    pub fn down_for(&self) -> Option<Duration> {
        self.down_since.lock().map(|since| since.elapsed())
    }

    /// Reports a store call that could not run. The first failure starts an outage (and logs
    /// it); later ones while it lasts change nothing.
    pub fn failed(&self, error: &StoreError) {
        let mut down_since = self.down_since.lock();
        if down_since.is_some() {
            return;
        }
        *down_since = Some(Instant::now());
        self.up.store(false, Ordering::Release);
        tracing::warn!(
            %error,
            "state backend unavailable: jobs hold their sends and intake answers 503 until it answers again"
        );
    }

    /// Reports a successful ping: ends the current outage, if any (and logs it).
    pub fn answered(&self) {
        if self.is_up() {
            return;
        }
        let mut down_since = self.down_since.lock();
        let Some(since) = down_since.take() else {
            return;
        };
        self.up.store(true, Ordering::Release);
        tracing::info!(
            down_ms = since.elapsed().as_millis() as u64,
            "state backend answers again: jobs resume and intake is open"
        );
    }

    /// Pings `store` once and records the answer; answers whether it was up.
    pub async fn probe(&self, store: &dyn StateStore) -> bool {
        match store.ping().await {
            Ok(()) => {
                self.answered();
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// Probes `store` every `every` (from the end of one ping to the start of the next, so a
    /// backend that does not answer is not asked faster than its timeout) until this health
    /// or the store is dropped. Neither is kept alive by the probe between pings: a store that
    /// owns a database file closes it when its owner lets go.
    pub fn spawn_probe(self: &Arc<Self>, store: &Arc<dyn StateStore>, every: Duration) {
        let health: Weak<StateHealth> = Arc::downgrade(self);
        let store: Weak<dyn StateStore> = Arc::downgrade(store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(health), Some(store)) = (health.upgrade(), store.upgrade()) else {
                    return;
                };
                health.probe(&*store).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TenantId;
    use crate::domain::{Channel, JobId};
    use crate::store::{
        CapRequest, CapRule, ConsentChange, FactsQuery, IdempotencyClaim, RecipientFacts,
        SuppressionKey,
    };
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use std::sync::atomic::AtomicU32;

    /// A backend whose pings fail while `down` is set, and that counts them.
    #[derive(Default)]
    struct Switch {
        down: AtomicBool,
        pings: AtomicU32,
    }

    fn gone<T>() -> Result<T, StoreError> {
        Err(StoreError::Unavailable("switched off".into()))
    }

    #[async_trait]
    impl StateStore for Switch {
        async fn save_api_key(&self, _: &crate::access::StoredKey) -> Result<(), StoreError> {
            gone()
        }
        async fn api_key(&self, _: &str) -> Result<Option<crate::access::StoredKey>, StoreError> {
            gone()
        }
        async fn api_keys(&self) -> Result<Vec<crate::access::StoredKey>, StoreError> {
            gone()
        }
        async fn reserve_quota(
            &self,
            _: &crate::store::QuotaReservation<'_>,
        ) -> Result<crate::store::QuotaAnswer, StoreError> {
            gone()
        }
        async fn release_quota(
            &self,
            _: &crate::access::TenantId,
            _: u32,
            _: &JobId,
        ) -> Result<(), StoreError> {
            gone()
        }
        async fn quota_used(&self, _: &crate::access::TenantId, _: u32) -> Result<u64, StoreError> {
            gone()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.pings.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                gone()
            } else {
                Ok(())
            }
        }
        async fn recipient_facts(
            &self,
            _: &TenantId,
            _: Channel,
            _: &[FactsQuery<'_>],
        ) -> Result<Vec<RecipientFacts>, StoreError> {
            gone()
        }
        async fn add_suppressions(
            &self,
            _: &TenantId,
            _: &[SuppressionKey],
        ) -> Result<usize, StoreError> {
            gone()
        }
        async fn remove_suppression(
            &self,
            _: &TenantId,
            _: &SuppressionKey,
        ) -> Result<bool, StoreError> {
            gone()
        }
        async fn record_consent(
            &self,
            _: &TenantId,
            _: &[ConsentChange],
        ) -> Result<(), StoreError> {
            gone()
        }
        async fn consent_history(
            &self,
            _: &TenantId,
            _: &str,
        ) -> Result<Vec<ConsentChange>, StoreError> {
            gone()
        }
        async fn consent_changes_since(
            &self,
            _: &TenantId,
            _: DateTime<Utc>,
        ) -> Result<Vec<ConsentChange>, StoreError> {
            gone()
        }
        async fn reserve_caps(
            &self,
            _: &[CapRule],
            _: &[CapRequest],
            _: DateTime<Utc>,
        ) -> Result<Vec<bool>, StoreError> {
            gone()
        }
        async fn restore_caps(
            &self,
            _: &[CapRule],
            _: &[(CapRequest, DateTime<Utc>)],
            _: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            gone()
        }
        async fn release_caps(&self, _: &[CapRequest], _: DateTime<Utc>) -> Result<(), StoreError> {
            gone()
        }
        async fn claim_idempotency_key(
            &self,
            _: &str,
            _: [u8; 32],
            _: &JobId,
        ) -> Result<IdempotencyClaim, StoreError> {
            gone()
        }
        async fn first_callback_use(
            &self,
            _: [u8; 32],
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            gone()
        }
        async fn forget_callback_use(&self, _: [u8; 32]) -> Result<(), StoreError> {
            gone()
        }
        async fn prune_callback_uses(&self, _: DateTime<Utc>) -> Result<usize, StoreError> {
            gone()
        }
    }

    #[test]
    fn an_outage_starts_at_the_first_failure_and_ends_at_an_answer() {
        let h = StateHealth::new();
        assert!(h.is_up());
        assert_eq!(h.down_for(), None);
        let e = StoreError::Unavailable("x".into());
        h.failed(&e);
        assert!(!h.is_up());
        let since = *h.down_since.lock();
        h.failed(&e);
        assert_eq!(
            *h.down_since.lock(),
            since,
            "a second failure is the same outage"
        );
        assert!(h.down_for().is_some());
        h.answered();
        assert!(h.is_up());
        assert_eq!(h.down_for(), None);
        h.answered();
        assert!(h.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_follows_the_backend_down_and_back_at_its_pace() {
        let store = Arc::new(Switch::default());
        let health = Arc::new(StateHealth::new());
        health.spawn_probe(&(store.clone() as Arc<dyn StateStore>), PROBE_EVERY);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            store.pings.load(Ordering::SeqCst),
            1,
            "the first ping is at once"
        );
        assert!(health.is_up());

        store.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(PROBE_EVERY).await;
        assert!(!health.is_up(), "the next ping sees the outage");
        tokio::time::sleep(PROBE_EVERY * 5).await;
        assert!(!health.is_up());
        assert_eq!(
            store.pings.load(Ordering::SeqCst),
            7,
            "one ping per interval while down, not a hot loop"
        );
        assert!(health.down_for() >= Some(PROBE_EVERY * 5));

        store.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(PROBE_EVERY).await;
        assert!(health.is_up(), "back within one interval");

        let pings = store.pings.load(Ordering::SeqCst);
        drop(health);
        tokio::time::sleep(PROBE_EVERY * 3).await;
        assert!(
            store.pings.load(Ordering::SeqCst) <= pings + 1,
            "the probe stops with its health"
        );
    }
}
