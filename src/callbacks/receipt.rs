//! The delivery-receipt wire format of `POST /v1/callbacks/{provider}/receipts`.
//!
//! The body is one receipt object, a JSON array of them, or NDJSON (one object per line):
//!
//! ```json
//! {"message_id": "0A1B2C", "status": "delivered", "error_code": "000",
//!  "time": "2026-11-23T04:00:05Z", "part": 1, "parts": 2}
//! ```
//!
//! - `message_id` (alias `provider_message_id`): the id the provider answered at send time,
//!   a string or a number; compared per the provider's `message_id_format`.
//! - `status`: `delivered`, `undelivered`, `expired` or `rejected` (any case; the SMPP
//!   spellings `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD` too). `rejected` counts as
//!   undelivered.
//! - `error_code` (optional, string or number) is parsed but not stored yet; `time` is
//!   accepted and ignored: the per-minute series times a receipt by its arrival.
//! - `part` and `parts` (optional, 1-based, `parts` ≤ 64): for providers that report each part
//!   of a concatenated SMS; the message is delivered when every part is, and undelivered as
//!   soon as one part is not. Without them a receipt covers the whole message.
//!
//! Other fields are ignored (providers add their own). The whole body is validated before
//! anything is applied: one malformed receipt is a 400 naming it, and nothing is applied.

use serde::Deserialize;

use crate::dispatch::delivery::MAX_PARTS;
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};

/// A receipt as parsed, before its id is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub update: ReceiptUpdate,
    pub error_code: Option<String>,
}

/// A malformed body: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WireError {
    /// `receipts[3].status`, `line 2: status`, or `body`.
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum TextOrNumber {
    Text(String),
    Number(serde_json::Number),
}

impl TextOrNumber {
    pub(crate) fn into_text(self) -> String {
        match self {
            TextOrNumber::Text(s) => s,
            TextOrNumber::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(alias = "provider_message_id")]
    message_id: Option<TextOrNumber>,
    status: Option<String>,
    #[serde(default)]
    error_code: Option<TextOrNumber>,
    #[serde(default)]
    part: Option<u32>,
    #[serde(default)]
    parts: Option<u32>,
}

/// Parses a whole body; the first problem is reported.
pub fn parse(body: &[u8]) -> Result<Vec<Receipt>, WireError> {
    super::wire::parse_items(body, "receipts", convert)
}

fn convert(w: Wire) -> Result<Receipt, (&'static str, String)> {
    let message_id = w
        .message_id
        .map(TextOrNumber::into_text)
        .filter(|s| !s.trim().is_empty())
        .ok_or(("message_id", "is required".to_string()))?;
    let status = w.status.ok_or(("status", "is required".to_string()))?;
    let status = parse_status(&status).ok_or((
        "status",
        format!("{status:?} is not delivered, undelivered, expired or rejected"),
    ))?;
    let part = match (w.part, w.parts) {
        (None, None) | (None, Some(1)) => None,
        (Some(p), Some(n)) if n >= 1 && n <= u32::from(MAX_PARTS) && p >= 1 && p <= n => {
            Some((p as u8, n as u8))
        }
        (None, Some(_)) => return Err(("part", "is required when parts > 1".into())),
        (Some(_), None) => return Err(("parts", "is required with part".into())),
        _ => {
            return Err((
                "part",
                format!("must satisfy 1 <= part <= parts <= {MAX_PARTS}"),
            ))
        }
    };
    Ok(Receipt {
        message_id,
        update: ReceiptUpdate { status, part },
        error_code: w.error_code.map(TextOrNumber::into_text),
    })
}

fn parse_status(s: &str) -> Option<ReceiptStatus> {
    let s = s.trim();
    let is = |a: &str| s.eq_ignore_ascii_case(a);
    if is("delivered") || is("delivrd") {
        Some(ReceiptStatus::Delivered)
    } else if is("undelivered") || is("undeliv") {
        Some(ReceiptStatus::Undelivered)
    } else if is("expired") {
        Some(ReceiptStatus::Expired)
    } else if is("rejected") || is("rejectd") {
        Some(ReceiptStatus::Rejected)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_array_and_ndjson_all_parse() {
        let one = parse(br#"{"message_id":"a","status":"DELIVRD","extra":1}"#).expect("object");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].update.status, ReceiptStatus::Delivered);
        let arr = parse(br#"[{"message_id":1,"status":"rejected"},{"provider_message_id":"b","status":"expired","error_code":7}]"#)
            .expect("array");
        assert_eq!(arr[0].message_id, "1");
        assert_eq!(arr[1].error_code.as_deref(), Some("7"));
        let nd = parse(
            b"{\"message_id\":\"a\",\"status\":\"delivered\"}\n\n{\"message_id\":\"b\",\"status\":\"undelivered\",\"part\":2,\"parts\":3}\n",
        )
        .expect("ndjson");
        assert_eq!(nd[1].update.part, Some((2, 3)));
    }

    #[test]
    fn errors_name_the_item() {
        let e = parse(
            br#"[{"message_id":"a","status":"delivered"},{"message_id":"b","status":"sent"}]"#,
        )
        .expect_err("bad status");
        assert_eq!(e.field, "receipts[1].status");
        let e =
            parse(b"{\"message_id\":\"a\",\"status\":\"delivered\"}\n{\"status\":\"delivered\"}")
                .expect_err("no id");
        assert_eq!(e.field, "line 2: message_id");
        let e = parse(br#"{"message_id":"a","status":"delivered","part":3,"parts":2}"#)
            .expect_err("part");
        assert_eq!(e.field, "receipts[0].part");
        assert!(parse(b"").is_err());
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(b"{\"message_id\":").is_err());
    }
}
