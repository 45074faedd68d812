//! Twilio's `StatusCallback`: a form-encoded POST (`MessageSid`, `MessageStatus`,
//! `ErrorCode`, `AccountSid`, `To`, ...) signed in `X-Twilio-Signature`: base64 of
//! HMAC-SHA1, keyed by the Auth Token, over the full callback URL as configured followed by
//! every POST parameter sorted by name, each name immediately followed by its value.
//!
//! `delivered` (and `read`) count as delivered, `undelivered` and `failed` as undelivered
//! (`ErrorCode` kept); every other status (`queued`, `sent`, `sending`, `accepted`, ...) is
//! not final and is accepted and ignored.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::callbacks::receipt::{Receipt, WireError};
use crate::callbacks::signature::SignatureError;
use crate::config::Secret;
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Verifies `X-Twilio-Signature` for the configured callback URL.
#[derive(Clone)]
pub struct TwilioSignature {
    auth_token: Option<Secret>,
    url: Option<String>,
}

impl std::fmt::Debug for TwilioSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSignature")
            .field("auth_token", &self.auth_token.is_some())
            .field("url", &self.url)
            .finish()
    }
}

/// The signature of `params` posted to `url`, keyed by `auth_token`.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The POST parameters of a form-encoded body, decoded, in body order.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

impl TwilioSignature {
    pub fn new(auth_token: Option<&Secret>, url: Option<String>) -> TwilioSignature {
        TwilioSignature {
            auth_token: auth_token.cloned(),
            url,
        }
    }

    /// Both the Auth Token and the callback URL it signs over are known.
    pub fn is_configured(&self) -> bool {
        self.auth_token.is_some() && self.url.is_some()
    }

    /// Checks the header value against the parameters.
    pub fn verify(
        &self,
        header: Option<&str>,
        params: &[(String, String)],
    ) -> Result<(), SignatureError> {
        let (Some(token), Some(url)) = (&self.auth_token, &self.url) else {
            return Err(SignatureError::NotConfigured);
        };
        let given = header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(SignatureError::Missing)?;
        let expected = signature(token.expose(), url, params);
        if crate::constant_time::eq(expected.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The receipt a status callback carries; none for a status that is not final.
pub fn parse(params: &[(String, String)]) -> Result<Vec<Receipt>, WireError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let missing = |field: &str| WireError {
        field: field.to_string(),
        message: "is required".into(),
    };
    let sid = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .ok_or_else(|| missing("MessageSid"))?;
    let status = get("MessageStatus")
        .or_else(|| get("SmsStatus"))
        .ok_or_else(|| missing("MessageStatus"))?;
    let status = match status.to_ascii_lowercase().as_str() {
        "delivered" | "read" => ReceiptStatus::Delivered,
        "undelivered" | "failed" => ReceiptStatus::Undelivered,
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Receipt {
        message_id: sid.to_string(),
        update: ReceiptUpdate { status, part: None },
        error_code: get("ErrorCode").map(str::to_string),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The worked example of Twilio's "Webhooks security" page
    /// (https://www.twilio.com/docs/usage/webhooks/webhooks-security): Auth Token `12345`,
    /// URL `https://mycompany.com/myapp.php?foo=1&bar=2` and five POST parameters.
    #[test]
    fn twilios_published_example_verifies() {
        let params = pairs(&[
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
            ("CallSid", "CA1234567890ABCDE"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature(b"12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        let v = TwilioSignature::new(Some(&Secret::new("12345")), Some(url.to_string()));
        assert_eq!(
            v.verify(Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), &params),
            Ok(())
        );
        let mut tampered = params.clone();
        tampered[0].1 = "9999".into();
        assert_eq!(
            v.verify(Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), &tampered),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(v.verify(None, &params), Err(SignatureError::Missing));
    }

    #[test]
    fn final_statuses_become_receipts_and_others_are_ignored() {
        let r = parse(&pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30005"),
        ]))
        .expect("receipt");
        assert_eq!(r[0].update.status, ReceiptStatus::Undelivered);
        assert_eq!(r[0].error_code.as_deref(), Some("30005"));
        assert!(
            parse(&pairs(&[("MessageSid", "SM1"), ("MessageStatus", "sent")]))
                .expect("ignored")
                .is_empty()
        );
        assert_eq!(
            parse(&pairs(&[("MessageStatus", "sent")]))
                .expect_err("no sid")
                .field,
            "MessageSid"
        );
    }
}
