//! Keeping this instance in step with the cluster: loading jobs other instances accepted,
//! taking and renewing shard leases, and following each job's shared status and counters.

use std::sync::Arc;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::Cluster;
use crate::dispatch::journal::{codec, decode_audience, StoredJob};
use crate::dispatch::{recovery, Job};
use crate::domain::{JobId, JobStatus};
use crate::store::StoreError;

/// Loads the published jobs this instance does not have yet (finished ones too at start-up,
/// for their reports). Answers how many it loaded.
pub(super) async fn load_jobs(c: &Arc<Cluster>, include_done: bool) -> Result<usize, StoreError> {
    let ids = if include_done {
        c.work.all_jobs().await?
    } else {
        c.work.active_jobs().await?
    };
    let mut loaded = 0;
    for id in ids {
        let Some(job_id) = JobId::parse(&id) else {
            tracing::warn!(job = %id, "a published job id is malformed; skipped");
            continue;
        };
        if c.jobs.contains_key(&job_id) {
            continue;
        }
        match load_one(c, &job_id).await {
            Ok(true) => loaded += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "a published job could not be loaded; trying again")
            }
        }
    }
    Ok(loaded)
}

async fn load_one(c: &Arc<Cluster>, id: &JobId) -> anyhow::Result<bool> {
    let Some(published) = c.work.load(id.as_str()).await? else {
        // Its records expired after their retention: nothing left to report.
        c.work.forget(id.as_str()).await?;
        return Ok(false);
    };
    let (c2, id2) = (c.clone(), id.clone());
    let job = tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<Job>> {
        let stored: StoredJob = serde_json::from_slice(&published.spec)?;
        anyhow::ensure!(stored.id == id2, "the published job names another id");
        let audience = decode_audience(&published.audience, stored.audience_len)?;
        let job = recovery::rebuild(stored, audience, &c2.dispatcher, &c2.config, &c2.tracking)?;
        job.share_work();
        Ok(job)
    })
    .await??;
    let control = c.work.control(id.as_str()).await?;
    apply_control(c, &job, &control);
    c.jobs.insert(id.clone(), job.clone());
    c.dispatcher.submit(job);
    Ok(true)
}

