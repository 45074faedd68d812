//! One behavioural suite for every state-store backend: the in-memory store, the durable
//! embedded store, Redis (the shared one, under a prefix of each test's own) and a 3-node
//! Redis Cluster started by the test must answer alike; the embedded one must also remember
//! across a reopen.

use std::sync::Arc;

use chrono::{Duration, Utc};
use herald::access::{Scope, Scopes, StoredKey, TenantId};
use herald::domain::{email_entry, push_entry, Channel, Consent, JobId, Purpose};
use herald::store::{
    CapRequest, CapRule, ConsentChange, EmbeddedStore, FactsQuery, IdempotencyClaim, MemoryStore,
    QuotaAnswer, QuotaReservation, StateStore, SuppressionKey,
};

fn rules() -> Vec<CapRule> {
    vec![CapRule {
        channel: Channel::Sms,
        purpose: Purpose::Marketing,
        max: 2,
        window_seconds: 86_400,
    }]
}

/// A request for contact `key` by message `holder`.
fn req(key: u64, holder: u64) -> CapRequest {
    CapRequest {
        contact_key: key,
        channel: Channel::Sms,
        purpose: Purpose::Marketing,
        holder,
    }
}

fn q(id: &str, phone: u64) -> FactsQuery<'_> {
    FactsQuery {
        contact_id: id,
        phone,
        address: None,
    }
}

fn opt_out(id: &str) -> ConsentChange {
    ConsentChange {
        contact_id: id.into(),
        channel: Channel::Sms,
        consent: Consent::OptOut,
        source: "inbound:sandbox".into(),
        at: Utc::now(),
    }
}

