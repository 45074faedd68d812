//! After a restart, what the provider tells of messages in flight at the crash: from its
//! submit log, and for those the SMSC accepted, their state by `query_sm` (answered by the
//! simulator's relay as SMPP 3.4 section 4.8 specifies).

use std::sync::Arc;

use herald::dispatch::ReceiptStatus;
use herald::provider::smpp::submit_log::{PartTag, SubmitLog};
use herald::provider::{InFlightFate, InFlightMessage, OutboundMessage, Provider};

use crate::smsc::Smsc;
use crate::{accepted_id, message, provider, smpp_config, wait_for, Recorder, WAIT};

fn in_flight(m: &OutboundMessage) -> InFlightMessage {
    InFlightMessage {
        id: m.id,
        to: m.phone(),
        parts: m.parts,
    }
}

#[tokio::test]
async fn accepted_messages_settle_with_their_queried_state_and_unseen_ones_go_again() {
    // message_state 2: DELIVERED.
    let mut smsc = Smsc::start(&["--query-state", "2"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || {
        let mut c = smpp_config(smsc.port);
        c.state_dir = Some(dir.path().to_path_buf());
        c
    };
    let short = message(1, 8613123000001, "Hello");
    let long = message(2, 8613123000002, &"x".repeat(200));
    let never = message(3, 8613123000003, "Not sent");
    let forgotten = message(4, 8613123000004, "Forgotten by the SMSC");

    // The process that crashed: two messages accepted, their answers never recorded.
    let before = provider(config(), None).await;
    let out = before.send_batch(&[short.clone(), long.clone()]).await;
    let ids = [accepted_id(&out[0]), accepted_id(&out[1])];
    before.shutdown().await;
    drop(before);
    // One more the SMSC accepted under an id it has since forgotten.
    let log = SubmitLog::open(dir.path(), "carrier").expect("the log");
    let tag = PartTag {
        message: forgotten.id,
        part: 1,
        total: 1,
    };
    log.writing([&tag]).expect("write");
    log.answered(&tag, 0, "FFFFF");
    drop(log);

    let rec = Arc::new(Recorder::default());
    let after = provider(config(), Some(rec.clone())).await;
    let fates = after.in_flight_fates(&[
        in_flight(&short),
        in_flight(&long),
        in_flight(&never),
        in_flight(&forgotten),
    ]);
    let sent = |id: &str| InFlightFate::Sent {
        provider_message_id: id.to_string(),
    };
    assert_eq!(
        fates,
        vec![
            sent(&ids[0]),
            sent(&ids[1]),
            InFlightFate::NotSent,
            sent("FFFFF")
        ]
    );

    // The SMSC is asked about each accepted one; a final state comes back as its receipt.
    let queries = smsc.wait_count("query_sm", 3, WAIT).await;
    let asked: Vec<(&str, u64)> = queries
        .iter()
        .map(|q| {
            (
                q["message_id"].as_str().unwrap_or_default(),
                q["status"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(
        asked,
        vec![(ids[0].as_str(), 0), (ids[1].as_str(), 0), ("FFFFF", 0x67)]
    );
    let receipts = wait_for("two receipts", || {
        let r = rec.receipts.lock();
        (r.len() >= 2).then(|| r.clone())
    })
    .await;
    for (receipt, id) in receipts.iter().zip(&ids) {
        assert_eq!(receipt.0, "carrier");
        assert_eq!(&receipt.1.message_id, id);
        assert_eq!(receipt.1.update.status, ReceiptStatus::Delivered);
    }
    // The forgotten one brings no receipt: it stays sent, without a state.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rec.receipts.lock().len(), 2);
    after.shutdown().await;
}
