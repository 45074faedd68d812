//! The cost ledger finance audits: one append-only entry per billable send, each carrying a
//! SHA-256 hash chained to the previous entry, so that a modified, deleted or reordered entry
//! is evident (`herald ledger verify`). Entries are never updated; a refund or correction is a
//! new entry that references the original.
//!
//! - [`entry`]: the entry, its canonical bytes and its hash.
//! - [`canonical`]: the binary canonical form 2, which entries charged one by one (refunds,
//!   corrections, tools) are digested in.
//! - [`charge_rows`]: canonical form 3, a chunk's charges: shared fields once, compact rows,
//!   stored as they were digested.
//! - [`batch`]: entries as callers hand them over: encoded and digested on their own threads.
//! - [`packed_rows`], [`compact`]: how a batch's rows are stored: each written against the
//!   one before, in place of general-purpose compression.
//! - [`block`]: the binary form a group commit's entries are stored in.
//! - [`chain`]: verification of a sequence of stored entries.
//! - [`reconcile`]: a provider invoice diffed against the entries, the ledger streamed past it.
//! - [`store`]: durable storage in the embedded database: the ledger handle, reads, verification.
//! - [`writer`]: the single writer: group commit in two stages, so that concurrent workers share
//!   each disk sync, and the record log other modules commit with the entries.
//! - [`committer`]: the writer's second stage: rounds made durable in a write-ahead log and
//!   applied to the database in the background.
//! - [`wal`]: the write-ahead log's segment files.

pub mod batch;
pub mod block;
mod bytes;
pub mod canonical;
pub mod chain;
pub mod charge_rows;
pub mod committer;
pub mod compact;
pub mod entry;
pub mod packed_rows;
pub mod reconcile;
pub mod store;
pub mod wal;
pub mod writer;

pub use batch::{EntryBatch, EntryBatchBuilder, SharedHeaderBatchBuilder};
pub use canonical::EntryRef;
pub use chain::{verify, TamperError, VerifyReport};
pub use entry::{EntryKind, LedgerEntry, NewEntry};
pub use store::{Ledger, LedgerError, PendingCommit};
pub use writer::ExtraWrite;
