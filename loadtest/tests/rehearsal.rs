//! A tiny promotion rehearsed end to end through the real binary: the mock provider as a
//! child process, herald over loopback, receipts and clicks sent back. Checks the figures the
//! run writes with `--summary-json`: no duplicates, nothing lost, every receipt applied as the
//! mock decided it, every click redirected and recorded.

use std::process::Command;

use serde_json::Value;

const SCENARIO: &str = r#"
name = "rehearsal-test"
recipients = 2_000

[mock]
latency = "fixed"
latency_p50_ms = 1.0
latency_p99_ms = 1.0
throttle_rate = 0.01
retry_after_seconds = 1
error_rate = 0.01
timeout_rate = 0.0

[receipts]
delay = "uniform"
delay_p50_ms = 100.0
delay_p99_ms = 300.0
batch_size = 50
connections = 2
click_rate = 0.05
wait_seconds = 20

[herald]
timeout_seconds = 20
"#;

#[test]
fn a_small_promotion_gets_every_receipt_and_click_back() {
    let dir = std::env::temp_dir().join(format!("herald-rehearsal-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let scenario = dir.join("scenario.toml");
    let summary = dir.join("summary.json");
    std::fs::write(&scenario, SCENARIO).expect("scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"))
        .arg("run")
        .arg(&scenario)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .expect("run herald-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = std::fs::read_to_string(&summary).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_str(&text).expect("summary JSON");
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    assert!(n(&s["sent"]) > 1_800, "{s}");
    let w = &s["way_back"];
    assert_eq!(n(&w["receipts_sent"]), n(&s["sent"]), "{s}");
    assert_eq!(
        n(&w["delivered"]) + n(&w["undelivered"]),
        n(&w["receipts_sent"]),
        "{s}"
    );
    assert_eq!(w["delivered"], w["mock_delivered"], "{s}");
    assert_eq!(w["undelivered"], w["mock_undelivered"], "{s}");
    assert!(n(&w["clicks_sent"]) > 0, "{s}");
    assert_eq!(w["clicks_recorded"], w["clicks_sent"], "{s}");
    assert_eq!(w["clicks_redirected"], w["clicks_sent"], "{s}");
    assert_eq!(s["problems"], Value::Array(vec![]), "{s}");
}

const SMPP_SCENARIO: &str = r#"
name = "smpp-rehearsal-test"
recipients = 3_000

[smsc]
latency_ms = 1.0
latency_jitter_ms = 1.0
throttled_rate = 0.01
queue_full_rate = 0.01
receipts = "text"
receipt_delay_ms = 100
delivered_rate = 0.9
message_id = "decimal"

[provider]
binds = 2
window = 16
throttle_retry_ms = 50

[herald]
workers = 4
timeout_seconds = 60
receipts_wait_seconds = 20
"#;

#[test]
fn a_small_promotion_over_smpp_reaches_the_sink_once_each_with_receipts_back() {
    let dir = std::env::temp_dir().join(format!("herald-smpp-rehearsal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let scenario = dir.join("scenario.toml");
    let summary = dir.join("summary.json");
    std::fs::write(&scenario, SMPP_SCENARIO).expect("scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"))
        .arg("run")
        .arg(&scenario)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .expect("run herald-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = std::fs::read_to_string(&summary).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_str(&text).expect("summary JSON");
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    assert_eq!(n(&s["sent"]), 3_000, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert!(n(&s["throttled"]) > 0, "the sink throttled some: {s}");
    assert_eq!(n(&s["submit_sm"]), 3_000 + n(&s["throttled"]), "{s}");
    assert!(n(&s["max_window_seen"]) <= 16, "{s}");
    assert!(n(&s["binds"]) <= 2, "{s}");
    assert_eq!(n(&s["receipts_applied"]), 3_000, "{s}");
    assert_eq!(s["delivered"], s["sink_delivered"], "{s}");
    assert_eq!(s["problems"], Value::Array(vec![]), "{s}");
}
