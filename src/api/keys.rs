//! API keys: `POST /v1/keys` makes one (its token is shown once), `GET /v1/keys` lists them
//! without tokens, `DELETE /v1/keys/{id}` revokes one at once, on every instance. All need
//! `admin`; a tenant's administrators manage their own tenant's keys, the default tenant's
//! manage every tenant's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{parse_json, ApiError};
use crate::access::{KeyRequestError, Principal, Scopes, StoredKey, TenantId};
use crate::app::AppState;

/// Longest key label kept.
const MAX_NAME: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
}

/// A key as listed: never its token or digest.
#[derive(Debug, Serialize)]
struct View<'a> {
    id: &'a str,
    name: &'a str,
    tenant: &'a str,
    scopes: Scopes,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

fn view(k: &StoredKey) -> View<'_> {
    View {
        id: &k.id,
        name: &k.name,
        tenant: k.tenant.as_str(),
        scopes: k.scopes,
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
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c: Create = parse_json(&body, "")?;
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
    #[derive(Serialize)]
    struct Created<'a> {
        #[serde(flatten)]
        view: View<'a>,
        /// The token: shown once, stored only as a digest.
        key: &'a str,
    }
    let created = Created {
        view: view(&key),
        key: &token,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /v1/keys`: the caller's tenant's keys (every tenant's for the default tenant).
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let keys = state
        .keys
        .list(&by)
        .await
        .map_err(|_| ApiError::state_unavailable())?;
    let views: Vec<View<'_>> = keys.iter().map(view).collect();
    Ok(Json(serde_json::json!({ "keys": views })).into_response())
}

/// `DELETE /v1/keys/{id}`: revokes the key; it authenticates nothing from now on.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = state
        .keys
        .revoke(&by, &id, state.clock.now())
        .await
        .map_err(request_error)?;
    Ok(Json(view(&key)).into_response())
}
