//! The writer's second stage: how chained rounds are made durable, in order.
//!
//! An ordinary round (entries and records) is appended to the write-ahead log and synced
//! ([`super::wal`]). Full segments are applied to the database by the applier thread
//! ([`super::applier`]), one transaction per segment, and then retired: when the writer has been
//! idle a moment, or when closed segments pile up, so that applying does not compete with a
//! busy send for the disk and the cores. A round that also writes other tables (job plans,
//! controls), and a reader's flush, go to the database directly, after every round logged
//! before them has been applied, so the database always holds rounds in commit order.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use redb::Database;

use super::applier::{write_round, yield_to_sends, Applier};
use super::wal::{self, Round, Wal};
use super::writer::{ExtraWrite, Reply, SYNC_SOON};

/// Bytes of rounds a segment takes before the next one is started.
const SEGMENT_BYTES: u64 = 32 << 20;

/// Bytes of closed segments that may wait for an idle moment before they are applied anyway;
/// it also bounds what a start after a crash applies before it is ready.
const BACKLOG_BYTES: u64 = 128 << 20;

/// How long the writer waits without a request before it counts as idle.
pub(super) const IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// A round chained and laid out, waiting for its commit.
pub(super) struct Prepared {
    /// The failure epoch it was chained in: a round chained on top of a failed commit must
    /// not be committed (its sequence numbers would leave a gap).
    pub epoch: u64,
    pub round: Round,
    pub extras: Vec<ExtraWrite>,
    /// Whether a reader waits for everything committed so far to be in the database.
    pub flush: bool,
    /// Whether every request of the round may wait up to [`SYNC_SOON`] for its sync.
    pub soon: bool,
    pub replies: Vec<(Reply, Vec<u64>)>,
}

