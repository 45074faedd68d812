//! Checks a webhook request's Standard Webhooks signature the way a receiver would, with
//! ring's HMAC rather than herald's signer, so a test proves herald signs as the spec says.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Whether `webhook-signature` holds `v1,<base64 HMAC-SHA256>` of
/// `{webhook-id}.{webhook-timestamp}.{body}` keyed by the `whsec_` secret's bytes.
pub fn signed_right(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{}.{}.", get("webhook-id"), get("webhook-timestamp")).as_bytes());
    ctx.update(body);
    let expected = format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()));
    get("webhook-signature").split(' ').any(|s| s == expected)
}
