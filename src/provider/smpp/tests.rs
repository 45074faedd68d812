//! The bind session against a scripted SMSC on 127.0.0.1:0: the behaviours an SMSC seldom
//! shows on request (a held window, silence, its own enquire_link, an unknown command, an
//! unbind). Interoperability with an SMSC herald did not write is tested in `tests/smpp`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiverResp, DeliverSm, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::EsmClass;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;

use super::config::SmppConfig;
use super::{SmppProvider, SmppSettings};
use crate::callbacks::inbound::Inbound;
use crate::callbacks::receipt::Receipt;
use crate::config::MessageIdFormat;
use crate::domain::{Address, Channel, JobId, MessageId};
use crate::provider::{EventError, OutboundMessage, Provider, ProviderEvents, SendOutcome};

type Peer = Framed<TcpStream, CommandCodec>;

const LIMIT: Duration = Duration::from_secs(5);

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

fn settings(port: u16, adjust: impl FnOnce(&mut SmppConfig)) -> SmppSettings {
    let mut smpp = SmppConfig {
        host: "127.0.0.1".into(),
        port,
        system_id: "herald".into(),
        source_addr: "HERALD".into(),
        response_timeout_ms: 400,
        reconnect_min_ms: 20,
        reconnect_max_ms: 50,
        ..SmppConfig::default()
    };
    adjust(&mut smpp);
    SmppSettings {
        name: "fake".into(),
        smpp,
        message_id_format: MessageIdFormat::Opaque,
        jitter_seed: 1,
    }
}

/// Accepts a connection and answers its bind_transceiver.
async fn accept_bind(l: &TcpListener) -> Peer {
    let (stream, _) = tokio::time::timeout(LIMIT, l.accept())
        .await
        .expect("a connection in time")
        .expect("accept");
    let mut peer = Framed::new(stream, CommandCodec::new());
    let bind = next(&mut peer).await;
    assert_eq!(bind.id(), CommandId::BindTransceiver);
    let resp = BindTransceiverResp::builder()
        .system_id(COctetString::from_string("FAKE".into()).expect("id"))
        .build();
    peer.send(Command::new(
        CommandStatus::EsmeRok,
        bind.sequence_number,
        resp,
    ))
    .await
    .expect("send");
    peer
}

async fn next(peer: &mut Peer) -> Command {
    tokio::time::timeout(LIMIT, peer.next())
        .await
        .expect("a PDU in time")
        .expect("not closed")
        .expect("decodes")
}

fn submit_resp(seq: u32, id: &str) -> Command {
    let resp = SubmitSmResp::builder()
        .message_id(COctetString::from_string(id.into()).expect("id"))
        .build();
    Command::new(CommandStatus::EsmeRok, seq, resp)
}

fn message(n: usize) -> OutboundMessage {
    OutboundMessage {
        id: MessageId::derive(&JobId::generate(), &format!("c{n}"), Channel::Sms),
        to: Address::Phone(8613123000000 + n as u64),
        channel: Channel::Sms,
        body: "hello".into(),
        parts: 1,
        content: None,
    }
}

