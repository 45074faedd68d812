//! `herald-loadtest`: measures herald end to end on this machine.
//!
//! - `run <scenario.toml>`: rehearses a promotion (see [`run`]): a synthetic multi-country
//!   audience, the mock provider as a child process, herald in process speaking HTTP to it,
//!   progress bars, and a summary with throughput, latency, duplicates and losses.
//! - `mock-provider`: the mock provider itself (see [`mock`]), on 127.0.0.1 only.
//! - `sandbox`: starts a real gateway on loopback with the in-process sandbox provider (rate
//!   limits off), loads a synthetic snapshot over HTTP, streams an NDJSON job of N recipients,
//!   and prints snapshot load rate, intake rate, decisions per second and sends per second.
//! - `email`, `push`, `wechat`: one job of the channel through herald's providers to an
//!   in-process sink of that channel ([`smtp_sink`], [`push_sink`], [`wechat_sink`]), printing
//!   messages per second, CPU seconds, and what the sink lost or took twice (see
//!   [`channel_run`]).
//! - `receipts`: sends a job the same way, then POSTs signed delivery-receipt batches back
//!   over loopback HTTP with several connections and prints receipts per second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use herald::clock::SystemClock;
use herald::config::{Config, ConfigSource, LoadedConfig, DEFAULT_TOML};
use serde_json::{json, Value};

/// The allocator the gateway ships with (see the `herald` binary), so figures here are its own.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod channel_run;
mod child;
mod cluster;
mod countries;
mod cpu;
mod email_run;
mod mock;
mod population;
mod push_run;
mod push_sink;
mod receipts;
mod report;
mod run;
mod scenario;
mod sendsms;
mod sink_tally;
mod smpp_run;
mod smpp_scenario;
mod smsc;
mod smtp_sink;
mod synth;
mod way_back;
mod wechat_run;
mod wechat_sink;

#[derive(Parser)]
#[command(
    name = "herald-loadtest",
    about = "Rehearse a herald promotion on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rehearse a scenario end to end: synthetic audience, mock provider, herald over HTTP;
    /// or, for a scenario with an `[smsc]` table, herald over SMPP to the SMSC sink.
    Run {
        /// A scenario file, e.g. loadtest/scenarios/promotion-1m.toml.
        scenario: PathBuf,
        /// Overrides the scenario's number of contacts.
        #[arg(long)]
        recipients: Option<usize>,
        /// Also write the figures and checks as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Speak HTTPS to the mock provider (rustls, HTTP/2 by ALPN), with its own CA.
        #[arg(long)]
        https: bool,
        /// SMPP scenarios: bind herald to this SMSC (a gateway under test, on loopback)
        /// instead of starting the sink; needs --sink-stats.
        #[arg(long, requires = "sink_stats")]
        smsc: Option<std::net::SocketAddr>,
        /// SMPP scenarios: the stats address of the sink that gateway forwards to.
        #[arg(long, requires = "smsc")]
        sink_stats: Option<std::net::SocketAddr>,
    },
    /// The mock provider (normally started by `run`); prints its address, then serves.
    MockProvider(mock::MockSettings),
    /// The SMSC sink alone: an SMPP server on loopback that counts what it is sent (see
    /// `smsc`); prints its SMPP and stats addresses as JSON, then serves until interrupted.
    SmscSink(smsc::SinkSettings),
    /// One email job of N recipients through the SMTP provider to an in-process SMTP sink.
    Email(email_run::EmailSettings),
    /// One push job of N devices (FCM and APNs tokens in turn) through the FCM and APNs
    /// providers to an in-process push sink (HTTPS, HTTP/2, test CA).
    Push(channel_run::HttpsSinkSettings),
    /// One WeChat template-message job of N followers through the WeChat provider to an
    /// in-process WeChat API sink (HTTPS, test CA).
    Wechat(channel_run::HttpsSinkSettings),
    /// Offers N messages to a Kannel-style `sendsms` HTTP interface (for side-by-side runs).
    Sendsms(sendsms::SendSmsSettings),
    /// One job of N recipients through the in-process sandbox provider, rate limits off.
    Sandbox {
        /// Recipients in the job (and contacts in the snapshot).
        #[arg(long, default_value_t = 1_000_000)]
        recipients: usize,
        /// Send workers.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Sandbox latency per provider call, in milliseconds.
        #[arg(long, default_value_t = 2)]
        latency_ms: u64,
        /// Nothing durable: in-memory state, no dispatch journal, no cost ledger. Measures the
        /// in-memory path the durable one is compared with.
        #[arg(long, alias = "no-ledger")]
        in_memory: bool,
        /// Keep only one durable part, to see what each costs: `journal` (embedded state and
        /// dispatch journal, no ledger) or `ledger` (cost ledger, in-memory state, no journal).
        #[arg(long, value_enum, conflicts_with = "in_memory")]
        only: Option<DurablePart>,
    },
    /// One job shared by N gateways with work sharing on one Redis (sandbox provider).
    Cluster {
        /// Gateways sharing the job.
        #[arg(long, default_value_t = 3)]
        instances: usize,
        /// Recipients in the job (and contacts in the snapshot).
        #[arg(long, default_value_t = 300_000)]
        recipients: usize,
        /// Send workers per gateway.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// The Redis the gateways share (a key prefix of their own; deleted after).
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis: String,
    },
    /// Signed delivery receipts over HTTP: sends a job, then posts its receipts back.
    Receipts {
        /// Messages sent, and receipts posted back.
        #[arg(long, default_value_t = 500_000)]
        recipients: usize,
        /// Receipts per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Concurrent HTTP connections posting receipts.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Send workers for the job that produces the messages.
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
}

