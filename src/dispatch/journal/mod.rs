//! The dispatch journal: what a restart needs to finish every job without sending anything
//! twice. It lives in the embedded database beside the cost ledger and is written through the
//! durable layer's group-commit writer ([`crate::durable`]), so a message is marked settled in
//! the same transaction that writes its charge.
//!
//! - A job's plan (request without the audience) and its audience, once, before the job is
//!   acknowledged; its control record (status, budget) on every status change.
//! - A `sending` record for each chunk, durable before the chunk reaches the provider.
//! - A `settled` record for each provider answer (sent or failed), with the ledger charge.
//!
//! The message records go in the durable writer's record log, so a group commit writes all of
//! a round's records as one value.
//!
//! On start, recipients with a settled record keep their outcome, recipients in `sending`
//! without one were in flight at the crash, and everything else is decided again.

pub mod codec;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::audience::{Audience, AudienceBuilder};
use super::job::{Job, JobSpec};
use crate::domain::{JobId, JobStatus};
use crate::durable::tables::{
    JOURNAL_AUDIENCES as AUDIENCES, JOURNAL_CONTROLS as CONTROLS, JOURNAL_PLANS as PLANS,
};
use crate::durable::{self, Durability, Durable, DurableError, ExtraWrite, PendingCommit};
use crate::ledger::{Chainer, EntryBatch, LedgerError};
use crate::template::rollout::RolloutDecision;
use codec::{CodecError, LogRecord, SendingItem, SettledItem, StoredRecipient, AUDIENCE_CHUNK};

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal database: {0}")]
    Db(String),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

fn db_err(e: impl std::fmt::Display) -> JournalError {
    JournalError::Db(e.to_string())
}

/// A job as accepted, minus its audience: with the audience, enough to plan it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredJob {
    pub id: JobId,
    pub spec: JobSpec,
    pub variables: HashMap<String, String>,
    /// Whether the template's links were tracked.
    pub track_links: bool,
    pub audience_len: u64,
    /// Shards the job was split into.
    pub shards: usize,
}

impl StoredJob {
    /// The stored form of a planned job.
    pub fn of(job: &Job) -> StoredJob {
        StoredJob {
            id: job.id.clone(),
            spec: job.spec.clone(),
            variables: job.policy.job_variables.clone(),
            track_links: job.links().is_some(),
            audience_len: job.audience.len() as u64,
            shards: job.shard_count(),
        }
    }
}

/// Reads an audience back from its chunks; `expected` recipients or an error.
pub fn decode_audience(chunks: &[Vec<u8>], expected: u64) -> Result<Audience, JournalError> {
    let mut builder = AudienceBuilder::new();
    for chunk in chunks {
        push_audience_chunk(&mut builder, chunk)?;
    }
    if builder.len() as u64 != expected {
        return Err(JournalError::Db(format!(
            "audience incomplete: {} of {expected} recipients",
            builder.len()
        )));
    }
    Ok(builder.finish())
}

/// Adds the recipients of one stored audience chunk.
fn push_audience_chunk(builder: &mut AudienceBuilder, chunk: &[u8]) -> Result<(), JournalError> {
    codec::decode_audience_chunk(chunk, |cid, phone, vars| {
        builder
            .push(cid, phone, vars)
            .map_err(|_| codec::CodecError::Unreadable("recipient"))
    })?;
    Ok(())
}

/// The mutable part of a job, written on every status change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobControl {
    pub status: JobStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub budget_micros: Option<i64>,
    /// A variants rollout's winner once chosen (absent in records written before rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutDecision>,
}

impl JobControl {
    /// The job's control record as it stands.
    pub fn of(job: &Job) -> JobControl {
        let st = job.state();
        JobControl {
            status: st.status,
            started_at: st.started_at,
            finished_at: st.finished_at,
            budget_micros: job.progress.budget.limit(),
            rollout: job.rollout_decision(),
        }
    }
}

