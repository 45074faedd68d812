//! `GET /ui/sign-in` shows the form, `POST /ui/sign-in` takes an API key and sets the signed
//! sign-in cookie, `POST /ui/sign-out` removes it. Both forms carry a CSRF token
//! ([`super::access`]); a failed sign-in is slowed and counted ([`super::throttle`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;

use super::access::FORM_COOKIE;
use super::access::{cookie_value, form_token_ok, reader_of, Access, SignedIn};
use super::throttle::FAILURE_PAUSE;
use super::{render, Chrome, PageError};
use crate::app::AppState;

/// Largest form body read.
const MAX_FORM_BYTES: usize = 8 << 10;
/// Longest page address a sign-in returns to.
const MAX_NEXT: usize = 2048;
/// Where a sign-in goes without a page to return to.
const HOME: &str = "/ui/jobs";

/// The sign-in page.
#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    csrf: String,
    next: String,
    error: Option<&'static str>,
}

/// `?next=` of the form.
#[derive(Debug, Deserialize)]
pub struct FormQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The sign-in URL that returns to `uri` afterwards.
pub fn sign_in_url(uri: &Uri) -> String {
    let target = uri.path_and_query().map_or("/ui/", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    format!("/ui/sign-in?next={next}")
}

/// A page under `/ui/` to return to after sign-in, or the job list: never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && n.len() <= MAX_NEXT
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => HOME.to_string(),
    }
}

fn cookies(headers: &HeaderMap) -> &str {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Shows the form with a double-submit token, reusing the browser's if it has one.
fn show_form(
    state: &AppState,
    headers: &HeaderMap,
    next: String,
    status: StatusCode,
    error: Option<&'static str>,
) -> Response {
    let existing = cookie_value(cookies(headers), FORM_COOKIE)
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    let csrf = existing.map_or_else(Access::form_token, str::to_string);
    let page = SignInPage {
        chrome: Chrome::open(),
        csrf: csrf.clone(),
        next,
        error,
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    if existing.is_none() {
        response = with_cookie(response, &state.ui.access.form_cookie(&csrf));
    }
    response
}

/// `GET /ui/sign-in`.
pub async fn form(
    State(state): State<Arc<AppState>>,
    Query(q): Query<FormQuery>,
    headers: HeaderMap,
) -> Response {
    show_form(
        &state,
        &headers,
        safe_next(q.next.as_deref()),
        StatusCode::OK,
        None,
    )
}

/// The fields of a form body, by name (the last of a repeated name wins).
async fn read_form(body: Body) -> Result<std::collections::HashMap<String, String>, Response> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response())?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// `POST /ui/sign-in` with `key`, `csrf` and `next`.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let addr = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(c)| c.0.ip());
    let now = tokio::time::Instant::now();
    if let Some(wait) = state.ui.throttle.refused_for(addr, now) {
        return PageError::TooMany(wait).into_response();
    }
    let fields = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    if !form_token_ok(cookie_value(cookies(&headers), FORM_COOKIE), field("csrf")) {
        return PageError::Forbidden.into_response();
    }
    let next = safe_next(Some(field("next")));
    let key = field("key").trim();
    let Some(reader) = reader_of(&state, key).await else {
        state.ui.throttle.failed(addr, now);
        tokio::time::sleep(FAILURE_PAUSE).await;
        return show_form(
            &state,
            &headers,
            next,
            StatusCode::UNAUTHORIZED,
            Some("That key may not read reports."),
        );
    };
    let value = state.ui.access.sign_in(&reader, key, state.clock.now());
    with_cookie(
        Redirect::to(&next).into_response(),
        &state.ui.access.sign_in_cookie(&value),
    )
}

/// `POST /ui/sign-out` with `csrf`.
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    Extension(signed_in): Extension<SignedIn>,
    body: Body,
) -> Response {
    let fields = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let token = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !state.ui.access.sign_out_token_ok(&signed_in, token) {
        return PageError::Forbidden.into_response();
    }
    state.ui.access.sign_out(&signed_in, state.clock.now());
    with_cookie(
        Redirect::to("/ui/sign-in").into_response(),
        &state.ui.access.sign_out_cookie(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_pages_of_this_site() {
        assert_eq!(safe_next(Some("/ui/jobs/j1?x=1")), "/ui/jobs/j1?x=1");
        for bad in [
            "https://evil.example/ui/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/ui/\\evil",
            "/v1/jobs",
            "/ui/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), HOME, "{bad}");
        }
        assert_eq!(safe_next(None), HOME);
    }

    #[test]
    fn the_sign_in_url_carries_the_page_asked_for() {
        let uri: Uri = "/ui/jobs/j1?x=1&y=2".parse().unwrap();
        assert_eq!(
            sign_in_url(&uri),
            "/ui/sign-in?next=%2Fui%2Fjobs%2Fj1%3Fx%3D1%26y%3D2"
        );
    }
}