pub(crate) const KEY: &str = "loadtest-key";

/// One durable part of the dispatch path, measured alone.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DurablePart {
    Journal,
    Ledger,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::MockProvider(settings) = cli.command {
        return mock::run(settings);
    }
    if let Command::SmscSink(settings) = cli.command {
        return smsc::serve(settings);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run {
            scenario,
            recipients,
            summary_json,
            smsc,
            sink_stats,
            ..
        } if smpp_scenario::is_smpp(&scenario) => {
            let upstream = smsc
                .zip(sink_stats)
                .map(|(smsc, sink_stats)| smpp_run::Upstream { smsc, sink_stats });
            if upstream
                .is_some_and(|u| !(u.smsc.ip().is_loopback() && u.sink_stats.ip().is_loopback()))
            {
                anyhow::bail!("--smsc and --sink-stats must be loopback addresses");
            }
            rt.block_on(smpp_run::run(
                &scenario,
                recipients,
                summary_json.as_deref(),
                upstream,
            ))
        }
        Command::Run {
            scenario,
            recipients,
            summary_json,
            https,
            ..
        } => rt.block_on(run::run(
            &scenario,
            recipients,
            summary_json.as_deref(),
            https,
        )),
        Command::MockProvider(_) | Command::SmscSink(_) => Ok(()),
        Command::Sendsms(settings) => rt.block_on(sendsms::run(settings)),
        Command::Email(settings) => rt.block_on(email_run::run(settings)),
        Command::Push(settings) => rt.block_on(push_run::run(settings)),
        Command::Wechat(settings) => rt.block_on(wechat_run::run(settings)),
        Command::Sandbox {
            recipients,
            workers,
            latency_ms,
            in_memory,
            only,
        } => rt.block_on(sandbox(recipients, workers, latency_ms, !in_memory, only)),
        Command::Cluster {
            instances,
            recipients,
            workers,
            redis,
        } => rt.block_on(cluster::run(cluster::Settings {
            instances,
            recipients,
            workers,
            redis_url: redis,
        })),
        Command::Receipts {
            recipients,
            batch,
            connections,
            workers,
        } => rt.block_on(receipts::run(receipts::Settings {
            recipients,
            batch,
            connections,
            workers,
        })),
    }
}

/// Builds a gateway from `config` on the system clock and serves it on loopback in this
/// process: the one way every subcommand starts herald.
/// `POST /v1/jobs` with an NDJSON body (usually streamed); answers the new job's id.
pub(crate) async fn submit_ndjson(
    http: &reqwest::Client,
    base: &str,
    body: reqwest::Body,
) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(KEY)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("job rejected: {}", r.text().await?);
    }
    let job: Value = r.json().await?;
    Ok(job["id"].as_str().context("job id")?.to_string())
}

/// `GET /v1/jobs/{id}` on the gateway at `base`.
pub(crate) async fn get_job(http: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{base}/v1/jobs/{id}"))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?)
}

