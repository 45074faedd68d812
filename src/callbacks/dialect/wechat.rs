//! WeChat official-account event callbacks: authenticated by the URL's `signature` over the
//! account's token, `timestamp` and `nonce` ([`crate::provider::wechat::events`]), within the
//! signature window so an old `unsubscribe` cannot be replayed. In encrypted ("safe") mode
//! (`encrypt_type=aes`) the body is also signed by `msg_signature` and opened with the
//! account's EncodingAESKey ([`crate::provider::wechat::crypt`]). They arrive on `/v1/callbacks/{provider}/wechat`, not on
//! the receipts route: template send results become receipts, follows and unfollows consent.

use crate::callbacks::signature::SignatureError;
use crate::config::Secret;
use crate::provider::wechat::crypt::{self, CryptError, MessageKey};
use crate::provider::wechat::events::{self, EventError};

/// The account token a provider's events are signed with, and its message key when it
/// takes encrypted events.
#[derive(Debug)]
pub struct EventToken {
    token: Option<Secret>,
    key: Option<MessageKey>,
    tolerance_seconds: i64,
}

/// Why an encrypted body was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Not authentic (or no key to open it with).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Body(#[from] EventError),
    #[error(transparent)]
    Crypt(#[from] CryptError),
}

/// The query parameters WeChat signs with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    pub signature: String,
    pub timestamp: String,
    pub nonce: String,
    /// Only on the GET that verifies the URL.
    pub echostr: Option<String>,
    /// `aes` in encrypted or compatible mode; absent (or `raw`) in plaintext mode.
    pub encrypt_type: Option<String>,
    /// In encrypted mode: the signature over the body's `Encrypt` as well.
    pub msg_signature: String,
}

impl SignedQuery {
    /// Reads the parameters from a raw query string.
    pub fn parse(query: Option<&str>) -> SignedQuery {
        let mut q = SignedQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "signature" => q.signature = v.into_owned(),
                "timestamp" => q.timestamp = v.into_owned(),
                "nonce" => q.nonce = v.into_owned(),
                "echostr" => q.echostr = Some(v.into_owned()),
                "encrypt_type" => q.encrypt_type = Some(v.into_owned()),
                "msg_signature" => q.msg_signature = v.into_owned(),
                _ => {}
            }
        }
        q
    }
}

impl EventToken {
    pub fn new(
        token: Option<&Secret>,
        key: Option<MessageKey>,
        tolerance_seconds: u64,
    ) -> EventToken {
        EventToken {
            token: token.cloned(),
            key,
            tolerance_seconds: tolerance_seconds.min(i64::MAX as u64 / 4) as i64,
        }
    }

    /// The message of an encrypted body (`<xml>...<Encrypt>...</Encrypt></xml>`), once its
    /// `msg_signature` verifies; the query itself is verified by [`EventToken::verify`].
    pub fn open(&self, q: &SignedQuery, body: &str) -> Result<String, OpenError> {
        let (Some(token), Some(key)) = (&self.token, &self.key) else {
            return Err(SignatureError::NotConfigured.into());
        };
        if q.msg_signature.is_empty() {
            return Err(SignatureError::Missing.into());
        }
        let encrypt = events::encrypted_part(body)?;
        if !crypt::verify(
            token.expose(),
            &q.timestamp,
            &q.nonce,
            &encrypt,
            &q.msg_signature,
        ) {
            return Err(SignatureError::Mismatch.into());
        }
        Ok(key.open(&encrypt)?)
    }

    pub fn is_configured(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the query's signature, and that its timestamp is within the window of `now`.
    pub fn verify(&self, q: &SignedQuery, now: i64) -> Result<(), SignatureError> {
        let token = self.token.as_ref().ok_or(SignatureError::NotConfigured)?;
        if q.signature.is_empty() || q.timestamp.is_empty() || q.nonce.is_empty() {
            return Err(SignatureError::Missing);
        }
        let at: i64 = q.timestamp.parse().map_err(|_| SignatureError::Malformed)?;
        if !events::verify(token.expose(), &q.timestamp, &q.nonce, &q.signature) {
            return Err(SignatureError::Mismatch);
        }
        if (now - at).abs() > self.tolerance_seconds {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_query_verifies_within_its_window_only() {
        let t = EventToken::new(Some(&Secret::new("weixin")), None, 300);
        let q = SignedQuery::parse(Some(
            "signature=45dfb88302610d070a3eb4a41f03024dc856f86d&timestamp=1409304348&nonce=1507829345&openid=o1",
        ));
        assert_eq!(t.verify(&q, 1_409_304_348 + 300), Ok(()));
        assert_eq!(
            t.verify(&q, 1_409_304_348 + 301),
            Err(SignatureError::Stale)
        );
        let tampered = SignedQuery {
            nonce: "1507829346".into(),
            ..q.clone()
        };
        assert_eq!(
            t.verify(&tampered, 1_409_304_348),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            EventToken::new(None, None, 300).verify(&q, 1_409_304_348),
            Err(SignatureError::NotConfigured)
        );
        assert_eq!(
            t.verify(&SignedQuery::default(), 0),
            Err(SignatureError::Missing)
        );
    }
}
