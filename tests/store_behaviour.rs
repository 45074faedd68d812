//! One behavioural suite for every state-store backend: the in-memory store and the durable
//! embedded store must answer alike; the embedded one must also remember across a reopen.

use std::sync::Arc;

use chrono::{Duration, Utc};
use herald::domain::{Channel, Consent, JobId, Purpose};
use herald::store::{
    CapRequest, CapRule, ConsentChange, EmbeddedStore, FactsQuery, IdempotencyClaim, MemoryStore,
    StateStore, SuppressionKey,
};

fn rules() -> Vec<CapRule> {
    vec![CapRule {
        channel: Channel::Sms,
        purpose: Purpose::Marketing,
        max: 2,
        window_seconds: 86_400,
    }]
}

fn req(key: u64) -> CapRequest {
    CapRequest {
        contact_key: key,
        channel: Channel::Sms,
        purpose: Purpose::Marketing,
    }
}

fn q(id: &str, phone: u64) -> FactsQuery<'_> {
    FactsQuery {
        contact_id: id,
        phone,
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
        .add_suppressions(&[
            SuppressionKey::Phone(8613123079337),
            SuppressionKey::ContactId("c2".into()),
        ])
        .await
        .unwrap();
    assert_eq!(added, 2);
    assert_eq!(
        s.add_suppressions(&[SuppressionKey::Phone(8613123079337)])
            .await
            .unwrap(),
        0
    );
    let f = s
        .recipient_facts(
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
        .remove_suppression(&SuppressionKey::ContactId("c2".into()))
        .await
        .unwrap());
    assert!(!s
        .remove_suppression(&SuppressionKey::ContactId("c2".into()))
        .await
        .unwrap());
    let f = s
        .recipient_facts(Channel::Sms, &[q("c2", 1)])
        .await
        .unwrap();
    assert!(!f[0].suppressed);
}

async fn consent(s: &dyn StateStore) {
    s.record_consent(&[opt_out("c1")]).await.unwrap();
    let f = s
        .recipient_facts(Channel::Sms, &[q("c1", 1), q("c9", 2)])
        .await
        .unwrap();
    assert_eq!(f[0].consent_override, Some(Consent::OptOut));
    assert_eq!(f[1].consent_override, None);
    let f = s
        .recipient_facts(Channel::Email, &[q("c1", 1)])
        .await
        .unwrap();
    assert_eq!(f[0].consent_override, None, "consent is per channel");
    assert_eq!(s.consent_history("c1").await.unwrap().len(), 1);
}

async fn caps(s: &dyn StateStore) {
    let t = Utc::now();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(1), req(1), req(1)], t)
            .await
            .unwrap(),
        vec![true, true, false]
    );
    s.release_caps(&[req(1)], t).await.unwrap();
    assert_eq!(
        s.reserve_caps(&rules(), &[req(1)], t).await.unwrap(),
        vec![true]
    );
    let later = t + Duration::seconds(86_401);
    assert_eq!(
        s.reserve_caps(&rules(), &[req(1)], later).await.unwrap(),
        vec![true],
        "the window moved on"
    );
}

async fn concurrent_caps(s: Arc<dyn StateStore>) {
    let t = Utc::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.reserve_caps(&rules(), &[req(7); 4], t).await.unwrap() })
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

async fn jobs(s: &dyn StateStore) {
    let j = JobId::generate();
    s.save_job(
        &j,
        serde_json::json!({"id": j.as_str(), "status": "queued"}),
    )
    .await
    .unwrap();
    s.save_job(
        &j,
        serde_json::json!({"id": j.as_str(), "status": "running"}),
    )
    .await
    .unwrap();
    let all = s.load_jobs().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "running");
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
            async fn idempotency_keys() {
                let (_dir, s) = $make;
                idempotency(&*s).await;
            }

            #[tokio::test]
            async fn job_records() {
                let (_dir, s) = $make;
                jobs(&*s).await;
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

#[tokio::test]
async fn the_embedded_store_remembers_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let j = JobId::generate();
    let t = Utc::now();
    {
        let s = embedded(&dir);
        s.add_suppressions(&[
            SuppressionKey::Phone(42),
            SuppressionKey::ContactId("gone".into()),
        ])
        .await
        .unwrap();
        s.record_consent(&[opt_out("c1")]).await.unwrap();
        assert_eq!(
            s.reserve_caps(&rules(), &[req(5), req(5)], t)
                .await
                .unwrap(),
            vec![true, true]
        );
        s.claim_idempotency_key("promo-1", [9; 32], &j)
            .await
            .unwrap();
        s.save_job(&j, serde_json::json!({"id": j.as_str()}))
            .await
            .unwrap();
    }
    let s = embedded(&dir);
    let f = s
        .recipient_facts(Channel::Sms, &[q("x", 42), q("gone", 1), q("c1", 2)])
        .await
        .unwrap();
    assert!(f[0].suppressed && f[1].suppressed);
    assert_eq!(f[2].consent_override, Some(Consent::OptOut));
    assert_eq!(s.consent_history("c1").await.unwrap().len(), 1);
    assert_eq!(
        s.reserve_caps(&rules(), &[req(5)], t).await.unwrap(),
        vec![false],
        "caps survive a restart"
    );
    assert_eq!(
        s.claim_idempotency_key("promo-1", [9; 32], &JobId::generate())
            .await
            .unwrap(),
        IdempotencyClaim::Existing(j.clone())
    );
    assert_eq!(s.load_jobs().await.unwrap().len(), 1);
    // New history entries continue the sequence rather than overwrite old ones.
    s.record_consent(&[opt_out("c1")]).await.unwrap();
    drop(s);
    let s = embedded(&dir);
    assert_eq!(s.consent_history("c1").await.unwrap().len(), 2);
}
