//! The cost ledger finance audits: one append-only entry per billable send, each carrying a
//! SHA-256 hash chained to the previous entry, so that a modified, deleted or reordered entry
//! is evident (`herald ledger verify`). Entries are never updated; a refund or correction is a
//! new entry that references the original. The ledger writes through the durable layer
//! ([`crate::durable`]), whose single writer links each round's entries into the chain.
//!
//! - [`entry`]: the entry, its canonical bytes and its hash.
//! - [`canonical`]: the binary canonical form 2, which entries charged one by one (refunds,
//!   corrections, tools) are digested in.
//! - [`charge_rows`]: canonical form 3, a chunk's charges: shared fields once, compact rows,
//!   stored as they were digested.
//! - [`batch`]: entries as callers hand them over: encoded and digested on their own threads.
//! - [`packed_rows`]: how a batch of form 2 rows is stored: each written against the one before.
//! - [`chainer`]: the ledger's part of each group commit: batches linked into the chain and laid
//!   out as one block, on the durable writer's thread.
//! - [`block`]: the binary form a group commit's entries are stored in.
//! - [`chain`]: verification of a sequence of stored entries.
//! - [`reconcile`]: a provider invoice diffed against the entries, the ledger streamed past it.
//! - [`store`]: the ledger handle: appends, reads, verification.
//! - [`summary`]: totals per currency and per campaign, channel, provider, country and month.

pub mod batch;
pub mod block;
pub mod canonical;
pub mod chain;
pub mod chainer;
pub mod charge_rows;
pub mod entry;
pub mod packed_rows;
pub mod reconcile;
pub mod store;
pub mod summary;

pub use crate::durable::{ExtraWrite, PendingCommit};
pub use batch::{EntryBatch, EntryBatchBuilder, SharedHeaderBatchBuilder};
pub use canonical::EntryRef;
pub use chain::{verify, TamperError, VerifyReport};
pub use chainer::Chainer;
pub use entry::{EntryKind, LedgerEntry, NewEntry};
pub use store::{Ledger, LedgerError};
