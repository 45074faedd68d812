//! The one place errors become HTTP responses: a status, a stable machine-readable code, a
//! message for people, and the offending field when there is one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Hold;

/// Every code an error answer carries: stable and machine-readable, each with its one status.
/// Clients branch on these, so a code is never renamed or reused. Its serde name is
/// [`ErrorCode::as_str`] (a test holds them equal); the OpenAPI document lists them from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a field is missing or malformed (`field` names it).
    InvalidField,
    /// 400: the body as a whole is unreadable.
    BadRequest,
    /// 401: no or wrong API key.
    Unauthorized,
    /// 401: the provider has no callback secret configured.
    CallbacksNotConfigured,
    /// 401: a callback without its signature headers.
    SignatureMissing,
    /// 401: signature headers that are not a timestamp and 64 hex digits.
    SignatureMalformed,
    /// 401: a callback timestamp outside the accepted window.
    TimestampOutOfWindow,
    /// 401: a callback signature that does not match.
    SignatureMismatch,
    /// 403: the API key lacks the scope the route needs, or its tenant may not do this.
    Forbidden,
    /// 404.
    NotFound,
    /// 408: the request body stopped arriving.
    BodyStalled,
    /// 409: the Idempotency-Key was used with a different body.
    IdempotencyConflict,
    /// 409: a request with this Idempotency-Key is still being handled.
    IdempotencyInProgress,
    /// 409: the job cannot make this status change from its current status.
    InvalidTransition,
    /// 409: a job stopped at its budget resumes only with a higher one.
    BudgetNotRaised,
    /// 409: the contact snapshot is too old to send against.
    SnapshotStale,
    /// 413: the body exceeds its cap.
    BodyTooLarge,
    /// 415: a content type this route does not take.
    UnsupportedMediaType,
    /// 422: well-formed but not acceptable.
    Unprocessable,
    /// 422: a snapshot upload that would throw the live contacts away.
    SnapshotRejected,
    /// 422: a template breaks a content rule (`rule`, `variant`, `position` say where).
    ContentRule,
    /// 429: the job's recipients do not fit in its tenant's monthly quota (`quota` says how
    /// much is left and when it resets).
    QuotaExceeded,
    /// 500: what should not happen.
    Internal,
    /// 503: a dependency is down; nothing was accepted.
    Unavailable,
    /// 503: the state backend does not answer.
    StateUnavailable,
    /// 503: the server holds as many connections as it serves.
    OverCapacity,
}

impl ErrorCode {
    /// The code as clients read it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::CallbacksNotConfigured => "callbacks_not_configured",
            ErrorCode::SignatureMissing => "signature_missing",
            ErrorCode::SignatureMalformed => "signature_malformed",
            ErrorCode::TimestampOutOfWindow => "timestamp_out_of_window",
            ErrorCode::SignatureMismatch => "signature_mismatch",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BodyStalled => "body_stalled",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::IdempotencyInProgress => "idempotency_in_progress",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::BudgetNotRaised => "budget_not_raised",
            ErrorCode::SnapshotStale => "snapshot_stale",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::SnapshotRejected => "snapshot_rejected",
            ErrorCode::ContentRule => "content_rule",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::StateUnavailable => Hold::StateUnavailable.as_str(),
            ErrorCode::OverCapacity => "over_capacity",
        }
    }

    /// The HTTP status every answer with this code has.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidField | BadRequest => StatusCode::BAD_REQUEST,
            Unauthorized
            | CallbacksNotConfigured
            | SignatureMissing
            | SignatureMalformed
            | TimestampOutOfWindow
            | SignatureMismatch => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            BodyStalled => StatusCode::REQUEST_TIMEOUT,
            IdempotencyConflict
            | IdempotencyInProgress
            | InvalidTransition
            | BudgetNotRaised
            | SnapshotStale => StatusCode::CONFLICT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Unprocessable | SnapshotRejected | ContentRule => StatusCode::UNPROCESSABLE_ENTITY,
            QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable | StateUnavailable | OverCapacity => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<crate::callbacks::signature::SignatureError> for ErrorCode {
    fn from(e: crate::callbacks::signature::SignatureError) -> ErrorCode {
        use crate::callbacks::signature::SignatureError::*;
        match e {
            NotConfigured => ErrorCode::CallbacksNotConfigured,
            Missing => ErrorCode::SignatureMissing,
            Malformed => ErrorCode::SignatureMalformed,
            Stale => ErrorCode::TimestampOutOfWindow,
            Mismatch => ErrorCode::SignatureMismatch,
        }
    }
}

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// Extra members of the error object, for errors the client acts on in detail (e.g. the
    /// row errors of a refused snapshot upload).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Every error answer's JSON body: one `error` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// The error object. Some errors add members the client acts on (a refused snapshot's
