//! One bind on the SMSC sink: the bind handshake (system_id and password checked), then a
//! loop that answers `submit_sm` after the configured latency (accepted, or throttled /
//! queue full at the configured shares), answers `enquire_link` and `unbind`, and sends
//! receipts and replies as `deliver_sm`, delivering again those the ESME refuses.
//!
//! Everything is written from this one task: answers come due in a heap ordered by time, so
//! a latency holds answers back without holding the reads, and every answer due is written in
//! one flush. Receipts for a transmitter bind (which cannot receive) wait in the sink's
//! backlog for a receiver or transceiver bind; so do the deliveries of a bind that closes.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp,
};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::deliver::{self, Accepted, ReceiptForm};
use super::tally::BindRecord;
use super::{Delivery, DeliveryKind, Shared};

/// How long a connection may take to send its bind.
const BIND_WAIT: Duration = Duration::from_secs(10);
/// Frames handled before the writes they caused are flushed.
const READ_BURST: usize = 256;
/// Deliveries a receiving bind takes from the backlog at a time, and how often it looks.
const BACKLOG_TAKE: usize = 256;
const BACKLOG_POLL: Duration = Duration::from_millis(100);
/// The SMSC's name in its bind answers.
const SYSTEM_ID: &str = "herald-sink";

/// Whether a bind sends, receives or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Transmitter,
    Receiver,
    Transceiver,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Transmitter => "transmitter",
            Role::Receiver => "receiver",
            Role::Transceiver => "transceiver",
        }
    }
    fn sends(self) -> bool {
        self != Role::Receiver
    }
    fn receives(self) -> bool {
        self != Role::Transmitter
    }
}

/// Something to write when it comes due.
enum Outgoing {
    /// An answer; `accepted` when it is the `ESME_ROK` of a `submit_sm`, `submit` for any
    /// `submit_sm` answer (it leaves the window when written).
    Answer {
        command: Command,
        submit: bool,
        accepted: Option<Accepted>,
    },
    Deliver(Delivery),
}

