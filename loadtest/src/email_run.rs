//! `herald-loadtest email`: one email job of N recipients through herald's SMTP provider to
//! the SMTP sink over `connections` pooled connections, durable defaults (see
//! [`crate::channel_run`]). Prints emails per second (job submitted → completed, and first to
//! last at the sink), lost and duplicated messages (both must be 0).

use std::time::Duration;

use herald::config::{ProviderKind, SmtpConfig, SmtpTls};
use herald::domain::Channel;
use serde_json::json;

use crate::channel_run::{self, Job};

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
    let mut p = channel_run::provider("smtp-sink", ProviderKind::Smtp, Channel::Email)?;
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
    let config = channel_run::config(s.workers, vec![p])?;
    let head = json!({"campaign_id": "email-loadtest", "channel": "email", "purpose": "transactional",
        "template": {"subject": "Your order, {{first_name}}",
                     "text": "Hi {{first_name}}, your order ships today: https://shop.example.com/o",
                     "html": "<p>Hi {{first_name}}, your order <a href=\"https://shop.example.com/o\">ships today</a>.</p>"}});
    let job = Job {
        label: "email",
        unit: "emails",
        over: format!("over {} SMTP connections", s.connections),
        recipients: s.recipients,
        snapshot: snapshot(s.recipients),
        head,
        timeout: Duration::from_secs(s.timeout_seconds),
    };
    let connections = || tally.seen().connections;
    channel_run::run(config, job, &tally, &connections).await
}
