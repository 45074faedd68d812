//! What happens after the provider answers a chunk: each answer recorded (sent, failed, to
//! retry), the job's counts and receipts updated, and the answers made durable with their
//! ledger charges on a task of their own, so the worker goes straight on. Also the settling
//! of in-doubt messages that a receipt proves were sent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::dispatcher::Inner;
use super::in_doubt::InDoubtSettler;
use super::job::Job;
use super::journal::codec::{SettledItem, Settlement};
use super::share::EventNote;
use super::simulated_receipts::ReceiptBatch;
use super::worker::{message_cost, release_caps, Meta};
use crate::domain::{Address, Consent};
use crate::domain::{MessageId, Micros};
use crate::ledger::charge_rows::{HeaderRef, RowRef};
use crate::ledger::{EntryBatch, EntryKind, NewEntry, SharedHeaderBatchBuilder};
use crate::metrics;
use crate::provider::{AddressFate, OutboundMessage, SendOutcome};
use crate::store::{ConsentChange, SuppressionKey};

/// What the providers did not take this time: the messages to send again, how long they
/// asked us to wait, and how many of them failed transiently (the rest were throttled).
#[derive(Default)]
pub(super) struct Unanswered {
    pub metas: Vec<Meta>,
    pub messages: Vec<OutboundMessage>,
    pub throttle: Duration,
    pub transient: usize,
}

impl Unanswered {
    /// Adds what another provider did not take.
    pub fn absorb(&mut self, mut other: Unanswered) {
        self.metas.append(&mut other.metas);
        self.messages.append(&mut other.messages);
        self.throttle = self.throttle.max(other.throttle);
        self.transient += other.transient;
    }
}

