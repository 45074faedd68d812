//! WeChat jobs naming an official account (`wechat_account`): each follower is messaged at its
//! openid for that account, through the provider of that account (with that account's
//! access token); a job naming an account no provider sends for is refused, naming the field.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Query;
use axum::routing::{get, post};
use axum::Json;
use herald::config::{PriceConfig, ProviderConfig, ProviderKind, Secret, WechatConfig};
use herald::domain::Channel;
use herald_testkit::https::TestCa;
use herald_testkit::Gateway;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// (AppID whose token was used, openid) of every accepted template message.
#[derive(Default)]
struct Sent(Mutex<Vec<(String, String)>>);

fn account_provider(
    base: &ProviderConfig,
    url: &str,
    ca_file: &str,
    account: &str,
) -> ProviderConfig {
    let mut p = base.clone();
    p.name = format!("wx-{account}");
    p.kind = ProviderKind::Wechat;
    p.channel = Channel::Wechat;
    p.batch_size = 1;
    p.idempotent = false;
    p.ca_file = Some(ca_file.into());
    p.wechat = Some(WechatConfig {
        base_url: url.into(),
        account: Some(account.into()),
        appid: Some(Secret::new(format!("app-{account}"))),
        secret: Some(Secret::new("secret")),
        callback_token: Some(Secret::new("callback-token")),
        ..WechatConfig::default()
    });
    p
}

fn job(account: Option<&str>, channel: &str) -> Value {
    let mut job = json!({"campaign_id": "accounts", "channel": channel, "purpose": "marketing",
        "template": {"body": "Order shipped", "template_id": "TPL-1", "data": {"first": "Hi"}},
        "track_links": false,
        "audience": {"contacts": [{"contact_id": "both"}, {"contact_id": "shop-only"}]}});
    if let Some(a) = account {
        job["wechat_account"] = json!(a);
    }
    if channel != "wechat" {
        job["template"] = json!({"body": "Order shipped"});
    }
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_one_official_account_reaches_its_followers_through_its_provider() {
    let ca = TestCa::new();
    let sent = Arc::new(Sent::default());
    let s = sent.clone();
    let router = axum::Router::new()
        .route(
            "/cgi-bin/token",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let appid = q.get("appid").cloned().unwrap_or_default();
                Json(json!({"access_token": format!("token-of-{appid}"), "expires_in": 7200}))
            }),
        )
        .route(
            "/cgi-bin/message/template/send",
            post(move |Query(q): Query<HashMap<String, String>>, body: Bytes| {
                let s = s.clone();
                async move {
                    let token = q.get("access_token").cloned().unwrap_or_default();
                    let appid = token.strip_prefix("token-of-").unwrap_or("").to_string();
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let openid = v["touser"].as_str().unwrap_or("").to_string();
                    let mut sent = s.0.lock();
                    sent.push((appid, openid));
                    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": 1000 + sent.len() as u64}))
                }
            }),
        );
    let server = ca.serve(router).await;
    let (url, ca_file) = (server.url(""), ca.ca_file());
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        for account in ["shop", "news"] {
            let p = account_provider(&c.providers[0], &url, &ca_file, account);
            c.prices.push(PriceConfig {
                provider: p.name.clone(),
                channel: Channel::Wechat,
                country: "*".into(),
                unit_micros: 2_000,
            });
            c.providers.push(p);
        }
    })
    .await;
    g.load_csv(
        "contact_id,phone,wechat_openid,timezone,wechat_consent,first_name\n\
         both,+8613123079337,shop:oShopBoth;news:oNewsBoth,Asia/Shanghai,opt_in,Ann\n\
         shop-only,+8613126859660,shop:oShopOnly,Asia/Shanghai,opt_in,Bob\n",
    )
    .await;

    // The second account's job: its follower gets it through the second account's provider,
    // although the first account's provider is listed first; the other contact does not
    // follow that account.
    let (status, submitted) = g.submit(&job(Some("news"), "wechat")).await;
    assert_eq!(status, 201, "{submitted}");
    g.wait_completed(&submitted, Duration::from_secs(20)).await;
    assert_eq!(
        *sent.0.lock(),
        vec![("app-news".to_string(), "oNewsBoth".to_string())]
    );
    let id = submitted["id"].as_str().expect("id");
    let lines = g.recipients(id).await;
    let reason_of = |who: &str| {
        lines
            .iter()
            .find(|l| l["contact_id"] == who)
            .map(|l| (l["outcome"].clone(), l["reason"].clone()))
    };
    assert_eq!(reason_of("both").map(|r| r.0), Some(json!("sent")));
    assert_eq!(
        reason_of("shop-only"),
        Some((json!("rejected"), json!("missing_openid")))
    );

    // The first account's job reaches both contacts with that account's openids and token.
    sent.0.lock().clear();
    let (status, submitted) = g.submit(&job(Some("shop"), "wechat")).await;
    assert_eq!(status, 201, "{submitted}");
    g.wait_completed(&submitted, Duration::from_secs(20)).await;
    let mut got = sent.0.lock().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("app-shop".to_string(), "oShopBoth".to_string()),
            ("app-shop".to_string(), "oShopOnly".to_string())
        ]
    );

    // An account no provider sends for, a malformed one, and one on another channel are
    // refused before anything is planned, naming the field.
    for (body, status) in [
        (job(Some("blog"), "wechat"), 422),
        (job(Some("shop:x"), "wechat"), 400),
        (job(Some("shop"), "sms"), 400),
    ] {
        let (got, answer) = g.submit(&body).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["error"]["field"], "wechat_account", "{answer}");
    }
    g.stop().await;
}
