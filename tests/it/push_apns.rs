//! APNs against an HTTPS mock that speaks HTTP/2 only, as Apple's servers do: every request's
//! provider token is verified with the P-256 public key (ring, not herald's signer), its
//! headers checked against Apple's documentation, and the documented reasons answered by
//! device token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use herald::clock::ManualClock;
use herald::config::{ApnsConfig, ProviderKind};
use herald::domain::{Channel, MessageId};
use herald::provider::apns::ApnsProvider;
use herald::provider::content::PushContent;
use herald::provider::{AddressFate, SendOutcome};
use herald_testkit::https::{HttpsServer, TestCa};
use herald_testkit::jwt::{self, PublicKey};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::push_support::provider;

const TEAM: &str = "ABCDE12345";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "com.example.shop";
const OK: &str = "a1b2c3d4e5f60718";
const GONE: &str = "00aa00aa00aa00aa";
const BAD: &str = "bad0bad0";
const BUSY: &str = "0b0b0b0b";
const EXPIRING: &str = "e0e0e0e0";

#[derive(Default)]
struct Mock {
    problems: Mutex<Vec<String>>,
    /// (device, apns-id, provider token) of every authorised request.
    seen: Mutex<Vec<(String, String, String)>>,
    /// Provider tokens answered `ExpiredProviderToken`.
    expired: Mutex<Vec<String>>,
    /// Distinct provider tokens seen, in order.
    tokens: Mutex<Vec<String>>,
}

fn reason(status: u16, reason: &str) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        Json(json!({ "reason": reason })),
    )
        .into_response()
}

fn device(
    mock: &Mock,
    key: &PublicKey,
    version: Version,
    device: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if version != Version::HTTP_2 {
        mock.problems.lock().push(format!("{version:?}"));
        return StatusCode::HTTP_VERSION_NOT_SUPPORTED.into_response();
    }
    let token = h("authorization")
        .strip_prefix("bearer ")
        .unwrap_or("")
        .to_string();
    match jwt::verify(&token, key) {
        Ok(v)
            if v.header["kid"] == KEY_ID && v.claims["iss"] == TEAM && v.claims["iat"].is_i64() => {
        }
        Ok(v) => {
            mock.problems.lock().push(format!("token {v:?}"));
            return reason(403, "InvalidProviderToken");
        }
        Err(e) => {
            mock.problems.lock().push(format!("token: {e}"));
            return reason(403, "InvalidProviderToken");
        }
    }
    {
        let mut tokens = mock.tokens.lock();
        if !tokens.contains(&token) {
            tokens.push(token.clone());
        }
    }
    if mock.expired.lock().contains(&token) {
        return reason(403, "ExpiredProviderToken");
    }
    for (name, want) in [
        ("apns-topic", TOPIC),
        ("apns-push-type", "alert"),
        ("apns-priority", "10"),
    ] {
        if h(name) != want {
            mock.problems.lock().push(format!("{name} {:?}", h(name)));
            return reason(400, "BadTopic");
        }
    }
    let apns_id = h("apns-id");
    if uuid::Uuid::try_parse(&apns_id).map(|u| u.hyphenated().to_string()) != Ok(apns_id.clone()) {
        mock.problems.lock().push(format!("apns-id {apns_id:?}"));
        return reason(400, "BadMessageId");
    }
    let payload: Value = serde_json::from_slice(body).unwrap_or_default();
    if payload["aps"]["alert"]["title"] != "Flash sale" || payload["campaign"] != "c-9" {
        mock.problems.lock().push(format!("payload {payload}"));
        return reason(400, "PayloadEmpty");
    }
    mock.seen
        .lock()
        .push((device.to_string(), apns_id.clone(), token.clone()));
    match device {
        GONE => (
            StatusCode::GONE,
            Json(json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64})),
        )
            .into_response(),
        BAD => reason(400, "BadDeviceToken"),
        BUSY => reason(429, "TooManyRequests"),
        EXPIRING => {
            mock.expired.lock().push(token);
            reason(403, "ExpiredProviderToken")
        }
        _ => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut()
                .insert("apns-id", apns_id.parse().expect("header"));
            r
        }
    }
}