/// Renews this instance's leases and takes its fair share of open shards: the open shards
/// of a job over the live instances, rounded up. A taken shard goes on from the outcomes
/// its previous holder wrote.
pub(super) async fn look_after_leases(c: &Cluster, live: usize) {
    let ttl_ms = c.lease_ttl.as_millis() as u64;
    let jobs: Vec<Arc<Job>> = c.jobs.iter().map(|e| e.value().clone()).collect();
    for job in jobs {
        let Some(share) = job.share() else { continue };
        let status = job.status();
        let owned = share.owned_shards();
        if status.is_terminal() {
            if !owned.is_empty() && !share.has_pending() {
                let _ = c
                    .work
                    .release(job.id.as_str(), &share.disown_all(), &c.me)
                    .await;
            }
            continue;
        }
        match c.work.renew(job.id.as_str(), &owned, &c.me, ttl_ms).await {
            Ok(kept) => {
                for (&k, still) in owned.iter().zip(kept) {
                    if !still {
                        tracing::warn!(job = %job.id, shard = k, "shard lease lost to another instance");
                        share.set_owned(k as usize, false);
                    }
                }
                share.renewed();
            }
            Err(e) => {
                // Without Redis nothing is sent anyway (no cap or rate decision); once the
                // leases may have run out, this instance stops taking work from them.
                if share.renewed_ago() > c.lease_ttl.mul_f32(0.8) {
                    share.disown_all();
                }
                tracing::debug!(job = %job.id, error = %e, "leases not renewed");
                continue;
            }
        }
        if !matches!(
            status,
            JobStatus::Queued | JobStatus::Running | JobStatus::Scheduled
        ) {
            continue;
        }
        let open = share.open_shards();
        let fair = open.len().div_ceil(live.max(1));
        let mut mine = open.iter().filter(|&&k| share.owns(k)).count();
        // Instances start their search at different shards, so they rarely race for one.
        let offset = (xxhash_rust::xxh3::xxh3_64(c.me.as_bytes()) as usize) % open.len().max(1);
        for step in 0..open.len() {
            if mine >= fair {
                break;
            }
            let k = open[(offset + step) % open.len()];
            if share.owns(k) || job.shard_busy(k) {
                continue;
            }
            match c
                .work
                .acquire(job.id.as_str(), k as u32, &c.me, ttl_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::debug!(job = %job.id, error = %e, "shard lease not taken");
                    break;
                }
            }
            // What this instance decided while it did not hold the lease (Redis was away)
            // is written first, so it is not decided a second time.
            if !super::flush::flush_shard(c, &job, k).await {
                let _ = c.work.release(job.id.as_str(), &[k as u32], &c.me).await;
                continue;
            }
            match c.work.codes(job.id.as_str(), k as u32).await {
                Ok(codes) => {
                    // Unmarked messages are sent again only where they cannot have gone to
                    // another provider: a channel routed to one idempotent provider.
                    let resend = c.dispatcher.resends_after_crash(job.spec.channel);
                    let resumed_at = job.adopt_shard(k, &codes, resend, c.dispatcher.clock().now());
                    share.set_owned(k, true);
                    mine += 1;
                    tracing::info!(job = %job.id, shard = k, from = resumed_at, "shard taken");
                    c.dispatcher.wake();
                }
                Err(e) => {
                    tracing::debug!(job = %job.id, error = %e, "shard outcomes not read; lease given back");
                    let _ = c.work.release(job.id.as_str(), &[k as u32], &c.me).await;
                }
            }
        }
    }
}

/// Applies every job's shared status and counters to this instance's copy; moves finished
/// jobs off the active list.
/// Finished jobs only change by receipts: their counts are read this often.
const FINISHED_REFRESH: Duration = Duration::from_secs(5);

pub(super) async fn follow_jobs(c: &Cluster) {
    let jobs: Vec<Arc<Job>> = c.jobs.iter().map(|e| e.value().clone()).collect();
    let now = c.dispatcher.clock().now();
    let receipts_window = chrono::Duration::seconds(c.index_ttl.min(i64::MAX as u64) as i64);
    for job in jobs {
        let Some(share) = job.share() else { continue };
        if job.status().is_terminal() && share.counts().is_some_and(|s| s.settled) {
            // Receipts keep coming after a job ends (placed by any instance), for as long as
            // messages stay in the receipts index.
            let recent = job
                .state()
                .finished_at
                .is_none_or(|t| now - t <= receipts_window);
            if recent && share.refreshed_ago() >= FINISHED_REFRESH {
                if let Ok(stats) = c
                    .work
                    .shard_stats(job.id.as_str(), share.shards() as u32)
                    .await
                {
                    share.set_shared(&stats, true);
                }
            }
            continue;
        }
        let control = match c.work.control(job.id.as_str()).await {
            Ok(ctl) => ctl,
            Err(e) => {
                tracing::debug!(job = %job.id, error = %e, "job record not read");
                continue;
            }
        };
        // Counts first, then status: the record says completed only once every outcome is
        // written, so a job never reads completed with counts from before.
        if let Ok(stats) = c
            .work
            .shard_stats(job.id.as_str(), share.shards() as u32)
            .await
        {
            let terminal = control
                .get("status")
                .is_some_and(|s| matches!(s.as_str(), "completed" | "cancelled" | "failed"));
            share.set_shared(&stats, terminal && !share.has_pending());
        }
        apply_control(c, &job, &control);
        // A job that started here is marked running for everyone.
        let local = job.state();
        if local.status == JobStatus::Running
            && control.get("status").map(String::as_str) == Some("queued")
        {
            let at = local
                .started_at
                .map(|t| ("started_at", t.timestamp_micros()));
            let _ = c.work.set_status(job.id.as_str(), "running", at).await;
        }
        if job.status().is_terminal() && share.counts().is_some_and(|s| s.settled) {
            let _ = c.work.retire(job.id.as_str(), c.retention).await;
        }
    }
}

