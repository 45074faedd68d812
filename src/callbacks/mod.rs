//! The way back from providers: signed delivery receipts and inbound replies.
//!
//! - `signature.rs`: HMAC-SHA256 over `timestamp + "." + raw body`, checked before parsing.
//! - `dialect/`: the receipt formats and authentication of the cloud SMS providers
//!   (Alibaba Cloud, Tencent Cloud, Twilio), answered the way each expects.
//! - `replay.rs`: recognises a signed request seen before within the window, across
//!   restarts and instances (the signatures are kept in the state store).
//! - `receipt.rs`, `inbound.rs`, `wire.rs`: the body formats (object, array or NDJSON).
//! - `message_id.rs`, `index.rs`: provider message id → (job, recipient), filled by workers
//!   through [`SendObserver`]; early receipts parked; the `unknown` timeout swept.
//! - `follow.rs`: WeChat follows and unfollows, applied to the follower's WeChat consent.
//! - `keywords.rs`: STOP / 退订 / START … in replies, width- and case-insensitive.
//!
//! **Replays.** Both endpoints accept a replayed request (the same signature again within
//! the window) idempotently, and it never changes anything twice. Receipts are idempotent by
//! construction (a message's state only moves forward, the first final receipt wins), so a
//! replay is applied again and every receipt in it counts as a duplicate; a provider that
//! retries after losing our answer gets 200. Inbound replies are not idempotent over time
//! (replaying an old `START` after a `STOP` would subscribe someone again), so a replayed
//! inbound request is answered 200 with `"replayed": true` and applies nothing.

pub mod bounce;
pub mod connection;
pub mod dialect;
pub mod follow;
pub mod inbound;
pub mod index;
pub mod keywords;
pub mod message_id;
pub mod receipt;
pub mod replay;
pub mod signature;
pub(crate) mod wire;

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::access::TenantId;
use crate::clock::Clock;
use crate::config::{Config, MessageIdFormat};
use crate::dispatch::{AcceptedMessage, Job, SendObserver};
use crate::domain::{Channel, Consent};
use crate::phone::{self, RegionCode};
use crate::snapshot::ContactBooks;
use crate::store::{ConsentChange, StateStore, StoreError, SuppressionKey};

use inbound::{Inbound, InboundTally};
use index::{IndexLimits, MessageIndex, Resolution, SweepReport};
use keywords::Intent;
use receipt::Receipt;
use replay::ReplayGuard;
use signature::{SignatureError, Verified, Verifier};

/// One provider as callbacks see it.
#[derive(Debug)]
pub struct ProviderCallbacks {
    pub name: String,
    /// Its slot in the dispatcher (config order).
    pub slot: u16,
    pub channel: Channel,
    pub format: MessageIdFormat,
    verifier: Verifier,
    /// How its receipts are authenticated, read and answered.
    pub dialect: dialect::ReceiptDialect,
    /// Receipts come back on the provider's own connection (SMPP), not signed over HTTP.
    receipts_on_connection: bool,
}

impl ProviderCallbacks {
    /// Whether callbacks are configured (a secret is set).
    pub fn accepts_callbacks(&self) -> bool {
        self.verifier.is_configured() || self.dialect.is_configured()
    }

    /// Whether receipts can come back for its sends (signed callbacks, or its own
    /// connection); only then are its sends indexed.
    pub fn expects_receipts(&self) -> bool {
        self.receipts_on_connection || self.accepts_callbacks()
    }
}

/// What a batch of receipts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReceiptTally {
    /// Receipts that moved a message forward (or recorded a new part of it).
    pub applied: u64,
    /// Receipts for messages already settled, or parts already reported.
    pub duplicates: u64,
    /// Receipts for ids no message is registered under (kept a while in case the send answer
    /// is still on its way, then dropped).
    pub unknown: u64,
}

/// The callbacks service.
pub struct Callbacks {
    providers: Vec<ProviderCallbacks>,
    index: MessageIndex,
    replay: ReplayGuard,
    store: Arc<dyn StateStore>,
    books: Arc<ContactBooks>,
    clock: Arc<dyn Clock>,
    default_region: RegionCode,
    sweep_interval: Duration,
    max_body_bytes: usize,
    /// Where consent changes are journaled for event webhooks, when the journal is kept.
    consent_log: std::sync::OnceLock<crate::dispatch::journal::Journal>,
    /// Where they are appended for a fleet's event webhooks, when instances share the work.
    consent_stream: std::sync::OnceLock<Arc<crate::store::RedisEvents>>,
}

