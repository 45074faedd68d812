//! A provider that throttles (429) is slowed down for, not failed: throttled rounds do not use
//! up retry attempts, and its limiter grants it less than its configured rate for a while.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::clock::SystemClock;
use herald::config::{Config, DEFAULT_TOML};
use herald::dispatch::planner::{plan, PlanRequest};
use herald::dispatch::{
    AudienceBuilder, Dispatcher, DispatcherDeps, JobSpec, PartsLimiter, ProviderSlot,
};
use herald::domain::{Channel, Currency, JobId, JobStatus, Purpose};
use herald::phone::RegionCode;
use herald::policy::PhoneMismatchPolicy;
use herald::provider::{OutboundMessage, Provider, SendOutcome};
use herald::snapshot::{load_csv, ContactBooks, SnapshotStore};
use herald::store::MemoryStore;
use herald::template::Template;

/// Answers 429 to the first `throttles` calls, then accepts everything.
struct ThrottleThenAccept {
    calls: AtomicU32,
    throttles: u32,
}

#[async_trait]
impl Provider for ThrottleThenAccept {
    fn name(&self) -> &str {
        "sandbox"
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        messages
            .iter()
            .map(|m| {
                if n < self.throttles {
                    SendOutcome::Throttled {
                        retry_after: Duration::from_millis(10),
                    }
                } else {
                    SendOutcome::Accepted {
                        provider_message_id: m.id.to_string(),
                    }
                }
            })
            .collect()
    }
}

#[tokio::test]
async fn throttled_rounds_do_not_use_up_retry_attempts() {
    let mut config: Config = toml::from_str(DEFAULT_TOML).unwrap();
    config.dispatch.retry.max_attempts = 2;
    config.dispatch.retry.initial_delay_ms = 1;
    config.policy.quiet_hours.enabled = false;
    config.policy.frequency_caps.clear();
    let cn = RegionCode(*b"CN");
    let csv = "contact_id,phone,sms_consent\nc1,+8613123079337,opt_in\nc2,+8613126859660,opt_in\n";
    // Nothing is written to the books' directory here.
    let books_dir = tempfile::tempdir().expect("dir");
    let snapshots = Arc::new(SnapshotStore::empty(cn));
    snapshots
        .replace(load_csv(csv.as_bytes(), chrono::Utc::now(), cn).unwrap().0)
        .unwrap();
    let provider = Arc::new(ThrottleThenAccept {
        calls: AtomicU32::new(0),
        throttles: 5,
    });
    let dispatcher = Dispatcher::start(DispatcherDeps {
        store: Arc::new(MemoryStore::new()),
        books: Arc::new(ContactBooks::with_default(books_dir.path(), snapshots).expect("books")),
        providers: vec![ProviderSlot {
            provider: provider.clone(),
            channel: Channel::Sms,
            currency: Currency::parse("CNY").unwrap(),
            limiter: PartsLimiter::new(1_000, 50),
            idempotent: false,
        }],
        router: herald::dispatch::Router::new(
            &config,
            &[(provider.name().to_string(), Channel::Sms)],
        ),
        channel_limits: Default::default(),
        tenant_limits: Default::default(),
        clock: Arc::new(SystemClock),
        config: config.dispatch.clone(),
        max_snapshot_age: chrono::Duration::hours(1),
        charging: false,
        send_log: Arc::new(herald::dispatch::send_log::LedgerOnlyLog::new(None)),
        observer: None,
        journal: None,
        state_health: Default::default(),
    });
    let mut audience = AudienceBuilder::new();
    audience.push("c1", None, None).unwrap();
    audience.push("c2", None, None).unwrap();
    let job = plan(
        &dispatcher,
        &config,
        PlanRequest {
            id: JobId::generate(),
            spec: JobSpec {
                campaign_id: "t".into(),
                channel: Channel::Sms,
                purpose: Purpose::Transactional,
                priority: 200,
                send_at: None,
                template_body: "hi".into(),
                phone_mismatch: PhoneMismatchPolicy::UseSnapshot,
                created_at: chrono::Utc::now(),
                variants: None,
                tenant: Default::default(),
                fields: None,
                wechat_account: None,
            },
            template: Arc::new(Template::compile("hi").unwrap()),
            job_variables: Default::default(),
            audience: audience.finish(),
            reserve_caps: true,
            shards: None,
        },
    )
    .unwrap();
    dispatcher.submit(job.clone());
    for _ in 0..200 {
        if job.status() == JobStatus::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(job.status(), JobStatus::Completed);
    assert_eq!(
        job.progress.counters.sent.load(Ordering::Relaxed),
        2,
        "five 429s in a row are not two failed attempts"
    );
    assert_eq!(job.progress.counters.failed.load(Ordering::Relaxed), 0);
    assert!(provider.calls.load(Ordering::SeqCst) >= 6);
    let held_to = dispatcher.providers()[0].limiter.current_rate();
    assert!(
        held_to < 500.0,
        "five throttles in a row slow the provider well below its 1000 parts/s: {held_to}"
    );
}
