//! The ledger's single writer: group commit. It takes every request waiting, links their
//! entries into the hash chain, lays out the round's bytes and makes the round durable with
//! one disk sync ([`super::committer`]); requests that arrive meanwhile form the next round.
//! One thread does it all: a round's chaining is short next to its sync, and every hand-over
//! between threads would add a wake-up to each caller's wait.
//!
//! A round is at most two values however many callers share it: one block of entries and one
//! value holding every record of the round's record log, plus whatever other writes callers
//! handed over. The record log is how the dispatch journal's message records travel with the
//! charges they belong to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::batch::EntryBatch;
use super::block::SegmentBlockWriter;
use super::charge_rows;
use super::committer::{self, Committer, Prepared};
use super::entry::chain_hash_raw;
use super::store::{read_head, LedgerError};
use super::wal::Round;

/// The record log: per round, every record handed over with it, each as `u32 len, bytes`,
/// keyed by a number that grows with every round.
pub(super) const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_records");

pub(super) type Reply = oneshot::Sender<Result<Vec<u64>, String>>;

/// A write to another table of the same database, committed in the same transaction as the
/// entries it travels with.
pub type ExtraWrite = Box<dyn FnOnce(&WriteTransaction) -> Result<(), redb::Error> + Send>;

/// How long a round of [`Request::soon`] writes may stay written but unsynced: short next to
/// the time their callers wait anyway (a provider call), long enough that the next chunk's
/// `sending` record usually syncs them.
pub const SYNC_SOON: std::time::Duration = std::time::Duration::from_millis(4);

/// When a request must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// With its own round's sync.
    Now,
    /// Within [`SYNC_SOON`], with whichever round syncs first.
    Soon,
    /// Now, and with everything committed before it in the database, where readers look.
    Flush,
}

/// One caller's share of a group commit.
pub(super) struct Request {
    /// Encoded and digested by the caller, which keeps a handle to try again if the commit
    /// fails.
    pub entries: EntryBatch,
    /// Records for the record log, in order.
    pub records: Vec<Vec<u8>>,
    pub extra: Vec<ExtraWrite>,
    /// Asks for everything committed so far to be in the database once this one is.
    pub flush: bool,
    /// May wait up to [`SYNC_SOON`] for its disk sync (see [`super::Ledger::commit_records_soon`]).
    pub soon: bool,
    pub reply: Reply,
}

/// The key the next round's records go under.
pub(super) fn next_records_key(db: &Database) -> Result<u64, LedgerError> {
    use redb::ReadableDatabase;
    let r = db.begin_read().map_err(super::store::db_err)?;
    let t = r.open_table(RECORDS).map_err(super::store::db_err)?;
    let last = t.last().map_err(super::store::db_err)?;
    Ok(last.map(|(k, _)| k.value() + 1).unwrap_or(1))
}

/// Calls `f` on every record of the record log, in the order they were handed over.
pub fn scan_records<E: From<LedgerError>>(
    r: &redb::ReadTransaction,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let db_err = |e: redb::Error| E::from(super::store::db_err(e));
    let t = match r.open_table(RECORDS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db_err(e.into())),
    };
    for row in t.iter().map_err(|e| db_err(e.into()))? {
        let (_, v) = row.map_err(|e| db_err(e.into()))?;
        let mut rest = v.value();
        while !rest.is_empty() {
            let record = (rest.len() >= 4)
                .then(|| u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize)
                .and_then(|n| rest.get(4..4 + n));
            let Some(record) = record else {
                return Err(E::from(LedgerError::Db(
                    "record log value truncated".into(),
                )));
            };
            f(record)?;
            rest = &rest[4 + record.len()..];
        }
    }
    Ok(())
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
            tracing::debug!("the ledger writer stays in the normal scheduling class");
        }
    }
}

/// Where the chain stands when the writer starts.
pub(super) struct Head {
    pub seq: u64,
    pub hash: String,
    pub records_key: u64,
    /// Where the write-ahead log lives.
    pub wal_dir: PathBuf,
}

