//! The push sink: one HTTPS server (test CA, HTTP/2 by ALPN) playing both push services herald
//! calls. FCM HTTP v1: `POST /token` checks the service account's RS256 assertion with its
//! public key and hands out access tokens, `POST /v1/projects/{project}/messages:send` checks
//! the bearer token. APNs: `POST /3/device/{token}` over HTTP/2 only, checking the ES256
//! provider token with the signing key's public key (each distinct token once) and the topic.
//! Each counts what it took per device token; one message in `refuse_every` is answered with a
//! documented transient error (FCM 429 with `Retry-After` and 503 in turn, APNs 429), which
//! herald must send again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use herald_testkit::https::{HttpsServer, TestCa};
use herald_testkit::jwt::{self, PublicKey};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::sink_tally::{refuse, Tally};

pub const PROJECT: &str = "herald-loadtest";
pub const CLIENT_EMAIL: &str = "herald@herald-loadtest.iam.gserviceaccount.com";
pub const TEAM: &str = "ABCDE12345";
pub const KEY_ID: &str = "KEY1234567";
pub const TOPIC: &str = "com.example.shop";

/// The keys herald signs with (PEM, for its config) and the sink checks with.
pub struct Keys {
    pub fcm_private_pem: String,
    pub apns_private_pem: String,
    fcm_public: PublicKey,
    apns_public: PublicKey,
}

impl Keys {
    /// Fresh RSA (FCM service account) and P-256 (APNs signing key) pairs.
    pub fn new() -> Keys {
        let (fcm_private_pem, fcm_public) = jwt::rsa_key_pair();
        let (apns_private_pem, apns_public) = jwt::p256_key_pair();
        Keys {
            fcm_private_pem,
            apns_private_pem,
            fcm_public,
            apns_public,
        }
    }
}

struct State {
    tally: Arc<Tally>,
    fcm_public: PublicKey,
    apns_public: PublicKey,
    token_uri: Mutex<String>,
    issued: Mutex<HashSet<String>>,
    provider_tokens: Mutex<HashSet<String>>,
    fcm_sends: AtomicU64,
    apns_sends: AtomicU64,
    fcm_taken: AtomicU64,
    apns_taken: AtomicU64,
    refuse_every: u64,
    /// Requests refused for a bad credential or body: must stay 0.
    problems: AtomicU64,
}

fn form_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn token_endpoint(s: &State, body: &[u8]) -> Response {
    let body = String::from_utf8_lossy(body);
    // The assertion is base64url and dots, which form encoding leaves as they are.
    let grant = form_field(&body, "grant_type").unwrap_or("");
    let verified = jwt::verify(form_field(&body, "assertion").unwrap_or(""), &s.fcm_public);
    let good = grant == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        && verified.as_ref().is_ok_and(|v| {
            v.claims["iss"] == CLIENT_EMAIL
                && v.claims["aud"] == *s.token_uri.lock()
                && v.claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        });
    if !good {
        s.problems.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#).into_response();
    }
    let mut issued = s.issued.lock();
    let token = format!("ya29.loadtest-{}", issued.len());
    issued.insert(token.clone());
    s.tally.issued();
    Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

fn fcm_error(status: StatusCode, canonical: &str, code: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": "loadtest", "status": canonical,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}});
    (status, Json(body)).into_response()
}

fn fcm_send(s: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !s.issued.lock().contains(bearer) {
        s.problems.fetch_add(1, Ordering::Relaxed);
        let body = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(token) = v["message"]["token"].as_str() else {
        s.problems.fetch_add(1, Ordering::Relaxed);
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
        );
    };
    let n = s.fcm_sends.fetch_add(1, Ordering::Relaxed) + 1;
    if refuse(n, s.refuse_every) {
        s.tally.refused();
        // Both documented transient answers, in turn.
        if (n / s.refuse_every).is_multiple_of(2) {
            let mut r = fcm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "QUOTA_EXCEEDED",
            );
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return r;
        }
        return fcm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "UNAVAILABLE",
        );
    }
    s.tally.took(token);
    s.fcm_taken.fetch_add(1, Ordering::Relaxed);
    Json(json!({"name": format!("projects/{PROJECT}/messages/0:{n}")})).into_response()
}

