//! Event webhooks: endpoints registered over the API receive what happened to messages and
//! jobs, signed the Standard Webhooks way ([`signature`]), at least once and in order.
//!
//! - [`events`]: events are read from durable records, so nothing is announced that a crash
//!   undid and nothing is lost to one: the dispatch journal's records on a single instance,
//!   the Redis event streams in a fleet ([`fleet`]).
//! - [`store`]: endpoints and each one's cursor in the journal, in the embedded database (in
//!   Redis for a fleet).
//! - [`delivery`]: one task per endpoint: read after its cursor, send, move the cursor on 2xx,
//!   back off on failure. In a fleet every instance runs the task and the holder of the
//!   endpoint's lease delivers.
//!
//! Webhooks need the dispatch journal (`state.backend` embedded, or Redis) or a fleet
//! (`state.cluster`); with memory state there is nothing durable to read events from.

pub mod delivery;
pub mod events;
pub mod fleet;
pub mod signature;
pub mod store;

use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use self::delivery::Deps;
use self::events::Event;
use self::fleet::FleetDeps;
use self::store::{Cursor, Endpoint, EndpointStore, StoreError};
use crate::access::TenantId;
use crate::dispatch::Dispatcher;
use crate::durable::Durable;
use crate::ledger::Chainer;
use crate::store::RedisEvents;

/// How often an instance of a fleet reads the registered endpoints again.
const FLEET_REFRESH: Duration = Duration::from_secs(1);

/// Most events a replay sends.
pub const MAX_REPLAY_EVENTS: usize = 1_000_000;
/// Largest `batch_size` an endpoint may ask for.
pub const MAX_BATCH: usize = 1_000;

/// The registered endpoints and their delivery tasks.
pub struct Webhooks {
    backend: Backend,
    http: reqwest::Client,
    running: DashMap<String, (Endpoint, CancellationToken)>,
}

/// Where events and endpoints are kept.
enum Backend {
    /// This instance's journal and embedded database.
    Journal(Deps),
    /// A fleet's Redis.
    Fleet(Arc<FleetDeps>),
}

fn http_client() -> Result<reqwest::Client, StoreError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| StoreError::Db(e.to_string()))
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
        let http = http_client()?;
        let w = Webhooks {
            backend: Backend::Journal(Deps {
                durable,
                store,
                dispatcher,
                http: http.clone(),
            }),
            http,
            running: DashMap::new(),
        };
        if let Backend::Journal(deps) = &w.backend {
            for e in deps.store.load()? {
                w.spawn(e);
            }
        }
        Ok(w)
    }

    /// Starts a fleet's webhooks: every endpoint registered in Redis gets a delivery task
    /// here (the holder of its lease delivers), and the list is read again every second.
    pub async fn start_fleet(
        events: Arc<RedisEvents>,
        dispatcher: Dispatcher,
        me: String,
    ) -> Result<Arc<Webhooks>, StoreError> {
        let http = http_client()?;
        let w = Arc::new(Webhooks {
            backend: Backend::Fleet(Arc::new(FleetDeps {
                events,
                dispatcher,
                http: http.clone(),
                me,
            })),
            http,
            running: DashMap::new(),
        });
        // Redis away at start only delays the deliveries: the refresh below keeps trying.
        if let Err(e) = w.refresh().await {
            tracing::warn!(error = %e, "webhook endpoints not read yet");
        }
        let weak = Arc::downgrade(&w);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLEET_REFRESH).await;
                let Some(w) = weak.upgrade() else { return };
                if let Err(e) = w.refresh().await {
                    tracing::debug!(error = %e, "webhook endpoints not read again");
                }
            }
        });
        Ok(w)
    }

    /// In a fleet, takes in the endpoints other instances registered, changed or removed.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let Backend::Fleet(deps) = &self.backend else {
            return Ok(());
        };
        let stored = fleet::load(&deps.events).await?;
        let running: std::collections::HashMap<String, Endpoint> = self
            .running
            .iter()
            .map(|r| (r.key().clone(), r.value().0.clone()))
            .collect();
        let (start, stop) = fleet::differences(&running, &stored);
        for id in stop {
            if let Some((_, (_, token))) = self.running.remove(&id) {
                token.cancel();
            }
        }
        for e in start {
            self.spawn(e);
        }
        Ok(())
    }

    fn spawn(&self, e: Endpoint) {
        let stop = CancellationToken::new();
        if !e.disabled {
            match &self.backend {
                Backend::Journal(deps) => {
                    tokio::spawn(delivery::run(deps.clone(), e.clone(), stop.clone()));
                }
                Backend::Fleet(deps) => {
                    tokio::spawn(fleet::run(deps.clone(), e.clone(), stop.clone()));
                }
            }
        }
        if let Some((_, old)) = self.running.insert(e.id.clone(), (e, stop)) {
            old.cancel();
        }
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
        match &self.backend {
            Backend::Journal(deps) => {
                let (store, saved) = (deps.store.clone(), e.clone());
                let durable = deps.durable.clone();
                tokio::task::spawn_blocking(move || {
                    // Starts after everything already in the journal.
                    durable.flush().map_err(|e| StoreError::Db(e.to_string()))?;
                    let key = store.last_round()?;
                    store.save(&saved, Some(Cursor { key, n: 0 }))
                })
                .await
                .map_err(|e| StoreError::Db(e.to_string()))??;
            }
            // Starts at its registration time in every stream.
            Backend::Fleet(deps) => fleet::save(&deps.events, &e).await?,
        }
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
        match &self.backend {
            Backend::Journal(deps) => {
                let (store, id) = (deps.store.clone(), id.to_string());
                tokio::task::spawn_blocking(move || store.delete(&id))
                    .await
                    .map_err(|e| StoreError::Db(e.to_string()))??;
            }
            Backend::Fleet(deps) => {
                deps.events
                    .delete_endpoint(id)
                    .await
                    .map_err(|e| StoreError::Db(e.to_string()))?;
            }
        }
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
        match &self.backend {
            Backend::Journal(deps) => {
                let (store, saved) = (deps.store.clone(), e.clone());
                tokio::task::spawn_blocking(move || store.save(&saved, None))
                    .await
                    .map_err(|e| StoreError::Db(e.to_string()))??;
            }
            Backend::Fleet(deps) => fleet::save(&deps.events, &e).await?,
        }
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
        let events = match &self.backend {
            Backend::Journal(deps) => Self::journal_range(deps.clone(), &e, from, to).await?,
            Backend::Fleet(deps) => {
                fleet::replay_events(deps, &e, from, to, MAX_REPLAY_EVENTS).await?
            }
        };
        let count = events.len();
        let http = self.http.clone();
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

    /// The endpoint's events of `[from, to]` in the journal, from its start.
    async fn journal_range(
        deps: Deps,
        e: &Endpoint,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let types = e.event_types.clone();
        let tenant = e.tenant.clone();
        tokio::task::spawn_blocking(move || {
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
        .map_err(|e| StoreError::Db(e.to_string()))?
    }

    /// Stops every delivery task.
    pub fn stop(&self) {
        for r in self.running.iter() {
            r.value().1.cancel();
        }
    }
}
