//! The shared-work records in Redis, on one Redis and on a 3-node Redis Cluster: published
//! jobs read back whole, a shard lease has one holder at a time and runs out, outcome writes
//! are fenced by the lease and counted once, and the job completes exactly when its last
//! recipient is settled. Events for webhooks go to the job's stream in the same writes: a
//! fenced write appends none, the job's end is appended once, and a receipt's states wait
//! for their messages' outcomes.

use std::time::Duration;

use herald::domain::{Reason, RecipientOutcome};
use herald::store::{
    CommitAnswer, DeliveriesAnswer, EventStream, OutcomeUpdate, PublishedJob, RedisEvents,
    RedisWork, ShardStats,
};
use herald_testkit::redis::{options, unique_prefix, Cleanup, RedisCluster, SHARED_URL};

/// The table of final codes, as the cluster passes it.
fn finals() -> String {
    (0..=255u8)
        .map(|c| {
            let o = RecipientOutcome::from_code(c);
            if c != 0 && o.to_code() == c && o.is_final() {
                '1'
            } else {
                '0'
            }
        })
        .collect()
}

fn update(pos: u32, outcome: RecipientOutcome) -> OutcomeUpdate {
    let sent = outcome == RecipientOutcome::Sent;
    OutcomeUpdate {
        pos,
        code: outcome.to_code(),
        segments: u32::from(sent),
        cost_micros: if sent { 45_000 } else { 0 },
    }
}

fn count(stats: &ShardStats, outcome: RecipientOutcome) -> i64 {
    stats.by_code.get(&outcome.to_code()).copied().unwrap_or(0)
}

