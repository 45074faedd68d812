//! The report pages under `/ui/`: server-rendered HTML for people (marketers, ops, finance)
//! who would rather look at a funnel than read JSON. Every figure comes from the functions
//! the JSON routes call; pages lay them out and count nothing themselves.
//!
//! - [`access`]: which keys may sign in ([`access::reader_of`]), the signed
//!   sign-in cookie, and the forms' CSRF tokens.
//! - [`throttle`]: failed sign-ins slowed and limited per client address.
//! - [`signin`]: the sign-in and sign-out forms.
//! - [`pages`]: the job list, a job's page and a campaign's page.
//! - [`report_page`]: a report laid out as a page.
//! - [`finance`]: the ledger summary by month, and its CSV.
//! - [`format`]: how numbers are written.
//! - [`assets`]: the embedded chart library, styles and script.
//!
//! Nothing under `/ui/` but the sign-in form and the assets answers without a valid
//! sign-in: the rest redirects to the sign-in form. Pages are never cached and may not be
//! framed; their scripts and styles come only from this server.

pub mod access;
pub mod assets;
pub mod finance;
pub mod format;
pub mod pages;
pub mod report_page;
pub mod signin;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;
use crate::config::UiConfig;
use access::{cookie_value, Access, SignedIn, SIGN_IN_COOKIE};
use throttle::Throttle;

/// What the pages keep between requests.
pub struct Ui {
    pub access: Access,
    pub throttle: Throttle,
}

impl Ui {
    /// Reads `[ui]`.
    pub fn new(config: &UiConfig) -> Ui {
        Ui {
            access: Access::new(config),
            throttle: Throttle::default(),
        }
    }
}

/// Every `/ui` route.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let signed_in = Router::new()
        .route("/ui/", get(pages::home))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/campaigns/{id}", get(pages::campaign))
        .route("/ui/finance", get(finance::page))
        .route("/ui/finance/by-month.csv", get(finance::csv))
        .route("/ui/sign-out", post(signin::sign_out))
        .route("/ui/{*rest}", get(pages::no_such_page))
        .route_layer(middleware::from_fn_with_state(state, require_sign_in));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/sign-in", get(signin::form).post(signin::submit))
        .route("/ui/assets/{version}/{name}", get(assets::serve))
        .merge(signed_in)
        .layer(middleware::from_fn(page_headers))
}

/// What every page's frame needs: where assets are, and the sign-out form's token (none on
/// pages shown before sign-in).
pub struct Chrome {
    pub assets: &'static str,
    pub sign_out: Option<String>,
}

impl Chrome {
    /// The frame of a signed-in page.
    pub fn signed_in(state: &AppState, signed_in: &SignedIn) -> Chrome {
        Chrome {
            assets: assets::base(),
            sign_out: Some(state.ui.access.sign_out_token(signed_in)),
        }
    }

    /// The frame of a page shown to anyone.
    pub fn open() -> Chrome {
        Chrome {
            assets: assets::base(),
            sign_out: None,
        }
    }
}

/// Redirects to the sign-in form (back to the page asked for afterwards) unless the request
/// carries a valid sign-in cookie; an invalid cookie is removed.
async fn require_sign_in(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| cookie_value(h, SIGN_IN_COOKIE));
    let now = state.clock.now();
    let signed_in = match cookie {
        Some(c) => state.ui.access.check(&state, c, now).await,
        None => None,
    };
    if let Some(signed_in) = signed_in {
        req.extensions_mut().insert(signed_in);
        return next.run(req).await;
    }
    let target = match *req.method() {
        Method::GET => signin::sign_in_url(req.uri()),
        _ => "/ui/sign-in".to_string(),
    };
    let mut response = Redirect::to(&target).into_response();
    if cookie.is_some() {
        if let Ok(v) = HeaderValue::from_str(&state.ui.access.sign_out_cookie()) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Headers on every `/ui` answer: scripts, styles and images from this server only, no
/// framing, no referrer; pages (not assets) are never cached.
async fn page_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Renders a page, or the error page if the template fails.
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            PageError::Internal.into_response()
        }
    }
}

/// Why a page could not be shown; answered as an HTML page with the matching status.
#[derive(Debug)]
pub enum PageError {
    /// No such job, campaign or page.
    NotFound(&'static str),
    /// A form whose CSRF token did not check.
    Forbidden,
    /// The reader's key may not read this (the ledger without `ledger:read`).
    NotAllowed(&'static str),
    /// Too many failed sign-ins from one address.
    TooMany(Duration),
    /// Worth asking again shortly (a job being restored after a restart).
    Unavailable(&'static str),
    Internal,
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            PageError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                format!("No such {what}"),
                format!("There is no {what} here. Find it in the job list."),
            ),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "The form has expired".to_string(),
                "Open the page again and send the form from there.".to_string(),
            ),
            PageError::NotAllowed(what) => (
                StatusCode::FORBIDDEN,
                "Not allowed".to_string(),
                format!("The key you signed in with may not read {what}."),
            ),
            PageError::TooMany(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins".to_string(),
                format!("Try again in {} seconds.", wait.as_secs().max(1)),
            ),
            PageError::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Not available yet".to_string(),
                why.to_string(),
            ),
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong".to_string(),
                "The page could not be made; the server's log says why.".to_string(),
            ),
        };
        let page = ErrorPage {
            chrome: Chrome::open(),
            title,
            message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>herald</title>error".to_string());
        let mut response = (status, Html(body)).into_response();
        if let PageError::TooMany(wait) = self {
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
