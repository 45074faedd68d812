//! `herald-loadtest wechat`: one WeChat template-message job of N followers through herald's
//! WeChat provider to the WeChat sink (HTTPS with a test CA), durable defaults. A share of
//! sends is answered 45009 so throttling and the later send are exercised.

use std::io::Write;
use std::time::Duration;

use herald::config::{ProviderKind, Secret, WechatConfig};
use herald::domain::Channel;
use herald_testkit::https::TestCa;
use serde_json::json;

use crate::channel_run::{self, Job};
use crate::wechat_sink::{self, APPID, SECRET, TEMPLATE};

/// What to run.
#[derive(Debug, clap::Args)]
pub struct WechatSettings {
    /// Followers in the job (and contacts in the snapshot).
    #[arg(long, default_value_t = 50_000)]
    pub recipients: usize,
    /// Requests herald keeps in flight to the API.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Send workers.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// One send in this many is answered 45009 (0: none).
    #[arg(long, default_value_t = 100)]
    pub refuse_every: u64,
    /// Give up after this long.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
}

fn snapshot(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n * 40);
    s.extend_from_slice(b"contact_id,wechat_openid,wechat_consent,first_name\n");
    for i in 0..n {
        let _ = writeln!(s, "c{i},o-follower-{i},opt_in,N{}", i % 1000);
    }
    s
}

/// Runs it.
pub async fn run(s: WechatSettings) -> anyhow::Result<()> {
    let ca = TestCa::new();
    let (server, tally) = wechat_sink::start(&ca, s.refuse_every).await;
    let mut p = channel_run::provider("wechat-sink", ProviderKind::Wechat, Channel::Wechat)?;
    p.ca_file = Some(ca.ca_file());
    p.max_in_flight = s.in_flight;
    p.idempotent = false;
    p.batch_size = 1;
    p.wechat = Some(WechatConfig {
        base_url: server.url(""),
        appid: Some(Secret::new(APPID)),
        secret: Some(Secret::new(SECRET)),
        callback_token: Some(Secret::new("loadtest-callback")),
        throttle_retry_ms: 100,
        ..WechatConfig::default()
    });
    let config = channel_run::config(s.workers, vec![p])?;
    let head = json!({"campaign_id": "wechat-loadtest", "channel": "wechat", "purpose": "transactional",
        "template": {"body": "Order shipped", "template_id": TEMPLATE,
                     "data": {"first": "Hi {{first_name}}, your order has shipped"},
                     "url": "https://shop.example.com/o"},
        "track_links": false});
    let job = Job {
        label: "wechat",
        unit: "messages",
        over: format!("with {} requests in flight over HTTPS", s.in_flight),
        recipients: s.recipients,
        snapshot: snapshot(s.recipients),
        head,
        timeout: Duration::from_secs(s.timeout_seconds),
    };
    let connections = || server.handshakes();
    channel_run::run(config, job, &tally, &connections).await
}
