//! The overlay: upserts and deletes applied to a loaded snapshot without copying it.
//!
//! Copying a 10M-contact table for every CRM change would cost a second and a gigabyte, so
//! changes land in a concurrent map beside the table and lookups consult it first. Readers
//! pay one atomic load while the overlay is empty, and a bit test per loaded contact once it
//! is not: a bitset marks loaded contacts that the overlay replaces or deletes, so a lookup
//! only touches the map for those (or for ids the table lacks). Writers are serialised by a
//! mutex so the live-count bookkeeping is exact; the next full load starts a new, empty
//! overlay.
//!
//! Publication order matters: a writer inserts the map entry, then sets the contact's bit,
//! then the `active` flag, each with release ordering, so a reader that sees a bit or the
//! flag also sees the entry.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use parking_lot::Mutex;

use super::owned::OwnedContact;

/// One overlaid id: its current contact (`None` = deleted) and whether it shadows a loaded
/// contact.
#[derive(Debug, Clone)]
struct Slot {
    contact: Option<Arc<OwnedContact>>,
    in_base: bool,
}

/// Changes since the snapshot was loaded.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    slots: DashMap<Box<str>, Slot>,
    active: AtomicBool,
    /// Bit per loaded record that the overlay replaces or deletes; allocated on first use.
    shadowed: OnceLock<Box<[AtomicU64]>>,
    /// Live contacts gained (positive) or lost (negative) through the overlay.
    delta: AtomicI64,
    writer: Mutex<()>,
}

impl Overlay {
    /// Whether anything was ever applied (the only check lookups pay while empty).
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether loaded record `i` is replaced or deleted by the overlay.
    #[inline]
    pub(crate) fn shadows(&self, i: u32) -> bool {
        self.shadowed
            .get()
            .and_then(|bits| bits.get(i as usize / 64))
            .is_some_and(|w| w.load(Ordering::Acquire) >> (i % 64) & 1 == 1)
    }

    /// `Some(Some(c))` upserted, `Some(None)` deleted, `None` untouched by the overlay.
    pub(crate) fn get(&self, id: &str) -> Option<Option<Arc<OwnedContact>>> {
        self.slots.get(id).map(|slot| slot.contact.clone())
    }

    /// Live contacts gained or lost through the overlay.
    pub(crate) fn len_delta(&self) -> i64 {
        self.delta.load(Ordering::Acquire)
    }

    /// Upserted contacts whose ids the loaded table does not have.
    pub(crate) fn added_contacts(&self) -> Vec<Arc<OwnedContact>> {
        if !self.is_active() {
            return Vec::new();
        }
        self.slots
            .iter()
            .filter(|slot| !slot.in_base)
            .filter_map(|slot| slot.contact.clone())
            .collect()
    }

    /// Every live upserted contact, whether or not it replaces a loaded one.
    pub(crate) fn upserted_contacts(&self) -> Vec<Arc<OwnedContact>> {
        if !self.is_active() {
            return Vec::new();
        }
        self.slots
            .iter()
            .filter_map(|slot| slot.contact.clone())
            .collect()
    }

    /// Inserts or replaces a contact. `base` is its loaded record, if the table has one;
    /// `records` is the table's record count (to size the bitset).
    pub(crate) fn upsert(&self, contact: OwnedContact, base: Option<u32>, records: usize) {
        let id = contact.contact_id.clone();
        self.write(id, Some(Arc::new(contact)), base, records);
    }

    /// Deletes a contact (a no-op for an id nobody knows).
    pub(crate) fn delete(&self, id: &str, base: Option<u32>, records: usize) {
        self.write(id.into(), None, base, records);
    }

    fn write(
        &self,
        id: Box<str>,
        contact: Option<Arc<OwnedContact>>,
        base: Option<u32>,
        records: usize,
    ) {
        let _writer = self.writer.lock();
        let was_live = match self.slots.get(&id) {
            Some(slot) => slot.contact.is_some(),
            None => base.is_some(),
        };
        let is_live = contact.is_some();
        self.delta
            .fetch_add(i64::from(is_live) - i64::from(was_live), Ordering::AcqRel);
        match (contact, base) {
            // Deleting an id only the overlay had: forget it entirely.
            (None, None) => {
                self.slots.remove(&id);
            }
            (contact, base) => {
                self.slots.insert(
                    id,
                    Slot {
                        contact,
                        in_base: base.is_some(),
                    },
                );
                if let Some(i) = base {
                    let bits = self.shadowed.get_or_init(|| {
                        (0..records.div_ceil(64))
                            .map(|_| AtomicU64::new(0))
                            .collect()
                    });
                    if let Some(word) = bits.get(i as usize / 64) {
                        word.fetch_or(1 << (i % 64), Ordering::Release);
                    }
                }
            }
        }
        self.active.store(true, Ordering::Release);
    }
}
