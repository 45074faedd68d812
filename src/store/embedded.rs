//! The durable embedded state backend: the in-memory store stays the hot copy that answers
//! every read and makes check-and-reserve atomic, and every change is written through to the
//! embedded database (redb) before the call returns, so suppressions, consent and its history,
//! frequency-cap reservations, idempotency keys and the signatures of callbacks
//! already applied survive a crash or restart.
//!
//! Every stored value starts with [`FORMAT_VERSION`] (a suppression's value is that byte
//! alone), and opening refuses a value of a version this herald does not know.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use super::tenant_scope;
use super::{
    CapRequest, CapRule, ConsentChange, FactsQuery, IdempotencyClaim, MemoryStore, QuotaAnswer,
    QuotaReservation, RecipientFacts, StateStore, StoreError, SuppressionKey,
};
use crate::access::{StoredKey, TenantId};
use crate::domain::{Channel, JobId, Purpose};
use crate::durable::format::{self, versioned};
use crate::durable::tables::{
    STATE_API_KEYS as API_KEYS, STATE_CALLBACK_USES as CALLBACK_USES, STATE_CAPS as CAPS,
    STATE_CONSENT_HISTORY as CONSENT_HISTORY, STATE_IDEMPOTENCY as IDEMPOTENCY,
    STATE_QUOTAS as QUOTAS, STATE_SUPPRESSED_ADDRESSES as SUPPRESSED_ADDRESSES,
    STATE_SUPPRESSED_CONTACTS as SUPPRESSED_CONTACTS, STATE_SUPPRESSED_PHONES as SUPPRESSED_PHONES,
};

/// The format version of every value the embedded state stores.
pub const FORMAT_VERSION: u8 = 1;

/// The rest of a stored `what` after its version byte, which must be [`FORMAT_VERSION`].
fn payload<'a>(what: &'static str, stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
    format::check(what, FORMAT_VERSION, stored).map_err(unavailable)
}

/// One change to write through.
enum Op {
    Suppress(SuppressionKey),
    Unsuppress(SuppressionKey),
    Consent(u64, Vec<u8>),
    Cap([u8; 10], Vec<u8>),
    Idempotency(String, Vec<u8>),
    CallbackUse([u8; 32], i64),
    ForgetCallbackUse([u8; 32]),
    ApiKey(String, Vec<u8>),
    Quota(String, u64),
    Unquota(String),
}

/// The key of a job's quota reservation: `<tenant>/<YYYYMM>/<job id>` (neither tenants nor
/// job ids contain `/`).
fn quota_key(tenant: &TenantId, month: u32, job: &JobId) -> String {
    format!("{tenant}/{month}/{job}")
}

fn quota_key_from(k: &str) -> Option<(TenantId, u32, JobId)> {
    let mut parts = k.splitn(3, '/');
    let tenant = TenantId::parse(parts.next()?).ok()?;
    let month = parts.next()?.parse().ok()?;
    let job = JobId::parse(parts.next()?)?;
    Some((tenant, month, job))
}

/// Durable state: memory for speed, redb for survival.
pub struct EmbeddedStore {
    db: Arc<Database>,
    hot: MemoryStore,
    history_seq: AtomicU64,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded database: {e}"))
}

fn channel_code(c: Channel) -> u8 {
    c.index() as u8
}

fn channel_from(code: u8) -> Option<Channel> {
    [Channel::Sms, Channel::Email, Channel::Push, Channel::Wechat]
        .get(code as usize)
        .copied()
}

fn cap_key(key: (u64, Channel, Purpose)) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&key.0.to_be_bytes());
    k[8] = channel_code(key.1);
    k[9] = matches!(key.2, Purpose::Transactional) as u8;
    k
}

fn cap_key_from(k: &[u8]) -> Option<(u64, Channel, Purpose)> {
    let id = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let purpose = if *k.get(9)? == 1 {
        Purpose::Transactional
    } else {
        Purpose::Marketing
    };
    Some((id, channel_from(*k.get(8)?)?, purpose))
}

fn entries_bytes(entries: &[(i64, u64)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(t, h)| t.to_le_bytes().into_iter().chain(h.to_le_bytes()))
        .collect()
}

fn entries_from(bytes: &[u8]) -> Vec<(i64, u64)> {
    bytes
        .chunks_exact(16)
        .filter_map(|c| {
            let t = i64::from_le_bytes(c.get(..8)?.try_into().ok()?);
            let h = u64::from_le_bytes(c.get(8..)?.try_into().ok()?);
            Some((t, h))
        })
        .collect()
}

