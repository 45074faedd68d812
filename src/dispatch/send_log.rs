//! Where a chunk's way to the provider is recorded, so that whoever finishes a job after a
//! crash (this instance restarted, or another one taking its shards over) knows which
//! messages may have reached the provider. One implementation is picked at start-up and the
//! workers call it without asking which:
//!
//! - [`JournalLog`]: the dispatch journal (embedded state): `sending` before the provider
//!   call, `settled` with the ledger charges in the same commit after it.
//! - [`SharedMarksLog`]: several instances sharing jobs through Redis: `sending` marks in the
//!   shard's shared record for providers that cannot drop repeats; answers charge the ledger.
//! - [`LedgerOnlyLog`]: nothing survives a restart (memory state); answers charge the ledger
//!   when it is on.
//!
//! Every write is retried on the schedule of [`super::retry`]; a chunk whose `sending` record
//! cannot be written does not go out, and answers that cannot be written are logged (the
//! sends happened and stay counted).

use std::future::Future;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use super::job::Job;
use super::journal::codec::{self, SettledItem};
use super::journal::{Journal, JournalError};
use super::share::SendingMarks;
use crate::config::RetryConfig;
use crate::ledger::{EntryBatch, Ledger, LedgerError};
use crate::phone::RegionCode;
use crate::provider::OutboundMessage;

/// One message of a chunk about to go out: its recipient, destination region and message.
pub type SendingItem<'a> = (u32, RegionCode, &'a OutboundMessage);

/// Records what is handed to providers and what they answered.
#[async_trait::async_trait]
pub trait SendLog: Send + Sync {
    /// Whether provider answers are recorded at all (in memory with the ledger off they are
    /// not, and the settling path skips building them).
    fn keeps_answers(&self) -> bool {
        true
    }

    /// Records messages as handed to the provider in slot `provider`, durably, before they
    /// are. Answers false when they could not be recorded: they must not go out.
    async fn sending(&self, job: &Job, provider: usize, items: &[SendingItem<'_>]) -> bool;

    /// Takes back a chunk recorded by [`SendLog::sending`] that never went out (a shutdown
    /// came first), so that it is not held in doubt later.
    async fn withdrawn(&self, job: &Job, indices: &[u32]);

    /// Records the final answers of the provider in slot `provider`, which arrived at `at`,
    /// with their ledger charges (empty when the ledger is off).
    async fn settled(
        &self,
        job: &Job,
        provider: usize,
        at: DateTime<Utc>,
        settled: Vec<SettledItem>,
        charges: EntryBatch,
    );
}

/// Runs `attempt` until it succeeds or the retry schedule runs out; answers whether it did.
async fn with_retries<F, Fut, E>(retry: &RetryConfig, what: &str, job: &Job, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut delays = super::retry::schedule(retry, job.id.as_str().len() as u64);
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(job = %job.id, attempt = tries, error = %e, "{what} failed");
                match delays.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return false,
                }
            }
        }
    }
}

/// How durable writes are retried: a failing disk or Redis gets a few tries over about a
/// second before the chunk is given up.
fn write_retries() -> RetryConfig {
    RetryConfig {
        max_attempts: 5,
        initial_delay_ms: 50,
        max_delay_ms: 800,
    }
}

/// The dispatch journal (and the ledger through it).
pub struct JournalLog {
    journal: Journal,
}

impl JournalLog {
    /// Records through `journal`; charges ride in its commits.
    pub fn new(journal: Journal) -> JournalLog {
        JournalLog { journal }
    }
}

async fn wait_journal(
    pending: Result<crate::ledger::PendingCommit, JournalError>,
) -> Result<(), JournalError> {
    pending?.wait().await.map(drop).map_err(JournalError::from)
}

