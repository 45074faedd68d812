//! Replay detection: a signature seen once within the tolerance window is recognised when
//! it comes again. Entries live only as long as their timestamp could still be accepted,
//! so memory is bounded by the callback rate times the window.
//!
//! Per process: with several instances behind a balancer, a replay that lands on another
//! instance is not recognised here (a shared backend would keep these keys).

use dashmap::DashMap;

/// Signatures seen, with the Unix time after which they can no longer verify anyway.
#[derive(Default)]
pub struct ReplayGuard {
    seen: DashMap<[u8; 32], i64>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    /// Records `signature` (valid until `expires`); answers true the first time only.
    pub fn first_use(&self, signature: [u8; 32], expires: i64) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.seen.entry(signature) {
            Entry::Vacant(v) => {
                v.insert(expires);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Forgets one signature (its request could not be applied, so a retry must be allowed).
    pub fn forget(&self, signature: &[u8; 32]) {
        self.seen.remove(signature);
    }

    /// Forgets signatures whose timestamps are out of the window by `now`.
    pub fn prune(&self, now: i64) {
        self.seen.retain(|_, expires| *expires >= now);
    }

    /// Signatures remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none are remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_a_replay_until_pruned() {
        let g = ReplayGuard::new();
        assert!(g.first_use([1; 32], 100));
        assert!(!g.first_use([1; 32], 100));
        assert!(g.first_use([2; 32], 50));
        g.prune(60);
        assert_eq!(g.len(), 1);
        assert!(!g.first_use([1; 32], 100));
    }
}