/// Writes zero-filled spare segments into the log directory `wal_dir` on a thread of the
/// lowest priority, up to [`wal::MAX_SPARES`], so that the first long send after a fresh start
/// writes over existing blocks too (afterwards applied segments are kept as spares). Costs
/// that many segments of disk (128 MiB) and one write of them, once.
pub fn prepare_spares_in_background(wal_dir: &Path) {
    let dir = wal_dir.to_path_buf();
    let spawned = thread::Builder::new()
        .name("durable-wal-prep".into())
        .spawn(move || {
            yield_to_sends();
            if let Err(e) = std::fs::create_dir_all(&dir)
                .and_then(|()| wal::prepare_spares(&dir, SEGMENT_BYTES))
            {
                tracing::warn!(error = %e, dir = %dir.display(), "could not prepare spare write-ahead log segments; new segments are appended instead");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start preparing spare write-ahead log segments");
    }
}

/// The committing stage's state.
pub(super) struct Committer {
    db: Arc<Database>,
    wal: Wal,
    /// Closed segments not handed to the applier yet, and their bytes.
    closed: Vec<u64>,
    closed_bytes: u64,
    applier: Applier,
    /// Callers of rounds written to the log and not synced yet, in order.
    unsynced: Vec<(Reply, Vec<u64>)>,
    /// When the oldest of them must be synced.
    sync_by: Option<Instant>,
}

impl Committer {
    /// Closes the current segment and starts the next; an empty segment is kept unless
    /// `always` (after a failed write, which may have left a torn frame in it).
    fn rotate(&mut self, always: bool) -> Result<(), String> {
        if self.wal.bytes() == 0 && !always {
            return Ok(());
        }
        if !always {
            // A closed segment holds only synced rounds.
            self.wal.sync().map_err(|e| e.to_string())?;
        }
        let bytes = self.wal.bytes();
        let closed = self.wal.rotate().map_err(|e| e.to_string())?;
        self.closed.push(closed);
        self.closed_bytes += bytes;
        Ok(())
    }

    /// Hands every closed segment to the applier.
    fn apply_closed(&mut self) {
        for number in self.closed.drain(..) {
            self.applier.hand_over(number);
        }
        self.closed_bytes = 0;
    }

    /// Brings the database up to date with everything logged.
    fn catch_up(&mut self) -> Result<(), String> {
        let rotated = self.rotate(false);
        self.apply_closed();
        self.applier.wait_idle();
        rotated
    }

    /// Logs an ordinary round: one write, one disk sync.
    fn log(&mut self, round: Round) -> Result<(), String> {
        self.wal
            .append(std::slice::from_ref(&round))
            .map_err(|e| e.to_string())?;
        if self.wal.bytes() >= SEGMENT_BYTES {
            // Durable already; a failed rotation only delays applying.
            if let Err(e) = self.rotate(false) {
                tracing::warn!(error = %e, "could not start a new write-ahead log segment");
            }
            if self.closed_bytes >= BACKLOG_BYTES {
                self.apply_closed();
            }
        }
        Ok(())
    }

    /// Writes a round whose callers can wait for a later sync: it is synced with the next
    /// round that syncs, or at the latest [`SYNC_SOON`] from now ([`Committer::sync_soon`]).
    fn log_soon(&mut self, round: Round) -> Result<(), String> {
        self.wal
            .write(std::slice::from_ref(&round))
            .map_err(|e| e.to_string())?;
        self.sync_by
            .get_or_insert_with(|| Instant::now() + SYNC_SOON);
        Ok(())
    }

    /// When rounds written without a sync must be synced, if any are waiting.
    pub(super) fn sync_by(&self) -> Option<Instant> {
        self.sync_by
    }

    /// Syncs the rounds written without one and answers their callers; a failed sync fails
    /// them, as a failed round would ([`Committer::commit`]).
    pub(super) fn sync_soon(&mut self, epoch: &AtomicU64) {
        let result = self.wal.sync().map_err(|e| e.to_string());
        if result.is_err() {
            self.recover(epoch);
        }
        self.answer_unsynced(&result);
    }

    /// After a failed write or sync, nothing of the failed rounds counts as committed: later
    /// frames go to a new segment (this one may end in a torn frame), everything logged goes
    /// to the database, where the chainer reads the head back, and rounds chained on top of
    /// the failed ones are refused (`epoch`).
    fn recover(&mut self, epoch: &AtomicU64) {
        if self.wal.unsynced() {
            let _ = self.rotate(true);
        }
        let _ = self.catch_up();
        epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Answers the callers of rounds written without a sync, which a sync (or a failure)
    /// has settled.
    fn answer_unsynced(&mut self, result: &Result<(), String>) {
        self.sync_by = None;
        for (reply, seqs) in self.unsynced.drain(..) {
            let _ = reply.send(result.clone().map(|()| seqs));
        }
    }

    /// The writer has had nothing to do for a moment: applies what is logged.
    pub(super) fn idle(&mut self) {
        if self.wal.bytes() == 0 && self.closed.is_empty() {
            return;
        }
        if let Err(e) = self.rotate(false) {
            tracing::warn!(error = %e, "could not start a new write-ahead log segment");
        }
        self.apply_closed();
    }

    /// Commits a round to the database directly, after everything logged before it.
    fn direct(&mut self, round: &Round, extras: Vec<ExtraWrite>) -> Result<(), String> {
        self.catch_up()?;
        if round.is_empty() && extras.is_empty() {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(|e| e.to_string())?;
        write_round(&w, round).map_err(|e| e.to_string())?;
        for write in extras {
            write(&w).map_err(|e| e.to_string())?;
        }
        w.commit().map_err(|e| e.to_string())
    }

    /// Applies what is logged and stops, leaving no segment behind.
    pub(super) fn finish(mut self) {
        let synced = self.wal.sync().map_err(|e| e.to_string());
        self.answer_unsynced(&synced);
        let number = self.wal.number();
        let dir = self.wal.dir().to_path_buf();
        let logged = self.wal.bytes() > 0;
        drop(self.wal);
        if logged {
            self.closed.push(number);
        } else {
            let _ = wal::remove_segment(&dir, number);
        }
        for number in self.closed.drain(..) {
            self.applier.hand_over(number);
        }
        self.applier.stop();
    }
}

impl Committer {
    /// Starts a new log segment in `wal_dir` and the applier behind it.
    pub(super) fn start(db: Arc<Database>, wal_dir: &Path) -> std::io::Result<Committer> {
        Ok(Committer {
            db: db.clone(),
            wal: Wal::create(wal_dir)?,
            closed: Vec::new(),
            closed_bytes: 0,
            applier: Applier::start(db, wal_dir.to_path_buf())?,
            unsynced: Vec::new(),
            sync_by: None,
        })
    }

    /// Makes a chained round durable and answers its callers. A failure bumps `epoch`:
    /// rounds chained on top of this one are refused until the chainer has read the head
    /// back from the database.
    pub(super) fn commit(&mut self, p: Prepared, epoch: &AtomicU64) {
        if p.epoch != epoch.load(Ordering::Acquire) {
            for (reply, _) in p.replies {
                let _ = reply.send(Err("an earlier commit failed; try again".into()));
            }
            return;
        }
        let result = if p.flush || !p.extras.is_empty() {
            self.direct(&p.round, p.extras)
        } else if p.round.is_empty() {
            // Answered in hand-over order: after the rounds written before it are durable.
            self.wal.sync().map_err(|e| e.to_string())
        } else if p.soon {
            match self.log_soon(p.round) {
                Ok(()) => {
                    self.unsynced.extend(p.replies);
                    return;
                }
                Err(e) => Err(e),
            }
        } else {
            // The round's sync makes the rounds written before it durable too.
            self.log(p.round)
        };
        if result.is_err() {
            self.recover(epoch);
        }
        self.answer_unsynced(&result);
        for (reply, seqs) in p.replies {
            let _ = reply.send(result.clone().map(|()| seqs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::store::{wal_dir_for, Durable};
    use crate::durable::tables::{LEDGER_BLOCKS, RECORD_LOG};
    use crate::durable::writer::test_chain::Counter;
    use crate::durable::writer::Durability;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    /// The record log as the database holds it.
    fn stored_records(durable: &Durable<Counter>) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let r = durable.database().begin_read().unwrap();
        crate::durable::records::scan::<crate::durable::DurableError>(&r, |rec| {
            records.push(rec.to_vec());
            Ok(())
        })
        .unwrap();
        records
    }

    fn open(path: &Path) -> Durable<Counter> {
        let db = Arc::new(Database::create(path).unwrap());
        Durable::open(db, &wal_dir_for(path), true).unwrap()
    }

    #[tokio::test]
    async fn rounds_left_in_the_log_by_a_crash_are_applied_when_the_layer_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        // What a crash leaves: rounds synced to the log, never applied to the database.
        {
            let mut wal = Wal::create(&wal_dir_for(&path)).unwrap();
            wal.append(&[Round {
                block: Some((1, 3u64.to_le_bytes().to_vec())),
                records: Some((
                    1,
                    [
                        &[crate::durable::format::RECORD_LOG_VERSION][..],
                        &3u32.to_le_bytes(),
                        b"abc",
                    ]
                    .concat(),
                )),
            }])
            .unwrap();
        }
        let durable = open(&path);
        assert_eq!(stored_records(&durable), vec![b"abc".to_vec()]);
        // The chain goes on after the replayed round, and the log is gone.
        let seqs = durable
            .commit(Some(2), vec![b"d".to_vec()], Vec::new(), Durability::Now)
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(seqs, vec![4, 5]);
        durable.close();
        assert!(wal::read_all(&wal_dir_for(&path)).unwrap().is_empty());
        assert_eq!(stored_records(&durable), [&b"abc"[..], b"d"]);
    }

    #[tokio::test]
    async fn a_writer_with_nothing_to_do_applies_its_log_and_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let durable = open(&path);
        durable
            .commit(Some(5), vec![b"r".to_vec()], Vec::new(), Durability::Now)
            .unwrap()
            .wait()
            .await
            .unwrap();
        // Read the database as it is, without asking the writer to bring it up to date.
        let stored = || {
            let r = durable.database().begin_read().unwrap();
            let blocks = r.open_table(LEDGER_BLOCKS).unwrap().len().unwrap();
            let records = r.open_table(RECORD_LOG).unwrap().len().unwrap();
            (blocks, records)
        };
        let logged = || {
            wal::read_all(&wal_dir_for(&path))
                .unwrap()
                .iter()
                .map(|(_, rounds)| rounds.len())
                .sum::<usize>()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while (stored() == (0, 0) || logged() > 0) && std::time::Instant::now() < deadline {
            tokio::time::sleep(IDLE).await;
        }
        assert_eq!(stored(), (1, 1), "the round's values are in the database");
        assert_eq!(logged(), 0, "no round is left in the log");
        durable.close();
    }

    #[tokio::test]
    async fn a_commit_that_may_sync_later_is_answered_after_its_sync_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let durable = open(&path);
        let commit = |record: &[u8], durability| {
            durable
                .commit(Some(1), vec![record.to_vec()], Vec::new(), durability)
                .unwrap()
        };
        // Alone, a later-sync commit is answered once its deadline's sync has run.
        let alone = commit(b"one", Durability::Soon);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), alone.wait()).await;
        assert_eq!(
            answer.expect("answered within its sync deadline").unwrap(),
            vec![1]
        );
        // Followed by a commit that syncs at once, it is answered no later than that one.
        let soon = commit(b"two", Durability::Soon);
        let now = commit(b"three", Durability::Now);
        let mut soon = Box::pin(soon.wait());
        assert_eq!(now.wait().await.unwrap(), vec![3]);
        let answered = futures::poll!(soon.as_mut());
        assert!(
            matches!(answered, std::task::Poll::Ready(Ok(ref seqs)) if seqs == &vec![2]),
            "the earlier commit was answered by the later one's sync: {answered:?}"
        );
        // All three are durable, in hand-over order.
        durable.flush().unwrap();
        assert_eq!(stored_records(&durable), [&b"one"[..], b"two", b"three"]);
        durable.close();
    }

    #[tokio::test]
    async fn without_its_chain_the_layer_commits_records_and_refuses_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let db = Arc::new(Database::create(&path).unwrap());
        let durable = Durable::<Counter>::open(db, &wal_dir_for(&path), false).unwrap();
        assert!(matches!(
            durable.commit(Some(1), Vec::new(), Vec::new(), Durability::Now),
            Err(crate::durable::DurableError::NoChain)
        ));
        durable
            .commit_records_with(vec![b"r".to_vec()], Vec::new())
            .unwrap()
            .wait()
            .await
            .unwrap();
        durable.flush().unwrap();
        assert_eq!(stored_records(&durable), [b"r"]);
        let r = durable.database().begin_read().unwrap();
        assert!(r.open_table(LEDGER_BLOCKS).is_err(), "no chain table");
    }
}
