//! Durable ledger storage in the embedded database (redb). One writer appends; callers
//! hand it batches and wait for the commit, and batches that arrive while a commit is running
//! are written together in the next one (group commit), so durability costs one disk sync per
//! round, not one per send.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::block::{self, BlockWriter, BINARY_MAGIC};
use super::chain::{self, TamperError, VerifyReport};
use super::entry::{
    body_digest, canonical_body, chain_hash_raw, LedgerEntry, NewEntry, GENESIS_HASH,
};

/// Blocks of entries, keyed by the sequence number of their first entry. A block is the
/// entries of one group commit (binary, `block.rs`), so the chain is written with one tree
/// insert per commit instead of one per send.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_blocks");

/// Marks an LZ4-compressed NDJSON block (the earlier text form); a block that starts with `{`
/// is plain NDJSON. New blocks are binary (`block.rs`).
const LZ4_MAGIC: &[u8] = b"lz4:";

/// The NDJSON text of a block in the earlier text form (plain, or `lz4:`-compressed); such
/// blocks are still read.
fn decode_text_block(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    match stored.strip_prefix(LZ4_MAGIC) {
        Some(c) => lz4_flex::decompress_size_prepended(c)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| e.to_string()),
        None => Ok(std::borrow::Cow::Borrowed(stored)),
    }
}

/// The entries of a stored block, in stored order (for tools and tests that inspect it).
pub fn read_block(key: u64, stored: &[u8]) -> Result<Vec<LedgerEntry>, TamperError> {
    block_entries(key, stored).collect()
}

/// The stored form of `entries`, as the writer would store them.
pub fn write_block(entries: &[LedgerEntry]) -> Vec<u8> {
    let mut w = BlockWriter::new();
    for e in entries {
        w.push(e.seq, &e.entry, &e.prev_hash, &e.hash);
    }
    w.finish()
}

/// Splits a stored block into its entries.
fn block_entries(
    key: u64,
    stored: &[u8],
) -> impl Iterator<Item = Result<LedgerEntry, TamperError>> {
    if let Some(binary) = stored.strip_prefix(BINARY_MAGIC) {
        let entries: Vec<Result<LedgerEntry, TamperError>> = match block::decode(binary) {
            Ok(es) => es.into_iter().map(Ok).collect(),
            Err(message) => vec![Err(TamperError::Unreadable { key, message })],
        };
        return entries.into_iter();
    }
    let entries: Vec<Result<LedgerEntry, TamperError>> = match decode_text_block(stored) {
        Err(message) => vec![Err(TamperError::Unreadable { key, message })],
        Ok(block) => block
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                serde_json::from_slice(line).map_err(|e| TamperError::Unreadable {
                    key,
                    message: e.to_string(),
                })
            })
            .collect(),
    };
    entries.into_iter()
}

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Db(String),
    #[error("ledger writer has stopped")]
    Stopped,
    #[error(transparent)]
    Tampered(#[from] TamperError),
}

fn db_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Db(e.to_string())
}

type Reply = oneshot::Sender<Result<Vec<u64>, String>>;
/// The digests of entries' canonical bodies, computed by the caller so the single writer only
/// chains and stores.
type Digests = Vec<[u8; 32]>;

/// A write to another table of the same database, committed in the same transaction as the
/// entries it travels with: a message is marked sent in the very step that writes its charge.
pub type ExtraWrite = Box<dyn FnOnce(&WriteTransaction) -> Result<(), redb::Error> + Send>;

/// One caller's share of a group commit.
struct Request {
    /// Shared with the caller, which keeps them to try again if the commit fails.
    entries: Arc<[NewEntry]>,
    digests: Digests,
    extra: Vec<ExtraWrite>,
    reply: Reply,
}

/// A commit handed to the writer: wait on it to learn the entries' sequence numbers.
pub struct PendingCommit(oneshot::Receiver<Result<Vec<u64>, String>>);

impl PendingCommit {
    /// Waits until the commit is durable.
    pub async fn wait(self) -> Result<Vec<u64>, LedgerError> {
        self.0
            .await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(LedgerError::Db)
    }
}

/// The ledger: append through the writer thread, read through snapshots of the database.
#[derive(Clone)]
pub struct Ledger {
    db: Arc<Database>,
    writer: Arc<Writer>,
}

struct Writer {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Request>>>,
    thread: parking_lot::Mutex<Option<thread::JoinHandle<()>>>,
}

