//! [`ContactView`]: one contact as policy, segments and templates read it, whether it lives
//! in the compact table or in the overlay.
//!
//! A view over a loaded contact is a reference to its 24-byte record: the phone, consent,
//! time zone and `updated_at` come from the record alone, and strings are decoded from the
//! arena only when asked for. Views never allocate.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::arena::{as_str, read_str, read_u16, BlobLayout};
use super::intern::{AttrId, TagId};
use super::owned::{EmailState, OwnedContact};
use super::record::{PhoneOutcome, PhoneStatus, Record};
use super::table::Snapshot;
use crate::domain::{push_pairs, wechat_openid, Channel, Consent, PushPlatform};
use crate::phone::PhoneInfo;
use crate::segment::SegmentSubject;

/// A contact's phone as the policy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneField {
    /// No phone on file.
    Missing,
    /// Not a valid number (unparsable or not in the numbering plan).
    Invalid,
    /// A valid number; check [`PhoneInfo::line_type`] before sending SMS.
    Valid(PhoneInfo),
}

/// A contact's email address as the policy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailField<'a> {
    /// No email on file.
    Missing,
    /// The cell failed the syntax or domain check at load.
    Invalid,
    /// A checked address, its domain lower-cased.
    Valid(&'a str),
}

/// One live contact of a [`Snapshot`].
#[derive(Clone)]
pub struct ContactView<'a> {
    snap: &'a Snapshot,
    inner: Inner<'a>,
}

#[derive(Clone)]
enum Inner<'a> {
    Base(&'a Record),
    Owned(Arc<OwnedContact>),
}

impl<'a> ContactView<'a> {
    #[inline]
    pub(crate) fn base(snap: &'a Snapshot, i: u32) -> ContactView<'a> {
        match snap.records.get(i as usize) {
            Some(record) => ContactView {
                snap,
                inner: Inner::Base(record),
            },
            // Indexes come from the snapshot's own index; this arm is unreachable.
            None => ContactView {
                snap,
                inner: Inner::Base(&EMPTY_RECORD),
            },
        }
    }

    pub(crate) fn owned(snap: &'a Snapshot, contact: Arc<OwnedContact>) -> ContactView<'a> {
        ContactView {
            snap,
            inner: Inner::Owned(contact),
        }
    }

    /// The contact id.
    pub fn contact_id(&self) -> &str {
        match &self.inner {
            Inner::Base(r) => as_str(read_str(&self.snap.arena, r.blob as usize).0),
            Inner::Owned(c) => &c.contact_id,
        }
    }

    /// The phone, validated at load time.
    #[inline]
    pub fn phone(&self) -> PhoneField {
        match &self.inner {
            Inner::Base(r) => match (r.phone_status(), r.phone_info()) {
                (_, Some(info)) => PhoneField::Valid(info),
                (PhoneStatus::Missing, None) => PhoneField::Missing,
                (_, None) => PhoneField::Invalid,
            },
            Inner::Owned(c) => match c.phone {
                PhoneOutcome::Valid(info) => PhoneField::Valid(info),
                PhoneOutcome::Missing => PhoneField::Missing,
                PhoneOutcome::Unparsable | PhoneOutcome::Invalid => PhoneField::Invalid,
            },
        }
    }

    /// The phone status, telling unparsable from invalid (for reports).
    pub fn phone_status(&self) -> PhoneStatus {
        match &self.inner {
            Inner::Base(r) => r.phone_status(),
            Inner::Owned(c) => c.phone.status(),
        }
    }

    /// The email address, if the contact has a valid one (its domain lower-cased at load).
    pub fn email(&self) -> Option<&str> {
        match self.email_field() {
            EmailField::Valid(e) => Some(e),
            EmailField::Missing | EmailField::Invalid => None,
        }
    }

    /// The email address as checked at load, telling missing from invalid.
    pub fn email_field(&self) -> EmailField<'_> {
        match &self.inner {
            Inner::Base(r) => {
                if r.email_invalid() {
                    return EmailField::Invalid;
                }
                let layout = BlobLayout::decode(&self.snap.arena, r.blob as usize);
                match self.arena_str(layout.email) {
                    "" => EmailField::Missing,
                    e => EmailField::Valid(e),
                }
            }
            Inner::Owned(c) => match &c.email {
                EmailState::Missing => EmailField::Missing,
                EmailState::Invalid => EmailField::Invalid,
                EmailState::Valid(e) => EmailField::Valid(e),
            },
        }
    }

    /// The contact's push tokens, `(platform, token)` in the order the file gave them.
    pub fn push_tokens(&self) -> impl Iterator<Item = (PushPlatform, &str)> {
        push_pairs(self.stored_addresses().0)
    }

    /// The contact's openid for a WeChat official account (`None`: the default account).
    pub fn wechat_openid(&self, account: Option<&str>) -> Option<&str> {
        wechat_openid(self.stored_addresses().1, account)
    }

    /// The stored push-token and openid strings.
    fn stored_addresses(&self) -> (&str, &str) {
        match &self.inner {
            Inner::Base(r) => {
                let layout = BlobLayout::decode(&self.snap.arena, r.blob as usize);
                (self.arena_str(layout.push), self.arena_str(layout.wechat))
            }
            Inner::Owned(c) => (&c.push_tokens, &c.wechat_openids),
        }
    }

    fn arena_str(&self, (start, end): (usize, usize)) -> &'a str {
        as_str(self.snap.arena.get(start..end).unwrap_or(&[]))
    }

