//! Recursive-descent parsing of segment expressions into [`Node`]s.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" expr ")" | "tag" ":" name | "has" "(" attr ")"
//!          | attr "=" value | attr "!=" value | attr "in" "(" value ("," value)* ")"
//! name    := word | string          value := word | string          attr := word
//! ```
//!
//! Keywords (`and`, `or`, `not`, `in`, and `tag`/`has` where they introduce a form) are
//! case-insensitive. Every `(` and `not` adds a nesting level; the depth limit keeps both this
//! parser and evaluation far from the stack's end whatever the input.

use super::error::{SegmentError, SegmentErrorKind};
use super::lexer::{is_keyword, tokenize, Tok, Token};
use super::node::Node;
use super::{MAX_DEPTH, MAX_EXPR_CHARS};

/// Parses a whole expression.
pub(super) fn parse(src: &str) -> Result<Node, SegmentError> {
    if src.len() > MAX_EXPR_CHARS && src.chars().count() > MAX_EXPR_CHARS {
        return Err(SegmentError {
            position: MAX_EXPR_CHARS + 1,
            kind: SegmentErrorKind::TooLong {
                max: MAX_EXPR_CHARS,
            },
        });
    }
    let mut p = Parser {
        tokens: tokenize(src)?,
        pos: 0,
    };
    let node = p.or(0)?;
    match p.peek() {
        Tok::End => Ok(node),
        _ => Err(p.expected("`and`, `or` or the end of the expression")),
    }
}

