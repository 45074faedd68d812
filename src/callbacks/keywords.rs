//! Opt-out and opt-in keywords in inbound replies.
//!
//! Opt-out: `STOP`, `UNSUBSCRIBE`, `STOPALL`, `CANCEL`, `END`, `QUIT`, `退订`, `TD`, `T`.
//! Opt-in: `START`, `UNSTOP`.
//!
//! Matching: full-width ASCII (`ＳＴＯＰ`, U+FF01–U+FF5E) and the ideographic space fold to
//! ASCII, letters compare case-insensitively, and punctuation around the reply is ignored. A
//! reply matches when its first word is a keyword that stands on its own: the whole reply, or
//! followed by sentence punctuation (`Stop. Thank you`, `退订，谢谢`, `STOP!`), in a short reply
//! (at most [`MAX_REPLY_CHARS`] characters). A keyword that merely starts a sentence does not
//! match (`End of the day works`, `Stop by tomorrow`, `T-shirt size?`), nor does a longer word
//! (`Stopwatch`, `Thanks`).

/// Longer replies are conversations, not keyword replies.
pub const MAX_REPLY_CHARS: usize = 64;

const OPT_OUT: [&str; 9] = [
    "STOP",
    "UNSUBSCRIBE",
    "STOPALL",
    "CANCEL",
    "END",
    "QUIT",
    "退订",
    "TD",
    "T",
];
const OPT_IN: [&str; 2] = ["START", "UNSTOP"];

/// What a reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    OptOut,
    OptIn,
}

/// The intent of an inbound reply, if it is a keyword reply.
pub fn classify(text: &str) -> Option<Intent> {
    let folded: String = text.chars().map(fold).collect();
    let reply = folded.trim_matches(|c: char| c.is_whitespace() || is_punctuation(c));
    if reply.chars().count() > MAX_REPLY_CHARS {
        return None;
    }
    let end = reply
        .find(|c: char| c.is_whitespace() || is_sentence_end(c))
        .unwrap_or(reply.len());
    let (word, rest) = reply.split_at(end);
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with(is_sentence_end)) {
        return None;
    }
    if OPT_OUT.contains(&word) {
        Some(Intent::OptOut)
    } else if OPT_IN.contains(&word) {
        Some(Intent::OptIn)
    } else {
        None
    }
}

/// Full-width ASCII to ASCII, ideographic space to space, then ASCII uppercase.
fn fold(c: char) -> char {
    let c = match u32::from(c) {
        0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    };
    c.to_ascii_uppercase()
}

fn is_sentence_end(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | '!' | '?' | ';' | ':' | '。' | '、' | '…' | '~' | '～'
    )
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || is_sentence_end(c)
        || matches!(
            c,
            '「' | '」' | '【' | '】' | '《' | '》' | '“' | '”' | '‘' | '’' | '·' | '（' | '）'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_in_every_width_and_case() {
        for k in OPT_OUT {
            assert_eq!(classify(k), Some(Intent::OptOut), "{k}");
            assert_eq!(classify(&k.to_lowercase()), Some(Intent::OptOut), "{k}");
            let wide: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() {
                        char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c)
                    } else {
                        c
                    }
                })
                .collect();
            assert_eq!(classify(&wide), Some(Intent::OptOut), "{wide}");
        }
        assert_eq!(classify("ＳＴＯＰ"), Some(Intent::OptOut));
        assert_eq!(classify("ｓｔｏｐ"), Some(Intent::OptOut));
        assert_eq!(classify("start"), Some(Intent::OptIn));
        assert_eq!(classify("Unstop"), Some(Intent::OptIn));
    }

    #[test]
    fn punctuation_and_short_follow_ups() {
        for text in [
            " \"STOP\" ",
            "Stop.",
            "Stop. Thank you",
            "stop! thanks",
            "STOP !",
            "退订。谢谢",
            "退订，谢谢",
            "【退订】",
            "T.",
            "　ＳＴＯＰ　",
        ] {
            assert_eq!(classify(text), Some(Intent::OptOut), "{text}");
        }
    }

    #[test]
    fn ordinary_replies_do_not_match() {
        for text in [
            "End of the day works for me",
            "Stop by tomorrow?",
            "T-shirt size?",
            "Stopwatch",
            "Thanks",
            "Stop. I have a long question about the sale and the delivery times of my order",
            "",
            "...",
            "please stop",
        ] {
            assert_eq!(classify(text), None, "{text}");
        }
    }
}
