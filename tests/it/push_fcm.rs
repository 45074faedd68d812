//! FCM HTTP v1 against an HTTPS mock that follows Google's documented API: the service
//! account's assertion is verified with the RSA public key (ring, not herald's signer) at the
//! mock's token endpoint, which hands out access tokens; `messages:send` checks the bearer
//! token and answers the documented errors by device token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use herald::clock::SystemClock;
use herald::config::{FcmConfig, ProviderKind};
use herald::domain::{Channel, MessageId};
use herald::provider::content::PushContent;
use herald::provider::fcm::FcmProvider;
use herald::provider::{AddressFate, SendOutcome};
use herald_testkit::https::{HttpsServer, TestCa};
use herald_testkit::jwt::{self, PublicKey};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::push_support::provider;

const PROJECT: &str = "herald-demo";
const CLIENT_EMAIL: &str = "herald@herald-demo.iam.gserviceaccount.com";

#[derive(Default)]
struct Mock {
    /// Tokens handed out, in order; `revoked` ones get 401.
    issued: Mutex<Vec<String>>,
    revoked: Mutex<Vec<String>>,
    /// What went wrong with any request, for the test to show.
    problems: Mutex<Vec<String>>,
    /// The `message` of every send that got through authorisation.
    sent: Mutex<Vec<Value>>,
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn token_endpoint(mock: &Mock, key: &PublicKey, token_uri: &str, body: &[u8]) -> Response {
    let form = form(body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        mock.problems
            .lock()
            .push(format!("grant_type {:?}", get("grant_type")));
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":"unsupported_grant_type"}"#,
        )
            .into_response();
    }
    let verified = match jwt::verify(get("assertion").unwrap_or(""), key) {
        Ok(v) => v,
        Err(e) => {
            mock.problems.lock().push(format!("assertion: {e}"));
            return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#).into_response();
        }
    };
    let c = &verified.claims;
    let lifetime = c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0);
    let now = chrono::Utc::now().timestamp();
    if c["iss"] != CLIENT_EMAIL
        || c["aud"] != token_uri
        || c["scope"] != "https://www.googleapis.com/auth/firebase.messaging"
        || !(1..=3600).contains(&lifetime)
        || (c["iat"].as_i64().unwrap_or(0) - now).abs() > 60
        || verified.header["kid"] != "key-1"
        || verified.header["typ"] != "JWT"
    {
        mock.problems.lock().push(format!("claims {verified:?}"));
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#).into_response();
    }
    let mut issued = mock.issued.lock();
    let token = format!("ya29.token-{}", issued.len());
    issued.push(token.clone());
    Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