impl EmbeddedStore {
    /// Opens the state tables in `db` and loads them into memory.
    pub fn open(db: Arc<Database>) -> Result<EmbeddedStore, StoreError> {
        let w = db.begin_write().map_err(unavailable)?;
        w.open_table(CONSENT_HISTORY).map_err(unavailable)?;
        w.open_table(SUPPRESSED_PHONES).map_err(unavailable)?;
        w.open_table(SUPPRESSED_CONTACTS).map_err(unavailable)?;
        w.open_table(SUPPRESSED_ADDRESSES).map_err(unavailable)?;
        w.open_table(CAPS).map_err(unavailable)?;
        w.open_table(IDEMPOTENCY).map_err(unavailable)?;
        w.open_table(CALLBACK_USES).map_err(unavailable)?;
        w.open_table(API_KEYS).map_err(unavailable)?;
        w.open_table(QUOTAS).map_err(unavailable)?;
        w.commit().map_err(unavailable)?;

        let hot = MemoryStore::new();
        let r = db.begin_read().map_err(unavailable)?;
        for row in r
            .open_table(SUPPRESSED_PHONES)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            payload("state suppression", &[v.value()])?;
            hot.restore_suppression(SuppressionKey::Phone(k.value()));
        }
        for row in r
            .open_table(SUPPRESSED_CONTACTS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            payload("state suppression", &[v.value()])?;
            hot.restore_suppression(SuppressionKey::ContactId(k.value().to_string()));
        }
        for row in r
            .open_table(SUPPRESSED_ADDRESSES)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            payload("state suppression", &[v.value()])?;
            hot.restore_suppression(SuppressionKey::Address(k.value().to_string()));
        }
        let mut last_seq = 0;
        for row in r
            .open_table(CONSENT_HISTORY)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            last_seq = k.value();
            let change: ConsentChange =
                serde_json::from_slice(payload("state consent change", v.value())?)
                    .map_err(unavailable)?;
            hot.restore_consent_change(change);
        }
        for row in r
            .open_table(CAPS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            if let Some(key) = cap_key_from(k.value()) {
                hot.restore_cap(
                    key,
                    entries_from(payload("state cap reservations", v.value())?),
                );
            }
        }
        for row in r
            .open_table(IDEMPOTENCY)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            let v = payload("state idempotency key", v.value())?;
            let (Some(fp), Some(job)) = (v.get(..32), v.get(32..)) else {
                continue;
            };
            let (Ok(fp), Some(job)) = (
                fp.try_into(),
                std::str::from_utf8(job).ok().and_then(JobId::parse),
            ) else {
                continue;
            };
            hot.restore_idempotency(k.value().to_string(), fp, job);
        }
        for row in r
            .open_table(CALLBACK_USES)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            let v = payload("callback use", v.value())?;
            let expires = v
                .try_into()
                .map(i64::from_le_bytes)
                .map_err(|_| unavailable("a callback use's expiry is not 8 bytes"))?;
            if let Ok(signature) = k.value().try_into() {
                hot.restore_callback_use(signature, expires);
            }
        }
        for row in r
            .open_table(API_KEYS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (_, v) = row.map_err(unavailable)?;
            hot.restore_api_key(StoredKey::decode(v.value()).map_err(unavailable)?);
        }
        for row in r
            .open_table(QUOTAS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            let n = payload("quota reservation", v.value())?
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| unavailable("a quota reservation is not 8 bytes"))?;
            let (tenant, month, job) = quota_key_from(k.value())
                .ok_or_else(|| unavailable("a quota reservation's key is malformed"))?;
            hot.restore_quota(tenant, month, job, n);
        }
        drop(r);
        Ok(EmbeddedStore {
            db,
            hot,
            history_seq: AtomicU64::new(last_seq),
        })
    }

    /// Writes changes in one durable transaction, off the async runtime.
    async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let w = db.begin_write().map_err(unavailable)?;
            apply(&w, ops).map_err(unavailable)?;
            w.commit().map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }
}

