//! The durable embedded state backend: the in-memory store stays the hot copy that answers
//! every read and makes check-and-reserve atomic, and every change is written through to the
//! embedded database (redb) before the call returns, so suppressions, consent and its history,
//! frequency-cap reservations, idempotency keys, job records and the signatures of callbacks
//! already applied survive a crash or restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{
    CapRequest, CapRule, ConsentChange, FactsQuery, IdempotencyClaim, MemoryStore, RecipientFacts,
    StateStore, StoreError, SuppressionKey,
};
use crate::domain::{Channel, JobId, Purpose};

const SUPPRESSED_PHONES: TableDefinition<u64, u8> = TableDefinition::new("state_suppressed_phones");
const SUPPRESSED_CONTACTS: TableDefinition<&str, u8> =
    TableDefinition::new("state_suppressed_contacts");
const CONSENT_HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("state_consent_history");
/// Reservations as 16-byte (time, holder) entries per cap key.
const CAPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_caps_v2");
/// The earlier format (8-byte times, no holders): read once at open, moved into [`CAPS`] and
/// dropped, so reservations made before an upgrade still count.
const CAPS_V1: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_caps");
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("state_idempotency");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("state_jobs");
/// Callback signatures seen → the Unix time (seconds) after which they expire; expired ones
/// are deleted by [`StateStore::prune_callback_uses`].
const CALLBACK_USES: TableDefinition<&[u8], i64> = TableDefinition::new("state_callback_uses");

