//! Provider rate limits shared through Redis: limiters with pools of their own (as separate
//! herald processes would have) hold one provider's limit together; a Redis that goes away
//! stops sends until it is back; the script's arithmetic on Redis's clock; and how many
//! round trips the block cache needs per 1,000 messages (printed; run with --nocapture).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::dispatch::PartsLimiter;
use herald::store::{BlockAnswer, BlockRequest, RateBucket, RedisRateBucket};
use herald_testkit::redis::{
    options, unique_prefix, Cleanup, RedisCluster, RedisServer, SHARED_URL,
};

const PROVIDER: &str = "sms-main";

/// A prefix on the shared Redis and the guard that deletes its keys.
fn shared_prefix() -> (Cleanup, String) {
    let prefix = unique_prefix();
    let cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    (cleanup, prefix)
}

/// One herald instance's view of the provider: its own pool, its own block cache.
struct Instance {
    bucket: Arc<RedisRateBucket>,
    limiter: Arc<PartsLimiter>,
}

fn instance(urls: Vec<String>, cluster: bool, prefix: &str, rate: u32, burst: u32) -> Instance {
    let bucket =
        Arc::new(RedisRateBucket::open(&options(urls, cluster, prefix), PROVIDER).expect("open"));
    let limiter = Arc::new(PartsLimiter::shared(bucket.clone(), PROVIDER, rate, burst));
    Instance { bucket, limiter }
}

/// Parts handed out, by time since the start of the run.
type Grants = Vec<(Duration, u32)>;

