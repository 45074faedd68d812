//! Per-recipient outcomes as NDJSON lines: exactly what happened to every recipient.

use serde::Serialize;

use crate::dispatch::Job;
use crate::domain::{MessageId, RecipientOutcome};
use crate::template::Assignment;

/// One line of the per-recipient report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientLine<'a> {
    pub line: u32,
    pub contact_id: &'a str,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub opened: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clicked: bool,
    /// The A/B variant the recipient is assigned to (`holdout` for the control group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'a str>,
}

/// The line for recipient `i` (0-based; `line` is 1-based in submission order).
pub fn line(job: &Job, i: u32) -> RecipientLine<'_> {
    let contact_id = job.audience.contact_id(i);
    let outcome = job.outcome(i);
    let (name, reason) = match outcome {
        RecipientOutcome::Pending => ("pending", None),
        RecipientOutcome::Deferred => ("deferred", None),
        RecipientOutcome::Rejected(r) => ("rejected", Some(r.as_str())),
        RecipientOutcome::Sent => ("sent", None),
        RecipientOutcome::Failed => ("failed", None),
        RecipientOutcome::Cancelled => ("cancelled", None),
        RecipientOutcome::Sending => ("sending", None),
        RecipientOutcome::InDoubt => ("in_doubt", None),
    };
    let message_id = matches!(
        outcome,
        RecipientOutcome::Sent
            | RecipientOutcome::Failed
            | RecipientOutcome::Sending
            | RecipientOutcome::InDoubt
    )
    .then(|| MessageId::derive(&job.id, contact_id, job.spec.channel));
    let delivery = job.progress.delivery.state(i).map(|d| d.as_str());
    let (opened, clicked) = job.progress.delivery.engagement(i);
    let variant = job
        .policy
        .variants
        .as_deref()
        .and_then(|v| match v.used(contact_id) {
            Assignment::Holdout => Some("holdout"),
            Assignment::Variant(k) => v.spec.variants.get(k).map(|s| s.name.as_str()),
            Assignment::Undecided => None,
        });
    RecipientLine {
        variant,
        line: i + 1,
        contact_id,
        outcome: name,
        reason,
        message_id,
        delivery,
        opened,
        clicked,
    }
}