/// One change to write through.
enum Op {
    Suppress(SuppressionKey),
    Unsuppress(SuppressionKey),
    Consent(u64, Vec<u8>),
    Cap([u8; 10], Vec<u8>),
    Idempotency(String, Vec<u8>),
    Job(String, Vec<u8>),
    CallbackUse([u8; 32], i64),
    ForgetCallbackUse([u8; 32]),
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

/// Moves reservations from the holder-less format into the current table. Each old entry
/// gets a holder of its own that no message will ask with, so it counts until it expires.
fn migrate_caps_v1(w: &WriteTransaction) -> Result<(), redb::Error> {
    let old: Vec<(Vec<u8>, Vec<u8>)> = {
        let t = w.open_table(CAPS_V1)?;
        let rows = t
            .iter()?
            .map(|row| row.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        rows
    };
    if !old.is_empty() {
        let mut caps = w.open_table(CAPS)?;
        for (k, v) in old {
            let mut entries = caps
                .get(k.as_slice())?
                .map(|e| entries_from(e.value()))
                .unwrap_or_default();
            for (i, c) in v.chunks_exact(8).enumerate() {
                let Ok(t) = c.try_into().map(i64::from_le_bytes) else {
                    continue;
                };
                let mut seed = k.clone();
                seed.extend_from_slice(&(i as u64).to_le_bytes());
                entries.push((t, xxhash_rust::xxh3::xxh3_64_with_seed(&seed, 0x5eed_ca95)));
            }
            entries.sort_unstable();
            caps.insert(k.as_slice(), entries_bytes(&entries).as_slice())?;
        }
    }
    w.delete_table(CAPS_V1)?;
    Ok(())
}

impl EmbeddedStore {
    /// Opens the state tables in `db` and loads them into memory.
    pub fn open(db: Arc<Database>) -> Result<EmbeddedStore, StoreError> {
        let w = db.begin_write().map_err(unavailable)?;
        w.open_table(CONSENT_HISTORY).map_err(unavailable)?;
        w.open_table(SUPPRESSED_PHONES).map_err(unavailable)?;
        w.open_table(SUPPRESSED_CONTACTS).map_err(unavailable)?;
        w.open_table(CAPS).map_err(unavailable)?;
        migrate_caps_v1(&w).map_err(unavailable)?;
        w.open_table(IDEMPOTENCY).map_err(unavailable)?;
        w.open_table(JOBS).map_err(unavailable)?;
        w.open_table(CALLBACK_USES).map_err(unavailable)?;
        w.commit().map_err(unavailable)?;

        let hot = MemoryStore::new();
        let r = db.begin_read().map_err(unavailable)?;
        for row in r
            .open_table(SUPPRESSED_PHONES)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, _) = row.map_err(unavailable)?;
            hot.restore_suppression(SuppressionKey::Phone(k.value()));
        }
        for row in r
            .open_table(SUPPRESSED_CONTACTS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, _) = row.map_err(unavailable)?;
            hot.restore_suppression(SuppressionKey::ContactId(k.value().to_string()));
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
            let change: ConsentChange = serde_json::from_slice(v.value()).map_err(unavailable)?;
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
                hot.restore_cap(key, entries_from(v.value()));
            }
        }
        for row in r
            .open_table(IDEMPOTENCY)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            let v = v.value();
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
            .open_table(JOBS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            if let (Some(id), Ok(record)) =
                (JobId::parse(k.value()), serde_json::from_slice(v.value()))
            {
                hot.restore_job(id, record);
            }
        }
        for row in r
            .open_table(CALLBACK_USES)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            if let Ok(signature) = k.value().try_into() {
                hot.restore_callback_use(signature, v.value());
            }
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
                w.open_table(SUPPRESSED_PHONES)?.insert(p, 1)?;
            }
            Op::Suppress(SuppressionKey::ContactId(c)) => {
                w.open_table(SUPPRESSED_CONTACTS)?.insert(c.as_str(), 1)?;
            }
            Op::Unsuppress(SuppressionKey::Phone(p)) => {
                w.open_table(SUPPRESSED_PHONES)?.remove(p)?;
            }
            Op::Unsuppress(SuppressionKey::ContactId(c)) => {
                w.open_table(SUPPRESSED_CONTACTS)?.remove(c.as_str())?;
            }
            Op::Consent(seq, json) => {
                w.open_table(CONSENT_HISTORY)?
                    .insert(seq, json.as_slice())?;
            }
            Op::Cap(k, entries) => {
                w.open_table(CAPS)?
                    .insert(k.as_slice(), entries.as_slice())?;
            }
            Op::Idempotency(k, v) => {
                w.open_table(IDEMPOTENCY)?
                    .insert(k.as_str(), v.as_slice())?;
            }
            Op::Job(k, v) => {
                w.open_table(JOBS)?.insert(k.as_str(), v.as_slice())?;
            }
            Op::CallbackUse(signature, expires) => {
                w.open_table(CALLBACK_USES)?
                    .insert(signature.as_slice(), expires)?;
            }
            Op::ForgetCallbackUse(signature) => {
                w.open_table(CALLBACK_USES)?.remove(signature.as_slice())?;
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
        channel: Channel,
        queries: &[FactsQuery<'_>],
    ) -> Result<Vec<RecipientFacts>, StoreError> {
        self.hot.recipient_facts(channel, queries).await
    }

    async fn add_suppressions(&self, keys: &[SuppressionKey]) -> Result<usize, StoreError> {
        self.write(keys.iter().cloned().map(Op::Suppress).collect())
            .await?;
        self.hot.add_suppressions(keys).await
    }

    async fn remove_suppression(&self, key: &SuppressionKey) -> Result<bool, StoreError> {
        self.write(vec![Op::Unsuppress(key.clone())]).await?;
        self.hot.remove_suppression(key).await
    }

    async fn record_consent(&self, changes: &[ConsentChange]) -> Result<(), StoreError> {
        let ops = changes
            .iter()
            .map(|c| {
                let seq = self.history_seq.fetch_add(1, Ordering::SeqCst) + 1;
                serde_json::to_vec(c)
                    .map(|json| Op::Consent(seq, json))
                    .map_err(unavailable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write(ops).await?;
        self.hot.record_consent(changes).await
    }

    async fn consent_history(&self, contact_id: &str) -> Result<Vec<ConsentChange>, StoreError> {
        self.hot.consent_history(contact_id).await
    }

    async fn consent_changes_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        self.hot.consent_changes_since(since).await
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

    async fn save_job(&self, job: &JobId, record: serde_json::Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&record).map_err(unavailable)?;
        self.write(vec![Op::Job(job.as_str().to_string(), bytes)])
            .await?;
        self.hot.save_job(job, record).await
    }

    async fn load_jobs(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        self.hot.load_jobs().await
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

    fn rules() -> Vec<CapRule> {
        vec![CapRule {
            channel: Channel::Sms,
            purpose: Purpose::Marketing,
            max: 3,
            window_seconds: 86_400,
        }]
    }

    fn req(holder: u64) -> CapRequest {
        CapRequest {
            contact_key: 5,
            channel: Channel::Sms,
            purpose: Purpose::Marketing,
            holder,
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
    async fn reservations_from_before_holders_still_count_after_an_upgrade() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("state.redb")).expect("db"));
        let now = Utc::now();
        {
            let w = db.begin_write().expect("write");
            let old_times: Vec<u8> = [now.timestamp() - 10, now.timestamp() - 5]
                .iter()
                .flat_map(|t| t.to_le_bytes())
                .collect();
            w.open_table(CAPS_V1)
                .expect("old table")
                .insert(
                    cap_key((5, Channel::Sms, Purpose::Marketing)).as_slice(),
                    old_times.as_slice(),
                )
                .expect("insert");
            w.commit().expect("commit");
        }
        let s = EmbeddedStore::open(db.clone()).expect("open");
        assert_eq!(
            s.reserve_caps(&rules(), &[req(1), req(2)], now)
                .await
                .expect("reserve"),
            vec![true, false],
            "the two old reservations count"
        );
        let r = db.begin_read().expect("read");
        assert!(r.open_table(CAPS_V1).is_err(), "the old table is gone");
        drop((r, s));
        let s = EmbeddedStore::open(db).expect("reopen");
        assert_eq!(
            s.reserve_caps(&rules(), &[req(1), req(3)], now)
                .await
                .expect("reserve"),
            vec![true, false],
            "migrated and new reservations survive a reopen"
        );
    }
}
