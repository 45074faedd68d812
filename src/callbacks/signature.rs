//! Authenticating provider callbacks: HMAC-SHA256 over the timestamp and the raw body.
//!
//! The provider sends two headers:
//!
//! - `X-Herald-Timestamp`: the Unix time in seconds at signing, as decimal digits;
//! - `X-Herald-Signature`: lowercase or uppercase hex of
//!   `HMAC-SHA256(secret, <X-Herald-Timestamp value> + "." + <raw request body bytes>)`,
//!   the timestamp exactly as sent in its header (e.g. `1795406400.{"message_id":...}`).
//!
//! A request is accepted when the timestamp is within the tolerance of now (±5 minutes by
//! default) and the signature matches one of the provider's secrets (two may be configured
//! while a secret is rotated). The check runs on the raw bytes before anything is parsed;
//! the MAC comparison is constant-time and every configured secret is always tried, so the
//! time taken says nothing about which secret, or which byte, was wrong.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Header carrying the signing time.
pub const TIMESTAMP_HEADER: &str = "x-herald-timestamp";
/// Header carrying the hex signature.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";

/// Why a callback is not authentic. Every variant is answered 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this provider has no callback secret configured")]
    NotConfigured,
    #[error("X-Herald-Timestamp and X-Herald-Signature headers are required")]
    Missing,
    #[error("X-Herald-Timestamp must be Unix seconds and X-Herald-Signature 64 hex digits")]
    Malformed,
    #[error("X-Herald-Timestamp is outside the accepted window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// Stable machine-readable code for the API.
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::NotConfigured => "callbacks_not_configured",
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Stale => "timestamp_out_of_window",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// A verified signature: its bytes, which identify the request for replay detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verified {
    pub signature: [u8; 32],
    pub timestamp: i64,
}

/// Checks signatures with a provider's secrets.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<Hmac<Sha256>>,
    tolerance_seconds: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .field("tolerance_seconds", &self.tolerance_seconds)
            .finish()
    }
}

fn keyed(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl Verifier {
    /// A verifier for `secrets` accepting timestamps within `tolerance_seconds` of now.
    pub fn new(secrets: &[Secret], tolerance_seconds: u64) -> Verifier {
        Verifier {
            keys: secrets.iter().map(|s| keyed(s.expose())).collect(),
            tolerance_seconds: tolerance_seconds.min(i64::MAX as u64) as i64,
        }
    }

    /// Whether any secret is configured.
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verifies the header values against the raw `body` at Unix time `now`.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, SignatureError> {
        if self.keys.is_empty() {
            return Err(SignatureError::NotConfigured);
        }
        let (Some(ts_text), Some(sig_text)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        let ts_text = ts_text.trim();
        let ts = parse_seconds(ts_text).ok_or(SignatureError::Malformed)?;
        let mut sig = [0u8; 32];
        hex::decode_to_slice(sig_text.trim(), &mut sig).map_err(|_| SignatureError::Malformed)?;
        if (now - ts).abs() > self.tolerance_seconds {
            return Err(SignatureError::Stale);
        }
        let mut ok = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(ts_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            ok |= mac.verify_slice(&sig).is_ok();
        }
        if ok {
            Ok(Verified {
                signature: sig,
                timestamp: ts,
            })
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Unix seconds: 1 to 12 ASCII digits.
fn parse_seconds(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The signature header value for `body` signed at `timestamp` (providers, tests and the
/// load test sign with this).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_406_400;

    fn verifier() -> Verifier {
        Verifier::new(&[Secret::new("old"), Secret::new("new")], 300)
    }

    #[test]
    fn either_rotation_secret_verifies() {
        let v = verifier();
        let body = br#"{"message_id":"a","status":"delivered"}"#;
        for secret in [&b"old"[..], b"new"] {
            let sig = sign(secret, "1795406400", body);
            assert!(v.verify(Some("1795406400"), Some(&sig), body, NOW).is_ok());
        }
        let sig = sign(b"other", "1795406400", body);
        assert_eq!(
            v.verify(Some("1795406400"), Some(&sig), body, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_body_and_timestamp_are_both_covered() {
        let v = verifier();
        let sig = sign(b"new", "1795406400", b"body");
        assert_eq!(
            v.verify(Some("1795406400"), Some(&sig), b"body ", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(Some("1795406401"), Some(&sig), b"body", NOW),
            Err(SignatureError::Mismatch)
        );
        assert!(v
            .verify(Some("1795406400"), Some(&sig.to_uppercase()), b"body", NOW)
            .is_ok());
    }

    #[test]
    fn stale_missing_and_malformed() {
        let v = verifier();
        let ts = (NOW - 301).to_string();
        let sig = sign(b"new", &ts, b"x");
        assert_eq!(
            v.verify(Some(&ts), Some(&sig), b"x", NOW),
            Err(SignatureError::Stale)
        );
        let ts = (NOW + 300).to_string();
        let sig = sign(b"new", &ts, b"x");
        assert!(v.verify(Some(&ts), Some(&sig), b"x", NOW).is_ok());
        assert_eq!(
            v.verify(None, Some(&sig), b"x", NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v.verify(Some("-5"), Some(&sig), b"x", NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v.verify(Some(&ts), Some("abc"), b"x", NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            Verifier::new(&[], 300).verify(Some(&ts), Some(&sig), b"x", NOW),
            Err(SignatureError::NotConfigured)
        );
    }
}