    /// The contact's IANA time zone, if the file gave one.
    #[inline]
    pub fn timezone(&self) -> Option<Tz> {
        match &self.inner {
            Inner::Base(r) => self.snap.zones.get(r.zone),
            Inner::Owned(c) => c.timezone,
        }
    }

    /// Consent for `channel` (`Unknown` when the file's cell was empty).
    #[inline]
    pub fn consent(&self, channel: Channel) -> Consent {
        match &self.inner {
            Inner::Base(r) => r.consent(channel),
            Inner::Owned(c) => match channel {
                Channel::Sms => c.consents[0],
                Channel::Email => c.consents[1],
                Channel::Push => c.consents[2],
                Channel::Wechat => c.consents[3],
            },
        }
    }

    /// When the source system last changed the contact, if known.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        match &self.inner {
            Inner::Base(r) => r.updated_at(),
            Inner::Owned(c) => c.updated_at,
        }
    }

    /// Whether this contact comes from a patch rather than the loaded file.
    pub fn is_patched(&self) -> bool {
        matches!(self.inner, Inner::Owned(_))
    }

    /// The contact's tags, each once, in file order.
    pub fn tags(&self) -> Tags<'_> {
        Tags {
            inner: match &self.inner {
                Inner::Base(r) => TagsInner::Base {
                    snap: self.snap,
                    ids: self.tag_bytes(r),
                },
                Inner::Owned(c) => TagsInner::Owned(c.tags.iter()),
            },
        }
    }

    /// Whether the contact carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        match &self.inner {
            Inner::Base(_) => self.snap.tag_id(tag).is_some_and(|id| self.has_tag_id(id)),
            Inner::Owned(c) => c.tags.iter().any(|t| &**t == tag),
        }
    }

    /// [`ContactView::has_tag`] with the name resolved once per job.
    pub fn has_tag_id(&self, tag: TagId) -> bool {
        match &self.inner {
            Inner::Base(r) => self
                .tag_bytes(r)
                .chunks_exact(2)
                .any(|b| u16::from_le_bytes([b[0], b[1]]) == tag.0),
            Inner::Owned(c) => {
                let name = self.snap.tags.name(tag.0);
                c.tags.iter().any(|t| &**t == name)
            }
        }
    }

    /// A template attribute's value; absent when the cell was empty.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match &self.inner {
            Inner::Base(_) => self
                .snap
                .attr_id(name)
                .and_then(|id| self.attribute_by_id(id)),
            Inner::Owned(c) => c
                .attributes
                .iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, v)| &**v),
        }
    }

    /// [`ContactView::attribute`] with the name resolved once per job.
    pub fn attribute_by_id(&self, attr: AttrId) -> Option<&str> {
        match &self.inner {
            Inner::Base(_) => self
                .attributes_base()
                .find(|&(id, _)| id == attr.0)
                .map(|(_, v)| v),
            Inner::Owned(c) => {
                let name = self.snap.attrs.name(attr.0);
                c.attributes
                    .iter()
                    .find(|(n, _)| &**n == name)
                    .map(|(_, v)| &**v)
            }
        }
    }

    /// All `(name, value)` attributes, in file order.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            inner: match &self.inner {
                Inner::Base(_) => AttrsInner::Base {
                    snap: self.snap,
                    raw: self.attributes_base(),
                },
                Inner::Owned(c) => AttrsInner::Owned(c.attributes.iter()),
            },
        }
    }

    fn tag_bytes(&self, r: &Record) -> &'a [u8] {
        let snap = self.snap;
        let start = BlobLayout::decode(&snap.arena, r.blob as usize).tags;
        let end = start + 2 * usize::from(r.ntags);
        snap.arena.get(start..end).unwrap_or(&[])
    }

    fn attributes_base(&self) -> RawAttrs<'a> {
        match &self.inner {
            Inner::Base(r) => {
                let tags = BlobLayout::decode(&self.snap.arena, r.blob as usize).tags;
                RawAttrs {
                    arena: &self.snap.arena,
                    pos: tags + 2 * usize::from(r.ntags),
                    left: r.nattrs,
                }
            }
            Inner::Owned(_) => RawAttrs {
                arena: &[],
                pos: 0,
                left: 0,
            },
        }
    }
}