/// `refusal` and row `errors`, a content rule's `rule`, `variant` and `position`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    pub code: ErrorCode,
    /// For people; never parsed.
    pub message: String,
    /// The offending field or header, or `line N: column` in an upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// An error with `code` (and its status) and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            details: None,
        }
    }

    /// 400: a field is missing or malformed.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = message.into();
        let mut e = ApiError::new(ErrorCode::InvalidField, format!("{field}: {message}"));
        e.field = Some(field);
        e
    }

    /// 400: the body as a whole is unreadable.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// 401: no or wrong API key.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            ErrorCode::Unauthorized,
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    /// 403: the key lacks `scope`.
    pub fn missing_scope(scope: crate::access::Scope) -> ApiError {
        ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key lacks the scope {scope} that this route needs"),
        )
    }

    /// 403: the caller's tenant may not do this, for the reason given.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// 401 for a callback that is not authentic (bad, stale or missing signature).
    pub fn unauthenticated(e: crate::callbacks::signature::SignatureError) -> ApiError {
        ApiError::new(e.into(), e.to_string())
    }

    /// 404.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 413: the body exceeds its cap.
    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 408: the request body stopped arriving (`server.body_idle_timeout_ms`).
    pub fn body_stalled() -> ApiError {
        ApiError::new(
            ErrorCode::BodyStalled,
            "the request body stopped arriving; send it again without pausing",
        )
    }

    /// 503 with Retry-After on a connection accepted past `server.max_connections`: such a
    /// connection answers only health, readiness and metrics.
    pub fn over_capacity() -> ApiError {
        let mut e = ApiError::new(
            ErrorCode::OverCapacity,
            "the server holds as many connections as it serves; retry after Retry-After seconds",
        );
        e.retry_after = Some(1);
        e
    }

    /// 415: a content type this route does not take.
    pub fn unsupported_media(expected: &str) -> ApiError {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {expected}"),
        )
    }

    /// 422: well-formed but not acceptable (e.g. no provider for the channel).
    pub fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            ErrorCode::Unprocessable,
            format!("{field}: {}", message.into()),
        );
        e.field = Some(field.to_string());
        e
    }

    /// Adds members to the error object, for errors the client acts on in detail.
    pub fn with_details(mut self, details: serde_json::Map<String, serde_json::Value>) -> ApiError {
        self.details = Some(details);
        self
    }

    /// 503 with Retry-After: a dependency is down; nothing was accepted.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::Unavailable, message);
        e.retry_after = Some(2);
        e
    }

    /// 503 with Retry-After: the state backend does not answer, so nothing was accepted or
    /// changed by this request (a request that changes several batches may have applied the
    /// first ones; every intake request is safe to repeat).
    pub fn state_unavailable() -> ApiError {
        let mut e = ApiError::new(
            ErrorCode::StateUnavailable,
            "the state backend does not answer; repeat the request after Retry-After seconds",
        );
        e.retry_after = Some(STATE_RETRY_AFTER_SECONDS);
        e
    }

    /// 500 for what should not happen; details go to the log, not the client.
    pub fn internal(context: &str) -> ApiError {
        ApiError::new(
            ErrorCode::Internal,
            format!("internal error while {context}"),
        )
    }
}

