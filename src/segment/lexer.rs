//! Splitting a segment expression into tokens, each with its 1-based column.

use super::error::{SegmentError, SegmentErrorKind};

/// One token of a segment expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok<'s> {
    LParen,
    RParen,
    Comma,
    Colon,
    Eq,
    Ne,
    /// A bare word: letters, digits, `_`, `.`, `-` (any script). Keywords are words too.
    Word(&'s str),
    /// A double-quoted string, unescaped.
    Str(String),
    End,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Word(w) if is_keyword(w) => format!("keyword `{w}`"),
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::End => "end of input".into(),
        }
    }
}

/// A token and the 1-based column it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token<'s> {
    pub(super) tok: Tok<'s>,
    pub(super) column: usize,
}

/// The reserved words, matched case-insensitively.
pub(super) fn is_keyword(word: &str) -> bool {
    ["and", "or", "not", "in"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// Characters of a bare word.
pub(super) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Tokenizes `src`; the last token is always [`Tok::End`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, SegmentError> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    let mut column = 0;
    let err = |position, kind| SegmentError { position, kind };
    while let Some((at, c)) = chars.next() {
        column += 1;
        let start = column;
        let tok = match c {
            c if c.is_whitespace() => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            ':' => Tok::Colon,
            '=' => Tok::Eq,
            '!' => match chars.next_if(|&(_, c)| c == '=') {
                Some(_) => {
                    column += 1;
                    Tok::Ne
                }
                None => {
                    return Err(err(
                        start,
                        SegmentErrorKind::Expected {
                            expected: "`!=`",
                            found: "`!`".into(),
                        },
                    ))
                }
            },
            '"' => {
                let mut value = String::new();
                loop {
                    let Some((_, c)) = chars.next() else {
                        return Err(err(start, SegmentErrorKind::UnterminatedString));
                    };
                    column += 1;
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some((_, e @ ('"' | '\\'))) => {
                                column += 1;
                                value.push(e);
                            }
                            Some((_, found)) => {
                                return Err(err(column, SegmentErrorKind::BadEscape { found }))
                            }
                            None => return Err(err(start, SegmentErrorKind::UnterminatedString)),
                        },
                        c => value.push(c),
                    }
                }
                Tok::Str(value)
            }
            c if is_word_char(c) => {
                let mut end = at + c.len_utf8();
                while let Some((i, c)) = chars.next_if(|&(_, c)| is_word_char(c)) {
                    column += 1;
                    end = i + c.len_utf8();
                }
                Tok::Word(&src[at..end])
            }
            found => return Err(err(start, SegmentErrorKind::UnexpectedChar { found })),
        };
        tokens.push(Token { tok, column: start });
    }
    tokens.push(Token {
        tok: Tok::End,
        column: column + 1,
    });
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<(Tok<'_>, usize)> {
        tokenize(src)
            .expect("tokenizes")
            .into_iter()
            .map(|t| (t.tok, t.column))
            .collect()
    }

    #[test]
    fn tokens_carry_their_columns() {
        assert_eq!(
            toks(r#"tag:vip and city != "上海 \"x\"""#),
            [
                (Tok::Word("tag"), 1),
                (Tok::Colon, 4),
                (Tok::Word("vip"), 5),
                (Tok::Word("and"), 9),
                (Tok::Word("city"), 13),
                (Tok::Ne, 18),
                (Tok::Str("上海 \"x\"".into()), 21),
                (Tok::End, 31),
            ]
        );
        assert_eq!(
            toks("在(a,b)"),
            [
                (Tok::Word("在"), 1),
                (Tok::LParen, 2),
                (Tok::Word("a"), 3),
                (Tok::Comma, 4),
                (Tok::Word("b"), 5),
                (Tok::RParen, 6),
                (Tok::End, 7),
            ]
        );
    }

    #[test]
    fn lexical_errors_are_located() {
        let e = |src| tokenize(src).expect_err("should fail");
        assert_eq!(e(r#"a = "abc"#).kind, SegmentErrorKind::UnterminatedString);
        assert_eq!(e(r#"a = "abc"#).position, 5);
        assert_eq!(e(r#"a = "x\n""#).position, 7);
        assert_eq!(
            e(r#"a = "x\n""#).kind,
            SegmentErrorKind::BadEscape { found: 'n' }
        );
        assert_eq!(e("a & b").position, 3);
        assert_eq!(e("a ! b").position, 3);
    }
}
