//! One compiled content rule and its check, as pure functions over a text: the sender
//! signature, the opt-out instruction, banned words and the SMS part limit.

use std::sync::Arc;

use super::banned::BannedList;
use super::finding::Finding;
use crate::config::{RuleKind, SignaturePosition};
use crate::domain::{Channel, Purpose};
use crate::template::{count_parts, SmsParts};

/// The longest signature name when a rule sets none, in characters.
pub const DEFAULT_SIGNATURE_MAX_LEN: usize = 16;

/// What a rule checks, compiled.
#[derive(Debug, Clone)]
pub enum Check {
    Signature {
        open: String,
        close: String,
        position: SignaturePosition,
        max_len: usize,
    },
    /// Accepted instructions, ASCII-lowercased.
    OptOut {
        accepted: Vec<String>,
    },
    BannedWords {
        list: Arc<BannedList>,
    },
    MaxParts {
        max: u32,
    },
}

/// One rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub channels: Vec<Channel>,
    pub purposes: Vec<Purpose>,
    pub check: Check,
}

impl Rule {
    /// Whether the rule applies to jobs of this channel and purpose.
    pub fn applies(&self, channel: Channel, purpose: Purpose) -> bool {
        (self.channels.is_empty() || self.channels.contains(&channel))
            && (self.purposes.is_empty() || self.purposes.contains(&purpose))
    }

    /// The kind, as findings name it.
    pub fn kind(&self) -> RuleKind {
        match self.check {
            Check::Signature { .. } => RuleKind::Signature,
            Check::OptOut { .. } => RuleKind::OptOut,
            Check::BannedWords { .. } => RuleKind::BannedWords,
            Check::MaxParts { .. } => RuleKind::MaxParts,
        }
    }

