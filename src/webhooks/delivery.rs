//! One endpoint's deliveries: read the journal after the endpoint's cursor, turn records into
//! events, send them (one per request, or batched as a JSON array), and move the cursor once
//! the endpoint answered 2xx. At least once, in journal order, so in order per message. A
//! failing endpoint is retried with exponential backoff and full jitter (1 s doubling to
//! 10 min); after a day of failures it is marked disabled and left alone.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use redb::ReadableDatabase;
use tokio_util::sync::CancellationToken;

use super::events::{self, Event};
use super::signature;
use super::store::{Cursor, Endpoint, EndpointStore};
use crate::dispatch::journal::codec;
use crate::dispatch::Dispatcher;
use crate::durable::{Durable, DurableError};
use crate::ledger::Chainer;

/// How long a day of failures is: an endpoint failing that long is disabled.
pub(super) const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The wait before attempt `attempt` (1 and up) at a failing endpoint: exponential from 1 s,
/// capped at 10 minutes, with full jitter so endpoints recovering together are not hit
/// together.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_secs(1)
        .saturating_mul(1u32 << attempt.min(10))
        .min(MAX_BACKOFF);
    rand::thread_rng().gen_range(Duration::ZERO..=cap)
}
/// How often an endpoint that is caught up looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(300);
/// Journal keys read at once.
const KEYS_PER_READ: usize = 256;
/// Requests' worth of events read at once: one record-log key holds thousands of events, and
/// reading it again for each request would decode it again.
const REQUESTS_PER_READ: usize = 16;

/// What a delivery loop works with.
#[derive(Clone)]
pub struct Deps {
    pub durable: Durable<Chainer>,
    pub store: EndpointStore,
    pub dispatcher: Dispatcher,
    pub http: reqwest::Client,
}

/// Events after `from` (the events of `from.key` before `from.n` skipped), at most `max`
/// of those `wanted` lets through, and the cursor just past the last event read. Blocking.
pub fn read_events(
    deps: &Deps,
    from: Cursor,
    max: usize,
    wanted: &(dyn Fn(&Event) -> bool + Sync),
) -> Result<(Vec<Event>, Cursor), DurableError> {
    let db = deps.durable.database();
    let r = db
        .begin_read()
        .map_err(|e| DurableError::Db(e.to_string()))?;
    // {r, 0}: key r and all before it are done; {r, k}: events k.. of key r remain.
    let after = if from.n > 0 { from.key - 1 } else { from.key };
    let mut out = Vec::new();
    let mut at = from;
    let mut key_events = Vec::new();
    let mut current = 0u64;
    let mut n = 0u32;
    let mut full = false;
    crate::durable::records::scan_after::<DurableError>(
        &r,
        after,
        KEYS_PER_READ,
        |key, record| {
            if full {
                return Ok(());
            }
            if key != current {
                if current != 0 {
                    at = Cursor { key: current, n: 0 };
                }
                current = key;
                n = 0;
            }
            let Ok(decoded) = codec::decode_record(record) else {
                return Ok(());
            };
            key_events.clear();
            let place = key.to_string();
            events::of_record(&deps.dispatcher, &place, &mut n, &decoded, &mut key_events);
            for e in key_events.drain(..) {
                let k = event_n(&e);
                if key == from.key && k < from.n {
                    continue;
                }
                if out.len() >= max {
                    full = true;
                    return Ok(());
                }
                at = Cursor { key, n: k + 1 };
                if wanted(&e) {
                    out.push(e);
                }
            }
            Ok(())
        },
    )?;
    if !full && current != 0 {
        at = Cursor { key: current, n: 0 };
    }
    Ok((out, at))
}

