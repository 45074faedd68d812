//! The WeChat sink: an HTTPS server (test CA) playing the official-account API herald calls,
//! `GET /cgi-bin/token` (checks the AppID and AppSecret, hands out access tokens) and
//! `POST /cgi-bin/message/template/send` (checks the token and the template, counts the
//! message per openid). One message in `refuse_every` is answered 45009 (the account's quota
//! is used up), which herald must treat as throttling and send again later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Query;
use axum::routing::{get, post};
use axum::Json;
use herald_testkit::https::{HttpsServer, TestCa};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::sink_tally::{refuse, Tally};

pub const APPID: &str = "wx-loadtest";
pub const SECRET: &str = "loadtest-secret";
pub const TEMPLATE: &str = "TPL-order-shipped";

struct State {
    tally: Arc<Tally>,
    issued: Mutex<Vec<String>>,
    sends: AtomicU64,
    refuse_every: u64,
}

fn token(s: &State, q: &HashMap<String, String>) -> Value {
    let field = |k: &str| q.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credential")
        || field("appid") != Some(APPID)
        || field("secret") != Some(SECRET)
    {
        return json!({"errcode": 40125, "errmsg": "invalid appsecret"});
    }
    let mut issued = s.issued.lock();
    let t = format!("wx-token-{}", issued.len());
    issued.push(t.clone());
    s.tally.issued();
    json!({"access_token": t, "expires_in": 7200})
}

fn send(s: &State, q: &HashMap<String, String>, body: &[u8]) -> Value {
    let t = q.get("access_token").cloned().unwrap_or_default();
    if !s.issued.lock().contains(&t) {
        return json!({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"});
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let (Some(openid), true) = (v["touser"].as_str(), v["template_id"] == TEMPLATE) else {
        return json!({"errcode": 40037, "errmsg": "invalid template_id"});
    };
    let n = s.sends.fetch_add(1, Ordering::Relaxed) + 1;
    if refuse(n, s.refuse_every) {
        s.tally.refused();
        return json!({"errcode": 45009, "errmsg": "reach max api daily quota limit"});
    }
    s.tally.took(openid);
    json!({"errcode": 0, "errmsg": "ok", "msgid": 200_228_000 + n})
}

/// Starts the sink with a CA of its own; answers the server (its URL and CA file) and tally.
pub async fn start(ca: &TestCa, refuse_every: u64) -> (HttpsServer, Arc<Tally>) {
    let tally = Arc::new(Tally::default());
    let state = Arc::new(State {
        tally: tally.clone(),
        issued: Mutex::new(Vec::new()),
        sends: AtomicU64::new(0),
        refuse_every,
    });
    let (s1, s2) = (state.clone(), state);
    let router = axum::Router::new()
        .route(
            "/cgi-bin/token",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let s = s1.clone();
                async move { Json(token(&s, &q)) }
            }),
        )
        .route(
            "/cgi-bin/message/template/send",
            post(
                move |Query(q): Query<HashMap<String, String>>, body: Bytes| {
                    let s = s2.clone();
                    async move { Json(send(&s, &q, &body)) }
                },
            ),
        );
    (ca.serve(router).await, tally)
}
