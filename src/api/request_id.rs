//! Every request gets an id: the caller's `X-Request-Id` when it is a short visible token,
//! else a new one. It is echoed in the response and set on a span around the request, so
//! every log line written while the request runs carries it (`request_id` in JSON logs), and
//! an integrator's report of a failure can be found in the logs. Authentication adds the
//! caller's tenant to the same span.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header that carries the id both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-chosen id kept; a longer or odd one is replaced.
const MAX_LEN: usize = 64;

/// The caller's id if it is usable as it is: 1 to 64 characters of `A-Z a-z 0-9 - _ . :`.
fn callers_id(request: &Request) -> Option<String> {
    let v = request.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= MAX_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.to_string())
}

/// Names the request, runs it inside a span that carries the id, and echoes the id.
pub async fn tag(request: Request, next: Next) -> Response {
    let id =
        callers_id(&request).unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route,
        tenant = tracing::field::Empty
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(v: &str) -> Request {
        axum::http::Request::builder()
            .header("x-request-id", v)
            .body(axum::body::Body::empty())
            .expect("request")
    }

    #[test]
    fn a_callers_short_token_is_kept_and_anything_else_replaced() {
        assert_eq!(
            callers_id(&with_header("upstream-42.a:b_c")).as_deref(),
            Some("upstream-42.a:b_c")
        );
        assert_eq!(callers_id(&with_header("has space")), None);
        assert_eq!(callers_id(&with_header(&"x".repeat(65))), None);
        assert_eq!(callers_id(&with_header("")), None);
    }
}
