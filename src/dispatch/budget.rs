//! A job's spending budget: one atomic of money committed (sent or reserved for a send in
//! flight) checked against a limit. Workers reserve a message's cost before sending it, so
//! concurrent workers can never together spend past the limit; a reservation whose send fails
//! for good is given back, so once sends settle the committed amount equals the ledger's
//! total for the job.

use std::sync::atomic::{AtomicI64, Ordering::*};

use serde::Serialize;

use crate::domain::Currency;

/// The limit of a job without a budget.
const UNLIMITED: i64 = i64::MAX;

/// Spend and limit of one job, in micros of the job's currency.
pub struct Budget {
    limit: AtomicI64,
    committed: AtomicI64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            limit: AtomicI64::new(UNLIMITED),
            committed: AtomicI64::new(0),
        }
    }
}

/// The budget as the job view shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BudgetView {
    pub amount_micros: i64,
    pub currency: Currency,
    /// Sent, plus reserved for sends still in flight.
    pub committed_micros: i64,
}

/// A new limit that does not raise the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRaised {
    pub current: i64,
}

impl Budget {
    /// Sets the limit (at submission, before any send).
    pub fn set_limit(&self, micros: i64) {
        self.limit.store(micros, Release);
    }

    /// The limit, if the job has one.
    pub fn limit(&self) -> Option<i64> {
        Some(self.limit.load(Acquire)).filter(|l| *l != UNLIMITED)
    }

    /// Money sent or reserved.
    pub fn committed(&self) -> i64 {
        self.committed.load(Acquire)
    }

    /// Reserves `cost` if it fits under the limit; answers whether it did. Atomic: two
    /// workers never both take the last room.
    pub fn try_reserve(&self, cost: i64) -> bool {
        let limit = self.limit.load(Acquire);
        self.committed
            .fetch_update(AcqRel, Acquire, |c| {
                c.checked_add(cost)
                    .filter(|n| limit == UNLIMITED || *n <= limit)
            })
            .is_ok()
    }

    /// Counts spend that already happened (restored after a restart), even past the limit.
    pub fn force_reserve(&self, cost: i64) {
        self.committed.fetch_add(cost, AcqRel);
    }

    /// Gives back a reservation whose send will not happen.
    pub fn give_back(&self, cost: i64) {
        self.committed.fetch_sub(cost, AcqRel);
    }

    /// Raises the limit to `micros`, which must be above the current one (any amount gives a
    /// job without a budget one).
    pub fn raise(&self, micros: i64) -> Result<(), NotRaised> {
        self.limit
            .fetch_update(AcqRel, Acquire, |l| {
                (l == UNLIMITED || micros > l).then_some(micros)
            })
            .map(|_| ())
            .map_err(|current| NotRaised { current })
    }

    /// The view, if the job has a budget.
    pub fn view(&self, currency: Currency) -> Option<BudgetView> {
        self.limit().map(|amount_micros| BudgetView {
            amount_micros,
            currency,
            committed_micros: self.committed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_limit() {
        let b = Budget::default();
        b.set_limit(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(50));
        assert!(b.try_reserve(40));
        assert!(!b.try_reserve(1));
        b.give_back(40);
        assert_eq!(b.committed(), 60);
        assert_eq!(b.raise(100), Err(NotRaised { current: 100 }));
        assert!(b.raise(200).is_ok());
        assert!(b.try_reserve(140));
        assert_eq!(b.limit(), Some(200));
    }

    #[test]
    fn without_a_limit_everything_fits_and_is_counted() {
        let b = Budget::default();
        assert!(b.try_reserve(i64::MAX / 2));
        assert_eq!(b.limit(), None);
        assert!(b.raise(5).is_ok());
        assert_eq!(b.limit(), Some(5));
    }
}
