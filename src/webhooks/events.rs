//! The events endpoints receive, read from the dispatch journal's records: what the journal
//! made durable is what is announced, so an event is never announced for something a crash
//! undid, and none is lost to a crash (deliveries resume from the endpoint's cursor).
//!
//! - a `settled` record: `message.sent` or `message.failed` per message;
//! - an `in_doubt` record (written when a restart finds messages a provider may or may not
//!   have taken): `message.in_doubt` per message, with the provider it was handed to;
//! - a `delivered` record: `message.delivered` or `message.undelivered` (delivery states
//!   `undelivered` and `expired`);
//! - an `engaged` record: `message.opened`, or `message.clicked` with the link's number and
//!   URL;
//! - a `decided` record, written when a job ends: `job.completed` (or `job.cancelled`);
//! - a `budget_exhausted` record: `job.budget_exhausted`;
//! - a `consent` record (an inbound STOP or START reply): `contact.opted_out` or
//!   `contact.opted_in`.
//!
//! An event's id is `evt_<key>_<n>`: the record-log key it was read from and its place in
//! it, the same on every delivery and replay, so a receiver drops repeats by id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::access::TenantId;
use crate::dispatch::delivery::DeliveryState;
use crate::dispatch::journal::codec::{self, LogRecord, Settlement};
use crate::dispatch::Dispatcher;
use crate::domain::{JobId, JobStatus, MessageId};

/// Every event type an endpoint can ask for.
pub const TYPES: [&str; 12] = [
    "message.sent",
    "message.failed",
    "message.in_doubt",
    "message.delivered",
    "message.undelivered",
    "message.opened",
    "message.clicked",
    "job.completed",
    "job.cancelled",
    "job.budget_exhausted",
    "contact.opted_out",
    "contact.opted_in",
];

/// One event as delivered: `{"id", "type", "timestamp", "data"}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: DateTime<Utc>,
    pub data: Value,
    /// Whose event it is: the job's tenant, or the default tenant for contact events and jobs
    /// this instance no longer holds. Not sent; endpoints receive only their tenant's events.
    #[serde(skip)]
    pub tenant: TenantId,
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

/// The events of one journal record read at `place` (a record-log key, or a fleet stream's
/// entry), numbered from `next` within it (advanced past them): ids `evt_<place>_<n>`.
/// Records of jobs this instance no longer knows give their job id and recipient only.
pub fn of_record(
    dispatcher: &Dispatcher,
    place: &str,
    next: &mut u32,
    record: &LogRecord,
    out: &mut Vec<Event>,
) {
    let tenant = tenant_of(dispatcher, record);
    let mut push = |kind: &'static str, timestamp: DateTime<Utc>, data: Value| {
        out.push(Event {
            id: format!("evt_{place}_{next}"),
            kind,
            timestamp,
            data,
            tenant: tenant.clone(),
        });
        *next += 1;
    };
    match record {
        LogRecord::Settled {
            job,
            provider,
            at: when,
            items,
        } => {
            let base = JobBase::of(dispatcher, job);
            for item in items {
                let mut data = base.message(item.index);
                let kind = match item.settlement {
                    Settlement::Sent => {
                        data["provider"] =
                            json!(provider.clone().unwrap_or_else(|| base.provider.clone()));
                        data["provider_message_id"] = json!(item.provider_message_id);
                        data["parts"] = json!(item.parts);
                        data["cost_micros"] = json!(item.cost_micros);
                        data["currency"] = json!(base.currency);
                        "message.sent"
                    }
                    Settlement::Failed => "message.failed",
                };
                push(kind, at(*when), data);
            }
        }
        LogRecord::Delivered {
            job,
            at: when,
            items,
        } => {
            let base = JobBase::of(dispatcher, job);
            for &(index, code) in items {
                let (kind, state) = match DeliveryState::from_code(code) {
                    Some(DeliveryState::Delivered) => ("message.delivered", "delivered"),
                    Some(DeliveryState::Undelivered) => ("message.undelivered", "undelivered"),
                    Some(DeliveryState::Expired) => ("message.undelivered", "expired"),
                    Some(DeliveryState::Unknown) | None => continue,
                };
                let mut data = base.message(index);
                data["delivery"] = json!(state);
                push(kind, at(*when), data);
            }
        }
        LogRecord::Engaged {
            job,
            at: when,
            items,
        } => {
            let base = JobBase::of(dispatcher, job);
            for &(index, what) in items {
                let mut data = base.message(index);
                let kind = match what {
                    codec::ENGAGED_OPEN => "message.opened",
                    link => {
                        let link = usize::from(link - 1);
                        data["link"] = json!(link);
                        if let Some(url) = base
                            .job
                            .as_ref()
                            .and_then(|j| j.links())
                            .and_then(|l| l.urls.get(link))
                        {
                            data["url"] = json!(url);
                        }
                        "message.clicked"
                    }
                };
                push(kind, at(*when), data);
            }
        }
        LogRecord::Decided { job, .. } => {
            let base = JobBase::of(dispatcher, job);
            let Some(j) = &base.job else { return };
            let state = j.state();
            let kind = match state.status {
                JobStatus::Cancelled => "job.cancelled",
                _ => "job.completed",
            };
            let counts = j.progress.counters.snapshot(j.currency, 0);
            let when = state.finished_at.unwrap_or_else(Utc::now);
            push(
                kind,
                when,
                json!({
                    "job_id": job,
                    "campaign_id": j.spec.campaign_id,
                    "status": state.status,
                    "counts": counts,
                }),
            );
        }
        LogRecord::BudgetExhausted { job, at: when } => {
            let base = JobBase::of(dispatcher, job);
            let Some(j) = &base.job else { return };
            let budget = j.progress.budget.view(j.currency);
            push(
                "job.budget_exhausted",
                at(*when),
                json!({
                    "job_id": job,
                    "campaign_id": j.spec.campaign_id,
                    "budget": budget,
                }),
            );
        }
        LogRecord::Consent { items, .. } => {
            for c in items {
                let kind = match c.consent {
                    2 => "contact.opted_out",
                    _ => "contact.opted_in",
                };
                let channel = crate::domain::Channel::from_index(usize::from(c.channel));
                push(
                    kind,
                    at(c.at),
                    json!({
                        "contact_id": c.contact_id,
                        "channel": channel,
                        "source": c.source,
                    }),
                );
            }
        }
        LogRecord::InDoubt {
            job,
            at: when,
            items,
        } => {
            let base = JobBase::of(dispatcher, job);
            for &index in items {
                push("message.in_doubt", at(*when), base.message(index));
            }
        }
        LogRecord::Sending { .. } | LogRecord::Withdrawn { .. } => {}
    }
}

