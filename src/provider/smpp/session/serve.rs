//! A bound session: the window of submits, the answers matched by sequence number, the
//! timers, and the SMSC's own requests.
//!
//! A receipt can overtake the `submit_sm_resp` that names its id (an SMSC writes them from
//! different queues). A receipt for an id not known as a part, read while parts of long
//! messages await their answers, is therefore held until those answers are in, then placed.

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
use super::{Conn, End, Query, Request, SessionSettings, Submit, SubmitAnswer};
use crate::metrics::smpp::{self as smpp_metrics, DeliverKind};
use crate::provider::smpp::deliver::{self, Delivered};
use crate::provider::smpp::part_ids::{LongMessage, Resolved};
use crate::provider::smpp::pdu::{self, Frame};
use crate::provider::smpp::status::{self, ESME_RINVCMDID, ESME_ROK, ESME_RSYSERR};
use crate::provider::smpp::submit_log::PartTag;

/// A request of ours awaiting its response.
enum Pending {
    Submit {
        reply: oneshot::Sender<SubmitAnswer>,
        deadline: Instant,
        /// Submits written before it on this bind.
        order: u64,
        long: Option<(Arc<LongMessage>, usize)>,
        tag: PartTag,
        written_at: Instant,
    },
    Query {
        reply: oneshot::Sender<Option<(u32, Option<u8>)>>,
        deadline: Instant,
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

/// A receipt held until the long-message parts written up to `after` are answered.
struct Held {
    sequence_number: u32,
    delivered: Delivered,
    after: u64,
}

/// The state of a bound session.
struct Bound<'s> {
    s: &'s SessionSettings,
    pending: HashMap<u32, Pending>,
    in_window: usize,
    seq: Sequence,
    written: u64,
    events: Events,
    held: Vec<Held>,
}

pub(super) async fn serve(
    s: &SessionSettings,
    mut conn: Conn,
    submits: &mut mpsc::Receiver<Request>,
    shutdown: &CancellationToken,
) -> End {
    let mut b = Bound {
        s,
        pending: HashMap::new(),
        in_window: 0,
        seq: Sequence(1),
        written: 0,
        events: Events::new(),
        held: Vec::new(),
    };
    let mut last_traffic = Instant::now();
    let tick_every =
        (s.response_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err(End::Shutdown),
            Some((n, status)) = b.events.next(), if !b.events.is_empty() => {
                conn.send(pdu::deliver_sm_resp(n, status))
                    .await
                    .map_err(|e| End::Lost(format!("writing deliver_sm_resp: {e}")))
            }
            frame = conn.next(), if b.events.len() < MAX_EVENTS_IN_FLIGHT => {
                last_traffic = Instant::now();
                match frame {
                    None => Err(End::Lost("connection closed by the SMSC".into())),
                    Some(Err(e)) => Err(End::Lost(format!("reading: {e}"))),
                    Some(Ok(f)) => b.handle(&mut conn, f).await,
                }
            }
            next = submits.recv(), if b.in_window < s.window => match next {
                None => Err(End::Shutdown),
                Some(first) => {
                    last_traffic = Instant::now();
                    b.write_submits(&mut conn, first, submits).await
                }
            },
            _ = ticker.tick() => b.tick(&mut conn, &mut last_traffic).await,
        };
        if let Err(end) = step {
            break end;
        }
        if let Err(end) = b.release(&mut conn).await {
            break end;
        }
        s.window_used
            .store(b.pending.len(), std::sync::atomic::Ordering::Relaxed);
    };
    s.window_used.store(0, std::sync::atomic::Ordering::Relaxed);
    if matches!(end, End::Shutdown) {
        finish_events(s, &mut conn, &mut b.events).await;
        unbind(s, &mut conn, b.seq.next(&b.pending)).await;
    }
    for (_, p) in b.pending.drain() {
        match p {
            Pending::Submit { reply, .. } => {
                let _ = reply.send(SubmitAnswer::Lost);
            }
            Pending::Query { reply, .. } => {
                let _ = reply.send(None);
            }
            Pending::EnquireLink { .. } => {}
        }
    }
    end
}

/// Whether a command id is a response (its high bit set).
fn is_response(command_id: u32) -> bool {
    command_id & 0x8000_0000 != 0
}

