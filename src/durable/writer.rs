//! The single writer: group commit. It takes every request waiting, has the chain link the
//! round's batches ([`Chain`]: the cost ledger's hash chain), lays out the round's bytes and
//! makes the round durable with one disk sync ([`super::committer`]); requests that arrive
//! meanwhile form the next round. One thread does it all: a round's chaining is short next to
//! its sync, and every hand-over between threads would add a wake-up to each caller's wait.
//!
//! A round is at most two values however many callers share it: the chain's value (a block of
//! ledger entries) and one value holding every record of the round's record log
//! ([`super::records`]), plus whatever other writes callers handed over. The record log is how
//! the dispatch journal's message records travel with the charges they belong to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::committer::{self, Committer, Prepared};
use super::records::RoundRecords;
use super::store::DurableError;
use super::wal::Round;

pub(super) type Reply = oneshot::Sender<Result<Vec<u64>, String>>;

/// A write to another table of the same database, committed in the same transaction as the
/// round it travels with.
pub type ExtraWrite = Box<dyn FnOnce(&WriteTransaction) -> Result<(), redb::Error> + Send>;

/// How long a round of [`Durability::Soon`] writes may stay written but unsynced: short next
/// to the time their callers wait anyway (a provider call), long enough that the next chunk's
/// `sending` record usually syncs them.
pub const SYNC_SOON: std::time::Duration = std::time::Duration::from_millis(4);

/// When a commit must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// With its own round's sync.
    Now,
    /// Within [`SYNC_SOON`], with whichever round syncs first: for writes no send waits on
    /// (provider answers and their charges), so that they do not cost a sync of their own.
    /// Still in hand-over order, and answered only once durable.
    Soon,
    /// Now, and with everything committed before it in the database, where readers look.
    Flush,
}

/// The part of a round that depends on every round before it, linked on the writer's thread
/// in commit order: the cost ledger's hash chain. The writer keeps one, opened after the
/// write-ahead log was applied.
pub trait Chain: Sized + Send + 'static {
    /// What one caller hands over to be chained.
    type Batch: Send + 'static;

    /// Where the chain stands in `db` (creating its table if need be).
    fn open(db: &Database) -> Result<Self, DurableError>;

    /// Reads the head back from `db` after a failed commit: what the database holds is the
    /// chain again.
    fn reload(&mut self, db: &Database) -> Result<(), DurableError>;

    /// Links one round's batches (one per request, `None` for a request without one), in
    /// hand-over order.
    fn link<'a>(
        &mut self,
        batches: impl Iterator<Item = Option<&'a Self::Batch>> + Clone,
    ) -> Linked;
}

/// What the chain made of one round.
#[derive(Debug, Default)]
pub struct Linked {
    /// Each request's sequence numbers, in hand-over order (none for a request without a
    /// batch).
    pub seqs: Vec<Vec<u64>>,
    /// The round's value for [`super::tables::LEDGER_BLOCKS`], key and bytes, when anything
    /// was chained.
    pub block: Option<(u64, Vec<u8>)>,
}

/// One caller's share of a group commit.
pub(super) struct Request<B> {
    /// Encoded and digested by the caller, which keeps a handle to try again if the commit
    /// fails.
    pub batch: Option<B>,
    /// Records for the record log, in order.
    pub records: Vec<Vec<u8>>,
    pub extra: Vec<ExtraWrite>,
    /// Asks for everything committed so far to be in the database once this one is.
    pub flush: bool,
    /// May wait up to [`SYNC_SOON`] for its disk sync ([`Durability::Soon`]).
    pub soon: bool,
    pub reply: Reply,
}

/// Puts the calling thread (the writer) in Linux's batch scheduling class, whose wake-ups do
/// not preempt a running thread. The writer wakes thousands of times a second (a request, a
/// finished sync) and each wake-up used to preempt a tokio worker mid-task: measured on two
/// cores, ~4,500 involuntary switches of the workers per million sends, and alternating runs
/// of a 1M send took ~6% longer (median 2.08 s against 1.94 s over 10 pairs). A woken writer
/// still runs at once on an idle core, and its share of the CPU is unchanged.
pub(super) fn no_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler only reads `param`, which lives across the call; pid 0
        // is the calling thread. Moving to SCHED_BATCH needs no privilege; a failure only
        // leaves the thread as it was.
        let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if set != 0 {
            tracing::debug!("the durable writer stays in the normal scheduling class");
        }
    }
}

/// What the writer starts from.
pub(super) struct Start<C> {
    /// The key the next round's records go under.
    pub records_key: u64,
    /// Where the write-ahead log lives.
    pub wal_dir: PathBuf,
    /// The chain, when it is open.
    pub chain: Option<C>,
}

