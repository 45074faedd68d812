//! A WeChat official account's server URL: `GET /v1/callbacks/{provider}/wechat` answers
//! WeChat's URL check with its `echostr`; `POST` takes the account's XML events. Both are
//! authenticated by the query's signature ([`crate::callbacks::dialect::wechat`]), never an
//! API key. Template send results (`TEMPLATESENDJOBFINISH`) are applied as receipts by
//! their `MsgID`; follows and unfollows change the follower's WeChat consent. WeChat wants
//! `success` (or nothing) within five seconds, else it sends the event again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::app::AppState;
use crate::callbacks::dialect::wechat::{OpenError, SignedQuery};
use crate::callbacks::dialect::ReceiptDialect;
use crate::callbacks::receipt::Receipt;
use crate::callbacks::ProviderCallbacks;
use crate::dispatch::{ReceiptStatus, ReceiptUpdate};
use crate::domain::Consent;
use crate::provider::wechat::events::{self, Event};

/// The provider, if it is a WeChat account, and the verified query.
fn verified<'a>(
    state: &'a AppState,
    provider: &str,
    query: Option<&str>,
) -> Result<(&'a ProviderCallbacks, SignedQuery), ApiError> {
    let p = state
        .callbacks
        .provider(provider)
        .ok_or_else(|| ApiError::not_found("provider"))?;
    let ReceiptDialect::Wechat(token) = &p.dialect else {
        return Err(ApiError::not_found("WeChat provider"));
    };
    let q = SignedQuery::parse(query);
    token
        .verify(&q, state.clock.now().timestamp())
        .map_err(|e| {
            tracing::info!(provider = %p.name, reason = e.code(), "wechat callback refused");
            ApiError::unauthenticated(e)
        })?;
    Ok((p, q))
}

/// `GET`: WeChat's check of the server URL; answers `echostr` as sent.
#[utoipa::path(
    get,
    path = "/v1/callbacks/{provider}/wechat",
    operation_id = "verify_wechat_server_url",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "A configured WeChat provider's name"),
        ("signature" = Option<String>, Query, description = "SHA-1 of the sorted token, timestamp and nonce"),
        ("timestamp" = Option<String>, Query, description = "Unix seconds"),
        ("nonce" = Option<String>, Query, description = "WeChat's nonce"),
        ("echostr" = Option<String>, Query, description = "Echoed back as the answer"),
    ),
    responses(
        (status = 200, description = "`echostr` as sent", content_type = "text/plain", body = String),
        (status = 401, description = "Not authentic: `callbacks_not_configured`, `signature_missing`, `signature_malformed`, `timestamp_out_of_window` or `signature_mismatch`", body = ErrorBody),
        (status = 404, description = "No such WeChat provider (`not_found`)", body = ErrorBody),
    )
)]
pub async fn verify_url(
    State(state): State<Arc<AppState>>,
    ApiPath(provider): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (_, q) = verified(&state, &provider, query.as_deref())?;
    let echo = q
        .echostr
        .ok_or_else(|| ApiError::invalid("echostr", "is required"))?;
    if echo.len() > 128 {
        return Err(ApiError::invalid(
            "echostr",
            "is longer than 128 characters",
        ));
    }
    Ok(echo.into_response())
}

/// `POST`: one event.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{provider}/wechat",
    operation_id = "receive_wechat_event",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "A configured WeChat provider's name"),
        ("signature" = Option<String>, Query, description = "SHA-1 of the sorted token, timestamp and nonce"),
        ("timestamp" = Option<String>, Query, description = "Unix seconds"),
        ("nonce" = Option<String>, Query, description = "WeChat's nonce"),
        ("encrypt_type" = Option<String>, Query, description = "`aes` in encrypted (safe) or compatible mode: the event is in the body's `Encrypt`"),
        ("msg_signature" = Option<String>, Query, description = "Encrypted mode: SHA-1 of the sorted token, timestamp, nonce and `Encrypt`"),
    ),
    request_body(description = "One event of the account, as WeChat's XML (in encrypted mode, `<xml><Encrypt>...</Encrypt></xml>`)", content((String = "text/xml"))),
    responses(
        (status = 200, description = "`success`", content_type = "text/plain", body = String),
        (status = 401, description = "Not authentic: `callbacks_not_configured`, `signature_missing`, `signature_malformed`, `timestamp_out_of_window` or `signature_mismatch`", body = ErrorBody),
        (status = 404, description = "No such WeChat provider (`not_found`)", body = ErrorBody),
        (status = 503, description = "Not recorded durably (`unavailable`) or the state backend does not answer (`state_unavailable`); send it again", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn event(
    State(state): State<Arc<AppState>>,
    ApiPath(provider): ApiPath<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, q) = verified(&state, &provider, query.as_deref())?;
    let limit = events::MAX_EVENT_BYTES.min(state.callbacks.max_body_bytes());
    let bytes = super::body::read_whole(body, limit).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::invalid("body", "not UTF-8"))?;
    let opened;
    let text = match q.encrypt_type.as_deref() {
        None | Some("raw") => text,
        Some("aes") => {
            let ReceiptDialect::Wechat(token) = &p.dialect else {
                return Err(ApiError::not_found("WeChat provider"));
            };
            opened = token.open(&q, text).map_err(|e| match e {
                OpenError::Signature(e) => {
                    tracing::info!(provider = %p.name, reason = e.code(), "wechat encrypted event refused");
                    ApiError::unauthenticated(e)
                }
                other => ApiError::invalid("body", other.to_string()),
            })?;
            opened.as_str()
        }
        Some(_) => return Err(ApiError::invalid("encrypt_type", "must be aes or raw")),
    };
    let event = events::parse(text).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    match event {
        Event::TemplateResult {
            msgid, delivered, ..
        } => {
            let status = if delivered {
                ReceiptStatus::Delivered
            } else {
                ReceiptStatus::Undelivered
            };
            let receipt = Receipt {
                message_id: msgid,
                update: ReceiptUpdate { status, part: None },
                error_code: None,
            };
            super::callbacks::apply(&state, p, &[receipt]).await?;
        }
        Event::Subscribe { openid } => {
            let account = account(&state, p);
            state
                .callbacks
                .apply_follow(p, account, &openid, Consent::OptIn)
                .await?;
        }
        Event::Unsubscribe { openid } => {
            let account = account(&state, p);
            state
                .callbacks
                .apply_follow(p, account, &openid, Consent::OptOut)
                .await?;
        }
        Event::Other => {}
    }
    Ok("success".into_response())
}

/// The account name the provider's contacts list openids under, if it has one.
fn account<'a>(state: &'a AppState, p: &ProviderCallbacks) -> Option<&'a str> {
    state
        .config
        .config
        .providers
        .get(usize::from(p.slot))
        .and_then(|c| c.wechat.as_ref())
        .and_then(|w| w.account.as_deref())
}
