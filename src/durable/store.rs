//! The handle to the durable layer: callers hand it records, writes to other tables, and a
//! batch for the chain ([`Chain`], the cost ledger's), and wait until the round that holds them
//! is durable. Opening it first applies whatever a crash left in the write-ahead log.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;

use redb::Database;
use tokio::sync::oneshot;

use super::applier;
use super::format::FormatError;
use super::records;
use super::tables::RECORD_LOG;
use super::writer::{self, Chain, Durability, ExtraWrite, Request, Start};

/// Why the durable layer could not write or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurableError {
    #[error("database: {0}")]
    Db(String),
    #[error("the durable writer has stopped")]
    Stopped,
    #[error("entries handed over for a chain that is not open (the ledger is disabled)")]
    NoChain,
    #[error(transparent)]
    Format(#[from] FormatError),
}

pub(crate) fn db_err(e: impl std::fmt::Display) -> DurableError {
    DurableError::Db(e.to_string())
}

/// A commit handed to the writer: wait on it to learn the sequence numbers the chain gave its
/// batch (none without one).
pub struct PendingCommit(pub(super) oneshot::Receiver<Result<Vec<u64>, String>>);

impl PendingCommit {
    /// Waits until the commit is durable.
    pub async fn wait(self) -> Result<Vec<u64>, DurableError> {
        self.0
            .await
            .map_err(|_| DurableError::Stopped)?
            .map_err(DurableError::Db)
    }
}

/// Where the write-ahead log of the database file at `db_path` lives: beside it.
pub fn wal_dir_for(db_path: &Path) -> PathBuf {
    db_path.with_extension("wal")
}

/// The durable layer over one database: commits through the writer thread; readers read the
/// database after [`Durable::flush`]. Cheap to clone.
pub struct Durable<C: Chain> {
    db: Arc<Database>,
    writer: Arc<Writer<C>>,
    /// Whether the chain was opened: without it, batches are refused.
    chained: bool,
}

impl<C: Chain> Clone for Durable<C> {
    fn clone(&self) -> Self {
        Durable {
            db: self.db.clone(),
            writer: self.writer.clone(),
            chained: self.chained,
        }
    }
}

struct Writer<C: Chain> {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Request<C::Batch>>>>,
    thread: parking_lot::Mutex<Option<thread::JoinHandle<()>>>,
}

impl<C: Chain> Durable<C> {
    /// Opens the durable layer over `db`, first applying what its write-ahead log in `wal_dir`
    /// still holds, then the chain when `chained` (it reads its head from the database, so
    /// after the log is applied), and starts the writer.
    pub fn open(db: Arc<Database>, wal_dir: &Path, chained: bool) -> Result<Self, DurableError> {
        {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(RECORD_LOG).map_err(db_err)?;
            w.commit().map_err(db_err)?;
        }
        let replayed = applier::replay(&db, wal_dir)?;
        if replayed > 0 {
            tracing::info!(rounds = replayed, "rounds from the write-ahead log applied");
        }
        let chain = match chained {
            true => Some(C::open(&db)?),
            false => None,
        };
        let start = Start {
            records_key: records::next_key(&db)?,
            wal_dir: wal_dir.to_path_buf(),
            chain,
        };
        let (tx, rx) = mpsc::channel::<Request<C::Batch>>();
        let writer_db = db.clone();
        let thread = thread::Builder::new()
            .name("durable-writer".into())
            .spawn(move || {
                writer::no_wakeup_preemption();
                writer::run(writer_db, rx, start)
            })
            .map_err(db_err)?;
        let writer = Writer {
            tx: parking_lot::Mutex::new(Some(tx)),
            thread: parking_lot::Mutex::new(Some(thread)),
        };
        Ok(Durable {
            db,
            writer: Arc::new(writer),
            chained,
        })
    }

    /// Stops the writer after the commits already handed to it are durable and applied.
    pub fn close(&self) {
        self.writer.tx.lock().take();
        if let Some(t) = self.writer.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// Whether the chain is open (batches are accepted).
    pub fn chained(&self) -> bool {
        self.chained
    }

    /// Hands a batch for the chain, records for the record log and writes to other tables to
    /// the writer, committed together in one transaction. Hand-over order is commit order, so
    /// two commits handed over one after the other by the same caller land in that order.
    pub fn commit(
        &self,
        batch: Option<C::Batch>,
        records: Vec<Vec<u8>>,
        extra: Vec<ExtraWrite>,
        durability: Durability,
    ) -> Result<PendingCommit, DurableError> {
        if batch.is_some() && !self.chained {
            return Err(DurableError::NoChain);
        }
        let (reply, wait) = oneshot::channel();
        let tx = self.writer.tx.lock().clone().ok_or(DurableError::Stopped)?;
        tx.send(Request {
            batch,
            records,
            extra,
            flush: durability == Durability::Flush,
            soon: durability == Durability::Soon,
            reply,
        })
        .map_err(|_| DurableError::Stopped)?;
        Ok(PendingCommit(wait))
    }

    /// Hands records for the record log and writes to other tables to the writer, committed
    /// together in one transaction, in hand-over order.
    pub fn commit_records_with(
        &self,
        records: Vec<Vec<u8>>,
        extra: Vec<ExtraWrite>,
    ) -> Result<PendingCommit, DurableError> {
        self.commit(None, records, extra, Durability::Now)
    }

    /// Waits until everything committed so far is in the database, where readers look. A
    /// stopped writer applied everything when it stopped. Blocking: run it off the async
    /// runtime.
    pub fn flush(&self) -> Result<(), DurableError> {
        let pending = match self.commit(None, Vec::new(), Vec::new(), Durability::Flush) {
            Ok(p) => p,
            Err(DurableError::Stopped) => return Ok(()),
            Err(e) => return Err(e),
        };
        match futures::executor::block_on(pending.wait()) {
            Ok(_) | Err(DurableError::Stopped) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The database every table lives in.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }
}
