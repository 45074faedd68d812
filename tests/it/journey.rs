//! A journey across channels: one contact gets an SMS, a WeChat template message and an app
//! push from three jobs, through the SMS sandbox, a WeChat adapter and an FCM adapter talking
//! to HTTPS mocks of their APIs. What one channel learns stays on it: a WeChat unfollow
//! (43004, or the account's `unsubscribe` event) opts the contact out of WeChat only, a dead
//! FCM token is suppressed for push only; SMS keeps going. WeChat's template send result
//! comes back through the account's signed event callback and shows in the recipients.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Json;
use herald::clock::Clock;
use herald::config::{FcmConfig, PriceConfig, ProviderKind, Secret, WechatConfig};
use herald::domain::Channel;
use herald_testkit::https::{HttpsServer, TestCa};
use herald_testkit::{jwt, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::collections::HashMap;

const ANN_FCM: &str = "ann-device:APA91bHk3x0Q2z8r7VwYtT1s9uXcB4nLmP6aQeR2dF5gH8jK";
const BOB_FCM: &str = "bob-device:APA91bDEADDEADDEADDEADDEADDEADDEADDEADDEADDEAD";
const CB_TOKEN: &str = "journey-callback-token";

#[derive(Default)]
struct Mocks {
    /// (openid, msgid) of accepted WeChat messages; tokens of accepted pushes.
    wechat: Mutex<Vec<(String, String)>>,
    pushes: Mutex<Vec<String>>,
}

async fn mocks(ca: &TestCa) -> (Arc<Mocks>, HttpsServer) {
    let m = Arc::new(Mocks::default());
    let (m1, m2) = (m.clone(), m.clone());
    let router = axum::Router::new()
        .route(
            "/token",
            post(|| async { Json(json!({"access_token": "ya29.j", "expires_in": 3599})) }),
        )
        .route(
            "/v1/projects/journey/messages:send",
            post(move |body: Bytes| {
                let m = m1.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let token = v["message"]["token"].as_str().unwrap_or("").to_string();
                    if token == BOB_FCM {
                        let e = json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
                            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}});
                        return (StatusCode::NOT_FOUND, Json(e)).into_response();
                    }
                    m.pushes.lock().push(token);
                    Json(json!({"name": "projects/journey/messages/1"})).into_response()
                }
            }),
        )
        .route(
            "/cgi-bin/token",
            get(|| async { Json(json!({"access_token": "WX", "expires_in": 7200})) }),
        )
        .route(
            "/cgi-bin/message/template/send",
            post(move |Query(_q): Query<HashMap<String, String>>, body: Bytes| {
                let m = m2.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let openid = v["touser"].as_str().unwrap_or("").to_string();
                    if openid == "oBob" {
                        return Json(json!({"errcode": 43004, "errmsg": "require subscribe"}));
                    }
                    let mut sent = m.wechat.lock();
                    let msgid = format!("{}", 900_000 + sent.len());
                    sent.push((openid, msgid.clone()));
                    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid.parse::<u64>().unwrap_or(0)}))
                }
            }),
        );
    let server = ca.serve(router).await;
    (m, server)
}

async fn gateway(ca: &TestCa, server: &HttpsServer, dir: &std::path::Path) -> Gateway {
    let (pem, _) = jwt::rsa_key_pair();
    let account = dir.join("sa.json");
    std::fs::write(
        &account,
        json!({"project_id": "journey", "client_email": "j@journey.iam.gserviceaccount.com",
            "private_key": pem, "token_uri": server.url("/token")})
        .to_string(),
    )
    .expect("key file");
    let (base, ca_file) = (server.url(""), ca.ca_file());
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        let mut fcm = c.providers[0].clone();
        fcm.name = "fcm".into();
        fcm.kind = ProviderKind::Fcm;
        fcm.channel = Channel::Push;
        fcm.batch_size = 1;
        fcm.idempotent = false;
        fcm.ca_file = Some(ca_file.clone());
        fcm.fcm = Some(FcmConfig {
            base_url: base.clone(),
            service_account_file: account.display().to_string(),
            ..FcmConfig::default()
        });
        let mut wechat = c.providers[0].clone();
        wechat.name = "wechat".into();
        wechat.kind = ProviderKind::Wechat;
        wechat.channel = Channel::Wechat;
        wechat.batch_size = 1;
        wechat.idempotent = false;
        wechat.ca_file = Some(ca_file);
        wechat.wechat = Some(WechatConfig {
            base_url: base,
            appid: Some(Secret::new("wx-app")),
            secret: Some(Secret::new("wx-secret")),
            callback_token: Some(Secret::new(CB_TOKEN)),
            ..WechatConfig::default()
        });
        for (p, unit) in [(&fcm, 100), (&wechat, 2_000)] {
            c.prices.push(PriceConfig {
                provider: p.name.clone(),
                channel: p.channel,
                country: "*".into(),
                unit_micros: unit,
            });
        }
        c.providers.push(fcm);
        c.providers.push(wechat);
    })
    .await;
    let csv = format!(
        "contact_id,phone,push_token,wechat_openid,timezone,sms_consent,push_consent,wechat_consent,first_name\n\
         ann,+8613123079337,fcm:{ANN_FCM},oAnn,Asia/Shanghai,opt_in,opt_in,opt_in,Ann\n\
         bob,+8613126859660,fcm:{BOB_FCM},oBob,Asia/Shanghai,opt_in,opt_in,opt_in,Bob\n"
    );
    g.load_csv(&csv).await;
    g
}

