//! What only the Redis backend must show: separate instances racing for one contact never
//! exceed its cap; batch calls stay one round trip (and print how long they take); a flushed
//! script cache is survived; a Redis that is down, silent or absent answers "unavailable"
//! quickly. Private `redis-server` processes are used wherever a server is disturbed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::domain::{Channel, Consent, Purpose};
use herald::store::{
    CapRequest, CapRule, ConsentChange, FactsQuery, RedisStore, StateStore, StoreError,
    SuppressionKey,
};
use herald_testkit::redis::{
    options, shared_store, unique_prefix, Cleanup, RedisServer, SHARED_URL,
};

fn rule(max: u32) -> Vec<CapRule> {
    vec![CapRule {
        channel: Channel::Sms,
        purpose: Purpose::Marketing,
        max,
        window_seconds: 86_400,
    }]
}

fn req(contact: u64, holder: u64) -> CapRequest {
    CapRequest {
        contact_key: contact,
        channel: Channel::Sms,
        purpose: Purpose::Marketing,
        holder,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_for_the_same_contacts_never_exceed_a_cap() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    let connect = || async {
        Arc::new(
            RedisStore::connect(options(vec![SHARED_URL.to_string()], false, &prefix))
                .await
                .expect("shared Redis"),
        )
    };
    let (a, b) = (connect().await, connect().await);
    let now = Utc::now();
    const CONTACTS: u64 = 20;
    const MAX: u32 = 3;
    let mut tasks = Vec::new();
    for (n, store) in [a, b].into_iter().enumerate() {
        for task in 0..8u64 {
            let store = store.clone();
            // Every task asks for every contact, twice, each time as a different message.
            let batch: Vec<CapRequest> = (0..CONTACTS)
                .flat_map(|c| {
                    let holder = (n as u64) * 1_000 + task * 10;
                    [req(c, holder), req(c, holder + 1)]
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                let granted = store.reserve_caps(&rule(MAX), &batch, now).await;
                (batch, granted.expect("reserve"))
            }));
        }
    }
    let mut per_contact = vec![0u32; CONTACTS as usize];
    for t in tasks {
        let (batch, granted) = t.await.expect("task");
        for (r, ok) in batch.iter().zip(granted) {
            per_contact[r.contact_key as usize] += u32::from(ok);
        }
    }
    assert_eq!(
        per_contact,
        vec![MAX; CONTACTS as usize],
        "each contact got exactly its cap, across both instances"
    );
}

#[tokio::test]
async fn batch_calls_take_one_round_trip_each() {
    let (_cleanup, s) = shared_store().await;
    const N: usize = 512;
    let ids: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
    let queries: Vec<FactsQuery<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| FactsQuery {
            contact_id: id,
            phone: 8613100000000 + i as u64,
            address: None,
        })
        .collect();
    s.add_suppressions(
        &dflt(),
        &[
            SuppressionKey::Phone(8613100000007),
            SuppressionKey::ContactId("c9".into()),
        ],
    )
    .await
    .expect("suppress");
    s.record_consent(
        &dflt(),
        &[ConsentChange {
            contact_id: "c11".into(),
            channel: Channel::Sms,
            consent: Consent::OptOut,
            source: "test".into(),
            at: Utc::now(),
        }],
    )
    .await
    .expect("consent");

    let before = s.round_trips();
    let facts = s
        .recipient_facts(&dflt(), Channel::Sms, &queries)
        .await
        .expect("facts");
    assert_eq!(
        s.round_trips() - before,
        1,
        "recipient_facts is one round trip"
    );
    assert!(facts[7].suppressed && facts[9].suppressed && !facts[8].suppressed);
    assert_eq!(facts[11].consent_override, Some(Consent::OptOut));
    assert_eq!(facts.iter().filter(|f| f.suppressed).count(), 2);

    let rules = rule(2);
    let requests: Vec<CapRequest> = (0..N as u64).map(|c| req(c, 1)).collect();
    // The first call may load the script (NOSCRIPT, then EVAL): at most two.
    let before = s.round_trips();
    s.reserve_caps(&rules, &requests, Utc::now())
        .await
        .expect("reserve");
    assert!(s.round_trips() - before <= 2);
    let again: Vec<CapRequest> = (0..N as u64).map(|c| req(c, 2)).collect();
    let before = s.round_trips();
    let granted = s
        .reserve_caps(&rules, &again, Utc::now())
        .await
        .expect("reserve");
    assert_eq!(
        s.round_trips() - before,
        1,
        "reserve_caps is one round trip"
    );
    assert!(granted.iter().all(|g| *g));
    let before = s.round_trips();
    s.release_caps(&again, Utc::now()).await.expect("release");
    assert_eq!(
        s.round_trips() - before,
        1,
        "release_caps is one round trip"
    );

    // Rough latency, printed for the record (run with --release --nocapture to read it).
    const ROUNDS: u32 = 50;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        s.recipient_facts(&dflt(), Channel::Sms, &queries)
            .await
            .expect("facts");
    }
    let facts_each = started.elapsed() / ROUNDS;
    let started = Instant::now();
    for round in 0..ROUNDS as u64 {
        // New holders each round; the cap (2) fills after two rounds and the rest are refused,
        // which costs the script the same checks.
        let batch: Vec<CapRequest> = (0..N as u64).map(|c| req(c, 100 + round)).collect();
        s.reserve_caps(&rules, &batch, Utc::now())
            .await
            .expect("reserve");
    }
    let reserve_each = started.elapsed() / ROUNDS;
    eprintln!(
        "redis, {N} recipients, one round trip each: recipient_facts {facts_each:?}, \
         reserve_caps {reserve_each:?}"
    );
}