async fn suppressions(s: &dyn StateStore) {
    let added = s
        .add_suppressions(
            &dflt(),
            &[
                SuppressionKey::Phone(8613123079337),
                SuppressionKey::ContactId("c2".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(added, 2);
    assert_eq!(
        s.add_suppressions(&dflt(), &[SuppressionKey::Phone(8613123079337)])
            .await
            .unwrap(),
        0
    );
    let f = s
        .recipient_facts(
            &dflt(),
            Channel::Sms,
            &[q("c1", 8613123079337), q("c2", 1), q("c3", 2)],
        )
        .await
        .unwrap();
    assert_eq!(
        f.iter().map(|f| f.suppressed).collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert!(s
        .remove_suppression(&dflt(), &SuppressionKey::ContactId("c2".into()))
        .await
        .unwrap());
    assert!(!s
        .remove_suppression(&dflt(), &SuppressionKey::ContactId("c2".into()))
        .await
        .unwrap());
    let f = s
        .recipient_facts(&dflt(), Channel::Sms, &[q("c2", 1)])
        .await
        .unwrap();
    assert!(!f[0].suppressed);
}

/// Email addresses and push tokens are suppressed on their own: the entry stops sends to the
/// address whichever contact holds it, and leaves the contact's other channels alone.
async fn address_suppressions(s: &dyn StateStore) {
    let email = email_entry("li.wei@example.com");
    let token = push_entry(&"ab".repeat(32));
    assert_eq!(
        s.add_suppressions(
            &dflt(),
            &[
                SuppressionKey::Address(email.clone()),
                SuppressionKey::Address(token.clone()),
            ]
        )
        .await
        .unwrap(),
        2
    );
    fn with<'a>(contact_id: &'a str, address: Option<&'a str>) -> FactsQuery<'a> {
        FactsQuery {
            contact_id,
            phone: 0,
            address,
        }
    }
    let (email_ref, token_ref) = (email.as_str(), token.as_str());
    let f = s
        .recipient_facts(
            &dflt(),
            Channel::Email,
            &[
                with("c1", Some(email_ref)),
                with("c2", Some("email:other@example.com")),
                with("c3", None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        f.iter().map(|f| f.suppressed).collect::<Vec<_>>(),
        vec![true, false, false]
    );
    let f = s
        .recipient_facts(&dflt(), Channel::Push, &[with("c9", Some(token_ref))])
        .await
        .unwrap();
    assert!(f[0].suppressed);
    // The contact's phone is not suppressed by its email being so.
    let f = s
        .recipient_facts(&dflt(), Channel::Sms, &[q("c1", 8613123079337)])
        .await
        .unwrap();
    assert!(!f[0].suppressed);
    assert!(s
        .remove_suppression(&dflt(), &SuppressionKey::Address(email.clone()))
        .await
        .unwrap());
    let f = s
        .recipient_facts(&dflt(), Channel::Email, &[with("c1", Some(email_ref))])
        .await
        .unwrap();
    assert!(!f[0].suppressed);
}

async fn consent(s: &dyn StateStore) {
    let before = Utc::now() - Duration::seconds(1);
    s.record_consent(&dflt(), &[opt_out("c1")]).await.unwrap();
    let f = s
        .recipient_facts(&dflt(), Channel::Sms, &[q("c1", 1), q("c9", 2)])
        .await
        .unwrap();
    assert_eq!(f[0].consent_override, Some(Consent::OptOut));
    assert_eq!(f[1].consent_override, None);
    let f = s
        .recipient_facts(&dflt(), Channel::Email, &[q("c1", 1)])
        .await
        .unwrap();
    assert_eq!(f[0].consent_override, None, "consent is per channel");
    assert_eq!(s.consent_history(&dflt(), "c1").await.unwrap().len(), 1);
    let opt_in = ConsentChange {
        consent: Consent::OptIn,
        source: "api".into(),
        ..opt_out("c1")
    };
    s.record_consent(&dflt(), &[opt_out("c2"), opt_in.clone()])
        .await
        .unwrap();
    let f = s
        .recipient_facts(&dflt(), Channel::Sms, &[q("c1", 1), q("c2", 2)])
        .await
        .unwrap();
    assert_eq!(
        f[0].consent_override,
        Some(Consent::OptIn),
        "the latest wins"
    );
    assert_eq!(f[1].consent_override, Some(Consent::OptOut));
    let history = s.consent_history(&dflt(), "c1").await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.consent).collect::<Vec<_>>(),
        [Consent::OptOut, Consent::OptIn],
        "the audit trail keeps every change, oldest first"
    );
    assert_eq!(history[1], opt_in);
    assert_eq!(
        s.consent_changes_since(&dflt(), before)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(s
        .consent_changes_since(&dflt(), Utc::now() + Duration::seconds(60))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .consent_history(&dflt(), "nobody")
        .await
        .unwrap()
        .is_empty());
}

async fn caps(s: &dyn StateStore) {
    let t = Utc::now();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(1, 1), req(1, 2), req(1, 3)], t)
            .await
            .unwrap(),
        vec![true, true, false]
    );
    s.release_caps(&[req(1, 1)], t).await.unwrap();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(1, 4)], t).await.unwrap(),
        vec![true]
    );
    assert_eq!(
        s.reserve_caps(&rules(), &[req(2, 1)], t).await.unwrap(),
        vec![true],
        "caps are per contact"
    );
    let tx = CapRequest {
        purpose: Purpose::Transactional,
        ..req(1, 5)
    };
    assert_eq!(
        s.reserve_caps(&rules(), &[tx, tx, tx], t).await.unwrap(),
        vec![true; 3],
        "no rule, no cap"
    );
    let later = t + Duration::seconds(86_401);
    assert_eq!(
        s.reserve_caps(&rules(), &[req(1, 6)], later).await.unwrap(),
        vec![true],
        "the window moved on"
    );
}

/// Rebuilding reservations from sends: each takes its slot at its own time (no cap checked),
/// once per holder, and ones older than the window are not brought back.
async fn restored_caps(s: &dyn StateStore) {
    let now = Utc::now();
    let sent = [
        (req(7, 1), now - Duration::hours(2)),
        (req(7, 2), now - Duration::hours(1)),
        (req(7, 2), now - Duration::hours(1)),
        (req(8, 1), now - Duration::hours(30)),
    ];
    s.restore_caps(&rules(), &sent, now).await.unwrap();
    s.restore_caps(&rules(), &sent, now).await.unwrap();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(7, 3), req(7, 2)], now)
            .await
            .unwrap(),
        vec![false, true],
        "two restored sends fill the cap; a restored holder is granted again"
    );
    assert_eq!(
        s.reserve_caps(
            &rules(),
            &[req(7, 4)],
            now + Duration::hours(22) + Duration::minutes(1)
        )
        .await
        .unwrap(),
        vec![true],
        "restored reservations keep their own times: the first leaves the window first"
    );
    assert_eq!(
        s.reserve_caps(&rules(), &[req(8, 2), req(8, 3)], now)
            .await
            .unwrap(),
        vec![true, true],
        "a send older than the window is not restored"
    );
}

