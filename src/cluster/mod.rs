//! Several instances sharing the work of every job through Redis.
//!
//! A job accepted by any instance is published: its request and audience go to Redis and
//! every instance plans it from there. Its shards are leased (lease keys with expiry): an
//! instance takes up to its fair share of the open shards (open shards over live instances)
//! and renews its leases while it lives. The outcome of every recipient is written to the
//! shard's record a moment after it is decided, fenced by the lease. When an instance dies
//! its leases run out (`lease_ttl_ms`, 10 s by default) and the others take its shards over,
//! going on from the first recipient with no outcome written; messages it had in flight are
//! sent again under the same message id, which an idempotent provider drops. Job status
//! (pause, resume, cancel, completion) and the counters reports show live in the job's
//! record, so every instance answers the same report.

mod flush;
mod receipts;
mod sync;

pub use receipts::{IndexQueue, IndexedSends};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::{ClusterConfig, Config};
use crate::dispatch::journal::{audience_chunks, StoredJob};
use crate::dispatch::send_log::SharedMarksLog;
use crate::dispatch::{Dispatcher, Job, SendingMarks};
use crate::domain::{JobId, RecipientOutcome};
use crate::links::Tracking;
use crate::store::{
    CommitAnswer, OutcomeUpdate, PublishedJob, RedisEvents, RedisOptions, RedisWork, StoreError,
};

/// How often changes are written and leases looked after.
const TICK: Duration = Duration::from_millis(100);

/// This instance's part in the cluster.
pub struct Cluster {
    work: RedisWork,
    /// The fleet's event streams (opens and clicks are appended here).
    events: Arc<RedisEvents>,
    /// This process among the fleet's, in the opens and clicks it appends: they are read
    /// back from the others' only (after a restart, this process's earlier ones too).
    origin: String,
    /// Per job, the last entry of its opens and clicks read into it.
    engaged_read: DashMap<JobId, (String, Instant)>,
    me: String,
    lease_ttl: Duration,
    poll: Duration,
    dispatcher: Dispatcher,
    config: Config,
    tracking: Arc<Tracking>,
    /// Jobs this instance knows of, by id.
    jobs: DashMap<JobId, Arc<Job>>,
    /// Which outcome codes are final, as the commit script reads it.
    finals: String,
    /// Sent messages waiting to be indexed for receipts.
    index_queue: IndexQueue,
    /// How long a sent message stays in the receipts index.
    index_ttl: u64,
    /// How long a finished job's records stay in Redis.
    retention: u64,
    stopping: AtomicBool,
    /// Instances alive at the last heartbeat.
    live: std::sync::atomic::AtomicUsize,
}

/// What this instance sees of the cluster, for its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub instances: usize,
    pub shards_held: usize,
    pub outcomes_unwritten: usize,
}

