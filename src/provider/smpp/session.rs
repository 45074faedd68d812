//! One transceiver bind, run by one task for the provider's lifetime: connect, `bind_transceiver`,
//! then serve until the connection ends, and again after a jittered exponential delay.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::SubmitSm;
use rusmpp::{Command, CommandStatus, Pdu};
use std::future::Future;
use std::pin::Pin;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::config::ReceiptIdConversion;
use super::deliver::{self, Delivered};
use super::part_ids::{LongMessage, PartIds, Resolved};
use super::pdu::{self, BindFields, Codec, Frame};
use super::status::{self, ESME_RINVCMDID, ESME_ROK, ESME_RSYSERR, ESME_RX_T_APPN};
use crate::provider::ProviderEvents;

/// A `submit_sm` handed to a bind.
#[derive(Debug)]
pub struct Submit {
    pub pdu: SubmitSm,
    pub queued_at: Instant,
    pub reply: oneshot::Sender<SubmitAnswer>,
    /// The long message it is part `.1` of: its id is recorded for part receipts as the
    /// answer is read, before any receipt that follows it on the bind.
    pub long: Option<(Arc<LongMessage>, usize)>,
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
    pub bind: BindFields,
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
}

/// A bind as the provider sees it.
pub struct BindHandle {
    pub submits: mpsc::Sender<Submit>,
    pub bound: Arc<AtomicBool>,
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
    mut submits: mpsc::Receiver<Submit>,
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
        let delay = delays.next().unwrap_or(s.reconnect_max);
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        // While unbound, submits are refused at once: the provider tries another bind.
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = shutdown.cancelled() => return refuse_all(&mut submits, "provider shut down"),
                next = submits.recv() => match next {
                    Some(submit) => {
                        let _ = submit.reply.send(SubmitAnswer::NotSent("not bound"));
                    }
                    None => return,
                },
            }
        }
    }
}

fn refuse_all(submits: &mut mpsc::Receiver<Submit>, why: &'static str) {
    submits.close();
    while let Ok(submit) = submits.try_recv() {
        let _ = submit.reply.send(SubmitAnswer::NotSent(why));
    }
}

type Conn = Framed<TcpStream, Codec>;

