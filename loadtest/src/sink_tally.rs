//! What a load-test sink counts, from the peer's side: messages it took, each recipient once
//! (a second take of the same recipient is a duplicate), messages it answered with a
//! transient error (not taken, so their retry is not a duplicate), connections and access
//! tokens it handed out, and the time from the first message taken to the last.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// The counters a sink updates as it answers.
#[derive(Default)]
pub struct Tally {
    taken: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
    tokens: AtomicU64,
    recipients: Mutex<HashSet<String>>,
    first_last: Mutex<Option<(Instant, Instant)>>,
}

/// A reading of a [`Tally`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub taken: u64,
    pub distinct: u64,
    pub refused: u64,
    pub connections: u64,
    pub tokens: u64,
    pub span_seconds: f64,
}

impl Tally {
    /// A message taken for `recipient`.
    pub fn took(&self, recipient: &str) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.recipients.lock().insert(recipient.to_string());
        let now = Instant::now();
        let mut fl = self.first_last.lock();
        *fl = Some(fl.map_or((now, now), |(a, _)| (a, now)));
    }

    /// A message answered with a transient error.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection accepted.
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// An access token issued.
    pub fn issued(&self) {
        self.tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn seen(&self) -> Seen {
        Seen {
            taken: self.taken.load(Ordering::Relaxed),
            distinct: self.recipients.lock().len() as u64,
            refused: self.refused.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
            span_seconds: self
                .first_last
                .lock()
                .map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64()),
        }
    }
}

/// Whether the `n`th message (counted from 1) gets a transient error: one in `every`, never
/// when `every` is 0.
pub fn refuse(n: u64, every: u64) -> bool {
    every != 0 && n.is_multiple_of(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_take_of_a_recipient_is_a_duplicate_and_a_refusal_is_not_a_take() {
        let t = Tally::default();
        t.took("a");
        t.refused();
        t.took("a");
        t.took("b");
        let s = t.seen();
        assert_eq!((s.taken, s.distinct, s.refused), (3, 2, 1));
    }

    #[test]
    fn refuses_one_in_every() {
        let hits: Vec<u64> = (1..=10).filter(|&n| refuse(n, 4)).collect();
        assert_eq!(hits, vec![4, 8]);
        assert!(!(1..=10).any(|n| refuse(n, 0)));
    }
}
