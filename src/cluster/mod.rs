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

mod receipts;
mod sync;

pub use receipts::{IndexQueue, IndexedSends};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::{ClusterConfig, Config};
use crate::dispatch::journal::{audience_chunks, codec, StoredJob};
use crate::dispatch::send_log::SharedMarksLog;
use crate::dispatch::{Dispatcher, EventNote, Job, SendingMarks};
use crate::domain::{JobId, RecipientOutcome};
use crate::links::Tracking;
use crate::store::{
    CommitAnswer, DeliveriesAnswer, EventStream, OutcomeUpdate, PublishedJob, RedisEvents,
    RedisOptions, RedisWork, StoreError,
};

/// How often changes are written and leases looked after.
const TICK: Duration = Duration::from_millis(100);
/// How long delivery states wait for their messages' outcomes to be written before they are
/// written anyway (their events may then come before the `sent` ones).
const DELIVERIES_WAIT: Duration = Duration::from_secs(60);

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
        flush(self).await;
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

/// Writes shard `k`'s noted outcome changes and the events that announce them, if this
/// instance holds its lease. Answers false when they could not be written and are still
/// waiting.
async fn flush_shard(c: &Cluster, job: &Job, k: usize) -> bool {
    let Some(share) = job.share() else {
        return true;
    };
    // Outcomes first: every event is noted before its outcome, so each outcome taken here
    // has its event among those taken next.
    let updates = share.take_pending(k);
    let events = share.take_events(k);
    if updates.is_empty() && events.is_empty() {
        return true;
    }
    match commit(c, job, k, &updates, &events).await {
        Ok(CommitAnswer::Written { .. }) => true,
        Ok(CommitAnswer::LeaseLost) => {
            tracing::warn!(job = %job.id, shard = k, dropped = updates.len(), "shard lease lost; its new holder decides these recipients again");
            share.set_owned(k, false);
            share.forget(k);
            true
        }
        Ok(CommitAnswer::Unheld) => {
            // The lease ran out (Redis was away): kept until this instance holds it again,
            // or forgotten if another instance takes it first.
            share.set_owned(k, false);
            share.put_back(k, updates);
            share.put_back_events(k, events);
            false
        }
        Err(e) => {
            tracing::debug!(job = %job.id, shard = k, error = %e, "outcomes not written yet");
            share.put_back(k, updates);
            share.put_back_events(k, events);
            false
        }
    }
}

/// Writes outcome changes of shard `k` with the events that announce them, fenced by its
/// lease.
async fn commit(
    c: &Cluster,
    job: &Job,
    k: usize,
    updates: &[OutcomeUpdate],
    events: &[EventNote],
) -> Result<CommitAnswer, StoreError> {
    let records = event_records(job, events);
    let now = chrono::Utc::now().timestamp_micros();
    c.work
        .commit(
            job.id.as_str(),
            k as u32,
            &c.me,
            &c.finals,
            now,
            updates,
            &records,
        )
        .await
}

/// Event notes as journal records: provider answers grouped by provider and second, in
/// order, and in-doubt messages by second.
fn event_records(job: &Job, notes: &[EventNote]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < notes.len() {
        match &notes[k] {
            EventNote::Settled { provider, at, .. } => {
                let (provider, at) = (*provider, *at);
                let mut items = Vec::new();
                while let Some(EventNote::Settled {
                    provider: p,
                    at: t,
                    item,
                }) = notes.get(k)
                {
                    if (*p, *t) != (provider, at) {
                        break;
                    }
                    items.push(item.clone());
                    k += 1;
                }
                out.push(codec::encode_settled(
                    job.id.as_str(),
                    job.provider_at(usize::from(provider)),
                    at,
                    &items,
                ));
            }
            EventNote::InDoubt { at, .. } => {
                let at = *at;
                let mut items = Vec::new();
                while let Some(EventNote::InDoubt { at: t, index }) = notes.get(k) {
                    if *t != at {
                        break;
                    }
                    items.push(*index);
                    k += 1;
                }
                out.push(codec::encode_in_doubt(job.id.as_str(), at, &items));
            }
        }
    }
    out
}

/// Writes shard `k`'s delivery states with their event record. States of messages whose
/// outcome is not written yet wait (their `sent` event must come first), for at most
/// [`DELIVERIES_WAIT`].
async fn flush_deliveries(c: &Cluster, job: &Job, k: usize) {
    let Some(share) = job.share() else { return };
    let states = share.take_deliveries(k);
    if states.is_empty() {
        return;
    }
    let force = share.deliveries_waited(k, true) >= DELIVERIES_WAIT;
    let record = |states: &[(u32, u8)]| {
        let items: Vec<(u32, u8)> = states
            .iter()
            .filter_map(|&(pos, state)| share.index_at(k, pos).map(|i| (i, state)))
            .collect();
        codec::encode_delivered(job.id.as_str(), chrono::Utc::now().timestamp(), &items)
    };
    let id = job.id.as_str();
    match c
        .work
        .record_deliveries(id, k as u32, &states, &record(&states), force)
        .await
    {
        Ok(DeliveriesAnswer::Counted(_)) => {
            share.deliveries_waited(k, false);
        }
        Ok(DeliveriesAnswer::Waiting(positions)) => {
            let waiting: std::collections::HashSet<u32> = positions.into_iter().collect();
            let (wait, ready): (Vec<_>, Vec<_>) = states
                .into_iter()
                .partition(|(pos, _)| waiting.contains(pos));
            // The ready ones stay ready: an outcome once final stays final.
            if !ready.is_empty() {
                if let Err(e) = c
                    .work
                    .record_deliveries(id, k as u32, &ready, &record(&ready), true)
                    .await
                {
                    tracing::debug!(job = %job.id, shard = k, error = %e, "delivery states not written yet");
                    share.put_back_deliveries(k, ready);
                }
            }
            share.put_back_deliveries(k, wait);
        }
        Err(e) => {
            tracing::debug!(job = %job.id, shard = k, error = %e, "delivery states not written yet");
            share.put_back_deliveries(k, states);
        }
    }
}

/// Appends the job's opens and clicks to its stream of them, for the other instances and
/// for webhooks.
async fn flush_engaged(c: &Cluster, job: &Job) {
    let Some(share) = job.share() else { return };
    let noted = share.take_engaged();
    if noted.is_empty() {
        return;
    }
    let mut records = Vec::new();
    let mut k = 0;
    while k < noted.len() {
        let at = noted[k].0;
        let mut items = Vec::new();
        while let Some(&(t, i, what)) = noted.get(k) {
            if t != at {
                break;
            }
            items.push((i, what));
            k += 1;
        }
        records.push(codec::encode_engaged(job.id.as_str(), at, &items));
    }
    let stream = EventStream::Engaged(job.id.to_string());
    if let Err(e) = c.events.append(&stream, Some(&c.origin), &records).await {
        tracing::debug!(job = %job.id, error = %e, "opens and clicks not written yet");
        share.put_back_engaged(noted);
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
        flush(&c).await;
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

/// Writes every shard's noted outcome changes (fenced by its lease), delivery states and
/// the receipts index.
async fn flush(c: &Cluster) {
    c.flush_index().await;
    let jobs: Vec<Arc<Job>> = c.jobs.iter().map(|e| e.value().clone()).collect();
    for job in jobs {
        let Some(share) = job.share() else { continue };
        for k in 0..share.shards() {
            flush_shard(c, &job, k).await;
        }
        for k in 0..share.shards() {
            flush_deliveries(c, &job, k).await;
        }
        flush_engaged(c, &job).await;
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
            match commit(&c, job, k, &updates, &events).await {
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
