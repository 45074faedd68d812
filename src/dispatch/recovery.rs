//! Start-up recovery: every job in the journal is planned again from its stored request and
//! audience, recipients settled before the stop keep their outcome, messages caught in flight
//! are sent again under the same id (providers that drop repeats) or marked in doubt (those
//! that cannot), and the rest is decided again by the workers as usual.

use std::sync::Arc;

use anyhow::Context;

use super::cap_rebuild;
use super::in_doubt::InDoubt;
use super::in_flight_inquiry;
use super::journal::codec::Settlement;
use super::journal::{JobControl, Journal, RecoveredJob, StoredJob};
use super::planner::{self, PlanRequest};
use super::{AcceptedMessage, Audience, DeliveryState, Dispatcher, Job};
use crate::config::Config;
use crate::domain::{JobId, JobStatus, MessageId};
use crate::links::Tracking;
use crate::policy::frequency_cap;
use crate::store::StateStore;
use crate::template::Template;

/// What a recovery found, for the start-up log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoverySummary {
    pub jobs: usize,
    /// Jobs that still have work to do.
    pub unfinished: usize,
    pub resent: usize,
    pub in_doubt: usize,
    /// Finished jobs restored in the background after start-up.
    pub finished_later: usize,
}

/// Reads the journal and hands every recovered job to the dispatcher. Jobs with work left
/// come first, before this returns, so sending resumes as soon as the gateway is up;
/// finished jobs (only read by reports) are restored afterwards in the background, and
/// read as "being recovered" until then.
///
/// With `caps_store` (a shared store that may have lost its reservations), the cap
/// reservations of every journaled send inside the cap windows are put back first (see
/// [`cap_rebuild`]); finished jobs inside the windows are then restored before this returns
/// too. A store that cannot take them fails the start: nothing may be sent without them.
pub async fn recover(
    journal: &Journal,
    dispatcher: &Dispatcher,
    config: &Config,
    tracking: &Arc<Tracking>,
    caps_store: Option<&Arc<dyn StateStore>>,
) -> anyhow::Result<RecoverySummary> {
    let now = dispatcher.clock().now();
    let rules = frequency_cap::rules_from_config(&config.policy.frequency_caps);
    let rebuild = caps_store.zip(cap_rebuild::horizon(&rules, now));
    let horizon = rebuild.map(|(_, h)| h);
    // Jobs restored before start-up ends: those with work left, and (when caps are rebuilt)
    // finished ones that may hold reservations.
    let first = move |c: Option<&JobControl>| {
        c.is_none_or(|c| !c.status.is_terminal())
            || horizon.is_some_and(|h| c.is_some_and(|c| c.finished_at.is_none_or(|f| f > h)))
    };
    let reader = journal.clone();
    let jobs = tokio::task::spawn_blocking(move || reader.load_where(first)).await??;
    if let Some((store, _)) = rebuild {
        let reservations = cap_rebuild::reservations(&jobs, &rules, now);
        store
            .restore_caps(&rules, &reservations, now)
            .await
            .context("rebuilding frequency-cap reservations from the journal")?;
        if !reservations.is_empty() {
            tracing::info!(
                reservations = reservations.len(),
                "frequency-cap reservations rebuilt from the journal"
            );
        }
    }
    let (mut summary, in_doubt) = restore_all(jobs, dispatcher, config, tracking);
    announce_in_doubt(journal, now.timestamp(), in_doubt).await;

    let reader = journal.clone();
    let finished =
        tokio::task::spawn_blocking(move || reader.job_ids_where(|c| !first(c))).await??;
    summary.finished_later = finished.len();
    if !finished.is_empty() {
        dispatcher.mark_recovering(&finished);
        let (reader, dispatcher, config, tracking) = (
            journal.clone(),
            dispatcher.clone(),
            config.clone(),
            tracking.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let loaded =
                tokio::task::spawn_blocking(move || reader.load_where(|c| !first(c))).await;
            match loaded {
                Ok(Ok(jobs)) => {
                    let (s, _) = restore_all(jobs, &dispatcher, &config, &tracking);
                    tracing::info!(
                        jobs = s.jobs,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "finished jobs recovered"
                    );
                }
                Ok(Err(e)) => tracing::error!(error = %e, "finished jobs could not be recovered"),
                Err(e) => tracing::error!(error = %e, "finished jobs could not be recovered"),
            }
            dispatcher.mark_recovered(&finished);
        });
    }
    Ok(summary)
}