async fn idempotent_reservations(s: &dyn StateStore) {
    let t = Utc::now();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 10)], t).await.unwrap(),
        vec![true]
    );
    // A retry of the same message (after a crash between reserving and sending) is granted
    // without a second slot, in the same batch or a later call.
    let retry = t + Duration::seconds(30);
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 10), req(3, 10)], retry)
            .await
            .unwrap(),
        vec![true, true]
    );
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 11), req(3, 12)], retry)
            .await
            .unwrap(),
        vec![true, false],
        "the retries took one slot in all"
    );
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 10)], retry)
            .await
            .unwrap(),
        vec![true],
        "a holder keeps its slot while the cap is full"
    );
    // Releasing a holder frees exactly its slot, whenever it was reserved.
    s.release_caps(&[req(3, 10)], retry).await.unwrap();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 13), req(3, 14)], retry)
            .await
            .unwrap(),
        vec![true, false]
    );
    // A day after t, the slots taken at t+30s still count and still belong to their holders.
    let next_day = t + Duration::seconds(86_401);
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 11), req(3, 15)], next_day)
            .await
            .unwrap(),
        vec![true, false]
    );
    // Past their window they count no more: asking again takes a fresh slot.
    let later = t + Duration::seconds(30 + 86_401);
    assert_eq!(
        s.reserve_caps(&rules(), &[req(3, 11), req(3, 15), req(3, 16)], later)
            .await
            .unwrap(),
        vec![true, true, false]
    );
}