#[tokio::test]
async fn at_most_window_submits_are_outstanding_and_answers_match_by_sequence() {
    let (l, port) = listener().await;
    let p = Arc::new(SmppProvider::start(settings(port, |c| c.window = 2), None));
    let mut peer = accept_bind(&l).await;
    let sender = {
        let p = p.clone();
        tokio::spawn(async move {
            let batch: Vec<_> = (0..5).map(message).collect();
            p.send_batch(&batch).await
        })
    };
    let first = [next(&mut peer).await, next(&mut peer).await];
    // The window is full: nothing more comes until an answer.
    assert!(
        tokio::time::timeout(Duration::from_millis(150), peer.next())
            .await
            .is_err()
    );
    // Answered out of order, by sequence number.
    peer.send(submit_resp(first[1].sequence_number, "id-b"))
        .await
        .expect("send");
    peer.send(submit_resp(first[0].sequence_number, "id-a"))
        .await
        .expect("send");
    let mut answered = 2;
    while answered < 5 {
        let c = next(&mut peer).await;
        assert_eq!(c.id(), CommandId::SubmitSm);
        peer.send(submit_resp(c.sequence_number, &format!("id-{answered}")))
            .await
            .expect("send");
        answered += 1;
    }
    let out = sender.await.expect("sender");
    assert!(
        out.iter()
            .all(|o| matches!(o, SendOutcome::Accepted { .. })),
        "{out:?}"
    );
    let ids: std::collections::HashSet<_> = out
        .iter()
        .map(|o| match o {
            SendOutcome::Accepted {
                provider_message_id,
            } => provider_message_id.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(ids.len(), 5, "every message its own answer");
    p.shutdown().await;
}

#[tokio::test]
async fn silence_is_a_transient_timeout_and_a_generic_nack_answers_its_request() {
    let (l, port) = listener().await;
    let p = SmppProvider::start(settings(port, |_| {}), None);
    let mut peer = accept_bind(&l).await;
    let one = [message(1)];
    let (out, _) = tokio::join!(p.send_batch(&one), next(&mut peer));
    match &out[0] {
        SendOutcome::Transient { error } => assert!(error.contains("no submit_sm_resp"), "{error}"),
        other => panic!("{other:?}"),
    }
    let nack = async {
        let c = next(&mut peer).await;
        peer.send(Command::new(
            CommandStatus::EsmeRthrottled,
            c.sequence_number,
            Pdu::GenericNack,
        ))
        .await
        .expect("send");
    };
    let two = [message(2)];
    let (out, ()) = tokio::join!(p.send_batch(&two), nack);
    assert!(matches!(out[0], SendOutcome::Throttled { .. }), "{out:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn the_bind_keeps_the_link_alive_and_answers_what_the_smsc_asks() {
    let (l, port) = listener().await;
    let p = SmppProvider::start(settings(port, |c| c.enquire_link_seconds = 1), None);
    let mut peer = accept_bind(&l).await;
    // Idle: herald probes with enquire_link.
    let probe = next(&mut peer).await;
    assert_eq!(probe.id(), CommandId::EnquireLink);
    peer.send(Command::new(
        CommandStatus::EsmeRok,
        probe.sequence_number,
        Pdu::EnquireLinkResp,
    ))
    .await
    .expect("send");
    // The SMSC's own enquire_link is answered under its sequence number.
    peer.send(Command::new(CommandStatus::EsmeRok, 77, Pdu::EnquireLink))
        .await
        .expect("send");
    let resp = next(&mut peer).await;
    assert_eq!(
        (resp.id(), resp.sequence_number),
        (CommandId::EnquireLinkResp, 77)
    );
    // A command herald does not serve gets a generic_nack, and the bind stays up.
    let unknown = Pdu::Other {
        command_id: CommandId::Other(0x0000_0099),
        body: AnyOctetString::from_static_slice(b"x"),
    };
    peer.send(Command::new(CommandStatus::EsmeRok, 78, unknown))
        .await
        .expect("send");
    let nack = next(&mut peer).await;
    assert_eq!(
        (nack.id(), nack.sequence_number),
        (CommandId::GenericNack, 78)
    );
    assert_eq!(nack.status, CommandStatus::EsmeRinvcmdid);
    // A deliver_sm whose body does not decode (a source_addr that is not ASCII) is refused
    // for good with its own response.
    let mut bad = vec![0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 79, 0, 1, 1];
    bad.extend_from_slice("退订\0".as_bytes());
    bad.extend_from_slice(&[5, 0, b'H', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let len = bad.len() as u32;
    bad[..4].copy_from_slice(&len.to_be_bytes());
    peer.get_mut().write_all(&bad).await.expect("write");
    let refused = next(&mut peer).await;
    assert_eq!(
        (refused.id(), refused.sequence_number),
        (CommandId::DeliverSmResp, 79)
    );
    assert_eq!(refused.status, CommandStatus::EsmeRxPAppn);
    assert_eq!(p.bound_binds(), 1);
    p.shutdown().await;
    let unbind = next(&mut peer).await;
    assert_eq!(unbind.id(), CommandId::Unbind);
}

#[tokio::test]
async fn an_unbind_or_an_unanswered_probe_makes_it_bind_again() {
    let (l, port) = listener().await;
    let p = SmppProvider::start(settings(port, |c| c.enquire_link_seconds = 1), None);
    let mut peer = accept_bind(&l).await;
    peer.send(Command::new(CommandStatus::EsmeRok, 5, Pdu::Unbind))
        .await
        .expect("send");
    let resp = next(&mut peer).await;
    assert_eq!(
        (resp.id(), resp.sequence_number),
        (CommandId::UnbindResp, 5)
    );
    // A new connection and bind follow.
    let mut peer = accept_bind(&l).await;
    // This SMSC never answers enquire_link: the bind is dropped and made again.
    let probe = next(&mut peer).await;
    assert_eq!(probe.id(), CommandId::EnquireLink);
    let _again = accept_bind(&l).await;
    p.shutdown().await;
}

#[tokio::test]
async fn a_refused_bind_is_tried_again_later() {
    let (l, port) = listener().await;
    let p = SmppProvider::start(settings(port, |c| c.connect_timeout_ms = 200), None);
    for _ in 0..2 {
        let (stream, _) = l.accept().await.expect("accept");
        let mut peer = Framed::new(stream, CommandCodec::new());
        let bind = next(&mut peer).await;
        let refused = BindTransceiverResp::builder().build();
        peer.send(Command::new(
            CommandStatus::EsmeRinvpaswd,
            bind.sequence_number,
            refused,
        ))
        .await
        .expect("send");
    }
    assert_eq!(p.bound_binds(), 0);
    let out = p.send_batch(&[message(1)]).await;
    assert!(matches!(out[0], SendOutcome::Unavailable { .. }), "{out:?}");
    p.shutdown().await;
}

/// A sink that takes a receipt only when let through, and refuses inbound replies.
struct Gate(Semaphore);

#[async_trait]
impl ProviderEvents for Gate {
    async fn receipt(&self, _: &str, _: Receipt) -> Result<(), EventError> {
        let permit = self
            .0
            .acquire()
            .await
            .map_err(|e| EventError(Box::new(e)))?;
        permit.forget();
        Ok(())
    }

    async fn inbound(&self, _: &str, _: Inbound) -> Result<(), EventError> {
        Err(EventError("the state store is down".into()))
    }
}

fn deliver_sm(esm_class: u8, text: &str) -> DeliverSm {
    DeliverSm::builder()
        .source_addr(COctetString::from_string("8613123079337".into()).expect("addr"))
        .destination_addr(COctetString::from_string("HERALD".into()).expect("addr"))
        .esm_class(EsmClass::from(esm_class))
        .short_message(OctetString::from_string(text.into()).expect("text"))
        .build()
}

#[tokio::test]
async fn a_slow_sink_holds_its_receipt_not_the_binds_answers() {
    let (l, port) = listener().await;
    let gate = Arc::new(Gate(Semaphore::new(0)));
    let p = Arc::new(SmppProvider::start(
        settings(port, |_| {}),
        Some(gate.clone() as Arc<dyn ProviderEvents>),
    ));
    let mut peer = accept_bind(&l).await;
    peer.send(Command::new(
        CommandStatus::EsmeRok,
        40,
        deliver_sm(0x04, "id:7 stat:DELIVRD"),
    ))
    .await
    .expect("send");
    // The receipt waits at the sink; a submit is still answered meanwhile.
    let one = [message(1)];
    let answer_it = async {
        let c = next(&mut peer).await;
        assert_eq!(c.id(), CommandId::SubmitSm);
        peer.send(submit_resp(c.sequence_number, "m1"))
            .await
            .expect("send");
    };
    let (out, ()) = tokio::join!(p.send_batch(&one), answer_it);
    assert!(matches!(out[0], SendOutcome::Accepted { .. }), "{out:?}");
    // A reply the sink cannot apply is refused for now: the SMSC will send it again.
    peer.send(Command::new(
        CommandStatus::EsmeRok,
        41,
        deliver_sm(0, "STOP"),
    ))
    .await
    .expect("send");
    let refused = next(&mut peer).await;
    assert_eq!(
        (refused.id(), refused.sequence_number),
        (CommandId::DeliverSmResp, 41)
    );
    assert_eq!(refused.status, CommandStatus::EsmeRxTAppn);
    gate.0.add_permits(1);
    let taken = next(&mut peer).await;
    assert_eq!(
        (taken.id(), taken.sequence_number),
        (CommandId::DeliverSmResp, 40)
    );
    assert_eq!(taken.status, CommandStatus::EsmeRok);
    p.shutdown().await;
}

/// A sink that records receipts.
#[derive(Default)]
struct Receipts(parking_lot::Mutex<Vec<Receipt>>);

#[async_trait]
impl ProviderEvents for Receipts {
    async fn receipt(&self, _: &str, receipt: Receipt) -> Result<(), EventError> {
        self.0.lock().push(receipt);
        Ok(())
    }

    async fn inbound(&self, _: &str, _: Inbound) -> Result<(), EventError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_receipt_that_overtakes_its_answer_still_counts_for_its_part() {
    let (l, port) = listener().await;
    let sink = Arc::new(Receipts::default());
    let p = SmppProvider::start(
        settings(port, |_| {}),
        Some(sink.clone() as Arc<dyn ProviderEvents>),
    );
    let mut peer = accept_bind(&l).await;
    let mut long = message(1);
    long.body = "x".repeat(200);
    long.parts = 2;
    let smsc = async {
        let first = next(&mut peer).await;
        peer.send(submit_resp(first.sequence_number, "p1"))
            .await
            .expect("send");
        let second = next(&mut peer).await;
        // The receipt of part 2 comes before the answer that names it.
        peer.send(Command::new(
            CommandStatus::EsmeRok,
            50,
            deliver_sm(0x04, "id:p2 stat:DELIVRD"),
        ))
        .await
        .expect("send");
        peer.send(submit_resp(second.sequence_number, "p2"))
            .await
            .expect("send");
        let mut resp = next(&mut peer).await;
        let mut sequence = 50;
        while resp.status == CommandStatus::EsmeRxTAppn {
            // Asked again later, as an SMSC does.
            tokio::time::sleep(Duration::from_millis(20)).await;
            sequence += 1;
            peer.send(Command::new(
                CommandStatus::EsmeRok,
                sequence,
                deliver_sm(0x04, "id:p2 stat:DELIVRD"),
            ))
            .await
            .expect("send");
            resp = next(&mut peer).await;
        }
        assert_eq!(
            (resp.id(), resp.status),
            (CommandId::DeliverSmResp, CommandStatus::EsmeRok)
        );
        peer.send(Command::new(
            CommandStatus::EsmeRok,
            60,
            deliver_sm(0x04, "id:p1 stat:UNDELIV"),
        ))
        .await
        .expect("send");
        next(&mut peer).await
    };
    let one = [long];
    let (out, last) = tokio::join!(p.send_batch(&one), smsc);
    assert_eq!(
        out[0],
        SendOutcome::Accepted {
            provider_message_id: "p2".into()
        }
    );
    assert_eq!(
        (last.sequence_number, last.status),
        (60, CommandStatus::EsmeRok)
    );
    let got: Vec<_> = sink
        .0
        .lock()
        .iter()
        .map(|r| (r.message_id.clone(), r.update.part))
        .collect();
    assert_eq!(
        got,
        vec![
            ("p2".to_string(), Some((2, 2))),
            ("p2".to_string(), Some((1, 2)))
        ]
    );
    p.shutdown().await;
}