fn job(channel: &str) -> Value {
    let template = match channel {
        "push" => {
            json!({"body": "Your cart misses you, {{first_name}}", "title": "Hi {{first_name}}",
            "data": {"screen": "cart"}})
        }
        "wechat" => json!({"body": "Order shipped", "template_id": "TPL-ship",
            "url": "https://shop.example.com/o", "data": {"first": "Hi {{first_name}}"}}),
        _ => json!({"body": "Welcome {{first_name}}"}),
    };
    json!({"campaign_id": format!("journey-{channel}"), "channel": channel, "purpose": "marketing",
        "template": template, "track_links": false,
        "audience": {"contacts": [{"contact_id": "ann"}, {"contact_id": "bob"}]}})
}

/// Runs a job; answers its id and each contact's (outcome, reason or delivery).
async fn run(g: &Gateway, channel: &str) -> (String, HashMap<String, (String, String)>) {
    let (s, body) = g.submit(&job(channel)).await;
    assert_eq!(s, 201, "{body}");
    g.wait_completed(&body, Duration::from_secs(15)).await;
    let id = body["id"].as_str().expect("id").to_string();
    (id.clone(), lines(g, &id).await)
}

async fn lines(g: &Gateway, id: &str) -> HashMap<String, (String, String)> {
    g.recipients(id)
        .await
        .iter()
        .map(|l| {
            (
                l["contact_id"].as_str().unwrap_or("").to_string(),
                (
                    l["outcome"].as_str().unwrap_or("").to_string(),
                    l["reason"]
                        .as_str()
                        .or(l["delivery"].as_str())
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        })
        .collect()
}

fn outcome(l: &HashMap<String, (String, String)>, who: &str) -> String {
    l.get(who).map(|o| o.0.clone()).unwrap_or_default()
}

async fn wechat_event(g: &Gateway, xml: String) -> u16 {
    let ts = g.clock.now().timestamp().to_string();
    let nonce = "n".to_string() + &ts;
    let mut parts = [CB_TOKEN, ts.as_str(), nonce.as_str()];
    parts.sort_unstable();
    let sig = hex::encode(Sha1::digest(parts.concat().as_bytes()));
    g.http
        .post(g.url(&format!(
            "/v1/callbacks/wechat/wechat?signature={sig}&timestamp={ts}&nonce={nonce}"
        )))
        .body(xml)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn journey_sms_wechat_push_and_an_unfollow_that_stays_on_wechat() {
    let ca = TestCa::new();
    let (mocks, server) = mocks(&ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let g = gateway(&ca, &server, dir.path()).await;

    let (_, sms) = run(&g, "sms").await;
    assert_eq!(
        (outcome(&sms, "ann"), outcome(&sms, "bob")),
        ("sent".into(), "sent".into()),
        "{sms:?}"
    );

    let (wechat_job, wx) = run(&g, "wechat").await;
    assert_eq!(outcome(&wx, "ann"), "sent", "{wx:?}");
    assert_eq!(outcome(&wx, "bob"), "failed", "43004: {wx:?}");
    let (openid, msgid) = mocks.wechat.lock()[0].clone();
    assert_eq!(openid, "oAnn");
    // WeChat's template send result arrives on the account's event callback.
    let finished = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oAnn]]></FromUserName>\
         <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msgid}</MsgID>\
         <Status><![CDATA[success]]></Status></xml>"
    );
    assert_eq!(wechat_event(&g, finished).await, 200);
    let start = std::time::Instant::now();
    loop {
        let l = lines(&g, &wechat_job).await;
        if l.get("ann").map(|o| o.1.as_str()) == Some("delivered") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never delivered: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (push_job, push) = run(&g, "push").await;
    assert_eq!(outcome(&push, "ann"), "sent", "{push:?}");
    assert_eq!(outcome(&push, "bob"), "failed", "UNREGISTERED: {push:?}");
    assert_eq!(mocks.pushes.lock().as_slice(), [ANN_FCM.to_string()]);
    let report = g.get_json(&format!("/v1/jobs/{push_job}")).await;
    // One push, one billable unit, whatever the body's length.
    assert_eq!(report["counts"]["cost_micros"], 100, "{report}");
    assert_eq!(report["counts"]["segments"], 1, "{report}");

    // Second round: bob's unfollow holds for WeChat, his dead token for push; SMS still
    // reaches him.
    let (_, wx2) = run(&g, "wechat").await;
    assert_eq!(
        wx2["bob"],
        ("rejected".to_string(), "opted_out".to_string()),
        "{wx2:?}"
    );
    assert_eq!(outcome(&wx2, "ann"), "sent");
    let (_, push2) = run(&g, "push").await;
    assert_eq!(
        push2["bob"],
        ("rejected".to_string(), "suppressed".to_string()),
        "{push2:?}"
    );
    let (_, sms2) = run(&g, "sms").await;
    assert_eq!(outcome(&sms2, "bob"), "sent", "{sms2:?}");

    // Ann unfollows the account: WeChat stops, push and SMS go on.
    let unsubscribe = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oAnn]]></FromUserName>\
        <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>";
    assert_eq!(wechat_event(&g, unsubscribe.to_string()).await, 200);
    let (_, wx3) = run(&g, "wechat").await;
    assert_eq!(wx3["ann"].1, "opted_out", "{wx3:?}");
    let (_, push3) = run(&g, "push").await;
    assert_eq!(outcome(&push3, "ann"), "sent", "{push3:?}");
    let (_, sms3) = run(&g, "sms").await;
    assert_eq!(outcome(&sms3, "ann"), "sent", "{sms3:?}");
}
