//! Every channel addressed from the snapshot: email, push and WeChat jobs reach the contact's
//! address on their channel through a recording HTTP provider of that channel, contacts
//! without one are rejected with the channel's reason, and consent, suppressions, caps and
//! quiet hours hold per channel.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use herald::config::{FrequencyCapConfig, PriceConfig, ProviderKind};
use herald::domain::{Channel, Purpose};
use herald_testkit::{loopback, Gateway};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};

const APNS: &str = "5ea1c0de5ea1c0de5ea1c0de5ea1c0de5ea1c0de5ea1c0de5ea1c0de5ea1c0de";
const FCM: &str = "dGVzdC1kZXZpY2U:APA91bHk3x0Q2z8r7VwYtT1s9uXcB4nLmP6aQeR2dF5gH8jK";

fn snapshot_csv() -> String {
    let header = "contact_id,phone,email,push_token,wechat_openid,timezone,sms_consent,email_consent,push_consent,wechat_consent,first_name\n";
    let rows = [
        format!("both,+8613123079337,Li.Wei@Example.COM,apns:{APNS},oDefault1;wx2:oSecond,Asia/Shanghai,opt_out,opt_in,opt_in,opt_in,Wei"),
        "bare,+8613126859660,,,,Asia/Shanghai,opt_in,opt_in,opt_in,opt_in,Fang".to_string(),
        "bademail,+8613123412261,li@,,,Asia/Shanghai,opt_in,opt_in,opt_in,opt_in,Na".to_string(),
        format!("blocked,+8613127826024,blocked@example.com,fcm:{FCM},oBlocked,Asia/Shanghai,opt_in,opt_in,opt_in,opt_out,Yan"),
        format!("night,+8613123450506,night@example.org,fcm:{FCM}x,oNight,America/New_York,opt_in,opt_in,opt_in,opt_in,Ann"),
    ];
    let mut s = header.to_string();
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

/// What the recording provider received: (channel, to) of every message.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A provider speaking the generic HTTP protocol that accepts everything and records it.
async fn recording_provider() -> (String, Received) {
    let received: Received = Arc::default();
    let r = received.clone();
    let handler = move |body: Bytes| {
        let r = r.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = v["id"].as_str().unwrap_or_default().to_string();
            r.lock().push((
                v["channel"].as_str().unwrap_or_default().to_string(),
                v["to"].as_str().unwrap_or_default().to_string(),
            ));
            json!({"provider_message_id": format!("p-{id}"), "status": "accepted"}).to_string()
        }
    };
    let app = axum::Router::new().route("/send", axum::routing::post(handler));
    let addr = loopback::serve(app).await;
    (format!("http://{addr}/send"), received)
}

/// A gateway with one recording provider each for email, push and WeChat beside the SMS
/// sandbox, prices for them, and `adjust` applied last.
async fn gateway(adjust: impl FnOnce(&mut herald::config::Config)) -> (Gateway, Received) {
    let (url, received) = recording_provider().await;
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        for channel in [Channel::Email, Channel::Push, Channel::Wechat] {
            let mut p = c.providers[0].clone();
            p.name = format!("rec-{}", channel.as_str());
            p.kind = ProviderKind::Http;
            p.channel = channel;
            p.url = Some(url.clone());
            p.batch_size = 1;
            c.prices.push(PriceConfig {
                provider: p.name.clone(),
                channel,
                country: "*".into(),
                unit_micros: 1_000,
            });
            c.providers.push(p);
        }
        adjust(c);
    })
    .await;
    g.load_csv(&snapshot_csv()).await;
    (g, received)
}

fn job(channel: &str, contacts: &[&str]) -> Value {
    let contacts: Vec<Value> = contacts.iter().map(|c| json!({"contact_id": c})).collect();
    let template = match channel {
        "wechat" => json!({"body": "Hello {{first_name}}", "template_id": "TPL-1",
            "data": {"first": "Hello {{first_name}}"}}),
        "email" => json!({ "subject": "Hello", "body": "Hello {{first_name}}" }),
        _ => json!({ "body": "Hello {{first_name}}" }),
    };
    json!({
        "campaign_id": format!("{channel}-test"),
        "channel": channel,
        "purpose": "marketing",
        "template": template,
        "audience": { "contacts": contacts },
        "track_links": false,
    })
}

async fn run(g: &Gateway, job: &Value) -> (Value, Vec<Value>) {
    let (s, body) = g.submit(job).await;
    assert_eq!(s, 201, "{body}");
    let done = g.wait_completed(&body, Duration::from_secs(10)).await;
    let id = body["id"].as_str().expect("id");
    (done["counts"].clone(), g.recipients(id).await)
}

