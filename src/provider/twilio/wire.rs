//! Twilio Programmable Messaging on the wire: the form-encoded `Messages.json` request and the
//! mapping of its answer. Pure functions.
//!
//! One message per request (`To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`);
//! `201` answers the message resource, whose `sid` is the provider message id. Errors answer
//! `{"code", "message", "status"}`. Mapping (the whole table is in docs/providers-cloud.md):
//! - `429`, or code `20429` / `14107`: throttled for `Retry-After` (else `throttle_retry_ms`);
//! - `5xx`, and codes `20003` (authentication), `20005` (account suspended), `21606`
//!   (`From` cannot send), `30001` (queue overflow): unavailable;
//! - other `4xx`: permanent, keeping the code (`21211` invalid `To`, `21610` unsubscribed
//!   recipient, `21614` not a mobile number, `21408` region not enabled, ...).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::TwilioConfig;
use crate::provider::http::wire::parse_retry_after;
use crate::provider::https_client::RawAnswer;
use crate::provider::{OutboundMessage, SendOutcome};

/// The form body of one message.
pub fn body(m: &OutboundMessage, config: &TwilioConfig) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("To", &format!("+{}", m.phone()));
    if let Some(sid) = &config.messaging_service_sid {
        form.append_pair("MessagingServiceSid", sid);
    } else if let Some(from) = &config.from {
        form.append_pair("From", from);
    }
    form.append_pair("Body", &m.body);
    if let Some(url) = &config.status_callback_url {
        form.append_pair("StatusCallback", url);
    }
    form.finish()
}

#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// The outcome of one message from its complete answer.
pub fn map_answer(
    m: &OutboundMessage,
    answer: &RawAnswer,
    throttle: Duration,
    now: DateTime<Utc>,
) -> SendOutcome {
    let parsed = serde_json::from_slice::<Answer>(&answer.body).unwrap_or_default();
    let code = parsed.code.as_ref().map(|c| match c {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    // The code only: Twilio's message text quotes the number, which logs must not carry.
    let error = match &code {
        Some(c) => crate::provider::cloud::error_code(c),
        None => format!("http {}", answer.status),
    };
    match (answer.status, code.as_deref()) {
        (200..=299, _) => SendOutcome::Accepted {
            provider_message_id: parsed
                .sid
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| m.id.to_string()),
        },
        (429, _) | (_, Some("20429" | "14107")) => SendOutcome::Throttled {
            retry_after: match answer.retry_after.as_deref() {
                Some(v) => parse_retry_after(Some(v), now),
                None => throttle,
            },
        },
        (_, Some("20003" | "20005" | "21606" | "30001")) => SendOutcome::Unavailable { error },
        (400..=499, _) => SendOutcome::Permanent { error },
        _ => SendOutcome::Unavailable { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, JobId, MessageId};

    fn message() -> OutboundMessage {
        OutboundMessage {
            id: MessageId::derive(&JobId::generate(), "c1", Channel::Sms),
            to: Address::Phone(14155550100),
            channel: Channel::Sms,
            body: "Hi & bye".into(),
            parts: 1,
            content: None,
        }
    }

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            retry_after: retry_after.map(str::to_string),
            body: body.as_bytes().to_vec(),
        }
    }

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn the_form_carries_sender_text_and_callback() {
        let config = TwilioConfig {
            from: Some("+15005550006".into()),
            status_callback_url: Some("https://h.example/v1/callbacks/tw/receipts".into()),
            ..TwilioConfig::default()
        };
        let form: Vec<(String, String)> =
            form_urlencoded::parse(body(&message(), &config).as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("To"), Some("+14155550100"));
        assert_eq!(get("From"), Some("+15005550006"));
        assert_eq!(get("Body"), Some("Hi & bye"));
        assert_eq!(
            get("StatusCallback"),
            Some("https://h.example/v1/callbacks/tw/receipts")
        );
    }

    #[test]
    fn answers_map_as_the_table_says() {
        let now = Utc::now();
        let m = message();
        assert_eq!(
            map_answer(
                &m,
                &answer(201, None, r#"{"sid":"SM123","status":"queued"}"#),
                T,
                now
            ),
            SendOutcome::Accepted {
                provider_message_id: "SM123".into()
            }
        );
        assert_eq!(
            map_answer(
                &m,
                &answer(
                    429,
                    Some("7"),
                    r#"{"code":20429,"message":"Too Many Requests"}"#
                ),
                T,
                now
            ),
            SendOutcome::Throttled {
                retry_after: Duration::from_secs(7)
            }
        );
        let bad = map_answer(
            &m,
            &answer(
                400,
                None,
                r#"{"code":21211,"message":"The 'To' number +14155550100 is not a valid phone number.","status":400}"#,
            ),
            T,
            now,
        );
        // The code is kept; the message, which quotes the number, is not.
        assert_eq!(
            bad,
            SendOutcome::Permanent {
                error: "21211".into()
            }
        );
        assert!(matches!(
            map_answer(
                &m,
                &answer(401, None, r#"{"code":20003,"message":"Authenticate"}"#),
                T,
                now
            ),
            SendOutcome::Unavailable { .. }
        ));
        assert!(matches!(
            map_answer(&m, &answer(503, None, ""), T, now),
            SendOutcome::Unavailable { .. }
        ));
    }
}
