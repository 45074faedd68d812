//! Pure domain types shared by every stage: no I/O here.

mod channel;
mod hold;
mod ids;
mod money;
mod reason;
mod status;

pub use channel::{Channel, Consent, Purpose};
pub use hold::Hold;
pub use ids::{JobId, MessageId};
pub use money::{Currency, Micros};
pub use reason::Reason;
pub use status::{JobStatus, RecipientOutcome};
