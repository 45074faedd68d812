//! Event webhooks: `POST /v1/webhooks` registers an endpoint (its secret is shown once),
//! `GET /v1/webhooks` lists them, `DELETE /v1/webhooks/{id}` removes one,
//! `POST /v1/webhooks/{id}/rotate` adds a new secret, and
//! `POST /v1/webhooks/{id}/replay?from=&to=` sends a time range of events again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::read_whole;
use super::error::{parse_json, ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use crate::access::Principal;
use crate::app::AppState;
use crate::webhooks::events::TYPES;
use crate::webhooks::store::Endpoint;
use crate::webhooks::{signature, NewEndpoint, Webhooks, MAX_BATCH};

/// `POST /v1/webhooks`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// An http:// or https:// URL with a host and no credentials.
    #[schema(pattern = "^https?://[^/@]+")]
    url: String,
    /// The event types to send; all of them when empty.
    #[serde(default)]
    event_types: Vec<String>,
    /// `whsec_` and the base64 of 24 to 64 bytes; one is made when left out.
    #[serde(default)]
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]{32,88}={0,2}$")]
    secret: Option<String>,
    /// Events a request may carry, 1 to the batch cap.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    batch_size: usize,
}

fn one() -> usize {
    1
}

/// `POST /v1/webhooks/{id}/rotate`'s optional body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// The new secret (`whsec_` and base64); one is made when left out.
    #[serde(default)]
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]{32,88}={0,2}$")]
    secret: Option<String>,
    /// Sign with the previous secret too until the next rotation.
    #[serde(default = "yes")]
    #[schema(default = true)]
    keep_previous: bool,
}

fn yes() -> bool {
    true
}

/// Query of the replay route. Both are required; they are read as text so that a missing or
/// malformed one is answered naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// RFC 3339: events at or after this time.
    #[param(required = true, format = DateTime)]
    from: Option<String>,
    /// RFC 3339, not before `from`.
    #[param(required = true, format = DateTime)]
    to: Option<String>,
}

/// An endpoint as listed: without its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct View<'a> {
    id: &'a str,
    url: &'a str,
    #[schema(value_type = Vec<String>)]
    event_types: &'a [String],
    batch_size: usize,
    created_at: DateTime<Utc>,
    /// `active`, `failing` (deliveries are being retried) or `disabled` (a day of failures).
    #[schema(value_type = String, pattern = "^(active|failing|disabled)$")]
    status: &'static str,
    failing_since: Option<DateTime<Utc>>,
}

/// A registered endpoint, with the secret it signs with: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered<'a> {
    #[serde(flatten)]
    endpoint: View<'a>,
    secret: Option<&'a str>,
}

/// `GET /v1/webhooks`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList<'a> {
    webhooks: Vec<View<'a>>,
}

/// A rotation's answer: the new secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    id: String,
    secret: String,
}

/// A replay's answer: how many events were queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    id: String,
    events: usize,
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
            "event webhooks need durable state: state.backend = \"embedded\" or \"redis\"",
        )
    })
}

/// The webhooks, when endpoint `id` is the caller's tenant's; another tenant's is not found.
async fn owned<'a>(
    state: &'a AppState,
    by: &Principal,
    id: &str,
) -> Result<&'a Arc<Webhooks>, ApiError> {
    let hooks = webhooks(state)?;
    // In a fleet another instance may have registered or removed it a moment ago.
    hooks.refresh().await.map_err(store_error)?;
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
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "register_webhook",
    tag = "webhooks",
    request_body(content((Register = "application/json"))),
    responses(
        (status = 201, description = "Registered; `secret` is shown this once", body = Registered, links(
            ("RotateSecret" = (operation_id = "rotate_webhook_secret", parameters(("id" = "$response.body#/id")))),
            ("ReplayEvents" = (operation_id = "replay_webhook_events", parameters(("id" = "$response.body#/id")))),
            ("DeleteWebhook" = (operation_id = "delete_webhook", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 422, description = "Event webhooks need durable state, embedded or Redis (`unprocessable`, field `webhooks`)", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let hooks = webhooks(&state)?;
    let body = read_whole(body, state.config.config.server.max_json_body_bytes).await?;
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
    let answer = Registered {
        endpoint: view(&e),
        secret: e.secrets.first().map(String::as_str),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint, without secrets", body = WebhookList),
        (status = 422, description = "Event webhooks need durable state, embedded or Redis (`unprocessable`, field `webhooks`)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let hooks = webhooks(&state)?;
    hooks.refresh().await.map_err(store_error)?;
    let all = hooks.list();
    let views: Vec<View<'_>> = all
        .iter()
        .filter(|e| e.tenant == by.tenant)
        .map(view)
        .collect();
    Ok(Json(WebhookList { webhooks: views }).into_response())
}

/// `DELETE /v1/webhooks/{id}`: 204.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 204, description = "Stopped and forgotten"),
        (status = 404, description = "No such endpoint (`not_found`)", body = ErrorBody),
        (status = 422, description = "Event webhooks need durable state, embedded or Redis (`unprocessable`, field `webhooks`)", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    owned(&state, &by, &id).await?;
    match webhooks(&state)?.delete(&id).await.map_err(store_error)? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(ApiError::not_found("webhook")),
    }
}

/// `POST /v1/webhooks/{id}/rotate`: answers the new secret.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate",
    operation_id = "rotate_webhook_secret",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    request_body(description = "Optional", content((Rotate = "application/json"))),
    responses(
        (status = 200, description = "The new secret", body = Rotated),
        (status = 404, description = "No such endpoint (`not_found`)", body = ErrorBody),
        (status = 422, description = "Event webhooks need durable state, embedded or Redis (`unprocessable`, field `webhooks`)", body = ErrorBody),
    )
)]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let hooks = owned(&state, &by, &id).await?;
    let body = read_whole(body, state.config.config.server.max_json_body_bytes).await?;
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
        Some(secret) => Ok(Json(Rotated { id, secret }).into_response()),
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
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    operation_id = "replay_webhook_events",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id"), ReplayQuery),
    responses(
        (status = 202, description = "The events of that range are queued again", body = Replayed),
        (status = 404, description = "No such endpoint (`not_found`)", body = ErrorBody),
        (status = 422, description = "Event webhooks need durable state, embedded or Redis (`unprocessable`, field `webhooks`)", body = ErrorBody),
    )
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReplayQuery>,
) -> Result<Response, ApiError> {
    let hooks = owned(&state, &by, &id).await?;
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    if to < from {
        return Err(ApiError::invalid("to", "must not be before from"));
    }
    match hooks.replay(&id, from, to).await.map_err(store_error)? {
        Some(n) => Ok((StatusCode::ACCEPTED, Json(Replayed { id, events: n })).into_response()),
        None => Err(ApiError::not_found("webhook")),
    }
}
