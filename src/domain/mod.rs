//! Pure domain types shared by every stage: no I/O here.

mod address;
mod channel;
mod hold;
mod ids;
mod money;
mod reason;
mod status;

pub use address::{
    email_entry, normalize_email, normalize_push_cell, normalize_push_token, normalize_wechat_cell,
    push_entry, push_pairs, wechat_openid, Address, PushPlatform,
};
pub use channel::{Channel, Consent, Purpose};
pub use hold::Hold;
pub use ids::{JobId, MessageId};
pub use money::{Currency, Micros};
pub use reason::Reason;
pub use status::{JobStatus, RecipientOutcome};
