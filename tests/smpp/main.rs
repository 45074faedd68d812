//! herald's SMPP provider against an SMSC it did not write: the `smpp34` package's server,
//! driven by `smsc.py` on a free loopback port. Jobs go through a real gateway; receipts,
//! replies, throttling and binds are checked on the provider itself, with a recording events
//! sink. A missing simulator fails the test with the command that installs it.

mod binds;
mod crash;
mod in_flight;
mod metrics;
mod replies;
mod smsc;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::callbacks::inbound::Inbound;
use herald::callbacks::receipt::Receipt;
use herald::config::{
    LongMessages, MessageIdFormat, ProviderKind, ReceiptIdConversion, SmppConfig,
};
use herald::dispatch::ReceiptStatus;
use herald::domain::{Address, Channel, JobId, MessageId};
use herald::provider::smpp::{SmppProvider, SmppSettings};
use herald::provider::{EventError, OutboundMessage, Provider, ProviderEvents, SendOutcome};
use herald::template::count_parts;
use herald_testkit::{contacts_csv, sms_job, Gateway};
use parking_lot::Mutex;
use serde_json::{json, Value};
use smsc::{unhex, Smsc};

const WAIT: Duration = Duration::from_secs(20);

fn smpp_config(port: u16) -> SmppConfig {
    SmppConfig {
        host: "127.0.0.1".into(),
        port,
        system_id: "herald".into(),
        source_addr: "HERALD".into(),
        window: 4,
        response_timeout_ms: 3_000,
        enquire_link_seconds: 30,
        reconnect_min_ms: 50,
        reconnect_max_ms: 500,
        ..SmppConfig::default()
    }
}

/// A gateway whose provider is `smpp`, without frequency caps, with `contacts` contacts
/// `c0..` loaded.
async fn smpp_gateway(smpp: SmppConfig, contacts: usize) -> Gateway {
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        let p = &mut c.providers[0];
        p.kind = ProviderKind::Smpp;
        p.idempotent = false;
        p.smpp = Some(smpp);
    })
    .await;
    g.load_csv(&contacts_csv(contacts)).await;
    g
}

/// Recipients `c{from}..c{from+n}` as a job audience.
fn audience(from: usize, n: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| json!({"contact_id": format!("c{i}")}))
            .collect(),
    )
}