fn apply(w: &WriteTransaction, ops: Vec<Op>) -> Result<(), redb::Error> {
    for op in ops {
        match op {
            Op::Suppress(SuppressionKey::Phone(p)) => {
                w.open_table(SUPPRESSED_PHONES)?.insert(p, FORMAT_VERSION)?;
            }
            Op::Suppress(SuppressionKey::ContactId(c)) => {
                w.open_table(SUPPRESSED_CONTACTS)?
                    .insert(c.as_str(), FORMAT_VERSION)?;
            }
            Op::Unsuppress(SuppressionKey::Phone(p)) => {
                w.open_table(SUPPRESSED_PHONES)?.remove(p)?;
            }
            Op::Unsuppress(SuppressionKey::ContactId(c)) => {
                w.open_table(SUPPRESSED_CONTACTS)?.remove(c.as_str())?;
            }
            Op::Suppress(SuppressionKey::Address(a)) => {
                w.open_table(SUPPRESSED_ADDRESSES)?
                    .insert(a.as_str(), FORMAT_VERSION)?;
            }
            Op::Unsuppress(SuppressionKey::Address(a)) => {
                w.open_table(SUPPRESSED_ADDRESSES)?.remove(a.as_str())?;
            }
            Op::Consent(seq, json) => {
                w.open_table(CONSENT_HISTORY)?
                    .insert(seq, versioned(FORMAT_VERSION, &json).as_slice())?;
            }
            Op::Cap(k, entries) => {
                w.open_table(CAPS)?
                    .insert(k.as_slice(), versioned(FORMAT_VERSION, &entries).as_slice())?;
            }
            Op::Idempotency(k, v) => {
                w.open_table(IDEMPOTENCY)?
                    .insert(k.as_str(), versioned(FORMAT_VERSION, &v).as_slice())?;
            }
            Op::CallbackUse(signature, expires) => {
                let value = versioned(FORMAT_VERSION, &expires.to_le_bytes());
                w.open_table(CALLBACK_USES)?
                    .insert(signature.as_slice(), value.as_slice())?;
            }
            Op::ForgetCallbackUse(signature) => {
                w.open_table(CALLBACK_USES)?.remove(signature.as_slice())?;
            }
            Op::ApiKey(id, stored) => {
                w.open_table(API_KEYS)?
                    .insert(id.as_str(), stored.as_slice())?;
            }
            Op::Quota(k, n) => {
                let value = versioned(FORMAT_VERSION, &n.to_le_bytes());
                w.open_table(QUOTAS)?.insert(k.as_str(), value.as_slice())?;
            }
            Op::Unquota(k) => {
                w.open_table(QUOTAS)?.remove(k.as_str())?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl StateStore for EmbeddedStore {
    /// The database is a file in this process: it answers whenever the process does.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn recipient_facts(
        &self,
        tenant: &TenantId,
        channel: Channel,
        queries: &[FactsQuery<'_>],
    ) -> Result<Vec<RecipientFacts>, StoreError> {
        self.hot.recipient_facts(tenant, channel, queries).await
    }

    // Entries are written to disk in their stored form ([`tenant_scope`]), the form the hot
    // copy holds and is restored from.
    async fn add_suppressions(
        &self,
        tenant: &TenantId,
        keys: &[SuppressionKey],
    ) -> Result<usize, StoreError> {
        self.write(
            keys.iter()
                .map(|k| Op::Suppress(tenant_scope::suppression(tenant, k)))
                .collect(),
        )
        .await?;
        self.hot.add_suppressions(tenant, keys).await
    }

    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        key: &SuppressionKey,
    ) -> Result<bool, StoreError> {
        self.write(vec![Op::Unsuppress(tenant_scope::suppression(tenant, key))])
            .await?;
        self.hot.remove_suppression(tenant, key).await
    }

    async fn record_consent(
        &self,
        tenant: &TenantId,
        changes: &[ConsentChange],
    ) -> Result<(), StoreError> {
        let ops = changes
            .iter()
            .map(|c| {
                let seq = self.history_seq.fetch_add(1, Ordering::SeqCst) + 1;
                serde_json::to_vec(&tenant_scope::change_in(tenant, c))
                    .map(|json| Op::Consent(seq, json))
                    .map_err(unavailable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write(ops).await?;
        self.hot.record_consent(tenant, changes).await
    }

    async fn consent_history(
        &self,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        self.hot.consent_history(tenant, contact_id).await
    }

    async fn consent_changes_since(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        self.hot.consent_changes_since(tenant, since).await
    }

    async fn reserve_caps(
        &self,
        rules: &[CapRule],
        requests: &[CapRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        // Holders with a reservation already are not rolled back below: theirs is durable.
        let held_before: Vec<bool> = requests.iter().map(|r| self.hot.holds(r)).collect();
        let granted = self.hot.reserve_caps(rules, requests, now).await?;
        let ops = requests
            .iter()
            .zip(&granted)
            .filter(|(_, ok)| **ok)
            .map(|(r, _)| {
                let key = (r.contact_key, r.channel, r.purpose);
                Op::Cap(cap_key(key), entries_bytes(&self.hot.cap_entries(key)))
            })
            .collect();
        if let Err(e) = self.write(ops).await {
            // Not durable: give the new reservations back and report the store as unavailable.
            let taken: Vec<CapRequest> = requests
                .iter()
                .zip(granted.iter().zip(&held_before))
                .filter(|(_, (ok, held))| **ok && !**held)
                .map(|(r, _)| *r)
                .collect();
            self.hot.release_caps(&taken, now).await?;
            return Err(e);
        }
        Ok(granted)
    }

    async fn restore_caps(
        &self,
        rules: &[CapRule],
        reservations: &[(CapRequest, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.hot.restore_caps(rules, reservations, now).await?;
        let keys: std::collections::HashSet<_> = reservations
            .iter()
            .map(|(r, _)| (r.contact_key, r.channel, r.purpose))
            .collect();
        let ops = keys
            .into_iter()
            .map(|key| Op::Cap(cap_key(key), entries_bytes(&self.hot.cap_entries(key))))
            .collect();
        self.write(ops).await
    }

    async fn release_caps(
        &self,
        requests: &[CapRequest],
        reserved_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.hot.release_caps(requests, reserved_at).await?;
        let ops = requests
            .iter()
            .map(|r| {
                let key = (r.contact_key, r.channel, r.purpose);
                Op::Cap(cap_key(key), entries_bytes(&self.hot.cap_entries(key)))
            })
            .collect();
        self.write(ops).await
    }

    async fn save_api_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.write(vec![Op::ApiKey(key.id.clone(), key.encode())])
            .await?;
        self.hot.save_api_key(key).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.hot.api_key(id).await
    }

    async fn api_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.hot.api_keys().await
    }

    /// Reserved in memory first (atomic there), then written; a failed write gives the
    /// reservation back.
    async fn reserve_quota(&self, r: &QuotaReservation<'_>) -> Result<QuotaAnswer, StoreError> {
        let (answer, new) = self.hot.reserve_quota_entry(r);
        if new {
            let key = quota_key(r.tenant, r.month, r.job);
            if let Err(e) = self.write(vec![Op::Quota(key, r.recipients)]).await {
                self.hot.release_quota_entry(r.tenant, r.month, r.job);
                return Err(e);
            }
        }
        Ok(answer)
    }

    async fn release_quota(
        &self,
        tenant: &TenantId,
        month: u32,
        job: &JobId,
    ) -> Result<(), StoreError> {
        if self.hot.release_quota_entry(tenant, month, job) {
            self.write(vec![Op::Unquota(quota_key(tenant, month, job))])
                .await?;
        }
        Ok(())
    }

    async fn quota_used(&self, tenant: &TenantId, month: u32) -> Result<u64, StoreError> {
        self.hot.quota_used(tenant, month).await
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        job: &JobId,
    ) -> Result<IdempotencyClaim, StoreError> {
        let claim = self
            .hot
            .claim_idempotency_key(key, fingerprint, job)
            .await?;
        if claim == IdempotencyClaim::New {
            let mut v = fingerprint.to_vec();
            v.extend_from_slice(job.as_str().as_bytes());
            self.write(vec![Op::Idempotency(key.to_string(), v)])
                .await?;
        }
        Ok(claim)
    }

    async fn first_callback_use(
        &self,
        signature: [u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if !self.hot.first_callback_use(signature, expires, now).await? {
            return Ok(false);
        }
        let op = Op::CallbackUse(signature, expires.timestamp());
        if let Err(e) = self.write(vec![op]).await {
            // Not durable: not recorded, so the sender's retry is not taken for a replay.
            self.hot.forget_callback_use(signature).await?;
            return Err(e);
        }
        Ok(true)
    }

    async fn forget_callback_use(&self, signature: [u8; 32]) -> Result<(), StoreError> {
        self.write(vec![Op::ForgetCallbackUse(signature)]).await?;
        self.hot.forget_callback_use(signature).await
    }

    async fn prune_callback_uses(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let expired = self.hot.take_expired_callback_uses(now);
        let n = expired.len();
        // Should the delete fail, the rows stay on disk (harmless: expired rows read as
        // unseen) and are loaded and pruned again after the next start.
        self.write(expired.into_iter().map(Op::ForgetCallbackUse).collect())
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_an_unknown_format_version_is_refused_at_open() {
        type Write = fn(&WriteTransaction) -> Result<(), redb::Error>;
        let writes: [(&str, Write); 6] = [
            ("state suppression", |w| {
                w.open_table(SUPPRESSED_PHONES)?.insert(8613123000000, 7)?;
                Ok(())
            }),
            ("state suppression", |w| {
                w.open_table(SUPPRESSED_CONTACTS)?.insert("c1", 7)?;
                Ok(())
            }),
            ("state consent change", |w| {
                w.open_table(CONSENT_HISTORY)?.insert(1, &[7u8, b'{'][..])?;
                Ok(())
            }),
            ("state cap reservations", |w| {
                w.open_table(CAPS)?.insert(&[0u8; 10][..], &[7u8][..])?;
                Ok(())
            }),
            ("state idempotency key", |w| {
                w.open_table(IDEMPOTENCY)?.insert("k", &[7u8][..])?;
                Ok(())
            }),
            ("callback use", |w| {
                w.open_table(CALLBACK_USES)?
                    .insert(&[1u8; 32][..], &[7u8; 9][..])?;
                Ok(())
            }),
        ];
        for (what, write) in writes {
            let dir = tempfile::tempdir().expect("dir");
            let db = Arc::new(Database::create(dir.path().join("state.redb")).expect("db"));
            drop(EmbeddedStore::open(db.clone()).expect("a fresh store opens"));
            let w = db.begin_write().expect("write");
            write(&w).expect("stored");
            w.commit().expect("commit");
            let e = EmbeddedStore::open(db).err().expect("refused");
            assert!(
                e.to_string()
                    .contains(&format!("{what}: format version 7 is not known")),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn expired_callback_signatures_leave_the_disk() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("state.redb")).expect("db"));
        let s = EmbeddedStore::open(db.clone()).expect("open");
        let now = Utc::now();
        let soon = now + chrono::Duration::seconds(10);
        let later = now + chrono::Duration::seconds(300);
        assert!(s.first_callback_use([1; 32], soon, now).await.expect("ok"));
        assert!(s.first_callback_use([2; 32], later, now).await.expect("ok"));
        let rows = |db: &Database| {
            let r = db.begin_read().expect("read");
            let t = r.open_table(CALLBACK_USES).expect("table");
            redb::ReadableTableMetadata::len(&t).expect("len")
        };
        assert_eq!(rows(&db), 2);
        let after = now + chrono::Duration::seconds(60);
        assert_eq!(s.prune_callback_uses(after).await.expect("prune"), 1);
        assert_eq!(rows(&db), 1, "the expired one is deleted on disk");
        drop(s);
        let s = EmbeddedStore::open(db).expect("reopen");
        assert!(!s
            .first_callback_use([2; 32], later, after)
            .await
            .expect("ok"));
        assert!(s
            .first_callback_use([1; 32], later, after)
            .await
            .expect("ok"));
    }

    #[tokio::test]
    async fn values_written_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("state.redb")).expect("db"));
        let s = EmbeddedStore::open(db.clone()).expect("open");
        let now = Utc::now();
        let rules = [CapRule {
            channel: Channel::Sms,
            purpose: Purpose::Marketing,
            max: 1,
            window_seconds: 86_400,
        }];
        let req = |holder| CapRequest {
            contact_key: 5,
            channel: Channel::Sms,
            purpose: Purpose::Marketing,
            holder,
        };
        s.add_suppressions(
            &TenantId::default_tenant(),
            &[SuppressionKey::Phone(8613123000000)],
        )
        .await
        .expect("suppress");
        assert_eq!(
            s.reserve_caps(&rules, &[req(1)], now)
                .await
                .expect("reserve"),
            vec![true]
        );
        let job = JobId::generate();
        s.claim_idempotency_key("k", [3; 32], &job)
            .await
            .expect("claim");
        drop(s);
        let s = EmbeddedStore::open(db).expect("reopen");
        assert_eq!(
            s.reserve_caps(&rules, &[req(2)], now)
                .await
                .expect("reserve"),
            vec![false],
            "the reservation survived"
        );
        assert_eq!(
            s.claim_idempotency_key("k", [3; 32], &JobId::generate())
                .await
                .expect("claim"),
            IdempotencyClaim::Existing(job)
        );
    }
}