/// Records the provider's answers; hands back what it did not take.
pub(super) async fn record_outcomes(
    inner: &Inner,
    job: &Arc<Job>,
    provider: usize,
    metas: Vec<Meta>,
    messages: Vec<OutboundMessage>,
    outcomes: Vec<SendOutcome>,
    decided_at: DateTime<Utc>,
) -> Unanswered {
    let slot = &inner.deps.providers[provider];
    let mut receipts = Vec::new();
    let mut receipt_after = Duration::ZERO;
    let mut to_release = Vec::new();
    let mut fates = Vec::new();
    let mut cost_total = 0i64;
    let mut accepted = Vec::new();
    let (mut retry_metas, mut retry_messages, mut throttle) =
        (Vec::new(), Vec::new(), Duration::ZERO);
    let mut transient = 0usize;
    let mut sent: Vec<(u32, u32, i64)> = Vec::new();
    // Charges are encoded and hashed on the settling task, off the worker's path: here only
    // what they need is kept, the message id and unit price of each sent item in `settled`.
    let charging = inner.deps.charging;
    let mut charged: Vec<(MessageId, Micros)> = Vec::new();
    // Answers are only worth recording when the send log keeps them: in memory with the
    // ledger off, nothing would read them, and the sends count at once.
    let keeping = inner.deps.send_log.keeps_answers();
    // A job shared by a fleet writes its events with its outcomes (see `EventNote`); the
    // sends' events are noted together once the chunk is read, before any is recorded sent.
    let shared = job.share().is_some();
    let mut events: Vec<(u32, EventNote)> = Vec::new();
    let mut settled: Vec<SettledItem> = Vec::new();
    let now = inner.deps.clock.now();
    for ((meta, message), outcome) in metas.into_iter().zip(messages).zip(outcomes) {
        match outcome {
            SendOutcome::Accepted {
                provider_message_id,
            } => {
                let unit = job.unit_price(provider, meta.region);
                let cost = unit.times(message.parts);
                if charging {
                    charged.push((message.id, unit));
                }
                let item = (keeping || shared).then(|| SettledItem {
                    index: meta.index,
                    settlement: Settlement::Sent,
                    parts: message.parts,
                    cost_micros: cost.0,
                    region: meta.region,
                    provider_message_id: provider_message_id.clone(),
                });
                if let (true, Some(item)) = (shared, &item) {
                    events.push((meta.index, settled_event(provider, now, item.clone())));
                }
                if let (true, Some(item)) = (keeping, item) {
                    settled.push(item);
                }
                sent.push((meta.index, message.parts, cost.0));
                cost_total = cost_total.saturating_add(cost.0);
                accepted.push(super::AcceptedMessage {
                    provider: provider as u16,
                    index: meta.index,
                    region: meta.region,
                    parts: message.parts,
                    cost_micros: cost.0,
                    provider_message_id,
                });
                if let Some(r) = slot.provider.simulated_receipt(&message) {
                    receipt_after = r.after;
                    receipts.push((meta.index, r.status));
                }
            }
            SendOutcome::Permanent { .. } | SendOutcome::Unreachable { .. } => {
                if let SendOutcome::Unreachable { fate, .. } = &outcome {
                    fates.push((*fate, meta.index, message.to.clone()));
                }
                if let Some(share) = job.share() {
                    let item = failed_item(&meta, &message);
                    share.note_event(meta.index, settled_event(provider, now, item));
                }
                if keeping {
                    settled.push(failed_item(&meta, &message));
                }
                job.progress
                    .budget
                    .give_back(message_cost(job, &meta, &message));
                job.record_failed(meta.index);
                to_release.extend(meta.cap);
            }
            SendOutcome::Throttled { retry_after } => {
                throttle = throttle.max(retry_after);
                retry_metas.push(meta);
                retry_messages.push(message);
            }
            SendOutcome::Transient { .. } => {
                transient += 1;
                retry_metas.push(meta);
                retry_messages.push(message);
            }
            SendOutcome::Unavailable { .. } => {
                transient += 1;
                retry_metas.push(Meta {
                    refused: true,
                    ..meta
                });
                retry_messages.push(message);
            }
        }
    }
    if let Some(share) = job.share() {
        share.note_events(events);
    }
    metrics::cost(
        job.spec.channel,
        slot.provider.name(),
        job.currency,
        cost_total,
    );
    // A send counts as sent only once its ledger entry is durable. The commit is awaited on
    // its own task (bounded), so workers keep sending while the ledger groups many chunks
    // into one disk sync.
    if !settled.is_empty() {
        let permit = inner.ledger_slots.clone().acquire_owned().await.ok();
        let log = inner.deps.send_log.clone();
        let job = job.clone();
        let slot_no = provider;
        tokio::spawn(async move {
            // Encoded and hashed on the runtime's threads: a hand-over to a blocking thread
            // would cost two wake-ups per chunk, more than the work itself on two cores.
            let entries = charges(&job, job.provider_at(slot_no), &settled, &charged, now);
            log.settled(&job, slot_no, now, settled, entries).await;
            for (index, parts, cost) in sent {
                job.record_sent(index, parts, cost);
            }
            drop(log);
            drop(permit);
        });
    } else {
        for (index, parts, cost) in sent {
            job.record_sent(index, parts, cost);
        }
    }
    release_caps(inner, &to_release, decided_at).await;
    apply_fates(inner, job, slot.provider.name(), &fates, now).await;
    job.record_accepted(&accepted, now);
    if let Some(observer) = &inner.deps.observer {
        observer.accepted(job, &accepted);
    }
    if !receipts.is_empty() {
        let batch = ReceiptBatch {
            due: Instant::now() + receipt_after,
            job: job.clone(),
            receipts,
        };
        // Backpressure: a full queue slows the sender rather than dropping receipts.
        let _ = inner.receipts.send(batch).await;
    }
    Unanswered {
        metas: retry_metas,
        messages: retry_messages,
        throttle,
        transient,
    }
}

/// The ledger charges of the sent items in `settled`, in order; `charged` holds the message id
/// and unit price of each of them. They share kind, job, campaign, channel, provider, currency
/// and time, so they are written as one form 3 batch.
fn charges(
    job: &Job,
    provider: &str,
    settled: &[SettledItem],
    charged: &[(MessageId, Micros)],
    at: DateTime<Utc>,
) -> EntryBatch {
    let header = HeaderRef {
        kind: EntryKind::Charge,
        job_id: job.id.as_str(),
        campaign_id: &job.spec.campaign_id,
        channel: job.spec.channel,
        provider,
        currency: job.currency,
        at,
    };
    let mut batch = SharedHeaderBatchBuilder::new(&header, charged.len());
    let mut id_text = [0u8; 36];
    let sent = settled.iter().filter(|s| s.settlement == Settlement::Sent);
    for (item, (id, unit)) in sent.zip(charged) {
        batch.push(&RowRef {
            message_id: id.write_str(&mut id_text),
            country: item.region.as_str(),
            parts: item.parts,
            unit_price_micros: *unit,
            cost_micros: Micros(item.cost_micros),
            references: None,
            provider_message_id: Some(&item.provider_message_id),
        });
    }
    batch.finish()
}

/// Settles in-doubt messages when a receipt proves they reached the provider.
pub(super) struct Settler(pub std::sync::Weak<Inner>);

impl InDoubtSettler for Settler {
    fn settle(&self, id: &crate::domain::JobId, index: u32) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let Some(job) = inner.job(id) else {
            return;
        };
        settle_sent(&inner, &job, index, None);
    }
}