/// Boxed, so the heap moves a pointer rather than a whole PDU when it reorders.
struct Scheduled {
    due: Instant,
    order: u64,
    what: Box<Outgoing>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// Why a bind ended other than by a close or an `unbind`.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("reading: {0}")]
    Decode(#[from] rusmpp::tokio_codec::DecodeError),
    #[error("writing: {0}")]
    Encode(#[from] rusmpp::tokio_codec::EncodeError),
    #[error("no bind within {0:?}")]
    NoBind(Duration),
}

struct Session {
    shared: Arc<Shared>,
    role: Role,
    record: Arc<BindRecord>,
    heap: BinaryHeap<Scheduled>,
    order: u64,
    outstanding: usize,
    next_sequence: u32,
    /// `deliver_sm` written and not yet answered, by sequence number.
    in_flight: HashMap<u32, Delivery>,
    rng: SmallRng,
}

/// Serves one connection until it closes or unbinds.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>, index: u64) -> Result<(), SessionError> {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = FramedRead::new(r, CommandCodec::new());
    let mut writer = FramedWrite::new(w, CommandCodec::new());
    let first = match tokio::time::timeout(BIND_WAIT, reader.next()).await {
        Err(_) => return Err(SessionError::NoBind(BIND_WAIT)),
        Ok(None) => return Ok(()),
        Ok(Some(c)) => c?,
    };
    let Some(role) = bind(&shared, &first, &mut writer).await? else {
        return Ok(());
    };
    let mut s = Session {
        record: shared.tally.bind(role.name()),
        rng: SmallRng::seed_from_u64(
            shared.settings.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ),
        shared,
        role,
        heap: BinaryHeap::new(),
        order: 0,
        outstanding: 0,
        next_sequence: 1,
        in_flight: HashMap::new(),
    };
    let result = s.run(&mut reader, &mut writer).await;
    s.hand_back();
    result
}

/// Answers the first PDU: a bind with the right credentials is accepted, anything else is
/// refused and the connection closed.
async fn bind<W>(
    shared: &Shared,
    c: &Command,
    writer: &mut FramedWrite<W, CommandCodec>,
) -> Result<Option<Role>, SessionError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let (role, system_id, password) = match c.pdu() {
        Some(Pdu::BindTransmitter(b)) => {
            (Role::Transmitter, b.system_id.as_str(), b.password.as_str())
        }
        Some(Pdu::BindReceiver(b)) => (Role::Receiver, b.system_id.as_str(), b.password.as_str()),
        Some(Pdu::BindTransceiver(b)) => {
            (Role::Transceiver, b.system_id.as_str(), b.password.as_str())
        }
        _ => {
            shared.tally.refused_binds.fetch_add(1, Relaxed);
            let nack = Command::new(
                CommandStatus::EsmeRinvbndsts,
                c.sequence_number,
                Pdu::GenericNack,
            );
            writer.send(nack).await?;
            return Ok(None);
        }
    };
    let settings = &shared.settings;
    let status = if system_id != settings.system_id {
        CommandStatus::EsmeRinvsysid
    } else if password != settings.password {
        CommandStatus::EsmeRinvpaswd
    } else {
        CommandStatus::EsmeRok
    };
    let name = COctetString::from_str_or_empty(SYSTEM_ID);
    let pdu: Pdu = match role {
        Role::Transmitter => BindTransmitterResp::new(name, None).into(),
        Role::Receiver => BindReceiverResp::new(name, None).into(),
        Role::Transceiver => BindTransceiverResp::new(name, None).into(),
    };
    if status == CommandStatus::EsmeRok {
        writer
            .send(Command::new(status, c.sequence_number, pdu))
            .await?;
        return Ok(Some(role));
    }
    // A refused bind is answered with the header alone, as SMSCs commonly do (and some
    // ESMEs expect: a body after an error status is not read).
    shared.tally.refused_binds.fetch_add(1, Relaxed);
    let id = u32::from(c.id()) | 0x8000_0000;
    let mut header = Vec::with_capacity(16);
    for word in [16, id, u32::from(status), c.sequence_number] {
        header.extend_from_slice(&word.to_be_bytes());
    }
    let out = writer.get_mut();
    out.write_all(&header)
        .await
        .map_err(|e| SessionError::Encode(e.into()))?;
    out.flush()
        .await
        .map_err(|e| SessionError::Encode(e.into()))?;
    Ok(None)
}

/// `COctetString` from text that is known to fit.
trait OrEmpty {
    fn from_str_or_empty(s: &str) -> Self;
}

impl<const MIN: usize, const MAX: usize> OrEmpty for COctetString<MIN, MAX> {
    fn from_str_or_empty(s: &str) -> Self {
        <COctetString<MIN, MAX> as std::str::FromStr>::from_str(s)
            .unwrap_or_else(|_| COctetString::empty())
    }
}

