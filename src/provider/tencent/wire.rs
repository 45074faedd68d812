//! Tencent Cloud SMS on the wire (`SendSms`, version 2021-01-11): the JSON body, and the
//! mapping of an answer to outcomes. Pure functions.
//!
//! One request carries the numbers of messages with the same text (`TemplateParamSet` is
//! shared by the request), `SessionContext` = herald's message id for a single message. The
//! answer has one `SendStatusSet` entry per number, with its `SerialNo` (the provider message
//! id, echoed as `sid` in receipts) and `Code`; an `Error` instead means the whole request was
//! refused. Codes (the whole table is in docs/providers-cloud.md):
//! - `Ok`: accepted;
//! - throttled: `LimitExceeded.PhoneNumberThirtySecondLimit` (for `throttle_retry_ms`),
//!   `RequestLimitExceeded*` (1 s);
//! - unavailable: `InternalError*`, `AuthFailure*`, `UnauthorizedOperation*`,
//!   `FailedOperation.InsufficientBalanceInSmsPackage`, `UnsupportedOperation.*`, any 5xx;
//! - permanent: `InvalidParameterValue.IncorrectPhoneNumber`, the other `LimitExceeded.*`
//!   (hourly and daily limits of a number), `FailedOperation.*` (blacklisted number,
//!   unapproved signature or template), and any other code.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::TencentConfig;
use crate::provider::cloud::unreadable_answer;
use crate::provider::https_client::RawAnswer;
use crate::provider::{OutboundMessage, SendOutcome};

pub const VERSION: &str = "2021-01-11";
pub const ACTION: &str = "SendSms";
pub const SERVICE: &str = "sms";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The throttle delay of `RequestLimitExceeded` (the API's own request rate).
pub const REQUEST_LIMIT_RETRY: Duration = Duration::from_secs(1);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    phone_number_set: Vec<String>,
    sms_sdk_app_id: &'a str,
    sign_name: &'a str,
    template_id: &'a str,
    template_param_set: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    session_context: Option<String>,
}

