//! The input columns both file formats share, and the validation of their scalar cells.
//!
//! CSV and NDJSON rows are reduced to the same [`RowFields`] of borrowed `&str` cells, so the
//! rules (what a bad consent or time zone is, which message names which column) live here
//! once. Validation runs before anything is written, so a rejected row leaves no trace.

use chrono::{DateTime, Utc};

use super::error::quoted;
use super::record::encode_time;
use crate::domain::{normalize_email, normalize_push_cell, normalize_wechat_cell, Consent};

/// A column (CSV) or key (NDJSON) with a fixed meaning; every other one is an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    ContactId,
    Phone,
    Email,
    Timezone,
    Tags,
    SmsConsent,
    EmailConsent,
    PushConsent,
    /// Device tokens: `platform:token` pairs (`fcm`, `apns`) separated by `;`.
    PushToken,
    /// WeChat openids: `openid` (default official account) or `account:openid` pairs.
    WechatOpenid,
    WechatConsent,
    UpdatedAt,
    /// `true` removes the contact (NDJSON `"deleted": true`, or a CSV `deleted` column).
    Deleted,
}

/// Every fixed column with its canonical name.
const ALL: [(&str, Column); 13] = [
    ("contact_id", Column::ContactId),
    ("phone", Column::Phone),
    ("email", Column::Email),
    ("timezone", Column::Timezone),
    ("tags", Column::Tags),
    ("sms_consent", Column::SmsConsent),
    ("email_consent", Column::EmailConsent),
    ("push_consent", Column::PushConsent),
    ("push_token", Column::PushToken),
    ("wechat_openid", Column::WechatOpenid),
    ("wechat_consent", Column::WechatConsent),
    ("updated_at", Column::UpdatedAt),
    ("deleted", Column::Deleted),
];

impl Column {
    /// The column named `name` (trimmed, ASCII case-insensitive), if it is a fixed one.
    pub(crate) fn from_name(name: &str) -> Option<Column> {
        let name = name.trim();
        ALL.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, c)| c)
    }

    /// The canonical spelling, for messages.
    pub(crate) fn name(self) -> &'static str {
        ALL.iter()
            .find(|(_, c)| *c == self)
            .map_or("?", |&(n, _)| n)
    }

    /// The consent slot (sms, email, push, wechat: [`Channel::index`] order) of a consent
    /// column.
    pub(crate) fn consent_slot(self) -> Option<usize> {
        match self {
            Column::SmsConsent => Some(0),
            Column::EmailConsent => Some(1),
            Column::PushConsent => Some(2),
            Column::WechatConsent => Some(3),
            _ => None,
        }
    }
}

/// How many channels have a consent column.
pub(crate) const CONSENT_SLOTS: usize = 4;

/// The consent columns by slot, for messages.
const CONSENT_COLUMNS: [Column; CONSENT_SLOTS] = [
    Column::SmsConsent,
    Column::EmailConsent,
    Column::PushConsent,
    Column::WechatConsent,
];

/// One row's fixed cells, borrowed from the reader's buffers. Empty means absent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RowFields<'a> {
    pub(crate) contact_id: &'a str,
    pub(crate) phone: &'a str,
    pub(crate) email: &'a str,
    /// In the CSV form (`platform:token;...`), NDJSON arrays already turned into it.
    pub(crate) push_token: &'a str,
    /// In the CSV form (`openid` or `account:openid;...`), NDJSON arrays and objects already
    /// turned into it.
    pub(crate) wechat_openid: &'a str,
    pub(crate) timezone: &'a str,
    pub(crate) consents: [&'a str; CONSENT_SLOTS],
    pub(crate) updated_at: &'a str,
}

/// An attribute's name: already interned (CSV columns) or still text (NDJSON keys).
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttrKey<'a> {
    Id(u16),
    Name(&'a str),
}

/// The contact id, trimmed; an empty one rejects the row.
pub(crate) fn contact_id<'a>(fields: &RowFields<'a>) -> Result<&'a str, String> {
    let id = fields.contact_id.trim();
    if id.is_empty() {
        return Err("contact_id: empty".to_owned());
    }
    Ok(id)
}

/// The consent cells, in slot order.
pub(crate) fn consents(fields: &RowFields<'_>) -> Result<[Consent; CONSENT_SLOTS], String> {
    let mut out = [Consent::Unknown; CONSENT_SLOTS];
    for (slot, cell) in fields.consents.iter().enumerate() {
        out[slot] = Consent::parse(cell).ok_or_else(|| {
            format!(
                "{}: expected opt_in, opt_out or empty, got {}",
                CONSENT_COLUMNS[slot].name(),
                quoted(cell)
            )
        })?;
    }
    Ok(out)
}

