//! Templates compiled once per job and rendered per recipient; SMS part counting; an
//! email's subject, text and HTML carried as one body ([`email`]).
//!
//! A job's body is compiled once ([`Template::compile`]), which rejects malformed bodies with a
//! position the API can show. Each recipient's message is then rendered into a reused buffer
//! ([`Template::render_into`]) from snapshot attributes and job or recipient variables, and the
//! rendered text is counted ([`count_parts`]) as the carrier will bill it, before it is priced.
//! A job may carry several bodies as A/B [`variants`], each contact assigned to one by a hash.
//! Push and WeChat jobs add [`channel`] fields (a title and data, a WeChat template's id, link
//! and values), compiled and rendered the same way.

pub mod channel;
mod compile;
pub mod email;
mod error;
mod render;
pub mod rollout;
mod sms;
pub mod variants;

pub use compile::{Template, MAX_BODY_CHARS};
pub use error::{TemplateError, TemplateErrorKind};
pub use render::MissingVariable;
pub use rollout::{RolloutMetric, RolloutSpec};
pub use sms::{count_parts, Encoding, SmsParts};
pub use variants::{Assignment, Route, VariantSpec, Variants, VariantsSpec};