/// Connects and binds as a transceiver; the error says why not, in words for the log.
async fn connect_and_bind(s: &SessionSettings) -> Result<Conn, String> {
    let stream = tokio::time::timeout(
        s.connect_timeout,
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut conn = Framed::new(stream, Codec::default());
    let bind = pdu::bind_transceiver(&s.bind).map_err(|e| e.to_string())?;
    conn.send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .map_err(|e| format!("sending bind_transceiver: {e}"))?;
    let deadline = Instant::now() + s.response_timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, conn.next())
            .await
            .map_err(|_| "no bind_transceiver_resp in time".to_string())?;
        match frame {
            None => return Err("connection closed during bind".into()),
            Some(Err(e)) => return Err(format!("reading the bind answer: {e}")),
            Some(Ok(Frame::Command(c))) if c.sequence_number == 1 => {
                let code = pdu::status_code(c.status);
                return if code == ESME_ROK && matches!(c.pdu(), Some(Pdu::BindTransceiverResp(_))) {
                    Ok(conn)
                } else if code == ESME_ROK {
                    Err(format!("unexpected answer to bind: {:?}", c.id()))
                } else {
                    Err(format!("bind refused: {}", status::describe(code)))
                };
            }
            Some(Ok(Frame::Command(c))) if matches!(c.pdu(), Some(Pdu::EnquireLink)) => {
                let resp = pdu::response(c.sequence_number, ESME_ROK, Pdu::EnquireLinkResp);
                conn.send(resp).await.map_err(|e| e.to_string())?;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// `deliver_sm` being applied by the events sink at once; past this many, the bind stops
/// reading until one is done (the SMSC's own window holds the rest).
const MAX_EVENTS_IN_FLIGHT: usize = 64;

/// Events being applied: each yields the sequence number to acknowledge and the status.
type Events = FuturesUnordered<Pin<Box<dyn Future<Output = (u32, u32)> + Send>>>;

/// A request of ours awaiting its response.
enum Pending {
    Submit {
        reply: oneshot::Sender<SubmitAnswer>,
        deadline: Instant,
        long: Option<(Arc<LongMessage>, usize)>,
    },
    EnquireLink {
        deadline: Instant,
    },
}

/// Sequence numbers 2..=0x7FFF_FFFF (1 is the bind's), wrapping, skipping those in flight.
struct Sequence(u32);

impl Sequence {
    fn next(&mut self, in_flight: &HashMap<u32, Pending>) -> u32 {
        loop {
            self.0 = if self.0 >= 0x7fff_ffff { 2 } else { self.0 + 1 };
            if !in_flight.contains_key(&self.0) {
                return self.0;
            }
        }
    }
}

async fn serve(
    s: &SessionSettings,
    mut conn: Conn,
    submits: &mut mpsc::Receiver<Submit>,
    shutdown: &CancellationToken,
) -> End {
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut events = Events::new();
    let mut in_window = 0usize;
    let mut seq = Sequence(1);
    let mut last_traffic = Instant::now();
    let tick_every =
        (s.response_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                finish_events(s, &mut conn, &mut events).await;
                unbind(s, &mut conn, seq.next(&pending)).await;
                break End::Shutdown;
            }
            Some((n, status)) = events.next(), if !events.is_empty() => {
                if let Err(e) = conn.send(pdu::deliver_sm_resp(n, status)).await {
                    break End::Lost(format!("writing deliver_sm_resp: {e}"));
                }
            }
            frame = conn.next(), if events.len() < MAX_EVENTS_IN_FLIGHT => {
                last_traffic = Instant::now();
                let frame = match frame {
                    None => break End::Lost("connection closed by the SMSC".into()),
                    Some(Err(e)) => break End::Lost(format!("reading: {e}")),
                    Some(Ok(f)) => f,
                };
                match handle(s, &mut conn, frame, &mut pending, &mut in_window, &mut events).await {
                    Ok(()) => {}
                    Err(end) => break end,
                }
            }
            next = submits.recv(), if in_window < s.window => {
                let Some(submit) = next else {
                    finish_events(s, &mut conn, &mut events).await;
                    unbind(s, &mut conn, seq.next(&pending)).await;
                    break End::Shutdown;
                };
                let now = Instant::now();
                if now.duration_since(submit.queued_at) > s.response_timeout {
                    let _ = submit.reply.send(SubmitAnswer::NotSent("waited too long for the window"));
                    continue;
                }
                let n = seq.next(&pending);
                if let Err(e) = conn.send(Command::new(CommandStatus::EsmeRok, n, submit.pdu)).await {
                    let _ = submit.reply.send(SubmitAnswer::Lost);
                    break End::Lost(format!("writing submit_sm: {e}"));
                }
                last_traffic = now;
                in_window += 1;
                pending.insert(n, Pending::Submit { reply: submit.reply, deadline: now + s.response_timeout, long: submit.long });
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                let expired: Vec<u32> = pending
                    .iter()
                    .filter(|(_, p)| match p {
                        Pending::Submit { deadline, .. } | Pending::EnquireLink { deadline } => *deadline <= now,
                    })
                    .map(|(&n, _)| n)
                    .collect();
                let mut link_dead = false;
                for n in expired {
                    match pending.remove(&n) {
                        Some(Pending::Submit { reply, .. }) => {
                            in_window -= 1;
                            let _ = reply.send(SubmitAnswer::TimedOut);
                        }
                        Some(Pending::EnquireLink { .. }) => link_dead = true,
                        None => {}
                    }
                }
                if link_dead {
                    break End::Lost("enquire_link unanswered".into());
                }
                let probing = pending.values().any(|p| matches!(p, Pending::EnquireLink { .. }));
                if !probing && now.duration_since(last_traffic) >= s.enquire_link {
                    let n = seq.next(&pending);
                    if let Err(e) = conn.send(Command::new(CommandStatus::EsmeRok, n, Pdu::EnquireLink)).await {
                        break End::Lost(format!("writing enquire_link: {e}"));
                    }
                    last_traffic = now;
                    pending.insert(n, Pending::EnquireLink { deadline: now + s.response_timeout });
                }
            }
        }
    };
    for (_, p) in pending.drain() {
        if let Pending::Submit { reply, .. } = p {
            let _ = reply.send(SubmitAnswer::Lost);
        }
    }
    end
}

/// Whether a command id is a response (its high bit set).
fn is_response(command_id: u32) -> bool {
    command_id & 0x8000_0000 != 0
}

/// Handles one PDU from the SMSC; `Err` ends the session.
async fn handle(
    s: &SessionSettings,
    conn: &mut Conn,
    frame: Frame,
    pending: &mut HashMap<u32, Pending>,
    in_window: &mut usize,
    events: &mut Events,
) -> Result<(), End> {
    let command = match frame {
        Frame::Command(c) => c,
        Frame::Malformed {
            command_id,
            sequence_number,
            reason,
        } => {
            tracing::warn!(provider = %s.provider, bind = s.index, command_id = format_args!("{command_id:#010x}"), %reason, "undecodable PDU");
            if is_response(command_id) {
                // The request it answers still gets an answer: an undecodable response is
                // a system error (transient), never a silent success.
                answer(
                    s,
                    pending,
                    in_window,
                    sequence_number,
                    ESME_RSYSERR,
                    String::new(),
                );
                return Ok(());
            }
            let nack = pdu::response(sequence_number, status::ESME_RINVCMDLEN, Pdu::GenericNack);
            return conn.send(nack).await.map_err(|e| End::Lost(e.to_string()));
        }
    };
    let n = command.sequence_number;
    let code = pdu::status_code(command.status);
    let reply = match command.pdu() {
        Some(Pdu::SubmitSmResp(resp)) => {
            answer(
                s,
                pending,
                in_window,
                n,
                code,
                resp.message_id().as_str().to_string(),
            );
            None
        }
        Some(Pdu::GenericNack) => {
            answer(s, pending, in_window, n, code, String::new());
            None
        }
        Some(Pdu::EnquireLinkResp) => {
            pending.remove(&n);
            None
        }
        Some(Pdu::EnquireLink) => Some(pdu::response(n, ESME_ROK, Pdu::EnquireLinkResp)),
        Some(Pdu::Unbind) => {
            let _ = conn.send(pdu::response(n, ESME_ROK, Pdu::UnbindResp)).await;
            return Err(End::Lost("unbound by the SMSC".into()));
        }
        Some(Pdu::DeliverSm(d)) => {
            match place(s, deliver::classify(&pdu::deliver_fields(d), s.receipt_ids)) {
                Placed::Answer(status) => Some(pdu::deliver_sm_resp(n, status)),
                Placed::Apply(sink, delivered) => {
                    let provider = s.provider.clone();
                    events.push(Box::pin(async move {
                        (n, apply(&provider, sink.as_ref(), delivered).await)
                    }));
                    None
                }
            }
        }
        // Neither answered nor acted on: alert_notification has no response.
        Some(Pdu::AlertNotification(_)) | Some(Pdu::UnbindResp) => None,
        None if !is_response(u32::from(command.id())) => {
            // A request whose body was empty where one is required.
            Some(pdu::response(n, status::ESME_RINVCMDLEN, Pdu::GenericNack))
        }
        _ if is_response(u32::from(command.id())) => {
            // A response to a request we did not make (or no longer wait for).
            answer(s, pending, in_window, n, code, String::new());
            None
        }
        _ => Some(pdu::response(n, ESME_RINVCMDID, Pdu::GenericNack)),
    };
    match reply {
        Some(c) => conn.send(c).await.map_err(|e| End::Lost(e.to_string())),
        None => Ok(()),
    }
}

/// Answers the pending submit `n`, if there is one.
fn answer(
    s: &SessionSettings,
    pending: &mut HashMap<u32, Pending>,
    in_window: &mut usize,
    n: u32,
    status: u32,
    message_id: String,
) {
    // A generic_nack to our enquire_link just ends the probe: the link is alive.
    if let Some(Pending::Submit { reply, long, .. }) = pending.remove(&n) {
        *in_window -= 1;
        if let (ESME_ROK, Some((message, part))) = (status, long) {
            s.part_ids.accepted(&message_id, &message, part);
        }
        let _ = reply.send(SubmitAnswer::Answered { status, message_id });
    }
}

/// A `deliver_sm` read: answered at once, or handed to the events sink.
enum Placed {
    Answer(u32),
    Apply(Arc<dyn ProviderEvents>, Delivered),
}

/// Decides what to do with a `deliver_sm`, at once and in the order PDUs arrive (so a part's
/// receipt is placed after the answer that named the part).
fn place(s: &SessionSettings, delivered: Delivered) -> Placed {
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
        Delivered::Ignored(why) => {
            tracing::debug!(provider = %s.provider, reason = why, "deliver_sm ignored");
            Placed::Answer(ESME_ROK)
        }
    }
}

