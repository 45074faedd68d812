//! Crash recovery, end to end: the real `herald` binary sends one large job to a recording
//! HTTP provider on 127.0.0.1:0 and is killed with SIGKILL several times mid-job, each time
//! restarted on the same config and data directory. After the last restart the job must
//! complete, and the provider must have seen exactly what its deduplication allows: every
//! recipient when it drops repeated ids, nobody twice when it does not. Herald's own numbers
//! (job counts, ledger) must agree with what the provider saw, and the ledger's hash chain
//! must survive the kills.
//!
//! The kill delays come from a seeded RNG; the seed is printed, and `CRASH_SEED=<n>` replays
//! the same delays (where the kills land still depends on the machine's speed).
#![cfg(unix)]

mod harness;
mod process;
mod provider;
mod traces;
mod webhook_receiver;

use harness::*;
use process::*;
use provider::*;
use webhook_receiver::*;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald::domain::{Channel, JobId, MessageId};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) const KEY: &str = "crash-test-key";
/// Receipts are signed with this; herald reads it from the environment variable below.
const CALLBACK_SECRET: &str = "crash-test-callback-secret";
const CALLBACK_SECRET_ENV: &str = "CRASH_CALLBACK_SECRET";
pub(crate) const PROVIDER: &str = "crash-sms";
pub(crate) const CURRENCY: &str = "CNY";
/// Price of one SMS part to China; every message of these jobs is one part.
pub(crate) const UNIT_PRICE_MICROS: i64 = 45_000;

pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const SUBMIT_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const COMPLETION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a job may be unknown to a restarted, ready herald before it counts as lost.
pub(crate) const LOST_JOB_GRACE: Duration = Duration::from_secs(15);
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// The tests share two cores: one at a time keeps each job as long as its rate was chosen for,
/// so that the kills land mid-job.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One crash scenario.
pub(crate) struct Scenario {
    pub(crate) campaign: &'static str,
    pub(crate) recipients: usize,
    pub(crate) kills: usize,
    pub(crate) idempotent: bool,
    /// `dispatch.workers`, also the provider's `max_in_flight`.
    pub(crate) workers: usize,
    /// `dispatch.batch_size` and the provider's `batch_size`.
    pub(crate) batch: usize,
    /// The provider's `rate_limit_parts_per_second`.
    pub(crate) rate: u32,
    /// How long the provider takes to answer; `None`: 1–5 ms.
    pub(crate) provider_latency: Option<Duration>,
    /// `server.shutdown_timeout_seconds`.
    pub(crate) shutdown_timeout_seconds: u64,
}

impl Scenario {
    /// Most messages that can be in flight (recorded as sending, answer not recorded) at one
    /// crash: each worker's chunk at the provider and the one it has ready to go next.
    fn in_flight_window(&self) -> usize {
        2 * self.workers * self.batch
    }
}