async fn concurrent_caps(s: Arc<dyn StateStore>) {
    let t = Utc::now();
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let s = s.clone();
            let batch: Vec<CapRequest> = (0..4).map(|i| req(7, task * 10 + i)).collect();
            tokio::spawn(async move { s.reserve_caps(&rules(), &batch, t).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap().into_iter().filter(|g| *g).count();
    }
    assert_eq!(granted, 2, "racing callers never exceed a cap");
}

async fn idempotency(s: &dyn StateStore) {
    let j = JobId::generate();
    assert_eq!(
        s.claim_idempotency_key("k", [1; 32], &j).await.unwrap(),
        IdempotencyClaim::New
    );
    assert_eq!(
        s.claim_idempotency_key("k", [1; 32], &JobId::generate())
            .await
            .unwrap(),
        IdempotencyClaim::Existing(j.clone())
    );
    assert_eq!(
        s.claim_idempotency_key("k", [2; 32], &JobId::generate())
            .await
            .unwrap(),
        IdempotencyClaim::Conflict(j)
    );
}

async fn callback_uses(s: &dyn StateStore) {
    let now = Utc::now();
    let window = now + Duration::seconds(300);
    let (a, b) = ([0xa1; 32], [0xb2; 32]);
    assert!(s.first_callback_use(a, window, now).await.unwrap());
    assert!(
        !s.first_callback_use(a, window, now).await.unwrap(),
        "a replay"
    );
    assert!(s.first_callback_use(b, window, now).await.unwrap());
    // A request that could not be applied is forgotten, so its retry applies.
    s.forget_callback_use(b).await.unwrap();
    assert!(s.first_callback_use(b, window, now).await.unwrap());
    assert!(!s.first_callback_use(b, window, now).await.unwrap());
    // A signature whose window has passed no longer counts, and pruning keeps the others.
    let short = [0xc3; 32];
    let started = Utc::now();
    assert!(s
        .first_callback_use(short, started + Duration::seconds(1), started)
        .await
        .unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let later = Utc::now();
    s.prune_callback_uses(later).await.unwrap();
    assert!(s
        .first_callback_use(short, later + Duration::seconds(1), later)
        .await
        .unwrap());
    assert!(!s.first_callback_use(a, window, later).await.unwrap());
    // Racing callers with one signature: exactly one applies it.
    let racing = [0xd4; 32];
    let answers =
        futures::future::join_all((0..8).map(|_| s.first_callback_use(racing, window, now))).await;
    assert_eq!(
        answers.into_iter().filter(|a| *a.as_ref().unwrap()).count(),
        1
    );
}

async fn api_keys(s: &dyn StateStore) {
    let (mut key, token) = StoredKey::generate(
        TenantId::parse("acme").unwrap(),
        Scopes::of([Scope::JobsRead, Scope::LedgerRead]),
        "finance".into(),
        Utc::now(),
    );
    assert_eq!(s.api_key(&key.id).await.unwrap(), None);
    s.save_api_key(&key).await.unwrap();
    let stored = s.api_key(&key.id).await.unwrap().expect("saved");
    assert_eq!(stored, key);
    assert!(stored.accepts(&token));
    let (other, _) =
        StoredKey::generate(TenantId::default(), Scopes::ADMIN, "ops".into(), Utc::now());
    s.save_api_key(&other).await.unwrap();
    let mut ids: Vec<String> = s
        .api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    ids.sort();
    let mut expected = vec![key.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    // A revocation replaces the record and is what every later lookup sees.
    key.revoked_at = Some(Utc::now());
    s.save_api_key(&key).await.unwrap();
    let stored = s.api_key(&key.id).await.unwrap().expect("still listed");
    assert!(stored.revoked_at.is_some());
    assert!(!stored.accepts(&token));
}

/// A reservation of `recipients` for `job` against a limit of 100 in December 2026.
fn quota<'a>(tenant: &'a TenantId, job: &'a JobId, recipients: u64) -> QuotaReservation<'a> {
    QuotaReservation {
        tenant,
        month: 202612,
        job,
        recipients,
        limit: 100,
    }
}

async fn quotas(s: &dyn StateStore) {
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
    assert_eq!(s.quota_used(&acme, 202612).await.unwrap(), 0);
    assert_eq!(
        s.reserve_quota(&quota(&acme, &a, 60)).await.unwrap(),
        QuotaAnswer::Reserved { used: 60 }
    );
    // The same job again is counted once, whatever it asks.
    assert_eq!(
        s.reserve_quota(&quota(&acme, &a, 60)).await.unwrap(),
        QuotaAnswer::Reserved { used: 60 }
    );
    assert_eq!(
        s.reserve_quota(&quota(&acme, &b, 41)).await.unwrap(),
        QuotaAnswer::Exceeded { used: 60 },
        "41 more would pass 100"
    );
    assert_eq!(
        s.reserve_quota(&quota(&acme, &b, 40)).await.unwrap(),
        QuotaAnswer::Reserved { used: 100 },
        "exactly the limit fits"
    );
    // Another tenant, and another month, count apart.
    assert_eq!(
        s.reserve_quota(&quota(&globex, &c, 100)).await.unwrap(),
        QuotaAnswer::Reserved { used: 100 }
    );
    let next_month = QuotaReservation {
        month: 202701,
        ..quota(&acme, &c, 100)
    };
    assert_eq!(
        s.reserve_quota(&next_month).await.unwrap(),
        QuotaAnswer::Reserved { used: 100 }
    );
    // Giving back frees the job's recipients, once.
    s.release_quota(&acme, 202612, &a).await.unwrap();
    s.release_quota(&acme, 202612, &a).await.unwrap();
    assert_eq!(s.quota_used(&acme, 202612).await.unwrap(), 40);
    assert_eq!(s.quota_used(&globex, 202612).await.unwrap(), 100);
    assert_eq!(s.quota_used(&acme, 202701).await.unwrap(), 100);
}

/// Ten jobs of 20 race for a quota of 100: exactly five are counted.
async fn concurrent_quotas(s: Arc<dyn StateStore>) {
    let tenant = TenantId::parse("race").unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (s, tenant) = (s.clone(), tenant.clone());
            tokio::spawn(async move {
                let job = JobId::generate();
                s.reserve_quota(&quota(&tenant, &job, 20)).await.unwrap()
            })
        })
        .collect();
    let mut counted = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), QuotaAnswer::Reserved { .. }) {
            counted += 1;
        }
    }
    assert_eq!(counted, 5);
    assert_eq!(s.quota_used(&tenant, 202612).await.unwrap(), 100);
}

