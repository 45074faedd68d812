//! One bind (a transceiver, or the transmitter or the receiver of a pair), run by one task for
//! the provider's lifetime: connect (TLS when configured), bind in its role, then serve until the connection ends, and again after a jittered exponential delay.
//!
//! While bound it keeps at most `window` `submit_sm` outstanding, matches every response to
//! its request by sequence number (a `generic_nack` answers the request it names), expires
//! requests unanswered after `response_timeout`, sends `enquire_link` after `enquire_link`
//! without traffic (and reconnects when it goes unanswered), answers the SMSC's
//! `enquire_link` and `unbind`, acknowledges each `deliver_sm` once the events sink took it
//! (up to 64 being applied at once, so a slow sink does not hold up submits' answers),
//! and answers requests it does not serve with `generic_nack` (`ESME_RINVCMDID`). When the
//! provider shuts down (or is dropped) it sends `unbind` and waits for `unbind_resp`.
//!
//! Every submit gets exactly one [`SubmitAnswer`]: nothing is left waiting when the
//! connection drops, and a submit that cannot be sent (no bind, waited too long in the
//! queue) is refused at once rather than held.
//!
//! `link.rs` makes and ends a bind, `serve.rs` runs a bound session, `events.rs` hands
//! `deliver_sm` to the events sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rusmpp::pdus::{QuerySm, SubmitSm};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

mod events;
mod link;
mod serve;
pub mod transport;

use super::config::ReceiptIdConversion;
use super::mo_parts::MoReassembly;
use super::part_ids::{LongMessage, PartIds};
use super::pdu::{BindFields, BindRole, Codec};
use super::submit_log::{PartTag, SubmitLog};
use crate::provider::ProviderEvents;
use link::connect_and_bind;
use serve::serve;

/// What the provider hands a bind.
#[derive(Debug)]
// Nearly every request is a submit: boxing it would allocate once per part.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    Submit(Submit),
    Query(Box<Query>),
}

impl Request {
    /// Answers it without writing anything to the SMSC.
    fn refuse(self, why: &'static str) {
        match self {
            Request::Submit(s) => {
                let _ = s.reply.send(SubmitAnswer::NotSent(why));
            }
            Request::Query(q) => {
                let _ = q.reply.send(None);
            }
        }
    }
}

/// A `submit_sm` handed to a bind.
#[derive(Debug)]
pub struct Submit {
    pub pdu: SubmitSm,
    pub queued_at: Instant,
    pub reply: oneshot::Sender<SubmitAnswer>,
    /// The long message it is part `.1` of: its id is recorded for part receipts as the
    /// answer is read, before any receipt that follows it on the bind.
    pub long: Option<(Arc<LongMessage>, usize)>,
    /// Which message and part it is, for the submit log.
    pub tag: PartTag,
}

/// A `query_sm` handed to a bind; answered with the response's status and `message_state`,
/// or `None` when no response came.
#[derive(Debug)]
pub struct Query {
    pub pdu: QuerySm,
    pub reply: oneshot::Sender<Option<(u32, Option<u8>)>>,
}

/// What became of a submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitAnswer {
    /// The SMSC answered (`submit_sm_resp` or `generic_nack`).
    Answered { status: u32, message_id: String },
    /// Sent, and no answer within the response timeout: the SMSC may still have taken it.
    TimedOut,
    /// Sent, then the connection ended before the answer.
    Lost,
    /// Never written to the SMSC.
    NotSent(&'static str),
}

/// What one bind needs to run.
pub struct SessionSettings {
    pub provider: String,
    pub index: usize,
    pub host: String,
    pub port: u16,
    /// TLS to the SMSC, when configured.
    pub tls: Option<Arc<transport::Tls>>,
    pub bind: BindFields,
    pub role: BindRole,
    pub window: usize,
    pub response_timeout: Duration,
    pub enquire_link: Duration,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub jitter_seed: u64,
    pub receipt_ids: ReceiptIdConversion,
    pub part_ids: Arc<PartIds>,
    pub events: Option<Arc<dyn ProviderEvents>>,
    /// Requests this bind has written and not yet had answered, for the metrics.
    pub window_used: Arc<std::sync::atomic::AtomicUsize>,
    /// Replies in several parts, shared by the binds.
    pub mo_parts: Arc<MoReassembly>,
    /// Where submits are recorded before they are written; none: not recorded.
    pub log: Option<Arc<SubmitLog>>,
}

/// A bind as the provider sees it.
#[derive(Clone)]
pub struct BindHandle {
    pub submits: mpsc::Sender<Request>,
    pub bound: Arc<AtomicBool>,
    pub window_used: Arc<std::sync::atomic::AtomicUsize>,
}

/// Marks a bind bound for as long as it lives, keeping the provider's count of bound binds.
struct BoundGuard<'a> {
    flag: &'a AtomicBool,
    count: &'a watch::Sender<usize>,
}

impl<'a> BoundGuard<'a> {
    fn new(flag: &'a AtomicBool, count: &'a watch::Sender<usize>) -> Self {
        flag.store(true, Ordering::Release);
        count.send_modify(|n| *n += 1);
        BoundGuard { flag, count }
    }
}

impl Drop for BoundGuard<'_> {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
        self.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Why a bound session ended.
enum End {
    Shutdown,
    Lost(String),
}

/// Runs one bind until `shutdown` is cancelled or every submit sender is gone.
pub async fn run(
    s: Arc<SessionSettings>,
    mut submits: mpsc::Receiver<Request>,
    bound: Arc<AtomicBool>,
    bound_count: watch::Sender<usize>,
    shutdown: CancellationToken,
) {
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(s.reconnect_min)
            .with_max_delay(s.reconnect_max)
            .with_factor(2.0)
            .with_jitter_seed(s.jitter_seed)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return refuse_all(&mut submits, "provider shut down"),
            c = connect_and_bind(&s) => c,
        };
        match connected {
            Ok(framed) => {
                tracing::info!(provider = %s.provider, bind = s.index, "bound to the SMSC");
                delays = backoff();
                let end = {
                    let _bound = BoundGuard::new(&bound, &bound_count);
                    serve(&s, framed, &mut submits, &shutdown).await
                };
                match end {
                    End::Shutdown => return refuse_all(&mut submits, "provider shut down"),
                    End::Lost(why) => {
                        tracing::warn!(provider = %s.provider, bind = s.index, reason = %why, "bind lost")
                    }
                }
            }
            Err(why) => {
                tracing::warn!(provider = %s.provider, bind = s.index, reason = %why, "cannot bind")
            }
        }
        crate::metrics::smpp::reconnect(&s.provider);
        let delay = delays.next().unwrap_or(s.reconnect_max);
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        // While unbound, submits are refused at once: the provider tries another bind.
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = shutdown.cancelled() => return refuse_all(&mut submits, "provider shut down"),
                next = submits.recv() => match next {
                    Some(request) => request.refuse("not bound"),
                    None => return,
                },
            }
        }
    }
}

fn refuse_all(submits: &mut mpsc::Receiver<Request>, why: &'static str) {
    submits.close();
    while let Ok(request) = submits.try_recv() {
        request.refuse(why);
    }
}

type Conn = Framed<transport::Stream, Codec>;