async fn behaves(a: &RedisWork, b: &RedisWork, events: &RedisEvents) {
    let job = "job_0123";
    let published = PublishedJob {
        spec: b"{\"id\":\"job_0123\"}".to_vec(),
        audience: vec![vec![1, 2, 3], vec![4; 300_000]],
    };
    // Two shards of 3 and 2 recipients: 5 to settle.
    a.publish(job, &published, 5, 2, "queued")
        .await
        .expect("publish");
    assert_eq!(b.active_jobs().await.expect("list"), vec![job.to_string()]);
    let back = b.load(job).await.expect("load").expect("the job exists");
    assert_eq!(back.spec, published.spec);
    assert_eq!(back.audience, published.audience);
    assert!(b.load("job_none").await.expect("load").is_none());

    // One holder per shard; a renew by anyone else fails.
    assert!(a.acquire(job, 0, "a", 10_000).await.expect("acquire"));
    assert!(!b.acquire(job, 0, "b", 10_000).await.expect("acquire"));
    assert!(b.acquire(job, 1, "b", 10_000).await.expect("acquire"));
    assert_eq!(
        a.renew(job, &[0, 1], "a", 10_000).await.expect("renew"),
        vec![true, false]
    );

    // Writes count each recipient once, whatever is written again.
    let finals = finals();
    let w = a
        .commit(
            job,
            0,
            "a",
            &finals,
            1,
            &[
                update(0, RecipientOutcome::Sent),
                update(1, RecipientOutcome::Deferred),
                update(0, RecipientOutcome::Sent),
            ],
            &[b"sent 0".to_vec()],
        )
        .await
        .expect("commit");
    assert_eq!(w, CommitAnswer::Written { finals: 1 });
    // Fenced: b does not hold shard 0.
    let lost = b
        .commit(
            job,
            0,
            "b",
            &finals,
            1,
            &[update(2, RecipientOutcome::Failed)],
            &[b"failed 2".to_vec()],
        )
        .await
        .expect("commit");
    assert_eq!(lost, CommitAnswer::LeaseLost);
    assert_eq!(a.codes(job, 0).await.expect("codes"), vec![2, 1]);
    let stream = EventStream::Job(job.to_string());
    let written = events.read(&stream, "", 10).await.expect("events");
    let records: Vec<&[u8]> = written
        .iter()
        .flat_map(|e| e.records.iter().map(Vec::as_slice))
        .collect();
    assert_eq!(
        records,
        vec![b"sent 0".as_slice()],
        "a fenced write appends no event"
    );

    // A receipt for a message without a final outcome waits; one for a sent message is
    // written with its event.
    assert_eq!(
        b.record_deliveries(job, 0, &[(0, 1), (1, 1)], b"delivered 0 1", false)
            .await
            .expect("deliveries"),
        DeliveriesAnswer::Waiting(vec![1])
    );
    assert_eq!(
        b.record_deliveries(job, 0, &[(0, 1)], b"delivered 0", false)
            .await
            .expect("deliveries"),
        DeliveriesAnswer::Counted(1)
    );
    let after = written.last().map(|e| e.id.clone()).expect("an entry");
    let next = events.read(&stream, &after, 10).await.expect("events");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].records, vec![b"delivered 0".to_vec()]);

    // The deferred recipient is sent later; the shard's counts move with it.
    a.commit(
        job,
        0,
        "a",
        &finals,
        2,
        &[
            update(1, RecipientOutcome::Sent),
            update(2, RecipientOutcome::Rejected(Reason::FrequencyCapped)),
        ],
        &[],
    )
    .await
    .expect("commit");
    let stats = b.shard_stats(job, 2).await.expect("stats");
    assert_eq!(count(&stats[0], RecipientOutcome::Sent), 2);
    assert_eq!(count(&stats[0], RecipientOutcome::Deferred), 0);
    assert_eq!(
        count(
            &stats[0],
            RecipientOutcome::Rejected(Reason::FrequencyCapped)
        ),
        1
    );
    assert_eq!(
        (stats[0].segments, stats[0].cost_micros, stats[0].finals),
        (2, 90_000, 3)
    );
    assert_eq!(b.control(job).await.expect("control")["status"], "queued");

    // A pause is kept; the last recipient completes the job, and nothing reopens it.
    assert_eq!(
        b.set_status(job, "paused", None).await.expect("pause"),
        "paused"
    );
    let w = b
        .commit(
            job,
            1,
            "b",
            &finals,
            77,
            &[
                update(0, RecipientOutcome::Failed),
                update(1, RecipientOutcome::Sent),
            ],
            &[],
        )
        .await
        .expect("commit");
    assert_eq!(w, CommitAnswer::Written { finals: 5 });
    let control = a.control(job).await.expect("control");
    assert_eq!(control["status"], "completed");
    assert_eq!(control["finished_at"], "77");
    assert_eq!(
        a.set_status(job, "running", None).await.expect("status"),
        "completed"
    );
    let ends: Vec<String> = events
        .read(&stream, "", 100)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.job_end)
        .collect();
    assert_eq!(
        ends,
        vec!["completed".to_string()],
        "the end is announced once"
    );
    // Finished: off the active list, its records kept for one second here.
    a.retire(job, 1).await.expect("retire");
    assert!(a.active_jobs().await.expect("list").is_empty());
    assert_eq!(a.all_jobs().await.expect("list"), vec![job.to_string()]);

    // A released lease can be taken at once; an unrenewed one runs out by itself.
    a.release(job, &[0], "a").await.expect("release");
    assert!(b.acquire(job, 0, "b", 300).await.expect("acquire"));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let unheld = b
        .commit(
            job,
            0,
            "b",
            &finals,
            3,
            &[update(2, RecipientOutcome::Failed)],
            &[],
        )
        .await
        .expect("commit");
    assert_eq!(
        unheld,
        CommitAnswer::Unheld,
        "nobody holds an expired lease"
    );
    assert!(a
        .acquire(job, 0, "a", 10_000)
        .await
        .expect("acquire after expiry"));

    // Live instances are counted by heartbeat.
    let now = 1_000_000;
    assert_eq!(a.heartbeat("a", now, 1_000).await.expect("beat"), 1);
    assert_eq!(b.heartbeat("b", now, 1_000).await.expect("beat"), 2);
    assert_eq!(b.heartbeat("b", now + 5_000, 1_000).await.expect("beat"), 1);

    // After its retention the finished job's records are gone; the list forgets it.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(a.load(job).await.expect("load").is_none());
    assert!(a.shard_stats(job, 2).await.expect("stats")[0]
        .by_code
        .is_empty());
    a.forget(job).await.expect("forget");
    assert!(a.all_jobs().await.expect("list").is_empty());
}

#[tokio::test]
async fn shared_work_on_one_redis() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    let opts = options(vec![SHARED_URL.to_string()], false, &prefix);
    let a = RedisWork::open(&opts).expect("open");
    let b = RedisWork::open(&opts).expect("open");
    let events = RedisEvents::open(&opts).expect("open");
    behaves(&a, &b, &events).await;
}

#[tokio::test]
async fn shared_work_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix();
    let opts = options(cluster.urls(), true, &prefix);
    let a = RedisWork::open(&opts).expect("open");
    let b = RedisWork::open(&opts).expect("open");
    let events = RedisEvents::open(&opts).expect("open");
    behaves(&a, &b, &events).await;
}