/// Runs one job and checks it against what the SMSC saw; returns the submit_sm of the job.
async fn job_through(
    g: &Gateway,
    smsc: &mut Smsc,
    body: &str,
    from: usize,
    n: usize,
) -> Vec<Value> {
    let before = smsc.of("submit_sm").len();
    let (status, answer) = g.submit(&sms_job("smpp", body, audience(from, n))).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().expect("job id").to_string();
    let done = g.wait_status(&id, "completed", WAIT).await;
    assert_eq!(done["counts"]["sent"], n as u64, "{done:#}");
    assert_eq!(done["counts"]["failed"], 0, "{done:#}");

    let ledger = g.ledger_entries(&format!("job_id={id}")).await;
    let parts: u64 = ledger
        .iter()
        .map(|e| e["parts"].as_u64().expect("parts"))
        .sum();
    let submits = smsc
        .wait_count("submit_sm", before + parts as usize, WAIT)
        .await
        .split_off(before);
    // Nothing more arrives later: herald sent exactly the parts it billed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    smsc.drain();
    assert_eq!(smsc.of("submit_sm").len(), before + parts as usize);
    assert_eq!(parts, n as u64 * u64::from(count_parts(body).parts));
    // The ledger holds the SMSC's id of each message's last part.
    let last_ids: HashSet<String> = submits
        .iter()
        .filter(|s| {
            let sm = unhex(s["short_message"].as_str().unwrap_or_default());
            s["esm_class"].as_u64() == Some(0) || sm.get(4) == sm.get(5)
        })
        .filter_map(|s| s["message_id"].as_str().map(str::to_string))
        .collect();
    let charged: HashSet<String> = ledger
        .iter()
        .filter_map(|e| e["provider_message_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(charged, last_ids);
    for s in &submits {
        assert_eq!(s["source_addr"], "HERALD");
        assert_eq!(s["source_addr_ton"], 5, "alphanumeric sender");
        assert_eq!(
            (s["dest_addr_ton"].as_u64(), s["dest_addr_npi"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(s["destination_addr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("86131"));
        assert_eq!(s["registered_delivery"], 1);
    }
    submits
}

#[tokio::test]
async fn jobs_go_out_as_exactly_the_parts_herald_billed() {
    let mut smsc = Smsc::start(&[]).await;
    let port = smsc.port;
    let g = smpp_gateway(
        SmppConfig {
            binds: 2,
            ..smpp_config(port)
        },
        30,
    )
    .await;
    assert_eq!(smsc.wait_count("bind", 2, WAIT).await.len(), 2);

    // One GSM part: no header, data_coding 0, septets as octets.
    let short = job_through(
        &g,
        &mut smsc,
        "Sale: 20% off @ the store, today only!",
        0,
        5,
    )
    .await;
    for s in &short {
        assert_eq!(
            (s["esm_class"].as_u64(), s["data_coding"].as_u64()),
            (Some(0), Some(0))
        );
        let sm = unhex(s["short_message"].as_str().unwrap_or_default());
        assert!(
            sm.contains(&0x00) && !sm.contains(&b'@'),
            "'@' is septet 0x00"
        );
    }

    // Long GSM-7: 2 parts with a UDH each, same reference, numbered 1 and 2.
    let long = format!("{} {{€}}", "Long promotion text. ".repeat(8));
    assert_eq!(count_parts(&long).parts, 2);
    let submits = job_through(&g, &mut smsc, &long, 5, 5).await;
    check_udh_parts(&submits, 0, 2);

    // UCS-2: Chinese text in 3 parts of at most 67 units.
    let chinese = "双十一大促，全场五折，回复退订。".repeat(10);
    assert_eq!(count_parts(&chinese).parts, 3);
    let submits = job_through(&g, &mut smsc, &chinese, 10, 4).await;
    check_udh_parts(&submits, 8, 3);
    g.stop().await;
}

/// Every submit is a UDH part of `total`, in `data_coding`, each message complete.
fn check_udh_parts(submits: &[Value], data_coding: u64, total: u8) {
    let mut seen: std::collections::HashMap<(String, u8), Vec<u8>> = Default::default();
    for s in submits {
        assert_eq!(s["esm_class"], 0x40, "UDHI");
        assert_eq!(s["data_coding"], data_coding);
        let sm = unhex(s["short_message"].as_str().unwrap_or_default());
        assert_eq!(&sm[..3], &[5, 0, 3], "concatenation IE, 8-bit reference");
        assert_eq!(sm[4], total);
        let key = (
            s["destination_addr"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            sm[3],
        );
        seen.entry(key).or_default().push(sm[5]);
        let max = if data_coding == 8 { 6 + 134 } else { 6 + 153 };
        assert!(sm.len() <= max, "part too long: {}", sm.len());
    }
    for (key, mut seqs) in seen {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "parts of {key:?}");
    }
}

/// An events sink that records what it is given.
#[derive(Default)]
struct Recorder {
    receipts: Mutex<Vec<(String, Receipt)>>,
    inbound: Mutex<Vec<(String, Inbound)>>,
}

#[async_trait]
impl ProviderEvents for Recorder {
    async fn receipt(&self, provider: &str, receipt: Receipt) -> Result<(), EventError> {
        self.receipts.lock().push((provider.to_string(), receipt));
        Ok(())
    }

    async fn inbound(&self, provider: &str, message: Inbound) -> Result<(), EventError> {
        self.inbound.lock().push((provider.to_string(), message));
        Ok(())
    }
}

async fn provider(config: SmppConfig, events: Option<Arc<Recorder>>) -> SmppProvider {
    let settings = SmppSettings {
        name: "carrier".into(),
        smpp: config,
        message_id_format: MessageIdFormat::Hex,
        jitter_seed: 7,
    };
    let p = SmppProvider::start(settings, events.map(|e| e as Arc<dyn ProviderEvents>));
    assert!(p.wait_bound(WAIT).await, "never bound");
    p
}

fn message(n: usize, to: u64, body: &str) -> OutboundMessage {
    let job = JobId::parse("job_smpp_test").unwrap_or_else(JobId::generate);
    OutboundMessage {
        id: MessageId::derive(&job, &format!("c{n}"), Channel::Sms),
        to: Address::Phone(to),
        channel: Channel::Sms,
        body: body.to_string(),
        parts: count_parts(body).parts,
        content: None,
    }
}

fn accepted_id(o: &SendOutcome) -> String {
    match o {
        SendOutcome::Accepted {
            provider_message_id,
        } => provider_message_id.clone(),
        other => panic!("not accepted: {other:?}"),
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tlv_receipts_and_ucs2_replies_reach_the_events_sink() {
    let mut smsc = Smsc::start(&["--receipts", "tlv"]).await;
    let rec = Arc::new(Recorder::default());
    let p = provider(smpp_config(smsc.port), Some(rec.clone())).await;
    let long = "x".repeat(200);
    let out = p
        .send_batch(&[
            message(1, 8613123000001, "hello"),
            message(2, 8613123000002, &long),
        ])
        .await;
    let ids: HashSet<String> = out.iter().map(accepted_id).collect();
    assert_eq!(smsc.wait_count("submit_sm", 3, WAIT).await.len(), 3);
    // One receipt per part, each under the id herald keeps: the long message's as its
    // parts 1 and 2 of 2 (a part's receipt that came before the last part was accepted was
    // refused with ESME_RX_T_APPN and delivered again).
    let receipts = wait_for("3 receipts", || {
        let r = rec.receipts.lock();
        (r.len() >= 3).then(|| r.clone())
    })
    .await;
    assert!(receipts
        .iter()
        .all(|(name, r)| name == "carrier" && r.update.status == ReceiptStatus::Delivered));
    let receipt_ids: HashSet<String> = receipts.iter().map(|(_, r)| r.message_id.clone()).collect();
    assert_eq!(ids, receipt_ids);
    let long_id = accepted_id(&out[1]);
    let mut parts: Vec<_> = receipts
        .iter()
        .filter(|(_, r)| r.message_id == long_id)
        .map(|(_, r)| r.update.part)
        .collect();
    parts.sort();
    assert_eq!(parts, vec![Some((1, 2)), Some((2, 2))]);
    assert_eq!(
        receipts
            .iter()
            .find(|(_, r)| r.message_id != long_id)
            .map(|(_, r)| r.update.part),
        Some(None)
    );
    let answers = wait_for("3 receipts acknowledged", || {
        smsc.drain();
        let answers = smsc.of("deliver_sm_resp");
        (answers.iter().filter(|r| r["status"] == 0).count() >= 3).then_some(answers)
    })
    .await;
    assert!(
        answers
            .iter()
            .all(|r| r["status"] == 0 || r["status"] == 0x64),
        "{answers:?}"
    );

    smsc.command(json!({"cmd": "mo", "from": "8613123079337", "text": "退订", "ucs2": true}));
    smsc.command(json!({"cmd": "mo", "from": "8613123079338", "text": "STOP"}));
    let inbound = wait_for("2 replies", || {
        let m = rec.inbound.lock();
        (m.len() >= 2).then(|| m.clone())
    })
    .await;
    let texts: HashSet<(String, String)> =
        inbound.into_iter().map(|(_, m)| (m.from, m.text)).collect();
    assert!(
        texts.contains(&("+8613123079337".into(), "退订".into())),
        "{texts:?}"
    );
    assert!(
        texts.contains(&("+8613123079338".into(), "STOP".into())),
        "{texts:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn text_receipts_with_decimal_ids_match_hex_submit_ids() {
    let smsc = Smsc::start(&[
        "--receipts",
        "text",
        "--ids",
        "hex",
        "--receipt-ids",
        "decimal",
    ])
    .await;
    let rec = Arc::new(Recorder::default());
    let config = SmppConfig {
        receipt_id_conversion: ReceiptIdConversion::DecimalToHex,
        long_messages: LongMessages::Sar,
        ..smpp_config(smsc.port)
    };
    let p = provider(config, Some(rec.clone())).await;
    let out = p
        .send_batch(&[
            message(1, 8613123000001, "one"),
            message(2, 8613123000002, "two"),
        ])
        .await;
    let ids: HashSet<String> = out.iter().map(accepted_id).collect();
    let got = wait_for("2 receipts", || {
        let r = rec.receipts.lock();
        (r.len() >= 2).then(|| {
            r.iter()
                .map(|(_, r)| r.message_id.clone())
                .collect::<HashSet<_>>()
        })
    })
    .await;
    assert_eq!(got, ids);
    p.shutdown().await;
}

#[tokio::test]
async fn throttling_and_refusals_map_to_outcomes_and_shutdown_unbinds() {
    let mut smsc = Smsc::start(&[
        "--throttle-first",
        "1",
        "--queue-full-next",
        "1",
        "--reject-dest",
        "8613123000009",
    ])
    .await;
    let config = SmppConfig {
        throttle_retry_ms: 750,
        ..smpp_config(smsc.port)
    };
    let p = provider(config, None).await;
    let m = message(1, 8613123000001, "hello");
    // ESME_RTHROTTLED, then ESME_RMSGQFUL: both ask the dispatcher to back off, not fail.
    for status in [0x58, 0x14] {
        let out = p.send_batch(std::slice::from_ref(&m)).await;
        assert_eq!(
            out[0],
            SendOutcome::Throttled {
                retry_after: Duration::from_millis(750)
            }
        );
        let seen = smsc.wait_for("submit_sm", WAIT).await;
        assert_eq!(seen["status"], status);
    }
    let again = p.send_batch(std::slice::from_ref(&m)).await;
    accepted_id(&again[0]);
    let refused = p.send_batch(&[message(2, 8613123000009, "hello")]).await;
    match &refused[0] {
        SendOutcome::Permanent { error } => assert!(error.contains("ESME_RINVDSTADR"), "{error}"),
        other => panic!("not permanent: {other:?}"),
    }
    p.shutdown().await;
    smsc.wait_for("unbound", WAIT).await;
    assert_eq!(p.bound_binds(), 0);
    let after = p.send_batch(&[message(3, 8613123000003, "late")]).await;
    assert!(
        matches!(after[0], SendOutcome::Unavailable { .. }),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_lost_smsc_is_bound_again_when_it_returns() {
    let mut smsc = Smsc::start(&[]).await;
    let port = smsc.port;
    let p = provider(smpp_config(port), None).await;
    accepted_id(&p.send_batch(&[message(1, 8613123000001, "before")]).await[0]);
    smsc.kill();
    drop(smsc);
    wait_for("the bind to drop", || (p.bound_binds() == 0).then_some(())).await;
    let down = p
        .send_batch(&[message(2, 8613123000002, "while down")])
        .await;
    assert!(
        matches!(down[0], SendOutcome::Unavailable { .. }),
        "{down:?}"
    );
    let mut smsc = Smsc::start_on(port, &[]).await;
    smsc.wait_for("bind", WAIT).await;
    assert!(p.wait_bound(WAIT).await);
    accepted_id(&p.send_batch(&[message(3, 8613123000003, "after")]).await[0]);
    p.shutdown().await;
}

#[tokio::test]
async fn a_throttling_smsc_slows_a_job_and_a_refused_number_fails_alone() {
    let mut smsc = Smsc::start(&["--throttle-first", "3", "--reject-dest", "8613123000003"]).await;
    let port = smsc.port;
    let g = smpp_gateway(
        SmppConfig {
            throttle_retry_ms: 50,
            ..smpp_config(port)
        },
        10,
    )
    .await;
    let (status, answer) = g.submit(&sms_job("smpp", "hello", audience(0, 10))).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().expect("job id").to_string();
    let done = g.wait_status(&id, "completed", WAIT).await;
    assert_eq!(done["counts"]["sent"], 9, "{done:#}");
    assert_eq!(done["counts"]["failed"], 1, "{done:#}");
    smsc.drain();
    let submits = smsc.of("submit_sm");
    let throttled = submits.iter().filter(|s| s["status"] == 0x58).count();
    assert_eq!(throttled, 3);
    let accepted: Vec<&str> = submits
        .iter()
        .filter(|s| s["status"] == 0)
        .filter_map(|s| s["destination_addr"].as_str())
        .collect();
    let distinct: HashSet<&str> = accepted.iter().copied().collect();
    assert_eq!(
        (accepted.len(), distinct.len()),
        (9, 9),
        "each accepted once"
    );
    assert!(!distinct.contains("8613123000003"));
    g.stop().await;
}

/// Through a real gateway: the SMSC's receipts, on the bind, settle the job's messages as
/// delivered (a long message when every part is), and a mobile-originated STOP in UCS-2 opts
/// its sender out, as the HTTP callbacks would.
#[tokio::test]
async fn receipts_and_replies_on_the_bind_reach_the_job_and_consent() {
    let mut smsc = Smsc::start(&["--receipts", "tlv"]).await;
    let port = smsc.port;
    let g = smpp_gateway(smpp_config(port), 6).await;
    smsc.wait_for("bind", WAIT).await;

    let long = format!("{} {{€}}", "Long promotion text. ".repeat(8));
    for (body, from, n) in [("Flash sale tonight", 0, 3), (long.as_str(), 3, 2)] {
        let (status, answer) = g
            .submit(&sms_job("smpp-receipts", body, audience(from, n)))
            .await;
        assert_eq!(status, 201, "{answer}");
        let id = answer["id"].as_str().expect("job id").to_string();
        let done = g
            .wait_until(&id, WAIT, |j| {
                j["status"] == "completed" && j["counts"]["delivered"] == n as u64
            })
            .await;
        assert_eq!(done["counts"]["sent"], n as u64, "{done:#}");
        let recipients = g.recipients(&id).await;
        assert!(
            recipients.iter().all(|r| r["delivery"] == "delivered"),
            "{recipients:?}"
        );
    }

    // c5's number replies 退订 (unsubscribe) in UCS-2.
    smsc.command(
        json!({"cmd": "mo", "from": "8613123000005", "to": "HERALD", "text": "退订", "ucs2": true}),
    );
    let started = std::time::Instant::now();
    loop {
        let history = g.get_json("/v1/contacts/c5/consent-history").await;
        if history.to_string().contains("opt_out") {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the reply never opted c5 out: {history}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    g.stop().await;
}