/// 200,000 recipients at 25,000 parts/s: about 8 s of sending, which is also about what the
/// debug binary manages unthrottled on two cores, so all five kills land mid-job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_five_times_every_recipient_reaches_an_idempotent_provider_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let test_started = Instant::now();
    let (hook_url, hooked) = webhook_receiver().await;
    let mut h = Harness::start(Scenario {
        campaign: "crash",
        recipients: 200_000,
        kills: 5,
        idempotent: true,
        workers: 8,
        batch: 100,
        rate: 25_000,
        provider_latency: None,
        shutdown_timeout_seconds: 10,
    })
    .await;
    h.register_webhook(&hook_url).await;
    let job = h.submit().await;
    h.crash_repeatedly().await;
    let view = h.wait_completed(&job).await;

    let n = h.scenario.recipients;
    let expected = h.audience_ids(&job);
    let received = h.provider.by_id.lock().clone();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !received.contains_key(*id))
        .collect();
    let strangers = strangers(&expected, &received);
    let resent = received.values().filter(|&&c| c > 1).count();
    let t = h.provider.tally();
    let sent = count(&view, "sent");
    let cost = view["counts"]["cost_micros"]
        .as_i64()
        .expect("counts.cost_micros");
    let ledger = h.ledger_totals(&job).await;
    println!(
        "provider: {} distinct ids, {} receptions in {} requests, {resent} ids received more \
         than once (the provider dropped the repeats); {} missing, {} not in the audience",
        t.distinct,
        t.receptions,
        t.requests,
        missing.len(),
        strangers.len()
    );
    println!("job counts: {}", view["counts"]);
    println!("ledger totals for the job: {ledger}");

    h.assert_well_formed();
    assert!(
        missing.is_empty(),
        "{} of {n} recipients never reached the provider, e.g. {:?}",
        missing.len(),
        examples(missing.iter().copied())
    );
    assert_none_foreign(&strangers);
    assert_eq!(t.distinct, n, "distinct ids at the provider");
    assert_eq!(sent, n as u64, "counts.sent: {:#}", view["counts"]);
    assert_eq!(
        ledger["cost_micros"].as_i64(),
        Some(cost),
        "the ledger's total for the job equals counts.cost_micros"
    );
    assert_eq!(
        cost,
        n as i64 * UNIT_PRICE_MICROS,
        "every message is charged once, resends included"
    );

    // Every send is announced at least once, whatever the kills interrupted.
    let waited = Instant::now();
    while hooked.sent.lock().len() < n && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "webhooks: {} events received, {} distinct messages announced as sent",
        hooked.events.load(Ordering::SeqCst),
        hooked.sent.lock().len()
    );
    assert_eq!(
        hooked.sent.lock().len(),
        n,
        "message.sent events lost to the kills"
    );

    h.stop_and_verify_ledger().await;
    h.assert_logs_are_json_without_numbers();
    println!("test took {:?}", test_started.elapsed());
}

/// 40,000 recipients at 6,000 parts/s: about 7 s of sending, more than three kills take.
/// What was in flight at a kill may be `in_doubt`, never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_dedup_never_gets_a_message_twice() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let test_started = Instant::now();
    let (hook_url, hooked) = webhook_receiver().await;
    let mut h = Harness::start(Scenario {
        campaign: "crash-no-dedup",
        recipients: 40_000,
        kills: 3,
        idempotent: false,
        workers: 8,
        batch: 100,
        rate: 6_000,
        provider_latency: None,
        shutdown_timeout_seconds: 10,
    })
    .await;
    h.register_webhook(&hook_url).await;
    let job = h.submit().await;
    h.crash_repeatedly().await;
    let view = h.wait_completed(&job).await;

    let n = h.scenario.recipients;
    let expected = h.audience_ids(&job);
    let received = h.provider.by_id.lock().clone();
    let twice: Vec<&String> = received
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(id, _)| id)
        .collect();
    let strangers = strangers(&expected, &received);
    let t = h.provider.tally();
    let sent = count(&view, "sent");
    let in_doubt = count(&view, "in_doubt");
    let window = h.scenario.kills * h.scenario.in_flight_window();
    println!(
        "provider: {} distinct ids, {} receptions in {} requests, {} ids received more than \
         once, {} not in the audience",
        t.distinct,
        t.receptions,
        t.requests,
        twice.len(),
        strangers.len()
    );
    println!(
        "job counts: {}; in doubt: {in_doubt} (at most {window}: {} kills x 2 chunks x {} \
         workers x {} per batch)",
        view["counts"], h.scenario.kills, h.scenario.workers, h.scenario.batch
    );

    h.assert_well_formed();
    assert!(
        twice.is_empty(),
        "{} messages reached a provider without dedup more than once, e.g. {:?}",
        twice.len(),
        examples(twice.iter().copied())
    );
    assert_none_foreign(&strangers);
    assert_eq!(
        sent + in_doubt,
        n as u64,
        "every recipient is sent or in doubt: {:#}",
        view["counts"]
    );
    assert!(
        t.distinct as u64 >= sent,
        "the provider has {} ids but herald counts {sent} sent",
        t.distinct
    );
    assert!(
        in_doubt as usize <= window,
        "{in_doubt} in doubt is more than could have been in flight at {} kills ({window})",
        h.scenario.kills
    );

    // A delivery receipt proves an in-doubt message reached the provider: it settles as sent
    // and is charged, so herald's sent count and the ledger end equal to what was delivered.
    let doubtful = h.message_ids_with(&job, "in_doubt").await;
    assert_eq!(doubtful.len() as u64, in_doubt);

    // Each is announced as `message.in_doubt` by exactly one event (however many restarts
    // restored it), and nothing else is.
    let waited = Instant::now();
    while hooked.in_doubt.lock().len() < doubtful.len()
        && waited.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let announced = hooked.in_doubt.lock().clone();
    let expected_doubt: HashSet<String> = doubtful.iter().cloned().collect();
    let announced_ids: HashSet<String> = announced.keys().cloned().collect();
    assert_eq!(announced_ids, expected_doubt, "message.in_doubt events");
    assert!(
        announced.values().all(|events| events.len() == 1),
        "a message announced in doubt by more than one event"
    );
    let delivered_doubtful: Vec<String> = doubtful
        .iter()
        .filter(|id| received.contains_key(*id))
        .cloned()
        .collect();
    if !delivered_doubtful.is_empty() {
        h.post_delivered(&delivered_doubtful).await;
    }
    let settled = sent + delivered_doubtful.len() as u64;
    let started = Instant::now();
    let view = loop {
        let (_, v) = h.herald.get(&format!("/v1/jobs/{job}")).await.expect("job");
        if count(&v, "sent") == settled || started.elapsed() > Duration::from_secs(10) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "{} in-doubt messages had reached the provider; receipts settled them: {:#}",
        delivered_doubtful.len(),
        view["counts"]
    );
    assert_eq!(count(&view, "sent"), settled);
    assert_eq!(
        count(&view, "in_doubt"),
        in_doubt - delivered_doubtful.len() as u64
    );
    let ledger = h.ledger_totals(&job).await;
    assert_eq!(ledger["entries"].as_u64(), Some(settled), "{ledger}");
    assert_eq!(
        ledger["cost_micros"], view["counts"]["cost_micros"],
        "{ledger}"
    );

    h.stop_and_verify_ledger().await;
    println!("test took {:?}", test_started.elapsed());
}