/// Polls the job until it is completed (at most 10 minutes); answers its last view.
pub(crate) async fn wait_completed(
    http: &reqwest::Client,
    base: &str,
    id: &str,
) -> anyhow::Result<Value> {
    let t = Instant::now();
    loop {
        let j = get_job(http, base, id).await?;
        if j["status"] == "completed" {
            return Ok(j);
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("job did not complete in 10 minutes: {j}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn start_gateway(config: Config) -> anyhow::Result<herald::app::Running> {
    let loaded = LoadedConfig {
        config,
        source: ConfigSource::Embedded,
    };
    let state = herald::app::build_with_clock(loaded, Arc::new(SystemClock)).await?;
    herald::app::spawn(state).await
}

fn bench_config(
    workers: usize,
    latency_ms: u64,
    ledger: bool,
    data_dir: &str,
) -> anyhow::Result<Config> {
    let mut c: Config = toml::from_str(DEFAULT_TOML)?;
    c.server.listen = "127.0.0.1:0".parse()?;
    c.server.data_dir = data_dir.to_string();
    c.auth.api_keys = vec![KEY.into()];
    c.snapshot.load_path = None;
    c.dispatch.workers = workers;
    c.ledger.enabled = ledger;
    if !ledger {
        c.state.backend = herald::config::StateBackend::Memory;
    }
    // Throughput, not policy, is measured: no quiet hours or caps holding recipients back.
    c.policy.quiet_hours.enabled = false;
    c.policy.frequency_caps.clear();
    let p = &mut c.providers[0];
    p.rate_limit_parts_per_second = 0;
    p.latency_ms = latency_ms;
    Ok(c)
}

async fn sandbox(
    n: usize,
    workers: usize,
    latency_ms: u64,
    ledger: bool,
    only: Option<DurablePart>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("herald-loadtest-{}", std::process::id()));
    let config = |dir: &std::path::Path| -> anyhow::Result<Config> {
        let mut c = bench_config(workers, latency_ms, ledger, &dir.display().to_string())?;
        match only {
            Some(DurablePart::Journal) => c.ledger.enabled = false,
            Some(DurablePart::Ledger) => c.state.backend = herald::config::StateBackend::Memory,
            None => {}
        }
        Ok(c)
    };
    let running = start_gateway(config(&dir)?).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    println!(
        "herald sandbox benchmark: {n} recipients, {workers} workers, sandbox latency {latency_ms} ms/call, {}",
        match (ledger, only) {
            (false, _) => "in memory (nothing durable)",
            (true, None) => "durable (embedded state, journal and ledger)",
            (true, Some(DurablePart::Journal)) => "journal only (embedded state and journal, no ledger)",
            (true, Some(DurablePart::Ledger)) => "ledger only (in-memory state, no journal)",
        }
    );

    let csv = synth::snapshot_csv(n);
    let t = Instant::now();
    let r = http
        .put(format!("{base}/v1/snapshot"))
        .bearer_auth(KEY)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    let report: Value = r.json().await?;
    let load = t.elapsed();
    println!(
        "snapshot: {} contacts in {:.2}s ({:.0} rows/s over HTTP)",
        report["contacts"],
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64()
    );

    let head = json!({"campaign_id": "bench", "channel": "sms", "purpose": "marketing",
        "template": {"body": "Hi {{first_name}}, 20% off in {{city}} tonight only"}});
    let body = synth::ndjson_job(&head, n);
    let t = Instant::now();
    let id = submit_ndjson(&http, &base, reqwest::Body::wrap_stream(body)).await?;
    let intake = t.elapsed();
    println!(
        "intake: {n} recipients streamed in {:.2}s ({:.0} recipients/s)",
        intake.as_secs_f64(),
        n as f64 / intake.as_secs_f64()
    );

    let t = Instant::now();
    let done = wait_completed(&http, &base, &id).await?;
    let run = t.elapsed().as_secs_f64();
    let c = &done["counts"];
    let rejected: u64 = c["rejected"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let decided = c["accepted"].as_u64().unwrap_or(0) + rejected;
    let sent = c["sent"].as_u64().unwrap_or(0);
    println!("dispatch: completed in {run:.2}s");
    println!(
        "  decided  {decided:>9}  ({:.0} recipients/s)",
        decided as f64 / run
    );
    println!("  sent     {sent:>9}  ({:.0} sends/s)", sent as f64 / run);
    println!("  failed   {:>9}  retries {}", c["failed"], c["retries"]);
    println!("  rejected {rejected:>9}  {}", c["rejected"]);
    println!(
        "  segments {:>9}  cost {} micros {}",
        c["segments"], c["cost_micros"], c["currency"]
    );
    running.stop().await;
    if ledger && only.is_none() {
        // What a restart costs with this job in the journal: the kept snapshot is loaded
        // again and the job planned again from its audience and outcomes.
        let t = Instant::now();
        let again = start_gateway(config(&dir)?).await?;
        let ready = t.elapsed();
        let base = format!("http://{}", again.addr);
        // A finished job is restored in the background after start-up (503 until then).
        let j: Value = loop {
            let r = http
                .get(format!("{base}/v1/jobs/{id}"))
                .bearer_auth(KEY)
                .send()
                .await?;
            if r.status().is_success() {
                break r.json().await?;
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("the job was not restored in 2 minutes: {}", r.status());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "restart: ready in {:.2}s with the snapshot loaded; the finished job readable after {:.2}s (status {}, sent {})",
            ready.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            j["status"],
            j["counts"]["sent"]
        );
        again.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