fn apns_reason(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "reason": reason }))).into_response()
}

fn apns_send(s: &State, version: Version, device: &str, headers: &HeaderMap) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if version != Version::HTTP_2 {
        s.problems.fetch_add(1, Ordering::Relaxed);
        return StatusCode::HTTP_VERSION_NOT_SUPPORTED.into_response();
    }
    let token = h("authorization").strip_prefix("bearer ").unwrap_or("");
    if !s.provider_tokens.lock().contains(token) {
        match jwt::verify(token, &s.apns_public) {
            Ok(v) if v.header["kid"] == KEY_ID && v.claims["iss"] == TEAM => {
                s.provider_tokens.lock().insert(token.to_string());
                s.tally.issued();
            }
            _ => {
                s.problems.fetch_add(1, Ordering::Relaxed);
                return apns_reason(StatusCode::FORBIDDEN, "InvalidProviderToken");
            }
        }
    }
    if h("apns-topic") != TOPIC {
        s.problems.fetch_add(1, Ordering::Relaxed);
        return apns_reason(StatusCode::BAD_REQUEST, "BadTopic");
    }
    let n = s.apns_sends.fetch_add(1, Ordering::Relaxed) + 1;
    if refuse(n, s.refuse_every) {
        s.tally.refused();
        return apns_reason(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");
    }
    s.tally.took(device);
    s.apns_taken.fetch_add(1, Ordering::Relaxed);
    let mut r = StatusCode::OK.into_response();
    if let Ok(id) = h("apns-id").parse() {
        r.headers_mut().insert("apns-id", id);
    }
    r
}

/// The running sink: its server and what each service counted.
pub struct PushSink {
    pub server: HttpsServer,
    /// Both services' counts (FCM and APNs device tokens never look alike).
    pub tally: Arc<Tally>,
    state: Arc<State>,
}

impl PushSink {
    /// Requests refused for a bad credential, version or body (a defect when above 0).
    pub fn problems(&self) -> u64 {
        self.state.problems.load(Ordering::Relaxed)
    }

    /// Messages taken by FCM and by APNs.
    pub fn split(&self) -> (u64, u64) {
        (
            self.state.fcm_taken.load(Ordering::Relaxed),
            self.state.apns_taken.load(Ordering::Relaxed),
        )
    }
}

/// Starts the sink with `ca`'s certificate, checking signatures with `keys`.
pub async fn start(ca: &TestCa, keys: &Keys, refuse_every: u64) -> PushSink {
    let state = Arc::new(State {
        tally: Arc::new(Tally::default()),
        fcm_public: keys.fcm_public.clone(),
        apns_public: keys.apns_public.clone(),
        token_uri: Mutex::new(String::new()),
        issued: Mutex::new(HashSet::new()),
        provider_tokens: Mutex::new(HashSet::new()),
        fcm_sends: AtomicU64::new(0),
        apns_sends: AtomicU64::new(0),
        fcm_taken: AtomicU64::new(0),
        apns_taken: AtomicU64::new(0),
        refuse_every,
        problems: AtomicU64::new(0),
    });
    let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
    let router = axum::Router::new()
        .route(
            "/token",
            post(move |body: Bytes| {
                let s = s1.clone();
                async move { token_endpoint(&s, &body) }
            }),
        )
        .route(
            &format!("/v1/projects/{PROJECT}/messages:send"),
            post(move |headers: HeaderMap, body: Bytes| {
                let s = s2.clone();
                async move { fcm_send(&s, &headers, &body) }
            }),
        )
        .route(
            "/3/device/{token}",
            post(
                move |Path(device): Path<String>, version: Version, headers: HeaderMap| {
                    let s = s3.clone();
                    async move { apns_send(&s, version, &device, &headers) }
                },
            ),
        );
    let server = ca.serve(router).await;
    *state.token_uri.lock() = server.url("/token");
    PushSink {
        tally: state.tally.clone(),
        server,
        state,
    }
}
