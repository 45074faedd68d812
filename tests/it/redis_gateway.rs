//! The gateway on `state.backend = "redis"`: suppressions, frequency caps and idempotency
//! keys go through the shared Redis (under a prefix of this test's own, deleted afterwards).

use std::time::Duration;

use herald::config::StateBackend;
use herald_testkit::redis::{unique_prefix, Cleanup, SHARED_URL};
use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

const CSV: &str = "contact_id,phone,email,timezone,tags,sms_consent,email_consent,push_consent,updated_at,first_name,city\n\
ok1,+8613123079337,,Asia/Shanghai,,opt_in,,,,Wei,Shanghai\n\
suppr,+8613123442056,,Asia/Shanghai,,opt_in,,,,Jun,Beijing\n";

#[tokio::test]
async fn a_gateway_keeps_its_state_in_redis() {
    let prefix = unique_prefix();
    let cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    let g = Gateway::start_with(|c| {
        c.state.backend = StateBackend::Redis;
        c.state.redis.url = SHARED_URL.to_string();
        c.state.redis.key_prefix = prefix.clone();
        c.policy.frequency_caps.truncate(1);
        c.policy.frequency_caps[0].max = 1;
    })
    .await;
    g.load_csv(CSV).await;
    let r = g
        .req(Method::PUT, "/v1/suppressions")
        .body("{\"phone\":\"+86 131 2344 2056\"}\n")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);

    let job = sms_job(
        "redis",
        "Hi {{first_name}}",
        json!([{"contact_id": "ok1"}, {"contact_id": "suppr"}]),
    );
    let submit = |body: Value| {
        g.req(Method::POST, "/v1/jobs")
            .header("Idempotency-Key", "redis-1")
            .json(&body)
            .send()
    };
    let first = submit(job.clone()).await.expect("submit");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = submit(job).await.expect("resubmit");
    assert_eq!(again.status(), 200, "the idempotency key is known");
    let done = g.wait_completed(&first, Duration::from_secs(10)).await;
    let c = &done["counts"];
    assert_eq!(c["sent"], 1, "{c:#}");
    assert_eq!(c["rejected"]["suppressed"], 1, "{c:#}");

    // The cap slot ok1 took is in Redis: a second campaign the same day is capped.
    let (s, second) = g
        .submit(&sms_job("redis-2", "Hi", json!([{"contact_id": "ok1"}])))
        .await;
    assert_eq!(s, 201, "{second}");
    let done = g.wait_completed(&second, Duration::from_secs(10)).await;
    assert_eq!(done["counts"]["rejected"]["frequency_capped"], 1);
    assert!(
        cleanup.count_per_node()[0] > 0,
        "state was written to Redis"
    );
}

/// A Redis that came back empty has forgotten every cap reservation; after the operator's
/// restart, herald puts back what its journal says it sent inside the windows before it
/// sends anything, so nobody already capped gets another message.
#[tokio::test]
async fn an_empty_redis_gets_its_cap_reservations_back_from_the_journal() {
    let prefix = unique_prefix();
    let cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let adjust = |c: &mut herald::config::Config| {
        c.state.backend = StateBackend::Redis;
        c.state.redis.url = SHARED_URL.to_string();
        c.state.redis.key_prefix = prefix.clone();
        c.policy.frequency_caps.truncate(1);
        c.policy.frequency_caps[0].max = 1;
    };
    let n = 20;
    let contacts: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();

    let g = Gateway::start_at(&data, adjust).await;
    g.load_csv(&herald_testkit::contacts_csv(n)).await;
    let (s, first) = g
        .submit(&sms_job("before", "Hi {{first_name}}", json!(contacts)))
        .await;
    assert_eq!(s, 201, "{first}");
    let done = g.wait_completed(&first, Duration::from_secs(10)).await;
    assert_eq!(done["counts"]["sent"], n as u64, "{done:#}");
    g.stop().await;

    // Redis loses everything herald kept there.
    assert!(cleanup.run() > 0, "the caps were in Redis");

    let g = Gateway::start_at(&data, adjust).await;
    let (s, second) = g
        .submit(&sms_job("after", "Hi {{first_name}}", json!(contacts)))
        .await;
    assert_eq!(s, 201, "{second}");
    let done = g.wait_completed(&second, Duration::from_secs(10)).await;
    assert_eq!(done["counts"]["sent"], 0, "{done:#}");
    assert_eq!(
        done["counts"]["rejected"]["frequency_capped"], n as u64,
        "{done:#}"
    );
    g.stop().await;
}
