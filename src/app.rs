//! Wires configuration, state, snapshot, providers and the dispatcher together, and runs
//! the HTTP server until a shutdown signal arrives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;

use crate::access::ApiKeys;
use crate::api;
use crate::callbacks::connection::ConnectionEvents;
use crate::callbacks::Callbacks;
use crate::clock::{Clock, SystemClock};
use crate::cluster::{Cluster, IndexedSends};
use crate::config::StateBackend;
use crate::config::{ConfigSource, LoadedConfig, DEMO_SNAPSHOT_CSV, DEMO_SNAPSHOT_PATH};
use crate::dispatch::journal::Journal;
use crate::dispatch::recovery;
use crate::dispatch::send_log::{JournalLog, LedgerOnlyLog, SendLog, SharedMarksLog};
use crate::dispatch::{
    ChannelLimits, Dispatcher, DispatcherDeps, PartsLimiter, ProviderSlot, Router, SendObserver,
};
use crate::durable::Durable;
use crate::intake::Intake;
use crate::ledger::Ledger;
use crate::links::Tracking;
use crate::provider;
use crate::snapshot::{load_csv, ContactBooks, SnapshotFiles, SnapshotStore};
use crate::store::{
    EmbeddedStore, MemoryStore, RedisEvents, RedisOptions, RedisStore, StateHealth, StateStore,
    PROBE_EVERY,
};
use crate::webhooks::Webhooks;

/// The embedded database file inside the data directory.
pub const DATABASE_FILE: &str = "herald.redb";

/// Everything a request handler needs, shared behind one `Arc`.
pub struct AppState {
    pub config: LoadedConfig,
    pub clock: Arc<dyn Clock>,
    /// Every tenant's contact book (the default tenant's is the installation's snapshot),
    /// each kept in the data directory for the next start.
    pub books: Arc<ContactBooks>,
    pub store: Arc<dyn StateStore>,
    /// Whether the state store answers (probed in the background): `/readyz` and intake.
    pub state_health: Arc<StateHealth>,
    pub dispatcher: Dispatcher,
    pub ledger: Ledger,
    /// Renders `/metrics`; the recorder behind it is process-wide.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Signed receipts and inbound replies, and the provider-id index.
    pub callbacks: Arc<Callbacks>,
    /// Tracked links and opens.
    pub tracking: Arc<Tracking>,
    /// Set when several instances share the work of every job.
    pub cluster: Option<Arc<Cluster>>,
    /// Accepts valid jobs.
    pub intake: Intake,
    /// Event webhooks, when the dispatch journal is kept (their events are read from it).
    pub webhooks: Option<Arc<Webhooks>>,
    /// The API keys requests are checked against.
    pub keys: ApiKeys,
    /// The report pages' sign-in signer and failed sign-in throttle.
    pub ui: crate::ui::Ui,
}

impl AppState {
    /// Whether the default tenant's snapshot (the one the dispatch gate judges) is older
    /// than the configured maximum age.
    pub fn snapshot_stale(&self, now: DateTime<Utc>) -> bool {
        self.snapshot_stale_at(self.books.default_store().as_of(), now)
    }

