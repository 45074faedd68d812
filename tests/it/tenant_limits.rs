//! Per-tenant limits over HTTP: a tenant's monthly quota refuses a job whose audience does
//! not fit, whole and before anything is sent, counts each accepted job once and survives a
//! restart; a tenant's rate holds all its jobs together.

use std::time::{Duration, Instant};

use herald::config::TenantConfig;
use herald_testkit::{contacts_csv, sms_job, Gateway, KEY};
use reqwest::Method;
use serde_json::{json, Value};

fn limits(id: &str, parts_per_second: u32, monthly_recipients: u64) -> TenantConfig {
    TenantConfig {
        id: id.into(),
        parts_per_second,
        burst_parts: 1,
        monthly_recipients,
    }
}

/// Answers (status, body) of a request made with `token`.
async fn call(
    g: &Gateway,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    let mut r = g.http.request(method, g.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(b);
    }
    if let Some(k) = idempotency_key {
        r = r.header("Idempotency-Key", k);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POSTs `body` to `path` with `token` (and an Idempotency-Key when given).
async fn post(
    g: &Gateway,
    token: &str,
    path: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    call(g, token, Method::POST, path, Some(body), idempotency_key).await
}

fn job_of(first: usize, n: usize) -> Value {
    let audience: Vec<Value> = (first..first + n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    sms_job("limits", "Hi {{first_name}}", json!(audience))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_tenants_monthly_quota_is_refused_whole_and_the_count_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |c: &mut herald::config::Config| c.tenants = vec![limits("*", 0, 5)];
    let g = Gateway::start_at(dir.path(), config).await;
    g.load_csv(&contacts_csv(10)).await;
    let (status, key) = call(
        &g,
        KEY,
        Method::POST,
        "/v1/keys",
        Some(
            &json!({"name": "acme jobs", "tenant": "acme", "scopes": ["jobs:write", "jobs:read"]}),
        ),
        None,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let acme = key["key"].as_str().expect("token").to_string();

    let (status, tenant) = call(&g, &acme, Method::GET, "/v1/tenant", None, None).await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["tenant"], "acme");
    assert_eq!(tenant["quota"]["limit"], 5);
    assert_eq!(tenant["quota"]["remaining"], 5);
    assert_eq!(
        tenant["quota"]["month"], "2026-11",
        "the month of the gateway's clock"
    );
    assert_eq!(tenant["quota"]["resets_at"], "2026-12-01T00:00:00Z");

    // A dry run shows what is left and reserves nothing.
    let (status, preview) = post(&g, &acme, "/v1/jobs?dry_run=true", &job_of(0, 3), None).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["quota"]["remaining"], 5);

    let (status, first) = post(&g, &acme, "/v1/jobs", &job_of(0, 3), Some("acme-first")).await;
    assert_eq!(status, 201, "{first}");
    let (status, refused) = post(&g, &acme, "/v1/jobs", &job_of(3, 3), None).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "quota_exceeded");
    assert_eq!(refused["error"]["field"], "audience");
    assert_eq!(refused["error"]["asked"], 3);
    assert_eq!(refused["error"]["quota"]["remaining"], 2);
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("3 recipients") && message.contains("2026-12-01T00:00:00Z"),
        "{message}"
    );
    // Nothing of the refused job exists.
    let (_, jobs) = call(&g, &acme, Method::GET, "/v1/jobs", None, None).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");

    // The same request again answers its job and is not counted twice; the rest fits.
    let (status, again) = post(&g, &acme, "/v1/jobs", &job_of(0, 3), Some("acme-first")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    // A contact listed twice counts once.
    let mut second = job_of(3, 2);
    second["audience"]["contacts"]
        .as_array_mut()
        .expect("contacts")
        .push(json!({"contact_id": "c3"}));
    let (status, second) = post(&g, &acme, "/v1/jobs", &second, None).await;
    assert_eq!(status, 201, "{second}");

    // The default tenant is the installation's: "*" does not limit it.
    let (status, _) = post(&g, KEY, "/v1/jobs", &job_of(0, 8), None).await;
    assert_eq!(status, 201);
    let (_, default) = call(&g, KEY, Method::GET, "/v1/tenant", None, None).await;
    assert_eq!(default, json!({"tenant": "default"}));

    g.stop().await;
    let g = Gateway::start_at(dir.path(), config).await;
    let (status, tenant) = call(&g, &acme, Method::GET, "/v1/tenant", None, None).await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["quota"]["used"], 5, "{tenant}");
    assert_eq!(tenant["quota"]["remaining"], 0);
    let (status, refused) = post(&g, &acme, "/v1/jobs", &job_of(5, 1), None).await;
    assert_eq!(status, 429, "{refused}");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_rate_holds_all_its_jobs_together() {
    let g = Gateway::start_with(|c| {
        c.policy.frequency_caps.clear();
        c.tenants = vec![limits("default", 20, 0)];
    })
    .await;
    g.load_csv(&contacts_csv(40)).await;
    let (_, tenant) = call(&g, KEY, Method::GET, "/v1/tenant", None, None).await;
    assert_eq!(tenant["parts_per_second"], 20, "{tenant}");

    // Two jobs of 20 one-part messages: 40 parts at 20 a second (a burst of 1) take about
    // two seconds together, however the two jobs share the workers.
    let started = Instant::now();
    let (s1, a) = g.submit(&job_of(0, 20)).await;
    let (s2, b) = g.submit(&job_of(20, 20)).await;
    assert_eq!((s1, s2), (201, 201), "{a} {b}");
    for job in [&a, &b] {
        let done = g.wait_completed(job, Duration::from_secs(30)).await;
        assert_eq!(done["counts"]["sent"], 20, "{done}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_800),
        "40 parts at 20 a second went out in {took:?}"
    );
    g.stop().await;
}
