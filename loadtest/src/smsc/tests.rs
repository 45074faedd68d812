//! The sink driven by an ESME written here on the `rusmpp` codec: binds, answers, windows,
//! refusals and the way back.

use std::str::FromStr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{MessageState, RegisteredDelivery};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::deliver::{IdFormat, ReceiptForm};
use super::{Sink, SinkSettings};

const LIMIT: Duration = Duration::from_secs(5);

struct Esme {
    r: FramedRead<OwnedReadHalf, CommandCodec>,
    w: FramedWrite<OwnedWriteHalf, CommandCodec>,
    seq: u32,
}

impl Esme {
    async fn connect(sink: &Sink) -> Esme {
        let s = TcpStream::connect(sink.addr).await.expect("connects");
        let (r, w) = s.into_split();
        Esme {
            r: FramedRead::new(r, CommandCodec::new()),
            w: FramedWrite::new(w, CommandCodec::new()),
            seq: 0,
        }
    }

    async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        self.seq += 1;
        let c = Command::new(CommandStatus::EsmeRok, self.seq, pdu);
        self.w.send(c).await.expect("sends");
        self.seq
    }

    async fn next(&mut self) -> Command {
        tokio::time::timeout(LIMIT, self.r.next())
            .await
            .expect("an answer in time")
            .expect("the connection is open")
            .expect("a PDU that decodes")
    }

    async fn bind(&mut self, password: &str) -> CommandStatus {
        let bind = BindTransceiver::builder()
            .system_id(COctetString::from_str("herald").expect("fits"))
            .password(COctetString::from_str(password).expect("fits"))
            .build();
        self.send(bind).await;
        self.next().await.status
    }

    async fn submit(&mut self, to: &str) -> u32 {
        let s = SubmitSm::builder()
            .source_addr(COctetString::from_str("HERALD").expect("fits"))
            .destination_addr(COctetString::from_str(to).expect("fits"))
            .registered_delivery(RegisteredDelivery::from(1))
            .short_message(OctetString::from_str("hello").expect("fits"))
            .build();
        self.send(s).await
    }
}

fn settings() -> SinkSettings {
    SinkSettings {
        receipts: ReceiptForm::None,
        ..SinkSettings::default()
    }
}

#[tokio::test]
async fn a_bind_with_the_wrong_password_or_system_id_is_refused() {
    let sink = Sink::start(settings()).await.expect("starts");
    let mut esme = Esme::connect(&sink).await;
    assert_eq!(esme.bind("wrong").await, CommandStatus::EsmeRinvpaswd);
    let mut esme = Esme::connect(&sink).await;
    let bind = BindTransmitter::builder()
        .system_id(COctetString::from_str("other").expect("fits"))
        .password(COctetString::from_str("secret").expect("fits"))
        .build();
    esme.send(bind).await;
    assert_eq!(esme.next().await.status, CommandStatus::EsmeRinvsysid);
    let mut esme = Esme::connect(&sink).await;
    assert_eq!(esme.bind("secret").await, CommandStatus::EsmeRok);
    assert_eq!(sink.tally.view().refused_binds, 2);
}

#[tokio::test]
async fn submits_are_answered_with_ids_counted_per_recipient_and_windowed() {
    let sink = Sink::start(SinkSettings {
        latency_ms: 50.0,
        message_id: IdFormat::Decimal,
        ..settings()
    })
    .await
    .expect("starts");
    let mut esme = Esme::connect(&sink).await;
    assert_eq!(esme.bind("secret").await, CommandStatus::EsmeRok);
    let started = std::time::Instant::now();
    let mut sent = Vec::new();
    for to in [
        "8613800000001",
        "8613800000002",
        "8613800000003",
        "8613800000001",
    ] {
        sent.push(esme.submit(to).await);
    }
    let mut ids = Vec::new();
    for _ in 0..4 {
        let c = esme.next().await;
        assert_eq!(c.status, CommandStatus::EsmeRok);
        assert!(sent.contains(&c.sequence_number));
        let Some(Pdu::SubmitSmResp(r)) = c.pdu() else {
            panic!("submit_sm_resp: {c:?}")
        };
        ids.push(r.message_id().as_str().to_string());
    }
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "answered before the latency"
    );
    assert!(
        ids.iter().all(|id| id.parse::<u64>().is_ok()),
        "decimal ids: {ids:?}"
    );
    ids.dedup();
    assert_eq!(ids.len(), 4);
    let seq = esme.send(Pdu::EnquireLink).await;
    let c = esme.next().await;
    assert_eq!(
        (c.sequence_number, c.id()),
        (seq, rusmpp::CommandId::EnquireLinkResp)
    );
    let v = sink.tally.view();
    assert_eq!(
        (v.submits, v.accepted, v.distinct, v.duplicates),
        (4, 4, 3, 1)
    );
    assert_eq!(v.max_outstanding(), 4, "all four were held by the latency");
    let seq = esme.send(Pdu::Unbind).await;
    let c = esme.next().await;
    assert_eq!(
        (c.sequence_number, c.id()),
        (seq, rusmpp::CommandId::UnbindResp)
    );
}

