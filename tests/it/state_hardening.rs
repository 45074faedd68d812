//! State that must not be lost or replaced by mistake: a snapshot upload that would throw
//! away the live contacts (random bytes, a broken export, a truncated one) is refused and
//! leaves the live snapshot, and the copy kept for restarts, as they were.

use std::time::Duration;

use herald_testkit::{contacts_csv, sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

/// PUTs a snapshot upload; answers (status, body).
async fn put_snapshot(g: &Gateway, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = g
        .req(Method::PUT, &format!("/v1/snapshot{query}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `n` bytes from a fixed xorshift sequence: the same "random" upload on every run.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn audience(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"contact_id": format!("c{i}")}))
            .collect(),
    )
}

/// Asserts a 422 `snapshot_rejected` answer naming the failed check.
fn assert_refused(status: u16, body: &Value, check: &str) {
    assert_eq!(status, 422, "{body:#}");
    assert_eq!(body["error"]["code"], "snapshot_rejected", "{body:#}");
    assert_eq!(body["error"]["refusal"]["check"], check, "{body:#}");
}

#[tokio::test]
async fn random_bytes_do_not_replace_the_snapshot_nor_its_kept_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = Gateway::start_at(&data, |_| {}).await;
    g.load_csv(&contacts_csv(200)).await;
    let before = g.get_json("/v1/snapshot").await;

    let (status, body) =
        put_snapshot(&g, "", "application/x-ndjson", random_bytes(20 * 1024)).await;
    assert_refused(status, &body, "rejected_rows");
    assert_eq!(body["error"]["contacts"], 0, "{body:#}");
    let rejected = body["error"]["rejected_rows"].as_u64().unwrap();
    assert!(rejected > 0, "{body:#}");
    let errors = body["error"]["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "the first row errors are listed");
    assert!(errors[0]["line"].as_u64().is_some(), "{body:#}");
    // Lifting the shrink check does not let it through.
    let (status, body) = put_snapshot(
        &g,
        "?allow_shrink=true",
        "application/x-ndjson",
        random_bytes(20 * 1024),
    )
    .await;
    assert_refused(status, &body, "rejected_rows");

    let after = g.get_json("/v1/snapshot").await;
    assert_eq!(after["contacts"], 200);
    assert_eq!(after["version"], before["version"]);
    // Jobs still find every contact.
    let (s, job) = g.submit(&sms_job("after", "Hi", audience(200))).await;
    assert_eq!(s, 201, "{job}");
    let done = g.wait_completed(&job, Duration::from_secs(20)).await;
    assert_eq!(done["counts"]["sent"], 200, "{done:#}");
    g.stop().await;

    // The copy kept for restarts is the old snapshot too.
    let g = Gateway::start_at(&data, |_| {}).await;
    let restored = g.get_json("/v1/snapshot").await;
    assert_eq!(restored["contacts"], 200, "{restored:#}");
    let (s, job) = g.submit(&sms_job("restarted", "Hi", audience(200))).await;
    assert_eq!(s, 201, "{job}");
    let done = g.wait_completed(&job, Duration::from_secs(20)).await;
    assert_eq!(done["counts"]["sent"], 200, "{done:#}");
    assert!(
        done["counts"]["rejected"]["unknown_contact"].is_null()
            || done["counts"]["rejected"]["unknown_contact"] == 0,
        "{done:#}"
    );
    g.stop().await;
}

#[tokio::test]
async fn one_bad_row_in_ten_is_more_than_the_rejected_share() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(10)).await;
    let broken = contacts_csv(10).replacen(
        "c3,+8613123000003,Asia/Shanghai",
        "c3,+8613123000003,Mars/Olympus",
        1,
    );
    assert_ne!(broken, contacts_csv(10), "the row was broken");
    for query in ["", "?allow_shrink=true"] {
        let (status, body) = put_snapshot(&g, query, "text/csv", broken.clone().into_bytes()).await;
        assert_refused(status, &body, "rejected_rows");
        assert_eq!(body["error"]["rejected_rows"], 1);
        assert_eq!(body["error"]["refusal"]["rows"], 10);
        let errors = body["error"]["errors"].as_array().unwrap();
        assert_eq!(errors[0]["line"], 5, "{body:#}");
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .starts_with("timezone:"),
            "{body:#}"
        );
    }
    // The live snapshot still has c3 in Shanghai: a job reaches all ten.
    assert_eq!(g.get_json("/v1/snapshot").await["contacts"], 10);
    let (s, job) = g.submit(&sms_job("ten", "Hi", audience(10))).await;
    assert_eq!(s, 201, "{job}");
    let done = g.wait_completed(&job, Duration::from_secs(10)).await;
    assert_eq!(done["counts"]["sent"], 10, "{done:#}");
}

#[tokio::test]
async fn a_valid_upload_of_half_the_contacts_needs_allow_shrink() {
    let g = Gateway::start().await;
    g.load_csv(&contacts_csv(20)).await;
    let (status, body) = put_snapshot(&g, "", "text/csv", contacts_csv(10).into_bytes()).await;
    assert_refused(status, &body, "shrink");
    assert_eq!(body["error"]["refusal"]["live_contacts"], 20);
    assert_eq!(body["error"]["contacts"], 10);
    assert_eq!(body["error"]["rejected_rows"], 0);
    assert_eq!(g.get_json("/v1/snapshot").await["contacts"], 20);

    let (status, body) = put_snapshot(
        &g,
        "?allow_shrink=true",
        "text/csv",
        contacts_csv(10).into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["contacts"], 10);
    assert_eq!(g.get_json("/v1/snapshot").await["contacts"], 10);
}

#[tokio::test]
async fn a_normal_replacement_is_accepted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = Gateway::start_at(&data, |_| {}).await;
    g.load_csv(&contacts_csv(20)).await;
    let before = g.get_json("/v1/snapshot").await;
    // A smaller one within the share, then a larger one.
    let (status, body) = put_snapshot(&g, "", "text/csv", contacts_csv(11).into_bytes()).await;
    assert_eq!(status, 200, "{body:#}");
    let (status, body) = put_snapshot(&g, "", "text/csv", contacts_csv(30).into_bytes()).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["contacts"], 30);
    assert_eq!(body["rejected_rows"], 0);
    let after = g.get_json("/v1/snapshot").await;
    assert_eq!(after["contacts"], 30);
    assert!(after["version"].as_u64() > before["version"].as_u64());
    g.stop().await;
    let g = Gateway::start_at(&data, |_| {}).await;
    assert_eq!(g.get_json("/v1/snapshot").await["contacts"], 30);
    g.stop().await;
}
