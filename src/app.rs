//! Wires configuration, state, snapshot, providers and the dispatcher together, and runs
//! the HTTP server until a shutdown signal arrives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;

use crate::api;
use crate::callbacks::Callbacks;
use crate::clock::{Clock, SystemClock};
use crate::cluster::{Cluster, IndexedSends};
use crate::config::StateBackend;
use crate::config::{LoadedConfig, DEMO_SNAPSHOT_CSV};
use crate::dispatch::journal::Journal;
use crate::dispatch::recovery;
use crate::dispatch::{Dispatcher, DispatcherDeps, PartsLimiter, ProviderSlot, SendObserver};
use crate::durable::Durable;
use crate::ledger::Ledger;
use crate::links::Tracking;
use crate::provider;
use crate::snapshot::{load_csv, SnapshotFiles, SnapshotStore};
use crate::store::{
    EmbeddedStore, MemoryStore, RedisOptions, RedisStore, StateHealth, StateStore, PROBE_EVERY,
};

/// The embedded database file inside the data directory.
pub const DATABASE_FILE: &str = "herald.redb";

/// Everything a request handler needs, shared behind one `Arc`.
pub struct AppState {
    pub config: LoadedConfig,
    pub clock: Arc<dyn Clock>,
    pub snapshots: Arc<SnapshotStore>,
    /// The snapshot in use, kept in the data directory for the next start.
    pub snapshot_files: SnapshotFiles,
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
    /// Idempotency keys whose `POST /v1/jobs` is being handled.
    pub keys_in_flight: Arc<crate::api::idempotency::KeysInFlight>,
}

impl AppState {
    /// Whether the snapshot is older than the configured maximum age.
    pub fn snapshot_stale(&self, now: DateTime<Utc>) -> bool {
        let max = chrono::Duration::seconds(
            self.config
                .config
                .snapshot
                .max_age_seconds
                .min(i64::MAX as u64) as i64,
        );
        now - self.snapshots.current().as_of() > max
    }
}

/// Structured logs to stderr; `RUST_LOG` adjusts the level.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Builds the application with the system clock.
pub async fn build(config: LoadedConfig) -> anyhow::Result<Arc<AppState>> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// Builds the application with an injected clock (tests pin time with it).
pub async fn build_with_clock(
    config: LoadedConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<AppState>> {
    let c = &config.config;
    let metrics = crate::metrics::install();
    std::fs::create_dir_all(&c.server.data_dir)
        .with_context(|| format!("creating data dir {}", c.server.data_dir))?;
    let snapshots = Arc::new(SnapshotStore::empty(c.snapshot.region()));
    let snapshot_files = SnapshotFiles::new(std::path::Path::new(&c.server.data_dir))
        .with_context(|| format!("creating the snapshot directory in {}", c.server.data_dir))?;
    // The snapshot loads while the journal is read and jobs are planned again: both take
    // seconds at millions of rows, and nothing sends before the snapshot is in (an empty
    // one is stale, so workers hold).
    let snapshot_load = {
        let (config, snapshots, files, now) = (
            config.clone(),
            snapshots.clone(),
            snapshot_files.clone(),
            clock.now(),
        );
        tokio::task::spawn_blocking(move || load_startup_snapshot(&config, &snapshots, &files, now))
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
    let callbacks = Callbacks::new(c, store.clone(), snapshots.clone(), clock.clone());
    callbacks.spawn_sweeper();
    let tracking = Arc::new(Tracking::new(&c.tracking));
    let providers = c
        .providers
        .iter()
        .map(|p| {
            Ok(ProviderSlot {
                provider: provider::build(p, clock.clone())?,
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
    let dispatcher = Dispatcher::start(DispatcherDeps {
        store: store.clone(),
        snapshots: snapshots.clone(),
        providers,
        clock: clock.clone(),
        config: c.dispatch.clone(),
        max_snapshot_age: chrono::Duration::seconds(
            c.snapshot.max_age_seconds.min(i64::MAX as u64) as i64,
        ),
        ledger: c.ledger.enabled.then(|| ledger.clone()),
        observer: Some(observer),
        journal: journal.clone(),
        state_health: state_health.clone(),
    });
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
    let cluster = match &indexed {
        Some(indexed) => Some(
            Cluster::join(
                c,
                &c.state.cluster,
                dispatcher.clone(),
                tracking.clone(),
                indexed.queue(),
            )
            .await
            .context("joining the cluster")?,
        ),
        None => None,
    };
    snapshot_load
        .await
        .context("loading the snapshot at start-up")??;
    let state = Arc::new(AppState {
        config,
        clock,
        snapshots,
        snapshot_files,
        store,
        state_health,
        dispatcher,
        ledger,
        metrics,
        callbacks,
        tracking,
        cluster,
        keys_in_flight: Default::default(),
    });
    crate::metrics::spawn_upkeep(state.metrics.clone(), Arc::downgrade(&state));
    Ok(state)
}

/// Loads `snapshot.load_path` if configured. The embedded default config falls back to the
/// demo snapshot compiled into the binary when the file is not on disk.
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
    let (snapshot, report) = match std::fs::File::open(&resolved) {
        Ok(f) => load_csv(std::io::BufReader::with_capacity(1 << 20, f), now, region),
        Err(e) if matches!(config.source, crate::config::ConfigSource::Embedded) => {
            tracing::info!(path = %resolved.display(), error = %e, "demo snapshot not on disk; using the built-in copy");
            load_csv(DEMO_SNAPSHOT_CSV.as_bytes(), now, region)
        }
        Err(e) => return Err(e).with_context(|| format!("opening snapshot {}", resolved.display())),
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
    pub state: Arc<AppState>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Graceful stop: intake stops at once (in-flight requests finish), then workers stop
    /// taking chunks and in-flight sends, retries and ledger writes get
    /// `server.shutdown_timeout_seconds` to finish; the database is closed last.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
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
        if let Some(cluster) = &self.state.cluster {
            cluster.leave().await;
        }
        self.state.ledger.close();
    }
}

/// Binds `state`'s configured address (port 0 picks a free one) and serves in the background.
pub async fn spawn(state: Arc<AppState>) -> anyhow::Result<Running> {
    let addr = state.config.config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = api::router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(Running {
        addr,
        state,
        shutdown: tx,
        task,
    })
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn serve(config: LoadedConfig) -> anyhow::Result<()> {
    let state = build(config).await?;
    let running = spawn(state).await?;
    tracing::info!(addr = %running.addr, "herald listening");
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