#[tokio::test]
async fn the_configured_share_is_throttled_and_not_counted_as_accepted() {
    let sink = Sink::start(SinkSettings {
        throttled_rate: 0.5,
        queue_full_rate: 0.5,
        ..settings()
    })
    .await
    .expect("starts");
    let mut esme = Esme::connect(&sink).await;
    esme.bind("secret").await;
    for i in 0..40 {
        esme.submit(&format!("86138000000{i:02}")).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(esme.next().await.status);
    }
    let throttled = statuses
        .iter()
        .filter(|s| **s == CommandStatus::EsmeRthrottled)
        .count();
    let full = statuses
        .iter()
        .filter(|s| **s == CommandStatus::EsmeRmsgqful)
        .count();
    assert_eq!(throttled + full, 40);
    assert!(throttled > 0 && full > 0, "{throttled} / {full}");
    let v = sink.tally.view();
    assert_eq!(
        (v.accepted, v.throttled as usize, v.queue_full as usize),
        (0, throttled, full)
    );
}

#[tokio::test]
async fn receipts_come_back_under_the_answered_id_and_are_sent_again_when_refused() {
    let sink = Sink::start(SinkSettings {
        receipts: ReceiptForm::Tlv,
        delivered_rate: 1.0,
        redeliver_ms: 50,
        ..settings()
    })
    .await
    .expect("starts");
    let mut esme = Esme::connect(&sink).await;
    esme.bind("secret").await;
    esme.submit("8613800000001").await;
    let answer = esme.next().await;
    let Some(Pdu::SubmitSmResp(r)) = answer.pdu() else {
        panic!("submit_sm_resp: {answer:?}")
    };
    let id = r.message_id().as_str().to_string();
    let mut refused = false;
    loop {
        let c = esme.next().await;
        let Some(Pdu::DeliverSm(d)) = c.pdu() else {
            panic!("deliver_sm: {c:?}")
        };
        assert_eq!(u8::from(d.esm_class), 0x04);
        assert_eq!(d.source_addr.as_str(), "8613800000001");
        let text = String::from_utf8_lossy(d.short_message().as_ref()).to_string();
        assert!(
            text.starts_with(&format!("id:{id} ")) && text.contains("stat:DELIVRD"),
            "{text}"
        );
        let tlv_id = d.tlvs().iter().find_map(|t| match t.value() {
            Some(TlvValue::ReceiptedMessageId(v)) => Some(v.as_str().to_string()),
            _ => None,
        });
        assert_eq!(tlv_id.as_deref(), Some(id.as_str()));
        assert!(d.tlvs().iter().any(|t| matches!(
            t.value(),
            Some(TlvValue::MessageState(MessageState::Delivered))
        )));
        let status = if refused {
            CommandStatus::EsmeRok
        } else {
            CommandStatus::EsmeRxTAppn
        };
        let resp = Command::new(status, c.sequence_number, DeliverSmResp::default());
        esme.w.send(resp).await.expect("sends");
        if refused {
            break;
        }
        refused = true;
    }
    let limit = std::time::Instant::now() + LIMIT;
    while sink.tally.view().receipts_acknowledged < 1 && std::time::Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = sink.tally.view();
    assert_eq!(
        (
            v.receipts_sent,
            v.deliveries_refused,
            v.receipts_acknowledged
        ),
        (2, 1, 1)
    );
}
