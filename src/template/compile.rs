//! Compiling a template body once per job into literal slices and numbered variables.
//!
//! Syntax: `{{name}}` or `{{ name }}`, where a name is one or more of `A-Z a-z 0-9 _ . -`.
//! Everything else, including a lone `{` or `}`, is literal text. Compilation resolves every
//! placeholder to an index into [`Template::variables`], so the per-recipient render is a walk
//! over a short list with no parsing and no name lookups.

use std::sync::Arc;

use super::error::{TemplateError, TemplateErrorKind};

/// The longest body accepted, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;

const OPEN: &str = "{{";
const CLOSE: &str = "}}";

/// One step of rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    /// `body[start..end]`, copied as is.
    Literal { start: usize, end: usize },
    /// The value of `variables[index]`.
    Variable { index: usize },
}

/// A compiled template: the body, its placeholders resolved to variable indexes.
///
/// Compile once per job with [`Template::compile`], then render per recipient with
/// [`Template::render_into`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub(super) body: String,
    pub(super) pieces: Vec<Piece>,
    pub(super) variables: Vec<String>,
    /// The same names, shared with [`super::MissingVariable`] so that a miss does not allocate.
    pub(super) shared_names: Vec<Arc<str>>,
    /// Bytes of literal text, the least a render appends.
    pub(super) literal_len: usize,
}

impl Template {
    /// Compiles `body`, or says where and why it is malformed.
    ///
    /// Fails on a body over [`MAX_BODY_CHARS`] characters, a `{{` without a closing `}}`, and an
    /// empty or invalid variable name. The first problem in the body is reported.
    pub fn compile(body: &str) -> Result<Template, TemplateError> {
        if body.len() > MAX_BODY_CHARS && body.chars().count() > MAX_BODY_CHARS {
            return Err(TemplateError {
                position: MAX_BODY_CHARS + 1,
                kind: TemplateErrorKind::TooLong {
                    max: MAX_BODY_CHARS,
                },
            });
        }
        let mut pieces = Vec::new();
        let mut variables: Vec<String> = Vec::new();
        let mut literal_len = 0;
        let mut push_literal = |pieces: &mut Vec<Piece>, start: usize, end: usize| {
            if start < end {
                pieces.push(Piece::Literal { start, end });
                literal_len += end - start;
            }
        };
        let mut rest = 0;
        while let Some(found) = body[rest..].find(OPEN) {
            let open = rest + found;
            let inner_start = open + OPEN.len();
            let Some(len) = body[inner_start..].find(CLOSE) else {
                return Err(error_at(body, open, TemplateErrorKind::Unclosed));
            };
            let name = parse_name(body, open, inner_start, inner_start + len)?;
            let index = match variables.iter().position(|v| v == name) {
                Some(index) => index,
                None => {
                    variables.push(name.to_owned());
                    variables.len() - 1
                }
            };
            push_literal(&mut pieces, rest, open);
            pieces.push(Piece::Variable { index });
            rest = inner_start + len + CLOSE.len();
        }
        push_literal(&mut pieces, rest, body.len());
        Ok(Template {
            body: body.to_owned(),
            pieces,
            shared_names: variables.iter().map(|v| Arc::from(v.as_str())).collect(),
            variables,
            literal_len,
        })
    }

    /// The distinct variable names, in order of first appearance. Indexes into this slice are
    /// what [`Template::render_into`] asks its lookup for.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// The body as written.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body with every placeholder's text replaced by as many `mask` characters: the
    /// sender's literal text at its own character positions, for content checks that must
    /// hold whatever the values are.
    pub fn masked_body(&self, mask: char) -> String {
        let mut out = String::with_capacity(self.body.len());
        let mut at = 0;
        let gap = |out: &mut String, from: usize, to: usize| {
            out.extend(std::iter::repeat_n(
                mask,
                self.body[from..to].chars().count(),
            ));
        };
        for piece in &self.pieces {
            if let Piece::Literal { start, end } = *piece {
                gap(&mut out, at, start);
                out.push_str(&self.body[start..end]);
                at = end;
            }
        }
        gap(&mut out, at, self.body.len());
        out
    }

    /// Whether the body has no placeholders, so every recipient gets the same text.
    pub fn is_literal(&self) -> bool {
        self.variables.is_empty()
    }
}

