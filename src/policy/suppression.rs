//! `suppressed`: the global do-not-contact list, by phone number or contact id. The facts
//! come from the state store for the whole batch at once.

use super::Verdict;
use crate::domain::Reason;
use crate::store::RecipientFacts;

/// Rejects suppressed recipients.
pub fn check(facts: &RecipientFacts) -> Verdict {
    if facts.suppressed {
        Verdict::Reject(Reason::Suppressed)
    } else {
        Verdict::Allow
    }
}