#[tokio::test]
async fn a_flushed_script_cache_falls_back_to_eval() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), &[]);
    let s = RedisStore::connect(options(vec![server.url()], false, &unique_prefix()))
        .await
        .expect("private Redis");
    let t = Utc::now();
    let before = s.round_trips();
    assert_eq!(
        s.reserve_caps(&rule(2), &[req(1, 1)], t)
            .await
            .expect("first"),
        vec![true]
    );
    assert_eq!(
        s.round_trips() - before,
        2,
        "NOSCRIPT, then EVAL with the body"
    );
    let before = s.round_trips();
    assert_eq!(
        s.reserve_caps(&rule(2), &[req(1, 2)], t)
            .await
            .expect("cached"),
        vec![true]
    );
    assert_eq!(s.round_trips() - before, 1, "EVALSHA alone once loaded");
    assert_eq!(server.text(&["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(
        s.reserve_caps(&rule(2), &[req(1, 3), req(1, 1)], t)
            .await
            .expect("after a flush"),
        vec![false, true]
    );
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, StoreError>, started: Instant, what: &str) {
    match r {
        Err(StoreError::Unavailable(msg)) => assert!(msg.starts_with("redis"), "{msg}"),
        other => panic!("{what}: expected unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{what} took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_redis_that_goes_down_answers_unavailable_quickly() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = RedisServer::start(dir.path(), &[]);
    let mut opts = options(vec![server.url()], false, &unique_prefix());
    opts.timeout = Duration::from_millis(500);
    let s = RedisStore::connect(opts).await.expect("private Redis");
    s.add_suppressions(&dflt(), &[SuppressionKey::Phone(1)])
        .await
        .expect("up");
    server.kill();

    let q = [FactsQuery {
        contact_id: "c1",
        phone: 1,
        address: None,
    }];
    let started = Instant::now();
    assert_unavailable(
        s.recipient_facts(&dflt(), Channel::Sms, &q).await,
        started,
        "recipient_facts",
    );
    let started = Instant::now();
    assert_unavailable(
        s.reserve_caps(&rule(1), &[req(1, 1)], Utc::now()).await,
        started,
        "reserve_caps",
    );
    let started = Instant::now();
    assert_unavailable(s.ping().await, started, "ping");
}

#[tokio::test]
async fn a_redis_that_never_answers_times_out() {
    // Accepts connections and then says nothing, like a stalled server or a lost network.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut opts = options(
        vec![format!("redis://127.0.0.1:{port}")],
        false,
        &unique_prefix(),
    );
    opts.timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert_unavailable(
        RedisStore::connect(opts).await.map(|_| ()),
        started,
        "connect",
    );
    silent.abort();
}

#[tokio::test]
async fn no_redis_at_all_fails_at_connect() {
    let port = herald_testkit::redis::free_port();
    let mut opts = options(
        vec![format!("redis://127.0.0.1:{port}")],
        false,
        &unique_prefix(),
    );
    opts.timeout = Duration::from_millis(500);
    let started = Instant::now();
    assert_unavailable(
        RedisStore::connect(opts).await.map(|_| ()),
        started,
        "connect",
    );
}

#[tokio::test]
async fn a_redis_that_comes_back_empty_is_noticed_and_not_trusted() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = RedisServer::start(dir.path(), &[]);
    let prefix = unique_prefix();
    let a = RedisStore::connect(options(vec![server.url()], false, &prefix))
        .await
        .expect("private Redis");
    let b = RedisStore::connect(options(vec![server.url()], false, &prefix))
        .await
        .expect("a second instance");
    a.ping().await.expect("up");
    b.ping().await.expect("up");

    // Restarted without persistence: every reservation and key is gone.
    server.kill();
    server.restart();
    for store in [&a, &b] {
        let err = store.ping().await.expect_err("the data loss is noticed");
        assert!(err.to_string().contains("lost its data"), "{err}");
        // And it stays noticed: the first probe after the loss re-created the marker.
        assert!(store.ping().await.is_err());
    }
    // A herald started now (an operator's restart) accepts the Redis as it is.
    let fresh = RedisStore::connect(options(vec![server.url()], false, &prefix))
        .await
        .expect("a restarted instance");
    fresh.ping().await.expect("up");
}

/// The default tenant, whose entries are stored as before tenants had their own.
fn dflt() -> herald::access::TenantId {
    herald::access::TenantId::default_tenant()
}
