//! The closed set of rejection reasons, shared by policy, reports, metrics and the ledger.

use serde::{Deserialize, Serialize};

/// Why a recipient was not sent a message. The declaration order is the order the policy
/// pipeline checks them in, so the first failing rule names the reason.
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
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 11] = [
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
        }
    }

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
