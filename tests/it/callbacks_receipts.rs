//! Delivery receipts over HTTP: signatures (valid, forged, stale, replayed, rotated),
//! duplicates and out-of-order receipts, part-by-part receipts, unknown ids, the receipt
//! timeout, and exact counts under concurrent callbacks.

use std::time::Duration;

use herald::config::{Config, Secret};
use herald_testkit::signed::{receipt, sandbox_id, with_callbacks, NEXT_SECRET, SECRET};
use herald_testkit::{contacts_csv, sms_job, Gateway};
use serde_json::{json, Value};

const PATH: &str = "/v1/callbacks/sandbox/receipts";

/// A gateway that has sent a completed job to `n` contacts; answers it and the sandbox
/// message ids by recipient.
async fn sent_job(n: usize, adjust: impl FnOnce(&mut Config)) -> (Gateway, String, Vec<String>) {
    let g = Gateway::start_with(|c| {
        with_callbacks(c);
        adjust(c);
    })
    .await;
    g.load_csv(&contacts_csv(n)).await;
    let audience: Vec<Value> = (0..n)
        .map(|i| json!({"contact_id": format!("c{i}")}))
        .collect();
    let (s, body) = g
        .submit(&sms_job(
            "receipts",
            "Hi {{first_name}}",
            Value::Array(audience),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let done = g
        .wait_status(&id, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["counts"]["sent"], n as u64);
    let ids = g
        .recipients(&id)
        .await
        .iter()
        .map(|l| sandbox_id(l["message_id"].as_str().unwrap()))
        .collect();
    (g, id, ids)
}

fn counts(j: &Value) -> (u64, u64, u64, u64) {
    let c = &j["counts"];
    (
        c["delivered"].as_u64().unwrap(),
        c["undelivered"].as_u64().unwrap(),
        c["expired"].as_u64().unwrap(),
        c["unknown"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn valid_forged_stale_and_replayed_signatures() {
    let (g, id, ids) = sent_job(2, |c| {
        c.providers[0].callback_secrets = vec![Secret::new(SECRET), Secret::new(NEXT_SECRET)];
    })
    .await;
    let body = receipt(&ids[0], "delivered").to_string();
    let now = g.unix_now();

    // No signature headers at all.
    let r = g
        .http
        .post(g.url(PATH))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "signature_missing");

    // Forged: signed with a secret the gateway does not hold.
    let (s, e) = g.post_signed_at(PATH, &body, "not-the-secret", now).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("signature_mismatch"))
    );

    // Altered after signing: the signature covers the raw body.
    let ts = now.to_string();
    let sig = herald::callbacks::signature::sign(SECRET.as_bytes(), &ts, body.as_bytes());
    let altered = receipt(&ids[1], "delivered").to_string();
    let r = g
        .http
        .post(g.url(PATH))
        .header("x-herald-timestamp", &ts)
        .header("x-herald-signature", &sig)
        .body(altered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Stale: more than five minutes off, either way.
    for ts in [now - 301, now + 301] {
        let (s, e) = g.post_signed_at(PATH, &body, SECRET, ts).await;
        assert_eq!(s, 401);
        assert_eq!(e["error"]["code"], "timestamp_out_of_window");
    }
    assert_eq!(
        counts(&g.job(&id).await),
        (0, 0, 0, 0),
        "nothing was applied"
    );

    // Valid, 4:59 old.
    let (s, t) = g.post_signed_at(PATH, &body, SECRET, now - 299).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t, json!({"applied": 1, "duplicates": 0, "unknown": 0}));

    // The very same request again (same signature): accepted idempotently, counts once.
    let (s, t) = g.post_signed_at(PATH, &body, SECRET, now - 299).await;
    assert_eq!(s, 200);
    assert_eq!(t, json!({"applied": 0, "duplicates": 1, "unknown": 0}));

    // The second secret of a rotation is accepted too.
    let (s, t) = g
        .post_signed_at(
            PATH,
            &receipt(&ids[1], "undelivered").to_string(),
            NEXT_SECRET,
            now,
        )
        .await;
    assert_eq!((s, t["applied"].as_u64()), (200, Some(1)));
    assert_eq!(counts(&g.job(&id).await), (1, 1, 0, 0));

    // A provider the gateway does not know.
    let (s, _) = g.post_signed("/v1/callbacks/nope/receipts", &body).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_provider_without_secrets_is_refused() {
    let (g, _, ids) = sent_job(1, |c| c.providers[0].callback_secrets.clear()).await;
    let (s, e) = g
        .post_signed(PATH, &receipt(&ids[0], "delivered").to_string())
        .await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["code"], "callbacks_not_configured");
}

#[tokio::test]
async fn duplicates_out_of_order_parts_and_unknown_ids() {
    let (g, id, ids) = sent_job(5, |_| {}).await;
    // An array: a duplicate within the batch, an id written in upper case, an unknown id.
    let batch = json!([
        receipt(&ids[0], "delivered"),
        receipt(&ids[0], "DELIVRD"),
        receipt(&ids[1].to_uppercase(), "expired"),
        receipt("sbx-ffffffffffffffffffffffffffffffff", "delivered"),
        {"message_id": ids[2], "status": "rejected", "error_code": 34},
    ]);
    let (s, t) = g.post_signed(PATH, &batch.to_string()).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t, json!({"applied": 3, "duplicates": 1, "unknown": 1}));

    // NDJSON: a delivered receipt after the final `expired` one changes nothing; part by
    // part, message 3 is delivered only when both parts are.
    let nd = [
        receipt(&ids[1], "delivered"),
        json!({"message_id": ids[3], "status": "delivered", "part": 2, "parts": 2}),
        json!({"message_id": ids[3], "status": "delivered", "part": 2, "parts": 2}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let (s, t) = g.post_signed(PATH, &nd).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t, json!({"applied": 1, "duplicates": 2, "unknown": 0}));
    assert_eq!(counts(&g.job(&id).await), (1, 1, 1, 0));
    let part1 = json!({"message_id": ids[3], "status": "delivered", "part": 1, "parts": 2});
    let (_, t) = g.post_signed(PATH, &part1.to_string()).await;
    assert_eq!(t["applied"], 1);
    assert_eq!(counts(&g.job(&id).await), (2, 1, 1, 0));

    let lines = g.recipients(&id).await;
    let delivery: Vec<&str> = lines
        .iter()
        .map(|l| l["delivery"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        delivery,
        ["delivered", "expired", "undelivered", "delivered", "-"]
    );

    // A malformed receipt names itself and applies nothing.
    let bad = json!([receipt(&ids[4], "delivered"), {"message_id": ids[4], "status": "sent"}]);
    let (s, e) = g.post_signed(PATH, &bad.to_string()).await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["field"], "receipts[1].status");
    assert_eq!(counts(&g.job(&id).await), (2, 1, 1, 0));
}

#[tokio::test]
async fn concurrent_callbacks_count_exactly_once() {
    let n = 200;
    let (g, id, ids) = sent_job(n, |_| {}).await;
    let g = std::sync::Arc::new(g);
    let mut tasks = Vec::new();
    for k in 0..8usize {
        let (g, ids) = (g.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut applied = 0;
            // Every task reports every message, in its own order, in batches of 50.
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.rotate_left(k * 25);
            for chunk in order.chunks(50) {
                let batch: Vec<Value> = chunk
                    .iter()
                    .map(|&i| {
                        receipt(
                            &ids[i],
                            if i % 10 == 0 {
                                "undelivered"
                            } else {
                                "delivered"
                            },
                        )
                    })
                    .collect();
                let (s, t) = g.post_signed(PATH, &Value::Array(batch).to_string()).await;
                assert_eq!(s, 200, "{t}");
                applied += t["applied"].as_u64().unwrap();
            }
            applied
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap();
    }
    assert_eq!(applied, n as u64);
    assert_eq!(counts(&g.job(&id).await), (180, 20, 0, 0));
    let report = g.report(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(report["funnel"]["delivered"], 180);
    assert_eq!(report["rates"]["delivered_of_sent"], 0.9);
}

#[tokio::test]
async fn silence_becomes_unknown_and_a_late_receipt_still_counts() {
    let (g, id, ids) = sent_job(3, |c| {
        c.callbacks.receipt_timeout_seconds = 60;
        c.callbacks.index_retention_seconds = 3600;
    })
    .await;
    let (_, t) = g
        .post_signed(PATH, &receipt(&ids[0], "delivered").to_string())
        .await;
    assert_eq!(t["applied"], 1);
    g.clock.set("2026-11-23T04:02:30Z".parse().unwrap());
    let j = g
        .wait_until(&id, Duration::from_secs(5), |j| j["counts"]["unknown"] == 2)
        .await;
    assert_eq!(counts(&j), (1, 0, 0, 2));
    let (_, t) = g
        .post_signed(PATH, &receipt(&ids[1], "delivered").to_string())
        .await;
    assert_eq!(t["applied"], 1);
    assert_eq!(counts(&g.job(&id).await), (2, 0, 0, 1));
    let lines = g.recipients(&id).await;
    assert_eq!(lines[2]["delivery"], "unknown");
}
