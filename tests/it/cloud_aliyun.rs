//! Alibaba Cloud SMS end to end: a gateway whose provider is `kind = "aliyun"` sends a small
//! job to an HTTPS mock of the SMS RPC endpoint (`SendSms`, `SendBatchSms`) that checks every
//! request's signature with its own implementation of the documented algorithm, throttles
//! one number once (`isv.BUSINESS_LIMIT_CONTROL`) and refuses another
//! (`isv.MOBILE_NUMBER_ILLEGAL`); Alibaba's receipt report then comes back through the
//! callback URL with its token, and a forged one is refused.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::post;
use base64::Engine as _;
use herald::config::{AliyunConfig, ProviderKind, Secret};
use herald_testkit::https::TestCa;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha1::Sha1;

use crate::cloud_support::{gateway, outcomes, send_job, wait_deliveries, RECEIPTS};

const KEY_ID: &str = "LTAI-test-id";
const KEY_SECRET: &str = "test-access-key-secret";
const TOKEN: &str = "receipt-url-token";

/// A message the mock took: (number as sent, BizId, OutId).
type Taken = (String, String, Option<String>);

#[derive(Default)]
struct Mock {
    taken: Mutex<Vec<Taken>>,
    throttled_once: Mutex<HashSet<String>>,
    bad_signatures: Mutex<u32>,
    requests: Mutex<Vec<Vec<(String, String)>>>,
}

