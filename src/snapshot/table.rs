//! [`Snapshot`]: the immutable contact table every recipient is checked against, plus the
//! overlay of upserts applied since it was loaded.
//!
//! Memory per contact is one 24-byte [`Record`], its strings in the arena (typically
//! 40-70 bytes) and about 8 bytes of id index (`index.rs`), so no `String` exists per
//! contact. All reads are plain loads from shared memory: no lock, no reference count.
//!
//! At 10M contacts the table is far larger than the CPU caches, so a lookup of a random id
//! is bound by memory latency (index slot, record, id in the arena: a few dependent cache
//! misses). The policy should look recipients up a batch at a time with
//! [`Snapshot::lookup_many`] (`batch.rs`), which overlaps those misses across ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::arena::read_str;
use super::index::IdIndex;
use super::intern::{AttrId, Interner, TagId, ZoneTable};
use super::overlay::Overlay;
use super::owned::OwnedContact;
use super::record::Record;
use super::view::ContactView;
use crate::phone::RegionCode;

/// An immutable contact table with a concurrent overlay of later upserts and deletes.
///
/// Obtain one from [`super::load_csv`] / [`super::load_ndjson`] and share it through
/// [`super::SnapshotStore`]. Readers hold an `Arc<Snapshot>` and never block.
pub struct Snapshot {
    pub(crate) version: u64,
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) default_region: RegionCode,
    pub(crate) records: Vec<Record>,
    pub(crate) arena: Vec<u8>,
    pub(crate) index: IdIndex,
    /// Bit per record: superseded by a later row or deleted in the file. Empty when none.
    pub(crate) dead: Vec<u64>,
    pub(crate) live: usize,
    pub(crate) tags: Interner,
    pub(crate) attrs: Interner,
    pub(crate) zones: ZoneTable,
    pub(crate) overlay: Overlay,
    /// Loaded contacts by phone, built on first use (`phone_index.rs`).
    pub(crate) phone_index: std::sync::OnceLock<super::phone_index::PhoneIndex>,
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// A fresh snapshot version, increasing across the process (0 is the empty snapshot).
pub(crate) fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

impl Snapshot {
    /// A snapshot with no contacts, `as_of` the Unix epoch (so it is always stale) and
    /// version 0. Patches applied to it parse national numbers with `default_region`.
    pub fn empty(default_region: RegionCode) -> Snapshot {
        Snapshot {
            version: 0,
            as_of: DateTime::UNIX_EPOCH,
            default_region,
            records: Vec::new(),
            arena: Vec::new(),
            index: IdIndex::empty(),
            dead: Vec::new(),
            live: 0,
            tags: Interner::default(),
            attrs: Interner::default(),
            zones: ZoneTable::default(),
            overlay: Overlay::default(),
            phone_index: Default::default(),
        }
    }

    /// Process-wide increasing version of the load this snapshot came from (0 = empty).
    /// Patches do not change it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the data was exported, as the loader was told; the policy refuses to dispatch
    /// on a snapshot older than the configured maximum age.
    pub fn as_of(&self) -> DateTime<Utc> {
        self.as_of
    }

    /// The region national phone numbers were parsed with.
    pub fn default_region(&self) -> RegionCode {
        self.default_region
    }

    /// Live contacts: loaded ones, plus contacts added by patches, minus deleted ones.
    pub fn len(&self) -> usize {
        let live = self.live as i64 + self.overlay.len_delta();
        usize::try_from(live).unwrap_or(0)
    }

