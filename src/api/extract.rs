//! Query and path extractors whose refusals are the API's JSON errors: axum's own answer a
//! malformed query string or path segment with a plain-text 400, which no client can branch
//! on and which the OpenAPI document does not describe.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A query string read into `T`; a bad one is a 400 `invalid_field` naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_error(&rejection.body_text())),
        }
    }
}

/// Names the parameter axum's message names (`field: message`), else the query as a whole.
fn query_error(text: &str) -> ApiError {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    match detail.split_once(": ") {
        Some((field, message))
            if !field.is_empty()
                && field.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']')
                }) =>
        {
            ApiError::invalid(field, message)
        }
        _ => ApiError::invalid("query", detail),
    }
}

/// Path parameters read into `T`; a segment that is not valid (not UTF-8 once decoded) is a
/// 400 `invalid_field` naming the path.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid("path", rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_query_parameter_is_named() {
        let e =
            query_error("Failed to deserialize query string: limit: invalid digit found in string");
        assert_eq!(e.field.as_deref(), Some("limit"));
        let e = query_error(
            "Failed to deserialize query string: unknown field `x`, expected `dry_run`",
        );
        assert_eq!(e.field.as_deref(), Some("query"));
    }
}
