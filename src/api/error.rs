//! The one place errors become HTTP responses: a status, a stable machine-readable code, a
//! message for people, and the offending field when there is one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::domain::Hold;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// Extra members of the error object, for errors the client acts on in detail (e.g. the
    /// row errors of a refused snapshot upload).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(flatten)]
    details: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
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
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{field}: {message}"),
        );
        e.field = Some(field);
        e
    }

    /// 400: the body as a whole is unreadable.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no or wrong API key.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    /// 401 for a callback that is not authentic (bad, stale or missing signature).
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409: the request conflicts with current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 413: the body exceeds its cap.
    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 408: the request body stopped arriving (`server.body_idle_timeout_ms`).
    pub fn body_stalled() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_stalled",
            "the request body stopped arriving; send it again without pausing",
        )
    }

    /// 503 with Retry-After on a connection accepted past `server.max_connections`: such a
    /// connection answers only health, readiness and metrics.
    pub fn over_capacity() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "over_capacity",
            "the server holds as many connections as it serves; retry after Retry-After seconds",
        );
        e.retry_after = Some(1);
        e
    }

    /// 415: a content type this route does not take.
    pub fn unsupported_media(expected: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be {expected}"),
        )
    }

    /// 422: well-formed but not acceptable (e.g. no provider for the channel).
    pub fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            format!("{field}: {}", message.into()),
        );
        e.field = Some(field.to_string());
        e
    }

    /// 422 with a code of its own and extra members in the error object.
    pub fn unprocessable_with(
        code: &'static str,
        message: impl Into<String>,
        details: serde_json::Map<String, serde_json::Value>,
    ) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        e.details = Some(details);
        e
    }

    /// 503 with Retry-After: a dependency is down; nothing was accepted.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(2);
        e
    }

    /// 503 with Retry-After: the state backend does not answer, so nothing was accepted or
    /// changed by this request (a request that changes several batches may have applied the
    /// first ones; every intake request is safe to repeat).
    pub fn state_unavailable() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Hold::StateUnavailable.as_str(),
            "the state backend does not answer; repeat the request after Retry-After seconds",
        );
        e.retry_after = Some(STATE_RETRY_AFTER_SECONDS);
        e
    }

    /// 500 for what should not happen; details go to the log, not the client.
    pub fn internal(context: &str) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                details: self.details.as_ref(),
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
