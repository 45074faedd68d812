//! Tenants and scoped keys through the HTTP API: a key does what its scopes allow and no more,
//! a revoked key stops working at once, tokens are never stored, and one tenant's jobs,
//! reports, ledger entries, webhooks, idempotency keys, contacts and suppressions do not exist
//! for another.

use std::time::Duration;

use herald_testkit::{sms_job, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

/// Answers (status, body) of a request made with `token`.
async fn call(
    g: &Gateway,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, g.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Makes a key with the configured (default-tenant admin) key; answers its token.
async fn make_key(g: &Gateway, tenant: Option<&str>, scopes: &[&str]) -> String {
    let mut body = json!({"name": "test", "scopes": scopes});
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    let (status, key) = call(g, herald_testkit::KEY, Method::POST, "/v1/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().expect("token").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_does_what_its_scopes_allow_and_nothing_else() {
    let g = Gateway::start().await;
    let reader = make_key(&g, None, &["jobs:read"]).await;
    assert!(reader.starts_with("hk_"), "{reader}");

    let (status, _) = call(&g, &reader, Method::GET, "/v1/jobs", None).await;
    assert_eq!(status, 200);
    let job = sms_job("scoped", "Hi", json!([{"contact_id": "c001"}]));
    for (method, path, body, scope) in [
        (Method::POST, "/v1/jobs", Some(job), "jobs:write"),
        (Method::GET, "/v1/ledger/summary", None, "ledger:read"),
        (
            Method::GET,
            "/v1/campaigns/scoped/report",
            None,
            "reports:read",
        ),
        (Method::GET, "/v1/webhooks", None, "webhooks:write"),
        (Method::PUT, "/v1/snapshot", None, "snapshot:write"),
        (
            Method::DELETE,
            "/v1/suppressions/c001",
            None,
            "suppressions:write",
        ),
        (Method::GET, "/v1/keys", None, "admin"),
    ] {
        let (status, answer) = call(&g, &reader, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(scope),
            "{method} {path} names {scope}: {message}"
        );
    }

    // A key can hand out only what it holds.
    let admin_of_nothing = make_key(&g, None, &["jobs:read", "reports:read"]).await;
    let (status, answer) = call(
        &g,
        &admin_of_nothing,
        Method::POST,
        "/v1/keys",
        Some(json!({"name": "x", "scopes": ["jobs:read"]})),
    )
    .await;
    assert_eq!(status, 403, "{answer}");

    // Bad requests name their field.
    for (body, field) in [
        (json!({"name": "x", "scopes": ["jobs:delete"]}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "", "scopes": ["jobs:read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["jobs:read"], "tenant": "Not A Tenant"}),
            "tenant",
        ),
    ] {
        let (status, answer) = call(
            &g,
            herald_testkit::KEY,
            Method::POST,
            "/v1/keys",
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_at_once_and_no_token_is_stored() {
    let dir = tempfile::tempdir().expect("dir");
    let g = Gateway::start_at(dir.path(), |_| {}).await;
    let token = make_key(&g, Some("acme"), &["jobs:read"]).await;
    assert_eq!(call(&g, &token, Method::GET, "/v1/jobs", None).await.0, 200);

    let (_, listed) = call(&g, herald_testkit::KEY, Method::GET, "/v1/keys", None).await;
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["tenant"], "acme");
    assert!(
        keys[0].get("key").is_none(),
        "a listing never shows a token"
    );
    let id = keys[0]["id"].as_str().expect("id").to_string();
    assert!(token.contains(&id));

    let (status, revoked) = call(
        &g,
        herald_testkit::KEY,
        Method::DELETE,
        &format!("/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (status, answer) = call(&g, &token, Method::GET, "/v1/jobs", None).await;
    assert_eq!(status, 401, "{answer}");
    g.stop().await;

    // What is on disk holds the key's digest, never the token.
    let secret = token.rsplit('_').next().expect("secret part");
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the token",
            entry.display()
        );
    }
    // And the revocation survived the restart.
    let g = Gateway::start_at(dir.path(), |_| {}).await;
    assert_eq!(call(&g, &token, Method::GET, "/v1/jobs", None).await.0, 401);
    g.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_objects_do_not_exist_for_another() {
    let g = Gateway::start().await;
    let all = [
        "jobs:write",
        "jobs:read",
        "reports:read",
        "ledger:read",
        "webhooks:write",
        "snapshot:write",
    ];
    let acme = make_key(&g, Some("acme"), &all).await;
    let globex = make_key(&g, Some("globex"), &all).await;
    // The installation's book is fresh (jobs hold while it is stale); each tenant's jobs go
    // to its own book.
    g.load_csv(&herald_testkit::contacts_csv(3)).await;
    for token in [&acme, &globex] {
        let r = reqwest::Client::new()
            .put(g.url("/v1/snapshot"))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(herald_testkit::contacts_csv(3))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }

    // The same Idempotency-Key makes one job per tenant.
    let job = sms_job(
        "spring",
        "Hi",
        json!([{"contact_id": "c1"}, {"contact_id": "c2"}]),
    );
    let submit = |token: String| {
        let job = job.clone();
        let url = g.url("/v1/jobs");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "spring-1")
                .json(&job)
                .send()
                .await
                .expect("send");
            let status = r.status();
            let body = r.json::<Value>().await.expect("json");
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().expect("id").to_string()
        }
    };
    let acme_job = submit(acme.clone()).await;
    let globex_job = submit(globex.clone()).await;
    assert_ne!(acme_job, globex_job);
    for (token, id) in [(&acme, &acme_job), (&globex, &globex_job)] {
        let started = std::time::Instant::now();
        loop {
            let (_, job) = call(&g, token, Method::GET, &format!("/v1/jobs/{id}"), None).await;
            if job["status"] == "completed" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Nor does the default tenant: tenants are apart from the installation's own jobs too.
    let path = format!("/v1/jobs/{acme_job}");
    assert_eq!(
        call(&g, herald_testkit::KEY, Method::GET, &path, None)
            .await
            .0,
        404
    );

    // acme sees its own.
    for path in [
        format!("/v1/jobs/{acme_job}"),
        format!("/v1/jobs/{acme_job}/recipients"),
        format!("/v1/jobs/{acme_job}/report"),
        "/v1/campaigns/spring/report".to_string(),
    ] {
        assert_eq!(
            call(&g, &acme, Method::GET, &path, None).await.0,
            200,
            "{path}"
        );
    }
    // globex does not see acme's.
    for (method, path) in [
        (Method::GET, format!("/v1/jobs/{acme_job}")),
        (Method::GET, format!("/v1/jobs/{acme_job}/recipients")),
        (Method::GET, format!("/v1/jobs/{acme_job}/report")),
        (Method::POST, format!("/v1/jobs/{acme_job}/cancel")),
    ] {
        let (status, answer) = call(&g, &globex, method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, listed) = call(&g, &globex, Method::GET, "/v1/jobs", None).await;
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, vec![globex_job.as_str()]);
    let (_, report) = call(
        &g,
        &globex,
        Method::GET,
        "/v1/campaigns/spring/report",
        None,
    )
    .await;
    assert_eq!(report["scope"]["jobs"], json!([globex_job]), "{report}");

    // The ledger: each tenant's entries are its jobs' only.
    let ledger_jobs = |token: String| {
        let url = g.url("/v1/ledger");
        async move {
            let text = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("send")
                .text()
                .await
                .expect("text");
            let mut jobs: Vec<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|e| e["job_id"].as_str().map(str::to_string))
                .collect();
            jobs.sort();
            jobs.dedup();
            jobs
        }
    };
    assert_eq!(ledger_jobs(acme.clone()).await, vec![acme_job.clone()]);
    assert_eq!(ledger_jobs(globex.clone()).await, vec![globex_job.clone()]);
    assert_eq!(ledger_jobs(herald_testkit::KEY.to_string()).await.len(), 0);

    // Webhooks: registered per tenant, invisible to others.
    let (status, hook) = call(
        &g,
        &acme,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id");
    let (_, listed) = call(&g, &globex, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(
        listed["webhooks"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    for (method, path) in [
        (Method::DELETE, format!("/v1/webhooks/{hook_id}")),
        (Method::POST, format!("/v1/webhooks/{hook_id}/rotate")),
    ] {
        assert_eq!(
            call(&g, &globex, method, &path, None).await.0,
            404,
            "{path}"
        );
    }

    // Provider bills are the installation's: another tenant may not reconcile them.
    let (status, answer) = call(&g, &acme, Method::POST, "/v1/ledger/reconcile", None).await;
    assert_eq!(status, 403, "{answer}");
    // Nor make keys for another tenant.
    let acme_admin = make_key(&g, Some("acme"), &["admin"]).await;
    let (status, answer) = call(
        &g,
        &acme_admin,
        Method::POST,
        "/v1/keys",
        Some(json!({"name": "x", "scopes": ["jobs:read"], "tenant": "globex"})),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    g.stop().await;
}

/// Every keyed operation of the OpenAPI document, with its method, path and the scope its
/// security requirement names.
async fn keyed_operations(g: &Gateway) -> Vec<(Method, String, String)> {
    let doc = g.get_json("/openapi.json").await;
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(security) = op["security"].as_array() else {
                continue;
            };
            let scopes: Vec<&str> = security
                .iter()
                .filter_map(|s| s["bearer"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(
                scopes.len(),
                1,
                "{method} {path} names one scope: {scopes:?}"
            );
            ops.push((m, path.clone(), scopes[0].to_string()));
        }
    }
    assert!(ops.len() >= 24, "{} keyed operations", ops.len());
    ops
}

/// `path` with each `{param}` filled from `fill`, which must know every parameter.
fn fill_path(path: &str, fill: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("closing brace") + open;
        let name = &rest[open + 1..close];
        out.push_str(&rest[..open]);
        out.push_str(
            &fill(name).unwrap_or_else(|| panic!("no value for {{{name}}} of {path}: classify it")),
        );
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

const ALL_BUT_ADMIN: [&str; 7] = [
    "jobs:write",
    "jobs:read",
    "reports:read",
    "ledger:read",
    "snapshot:write",
    "suppressions:write",
    "webhooks:write",
];

/// From the document's route list: every keyed operation answers 403 to a key holding every
/// scope but the one it names, and 404 (or, for the installation's routes, 403) to another
/// tenant's key holding every scope, for the first tenant's job, campaign, webhook, key,
/// contact and suppression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_needs_its_scope_and_hides_another_tenants_objects() {
    let g = Gateway::start().await;
    g.load_csv(&herald_testkit::contacts_csv(2)).await;
    let acme = make_key(&g, Some("acme"), &["admin"]).await;
    // acme's own contact c1, suppressed on acme's list.
    for (path, content_type, body) in [
        ("/v1/snapshot", "text/csv", herald_testkit::contacts_csv(2)),
        (
            "/v1/suppressions",
            "application/x-ndjson",
            "{\"contact_id\":\"c1\"}\n".to_string(),
        ),
    ] {
        let r = reqwest::Client::new()
            .put(g.url(path))
            .bearer_auth(&acme)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
    }
    let job = sms_job("acme-spring", "Hi", json!([{"contact_id": "c1"}]));
    let (status, created) = call(&g, &acme, Method::POST, "/v1/jobs", Some(job)).await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["id"].as_str().expect("job id").to_string();
    let (status, hook) = call(
        &g,
        &acme,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("hook id").to_string();
    let (_, keys) = call(&g, &acme, Method::GET, "/v1/keys", None).await;
    let key_id = keys["keys"][0]["id"].as_str().expect("key id").to_string();

    let ops = keyed_operations(&g).await;
    // Without its scope: 403 naming it, whatever the route.
    for (method, path, scope) in &ops {
        let others: Vec<&str> = ALL_BUT_ADMIN
            .iter()
            .copied()
            .filter(|s| s != scope)
            .collect();
        let token = make_key(&g, None, &others).await;
        let filled = fill_path(path, &|_| Some("x1".to_string()));
        let (status, answer) = call(&g, &token, method.clone(), &filled, None).await;
        assert_eq!(status, 403, "{method} {path} without {scope}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(scope.as_str()),
            "{method} {path}: {message}"
        );
    }
    // Another tenant, every scope: the first tenant's objects are not found; the
    // installation's routes are refused.
    let globex = make_key(&g, Some("globex"), &["admin"]).await;
    // Contacts, consent and suppressions are each tenant's own: another tenant's contact
    // id and suppression entry are not found. Provider bills stay the installation's.
    let installation = ["/v1/ledger/reconcile"];
    for (method, path, _) in &ops {
        let owned = path.contains('{') || path.starts_with("/v1/contacts/");
        let expected = if installation.iter().any(|p| path.starts_with(p)) {
            403
        } else if owned {
            404
        } else {
            continue;
        };
        let fill = |name: &str| match (name, path.as_str()) {
            ("id", p) if p.starts_with("/v1/jobs/") => Some(job_id.clone()),
            ("action", _) => Some("cancel".to_string()),
            ("id", p) if p.starts_with("/v1/webhooks/") => Some(hook_id.clone()),
            ("id", p) if p.starts_with("/v1/keys/") => Some(key_id.clone()),
            ("campaign_id", _) => Some("acme-spring".to_string()),
            ("id", p) if p.starts_with("/v1/contacts/") => Some("c1".to_string()),
            ("key", p) if p.starts_with("/v1/suppressions/") => Some("c1".to_string()),
            _ => None,
        };
        let filled = fill_path(path, &fill);
        let (status, answer) = call(&g, &globex, method.clone(), &filled, None).await;
        assert_eq!(
            status, expected,
            "{method} {filled} as another tenant: {answer}"
        );
    }
    // The objects are still there for their owner.
    let (status, _) = call(&g, &acme, Method::GET, &format!("/v1/jobs/{job_id}"), None).await;
    assert_eq!(status, 200);
    let history = "/v1/contacts/c1/consent-history";
    assert_eq!(call(&g, &acme, Method::GET, history, None).await.0, 200);
    let suppression = "/v1/suppressions/c1";
    assert_eq!(
        call(&g, &acme, Method::DELETE, suppression, None).await.0,
        204
    );
    g.stop().await;
}