#[async_trait::async_trait]
impl SendLog for JournalLog {
    async fn sending(&self, job: &Job, provider: usize, items: &[SendingItem<'_>]) -> bool {
        // Encoded on the worker's own thread: a hand-over to a blocking thread costs two
        // wake-ups per chunk, which on a busy two-core machine cost more than the encoding.
        let record = codec::encode_sending(
            job.id.as_str(),
            job.provider_at(provider),
            items.iter().copied(),
        );
        with_retries(
            &write_retries(),
            "journaling a chunk before sending",
            job,
            || wait_journal(self.journal.sending(record.clone())),
        )
        .await
    }

    async fn withdrawn(&self, job: &Job, indices: &[u32]) {
        let record = codec::encode_withdrawn(job.id.as_str(), indices);
        // Harmless if it fails: these read as in doubt after a restart, as before.
        if let Err(e) = wait_journal(self.journal.sending(record)).await {
            tracing::warn!(job = %job.id, error = %e, "could not journal a withdrawn chunk");
        }
    }

    async fn settled(
        &self,
        job: &Job,
        provider: usize,
        at: DateTime<Utc>,
        settled: Vec<SettledItem>,
        charges: EntryBatch,
    ) {
        let count = settled.len();
        let done = with_retries(&write_retries(), "journaling provider answers", job, || {
            // Encoded again for a retry: cheaper than a copy kept for one.
            let record = codec::encode_settled(
                job.id.as_str(),
                job.provider_at(provider),
                at.timestamp(),
                &settled,
            );
            wait_journal(self.journal.settle(record, &charges))
        })
        .await;
        if !done {
            tracing::error!(job = %job.id, count, "provider answers could not be journaled; sends are counted but unrecorded");
        }
    }
}

/// Nothing is recorded but the ledger's charges (when it is on).
pub struct LedgerOnlyLog {
    ledger: Option<Ledger>,
}

impl LedgerOnlyLog {
    /// Charges go to `ledger` when there is one.
    pub fn new(ledger: Option<Ledger>) -> LedgerOnlyLog {
        LedgerOnlyLog { ledger }
    }
}

#[async_trait::async_trait]
impl SendLog for LedgerOnlyLog {
    fn keeps_answers(&self) -> bool {
        self.ledger.is_some()
    }

    async fn sending(&self, _: &Job, _: usize, _: &[SendingItem<'_>]) -> bool {
        true
    }

    async fn withdrawn(&self, _: &Job, _: &[u32]) {}

    async fn settled(
        &self,
        job: &Job,
        _: usize,
        _: DateTime<Utc>,
        _: Vec<SettledItem>,
        charges: EntryBatch,
    ) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        if charges.is_empty() {
            return;
        }
        let done = with_retries(&write_retries(), "ledger append", job, || async {
            let pending = ledger.commit_records_soon(&charges, Vec::new())?;
            pending.wait().await.map(drop).map_err(LedgerError::from)
        })
        .await;
        if !done {
            tracing::error!(job = %job.id, count = charges.len(), "ledger entries could not be written; sends are counted but unrecorded");
        }
    }
}

/// Several instances share jobs: a chunk of a shared job for a provider that cannot drop
/// repeats is marked `sending` in its shard's shared record before it goes out, so that an
/// instance taking the shard over after a crash marks those messages in doubt instead of
/// sending them again. The marks are installed when the instance joins the cluster.
pub struct SharedMarksLog {
    marks: OnceLock<Arc<dyn SendingMarks>>,
    /// By provider slot: whether the provider drops repeated ids (no marks needed).
    idempotent: Vec<bool>,
    ledger: LedgerOnlyLog,
}

impl SharedMarksLog {
    /// Marks for the providers that are not `idempotent` (by slot); charges to `ledger`.
    pub fn new(idempotent: Vec<bool>, ledger: Option<Ledger>) -> SharedMarksLog {
        SharedMarksLog {
            marks: OnceLock::new(),
            idempotent,
            ledger: LedgerOnlyLog::new(ledger),
        }
    }

    /// Installs the cluster's writer of marks (once).
    pub fn install(&self, marks: Arc<dyn SendingMarks>) {
        let _ = self.marks.set(marks);
    }
}

#[async_trait::async_trait]
impl SendLog for SharedMarksLog {
    fn keeps_answers(&self) -> bool {
        self.ledger.keeps_answers()
    }

    async fn sending(&self, job: &Job, provider: usize, items: &[SendingItem<'_>]) -> bool {
        let Some(marks) = self.marks.get() else {
            return true;
        };
        if job.share().is_none() || self.idempotent.get(provider).copied().unwrap_or(true) {
            return true;
        }
        let indices: Vec<u32> = items.iter().map(|(i, _, _)| *i).collect();
        with_retries(&write_retries(), "writing sending marks", job, || async {
            match marks.mark_sending(job, &indices).await {
                true => Ok(()),
                false => Err("the shared record did not take them"),
            }
        })
        .await
    }

    /// Marks already written stay: the instance taking the shard over holds those messages
    /// in doubt, never sends them twice.
    async fn withdrawn(&self, _: &Job, _: &[u32]) {}

    async fn settled(
        &self,
        job: &Job,
        provider: usize,
        at: DateTime<Utc>,
        settled: Vec<SettledItem>,
        charges: EntryBatch,
    ) {
        self.ledger
            .settled(job, provider, at, settled, charges)
            .await;
    }
}
