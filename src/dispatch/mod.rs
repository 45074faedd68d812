//! Dispatch: jobs are planned into shards by a hash of the contact id; a pool of workers
//! leases shards, runs the policy on a chunk of recipients, waits for rate-limit tokens,
//! sends through the provider, retries transient failures with backoff, and accounts for
//! every recipient exactly once.

pub mod audience;
pub mod budget;
pub mod counters;
pub mod delivery;
pub mod dispatcher;
pub mod job;
pub mod planner;
pub mod preview;
pub mod pricing;
pub mod rate_limit;
pub mod retry;
mod worker;

pub use audience::{Audience, AudienceBuilder, AudienceError};
pub use budget::{Budget, BudgetView};
pub use counters::{Counts, JobCounters};
pub use delivery::{
    AcceptedMessage, DeliveryState, ReceiptEffect, ReceiptStatus, ReceiptUpdate, SendObserver,
};
pub use dispatcher::{Dispatcher, DispatcherDeps, ProviderSlot, QueueDepths, TransitionError};
pub use job::{Job, JobSpec};
pub use pricing::PriceTable;
pub use rate_limit::PartsLimiter;
