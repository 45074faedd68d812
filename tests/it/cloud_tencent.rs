//! Tencent Cloud SMS end to end: a gateway whose provider is `kind = "tencent"` sends a small
//! job to an HTTPS mock of `SendSms` (API 2021-01-11) that checks every request's
//! TC3-HMAC-SHA256 `Authorization` with its own implementation of the documented algorithm,
//! answers per-number codes (`Ok`, a thirty-second limit once, an incorrect number), and
//! Tencent's status callback then comes back through the callback URL with its token.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use herald::config::{ProviderKind, Secret, TencentConfig};
use herald_testkit::https::{HttpsServer, TestCa};
use herald_testkit::{sms_job, Gateway};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cloud_support::{gateway, outcomes, send_job, wait_deliveries, RECEIPTS};

const SECRET_ID: &str = "AKID-test-secret-id";
const SECRET_KEY: &str = "test-secret-key";
const TOKEN: &str = "tencent-receipt-token";

#[derive(Default)]
struct Mock {
    /// (number, SerialNo, SessionContext) of every number taken.
    taken: Mutex<Vec<(String, String, String)>>,
    throttled_once: Mutex<HashSet<String>>,
    bad_requests: Mutex<Vec<String>>,
    bodies: Mutex<Vec<Value>>,
}

fn hmac256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Checks the request's `Authorization` as Tencent's signature v3 page describes it.
fn check_tc3(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Result<(), String> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    for (name, want) in [
        ("x-tc-action", "SendSms"),
        ("x-tc-version", "2021-01-11"),
        ("x-tc-region", "ap-guangzhou"),
    ] {
        if h(name) != want {
            return Err(format!("{name} = {:?}", h(name)));
        }
    }
    let timestamp: i64 = h("x-tc-timestamp").parse().map_err(|_| "x-tc-timestamp")?;
    let date = chrono::DateTime::from_timestamp(timestamp, 0)
        .ok_or("timestamp")?
        .format("%Y-%m-%d")
        .to_string();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .ok_or("no host")?;
    let canonical = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        h("content-type"),
        host,
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/sms/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac256(format!("TC3{SECRET_KEY}").as_bytes(), &date);
    let k_service = hmac256(&k_date, "sms");
    let k_signing = hmac256(&k_service, "tc3_request");
    let signature = hex::encode(hmac256(&k_signing, &to_sign));
    let want = format!(
        "TC3-HMAC-SHA256 Credential={SECRET_ID}/{scope}, SignedHeaders=content-type;host, Signature={signature}"
    );
    if h("authorization") == want {
        Ok(())
    } else {
        Err(format!("authorization {:?}", h("authorization")))
    }
}

