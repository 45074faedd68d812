//! Tracked links and opens: `GET /c/{token}` records a click and redirects to the link the
//! message's template held; `GET /o/{token}` records an email open and answers a 1×1 GIF;
//! `POST /u/{token}` is an email's one-click unsubscribe (RFC 8058: it opts the contact out
//! of email at once), and `GET /u/{token}` shows a page whose button posts it (a link
//! scanner following the URL unsubscribes nobody).
//! A forged or altered token, or one naming a link the template did not hold, is a 404 and
//! records nothing. No query parameter can change where a click goes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::app::AppState;
use crate::domain::{Channel, Consent};
use crate::links::{OPEN_LINK, UNSUBSCRIBE_LINK};
use crate::store::ConsentChange;

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

/// The contact an unsubscribe token names, if the token is genuine and its job known.
/// The tenant and contact an unsubscribe token names (through its message's job).
fn unsubscribe_contact(
    state: &AppState,
    token: &str,
) -> Result<(crate::access::TenantId, String), ApiError> {
    state
        .tracking
        .resolve(token)
        .filter(|(job, c)| {
            c.link == UNSUBSCRIBE_LINK && (c.recipient as usize) < job.audience.len()
        })
        .map(|(job, c)| {
            let contact = job.audience.contact_id(c.recipient).to_string();
            (job.spec.tenant.clone(), contact)
        })
        .ok_or_else(|| ApiError::not_found("unsubscribe link"))
}

/// `GET /u/{token}`: a small page asking to confirm; its button posts the same URL.
#[utoipa::path(
    get,
    path = "/u/{token}",
    operation_id = "show_unsubscribe_page",
    tag = "tracking",
    params(("token" = String, Path, description = "The signed unsubscribe token of one message")),
    responses(
        (status = 200, description = "A page with a button that confirms", content_type = "text/html", body = String),
        (status = 404, description = "A forged or altered token (`not_found`)", body = ErrorBody),
    )
)]
pub async fn unsubscribe_page(
    State(state): State<Arc<AppState>>,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    unsubscribe_contact(&state, &token)?;
    // The token is base62 (checked by its MAC above), so it is safe inside the HTML.
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head>\
         <body><form method=\"post\" action=\"/u/{token}\">\
         <p>Stop receiving these emails?</p><button type=\"submit\">Unsubscribe</button>\
         </form></body></html>"
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response())
}

/// `POST /u/{token}`: opts the contact out of email, at once and across running jobs.
/// Repeating it changes nothing more. The body (`List-Unsubscribe=One-Click`, or a form
/// post) is not needed: the signed token says who.
#[utoipa::path(
    post,
    path = "/u/{token}",
    operation_id = "unsubscribe",
    tag = "tracking",
    params(("token" = String, Path, description = "The signed unsubscribe token of one message")),
    responses(
        (status = 200, description = "Opted out of email (RFC 8058 one-click; repeating changes nothing)", content_type = "text/html", body = String),
        (status = 404, description = "A forged or altered token (`not_found`)", body = ErrorBody),
        (status = 503, description = "Not recorded durably (`unavailable`) or the state backend does not answer (`state_unavailable`); send it again", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (tenant, contact_id) = unsubscribe_contact(&state, &token)?;
    let change = ConsentChange {
        contact_id,
        channel: Channel::Email,
        consent: Consent::OptOut,
        source: "list_unsubscribe".into(),
        at: state.clock.now(),
    };
    state.callbacks.record_consent(&tenant, &[change]).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "<!doctype html><html><body><p>You are unsubscribed.</p></body></html>",
    )
        .into_response())
}