/// RFC 3986 encoding, written here independently of herald's.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Alibaba's RPC signature as its docs describe it, over a POST's parameters.
fn expected_signature(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "Signature").collect();
    sorted.sort();
    let query = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("POST&{}&{}", enc("/"), enc(&query));
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{KEY_SECRET}&").as_bytes()).expect("key");
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn answer(mock: &Mock, body: &[u8]) -> Value {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    mock.requests.lock().push(params.clone());
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if get("Signature") != expected_signature(&params) || get("AccessKeyId") != KEY_ID {
        *mock.bad_signatures.lock() += 1;
        return json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"});
    }
    let phones: Vec<String> = match get("Action").as_str() {
        "SendSms" => vec![get("PhoneNumbers")],
        "SendBatchSms" => serde_json::from_str(&get("PhoneNumberJson")).unwrap_or_default(),
        _ => return json!({"Code": "InvalidAction.NotFound"}),
    };
    // The number of contact c1 is throttled once; c2's is not a valid number.
    if phones.iter().any(|p| p == "13123000002") {
        return json!({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"});
    }
    if phones.iter().any(|p| p == "13123000001") && mock.throttled_once.lock().insert("c1".into()) {
        return json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发号码天级流控"});
    }
    let mut taken = mock.taken.lock();
    let biz = format!("90061974693649{:02}^0", taken.len());
    let out_id = (get("Action") == "SendSms").then(|| get("OutId"));
    for p in phones {
        taken.push((p, biz.clone(), out_id.clone()));
    }
    json!({"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"})
}

fn router(mock: Arc<Mock>) -> axum::Router {
    axum::Router::new().route(
        "/",
        post(move |body: Bytes| {
            let mock = mock.clone();
            async move { answer(&mock, &body).to_string() }
        }),
    )
}

fn aliyun(endpoint: String, batch_size: usize) -> impl FnOnce(&mut herald::config::ProviderConfig) {
    move |p| {
        p.batch_size = batch_size;
        p.callback_secrets = vec![Secret::new(TOKEN)];
        p.aliyun = Some(AliyunConfig {
            endpoint,
            sign_name: "Herald".into(),
            template_code: "SMS_154950909".into(),
            throttle_retry_ms: 50,
            access_key_id: Some(Secret::new(KEY_ID)),
            access_key_secret: Some(Secret::new(KEY_SECRET)),
            ..AliyunConfig::default()
        });
    }
}

#[tokio::test]
async fn cloud_aliyun_sends_signed_requests_and_takes_its_receipts() {
    let ca = TestCa::new();
    let mock = Arc::new(Mock::default());
    let server = ca.serve(router(mock.clone())).await;
    let g = gateway(&ca, ProviderKind::Aliyun, aliyun(server.url("/"), 1)).await;
    let job = send_job(&g, 4).await;

    assert_eq!(*mock.bad_signatures.lock(), 0, "every request verified");
    for request in mock.requests.lock().iter() {
        let get = |k: &str| {
            request
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("Action"), Some("SendSms"));
        assert_eq!(get("Version"), Some("2017-05-25"));
        assert_eq!(get("SignName"), Some("Herald"));
        assert_eq!(get("TemplateCode"), Some("SMS_154950909"));
        let param: Value = serde_json::from_str(get("TemplateParam").unwrap_or("")).expect("json");
        assert!(
            param["content"].as_str().unwrap_or("").starts_with("Hi N"),
            "{param}"
        );
    }
    let taken = mock.taken.lock().clone();
    assert_eq!(
        taken.len(),
        3,
        "c0, c1 (after its throttle) and c3: {taken:?}"
    );
    let lines = outcomes(&g, &job).await;
    let outcome = |c: &str| lines.iter().find(|l| l.0 == c).map(|l| l.1.clone());
    assert_eq!(outcome("c2").as_deref(), Some("failed"), "{lines:?}");
    assert_eq!(outcome("c1").as_deref(), Some("sent"), "{lines:?}");
    // OutId is herald's message id.
    let recipients = g.recipients(&job).await;
    for (phone, _, out_id) in &taken {
        let contact = format!("c{}", phone[9..].parse::<u32>().expect("number"));
        let line = recipients
            .iter()
            .find(|l| l["contact_id"] == contact.as_str())
            .expect("line");
        assert_eq!(out_id.as_deref(), line["message_id"].as_str());
    }

    // Alibaba's report: c0 and c1 delivered, c3 not.
    let report: Vec<Value> = taken
        .iter()
        .map(|(phone, biz, out_id)| {
            let ok = phone != "13123000003";
            json!({"phone_number": phone, "send_time": "2026-11-23 12:00:01",
                   "report_time": "2026-11-23 12:00:05", "success": ok,
                   "err_code": if ok { "DELIVERED" } else { "MK:0001" },
                   "err_msg": if ok { "用户接收成功" } else { "失败" },
                   "sms_size": "1", "biz_id": biz, "out_id": out_id})
        })
        .collect();
    let body = Value::Array(report).to_string();
    for query in ["", "?token=guess", "?other=receipt-url-token"] {
        let r = g
            .http
            .post(g.url(&format!("{RECEIPTS}{query}")))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401, "forged {query:?}");
    }
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
    assert_eq!(ack["code"], 0, "{ack}");
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
    let j = g.job(&job).await;
    assert_eq!(j["counts"]["delivered"], 2, "{j:#}");
    assert_eq!(j["counts"]["undelivered"], 1, "{j:#}");
}

#[tokio::test]
async fn cloud_aliyun_batches_go_as_send_batch_sms_and_match_receipts_by_number() {
    let ca = TestCa::new();
    let mock = Arc::new(Mock::default());
    let server = ca.serve(router(mock.clone())).await;
    let g = gateway(&ca, ProviderKind::Aliyun, |p| {
        aliyun(server.url("/"), 10)(p);
        // Only numbers the mock takes at once: c0 and c3.
    })
    .await;
    g.load_csv(&herald_testkit::contacts_csv(5)).await;
    let audience = json!([{"contact_id": "c0"}, {"contact_id": "c3"}, {"contact_id": "c4"}]);
    let (s, body) = g
        .submit(&herald_testkit::sms_job(
            "batch",
            "Hi {{first_name}}",
            audience,
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let job = body["id"].as_str().expect("id").to_string();
    g.wait_status(&job, "completed", std::time::Duration::from_secs(20))
        .await;
    assert_eq!(*mock.bad_signatures.lock(), 0);
    let requests = mock.requests.lock().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.iter().any(|(k, v)| k == "Action" && v == "SendBatchSms")),
        "a batch request was made"
    );
    let taken = mock.taken.lock().clone();
    assert_eq!(taken.len(), 3);
    let report: Vec<Value> = taken
        .iter()
        .map(|(phone, biz, _)| json!({"phone_number": phone, "success": phone != "13123000004", "biz_id": biz, "err_code": "DELIVERED"}))
        .collect();
    let r = g
        .http
        .post(g.url(&format!("{RECEIPTS}?token={TOKEN}")))
        .body(Value::Array(report).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    wait_deliveries(
        &g,
        &job,
        &[
            ("c0", "delivered"),
            ("c3", "delivered"),
            ("c4", "undelivered"),
        ],
    )
    .await;
}