async fn setup(
    ca: &TestCa,
    clock: Arc<ManualClock>,
) -> (Arc<Mock>, HttpsServer, ApnsProvider, tempfile::TempDir) {
    let (private_pem, public) = jwt::p256_key_pair();
    let mock = Arc::new(Mock::default());
    let m = mock.clone();
    let router = axum::Router::new().route(
        "/3/device/{token}",
        post(
            move |Path(token): Path<String>, version: Version, headers: HeaderMap, body: Bytes| {
                let (m, key) = (m.clone(), public.clone());
                async move { device(&m, &key, version, &token, &headers, &body) }
            },
        ),
    );
    let server = ca.serve_http2_only(router).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("AuthKey.p8");
    std::fs::write(&key_file, private_pem).expect("write key");
    let mut p = provider(ca, ProviderKind::Apns, Channel::Push);
    p.apns = Some(ApnsConfig {
        base_url: server.url(""),
        team_id: TEAM.into(),
        key_id: KEY_ID.into(),
        key_file: key_file.display().to_string(),
        topic: TOPIC.into(),
        throttle_retry_ms: 1_500,
        ..ApnsConfig::default()
    });
    let apns = ApnsProvider::new(&p, clock).expect("apns provider");
    (mock, server, apns, dir)
}

fn content() -> PushContent {
    PushContent {
        title: "Flash sale".into(),
        body: "50% off".into(),
        data: [("campaign".to_string(), "c-9".to_string())].into(),
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[tokio::test]
async fn apns_sends_over_http2_with_one_provider_token_renewed_after_its_interval() {
    let ca = TestCa::new();
    let clock = Arc::new(ManualClock::new(now()));
    let (mock, server, apns, _dir) = setup(&ca, clock.clone()).await;
    let id = MessageId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let outcome = apns.send_push(id, OK, &content()).await;
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            provider_message_id: "01234567-89ab-cdef-0123-456789abcdef".into()
        },
        "{:?}",
        mock.problems.lock()
    );
    apns.send_push(MessageId::from_u128(2), OK, &content())
        .await;
    assert_eq!(mock.tokens.lock().len(), 1, "the provider token is reused");
    // 39 minutes on, the same token; at 40 (the configured interval), a new one.
    clock.set(now() + chrono::Duration::minutes(39));
    apns.send_push(MessageId::from_u128(3), OK, &content())
        .await;
    assert_eq!(mock.tokens.lock().len(), 1);
    clock.set(now() + chrono::Duration::minutes(41));
    apns.send_push(MessageId::from_u128(4), OK, &content())
        .await;
    assert_eq!(
        mock.tokens.lock().len(),
        2,
        "renewed after token_refresh_minutes"
    );
    assert!(
        mock.problems.lock().is_empty(),
        "{:?}",
        mock.problems.lock()
    );
    assert_eq!(server.h2_connections(), server.handshakes(), "HTTP/2 only");
    assert_eq!(server.handshakes(), 1, "one connection, reused");
}

#[tokio::test]
async fn apns_documented_reasons_suppress_tokens_throttle_and_renew_the_provider_token() {
    let ca = TestCa::new();
    let clock = Arc::new(ManualClock::new(now()));
    let (mock, _server, apns, _dir) = setup(&ca, clock).await;
    let content = content();
    let send = |device: &'static str| apns.send_push(MessageId::from_u128(9), device, &content);
    for device in [GONE, BAD, "not-hex!"] {
        let outcome = send(device).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Unreachable {
                    fate: AddressFate::Suppress,
                    ..
                }
            ),
            "{device}: {outcome:?}"
        );
    }
    assert_eq!(
        send(BUSY).await,
        SendOutcome::Throttled {
            retry_after: Duration::from_millis(1_500)
        }
    );
    // The token is declared expired on this request: herald signs a new one and sends once
    // more; the mock answers the same way for the new token, so the second refusal stands.
    let outcome = send(EXPIRING).await;
    assert!(
        matches!(outcome, SendOutcome::Unavailable { .. }),
        "{outcome:?}"
    );
    let tries: Vec<_> = mock
        .seen
        .lock()
        .iter()
        .filter(|s| s.0 == EXPIRING)
        .cloned()
        .collect();
    assert_eq!(tries.len(), 2, "sent once more, not more");
    assert_ne!(tries[0].2, tries[1].2, "with a new provider token");
    assert_eq!(tries[0].1, tries[1].1, "under the same apns-id");
    // Later sends use the new token and go through.
    assert!(matches!(send(OK).await, SendOutcome::Accepted { .. }));
    assert!(
        mock.problems.lock().is_empty(),
        "{:?}",
        mock.problems.lock()
    );
}
