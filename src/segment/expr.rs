//! [`Segment`]: a parsed audience expression, ready to be matched against contacts.

use std::fmt;

use super::error::SegmentError;
use super::node::Node;
use super::{parser, SegmentSubject};

/// A compiled segment expression.
///
/// Parse once per job with [`Segment::parse`], then call [`Segment::matches`] per contact.
/// Displays as a canonical expression that parses back to an equal `Segment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    root: Node,
}

impl Segment {
    /// Parses `expr`, or says at which column and why it is malformed.
    ///
    /// Fails on an expression over [`MAX_EXPR_CHARS`](super::MAX_EXPR_CHARS) characters,
    /// nesting deeper than [`MAX_DEPTH`](super::MAX_DEPTH), and any syntax error; the first
    /// problem is reported. Never panics, whatever the input.
    pub fn parse(expr: &str) -> Result<Segment, SegmentError> {
        parser::parse(expr).map(|root| Segment { root })
    }

    /// Whether `subject` is in the segment. Short-circuits and allocates nothing; works with
    /// concrete subjects and `&dyn SegmentSubject` alike.
    pub fn matches<S: SegmentSubject + ?Sized>(&self, subject: &S) -> bool {
        self.root.eval(subject)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

#[cfg(test)]
mod tests;
