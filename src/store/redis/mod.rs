//! The Redis state backend: what several herald instances share (suppressions, consent and
//! its history, frequency-cap reservations, idempotency keys, callback
//! signatures already applied) lives in one Redis
//! or Redis Cluster, so any instance can decide for any recipient.
//!
//! Every call is one round trip: a pipeline (or one MULTI) over keys that share a hash slot,
//! or, for caps, one Lua script per call (per contact on a cluster, all in flight at once).
//! Layout and hash tags: [`keys`]. Connections and timeouts: [`conn`]. Caps: [`caps`].
//! Provider rate limits shared by the fleet: [`rate`] (its own connection, one script call
//! per block of parts). Jobs, shard leases and outcomes shared by the fleet: [`work`].
//! Tenants' monthly quotas: [`quota`].

mod caps;
mod conn;
mod events;
mod keys;
mod quota;
mod rate;
mod work;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use self::caps::CapScript;
use self::conn::{unavailable, Conn};
pub use self::events::{EventStream, RedisEvents, StreamEntry};
use self::keys::Keys;
pub use self::rate::RedisRateBucket;
pub use self::work::{CommitAnswer, DeliveriesAnswer, PublishedJob, RedisWork, ShardStats};
use super::{
    CapRequest, CapRule, ConsentChange, FactsQuery, IdempotencyClaim, QuotaAnswer,
    QuotaReservation, RecipientFacts, StateStore, StoreError, SuppressionKey,
};
use crate::access::{StoredKey, TenantId};
use crate::config::RedisStateConfig;
use crate::domain::{Channel, Consent, JobId};

/// How to reach Redis; built from `[state.redis]` or by tests. Not `Debug`: a URL may carry
/// a password.
#[derive(Clone)]
pub struct RedisOptions {
    /// One URL, or a cluster's seed nodes.
    pub urls: Vec<String>,
    /// Speak the cluster protocol: follow slot redirections and fan out across nodes.
    pub cluster: bool,
    /// Multiplexed connections kept; each carries many concurrent calls.
    pub pool_size: usize,
    /// Starts every key (see the key layout in `keys.rs`).
    pub key_prefix: String,
    /// Bound on one store call, connection wait included.
    pub timeout: Duration,
}

impl RedisOptions {
    /// The options a validated config names.
    pub fn from_config(c: &RedisStateConfig) -> RedisOptions {
        RedisOptions {
            urls: c.urls(),
            cluster: c.cluster,
            pool_size: c.pool_size,
            key_prefix: c.key_prefix.clone(),
            timeout: Duration::from_millis(c.timeout_ms),
        }
    }
}

/// State shared through Redis. Cheap to share behind an `Arc`; the pool is inside.
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    caps: CapScript,
    cluster: bool,
    /// The data-set marker this store first saw (see [`RedisStore::ping`]).
    epoch: parking_lot::Mutex<Option<String>>,
    /// Set for good once the marker changed: Redis lost its data under this process.
    lost_data: std::sync::atomic::AtomicBool,
}

impl RedisStore {
    /// Builds the pool and checks that Redis answers, so a wrong URL fails at start-up rather
    /// than on the first job.
    pub async fn connect(opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let store = RedisStore {
            conn: Conn::open(&opts)?,
            keys: Keys::new(&opts.key_prefix),
            caps: CapScript::new(),
            cluster: opts.cluster,
            epoch: parking_lot::Mutex::new(None),
            lost_data: std::sync::atomic::AtomicBool::new(false),
        };
        store.ping().await?;
        Ok(store)
    }

    /// How many times this store has waited on Redis, for tests and benchmarks that check
    /// calls stay batch-shaped (one per batch, not one per recipient). A cluster fan-out,
    /// all in flight at once, counts once.
    pub fn round_trips(&self) -> u64 {
        self.conn.round_trips()
    }
}

fn lost_data_error() -> StoreError {
    unavailable("Redis lost its data since herald started (restart herald to accept the loss)")
}