/// A job read back from the journal.
pub struct RecoveredJob {
    pub stored: StoredJob,
    pub audience: Audience,
    pub control: Option<JobControl>,
    /// Messages handed to a provider whose answer was never recorded, by recipient, with the
    /// provider's name (None in records written before routing: the job's first provider).
    pub in_flight: HashMap<u32, (Option<Arc<str>>, SendingItem)>,
    /// Final provider answers, in the order they were recorded, with the time (Unix seconds)
    /// each answer arrived and the provider's name (as for `in_flight`).
    pub settled: Vec<(i64, Option<Arc<str>>, SettledItem)>,
    /// Final delivery states from receipts: (recipient, state code, Unix seconds).
    pub deliveries: Vec<(u32, u8, i64)>,
    /// Opens and clicks: (recipient, what, Unix seconds), as [`codec::encode_engaged`].
    pub engaged: Vec<(u32, u8, i64)>,
    /// Outcomes decided without a provider call, as written when the job ended: (recipient,
    /// outcome code).
    pub decided: Vec<(u32, u8)>,
    /// Recipients an earlier restart found in doubt and announced.
    pub announced_in_doubt: HashSet<u32>,
}

/// Notes waiting for a flush, by job: per minute (Unix seconds / 60) they were applied in,
/// the (recipient, code) pairs.
type Noted = HashMap<JobId, Vec<(i64, Vec<(u32, u8)>)>>;

/// Encodes one job's notes of one minute as a record (`delivered` or `engaged`).
type NoteEncoder = fn(&str, i64, &[(u32, u8)]) -> Vec<u8>;

/// Final delivery states (`delivered` records) and opens and clicks (`engaged` records).
#[derive(Default)]
struct NotedDeliveries {
    states: Noted,
    engaged: Noted,
}

/// Where jobs note final delivery states, opens and clicks for the journal to flush. Holds
/// no database handle, so a job outliving its gateway (in a late receipt's queue) keeps
/// nothing open.
#[derive(Clone, Default)]
pub struct DeliveryNotes(Arc<parking_lot::Mutex<NotedDeliveries>>);

/// Adds `items` to `job`'s notes of the minute of `at`.
fn note_in(noted: &mut Noted, job: &JobId, at: DateTime<Utc>, items: &[(u32, u8)]) {
    let minute = at.timestamp().div_euclid(60);
    // The job's id is copied only for its first note since a flush.
    let minutes = match noted.get_mut(job) {
        Some(minutes) => minutes,
        None => noted.entry(job.clone()).or_default(),
    };
    match minutes.last_mut() {
        Some((m, list)) if *m == minute => list.extend_from_slice(items),
        _ => minutes.push((minute, items.to_vec())),
    }
}

impl DeliveryNotes {
    /// Notes opens and clicks of one job's messages at `at`: (index, `ENGAGED_OPEN` or 1 +
    /// the link's number).
    pub fn note_engaged(&self, job: &JobId, at: DateTime<Utc>, items: &[(u32, u8)]) {
        if !items.is_empty() {
            note_in(&mut self.0.lock().engaged, job, at, items);
        }
    }

    /// Notes final delivery states of one job's messages applied at `at`, (index, state)
    /// each, with one lock and one lookup for a whole batch of receipts;
    /// [`Journal::flush_deliveries`] makes them durable. The minute is kept, so the job's
    /// per-minute series reads the same after a restart.
    pub fn note(&self, job: &JobId, at: DateTime<Utc>, states: &[(u32, u8)]) {
        if !states.is_empty() {
            note_in(&mut self.0.lock().states, job, at, states);
        }
    }
}

/// The `consent` record of `tenant`'s consent changes, as event webhooks read it.
pub fn consent_record(
    tenant: &crate::access::TenantId,
    changes: &[crate::store::ConsentChange],
) -> Vec<u8> {
    let items: Vec<codec::ConsentItem> = changes
        .iter()
        .map(|c| codec::ConsentItem {
            contact_id: c.contact_id.clone(),
            channel: c.channel.index() as u8,
            consent: match c.consent {
                crate::domain::Consent::OptOut => 2,
                _ => 1,
            },
            source: c.source.clone(),
            at: c.at.timestamp(),
        })
        .collect();
    codec::encode_consent(tenant, &items)
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    durable: Durable<Chainer>,
    /// Delivery states noted since the last flush.
    deliveries: DeliveryNotes,
}

impl Journal {
    /// Opens the journal's tables in the durable layer's database.
    pub fn open(durable: Durable<Chainer>) -> Result<Journal, JournalError> {
        let db = durable.database();
        let w = db.begin_write().map_err(db_err)?;
        w.open_table(PLANS).map_err(db_err)?;
        w.open_table(AUDIENCES).map_err(db_err)?;
        w.open_table(CONTROLS).map_err(db_err)?;
        w.commit().map_err(db_err)?;
        Ok(Journal {
            durable,
            deliveries: DeliveryNotes::default(),
        })
    }

