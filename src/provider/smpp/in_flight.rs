//! Messages in flight at a crash, settled after the restart: the submit log says which the
//! SMSC never saw and which it accepted; `query_sm` then asks the SMSC the state of those it
//! accepted, and a final state is applied as the receipt it amounts to.
//!
//! What stays unknowable: a part written to the SMSC whose `submit_sm_resp` was never read.
//! SMPP 3.4 lets only the SMSC name a message (`query_sm` needs the id its `submit_sm_resp`
//! gave), so herald cannot ask about it; it stays in doubt until a receipt settles it.

use std::sync::Arc;
use std::time::Duration;

use rusmpp::pdus::QuerySm;
use rusmpp::types::COctetString;
use rusmpp::values::{Npi, Ton};
use tokio::sync::{oneshot, watch};

use super::deliver;
use super::pdu::SubmitFields;
use super::session::{BindHandle, Query, Request};
use super::status::{self, ESME_ROK};
use super::submit_log::{LoggedFate, SubmitLog};
use crate::callbacks::receipt::Receipt;
use crate::dispatch::ReceiptUpdate;
use crate::provider::{InFlightFate, InFlightMessage, ProviderEvents};

/// How long the state queries wait for a bind after a restart.
const BIND_WAIT: Duration = Duration::from_secs(60);

/// The fates the log tells, and the SMSC ids (of each message's last part) it accepted.
pub fn fates(
    provider: &str,
    log: &SubmitLog,
    messages: &[InFlightMessage],
) -> (Vec<InFlightFate>, Vec<String>) {
    let asked: Vec<_> = messages
        .iter()
        .map(|m| (m.id, u8::try_from(m.parts).unwrap_or(u8::MAX)))
        .collect();
    let logged = match log.fates(&asked) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(provider, error = %e, "the submit log cannot be read: messages in flight at the last stop stay in doubt");
            return (vec![InFlightFate::Unknown; messages.len()], Vec::new());
        }
    };
    let mut accepted = Vec::new();
    let fates = logged
        .into_iter()
        .map(|f| match f {
            LoggedFate::NotSent => InFlightFate::NotSent,
            LoggedFate::Unknown => InFlightFate::Unknown,
            LoggedFate::Accepted { smsc_ids } => {
                let id = smsc_ids.last().cloned().unwrap_or_default();
                accepted.push(id.clone());
                InFlightFate::Sent {
                    provider_message_id: id,
                }
            }
        })
        .collect();
    (fates, accepted)
}

/// Asks the SMSC the state of each accepted message once a bind is up, and hands a final one
/// to the events sink as a receipt. An SMSC that has forgotten the id (`ESME_RQUERYFAIL`,
/// `ESME_RINVMSGID`) changes nothing: it accepted the message, so it stays sent.
pub async fn query_states(
    provider: String,
    binds: Vec<BindHandle>,
    mut bound: watch::Receiver<usize>,
    source: SubmitFields,
    ids: Vec<String>,
    events: Arc<dyn ProviderEvents>,
) {
    if tokio::time::timeout(BIND_WAIT, bound.wait_for(|n| *n > 0))
        .await
        .is_err()
    {
        tracing::warn!(provider, "no bind for query_sm after the restart");
        return;
    }
    let mut next = 0usize;
    for id in ids {
        let pdu = match query_sm(&source, &id) {
            Some(p) => p,
            None => continue,
        };
        let Some(bind) = (0..binds.len())
            .map(|i| &binds[(next + i) % binds.len()])
            .find(|b| b.bound.load(std::sync::atomic::Ordering::Acquire))
        else {
            return;
        };
        next += 1;
        let (reply, answer) = oneshot::channel();
        if bind
            .submits
            .send(Request::Query(Box::new(Query { pdu, reply })))
            .await
            .is_err()
        {
            return;
        }
        match answer.await.ok().flatten() {
            Some((ESME_ROK, Some(state))) => {
                let Some(status) = deliver::final_status(state) else {
                    continue;
                };
                let receipt = Receipt {
                    message_id: id.clone(),
                    update: ReceiptUpdate { status, part: None },
                    error_code: None,
                };
                if let Err(e) = events.receipt(&provider, receipt).await {
                    tracing::warn!(provider, error = %e, "a queried state could not be applied");
                }
            }
            Some((code, _)) => {
                tracing::info!(provider, status = %status::describe(code), "query_sm refused; the message stays sent")
            }
            None => tracing::info!(provider, "query_sm unanswered"),
        }
    }
}

fn query_sm(f: &SubmitFields, id: &str) -> Option<QuerySm> {
    Some(QuerySm::new(
        COctetString::from_string(id.to_string()).ok()?,
        Ton::from(f.source_ton),
        Npi::from(f.source_npi),
        COctetString::from_string(f.source_addr.clone()).ok()?,
    ))
}
