//! An email as one rendered string, so it flows through rendering, link tracking, the
//! dispatch journal and a resend after a crash exactly like an SMS body does.
//!
//! The sections are joined by U+001F (unit separator), which no accepted template contains:
//!
//! ```text
//! unsubscribe path  US  subject  US  text part  US  HTML part
//! ```
//!
//! The unsubscribe section is `/u/` and a link stand-in (filled per recipient with a signed
//! token like tracked links) for marketing email, and empty for transactional email. The HTML
//! part goes last so that the open pixel the link rewriter appends lands inside it. An empty
//! text or HTML section means the email has no such part.

/// Separates the sections of an email body.
pub const SECTION_MARK: char = '\u{1F}';

/// The sections of a rendered email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmailParts<'a> {
    /// `/u/<token>` for marketing email: the one-click unsubscribe path under the tracking
    /// base URL.
    pub unsubscribe: Option<&'a str>,
    pub subject: &'a str,
    pub text: Option<&'a str>,
    pub html: Option<&'a str>,
}

/// Joins an email's sections into one body (template or rendered).
pub fn join(
    unsubscribe: Option<&str>,
    subject: &str,
    text: Option<&str>,
    html: Option<&str>,
) -> String {
    let mut out = String::with_capacity(
        subject.len() + text.map_or(0, str::len) + html.map_or(0, str::len) + 64,
    );
    for (i, section) in [unsubscribe, Some(subject), text, html]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(SECTION_MARK);
        }
        out.push_str(section.unwrap_or(""));
    }
    out
}

/// Splits a body made by [`join`]; `None` when it is not one (wrong number of sections).
pub fn split(body: &str) -> Option<EmailParts<'_>> {
    fn some(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    let mut sections = body.split(SECTION_MARK);
    let parts = EmailParts {
        unsubscribe: some(sections.next()?),
        subject: sections.next()?,
        text: some(sections.next()?),
        html: some(sections.next()?),
    };
    sections.next().is_none().then_some(parts)
}

/// Whether a joined body has an HTML part (only then does it get an open pixel).
pub fn has_html(body: &str) -> bool {
    split(body).is_some_and(|p| p.html.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_empty_ones_are_absent() {
        let body = join(
            Some("/u/x"),
            "Hi {{name}}",
            Some("text"),
            Some("<p>html</p>"),
        );
        let p = split(&body).expect("an email");
        assert_eq!(p.unsubscribe, Some("/u/x"));
        assert_eq!(p.subject, "Hi {{name}}");
        assert_eq!(p.text, Some("text"));
        assert_eq!(p.html, Some("<p>html</p>"));
        assert!(has_html(&body));
        let body = join(None, "s", Some("t"), None);
        let p = split(&body).expect("an email");
        assert_eq!((p.unsubscribe, p.html), (None, None));
        assert!(!has_html(&body));
        assert_eq!(split("plain sms"), None);
        assert_eq!(split(&format!("{body}{SECTION_MARK}extra")), None);
    }
}
