//! The ledger handle: entries are appended through the durable layer's single writer
//! ([`crate::durable`]), which links them into the hash chain on its thread ([`super::chainer`])
//! and commits them with the round they arrive in (group commit), so durability costs one disk
//! sync per round, not one per send. Reads and verification go through snapshots of the
//! database.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::batch::EntryBatch;
use super::block;
use super::chain::{self, TamperError, VerifyReport};
use super::chainer::Chainer;
use super::entry::{LedgerEntry, NewEntry, GENESIS_HASH};
use crate::durable::tables::LEDGER_BLOCKS as ENTRIES;
use crate::durable::{self, Durability, Durable, DurableError, ExtraWrite, PendingCommit};

/// The entries of a stored block, in stored order (for tools and tests that inspect it).
pub fn read_block(key: u64, stored: &[u8]) -> Result<Vec<LedgerEntry>, TamperError> {
    block_entries(key, stored).collect()
}

/// The stored form of `entries` (consecutive, forms 2 and 3), as tools write entries back.
pub fn write_block(entries: &[LedgerEntry]) -> Vec<u8> {
    block::segments_block(entries)
}

/// Splits a stored block into its entries.
fn block_entries(
    key: u64,
    stored: &[u8],
) -> impl Iterator<Item = Result<LedgerEntry, TamperError>> {
    let entries: Vec<Result<LedgerEntry, TamperError>> = match block::decode(stored) {
        Ok(es) => es.into_iter().map(Ok).collect(),
        Err(message) => vec![Err(TamperError::Unreadable { key, message })],
    };
    entries.into_iter()
}

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Db(String),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error(transparent)]
    Tampered(#[from] TamperError),
}

pub(super) fn db_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Db(e.to_string())
}

/// The ledger: appended through the durable layer's writer, read through snapshots of the
/// database. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    durable: Durable<Chainer>,
}

impl Ledger {
    /// Opens the durable layer over `db` with the ledger's chain (first applying what its
    /// write-ahead log in `wal_dir` still holds) and answers the ledger over it.
    pub fn open(db: Arc<Database>, wal_dir: &Path) -> Result<Ledger, LedgerError> {
        Ok(Ledger::on(Durable::open(db, wal_dir, true)?))
    }

    /// The ledger over an open durable layer. Appending needs the layer opened with its chain;
    /// reading does not (a ledger never enabled reads as empty).
    pub fn on(durable: Durable<Chainer>) -> Ledger {
        Ledger { durable }
    }

    /// The durable layer the ledger writes through.
    pub fn durable(&self) -> &Durable<Chainer> {
        &self.durable
    }

    /// Stops the writer after the batches already handed to it are committed.
    pub fn close(&self) {
        self.durable.close();
    }

    /// Opens the database file at `path` (created if missing), its log beside it.
    pub fn open_path(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open(
            Arc::new(Database::create(path).map_err(db_err)?),
            &durable::wal_dir_for(path),
        )
    }

    /// Appends entries durably; answers their sequence numbers once committed.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<u64>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .commit(&EntryBatch::of(&entries), Vec::new())?
            .wait()
            .await?)
    }

    /// Hands entries and writes to other tables to the writer, which commits them together
    /// in one transaction. Hand-over order is commit order, so two commits handed over one
    /// after the other by the same caller land in that order.
    pub fn commit(
        &self,
        entries: &EntryBatch,
        extra: Vec<ExtraWrite>,
    ) -> Result<PendingCommit, LedgerError> {
        self.submit(entries, Vec::new(), extra, Durability::Now)
    }

    /// Hands entries and records to the writer, for writes no send waits on (provider answers
    /// and their charges): the disk sync may wait up to [`durable::SYNC_SOON`] for a round
    /// that syncs anyway ([`Durability::Soon`]). Still in hand-over order, and the commit is
    /// answered only once it is durable.
    pub fn commit_records_soon(
        &self,
        entries: &EntryBatch,
        records: Vec<Vec<u8>>,
    ) -> Result<PendingCommit, LedgerError> {
        self.submit(entries, records, Vec::new(), Durability::Soon)
    }

    /// Waits until everything committed so far is in the database, where readers look.
    /// Blocking: run it off the async runtime.
    pub fn flush(&self) -> Result<(), LedgerError> {
        Ok(self.durable.flush()?)
    }

    fn submit(
        &self,
        entries: &EntryBatch,
        records: Vec<Vec<u8>>,
        extra: Vec<ExtraWrite>,
        durability: Durability,
    ) -> Result<PendingCommit, LedgerError> {
        let batch = (!entries.is_empty()).then(|| entries.clone());
        Ok(self.durable.commit(batch, records, extra, durability)?)
    }

    /// The database the ledger lives in (other tables committed with it live there too).
    pub fn database(&self) -> &Arc<Database> {
        self.durable.database()
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
        self.flush()?;
        let r = self.database().begin_read().map_err(db_err)?;
        let t = match r.open_table(ENTRIES) {
            Ok(t) => t,
            // Never enabled: no entries.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(db_err(e)),
        };
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
        self.flush()?;
        verify_db(self.database())
    }
}

