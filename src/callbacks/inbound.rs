//! The inbound-reply wire format of `POST /v1/callbacks/{provider}/inbound`: one object, a
//! JSON array or NDJSON (like receipts), each
//!
//! ```json
//! {"from": "+8613123079337", "text": "STOP"}
//! ```
//!
//! `from` (alias `sender`) is the replying phone (E.164, or national in the default
//! region); `text` (alias `body`) the reply. Other fields are ignored. Keyword replies change
//! the sender's consent for the provider's channel (`keywords.rs`); other replies are counted
//! as ignored. Reply texts are never logged.

use serde::Deserialize;

use super::receipt::{TextOrNumber, WireError};

/// The longest reply text accepted.
pub const MAX_TEXT_BYTES: usize = 4096;

/// One inbound reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub from: String,
    pub text: String,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(alias = "sender")]
    from: Option<TextOrNumber>,
    #[serde(alias = "body")]
    text: Option<String>,
}

/// Parses a whole body; the first problem is reported.
pub fn parse(body: &[u8]) -> Result<Vec<Inbound>, WireError> {
    super::wire::parse_items(body, "messages", |w: Wire| {
        let from = w
            .from
            .map(TextOrNumber::into_text)
            .filter(|s| !s.trim().is_empty())
            .ok_or(("from", "is required".to_string()))?;
        let text = w.text.ok_or(("text", "is required".to_string()))?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(("text", format!("is longer than {MAX_TEXT_BYTES} bytes")));
        }
        Ok(Inbound { from, text })
    })
}

/// What a batch of replies did, by reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct InboundTally {
    pub received: u64,
    /// Opt-out replies from a known contact (every contact with that number is opted out).
    pub opted_out: u64,
    /// Opt-in replies from a known contact.
    pub opted_in: u64,
    /// Opt-out replies from a number no contact has: the number is suppressed instead.
    pub suppressed_unknown_sender: u64,
    /// Opt-in replies from an unknown or unparsable number, and opt-outs from an unparsable one.
    pub unmatched: u64,
    /// Replies that are not keyword replies.
    pub ignored: u64,
    /// True when this exact signed request was already applied (nothing was applied again).
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_numbers() {
        let m = parse(
            br#"[{"sender": 8613123079337, "body": "STOP"}, {"from": "+1 202", "text": "hi"}]"#,
        )
        .expect("parses");
        assert_eq!(m[0].from, "8613123079337");
        assert_eq!(m[1].text, "hi");
        let e = parse(br#"{"text": "STOP"}"#).expect_err("no sender");
        assert_eq!(e.field, "messages[0].from");
    }
}