/// What a client is told to wait while the state backend does not answer: about two of its
/// health probes, so a retry after it finds the outage over if the backend is back.
pub const STATE_RETRY_AFTER_SECONDS: u64 = 2;

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::warn!(error = %e, "state store unavailable");
        ApiError::state_unavailable()
    }
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(e: crate::intake::IntakeError) -> ApiError {
        use crate::intake::IntakeError::*;
        let message = e.to_string();
        match e {
            KeyInProgress => ApiError::new(ErrorCode::IdempotencyInProgress, message),
            KeyConflict(_) => ApiError::new(ErrorCode::IdempotencyConflict, message),
            KeyJobRecovering(_) => ApiError::unavailable(message),
            KeyJobUnknown(_) => ApiError::not_found("job"),
            Plan(e) => ApiError::unprocessable(e.field(), message),
            Publish(source) => {
                tracing::error!(error = %source, "a job could not be published to the cluster");
                ApiError::unavailable(message)
            }
            Record(source) => {
                tracing::error!(error = %source, "a job could not be recorded");
                ApiError::unavailable(message)
            }
            QuotaExceeded(refused) => {
                let mut details = serde_json::Map::new();
                details.insert("asked".into(), refused.asked.into());
                if let Ok(quota) = serde_json::to_value(&refused.view) {
                    details.insert("quota".into(), quota);
                }
                let mut e = ApiError::new(ErrorCode::QuotaExceeded, message).with_details(details);
                e.field = Some("audience".into());
                e
            }
            Store(source) => source.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code,
                message: self.message,
                field: self.field,
                details: self.details,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// Parses JSON, naming the path of the offending field in the error. The value must be the
/// whole input: bytes after it other than whitespace (`{...}x`, `{...}}`) are a 400 naming
/// the offset of the first one, since such a body is not the one the client meant to send.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    prefix: &str,
) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = match (prefix, path.as_str()) {
            (p, ".") => p.trim_end_matches('.').to_string(),
            ("", p) => p.to_string(),
            (pre, p) => format!("{pre}{p}"),
        };
        if field.is_empty() || field == "." {
            ApiError::bad_request(format!("invalid JSON: {inner}"))
        } else {
            ApiError::invalid(field, inner.to_string())
        }
    })?;
    if de.end().is_err() {
        let at = trailing_offset(bytes);
        let at_line = prefix.trim_end_matches([' ', ':']);
        let message = format!("unexpected bytes after the JSON value at byte {at}");
        return Err(if at_line.is_empty() {
            ApiError::bad_request(format!("invalid JSON: {message}"))
        } else {
            ApiError::invalid(at_line, message)
        });
    }
    Ok(value)
}

/// The offset of the first byte after the first JSON value of `bytes` that is not
/// whitespace (called once that value parsed and something follows it). Callback bodies
/// name it too.
pub(crate) fn trailing_offset(bytes: &[u8]) -> usize {
    let mut values =
        serde_json::Deserializer::from_slice(bytes).into_iter::<serde::de::IgnoredAny>();
    let _ = values.next();
    let end = values.byte_offset();
    end + bytes[end..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::ErrorCode::{self, *};

    const ALL: [ErrorCode; 26] = [
        InvalidField,
        BadRequest,
        Unauthorized,
        CallbacksNotConfigured,
        SignatureMissing,
        SignatureMalformed,
        TimestampOutOfWindow,
        SignatureMismatch,
        Forbidden,
        NotFound,
        BodyStalled,
        IdempotencyConflict,
        IdempotencyInProgress,
        InvalidTransition,
        BudgetNotRaised,
        SnapshotStale,
        BodyTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        SnapshotRejected,
        ContentRule,
        QuotaExceeded,
        Internal,
        Unavailable,
        StateUnavailable,
        OverCapacity,
    ];

    #[test]
    fn the_code_in_the_answer_is_the_one_the_openapi_document_lists() {
        for code in ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }
}
