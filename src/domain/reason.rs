//! The closed set of rejection reasons, shared by policy, reports, metrics and the ledger.

use serde::{Deserialize, Serialize};

/// Why a recipient was not sent a message. The declaration order fixes each reason's stored
/// code, so new reasons go last. The policy runner checks `holdout` after `no_consent` and
/// `content_rule` after `missing_variable`, both before `frequency_capped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Duplicate,
    UnknownContact,
    MissingPhone,
    InvalidPhone,
    NotMobile,
    PhoneMismatch,
    Suppressed,
    OptedOut,
    NoConsent,
    MissingVariable,
    FrequencyCapped,
    /// A rendered message broke a content rule (a variable's value brought in a banned term,
    /// or made it too long).
    ContentRule,
    /// In the job's holdout: decided, not sent, counted as the control group.
    Holdout,
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 13] = [
        Reason::Duplicate,
        Reason::UnknownContact,
        Reason::MissingPhone,
        Reason::InvalidPhone,
        Reason::NotMobile,
        Reason::PhoneMismatch,
        Reason::Suppressed,
        Reason::OptedOut,
        Reason::NoConsent,
        Reason::MissingVariable,
        Reason::FrequencyCapped,
        Reason::ContentRule,
        Reason::Holdout,
    ];

    /// Stable snake_case name used in JSON, CSV and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::UnknownContact => "unknown_contact",
            Reason::MissingPhone => "missing_phone",
            Reason::InvalidPhone => "invalid_phone",
            Reason::NotMobile => "not_mobile",
            Reason::PhoneMismatch => "phone_mismatch",
            Reason::Suppressed => "suppressed",
            Reason::OptedOut => "opted_out",
            Reason::NoConsent => "no_consent",
            Reason::MissingVariable => "missing_variable",
            Reason::FrequencyCapped => "frequency_capped",
            Reason::ContentRule => "content_rule",
            Reason::Holdout => "holdout",
        }
    }

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
