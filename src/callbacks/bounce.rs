//! Email bounces: a delivery status notification (RFC 3464, `multipart/report;
//! report-type=delivery-status`) as the relay or the receiving system sent it back, posted raw
//! to `POST /v1/callbacks/{provider}/bounces`.
//!
//! Only what herald acts on is read, line by line (headers are unfolded first):
//! - the message: the `X-Herald-Message-Id` header of the returned headers (every message
//!   herald sends carries it), or else the local part of a `Message-ID` herald set;
//! - from the per-recipient fields: `Action` (only `failed` is a bounce; `delayed`,
//!   `delivered`, `relayed` and `expanded` change nothing), `Status` (`5.x.x` is a hard
//!   bounce, `4.x.x` a soft one) and `Final-Recipient` (`rfc822; address`).

use crate::domain::normalize_email;

/// Longest DSN read (the returned message is usually cut to its headers).
pub const MAX_DSN_BYTES: usize = 1 << 20;

/// What a DSN says about one of herald's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// herald's message id (`msg_…`).
    pub message_id: String,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// The failed recipient, normalized, when the DSN names a valid one.
    pub recipient: Option<String>,
}

impl Bounce {
    /// A permanent failure (5.x.x): the address is suppressed.
    pub fn is_hard(&self) -> bool {
        self.status.starts_with('5')
    }
}

/// Why a body is not a bounce herald can apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BounceError {
    #[error("body: not a delivery status notification (no Action and Status fields)")]
    NotADsn,
    #[error("body: names no message herald sent (no X-Herald-Message-Id or herald Message-ID)")]
    NoMessage,
}

/// Reads a DSN. `Ok(None)`: a valid report that is not a failure (delayed, delivered).
pub fn parse(raw: &[u8]) -> Result<Option<Bounce>, BounceError> {
    let text = String::from_utf8_lossy(raw);
    let mut action = None;
    let mut status = None;
    let mut recipient = None;
    let mut herald_id = None;
    let mut message_id = None;
    for line in unfold(&text) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "action" => {
                action.get_or_insert(value.to_ascii_lowercase());
            }
            "status" => {
                status.get_or_insert(value.split_whitespace().next().unwrap_or("").to_string());
            }
            "final-recipient" => {
                let address = value.split_once(';').map_or(value, |(_, a)| a).trim();
                recipient.get_or_insert(address.to_string());
            }
            "x-herald-message-id" => {
                herald_id.get_or_insert(value.to_string());
            }
            "message-id" => {
                let local = value
                    .trim_matches(['<', '>'])
                    .split('@')
                    .next()
                    .unwrap_or("");
                if local.starts_with("msg_") {
                    message_id.get_or_insert(local.to_string());
                }
            }
            _ => {}
        }
    }
    let (Some(action), Some(status)) = (action, status) else {
        return Err(BounceError::NotADsn);
    };
    let message_id = herald_id.or(message_id).ok_or(BounceError::NoMessage)?;
    if action != "failed" {
        return Ok(None);
    }
    Ok(Some(Bounce {
        message_id,
        status,
        recipient: recipient.and_then(|r| normalize_email(&r).ok()),
    }))
}

/// Header lines with continuation lines joined.
fn unfold(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
                continue;
            }
        }
        out.push(line.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a Postfix bounce (RFC 3464 with the returned headers).
    const DSN: &str = "From: MAILER-DAEMON@mx.example.net\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B1\"\r\n\r\n--B1\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n\r\n\
--B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
Final-Recipient: rfc822; Gone@Example.NET\r\nOriginal-Recipient: rfc822;gone@example.net\r\n\
Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n\
--B1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@example.com\r\nTo: gone@example.net\r\n\
Message-ID: <msg_abc@example.com>\r\nX-Herald-Message-Id:\r\n msg_abc\r\n\r\n--B1--\r\n";

    #[test]
    fn a_failed_report_names_the_message_status_and_recipient() {
        let b = parse(DSN.as_bytes()).expect("a dsn").expect("a failure");
        assert_eq!(b.message_id, "msg_abc");
        assert_eq!(b.status, "5.1.1");
        assert_eq!(b.recipient.as_deref(), Some("Gone@example.net"));
        assert!(b.is_hard());
        let soft = DSN.replace("Status: 5.1.1", "Status: 4.2.2");
        assert!(!parse(soft.as_bytes())
            .expect("dsn")
            .expect("failed")
            .is_hard());
    }

    #[test]
    fn delays_change_nothing_and_other_bodies_are_refused() {
        let delayed = DSN.replace("Action: failed", "Action: delayed");
        assert_eq!(parse(delayed.as_bytes()), Ok(None));
        assert_eq!(
            parse(b"Subject: hi\r\n\r\nhello"),
            Err(BounceError::NotADsn)
        );
        let foreign = DSN
            .replace("X-Herald-Message-Id:\r\n msg_abc\r\n", "")
            .replace("<msg_abc@", "<other@");
        assert_eq!(parse(foreign.as_bytes()), Err(BounceError::NoMessage));
    }
}