impl Ledger {
    /// Opens (or creates) the ledger in `db` and starts its writer thread.
    pub fn open(db: Arc<Database>) -> Result<Ledger, LedgerError> {
        {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(ENTRIES).map_err(db_err)?;
            w.commit().map_err(db_err)?;
        }
        let (last_seq, last_hash) = read_head(&db)?;
        let (tx, rx) = mpsc::channel::<Request>();
        let writer_db = db.clone();
        let thread = thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || chainer(writer_db, rx, last_seq, last_hash))
            .map_err(db_err)?;
        let writer = Writer {
            tx: parking_lot::Mutex::new(Some(tx)),
            thread: parking_lot::Mutex::new(Some(thread)),
        };
        Ok(Ledger {
            db,
            writer: Arc::new(writer),
        })
    }

    /// Stops the writer after the batches already handed to it are committed.
    pub fn close(&self) {
        self.writer.tx.lock().take();
        if let Some(t) = self.writer.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// Opens the database file at `path` (created if missing).
    pub fn open_path(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open(Arc::new(Database::create(path).map_err(db_err)?))
    }

    /// Appends entries durably; answers their sequence numbers once committed.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<u64>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(entries.into(), Vec::new())?.wait().await
    }

    /// Hands entries and writes to other tables to the writer, which commits them together
    /// in one transaction. Hand-over order is commit order, so two commits handed over one
    /// after the other by the same caller land in that order.
    pub fn commit(
        &self,
        entries: Arc<[NewEntry]>,
        extra: Vec<ExtraWrite>,
    ) -> Result<PendingCommit, LedgerError> {
        let digests: Digests = entries
            .iter()
            .map(|e| body_digest(&canonical_body(e)))
            .collect();
        let (reply, wait) = oneshot::channel();
        let tx = self.writer.tx.lock().clone().ok_or(LedgerError::Stopped)?;
        tx.send(Request {
            entries,
            digests,
            extra,
            reply,
        })
        .map_err(|_| LedgerError::Stopped)?;
        Ok(PendingCommit(wait))
    }

    /// The database the ledger lives in (other tables committed with it live there too).
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Every entry in order, read from one consistent snapshot.
    pub fn entries(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        let mut out = Vec::new();
        self.scan(|e| {
            out.push(e.clone());
            true
        })?;
        Ok(out)
    }

    /// Calls `f` on every entry in order from one consistent snapshot, until it answers false.
    /// Blocking: run it off the async runtime.
    pub fn scan(&self, mut f: impl FnMut(&LedgerEntry) -> bool) -> Result<(), LedgerError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(ENTRIES).map_err(db_err)?;
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            for e in block_entries(k.value(), v.value()) {
                if !f(&e?) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Verifies the whole chain.
    pub fn verify(&self) -> Result<VerifyReport, LedgerError> {
        verify_db(&self.db)
    }
}

/// Verifies the chain stored in `db` (used by `herald ledger verify` on a stopped gateway).
pub fn verify_db(db: &Database) -> Result<VerifyReport, LedgerError> {
    let r = db.begin_read().map_err(db_err)?;
    let t = match r.open_table(ENTRIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(VerifyReport {
                entries: 0,
                head_hash: GENESIS_HASH.into(),
            })
        }
        Err(e) => return Err(db_err(e)),
    };
    // Each block's key must be the sequence number of its first entry.
    let mut all: Vec<Result<(u64, LedgerEntry), TamperError>> = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let key = k.value();
        let mut first = true;
        for e in block_entries(key, v.value()) {
            all.push(e.and_then(|e| {
                let stated = if first { key } else { e.seq };
                first = false;
                if stated != e.seq {
                    return Err(TamperError::Sequence {
                        expected: key,
                        found: e.seq,
                    });
                }
                Ok((e.seq, e))
            }));
        }
    }
    Ok(chain::verify(all)?)
}

/// The sequence number and hash of the last committed entry.
fn read_head(db: &Database) -> Result<(u64, String), LedgerError> {
    let r = db.begin_read().map_err(db_err)?;
    let t = r.open_table(ENTRIES).map_err(db_err)?;
    let last = match t.last().map_err(db_err)? {
        Some((k, v)) => match block_entries(k.value(), v.value()).last() {
            Some(e) => {
                let e = e?;
                (e.seq, e.hash)
            }
            None => (0, GENESIS_HASH.to_string()),
        },
        None => (0, GENESIS_HASH.to_string()),
    };
    Ok(last)
}

