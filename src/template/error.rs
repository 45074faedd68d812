//! Why a template body does not compile, located precisely enough for the API to point at the
//! offending part of `template.body`.

/// A template body that cannot be compiled.
///
/// `position` is the 1-based character (Unicode scalar value) index into the body where the
/// problem starts: the `{{` of an unclosed or empty placeholder, or the first character of a
/// name that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: {kind}")]
pub struct TemplateError {
    /// 1-based character index into the body.
    pub position: usize,
    /// What is wrong there.
    pub kind: TemplateErrorKind,
}

impl TemplateError {
    /// The problem without its position, for an API error's `message` field.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// The ways a template body can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateErrorKind {
    /// The body is longer than [`MAX_BODY_CHARS`](super::MAX_BODY_CHARS) characters.
    #[error("template body is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A `{{` with no `}}` after it.
    #[error("`{{{{` is never closed with `}}}}`")]
    Unclosed,
    /// `{{}}` or `{{   }}`.
    #[error("empty variable name in `{{{{ }}}}`")]
    EmptyName,
    /// A name with a character outside `A-Z a-z 0-9 _ . -`.
    #[error(
        "invalid character {found:?} in variable name (allowed: letters, digits, `_`, `.`, `-`)"
    )]
    InvalidName {
        /// The first character that is not allowed.
        found: char,
    },
}
