//! Writing what this instance decided, every tick: each shard's outcome changes with the
//! events that announce them (fenced by the shard's lease), delivery states once their
//! messages' outcomes are written, opens and clicks, and the receipts index.

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;
use crate::dispatch::journal::codec;
use crate::dispatch::{EventNote, Job};
use crate::store::{CommitAnswer, DeliveriesAnswer, EventStream, OutcomeUpdate, StoreError};

/// How long delivery states wait for their messages' outcomes to be written before they are
/// written anyway (their events may then come before the `sent` ones).
const DELIVERIES_WAIT: Duration = Duration::from_secs(60);

/// Writes every shard's noted outcome changes (fenced by its lease), delivery states and
/// the receipts index.
pub(super) async fn flush(c: &Cluster) {
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

/// Writes shard `k`'s noted outcome changes and the events that announce them, if this
/// instance holds its lease. Answers false when they could not be written and are still
/// waiting.
pub(super) async fn flush_shard(c: &Cluster, job: &Job, k: usize) -> bool {
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
pub(super) async fn commit(
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
            .filter_map(|&(pos, state)| job.recipient_at(k, pos).map(|i| (i, state)))
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
