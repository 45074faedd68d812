//! A bound session: the window of submits, the answers matched by sequence number, the
//! timers, and the SMSC's own requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{apply, finish_events, place, Events, Placed, MAX_EVENTS_IN_FLIGHT};
use super::link::unbind;
use super::{Conn, End, SessionSettings, Submit, SubmitAnswer};
use crate::provider::smpp::deliver;
use crate::provider::smpp::part_ids::LongMessage;
use crate::provider::smpp::pdu::{self, Frame};
use crate::provider::smpp::status::{self, ESME_RINVCMDID, ESME_ROK, ESME_RSYSERR};

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

pub(super) async fn serve(
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
                let Some(first) = next else {
                    finish_events(s, &mut conn, &mut events).await;
                    unbind(s, &mut conn, seq.next(&pending)).await;
                    break End::Shutdown;
                };
                last_traffic = Instant::now();
                let window = Window { pending: &mut pending, in_window: &mut in_window, seq: &mut seq };
                if let Err(end) = write_submits(s, &mut conn, first, submits, window).await {
                    break end;
                }
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

/// The submits awaiting answers, as `write_submits` updates them.
struct Window<'a> {
    pending: &'a mut HashMap<u32, Pending>,
    in_window: &'a mut usize,
    seq: &'a mut Sequence,
}

/// Writes `first` and whatever else is queued while the window has room, then flushes once.
async fn write_submits(
    s: &SessionSettings,
    conn: &mut Conn,
    first: Submit,
    submits: &mut mpsc::Receiver<Submit>,
    w: Window<'_>,
) -> Result<(), End> {
    let now = Instant::now();
    let mut next = Some(first);
    while let Some(submit) = next.take() {
        if now.duration_since(submit.queued_at) > s.response_timeout {
            let _ = submit
                .reply
                .send(SubmitAnswer::NotSent("waited too long for the window"));
        } else {
            let n = w.seq.next(w.pending);
            let command = Command::new(CommandStatus::EsmeRok, n, submit.pdu);
            if let Err(e) = conn.feed(command).await {
                let _ = submit.reply.send(SubmitAnswer::Lost);
                return Err(End::Lost(format!("writing submit_sm: {e}")));
            }
            *w.in_window += 1;
            let pending = Pending::Submit {
                reply: submit.reply,
                deadline: now + s.response_timeout,
                long: submit.long,
            };
            w.pending.insert(n, pending);
        }
        if *w.in_window < s.window {
            next = submits.try_recv().ok();
        }
    }
    // Submits written but not flushed are answered `Lost` when the session ends.
    conn.flush()
        .await
        .map_err(|e| End::Lost(format!("writing submit_sm: {e}")))
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
            // A deliver_sm gets its own response: it will never decode, so the SMSC is told
            // not to deliver it again. Anything else gets a generic_nack.
            let answer = if command_id == status::CMD_DELIVER_SM {
                pdu::deliver_sm_resp(sequence_number, status::ESME_RX_P_APPN)
            } else {
                pdu::response(sequence_number, status::ESME_RINVCMDLEN, Pdu::GenericNack)
            };
            return conn
                .send(answer)
                .await
                .map_err(|e| End::Lost(e.to_string()));
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
