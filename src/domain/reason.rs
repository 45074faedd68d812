//! The closed set of rejection reasons, shared by policy, reports, metrics and the ledger.

use serde::{Deserialize, Serialize};

/// Why a recipient was not sent a message. The declaration order fixes each reason's stored
/// code, so new reasons go last; [`Reason::ALL`] is the order the policy runner checks them
/// in, and reports list them in: the channel's address (`missing_email`, `invalid_email`,
/// `missing_push_token`, `missing_openid`) right after the phone checks.
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
    /// An email job, and the contact has no email address.
    MissingEmail,
    /// An email job, and the contact's address failed the syntax or domain check at load.
    InvalidEmail,
    /// A push job, and the contact has no device token.
    MissingPushToken,
    /// A WeChat job, and the contact has no openid for the job's official account.
    MissingOpenid,
}

impl Reason {
    /// Every reason, in check order (not stored-code order; see [`Reason::index`]).
    pub const ALL: [Reason; 17] = [
        Reason::Duplicate,
        Reason::UnknownContact,
        Reason::MissingPhone,
        Reason::InvalidPhone,
        Reason::NotMobile,
        Reason::PhoneMismatch,
        Reason::MissingEmail,
        Reason::InvalidEmail,
        Reason::MissingPushToken,
        Reason::MissingOpenid,
        Reason::Suppressed,
        Reason::OptedOut,
        Reason::NoConsent,
        Reason::Holdout,
        Reason::MissingVariable,
        Reason::ContentRule,
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
            Reason::ContentRule => "content_rule",
            Reason::Holdout => "holdout",
            Reason::MissingEmail => "missing_email",
            Reason::InvalidEmail => "invalid_email",
            Reason::MissingPushToken => "missing_push_token",
            Reason::MissingOpenid => "missing_openid",
        }
    }

    /// Dense index for counter arrays; also the stored code.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Inverse of [`Reason::index`].
    pub fn from_index(index: usize) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.index() == index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_and_codes_round_trip() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(Reason::from_index(r.index()), Some(*r));
            assert!(!Reason::ALL[..i].contains(r), "{} twice", r.as_str());
        }
        // Stored codes of the reasons that shipped first never move.
        assert_eq!(Reason::Holdout.index(), 12);
        assert_eq!(Reason::MissingOpenid.index(), 16);
        // Address reasons are checked right after the phone ones.
        let pos = |r| Reason::ALL.iter().position(|x| *x == r);
        assert_eq!(
            pos(Reason::MissingEmail),
            Some(pos(Reason::PhoneMismatch).unwrap() + 1)
        );
    }
}