    /// Stores a newly accepted job and its audience; answers once they are durable.
    pub async fn record_job(&self, job: Arc<Job>) -> Result<(), JournalError> {
        let stored = StoredJob::of(&job);
        let control = JobControl::of(&job);
        // Encoding a multi-million audience takes a moment: off the async runtime.
        let extra = tokio::task::spawn_blocking(move || -> Result<ExtraWrite, JournalError> {
            let plan = codec::encode_plan(&stored).map_err(db_err)?;
            let control = codec::encode_control(&control).map_err(db_err)?;
            let chunks = audience_chunks(&job.audience);
            let id = job.id.as_str().to_string();
            Ok(Box::new(move |w: &redb::WriteTransaction| {
                w.open_table(PLANS)?.insert(id.as_str(), plan.as_slice())?;
                w.open_table(CONTROLS)?
                    .insert(id.as_str(), control.as_slice())?;
                let mut t = w.open_table(AUDIENCES)?;
                for (n, chunk) in chunks.iter().enumerate() {
                    t.insert((id.as_str(), n as u32), chunk.as_slice())?;
                }
                Ok(())
            }))
        })
        .await
        .map_err(db_err)??;
        self.durable
            .commit_records_with(Vec::new(), vec![extra])?
            .wait()
            .await?;
        Ok(())
    }

    /// Hands the job's control record to the writer. Hand-over order is commit order, so
    /// the last status change handed over is the one a restart sees. When the job has ended,
    /// the outcomes it decided without a provider call (rejections, and the deferrals of a
    /// cancelled job) go in the same commit: they are not journaled while it runs, being cheap to decide
    /// again, but a finished job must read the same after a restart. The record is written even
    /// when empty: it marks the job's end in the journal (webhooks announce it from there).
    pub fn record_control(&self, job: &Job) -> Result<PendingCommit, JournalError> {
        let control = JobControl::of(job);
        let mut records = Vec::new();
        if control.status.is_terminal() {
            let decided = job.decided_without_send();
            records.push(codec::encode_decided(job.id.as_str(), &decided));
        }
        if control.status == crate::domain::JobStatus::BudgetExhausted {
            let at = job.progress.now().timestamp();
            records.push(codec::encode_budget_exhausted(job.id.as_str(), at));
        }
        let control = codec::encode_control(&control).map_err(db_err)?;
        let id = job.id.as_str().to_string();
        let extra: ExtraWrite = Box::new(move |w| {
            w.open_table(CONTROLS)?
                .insert(id.as_str(), control.as_slice())?;
            Ok(())
        });
        Ok(self.durable.commit_records_with(records, vec![extra])?)
    }

    /// Records a chunk as handed to the provider ([`codec::encode_sending`]; callers encode
    /// off the async runtime); wait on the answer before sending. A chunk that then does not
    /// go out is taken back the same way ([`codec::encode_withdrawn`]).
    pub fn sending(&self, record: Vec<u8>) -> Result<PendingCommit, JournalError> {
        Ok(self
            .durable
            .commit(None, vec![record], Vec::new(), Durability::Now)?)
    }

    /// Records provider answers ([`codec::encode_settled`]) together with their ledger
    /// charges, in one transaction; its sync may wait for the next chunk's (nothing is sent
    /// on the strength of an answer being durable).
    pub fn settle(
        &self,
        record: Vec<u8>,
        charges: &EntryBatch,
    ) -> Result<PendingCommit, JournalError> {
        let charges = (!charges.is_empty()).then(|| charges.clone());
        Ok(self
            .durable
            .commit(charges, vec![record], Vec::new(), Durability::Soon)?)
    }

    /// Records recipients a restart found in doubt, for event webhooks; each is recorded once
    /// (recovery leaves out those an earlier restart announced).
    pub async fn record_in_doubt(
        &self,
        job: &JobId,
        at: i64,
        items: &[u32],
    ) -> Result<(), JournalError> {
        let record = codec::encode_in_doubt(job.as_str(), at, items);
        self.durable
            .commit(None, vec![record], Vec::new(), Durability::Soon)?
            .wait()
            .await?;
        Ok(())
    }

    /// Records consent changes of `tenant`'s contacts, for its event webhooks (the state
    /// store keeps the consent itself).
    pub async fn record_consent(
        &self,
        tenant: &crate::access::TenantId,
        changes: &[crate::store::ConsentChange],
    ) -> Result<(), JournalError> {
        let record = consent_record(tenant, changes);
        self.durable
            .commit(None, vec![record], Vec::new(), Durability::Soon)?
            .wait()
            .await?;
        Ok(())
    }

