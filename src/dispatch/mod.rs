//! Dispatch: jobs are planned into shards by a hash of the contact id; a pool of workers
//! leases shards, runs the policy on a chunk of recipients, waits for rate-limit tokens,
//! sends through the provider, retries transient failures with backoff, and accounts for
//! every recipient exactly once.
//!
//! Surviving a crash: [`journal`] records each job, each chunk before it is sent and each
//! provider answer (with its ledger charge); [`recovery`] plans the jobs again on start and
//! sends again, or marks [`in_doubt`], what was in flight.

pub mod audience;
pub mod budget;
pub mod cap_rebuild;
pub mod counters;
pub mod delivery;
pub mod dispatcher;
pub mod in_doubt;
pub mod in_flight_inquiry;
pub mod job;
pub mod journal;
pub mod planner;
pub mod preview;
pub mod pricing;
pub mod rate_limit;
pub mod recovery;
pub mod retry;
pub mod routing;
pub mod send_log;
mod settle;
pub mod share;
mod simulated_receipts;
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
pub use rate_limit::{ChannelLimits, PartsLimiter, TenantLimits};
pub use routing::Router;
pub use share::{EventNote, SendingMarks, ShardShare, SharedCounts};
