//! Interned names: tag names, attribute names and time zones are few and repeat on every
//! contact, so each is stored once per snapshot and contacts carry a `u16` id.
//!
//! Ids are only meaningful within the snapshot that issued them; [`TagId`] and [`AttrId`]
//! let a segment or template resolve a name once per job instead of once per contact.

use chrono_tz::Tz;

/// A tag name resolved against one snapshot ([`super::Snapshot::tag_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagId(pub(crate) u16);

/// An attribute name resolved against one snapshot ([`super::Snapshot::attr_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttrId(pub(crate) u16);

/// Names to dense `u16` ids and back.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: Vec<Box<str>>,
    ids: hashbrown::HashMap<Box<str>, u16>,
}

impl Interner {
    /// The id of `name`, adding it if new. `None` once 65,536 names exist.
    pub(crate) fn intern(&mut self, name: &str) -> Option<u16> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let id = u16::try_from(self.names.len()).ok()?;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        Some(id)
    }

    /// The id of `name`, if it was interned.
    pub(crate) fn get(&self, name: &str) -> Option<u16> {
        self.ids.get(name).copied()
    }

    /// The name of `id` (empty for an id this table never issued).
    pub(crate) fn name(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map_or("", |n| n)
    }

    /// Number of distinct names.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// All names in id order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }
}

/// Time zones by IANA name; index 0 means "no time zone".
#[derive(Debug, Default)]
pub(crate) struct ZoneTable {
    zones: Vec<Tz>,
    by_name: hashbrown::HashMap<Box<str>, u16>,
}

/// A time-zone cell that is not an IANA name chrono-tz knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownZone;

impl ZoneTable {
    /// The index of the zone named `name` (`0` for an empty cell). Parses each distinct
    /// spelling once; later rows cost one hash lookup.
    pub(crate) fn intern(&mut self, name: &str) -> Result<u16, UnknownZone> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(0);
        }
        if let Some(&idx) = self.by_name.get(name) {
            return Ok(idx);
        }
        let tz: Tz = name.parse().map_err(|_| UnknownZone)?;
        let idx = match self.zones.iter().position(|z| *z == tz) {
            Some(pos) => pos + 1,
            None => {
                self.zones.push(tz);
                self.zones.len()
            }
        };
        // chrono-tz has about 600 zones, far below u16::MAX.
        let idx = u16::try_from(idx).map_err(|_| UnknownZone)?;
        self.by_name.insert(name.into(), idx);
        Ok(idx)
    }

    /// The zone at `idx`, `None` for 0 or an index this table never issued.
    #[inline]
    pub(crate) fn get(&self, idx: u16) -> Option<Tz> {
        usize::from(idx)
            .checked_sub(1)
            .and_then(|i| self.zones.get(i))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_is_dense_and_stable() {
        let mut names = Interner::default();
        assert_eq!(names.intern("vip"), Some(0));
        assert_eq!(names.intern("beijing"), Some(1));
        assert_eq!(names.intern("vip"), Some(0));
        assert_eq!(names.get("beijing"), Some(1));
        assert_eq!(names.get("nope"), None);
        assert_eq!(names.name(1), "beijing");
        assert_eq!(names.name(9), "");
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn interner_refuses_the_65537th_name() {
        let mut names = Interner::default();
        for i in 0..=u16::MAX as u32 {
            assert!(names.intern(&i.to_string()).is_some());
        }
        assert_eq!(names.intern("one-too-many"), None);
        assert_eq!(names.intern("0"), Some(0));
    }

    #[test]
    fn zones_are_shared_across_spellings_and_bad_names_fail() {
        let mut zones = ZoneTable::default();
        assert_eq!(zones.intern(""), Ok(0));
        let sh = zones.intern("Asia/Shanghai").expect("known");
        assert_eq!(zones.intern(" Asia/Shanghai "), Ok(sh));
        assert_eq!(zones.get(sh), Some(chrono_tz::Asia::Shanghai));
        assert_eq!(zones.intern("Mars/Olympus_Mons"), Err(UnknownZone));
        assert_eq!(zones.get(0), None);
    }
}
