//! The dispatcher over a state store that stops answering, without Redis: nothing is sent
//! or rejected while it is down, every job says why it waits, and when the store answers
//! again every recipient is sent exactly once, jobs queued behind others included.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald::access::{StoredKey, TenantId};
use herald::clock::SystemClock;
use herald::config::{Config, DEFAULT_TOML};
use herald::dispatch::planner::{plan, PlanRequest};
use herald::dispatch::{
    AudienceBuilder, Dispatcher, DispatcherDeps, Job, JobSpec, PartsLimiter, ProviderSlot,
};
use herald::domain::{Channel, Currency, JobId, JobStatus, Purpose};
use herald::phone::RegionCode;
use herald::policy::PhoneMismatchPolicy;
use herald::provider::{OutboundMessage, Provider, SendOutcome};
use herald::snapshot::{load_csv, ContactBooks, SnapshotStore};
use herald::store::{
    CapRequest, CapRule, ConsentChange, FactsQuery, IdempotencyClaim, MemoryStore, RecipientFacts,
    StateHealth, StateStore, StoreError, SuppressionKey,
};
use herald::template::Template;
use parking_lot::Mutex;

/// A memory store that answers "unavailable" to every call while `down` is set.
#[derive(Default)]
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl StateStore for Flaky {
    async fn recipient_facts(
        &self,
        tenant: &TenantId,
        channel: Channel,
        queries: &[FactsQuery<'_>],
    ) -> Result<Vec<RecipientFacts>, StoreError> {
        self.check()?;
        self.inner.recipient_facts(tenant, channel, queries).await
    }
    async fn add_suppressions(
        &self,
        tenant: &TenantId,
        keys: &[SuppressionKey],
    ) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.add_suppressions(tenant, keys).await
    }
    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        key: &SuppressionKey,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.remove_suppression(tenant, key).await
    }
    async fn record_consent(
        &self,
        tenant: &TenantId,
        changes: &[ConsentChange],
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_consent(tenant, changes).await
    }
    async fn consent_history(
        &self,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        self.check()?;
        self.inner.consent_history(tenant, contact_id).await
    }
    async fn consent_changes_since(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        self.check()?;
        self.inner.consent_changes_since(tenant, since).await
    }
    async fn reserve_caps(
        &self,
        rules: &[CapRule],
        requests: &[CapRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        self.inner.reserve_caps(rules, requests, now).await
    }
    async fn restore_caps(
        &self,
        rules: &[CapRule],
        reservations: &[(CapRequest, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.restore_caps(rules, reservations, now).await
    }
    async fn release_caps(
        &self,
        requests: &[CapRequest],
        reserved_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_caps(requests, reserved_at).await
    }
    async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        job: &JobId,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.check()?;
        self.inner
            .claim_idempotency_key(key, fingerprint, job)
            .await
    }
    async fn first_callback_use(
        &self,
        signature: [u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.first_callback_use(signature, expires, now).await
    }
    async fn forget_callback_use(&self, signature: [u8; 32]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.forget_callback_use(signature).await
    }
    async fn prune_callback_uses(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.prune_callback_uses(now).await
    }
    async fn save_api_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_api_key(key).await
    }
    async fn api_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.check()?;
        self.inner.api_key(id).await
    }
    async fn api_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.check()?;
        self.inner.api_keys().await
    }
    async fn reserve_quota(
        &self,
        r: &herald::store::QuotaReservation<'_>,
    ) -> Result<herald::store::QuotaAnswer, StoreError> {
        self.check()?;
        self.inner.reserve_quota(r).await
    }
    async fn release_quota(
        &self,
        tenant: &herald::access::TenantId,
        month: u32,
        job: &JobId,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_quota(tenant, month, job).await
    }
    async fn quota_used(
        &self,
        tenant: &herald::access::TenantId,
        month: u32,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.quota_used(tenant, month).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}

/// Accepts everything and counts each message id it was handed.
#[derive(Default)]
struct Counting {
    sends: Mutex<HashMap<String, u32>>,
}

impl Counting {
    fn total(&self) -> u32 {
        self.sends.lock().values().sum()
    }
}

#[async_trait]
impl Provider for Counting {
    fn name(&self) -> &str {
        "sandbox"
    }

    async fn send_batch(&self, messages: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut sends = self.sends.lock();
        messages
            .iter()
            .map(|m| {
                *sends.entry(m.id.to_string()).or_default() += 1;
                SendOutcome::Accepted {
                    provider_message_id: m.id.to_string(),
                }
            })
            .collect()
    }
}

struct Setup {
    config: Config,
    store: Arc<Flaky>,
    health: Arc<StateHealth>,
    provider: Arc<Counting>,
    dispatcher: Dispatcher,
}

