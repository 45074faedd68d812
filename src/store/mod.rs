//! The state-store boundary: consent overrides, suppressions, frequency-cap reservations,
//! idempotency keys and the signatures of callbacks already applied
//! ([`StateStore`]), and the provider rate-limit bucket
//! several instances share ([`RateBucket`]). Policy and dispatch only talk to these traits,
//! so the in-memory, embedded (durable, one instance) and Redis (shared by many instances)
//! backends are interchangeable.
//!
//! Suppressions, consent and its history are each tenant's own: the methods that read or
//! write them take the tenant, and the default tenant's entries are stored as they always
//! were.
//!
//! Every operation takes a batch, so a networked backend can answer a whole batch of
//! recipients in one round trip instead of one per rule per recipient.

mod embedded;
mod health;
mod memory;
mod rate_bucket;
mod redis;
mod tenant_scope;

pub use embedded::EmbeddedStore;
pub use health::{StateHealth, PROBE_EVERY};
pub use memory::MemoryStore;
pub use rate_bucket::{BlockAnswer, BlockRequest, RateBucket};
pub use redis::{
    CommitAnswer, DeliveriesAnswer, EventStream, PublishedJob, RedisEvents, RedisOptions,
    RedisRateBucket, RedisStore, RedisWork, ShardStats, StreamEntry,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::access::{StoredKey, TenantId};
use crate::domain::{Channel, Consent, JobId, Purpose};

/// Why the store could not answer. A rejection is never an error; this means "could not run".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
}

/// One entry of the global do-not-contact list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionKey {
    /// An E.164 number as an integer.
    Phone(u64),
    ContactId(String),
    /// An email address or push token, as [`crate::domain::email_entry`] and
    /// [`crate::domain::push_entry`] spell it (`email:...`, `push:...`).
    Address(String),
}

/// What the store knows about one recipient beyond the snapshot, fetched in one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecipientFacts {
    pub suppressed: bool,
    /// A consent change recorded after the snapshot (inbound STOP, API); wins over the snapshot.
    pub consent_override: Option<Consent>,
}

/// A query for [`StateStore::recipient_facts`].
#[derive(Debug, Clone, Copy)]
pub struct FactsQuery<'a> {
    pub contact_id: &'a str,
    /// The E.164 number of an SMS, else 0.
    pub phone: u64,
    /// The address's suppression entry ([`crate::domain::Address::suppression_entry`]) for
    /// channels whose addresses can be suppressed (email, push).
    pub address: Option<&'a str>,
}

/// A frequency-cap rule: at most `max` messages of (channel, purpose) per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapRule {
    pub channel: Channel,
    pub purpose: Purpose,
    pub max: u32,
    pub window_seconds: i64,
}

/// One reservation request: the contact's cap key (a hash of its id), the send's kind, and
/// the message asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapRequest {
    pub contact_key: u64,
    pub channel: Channel,
    pub purpose: Purpose,
    /// The message's identity (a hash of job id, contact id and channel), stable across
    /// restarts. A holder that already holds a reservation inside the window is granted again
    /// without taking a second slot, so a retry after a crash between reserving and sending
    /// does not count twice against the contact.
    pub holder: u64,
}

/// The longest window of the rules that apply to (channel, purpose), if any apply.
pub fn longest_window(rules: &[CapRule], channel: Channel, purpose: Purpose) -> Option<i64> {
    rules
        .iter()
        .filter(|r| r.channel == channel && r.purpose == purpose)
        .map(|r| r.window_seconds)
        .max()
}

/// One recipient's outcome change, written to its shard's shared record: its position in
/// the shard, its outcome code, and for a send its parts and cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeUpdate {
    pub pos: u32,
    pub code: u8,
    pub segments: u32,
    pub cost_micros: i64,
}

/// The answer to an idempotency claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free and now names the given job.
    New,
    /// The same key with the same body: the existing job.
    Existing(JobId),
    /// The same key with a different body.
    Conflict(JobId),
}

/// A consent change with its origin, kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ConsentChange {
    pub contact_id: String,
    pub channel: Channel,
    pub consent: Consent,
    pub source: String,
    pub at: DateTime<Utc>,
}

/// A job's recipients counted against its tenant's quota for one calendar month (UTC).
#[derive(Debug, Clone, Copy)]
pub struct QuotaReservation<'a> {
    pub tenant: &'a TenantId,
    /// The month as `YYYYMM`, e.g. 202612.
    pub month: u32,
    pub job: &'a JobId,
    pub recipients: u64,
    /// The tenant's monthly quota.
    pub limit: u64,
}

/// What a quota reservation came to; `used` counts every reservation of the month, this
/// one included when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaAnswer {
    /// Counted (or counted before: a job is counted once).
    Reserved { used: u64 },
    /// Not counted: the recipients do not fit in what is left.
    Exceeded { used: u64 },
}