/// Journals the recipients each job was newly found in doubt for, so event webhooks announce
/// them (`message.in_doubt`). One that cannot be journaled now is found again at the next
/// restart, and announced then.
async fn announce_in_doubt(journal: &Journal, at: i64, found: Vec<(JobId, Vec<u32>)>) {
    for (job, items) in found {
        if let Err(e) = journal.record_in_doubt(&job, at, &items).await {
            tracing::warn!(job = %job, error = %e, "messages in doubt not recorded for announcing");
        }
    }
}

/// Restores every job; answers the summary and, per job, the recipients found in doubt that
/// no earlier restart announced.
fn restore_all(
    jobs: Vec<RecoveredJob>,
    dispatcher: &Dispatcher,
    config: &Config,
    tracking: &Tracking,
) -> (RecoverySummary, Vec<(JobId, Vec<u32>)>) {
    let mut summary = RecoverySummary::default();
    let mut found = Vec::new();
    for recovered in jobs {
        let id = recovered.stored.id.clone();
        match restore(recovered, dispatcher, config, tracking) {
            Ok((job, resent, in_doubt, unannounced)) => {
                summary.jobs += 1;
                summary.resent += resent;
                summary.in_doubt += in_doubt;
                if !unannounced.is_empty() {
                    found.push((job.id.clone(), unannounced));
                }
                if !job.status().is_terminal() {
                    summary.unfinished += 1;
                }
            }
            Err(e) => tracing::error!(job = %id, error = %e, "job could not be recovered"),
        }
    }
    (summary, found)
}

/// Plans a job again from its stored form and audience (links tracked as before); not yet
/// handed to the dispatcher.
pub fn rebuild(
    stored: StoredJob,
    audience: Audience,
    dispatcher: &Dispatcher,
    config: &Config,
    tracking: &Tracking,
) -> anyhow::Result<Arc<Job>> {
    let channel = stored.spec.channel;
    let rewritten = if stored.track_links {
        Some(tracking.prepare(&stored.spec.template_body, channel)?)
    } else {
        None
    };
    let body = rewritten
        .as_ref()
        .map_or(stored.spec.template_body.as_str(), |r| r.body.as_str());
    let template = Arc::new(Template::compile(body)?);
    let job = planner::plan(
        dispatcher,
        config,
        PlanRequest {
            id: stored.id.clone(),
            spec: stored.spec,
            template,
            job_variables: stored.variables,
            audience,
            reserve_caps: true,
            shards: Some(stored.shards),
        },
    )?;
    if let Some(rewritten) = &rewritten {
        tracking.attach(&job, rewritten, channel);
    }
    Ok(job)
}