/// Applies a job record's status to the local copy.
fn apply_control(c: &Cluster, job: &Job, control: &std::collections::HashMap<String, String>) {
    let time = |f: &str| -> Option<DateTime<Utc>> {
        control
            .get(f)
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|us| Utc.timestamp_micros(us).single())
    };
    let Some(status) = control.get("status") else {
        return;
    };
    let started = time("started_at");
    let finished = time("finished_at");
    let now = c.dispatcher.clock().now();
    match status.as_str() {
        "completed" => job.with_state(|st| {
            if !st.status.is_terminal() {
                st.status = JobStatus::Completed;
            }
            st.finished_at.get_or_insert(finished.unwrap_or(now));
            st.started_at = st.started_at.or(started).or(Some(now));
        }),
        "cancelled" if !job.status().is_terminal() => {
            let _ = c.dispatcher.cancel(&job.id);
        }
        "paused" if matches!(job.status(), JobStatus::Queued | JobStatus::Running) => {
            let _ = c.dispatcher.pause(&job.id);
        }
        "queued" | "running" => {
            if job.status() == JobStatus::Paused {
                let _ = c.dispatcher.resume(&job.id);
            }
            if status == "running" {
                job.with_state(|st| {
                    if st.status == JobStatus::Queued {
                        st.status = JobStatus::Running;
                    }
                    st.started_at = st.started_at.or(started);
                });
            }
        }
        _ => {}
    }
}

/// Entries of a job's opens and clicks read at once.
const ENGAGED_PER_READ: usize = 256;

/// Reads the opens and clicks other instances saw into this instance's copy of each job, so
/// every instance reports them and a variants rollout decides on all of them. Jobs that
/// ended are read every [`FINISHED_REFRESH`], for as long as their messages take receipts.
pub(super) async fn follow_engaged(c: &Cluster) {
    let jobs: Vec<Arc<Job>> = c.jobs.iter().map(|e| e.value().clone()).collect();
    let now = c.dispatcher.clock().now();
    let window = chrono::Duration::seconds(c.index_ttl.min(i64::MAX as u64) as i64);
    for job in jobs {
        let state = job.state();
        if state.finished_at.is_some_and(|t| now - t > window) {
            continue;
        }
        let (mut after, read_at) = c
            .engaged_read
            .get(&job.id)
            .map(|r| r.value().clone())
            .unwrap_or_else(|| (String::new(), std::time::Instant::now() - FINISHED_REFRESH));
        if state.status.is_terminal() && read_at.elapsed() < FINISHED_REFRESH {
            continue;
        }
        let stream = crate::store::EventStream::Engaged(job.id.to_string());
        loop {
            let entries = match c.events.read(&stream, &after, ENGAGED_PER_READ).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::debug!(job = %job.id, error = %e, "opens and clicks not read");
                    break;
                }
            };
            for entry in &entries {
                if entry.origin.as_deref() == Some(c.origin.as_str()) {
                    continue;
                }
                for stored in &entry.records {
                    if let Ok(codec::LogRecord::Engaged { at, items, .. }) =
                        codec::decode_record(stored)
                    {
                        let at = DateTime::from_timestamp(at, 0).unwrap_or(now);
                        for (i, what) in items {
                            if (i as usize) < job.audience.len() {
                                job.restore_engaged(i, what, at);
                            }
                        }
                    }
                }
            }
            let full = entries.len() == ENGAGED_PER_READ;
            if let Some(last) = entries.last() {
                after = last.id.clone();
            }
            if !full {
                break;
            }
        }
        c.engaged_read
            .insert(job.id.clone(), (after, std::time::Instant::now()));
    }
}
