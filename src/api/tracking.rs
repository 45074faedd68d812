//! Tracked links and opens: `GET /c/{token}` records a click and redirects to the link the
//! message's template held; `GET /o/{token}` records an email open and answers a 1×1 GIF.
//! A forged or altered token, or one naming a link the template did not hold, is a 404 and
//! records nothing. No query parameter can change where a click goes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::app::AppState;
use crate::links::OPEN_LINK;

/// A transparent 1×1 GIF.
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xFF, 0xFF, 0xFF, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
];

/// `GET /c/{token}`: 302 to the template's link.
#[utoipa::path(
    get,
    path = "/c/{token}",
    operation_id = "follow_tracked_link",
    tag = "tracking",
    params(("token" = String, Path, description = "The signed token of one link of one message")),
    responses(
        (status = 302, description = "To the link the message's template held; the click is recorded",
            headers(("Location" = String, description = "The link"))),
        (status = 400, description = "A malformed field (`invalid_field`, naming it) or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "A forged or altered token, or one naming no link (`not_found`)", body = ErrorBody),
    )
)]
pub async fn click(
    State(state): State<Arc<AppState>>,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (job, claims) = state
        .tracking
        .resolve(&token)
        .filter(|(job, c)| c.link != OPEN_LINK && (c.recipient as usize) < job.audience.len())
        .ok_or_else(|| ApiError::not_found("link"))?;
    let url = job
        .links()
        .and_then(|l| l.urls.get(usize::from(claims.link)))
        .and_then(|u| HeaderValue::from_str(u).ok())
        .ok_or_else(|| ApiError::not_found("link"))?;
    job.record_click(claims.recipient, usize::from(claims.link));
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// `GET /o/{token}`: the open pixel.
#[utoipa::path(
    get,
    path = "/o/{token}",
    operation_id = "open_pixel",
    tag = "tracking",
    params(("token" = String, Path, description = "The signed open token of one email")),
    responses(
        (status = 200, description = "A transparent 1×1 GIF; the open is recorded", content_type = "image/gif", body = Vec<u8>),
        (status = 400, description = "A malformed field (`invalid_field`, naming it) or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "A forged or altered token (`not_found`)", body = ErrorBody),
    )
)]
pub async fn open(
    State(state): State<Arc<AppState>>,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (job, claims) = state
        .tracking
        .resolve(&token)
        .filter(|(job, c)| {
            c.link == OPEN_LINK
                && (c.recipient as usize) < job.audience.len()
                && job.links().is_some_and(|l| l.pixel)
        })
        .ok_or_else(|| ApiError::not_found("pixel"))?;
    job.record_open(claims.recipient);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL.as_slice(),
    )
        .into_response())
}