    /// Checks `text`, the sender's own text (placeholders masked so they match nothing).
    pub fn check(&self, text: &str) -> Option<Finding> {
        match &self.check {
            Check::Signature {
                open,
                close,
                position,
                max_len,
            } => signature(text, open, close, *position, *max_len)
                .err()
                .map(|(at, message)| self.finding(Some(at), message)),
            Check::OptOut { accepted } => (!has_opt_out(text, accepted)).then(|| {
                self.finding(
                    None,
                    format!(
                        "no opt-out instruction; add one of {}",
                        accepted
                            .iter()
                            .map(|a| format!("{a:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }),
            Check::BannedWords { list } => list.find(text).map(|hit| {
                let message = format!("banned term {:?}", hit.term);
                self.finding(Some(hit.position), message)
            }),
            Check::MaxParts { max } => {
                let parts = count_parts(text);
                (parts.parts > *max).then(|| {
                    self.finding(
                        first_char_past(text, *max),
                        format!(
                            "{} SMS parts ({:?}, {} units); at most {max} allowed",
                            parts.parts, parts.encoding, parts.units
                        ),
                    )
                })
            }
        }
    }

    /// Checks a rendered message: only what a variable's value can break. The template
    /// check already holds the signature and the opt-out in literal text, which every
    /// rendering keeps where it was.
    pub fn check_message(&self, body: &str, parts: SmsParts) -> bool {
        match &self.check {
            Check::Signature { .. } | Check::OptOut { .. } => true,
            Check::BannedWords { list } => list.find(body).is_none(),
            Check::MaxParts { max } => parts.parts <= *max,
        }
    }

    fn finding(&self, position: Option<usize>, message: String) -> Finding {
        Finding {
            rule: self.name.clone(),
            kind: self.kind(),
            variant: None,
            position,
            message,
        }
    }
}

/// Ok, or the 1-based character position where the signature should be and why it is not.
fn signature(
    text: &str,
    open: &str,
    close: &str,
    position: SignaturePosition,
    max_len: usize,
) -> Result<(), (usize, String)> {
    let form = format!("{open}name{close}");
    let name_ok = |name: &str| {
        let n = name.chars().count();
        n >= 1 && n <= max_len && !name.contains(['\n', '\r']) && !name.contains(open)
    };
    match position {
        SignaturePosition::Start => {
            let leading = text.len() - text.trim_start().len();
            let at = text[..leading].chars().count() + 1;
            let rest = &text[leading..];
            let ok = rest
                .strip_prefix(open)
                .and_then(|r| r.find(close).map(|end| &r[..end]))
                .is_some_and(name_ok);
            match ok {
                true => Ok(()),
                false => Err((
                    at,
                    format!("the message must start with a signature {form} (1 to {max_len} characters)"),
                )),
            }
        }
        SignaturePosition::End => {
            let trimmed = text.trim_end();
            let at = trimmed.chars().count().max(1);
            let ok = trimmed
                .strip_suffix(close)
                .and_then(|r| r.rfind(open).map(|start| &r[start + open.len()..]))
                .is_some_and(name_ok);
            match ok {
                true => Ok(()),
                false => Err((
                    at,
                    format!(
                        "the message must end with a signature {form} (1 to {max_len} characters)"
                    ),
                )),
            }
        }
    }
}

fn has_opt_out(text: &str, accepted: &[String]) -> bool {
    let lower = text.to_ascii_lowercase();
    accepted.iter().any(|a| lower.contains(a.as_str()))
}

/// The 1-based position of the first character that does not fit in `max` parts: the
/// shortest prefix that needs more parts, found by bisection over character boundaries.
fn first_char_past(text: &str, max: u32) -> Option<usize> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    // `bounds[k]` ends the prefix of k characters; find the least k whose prefix is too long.
    let (mut lo, mut hi) = (0usize, bounds.len() - 1);
    if count_parts(text).parts <= max {
        return None;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if count_parts(&text[..bounds[mid]]).parts > max {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(check: Check) -> Rule {
        Rule {
            name: "r".into(),
            channels: vec![],
            purposes: vec![],
            check,
        }
    }

    fn sig(open: &str, close: &str, position: SignaturePosition) -> Rule {
        rule(Check::Signature {
            open: open.into(),
            close: close.into(),
            position,
            max_len: 8,
        })
    }

    #[test]
    fn chinese_signature_at_the_start() {
        let r = sig("【", "】", SignaturePosition::Start);
        assert!(r.check("【星河商城】双十一会员日，回T退订").is_none());
        assert!(r.check("  【星河】早安").is_none());
        let f = r.check("双十一会员日【星河商城】").expect("finding");
        assert_eq!(f.position, Some(1));
        assert!(f.message.contains("【name】"), "{}", f.message);
        // Empty and over-long names are not signatures.
        assert!(r.check("【】早安").is_some());
        assert!(r.check("【一二三四五六七八九】早安").is_some());
    }

    #[test]
    fn english_signature_at_the_end() {
        let r = sig("[", "]", SignaturePosition::End);
        assert!(r
            .check("Sale ends Sunday. Reply STOP to opt out [Acme]\n")
            .is_none());
        let f = r.check("[Acme] Sale ends Sunday").expect("finding");
        assert_eq!(f.position, Some(23));
    }

    #[test]
    fn opt_out_forms_in_chinese_and_english() {
        let r = rule(Check::OptOut {
            accepted: vec!["回t退订".into(), "reply stop to opt out".into()],
        });
        assert!(r.check("【星河】会员日全场8折，回T退订").is_none());
        assert!(r
            .check("Acme: 20% off today. Reply STOP to opt out")
            .is_none());
        assert!(r.check("【星河】会员日全场8折").is_some());
        let f = r.check("Acme: 20% off today").expect("finding");
        assert_eq!(f.position, None);
        assert!(f.message.contains("reply stop to opt out"));
    }

    #[test]
    fn banned_words_in_chinese_and_english() {
        let list = BannedList::parse("最佳\nguaranteed\n").expect("list");
        let r = rule(Check::BannedWords {
            list: Arc::new(list),
        });
        let f = r.check("【星河】年度最佳好物").expect("finding");
        assert_eq!(f.position, Some(7));
        assert!(f.message.contains("最佳"));
        assert!(r.check("【星河】年度好物").is_none());
        assert_eq!(
            r.check("Results Guaranteed!").and_then(|f| f.position),
            Some(9)
        );
        assert!(r.check("Great results").is_none());
    }

    #[test]
    fn max_parts_points_at_the_first_character_past_the_limit() {
        let r = rule(Check::MaxParts { max: 1 });
        assert!(r.check(&"a".repeat(160)).is_none());
        assert_eq!(
            r.check(&"a".repeat(161)).and_then(|f| f.position),
            Some(161)
        );
        // Chinese is UCS-2: 70 characters in one part.
        assert!(r.check(&"好".repeat(70)).is_none());
        assert_eq!(r.check(&"好".repeat(71)).and_then(|f| f.position), Some(71));
        let two = rule(Check::MaxParts { max: 2 });
        // Two concatenated UCS-2 parts hold 2 x 67 characters.
        assert!(two.check(&"好".repeat(134)).is_none());
        assert_eq!(
            two.check(&"好".repeat(135)).and_then(|f| f.position),
            Some(135)
        );
    }
}