/// Checks the text between `{{` (at byte `open`) and `}}` and returns the name, trimmed of
/// surrounding spaces.
fn parse_name(body: &str, open: usize, start: usize, end: usize) -> Result<&str, TemplateError> {
    let inner = &body[start..end];
    let name = inner.trim_matches(' ');
    if name.is_empty() {
        return Err(error_at(body, open, TemplateErrorKind::EmptyName));
    }
    let name_start = start + (inner.len() - inner.trim_start_matches(' ').len());
    match name.char_indices().find(|&(_, c)| !is_name_char(c)) {
        Some((at, found)) => Err(error_at(
            body,
            name_start + at,
            TemplateErrorKind::InvalidName { found },
        )),
        None => Ok(name),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// An error at byte offset `at`, reported as a 1-based character position.
fn error_at(body: &str, at: usize, kind: TemplateErrorKind) -> TemplateError {
    TemplateError {
        position: body[..at].chars().count() + 1,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(body: &str) -> (usize, TemplateErrorKind) {
        let e = Template::compile(body).expect_err("should not compile");
        (e.position, e.kind)
    }

    #[test]
    fn variables_are_distinct_in_order_of_first_appearance() {
        let t = Template::compile("{{b}} {{ a }} {{b}} {{c.d-e_1}}").expect("compiles");
        assert_eq!(t.variables(), ["b", "a", "c.d-e_1"]);
        assert!(!t.is_literal());
    }

    #[test]
    fn masking_keeps_literal_text_at_its_character_positions() {
        let t = Template::compile("{{a}}你好 {{ b }}!{{c}}").expect("compiles");
        assert_eq!(t.masked_body('#'), "#####你好 #######!#####");
        let plain = Template::compile("no placeholders").expect("compiles");
        assert_eq!(plain.masked_body('#'), "no placeholders");
    }

    #[test]
    fn lone_braces_are_literal() {
        let t = Template::compile("a { b } c }} d {x}").expect("compiles");
        assert!(t.is_literal());
        assert_eq!(t.pieces.len(), 1);
    }

    #[test]
    fn unclosed_placeholder_points_at_its_opening() {
        assert_eq!(err("Hi {{name"), (4, TemplateErrorKind::Unclosed));
        assert_eq!(
            err("你好 {{name}} {{city"),
            (13, TemplateErrorKind::Unclosed)
        );
    }

    #[test]
    fn empty_names_are_rejected() {
        assert_eq!(err("Hi {{}}"), (4, TemplateErrorKind::EmptyName));
        assert_eq!(err("Hi {{   }}!"), (4, TemplateErrorKind::EmptyName));
    }

    #[test]
    fn invalid_names_point_at_the_first_bad_character() {
        let kind = |found| TemplateErrorKind::InvalidName { found };
        assert_eq!(err("Hi {{first name}}"), (11, kind(' ')));
        assert_eq!(err("Hi {{  名字 }}"), (8, kind('名')));
        assert_eq!(err("{{{name}}}"), (3, kind('{')));
        assert_eq!(err("{{a\n}}"), (4, kind('\n')));
    }

    #[test]
    fn body_length_is_limited_in_characters() {
        assert!(Template::compile(&"你".repeat(MAX_BODY_CHARS)).is_ok());
        let (position, kind) = err(&"a".repeat(MAX_BODY_CHARS + 1));
        assert_eq!(position, MAX_BODY_CHARS + 1);
        assert_eq!(
            kind,
            TemplateErrorKind::TooLong {
                max: MAX_BODY_CHARS
            }
        );
    }

    #[test]
    fn errors_read_well() {
        let e = Template::compile("Hi {{name").expect_err("unclosed");
        assert_eq!(
            e.to_string(),
            "at character 4: `{{` is never closed with `}}`"
        );
        assert_eq!(e.message(), "`{{` is never closed with `}}`");
        let e = Template::compile("{{a b}}").expect_err("bad name");
        assert!(
            e.to_string()
                .starts_with("at character 4: invalid character ' '"),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn compile_never_panics_and_bodies_without_placeholders_are_literal(
            body in "[a-z {}_.\\-]{0,40}|\\PC{0,40}"
        ) {
            if let Ok(t) = Template::compile(&body) {
                let rendered = t.render_with(|n| Some(format!("<{n}>")));
                prop_assert!(rendered.is_ok());
                if !body.contains("{{") {
                    prop_assert_eq!(rendered.ok(), Some(body.clone()));
                }
            } else {
                prop_assert!(body.contains("{{"));
            }
        }
    }
}