fn setup(contacts: usize, rate: u32) -> Setup {
    let mut config: Config = toml::from_str(DEFAULT_TOML).expect("config");
    config.policy.quiet_hours.enabled = false;
    let cn = RegionCode(*b"CN");
    let csv = herald_testkit::contacts_csv(contacts);
    // Nothing is written to the books' directory here.
    let books_dir = tempfile::tempdir().expect("dir");
    let snapshots = Arc::new(SnapshotStore::empty(cn));
    snapshots
        .replace(load_csv(csv.as_bytes(), Utc::now(), cn).expect("csv").0)
        .expect("snapshot");
    let store = Arc::new(Flaky::default());
    let health = Arc::new(StateHealth::new());
    let provider = Arc::new(Counting::default());
    let dispatcher = Dispatcher::start(DispatcherDeps {
        store: store.clone(),
        books: Arc::new(ContactBooks::with_default(books_dir.path(), snapshots).expect("books")),
        providers: vec![ProviderSlot {
            provider: provider.clone(),
            channel: Channel::Sms,
            currency: Currency::parse("CNY").expect("currency"),
            limiter: PartsLimiter::new(rate, 50),
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
        state_health: health.clone(),
    });
    Setup {
        config,
        store,
        health,
        provider,
        dispatcher,
    }
}

/// Submits a marketing job (frequency caps apply) to contacts `range`.
fn submit(s: &Setup, priority: u8, range: std::ops::Range<usize>) -> Arc<Job> {
    let mut audience = AudienceBuilder::new();
    for i in range {
        audience.push(&format!("c{i}"), None, None).expect("push");
    }
    let job = plan(
        &s.dispatcher,
        &s.config,
        PlanRequest {
            id: JobId::generate(),
            spec: JobSpec {
                campaign_id: format!("p{priority}"),
                channel: Channel::Sms,
                purpose: Purpose::Marketing,
                priority,
                send_at: None,
                template_body: "hi".into(),
                phone_mismatch: PhoneMismatchPolicy::UseSnapshot,
                created_at: Utc::now(),
                variants: None,
                tenant: Default::default(),
                fields: None,
                wechat_account: None,
            },
            template: Arc::new(Template::compile("hi").expect("template")),
            job_variables: Default::default(),
            audience: audience.finish(),
            reserve_caps: true,
            shards: None,
        },
    )
    .expect("plan");
    s.dispatcher.submit(job.clone());
    job
}

async fn until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < timeout, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sent(job: &Job) -> u64 {
    job.progress.counters.sent.load(Ordering::Relaxed)
}

fn rejected(job: &Job) -> u64 {
    job.progress
        .counters
        .snapshot(job.currency, 0)
        .rejected
        .values()
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_mid_job_pauses_it_and_nothing_is_lost_or_sent_twice() {
    let s = setup(1_000, 1_000);
    let job = submit(&s, 100, 0..1_000);
    until("some sends", Duration::from_secs(5), || sent(&job) >= 200).await;

    // The store stops answering; nobody tells the health: the workers find out.
    s.store.down.store(true, Ordering::SeqCst);
    until("the outage is noticed", Duration::from_secs(2), || {
        !s.health.is_up()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = s.provider.total();
    assert_eq!(job.state().blocked, Some("state_unavailable"));
    assert_eq!(job.status(), JobStatus::Running);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(s.provider.total(), held, "no send without a cap decision");
    assert_eq!(rejected(&job), 0, "nobody is rejected for an outage");
    assert_eq!(job.progress.counters.failed.load(Ordering::Relaxed), 0);

    // It answers again; the probe (here, the test) says so.
    s.store.down.store(false, Ordering::SeqCst);
    s.health.answered();
    until("the job completes", Duration::from_secs(10), || {
        job.status() == JobStatus::Completed
    })
    .await;
    assert_eq!(sent(&job), 1_000);
    assert_eq!(rejected(&job), 0);
    assert_eq!(job.state().blocked, None);
    let sends = s.provider.sends.lock();
    assert_eq!(sends.len(), 1_000, "every recipient was sent");
    assert!(sends.values().all(|&n| n == 1), "and none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiting_job_reads_why_and_stops_reading_it_when_the_store_is_back() {
    let s = setup(1_010, 500);
    let e = StoreError::Unavailable("down before the jobs came".into());
    s.store.down.store(true, Ordering::SeqCst);
    s.health.failed(&e);
    let urgent = submit(&s, 200, 0..1_000);
    let behind = submit(&s, 10, 1_000..1_010);
    until(
        "both jobs read why they wait",
        Duration::from_secs(2),
        || {
            urgent.state().blocked == Some("state_unavailable")
                && behind.state().blocked == Some("state_unavailable")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.provider.total(), 0);
    assert_eq!(rejected(&urgent) + rejected(&behind), 0);

    s.store.down.store(false, Ordering::SeqCst);
    s.health.answered();
    until("the urgent job sends", Duration::from_secs(2), || {
        sent(&urgent) > 0
    })
    .await;
    // The job behind it is not leased yet (the urgent one has work), yet it no longer reads
    // as held by the store.
    assert_eq!(sent(&behind), 0);
    assert_eq!(behind.state().blocked, None);
    assert_eq!(urgent.state().blocked, None);
    until("both complete", Duration::from_secs(10), || {
        urgent.status() == JobStatus::Completed && behind.status() == JobStatus::Completed
    })
    .await;
    assert_eq!(sent(&urgent) + sent(&behind), 1_010);
    assert!(s.provider.sends.lock().values().all(|&n| n == 1));
}
