//! The WeChat account's server URL on a running gateway: WeChat's URL check (GET with
//! `echostr`) and its XML events, authenticated by the query signature over the account
//! token, `timestamp` and `nonce` (computed here from WeChat's documented algorithm), within
//! the signature window.

use herald::config::{ProviderKind, Secret, WechatConfig};
use herald::domain::Channel;
use herald_testkit::Gateway;
use sha1::{Digest, Sha1};

const TOKEN: &str = "account-callback-token";
const ROUTE: &str = "/v1/callbacks/wechat-oa/wechat";

fn sign(timestamp: &str, nonce: &str) -> String {
    let mut parts = [TOKEN, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

pub async fn gateway() -> Gateway {
    Gateway::start_on_system_clock(|c| {
        let mut p = c.providers[0].clone();
        p.name = "wechat-oa".into();
        p.kind = ProviderKind::Wechat;
        p.channel = Channel::Wechat;
        p.idempotent = false;
        p.batch_size = 1;
        p.wechat = Some(WechatConfig {
            base_url: "https://127.0.0.1:9".into(),
            appid: Some(Secret::new("wx-app")),
            secret: Some(Secret::new("wx-secret")),
            callback_token: Some(Secret::new(TOKEN)),
            ..WechatConfig::default()
        });
        c.providers.push(p);
    })
    .await
}

pub fn query(timestamp: i64, nonce: &str, extra: &str) -> String {
    let ts = timestamp.to_string();
    format!(
        "{ROUTE}?signature={}&timestamp={ts}&nonce={nonce}{extra}",
        sign(&ts, nonce)
    )
}

#[tokio::test]
async fn wechat_url_check_echoes_only_a_signed_request() {
    let g = gateway().await;
    let now = chrono::Utc::now().timestamp();
    let ok = g
        .http
        .get(g.url(&query(now, "1507829345", "&echostr=6139214327018311470")))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), "6139214327018311470");

    let forged = g
        .http
        .get(g.url(&format!(
            "{ROUTE}?signature={}&timestamp={now}&nonce=2&echostr=x",
            sign(&now.to_string(), "1")
        )))
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 401);
    let stale = g
        .http
        .get(g.url(&query(now - 3_600, "1", "&echostr=x")))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 401);
    // Not a WeChat provider: its route does not exist.
    let sms = g
        .http
        .get(g.url("/v1/callbacks/sandbox/wechat"))
        .send()
        .await
        .expect("send");
    assert_eq!(sms.status(), 404);
}

#[tokio::test]
async fn wechat_events_are_answered_success_and_garbage_is_refused() {
    let g = gateway().await;
    let now = chrono::Utc::now().timestamp();
    let text = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
        <CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content></xml>";
    let r = g
        .http
        .post(g.url(&query(now, "n1", "&openid=o1")))
        .body(text)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "success");

    let r = g
        .http
        .post(g.url(&query(now, "n2", "")))
        .body("<xml><MsgType>event")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["field"], "body", "{body}");

    let r = g
        .http
        .post(g.url(&query(now, "n3", "")))
        .body(vec![b'x'; 64 << 10])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
}