/// A consent value as stored: its two-bit code in decimal.
fn consent_from(code: &[u8]) -> Result<Consent, StoreError> {
    match code {
        b"0" | b"1" | b"2" => Ok(Consent::from_bits(code[0] - b'0')),
        _ => Err(unavailable("a stored consent value is not 0, 1 or 2")),
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| unavailable(format_args!("stored record: {e}")))
}

#[async_trait]
impl StateStore for RedisStore {
    /// One round trip through the pool, bounded by the store's timeout, that also checks
    /// Redis still holds the data it held before: a marker key is created once (by whichever
    /// instance comes first) and must keep its value. A Redis that came back empty (restarted
    /// without persistence, flushed, failed over to an empty replica) has forgotten cap
    /// reservations and idempotency keys; sending on would break caps, so from then on the
    /// store reads as unavailable (dispatch holds, `/readyz` answers 503) until herald is
    /// restarted, which is how an operator accepts the loss. On a cluster it reaches the
    /// marker's node only.
    async fn ping(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.lost_data.load(Ordering::Acquire) {
            return Err(lost_data_error());
        }
        let candidate = uuid::Uuid::now_v7().simple().to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.epoch())
            .arg(&candidate)
            .arg("NX")
            .ignore();
        pipe.get(self.keys.epoch());
        let (now,): (Option<String>,) = self.conn.query(&pipe).await?;
        let now = now.ok_or_else(|| unavailable("the data-set marker could not be read"))?;
        let mut epoch = self.epoch.lock();
        match epoch.as_deref() {
            None => {
                *epoch = Some(now);
                Ok(())
            }
            Some(seen) if seen == now => Ok(()),
            Some(_) => {
                self.lost_data.store(true, Ordering::Release);
                tracing::error!(
                    "Redis lost its data (its data-set marker changed): cap reservations and \
                     idempotency keys taken before are gone; dispatch and intake hold until \
                     herald is restarted"
                );
                Err(lost_data_error())
            }
        }
    }

    async fn recipient_facts(
        &self,
        tenant: &TenantId,
        channel: Channel,
        queries: &[FactsQuery<'_>],
    ) -> Result<Vec<RecipientFacts>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SMISMEMBER")
            .arg(&*self.keys.suppressed_phones(tenant));
        for q in queries {
            pipe.arg(q.phone);
        }
        pipe.cmd("SMISMEMBER")
            .arg(&*self.keys.suppressed_contacts(tenant));
        for q in queries {
            pipe.arg(q.contact_id);
        }
        pipe.cmd("HMGET").arg(&*self.keys.consent(tenant, channel));
        for q in queries {
            pipe.arg(q.contact_id);
        }
        // Only channels with suppressible addresses pay for the third lookup.
        let with_addresses = queries.iter().any(|q| q.address.is_some());
        if with_addresses {
            pipe.cmd("SMISMEMBER")
                .arg(&*self.keys.suppressed_addresses(tenant));
            for q in queries {
                // The empty entry is never a member.
                pipe.arg(q.address.unwrap_or(""));
            }
        }
        let (phones, contacts, consent, addresses): (
            Vec<bool>,
            Vec<bool>,
            Vec<Option<Vec<u8>>>,
            Vec<bool>,
        ) = if with_addresses {
            self.conn.query(&pipe).await?
        } else {
            let (p, c, o): (Vec<bool>, Vec<bool>, Vec<Option<Vec<u8>>>) =
                self.conn.query(&pipe).await?;
            let none = vec![false; p.len()];
            (p, c, o, none)
        };
        if phones.len() != queries.len()
            || contacts.len() != queries.len()
            || consent.len() != queries.len()
            || addresses.len() != queries.len()
        {
            return Err(unavailable(
                "a batch lookup answered the wrong number of items",
            ));
        }
        phones
            .into_iter()
            .zip(contacts)
            .zip(consent)
            .zip(addresses)
            .map(|(((phone, contact), consent), address)| {
                Ok(RecipientFacts {
                    suppressed: phone || contact || address,
                    consent_override: consent.as_deref().map(consent_from).transpose()?,
                })
            })
            .collect()
    }

    async fn add_suppressions(
        &self,
        tenant: &TenantId,
        keys: &[SuppressionKey],
    ) -> Result<usize, StoreError> {
        let phones: Vec<u64> = keys
            .iter()
            .filter_map(|k| match k {
                SuppressionKey::Phone(p) => Some(*p),
                _ => None,
            })
            .collect();
        let contacts: Vec<&str> = keys
            .iter()
            .filter_map(|k| match k {
                SuppressionKey::ContactId(c) => Some(c.as_str()),
                _ => None,
            })
            .collect();
        let addresses: Vec<&str> = keys
            .iter()
            .filter_map(|k| match k {
                SuppressionKey::Address(a) => Some(a.as_str()),
                _ => None,
            })
            .collect();
        let mut pipe = redis::pipe();
        if !phones.is_empty() {
            pipe.cmd("SADD")
                .arg(&*self.keys.suppressed_phones(tenant))
                .arg(&phones);
        }
        if !contacts.is_empty() {
            pipe.cmd("SADD")
                .arg(&*self.keys.suppressed_contacts(tenant))
                .arg(&contacts);
        }
        if !addresses.is_empty() {
            pipe.cmd("SADD")
                .arg(&*self.keys.suppressed_addresses(tenant))
                .arg(&addresses);
        }
        if pipe.is_empty() {
            return Ok(0);
        }
        let added: Vec<usize> = self.conn.query(&pipe).await?;
        Ok(added.into_iter().sum())
    }

    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        key: &SuppressionKey,
    ) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        match key {
            SuppressionKey::Phone(p) => pipe
                .cmd("SREM")
                .arg(&*self.keys.suppressed_phones(tenant))
                .arg(*p),
            SuppressionKey::ContactId(c) => pipe
                .cmd("SREM")
                .arg(&*self.keys.suppressed_contacts(tenant))
                .arg(c.as_str()),
            SuppressionKey::Address(a) => pipe
                .cmd("SREM")
                .arg(&*self.keys.suppressed_addresses(tenant))
                .arg(a.as_str()),
        };
        let (removed,): (usize,) = self.conn.query(&pipe).await?;
        Ok(removed > 0)
    }

    async fn record_consent(
        &self,
        tenant: &TenantId,
        changes: &[ConsentChange],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // One MULTI: the current value, the contact's trail and the time index change together.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for c in changes {
            let entry = serde_json::to_vec(c).map_err(unavailable)?;
            // A unique head keeps two identical changes apart in the time index.
            let mut member = uuid::Uuid::now_v7().to_string().into_bytes();
            member.push(b' ');
            member.extend_from_slice(&entry);
            pipe.cmd("HSET")
                .arg(&*self.keys.consent(tenant, c.channel))
                .arg(c.contact_id.as_str())
                .arg(c.consent.to_bits())
                .ignore();
            pipe.cmd("RPUSH")
                .arg(self.keys.consent_log(tenant, &c.contact_id))
                .arg(entry)
                .ignore();
            pipe.cmd("ZADD")
                .arg(&*self.keys.consent_since(tenant))
                .arg(c.at.timestamp_micros())
                .arg(member)
                .ignore();
        }
        self.conn.query::<()>(&pipe).await
    }

    async fn consent_history(
        &self,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("LRANGE")
            .arg(self.keys.consent_log(tenant, contact_id))
            .arg(0)
            .arg(-1);
        let (entries,): (Vec<Vec<u8>>,) = self.conn.query(&pipe).await?;
        entries.iter().map(|e| json(e)).collect()
    }

    async fn consent_changes_since(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConsentChange>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(&*self.keys.consent_since(tenant))
            .arg(since.timestamp_micros())
            .arg("+inf")
            .arg("BYSCORE");
        let (members,): (Vec<Vec<u8>>,) = self.conn.query(&pipe).await?;
        let mut changes = Vec::with_capacity(members.len());
        for m in members {
            let entry = m
                .iter()
                .position(|b| *b == b' ')
                .map(|space| &m[space + 1..])
                .ok_or_else(|| unavailable("a consent index entry has no record"))?;
            let change: ConsentChange = json(entry)?;
            // Scores are whole microseconds; the exact bound is checked here.
            if change.at >= since {
                changes.push(change);
            }
        }
        Ok(changes)
    }

    async fn reserve_caps(
        &self,
        rules: &[CapRule],
        requests: &[CapRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        caps::reserve(
            &self.conn,
            &self.keys,
            &self.caps,
            self.cluster,
            rules,
            requests,
            now,
        )
        .await
    }

    async fn restore_caps(
        &self,
        rules: &[CapRule],
        reservations: &[(CapRequest, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        caps::restore(&self.conn, &self.keys, rules, reservations, now).await
    }

    async fn release_caps(
        &self,
        requests: &[CapRequest],
        _reserved_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        caps::release(&self.conn, &self.keys, requests).await
    }

    async fn save_api_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(self.keys.api_keys())
            .arg(&key.id)
            .arg(key.encode())
            .ignore();
        self.conn.query::<()>(&pipe).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(self.keys.api_keys()).arg(id);
        let (stored,): (Option<Vec<u8>>,) = self.conn.query(&pipe).await?;
        stored
            .map(|v| StoredKey::decode(&v).map_err(unavailable))
            .transpose()
    }

    async fn api_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HVALS").arg(self.keys.api_keys());
        let (stored,): (Vec<Vec<u8>>,) = self.conn.query(&pipe).await?;
        stored
            .iter()
            .map(|v| StoredKey::decode(v).map_err(unavailable))
            .collect()
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        job: &JobId,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut value = hex::encode(fingerprint);
        value.push_str(job.as_str());
        // SET NX GET: claims the key, or answers who holds it, atomically.
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.idempotency(key))
            .arg(value)
            .arg("NX")
            .arg("GET");
        let (previous,): (Option<String>,) = self.conn.query(&pipe).await?;
        let Some(previous) = previous else {
            return Ok(IdempotencyClaim::New);
        };
        let (fp, existing) = (previous.get(..64), previous.get(64..));
        let (Some(fp), Some(existing)) = (fp, existing.and_then(JobId::parse)) else {
            return Err(unavailable("a stored idempotency key is malformed"));
        };
        Ok(if fp == hex::encode(fingerprint) {
            IdempotencyClaim::Existing(existing)
        } else {
            IdempotencyClaim::Conflict(existing)
        })
    }

    /// `SET NX` with the time left until `expires` as the key's lifetime (at least a
    /// second): Redis drops the marker when the signature can no longer verify.
    async fn first_callback_use(
        &self,
        signature: [u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let ttl_ms = (expires - now).num_milliseconds().max(1_000);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.callback_seen(&signature))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let (set,): (Option<String>,) = self.conn.query(&pipe).await?;
        Ok(set.is_some())
    }

    async fn forget_callback_use(&self, signature: [u8; 32]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.keys.callback_seen(&signature))
            .ignore();
        self.conn.query::<()>(&pipe).await
    }

    async fn reserve_quota(&self, r: &QuotaReservation<'_>) -> Result<QuotaAnswer, StoreError> {
        quota::reserve(&self.conn, &self.keys, r).await
    }

    async fn release_quota(
        &self,
        tenant: &TenantId,
        month: u32,
        job: &JobId,
    ) -> Result<(), StoreError> {
        quota::release(&self.conn, &self.keys, tenant, month, job).await
    }

    async fn quota_used(&self, tenant: &TenantId, month: u32) -> Result<u64, StoreError> {
        quota::used(&self.conn, &self.keys, tenant, month).await
    }

    /// Markers expire in Redis by themselves.
    async fn prune_callback_uses(&self, _now: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(0)
    }
}
