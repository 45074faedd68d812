//! API keys: `POST /v1/keys` makes one (its token is shown once), `GET /v1/keys` lists them
//! without tokens, `DELETE /v1/keys/{id}` revokes one at once, on every instance. All need
//! `admin`; a tenant's administrators manage their own tenant's keys, the default tenant's
//! manage every tenant's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::read_whole;
use super::error::{parse_json, ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::access::{KeyRequestError, Principal, Scopes, StoredKey, TenantId};
use crate::app::AppState;

/// Longest key label kept.
const MAX_NAME: usize = 200;

/// A key to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A label for people ("finance auditor"): 1 to 200 printable characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// At least one of `jobs:write`, `jobs:read`, `reports:read`, `ledger:read`,
    /// `snapshot:write`, `suppressions:write`, `webhooks:write`, `admin`; only scopes the
    /// caller holds.
    #[schema(min_items = 1)]
    scopes: Vec<String>,
    /// The tenant the key belongs to (the caller's when absent): 1 to 63 of `a-z`, `0-9`,
    /// `-`, `_`.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: Option<String>,
}

/// A key as listed: never its token or digest.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    id: String,
    name: String,
    tenant: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

/// A key just made, with its token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    /// The token for `Authorization: Bearer`; herald keeps only its digest.
    key: String,
}

/// `GET /v1/keys`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyView>,
}

fn view(k: &StoredKey) -> KeyView {
    KeyView {
        id: k.id.clone(),
        name: k.name.clone(),
        tenant: k.tenant.to_string(),
        scopes: k.scopes.iter().map(|s| s.as_str().to_string()).collect(),
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
}

fn request_error(e: KeyRequestError) -> ApiError {
    match e {
        KeyRequestError::NotFound => ApiError::not_found("key"),
        KeyRequestError::ScopeNotHeld(_) => ApiError::forbidden(e.to_string()),
        KeyRequestError::OtherTenant => ApiError::forbidden(e.to_string()),
        KeyRequestError::Store(_) => ApiError::state_unavailable(),
    }
}

/// `POST /v1/keys`: answers 201 with the key's record and its `key`, shown only here.
#[utoipa::path(
    post,
    path = "/v1/keys",
    operation_id = "create_api_key",
    tag = "keys",
    request_body(content((NewKey = "application/json"))),
    responses(
        (status = 201, description = "Made; `key` is shown this once", body = CreatedKey, links(
            ("RevokeKey" = (operation_id = "revoke_api_key", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 503, description = "The state backend does not answer (`state_unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_whole(body, state.config.config.server.max_json_body_bytes).await?;
    let c: NewKey = parse_json(&body, "")?;
    let name = c.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_NAME} printable characters"),
        ));
    }
    let scopes = Scopes::parse(c.scopes.iter().map(|s| s.trim()))
        .map_err(|n| ApiError::invalid("scopes", format!("unknown scope {n:?}")))?;
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "name at least one scope"));
    }
    let tenant = c
        .tenant
        .map(|t| TenantId::parse(t.trim()))
        .transpose()
        .map_err(|e| ApiError::invalid("tenant", e))?;
    let now = state.clock.now();
    let (key, token) = state
        .keys
        .create(&by, tenant, scopes, name, now)
        .await
        .map_err(request_error)?;
    let created = CreatedKey {
        view: view(&key),
        key: token,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/keys`: the caller's tenant's keys (every tenant's for the default tenant).
#[utoipa::path(
    get,
    path = "/v1/keys",
    operation_id = "list_api_keys",
    tag = "keys",
    responses(
        (status = 200, description = "The keys the caller may see, newest first, without tokens", body = KeyList),
        (status = 503, description = "The state backend does not answer (`state_unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let keys = state
        .keys
        .list(&by)
        .await
        .map_err(|_| ApiError::state_unavailable())?;
    let list = KeyList {
        keys: keys.iter().map(view).collect(),
    };
    Ok(Json(list).into_response())
}

/// `DELETE /v1/keys/{id}`: revokes the key; it authenticates nothing from now on.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    operation_id = "revoke_api_key",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (the 16 hex digits after `hk_`)")),
    responses(
        (status = 200, description = "Revoked (revoking twice keeps the first time)", body = KeyView),
        (status = 404, description = "No such key, or another tenant's (`not_found`)", body = ErrorBody),
        (status = 503, description = "The state backend does not answer (`state_unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let key = state
        .keys
        .revoke(&by, &id, state.clock.now())
        .await
        .map_err(request_error)?;
    Ok(Json(view(&key)).into_response())
}
