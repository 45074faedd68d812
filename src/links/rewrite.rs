//! Rewriting a template's links to tracked links, before the template is compiled.
//!
//! Every `http://` or `https://` URL in the template's literal text becomes
//! `<base>/c/<stand-in>`, where the stand-in has exactly the length and alphabet class of a
//! real token (20 `@` and the link's two-digit index; all GSM-7 basic characters, one septet
//! or one UTF-16 unit each like the base62 token). So the policy renders and counts SMS parts
//! on the final length, and the worker only swaps each stand-in for the recipient's signed
//! token in place ([`fill`]), which cannot change the count. Email gets an open pixel the
//! same way (`<base>/o/<stand-in>`).
//!
//! A URL ends at whitespace, a non-ASCII character, `<`, `>`, `"` or `'`; trailing sentence
//! punctuation (`.,;:!?`, and `)` without an opening one) is not part of it. URLs with a
//! `{{placeholder}}` inside differ per recipient and are left as they are (untracked), as are
//! URLs that only a variable's value brings in. Identical URLs share one link index.

use super::token::{LinkSigner, TokenClaims, OPEN_LINK, TOKEN_LEN, UNSUBSCRIBE_LINK};

/// The most tracked links one template may hold.
pub const MAX_LINKS: usize = 32;
/// The longest URL that is tracked.
pub const MAX_URL_LEN: usize = 2048;

const CLICK_MARK: &str = "/c/@@@@@@@@@@@@@@@@@@@@";
/// The path of the open pixel's stand-in.
pub(crate) const OPEN_MARK: &str = "/o/@@@@@@@@@@@@@@@@@@@@";
const OPEN_SUFFIX: &str = "OP";
const UNSUBSCRIBE_MARK: &str = "/u/@@@@@@@@@@@@@@@@@@@@";
const UNSUBSCRIBE_SUFFIX: &str = "US";

/// The path of an email's one-click unsubscribe link before [`fill`] signs it: `/u/` and a
/// stand-in (no scheme, so [`rewrite`] never tracks it as a link).
pub fn unsubscribe_stand_in() -> String {
    format!("{UNSUBSCRIBE_MARK}{UNSUBSCRIBE_SUFFIX}")
}

/// A template body with its links replaced by stand-ins, and the original links in index
/// order (the only places a click may redirect to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub body: String,
    pub links: Vec<String>,
}

/// Why a template's links cannot be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("holds more than {MAX_LINKS} distinct links to track (or set track_links: false)")]
    TooManyLinks,
}

/// Rewrites the links in `body` under `base` (e.g. `https://hrld.io`); appends an open
/// pixel when `pixel`.
pub fn rewrite(body: &str, base: &str, pixel: bool) -> Result<Rewritten, RewriteError> {
    let mut out = String::with_capacity(body.len() + 64);
    let mut links: Vec<String> = Vec::new();
    let mut rest = 0;
    let mut search = 0;
    while let Some((start, end)) = next_url(body, search) {
        search = end;
        let url = &body[start..end];
        if url.contains("{{") || url.len() > MAX_URL_LEN {
            continue;
        }
        let index = match links.iter().position(|l| l == url) {
            Some(i) => i,
            None => {
                if links.len() == MAX_LINKS {
                    return Err(RewriteError::TooManyLinks);
                }
                links.push(url.to_string());
                links.len() - 1
            }
        };
        out.push_str(&body[rest..start]);
        out.push_str(base);
        out.push_str(CLICK_MARK);
        out.push_str(&format!("{index:02}"));
        rest = end;
    }
    out.push_str(&body[rest..]);
    if pixel {
        out.push_str("\n<img src=\"");
        out.push_str(base);
        out.push_str(OPEN_MARK);
        out.push_str(OPEN_SUFFIX);
        out.push_str("\" width=\"1\" height=\"1\" alt=\"\">");
    }
    Ok(Rewritten { body: out, links })
}

/// Replaces every stand-in in a rendered `body` with the signed token of (`job_tag`,
/// `recipient`, link). Same length, same alphabet class: SMS part counts do not change.
pub fn fill(body: &mut String, signer: &LinkSigner, job_tag: u32, recipient: u32) {
    for (mark, fixed) in [
        (CLICK_MARK, None),
        (OPEN_MARK, Some((OPEN_SUFFIX, OPEN_LINK))),
        (
            UNSUBSCRIBE_MARK,
            Some((UNSUBSCRIBE_SUFFIX, UNSUBSCRIBE_LINK)),
        ),
    ] {
        let mut from = 0;
        while let Some(found) = body[from..].find(mark) {
            let token_start = from + found + 3;
            let token_end = token_start + TOKEN_LEN;
            from = token_start;
            let Some(suffix) = body.get(token_end - 2..token_end) else {
                break;
            };
            let link = match fixed {
                Some((expected, link)) => (suffix == expected).then_some(link),
                None => suffix
                    .parse::<u8>()
                    .ok()
                    .filter(|&i| usize::from(i) < MAX_LINKS),
            };
            let Some(link) = link else { continue };
            let mut token = [0u8; TOKEN_LEN];
            signer.sign_into(
                TokenClaims {
                    job_tag,
                    recipient,
                    link,
                },
                &mut token,
            );
            // The token is ASCII, so it is valid UTF-8 of the same length as the stand-in.
            if let Ok(t) = std::str::from_utf8(&token) {
                body.replace_range(token_start..token_end, t);
            }
            from = token_end;
        }
    }
}

