//! APNs `POST /3/device/{token}`: the payload, the request headers' values and the
//! answer's meaning, as pure functions. The reasons are those of Apple's "Handling
//! notification responses from APNs" table.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::domain::MessageId;
use crate::provider::cloud::error_code;
use crate::provider::content::PushContent;
use crate::provider::https_client::RawAnswer;
use crate::provider::{AddressFate, SendOutcome};

/// The request path for a device token (hex, as the device reported it).
pub fn path(token: &str) -> String {
    format!("/3/device/{token}")
}

/// Whether a device token has the shape APNs gives out: hex digits, an even number of them.
pub fn token_shape_ok(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 200
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `apns-id`: herald's message id in the canonical UUID form APNs requires; APNs reports
/// it back, so it is also the provider's message id.
pub fn apns_id(id: MessageId) -> String {
    uuid::Uuid::from_u128(id.as_u128()).hyphenated().to_string()
}

/// The JSON payload: the alert in `aps`, the data as custom keys beside it (never `aps`).
pub fn payload(content: &PushContent) -> Vec<u8> {
    let mut top = Map::new();
    for (k, v) in &content.data {
        if k != "aps" {
            top.insert(k.clone(), Value::String(v.clone()));
        }
    }
    top.insert(
        "aps".into(),
        json!({"alert": {"title": content.title, "body": content.body}}),
    );
    serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
}

/// What an answer asks of the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Outcome(SendOutcome),
    /// 403 `ExpiredProviderToken` (or `InvalidProviderToken`): sign a new token, send again.
    NewToken,
}

#[derive(Deserialize, Default)]
struct Reason {
    #[serde(default)]
    reason: String,
}

/// The meaning of an answer; `id` is the `apns-id` sent, `throttle` the wait after
/// `TooManyRequests`.
pub fn map_answer(answer: &RawAnswer, id: &str, throttle: Duration) -> Answer {
    if answer.status == 200 {
        return Answer::Outcome(SendOutcome::Accepted {
            provider_message_id: id.to_string(),
        });
    }
    let reason = serde_json::from_slice::<Reason>(&answer.body)
        .unwrap_or_default()
        .reason;
    let error = if reason.is_empty() {
        format!("http {}", answer.status)
    } else {
        format!("http {} {}", answer.status, error_code(&reason))
    };
    Answer::Outcome(match (answer.status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken") => SendOutcome::Unreachable {
            error,
            fate: AddressFate::Suppress,
        },
        (403, "ExpiredProviderToken") | (403, "InvalidProviderToken") => return Answer::NewToken,
        (429, _) => SendOutcome::Throttled {
            retry_after: throttle,
        },
        (500..=599, _) => SendOutcome::Unavailable { error },
        _ => SendOutcome::Permanent { error },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, reason: &str) -> RawAnswer {
        RawAnswer {
            status,
            retry_after: None,
            body: serde_json::to_vec(&json!({"reason": reason})).expect("json"),
        }
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn the_payload_puts_the_alert_in_aps_and_data_beside_it() {
        let content = PushContent {
            title: "Sale".into(),
            body: "50% off".into(),
            data: [
                ("sku".to_string(), "42".to_string()),
                ("aps".to_string(), "never".to_string()),
            ]
            .into(),
        };
        let v: Value = serde_json::from_slice(&payload(&content)).expect("json");
        assert_eq!(
            v,
            json!({"aps": {"alert": {"title": "Sale", "body": "50% off"}}, "sku": "42"})
        );
    }

    #[test]
    fn apns_id_is_a_canonical_uuid_of_the_message_id() {
        let id = apns_id(MessageId::from_u128(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ));
        assert_eq!(id, "01234567-89ab-cdef-0123-456789abcdef");
    }

    #[test]
    fn token_shapes() {
        assert!(token_shape_ok("a1b2c3d4"));
        assert!(!token_shape_ok("a1b2c3d"));
        assert!(!token_shape_ok("zz"));
        assert!(!token_shape_ok(""));
    }

    #[test]
    fn documented_reasons_map_to_outcomes() {
        let ok = RawAnswer {
            status: 200,
            retry_after: None,
            body: Vec::new(),
        };
        assert_eq!(
            map_answer(&ok, "id-1", T),
            Answer::Outcome(SendOutcome::Accepted {
                provider_message_id: "id-1".into()
            })
        );
        for (status, reason) in [(410, "Unregistered"), (400, "BadDeviceToken")] {
            assert!(matches!(
                map_answer(&answer(status, reason), "i", T),
                Answer::Outcome(SendOutcome::Unreachable {
                    fate: AddressFate::Suppress,
                    ..
                })
            ));
        }
        assert_eq!(
            map_answer(&answer(429, "TooManyRequests"), "i", T),
            Answer::Outcome(SendOutcome::Throttled { retry_after: T })
        );
        assert_eq!(
            map_answer(&answer(403, "ExpiredProviderToken"), "i", T),
            Answer::NewToken
        );
        assert!(matches!(
            map_answer(&answer(503, "ServiceUnavailable"), "i", T),
            Answer::Outcome(SendOutcome::Unavailable { .. })
        ));
        assert!(matches!(
            map_answer(&answer(400, "DeviceTokenNotForTopic"), "i", T),
            Answer::Outcome(SendOutcome::Permanent { .. })
        ));
    }
}
