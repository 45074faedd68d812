//! FCM HTTP v1 `messages:send`: the request body and the answer's meaning, as pure functions.
//! The error table follows FCM's `ErrorCode` reference: the `errorCode` of the
//! `google.firebase.fcm.v1.FcmError` detail, else the canonical `status`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::provider::cloud::error_code;
use crate::provider::content::PushContent;
use crate::provider::http::wire::parse_retry_after;
use crate::provider::https_client::RawAnswer;
use crate::provider::{AddressFate, SendOutcome};

/// The `messages:send` body for one device token.
pub fn body(token: &str, content: &PushContent) -> Vec<u8> {
    let mut message = json!({
        "token": token,
        "notification": {"title": content.title, "body": content.body},
    });
    if !content.data.is_empty() {
        message["data"] = json!(content.data);
    }
    serde_json::to_vec(&json!({ "message": message })).unwrap_or_default()
}

/// What an answer asks of the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The message's outcome.
    Outcome(SendOutcome),
    /// The access token was refused (401 `UNAUTHENTICATED`): fetch a new one and send again.
    Reauthenticate,
}

#[derive(Deserialize)]
struct Success {
    name: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorObject,
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl ErrorObject {
    /// The FCM error code of the `FcmError` detail.
    fn fcm_code(&self) -> Option<&str> {
        self.details
            .iter()
            .find(|d| {
                d["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
            })
            .and_then(|d| d["errorCode"].as_str())
    }

    /// Whether a `BadRequest` detail names the device token as the invalid field.
    fn token_is_invalid(&self) -> bool {
        self.details.iter().any(|d| {
            d["fieldViolations"]
                .as_array()
                .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
        })
    }
}

/// The meaning of an answer to `messages:send`; `throttle` is the wait after a quota error
/// without `Retry-After`.
pub fn map_answer(answer: &RawAnswer, throttle: Duration, now: DateTime<Utc>) -> Answer {
    if (200..300).contains(&answer.status) {
        let id = serde_json::from_slice::<Success>(&answer.body)
            .map(|s| s.name)
            .unwrap_or_default();
        return Answer::Outcome(SendOutcome::Accepted {
            provider_message_id: id,
        });
    }
    let error = serde_json::from_slice::<ErrorBody>(&answer.body)
        .unwrap_or_default()
        .error;
    let code = error.fcm_code().unwrap_or(&error.status).to_string();
    let described = if code.is_empty() {
        format!("http {}", answer.status)
    } else {
        format!("http {} {}", answer.status, error_code(&code))
    };
    let retry_after = || match answer.retry_after.as_deref() {
        Some(v) => parse_retry_after(Some(v), now),
        None => throttle,
    };
    Answer::Outcome(match (answer.status, code.as_str()) {
        (_, "UNREGISTERED") => SendOutcome::Unreachable {
            error: described,
            fate: AddressFate::Suppress,
        },
        (_, "INVALID_ARGUMENT") if error.token_is_invalid() => SendOutcome::Unreachable {
            error: described,
            fate: AddressFate::Suppress,
        },
        (401, "UNAUTHENTICATED") | (401, "") => return Answer::Reauthenticate,
        (_, "QUOTA_EXCEEDED") | (429, _) => SendOutcome::Throttled {
            retry_after: retry_after(),
        },
        (_, "UNAVAILABLE") | (_, "INTERNAL") | (500..=599, _) => {
            SendOutcome::Unavailable { error: described }
        }
        // THIRD_PARTY_AUTH_ERROR, SENDER_ID_MISMATCH, a payload FCM refused: not this
        // message's to send, and not the token's fault.
        _ => SendOutcome::Permanent { error: described },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>, body: Value) -> RawAnswer {
        RawAnswer {
            status,
            retry_after: retry_after.map(str::to_string),
            body: serde_json::to_vec(&body).expect("json"),
        }
    }

    fn fcm_error(status: u16, canonical: &str, code: &str) -> Value {
        json!({"error": {"code": status, "message": "m", "status": canonical, "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]}})
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn the_body_carries_token_notification_and_data() {
        let content = PushContent {
            title: "Sale".into(),
            body: "50% off".into(),
            data: [("sku".to_string(), "42".to_string())].into(),
        };
        let v: Value = serde_json::from_slice(&body("tok", &content)).expect("json");
        assert_eq!(
            v,
            json!({"message": {"token": "tok",
                "notification": {"title": "Sale", "body": "50% off"},
                "data": {"sku": "42"}}})
        );
    }

    #[test]
    fn documented_errors_map_to_outcomes() {
        let now = Utc::now();
        let ok = answer(200, None, json!({"name": "projects/p/messages/0:1"}));
        assert_eq!(
            map_answer(&ok, T, now),
            Answer::Outcome(SendOutcome::Accepted {
                provider_message_id: "projects/p/messages/0:1".into()
            })
        );
        let gone = answer(404, None, fcm_error(404, "NOT_FOUND", "UNREGISTERED"));
        assert!(matches!(
            map_answer(&gone, T, now),
            Answer::Outcome(SendOutcome::Unreachable {
                fate: AddressFate::Suppress,
                ..
            })
        ));
        let mut bad_token = fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        bad_token["error"]["details"]
            .as_array_mut()
            .expect("details")
            .push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "bad"}]}));
        assert!(matches!(
            map_answer(&answer(400, None, bad_token), T, now),
            Answer::Outcome(SendOutcome::Unreachable { .. })
        ));
        // An invalid argument that is not the token refuses the message only.
        let bad_payload = fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        assert!(matches!(
            map_answer(&answer(400, None, bad_payload), T, now),
            Answer::Outcome(SendOutcome::Permanent { .. })
        ));
        let quota = answer(
            429,
            Some("7"),
            fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
        );
        assert_eq!(
            map_answer(&quota, T, now),
            Answer::Outcome(SendOutcome::Throttled {
                retry_after: Duration::from_secs(7)
            })
        );
        let quota = answer(
            429,
            None,
            fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
        );
        assert_eq!(
            map_answer(&quota, T, now),
            Answer::Outcome(SendOutcome::Throttled { retry_after: T })
        );
        for status in [500, 503] {
            let down = answer(
                status,
                None,
                fcm_error(status, "UNAVAILABLE", "UNAVAILABLE"),
            );
            assert!(matches!(
                map_answer(&down, T, now),
                Answer::Outcome(SendOutcome::Unavailable { .. })
            ));
        }
        let unauth = answer(
            401,
            None,
            json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}),
        );
        assert_eq!(map_answer(&unauth, T, now), Answer::Reauthenticate);
        let third = answer(
            401,
            None,
            fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"),
        );
        assert!(matches!(
            map_answer(&third, T, now),
            Answer::Outcome(SendOutcome::Permanent { .. })
        ));
    }
}
