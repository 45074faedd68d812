//! Event webhooks: endpoints registered over the API receive what happened to messages and
//! jobs, signed the Standard Webhooks way ([`signature`]), at least once and in order.
//!
//! - [`events`]: events are read from the dispatch journal's durable records, so nothing is
//!   announced that a crash undid and nothing is lost to one.
//! - [`store`]: endpoints and each one's cursor in the journal, in the embedded database.
//! - [`delivery`]: one task per endpoint: read after its cursor, send, move the cursor on 2xx,
//!   back off on failure.
//!
//! Webhooks need the dispatch journal (`state.backend` embedded, or Redis without shared
//! work).

pub mod delivery;
pub mod events;
pub mod signature;
pub mod store;

use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use self::delivery::Deps;
use self::events::Event;
use self::store::{Cursor, Endpoint, EndpointStore, StoreError};
use crate::access::TenantId;
use crate::dispatch::Dispatcher;
use crate::durable::Durable;
use crate::ledger::Chainer;

/// Most events a replay sends.
pub const MAX_REPLAY_EVENTS: usize = 1_000_000;
/// Largest `batch_size` an endpoint may ask for.
pub const MAX_BATCH: usize = 1_000;

/// The registered endpoints and their delivery tasks.
pub struct Webhooks {
    deps: Deps,
    running: DashMap<String, (Endpoint, CancellationToken)>,
}

/// A registration request, validated.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: reqwest::Url,
    pub event_types: Vec<String>,
    pub secret: Option<String>,
    pub batch_size: usize,
    pub tenant: TenantId,
}

impl Webhooks {
    /// Opens the endpoint tables and starts a delivery task for every endpoint not disabled.
    pub fn start(
        durable: Durable<Chainer>,
        dispatcher: Dispatcher,
    ) -> Result<Webhooks, StoreError> {
        let store = EndpointStore::open(durable.database().clone())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let w = Webhooks {
            deps: Deps {
                durable,
                store,
                dispatcher,
                http,
            },
            running: DashMap::new(),
        };
        for e in w.deps.store.load()? {
            w.spawn(e);
        }
        Ok(w)
    }

    fn spawn(&self, e: Endpoint) {
        let stop = CancellationToken::new();
        if !e.disabled {
            tokio::spawn(delivery::run(self.deps.clone(), e.clone(), stop.clone()));
        }
        self.running.insert(e.id.clone(), (e, stop));
    }

    /// Registers an endpoint: it receives events from now on. Answers it with its secret.
    pub async fn register(&self, new: NewEndpoint) -> Result<Endpoint, StoreError> {
        let e = Endpoint {
            id: format!("whk_{}", uuid::Uuid::now_v7().simple()),
            url: new.url.to_string(),
            event_types: new.event_types,
            secrets: vec![new.secret.unwrap_or_else(signature::new_secret)],
            batch_size: new.batch_size,
            created_at: Utc::now(),
            failing_since: None,
            disabled: false,
            tenant: new.tenant,
        };
        let (store, saved) = (self.deps.store.clone(), e.clone());
        let durable = self.deps.durable.clone();
        tokio::task::spawn_blocking(move || {
            // Starts after everything already in the journal.
            durable.flush().map_err(|e| StoreError::Db(e.to_string()))?;
            let key = store.last_round()?;
            store.save(&saved, Some(Cursor { key, n: 0 }))
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))??;
        self.spawn(e.clone());
        Ok(e)
    }

    /// Every endpoint, as registered.
    pub fn list(&self) -> Vec<Endpoint> {
        let mut all: Vec<Endpoint> = self.running.iter().map(|r| r.value().0.clone()).collect();
        all.sort_by_key(|e| e.created_at);
        all
    }

    /// Whether endpoint `id` exists and belongs to `tenant`.
    pub fn owned_by(&self, id: &str, tenant: &TenantId) -> bool {
        self.running
            .get(id)
            .is_some_and(|r| r.value().0.tenant == *tenant)
    }

    /// Stops and forgets an endpoint; answers whether it existed.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let Some((_, (_, stop))) = self.running.remove(id) else {
            return Ok(false);
        };
        stop.cancel();
        let (store, id) = (self.deps.store.clone(), id.to_string());
        tokio::task::spawn_blocking(move || store.delete(&id))
            .await
            .map_err(|e| StoreError::Db(e.to_string()))??;
        Ok(true)
    }

    /// Puts a new secret first; the previous ones keep signing until `keep_previous` is
    /// false, so receivers can switch without missing a delivery. Answers the new secret.
    pub async fn rotate(
        &self,
        id: &str,
        secret: Option<String>,
        keep_previous: bool,
    ) -> Result<Option<String>, StoreError> {
        let Some((mut e, stop)) = self.running.get(id).map(|r| r.value().clone()) else {
            return Ok(None);
        };
        let secret = secret.unwrap_or_else(signature::new_secret);
        if keep_previous {
            e.secrets.insert(0, secret.clone());
            e.secrets.truncate(2);
        } else {
            e.secrets = vec![secret.clone()];
        }
        let (store, saved) = (self.deps.store.clone(), e.clone());
        tokio::task::spawn_blocking(move || store.save(&saved, None))
            .await
            .map_err(|e| StoreError::Db(e.to_string()))??;
        // The delivery task restarts with the new secrets, from its saved cursor.
        stop.cancel();
        self.spawn(e);
        Ok(Some(secret))
    }

    /// Sends the endpoint's events of `[from, to]` again, from the start of the journal,
    /// without moving its cursor; answers how many there are (None: no such endpoint).
    pub async fn replay(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<usize>, StoreError> {
        let Some(e) = self.running.get(id).map(|r| r.value().0.clone()) else {
            return Ok(None);
        };
        let deps = self.deps.clone();
        let types = e.event_types.clone();
        let tenant = e.tenant.clone();
        let events = tokio::task::spawn_blocking(move || {
            deps.durable
                .flush()
                .map_err(|e| StoreError::Db(e.to_string()))?;
            let wanted = |ev: &Event| {
                ev.timestamp >= from
                    && ev.timestamp <= to
                    && ev.tenant == tenant
                    && (types.is_empty() || types.iter().any(|t| t == ev.kind))
            };
            let mut all = Vec::new();
            let mut at = Cursor::default();
            loop {
                let (mut got, next) = delivery::read_events(&deps, at, MAX_BATCH, &wanted)
                    .map_err(|e| StoreError::Db(e.to_string()))?;
                all.append(&mut got);
                if next == at || all.len() >= MAX_REPLAY_EVENTS {
                    break;
                }
                at = next;
            }
            all.truncate(MAX_REPLAY_EVENTS);
            Ok::<_, StoreError>(all)
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))??;
        let count = events.len();
        let http = self.deps.http.clone();
        tokio::spawn(async move {
            for chunk in events.chunks(e.batch_size.max(1)) {
                let mut tries = 0;
                while let Err(error) = delivery::send(&http, &e, chunk).await {
                    tries += 1;
                    if tries >= 5 {
                        tracing::warn!(endpoint = %e.id, %error, "a replay stopped: the endpoint kept failing");
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1 << tries)).await;
                }
            }
        });
        Ok(Some(count))
    }

    /// Stops every delivery task.
    pub fn stop(&self) {
        for r in self.running.iter() {
            r.value().1.cancel();
        }
    }
}
