//! `phone_mismatch`: the upstream system may send the number it believes is current. When it
//! differs from the snapshot's, the job's policy either corrects to the snapshot's (fresher)
//! number or rejects the recipient.

use super::{PhoneMismatchPolicy, Verdict};
use crate::domain::Reason;
use crate::phone::{self, RegionCode};

/// The outcome for one recipient: allowed (possibly corrected) or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchOutcome {
    Same,
    Corrected,
    Rejected(Verdict),
}

/// Compares the upstream number with the snapshot's E.164 number.
pub fn check(
    upstream: Option<&str>,
    snapshot_e164: u64,
    default_region: RegionCode,
    policy: PhoneMismatchPolicy,
) -> MismatchOutcome {
    let Some(upstream) = upstream.filter(|s| !s.trim().is_empty()) else {
        return MismatchOutcome::Same;
    };
    if same_digits(upstream, snapshot_e164) {
        return MismatchOutcome::Same;
    }
    // Not literally the E.164 digits: parse it as the numbering plan would.
    let same = phone::parse(upstream, default_region)
        .map(|p| p.e164 == snapshot_e164)
        .unwrap_or(false);
    match (same, policy) {
        (true, _) => MismatchOutcome::Same,
        (false, PhoneMismatchPolicy::UseSnapshot) => MismatchOutcome::Corrected,
        (false, PhoneMismatchPolicy::Reject) => {
            MismatchOutcome::Rejected(Verdict::Reject(Reason::PhoneMismatch))
        }
    }
}

/// Fast path: `+` and the exact digits, with no parsing.
fn same_digits(upstream: &str, e164: u64) -> bool {
    let digits = upstream.strip_prefix('+').unwrap_or("");
    !digits.is_empty()
        && digits.len() <= 19
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u64>().ok() == Some(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CN: RegionCode = RegionCode(*b"CN");

    #[test]
    fn national_format_of_the_same_number_matches() {
        let out = check(
            Some("131 2307 9337"),
            8613123079337,
            CN,
            PhoneMismatchPolicy::Reject,
        );
        assert_eq!(out, MismatchOutcome::Same);
        let out = check(
            Some("+8613123079337"),
            8613123079337,
            CN,
            PhoneMismatchPolicy::Reject,
        );
        assert_eq!(out, MismatchOutcome::Same);
    }

    #[test]
    fn a_different_number_is_corrected_or_rejected() {
        let up = Some("+8613123442056");
        assert_eq!(
            check(up, 8613123079337, CN, PhoneMismatchPolicy::UseSnapshot),
            MismatchOutcome::Corrected
        );
        assert_eq!(
            check(up, 8613123079337, CN, PhoneMismatchPolicy::Reject),
            MismatchOutcome::Rejected(Verdict::Reject(Reason::PhoneMismatch))
        );
    }
}