/// Two tenants' suppressions, consent and cap counters are apart, even for equal contact ids
/// and numbers; the default tenant's are the installation's as before.
async fn tenants_apart(s: &dyn StateStore) {
    let (default, acme) = (dflt(), TenantId::parse("acme").unwrap());
    let phone = 8613123079337;
    assert_eq!(
        s.add_suppressions(&acme, &[SuppressionKey::Phone(phone)])
            .await
            .unwrap(),
        1
    );
    s.add_suppressions(&default, &[SuppressionKey::ContactId("c1".into())])
        .await
        .unwrap();
    let email = email_entry("a@example.com");
    s.add_suppressions(&acme, &[SuppressionKey::Address(email.clone())])
        .await
        .unwrap();
    let facts = |t: TenantId| {
        let email = email.clone();
        async move {
            let queries = [
                q("c1", phone),
                q("c2", 0),
                FactsQuery {
                    contact_id: "c3",
                    phone: 0,
                    address: Some(&email),
                },
            ];
            s.recipient_facts(&t, Channel::Sms, &queries)
                .await
                .unwrap()
                .iter()
                .map(|f| (f.suppressed, f.consent_override))
                .collect::<Vec<_>>()
        }
    };
    s.record_consent(&acme, &[opt_out("c2")]).await.unwrap();
    assert_eq!(
        facts(default.clone()).await,
        [(true, None), (false, None), (false, None)],
        "the default tenant: its own contact c1 only"
    );
    assert_eq!(
        facts(acme.clone()).await,
        [(true, None), (false, Some(Consent::OptOut)), (true, None)],
        "acme: its number, its opt-out and its address"
    );
    let other = TenantId::parse("globex").unwrap();
    assert_eq!(
        facts(other.clone()).await,
        [(false, None), (false, None), (false, None)]
    );
    // Histories and reports read the tenant's own changes, under the ids it gave.
    let history = s.consent_history(&acme, "c2").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].contact_id, "c2");
    assert!(s.consent_history(&default, "c2").await.unwrap().is_empty());
    let since = Utc::now() - Duration::seconds(60);
    assert_eq!(
        s.consent_changes_since(&acme, since).await.unwrap().len(),
        1
    );
    assert!(s
        .consent_changes_since(&default, since)
        .await
        .unwrap()
        .is_empty());
    // Removing one tenant's entry leaves another's.
    assert!(!s
        .remove_suppression(&default, &SuppressionKey::Phone(phone))
        .await
        .unwrap());
    assert!(s
        .remove_suppression(&acme, &SuppressionKey::Phone(phone))
        .await
        .unwrap());
    assert!(!s
        .remove_suppression(&acme, &SuppressionKey::ContactId("c1".into()))
        .await
        .unwrap());
    // Cap counters: the same contact id in two tenants does not share a cap.
    let seed = 7;
    let d = herald::policy::frequency_cap::request(
        &default,
        seed,
        "c1",
        Channel::Sms,
        Purpose::Marketing,
    );
    let a =
        herald::policy::frequency_cap::request(&acme, seed, "c1", Channel::Sms, Purpose::Marketing);
    assert_ne!(d.contact_key, a.contact_key);
    let now = Utc::now();
    for holder in [1, 2] {
        let r = CapRequest { holder, ..d };
        assert_eq!(s.reserve_caps(&rules(), &[r], now).await.unwrap(), [true]);
    }
    let full = CapRequest { holder: 3, ..d };
    assert_eq!(
        s.reserve_caps(&rules(), &[full], now).await.unwrap(),
        [false]
    );
    let theirs = CapRequest { holder: 4, ..a };
    assert_eq!(
        s.reserve_caps(&rules(), &[theirs], now).await.unwrap(),
        [true],
        "acme's c1 has a counter of its own"
    );
}

