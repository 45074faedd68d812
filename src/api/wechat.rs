//! A WeChat official account's server URL: `GET /v1/callbacks/{provider}/wechat` answers
//! WeChat's URL check with its `echostr`; `POST` takes the account's XML events. Both are
//! authenticated by the query's signature ([`crate::callbacks::dialect::wechat`]), never an
//! API key. Template send results (`TEMPLATESENDJOBFINISH`) are applied as receipts by
//! their `MsgID`; follows and unfollows change the follower's WeChat consent. WeChat wants
//! `success` (or nothing) within five seconds, else it sends the event again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::callbacks::dialect::wechat::SignedQuery;
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
pub async fn verify_url(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
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
pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, _) = verified(&state, &provider, query.as_deref())?;
    let limit = events::MAX_EVENT_BYTES.min(state.callbacks.max_body_bytes());
    let bytes = super::body::read_whole(body, limit).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::invalid("body", "not UTF-8"))?;
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
