//! The SMSC sink against an ESME it did not write: `esme.py` beside this file, on the
//! `smpp34` package (`python3 -m pip install smpp34`; `.ci/run` installs it). The sink runs as
//! the real `herald-loadtest smsc-sink` process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn an_independent_esme_gets_answers_and_receipts_and_is_counted() {
    let mut sink = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"))
        .args([
            "smsc-sink",
            "--exit-on-stdin-eof",
            "--message-id",
            "decimal",
        ])
        .args([
            "--receipts",
            "tlv",
            "--delivered-rate",
            "1",
            "--latency-ms",
            "20",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts the sink");
    let mut line = String::new();
    BufReader::new(sink.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the sink's addresses");
    let addrs: Value = serde_json::from_str(&line).expect("addresses as JSON");
    let port = |k: &str| {
        addrs[k]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or("0")
            .to_string()
    };
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/esme.py"))
        .args([
            "--port",
            &port("smpp"),
            "--stats-port",
            &port("stats"),
            "--submits",
            "20",
            "--group",
            "7",
        ])
        .output()
        .expect("runs esme.py (needs python3 -m pip install smpp34)");
    let _ = sink.kill();
    let _ = sink.wait();
    assert!(
        out.status.success(),
        "esme.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("esme.py prints JSON");
    // smpp34 reports a refused bind as a failed connect (its text does not carry the status,
    // which the unit tests check); the sink's count says it refused it.
    assert!(
        v["bad_password"].is_string(),
        "a wrong password is refused: {v}"
    );
    let ids: Vec<&str> = v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids.len(), 21);
    assert!(
        ids.iter().all(|id| id.parse::<u64>().is_ok()),
        "decimal ids: {ids:?}"
    );
    assert!(v["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .all(|s| s == 0));
    let receipts = v["receipts"].as_array().expect("receipts");
    assert_eq!(receipts.len(), 21, "one receipt per accepted submit_sm");
    for r in receipts {
        assert_eq!(r["esm_class"], 4);
        let text = r["text"].as_str().unwrap_or_default();
        let id = text
            .strip_prefix("id:")
            .and_then(|t| t.split(' ').next())
            .unwrap_or_default();
        assert!(ids.contains(&id), "receipt for an answered id: {text}");
        assert!(text.contains(" stat:DELIVRD "), "{text}");
        // receipted_message_id (0x001E) carries the same id; message_state (0x0427) is 2.
        assert_eq!(r["tlvs"]["30"].as_str(), Some(id), "{r}");
        assert_eq!(r["tlvs"]["1063"], 2, "{r}");
    }
    let s = &v["stats"];
    assert_eq!(
        (
            s["submits"].as_u64(),
            s["distinct"].as_u64(),
            s["duplicates"].as_u64()
        ),
        (Some(21), Some(20), Some(1)),
        "{s}"
    );
    assert_eq!(s["refused_binds"], 1, "{s}");
    assert_eq!(s["receipts_acknowledged"], 21, "{s}");
    let window = s["binds"][0]["max_outstanding"].as_u64().unwrap_or(0);
    assert_eq!(
        window, 7,
        "groups of 7 held by the latency: the largest window seen is 7"
    );
}