static EMPTY_RECORD: Record = Record {
    e164: 0,
    blob: 0,
    updated: 0,
    zone: 0,
    region: [0; 2],
    flags: 0,
    ntags: 0,
    nattrs: 0,
};

impl SegmentSubject for ContactView<'_> {
    fn has_tag(&self, tag: &str) -> bool {
        ContactView::has_tag(self, tag)
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        ContactView::attribute(self, name)
    }
}

impl std::fmt::Debug for ContactView<'_> {
    /// Phones and emails stay out of logs: only the status and a masked number show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phone = match self.phone() {
            PhoneField::Valid(info) => crate::phone::mask(info.e164),
            other => format!("{other:?}"),
        };
        f.debug_struct("ContactView")
            .field("contact_id", &self.contact_id())
            .field("phone", &phone)
            .field("has_email", &self.email().is_some())
            .field("timezone", &self.timezone())
            .field("patched", &self.is_patched())
            .finish()
    }
}

/// `(attribute id, value)` pairs straight from the arena.
#[derive(Clone)]
struct RawAttrs<'a> {
    arena: &'a [u8],
    pos: usize,
    left: u8,
}

impl<'a> Iterator for RawAttrs<'a> {
    type Item = (u16, &'a str);

    #[inline]
    fn next(&mut self) -> Option<(u16, &'a str)> {
        self.left = self.left.checked_sub(1)?;
        let id = read_u16(self.arena, self.pos);
        let (value, next) = read_str(self.arena, self.pos + 2);
        self.pos = next;
        Some((id, as_str(value)))
    }
}

/// A contact's tags ([`ContactView::tags`]).
pub struct Tags<'v> {
    inner: TagsInner<'v>,
}

enum TagsInner<'v> {
    Base { snap: &'v Snapshot, ids: &'v [u8] },
    Owned(std::slice::Iter<'v, Box<str>>),
}

impl<'v> Iterator for Tags<'v> {
    type Item = &'v str;

    fn next(&mut self) -> Option<&'v str> {
        match &mut self.inner {
            TagsInner::Base { snap, ids } => {
                let (id, rest) = ids.split_first_chunk::<2>()?;
                *ids = rest;
                Some(snap.tags.name(u16::from_le_bytes(*id)))
            }
            TagsInner::Owned(it) => it.next().map(|t| &**t),
        }
    }
}

/// A contact's `(name, value)` attributes ([`ContactView::attributes`]).
pub struct Attributes<'v> {
    inner: AttrsInner<'v>,
}

enum AttrsInner<'v> {
    Base {
        snap: &'v Snapshot,
        raw: RawAttrs<'v>,
    },
    Owned(std::slice::Iter<'v, (Box<str>, Box<str>)>),
}

impl<'v> Iterator for Attributes<'v> {
    type Item = (&'v str, &'v str);

    fn next(&mut self) -> Option<(&'v str, &'v str)> {
        match &mut self.inner {
            AttrsInner::Base { snap, raw } => raw.next().map(|(id, v)| (snap.attrs.name(id), v)),
            AttrsInner::Owned(it) => it.next().map(|(n, v)| (&**n, &**v)),
        }
    }
}
