//! Why a segment expression does not parse, with the column the API can point at.

/// A segment expression that cannot be parsed.
///
/// `position` is the 1-based column, counted in characters, where the problem starts.
/// Displays as `at column 12: expected ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {position}: {kind}")]
pub struct SegmentError {
    /// 1-based column, in characters.
    pub position: usize,
    /// What is wrong there.
    pub kind: SegmentErrorKind,
}

impl SegmentError {
    /// The problem without its position, for an API error's `message` field.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// The ways a segment expression can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentErrorKind {
    /// The expression is longer than [`MAX_EXPR_CHARS`](super::MAX_EXPR_CHARS) characters.
    #[error("expression is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Parentheses and `not` nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("expression nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A `"` with no closing `"`.
    #[error("string is never closed with `\"`")]
    UnterminatedString,
    /// A backslash followed by anything but `"` or `\`.
    #[error("unknown escape `\\{found}` (only `\\\"` and `\\\\` are allowed)")]
    BadEscape {
        /// The character after the backslash.
        found: char,
    },
    /// A character that starts no token.
    #[error("unexpected character {found:?}")]
    UnexpectedChar {
        /// The character.
        found: char,
    },
    /// A token that does not fit where it is.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What would have fitted.
        expected: &'static str,
        /// The token that was there, described (`end of input`, `` `)` ``, `keyword \`and\``).
        found: String,
    },
}