impl Cluster {
    /// Joins the cluster: loads every published job, then keeps leases, outcomes and
    /// statuses in step with the others in the background.
    pub async fn join(
        config: &Config,
        cluster: &ClusterConfig,
        dispatcher: Dispatcher,
        tracking: Arc<Tracking>,
        index_queue: IndexQueue,
        marks: &SharedMarksLog,
        events: Arc<RedisEvents>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let work = RedisWork::open(&RedisOptions::from_config(&config.state.redis))?;
        let finals: String = (0..=255u8)
            .map(|c| {
                if c != 0 && RecipientOutcome::from_code(c).is_final() && valid_code(c) {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        let me = cluster.instance_id();
        let origin = format!("{me}/{}", uuid::Uuid::now_v7().simple());
        let c = Arc::new(Cluster {
            work,
            events,
            origin,
            engaged_read: DashMap::new(),
            me,
            lease_ttl: Duration::from_millis(cluster.lease_ttl_ms.max(300)),
            poll: Duration::from_millis(cluster.poll_ms.max(50)),
            dispatcher,
            config: config.clone(),
            tracking,
            jobs: DashMap::new(),
            finals,
            index_queue,
            index_ttl: config.callbacks.index_retention_seconds.max(60),
            retention: cluster.finished_job_retention_seconds,
            stopping: AtomicBool::new(false),
            live: std::sync::atomic::AtomicUsize::new(1),
        });
        marks.install(Arc::new(Marks(Arc::downgrade(&c))));
        let loaded = sync::load_jobs(&c, true).await?;
        tracing::info!(instance = %c.me, jobs = loaded, "joined the cluster");
        tokio::spawn(run(Arc::downgrade(&c)));
        Ok(c)
    }

    /// Live instances, shards held here and outcomes not written yet.
    pub fn seen(&self) -> Seen {
        let mut seen = Seen {
            instances: self.live.load(Ordering::Relaxed),
            shards_held: 0,
            outcomes_unwritten: 0,
        };
        for entry in self.jobs.iter() {
            let job = entry.value();
            if let Some(share) = job.share() {
                if !job.status().is_terminal() {
                    seen.shards_held += share.owned_shards().len();
                }
                seen.outcomes_unwritten += share.pending_len();
            }
        }
        seen
    }

    /// Publishes a newly accepted job for every instance (before it is acknowledged), and
    /// makes this instance's copy share its shards.
    pub async fn publish(&self, job: &Arc<Job>) -> Result<(), StoreError> {
        let share = job.share_work();
        let stored = StoredJob::of(job);
        let (spec, audience) = {
            let job = job.clone();
            tokio::task::spawn_blocking(move || {
                let spec = serde_json::to_vec(&stored).unwrap_or_default();
                (spec, audience_chunks(&job.audience))
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
        };
        let need = (job.audience.len() - job.audience.duplicates().len()) as u64;
        // Known here before it is listed, so this instance never loads it a second time.
        self.jobs.insert(job.id.clone(), job.clone());
        let published = self
            .work
            .publish(
                job.id.as_str(),
                &PublishedJob { spec, audience },
                need,
                share.shards() as u32,
                job.status().as_str(),
            )
            .await;
        if published.is_err() {
            self.jobs.remove(&job.id);
        }
        published
    }

    /// Writes a status changed through this instance's API, so every instance applies it.
    pub async fn status_changed(&self, job: &Job) -> Result<(), StoreError> {
        let st = job.state();
        let field = match st.status {
            crate::domain::JobStatus::Cancelled => st.finished_at.map(|t| ("finished_at", t)),
            _ => None,
        };
        self.work
            .set_status(
                job.id.as_str(),
                st.status.as_str(),
                field.map(|(f, t)| (f, t.timestamp_micros())),
            )
            .await
            .map(drop)
    }

    /// Leaves the cluster on a graceful stop: writes what is left and gives up every lease,
    /// so the others take the shards over at once.
    pub async fn leave(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        flush::flush(self).await;
        for entry in self.jobs.iter() {
            if let Some(share) = entry.value().share() {
                let owned = share.disown_all();
                if let Err(e) = self
                    .work
                    .release(entry.key().as_str(), &owned, &self.me)
                    .await
                {
                    tracing::warn!(job = %entry.key(), error = %e, "leases not released; they run out by themselves");
                }
            }
        }
        tracing::info!(instance = %self.me, "left the cluster");
    }
}

/// Codes a recipient outcome really has (the rest decode as pending).
fn valid_code(c: u8) -> bool {
    RecipientOutcome::from_code(c).to_code() == c
}

/// The background loop: writes outcomes every tick, looks after leases a few times per
/// lease period, and follows other instances' jobs and statuses every poll.
async fn run(cluster: std::sync::Weak<Cluster>) {
    let mut last_leases = Instant::now() - Duration::from_secs(3600);
    let mut last_poll = Instant::now();
    let mut live = 1usize;
    loop {
        tokio::time::sleep(TICK).await;
        let Some(c) = cluster.upgrade() else { return };
        if c.stopping.load(Ordering::SeqCst) {
            return;
        }
        flush::flush(&c).await;
        if last_leases.elapsed() >= c.lease_ttl / 4 {
            last_leases = Instant::now();
            let now_ms = chrono::Utc::now().timestamp_millis();
            match c
                .work
                .heartbeat(&c.me, now_ms, c.lease_ttl.as_millis() as u64)
                .await
            {
                Ok(n) => {
                    live = n.max(1);
                    c.live.store(live, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, "cluster heartbeat failed"),
            }
            sync::look_after_leases(&c, live).await;
        }
        if last_poll.elapsed() >= c.poll {
            last_poll = Instant::now();
            if let Err(e) = sync::load_jobs(&c, false).await {
                tracing::debug!(error = %e, "could not list the cluster's jobs");
            }
            sync::follow_jobs(&c).await;
            sync::follow_engaged(&c).await;
        }
    }
}

/// The cluster's `sending` marks, as the dispatcher's workers call them (held weakly: the
/// cluster holds the dispatcher).
struct Marks(std::sync::Weak<Cluster>);

#[async_trait::async_trait]
impl SendingMarks for Marks {
    async fn mark_sending(&self, job: &Job, indices: &[u32]) -> bool {
        let (Some(c), Some(share)) = (self.0.upgrade(), job.share()) else {
            return true;
        };
        let mut by_shard: std::collections::BTreeMap<usize, Vec<OutcomeUpdate>> =
            std::collections::BTreeMap::new();
        for &i in indices {
            if let Some((k, pos)) = share.locate(i) {
                by_shard.entry(k).or_default().push(OutcomeUpdate {
                    pos,
                    code: RecipientOutcome::Sending.to_code(),
                    segments: 0,
                    cost_micros: 0,
                });
            }
        }
        for (k, marks) in by_shard {
            // Changes noted earlier go first, so a mark is never overwritten by an older one;
            // their events go with them.
            let mut updates = share.take_pending(k);
            let events = share.take_events(k);
            let older = updates.len();
            updates.extend(marks);
            match flush::commit(&c, job, k, &updates, &events).await {
                Ok(CommitAnswer::Written { .. }) => {}
                Ok(CommitAnswer::LeaseLost) => {
                    share.set_owned(k, false);
                    share.forget(k);
                    return false;
                }
                Ok(CommitAnswer::Unheld) | Err(_) => {
                    updates.truncate(older);
                    share.put_back(k, updates);
                    share.put_back_events(k, events);
                    return false;
                }
            }
        }
        true
    }
}
