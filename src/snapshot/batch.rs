//! Batched lookups: the policy checks recipients in batches, and at 10M contacts every
//! lookup is a handful of cache misses (index, record, arena). One at a time those misses
//! are paid in sequence; here the lookups of a batch advance in lock step, one memory level
//! at a time, so the misses of different ids overlap and the batch costs a fraction of the
//! sum of its lookups.

use super::table::Snapshot;
use super::view::ContactView;

/// Lookups advanced together: enough to keep the memory system busy, few enough that the
/// per-lane state stays in registers and L1.
const LANES: usize = 16;

impl Snapshot {
    /// Looks up every id of `ids`, appending one result per id, in order, to `out`. Same
    /// answers as [`Snapshot::lookup`], several times faster per id on a large snapshot.
    pub fn lookup_many<'s, S: AsRef<str>>(
        &'s self,
        ids: &[S],
        out: &mut Vec<Option<ContactView<'s>>>,
    ) {
        out.reserve(ids.len());
        for chunk in ids.chunks(LANES) {
            // Level 1: the index slot of each id's first candidate.
            let mut hashes = [0u64; LANES];
            for (hash, id) in hashes.iter_mut().zip(chunk) {
                *hash = self.index.hash(id.as_ref().trim().as_bytes());
            }
            let mut candidates = [u32::MAX; LANES];
            for (slot, &hash) in candidates.iter_mut().zip(&hashes[..chunk.len()]) {
                *slot = self.index.candidate(hash).unwrap_or(u32::MAX);
            }
            // Level 2: the candidates' records.
            let mut blobs = [usize::MAX; LANES];
            for (blob, &c) in blobs.iter_mut().zip(&candidates) {
                *blob = self
                    .records
                    .get(c as usize)
                    .map_or(usize::MAX, |r| r.blob as usize);
            }
            // Level 3: the start of each candidate's strings, loaded only to have it cached.
            let mut touched = 0u8;
            for &blob in &blobs[..chunk.len()] {
                touched ^= self.arena.get(blob).copied().unwrap_or(0);
            }
            std::hint::black_box(touched);
            // Now compare and resolve, all from cache. A candidate with the wrong id (a tag
            // collision) falls back to the full probe.
            for (&c, id) in candidates.iter().zip(chunk) {
                let id = id.as_ref().trim();
                let found = match c {
                    u32::MAX => None,
                    c if self.base_id(c) == id.as_bytes() => Some(c),
                    _ => self.find_base(id.as_bytes()),
                };
                out.push(self.resolve(id, found));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use crate::phone::RegionCode;
    use crate::snapshot::{load_csv, SnapshotStore};

    #[test]
    fn batched_answers_match_single_lookups() {
        let mut csv = String::from("contact_id,city\n");
        for i in 0..1_000 {
            csv.push_str(&format!("c{i},city{i}\n"));
        }
        let (snap, _) = load_csv(csv.as_bytes(), Utc::now(), RegionCode(*b"CN")).expect("loads");
        let store = SnapshotStore::new(snap);
        store
            .apply_patch(&b"{\"contact_id\":\"c5\",\"deleted\":true}\n{\"contact_id\":\"c7\",\"city\":\"new\"}\n{\"contact_id\":\"n1\"}\n"[..])
            .expect("patch");
        let snap = store.current();
        let ids: Vec<String> = (0..1_100)
            .map(|i| format!("c{i}"))
            .chain(["n1".to_owned(), " c9 ".to_owned(), String::new()])
            .collect();
        let mut batched = Vec::new();
        snap.lookup_many(&ids, &mut batched);
        assert_eq!(batched.len(), ids.len());
        for (id, got) in ids.iter().zip(&batched) {
            let single = snap.lookup(id);
            assert_eq!(
                got.as_ref().map(|c| c.contact_id()),
                single.as_ref().map(|c| c.contact_id()),
                "{id}"
            );
            assert_eq!(
                got.as_ref().and_then(|c| c.attribute("city")),
                single.as_ref().and_then(|c| c.attribute("city")),
                "{id}"
            );
        }
        assert!(batched[5].is_none());
        assert_eq!(
            batched[7].as_ref().and_then(|c| c.attribute("city")),
            Some("new")
        );
        assert!(batched[1_000].is_none());
        assert!(batched[1_100].is_some());
    }
}
