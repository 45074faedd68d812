//! `opted_out` and `no_consent`: an opt-out always wins; marketing needs an explicit opt-in,
//! transactional messages only the absence of an opt-out. A consent change recorded after
//! the snapshot (an inbound STOP) overrides the snapshot's value.

use super::Verdict;
use crate::domain::{Consent, Purpose, Reason};

/// Decides from the snapshot's consent and the store's override.
pub fn check(snapshot: Consent, override_: Option<Consent>, purpose: Purpose) -> Verdict {
    match (override_.unwrap_or(snapshot), purpose) {
        (Consent::OptOut, _) => Verdict::Reject(Reason::OptedOut),
        (Consent::Unknown, Purpose::Marketing) => Verdict::Reject(Reason::NoConsent),
        _ => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marketing_needs_opt_in_transactional_needs_no_opt_out() {
        use Consent::*;
        assert_eq!(check(OptIn, None, Purpose::Marketing), Verdict::Allow);
        assert_eq!(
            check(Unknown, None, Purpose::Marketing),
            Verdict::Reject(Reason::NoConsent)
        );
        assert_eq!(check(Unknown, None, Purpose::Transactional), Verdict::Allow);
        assert_eq!(
            check(OptOut, None, Purpose::Transactional),
            Verdict::Reject(Reason::OptedOut)
        );
        assert_eq!(
            check(OptIn, Some(OptOut), Purpose::Marketing),
            Verdict::Reject(Reason::OptedOut)
        );
    }
}