fn fcm_error(status: u16, canonical: &str, code: &str) -> Response {
    let body = json!({"error": {"code": status, "message": "m", "status": canonical, "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}});
    (StatusCode::from_u16(status).expect("status"), Json(body)).into_response()
}

fn send_endpoint(mock: &Mock, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if !mock.issued.lock().contains(&bearer) || mock.revoked.lock().contains(&bearer) {
        let body = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let message = v["message"].clone();
    mock.sent.lock().push(message.clone());
    match message["token"].as_str().unwrap_or("") {
        "tok-gone" => fcm_error(404, "NOT_FOUND", "UNREGISTERED"),
        "tok-bad" => {
            let body = json!({"error": {"code": 400, "message": "The registration token is not a valid FCM registration token", "status": "INVALID_ARGUMENT", "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"},
                {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]}});
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        "tok-quota" => {
            let mut r = fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED");
            r.headers_mut()
                .insert("retry-after", "9".parse().expect("header"));
            r
        }
        "tok-down" => fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"),
        _ => {
            let n = mock.sent.lock().len();
            Json(json!({"name": format!("projects/{PROJECT}/messages/0:{n}")})).into_response()
        }
    }
}

async fn setup(ca: &TestCa) -> (Arc<Mock>, HttpsServer, FcmProvider, tempfile::TempDir) {
    let (private_pem, public) = jwt::rsa_key_pair();
    let mock = Arc::new(Mock::default());
    let token_uri = Arc::new(Mutex::new(String::new()));
    let (m1, m2, uri) = (mock.clone(), mock.clone(), token_uri.clone());
    let router = axum::Router::new()
        .route(
            "/token",
            post(move |body: Bytes| {
                let (m, key, uri) = (m1.clone(), public.clone(), uri.lock().clone());
                async move { token_endpoint(&m, &key, &uri, &body) }
            }),
        )
        .route(
            &format!("/v1/projects/{PROJECT}/messages:send"),
            post(move |headers: HeaderMap, body: Bytes| {
                let m = m2.clone();
                async move { send_endpoint(&m, &headers, &body) }
            }),
        );
    let server = ca.serve(router).await;
    *token_uri.lock() = server.url("/token");
    let dir = tempfile::tempdir().expect("tempdir");
    let account = dir.path().join("service-account.json");
    std::fs::write(
        &account,
        json!({"type": "service_account", "project_id": PROJECT, "private_key_id": "key-1",
            "private_key": private_pem, "client_email": CLIENT_EMAIL,
            "token_uri": server.url("/token")})
        .to_string(),
    )
    .expect("write key file");
    let mut p = provider(ca, ProviderKind::Fcm, Channel::Push);
    p.fcm = Some(FcmConfig {
        base_url: server.url(""),
        service_account_file: account.display().to_string(),
        ..FcmConfig::default()
    });
    let fcm = FcmProvider::new(&p, Arc::new(SystemClock)).expect("fcm provider");
    (mock, server, fcm, dir)
}

fn content() -> PushContent {
    PushContent {
        title: "Flash sale".into(),
        body: "50% off until midnight".into(),
        data: [("campaign".to_string(), "c-9".to_string())].into(),
    }
}

#[tokio::test]
async fn fcm_buys_one_access_token_with_a_verified_assertion_and_sends_with_it() {
    let ca = TestCa::new();
    let (mock, _server, fcm, _dir) = setup(&ca).await;
    for i in 0..3 {
        let outcome = fcm
            .send_push(MessageId::from_u128(i), "tok-ok", &content())
            .await;
        assert!(
            matches!(&outcome, SendOutcome::Accepted { provider_message_id } if provider_message_id.starts_with("projects/herald-demo/messages/")),
            "{outcome:?} {:?}",
            mock.problems.lock()
        );
    }
    assert!(
        mock.problems.lock().is_empty(),
        "{:?}",
        mock.problems.lock()
    );
    assert_eq!(mock.issued.lock().len(), 1, "the access token is reused");
    let sent = mock.sent.lock()[0].clone();
    assert_eq!(
        sent,
        json!({"token": "tok-ok", "notification": {"title": "Flash sale", "body": "50% off until midnight"},
            "data": {"campaign": "c-9"}})
    );
}

#[tokio::test]
async fn fcm_documented_errors_suppress_tokens_throttle_and_fail_over() {
    let ca = TestCa::new();
    let (mock, _server, fcm, _dir) = setup(&ca).await;
    let content = content();
    let send = |token: &'static str| fcm.send_push(MessageId::from_u128(7), token, &content);
    for token in ["tok-gone", "tok-bad"] {
        let outcome = send(token).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Unreachable {
                    fate: AddressFate::Suppress,
                    ..
                }
            ),
            "{token}: {outcome:?}"
        );
    }
    assert_eq!(
        send("tok-quota").await,
        SendOutcome::Throttled {
            retry_after: Duration::from_secs(9)
        }
    );
    assert!(matches!(
        send("tok-down").await,
        SendOutcome::Unavailable { .. }
    ));
    assert!(
        mock.problems.lock().is_empty(),
        "{:?}",
        mock.problems.lock()
    );
}

#[tokio::test]
async fn fcm_refused_access_token_is_replaced_and_the_message_sent_once_more() {
    let ca = TestCa::new();
    let (mock, _server, fcm, _dir) = setup(&ca).await;
    let first = fcm
        .send_push(MessageId::from_u128(1), "tok-ok", &content())
        .await;
    assert!(matches!(first, SendOutcome::Accepted { .. }), "{first:?}");
    // The token is revoked before its expiry (a key rotated, say): FCM answers 401.
    let old = mock.issued.lock()[0].clone();
    mock.revoked.lock().push(old);
    let second = fcm
        .send_push(MessageId::from_u128(2), "tok-ok", &content())
        .await;
    assert!(matches!(second, SendOutcome::Accepted { .. }), "{second:?}");
    assert_eq!(mock.issued.lock().len(), 2, "one new token");
    assert_eq!(
        mock.sent.lock().len(),
        2,
        "refused requests never reach the send"
    );
}
