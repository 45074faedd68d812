//! Signed provider callbacks and tracking helpers for black-box tests.

use herald::callbacks::signature::sign;
use herald::config::{Config, Secret};
use herald::domain::JobId;
use herald::links::TokenClaims;
use reqwest::Method;
use serde_json::Value;

use crate::gateway::Gateway;

pub const SECRET: &str = "test-callback-secret";
pub const NEXT_SECRET: &str = "test-callback-secret-next";
pub const LINK_SECRET: &str = "test-link-secret";

/// Callbacks on for the sandbox (its own simulated receipts pushed out of the test's time),
/// a known link secret, and a fast sweep.
pub fn with_callbacks(c: &mut Config) {
    c.providers[0].callback_secrets = vec![Secret::new(SECRET)];
    c.providers[0].receipt_delay_ms = 86_400_000;
    c.tracking.link_secret = Some(Secret::new(LINK_SECRET));
    c.callbacks.sweep_interval_ms = 20;
}

/// The sandbox's provider message id of a `msg_<hex>` message id.
pub fn sandbox_id(message_id: &str) -> String {
    format!("sbx-{}", message_id.trim_start_matches("msg_"))
}

impl Gateway {
    /// The gateway clock as Unix seconds.
    pub fn unix_now(&self) -> i64 {
        use herald::clock::Clock;
        self.clock.now().timestamp()
    }

    /// POSTs `body` to `path` signed with `secret` at Unix time `ts`.
    pub async fn post_signed_at(
        &self,
        path: &str,
        body: &str,
        secret: &str,
        ts: i64,
    ) -> (u16, Value) {
        let ts = ts.to_string();
        let sig = sign(secret.as_bytes(), &ts, body.as_bytes());
        let r = self
            .http
            .post(self.url(path))
            .header("x-herald-timestamp", ts)
            .header("x-herald-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` to `path`, signed now with the test secret.
    pub async fn post_signed(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_signed_at(path, body, SECRET, self.unix_now())
            .await
    }

    /// The tracking token of recipient `recipient`'s link `link` in job `id`, as the worker
    /// filled it into the message.
    pub fn token(&self, id: &str, recipient: u32, link: u8) -> String {
        let state = &self.running.as_ref().expect("running").state;
        let job = state
            .dispatcher
            .get(&JobId::parse(id).expect("job id"))
            .expect("job");
        let tag = job.links().expect("tracked links").tag;
        state.tracking.signer().sign(TokenClaims {
            job_tag: tag,
            recipient,
            link,
        })
    }

    /// A job report (JSON).
    pub async fn report(&self, path: &str) -> Value {
        let r = self.req(Method::GET, path).send().await.expect("send");
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.expect("json")
    }
}

/// One receipt line.
pub fn receipt(id: &str, status: &str) -> Value {
    serde_json::json!({ "message_id": id, "status": status })
}
