//! A banned-words list: its file format and the matcher that finds the first banned term in a
//! text. Built once per configuration and shared by every job it applies to.
//!
//! The format (see `config/banned-words-zh.txt`): one term a line, `#` comment lines, and
//! `!` lines naming exceptions, text that is not checked against the terms (so `!最近` keeps
//! "recently" from matching the superlative `最`). Matching is leftmost-longest over terms and
//! exceptions together, so an exception wins over a shorter term at the same place. ASCII
//! letters match in any case, and a term that starts or ends with an ASCII letter or digit
//! matches only as a whole word there ("best" is not found in "bestow").

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// The list shipped in `config/`, by the name the shipped configuration gives it.
pub const SHIPPED_LIST_NAME: &str = "banned-words-zh.txt";
/// The shipped list, used when a configuration names it and no such file is beside it.
pub const SHIPPED_LIST: &str = include_str!("../../config/banned-words-zh.txt");

/// A compiled list.
#[derive(Debug)]
pub struct BannedList {
    matcher: AhoCorasick,
    /// Terms and exceptions in pattern order; the first `terms` are terms.
    patterns: Vec<String>,
    terms: usize,
}

/// A banned term found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BannedHit {
    /// 1-based character position of the term's first character.
    pub position: usize,
    pub term: String,
}

/// Why a list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BannedListError {
    #[error("holds no terms")]
    Empty,
    #[error("cannot be compiled: {0}")]
    Build(#[from] aho_corasick::BuildError),
}

impl BannedList {
    /// Parses a list file's text.
    pub fn parse(text: &str) -> Result<BannedList, BannedListError> {
        let (mut terms, mut exceptions) = (Vec::new(), Vec::new());
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_prefix('!') {
                Some(e) if !e.trim().is_empty() => exceptions.push(e.trim().to_string()),
                Some(_) => {}
                None => terms.push(line.to_string()),
            }
        }
        if terms.is_empty() {
            return Err(BannedListError::Empty);
        }
        let n = terms.len();
        terms.extend(exceptions);
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&terms)?;
        Ok(BannedList {
            matcher,
            patterns: terms,
            terms: n,
        })
    }

    /// The number of banned terms (exceptions not counted).
    pub fn len(&self) -> usize {
        self.terms
    }

    /// Whether the list has no terms (never true for a parsed list).
    pub fn is_empty(&self) -> bool {
        self.terms == 0
    }

    /// The first banned term in `text`.
    pub fn find(&self, text: &str) -> Option<BannedHit> {
        let bytes = text.as_bytes();
        for m in self.matcher.find_iter(text) {
            let index = m.pattern().as_usize();
            if index >= self.terms {
                continue;
            }
            let term = &self.patterns[index];
            let word_char = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
            let starts_word = term
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_alphanumeric);
            let ends_word = term
                .as_bytes()
                .last()
                .is_some_and(u8::is_ascii_alphanumeric);
            if starts_word && m.start() > 0 && word_char(bytes.get(m.start() - 1)) {
                continue;
            }
            if ends_word && word_char(bytes.get(m.end())) {
                continue;
            }
            return Some(BannedHit {
                position: text[..m.start()].chars().count() + 1,
                term: term.clone(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> BannedList {
        BannedList::parse(SHIPPED_LIST).expect("shipped list")
    }

    #[test]
    fn the_shipped_list_holds_the_articles_terms() {
        let list = shipped();
        for term in ["国家级", "最高级", "最佳", "第一", "唯一", "顶级", "极品"] {
            assert_eq!(
                list.find(&format!("本店{term}好货")).map(|h| h.term),
                Some(term.to_string()),
                "{term}"
            );
        }
        assert!(list.len() > 30);
    }

    #[test]
    fn positions_count_characters_and_the_longest_term_wins() {
        let hit = shipped().find("【美妆】全场最佳好物").expect("hit");
        assert_eq!(hit.position, 7);
        assert_eq!(hit.term, "最佳");
    }

    #[test]
    fn exceptions_keep_ordinary_words() {
        let list = shipped();
        assert_eq!(list.find("最近到店的会员可领取礼品"), None);
        let hit = list.find("最近上新，最好的一季").expect("hit");
        assert_eq!((hit.position, hit.term.as_str()), (6, "最好"));
    }

    #[test]
    fn ascii_terms_match_whole_words_in_any_case() {
        let list = BannedList::parse("best\nNO.1\n").expect("list");
        assert_eq!(list.find("we bestow gifts"), None);
        assert_eq!(list.find("the BEST deal").map(|h| h.position), Some(5));
        assert_eq!(list.find("brand no.1!").map(|h| h.position), Some(7));
        assert_eq!(list.find("no.10"), None);
    }

    #[test]
    fn a_list_without_terms_is_refused() {
        assert!(matches!(
            BannedList::parse("# only comments\n!最近\n"),
            Err(BannedListError::Empty)
        ));
    }
}
