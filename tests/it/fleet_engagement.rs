//! Reports in a fleet: a click on a tracked link reaches whichever instance the load balancer
//! picks, and every instance's report of the job must count it (a variants rollout decides on
//! them too), with the sends of both instances. Two gateways share one Redis key prefix with
//! work sharing on.

use std::time::{Duration, Instant};

use herald::config::{Secret, StateBackend};
use herald_testkit::redis::{unique_prefix, Cleanup, SHARED_URL};
use herald_testkit::{sms_job, Gateway};
use serde_json::{json, Value};

const RECIPIENTS: usize = 40;

async fn instance(prefix: &str, name: &str) -> Gateway {
    let (prefix, name) = (prefix.to_string(), name.to_string());
    Gateway::start_with(move |c| {
        c.state.backend = StateBackend::Redis;
        c.state.redis.url = SHARED_URL.to_string();
        c.state.redis.key_prefix = prefix;
        c.state.cluster.enabled = true;
        c.state.cluster.instance_id = name;
        c.state.cluster.poll_ms = 100;
        // Every instance resolves every instance's links.
        c.tracking.link_secret = Some(Secret::new("fleet-link-secret"));
    })
    .await
}

/// Contact ids whose message the instance's report shows clicked.
async fn clicked(g: &Gateway, job: &str) -> Vec<String> {
    let mut out: Vec<String> = g
        .recipients(job)
        .await
        .into_iter()
        .filter(|r| r["clicked"] == true)
        .filter_map(|r| r["contact_id"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_any_instance_counts_on_every_instance() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    let a = instance(&prefix, "a").await;
    let b = instance(&prefix, "b").await;
    // Enough recipients for the job's shards to be shared by both instances.
    let mut csv = String::from("contact_id,phone,timezone,sms_consent\n");
    for i in 0..RECIPIENTS {
        csv.push_str(&format!("k{i},+86131500{i:05},Asia/Shanghai,opt_in\n"));
    }
    a.load_csv(&csv).await;
    b.load_csv(&csv).await;
    let contacts: Vec<Value> = (0..RECIPIENTS)
        .map(|i| json!({ "contact_id": format!("k{i}") }))
        .collect();
    let contacts = Value::Array(contacts);
    let (status, body) = a
        .submit(&sms_job(
            "fleet-clicks",
            "Sale: https://shop.example/s",
            contacts,
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    a.wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    b.wait_status(&id, "completed", Duration::from_secs(30))
        .await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // k0 clicks through instance b, k1 through instance a (recipients 0 and 1, link 0).
    for (g, recipient) in [(&b, 0u32), (&a, 1u32)] {
        let r = http
            .get(g.url(&format!("/c/{}", g.token(&id, recipient, 0))))
            .send()
            .await
            .expect("click");
        assert_eq!(r.status(), 302);
    }
    let want = vec!["k0".to_string(), "k1".to_string()];
    let started = Instant::now();
    loop {
        let (on_a, on_b) = (clicked(&a, &id).await, clicked(&b, &id).await);
        if on_a == want && on_b == want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "clicked on a: {on_a:?}, on b: {on_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Read again later: each click still counts once, and every send counts, on both.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for g in [&a, &b] {
        let r = g
            .req(reqwest::Method::GET, "/v1/campaigns/fleet-clicks/report")
            .send()
            .await
            .expect("report");
        assert_eq!(r.status(), 200);
        let report: Value = r.json().await.expect("report json");
        assert_eq!(report["funnel"]["sent"], RECIPIENTS, "{report:#}");
        assert_eq!(report["funnel"]["pending"], 0, "{report:#}");
        assert_eq!(report["funnel"]["clicked"]["total"], 2, "{report:#}");
        assert_eq!(
            report["funnel"]["clicked"]["unique_contacts"], 2,
            "{report:#}"
        );
    }
    a.stop().await;
    b.stop().await;
}
