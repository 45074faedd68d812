//! `herald-loadtest email`: one email job of N recipients through herald's SMTP provider to
//! the SMTP sink over `connections` pooled connections, durable defaults (embedded state,
//! dispatch journal, cost ledger). Prints emails per second (job submitted → completed, and
//! first to last at the sink), lost and duplicated messages (both must be 0).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use herald::config::{Config, PriceConfig, ProviderKind, SmtpConfig, SmtpTls, DEFAULT_TOML};
use herald::domain::Channel;
use serde_json::json;

use crate::report::thousands;

/// What to run.
#[derive(Debug, clap::Args)]
pub struct EmailSettings {
    /// Recipients in the job (and contacts in the snapshot).
    #[arg(long, default_value_t = 20_000)]
    pub recipients: usize,
    /// Pooled SMTP connections herald keeps to the sink.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// Send workers.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Give up after this long.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
}

fn config(s: &EmailSettings, sink: std::net::SocketAddr, data_dir: &str) -> anyhow::Result<Config> {
    let mut c: Config = toml::from_str(DEFAULT_TOML)?;
    c.server.listen = "127.0.0.1:0".parse()?;
    c.server.data_dir = data_dir.to_string();
    c.auth.api_keys = vec![crate::KEY.into()];
    c.snapshot.load_path = None;
    c.dispatch.workers = s.workers;
    c.policy.quiet_hours.enabled = false;
    c.policy.frequency_caps.clear();
    let mut p = c
        .providers
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("default config has no provider"))?;
    p.name = "smtp-sink".into();
    p.kind = ProviderKind::Smtp;
    p.channel = Channel::Email;
    p.rate_limit_parts_per_second = 0;
    p.smtp = Some(SmtpConfig {
        host: sink.ip().to_string(),
        port: Some(sink.port()),
        tls: SmtpTls::None,
        username: None,
        password_env: None,
        password: None,
        connections: s.connections,
        from_address: "news@example.com".into(),
        from_name: Some("Loadtest".into()),
        unsubscribe_mailto: None,
        timeout_ms: 10_000,
    });
    c.prices.push(PriceConfig {
        provider: p.name.clone(),
        channel: Channel::Email,
        country: "*".into(),
        unit_micros: 1_000,
    });
    c.providers.push(p);
    c.validate()
        .map_err(|e| anyhow!("config: {}", e.join("; ")))?;
    Ok(c)
}

fn snapshot(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut s = Vec::with_capacity(n * 48);
    s.extend_from_slice(b"contact_id,email,email_consent,first_name\n");
    for i in 0..n {
        let _ = writeln!(s, "c{i},user{i}@example.com,opt_in,N{}", i % 1000);
    }
    s
}

/// Runs it.
pub async fn run(s: EmailSettings) -> anyhow::Result<()> {
    let (sink, tally) = crate::smtp_sink::start()?;
    let dir = std::env::temp_dir().join(format!("herald-loadtest-email-{}", std::process::id()));
    let running = crate::start_gateway(config(&s, sink, &dir.display().to_string())?).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let result = drive(&s, &http, &base, &tally).await;
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn drive(
    s: &EmailSettings,
    http: &reqwest::Client,
    base: &str,
    tally: &crate::smtp_sink::Tally,
) -> anyhow::Result<()> {
    let n = s.recipients;
    let r = http
        .put(format!("{base}/v1/snapshot"))
        .bearer_auth(crate::KEY)
        .header("content-type", "text/csv")
        .body(snapshot(n))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("snapshot rejected: {}", r.text().await?);
    }
    let head = json!({"campaign_id": "email-loadtest", "channel": "email", "purpose": "transactional",
        "template": {"subject": "Your order, {{first_name}}",
                     "text": "Hi {{first_name}}, your order ships today: https://shop.example.com/o",
                     "html": "<p>Hi {{first_name}}, your order <a href=\"https://shop.example.com/o\">ships today</a>.</p>"}});
    let t = Instant::now();
    let id = crate::submit_ndjson(
        http,
        base,
        reqwest::Body::wrap_stream(crate::synth::ndjson_job(&head, n)),
    )
    .await?;
    let limit = Duration::from_secs(s.timeout_seconds);
    let job = loop {
        let j = crate::get_job(http, base, &id).await?;
        if j["status"] == "completed" {
            break j;
        }
        if t.elapsed() > limit {
            bail!("job did not complete within {} s: {j}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = t.elapsed().as_secs_f64();
    let sent = job["counts"]["sent"].as_u64().unwrap_or(0);
    let failed = job["counts"]["failed"].as_u64().unwrap_or(0);
    let received = tally.messages.load(Ordering::Relaxed);
    let distinct = tally.distinct() as u64;
    println!(
        "email: {} recipients over {} SMTP connections",
        thousands(n as u64),
        s.connections
    );
    println!(
        "herald emails/s (job submitted → completed) {:>8}   ({} sent in {:.2} s, failed {})",
        thousands((sent as f64 / elapsed.max(1e-9)) as u64),
        thousands(sent),
        elapsed,
        thousands(failed)
    );
    println!(
        "at the sink (first to last)                 {:>8}   ({} messages, {} connections)",
        thousands((received as f64 / tally.span_seconds().max(1e-9)) as u64),
        thousands(received),
        tally.connections.load(Ordering::Relaxed)
    );
    println!(
        "lost {}  duplicated {}",
        sent.saturating_sub(distinct),
        received.saturating_sub(distinct)
    );
    if sent != n as u64 || distinct != sent || received != distinct {
        bail!("the run failed its checks: every recipient exactly once at the sink");
    }
    Ok(())
}
