//! `herald-loadtest wechat`: one WeChat template-message job of N followers through herald's
//! WeChat provider to the WeChat sink (HTTPS with a test CA), durable defaults. A share of
//! sends is answered 45009 so throttling and the later send are exercised.

use std::io::Write;
use std::time::Duration;

use herald::config::{ProviderKind, Secret, WechatConfig};
use herald::domain::Channel;
use herald_testkit::https::TestCa;
use serde_json::json;

use crate::channel_run::{self, HttpsSinkSettings, Job};
use crate::wechat_sink::{self, APPID, SECRET, TEMPLATE};

fn snapshot(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n * 40);
    s.extend_from_slice(b"contact_id,wechat_openid,wechat_consent,first_name\n");
    for i in 0..n {
        let _ = writeln!(s, "c{i},o-follower-{i},opt_in,N{}", i % 1000);
    }
    s
}

/// Runs it.
pub async fn run(s: HttpsSinkSettings) -> anyhow::Result<()> {
    let ca = TestCa::new();
    let (server, tally) = wechat_sink::start(&ca, s.refuse_every).await;
    let mut p = channel_run::sink_provider(
        "wechat-sink",
        ProviderKind::Wechat,
        Channel::Wechat,
        &ca,
        s.in_flight,
    )?;
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