/// Verifies the ledger in the database file at `db_path` of a stopped gateway (`herald ledger
/// verify`), after applying what its write-ahead log still holds, as a start would.
pub fn verify_path(db_path: &Path) -> Result<VerifyReport, LedgerError> {
    let db = Database::open(db_path).map_err(db_err)?;
    durable::applier::replay(&db, &durable::wal_dir_for(db_path))?;
    verify_db(&db)
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
pub(super) fn read_head(db: &Database) -> Result<(u64, String), LedgerError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Micros;
    use crate::ledger::entry::{sample_entry, BodyForm, EntryKind};

    /// The forms new entries are written in: form 2 (entries appended one by one) and form 3
    /// (a chunk's charges); every tamper test runs on both.
    const NEW_FORMS: [BodyForm; 2] = [BodyForm::Binary, BodyForm::SharedHeader];

    /// Sample entries `from..to` as one chunk's charges: the fields a form 3 batch shares.
    fn charges(from: u32, to: u32) -> Vec<NewEntry> {
        (from..to)
            .map(|i| NewEntry {
                kind: EntryKind::Charge,
                job_id: "job_1".into(),
                at: sample_entry(0).at,
                ..sample_entry(i)
            })
            .collect()
    }

    /// A form 3 batch of `entries` (which share their header fields).
    fn shared_header_batch(entries: &[NewEntry]) -> EntryBatch {
        EntryBatch::of_shared_header(&entries.iter().collect::<Vec<_>>())
    }

    /// A ledger of `n` entries in `form`, appended by two concurrent callers.
    async fn ledger_with(
        n: u32,
        form: BodyForm,
    ) -> (tempfile::TempDir, std::path::PathBuf, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let l = Ledger::open_path(&path).unwrap();
        if form == BodyForm::SharedHeader {
            let (first, second) = (charges(0, n / 2), charges(n / 2, n));
            let a = l.commit(&shared_header_batch(&first), Vec::new()).unwrap();
            let b = l.commit(&shared_header_batch(&second), Vec::new()).unwrap();
            a.wait().await.unwrap();
            b.wait().await.unwrap();
            let stored: Vec<NewEntry> = l.entries().unwrap().into_iter().map(|e| e.entry).collect();
            assert_eq!(stored, [first, second].concat());
        } else {
            let (a, b) = tokio::join!(
                l.append((0..n / 2).map(sample_entry).collect()),
                l.append((n / 2..n).map(sample_entry).collect())
            );
            a.unwrap();
            b.unwrap();
        }
        assert!(l.entries().unwrap().iter().all(|e| e.form == form));
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
            t.insert(*k, write_block(entries).as_slice()).unwrap();
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
        for form in NEW_FORMS {
            let (_d, path, l) = ledger_with(10, form).await;
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
    }

    #[tokio::test]
    async fn rounds_left_in_the_log_by_a_crash_are_applied_when_the_ledger_opens() {
        use crate::durable::wal::{self, Round, Wal};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        // What a crash leaves: a round synced to the log, never applied to the database.
        let mut entries = Vec::new();
        let mut prev = GENESIS_HASH.to_string();
        for i in 0..3u32 {
            let e = LedgerEntry::chain(i as u64 + 1, sample_entry(i), &prev);
            prev = e.hash.clone();
            entries.push(e);
        }
        {
            let mut wal = Wal::create(&durable::wal_dir_for(&path)).unwrap();
            wal.append(&[Round {
                block: Some((1, write_block(&entries))),
                records: None,
            }])
            .unwrap();
        }
        let ledger = Ledger::open_path(&path).unwrap();
        assert_eq!(ledger.entries().unwrap(), entries);
        // The chain goes on after the replayed entries, and the log is gone.
        assert_eq!(ledger.append(vec![sample_entry(9)]).await.unwrap(), vec![4]);
        assert_eq!(ledger.verify().unwrap().entries, 4);
        ledger.close();
        assert!(wal::read_all(&durable::wal_dir_for(&path))
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn forms_2_and_3_chain_on_from_each_other_within_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open_path(&dir.path().join("herald.redb")).unwrap();
        // Handed over back to back, so the writer usually takes them in one round.
        let waits = vec![
            l.commit(&shared_header_batch(&charges(0, 3)), Vec::new())
                .unwrap(),
            l.commit(
                &EntryBatch::of(&[sample_entry(3), sample_entry(4)]),
                Vec::new(),
            )
            .unwrap(),
            l.commit(&shared_header_batch(&charges(5, 7)), Vec::new())
                .unwrap(),
            l.commit(&EntryBatch::of(&[sample_entry(7)]), Vec::new())
                .unwrap(),
        ];
        for w in waits {
            w.wait().await.unwrap();
        }
        assert_eq!(l.verify().unwrap().entries, 8);
        let forms: Vec<BodyForm> = l.entries().unwrap().iter().map(|e| e.form).collect();
        use BodyForm::{Binary, SharedHeader};
        assert_eq!(
            forms,
            [
                SharedHeader,
                SharedHeader,
                SharedHeader,
                Binary,
                Binary,
                SharedHeader,
                SharedHeader,
                Binary
            ]
        );
    }

    #[tokio::test]
    async fn a_modified_entry_is_detected() {
        for form in NEW_FORMS {
            let (_d, path, l) = ledger_with(10, form).await;
            l.close();
            drop(l);
            rewrite(&path, |t| edit(t, |es| es[3].entry.cost_micros = Micros(1)));
            let db = Database::create(&path).unwrap();
            assert!(matches!(
                verify_db(&db),
                Err(LedgerError::Tampered(TamperError::Modified { seq: 4 }))
            ));
        }
    }

    #[tokio::test]
    async fn a_modified_entry_with_a_recomputed_hash_breaks_the_next_link() {
        for form in NEW_FORMS {
            let (_d, path, l) = ledger_with(10, form).await;
            l.close();
            drop(l);
            rewrite(&path, |t| {
                edit(t, |es| {
                    let mut forged = es[3].entry.clone();
                    forged.cost_micros = Micros(1);
                    es[3] = LedgerEntry::chain(4, forged, &es[3].prev_hash);
                })
            });
            // Entry 5 no longer follows: its stored link (or, within a block, the hash it was
            // computed over) is entry 4's original hash.
            let db = Database::create(&path).unwrap();
            assert!(matches!(
                verify_db(&db),
                Err(LedgerError::Tampered(
                    TamperError::Broken { seq: 5 } | TamperError::Modified { seq: 5 }
                ))
            ));
        }
    }

    #[tokio::test]
    async fn a_deleted_entry_is_detected() {
        for form in NEW_FORMS {
            let (_d, path, l) = ledger_with(10, form).await;
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
    }

    #[tokio::test]
    async fn reordered_entries_are_detected() {
        for form in NEW_FORMS {
            let (_d, path, l) = ledger_with(10, form).await;
            l.close();
            drop(l);
            rewrite(&path, |t| edit(t, |es| es.swap(2, 5)));
            // Blocks store sequence numbers by position, so the entry moved into place 3 is read
            // as entry 3, whose hash its fields do not give.
            let db = Database::create(&path).unwrap();
            assert!(matches!(
                verify_db(&db),
                Err(LedgerError::Tampered(
                    TamperError::Sequence { .. } | TamperError::Modified { seq: 3 }
                ))
            ));
        }
    }

    #[tokio::test]
    async fn a_block_of_an_unknown_format_version_is_refused_by_verify_and_open() {
        let (_d, path, l) = ledger_with(4, BodyForm::Binary).await;
        l.close();
        drop(l);
        rewrite(&path, |t| {
            let mut block = t.get(1).unwrap().unwrap().value().to_vec();
            block[0] = 7;
            t.insert(1, block.as_slice()).unwrap();
        });
        let known = "ledger block: format version 7 is not known to this herald";
        let db = Database::create(&path).unwrap();
        match verify_db(&db) {
            Err(LedgerError::Tampered(TamperError::Unreadable { key: 1, message })) => {
                assert_eq!(message, known)
            }
            other => panic!("{other:?}"),
        }
        drop(db);
        let opened = Ledger::open_path(&path).map(drop).unwrap_err();
        assert!(opened.to_string().contains(known), "{opened}");
    }
}
