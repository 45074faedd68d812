//! Replies in several parts, sent by the simulator with each kind of concatenation, are
//! joined before keywords are matched: a keyword split across parts opts out, a part that
//! reads as a keyword on its own does not, and a reply missing a part is never applied.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::smsc::Smsc;
use crate::{smpp_config, smpp_gateway, WAIT};

fn number(contact: usize) -> String {
    format!("86131{:08}", 23_000_000 + contact)
}

fn opted_out(history: &Value) -> bool {
    history.to_string().contains("opt_out")
}

#[tokio::test]
async fn multipart_replies_are_joined_before_keywords_are_matched() {
    let mut smsc = Smsc::start(&[]).await;
    let g = smpp_gateway(smpp_config(smsc.port), 6).await;
    smsc.wait_for("bind", WAIT).await;

    // Never whole: c0's second part never comes. c4's first part alone reads "STOP".
    smsc.command(
        json!({"cmd": "mo", "from": number(0), "parts": ["退", "订"],
        "ucs2": true, "order": [0], "ref": 40}),
    );
    smsc.command(
        json!({"cmd": "mo", "from": number(4), "parts": ["STOP", "watch sale?"],
        "concat": "udh8", "ref": 41}),
    );
    // 退订 split across parts, each kind of concatenation, parts out of order.
    smsc.command(
        json!({"cmd": "mo", "from": number(1), "parts": ["退", "订，谢谢"],
        "ucs2": true, "concat": "udh8", "ref": 200, "order": [1, 0]}),
    );
    smsc.command(
        json!({"cmd": "mo", "from": number(2), "parts": ["S", "T", "OP"],
        "concat": "udh16", "ref": 0x1234}),
    );
    smsc.command(
        json!({"cmd": "mo", "from": number(3), "parts": ["退", "订"],
        "ucs2": true, "concat": "sar", "ref": 300}),
    );

    let started = Instant::now();
    for c in [1, 2, 3] {
        loop {
            let history = g
                .get_json(&format!("/v1/contacts/c{c}/consent-history"))
                .await;
            if opted_out(&history) {
                break;
            }
            assert!(started.elapsed() < WAIT, "c{c} never opted out: {history}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every part was acknowledged, the held ones too.
    let resps = smsc
        .wait_count("deliver_sm_resp", 1 + 2 + 2 + 3 + 2, WAIT)
        .await;
    assert!(resps.iter().all(|r| r["status"] == 0), "{resps:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in [0, 4] {
        let history = g
            .get_json(&format!("/v1/contacts/c{c}/consent-history"))
            .await;
        assert!(!opted_out(&history), "c{c} opted out: {history}");
    }
    g.stop().await;
}
