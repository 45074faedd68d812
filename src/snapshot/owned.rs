//! A contact held on its own (boxed strings), as incremental upserts deliver them.
//!
//! The compact table cannot grow in place, so a patched contact lives here, in the overlay,
//! until the next full load folds it in. Patches are small (thousands, not millions), so a
//! few allocations per contact are fine here, unlike in the table.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::fields::{self, EmailCell, RowFields, CONSENT_SLOTS};
use super::record::{decode_time, PhoneOutcome};
use crate::domain::Consent;
use crate::phone::RegionCode;

/// A patched contact's email, as checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmailState {
    Missing,
    Invalid,
    Valid(Box<str>),
}

/// One upserted contact.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OwnedContact {
    pub(crate) contact_id: Box<str>,
    pub(crate) phone: PhoneOutcome,
    pub(crate) email: EmailState,
    /// Stored push-token form (`platform:token;...`); empty when none.
    pub(crate) push_tokens: Box<str>,
    /// Stored openid form (`openid` or `account:openid;...`); empty when none.
    pub(crate) wechat_openids: Box<str>,
    pub(crate) timezone: Option<Tz>,
    pub(crate) tags: Box<[Box<str>]>,
    pub(crate) attributes: Box<[(Box<str>, Box<str>)]>,
    pub(crate) consents: [Consent; CONSENT_SLOTS],
    pub(crate) updated_at: Option<DateTime<Utc>>,
}

impl OwnedContact {
    /// Validates a row with the same rules as a full load and parses its phone.
    pub(crate) fn from_row<'a>(
        row: &RowFields<'a>,
        tags: impl Iterator<Item = &'a str>,
        attributes: impl Iterator<Item = (&'a str, &'a str)>,
        default_region: RegionCode,
    ) -> Result<OwnedContact, String> {
        let contact_id = fields::contact_id(row)?;
        let zone = row.timezone.trim();
        let timezone = match zone {
            "" => None,
            name => Some(name.parse::<Tz>().map_err(|_| fields::bad_timezone(name))?),
        };
        let consents = fields::consents(row)?;
        let push_tokens = fields::push_tokens(row)?;
        let wechat_openids = fields::wechat_openids(row)?;
        let updated_at = decode_time(fields::updated_at(row)?);
        let mut tag_list: Vec<Box<str>> = Vec::new();
        for tag in tags {
            let tag = tag.trim();
            if !tag.is_empty() && !tag_list.iter().any(|t| &**t == tag) {
                tag_list.push(tag.into());
            }
        }
        let attributes = attributes
            .map(|(name, value)| (name.trim(), value.trim()))
            .filter(|(name, value)| !name.is_empty() && !value.is_empty())
            .map(|(name, value)| (Box::from(name), Box::from(value)))
            .collect();
        let email = match fields::email(row) {
            EmailCell::Missing => EmailState::Missing,
            EmailCell::Invalid => EmailState::Invalid,
            EmailCell::Valid(e) => EmailState::Valid(e.into()),
        };
        Ok(OwnedContact {
            contact_id: contact_id.into(),
            phone: PhoneOutcome::parse(row.phone, default_region),
            email,
            push_tokens: push_tokens.into(),
            wechat_openids: wechat_openids.into(),
            timezone,
            tags: tag_list.into(),
            attributes,
            consents,
            updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_row_applies_the_load_rules() {
        let row = RowFields {
            contact_id: " c9 ",
            phone: "+44 7400 123456",
            email: " ",
            push_token: "",
            wechat_openid: "wx1:oAbc",
            timezone: "Europe/London",
            consents: ["opt_in", "", "opt_out", "opt_in"],
            updated_at: "2026-11-20T08:00:00Z",
        };
        let c = OwnedContact::from_row(
            &row,
            ["vip", " vip", "", "london"].into_iter(),
            [("city", "London"), ("tier", " ")].into_iter(),
            RegionCode(*b"CN"),
        )
        .expect("valid row");
        assert_eq!(&*c.contact_id, "c9");
        assert_eq!(c.email, EmailState::Missing);
        assert_eq!(&*c.wechat_openids, "wx1:oAbc");
        assert_eq!(c.consents[3], Consent::OptIn);
        assert_eq!(c.timezone, Some(chrono_tz::Europe::London));
        assert_eq!(c.tags.len(), 2);
        assert_eq!(c.attributes.len(), 1);
        assert_eq!(c.consents[2], Consent::OptOut);
        assert!(matches!(c.phone, PhoneOutcome::Valid(_)));

        let bad = RowFields {
            timezone: "Asia/Atlantis",
            ..row
        };
        let e = OwnedContact::from_row(&bad, [].into_iter(), [].into_iter(), RegionCode(*b"CN"))
            .expect_err("bad zone");
        assert!(e.starts_with("timezone:"), "{e}");

        let bad = RowFields {
            push_token: "apns:nothex",
            ..row
        };
        let e = OwnedContact::from_row(&bad, [].into_iter(), [].into_iter(), RegionCode(*b"CN"))
            .expect_err("bad token");
        assert!(e.starts_with("push_token:"), "{e}");
        let invalid_email = RowFields {
            email: "not-an-address",
            ..row
        };
        let c = OwnedContact::from_row(
            &invalid_email,
            [].into_iter(),
            [].into_iter(),
            RegionCode(*b"CN"),
        )
        .expect("an invalid email keeps the row");
        assert_eq!(c.email, EmailState::Invalid);
    }
}