fn embedded(dir: &tempfile::TempDir) -> Arc<dyn StateStore> {
    let db = redb::Database::create(dir.path().join("herald.redb")).unwrap();
    Arc::new(EmbeddedStore::open(Arc::new(db)).unwrap())
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn suppressions_by_phone_and_contact() {
                let (_dir, s) = $make;
                suppressions(&*s).await;
            }

            #[tokio::test]
            async fn suppressions_consent_and_caps_are_each_tenants_own() {
                let (_dir, s) = $make;
                tenants_apart(&*s).await;
            }

            #[tokio::test]
            async fn suppressions_by_email_and_push_token() {
                let (_dir, s) = $make;
                address_suppressions(&*s).await;
            }

            #[tokio::test]
            async fn consent_overrides_and_history() {
                let (_dir, s) = $make;
                consent(&*s).await;
            }

            #[tokio::test]
            async fn caps_reserve_release_and_windows() {
                let (_dir, s) = $make;
                caps(&*s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn caps_hold_under_concurrency() {
                let (_dir, s) = $make;
                concurrent_caps(s).await;
            }

            #[tokio::test]
            async fn cap_reservations_are_restored_at_their_times() {
                let (_dir, s) = $make;
                restored_caps(&*s).await;
            }

            #[tokio::test]
            async fn cap_reservations_are_idempotent_per_holder() {
                let (_dir, s) = $make;
                idempotent_reservations(&*s).await;
            }

            #[tokio::test]
            async fn idempotency_keys() {
                let (_dir, s) = $make;
                idempotency(&*s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn callback_signatures_are_seen_once_per_window() {
                let (_dir, s) = $make;
                callback_uses(&*s).await;
            }

            #[tokio::test]
            async fn api_keys_are_saved_listed_and_revoked() {
                let (_dir, s) = $make;
                api_keys(&*s).await;
            }

            #[tokio::test]
            async fn quotas_count_each_job_once_per_tenant_and_month() {
                let (_dir, s) = $make;
                quotas(&*s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn quotas_hold_under_concurrency() {
                let (_dir, s) = $make;
                concurrent_quotas(s).await;
            }
        }
    };
}

suite!(
    memory,
    (
        tempfile::tempdir().unwrap(),
        Arc::new(MemoryStore::new()) as Arc<dyn StateStore>
    )
);
suite!(embedded_store, {
    let dir = tempfile::tempdir().unwrap();
    let s = embedded(&dir);
    (dir, s)
});
suite!(redis, {
    let (cleanup, s) = herald_testkit::redis::shared_store().await;
    (cleanup, s as Arc<dyn StateStore>)
});

/// The same suite on a Redis Cluster of three private nodes, one prefix per behaviour. One
/// test runs it all, so the cluster starts once and is stopped at the end, even on a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_suite_runs_on_a_redis_cluster() {
    let cluster = herald_testkit::redis::RedisCluster::start();
    let store = || async {
        let (cleanup, s) = cluster.store().await;
        (cleanup, s as Arc<dyn StateStore>)
    };
    let (_c, s) = store().await;
    suppressions(&*s).await;
    let (_c, s) = store().await;
    address_suppressions(&*s).await;
    let (_c, s) = store().await;
    consent(&*s).await;
    let (_c, s) = store().await;
    tenants_apart(&*s).await;
    let (_c, s) = store().await;
    caps(&*s).await;
    let (_c, s) = store().await;
    concurrent_caps(s).await;
    let (_c, s) = store().await;
    idempotent_reservations(&*s).await;
    let (_c, s) = store().await;
    restored_caps(&*s).await;
    let (_c, s) = store().await;
    idempotency(&*s).await;
    let (_c, s) = store().await;
    callback_uses(&*s).await;
    let (_c, s) = store().await;
    api_keys(&*s).await;
    let (_c, s) = store().await;
    quotas(&*s).await;
    let (_c, s) = store().await;
    concurrent_quotas(s).await;
    // Caps spread over the nodes, and a batch of many contacts is answered in full, even
    // with a second instance racing for the same contacts.
    let (cleanup, s) = cluster.store().await;
    let other = cluster.store_at(&cleanup.prefix).await;
    let many: Vec<CapRequest> = (0..200)
        .flat_map(|c| [req(c, 1), req(c, 2), req(c, 3)])
        .collect();
    let theirs: Vec<CapRequest> = (0..200).map(|c| req(c, 4)).collect();
    let (now, rules) = (Utc::now(), rules());
    let (granted, their_grants) = tokio::join!(
        s.reserve_caps(&rules, &many, now),
        other.reserve_caps(&rules, &theirs, now)
    );
    let (granted, their_grants) = (granted.unwrap(), their_grants.unwrap());
    for c in 0..200 {
        let mine = granted[c * 3..c * 3 + 3].iter().filter(|g| **g).count();
        assert_eq!(
            mine + usize::from(their_grants[c]),
            2,
            "contact {c} got exactly its cap across both instances"
        );
    }
    // For the record (read with --nocapture): a 512-recipient batch on the cluster.
    let ids: Vec<String> = (0..512).map(|i| format!("c{i}")).collect();
    let queries: Vec<FactsQuery<'_>> = ids.iter().map(|id| q(id, 1)).collect();
    let started = std::time::Instant::now();
    s.recipient_facts(&dflt(), Channel::Sms, &queries)
        .await
        .unwrap();
    let facts = started.elapsed();
    let batch: Vec<CapRequest> = (1_000..1_512).map(|c| req(c, 1)).collect();
    let started = std::time::Instant::now();
    s.reserve_caps(&rules, &batch, now).await.unwrap();
    let first = started.elapsed();
    let batch: Vec<CapRequest> = (1_000..1_512).map(|c| req(c, 2)).collect();
    let started = std::time::Instant::now();
    s.reserve_caps(&rules, &batch, now).await.unwrap();
    eprintln!(
        "cluster, 512 recipients: recipient_facts {facts:?}, reserve_caps {:?} \
         (first, scripts loading: {first:?})",
        started.elapsed()
    );
    s.release_caps(&batch, now).await.unwrap();
    let batch: Vec<CapRequest> = (1_000..1_512).map(|c| req(c, 1)).collect();
    s.release_caps(&batch, now).await.unwrap();
    let per_node = cleanup.count_per_node();
    // Besides the data-set marker every store keeps (one key), one cap set per contact.
    assert_eq!(
        per_node.iter().sum::<usize>(),
        200 + 1,
        "one cap set per contact"
    );
    assert!(
        per_node.iter().all(|n| *n > 0),
        "contacts spread over every node: {per_node:?}"
    );
    s.release_caps(&many, Utc::now()).await.unwrap();
}

#[tokio::test]
async fn the_embedded_store_remembers_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let j = JobId::generate();
    let t = Utc::now();
    {
        let s = embedded(&dir);
        s.add_suppressions(
            &dflt(),
            &[
                SuppressionKey::Phone(42),
                SuppressionKey::ContactId("gone".into()),
            ],
        )
        .await
        .unwrap();
        s.record_consent(&dflt(), &[opt_out("c1")]).await.unwrap();
        // Another tenant's entries, with the same number and contact id.
        let acme = TenantId::parse("acme").unwrap();
        s.add_suppressions(&acme, &[SuppressionKey::Phone(43)])
            .await
            .unwrap();
        s.record_consent(&acme, &[opt_out("c7")]).await.unwrap();
        assert_eq!(
            s.reserve_caps(&rules(), &[req(5, 1), req(5, 2)], t)
                .await
                .unwrap(),
            vec![true, true]
        );
        s.claim_idempotency_key("promo-1", [9; 32], &j)
            .await
            .unwrap();
        assert!(s
            .first_callback_use([5; 32], t + Duration::seconds(300), t)
            .await
            .unwrap());
        let acme = TenantId::parse("acme").unwrap();
        s.reserve_quota(&quota(&acme, &j, 70)).await.unwrap();
    }
    let s = embedded(&dir);
    let acme = TenantId::parse("acme").unwrap();
    assert_eq!(s.quota_used(&acme, 202612).await.unwrap(), 70);
    assert_eq!(
        s.reserve_quota(&quota(&acme, &JobId::generate(), 31))
            .await
            .unwrap(),
        QuotaAnswer::Exceeded { used: 70 },
        "quota use survives a restart"
    );
    let f = s
        .recipient_facts(
            &dflt(),
            Channel::Sms,
            &[q("x", 42), q("gone", 1), q("c1", 2)],
        )
        .await
        .unwrap();
    assert!(f[0].suppressed && f[1].suppressed);
    assert_eq!(f[2].consent_override, Some(Consent::OptOut));
    assert_eq!(s.consent_history(&dflt(), "c1").await.unwrap().len(), 1);
    let acme = TenantId::parse("acme").unwrap();
    let f = s
        .recipient_facts(&acme, Channel::Sms, &[q("c7", 43), q("c1", 42)])
        .await
        .unwrap();
    assert!(
        f[0].suppressed && !f[1].suppressed,
        "each tenant's own, after a reopen"
    );
    assert_eq!(f[0].consent_override, Some(Consent::OptOut));
    assert_eq!(f[1].consent_override, None);
    let theirs = s.consent_history(&acme, "c7").await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].contact_id, "c7");
    assert!(s.consent_history(&dflt(), "c7").await.unwrap().is_empty());
    assert_eq!(
        s.reserve_caps(&rules(), &[req(5, 3)], t).await.unwrap(),
        vec![false],
        "caps survive a restart"
    );
    assert_eq!(
        s.reserve_caps(&rules(), &[req(5, 2)], t).await.unwrap(),
        vec![true],
        "and so do their holders"
    );
    assert_eq!(
        s.claim_idempotency_key("promo-1", [9; 32], &JobId::generate())
            .await
            .unwrap(),
        IdempotencyClaim::Existing(j.clone())
    );
    assert!(
        !s.first_callback_use([5; 32], t + Duration::seconds(300), t)
            .await
            .unwrap(),
        "a callback applied before the restart is a replay after it"
    );
    // New history entries continue the sequence rather than overwrite old ones.
    s.record_consent(&dflt(), &[opt_out("c1")]).await.unwrap();
    drop(s);
    let s = embedded(&dir);
    assert_eq!(s.consent_history(&dflt(), "c1").await.unwrap().len(), 2);
}