/// Every instance's workers take parts as fast as they are given them for `run`; messages
/// of 1, 2 and 3 parts, as SMS of different lengths.
async fn hammer(instances: &[Instance], workers: u32, run: Duration) -> Grants {
    let grants = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        for w in 0..workers {
            let (limiter, grants) = (inst.limiter.clone(), grants.clone());
            let parts = 1 + (i as u32 + w) % 3;
            tasks.push(tokio::spawn(async move {
                let keep_waiting = || started.elapsed() < run;
                while limiter.acquire(parts, &keep_waiting).await && keep_waiting() {
                    grants.lock().push((started.elapsed(), parts));
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let mut grants = std::mem::take(&mut *grants.lock());
    grants.sort();
    grants
}

/// The most parts handed out in any window of length `w` (the busiest windows start at a
/// grant, so only those are tried).
fn busiest(grants: &Grants, w: Duration) -> u64 {
    let (mut best, mut sum, mut end) = (0u64, 0u64, 0);
    for start in 0..grants.len() {
        while end < grants.len() && grants[end].0 <= grants[start].0 + w {
            sum += u64::from(grants[end].1);
            end += 1;
        }
        best = best.max(sum);
        sum -= u64::from(grants[start].1);
    }
    best
}

fn total(grants: &Grants) -> u64 {
    grants.iter().map(|g| u64::from(g.1)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_one_limit_together() {
    const RATE: u32 = 2_000;
    const BURST: u32 = 200;
    let run = Duration::from_secs(11);
    let (_cleanup, prefix) = shared_prefix();
    let instances: Vec<Instance> = (0..3)
        .map(|_| instance(vec![SHARED_URL.into()], false, &prefix, RATE, BURST))
        .collect();

    let grants = hammer(&instances, 4, run).await;

    let limit = |secs: u64| u64::from(RATE) * secs + u64::from(BURST);
    let one = busiest(&grants, Duration::from_secs(1));
    let ten = busiest(&grants, Duration::from_secs(10));
    let sent = total(&grants);
    let round_trips: u64 = instances.iter().map(|i| i.bucket.round_trips()).sum();
    println!(
        "3 instances at {RATE} parts/s, burst {BURST}, {:?}: {sent} parts in {} messages \
         ({:.1}% of {}); busiest 1 s window {one} parts ({:+.2}% against {}), busiest 10 s \
         window {ten} ({:+.2}% against {}); {round_trips} Redis round trips, {:.1} per 1,000 \
         messages, {:.1} per 1,000 parts",
        run,
        grants.len(),
        100.0 * sent as f64 / (f64::from(RATE) * run.as_secs_f64()),
        u64::from(RATE) * run.as_secs(),
        100.0 * (one as f64 / limit(1) as f64 - 1.0),
        limit(1),
        100.0 * (ten as f64 / limit(10) as f64 - 1.0),
        limit(10),
        1_000.0 * round_trips as f64 / grants.len() as f64,
        1_000.0 * round_trips as f64 / sent as f64,
    );
    assert!(one * 100 <= limit(1) * 102, "1 s window: {one}");
    assert!(ten * 100 <= limit(10) * 102, "10 s window: {ten}");
    assert!(
        sent as f64 >= 0.9 * f64::from(RATE) * run.as_secs_f64(),
        "only {sent} parts in {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_thousand_messages() {
    let (_cleanup, prefix) = shared_prefix();
    let run = Duration::from_millis(1_500);
    // (rate, burst, messages a second the instance has to send; 0: as many as allowed).
    for (rate, burst, demand) in [
        (200, 50, 0),
        (2_000, 200, 0),
        (2_000, 200, 1_000),
        (10_000, 1_000, 0),
    ] {
        let inst = instance(
            vec![SHARED_URL.into()],
            false,
            &format!("{prefix}:{rate}:{demand}"),
            rate,
            burst,
        );
        let started = Instant::now();
        let mut messages = 0u64;
        while started.elapsed() < run {
            if demand > 0 {
                // Ten messages every 10 ms.
                let due = started + Duration::from_millis(10 * (messages / 10));
                tokio::time::sleep_until(due.into()).await;
            }
            assert!(inst.limiter.acquire(1, &|| true).await);
            messages += 1;
        }
        let per_thousand = 1_000.0 * inst.bucket.round_trips() as f64 / messages as f64;
        let demand_text = if demand == 0 {
            "all it may".to_string()
        } else {
            format!("{demand}/s")
        };
        println!(
            "one instance, limit {rate} parts/s (burst {burst}), sending {demand_text}: \
             {messages} one-part messages, {per_thousand:.1} Redis round trips per 1,000"
        );
        // A block is 50 ms of the rate, or 50 ms of demand when demand is lower.
        let block = f64::from(if demand == 0 { rate } else { demand }) / 20.0;
        assert!(
            per_thousand <= 1_000.0 / block * 1.25 + 2.0,
            "{per_thousand} round trips per 1,000 messages at {rate}/s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_holds_sends_until_it_returns() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = RedisServer::start(dir.path(), &[]);
    let mut opts = options(vec![server.url()], false, &unique_prefix());
    opts.timeout = Duration::from_millis(300);
    let bucket = Arc::new(RedisRateBucket::open(&opts, PROVIDER).expect("open"));
    let limiter = Arc::new(PartsLimiter::shared(bucket, PROVIDER, 1_000, 100));

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let grants = Arc::new(parking_lot::Mutex::new(Vec::<Duration>::new()));
    let sender = tokio::spawn({
        let (limiter, stop, grants) = (limiter.clone(), stop.clone(), grants.clone());
        async move {
            let keep_waiting = || !stop.load(Ordering::SeqCst);
            while limiter.acquire(1, &keep_waiting).await {
                grants.lock().push(started.elapsed());
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = started.elapsed();
    tokio::task::block_in_place(|| server.kill());
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // A caller told to stop during the outage is not held by it.
    let asked = Instant::now();
    let gave_up = !limiter
        .acquire(1, &|| asked.elapsed() < Duration::from_millis(200))
        .await;
    assert!(gave_up);
    assert!(
        asked.elapsed() < Duration::from_millis(800),
        "{:?}",
        asked.elapsed()
    );

    let restarted = started.elapsed();
    tokio::task::block_in_place(|| server.restart());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && grants.lock().last().is_none_or(|g| *g < restarted) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("sender");

    let grants = grants.lock();
    let before = grants.iter().filter(|g| **g < killed).count();
    // Parts granted before the kill stay usable for their block's life: the last block was
    // booked at most 50 ms ahead (one instance) and lives 50 ms.
    let quiet_from = killed + Duration::from_millis(150);
    let during = grants
        .iter()
        .filter(|g| **g > quiet_from && **g < restarted)
        .count();
    let resumed = grants.iter().find(|g| **g >= restarted).copied();
    println!(
        "outage: {before} parts before the kill, {during} between {quiet_from:?} and the \
         restart at {restarted:?}, first after it at {resumed:?}"
    );
    assert!(before >= 400, "{before} parts before the kill");
    assert_eq!(during, 0, "parts handed out while Redis was down");
    let resumed = resumed.expect("sends resume once Redis is back");
    assert!(
        resumed - restarted < Duration::from_millis(2_500),
        "resumed {:?} after the restart",
        resumed - restarted
    );
}

#[tokio::test]
async fn the_script_books_blocks_back_to_back_on_redis_time() {
    let (cleanup, prefix) = shared_prefix();
    let bucket = RedisRateBucket::open(&options(vec![SHARED_URL.into()], false, &prefix), PROVIDER)
        .expect("open");
    // 1 ms a part; bursts of 100; bookings at most 350 ms ahead.
    let req = |parts| BlockRequest {
        rate: 1_000,
        tolerance: 100,
        parts,
        horizon: Duration::from_millis(350),
    };
    // Each answer is `booked start - Redis's now`, with the booked start counted from the
    // first request's Redis time. Locally a request's Redis time lies somewhere in its round
    // trip, so `answer + sent` (both from `t0`, the first request's send) must be `want`,
    // give or take the two round trips: early by up to this request's, late by up to the
    // first's (1 ms more for whole-µs rounding). A busy host stretches a round trip; a
    // wrong booking is off by whole blocks of 100 ms.
    let close =
        |answer: Duration, sent: Duration, took: Duration, first: Duration, want: Duration| {
            let at = answer + sent;
            let slack = Duration::from_millis(1);
            assert!(
                at + took + slack >= want && at <= want + first + slack,
                "{at:?}, expected {want:?} (this trip {took:?}, the first {first:?})"
            );
        };

    // A full bucket grants its whole tolerance at once.
    let t0 = Instant::now();
    assert_eq!(
        bucket.take(req(100)).await.expect("take"),
        BlockAnswer::Granted {
            after: Duration::ZERO
        }
    );
    let first = t0.elapsed();
    // Then each block of 100 starts 100 ms after the one before, booked ahead.
    for k in 1..=3u32 {
        let sent = t0.elapsed();
        let answer = bucket.take(req(100)).await.expect("take");
        let took = t0.elapsed() - sent;
        match answer {
            BlockAnswer::Granted { after } => {
                close(after, sent, took, first, Duration::from_millis(100) * k)
            }
            other => panic!("block {k}: {other:?}"),
        }
    }
    // The next would start 400 ms ahead, past the horizon: refused, nothing taken, so the
    // same answer comes again.
    for _ in 0..2 {
        let sent = t0.elapsed();
        let answer = bucket.take(req(100)).await.expect("take");
        let took = t0.elapsed() - sent;
        match answer {
            BlockAnswer::Denied { retry_after } => {
                close(retry_after, sent, took, first, Duration::from_millis(50))
            }
            other => panic!("beyond the horizon: {other:?}"),
        }
    }

    // The key holds the TAT in whole µs of Redis time and lives until it passes.
    let client = redis::Client::open(SHARED_URL).expect("client");
    let mut con = client.get_connection().expect("connection");
    let key = format!("{{{prefix}:rate:{PROVIDER}}}:v1:gcra");
    let tat: String = redis::cmd("GET").arg(&key).query(&mut con).expect("GET");
    assert!(tat.bytes().all(|b| b.is_ascii_digit()), "{tat}");
    let sent = t0.elapsed();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut con).expect("TIME");
    let took = t0.elapsed() - sent;
    let now = secs * 1_000_000 + micros;
    let ahead = tat.parse::<u64>().expect("µs") - now;
    let ahead = Duration::from_micros(ahead);
    close(ahead, sent, took, first, Duration::from_millis(400));
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).expect("PTTL");
    // Counted down from `ahead` by the time between the two commands, plus rounding.
    let between = (t0.elapsed() - sent).as_millis() as i64;
    assert!(
        (0..=402).contains(&ttl) && ttl + between + 1 >= ahead.as_millis() as i64,
        "{ttl} ms, {between} ms after {ahead:?} ahead"
    );

    // A request the script could never grant is refused before it runs.
    assert!(bucket.take(req(101)).await.is_err());
    assert!(bucket.take(req(0)).await.is_err());

    // After a lull the bucket refills, to the tolerance and no further.
    tokio::time::sleep(Duration::from_millis(450).saturating_sub(t0.elapsed())).await;
    assert_eq!(
        bucket.take(req(100)).await.expect("take"),
        BlockAnswer::Granted {
            after: Duration::ZERO
        }
    );
    match bucket.take(req(1)).await.expect("take") {
        BlockAnswer::Granted { after } => assert!(after <= Duration::from_millis(1), "{after:?}"),
        other => panic!("{other:?}"),
    }
    drop(cleanup);
    let left: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query(&mut con)
        .expect("EXISTS");
    assert_eq!(left, 0, "the test's key is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_on_a_cluster() {
    const RATE: u32 = 2_000;
    const BURST: u32 = 200;
    let cluster = RedisCluster::start();
    let prefix = unique_prefix();
    let instances: Vec<Instance> = (0..2)
        .map(|_| instance(cluster.urls(), true, &prefix, RATE, BURST))
        .collect();
    let run = Duration::from_secs(3);
    let grants = hammer(&instances, 3, run).await;
    let one = busiest(&grants, Duration::from_secs(1));
    let sent = total(&grants);
    println!("cluster, 2 instances: {sent} parts in {run:?}, busiest 1 s window {one}");
    assert!(one <= u64::from(RATE + BURST) * 102 / 100, "{one}");
    assert!(
        sent as f64 >= 0.9 * f64::from(RATE) * run.as_secs_f64(),
        "{sent}"
    );
}
