//! An outbound email as MIME, built from the rendered body's sections: pure functions, tested
//! on their own.
//!
//! - `From:` the provider's sender, `To:` the contact's checked address, the subject as
//!   rendered (folded to one line), `Message-ID: <msg_…@sender domain>` and
//!   `X-Herald-Message-Id`, by which a bounce is matched back to its message.
//! - One part (`text/plain` or `text/html`), or `multipart/alternative` with both.
//! - Marketing email: `List-Unsubscribe: <https://…/u/token>` (and `<mailto:…>` when
//!   configured) with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::provider::OutboundMessage;
use crate::template::email;

/// The header carrying herald's message id.
pub const MESSAGE_ID_HEADER: &str = "X-Herald-Message-Id";

/// What every message of one provider shares.
#[derive(Debug, Clone)]
pub struct Sender {
    pub from: Mailbox,
    /// The domain of `Message-ID`s (the sender's).
    pub id_domain: String,
    /// The tracking base URL the unsubscribe path is under (`https://hrld.io`).
    pub link_base: String,
    pub unsubscribe_mailto: Option<String>,
}

/// Builds the MIME message; the error says why it cannot be sent (permanent).
pub fn build(sender: &Sender, m: &OutboundMessage) -> Result<Message, String> {
    let to =
        m.to.email()
            .ok_or("the message has no email address")?
            .parse::<Mailbox>()
            .map_err(|e| format!("the address is not accepted: {e}"))?;
    let parts = email::split(&m.body).ok_or("the body is not an email")?;
    let subject: String = parts
        .subject
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let mut b = Message::builder()
        .from(sender.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{}@{}>", m.id, sender.id_domain)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(MESSAGE_ID_HEADER),
            m.id.to_string(),
        ));
    if let Some(path) = parts.unsubscribe {
        let mut value = format!("<{}{}>", sender.link_base, path);
        if let Some(mailto) = &sender.unsubscribe_mailto {
            value.push_str(&format!(
                ", <mailto:{mailto}?subject=unsubscribe%20{}>",
                m.id
            ));
        }
        b = b
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                value,
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_string(),
            ));
    }
    let built = match (parts.text, parts.html) {
        (Some(text), Some(html)) => b.multipart(MultiPart::alternative_plain_html(
            text.to_string(),
            html.to_string(),
        )),
        (Some(text), None) => b.singlepart(SinglePart::plain(text.to_string())),
        (None, Some(html)) => b.singlepart(SinglePart::html(html.to_string())),
        (None, None) => return Err("the email has neither a text nor an HTML part".into()),
    };
    built.map_err(|e| format!("the message cannot be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, JobId, MessageId};

    fn sender() -> Sender {
        Sender {
            from: "Example News <news@example.com>".parse().expect("mailbox"),
            id_domain: "example.com".into(),
            link_base: "https://hrld.io".into(),
            unsubscribe_mailto: Some("unsub@example.com".into()),
        }
    }

    fn message(body: String) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::derive(&JobId::generate(), "c1", Channel::Email),
            to: Address::Email("li.wei@example.com".into()),
            channel: Channel::Email,
            body,
            parts: 1,
            content: None,
        }
    }

    #[test]
    fn marketing_email_is_multipart_alternative_with_one_click_unsubscribe() {
        let m = message(email::join(
            Some("/u/TOKEN"),
            "Sale\r\nnow 你好",
            Some("Hi Wei"),
            Some("<p>Hi Wei</p>"),
        ));
        let raw = String::from_utf8(build(&sender(), &m).expect("builds").formatted())
            .expect("utf-8")
            .replace("\r\n ", " ");
        assert!(raw.contains("Content-Type: multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Type: text/plain"), "{raw}");
        assert!(raw.contains("Content-Type: text/html"), "{raw}");
        assert!(
            raw.contains(&format!("Message-ID: <{}@example.com>", m.id)),
            "{raw}"
        );
        assert!(
            raw.contains(&format!("X-Herald-Message-Id: {}", m.id)),
            "{raw}"
        );
        assert!(
            raw.contains(&format!(
                "List-Unsubscribe: <https://hrld.io/u/TOKEN>, <mailto:unsub@example.com?subject=unsubscribe%20{}>",
                m.id
            )),
            "{raw}"
        );
        assert!(
            raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{raw}"
        );
        assert!(
            !raw.contains("Sale\r\nnow"),
            "a subject never breaks the header block"
        );
    }

    #[test]
    fn transactional_text_email_is_one_part_without_unsubscribe() {
        let m = message(email::join(None, "Your code", Some("1234"), None));
        let raw =
            String::from_utf8(build(&sender(), &m).expect("builds").formatted()).expect("utf-8");
        assert!(!raw.contains("multipart"), "{raw}");
        assert!(!raw.contains("List-Unsubscribe"), "{raw}");
        assert!(raw.contains("Subject: Your code"), "{raw}");
        assert!(build(&sender(), &message("not an email".into())).is_err());
    }
}