/// The first stage of the writer: takes every request waiting, chains the round and lays out
/// its bytes, and hands it to the committing stage, so that the next round is chained while
/// the disk syncs the previous one.
pub(super) fn chainer(db: Arc<Database>, rx: mpsc::Receiver<Request>, head: Head) {
    let Head {
        mut seq,
        mut hash,
        mut records_key,
        wal_dir,
    } = head;
    let epoch = AtomicU64::new(0);
    let mut committer = match Committer::start(db.clone(), &wal_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, dir = %wal_dir.display(), "could not start the ledger's log");
            for r in rx {
                let _ = r.reply.send(Err(format!("ledger log unavailable: {e}")));
            }
            return;
        }
    };
    let mut my_epoch = 0;
    // One request's entry hashes, for its block segment; kept across rounds for its room.
    let mut hashes: Vec<[u8; 32]> = Vec::new();
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
            match read_head(&db) {
                Ok((s, h)) => {
                    (seq, hash) = (s, h);
                    my_epoch = current;
                }
                Err(e) => {
                    for r in round {
                        let _ = r.reply.send(Err(e.to_string()));
                    }
                    continue;
                }
            }
        }
        let first_seq = seq + 1;
        let mut extras = Vec::new();
        let mut records = Vec::new();
        let mut flush = false;
        let mut soon = true;
        let mut replies = Vec::with_capacity(round.len());
        // The chain input takes the previous hash in hex; the block header takes it raw.
        let mut prev = [0u8; 32];
        let mut head_hex = [0u8; 64];
        let _ = hex::decode_to_slice(&hash, &mut prev);
        head_hex.copy_from_slice(hash.as_bytes().get(..64).unwrap_or(&[b'0'; 64]));
        let block_bytes = round
            .iter()
            .filter(|r| !r.entries.is_empty())
            .map(|r| SegmentBlockWriter::stored_len(&r.entries))
            .sum();
        let mut block = SegmentBlockWriter::with_capacity(first_seq, &prev, block_bytes);
        records.reserve(
            round
                .iter()
                .flat_map(|r| &r.records)
                .map(|r| 4 + r.len())
                .sum(),
        );
        // Form 3 chains over the raw previous hash; its hex is brought up to date only when a
        // form 2 entry or the round's end needs it.
        let mut hex_behind = false;
        for request in round {
            let mut seqs = Vec::with_capacity(request.entries.len());
            hashes.clear();
            match request.entries.header_digest() {
                Some(header) => {
                    for digest in request.entries.digests() {
                        seq += 1;
                        prev = charge_rows::chain(&prev, seq, header, digest);
                        hashes.push(prev);
                        seqs.push(seq);
                    }
                    hex_behind |= !seqs.is_empty();
                }
                None => {
                    if hex_behind {
                        let _ = hex::encode_to_slice(prev, &mut head_hex);
                        hex_behind = false;
                    }
                    for digest in request.entries.digests() {
                        seq += 1;
                        prev = chain_hash_raw(seq, digest, &head_hex);
                        hashes.push(prev);
                        let _ = hex::encode_to_slice(prev, &mut head_hex);
                        seqs.push(seq);
                    }
                }
            }
            if !hashes.is_empty() {
                block.push(&request.entries, &hashes);
            }
            for record in &request.records {
                records.extend_from_slice(&(record.len() as u32).to_le_bytes());
                records.extend_from_slice(record);
            }
            extras.extend(request.extra);
            flush |= request.flush;
            soon &= request.soon;
            replies.push((request.reply, seqs));
        }
        if hex_behind {
            let _ = hex::encode_to_slice(prev, &mut head_hex);
        }
        hash = String::from_utf8_lossy(&head_hex).into_owned();
        let block = (!block.is_empty()).then(|| (first_seq, block.finish()));
        let records = (!records.is_empty()).then(|| {
            records_key += 1;
            (records_key - 1, records)
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