/// The state every herald instance must agree on.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Facts for each query of `tenant`'s recipients, in order.
    async fn recipient_facts(
        &self,
        tenant: &TenantId,
        channel: Channel,
        queries: &[FactsQuery<'_>],
    ) -> Result<Vec<RecipientFacts>, StoreError>;

    /// Adds entries to `tenant`'s suppression list; answers how many were new.
    async fn add_suppressions(
        &self,
        tenant: &TenantId,
        keys: &[SuppressionKey],
    ) -> Result<usize, StoreError>;

    /// Removes one entry of `tenant`'s list; answers whether it was present.
    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        key: &SuppressionKey,
    ) -> Result<bool, StoreError>;

    /// Records consent changes of `tenant`'s contacts (they override its book from now on).
    async fn record_consent(
        &self,
        tenant: &TenantId,
        changes: &[ConsentChange],
    ) -> Result<(), StoreError>;

    /// Every consent change recorded for one of `tenant`'s contacts, oldest first (the audit
    /// trail).
    async fn consent_history(
        &self,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Vec<ConsentChange>, StoreError>;

    /// Every consent change of `tenant` recorded at or after `since`, oldest first (reports
    /// count the opt-outs that followed a send).
    async fn consent_changes_since(
        &self,
        tenant: &TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConsentChange>, StoreError>;

    /// Atomically checks every rule matching each request and, only when all pass, reserves
    /// a slot at `now` for the request's holder. Answers per request whether it was reserved.
    /// Two callers racing for the same contact can never exceed a cap together. A holder that
    /// already holds a reservation inside the longest matching window is granted without a
    /// second slot (idempotent retries).
    async fn reserve_caps(
        &self,
        rules: &[CapRule],
        requests: &[CapRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Puts back reservations that sends made at their time, without checking any cap (the
    /// sends happened): a store that lost its reservations (a Redis that came back empty) is
    /// rebuilt from what this instance's journal says it sent. Idempotent per holder: a holder
    /// with a reservation keeps it. Reservations older than every matching window are skipped.
    async fn restore_caps(
        &self,
        rules: &[CapRule],
        reservations: &[(CapRequest, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Gives back the reservations the requests' holders hold (a permanent send failure).
    /// Reservations are found by holder, not by `reserved_at`: a retry granted against an
    /// earlier reservation releases that one.
    async fn release_caps(
        &self,
        requests: &[CapRequest],
        reserved_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Claims an idempotency key for a body fingerprint on behalf of `job`.
    async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        job: &JobId,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Records the signature of a verified callback until `expires` (after which its
    /// timestamp can no longer verify); answers true the first time, false for a replay.
    /// Atomic: of two callers racing with one signature, exactly one gets true. Survives a
    /// restart with a durable backend and is shared by every instance with Redis, so a
    /// captured request cannot be applied again after a restart or on another instance.
    async fn first_callback_use(
        &self,
        signature: [u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets a signature whose request could not be applied, so the sender's retry applies.
    async fn forget_callback_use(&self, signature: [u8; 32]) -> Result<(), StoreError>;

    /// Drops signatures that expired by `now` so storage stays bounded (by the callback rate
    /// times the signature window); answers how many. An expired signature already counts as
    /// unseen, so this only frees space; backends whose entries expire by themselves answer 0.
    async fn prune_callback_uses(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Writes an API key's record (a new key, or a revoked one), replacing the record of its
    /// id. Every instance sharing the backend sees it on its next lookup.
    async fn save_api_key(&self, key: &StoredKey) -> Result<(), StoreError>;

    /// The record of the key with `id`, revoked or not.
    async fn api_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;

    /// Every key's record, in no particular order.
    async fn api_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Counts a job's recipients against its tenant's monthly quota unless they would pass
    /// its limit. Atomic across instances sharing the backend, so two jobs racing for the
    /// last room cannot both get it; a job already counted for the month is answered as
    /// reserved without being counted again (a retried submission keeps one reservation).
    async fn reserve_quota(&self, r: &QuotaReservation<'_>) -> Result<QuotaAnswer, StoreError>;

    /// Gives back a job's reservation (a submission that was not recorded after all); a job
    /// without one changes nothing.
    async fn release_quota(
        &self,
        tenant: &TenantId,
        month: u32,
        job: &JobId,
    ) -> Result<(), StoreError>;

    /// Recipients counted against a tenant's quota in a month.
    async fn quota_used(&self, tenant: &TenantId, month: u32) -> Result<u64, StoreError>;

    /// Whether the backend answers right now, within its usual timeout: one cheap round trip
    /// for a networked backend, always yes for one inside the process. Readiness and the
    /// dispatch gate read it through [`StateHealth`], never on a request's path.
    async fn ping(&self) -> Result<(), StoreError>;
}
