//! Twilio end to end: a gateway whose provider is `kind = "twilio"` sends a small job to an
//! HTTPS mock of `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` that checks basic
//! authentication and the form fields, throttles one number once (429 / 20429) and refuses
//! another (400 / 21211); Twilio's status callbacks then come back signed with
//! `X-Twilio-Signature`, computed here with this test's own implementation.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use herald::config::{ProviderKind, Secret, TwilioConfig};
use herald_testkit::https::TestCa;
use herald_testkit::Gateway;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha1::Sha1;

use crate::cloud_support::{gateway, outcomes, send_job, wait_deliveries, RECEIPTS};

const ACCOUNT_SID: &str = "ACdeadbeefdeadbeefdeadbeefdeadbeef";
const AUTH_TOKEN: &str = "test-auth-token";
/// The public URL Twilio is told to call (herald behind a proxy); the signature covers it.
const CALLBACK_URL: &str = "https://herald.example/v1/callbacks/cloud/receipts";

#[derive(Default)]
struct Mock {
    /// (To, sid) of every message taken.
    taken: Mutex<Vec<(String, String)>>,
    throttled_once: Mutex<HashSet<String>>,
    forms: Mutex<Vec<Vec<(String, String)>>>,
    unauthorised: Mutex<u32>,
}

fn answer(mock: &Mock, account: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    if account != ACCOUNT_SID
        || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str())
    {
        *mock.unauthorised.lock() += 1;
        return (
            StatusCode::UNAUTHORIZED,
            json!({"code": 20003, "message": "Authenticate", "status": 401}).to_string(),
        )
            .into_response();
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    mock.forms.lock().push(form.clone());
    let to = form
        .iter()
        .find(|(k, _)| k == "To")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if to == "+8613123000002" {
        let e = json!({"code": 21211, "message": "The 'To' number +8613123000002 is not a valid phone number.",
                       "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400});
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    if to == "+8613123000001" && mock.throttled_once.lock().insert(to.clone()) {
        let e = json!({"code": 20429, "message": "Too Many Requests", "status": 429});
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            e.to_string(),
        )
            .into_response();
    }
    let mut taken = mock.taken.lock();
    let sid = format!("SM{:032x}", 0xfeed_0000 + taken.len());
    taken.push((to.clone(), sid.clone()));
    let m = json!({"sid": sid, "account_sid": ACCOUNT_SID, "to": to, "status": "queued",
                   "body": form.iter().find(|(k, _)| k == "Body").map(|(_, v)| v.clone())});
    (StatusCode::CREATED, m.to_string()).into_response()
}

/// Twilio's signature as its webhook security page describes it.
fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// POSTs a status callback, signed unless `signature` says otherwise.
async fn status_callback(
    g: &Gateway,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let sig = signature
        .map(str::to_string)
        .unwrap_or_else(|| twilio_signature(CALLBACK_URL, params));
    let r = g
        .http
        .post(g.url(RECEIPTS))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cloud_twilio_sends_with_basic_auth_and_takes_signed_status_callbacks() {
    let ca = TestCa::new();
    let mock = Arc::new(Mock::default());
    let m = mock.clone();
    let router = axum::Router::new().route(
        "/2010-04-01/Accounts/{account}/Messages.json",
        post(
            move |Path(account): Path<String>, headers: HeaderMap, body: Bytes| {
                let m = m.clone();
                async move { answer(&m, &account, &headers, &body) }
            },
        ),
    );
    let server = ca.serve(router).await;
    let base_url = server.url("");
    let g = gateway(&ca, ProviderKind::Twilio, |p| {
        p.twilio = Some(TwilioConfig {
            base_url,
            from: Some("+15005550006".into()),
            status_callback_url: Some(CALLBACK_URL.into()),
            throttle_retry_ms: 50,
            account_sid: Some(Secret::new(ACCOUNT_SID)),
            auth_token: Some(Secret::new(AUTH_TOKEN)),
            ..TwilioConfig::default()
        });
    })
    .await;
    let job = send_job(&g, 4).await;

    assert_eq!(*mock.unauthorised.lock(), 0);
    for form in mock.forms.lock().iter() {
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("From"), Some("+15005550006"));
        assert_eq!(get("StatusCallback"), Some(CALLBACK_URL));
        assert!(get("Body").unwrap_or("").starts_with("Hi N"));
    }
    let taken = mock.taken.lock().clone();
    assert_eq!(taken.len(), 3, "c0, c1 after its 429, c3: {taken:?}");
    let lines = outcomes(&g, &job).await;
    assert!(
        lines.iter().any(|l| l.0 == "c2" && l.1 == "failed"),
        "{lines:?}"
    );

    let sid = |to: &str| {
        taken
            .iter()
            .find(|(t, _)| t == to)
            .map(|(_, s)| s.clone())
            .expect("taken")
    };
    let (c0, c1, c3) = (
        sid("+8613123000000"),
        sid("+8613123000001"),
        sid("+8613123000003"),
    );
    // A status that is not final is accepted and changes nothing.
    let (s, tally) = status_callback(
        &g,
        &[
            ("AccountSid", ACCOUNT_SID),
            ("MessageSid", &c0),
            ("MessageStatus", "sent"),
            ("SmsSid", &c0),
            ("SmsStatus", "sent"),
        ],
        None,
    )
    .await;
    assert_eq!((s, tally["applied"].as_u64()), (200, Some(0)), "{tally}");
    // Forged: a signature over other values, or none.
    let forged = twilio_signature(
        CALLBACK_URL,
        &[("MessageSid", &c0), ("MessageStatus", "undelivered")],
    );
    let (s, _) = status_callback(
        &g,
        &[("MessageSid", &c0), ("MessageStatus", "delivered")],
        Some(&forged),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = status_callback(
        &g,
        &[("MessageSid", &c0), ("MessageStatus", "delivered")],
        Some(""),
    )
    .await;
    assert_eq!(s, 401);

    for (sid, status, error) in [
        (&c0, "delivered", None),
        (&c1, "delivered", None),
        (&c3, "undelivered", Some("30005")),
    ] {
        let mut params = vec![
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("From", "+15005550006"),
            ("MessageSid", sid.as_str()),
            ("MessageStatus", status),
            ("SmsSid", sid.as_str()),
            ("SmsStatus", status),
        ];
        if let Some(code) = error {
            params.push(("ErrorCode", code));
        }
        let (s, tally) = status_callback(&g, &params, None).await;
        assert_eq!(
            (s, tally["applied"].as_u64()),
            (200, Some(1)),
            "{status}: {tally}"
        );
    }
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
