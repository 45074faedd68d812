//! Job statuses and per-recipient outcomes.

use serde::{Deserialize, Serialize};

use super::Reason;

/// Where a job is in its life. Terminal: `completed`, `cancelled`, `failed`. A job that
/// stopped at its budget (`budget_exhausted`) resumes with a raised one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
    Failed,
    BudgetExhausted,
}

impl JobStatus {
    /// Terminal statuses never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Cancelled | JobStatus::Failed
        )
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Failed => "failed",
            JobStatus::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// What happened to one recipient of a job, as the per-recipient report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientOutcome {
    /// Not decided yet.
    Pending,
    /// Waiting for quiet hours to end.
    Deferred,
    Rejected(Reason),
    /// Accepted by the provider.
    Sent,
    /// Permanently failed at the provider (after retries).
    Failed,
    /// The job was cancelled before this recipient was sent.
    Cancelled,
    /// Handed to the provider before a crash without a recorded answer; being sent again
    /// under the same message id (the provider drops repeats).
    Sending,
    /// Handed to the provider before a crash without a recorded answer, and not sent again
    /// because the provider cannot drop repeats; a later delivery receipt settles it.
    InDoubt,
}

impl RecipientOutcome {
    /// One-byte code for the compact per-recipient outcome array.
    pub fn to_code(self) -> u8 {
        match self {
            RecipientOutcome::Pending => 0,
            RecipientOutcome::Deferred => 1,
            RecipientOutcome::Sent => 2,
            RecipientOutcome::Failed => 3,
            RecipientOutcome::Cancelled => 4,
            RecipientOutcome::Sending => 5,
            RecipientOutcome::InDoubt => 6,
            RecipientOutcome::Rejected(r) => 16 + r.index() as u8,
        }
    }

    /// Inverse of [`RecipientOutcome::to_code`].
    pub fn from_code(code: u8) -> RecipientOutcome {
        match code {
            1 => RecipientOutcome::Deferred,
            2 => RecipientOutcome::Sent,
            3 => RecipientOutcome::Failed,
            4 => RecipientOutcome::Cancelled,
            5 => RecipientOutcome::Sending,
            6 => RecipientOutcome::InDoubt,
            c if c >= 16 => match Reason::from_index(usize::from(c - 16)) {
                Some(r) => RecipientOutcome::Rejected(r),
                None => RecipientOutcome::Pending,
            },
            _ => RecipientOutcome::Pending,
        }
    }

    /// A final outcome never changes (deferred and pending do).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RecipientOutcome::Pending | RecipientOutcome::Deferred | RecipientOutcome::Sending
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_codes_round_trip() {
        let mut all = vec![
            RecipientOutcome::Pending,
            RecipientOutcome::Deferred,
            RecipientOutcome::Sent,
            RecipientOutcome::Failed,
            RecipientOutcome::Cancelled,
            RecipientOutcome::Sending,
            RecipientOutcome::InDoubt,
        ];
        all.extend(Reason::ALL.iter().map(|r| RecipientOutcome::Rejected(*r)));
        for o in all {
            assert_eq!(RecipientOutcome::from_code(o.to_code()), o);
        }
    }
}
