//! Event webhooks when several instances share the work (`state.cluster`): events come from
//! Redis streams instead of one instance's journal, and endpoints, their cursors and the
//! right to deliver each one live in Redis too.
//!
//! - A job's events are appended to its stream by the scripts that write its outcomes,
//!   receipts and end ([`crate::store::RedisWork`]), so what is shared is what is announced,
//!   and an instance killed at any moment loses none: the instance taking its shards over
//!   decides again only what it had not written, events included.
//! - Opens, clicks and contact events (opt-outs, opt-ins) are appended when they happen.
//! - Each endpoint is delivered by one instance at a time, the holder of its lease
//!   ([`LEASE_TTL`]); when that instance dies another takes the lease over and goes on from
//!   the endpoint's cursors. A cursor moves past a stream entry only once every event of it
//!   was answered 2xx, so an entry cut short is sent again (same event ids).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::delivery::{self, sleep_or_stop};
use super::events::{self, Event};
use super::store::{Endpoint, StoreError, ENDPOINT_VERSION};
use crate::access::TenantId;
use crate::dispatch::journal::codec;
use crate::dispatch::Dispatcher;
use crate::durable::format;
use crate::store::{EventStream, RedisEvents, StreamEntry};

/// How long an instance holds the right to deliver an endpoint's events without renewing.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often an endpoint that is caught up, or delivered by another instance, looks again.
const IDLE_POLL: Duration = Duration::from_millis(300);
/// Stream entries read at once (an entry holds up to a commit's worth of events).
const ENTRIES_PER_READ: usize = 64;

/// What a fleet delivery loop works with.
pub struct FleetDeps {
    pub events: Arc<RedisEvents>,
    pub dispatcher: Dispatcher,
    pub http: reqwest::Client,
    /// This instance's id, the lease holder's name.
    pub me: String,
}

fn db_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Every endpoint registered in the fleet.
pub async fn load(events: &RedisEvents) -> Result<Vec<Endpoint>, StoreError> {
    let mut out = Vec::new();
    for (_, stored) in events.endpoints().await.map_err(db_err)? {
        out.push(decode(&stored)?);
    }
    out.sort_by_key(|e| e.created_at);
    Ok(out)
}

/// Writes an endpoint for every instance.
pub async fn save(events: &RedisEvents, e: &Endpoint) -> Result<(), StoreError> {
    let stored = format::versioned(ENDPOINT_VERSION, &serde_json::to_vec(e).map_err(db_err)?);
    events.save_endpoint(&e.id, &stored).await.map_err(db_err)
}

fn decode(stored: &[u8]) -> Result<Endpoint, StoreError> {
    let body = format::check("webhook endpoint", ENDPOINT_VERSION, stored)?;
    serde_json::from_slice(body).map_err(db_err)
}

/// The streams `tenant`'s events are in: each job of it this instance knows (its events, its
/// opens and clicks), and its contact events; each with whether it belongs to a job that
/// ended (its events come seldom then: late receipts, clicks).
fn streams_of(dispatcher: &Dispatcher, tenant: &TenantId) -> Vec<(EventStream, bool)> {
    let mut jobs: Vec<_> = dispatcher
        .list()
        .into_iter()
        .filter(|j| j.spec.tenant == *tenant && j.share().is_some())
        .collect();
    jobs.sort_by_key(|j| j.spec.created_at);
    let mut out: Vec<(EventStream, bool)> = Vec::with_capacity(jobs.len() * 2 + 1);
    for j in jobs {
        let ended = j.status().is_terminal();
        out.push((EventStream::Job(j.id.to_string()), ended));
        out.push((EventStream::Engaged(j.id.to_string()), ended));
    }
    out.push((EventStream::Contacts(tenant.clone()), false));
    out
}

