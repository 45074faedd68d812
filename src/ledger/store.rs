//! Durable ledger storage in the embedded database (redb). One writer thread appends; callers
//! hand it batches and wait for the commit, and batches that arrive while a commit is running
//! are written together in the next one (group commit), so durability costs one disk sync per
//! round, not one per send.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::chain::{self, TamperError, VerifyReport};
use super::entry::{
    body_digest, canonical_body, chain_hash, stored_bytes, LedgerEntry, NewEntry, GENESIS_HASH,
};

/// Blocks of entries, keyed by the sequence number of their first entry. A block is the
/// entries of one group commit as NDJSON, one stored entry per line, so the chain is written
/// with one tree insert per commit instead of one per send.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_blocks");

/// Marks an LZ4-compressed block; a block that starts with `{` is plain NDJSON.
const LZ4_MAGIC: &[u8] = b"lz4:";

/// Compresses a block of NDJSON entries for storage. The hashes stay inside the text, so
/// tampering with the compressed bytes still has to get past the chain.
pub fn encode_block(ndjson: &[u8]) -> Vec<u8> {
    let mut out = LZ4_MAGIC.to_vec();
    out.extend_from_slice(&lz4_flex::compress_prepend_size(ndjson));
    out
}

/// The NDJSON text of a stored block.
pub fn decode_block(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    match stored.strip_prefix(LZ4_MAGIC) {
        Some(c) => lz4_flex::decompress_size_prepended(c)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| e.to_string()),
        None => Ok(std::borrow::Cow::Borrowed(stored)),
    }
}

/// Splits a stored block into its entries.
fn block_entries(
    key: u64,
    stored: &[u8],
) -> impl Iterator<Item = Result<LedgerEntry, TamperError>> {
    let entries: Vec<Result<LedgerEntry, TamperError>> = match decode_block(stored) {
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
/// Canonical entry bodies with their digests, computed by the caller so the single writer
/// only chains and stores.
type Bodies = Vec<(Vec<u8>, [u8; 32])>;

/// The ledger: append through the writer thread, read through snapshots of the database.
#[derive(Clone)]
pub struct Ledger {
    db: Arc<Database>,
    writer: Arc<Writer>,
}

struct Writer {
    tx: parking_lot::Mutex<Option<mpsc::Sender<(Bodies, Reply)>>>,
    thread: parking_lot::Mutex<Option<thread::JoinHandle<()>>>,
}

impl Ledger {
    /// Opens (or creates) the ledger in `db` and starts its writer thread.
    pub fn open(db: Arc<Database>) -> Result<Ledger, LedgerError> {
        let (last_seq, last_hash) = {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(ENTRIES).map_err(db_err)?;
            w.commit().map_err(db_err)?;
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
            last
        };
        let (tx, rx) = mpsc::channel::<(Bodies, Reply)>();
        let writer_db = db.clone();
        let thread = thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer(writer_db, rx, last_seq, last_hash))
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
        let bodies: Bodies = entries
            .iter()
            .map(|e| {
                let body = canonical_body(e);
                let digest = body_digest(&body);
                (body, digest)
            })
            .collect();
        let (reply, wait) = oneshot::channel();
        let tx = self.writer.tx.lock().clone().ok_or(LedgerError::Stopped)?;
        tx.send((bodies, reply)).map_err(|_| LedgerError::Stopped)?;
        wait.await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(LedgerError::Db)
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

fn writer(db: Arc<Database>, rx: mpsc::Receiver<(Bodies, Reply)>, mut seq: u64, mut hash: String) {
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while let Ok(more) = rx.try_recv() {
            round.push(more);
        }
        let (start_seq, start_hash) = (seq, hash.clone());
        let result = (|| -> Result<Vec<Vec<u64>>, String> {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            let mut assigned = Vec::with_capacity(round.len());
            {
                let mut t = w.open_table(ENTRIES).map_err(|e| e.to_string())?;
                let first_seq = seq + 1;
                let mut block = Vec::with_capacity(round.iter().map(|(b, _)| b.len() * 400).sum());
                for (entries, _) in &round {
                    let mut seqs = Vec::with_capacity(entries.len());
                    for (body, digest) in entries {
                        seq += 1;
                        let next = chain_hash(seq, digest, &hash);
                        block.extend_from_slice(&stored_bytes(seq, body, &hash, &next));
                        block.push(b'\n');
                        hash = next;
                        seqs.push(seq);
                    }
                    assigned.push(seqs);
                }
                t.insert(first_seq, encode_block(&block).as_slice())
                    .map_err(|e| e.to_string())?;
            }
            w.commit().map_err(|e| e.to_string())?;
            Ok(assigned)
        })();
        match result {
            Ok(assigned) => {
                for ((_, reply), seqs) in round.into_iter().zip(assigned) {
                    let _ = reply.send(Ok(seqs));
                }
            }
            Err(e) => {
                // Nothing of this round was committed: roll the chain head back.
                seq = start_seq;
                hash = start_hash;
                for (_, reply) in round {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Currency, Micros};
    use crate::ledger::entry::EntryKind;

    fn entry(i: u32) -> NewEntry {
        NewEntry {
            kind: EntryKind::Charge,
            message_id: format!("msg_{i:032x}"),
            job_id: "job_1".into(),
            campaign_id: "camp".into(),
            channel: Channel::Sms,
            provider: "sandbox".into(),
            country: "CN".into(),
            parts: 1 + i % 3,
            unit_price_micros: Micros(45_000),
            cost_micros: Micros(45_000 * (1 + i % 3) as i64),
            currency: Currency::parse("CNY").unwrap(),
            at: "2026-11-23T04:00:00Z".parse().unwrap(),
            references: None,
            provider_message_id: None,
        }
    }

    async fn ledger_with(n: u32) -> (tempfile::TempDir, std::path::PathBuf, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let l = Ledger::open_path(&path).unwrap();
        let (a, b) = tokio::join!(
            l.append((0..n / 2).map(entry).collect()),
            l.append((n / 2..n).map(entry).collect())
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
        l.append(vec![entry(99)]).await.unwrap();
        assert_eq!(l.verify().unwrap().entries, 11);
        assert_eq!(
            l.entries().unwrap()[10].entry.message_id,
            entry(99).message_id
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
