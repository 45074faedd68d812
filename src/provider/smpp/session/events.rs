//! `deliver_sm` on a bind: placed at once, in arrival order, then applied by the events sink
//! concurrently and acknowledged as each is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;

use super::{Conn, SessionSettings};
use crate::provider::smpp::deliver::{self, Delivered};
use crate::provider::smpp::part_ids::Resolved;
use crate::provider::smpp::pdu;
use crate::provider::smpp::status::{ESME_ROK, ESME_RX_T_APPN};
use crate::provider::ProviderEvents;

/// `deliver_sm` being applied by the events sink at once; past this many, the bind stops
/// reading until one is done (the SMSC's own window holds the rest).
pub(super) const MAX_EVENTS_IN_FLIGHT: usize = 64;

/// Events being applied: each yields the sequence number to acknowledge and the status.
pub(super) type Events = FuturesUnordered<Pin<Box<dyn Future<Output = (u32, u32)> + Send>>>;

/// A `deliver_sm` read: answered at once, or handed to the events sink.
pub(super) enum Placed {
    Answer(u32),
    Apply(Arc<dyn ProviderEvents>, Delivered),
}

/// Decides what to do with a `deliver_sm`, at once and in the order PDUs arrive (so a part's
/// receipt is placed after the answer that named the part).
pub(super) fn place(s: &SessionSettings, delivered: Delivered) -> Placed {
    let Some(events) = &s.events else {
        if !matches!(delivered, Delivered::Ignored(_)) {
            tracing::debug!(provider = %s.provider, "deliver_sm dropped: no events sink");
        }
        return Placed::Answer(ESME_ROK);
    };
    match delivered {
        Delivered::Receipt(mut r) => {
            match s.part_ids.resolve(&r.message_id) {
                Resolved::Whole => {}
                Resolved::Part {
                    message_id,
                    part,
                    total,
                } => {
                    r.message_id = message_id.to_string();
                    r.update.part = (total > 1).then_some((part, total));
                }
                // The message is still being sent: its id is not known yet.
                Resolved::NotYet => return Placed::Answer(ESME_RX_T_APPN),
                Resolved::Abandoned => return Placed::Answer(ESME_ROK),
            }
            Placed::Apply(events.clone(), Delivered::Receipt(r))
        }
        Delivered::Inbound(m) => Placed::Apply(events.clone(), Delivered::Inbound(m)),
        Delivered::InboundPart(part) => match s.mo_parts.add(part, std::time::Instant::now()) {
            None => Placed::Answer(ESME_ROK),
            Some(whole) => match deliver::reassembled(whole) {
                Delivered::Inbound(m) => Placed::Apply(events.clone(), Delivered::Inbound(m)),
                _ => Placed::Answer(ESME_ROK),
            },
        },
        Delivered::Ignored(why) => {
            tracing::debug!(provider = %s.provider, reason = why, "deliver_sm ignored");
            Placed::Answer(ESME_ROK)
        }
    }
}

/// Applies an event; the status to acknowledge its `deliver_sm` with.
pub(super) async fn apply(
    provider: &str,
    events: &dyn ProviderEvents,
    delivered: Delivered,
) -> u32 {
    let applied = match delivered {
        Delivered::Receipt(r) => events.receipt(provider, r).await,
        Delivered::Inbound(m) => events.inbound(provider, m).await,
        Delivered::InboundPart(_) | Delivered::Ignored(_) => Ok(()),
    };
    match applied {
        Ok(()) => ESME_ROK,
        Err(e) => {
            tracing::warn!(provider, error = %e, "deliver_sm not applied; the SMSC will deliver it again");
            ESME_RX_T_APPN
        }
    }
}

/// Acknowledges the events being applied (at most the response timeout) before an unbind;
/// those not done by then are delivered again by the SMSC.
pub(super) async fn finish_events(s: &SessionSettings, conn: &mut Conn, events: &mut Events) {
    let deadline = Instant::now() + s.response_timeout;
    while let Ok(Some((n, status))) = tokio::time::timeout_at(deadline, events.next()).await {
        if conn.send(pdu::deliver_sm_resp(n, status)).await.is_err() {
            return;
        }
    }
}