/// The number of an event within its key, from its id (`evt_<key>_<n>`).
fn event_n(e: &Event) -> u32 {
    e.id.rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Sends one request of events to `endpoint`; answers whether it answered 2xx.
pub async fn send(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    events: &[Event],
) -> Result<(), String> {
    let (id, body) = match (endpoint.batch_size, events) {
        (1, [one]) => (one.id.clone(), serde_json::to_vec(one)),
        (_, [first, ..]) => (first.id.clone(), serde_json::to_vec(events)),
        (_, []) => return Ok(()),
    };
    let body = body.map_err(|e| e.to_string())?;
    let keys: Vec<Vec<u8>> = endpoint
        .secrets
        .iter()
        .filter_map(|s| signature::key_of(s).ok())
        .collect();
    let timestamp = Utc::now().timestamp();
    let answer = http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature::header(&keys, &id, timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
    match answer.status().as_u16() {
        200..=299 => Ok(()),
        s => Err(format!("http {s}")),
    }
}

/// The cursor just past `e`.
fn after(e: &Event) -> Cursor {
    let mut parts = e.id.trim_start_matches("evt_").split('_');
    let key = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
    Cursor {
        key,
        n: event_n(e) + 1,
    }
}

/// Runs one endpoint's deliveries until `stop` is cancelled or it is disabled.
pub async fn run(deps: Deps, mut endpoint: Endpoint, stop: CancellationToken) {
    let mut attempt = 0u32;
    let types = endpoint.event_types.clone();
    let tenant = endpoint.tenant.clone();
    let wanted = move |e: &Event| {
        e.tenant == tenant && (types.is_empty() || types.iter().any(|t| t == e.kind))
    };
    let wanted: Arc<dyn Fn(&Event) -> bool + Send + Sync> = Arc::new(wanted);
    while !stop.is_cancelled() {
        let store = deps.store.clone();
        let id = endpoint.id.clone();
        let batch = endpoint.batch_size.max(1);
        let (d, w) = (deps.clone(), wanted.clone());
        let read = tokio::task::spawn_blocking(move || {
            let from = store.cursor(&id).map_err(|e| e.to_string())?;
            let max = batch.saturating_mul(REQUESTS_PER_READ);
            let (events, to) = read_events(&d, from, max, &*w).map_err(|e| e.to_string())?;
            if events.len() < max {
                // Caught up with what the database holds: bring the journal's latest in.
                d.durable.flush().map_err(|e| e.to_string())?;
            }
            Ok::<_, String>((events, from, to))
        })
        .await;
        let (events, from, to) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(endpoint = %endpoint.id, error = %e, "webhook events could not be read");
                sleep_or_stop(&stop, IDLE_POLL * 10).await;
                continue;
            }
            Err(_) => return,
        };
        if to == from {
            sleep_or_stop(&stop, IDLE_POLL).await;
            continue;
        }
        let mut failed = None;
        let requests = events.chunks(batch).count();
        for (k, chunk) in events.chunks(batch).enumerate() {
            if let Err(error) = send(&deps.http, &endpoint, chunk).await {
                crate::metrics::webhook_events(chunk.len() as u64, false);
                failed = Some(error);
                break;
            }
            crate::metrics::webhook_events(chunk.len() as u64, true);
            // The last request also covers the events read past it that were not wanted.
            let cursor = match (k + 1 == requests, chunk.last()) {
                (false, Some(last)) => after(last),
                _ => to,
            };
            let was_failing = endpoint.failing_since.take().is_some();
            attempt = 0;
            let (store, e) = (deps.store.clone(), endpoint.clone());
            let saved = tokio::task::spawn_blocking(move || match was_failing {
                true => store.save(&e, Some(cursor)),
                false => store.set_cursor(&e.id, cursor),
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                tracing::warn!(endpoint = %endpoint.id, "a webhook cursor could not be saved; events may be sent again");
            }
        }
        if events.is_empty() {
            let (store, id) = (deps.store.clone(), endpoint.id.clone());
            let _ = tokio::task::spawn_blocking(move || store.set_cursor(&id, to)).await;
        }
        let Some(error) = failed else { continue };
        let now = Utc::now();
        let since = *endpoint.failing_since.get_or_insert(now);
        if now - since > GIVE_UP_AFTER {
            endpoint.disabled = true;
            tracing::warn!(endpoint = %endpoint.id, %error, "webhook endpoint failed for a day; its deliveries stop");
            let (store, e) = (deps.store.clone(), endpoint.clone());
            let _ = tokio::task::spawn_blocking(move || store.save(&e, None)).await;
            return;
        }
        if attempt == 0 {
            let (store, e) = (deps.store.clone(), endpoint.clone());
            let _ = tokio::task::spawn_blocking(move || store.save(&e, None)).await;
        }
        attempt = attempt.saturating_add(1);
        let wait = backoff(attempt);
        tracing::info!(endpoint = %endpoint.id, %error, attempt, wait_ms = wait.as_millis() as u64, "webhook delivery failed; retrying");
        sleep_or_stop(&stop, wait).await;
    }
}

/// Sleeps for `d`, or less when `stop` is cancelled first.
pub(super) async fn sleep_or_stop(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = stop.cancelled() => {}
    }
}
