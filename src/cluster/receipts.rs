//! Receipts with shared work: any instance accepts any receipt. Every message a provider
//! accepted is indexed in Redis by provider and provider message id; a receipt for a message
//! this instance did not send is looked up there and applied to its copy of the job, and
//! final delivery states are counted once per message in the shard's shared record.

use std::sync::Arc;

use parking_lot::Mutex;

use super::Cluster;
use crate::callbacks::{Callbacks, ProviderCallbacks};
use crate::dispatch::{AcceptedMessage, Job, SendObserver};
use crate::domain::JobId;
use crate::store::StoreError;

/// Index entries waiting to be written: (provider, provider message id, "job index").
pub type IndexQueue = Arc<Mutex<Vec<(String, String, String)>>>;

/// The send observer with shared work: registers sends with the local callbacks index as
/// usual, and queues them for the shared one.
pub struct IndexedSends {
    callbacks: Arc<Callbacks>,
    queue: IndexQueue,
}

impl IndexedSends {
    pub fn new(callbacks: Arc<Callbacks>) -> IndexedSends {
        IndexedSends {
            callbacks,
            queue: Arc::default(),
        }
    }

    /// The queue the cluster's flusher writes from.
    pub fn queue(&self) -> IndexQueue {
        self.queue.clone()
    }
}

impl SendObserver for IndexedSends {
    fn accepted(&self, job: &Arc<Job>, batch: &[AcceptedMessage]) {
        self.callbacks.accepted(job, batch);
        if batch.is_empty() {
            return;
        }
        let indexed = |slot: u16| {
            self.callbacks
                .provider(job.provider_at(usize::from(slot)))
                .is_some_and(ProviderCallbacks::accepts_callbacks)
        };
        let mut q = self.queue.lock();
        q.extend(batch.iter().filter(|m| indexed(m.provider)).map(|m| {
            (
                job.provider_at(usize::from(m.provider)).to_string(),
                m.provider_message_id.clone(),
                format!("{} {}", job.id, m.index),
            )
        }));
    }
}

impl Cluster {
    /// Looks receipts this instance could not place up in the shared index and applies them
    /// to the jobs they belong to. Answers how many it placed.
    pub async fn place_receipts(
        &self,
        callbacks: &Callbacks,
        provider: &ProviderCallbacks,
        message_ids: &[&str],
    ) -> Result<u64, StoreError> {
        if message_ids.is_empty() {
            return Ok(0);
        }
        let found = self
            .work
            .resolve_messages(&provider.name, message_ids)
            .await?;
        let mut placed = 0;
        for (id, value) in message_ids.iter().zip(found) {
            let Some((job, index)) = value.as_deref().and_then(parse_entry) else {
                continue;
            };
            let Some(job) = self.dispatcher.get(&job) else {
                continue;
            };
            if (index as usize) < job.audience.len()
                && callbacks.adopt_message(provider, id, &job, index)
            {
                placed += 1;
            }
        }
        Ok(placed)
    }

    /// Writes queued index entries; puts them back when Redis does not answer.
    pub(super) async fn flush_index(&self) {
        let entries = std::mem::take(&mut *self.index_queue.lock());
        if entries.is_empty() {
            return;
        }
        const CHUNK: usize = 2_000;
        for (n, chunk) in entries.chunks(CHUNK).enumerate() {
            if let Err(e) = self.work.index_messages(chunk, self.index_ttl).await {
                tracing::debug!(error = %e, "receipt index not written yet");
                let mut q = self.index_queue.lock();
                let mut rest = entries[n * CHUNK..].to_vec();
                rest.append(&mut q);
                *q = rest;
                return;
            }
        }
    }
}

fn parse_entry(v: &str) -> Option<(JobId, u32)> {
    let (job, index) = v.split_once(' ')?;
    Some((JobId::parse(job)?, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_read_back() {
        let job = JobId::generate();
        let v = format!("{job} 42");
        assert_eq!(parse_entry(&v), Some((job, 42)));
        assert_eq!(parse_entry("nonsense"), None);
        assert_eq!(parse_entry("job_x 1"), None);
    }
}
