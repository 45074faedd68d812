//! Event webhooks: `POST /v1/webhooks` registers an endpoint (its secret is shown once),
//! `GET /v1/webhooks` lists them, `DELETE /v1/webhooks/{id}` removes one,
//! `POST /v1/webhooks/{id}/rotate` adds a new secret, and
//! `POST /v1/webhooks/{id}/replay?from=&to=` sends a time range of events again.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{parse_json, ApiError};
use crate::access::Principal;
use crate::app::AppState;
use crate::webhooks::events::TYPES;
use crate::webhooks::store::Endpoint;
use crate::webhooks::{signature, NewEndpoint, Webhooks, MAX_BATCH};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default = "one")]
    batch_size: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default = "yes")]
    keep_previous: bool,
}

fn yes() -> bool {
    true
}

/// Query of the replay route.
#[derive(Debug, Deserialize)]
pub struct ReplayQuery {
    from: Option<String>,
    to: Option<String>,
}

/// An endpoint as listed: without its secrets.
#[derive(Debug, Serialize)]
struct View<'a> {
    id: &'a str,
    url: &'a str,
    event_types: &'a [String],
    batch_size: usize,
    created_at: DateTime<Utc>,
    /// `active`, `failing` (deliveries are being retried) or `disabled` (a day of failures).
    status: &'static str,
    failing_since: Option<DateTime<Utc>>,
}

fn view(e: &Endpoint) -> View<'_> {
    View {
        id: &e.id,
        url: &e.url,
        event_types: &e.event_types,
        batch_size: e.batch_size,
        created_at: e.created_at,
        status: match (e.disabled, e.failing_since) {
            (true, _) => "disabled",
            (false, Some(_)) => "failing",
            (false, None) => "active",
        },
        failing_since: e.failing_since,
    }
}

fn webhooks(state: &AppState) -> Result<&Arc<Webhooks>, ApiError> {
    state.webhooks.as_ref().ok_or_else(|| {
        ApiError::unprocessable(
            "webhooks",
            "event webhooks need the dispatch journal: state.backend = \"embedded\", or \"redis\" without shared work",
        )
    })
}

/// The webhooks, when endpoint `id` is the caller's tenant's; another tenant's is not found.
fn owned<'a>(state: &'a AppState, by: &Principal, id: &str) -> Result<&'a Arc<Webhooks>, ApiError> {
    let hooks = webhooks(state)?;
    if hooks.owned_by(id, &by.tenant) {
        Ok(hooks)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

fn store_error(e: crate::webhooks::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "webhook store");
    ApiError::internal("storing the webhook endpoint")
}

fn check_secret(field: &str, secret: &Option<String>) -> Result<(), ApiError> {
    match secret {
        Some(s) => signature::key_of(s)
            .map(drop)
            .map_err(|e| ApiError::invalid(field, e.to_string())),
        None => Ok(()),
    }
}

/// `POST /v1/webhooks`: answers 201 with the endpoint and its secret.
pub async fn register(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hooks = webhooks(&state)?;
    let r: Register = parse_json(&body, "")?;
    let url = reqwest::Url::parse(r.url.trim())
        .map_err(|e| ApiError::invalid("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::invalid(
            "url",
            "must be an http:// or https:// URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(
            "url",
            "must not carry credentials; events are signed",
        ));
    }
    for (i, t) in r.event_types.iter().enumerate() {
        if !TYPES.contains(&t.as_str()) {
            return Err(ApiError::invalid(
                format!("event_types[{i}]"),
                format!("{t:?} is not one of {}", TYPES.join(", ")),
            ));
        }
    }
    if !(1..=MAX_BATCH).contains(&r.batch_size) {
        return Err(ApiError::invalid(
            "batch_size",
            format!("must be between 1 and {MAX_BATCH}"),
        ));
    }
    check_secret("secret", &r.secret)?;
    let e = hooks
        .register(NewEndpoint {
            url,
            event_types: r.event_types,
            secret: r.secret,
            batch_size: r.batch_size,
            tenant: by.tenant.clone(),
        })
        .await
        .map_err(store_error)?;
    let mut body = serde_json::to_value(view(&e)).map_err(|_| ApiError::internal("answering"))?;
    body["secret"] = json!(e.secrets.first());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/webhooks`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let all = webhooks(&state)?.list();
    let views: Vec<View<'_>> = all
        .iter()
        .filter(|e| e.tenant == by.tenant)
        .map(view)
        .collect();
    Ok(Json(json!({ "webhooks": views })).into_response())
}

/// `DELETE /v1/webhooks/{id}`: 204.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owned(&state, &by, &id)?;
    match webhooks(&state)?.delete(&id).await.map_err(store_error)? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(ApiError::not_found("webhook")),
    }
}

/// `POST /v1/webhooks/{id}/rotate`: answers the new secret.
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hooks = owned(&state, &by, &id)?;
    let r: Rotate = match body.iter().all(u8::is_ascii_whitespace) {
        true => Rotate {
            secret: None,
            keep_previous: true,
        },
        false => parse_json(&body, "")?,
    };
    check_secret("secret", &r.secret)?;
    match hooks
        .rotate(&id, r.secret, r.keep_previous)
        .await
        .map_err(store_error)?
    {
        Some(secret) => Ok(Json(json!({ "id": id, "secret": secret })).into_response()),
        None => Err(ApiError::not_found("webhook")),
    }
}

fn time(field: &str, v: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let v = v.ok_or_else(|| {
        ApiError::invalid(field, "required (RFC 3339, e.g. 2026-12-04T08:00:00Z)")
    })?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::invalid(field, format!("{v:?} is not an RFC 3339 time: {e}")))
}

/// `POST /v1/webhooks/{id}/replay?from=&to=`: 202 with the number of events sent again.
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, ApiError> {
    let hooks = owned(&state, &by, &id)?;
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    if to < from {
        return Err(ApiError::invalid("to", "must not be before from"));
    }
    match hooks.replay(&id, from, to).await.map_err(store_error)? {
        Some(n) => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "events": n }))).into_response())
        }
        None => Err(ApiError::not_found("webhook")),
    }
}