/// A round chained and encoded, waiting for its commit.
struct Prepared {
    /// The failure epoch it was chained in: a round chained on top of a failed commit must
    /// not be committed (its sequence numbers would leave a gap).
    epoch: u64,
    block: Option<(u64, Vec<u8>)>,
    extras: Vec<ExtraWrite>,
    replies: Vec<(Reply, Vec<u64>)>,
}

/// The first stage of the writer: takes every request waiting, chains and compresses the
/// round, and hands it to the committing stage, so that the next round is chained while the
/// disk syncs the previous one.
fn chainer(db: Arc<Database>, rx: mpsc::Receiver<Request>, mut seq: u64, mut hash: String) {
    let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (to_commit, commits) = mpsc::sync_channel::<Prepared>(1);
    let committer = {
        let (db, epoch) = (db.clone(), epoch.clone());
        thread::Builder::new()
            .name("ledger-commit".into())
            .spawn(move || committer(db, commits, epoch))
    };
    let committer = match committer {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "could not start the ledger's commit thread");
            return;
        }
    };
    let mut my_epoch = 0;
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while let Ok(more) = rx.try_recv() {
            round.push(more);
        }
        let current = epoch.load(std::sync::atomic::Ordering::Acquire);
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
        let mut block = BlockWriter::new();
        let mut extras = Vec::new();
        let mut replies = Vec::with_capacity(round.len());
        // The head stays raw through the round; only the chain input needs its hex form.
        let mut head = [0u8; 32];
        let mut head_hex = [0u8; 64];
        let _ = hex::decode_to_slice(&hash, &mut head);
        head_hex.copy_from_slice(hash.as_bytes().get(..64).unwrap_or(&[b'0'; 64]));
        for request in round {
            let mut seqs = Vec::with_capacity(request.digests.len());
            for (entry, digest) in request.entries.iter().zip(&request.digests) {
                seq += 1;
                let next = chain_hash_raw(seq, digest, &head_hex);
                block.push_raw(seq, entry, &head, &next);
                head = next;
                let _ = hex::encode_to_slice(next, &mut head_hex);
                seqs.push(seq);
            }
            extras.extend(request.extra);
            replies.push((request.reply, seqs));
        }
        hash = String::from_utf8_lossy(&head_hex).into_owned();
        let block = (!block.is_empty()).then(|| (first_seq, block.finish()));
        let prepared = Prepared {
            epoch: my_epoch,
            block,
            extras,
            replies,
        };
        if to_commit.send(prepared).is_err() {
            break;
        }
    }
    drop(to_commit);
    let _ = committer.join();
}

