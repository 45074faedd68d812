//! The per-recipient decision pipeline. Each rule is its own type in its own file and
//! answers allow, reject(reason) or defer(until); the [`runner`] applies them in the order of
//! [`Reason`](crate::domain::Reason) so the first failing rule names the reason, fetches the
//! store's facts for a whole batch in one call, and reserves frequency caps last, only for
//! messages that will really go.

pub mod address_check;
pub mod consent;
pub mod dedup;
pub mod frequency_cap;
pub mod phone_check;
pub mod phone_mismatch;
pub mod quiet_hours;
pub mod render;
pub mod runner;
pub mod suppression;

use chrono::{DateTime, Utc};

use crate::domain::Reason;

pub use runner::{Decision, JobPolicy, PolicyInput, PolicyRunner, ReadyMessage};

/// One rule's answer for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Reject(Reason),
    Defer(DateTime<Utc>),
}

/// What to do when the phone the upstream system sent differs from the snapshot's.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PhoneMismatchPolicy {
    /// Send to the snapshot's (fresher) number and count a correction.
    #[default]
    UseSnapshot,
    /// Reject the recipient with `phone_mismatch`.
    Reject,
}