/// A journal time (Unix seconds) as a UTC time; out-of-range values read as the epoch.
fn unix_time(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn restore(
    r: RecoveredJob,
    dispatcher: &Dispatcher,
    config: &Config,
    tracking: &Tracking,
) -> anyhow::Result<(Arc<Job>, usize, usize, Vec<u32>)> {
    let RecoveredJob {
        stored,
        audience,
        control,
        in_flight,
        settled,
        deliveries,
        engaged,
        decided,
        announced_in_doubt,
    } = r;
    let channel = stored.spec.channel;
    let job = rebuild(stored, audience, dispatcher, config, tracking)?;
    if let Some(control) = &control {
        if let Some(limit) = control.budget_micros {
            job.progress.budget.set_limit(limit);
        }
        if let Some(decision) = &control.rollout {
            job.restore_rollout(decision.clone());
        }
        job.with_state(|st| {
            // A job that was running is queued again; the first lease marks it running.
            st.status = match control.status {
                JobStatus::Running => JobStatus::Queued,
                s => s,
            };
            st.started_at = control.started_at;
            st.finished_at = control.finished_at;
        });
    }

    // Answers come back in the order (and under the minute) they were recorded, so the
    // job's per-minute and per-country figures read as before.
    let mut accepted = Vec::new();
    let mut batch: Vec<AcceptedMessage> = Vec::new();
    let mut batch_at = None;
    // A provider this herald no longer has: its receipts cannot come back.
    let slot_of = |name: &Option<Arc<str>>| match name {
        Some(n) => job.slot_of(n).unwrap_or(usize::from(u16::MAX)),
        None => job.provider,
    };
    for (at, provider, s) in &settled {
        if batch_at != Some(*at) && !batch.is_empty() {
            job.record_accepted(&batch, unix_time(batch_at.unwrap_or(*at)));
            accepted.append(&mut batch);
        }
        batch_at = Some(*at);
        match s.settlement {
            Settlement::Sent => {
                job.restore_sent(s.index, s.parts, s.cost_micros);
                batch.push(AcceptedMessage {
                    provider: slot_of(provider) as u16,
                    index: s.index,
                    region: s.region,
                    parts: s.parts,
                    cost_micros: s.cost_micros,
                    provider_message_id: s.provider_message_id.clone(),
                });
            }
            Settlement::Failed => job.restore_failed(s.index),
        }
    }
    if let Some(at) = batch_at.filter(|_| !batch.is_empty()) {
        job.record_accepted(&batch, unix_time(at));
        accepted.append(&mut batch);
    }
    dispatcher.observe_restored(&job, &accepted);
    for (index, code, at) in deliveries {
        if let Some(state) = DeliveryState::from_code(code) {
            job.progress
                .delivery
                .restore(index, state, &job.progress.counters, unix_time(at));
        }
    }
    for (index, what, at) in engaged {
        job.restore_engaged(index, what, unix_time(at));
    }
    for (index, code) in decided {
        job.restore_decided(index, code);
    }

    let cancelled = job.status() == JobStatus::Cancelled;
    // Sent again only to the provider that had them, and only if it drops repeats; one that
    // cannot is asked first what it knows of them.
    let mut by_provider: std::collections::BTreeMap<usize, Vec<_>> = Default::default();
    for (provider, item) in in_flight.into_values() {
        by_provider
            .entry(slot_of(&provider))
            .or_default()
            .push(item);
    }
    let message_id =
        |index: u32| MessageId::derive(&job.id, job.audience.contact_id(index), channel);
    let mut resend: std::collections::BTreeMap<usize, Vec<_>> = Default::default();
    let mut in_doubt = 0;
    let mut unannounced = Vec::new();
    let mut doubtful = Vec::new();
    let mut settled_by_provider = Vec::new();
    for (slot, mut items) in by_provider {
        items.sort_by_key(|i| i.index);
        let provider = dispatcher.providers().get(slot);
        let idempotent = provider.is_some_and(|p| p.idempotent);
        let mut sent = Vec::new();
        if !idempotent && !cancelled {
            if let Some(p) = provider {
                let inquiry =
                    in_flight_inquiry::ask(p.provider.as_ref(), items, |it| message_id(it.index));
                for item in inquiry.not_sent {
                    let cost = job.unit_price(slot, item.region).times(item.parts).0;
                    job.restore_sending(item.index, cost);
                    resend.entry(slot).or_default().push(item);
                }
                items = inquiry.unknown;
                sent = inquiry.sent;
            }
        }
        let sent_ids = sent.iter().map(|(it, id)| (it, Some(id)));
        for (item, provider_id) in items.iter().map(|it| (it, None)).chain(sent_ids) {
            let cost = job.unit_price(slot, item.region).times(item.parts).0;
            if idempotent && !cancelled {
                job.restore_sending(item.index, cost);
                resend.entry(slot).or_default().push(item.clone());
            } else {
                job.restore_in_doubt(
                    item.index,
                    InDoubt {
                        parts: item.parts,
                        cost_micros: cost,
                        region: item.region,
                        provider: slot,
                    },
                );
                // Unless the provider told its id, it never answered, so a receipt can only
                // name the message by herald's own id (which the generic protocol uses).
                doubtful.push(AcceptedMessage {
                    provider: slot as u16,
                    index: item.index,
                    region: item.region,
                    parts: item.parts,
                    cost_micros: cost,
                    provider_message_id: provider_id
                        .cloned()
                        .unwrap_or_else(|| message_id(item.index).to_string()),
                });
                in_doubt += usize::from(provider_id.is_none());
                if provider_id.is_none() && !announced_in_doubt.contains(&item.index) {
                    unannounced.push(item.index);
                }
            }
        }
        settled_by_provider.extend(sent);
    }
    if !doubtful.is_empty() {
        dispatcher.settle_in_doubt_on_receipt(&job);
        dispatcher.observe_restored(&job, &doubtful);
    }
    for (item, provider_id) in settled_by_provider {
        dispatcher.settle_in_doubt_as_sent(&job, item.index, provider_id);
    }
    let resent = resend.values().map(Vec::len).sum::<usize>();
    dispatcher.submit(job.clone());
    for (slot, items) in resend {
        dispatcher.resend_in_flight(&job, slot, items);
    }
    tracing::info!(
        job = %job.id,
        status = ?job.status(),
        sent = job.progress.counters.sent.load(std::sync::atomic::Ordering::Relaxed),
        resent,
        in_doubt,
        remaining = job.remaining(),
        "job recovered"
    );
    Ok((job, resent, in_doubt, unannounced))
}