struct Parser<'s> {
    /// Never empty: the last token is always `End`, and `pos` never moves past it.
    tokens: Vec<Token<'s>>,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn current(&self) -> Option<&Token<'s>> {
        self.tokens.get(self.pos).or(self.tokens.last())
    }

    fn peek(&self) -> &Tok<'s> {
        self.current().map_or(&Tok::End, |t| &t.tok)
    }

    fn peek_second(&self) -> &Tok<'s> {
        self.tokens.get(self.pos + 1).map_or(&Tok::End, |t| &t.tok)
    }

    fn column(&self) -> usize {
        self.current().map_or(1, |t| t.column)
    }

    fn advance(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    /// An error at the current token saying what should have been there.
    fn expected(&self, expected: &'static str) -> SegmentError {
        SegmentError {
            position: self.column(),
            kind: SegmentErrorKind::Expected {
                expected,
                found: self.peek().describe(),
            },
        }
    }

    /// One level deeper, or an error at the current token.
    fn deeper(&self, depth: usize) -> Result<usize, SegmentError> {
        if depth >= MAX_DEPTH {
            return Err(SegmentError {
                position: self.column(),
                kind: SegmentErrorKind::TooDeep { max: MAX_DEPTH },
            });
        }
        Ok(depth + 1)
    }

    fn eat(&mut self, tok: &Tok<'_>, expected: &'static str) -> Result<(), SegmentError> {
        if self.peek() != tok {
            return Err(self.expected(expected));
        }
        self.advance();
        Ok(())
    }

    fn or(&mut self, depth: usize) -> Result<Node, SegmentError> {
        let mut items = vec![self.and(depth)?];
        while self.at_keyword("or") {
            self.advance();
            items.push(self.and(depth)?);
        }
        Ok(Node::any(items))
    }

    fn and(&mut self, depth: usize) -> Result<Node, SegmentError> {
        let mut items = vec![self.unary(depth)?];
        while self.at_keyword("and") {
            self.advance();
            items.push(self.unary(depth)?);
        }
        Ok(Node::all(items))
    }

    fn unary(&mut self, depth: usize) -> Result<Node, SegmentError> {
        if self.at_keyword("not") {
            let depth = self.deeper(depth)?;
            self.advance();
            return Ok(Node::Not(Box::new(self.unary(depth)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Node, SegmentError> {
        const EXPRESSION: &str =
            "an expression (`tag:NAME`, `has(ATTR)`, `ATTR = \"value\"`, `not ...` or `(...)`)";
        match self.peek() {
            Tok::LParen => {
                let depth = self.deeper(depth)?;
                self.advance();
                let inner = self.or(depth)?;
                self.eat(&Tok::RParen, "`)`")?;
                Ok(inner)
            }
            Tok::Word(w) if is_keyword(w) => Err(self.expected(EXPRESSION)),
            Tok::Word(w) if w.eq_ignore_ascii_case("tag") && *self.peek_second() == Tok::Colon => {
                self.advance();
                self.advance();
                Ok(Node::Tag(self.name("a tag name after `tag:`")?))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("has") && *self.peek_second() == Tok::LParen => {
                self.advance();
                self.advance();
                let attr = self.attr("an attribute name inside `has(...)`")?;
                self.eat(&Tok::RParen, "`)` to close `has(`")?;
                Ok(Node::Has(attr))
            }
            Tok::Word(_) => self.comparison(),
            _ => Err(self.expected(EXPRESSION)),
        }
    }

    fn comparison(&mut self) -> Result<Node, SegmentError> {
        let attr = self.attr("an attribute name")?;
        match self.peek() {
            Tok::Eq => {
                self.advance();
                let value = self.value()?;
                Ok(Node::Equals { attr, value })
            }
            Tok::Ne => {
                self.advance();
                let value = self.value()?;
                Ok(Node::NotEquals { attr, value })
            }
            _ if self.at_keyword("in") => {
                self.advance();
                self.eat(&Tok::LParen, "`(` after `in`")?;
                let mut values = vec![self.value()?];
                while *self.peek() == Tok::Comma {
                    self.advance();
                    values.push(self.value()?);
                }
                self.eat(&Tok::RParen, "`,` or `)` in the `in (...)` list")?;
                Ok(Node::In {
                    attr,
                    values: values.into_boxed_slice(),
                })
            }
            _ => Err(self.expected("`=`, `!=` or `in` after the attribute name")),
        }
    }

    /// A bare, non-keyword word.
    fn attr(&mut self, expected: &'static str) -> Result<Box<str>, SegmentError> {
        match self.peek() {
            Tok::Word(w) if !is_keyword(w) => {
                let w = Box::from(*w);
                self.advance();
                Ok(w)
            }
            _ => Err(self.expected(expected)),
        }
    }

    /// A word (keywords included: after `tag:` nothing else could be meant) or a string.
    fn name(&mut self, expected: &'static str) -> Result<Box<str>, SegmentError> {
        let name = match self.peek() {
            Tok::Word(w) => Box::from(*w),
            Tok::Str(s) => Box::from(s.as_str()),
            _ => return Err(self.expected(expected)),
        };
        self.advance();
        Ok(name)
    }

    /// A string, or a bare word that is not a keyword.
    fn value(&mut self) -> Result<Box<str>, SegmentError> {
        const VALUE: &str = "a value (a \"quoted string\" or a bare word)";
        match self.peek() {
            Tok::Str(_) => self.name(VALUE),
            Tok::Word(w) if !is_keyword(w) => self.name(VALUE),
            _ => Err(self.expected(VALUE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(expr: &str) -> String {
        match parse(expr) {
            Ok(node) => panic!("{expr:?} should not parse, got {node}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn syntax_errors_name_the_column_and_the_problem() {
        assert_eq!(
            err("tag:vip and"),
            "at column 12: expected an expression (`tag:NAME`, `has(ATTR)`, `ATTR = \"value\"`, \
             `not ...` or `(...)`), found end of input"
        );
        assert_eq!(
            err("(tag:a or tag:b"),
            "at column 16: expected `)`, found end of input"
        );
        assert_eq!(
            err("city == x"),
            "at column 7: expected a value (a \"quoted string\" or a bare word), found `=`"
        );
        assert_eq!(
            err("city Shanghai"),
            "at column 6: expected `=`, `!=` or `in` after the attribute name, found `Shanghai`"
        );
        assert_eq!(
            err("tag:a tag:b"),
            "at column 7: expected `and`, `or` or the end of the expression, found `tag`"
        );
        assert_eq!(
            err("tier in (a b)"),
            "at column 12: expected `,` or `)` in the `in (...)` list, found `b`"
        );
        assert_eq!(
            err("tier in ()"),
            "at column 10: expected a value (a \"quoted string\" or a bare word), found `)`"
        );
        assert_eq!(
            err("has()"),
            "at column 5: expected an attribute name inside `has(...)`, found `)`"
        );
        assert_eq!(
            err("x = and"),
            "at column 5: expected a value (a \"quoted string\" or a bare word), found keyword `and`"
        );
        assert_eq!(
            err("tag:"),
            "at column 5: expected a tag name after `tag:`, found end of input"
        );
        assert_eq!(
            err(r#"city = "x"#),
            "at column 8: string is never closed with `\"`"
        );
        assert_eq!(
            err("city = x & y"),
            "at column 10: unexpected character '&'"
        );
        assert!(err("").starts_with("at column 1: expected an expression"));
        assert!(err("   ").starts_with("at column 4: expected an expression"));
    }

    #[test]
    fn nesting_is_limited_without_exhausting_the_stack() {
        let nested = |n| format!("{}tag:a{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        let e = parse(&nested(MAX_DEPTH + 1)).expect_err("too deep");
        assert_eq!(
            (e.position, e.kind),
            (MAX_DEPTH + 1, SegmentErrorKind::TooDeep { max: MAX_DEPTH })
        );
        let nots = |n| format!("{}tag:a", "not ".repeat(n));
        assert!(parse(&nots(MAX_DEPTH)).is_ok());
        assert_eq!(
            parse(&nots(MAX_DEPTH + 1)).map_err(|e| e.kind),
            Err(SegmentErrorKind::TooDeep { max: MAX_DEPTH })
        );
        assert!(parse(&"(".repeat(MAX_EXPR_CHARS)).is_err());
    }

    #[test]
    fn length_is_limited_in_characters() {
        let long_ok = format!("city = \"{}\"", "上".repeat(MAX_EXPR_CHARS - 9));
        assert_eq!(long_ok.chars().count(), MAX_EXPR_CHARS);
        assert!(parse(&long_ok).is_ok());
        let e = parse(&format!("{long_ok} ")).expect_err("too long");
        assert_eq!(e.position, MAX_EXPR_CHARS + 1);
        assert_eq!(
            e.kind,
            SegmentErrorKind::TooLong {
                max: MAX_EXPR_CHARS
            }
        );
    }
}