    /// Whether a book taken at `as_of` is older than the configured maximum age.
    pub fn snapshot_stale_at(&self, as_of: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let max = chrono::Duration::seconds(
            self.config
                .config
                .snapshot
                .max_age_seconds
                .min(i64::MAX as u64) as i64,
        );
        now - as_of > max
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (time, level, message, fields, and the request id, method
    /// and route of the request it belongs to), for log pipelines.
    Json,
}

/// Logs to stderr in `format`; `RUST_LOG` adjusts the level. With `otlp_endpoint`, spans are
/// also exported there ([`crate::traces`]); keep the answer alive while the process serves.
pub fn init_tracing(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Option<crate::traces::TraceExport>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let (otlp, export) = match otlp_endpoint {
        Some(endpoint) => {
            let (layer, export) = crate::traces::otlp_layer(endpoint)
                .with_context(|| format!("exporting spans to {endpoint}"))?;
            (Some(layer), Some(export))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(otlp)
        .try_init();
    Ok(export)
}

/// Builds the application with the system clock.
pub async fn build(config: LoadedConfig) -> anyhow::Result<Arc<AppState>> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// Builds the application with an injected clock (tests pin time with it). Refuses to
/// start when the demo key would be served on a public address.
pub async fn build_with_clock(
    config: LoadedConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<AppState>> {
    let c = &config.config;
    if let Some(problem) = c.public_demo_key() {
        anyhow::bail!(problem);
    }
    let metrics = crate::metrics::install();
    crate::private_files::prepare(std::path::Path::new(&c.server.data_dir))
        .with_context(|| format!("preparing the data dir {}", c.server.data_dir))?;
    let books = Arc::new(
        ContactBooks::new(
            std::path::Path::new(&c.server.data_dir),
            c.snapshot.region(),
        )
        .with_context(|| format!("creating the snapshot directory in {}", c.server.data_dir))?,
    );
    // The snapshot loads while the journal is read and jobs are planned again: both take
    // seconds at millions of rows, and nothing sends before the snapshot is in (an empty
    // one is stale, so workers hold).
    let snapshot_load = {
        let (config, books, now) = (config.clone(), books.clone(), clock.now());
        tokio::task::spawn_blocking(move || {
            let default = books.default_book();
            load_startup_snapshot(&config, &default.store, &default.files, now)?;
            for (tenant, report) in books
                .restore_tenants()
                .context("loading the tenants' contact books kept in the data directory")?
            {
                tracing::info!(tenant = %tenant, contacts = report.contacts, "contact book restored from the data directory");
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let db_path = std::path::Path::new(&c.server.data_dir).join(DATABASE_FILE);
    let db = Arc::new(
        redb::Database::create(&db_path)
            .with_context(|| format!("opening {}", db_path.display()))?,
    );
    let store: Arc<dyn StateStore> = match c.state.backend {
        StateBackend::Memory => Arc::new(MemoryStore::new()),
        StateBackend::Embedded => Arc::new(EmbeddedStore::open(db.clone())?),
        StateBackend::Redis => Arc::new(
            RedisStore::connect(RedisOptions::from_config(&c.state.redis))
                .await
                .context("connecting to the Redis state backend")?,
        ),
    };
    let wal_dir = crate::durable::wal_dir_for(&db_path);
    // The ledger's chain is opened only when the ledger is on; the journal needs the rest.
    let durable = Durable::open(db, &wal_dir, c.ledger.enabled)
        .with_context(|| format!("opening {} and its write-ahead log", db_path.display()))?;
    let ledger = Ledger::on(durable.clone());
    let log_in_use = c.ledger.enabled || c.state.backend != StateBackend::Memory;
    if log_in_use && c.ledger.prepare_log_spares {
        crate::durable::prepare_spares_in_background(&wal_dir);
    }
    // Dispatch is as durable as the state: with embedded (or Redis) state, the jobs this
    // instance accepted survive its restart. With memory state nothing does.
    // With shared work, jobs and outcomes live in Redis, not in one instance's journal.
    let journal = match c.state.backend {
        StateBackend::Redis if c.state.cluster.enabled => None,
        StateBackend::Embedded | StateBackend::Redis => {
            Some(Journal::open(durable.clone()).with_context(|| {
                format!("opening the dispatch journal in {}", db_path.display())
            })?)
        }
        StateBackend::Memory => None,
    };
    // Readiness, intake and dispatch read the backend's health from here, never on a
    // request's path; a background probe keeps it current.
    let state_health = Arc::new(StateHealth::new());
    state_health.spawn_probe(&store, PROBE_EVERY);
    let callbacks = Callbacks::new(c, store.clone(), books.clone(), clock.clone());
    if let Some(journal) = &journal {
        callbacks.journal_consent(journal.clone());
    }
    callbacks.spawn_sweeper();
    let tracking = Arc::new(Tracking::new(&c.tracking));
    // What arrives on a provider's own connection (SMPP receipts and replies) goes through
    // the same pipeline as the HTTP callbacks.
    let events = ConnectionEvents::new(callbacks.clone());
    let providers = c
        .providers
        .iter()
        .map(|p| {
            Ok(ProviderSlot {
                provider: provider::build_with_events(
                    p,
                    clock.clone(),
                    Some(events.clone()),
                    tracking.base_url(),
                )?,
                channel: p.channel,
                currency: p.currency,
                limiter: PartsLimiter::for_state(
                    &c.state,
                    &p.name,
                    p.rate_limit_parts_per_second,
                    p.burst_parts,
                )?,
                idempotent: p.idempotent,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for p in &c.providers {
        crate::metrics::register_provider(p.channel, &p.name, p.currency);
    }
    let names: Vec<(String, crate::domain::Channel)> = c
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.channel))
        .collect();
    let router = Router::new(c, &names);
    let channel_limits = ChannelLimits::for_state(&c.state, &c.channel_limits)?;
    // With shared work, sends are indexed in Redis too, so any instance places any receipt.
    let indexed = c
        .state
        .cluster
        .enabled
        .then(|| Arc::new(IndexedSends::new(callbacks.clone())));
    let observer: Arc<dyn SendObserver> = match &indexed {
        Some(i) => i.clone(),
        None => callbacks.clone(),
    };
    // Where chunks and provider answers are recorded: the journal when this instance keeps
    // its jobs, the shared record's marks when instances share them, else only the ledger.
    let charges_to = c.ledger.enabled.then(|| ledger.clone());
    // A message of a channel routed to several providers may have gone to any of them: an
    // instance taking its shard over cannot know which, so such channels are always marked.
    let shared_marks = Arc::new(SharedMarksLog::new(
        c.providers
            .iter()
            .map(|p| p.idempotent && router.slots_for(p.channel).len() == 1)
            .collect(),
        charges_to.clone(),
    ));
    let send_log: Arc<dyn SendLog> = match (&journal, c.state.cluster.enabled) {
        (Some(journal), _) => Arc::new(JournalLog::new(journal.clone())),
        (None, true) => shared_marks.clone(),
        (None, false) => Arc::new(LedgerOnlyLog::new(charges_to)),
    };
    let dispatcher = Dispatcher::start(DispatcherDeps {
        store: store.clone(),
        books: books.clone(),
        providers,
        router,
        channel_limits,
        tenant_limits: crate::dispatch::TenantLimits::for_state(&c.state, &c.tenants),
        clock: clock.clone(),
        config: c.dispatch.clone(),
        max_snapshot_age: chrono::Duration::seconds(
            c.snapshot.max_age_seconds.min(i64::MAX as u64) as i64,
        ),
        charging: c.ledger.enabled,
        send_log,
        observer: Some(observer),
        journal: journal.clone(),
        state_health: state_health.clone(),
    });
    events.attach(dispatcher.clone());
    if let Some(journal) = &journal {
        let started = std::time::Instant::now();
        // A Redis that came back empty has forgotten the cap reservations: they are put back
        // from the journal before anything is sent (the embedded store keeps its own).
        let caps_store = (c.state.backend == StateBackend::Redis).then_some(&store);
        let summary = recovery::recover(journal, &dispatcher, c, &tracking, caps_store).await?;
        if summary.jobs > 0 || summary.finished_later > 0 {
            tracing::info!(
                jobs = summary.jobs,
                unfinished = summary.unfinished,
                finished_later = summary.finished_later,
                resent = summary.resent,
                in_doubt = summary.in_doubt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "jobs recovered from the journal"
            );
        }
    }
    // With shared work, events for webhooks are kept in Redis streams.
    let fleet_events = match c.state.cluster.enabled {
        true => {
            let events = Arc::new(
                RedisEvents::open(&RedisOptions::from_config(&c.state.redis))
                    .context("opening the fleet's event streams")?,
            );
            callbacks.stream_consent(events.clone());
            Some(events)
        }
        false => None,
    };
    let cluster = match (&indexed, &fleet_events) {
        (Some(indexed), Some(events)) => Some(
            Cluster::join(
                c,
                &c.state.cluster,
                dispatcher.clone(),
                tracking.clone(),
                indexed.queue(),
                &shared_marks,
                events.clone(),
            )
            .await
            .context("joining the cluster")?,
        ),
        _ => None,
    };
    snapshot_load
        .await
        .context("loading the snapshot at start-up")??;
    let intake = Intake::new(
        dispatcher.clone(),
        store.clone(),
        config.config.clone(),
        tracking.clone(),
        cluster.clone(),
    );
    // After recovery, so that events of recovered jobs name their campaigns and contacts.
    let webhooks = match (&journal, &fleet_events) {
        (Some(_), _) => Some(Arc::new(
            Webhooks::start(durable.clone(), dispatcher.clone())
                .context("starting the webhook deliveries")?,
        )),
        (None, Some(events)) => Some(
            Webhooks::start_fleet(
                events.clone(),
                dispatcher.clone(),
                c.state.cluster.instance_id(),
            )
            .await
            .context("starting the webhook deliveries")?,
        ),
        (None, None) => None,
    };
    let keys = ApiKeys::new(&config.config.auth.api_keys, store.clone());
    let ui = crate::ui::Ui::new(&config.config.ui);
    let state = Arc::new(AppState {
        config,
        clock,
        books,
        store,
        state_health,
        dispatcher,
        ledger,
        metrics,
        callbacks,
        tracking,
        cluster,
        intake,
        webhooks,
        keys,
        ui,
    });
    crate::metrics::spawn_upkeep(state.metrics.clone(), Arc::downgrade(&state));
    Ok(state)
}

/// Loads `snapshot.load_path` if configured. When it names the demo snapshot and no such
/// file is beside the config (the embedded default, or a copy of the shipped config placed
/// elsewhere), the demo snapshot compiled into the binary is used.
fn load_startup_snapshot(
    config: &LoadedConfig,
    snapshots: &SnapshotStore,
    files: &SnapshotFiles,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    // The snapshot in use before the stop wins over the configured file.
    if let Some(report) = files
        .restore(snapshots, config.config.snapshot.region())
        .context("loading the snapshot kept in the data directory")?
    {
        tracing::info!(
            contacts = report.contacts,
            as_of = %snapshots.current().as_of(),
            "snapshot restored from the data directory"
        );
        return Ok(());
    }
    let Some(path) = config.config.snapshot.load_path.as_deref() else {
        return Ok(());
    };
    let resolved = config.resolve(path);
    let region = config.config.snapshot.region();
    let embedded = matches!(config.source, ConfigSource::Embedded);
    let (snapshot, report) = match std::fs::File::open(&resolved) {
        Ok(f) => load_csv(std::io::BufReader::with_capacity(1 << 20, f), now, region),
        Err(e)
            if path == DEMO_SNAPSHOT_PATH
                && (embedded || e.kind() == std::io::ErrorKind::NotFound) =>
        {
            tracing::info!(path = %resolved.display(), error = %e, "demo snapshot not on disk; using the built-in copy");
            load_csv(DEMO_SNAPSHOT_CSV.as_bytes(), now, region)
        }
        Err(e) => {
            let base = match &config.source {
                ConfigSource::File(f) => format!("the directory of the config file {}", f.display()),
                ConfigSource::Embedded => "./config (the built-in config)".to_string(),
            };
            return Err(e).with_context(|| {
                format!(
                    "cannot open the snapshot {} named by snapshot.load_path = {path:?}: \
                     relative paths resolve against {base}. Give an absolute path or put the \
                     file there, or remove snapshot.load_path to start with an empty snapshot",
                    resolved.display()
                )
            });
        }
    }
    .with_context(|| format!("loading snapshot {}", resolved.display()))?;
    snapshots.replace(snapshot)?;
    tracing::info!(
        contacts = report.contacts,
        rejected_rows = report.rejected_rows,
        "snapshot loaded at start-up"
    );
    Ok(())
}

/// A running server: its address and a handle to stop it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    /// Where `/metrics` is served when `server.metrics_listen` moves it off `addr`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub state: Arc<AppState>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Graceful stop: intake stops at once (in-flight requests finish), then workers stop
    /// taking chunks and in-flight sends, retries and ledger writes get
    /// `server.shutdown_timeout_seconds` to finish; the database is closed last.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let timeout = Duration::from_secs(self.state.config.config.server.shutdown_timeout_seconds);
        if self.state.dispatcher.drain(timeout).await {
            tracing::info!("dispatch drained");
        } else {
            tracing::warn!(
                ?timeout,
                "dispatch did not drain in time; unfinished chunks were not sent"
            );
        }
        // Providers that hold connections close them (SMPP unbinds) after the last send.
        for slot in self.state.dispatcher.providers() {
            slot.provider.shutdown().await;
        }
        if let Some(cluster) = &self.state.cluster {
            cluster.leave().await;
        }
        if let Some(webhooks) = &self.state.webhooks {
            webhooks.stop();
        }
        self.state.ledger.close();
        // The database file is closed once the last task that holds it (a settling chunk, a
        // status write) has finished; a start on the same data directory waits for that.
        let database = Arc::downgrade(self.state.ledger.database());
        drop(self.state);
        let deadline = tokio::time::Instant::now() + DATABASE_CLOSE_WAIT;
        while database.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if database.strong_count() > 0 {
            tracing::warn!("the database is still held by a task after the stop");
        }
    }
}

/// How long a stop waits for the last holder of the database to let it go.
const DATABASE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Binds `state`'s configured address (port 0 picks a free one), and `server.metrics_listen`
/// when set, and serves in the background.
pub async fn spawn(state: Arc<AppState>) -> anyhow::Result<Running> {
    let server = &state.config.config.server;
    let limits = api::server::Limits::from_config(server);
    let listener = bind(server.listen).await?;
    let addr = listener.local_addr()?;
    let metrics = match server.metrics_listen {
        Some(at) => Some(bind(at).await?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(TcpListener::local_addr).transpose()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let router = api::router(state.clone());
    let metrics = metrics.map(|l| (l, api::metrics_router(state.clone())));
    let task = tokio::spawn(async move {
        let public = api::server::serve(listener, router, limits, stopped(rx.clone()));
        match metrics {
            Some((listener, router)) => {
                let scrape = api::server::serve(listener, router, limits, stopped(rx));
                let (public, scrape) = tokio::join!(public, scrape);
                public.and(scrape)
            }
            None => public.await,
        }
    });
    Ok(Running {
        addr,
        metrics_addr,
        state,
        shutdown: tx,
        task,
    })
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Resolves once [`Running::stop`] asks the servers to stop (or the handle is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn serve(config: LoadedConfig) -> anyhow::Result<()> {
    let state = build(config).await?;
    let running = spawn(state).await?;
    tracing::info!(addr = %running.addr, "herald listening");
    if let Some(addr) = running.metrics_addr {
        tracing::info!(%addr, "metrics listening");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    tracing::info!("herald stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