    /// Whether there are no live contacts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The contact with this id (surrounding whitespace ignored), seen through the overlay:
    /// an upserted contact replaces the loaded one, a deleted one is `None`. For many ids at
    /// once prefer [`Snapshot::lookup_many`].
    #[inline]
    pub fn lookup(&self, contact_id: &str) -> Option<ContactView<'_>> {
        let id = contact_id.trim();
        self.resolve(id, self.find_base(id.as_bytes()))
    }

    /// The view of `id` given its loaded record (if any), seen through the overlay.
    #[inline]
    pub(crate) fn resolve(&self, id: &str, base: Option<u32>) -> Option<ContactView<'_>> {
        match base {
            Some(i) if self.overlay.is_active() && self.overlay.shadows(i) => self
                .overlay
                .get(id)
                .map_or(Some(ContactView::base(self, i)), |c| {
                    c.map(|c| ContactView::owned(self, c))
                }),
            Some(i) => Some(ContactView::base(self, i)),
            None if self.overlay.is_active() => self
                .overlay
                .get(id)
                .flatten()
                .map(|c| ContactView::owned(self, c)),
            None => None,
        }
    }

    /// Every live contact: loaded ones in file order (replaced ones as upserted), then those
    /// only patches added. A patch applied during iteration may or may not be seen.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            snap: self,
            next: 0,
            added: None,
        }
    }

    /// Resolves a tag name once for [`ContactView::has_tag_id`]; `None` if no loaded contact
    /// has it (contacts added by patches are then matched by name).
    pub fn tag_id(&self, name: &str) -> Option<TagId> {
        self.tags.get(name).map(TagId)
    }

    /// Resolves an attribute name once for [`ContactView::attribute_by_id`].
    pub fn attr_id(&self, name: &str) -> Option<AttrId> {
        self.attrs.get(name).map(AttrId)
    }

    /// Tag names seen in the loaded file.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.tags.names()
    }

    /// Attribute names seen in the loaded file.
    pub fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.attrs.names()
    }

    /// Approximate heap bytes of the loaded table (records, arena, index), for metrics.
    pub fn heap_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.arena.capacity()
            + self.index.allocation_size()
            + self.dead.capacity() * 8
    }

    /// Inserts or replaces a contact in the overlay.
    pub(crate) fn upsert(&self, contact: OwnedContact) {
        let base = self.find_base(contact.contact_id.as_bytes());
        self.overlay.upsert(contact, base, self.records.len());
    }

    /// Deletes a contact through the overlay.
    pub(crate) fn delete(&self, contact_id: &str) {
        let id = contact_id.trim();
        let base = self.find_base(id.as_bytes());
        self.overlay.delete(id, base, self.records.len());
    }

    /// The record index of a live loaded contact.
    #[inline]
    pub(crate) fn find_base(&self, id: &[u8]) -> Option<u32> {
        self.index
            .find(self.index.hash(id), |i| self.base_id(i) == id)
    }

    #[inline]
    pub(crate) fn base_id(&self, i: u32) -> &[u8] {
        match self.records.get(i as usize) {
            Some(r) => read_str(&self.arena, r.blob as usize).0,
            None => &[],
        }
    }

    pub(crate) fn is_dead(&self, i: usize) -> bool {
        self.dead
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("as_of", &self.as_of)
            .field("len", &self.len())
            .field("tags", &self.tags.len())
            .field("attributes", &self.attrs.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// Iterator over a snapshot's live contacts ([`Snapshot::iter`]).
pub struct Iter<'a> {
    snap: &'a Snapshot,
    next: usize,
    added: Option<std::vec::IntoIter<Arc<OwnedContact>>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ContactView<'a>;

    fn next(&mut self) -> Option<ContactView<'a>> {
        let snap = self.snap;
        while let Some(i) = (self.next < snap.records.len()).then_some(self.next) {
            self.next += 1;
            if snap.is_dead(i) {
                continue;
            }
            let i = i as u32;
            if snap.overlay.is_active() && snap.overlay.shadows(i) {
                match snap.overlay.get(super::arena::as_str(snap.base_id(i))) {
                    Some(Some(c)) => return Some(ContactView::owned(snap, c)),
                    Some(None) => continue,
                    None => {}
                }
            }
            return Some(ContactView::base(snap, i));
        }
        let added = self
            .added
            .get_or_insert_with(|| snap.overlay.added_contacts().into_iter());
        added.next().map(|c| ContactView::owned(snap, c))
    }
}
