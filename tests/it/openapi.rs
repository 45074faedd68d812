//! The OpenAPI document against the router it describes: every operation in `/openapi.json`
//! is served and every other method on its paths is refused, the keyed routes and the error
//! shapes are described, and schemathesis (a tool herald did not write) drives a live
//! gateway from the document alone and finds no server error and no answer the document
//! does not describe.

use std::process::Command;

use herald_testkit::{contacts_csv, sms_job, Gateway, KEY};
use reqwest::Method;
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document(gw: &Gateway) -> Value {
    let r = gw
        .http
        .get(gw.url("/openapi.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "the document needs no key");
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.expect("json")
}

/// A concrete path for a templated one: each `{param}` becomes `probe`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closed parameter") + open;
        out.push_str("probe");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the router answered from a route (not its fallback) and took the method.
async fn served(gw: &Gateway, method: &str, path: &str) -> Result<u16, String> {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let r = gw.req(m, &concrete(path)).send().await.expect("send");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    if status == 405 {
        return Err(format!("{method} {path}: 405"));
    }
    if status == 404 && body.contains("route not found") {
        return Err(format!("{method} {path}: no such route"));
    }
    Ok(status)
}

#[tokio::test]
async fn every_operation_of_the_document_is_served_and_nothing_else_on_its_paths() {
    let gw = Gateway::start().await;
    let doc = document(&gw).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    let mut problems = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            let described = item.get(method).is_some();
            match (described, served(&gw, method, path).await) {
                (true, Ok(_)) => operations += 1,
                (true, Err(e)) => problems.push(format!("described but not served: {e}")),
                (false, Ok(status)) => problems.push(format!(
                    "served but not described: {method} {path} answered {status}"
                )),
                (false, Err(_)) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // Client generators name their methods by operation id: one each, none shared.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().expect("item").values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), operations, "operation ids are unique: {ids:?}");
    // Every route of the router: 38 operations on 32 paths.
    assert_eq!((paths.len(), operations), (32, 38), "{:?}", paths.keys());
    gw.stop().await;
}

#[tokio::test]
async fn keyed_routes_and_every_error_shape_are_described() {
    let gw = Gateway::start_with(|c| c.server.max_json_body_bytes = 4096).await;
    let doc = document(&gw).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("error codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in [
        "invalid_field",
        "unauthorized",
        "snapshot_rejected",
        "state_unavailable",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let keyed = path.starts_with("/v1/") && !path.starts_with("/v1/callbacks/");
            let responses = op["responses"].as_object().expect("responses");
            assert_eq!(
                op.get("security").is_some(),
                keyed,
                "{method} {path}: a bearer key exactly on the keyed routes"
            );
            assert_eq!(
                responses.contains_key("401"),
                keyed || path.starts_with("/v1/callbacks/"),
                "{method} {path}: 401 where a key or a signature is checked"
            );
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("413"), "{method} {path}: 413");
            }
            for (status, r) in responses {
                if status.starts_with('4') || status == "503" && !path.starts_with("/readyz") {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}: the JSON error body"
                    );
                }
            }
        }
    }
    // And the answers are what the document says: an unknown job is a JSON error.
    let r = gw
        .req(Method::GET, "/v1/jobs?limit=nope")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("a JSON error");
    assert_eq!(body["error"]["field"], "limit");
    // A webhook registration over the JSON body cap is the JSON 413 the document describes.
    let r = gw
        .req(Method::POST, "/v1/webhooks")
        .header("content-type", "application/json")
        .body(format!(
            "{{\"url\": \"http://127.0.0.1:9/{}\"}}",
            "a".repeat(8192)
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "body_too_large");
    gw.stop().await;
}