/// The second stage: commits prepared rounds in order, one transaction (one disk sync) each.
fn committer(
    db: Arc<Database>,
    rounds: mpsc::Receiver<Prepared>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    while let Ok(p) = rounds.recv() {
        if p.epoch != epoch.load(Ordering::Acquire) {
            for (reply, _) in p.replies {
                let _ = reply.send(Err("an earlier ledger commit failed; try again".into()));
            }
            continue;
        }
        let Prepared {
            block,
            extras,
            replies,
            ..
        } = p;
        let result = (|| -> Result<(), String> {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            if let Some((first_seq, bytes)) = &block {
                let mut t = w.open_table(ENTRIES).map_err(|e| e.to_string())?;
                t.insert(*first_seq, bytes.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            for write in extras {
                write(&w).map_err(|e| e.to_string())?;
            }
            w.commit().map_err(|e| e.to_string())
        })();
        match result {
            Ok(()) => {
                for (reply, seqs) in replies {
                    let _ = reply.send(Ok(seqs));
                }
            }
            Err(e) => {
                // Nothing of this round was committed; rounds chained after it are refused
                // until the chainer has read the head back from disk.
                epoch.fetch_add(1, Ordering::AcqRel);
                for (reply, _) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Micros;
    use crate::ledger::entry::sample_entry;

    async fn ledger_with(n: u32) -> (tempfile::TempDir, std::path::PathBuf, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let l = Ledger::open_path(&path).unwrap();
        let (a, b) = tokio::join!(
            l.append((0..n / 2).map(sample_entry).collect()),
            l.append((n / 2..n).map(sample_entry).collect())
        );
        a.unwrap();
        b.unwrap();
        (dir, path, l)
    }

    fn rewrite(path: &Path, f: impl FnOnce(&mut redb::Table<u64, &[u8]>)) {
        let db = Database::create(path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(ENTRIES).unwrap();
            f(&mut t);
        }
        w.commit().unwrap();
    }

    /// Every block's entries, for editing.
    fn blocks(t: &redb::Table<u64, &[u8]>) -> Vec<(u64, Vec<LedgerEntry>)> {
        t.iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    k.value(),
                    block_entries(k.value(), v.value())
                        .map(|e| e.unwrap())
                        .collect(),
                )
            })
            .collect()
    }

    fn write_blocks(t: &mut redb::Table<u64, &[u8]>, blocks: &[(u64, Vec<LedgerEntry>)]) {
        t.retain(|_, _| false).unwrap();
        for (k, entries) in blocks {
            let mut b = Vec::new();
            for e in entries {
                b.extend_from_slice(&serde_json::to_vec(e).unwrap());
                b.push(b'\n');
            }
            t.insert(*k, b.as_slice()).unwrap();
        }
    }

    /// Applies `f` to the flat list of entries, keeping block boundaries by position.
    fn edit(t: &mut redb::Table<u64, &[u8]>, f: impl FnOnce(&mut Vec<LedgerEntry>)) {
        let bs = blocks(t);
        let sizes: Vec<usize> = bs.iter().map(|(_, e)| e.len()).collect();
        let keys: Vec<u64> = bs.iter().map(|(k, _)| *k).collect();
        let mut flat: Vec<LedgerEntry> = bs.into_iter().flat_map(|(_, e)| e).collect();
        f(&mut flat);
        let mut out = Vec::new();
        let mut it = flat.into_iter();
        for (k, n) in keys.into_iter().zip(sizes) {
            out.push((k, it.by_ref().take(n).collect()));
        }
        write_blocks(t, &out);
    }

    #[tokio::test]
    async fn an_intact_chain_verifies_and_survives_reopening() {
        let (_d, path, l) = ledger_with(10).await;
        assert_eq!(l.verify().unwrap().entries, 10);
        l.close();
        drop(l);
        let l = Ledger::open_path(&path).unwrap();
        l.append(vec![sample_entry(99)]).await.unwrap();
        assert_eq!(l.verify().unwrap().entries, 11);
        assert_eq!(
            l.entries().unwrap()[10].entry.message_id,
            sample_entry(99).message_id
        );
    }

    #[tokio::test]
    async fn a_modified_entry_is_detected() {
        let (_d, path, l) = ledger_with(10).await;
        l.close();
        drop(l);
        rewrite(&path, |t| edit(t, |es| es[3].entry.cost_micros = Micros(1)));
        let db = Database::create(&path).unwrap();
        assert!(matches!(
            verify_db(&db),
            Err(LedgerError::Tampered(TamperError::Modified { seq: 4 }))
        ));
    }

    #[tokio::test]
    async fn a_modified_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let (_d, path, l) = ledger_with(10).await;
        l.close();
        drop(l);
        rewrite(&path, |t| {
            edit(t, |es| {
                let mut forged = es[3].entry.clone();
                forged.cost_micros = Micros(1);
                es[3] = LedgerEntry::chain(4, forged, &es[3].prev_hash);
            })
        });
        let db = Database::create(&path).unwrap();
        assert!(matches!(
            verify_db(&db),
            Err(LedgerError::Tampered(TamperError::Broken { seq: 5 }))
        ));
    }

    #[tokio::test]
    async fn a_deleted_entry_is_detected() {
        let (_d, path, l) = ledger_with(10).await;
        l.close();
        drop(l);
        rewrite(&path, |t| {
            let bs = blocks(t);
            let mut flat: Vec<(u64, LedgerEntry)> = Vec::new();
            for (_, es) in bs {
                flat.extend(es.into_iter().map(|e| (e.seq, e)));
            }
            flat.remove(6);
            // One block per remaining entry, keyed by its own sequence number.
            let out: Vec<(u64, Vec<LedgerEntry>)> =
                flat.into_iter().map(|(k, e)| (k, vec![e])).collect();
            write_blocks(t, &out);
        });
        let db = Database::create(&path).unwrap();
        assert!(matches!(
            verify_db(&db),
            Err(LedgerError::Tampered(TamperError::Sequence {
                expected: 7,
                found: 8
            }))
        ));
    }

    #[tokio::test]
    async fn reordered_entries_are_detected() {
        let (_d, path, l) = ledger_with(10).await;
        l.close();
        drop(l);
        rewrite(&path, |t| edit(t, |es| es.swap(2, 5)));
        let db = Database::create(&path).unwrap();
        assert!(matches!(
            verify_db(&db),
            Err(LedgerError::Tampered(TamperError::Sequence { .. }))
        ));
    }
}