/// The default tenant, whose entries are stored as before tenants had their own.
fn dflt() -> herald::access::TenantId {
    herald::access::TenantId::default_tenant()
}

/// The default tenant reads the Redis entries written before tenants had their own contacts:
/// the same keys, no migration; another tenant does not see them.
#[tokio::test]
async fn the_default_tenant_reads_redis_entries_written_before_tenants() {
    let (cleanup, s) = herald_testkit::redis::shared_store().await;
    let p = cleanup.prefix.clone();
    let client = ::redis::Client::open(herald_testkit::redis::SHARED_URL).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let change = serde_json::to_string(&opt_out("c1")).unwrap();
    let mut pipe = ::redis::pipe();
    pipe.cmd("SADD")
        .arg(format!("{{{p}}}:v1:supp:phone"))
        .arg(8613123079337u64)
        .ignore();
    pipe.cmd("SADD")
        .arg(format!("{{{p}}}:v1:supp:contact"))
        .arg("c9")
        .ignore();
    pipe.cmd("HSET")
        .arg(format!("{{{p}}}:v1:consent:sms"))
        .arg("c1")
        .arg(2)
        .ignore();
    pipe.cmd("RPUSH")
        .arg(format!("{{{p}}}:v1:consent-log:c1"))
        .arg(&change)
        .ignore();
    let () = pipe.query_async(&mut con).await.unwrap();
    let queries = [q("c1", 8613123079337), q("c9", 0)];
    let facts = s
        .recipient_facts(&dflt(), Channel::Sms, &queries)
        .await
        .unwrap();
    assert!(facts[0].suppressed && facts[1].suppressed);
    assert_eq!(facts[0].consent_override, Some(Consent::OptOut));
    assert_eq!(s.consent_history(&dflt(), "c1").await.unwrap().len(), 1);
    let acme = TenantId::parse("acme").unwrap();
    let facts = s
        .recipient_facts(&acme, Channel::Sms, &queries)
        .await
        .unwrap();
    assert!(!facts[0].suppressed && !facts[1].suppressed);
    assert_eq!(facts[0].consent_override, None);
}
