//! WeChat official-account template messages against an HTTPS mock of the documented API:
//! `GET /cgi-bin/token` checks the AppID and AppSecret and hands out tokens that expire;
//! `message/template/send` answers by `errcode` (expired and invalid tokens, an unfollowed
//! user, the daily quota).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Query;
use axum::routing::{get, post};
use axum::Json;
use herald::clock::ManualClock;
use herald::config::{ProviderKind, Secret, WechatConfig};
use herald::domain::{Channel, MessageId};
use herald::provider::content::WechatContent;
use herald::provider::wechat::WechatProvider;
use herald::provider::{AddressFate, SendOutcome};
use herald_testkit::https::{HttpsServer, TestCa};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::push_support::provider;

const APPID: &str = "wx0123456789abcdef";
const SECRET: &str = "app-secret-0123";

#[derive(Default)]
struct Mock {
    /// Tokens handed out, in order.
    issued: Mutex<Vec<String>>,
    /// Tokens the mock now calls expired (42001) or invalid (40001).
    expired: Mutex<Vec<String>>,
    invalid: Mutex<Vec<String>>,
    problems: Mutex<Vec<String>>,
    /// Bodies of sends made with a good token.
    sent: Mutex<Vec<Value>>,
}

fn token(mock: &Mock, q: &HashMap<String, String>) -> Value {
    let get = |k: &str| q.get(k).map(String::as_str);
    if get("grant_type") != Some("client_credential") || get("appid") != Some(APPID) {
        mock.problems.lock().push(format!("token query {q:?}"));
        return json!({"errcode": 40013, "errmsg": "invalid appid"});
    }
    if get("secret") != Some(SECRET) {
        return json!({"errcode": 40001, "errmsg": "invalid credential"});
    }
    let mut issued = mock.issued.lock();
    let t = format!("ACCESS_TOKEN_{}", issued.len());
    issued.push(t.clone());
    json!({"access_token": t, "expires_in": 7200})
}