/// A SIGTERM whose drain runs out of time (the provider takes 3 s to answer, the shutdown
/// timeout is 1 s) strands nothing: after the restart only messages the provider really got
/// may read `in_doubt`; the chunks each worker had ready but not sent are decided again and
/// sent once, and the job completes with every recipient sent or in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_that_runs_out_of_time_leaves_in_doubt_only_what_reached_the_provider() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut h = Harness::start(Scenario {
        campaign: "sigterm-slow-provider",
        recipients: 5_000,
        kills: 0,
        idempotent: false,
        workers: 8,
        batch: 100,
        rate: 0,
        provider_latency: Some(Duration::from_secs(3)),
        shutdown_timeout_seconds: 1,
    })
    .await;
    let job = h.submit().await;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let status = h.herald.stop().await;
    let at_stop = h.provider.tally();
    println!(
        "stopped ({status}); the provider had {} distinct ids",
        at_stop.distinct
    );
    h.herald.start().await;
    let view = h.wait_completed(&job).await;

    let n = h.scenario.recipients as u64;
    let received = h.provider.by_id.lock().clone();
    let doubtful = h.message_ids_with(&job, "in_doubt").await;
    let never_sent: Vec<&String> = doubtful
        .iter()
        .filter(|id| !received.contains_key(*id))
        .collect();
    println!("job counts: {}", view["counts"]);
    h.assert_well_formed();
    assert!(
        never_sent.is_empty(),
        "{} of {} in-doubt messages never reached the provider, e.g. {:?}",
        never_sent.len(),
        doubtful.len(),
        examples(never_sent.iter().copied())
    );
    let twice = received.values().filter(|&&c| c > 1).count();
    assert_eq!(twice, 0, "messages reached a provider without dedup twice");
    assert_eq!(
        count(&view, "sent") + count(&view, "in_doubt"),
        n,
        "every recipient is sent or in doubt: {:#}",
        view["counts"]
    );
    h.stop_and_verify_ledger().await;
}