fn reason_of(lines: &[Value], id: &str) -> String {
    lines
        .iter()
        .find(|l| l["contact_id"] == id)
        .map(|l| {
            l["reason"]
                .as_str()
                .or(l["outcome"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

async fn suppress(g: &Gateway, line: Value) {
    let r = g
        .req(Method::PUT, "/v1/suppressions")
        .body(format!("{line}\n"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test]
async fn an_email_job_reaches_the_checked_address_and_rejects_the_rest_by_reason() {
    let (g, received) = gateway(|_| {}).await;
    suppress(&g, json!({"email": "blocked@EXAMPLE.com"})).await;
    let (counts, lines) = run(
        &g,
        &job("email", &["both", "bare", "bademail", "blocked", "ghost"]),
    )
    .await;
    assert_eq!(counts["sent"], 1, "{counts:#}");
    for (id, reason) in [
        ("both", "sent"),
        ("bare", "missing_email"),
        ("bademail", "invalid_email"),
        ("blocked", "suppressed"),
        ("ghost", "unknown_contact"),
    ] {
        assert_eq!(reason_of(&lines, id), reason, "{id}");
    }
    // The domain was lower-cased at load; the local part is kept as given. The SMS opt-out
    // of `both` does not stop its email.
    assert_eq!(
        *received.lock(),
        vec![("email".to_string(), "Li.Wei@example.com".to_string())]
    );
    let keys: Vec<&str> = counts["rejected"]
        .as_object()
        .expect("rejected")
        .keys()
        .map(String::as_str)
        .collect();
    for reason in [
        "missing_email",
        "invalid_email",
        "suppressed",
        "unknown_contact",
    ] {
        assert!(keys.contains(&reason), "{reason} in {keys:?}");
    }
}

#[tokio::test]
async fn push_and_wechat_jobs_use_their_own_addresses_and_consent() {
    let (g, received) = gateway(|_| {}).await;
    suppress(&g, json!({"push_token": FCM})).await;
    let (counts, lines) = run(&g, &job("push", &["both", "bare", "blocked"])).await;
    assert_eq!(counts["sent"], 1, "{counts:#}");
    assert_eq!(reason_of(&lines, "bare"), "missing_push_token");
    assert_eq!(reason_of(&lines, "blocked"), "suppressed");

    let (counts, lines) = run(&g, &job("wechat", &["both", "bare", "blocked"])).await;
    assert_eq!(counts["sent"], 1, "{counts:#}");
    assert_eq!(reason_of(&lines, "bare"), "missing_openid");
    // Its push token is suppressed, not the contact: WeChat stops at its own opt-out.
    assert_eq!(reason_of(&lines, "blocked"), "opted_out");

    let (_, lines) = run(&g, &job("sms", &["both", "bare"])).await;
    assert_eq!(reason_of(&lines, "both"), "opted_out");
    assert_eq!(reason_of(&lines, "bare"), "sent");

    assert_eq!(
        *received.lock(),
        vec![
            ("push".to_string(), APNS.to_string()),
            ("wechat".to_string(), "oDefault1".to_string()),
        ]
    );
}

#[tokio::test]
async fn caps_and_quiet_hours_hold_per_channel() {
    let (g, _received) = gateway(|c| {
        c.policy.frequency_caps = vec![FrequencyCapConfig {
            channel: Channel::Email,
            purpose: Purpose::Marketing,
            max: 1,
            window_seconds: 86_400,
        }];
        c.policy.quiet_hours.channels = vec![Channel::Sms, Channel::Push];
    })
    .await;
    let (counts, _) = run(&g, &job("email", &["both"])).await;
    assert_eq!(counts["sent"], 1, "{counts:#}");
    let (_, lines) = run(&g, &job("email", &["both"])).await;
    assert_eq!(reason_of(&lines, "both"), "frequency_capped");
    // The email cap leaves push alone.
    let (counts, _) = run(&g, &job("push", &["both"])).await;
    assert_eq!(counts["sent"], 1, "{counts:#}");

    // 23:00 in New York: push keeps to quiet hours, email (not configured for them) goes.
    let (counts, _) = run(&g, &job("email", &["night"])).await;
    assert_eq!(counts["sent"], 1, "{counts:#}");
    let (s, body) = g.submit(&job("push", &["night"])).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    g.wait_until(&id, Duration::from_secs(10), |j| {
        j["counts"]["deferred"] == 1
    })
    .await;
}

#[tokio::test]
async fn a_job_on_a_channel_without_a_provider_is_refused_naming_the_channel() {
    let g = Gateway::start().await;
    let r = g
        .req(Method::POST, "/v1/jobs")
        .json(&job("email", &["both"]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["field"], "channel", "{e}");
}

#[tokio::test]
async fn a_malformed_token_or_openid_rejects_its_row_naming_the_column() {
    let g = Gateway::start_with(|c| c.snapshot.max_rejected_share = 0.9).await;
    let csv = "contact_id,phone,email,push_token,wechat_openid\n\
               ok,+8613123079337,a@example.com,,\n\
               tok,+8613126859660,,apns:nothex,\n\
               oid,+8613123412261,,,wx1:o 1\n\
               mail,+8613127826024,not-an-address,,\n";
    let report = g.load_csv(csv).await;
    assert_eq!(report["rejected_rows"], 2, "{report:#}");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors[0]["line"], 3);
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("push_token:")),
        "{report:#}"
    );
    assert_eq!(errors[1]["line"], 4);
    assert!(
        errors[1]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("wechat_openid:")),
        "{report:#}"
    );
    // An invalid email keeps its contact (it may be reached on other channels).
    assert_eq!(report["contacts"], 2, "{report:#}");
}