fn answer(mock: &Mock, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Value {
    if let Err(e) = check_tc3(headers, uri, body) {
        mock.bad_requests.lock().push(e);
        return json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}, "RequestId": "r"}});
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    mock.bodies.lock().push(v.clone());
    let session = v["SessionContext"].as_str().unwrap_or("").to_string();
    let mut set = Vec::new();
    for number in v["PhoneNumberSet"].as_array().cloned().unwrap_or_default() {
        let number = number.as_str().unwrap_or("").to_string();
        let status = if number == "+8613123000002" {
            json!({"SerialNo": "", "PhoneNumber": number, "Fee": 0, "SessionContext": session,
                   "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "incorrect", "IsoCode": "CN"})
        } else if number == "+8613123000001" && mock.throttled_once.lock().insert(number.clone()) {
            json!({"SerialNo": "", "PhoneNumber": number, "Fee": 0, "SessionContext": session,
                   "Code": "LimitExceeded.PhoneNumberThirtySecondLimit", "Message": "30s", "IsoCode": "CN"})
        } else {
            let mut taken = mock.taken.lock();
            let serial = format!("2019:{}", 538884 + taken.len());
            taken.push((number.clone(), serial.clone(), session.clone()));
            json!({"SerialNo": serial, "PhoneNumber": number, "Fee": 1, "SessionContext": session,
                   "Code": "Ok", "Message": "send success", "IsoCode": "CN"})
        };
        set.push(status);
    }
    json!({"Response": {"SendStatusSet": set, "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}})
}

/// The mock on HTTPS and a gateway sending to it in requests of up to `batch_size` numbers.
async fn setup(ca: &TestCa, batch_size: usize) -> (Arc<Mock>, HttpsServer, Gateway) {
    let mock = Arc::new(Mock::default());
    let m = mock.clone();
    let router = axum::Router::new().route(
        "/",
        post(move |headers: HeaderMap, uri: Uri, body: Bytes| {
            let m = m.clone();
            async move { answer(&m, &headers, &uri, &body).to_string() }
        }),
    );
    let server = ca.serve(router).await;
    let endpoint = server.url("/");
    let g = gateway(ca, ProviderKind::Tencent, |p| {
        p.batch_size = batch_size;
        p.callback_secrets = vec![Secret::new(TOKEN)];
        p.tencent = Some(TencentConfig {
            endpoint,
            sms_sdk_app_id: "1400787878".into(),
            sign_name: "Herald".into(),
            template_id: "449739".into(),
            throttle_retry_ms: 50,
            secret_id: Some(Secret::new(SECRET_ID)),
            secret_key: Some(Secret::new(SECRET_KEY)),
            ..TencentConfig::default()
        });
    })
    .await;
    (mock, server, g)
}

#[tokio::test]
async fn cloud_tencent_sends_tc3_signed_requests_and_takes_its_status_callbacks() {
    let ca = TestCa::new();
    let (mock, _server, g) = setup(&ca, 1).await;
    let job = send_job(&g, 4).await;

    assert!(
        mock.bad_requests.lock().is_empty(),
        "{:?}",
        mock.bad_requests.lock()
    );
    for body in mock.bodies.lock().iter() {
        assert_eq!(body["SmsSdkAppId"], "1400787878");
        assert_eq!(body["SignName"], "Herald");
        assert_eq!(body["TemplateId"], "449739");
        assert!(body["TemplateParamSet"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("Hi N"));
    }
    let taken = mock.taken.lock().clone();
    assert_eq!(taken.len(), 3, "c0, c1 after its limit, c3: {taken:?}");
    let recipients = g.recipients(&job).await;
    for (number, _, session) in &taken {
        let contact = format!("c{}", number[12..].parse::<u32>().expect("number"));
        let line = recipients
            .iter()
            .find(|l| l["contact_id"] == contact.as_str())
            .expect("line");
        assert_eq!(
            Some(session.as_str()),
            line["message_id"].as_str(),
            "SessionContext"
        );
    }
    let lines = outcomes(&g, &job).await;
    assert!(
        lines.iter().any(|l| l.0 == "c2" && l.1 == "failed"),
        "{lines:?}"
    );

    let callback: Vec<Value> = taken
        .iter()
        .map(|(number, serial, _)| {
            let ok = number != "+8613123000003";
            json!({"user_receive_time": "2026-11-23 12:00:05", "nationcode": "86",
                   "mobile": &number[3..], "report_status": if ok { "SUCCESS" } else { "FAIL" },
                   "errmsg": if ok { "DELIVRD" } else { "MK:0005" },
                   "description": if ok { "用户短信送达成功" } else { "失败" }, "sid": serial})
        })
        .collect();
    let body = Value::Array(callback).to_string();
    let forged = g
        .http
        .post(g.url(&format!("{RECEIPTS}?token=not-it")))
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 401);
    let malformed = g
        .http
        .post(g.url(&format!("{RECEIPTS}?token={TOKEN}")))
        .body(r#"[{"sid": "2019:538884", "report_status": "MAYBE"}]"#)
        .send()
        .await
        .expect("send");
    assert_eq!(
        malformed.status(),
        400,
        "an authentic but malformed callback"
    );
    let r = g
        .http
        .post(g.url(&format!("{RECEIPTS}?token={TOKEN}")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let ack: Value = r.json().await.expect("json");
    assert_eq!(ack, json!({"result": 0, "errmsg": "OK"}));
    wait_deliveries(
        &g,
        &job,
        &[
            ("c0", "delivered"),
            ("c1", "delivered"),
            ("c3", "undelivered"),
        ],
    )
    .await;
}

#[tokio::test]
async fn cloud_tencent_numbers_of_one_text_share_a_request_and_others_are_split() {
    let ca = TestCa::new();
    let (mock, _server, g) = setup(&ca, 10).await;
    g.load_csv(&herald_testkit::contacts_csv(8)).await;
    let audience = json!([{"contact_id": "c0"}, {"contact_id": "c3"}, {"contact_id": "c4"}]);
    let (s, body) = g.submit(&sms_job("same", "Sale today", audience)).await;
    assert_eq!(s, 201, "{body}");
    let same = body["id"].as_str().expect("id").to_string();
    g.wait_status(&same, "completed", std::time::Duration::from_secs(20))
        .await;
    let multi = mock
        .bodies
        .lock()
        .iter()
        .filter(|b| b["PhoneNumberSet"].as_array().map_or(0, Vec::len) > 1)
        .count();
    assert!(multi >= 1, "numbers of one text share a request");
    // Personal texts: one text per request, whatever the batch size.
    let audience = json!([{"contact_id": "c5"}, {"contact_id": "c6"}, {"contact_id": "c7"}]);
    let (s, body) = g
        .submit(&sms_job("personal", "Hi {{first_name}}", audience))
        .await;
    assert_eq!(s, 201, "{body}");
    let personal = body["id"].as_str().expect("id").to_string();
    g.wait_status(&personal, "completed", std::time::Duration::from_secs(20))
        .await;
    assert!(mock.bad_requests.lock().is_empty());
    for b in mock.bodies.lock().iter() {
        let n = b["PhoneNumberSet"].as_array().map_or(0, Vec::len);
        let text = b["TemplateParamSet"][0].as_str().unwrap_or("");
        assert!(n == 1 || text == "Sale today", "{b}");
    }
    for job in [&same, &personal] {
        let lines = outcomes(&g, job).await;
        assert!(lines.iter().all(|l| l.1 == "sent"), "{lines:?}");
    }
    assert_eq!(mock.taken.lock().len(), 6);
}
