//! Audience segment expressions over contact tags and attributes.
//!
//! A job may address "everyone in the snapshot who matches", for example
//! `(tier in ("gold", "silver") or tag:shanghai) and not tag:churned`. The expression is parsed
//! once per job into a [`Segment`] (errors carry the column the API reports) and then evaluated
//! against millions of contacts, so evaluation walks a compiled tree and allocates nothing.
//!
//! The language: `or`, `and`, `not` (case-insensitive; `and` binds tighter than `or`, `not`
//! tighter than both) and parentheses over the forms `tag:NAME`, `has(ATTR)`, `ATTR = "v"`,
//! `ATTR != "v"` and `ATTR in ("a", "b")`. Values are double-quoted strings (with `\"` and `\\`
//! escapes) or bare words. Comparisons are exact and case-sensitive; `ATTR != "v"` also holds
//! when the contact has no `ATTR`, exactly like `not ATTR = "v"`.

mod error;
mod expr;
mod lexer;
mod node;
mod parser;

pub use error::{SegmentError, SegmentErrorKind};
pub use expr::Segment;

/// The longest expression accepted, in characters.
pub const MAX_EXPR_CHARS: usize = 4096;

/// The deepest nesting of parentheses and `not` accepted.
pub const MAX_DEPTH: usize = 32;

/// What a segment expression can ask of a contact.
pub trait SegmentSubject {
    /// Whether the contact carries `tag`.
    fn has_tag(&self, tag: &str) -> bool;
    /// A template attribute's value, if the contact has it.
    fn attribute(&self, name: &str) -> Option<&str>;
}