/// Settles in-doubt message `index` as sent, under `provider_message_id` when the provider
/// told it (else herald's own id); only the first settling of a message does anything.
pub(super) fn settle_sent(
    inner: &Inner,
    job: &Arc<Job>,
    index: u32,
    provider_message_id: Option<String>,
) {
    let Some(message) = job.progress.in_doubt.take(index) else {
        return;
    };
    let message_id = MessageId::derive(&job.id, job.audience.contact_id(index), job.spec.channel);
    let provider_message_id = provider_message_id.unwrap_or_else(|| message_id.to_string());
    let now = inner.deps.clock.now();
    let settled = vec![SettledItem {
        index,
        settlement: Settlement::Sent,
        parts: message.parts,
        cost_micros: message.cost_micros,
        region: message.region,
        provider_message_id: provider_message_id.clone(),
    }];
    if let Some(share) = job.share() {
        share.note_event(
            index,
            settled_event(message.provider, now, settled[0].clone()),
        );
    }
    let entries = match inner.deps.charging {
        true => EntryBatch::of(&[NewEntry {
            kind: EntryKind::Charge,
            message_id: message_id.to_string(),
            job_id: job.id.to_string(),
            campaign_id: job.spec.campaign_id.clone(),
            channel: job.spec.channel,
            provider: job.provider_at(message.provider).to_string(),
            country: message.region.as_str().to_string(),
            parts: message.parts,
            unit_price_micros: job.unit_price(message.provider, message.region),
            cost_micros: crate::domain::Micros(message.cost_micros),
            currency: job.currency,
            at: now,
            references: None,
            provider_message_id: Some(provider_message_id),
        }]),
        false => EntryBatch::empty(),
    };
    let log = inner.deps.send_log.clone();
    let job = job.clone();
    tokio::spawn(async move {
        log.settled(&job, message.provider, now, settled, entries)
            .await;
        job.settle_in_doubt(index, message);
        tracing::info!(job = %job.id, index, "an in-doubt message was settled as sent");
    });
}

/// A provider's answer as an event of a job a fleet shares.
fn settled_event(provider: usize, at: DateTime<Utc>, item: SettledItem) -> EventNote {
    EventNote::Settled {
        provider: provider as u16,
        at: at.timestamp(),
        item,
    }
}

pub(super) fn failed_item(meta: &Meta, message: &OutboundMessage) -> SettledItem {
    SettledItem {
        index: meta.index,
        settlement: Settlement::Failed,
        parts: message.parts,
        cost_micros: 0,
        region: meta.region,
        provider_message_id: String::new(),
    }
}

/// Applies what providers said of addresses beyond the message: a dead push token is
/// suppressed (the contact's other tokens and channels stay), a WeChat unfollow opts the
/// contact out of the job's channel. The message itself has already failed; a store that
/// does not answer loses only this, and the provider will say it again next time.
async fn apply_fates(
    inner: &Inner,
    job: &Arc<Job>,
    provider: &str,
    fates: &[(AddressFate, u32, Address)],
    now: DateTime<Utc>,
) {
    if fates.is_empty() {
        return;
    }
    let mut suppress = Vec::new();
    let mut opt_outs = Vec::new();
    for (fate, index, address) in fates {
        match fate {
            AddressFate::Suppress => {
                if let Some(entry) = address.suppression_entry() {
                    suppress.push(SuppressionKey::Address(entry));
                }
            }
            AddressFate::OptOut => opt_outs.push(ConsentChange {
                contact_id: job.audience.contact_id(*index).to_string(),
                channel: job.spec.channel,
                consent: Consent::OptOut,
                source: format!("provider:{provider}"),
                at: now,
            }),
        }
    }
    if !suppress.is_empty() {
        match inner
            .deps
            .store
            .add_suppressions(&job.spec.tenant, &suppress)
            .await
        {
            Ok(_) => tracing::info!(
                provider,
                count = suppress.len(),
                "dead addresses suppressed"
            ),
            Err(e) => {
                tracing::warn!(provider, error = %e, "dead addresses could not be suppressed")
            }
        }
    }
    if !opt_outs.is_empty() {
        match inner
            .deps
            .store
            .record_consent(&job.spec.tenant, &opt_outs)
            .await
        {
            Ok(()) => tracing::info!(
                provider,
                count = opt_outs.len(),
                "contacts opted out by their provider"
            ),
            Err(e) => {
                tracing::warn!(provider, error = %e, "provider opt-outs could not be recorded")
            }
        }
    }
}