impl Bound<'_> {
    /// Writes `first` and whatever else is queued while the window has room, then flushes
    /// once. The submits are recorded in the submit log first, all in one write; if that
    /// fails none is sent. Submits written but not flushed are answered `Lost` when the
    /// session ends.
    async fn write_submits(
        &mut self,
        conn: &mut Conn,
        first: Request,
        submits: &mut mpsc::Receiver<Request>,
    ) -> Result<(), End> {
        let now = Instant::now();
        let mut batch: Vec<Submit> = Vec::new();
        let mut queries: Vec<Query> = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Query(q) => queries.push(*q),
                Request::Submit(submit)
                    if now.duration_since(submit.queued_at) > self.s.response_timeout =>
                {
                    let _ = submit
                        .reply
                        .send(SubmitAnswer::NotSent("waited too long for the window"));
                }
                Request::Submit(submit) => batch.push(submit),
            }
            if self.in_window + batch.len() < self.s.window {
                next = submits.try_recv().ok();
            }
        }
        if let Some(log) = &self.s.log {
            if let Err(e) = log.writing(batch.iter().map(|s| &s.tag)) {
                tracing::warn!(provider = %self.s.provider, error = %e, "the submit log cannot be written; submits refused");
                for submit in batch.drain(..) {
                    let _ = submit
                        .reply
                        .send(SubmitAnswer::NotSent("the submit log cannot be written"));
                }
            }
        }
        for submit in batch {
            let n = self.seq.next(&self.pending);
            let command = Command::new(CommandStatus::EsmeRok, n, submit.pdu);
            if let Err(e) = conn.feed(command).await {
                let _ = submit.reply.send(SubmitAnswer::Lost);
                return Err(End::Lost(format!("writing submit_sm: {e}")));
            }
            self.in_window += 1;
            self.written += 1;
            let pending = Pending::Submit {
                reply: submit.reply,
                deadline: now + self.s.response_timeout,
                order: self.written,
                long: submit.long,
                tag: submit.tag,
                written_at: now,
            };
            self.pending.insert(n, pending);
        }
        for query in queries {
            let n = self.seq.next(&self.pending);
            if let Err(e) = conn
                .feed(Command::new(CommandStatus::EsmeRok, n, query.pdu))
                .await
            {
                let _ = query.reply.send(None);
                return Err(End::Lost(format!("writing query_sm: {e}")));
            }
            let deadline = now + self.s.response_timeout;
            self.pending.insert(
                n,
                Pending::Query {
                    reply: query.reply,
                    deadline,
                },
            );
        }
        conn.flush()
            .await
            .map_err(|e| End::Lost(format!("writing submit_sm: {e}")))
    }

    /// Expires what went unanswered and probes an idle link.
    async fn tick(&mut self, conn: &mut Conn, last_traffic: &mut Instant) -> Result<(), End> {
        let now = Instant::now();
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Submit { deadline, .. }
                | Pending::Query { deadline, .. }
                | Pending::EnquireLink { deadline } => *deadline <= now,
            })
            .map(|(&n, _)| n)
            .collect();
        let mut link_dead = false;
        for n in expired {
            match self.pending.remove(&n) {
                Some(Pending::Submit { reply, .. }) => {
                    self.in_window -= 1;
                    let _ = reply.send(SubmitAnswer::TimedOut);
                }
                Some(Pending::Query { reply, .. }) => {
                    let _ = reply.send(None);
                }
                Some(Pending::EnquireLink { .. }) => link_dead = true,
                None => {}
            }
        }
        if link_dead {
            return Err(End::Lost("enquire_link unanswered".into()));
        }
        let probing = self
            .pending
            .values()
            .any(|p| matches!(p, Pending::EnquireLink { .. }));
        if !probing && now.duration_since(*last_traffic) >= self.s.enquire_link {
            let n = self.seq.next(&self.pending);
            conn.send(Command::new(CommandStatus::EsmeRok, n, Pdu::EnquireLink))
                .await
                .map_err(|e| End::Lost(format!("writing enquire_link: {e}")))?;
            *last_traffic = now;
            let deadline = now + self.s.response_timeout;
            self.pending.insert(n, Pending::EnquireLink { deadline });
        }
        Ok(())
    }

    /// Handles one PDU from the SMSC; `Err` ends the session.
    async fn handle(&mut self, conn: &mut Conn, frame: Frame) -> Result<(), End> {
        let s = self.s;
        let command = match frame {
            Frame::Command(c) => c,
            Frame::Malformed {
                command_id,
                sequence_number,
                reason,
            } => {
                tracing::warn!(provider = %s.provider, bind = s.index, command_id = format_args!("{command_id:#010x}"), %reason, "undecodable PDU");
                if is_response(command_id) {
                    // The request it answers still gets an answer: an undecodable response
                    // is a system error (transient), never a silent success.
                    self.answer(sequence_number, ESME_RSYSERR, String::new());
                    return Ok(());
                }
                // A deliver_sm gets its own response: it will never decode, so the SMSC is
                // told not to deliver it again. Anything else gets a generic_nack.
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
                self.answer(n, code, resp.message_id().as_str().to_string());
                None
            }
            Some(Pdu::QuerySmResp(resp)) => {
                let state = u8::from(resp.message_state);
                self.answer_query(n, code, (code == ESME_ROK).then_some(state));
                None
            }
            Some(Pdu::GenericNack) => {
                self.answer(n, code, String::new());
                None
            }
            Some(Pdu::EnquireLinkResp) => {
                self.pending.remove(&n);
                None
            }
            Some(Pdu::EnquireLink) => Some(pdu::response(n, ESME_ROK, Pdu::EnquireLinkResp)),
            Some(Pdu::Unbind) => {
                let _ = conn.send(pdu::response(n, ESME_ROK, Pdu::UnbindResp)).await;
                return Err(End::Lost("unbound by the SMSC".into()));
            }
            Some(Pdu::DeliverSm(d)) => {
                let delivered = deliver::classify(&pdu::deliver_fields(d), s.receipt_ids);
                let kind = match &delivered {
                    Delivered::Receipt(_) => DeliverKind::Receipt,
                    Delivered::Inbound(_) => DeliverKind::Mo,
                    Delivered::InboundPart(_) => DeliverKind::MoPart,
                    Delivered::Ignored(_) => DeliverKind::Ignored,
                };
                smpp_metrics::deliver_sm(&s.provider, kind);
                self.deliver(n, delivered)
            }
            // Neither answered nor acted on: alert_notification has no response.
            Some(Pdu::AlertNotification(_)) | Some(Pdu::UnbindResp) => None,
            None if !is_response(u32::from(command.id())) => {
                // A request whose body was empty where one is required.
                Some(pdu::response(n, status::ESME_RINVCMDLEN, Pdu::GenericNack))
            }
            _ if is_response(u32::from(command.id())) => {
                // A response to a request we did not make (or no longer wait for).
                self.answer(n, code, String::new());
                None
            }
            _ => Some(pdu::response(n, ESME_RINVCMDID, Pdu::GenericNack)),
        };
        match reply {
            Some(c) => conn.send(c).await.map_err(|e| End::Lost(e.to_string())),
            None => Ok(()),
        }
    }

    /// Answers the pending request `n`, if there is one.
    fn answer(&mut self, n: u32, status: u32, message_id: String) {
        // A generic_nack to our enquire_link just ends the probe: the link is alive.
        match self.pending.remove(&n) {
            Some(Pending::Submit {
                reply,
                long,
                tag,
                written_at,
                ..
            }) => {
                self.in_window -= 1;
                let throttled = status::classify(status) == status::StatusClass::Throttled;
                smpp_metrics::submit_answered(&self.s.provider, written_at.elapsed(), throttled);
                smpp_metrics::response(&self.s.provider, "submit_sm", status::name(status));
                if let Some(log) = &self.s.log {
                    log.answered(&tag, status, &message_id);
                }
                if let (ESME_ROK, Some((message, part))) = (status, long) {
                    self.s.part_ids.accepted(&message_id, &message, part);
                }
                let _ = reply.send(SubmitAnswer::Answered { status, message_id });
            }
            Some(Pending::Query { reply, .. }) => {
                smpp_metrics::response(&self.s.provider, "query_sm", status::name(status));
                let _ = reply.send(Some((status, None)));
            }
            _ => {}
        }
    }

    /// Answers the pending `query_sm` `n`.
    fn answer_query(&mut self, n: u32, status: u32, state: Option<u8>) {
        match self.pending.remove(&n) {
            Some(Pending::Query { reply, .. }) => {
                smpp_metrics::response(&self.s.provider, "query_sm", status::name(status));
                let _ = reply.send(Some((status, state)));
            }
            Some(other) => {
                // Not a query: put it back and answer it as the response it names.
                self.pending.insert(n, other);
                self.answer(n, status, String::new());
            }
            None => {}
        }
    }

    /// The latest long-message part still awaiting its answer, as its write order.
    fn last_long_part_pending(&self) -> Option<u64> {
        self.long_parts_pending().max()
    }

    fn long_parts_pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.values().filter_map(|p| match p {
            Pending::Submit {
                order,
                long: Some(_),
                ..
            } => Some(*order),
            _ => None,
        })
    }

    /// A `deliver_sm`: held, answered at once (the response returned), or being applied.
    fn deliver(&mut self, n: u32, delivered: Delivered) -> Option<Command> {
        if let Delivered::Receipt(r) = &delivered {
            if self.s.part_ids.resolve(&r.message_id) == Resolved::Whole {
                if let Some(after) = self.last_long_part_pending() {
                    self.held.push(Held {
                        sequence_number: n,
                        delivered,
                        after,
                    });
                    return None;
                }
            }
        }
        self.dispatch(n, delivered)
    }

    fn dispatch(&mut self, n: u32, delivered: Delivered) -> Option<Command> {
        match place(self.s, delivered) {
            Placed::Answer(status) => Some(pdu::deliver_sm_resp(n, status)),
            Placed::Apply(sink, delivered) => {
                let provider = self.s.provider.clone();
                self.events.push(Box::pin(async move {
                    (n, apply(&provider, sink.as_ref(), delivered).await)
                }));
                None
            }
        }
    }

    /// Places the held receipts whose long-message parts have all been answered.
    async fn release(&mut self, conn: &mut Conn) -> Result<(), End> {
        if self.held.is_empty() {
            return Ok(());
        }
        let oldest = self.long_parts_pending().min();
        let (ready, waiting): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| oldest.is_none_or(|o| o > h.after));
        self.held = waiting;
        for h in ready {
            if let Some(resp) = self.dispatch(h.sequence_number, h.delivered) {
                conn.feed(resp)
                    .await
                    .map_err(|e| End::Lost(format!("writing deliver_sm_resp: {e}")))?;
            }
        }
        conn.flush()
            .await
            .map_err(|e| End::Lost(format!("writing deliver_sm_resp: {e}")))
    }
}