    /// Where jobs note final delivery states.
    pub fn delivery_notes(&self) -> DeliveryNotes {
        self.deliveries.clone()
    }

    /// Hands every delivery state noted so far to the writer. Commits land in hand-over
    /// order, so once this commit is durable every state noted before the call is too (even
    /// those a concurrent flush took).
    pub fn flush_deliveries(&self) -> Result<PendingCommit, JournalError> {
        let pending = std::mem::take(&mut *self.deliveries.0.lock());
        let encode = |noted: &Noted, f: NoteEncoder| -> Vec<Vec<u8>> {
            noted
                .iter()
                .flat_map(|(job, minutes)| {
                    minutes
                        .iter()
                        .map(move |(minute, items)| f(job.as_str(), minute * 60, items))
                })
                .collect()
        };
        let mut records = encode(&pending.states, codec::encode_delivered);
        records.extend(encode(&pending.engaged, codec::encode_engaged));
        Ok(self
            .durable
            .commit(None, records, Vec::new(), Durability::Now)?)
    }

    /// Whether delivery states wait for a flush.
    pub fn deliveries_pending(&self) -> bool {
        let noted = self.deliveries.0.lock();
        !noted.states.is_empty() || !noted.engaged.is_empty()
    }

    /// The ids of the stored jobs whose control record satisfies `keep` (a job without one
    /// is offered as `None`).
    pub fn job_ids_where(
        &self,
        keep: impl Fn(Option<&JobControl>) -> bool,
    ) -> Result<Vec<JobId>, JournalError> {
        self.durable.flush()?;
        let r = self.durable.database().begin_read().map_err(db_err)?;
        let plans = r.open_table(PLANS).map_err(db_err)?;
        let controls = r.open_table(CONTROLS).map_err(db_err)?;
        let mut ids = Vec::new();
        for row in plans.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            if keep(control_of(&controls, k.value())?.as_ref()) {
                ids.extend(JobId::parse(k.value()));
            }
        }
        Ok(ids)
    }

    /// Reads back the jobs whose control record satisfies `keep`, oldest first; the others'
    /// audiences and records are skipped. Blocking: run it off the async runtime.
    pub fn load_where(
        &self,
        keep: impl Fn(Option<&JobControl>) -> bool,
    ) -> Result<Vec<RecoveredJob>, JournalError> {
        self.durable.flush()?;
        let r = self.durable.database().begin_read().map_err(db_err)?;
        let plans = r.open_table(PLANS).map_err(db_err)?;
        let audiences = r.open_table(AUDIENCES).map_err(db_err)?;
        let controls = r.open_table(CONTROLS).map_err(db_err)?;
        let mut jobs = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for row in plans.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let stored = match codec::decode_plan(v.value()) {
                Ok(s) => s,
                // Written by a herald that knows more than this one: refuse to start on it.
                Err(CodecError::Format(e)) => return Err(CodecError::Format(e).into()),
                Err(e) => {
                    tracing::error!(job = k.value(), error = %e, "unreadable job plan; the job is not recovered");
                    continue;
                }
            };
            let id = k.value().to_string();
            let control = control_of(&controls, &id)?;
            if !keep(control.as_ref()) {
                continue;
            }
            let mut builder = AudienceBuilder::new();
            for chunk in audiences
                .range((id.as_str(), 0u32)..=(id.as_str(), u32::MAX))
                .map_err(db_err)?
            {
                let (_, bytes) = chunk.map_err(db_err)?;
                push_audience_chunk(&mut builder, bytes.value())?;
            }
            if builder.len() as u64 != stored.audience_len {
                tracing::error!(job = %id, stored = builder.len(), expected = stored.audience_len, "audience incomplete; the job is not recovered");
                continue;
            }
            by_id.insert(id, jobs.len());
            jobs.push(RecoveredJob {
                stored,
                audience: builder.finish(),
                control,
                in_flight: HashMap::new(),
                settled: Vec::new(),
                deliveries: Vec::new(),
                engaged: Vec::new(),
                decided: Vec::new(),
                announced_in_doubt: HashSet::new(),
            });
        }
        let apply = |stored: &[u8]| -> Result<(), JournalError> {
            if !by_id.contains_key(&codec::record_job(stored)?) {
                return Ok(());
            }
            match codec::decode_record(stored)? {
                LogRecord::Sending {
                    job,
                    provider,
                    items,
                } => {
                    if let Some(&j) = by_id.get(&job) {
                        let provider: Option<Arc<str>> = provider.map(Arc::from);
                        let in_flight = &mut jobs[j].in_flight;
                        in_flight
                            .extend(items.into_iter().map(|i| (i.index, (provider.clone(), i))));
                    }
                }
                LogRecord::Settled {
                    job,
                    provider,
                    at,
                    items,
                } => {
                    if let Some(&j) = by_id.get(&job) {
                        let provider: Option<Arc<str>> = provider.map(Arc::from);
                        let settled = items.into_iter().map(|i| (at, provider.clone(), i));
                        jobs[j].settled.extend(settled);
                    }
                }
                LogRecord::Delivered { job, at, items } => {
                    if let Some(&j) = by_id.get(&job) {
                        let items = items.into_iter().map(|(i, state)| (i, state, at));
                        jobs[j].deliveries.extend(items);
                    }
                }
                LogRecord::Engaged { job, at, items } => {
                    if let Some(&j) = by_id.get(&job) {
                        let items = items.into_iter().map(|(i, what)| (i, what, at));
                        jobs[j].engaged.extend(items);
                    }
                }
                LogRecord::BudgetExhausted { .. } | LogRecord::Consent { .. } => {}
                LogRecord::Withdrawn { job, items } => {
                    if let Some(&j) = by_id.get(&job) {
                        for index in items {
                            jobs[j].in_flight.remove(&index);
                        }
                    }
                }
                LogRecord::InDoubt { job, items, .. } => {
                    if let Some(&j) = by_id.get(&job) {
                        jobs[j].announced_in_doubt.extend(items);
                    }
                }
                LogRecord::Decided { job, items } => {
                    if let Some(&j) = by_id.get(&job) {
                        // The last one written wins.
                        jobs[j].decided = items;
                    }
                }
            }
            Ok(())
        };
        durable::records::scan(&r, apply)?;
        // A settled answer wins over its sending record, whatever their order.
        for job in &mut jobs {
            for (_, _, s) in &job.settled {
                job.in_flight.remove(&s.index);
            }
        }
        jobs.sort_by_key(|j| j.stored.spec.created_at);
        Ok(jobs)
    }
}