/// The JSON body of one request; every message of it has the same text.
pub fn body(messages: &[OutboundMessage], config: &TencentConfig) -> Vec<u8> {
    let text = messages.first().map(|m| m.body.as_str()).unwrap_or("");
    serde_json::to_vec(&Body {
        phone_number_set: messages.iter().map(|m| format!("+{}", m.phone())).collect(),
        sms_sdk_app_id: &config.sms_sdk_app_id,
        sign_name: &config.sign_name,
        template_id: &config.template_id,
        template_param_set: [text],
        session_context: match messages {
            [one] => Some(one.id.to_string()),
            _ => None,
        },
    })
    .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "Response")]
    response: Response,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Response {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    send_status_set: Option<Vec<SendStatus>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendStatus {
    #[serde(default)]
    serial_no: String,
    #[serde(default)]
    phone_number: String,
    code: String,
}

/// What a code means for its message(s). The error names the code only: the provider's
/// message text may quote the number, which logs must not carry.
pub fn outcome_of_code(code: &str, throttle: Duration) -> SendOutcome {
    let error = crate::provider::cloud::error_code(code);
    match code {
        "LimitExceeded.PhoneNumberThirtySecondLimit" => SendOutcome::Throttled {
            retry_after: throttle,
        },
        c if c.starts_with("RequestLimitExceeded") => SendOutcome::Throttled {
            retry_after: REQUEST_LIMIT_RETRY,
        },
        c if c.starts_with("InternalError")
            || c.starts_with("AuthFailure")
            || c.starts_with("UnauthorizedOperation")
            || c.starts_with("UnsupportedOperation")
            || c == "FailedOperation.InsufficientBalanceInSmsPackage" =>
        {
            SendOutcome::Unavailable { error }
        }
        _ => SendOutcome::Permanent { error },
    }
}

/// One outcome per message of the request from its complete answer.
pub fn map_answer(
    messages: &[OutboundMessage],
    answer: &RawAnswer,
    throttle: Duration,
) -> Vec<SendOutcome> {
    let all = |o: SendOutcome| vec![o; messages.len()];
    let parsed = serde_json::from_slice::<Envelope>(&answer.body).ok();
    let Some(Envelope { response }) = parsed else {
        return messages
            .iter()
            .map(|m| unreadable_answer(m, answer.status, REQUEST_LIMIT_RETRY))
            .collect();
    };
    if let Some(e) = response.error {
        return all(outcome_of_code(&e.code, throttle));
    }
    // Entries are matched by number (in order among repeats of a number).
    let mut by_phone: HashMap<String, Vec<SendStatus>> = HashMap::new();
    for s in response
        .send_status_set
        .unwrap_or_default()
        .into_iter()
        .rev()
    {
        let digits: String = s
            .phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        by_phone.entry(digits).or_default().push(s);
    }
    messages
        .iter()
        .map(
            |m| match by_phone.get_mut(&m.phone().to_string()).and_then(Vec::pop) {
                Some(s) if s.code == "Ok" && !s.serial_no.trim().is_empty() => {
                    SendOutcome::Accepted {
                        provider_message_id: s.serial_no.trim().to_string(),
                    }
                }
                Some(s) if s.code == "Ok" => SendOutcome::Accepted {
                    provider_message_id: m.id.to_string(),
                },
                Some(s) => outcome_of_code(&s.code, throttle),
                // Not mentioned: it may or may not have been taken.
                None => SendOutcome::Transient {
                    error: "not in SendStatusSet".into(),
                },
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, JobId, MessageId};

    fn message(to: u64) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::derive(&JobId::generate(), &to.to_string(), Channel::Sms),
            to: Address::Phone(to),
            channel: Channel::Sms,
            body: "Hi".into(),
            parts: 1,
            content: None,
        }
    }

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn the_body_names_the_app_template_and_session() {
        let m = message(8613123000001);
        let config = TencentConfig {
            sms_sdk_app_id: "1400006666".into(),
            sign_name: "Herald".into(),
            template_id: "449739".into(),
            ..TencentConfig::default()
        };
        let v: serde_json::Value =
            serde_json::from_slice(&body(std::slice::from_ref(&m), &config)).expect("json");
        assert_eq!(v["PhoneNumberSet"][0], "+8613123000001");
        assert_eq!(v["SmsSdkAppId"], "1400006666");
        assert_eq!(v["TemplateParamSet"][0], "Hi");
        assert_eq!(v["SessionContext"], m.id.to_string());
    }

    #[test]
    fn per_number_codes_map_as_the_table_says() {
        let m = [
            message(8613123000001),
            message(8613123000002),
            message(8613123000003),
            message(8613123000004),
        ];
        let body = r#"{"Response":{"SendStatusSet":[
            {"SerialNo":"2019:-0001","PhoneNumber":"+8613123000004","Code":"FailedOperation.PhoneNumberInBlacklist","Message":"blacklist"},
            {"SerialNo":"5000:1045","PhoneNumber":"+8613123000001","Fee":1,"Code":"Ok","Message":"send success"},
            {"SerialNo":"","PhoneNumber":"+8613123000002","Code":"LimitExceeded.PhoneNumberThirtySecondLimit","Message":"30s"},
            {"SerialNo":"","PhoneNumber":"+8613123000003","Code":"InvalidParameterValue.IncorrectPhoneNumber","Message":"bad"}
        ],"RequestId":"a0aabda6"}}"#;
        let o = map_answer(
            &m,
            &RawAnswer {
                status: 200,
                retry_after: None,
                body: body.as_bytes().to_vec(),
            },
            T,
        );
        assert_eq!(
            o[0],
            SendOutcome::Accepted {
                provider_message_id: "5000:1045".into()
            }
        );
        assert_eq!(o[1], SendOutcome::Throttled { retry_after: T });
        assert!(
            matches!(&o[2], SendOutcome::Permanent { error } if error.starts_with("InvalidParameterValue.IncorrectPhoneNumber"))
        );
        assert!(matches!(&o[3], SendOutcome::Permanent { .. }));
    }

    #[test]
    fn request_errors_apply_to_every_message() {
        let m = [message(8613123000001), message(8613123000002)];
        let answer = |code: &str| RawAnswer {
            status: 200,
            retry_after: None,
            body: format!(
                r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"x"}},"RequestId":"r"}}}}"#
            )
            .into_bytes(),
        };
        assert_eq!(
            map_answer(&m, &answer("RequestLimitExceeded"), T),
            vec![
                SendOutcome::Throttled {
                    retry_after: REQUEST_LIMIT_RETRY
                };
                2
            ]
        );
        assert!(matches!(
            map_answer(&m, &answer("AuthFailure.SignatureFailure"), T)[1],
            SendOutcome::Unavailable { .. }
        ));
        assert!(matches!(
            map_answer(&m, &answer("InternalError.Timeout"), T)[0],
            SendOutcome::Unavailable { .. }
        ));
    }
}