/// The events of stream entries, in order, each with the place of its entry in `entries`.
pub fn of_entries(
    dispatcher: &Dispatcher,
    stream: &EventStream,
    entries: &[StreamEntry],
) -> Vec<(usize, Event)> {
    let mut out = Vec::new();
    let mut got = Vec::new();
    for (k, entry) in entries.iter().enumerate() {
        let place = match stream {
            EventStream::Job(job) => format!("{job}_{}", entry.id),
            EventStream::Engaged(job) => format!("{job}_e{}", entry.id),
            EventStream::Contacts(tenant) => format!("{tenant}_{}", entry.id),
        };
        let mut n = 0u32;
        for stored in &entry.records {
            let Ok(record) = codec::decode_record(stored) else {
                tracing::warn!(entry = %entry.id, "an event record could not be read; skipped");
                continue;
            };
            events::of_record(dispatcher, &place, &mut n, &record, &mut got);
        }
        if let (Some(status), EventStream::Job(job)) = (&entry.job_end, stream) {
            let at = DateTime::from_timestamp_millis(entry.millis()).unwrap_or_else(Utc::now);
            got.extend(events::job_end(dispatcher, &place, n, job, status, at));
        }
        out.extend(got.drain(..).map(|mut e| {
            message_event_id(&mut e);
            (k, e)
        }));
    }
    out
}

/// Gives a message's event an id of the message and the event's type: a message an
/// instance sent and another sent again after taking its shard over (the first never wrote
/// the outcome) is announced twice, from two stream entries, under one id.
fn message_event_id(e: &mut Event) {
    let suffix = match e.kind {
        "message.sent" => "sent",
        "message.failed" => "failed",
        "message.in_doubt" => "in_doubt",
        "message.delivered" => "delivered",
        "message.undelivered" => "undelivered",
        _ => return,
    };
    if let Some(m) = e.data["message_id"].as_str() {
        e.id = format!("evt_{m}_{suffix}");
    }
}

/// Where a stream's deliveries start for an endpoint without a cursor in it: at the
/// endpoint's registration.
fn start_of(endpoint: &Endpoint) -> String {
    endpoint.created_at.timestamp_millis().to_string()
}

/// Runs one endpoint's deliveries, whenever this instance holds its lease, until `stop`.
pub async fn run(deps: Arc<FleetDeps>, mut endpoint: Endpoint, stop: CancellationToken) {
    let mut attempt = 0u32;
    let mut quiet = Quiet::default();
    let mut holding = false;
    while !stop.is_cancelled() {
        let held = holds_lease(&deps, &endpoint).await;
        if held && !holding {
            tracing::info!(endpoint = %endpoint.id, "delivering this webhook endpoint's events");
        }
        holding = held;
        if !held {
            sleep_or_stop(&stop, IDLE_POLL * 3).await;
            continue;
        }
        match deliver_some(&deps, &endpoint, &mut quiet).await {
            Ok(0) => {
                sleep_or_stop(&stop, IDLE_POLL).await;
            }
            Ok(_) => {
                attempt = 0;
                if endpoint.failing_since.take().is_some() {
                    let _ = save(&deps.events, &endpoint).await;
                }
            }
            Err(Failure::Read(e)) => {
                tracing::warn!(endpoint = %endpoint.id, error = %e, "webhook events could not be read");
                sleep_or_stop(&stop, IDLE_POLL * 10).await;
            }
            Err(Failure::Send(error)) => {
                let now = Utc::now();
                let since = *endpoint.failing_since.get_or_insert(now);
                if now - since > delivery::GIVE_UP_AFTER {
                    endpoint.disabled = true;
                    tracing::warn!(endpoint = %endpoint.id, %error, "webhook endpoint failed for a day; its deliveries stop");
                    let _ = save(&deps.events, &endpoint).await;
                    return;
                }
                if attempt == 0 {
                    let _ = save(&deps.events, &endpoint).await;
                }
                attempt = attempt.saturating_add(1);
                let wait = delivery::backoff(attempt);
                tracing::info!(endpoint = %endpoint.id, %error, attempt, wait_ms = wait.as_millis() as u64, "webhook delivery failed; retrying");
                // The lease is kept through the wait, so the endpoint's backoff is not
                // restarted by another instance.
                let mut left = wait;
                while left > Duration::ZERO && !stop.is_cancelled() {
                    let step = left.min(LEASE_TTL / 3);
                    sleep_or_stop(&stop, step).await;
                    left -= step;
                    holds_lease(&deps, &endpoint).await;
                }
            }
        }
    }
    let _ = deps.events.release_lease(&endpoint.id, &deps.me).await;
}