/// The event of a shared job's end (`completed` or `cancelled`), numbered `n` at `place`,
/// with the counts every instance wrote.
pub fn job_end(
    dispatcher: &Dispatcher,
    place: &str,
    n: u32,
    job_id: &str,
    status: &str,
    at: DateTime<Utc>,
) -> Option<Event> {
    let j = JobId::parse(job_id).and_then(|id| dispatcher.get(&id))?;
    let (kind, status) = match status {
        "cancelled" => ("job.cancelled", JobStatus::Cancelled),
        _ => ("job.completed", JobStatus::Completed),
    };
    Some(Event {
        id: format!("evt_{place}_{n}"),
        kind,
        timestamp: at,
        data: json!({
            "job_id": job_id,
            "campaign_id": j.spec.campaign_id,
            "status": status,
            "counts": crate::report::job_view::counts(&j),
        }),
        tenant: j.spec.tenant.clone(),
    })
}

/// The tenant a record's events belong to.
fn tenant_of(dispatcher: &Dispatcher, record: &LogRecord) -> TenantId {
    let job = match record {
        LogRecord::Settled { job, .. }
        | LogRecord::Delivered { job, .. }
        | LogRecord::Engaged { job, .. }
        | LogRecord::Decided { job, .. }
        | LogRecord::BudgetExhausted { job, .. }
        | LogRecord::InDoubt { job, .. } => job,
        LogRecord::Consent { tenant, .. } => return tenant.clone(),
        _ => return TenantId::default(),
    };
    JobId::parse(job)
        .and_then(|id| dispatcher.get(&id))
        .map(|j| j.spec.tenant.clone())
        .unwrap_or_default()
}

/// What every event of one job's record repeats.
struct JobBase {
    job_id: String,
    job: Option<std::sync::Arc<crate::dispatch::Job>>,
    provider: String,
    currency: String,
}

impl JobBase {
    fn of(dispatcher: &Dispatcher, job_id: &str) -> JobBase {
        let job = JobId::parse(job_id).and_then(|id| dispatcher.get(&id));
        JobBase {
            job_id: job_id.to_string(),
            provider: job
                .as_ref()
                .map(|j| j.provider_name.clone())
                .unwrap_or_default(),
            currency: job
                .as_ref()
                .map(|j| j.currency.to_string())
                .unwrap_or_default(),
            job,
        }
    }

    /// The message-level fields: ids and campaign, never the recipient's number.
    fn message(&self, index: u32) -> Value {
        match &self.job {
            Some(j) => {
                let contact = j.audience.contact_id(index);
                json!({
                    "message_id": MessageId::derive(&j.id, contact, j.spec.channel).to_string(),
                    "job_id": self.job_id,
                    "campaign_id": j.spec.campaign_id,
                    "channel": j.spec.channel,
                    "contact_id": contact,
                })
            }
            None => json!({ "job_id": self.job_id, "recipient": index }),
        }
    }
}