/// The writer's loop: takes every request waiting, chains the round, lays out its bytes and
/// hands it to the committing stage on the same thread; requests that arrive meanwhile form
/// the next round.
pub(super) fn run<C: Chain>(
    db: Arc<Database>,
    rx: mpsc::Receiver<Request<C::Batch>>,
    start: Start<C>,
) {
    let Start {
        mut records_key,
        wal_dir,
        mut chain,
    } = start;
    let epoch = AtomicU64::new(0);
    let mut committer = match Committer::start(db.clone(), &wal_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, dir = %wal_dir.display(), "could not start the write-ahead log");
            for r in rx {
                let _ = r
                    .reply
                    .send(Err(format!("write-ahead log unavailable: {e}")));
            }
            return;
        }
    };
    let mut my_epoch = 0;
    loop {
        let wait = committer.sync_by().map_or(committer::IDLE, |by| {
            by.saturating_duration_since(std::time::Instant::now())
        });
        let first = match rx.recv_timeout(wait) {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) if committer.sync_by().is_some() => {
                committer.sync_soon(&epoch);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                committer.idle();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut round = vec![first];
        while let Ok(more) = rx.try_recv() {
            round.push(more);
        }
        let current = epoch.load(Ordering::Acquire);
        if current != my_epoch {
            // A commit failed: what is on disk is the chain head again.
            match chain.as_mut().map_or(Ok(()), |c| c.reload(&db)) {
                Ok(()) => my_epoch = current,
                Err(e) => {
                    for r in round {
                        let _ = r.reply.send(Err(e.to_string()));
                    }
                    continue;
                }
            }
        }
        let Linked { seqs, block } = match chain.as_mut() {
            Some(c) => c.link(round.iter().map(|r| r.batch.as_ref())),
            // The handle refuses batches without a chain.
            None => Linked::default(),
        };
        let mut seqs = seqs.into_iter();
        let mut extras = Vec::new();
        let mut records = RoundRecords::with_capacity(
            round
                .iter()
                .flat_map(|r| &r.records)
                .map(|r| 4 + r.len())
                .sum(),
        );
        let mut flush = false;
        let mut soon = true;
        let mut replies = Vec::with_capacity(round.len());
        for request in round {
            for record in &request.records {
                records.push(record);
            }
            extras.extend(request.extra);
            flush |= request.flush;
            soon &= request.soon;
            replies.push((request.reply, seqs.next().unwrap_or_default()));
        }
        let records = records.finish().map(|bytes| {
            records_key += 1;
            (records_key - 1, bytes)
        });
        let prepared = Prepared {
            epoch: my_epoch,
            round: Round { block, records },
            extras,
            flush,
            soon,
            replies,
        };
        committer.commit(prepared, &epoch);
        if committer
            .sync_by()
            .is_some_and(|by| by <= std::time::Instant::now())
        {
            // Requests keep coming, none of them syncing: the waiting rounds are due.
            committer.sync_soon(&epoch);
        }
    }
    committer.finish();
}

/// A chain for the durable layer's own tests: a batch is a number of entries, numbered on from
/// the last block, whose value is its first number's key and the round's count.
#[cfg(test)]
pub(crate) mod test_chain {
    use redb::{ReadableDatabase, ReadableTable};

    use super::*;
    use crate::durable::store::db_err;
    use crate::durable::tables::LEDGER_BLOCKS;

    pub(crate) struct Counter {
        next: u64,
    }

    impl Chain for Counter {
        type Batch = u32;

        fn open(db: &Database) -> Result<Counter, DurableError> {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(LEDGER_BLOCKS).map_err(db_err)?;
            w.commit().map_err(db_err)?;
            let mut c = Counter { next: 1 };
            c.reload(db)?;
            Ok(c)
        }

        fn reload(&mut self, db: &Database) -> Result<(), DurableError> {
            let r = db.begin_read().map_err(db_err)?;
            let t = r.open_table(LEDGER_BLOCKS).map_err(db_err)?;
            if let Some((k, v)) = t.last().map_err(db_err)? {
                let count = u64::from_le_bytes(v.value().try_into().map_err(db_err)?);
                self.next = k.value() + count;
            }
            Ok(())
        }

        fn link<'a>(&mut self, batches: impl Iterator<Item = Option<&'a u32>> + Clone) -> Linked {
            let first = self.next;
            let seqs: Vec<Vec<u64>> = batches
                .map(|b| {
                    let n = b.copied().unwrap_or(0) as u64;
                    self.next += n;
                    (self.next - n..self.next).collect()
                })
                .collect();
            let count = self.next - first;
            let block = (count > 0).then(|| (first, count.to_le_bytes().to_vec()));
            Linked { seqs, block }
        }
    }
}
