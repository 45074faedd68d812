//! Event webhooks in a fleet: an endpoint registered on one instance receives the events of
//! a job another instance accepted and every instance sends, signed, with each message's
//! `sent` before its `delivered`. The instance delivering the endpoint's events is killed
//! with SIGKILL halfway through the job; the other takes the delivery over and no event is
//! lost: every recipient's `message.sent` and `message.delivered`, the job's end and a STOP
//! reply's opt-out arrive.

use super::*;

use axum::http::HeaderMap;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const RECIPIENTS: usize = 3_000;
/// How long the surviving instance may take to deliver everything after the job ended: a
/// dead holder's webhook lease runs 10 s.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(90);

/// Every event the receiver accepted, in arrival order, and the requests it refused.
#[derive(Default)]
struct Hooked {
    events: Mutex<Vec<Value>>,
    bad_signatures: AtomicU64,
}

async fn receiver() -> (String, Arc<Hooked>) {
    let rec = Arc::new(Hooked::default());
    let r = rec.clone();
    let handler = move |headers: HeaderMap, body: Bytes| {
        let r = r.clone();
        async move {
            if !herald_testkit::webhook_signature::signed_right(SECRET, &headers, &body) {
                r.bad_signatures.fetch_add(1, Ordering::SeqCst);
                return StatusCode::UNAUTHORIZED;
            }
            let events = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(list)) => list,
                Ok(one) => vec![one],
                Err(_) => return StatusCode::BAD_REQUEST,
            };
            r.events.lock().extend(events);
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let addr = herald_testkit::loopback::serve(app).await;
    (format!("http://{addr}/hook"), rec)
}

/// Which instance holds the endpoint's delivery lease.
fn lease_holder(prefix: &str, endpoint: &str) -> Option<String> {
    let client = redis::Client::open(herald_testkit::redis::SHARED_URL).expect("redis client");
    let mut con = client.get_connection().expect("redis connection");
    redis::cmd("GET")
        .arg(format!("{{{prefix}}}:v1:webhook:{endpoint}:lease"))
        .query(&mut con)
        .expect("read the lease")
}

/// The events of one type, by contact id: the first arrival's place in the stream.
fn first_of(events: &[Value], kind: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (k, e) in events.iter().enumerate() {
        if e["type"] == kind {
            if let Some(c) = e["data"]["contact_id"].as_str() {
                out.entry(c.to_string()).or_insert(k);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_delivers_every_event_once_its_delivering_instance_is_killed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let setup = Setup {
        contacts: RECIPIENTS,
        rate: 1_000,
        idempotent: true,
    };
    let mut fleet = Fleet::start(2, 13, &setup).await;
    let received = fleet.received.clone();
    let prefix = fleet.prefix.clone();
    let fleet = &mut fleet.instances;
    let (url, hooked) = receiver().await;

    // Registered on one instance, listed by the other.
    let r = fleet[0]
        .http
        .post(fleet[0].url("/v1/webhooks"))
        .bearer_auth(KEY)
        .json(&json!({ "url": url, "secret": SECRET, "batch_size": 100 }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let endpoint: Value = r.json().await.expect("endpoint");
    let id = endpoint["id"].as_str().expect("endpoint id").to_string();
    let r = fleet[1]
        .http
        .get(fleet[1].url("/v1/webhooks"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("list");
    let listed: Value = r.json().await.expect("list");
    assert_eq!(listed["webhooks"][0]["id"], id.as_str(), "{listed}");

    // The job goes to the other instance; both send it.
    let job = submit(&fleet[1], "fleet-hooks", RECIPIENTS).await;
    let started = Instant::now();
    while first_of(&hooked.events.lock(), "message.sent").len() < RECIPIENTS / 4 {
        assert!(started.elapsed() < COMPLETION_TIMEOUT, "no events arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder = lease_holder(&prefix, &id).expect("an instance delivers the endpoint");
    let killed = match holder.as_str() {
        "instance-0" => 0,
        "instance-1" => 1,
        other => panic!("unknown lease holder {other}"),
    };
    let sent_before = hooked.events.lock().len();
    fleet[killed].sigkill();
    let survivor = &fleet[1 - killed];
    let view = wait_completed(survivor, &job).await;
    assert_eq!(count(&view, &["counts", "sent"]), RECIPIENTS as u64);

    // Every message the provider took is delivered, the receipts posted to the survivor.
    // c7 replies STOP to the survivor: announced as the default tenant's opt-out.
    let (status, text) = post_callback(
        survivor,
        "inbound",
        &json!({"from": "+8613123000007", "text": "STOP"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "inbound: {text}");
    let ids: Vec<String> = received
        .by_id
        .lock()
        .keys()
        .map(|id| format!("p-{id}"))
        .collect();
    post_delivered(survivor, &ids).await;

    let started = Instant::now();
    loop {
        let events = hooked.events.lock().clone();
        let sent = first_of(&events, "message.sent");
        let delivered = first_of(&events, "message.delivered");
        let ended = events
            .iter()
            .any(|e| e["type"] == "job.completed" && e["data"]["job_id"] == job.to_string());
        let opted_out = first_of(&events, "contact.opted_out");
        if sent.len() == RECIPIENTS
            && delivered.len() == RECIPIENTS
            && ended
            && opted_out.contains_key("c7")
        {
            for (contact, at) in &delivered {
                assert!(
                    sent[contact] < *at,
                    "{contact}: delivered arrived before sent"
                );
            }
            let end = events
                .iter()
                .find(|e| e["type"] == "job.completed")
                .expect("the job's end");
            assert_eq!(
                end["data"]["counts"]["sent"], RECIPIENTS,
                "the end carries the fleet's final counts: {end}"
            );
            // Repeats (a request cut short by the kill, a message the dead instance sent
            // whose outcome it never wrote) carry the first one's id.
            let distinct: std::collections::HashSet<&str> =
                events.iter().filter_map(|e| e["id"].as_str()).collect();
            assert_eq!(distinct.len(), 2 * RECIPIENTS + 2, "events under two ids");
            println!(
                "fleet webhooks: {} events ({} distinct ids), {sent_before} before instance-{killed} was killed",
                events.len(),
                distinct.len()
            );
            break;
        }
        assert!(
            started.elapsed() < EVENTS_TIMEOUT,
            "after {:?}: {} sent, {} delivered, job end {ended}, opt-outs {:?}; instance-{killed} was killed",
            started.elapsed(),
            sent.len(),
            delivered.len(),
            opted_out.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(hooked.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(
        lease_holder(&prefix, &id).as_deref(),
        Some(format!("instance-{}", 1 - killed).as_str()),
        "the survivor delivers the endpoint now"
    );
}
