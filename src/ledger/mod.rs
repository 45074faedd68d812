//! The cost ledger finance audits: one append-only entry per billable send, each carrying a
//! SHA-256 hash chained to the previous entry, so that a modified, deleted or reordered entry
//! is evident (`herald ledger verify`). Entries are never updated; a refund or correction is a
//! new entry that references the original.
//!
//! - [`entry`]: the entry, its canonical bytes and its hash.
//! - [`block`]: the compact binary form a group commit's entries are stored in.
//! - [`chain`]: verification of a sequence of stored entries.
//! - [`reconcile`]: a provider invoice diffed against the entries, the ledger streamed past it.
//! - [`store`]: durable storage in the embedded database, with group commit so that concurrent
//!   workers share each disk sync.

pub mod block;
pub mod chain;
pub mod entry;
pub mod reconcile;
pub mod store;

pub use chain::{verify, TamperError, VerifyReport};
pub use entry::{EntryKind, LedgerEntry, NewEntry};
pub use store::{ExtraWrite, Ledger, LedgerError, PendingCommit};
