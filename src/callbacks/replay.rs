//! Replay detection: a signature seen once within the tolerance window is recognised when
//! it comes again, after a restart too, and on any instance of a fleet.
//!
//! The signatures live in the state store ([`StateStore::first_callback_use`]): the embedded
//! database with embedded state, Redis (one `SET NX` per request) with shared state. Each is
//! kept only as long as its timestamp could still verify (its signing time plus the
//! tolerance), so storage is bounded by the callback rate times the window; the callbacks
//! sweep prunes expired ones where the backend does not expire them by itself.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::signature::Verified;
use crate::store::{StateStore, StoreError};

/// Records verified signatures in the state store.
pub struct ReplayGuard {
    store: Arc<dyn StateStore>,
    tolerance_seconds: i64,
}

impl ReplayGuard {
    /// A guard over `store` for signatures accepted `tolerance_seconds` either side of now.
    pub fn new(store: Arc<dyn StateStore>, tolerance_seconds: i64) -> ReplayGuard {
        ReplayGuard {
            store,
            tolerance_seconds,
        }
    }

    /// Records `verified` (until its timestamp leaves the window); answers true the first
    /// time only. An error means the store could not answer and nothing was recorded.
    pub async fn first_use(
        &self,
        verified: &Verified,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let expires = verified.timestamp.saturating_add(self.tolerance_seconds);
        let expires = DateTime::from_timestamp(expires, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.store
            .first_callback_use(verified.signature, expires, now)
            .await
    }

    /// Forgets one signature (its request could not be applied, so a retry must be allowed).
    pub async fn forget(&self, verified: &Verified) -> Result<(), StoreError> {
        self.store.forget_callback_use(verified.signature).await
    }

    /// Forgets signatures whose timestamps are out of the window by `now`.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.store.prune_callback_uses(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).expect("time")
    }

    fn verified(byte: u8, timestamp: i64) -> Verified {
        Verified {
            signature: [byte; 32],
            timestamp,
        }
    }

    #[tokio::test]
    async fn second_use_is_a_replay_until_its_window_ends() {
        let g = ReplayGuard::new(Arc::new(MemoryStore::new()), 300);
        let now = at(1_000);
        assert!(g.first_use(&verified(1, 900), now).await.unwrap());
        assert!(!g.first_use(&verified(1, 900), now).await.unwrap());
        assert!(g.first_use(&verified(2, 650), now).await.unwrap());
        // 650 + 300 < 960: the second one is gone, the first (900 + 300) is not.
        assert_eq!(g.prune(at(960)).await.unwrap(), 1);
        assert!(!g.first_use(&verified(1, 900), at(960)).await.unwrap());
        // Once out of the window it could not verify anyway; the marker no longer counts.
        assert!(g.first_use(&verified(1, 900), at(1_201)).await.unwrap());
        g.forget(&verified(1, 900)).await.unwrap();
        assert!(g.first_use(&verified(1, 900), now).await.unwrap());
    }
}