/// Path parameters that name objects which exist, so that the routes behind them are
/// driven past their 404: a job, a webhook endpoint, a campaign and a contact.
async fn known_objects(gw: &Gateway) -> String {
    let (status, job) = gw
        .submit(&sms_job(
            "openapi",
            "Hello {{first_name}}",
            json!([{"contact_id": "c1"}, {"contact_id": "c2"}]),
        ))
        .await;
    assert_eq!(status, 201, "{job}");
    let r = gw
        .req(Method::POST, "/v1/webhooks")
        .json(&json!({"url": "http://127.0.0.1:9/events"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.expect("json");
    let param = |regex: &str, name: &str, value: &Value| {
        format!(
            "[[operations]]\ninclude-path-regex = {regex:?}\nparameters = {{ \"path.{name}\" = {value} }}\n\n"
        )
    };
    [
        param("^/v1/jobs/", "id", &job["id"]),
        param("^/v1/webhooks/", "id", &hook["id"]),
        param("^/v1/campaigns/", "campaign_id", &json!("openapi")),
        param("^/v1/contacts/", "id", &json!("c1")),
    ]
    .concat()
}

/// The schemathesis command line: `st` on the PATH (`.ci/run` installs it).
fn schemathesis(base: &str, report: &std::path::Path) -> Command {
    let mut c = Command::new("st");
    c.arg("--config-file")
        .arg(report.join("schemathesis.toml"))
        .args(["--no-color", "run", &format!("{base}/openapi.json")])
        .args(["--url", base])
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "20261204", "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .arg("--generation-deterministic")
        .args(["--request-timeout", "10"])
        .arg("--report-junit-path")
        .arg(report.join("junit.xml"))
        .args(["--report", "junit"])
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/openapi_hooks.py"),
        )
        .current_dir(report);
    // A deeper run by hand, e.g. `--max-examples 200 --checks all`; later options win.
    if let Ok(extra) = std::env::var("HERALD_SCHEMATHESIS_ARGS") {
        c.args(extra.split_whitespace());
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let gw = Gateway::start_on_system_clock(|c| {
        // Uploads with any `as_of` keep the snapshot fresh, so readiness stays 200 and a
        // 503 means a fault, not a stale export the fuzzer sent.
        c.snapshot.max_age_seconds = 1_000_000_000_000;
    })
    .await;
    gw.load_csv(&contacts_csv(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        known_objects(&gw).await,
    )
    .expect("config");
    let mut cmd = schemathesis(&gw.base, dir.path());
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("schemathesis runs (`pip install schemathesis`)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    eprintln!("{text}");
    assert!(
        text.contains("30 passed") || text.contains("passed"),
        "schemathesis ran no operation:\n{text}"
    );
    eprintln!("schemathesis ran for {:?}", started.elapsed());
    gw.stop().await;
}

/// The text of `src` from the line starting `start` to the end of that item.
fn item<'a>(src: &'a str, start: &str) -> &'a str {
    let from = src.find(start).expect("item");
    let to = src[from..].find("\n}\n").expect("item end") + from;
    &src[from..to]
}

/// Routes enter the router only through the described table in `src/api/mod.rs`: neither the
/// table nor the router built from it adds one that skips its `#[utoipa::path]`, so a route
/// added beside the table (a plain `.route`, a nested or merged router) fails here rather
/// than being served undescribed. The report pages under `/ui/` are the one router merged
/// beside it.
#[test]
fn routes_enter_the_router_only_through_the_described_table() {
    let src = include_str!("../../src/api/mod.rs");
    let table = item(src, "fn routes(");
    let router = item(src, "pub fn router(");
    for bypass in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".fallback_service(",
    ] {
        assert!(!table.contains(bypass), "the route table uses {bypass}");
        assert!(
            !router.contains(bypass),
            "the router adds a route with {bypass}"
        );
    }
    // It merges the table's scope groups, the keyed routes with the open ones, and the report
    // pages (HTML for people under /ui/, not part of the API): nothing else.
    assert_eq!(
        router.matches(".merge(").count(),
        3,
        "the router merges only the table's groups and the report pages"
    );
    assert!(router.contains("all.merge(routes)"));
    assert!(router.contains("keyed.merge(open)"));
    assert!(router.contains(".merge(crate::ui::router(state.clone()))"));
}
