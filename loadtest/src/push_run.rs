//! `herald-loadtest push`: one push job of N devices, FCM and APNs tokens in turn, through
//! herald's FCM and APNs providers to the push sink (HTTPS with a test CA, HTTP/2), durable
//! defaults. The sink verifies the RS256 assertion and the ES256 provider token herald signs,
//! and answers a share of sends with the documented transient errors.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use herald::config::{ApnsConfig, FcmConfig, ProviderKind};
use herald::domain::Channel;
use herald_testkit::https::TestCa;
use serde_json::json;

use crate::channel_run::{self, HttpsSinkSettings, Job};
use crate::push_sink::{self, Keys, CLIENT_EMAIL, KEY_ID, PROJECT, TEAM, TOPIC};

fn snapshot(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n * 100);
    s.extend_from_slice(b"contact_id,push_token,push_consent,first_name\n");
    for i in 0..n {
        let token = if i % 2 == 0 {
            format!("fcm:loadtest-fcm-registration-token-{i:010}")
        } else {
            format!("apns:{i:064x}")
        };
        let _ = writeln!(s, "c{i},{token},opt_in,N{}", i % 1000);
    }
    s
}

/// Runs it.
pub async fn run(s: HttpsSinkSettings) -> anyhow::Result<()> {
    let ca = TestCa::new();
    let keys = Keys::new();
    let sink = push_sink::start(&ca, &keys, s.refuse_every).await;
    let dir =
        std::env::temp_dir().join(format!("herald-loadtest-push-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let account = dir.join("service-account.json");
    std::fs::write(
        &account,
        json!({"type": "service_account", "project_id": PROJECT, "private_key_id": "key-1",
            "private_key": keys.fcm_private_pem, "client_email": CLIENT_EMAIL,
            "token_uri": sink.server.url("/token")})
        .to_string(),
    )?;
    let p8 = dir.join("apns-key.p8");
    std::fs::write(&p8, &keys.apns_private_pem)?;

    let mut fcm = channel_run::sink_provider(
        "fcm-sink",
        ProviderKind::Fcm,
        Channel::Push,
        &ca,
        s.in_flight,
    )?;
    fcm.fcm = Some(FcmConfig {
        base_url: sink.server.url(""),
        service_account_file: account.display().to_string(),
        throttle_retry_ms: 200,
        ..FcmConfig::default()
    });
    let mut apns = channel_run::sink_provider(
        "apns-sink",
        ProviderKind::Apns,
        Channel::Push,
        &ca,
        s.in_flight,
    )?;
    apns.apns = Some(ApnsConfig {
        base_url: sink.server.url(""),
        team_id: TEAM.into(),
        key_id: KEY_ID.into(),
        key_file: p8.display().to_string(),
        topic: TOPIC.into(),
        throttle_retry_ms: 200,
        ..ApnsConfig::default()
    });
    let config = channel_run::config(s.workers, vec![fcm, apns])?;
    let head = json!({"campaign_id": "push-loadtest", "channel": "push", "purpose": "transactional",
        "template": {"title": "Flash sale", "body": "Hi {{first_name}}, 50% off until midnight",
                     "data": {"campaign": "c-9"}},
        "track_links": false});
    let job = Job {
        label: "push",
        unit: "messages",
        over: format!(
            "(FCM and APNs in turn) with {} requests in flight to each over HTTPS",
            s.in_flight
        ),
        recipients: s.recipients,
        snapshot: snapshot(s.recipients),
        head,
        timeout: Duration::from_secs(s.timeout_seconds),
    };
    let connections = || sink.server.handshakes();
    let result = channel_run::run(config, job, &sink.tally, &connections).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (by_fcm, by_apns) = sink.split();
    println!("taken by FCM {by_fcm}, by APNs {by_apns}; requests refused as malformed or unauthorised {}", sink.problems());
    result?;
    if sink.problems() != 0 {
        bail!("the sink refused requests for bad credentials or bodies");
    }
    Ok(())
}
