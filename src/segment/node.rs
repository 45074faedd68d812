//! The compiled form of a segment expression and its evaluation.
//!
//! `and`/`or` chains are flattened into lists at parse time, so evaluation is a short-circuiting
//! walk that allocates nothing and recurses no deeper than the expression's nesting.

use std::fmt;

use super::lexer::{is_keyword, is_word_char};
use super::SegmentSubject;

/// A node of a compiled segment expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    /// True when any child is (never empty; at least two children).
    Any(Vec<Node>),
    /// True when every child is (never empty; at least two children).
    All(Vec<Node>),
    Not(Box<Node>),
    /// `tag:NAME`
    Tag(Box<str>),
    /// `has(ATTR)`: the attribute is present (any value, the empty string included).
    Has(Box<str>),
    /// `ATTR = "v"`: present and exactly equal.
    Equals {
        attr: Box<str>,
        value: Box<str>,
    },
    /// `ATTR != "v"`: absent or different; the same as `not ATTR = "v"`.
    NotEquals {
        attr: Box<str>,
        value: Box<str>,
    },
    /// `ATTR in ("a", "b")`: present and exactly equal to one of the values.
    In {
        attr: Box<str>,
        values: Box<[Box<str>]>,
    },
}

impl Node {
    /// `a or b or ...`, flattening nested `or`s; a single item is returned as is.
    pub(super) fn any(items: Vec<Node>) -> Node {
        Node::join(items, Node::Any, |n| match n {
            Node::Any(v) => Ok(v),
            n => Err(n),
        })
    }

    /// `a and b and ...`, flattening nested `and`s; a single item is returned as is.
    pub(super) fn all(items: Vec<Node>) -> Node {
        Node::join(items, Node::All, |n| match n {
            Node::All(v) => Ok(v),
            n => Err(n),
        })
    }

    fn join(
        mut items: Vec<Node>,
        make: fn(Vec<Node>) -> Node,
        split: fn(Node) -> Result<Vec<Node>, Node>,
    ) -> Node {
        if items.len() == 1 {
            if let Some(only) = items.pop() {
                return only;
            }
        }
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match split(item) {
                Ok(children) => flat.extend(children),
                Err(item) => flat.push(item),
            }
        }
        make(flat)
    }

    /// Evaluates the expression for one contact.
    pub(super) fn eval<S: SegmentSubject + ?Sized>(&self, s: &S) -> bool {
        match self {
            Node::Any(children) => children.iter().any(|n| n.eval(s)),
            Node::All(children) => children.iter().all(|n| n.eval(s)),
            Node::Not(inner) => !inner.eval(s),
            Node::Tag(tag) => s.has_tag(tag),
            Node::Has(attr) => s.attribute(attr).is_some(),
            Node::Equals { attr, value } => s.attribute(attr) == Some(&**value),
            Node::NotEquals { attr, value } => s.attribute(attr) != Some(&**value),
            Node::In { attr, values } => s
                .attribute(attr)
                .is_some_and(|v| values.iter().any(|x| **x == *v)),
        }
    }
}

/// The canonical text of the expression: lowercase keywords, quoted values, and parentheses
/// only where precedence needs them. Parsing it gives back an equal expression.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, children: &[Node], sep: &str| {
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                // Only an `or` inside an `and` needs parentheses.
                match child {
                    Node::Any(_) if sep == " and " => write!(f, "({child})")?,
                    _ => write!(f, "{child}")?,
                }
            }
            Ok(())
        };
        match self {
            Node::Any(children) => list(f, children, " or "),
            Node::All(children) => list(f, children, " and "),
            Node::Not(inner) => match **inner {
                Node::Any(_) | Node::All(_) => write!(f, "not ({inner})"),
                _ => write!(f, "not {inner}"),
            },
            Node::Tag(tag) => write!(f, "tag:{}", Quoted(tag)),
            Node::Has(attr) => write!(f, "has({attr})"),
            Node::Equals { attr, value } => write!(f, "{attr} = {}", Quoted(value)),
            Node::NotEquals { attr, value } => write!(f, "{attr} != {}", Quoted(value)),
            Node::In { attr, values } => {
                write!(f, "{attr} in (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", Quoted(v))?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A tag name or value: bare when it is a plain word, else a quoted string.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if !s.is_empty() && s.chars().all(is_word_char) && !is_keyword(s) {
            return f.write_str(s);
        }
        f.write_str("\"")?;
        for c in s.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}