/// Applies an event; the status to acknowledge its `deliver_sm` with.
async fn apply(provider: &str, events: &dyn ProviderEvents, delivered: Delivered) -> u32 {
    let applied = match delivered {
        Delivered::Receipt(r) => events.receipt(provider, r).await,
        Delivered::Inbound(m) => events.inbound(provider, m).await,
        Delivered::Ignored(_) => Ok(()),
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
async fn finish_events(s: &SessionSettings, conn: &mut Conn, events: &mut Events) {
    let deadline = Instant::now() + s.response_timeout;
    while let Ok(Some((n, status))) = tokio::time::timeout_at(deadline, events.next()).await {
        if conn.send(pdu::deliver_sm_resp(n, status)).await.is_err() {
            return;
        }
    }
}

/// Sends `unbind` and waits (at most the response timeout) for `unbind_resp`.
async fn unbind(s: &SessionSettings, conn: &mut Conn, n: u32) {
    if conn
        .send(Command::new(CommandStatus::EsmeRok, n, Pdu::Unbind))
        .await
        .is_err()
    {
        return;
    }
    let deadline = Instant::now() + s.response_timeout;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, conn.next()).await {
        if let Frame::Command(c) = frame {
            if matches!(c.pdu(), Some(Pdu::UnbindResp)) || c.sequence_number == n {
                break;
            }
        }
    }
    tracing::info!(provider = %s.provider, bind = s.index, "unbound");
}
