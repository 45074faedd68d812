//! Messages in doubt: handed to a provider that cannot drop repeats just before a crash, with
//! no answer recorded. They are not sent again (that could reach a phone twice); a later
//! delivery receipt for one proves it reached the provider, and settles it as sent, charged in
//! the ledger like any other send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::domain::JobId;
use crate::phone::RegionCode;

/// What is needed to charge an in-doubt message once a receipt settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InDoubt {
    pub parts: u32,
    pub cost_micros: i64,
    pub region: RegionCode,
    /// The provider slot it was handed to.
    pub provider: usize,
}

/// Settles an in-doubt message durably (journal and ledger) and then in the job.
pub trait InDoubtSettler: Send + Sync {
    /// Called when a receipt arrives for recipient `index` of `job` while it is in doubt.
    fn settle(&self, job: &JobId, index: u32);
}

/// A job's in-doubt messages, by recipient.
#[derive(Default)]
pub struct InDoubtSet {
    entries: Mutex<HashMap<u32, InDoubt>>,
    /// How many entries there are: every receipt of every job asks, and almost always the
    /// answer is none, so it must not take the lock.
    count: AtomicUsize,
    settler: OnceLock<Arc<dyn InDoubtSettler>>,
}

impl InDoubtSet {
    /// Adds a message found in flight after a restart.
    pub fn insert(&self, index: u32, message: InDoubt) {
        if self.entries.lock().insert(index, message).is_none() {
            self.count.fetch_add(1, Ordering::Release);
        }
    }

    /// Gives the set the means to settle (once; later calls are ignored).
    pub fn set_settler(&self, settler: Arc<dyn InDoubtSettler>) {
        let _ = self.settler.set(settler);
    }

    /// A receipt arrived for `index`: asks for it to be settled if it is in doubt.
    pub fn receipt_for(&self, job: &JobId, index: u32) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        if self.entries.lock().contains_key(&index) {
            if let Some(s) = self.settler.get() {
                s.settle(job, index);
            }
        }
    }

    /// Takes the message out of doubt; only the first caller gets it.
    pub fn take(&self, index: u32) -> Option<InDoubt> {
        let taken = self.entries.lock().remove(&index);
        if taken.is_some() {
            self.count.fetch_sub(1, Ordering::Release);
        }
        taken
    }
}