fn send(mock: &Mock, q: &HashMap<String, String>, body: &[u8]) -> Value {
    let t = q.get("access_token").cloned().unwrap_or_default();
    if mock.expired.lock().contains(&t) {
        return json!({"errcode": 42001, "errmsg": "access_token expired"});
    }
    if mock.invalid.lock().contains(&t) || !mock.issued.lock().contains(&t) {
        return json!({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"});
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    if v["template_id"] != "TPL-order-shipped" || v["data"]["first"]["value"].as_str().is_none() {
        mock.problems.lock().push(format!("body {v}"));
        return json!({"errcode": 40037, "errmsg": "invalid template_id"});
    }
    mock.sent.lock().push(v.clone());
    match v["touser"].as_str().unwrap_or("") {
        "o-unfollowed" => json!({"errcode": 43004, "errmsg": "require subscribe"}),
        "o-quota" => json!({"errcode": 45009, "errmsg": "reach max api daily quota limit"}),
        "o-busy" => json!({"errcode": -1, "errmsg": "system error"}),
        _ => {
            let n = 200_228_000 + mock.sent.lock().len() as u64;
            json!({"errcode": 0, "errmsg": "ok", "msgid": n})
        }
    }
}

async fn setup(ca: &TestCa, clock: Arc<ManualClock>) -> (Arc<Mock>, HttpsServer, WechatProvider) {
    let mock = Arc::new(Mock::default());
    let (m1, m2) = (mock.clone(), mock.clone());
    let router = axum::Router::new()
        .route(
            "/cgi-bin/token",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let m = m1.clone();
                async move { Json(token(&m, &q)) }
            }),
        )
        .route(
            "/cgi-bin/message/template/send",
            post(
                move |Query(q): Query<HashMap<String, String>>, body: Bytes| {
                    let m = m2.clone();
                    async move { Json(send(&m, &q, &body)) }
                },
            ),
        );
    let server = ca.serve(router).await;
    let mut p = provider(ca, ProviderKind::Wechat, Channel::Wechat);
    p.wechat = Some(WechatConfig {
        base_url: server.url(""),
        appid: Some(Secret::new(APPID)),
        secret: Some(Secret::new(SECRET)),
        callback_token: Some(Secret::new("cb-token")),
        throttle_retry_ms: 3_000,
        ..WechatConfig::default()
    });
    let wechat = WechatProvider::new(&p, clock).expect("wechat provider");
    (mock, server, wechat)
}

fn content() -> WechatContent {
    WechatContent {
        template_id: "TPL-order-shipped".into(),
        url: Some("https://shop.example.com/o/1".into()),
        data: [
            ("first".to_string(), "Your order has shipped".to_string()),
            ("keyword1".to_string(), "SF123".to_string()),
        ]
        .into(),
    }
}

#[tokio::test]
async fn wechat_reuses_its_token_until_expiry_and_refreshes_then() {
    let ca = TestCa::new();
    let start = chrono::Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let (mock, _server, wechat) = setup(&ca, clock.clone()).await;
    let id = MessageId::from_u128(5);
    let outcome = wechat.send_template(id, "o-follower", &content()).await;
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            provider_message_id: "200228001".into()
        }
    );
    wechat
        .send_template(MessageId::from_u128(6), "o-follower", &content())
        .await;
    assert_eq!(mock.issued.lock().len(), 1, "one token for both");
    let body = mock.sent.lock()[0].clone();
    assert_eq!(
        body,
        json!({"touser": "o-follower", "template_id": "TPL-order-shipped",
            "url": "https://shop.example.com/o/1", "client_msg_id": id.to_string(),
            "data": {"first": {"value": "Your order has shipped"}, "keyword1": {"value": "SF123"}}})
    );
    // 7200 s tokens are replaced five minutes before they expire.
    clock.set(start + chrono::Duration::seconds(6_899));
    wechat
        .send_template(MessageId::from_u128(7), "o-follower", &content())
        .await;
    assert_eq!(mock.issued.lock().len(), 1);
    clock.set(start + chrono::Duration::seconds(6_900));
    let outcome = wechat
        .send_template(MessageId::from_u128(8), "o-follower", &content())
        .await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(mock.issued.lock().len(), 2, "refreshed before expiry");
    assert!(
        mock.problems.lock().is_empty(),
        "{:?}",
        mock.problems.lock()
    );
}

#[tokio::test]
async fn wechat_expired_or_invalid_token_is_refreshed_and_the_send_retried_once() {
    let ca = TestCa::new();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let (mock, _server, wechat) = setup(&ca, clock).await;
    wechat
        .send_template(MessageId::from_u128(1), "o-follower", &content())
        .await;
    // WeChat expires the token early (42001), then a token fetched elsewhere retires the
    // next one (40001): each time herald fetches a new token and sends once more.
    let t0 = mock.issued.lock()[0].clone();
    mock.expired.lock().push(t0);
    let outcome = wechat
        .send_template(MessageId::from_u128(2), "o-follower", &content())
        .await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    let t1 = mock.issued.lock()[1].clone();
    mock.invalid.lock().push(t1);
    let outcome = wechat
        .send_template(MessageId::from_u128(3), "o-follower", &content())
        .await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(mock.issued.lock().len(), 3);
    assert_eq!(
        mock.sent.lock().len(),
        3,
        "each message sent once with a good token"
    );
}

#[tokio::test]
async fn wechat_unfollowed_user_is_opted_out_and_quota_throttles() {
    let ca = TestCa::new();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let (_mock, _server, wechat) = setup(&ca, clock).await;
    let content = content();
    let send =
        |openid: &'static str| wechat.send_template(MessageId::from_u128(4), openid, &content);
    assert!(matches!(
        send("o-unfollowed").await,
        SendOutcome::Unreachable {
            fate: AddressFate::OptOut,
            ..
        }
    ));
    assert_eq!(
        send("o-quota").await,
        SendOutcome::Throttled {
            retry_after: Duration::from_secs(3)
        }
    );
    assert!(matches!(
        send("o-busy").await,
        SendOutcome::Unavailable { .. }
    ));
}