/// Renews the endpoint's lease; answers whether this instance still holds it.
async fn holds_lease(deps: &FleetDeps, endpoint: &Endpoint) -> bool {
    deps.events
        .hold_lease(&endpoint.id, &deps.me, LEASE_TTL.as_millis() as u64)
        .await
        .unwrap_or(false)
}

/// Why a round of deliveries stopped.
enum Failure {
    Read(String),
    Send(String),
}

/// How often the stream of a job that ended and had nothing new is read again.
const QUIET_RECHECK: Duration = Duration::from_secs(5);

/// Streams of ended jobs found without new events, and when.
#[derive(Default)]
struct Quiet(HashMap<String, Instant>);

/// Delivers what waits in each of the endpoint's streams (one read each); answers how many
/// stream entries it got past.
async fn deliver_some(
    deps: &FleetDeps,
    endpoint: &Endpoint,
    quiet: &mut Quiet,
) -> Result<usize, Failure> {
    let cursors = deps
        .events
        .cursors(&endpoint.id)
        .await
        .map_err(|e| Failure::Read(e.to_string()))?;
    let batch = endpoint.batch_size.max(1);
    let mut passed = 0;
    for (stream, ended) in streams_of(&deps.dispatcher, &endpoint.tenant) {
        let field = stream.cursor_field();
        if ended
            && quiet
                .0
                .get(&field)
                .is_some_and(|t| t.elapsed() < QUIET_RECHECK)
        {
            continue;
        }
        let after = cursors
            .get(&field)
            .cloned()
            .unwrap_or_else(|| start_of(endpoint));
        let entries = deps
            .events
            .read(&stream, &after, ENTRIES_PER_READ)
            .await
            .map_err(|e| Failure::Read(e.to_string()))?;
        let entries = until_unsettled_end(&deps.dispatcher, &stream, entries);
        let Some(last) = entries.last().map(|e| e.id.clone()) else {
            if ended {
                quiet.0.insert(field, Instant::now());
            }
            continue;
        };
        quiet.0.remove(&field);
        let wanted = wanted(endpoint);
        // Each event with the place of its entry, which the cursor moves past.
        let (places, events): (Vec<usize>, Vec<Event>) =
            of_entries(&deps.dispatcher, &stream, &entries)
                .into_iter()
                .filter(|(_, e)| wanted(e))
                .unzip();
        let mut start = 0;
        while start < events.len() {
            // A slow endpoint can outlast the lease: each request renews it first, and a
            // lease lost meanwhile ends the round (its new holder goes on from the cursor).
            if !holds_lease(deps, endpoint).await {
                return Ok(passed);
            }
            let end = (start + batch).min(events.len());
            let list = &events[start..end];
            if let Err(e) = delivery::send(&deps.http, endpoint, list).await {
                crate::metrics::webhook_events(list.len() as u64, false);
                return Err(Failure::Send(e));
            }
            crate::metrics::webhook_events(list.len() as u64, true);
            // Past the request's last entry when the request carried its last event.
            let done = places[end - 1];
            if end < events.len() && places[end] != done {
                let id = &entries[done].id;
                if let Err(e) = deps.events.set_cursor(&endpoint.id, &stream, id).await {
                    tracing::warn!(endpoint = %endpoint.id, error = %e, "a webhook cursor could not be saved; events may be sent again");
                }
            }
            start = end;
        }
        if let Err(e) = deps.events.set_cursor(&endpoint.id, &stream, &last).await {
            tracing::warn!(endpoint = %endpoint.id, error = %e, "a webhook cursor could not be saved; events may be sent again");
        }
        passed += entries.len();
    }
    Ok(passed)
}

/// The entries before a job's end whose final counts this instance has not read yet: the
/// end is announced with them, once they are (a moment later).
fn until_unsettled_end(
    dispatcher: &Dispatcher,
    stream: &EventStream,
    mut entries: Vec<StreamEntry>,
) -> Vec<StreamEntry> {
    let EventStream::Job(id) = stream else {
        return entries;
    };
    let settled = crate::domain::JobId::parse(id)
        .and_then(|id| dispatcher.get(&id))
        .is_none_or(|j| {
            j.share()
                .and_then(|s| s.counts())
                .is_some_and(|c| c.settled)
        });
    if !settled {
        if let Some(end) = entries.iter().position(|e| e.job_end.is_some()) {
            entries.truncate(end);
        }
    }
    entries
}

