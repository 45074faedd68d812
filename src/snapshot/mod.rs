//! The contact snapshot: every contact the gateway may message, compact, atomically
//! replaced, and kept fresh by incremental upserts.
//!
//! Every recipient of every job is looked up here (unknown or deleted contact, phone
//! missing/invalid/landline, consent, time zone), so the design is driven by two numbers:
//! 10M+ contacts in well under 100 bytes each, and lookups in tens of nanoseconds without a
//! lock.
//!
//! - [`Snapshot`] (`table.rs`): 24-byte fixed records (`record.rs`), one string arena
//!   (`arena.rs`), interned tag/attribute names and time zones (`intern.rs`), and an id
//!   index of `u32`s (`index.rs`). Immutable once built, except for its overlay.
//! - Loading: [`load_csv`] and [`load_ndjson`] stream rows (`csv_load.rs`, `ndjson.rs`,
//!   `json_row.rs`) through shared validation (`fields.rs`) into a builder (`builder.rs`);
//!   phone numbers are validated against numbering-plan metadata on worker threads
//!   (`phones.rs`, driven by `load.rs`).
//! - Freshness: [`SnapshotStore`] (`store.rs`) swaps whole snapshots atomically and applies
//!   NDJSON patches to an overlay (`overlay.rs`, `owned.rs`) instead of copying the table.
//!   An API upload first passes [`UploadGuard`] (`guard.rs`): one that rejects too many rows
//!   or drops too many live contacts is refused and changes nothing.
//! - Durability: [`SnapshotFiles`] (`persist.rs`) keeps every accepted upload and patch in
//!   the data directory and loads them again on start.
//! - Tenants: [`ContactBooks`] (`books.rs`) gives each tenant a book of its own; the
//!   default tenant's is the installation's snapshot.
//! - Reading: [`ContactView`] (`view.rs`) presents a contact the same way whether it was
//!   loaded or patched, and implements [`crate::segment::SegmentSubject`].
//!
//! Input columns (CSV header names; NDJSON keys): `contact_id` (required), `phone`
//! (national numbers use the default region), `email`, `push_token` (`platform:token` pairs,
//! `fcm` or `apns`, `;`-separated; NDJSON: an array of `{"platform", "token"}`),
//! `wechat_openid` (`openid` for the default official account or `account:openid` pairs;
//! NDJSON: also an array of `{"account", "openid"}` or an object of account to openid),
//! `timezone` (IANA name), `tags` (`;`-separated in CSV, an array in NDJSON), `sms_consent` /
//! `email_consent` / `push_consent` / `wechat_consent` (`opt_in`, `opt_out` or empty),
//! `updated_at` (RFC 3339), `deleted` (`true` drops the contact); any other column is a
//! template attribute. A phone or email that is not valid does not reject its row: the
//! contact is kept with it marked invalid so the policy can report it as such. A malformed
//! push token or openid rejects the row, naming the column.

mod arena;
mod batch;
mod books;
mod builder;
mod csv_load;
mod error;
mod fields;
mod guard;
mod index;
mod intern;
mod json_row;
mod load;
mod ndjson;
mod overlay;
mod owned;
pub mod persist;
mod phone_index;
mod phones;
mod record;
mod store;
mod table;
mod view;

#[cfg(test)]
mod scale_test;

pub use books::{Book, ContactBooks};
pub use csv_load::load_csv;
pub use error::{LoadReport, PatchReport, Refused, RowError, SnapshotError, MAX_REPORTED_ERRORS};
pub use guard::{Refusal, UploadGuard};
pub use intern::{AttrId, TagId};
pub use ndjson::load_ndjson;
pub use persist::{SnapshotFiles, UploadFormat};
pub use record::PhoneStatus;
pub use store::SnapshotStore;
pub use table::{Iter, Snapshot};
pub use view::{Attributes, ContactView, EmailField, PhoneField, Tags};
