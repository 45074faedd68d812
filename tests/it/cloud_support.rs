//! What the cloud provider tests share: a gateway whose only provider is a cloud adapter
//! pointed at an HTTPS mock with a test CA, a small job to send, and a wait for its receipts.

use std::time::Duration;

use herald::config::{ProviderConfig, ProviderKind};
use herald_testkit::https::TestCa;
use herald_testkit::{sms_job, Gateway};
use serde_json::{json, Value};

/// The provider's name in the tests (and in its callback path).
pub const NAME: &str = "cloud";
pub const RECEIPTS: &str = "/v1/callbacks/cloud/receipts";

/// A gateway whose single provider is `kind`, trusting `ca`, set up by `adjust`.
pub async fn gateway(
    ca: &TestCa,
    kind: ProviderKind,
    adjust: impl FnOnce(&mut ProviderConfig),
) -> Gateway {
    let ca_file = ca.ca_file();
    Gateway::start_on_system_clock(|c| {
        let p = &mut c.providers[0];
        let old = std::mem::replace(&mut p.name, NAME.to_string());
        p.kind = kind;
        p.idempotent = false;
        p.ca_file = Some(ca_file);
        p.max_in_flight = 4;
        p.request_timeout_ms = 5_000;
        adjust(p);
        for price in &mut c.prices {
            if price.provider == old {
                price.provider = NAME.to_string();
            }
        }
        // The system clock's hour must not defer the marketing job.
        c.policy.quiet_hours.enabled = false;
        c.callbacks.sweep_interval_ms = 20;
        // Two shards per job: three recipients put two in one provider batch.
        c.dispatch.workers = 1;
        c.dispatch.retry.initial_delay_ms = 10;
        c.dispatch.retry.max_delay_ms = 50;
    })
    .await
}

/// Loads `n` contacts and sends them one job; answers the job id once it has completed.
pub async fn send_job(g: &Gateway, n: usize) -> String {
    g.load_csv(&herald_testkit::contacts_csv(n)).await;
    let audience: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let (s, body) = g
        .submit(&sms_job(
            "cloud",
            "Hi {{first_name}}",
            Value::Array(audience),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().expect("job id").to_string();
    g.wait_status(&id, "completed", Duration::from_secs(20))
        .await;
    id
}

/// Each recipient's (outcome, delivery state), by contact id.
pub async fn outcomes(g: &Gateway, job: &str) -> Vec<(String, String, String)> {
    let mut lines: Vec<(String, String, String)> = g
        .recipients(job)
        .await
        .iter()
        .map(|l| {
            (
                l["contact_id"].as_str().unwrap_or_default().to_string(),
                l["outcome"].as_str().unwrap_or_default().to_string(),
                l["delivery"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Polls until every contact in `expected` has that delivery state.
pub async fn wait_deliveries(g: &Gateway, job: &str, expected: &[(&str, &str)]) {
    let start = std::time::Instant::now();
    loop {
        let now = outcomes(g, job).await;
        let ok = expected
            .iter()
            .all(|(contact, delivery)| now.iter().any(|(c, _, d)| c == contact && d == delivery));
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "deliveries never became {expected:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