impl Callbacks {
    /// Journals consent changes from now on (for event webhooks).
    pub fn journal_consent(&self, journal: crate::dispatch::journal::Journal) {
        let _ = self.consent_log.set(journal);
    }

    /// Appends consent changes to the fleet's event streams from now on (for event
    /// webhooks when instances share the work).
    pub fn stream_consent(&self, events: Arc<crate::store::RedisEvents>) {
        let _ = self.consent_stream.set(events);
    }

    /// Builds the service from the configuration (secrets already read from the environment).
    pub fn new(
        config: &Config,
        store: Arc<dyn StateStore>,
        books: Arc<ContactBooks>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Callbacks> {
        let c = &config.callbacks;
        let providers = config
            .providers
            .iter()
            .enumerate()
            .map(|(slot, p)| {
                let receipts_on_connection = p.kind == crate::config::ProviderKind::Smpp;
                let dialect = dialect::ReceiptDialect::from_config(p, c.signature_tolerance_seconds);
                let configured = if dialect.is_herald() {
                    !p.callback_secrets.is_empty()
                } else {
                    dialect.is_configured()
                };
                if !configured && !receipts_on_connection {
                    tracing::warn!(provider = %p.name, "no callback secret set; its receipts and inbound replies will be refused");
                }
                ProviderCallbacks {
                    name: p.name.clone(),
                    slot: slot as u16,
                    channel: p.channel,
                    format: p.message_id_format,
                    verifier: Verifier::new(&p.callback_secrets, c.signature_tolerance_seconds),
                    dialect,
                    receipts_on_connection,
                }
            })
            .collect();
        let secs = |v: u64| v.min(i64::MAX as u64 / 4) as i64;
        Arc::new(Callbacks {
            providers,
            index: MessageIndex::new(IndexLimits {
                receipt_timeout_seconds: secs(c.receipt_timeout_seconds),
                retention_seconds: secs(c.index_retention_seconds),
                pending_seconds: secs(c.pending_receipt_seconds),
                max_pending: c.max_pending_receipts,
            }),
            replay: ReplayGuard::new(store.clone(), secs(c.signature_tolerance_seconds)),
            store,
            books,
            clock,
            default_region: config.snapshot.region(),
            sweep_interval: Duration::from_millis(c.sweep_interval_ms.max(1)),
            max_body_bytes: c.max_body_bytes,
            consent_log: std::sync::OnceLock::new(),
            consent_stream: std::sync::OnceLock::new(),
        })
    }

    /// The provider of that name.
    pub fn provider(&self, name: &str) -> Option<&ProviderCallbacks> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Cap on a callback body.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The provider-id index.
    pub fn index(&self) -> &MessageIndex {
        &self.index
    }

    /// Checks a request's signature headers against its raw body.
    pub fn authenticate(
        &self,
        provider: &ProviderCallbacks,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Verified, SignatureError> {
        let now = self.clock.now().timestamp();
        provider.verifier.verify(timestamp, signature, body, now)
    }

    /// Records a verified request; false when the same signature was already seen (before
    /// a restart too, or by another instance sharing the state). An error means the state
    /// store did not answer and nothing was recorded.
    pub async fn first_use(&self, verified: &Verified) -> Result<bool, StoreError> {
        self.replay.first_use(verified, self.clock.now()).await
    }

    /// Forgets a verified request whose application failed, so the provider's retry applies.
    pub async fn forget_use(&self, verified: &Verified) -> Result<(), StoreError> {
        self.replay.forget(verified).await
    }

    /// Applies receipts of `provider`.
    pub fn apply_receipts(
        &self,
        provider: &ProviderCallbacks,
        receipts: &[Receipt],
    ) -> ReceiptTally {
        self.apply_receipts_noting_unknown(provider, receipts, &mut Vec::new())
    }

    /// Applies receipts of `provider`; adds the positions of those whose message is not
    /// registered here to `unknown` (they are parked, and applied if it is registered soon).
    pub fn apply_receipts_noting_unknown(
        &self,
        provider: &ProviderCallbacks,
        receipts: &[Receipt],
        unknown: &mut Vec<usize>,
    ) -> ReceiptTally {
        let now = self.clock.now().timestamp();
        let mut tally = ReceiptTally::default();
        let mut first_unknown: Option<&str> = None;
        // Receipts applied per job, for a span in each job's trace (only while exporting).
        let mut traced: Vec<(Arc<Job>, u32)> = Vec::new();
        for (n, r) in receipts.iter().enumerate() {
            let key = message_id::key(provider.slot, provider.format, &r.message_id);
            // Looked up first: a message's entry may go once its final state is applied.
            let job = key
                .filter(|_| crate::traces::exporting())
                .and_then(|k| self.index.job_of(k));
            let resolution = match key {
                Some(key) => self.index.apply(key, r.update, now),
                None => Resolution::Unknown,
            };
            if let (Some(job), Resolution::Applied) = (job, resolution) {
                match traced.iter_mut().find(|(j, _)| Arc::ptr_eq(j, &job)) {
                    Some((_, count)) => *count += 1,
                    None => traced.push((job, 1)),
                }
            }
            match resolution {
                Resolution::Applied => tally.applied += 1,
                Resolution::Duplicate => tally.duplicates += 1,
                Resolution::Unknown => {
                    tally.unknown += 1;
                    unknown.push(n);
                    first_unknown.get_or_insert(&r.message_id);
                }
            }
        }
        for (job, applied) in traced {
            let span = tracing::info_span!(
                "job.receipts",
                job_id = %job.id,
                provider = %provider.name,
                applied
            );
            job.trace().adopt(&span);
        }
        if let Some(example) = first_unknown {
            tracing::info!(
                provider = %provider.name,
                unknown = tally.unknown,
                example = %example.chars().take(64).collect::<String>(),
                "receipts for message ids not registered (yet)"
            );
        }
        tally
    }

    /// Registers a message another instance sent (found in the shared index), applying the
    /// receipts parked under its id. Answers false for an id this provider cannot have.
    pub fn adopt_message(
        &self,
        provider: &ProviderCallbacks,
        message_id: &str,
        job: &Arc<Job>,
        index: u32,
    ) -> bool {
        match message_id::key(provider.slot, provider.format, message_id) {
            Some(key) => {
                self.index
                    .register(job, &[(key, index)], self.clock.now().timestamp());
                true
            }
            None => false,
        }
    }

    /// The tenant of the job that sent the message `provider` knows as `message_id`, while
    /// the message is in the index (look it up before applying its final receipt).
    pub fn tenant_of(&self, provider: &ProviderCallbacks, message_id: &str) -> Option<TenantId> {
        let key = message_id::key(provider.slot, provider.format, message_id)?;
        Some(self.index.job_of(key)?.spec.tenant.clone())
    }

    /// Every tenant with a contact book, the default one first.
    pub fn tenants_with_books(&self) -> Vec<TenantId> {
        self.books.with_books()
    }

    /// Applies inbound replies of `provider`: keyword replies change consent at once.
    pub async fn apply_inbound(
        &self,
        provider: &ProviderCallbacks,
        messages: Vec<Inbound>,
    ) -> Result<InboundTally, StoreError> {
        let now = self.clock.now();
        let mut tally = InboundTally {
            received: messages.len() as u64,
            ..InboundTally::default()
        };
        let mut wanted: Vec<(Intent, u64)> = Vec::new();
        for m in &messages {
            let Some(intent) = keywords::classify(&m.text) else {
                tally.ignored += 1;
                continue;
            };
            match phone::parse(&m.from, self.default_region) {
                Ok(p) => wanted.push((intent, p.e164)),
                Err(_) => {
                    tally.unmatched += 1;
                    tracing::warn!(provider = %provider.name, "keyword reply from an unparsable sender");
                }
            }
        }
        if wanted.is_empty() {
            return Ok(tally);
        }
        // A reply names only a number: it applies in every tenant whose book holds it.
        let books = self.books.all();
        let phones: Vec<u64> = wanted.iter().map(|&(_, p)| p).collect();
        let found = tokio::task::spawn_blocking(move || {
            phones
                .iter()
                .map(|&p| {
                    let mut holders: Vec<(TenantId, String)> = Vec::new();
                    for (tenant, store) in &books {
                        let snapshot = store.current();
                        holders.extend(
                            snapshot
                                .contacts_with_phone(p)
                                .iter()
                                .map(|c| (tenant.clone(), c.contact_id().to_string())),
                        );
                    }
                    holders
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("contact lookup: {e}")))?;
        let source = format!("inbound:{}", provider.name);
        let mut changes: Vec<(TenantId, ConsentChange)> = Vec::new();
        let mut suppress = Vec::new();
        for ((intent, e164), contacts) in wanted.into_iter().zip(found) {
            let consent = match intent {
                Intent::OptOut => Consent::OptOut,
                Intent::OptIn => Consent::OptIn,
            };
            match (contacts.is_empty(), intent) {
                (true, Intent::OptOut) => {
                    tally.suppressed_unknown_sender += 1;
                    suppress.push(SuppressionKey::Phone(e164));
                }
                (true, Intent::OptIn) => tally.unmatched += 1,
                (false, Intent::OptOut) => tally.opted_out += 1,
                (false, Intent::OptIn) => tally.opted_in += 1,
            }
            tracing::info!(
                provider = %provider.name,
                sender = %phone::mask(e164),
                intent = ?intent,
                contacts = contacts.len(),
                "inbound keyword reply"
            );
            changes.extend(contacts.into_iter().map(|(tenant, contact_id)| {
                let change = ConsentChange {
                    contact_id,
                    channel: provider.channel,
                    consent,
                    source: source.clone(),
                    at: now,
                };
                (tenant, change)
            }));
        }
        for (tenant, changes) in by_tenant(changes) {
            self.record_consent(&tenant, &changes).await?;
        }
        if !suppress.is_empty() {
            // A STOP from a number no book holds is never lost: every tenant that has a book
            // (and the installation) suppresses the number.
            for tenant in self.books.with_books() {
                self.store.add_suppressions(&tenant, &suppress).await?;
            }
        }
        Ok(tally)
    }

    /// Applies consent changes (inbound replies, unsubscribe links) across running jobs and
    /// announces them to webhooks.
    pub async fn record_consent(
        &self,
        tenant: &TenantId,
        changes: &[ConsentChange],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.store.record_consent(tenant, changes).await?;
        if let Some(journal) = self.consent_log.get() {
            // Applied already; a journal failure loses only the announcement.
            if let Err(e) = journal.record_consent(tenant, changes).await {
                tracing::warn!(error = %e, "consent changes could not be journaled for webhooks");
            }
        }
        if let Some(events) = self.consent_stream.get() {
            // Not acknowledged until announced: the sender repeats it, which applies again
            // harmlessly and announces it then.
            let record = crate::dispatch::journal::consent_record(tenant, changes);
            let stream = crate::store::EventStream::Contacts(tenant.clone());
            events.append(&stream, None, &[record]).await?;
        }
        Ok(())
    }

    /// One sweep: receipt timeouts, index retention, parked receipts. (Expired replay
    /// signatures are pruned from the state store by [`Callbacks::prune_replays`].)
    pub fn sweep(&self) -> SweepReport {
        let now = self.clock.now().timestamp();
        let report = self.index.sweep(now);
        if report != SweepReport::default() {
            tracing::debug!(?report, "callbacks sweep");
        }
        report
    }

    /// Deletes the replay signatures whose window has passed; a store that does not answer
    /// is tried again at the next sweep.
    pub async fn prune_replays(&self) {
        match self.replay.prune(self.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "expired callback signatures forgotten"),
            Err(e) => tracing::debug!(error = %e, "expired callback signatures not pruned yet"),
        }
    }

    /// Runs [`Callbacks::sweep`] and [`Callbacks::prune_replays`] every `sweep_interval_ms`
    /// until the service is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak: Weak<Callbacks> = Arc::downgrade(self);
        let interval = self.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.prune_replays().await;
                // Large sweeps walk many keys: keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || this.sweep()).await;
            }
        });
    }
}

impl SendObserver for Callbacks {
    fn accepted(&self, job: &Arc<Job>, batch: &[AcceptedMessage]) {
        let keys: Vec<_> = batch
            .iter()
            .filter_map(|m| {
                let p = self.providers.get(usize::from(m.provider))?;
                if !p.expects_receipts() {
                    return None;
                }
                message_id::key(p.slot, p.format, &m.provider_message_id).map(|k| (k, m.index))
            })
            .collect();
        if keys.is_empty() {
            return;
        }
        self.index
            .register(job, &keys, self.clock.now().timestamp());
    }
}

/// Changes grouped by their tenant, in first-seen order.
fn by_tenant(changes: Vec<(TenantId, ConsentChange)>) -> Vec<(TenantId, Vec<ConsentChange>)> {
    let mut groups: Vec<(TenantId, Vec<ConsentChange>)> = Vec::new();
    for (tenant, change) in changes {
        match groups.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, group)) => group.push(change),
            None => groups.push((tenant, vec![change])),
        }
    }
    groups
}
