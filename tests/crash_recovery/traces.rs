//! Spans exported over OTLP/HTTP to a collector on loopback: a job's submission, its provider
//! calls and the receipts applied to it land in one trace, under the request that submitted it.

use super::*;

/// Every span the collector received, as OTLP JSON span objects.
#[derive(Default)]
pub(crate) struct Collected {
    spans: Mutex<Vec<Value>>,
}

impl Collected {
    fn named(&self, name: &str) -> Vec<Value> {
        self.spans
            .lock()
            .iter()
            .filter(|s| s["name"] == name)
            .cloned()
            .collect()
    }
}

/// An attribute of an OTLP JSON span, as text (ints may come as numbers or strings).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let attrs = span["attributes"].as_array()?;
    let value = &attrs.iter().find(|a| a["key"] == key)?["value"];
    ["stringValue", "intValue"]
        .iter()
        .find_map(|k| match &value[*k] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

async fn collector() -> (String, Arc<Collected>) {
    let got = Arc::new(Collected::default());
    let g = got.clone();
    let handler = move |body: Bytes| {
        let g = g.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut spans = g.spans.lock();
            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(ss["spans"].as_array().into_iter().flatten().cloned());
                }
            }
            StatusCode::OK
        }
    };
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1/traces"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_submission_sends_and_receipts_share_one_trace_at_the_collector() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (endpoint, collected) = collector().await;
    let scenario = Scenario {
        campaign: "traced",
        recipients: 60,
        kills: 0,
        idempotent: true,
        workers: 2,
        batch: 10,
        rate: 10_000,
        provider_latency: None,
        shutdown_timeout_seconds: 10,
    };
    let mut h =
        Harness::start_with_env(scenario, vec![("HERALD_OTLP_ENDPOINT".into(), endpoint)]).await;
    let job = h.submit().await;
    h.wait_completed(&job).await;
    let sent = h.message_ids_with(&job, "sent").await;
    assert_eq!(sent.len(), 60);
    // The provider answered each message with the id `p-<herald's id>`.
    let provider_ids: Vec<String> = sent[..12].iter().map(|id| format!("p-{id}")).collect();
    h.post_delivered(&provider_ids).await;
    let view = h.wait_completed(&job).await;
    assert_eq!(count(&view, "delivered"), 12, "{view}");
    // A graceful stop sends what the exporter still holds.
    assert!(h.herald.stop().await.success());

    let submits: Vec<Value> = collected
        .named("job.submit")
        .into_iter()
        .filter(|s| attribute(s, "job_id").as_deref() == Some(job.as_str()))
        .collect();
    assert_eq!(submits.len(), 1, "one job.submit span for the job");
    let submit = &submits[0];
    let trace = submit["traceId"].as_str().expect("trace id").to_string();
    let submit_id = submit["spanId"].as_str().expect("span id").to_string();
    assert_eq!(attribute(submit, "campaign_id").as_deref(), Some("traced"));
    assert_eq!(attribute(submit, "tenant").as_deref(), Some("default"));

    // Under the request that submitted it.
    let request = collected
        .named("request")
        .into_iter()
        .find(|r| r["spanId"].as_str() == submit["parentSpanId"].as_str())
        .expect("the job.submit span's parent is its request span");
    assert_eq!(request["traceId"].as_str(), Some(trace.as_str()));
    assert_eq!(attribute(&request, "route").as_deref(), Some("/v1/jobs"));

    // Every provider call of the job, in its trace, as children of the submission.
    let sends: Vec<Value> = collected
        .named("job.send")
        .into_iter()
        .filter(|s| attribute(s, "job_id").as_deref() == Some(job.as_str()))
        .collect();
    assert!(!sends.is_empty(), "job.send spans");
    let mut messages = 0;
    for s in &sends {
        assert_eq!(s["traceId"].as_str(), Some(trace.as_str()), "{s}");
        assert_eq!(s["parentSpanId"].as_str(), Some(submit_id.as_str()), "{s}");
        assert_eq!(attribute(s, "provider").as_deref(), Some(PROVIDER));
        messages += attribute(s, "messages")
            .and_then(|m| m.parse::<usize>().ok())
            .expect("messages");
    }
    assert_eq!(messages, 60, "the sends carry every message once");

    // The receipts, in the same trace.
    let receipts: Vec<Value> = collected
        .named("job.receipts")
        .into_iter()
        .filter(|s| attribute(s, "job_id").as_deref() == Some(job.as_str()))
        .collect();
    let applied: usize = receipts
        .iter()
        .inspect(|r| assert_eq!(r["traceId"].as_str(), Some(trace.as_str()), "{r}"))
        .filter_map(|r| attribute(r, "applied").and_then(|a| a.parse::<usize>().ok()))
        .sum();
    assert_eq!(applied, 12, "{receipts:?}");
}
