//! What the channel commands (`email`, `push`, `wechat`) share: a durable gateway on loopback
//! (embedded state, dispatch journal, cost ledger) with the providers a command points at its
//! sink, a snapshot, one job of N recipients, and the figures checked against what the sink
//! counted: every recipient exactly once, none lost.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use herald::config::{Config, PriceConfig, ProviderConfig, ProviderKind, DEFAULT_TOML};
use herald::domain::Channel;
use serde_json::Value;

use crate::report::thousands;
use crate::sink_tally::Tally;

/// The gateway's configuration: the shipped defaults, loopback only, quiet hours and caps off
/// so every recipient is sent, and `providers` (each priced at 1,000 micros a message).
pub fn config(workers: usize, providers: Vec<ProviderConfig>) -> anyhow::Result<Config> {
    let mut c: Config = toml::from_str(DEFAULT_TOML)?;
    c.server.listen = "127.0.0.1:0".parse()?;
    c.auth.api_keys = vec![crate::KEY.into()];
    c.snapshot.load_path = None;
    c.dispatch.workers = workers;
    c.policy.quiet_hours.enabled = false;
    c.policy.frequency_caps.clear();
    for p in providers {
        c.prices.push(PriceConfig {
            provider: p.name.clone(),
            channel: p.channel,
            country: "*".into(),
            unit_micros: 1_000,
        });
        c.providers.push(p);
    }
    Ok(c)
}

/// The shipped config's first provider, renamed and turned into `kind` for `channel`, with
/// its rate limit off.
pub fn provider(
    name: &str,
    kind: ProviderKind,
    channel: Channel,
) -> anyhow::Result<ProviderConfig> {
    let c: Config = toml::from_str(DEFAULT_TOML)?;
    let mut p = c
        .providers
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("default config has no provider"))?;
    p.name = name.into();
    p.kind = kind;
    p.channel = channel;
    p.rate_limit_parts_per_second = 0;
    Ok(p)
}

/// What the `push` and `wechat` commands take: both send to an HTTPS sink.
#[derive(Debug, clap::Args)]
pub struct HttpsSinkSettings {
    /// Recipients in the job (and contacts in the snapshot).
    #[arg(long, default_value_t = 50_000)]
    pub recipients: usize,
    /// Requests each provider keeps in flight.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Send workers.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// One send in this many (per service) gets a documented transient error (0: none).
    #[arg(long, default_value_t = 100)]
    pub refuse_every: u64,
    /// Give up after this long.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
}

/// A provider of `kind` sending to a sink that trusts `ca`: one message a request, at most
/// `in_flight` requests at once, never taken as idempotent (these kinds refuse it).
pub fn sink_provider(
    name: &str,
    kind: ProviderKind,
    channel: Channel,
    ca: &herald_testkit::https::TestCa,
    in_flight: usize,
) -> anyhow::Result<ProviderConfig> {
    let mut p = provider(name, kind, channel)?;
    p.ca_file = Some(ca.ca_file());
    p.max_in_flight = in_flight;
    p.idempotent = false;
    p.batch_size = 1;
    Ok(p)
}

/// One job to run.
pub struct Job {
    /// The command's name in the output (`email`, `push`, `wechat`).
    pub label: &'static str,
    /// What the figures count (`emails`, `messages`).
    pub unit: &'static str,
    /// A line under the heading, e.g. "over 8 SMTP connections".
    pub over: String,
    pub recipients: usize,
    /// The snapshot CSV.
    pub snapshot: Vec<u8>,
    /// The job's first NDJSON line (campaign, channel, template).
    pub head: Value,
    pub timeout: Duration,
}

/// Starts the gateway with `config`, runs `job`, prints the figures and fails unless the
/// sink saw every recipient exactly once. `connections` reads how many the sink accepted.
pub async fn run(
    mut config: Config,
    job: Job,
    tally: &Tally,
    connections: &(dyn Fn() -> u64 + Sync),
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "herald-loadtest-{}-{}",
        job.label,
        std::process::id()
    ));
    config.server.data_dir = dir.display().to_string();
    config
        .validate()
        .map_err(|e| anyhow!("config: {}", e.join("; ")))?;
    let running = crate::start_gateway(config).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let result = drive(&job, &http, &base, tally, connections).await;
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn drive(
    job: &Job,
    http: &reqwest::Client,
    base: &str,
    tally: &Tally,
    connections: &(dyn Fn() -> u64 + Sync),
) -> anyhow::Result<()> {
    let n = job.recipients;
    let r = http
        .put(format!("{base}/v1/snapshot"))
        .bearer_auth(crate::KEY)
        .header("content-type", "text/csv")
        .body(job.snapshot.clone())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("snapshot rejected: {}", r.text().await?);
    }
    let cpu_before = crate::cpu::seconds(None);
    let t = Instant::now();
    let id = crate::submit_ndjson(
        http,
        base,
        reqwest::Body::wrap_stream(crate::synth::ndjson_job(&job.head, n)),
    )
    .await?;
    let status = loop {
        let j = crate::get_job(http, base, &id).await?;
        if j["status"] == "completed" {
            break j;
        }
        if t.elapsed() > job.timeout {
            bail!(
                "job did not complete within {} s: {j}",
                job.timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = t.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(crate::cpu::seconds(None))
        .map(|(a, b)| b - a);
    let sent = status["counts"]["sent"].as_u64().unwrap_or(0);
    let failed = status["counts"]["failed"].as_u64().unwrap_or(0);
    let seen = tally.seen();
    println!(
        "{}: {} recipients {}",
        job.label,
        thousands(n as u64),
        job.over
    );
    println!(
        "herald {}/s (job submitted → completed) {:>8}   ({} sent in {:.2} s, failed {})",
        job.unit,
        thousands((sent as f64 / elapsed.max(1e-9)) as u64),
        thousands(sent),
        elapsed,
        thousands(failed)
    );
    println!(
        "at the sink (first to last)                 {:>8}   ({} taken, {} answered with a transient error, {} connections, {} tokens issued)",
        thousands((seen.taken as f64 / seen.span_seconds.max(1e-9)) as u64),
        thousands(seen.taken),
        thousands(seen.refused),
        connections(),
        seen.tokens
    );
    if let Some(cpu) = cpu {
        println!(
            "CPU seconds of this process (herald and the sink) {cpu:.2}, {:.0} µs a message",
            cpu * 1e6 / (sent.max(1) as f64)
        );
    }
    let lost = (n as u64).saturating_sub(seen.distinct);
    let duplicated = seen.taken.saturating_sub(seen.distinct);
    println!("lost {lost}  duplicated {duplicated}");
    if sent != n as u64 || lost != 0 || duplicated != 0 || seen.distinct != n as u64 {
        bail!("the run failed its checks: every recipient exactly once at the sink");
    }
    Ok(())
}