/// An email cell as checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmailCell {
    Missing,
    /// Kept on the contact as "invalid" (the policy reports `invalid_email`), not stored.
    Invalid,
    /// Normalized: the domain lower-cased.
    Valid(String),
}

/// Checks the email cell. A malformed address does not reject the row (the contact may still
/// be reached on other channels); it is kept as invalid.
pub(crate) fn email(fields: &RowFields<'_>) -> EmailCell {
    let cell = fields.email.trim();
    if cell.is_empty() {
        return EmailCell::Missing;
    }
    match normalize_email(cell) {
        Ok(e) => EmailCell::Valid(e),
        Err(_) => EmailCell::Invalid,
    }
}

/// The push tokens in their stored form (empty: none). A malformed token rejects the row:
/// unlike an email, there is no reason to report it under and a guessed token reaches nobody.
pub(crate) fn push_tokens(fields: &RowFields<'_>) -> Result<String, String> {
    normalize_push_cell(fields.push_token).map_err(|e| format!("push_token: {e}"))
}

/// The WeChat openids in their stored form (empty: none); malformed ones reject the row.
pub(crate) fn wechat_openids(fields: &RowFields<'_>) -> Result<String, String> {
    normalize_wechat_cell(fields.wechat_openid).map_err(|e| format!("wechat_openid: {e}"))
}

/// `updated_at` as stored (see `record::encode_time`); empty is 0 (unknown).
pub(crate) fn updated_at(fields: &RowFields<'_>) -> Result<u32, String> {
    let cell = fields.updated_at.trim();
    if cell.is_empty() {
        return Ok(0);
    }
    let t = DateTime::parse_from_rfc3339(cell)
        .map_err(|_| format!("updated_at: {} is not an RFC 3339 time", quoted(cell)))?;
    encode_time(t.with_timezone(&Utc))
        .ok_or_else(|| format!("updated_at: {} is outside 1970..2106", quoted(cell)))
}

/// The message for a time-zone cell chrono-tz does not know.
pub(crate) fn bad_timezone(cell: &str) -> String {
    format!(
        "timezone: {} is not an IANA time zone name",
        quoted(cell.trim())
    )
}

/// Splits a `;`-separated tags cell, trimming and skipping empty pieces.
pub(crate) fn split_tags(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(';').map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_loosely() {
        assert_eq!(Column::from_name(" Contact_ID "), Some(Column::ContactId));
        assert_eq!(Column::from_name("push_consent"), Some(Column::PushConsent));
        assert_eq!(Column::from_name("city"), None);
        assert_eq!(Column::EmailConsent.consent_slot(), Some(1));
        assert_eq!(
            Column::from_name("WeChat_Consent"),
            Some(Column::WechatConsent)
        );
        assert_eq!(Column::WechatConsent.consent_slot(), Some(3));
        assert_eq!(Column::from_name("push_token"), Some(Column::PushToken));
    }

    #[test]
    fn bad_cells_name_their_column() {
        let mut f = RowFields {
            contact_id: " c1 ",
            ..RowFields::default()
        };
        assert_eq!(contact_id(&f), Ok("c1"));
        f.consents = ["opt_in", "", "maybe", ""];
        let e = consents(&f).expect_err("bad push consent");
        assert!(e.starts_with("push_consent:"), "{e}");
        f.consents = ["opt_in", "", "", "yes"];
        let e = consents(&f).expect_err("bad wechat consent");
        assert!(e.starts_with("wechat_consent:"), "{e}");
        f.consents = ["", "", "", "opt_out"];
        assert_eq!(consents(&f).expect("valid")[3], Consent::OptOut);
        f.push_token = "apns:123";
        let e = push_tokens(&f).expect_err("short apns token");
        assert!(e.starts_with("push_token:"), "{e}");
        f.wechat_openid = "acct:o 1";
        let e = wechat_openids(&f).expect_err("space in openid");
        assert!(e.starts_with("wechat_openid:"), "{e}");
        f.email = "Li@Example.COM";
        assert_eq!(email(&f), EmailCell::Valid("Li@example.com".into()));
        f.email = "li@";
        assert_eq!(email(&f), EmailCell::Invalid);
        f.email = " ";
        assert_eq!(email(&f), EmailCell::Missing);
        f.updated_at = "yesterday";
        assert!(updated_at(&f).expect_err("bad").starts_with("updated_at:"));
        f.updated_at = "2026-11-20T08:00:00+08:00";
        assert_eq!(updated_at(&f), Ok(1_795_132_800 + 1));
        f.contact_id = "  ";
        assert_eq!(contact_id(&f), Err("contact_id: empty".to_owned()));
    }

    #[test]
    fn tags_split_and_trim() {
        let tags: Vec<&str> = split_tags(" vip; ;shanghai ;").collect();
        assert_eq!(tags, ["vip", "shanghai"]);
    }
}