/// A job's control record, if it has a readable one; one of a format this herald does not
/// know is an error.
fn control_of(
    controls: &redb::ReadOnlyTable<&str, &[u8]>,
    id: &str,
) -> Result<Option<JobControl>, JournalError> {
    let Some(stored) = controls.get(id).map_err(db_err)? else {
        return Ok(None);
    };
    match codec::decode_control(stored.value()) {
        Ok(control) => Ok(Some(control)),
        Err(CodecError::Format(e)) => Err(CodecError::Format(e).into()),
        Err(_) => Ok(None),
    }
}

/// An audience as LZ4 chunks, the form it is stored and shared in.
pub fn audience_chunks(audience: &Audience) -> Vec<Vec<u8>> {
    let n = audience.len() as u32;
    (0..n)
        .step_by(AUDIENCE_CHUNK)
        .map(|from| {
            let to = (from + AUDIENCE_CHUNK as u32).min(n);
            codec::encode_audience_chunk((from..to).map(|i| StoredRecipient {
                contact_id: audience.contact_id(i),
                phone: audience.phone(i),
                variables: audience.variables(i),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, MessageId, Purpose};
    use crate::ledger::Ledger;
    use crate::phone::RegionCode;
    use crate::policy::PhoneMismatchPolicy;
    use crate::provider::OutboundMessage;
    use codec::Settlement;

    fn spec() -> JobSpec {
        JobSpec {
            campaign_id: "c".into(),
            channel: Channel::Sms,
            purpose: Purpose::Transactional,
            priority: 200,
            send_at: None,
            template_body: "hi".into(),
            phone_mismatch: PhoneMismatchPolicy::default(),
            created_at: "2026-11-23T04:00:00Z".parse().unwrap(),
            variants: None,
            tenant: Default::default(),
            fields: None,
            wechat_account: None,
        }
    }

    fn message(job: &JobId, contact: &str) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::derive(job, contact, Channel::Sms),
            to: Address::Phone(8613123000000),
            channel: Channel::Sms,
            body: "hi".into(),
            parts: 1,
            content: None,
        }
    }

    /// Writes a plan and audience the way `record_job` does, without a planned `Job`.
    async fn store_plan(journal: &Journal, id: &JobId, contacts: &[&str]) {
        let mut b = AudienceBuilder::new();
        for c in contacts {
            b.push(c, None, None).unwrap();
        }
        let audience = b.finish();
        let stored = StoredJob {
            id: id.clone(),
            spec: spec(),
            variables: HashMap::new(),
            track_links: false,
            audience_len: audience.len() as u64,
            shards: 0,
        };
        let plan = codec::encode_plan(&stored).unwrap();
        let chunks = audience_chunks(&audience);
        let key = id.as_str().to_string();
        let extra: ExtraWrite = Box::new(move |w| {
            w.open_table(PLANS)?.insert(key.as_str(), plan.as_slice())?;
            let mut t = w.open_table(AUDIENCES)?;
            for (n, c) in chunks.iter().enumerate() {
                t.insert((key.as_str(), n as u32), c.as_slice())?;
            }
            Ok(())
        });
        journal
            .durable
            .commit_records_with(Vec::new(), vec![extra])
            .unwrap()
            .wait()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn messages_sent_without_a_recorded_answer_read_as_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let ledger = Ledger::open_path(&path).unwrap();
        let journal = Journal::open(ledger.durable().clone()).unwrap();
        let id = JobId::generate();
        store_plan(&journal, &id, &["a", "b", "c", "a"]).await;
        let msgs: Vec<OutboundMessage> = ["a", "b", "c"].iter().map(|c| message(&id, c)).collect();
        let cn = RegionCode(*b"CN");
        let items = msgs.iter().enumerate().map(|(i, m)| (i as u32, cn, m));
        journal
            .sending(codec::encode_sending(id.as_str(), "p", items))
            .unwrap()
            .wait()
            .await
            .unwrap();
        let settled = vec![SettledItem {
            index: 1,
            settlement: Settlement::Sent,
            parts: 1,
            cost_micros: 45_000,
            region: cn,
            provider_message_id: "p1".into(),
        }];
        journal
            .settle(
                codec::encode_settled(id.as_str(), "p", 1_764_000_000, &settled),
                &EntryBatch::empty(),
            )
            .unwrap()
            .wait()
            .await
            .unwrap();
        ledger.close();
        drop((journal, ledger));

        // Reopened, as after a crash.
        let journal = Journal::open(Ledger::open_path(&path).unwrap().durable().clone()).unwrap();
        let jobs = journal.load_where(|_| true).unwrap();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(job.stored.id, id);
        assert_eq!(job.audience.len(), 4);
        assert_eq!(job.audience.duplicates(), &[3]);
        let settled_at: Vec<_> = settled
            .iter()
            .map(|s| (1_764_000_000, Some(Arc::from("p")), s.clone()))
            .collect();
        assert_eq!(job.settled, settled_at);
        let mut in_flight: Vec<u32> = job.in_flight.keys().copied().collect();
        in_flight.sort_unstable();
        assert_eq!(in_flight, vec![0, 2]);
        assert_eq!(job.in_flight[&2].1.body, "hi");
        assert_eq!(job.in_flight[&2].0.as_deref(), Some("p"));
        // Records written after a reopen are read after the earlier ones.
        journal
            .settle(
                codec::encode_settled(id.as_str(), "p", 1_764_000_060, &settled),
                &EntryBatch::empty(),
            )
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(journal.load_where(|_| true).unwrap()[0].settled.len(), 2);
    }

    #[tokio::test]
    async fn a_plan_or_control_of_an_unknown_format_version_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_path(&dir.path().join("herald.redb")).unwrap();
        let journal = Journal::open(ledger.durable().clone()).unwrap();
        let id = JobId::generate();
        store_plan(&journal, &id, &["a"]).await;
        assert_eq!(journal.load_where(|_| true).unwrap().len(), 1);
        for table in [CONTROLS, PLANS] {
            let key = id.as_str().to_string();
            let extra: ExtraWrite = Box::new(move |w| {
                w.open_table(table)?
                    .insert(key.as_str(), &[7u8, b'{', b'}'][..])?;
                Ok(())
            });
            journal
                .durable
                .commit_records_with(Vec::new(), vec![extra])
                .unwrap()
                .wait()
                .await
                .unwrap();
            let e = journal.load_where(|_| true).err().expect("refused");
            assert!(
                e.to_string().contains("format version 7 is not known"),
                "{e}"
            );
        }
    }
}