/// Which events an endpoint receives: its tenant's, of its types.
fn wanted(endpoint: &Endpoint) -> impl Fn(&Event) -> bool + '_ {
    move |e: &Event| {
        e.tenant == endpoint.tenant
            && (endpoint.event_types.is_empty() || endpoint.event_types.iter().any(|t| t == e.kind))
    }
}

/// The endpoint's events appended from `from` to `to`, over every stream of its tenant, at
/// most `max`.
pub async fn replay_events(
    deps: &FleetDeps,
    endpoint: &Endpoint,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
) -> Result<Vec<Event>, StoreError> {
    let wanted = wanted(endpoint);
    let mut out = Vec::new();
    for (stream, _) in streams_of(&deps.dispatcher, &endpoint.tenant) {
        let mut after: Option<String> = None;
        loop {
            let entries = deps
                .events
                .range_between(
                    &stream,
                    from.timestamp_millis(),
                    to.timestamp_millis(),
                    after.as_deref(),
                    ENTRIES_PER_READ,
                )
                .await
                .map_err(db_err)?;
            let Some(last) = entries.last().map(|e| e.id.clone()) else {
                break;
            };
            out.extend(
                of_entries(&deps.dispatcher, &stream, &entries)
                    .into_iter()
                    .map(|(_, e)| e)
                    .filter(|e| wanted(e) && e.timestamp >= from && e.timestamp <= to),
            );
            if out.len() >= max || entries.len() < ENTRIES_PER_READ {
                break;
            }
            after = Some(last);
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    Ok(out)
}

/// Keeps this instance's endpoints in step with the fleet's: starts the new ones, stops the
/// removed and disabled ones, and restarts the changed ones (a rotated secret).
pub fn differences(
    running: &HashMap<String, Endpoint>,
    stored: &[Endpoint],
) -> (Vec<Endpoint>, Vec<String>) {
    let mut start = Vec::new();
    let mut stop = Vec::new();
    for e in stored {
        match running.get(&e.id) {
            Some(r) if same_delivery(r, e) => {}
            Some(_) => {
                stop.push(e.id.clone());
                start.push(e.clone());
            }
            None => start.push(e.clone()),
        }
    }
    for id in running.keys() {
        if !stored.iter().any(|e| &e.id == id) {
            stop.push(id.clone());
        }
    }
    (start, stop)
}

/// Whether two forms of an endpoint deliver the same way (its failure record aside).
fn same_delivery(a: &Endpoint, b: &Endpoint) -> bool {
    a.url == b.url
        && a.secrets == b.secrets
        && a.event_types == b.event_types
        && a.batch_size == b.batch_size
        && a.disabled == b.disabled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, secret: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            url: "http://127.0.0.1:9/hook".into(),
            event_types: Vec::new(),
            secrets: vec![secret.into()],
            batch_size: 10,
            created_at: Utc::now(),
            failing_since: None,
            disabled: false,
            tenant: TenantId::default(),
        }
    }

    #[test]
    fn a_new_endpoint_starts_a_removed_one_stops_and_a_rotated_one_restarts() {
        let a = endpoint("whk_a", "whsec_a");
        let b = endpoint("whk_b", "whsec_b");
        let running: HashMap<String, Endpoint> =
            [(a.id.clone(), a.clone()), (b.id.clone(), b.clone())].into();
        let mut rotated = a.clone();
        rotated.secrets.insert(0, "whsec_new".into());
        let mut failing = rotated.clone();
        failing.failing_since = Some(Utc::now());
        let c = endpoint("whk_c", "whsec_c");
        let (start, stop) = differences(&running, &[failing.clone(), c.clone()]);
        assert_eq!(start, vec![failing, c]);
        let mut stop = stop;
        stop.sort();
        assert_eq!(stop, vec!["whk_a".to_string(), "whk_b".to_string()]);
        // A failure record alone changes nothing.
        let mut only_failing = a.clone();
        only_failing.failing_since = Some(Utc::now());
        let (start, stop) = differences(&running, &[only_failing, b]);
        assert!(start.is_empty() && stop.is_empty());
    }
}