/// The next URL at or after byte `from`: its byte range.
fn next_url(body: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = body.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let scheme = if starts_with_ignore_case(rest, b"https://") {
            8
        } else if starts_with_ignore_case(rest, b"http://") {
            7
        } else {
            i += 1;
            continue;
        };
        let at_boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let mut end = i + scheme;
        while end < bytes.len() && is_url_byte(bytes[end]) {
            end += 1;
        }
        // Sentence punctuation after a URL is not part of it.
        while end > i + scheme {
            let last = bytes[end - 1];
            let strip = matches!(last, b'.' | b',' | b';' | b':' | b'!' | b'?')
                || (last == b')' && !body[i..end].contains('('));
            if !strip {
                break;
            }
            end -= 1;
        }
        if at_boundary && end > i + scheme {
            return Some((i, end));
        }
        i = end.max(i + 1);
    }
    None
}

fn starts_with_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn is_url_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\'')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::count_parts;

    const BASE: &str = "https://hrld.io";

    #[test]
    fn links_become_fixed_length_stand_ins_in_order() {
        let r = rewrite(
            "Sale! https://shop.example/a?x=1. Or http://b.example/(y), again https://shop.example/a?x=1",
            BASE,
            false,
        )
        .expect("rewrites");
        assert_eq!(
            r.links,
            ["https://shop.example/a?x=1", "http://b.example/(y)"]
        );
        assert_eq!(
            r.body,
            "Sale! https://hrld.io/c/@@@@@@@@@@@@@@@@@@@@00. Or https://hrld.io/c/@@@@@@@@@@@@@@@@@@@@01, again https://hrld.io/c/@@@@@@@@@@@@@@@@@@@@00"
        );
    }

    #[test]
    fn urls_end_at_cjk_text_and_placeholders_are_left_alone() {
        let r = rewrite(
            "点击https://a.cn/x领取 {{url}} https://a.cn/{{id}}",
            BASE,
            false,
        )
        .expect("rewrites");
        assert_eq!(r.links, ["https://a.cn/x"]);
        assert!(r.body.starts_with("点击https://hrld.io/c/@"), "{}", r.body);
        assert!(r.body.ends_with("领取 {{url}} https://a.cn/{{id}}"));
        let none = rewrite("no links: xhttps://a.b, https:// nothing", BASE, false).expect("ok");
        assert!(none.links.is_empty());
    }

    #[test]
    fn filling_keeps_length_and_part_count() {
        let r = rewrite("Hi, 20% off today: https://shop.example/deal", BASE, false).expect("ok");
        let before = count_parts(&r.body);
        let mut body = r.body.clone();
        let signer = LinkSigner::new(b"s");
        fill(&mut body, &signer, 7, 42);
        assert_eq!(body.len(), r.body.len());
        assert_eq!(count_parts(&body), before);
        let token = body.rsplit('/').next().expect("token");
        assert_eq!(
            signer.verify(token),
            Some(TokenClaims {
                job_tag: 7,
                recipient: 42,
                link: 0
            })
        );
        let link = body.split(' ').next_back().expect("link");
        assert!(link.len() <= 40, "{link}");
    }

    #[test]
    fn the_open_pixel_is_filled_too() {
        let r = rewrite("<p>Hello</p>", BASE, true).expect("ok");
        let mut body = r.body;
        let signer = LinkSigner::new(b"s");
        fill(&mut body, &signer, 1, 2);
        let start = body.find("/o/").expect("pixel") + 3;
        let token = &body[start..start + TOKEN_LEN];
        assert_eq!(signer.verify(token).map(|c| c.link), Some(OPEN_LINK));
    }

    #[test]
    fn too_many_links_is_an_error() {
        let body: String = (0..=MAX_LINKS)
            .map(|i| format!("https://x.example/{i} "))
            .collect();
        assert_eq!(rewrite(&body, BASE, false), Err(RewriteError::TooManyLinks));
    }
}
