//! The durability layer the cost ledger and the dispatch journal both write through: a single
//! writer that groups concurrent commits into rounds, makes each round durable with one write
//! and one sync of a hand-made write-ahead log, and applies the log to the embedded database
//! (redb) in the background. redb syncs every transaction on its own and has no group commit,
//! and a send counts only once its journal record (and its charge) is durable, so the log is
//! what makes thousands of durable commits a second affordable.
//!
//! - [`store`]: the handle: commit, flush, close; opening it applies what a crash left in the
//!   log.
//! - [`writer`]: the single writer (group commit) and the [`Chain`] it links each round with
//!   (the ledger's hash chain).
//! - [`committer`]: the writer's second stage: rounds made durable in the log, or written to
//!   the database directly when they carry other writes or a reader waits.
//! - [`applier`]: closed log segments applied to the database in the background; replay at
//!   start.
//! - [`wal`]: the write-ahead log's segment files.
//! - [`records`]: the record log, the journal's message records one value per round.
//! - [`tables`]: every table of the database, in one place.
//! - [`format`]: the format version every stored value carries, and the error for an unknown one.
//! - [`bytes`], [`compact`]: byte codecs the stored forms share: a checked little-endian
//!   reader, and texts written against the text before them.

pub mod applier;
pub(crate) mod bytes;
pub mod committer;
pub mod compact;
pub mod format;
pub mod records;
pub mod store;
pub mod tables;
pub mod wal;
pub mod writer;

pub use committer::prepare_spares_in_background;
pub(crate) use store::db_err;
pub use store::{wal_dir_for, Durable, DurableError, PendingCommit};
pub use writer::{Chain, Durability, ExtraWrite, Linked, SYNC_SOON};