impl Session {
    async fn run<R, W>(
        &mut self,
        reader: &mut FramedRead<R, CommandCodec>,
        writer: &mut FramedWrite<W, CommandCodec>,
    ) -> Result<(), SessionError>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let shared = self.shared.clone();
        loop {
            let mut next_due = self.heap.peek().map(|s| s.due);
            if self.role.receives() {
                // The backlog is also looked at now and then, whatever wakes this bind.
                let poll = Instant::now() + BACKLOG_POLL;
                next_due = Some(next_due.map_or(poll, |d| d.min(poll)));
            }
            tokio::select! {
                frame = reader.next() => {
                    let Some(frame) = frame else { return Ok(()) };
                    if !self.handle(frame?) {
                        self.write_due(writer, true).await?;
                        return Ok(());
                    }
                    for _ in 0..READ_BURST {
                        match reader.next().now_or_never() {
                            Some(Some(frame)) => {
                                if !self.handle(frame?) {
                                    self.write_due(writer, true).await?;
                                    return Ok(());
                                }
                            }
                            Some(None) => return Ok(()),
                            None => break,
                        }
                    }
                }
                _ = sleep_until(next_due) => {}
                _ = shared.backlog.notified(), if self.role.receives() => {}
            }
            if self.role.receives() {
                for (due, d) in shared.backlog.take(BACKLOG_TAKE) {
                    self.schedule(due, Outgoing::Deliver(d));
                }
            }
            self.write_due(writer, false).await?;
        }
    }

    fn schedule(&mut self, due: Instant, what: Outgoing) {
        self.order += 1;
        self.heap.push(Scheduled {
            due,
            order: self.order,
            what: Box::new(what),
        });
    }

    fn answer(&mut self, due: Instant, command: Command) {
        self.schedule(
            due,
            Outgoing::Answer {
                command,
                submit: false,
                accepted: None,
            },
        );
    }

    /// Handles one PDU from the ESME; answers false when the bind is over (`unbind`).
    fn handle(&mut self, c: Command) -> bool {
        let now = Instant::now();
        let seq = c.sequence_number;
        match c.pdu() {
            Some(Pdu::SubmitSm(s)) if self.role.sends() => self.submit(now, seq, s),
            Some(Pdu::SubmitSm(_)) => {
                let resp =
                    Command::new(CommandStatus::EsmeRinvbndsts, seq, SubmitSmResp::default());
                self.answer(now, resp);
            }
            Some(Pdu::EnquireLink) => self.answer(
                now,
                Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp),
            ),
            Some(Pdu::Unbind) => {
                self.answer(
                    now,
                    Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp),
                );
                return false;
            }
            Some(Pdu::DeliverSmResp(_)) => self.delivery_answered(now, seq, c.status),
            Some(Pdu::EnquireLinkResp | Pdu::GenericNack) => {}
            _ => self.answer(
                now,
                Command::new(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack),
            ),
        }
        true
    }

    fn submit(&mut self, now: Instant, seq: u32, s: &SubmitSm) {
        let shared = self.shared.clone();
        let settings = &shared.settings;
        shared.tally.submit_received(&self.record);
        self.outstanding += 1;
        self.record.observe_outstanding(self.outstanding);
        let latency = settings.latency_ms + settings.latency_jitter_ms * self.rng.gen::<f64>();
        let due = now + Duration::from_secs_f64(latency.max(0.0) / 1e3);
        let roll: f64 = self.rng.gen();
        let refusal = if roll < settings.throttled_rate {
            shared.tally.throttled.fetch_add(1, Relaxed);
            Some(CommandStatus::EsmeRthrottled)
        } else if roll < settings.throttled_rate + settings.queue_full_rate {
            shared.tally.queue_full.fetch_add(1, Relaxed);
            Some(CommandStatus::EsmeRmsgqful)
        } else {
            None
        };
        let destination = deliver::destination_number(s);
        let (command, accepted) = match (refusal, destination) {
            (Some(status), _) => (Command::new(status, seq, SubmitSmResp::default()), None),
            (None, None) => (
                Command::new(CommandStatus::EsmeRinvdstadr, seq, SubmitSmResp::default()),
                None,
            ),
            (None, Some(to)) => {
                shared.tally.accept(to, deliver::part_number(s));
                let n = shared.next_id.fetch_add(1, Relaxed);
                let id = settings.message_id.write(n);
                let resp = SubmitSmResp::builder()
                    .message_id(COctetString::from_str_or_empty(&id))
                    .build();
                let accepted = Accepted {
                    message_id: id,
                    destination: s.destination_addr.as_str().to_string(),
                    source: s.source_addr.as_str().to_string(),
                    source_ton: u8::from(s.source_addr_ton),
                    source_npi: u8::from(s.source_addr_npi),
                    submitted: Utc::now(),
                    wants_receipt: u8::from(s.registered_delivery) & 0x03 != 0,
                };
                (
                    Command::new(CommandStatus::EsmeRok, seq, resp),
                    Some(accepted),
                )
            }
        };
        self.schedule(
            due,
            Outgoing::Answer {
                command,
                submit: true,
                accepted,
            },
        );
    }

    fn delivery_answered(&mut self, now: Instant, seq: u32, status: CommandStatus) {
        let Some(d) = self.in_flight.remove(&seq) else {
            return;
        };
        let tally = &self.shared.tally;
        if status == CommandStatus::EsmeRok {
            match d.kind {
                DeliveryKind::Receipt => tally.receipts_acknowledged.fetch_add(1, Relaxed),
                DeliveryKind::Reply => tally.replies_acknowledged.fetch_add(1, Relaxed),
            };
        } else {
            tally.deliveries_refused.fetch_add(1, Relaxed);
            let again = now + Duration::from_millis(self.shared.settings.redeliver_ms);
            self.schedule(again, Outgoing::Deliver(d));
        }
    }

    /// After a submit's `ESME_ROK` is written: its receipt (and maybe a reply) is planned.
    fn plan_way_back(&mut self, now: Instant, a: Accepted) {
        let settings = self.shared.settings.clone();
        if settings.receipts == ReceiptForm::None || !a.wants_receipt {
            return;
        }
        let delivered = self.rng.gen::<f64>() < settings.delivered_rate;
        let tally = &self.shared.tally;
        if delivered {
            tally.planned_delivered.fetch_add(1, Relaxed);
        } else {
            tally.planned_undelivered.fetch_add(1, Relaxed);
        }
        let due = now + Duration::from_millis(settings.receipt_delay_ms);
        let reply = (self.rng.gen::<f64>() < settings.reply_rate)
            .then(|| deliver::reply(&a, &settings.reply_text));
        let receipt = Delivery {
            kind: DeliveryKind::Receipt,
            pdu: deliver::receipt(&a, delivered, settings.receipts, Utc::now()),
        };
        let mut out = vec![receipt];
        out.extend(reply.map(|pdu| Delivery {
            kind: DeliveryKind::Reply,
            pdu,
        }));
        for d in out {
            if self.role.receives() {
                self.schedule(due, Outgoing::Deliver(d));
            } else {
                self.shared.backlog.push_at(due, d);
            }
        }
    }

    /// Writes everything due (everything, with `all`) in one flush.
    async fn write_due<W>(
        &mut self,
        writer: &mut FramedWrite<W, CommandCodec>,
        all: bool,
    ) -> Result<(), SessionError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let now = Instant::now();
        let mut wrote = false;
        while self.heap.peek().is_some_and(|s| all || s.due <= now) {
            let Some(item) = self.heap.pop() else { break };
            match *item.what {
                Outgoing::Answer {
                    command,
                    submit,
                    accepted,
                } => {
                    writer.feed(command).await?;
                    wrote = true;
                    if submit {
                        self.outstanding = self.outstanding.saturating_sub(1);
                    }
                    if let Some(a) = accepted {
                        self.plan_way_back(now, a);
                    }
                }
                Outgoing::Deliver(d) if all => self.shared.backlog.push_at(now, d),
                Outgoing::Deliver(d) => {
                    let seq = self.next_sequence;
                    self.next_sequence = self.next_sequence.wrapping_add(1).max(1);
                    let tally = &self.shared.tally;
                    match d.kind {
                        DeliveryKind::Receipt => tally.receipts_sent.fetch_add(1, Relaxed),
                        DeliveryKind::Reply => tally.replies_sent.fetch_add(1, Relaxed),
                    };
                    writer
                        .feed(Command::new(CommandStatus::EsmeRok, seq, d.pdu.clone()))
                        .await?;
                    wrote = true;
                    self.in_flight.insert(seq, d);
                }
            }
        }
        if wrote {
            SinkExt::<Command>::flush(writer).await?;
        }
        Ok(())
    }

    /// The bind is over: its unsent and unanswered deliveries wait for another bind.
    fn hand_back(&mut self) {
        let now = Instant::now();
        for item in std::mem::take(&mut self.heap) {
            if let Outgoing::Deliver(d) = *item.what {
                self.shared.backlog.push_at(now, d);
            }
        }
        for (_, d) in self.in_flight.drain() {
            self.shared.backlog.push_at(now, d);
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
