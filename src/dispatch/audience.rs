//! A job's audience stored compactly: contact ids and upstream phones in one byte arena, eight
//! bytes of index per recipient, per-recipient variables in a side table (they are rare).
//! Duplicates are caught as recipients arrive; the builder never holds the request body.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use crate::policy::dedup::DedupFilter;

/// Limits that keep one request from exhausting memory.
pub const MAX_CONTACT_ID_LEN: usize = 256;
/// Longest accepted upstream phone string.
pub const MAX_PHONE_LEN: usize = 64;

/// Why a recipient could not be taken in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AudienceError {
    #[error("contact_id must not be empty")]
    EmptyContactId,
    #[error("contact_id is longer than {MAX_CONTACT_ID_LEN} bytes")]
    ContactIdTooLong,
    #[error("phone is longer than {MAX_PHONE_LEN} bytes")]
    PhoneTooLong,
    #[error("the audience exceeds the largest supported size")]
    TooLarge,
}

#[derive(Clone, Copy)]
struct Entry {
    offset: u32,
    id_len: u16,
    phone_len: u16,
}

/// The recipients of one job, in submission order.
pub struct Audience {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    variables: HashMap<u32, HashMap<String, String>>,
    duplicates: Vec<u32>,
}

/// Collects recipients one by one.
pub struct AudienceBuilder {
    audience: Audience,
    dedup: DedupFilter,
}

impl Default for AudienceBuilder {
    fn default() -> Self {
        AudienceBuilder {
            audience: Audience {
                arena: Vec::new(),
                entries: Vec::new(),
                variables: HashMap::new(),
                duplicates: Vec::new(),
            },
            dedup: DedupFilter::new(),
        }
    }
}

impl AudienceBuilder {
    /// An empty builder.
    pub fn new() -> AudienceBuilder {
        AudienceBuilder::default()
    }

    /// Adds one recipient; a repeat of an earlier contact id is kept (it is part of the
    /// audience and reported) but marked duplicate.
    pub fn push(
        &mut self,
        contact_id: &str,
        phone: Option<&str>,
        variables: Option<HashMap<String, String>>,
    ) -> Result<(), AudienceError> {
        let contact_id = contact_id.trim();
        if contact_id.is_empty() {
            return Err(AudienceError::EmptyContactId);
        }
        if contact_id.len() > MAX_CONTACT_ID_LEN {
            return Err(AudienceError::ContactIdTooLong);
        }
        let phone = phone.map(str::trim).unwrap_or("");
        if phone.len() > MAX_PHONE_LEN {
            return Err(AudienceError::PhoneTooLong);
        }
        let a = &mut self.audience;
        let offset = u32::try_from(a.arena.len()).map_err(|_| AudienceError::TooLarge)?;
        if a.arena.len() + contact_id.len() + phone.len() > u32::MAX as usize
            || a.entries.len() >= u32::MAX as usize
        {
            return Err(AudienceError::TooLarge);
        }
        let index = a.entries.len() as u32;
        a.arena.extend_from_slice(contact_id.as_bytes());
        a.arena.extend_from_slice(phone.as_bytes());
        a.entries.push(Entry {
            offset,
            id_len: contact_id.len() as u16,
            phone_len: phone.len() as u16,
        });
        if let Some(v) = variables.filter(|v| !v.is_empty()) {
            a.variables.insert(index, v);
        }
        if !self.dedup.first_time(contact_id) {
            a.duplicates.push(index);
        }
        Ok(())
    }

    /// Recipients taken in so far.
    pub fn len(&self) -> usize {
        self.audience.entries.len()
    }

    /// Whether nothing was taken in.
    pub fn is_empty(&self) -> bool {
        self.audience.entries.is_empty()
    }

    /// The finished audience.
    pub fn finish(mut self) -> Audience {
        self.audience.arena.shrink_to_fit();
        self.audience.entries.shrink_to_fit();
        self.audience
    }
}

impl Audience {
    /// Number of recipients, duplicates included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no recipients.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The contact id of recipient `i`.
    pub fn contact_id(&self, i: u32) -> &str {
        let e = self.entries[i as usize];
        let bytes = &self.arena[e.offset as usize..e.offset as usize + e.id_len as usize];
        // Only `&str` data is ever written into the arena, at char boundaries.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// The phone the upstream system sent for recipient `i`, if any.
    pub fn phone(&self, i: u32) -> Option<&str> {
        let e = self.entries[i as usize];
        if e.phone_len == 0 {
            return None;
        }
        let start = e.offset as usize + e.id_len as usize;
        std::str::from_utf8(&self.arena[start..start + e.phone_len as usize]).ok()
    }

    /// Recipient `i`'s own template variables.
    pub fn variables(&self, i: u32) -> Option<&HashMap<String, String>> {
        self.variables.get(&i)
    }

    /// Indices of repeated contact ids (their first occurrence is not included).
    pub fn duplicates(&self) -> &[u32] {
        &self.duplicates
    }

    /// Splits the non-duplicate recipients into `shards` lists by a hash of the contact id, so
    /// a contact always lands in the same shard, keeping submission order within each.
    pub fn shard(&self, shards: usize) -> Vec<Vec<u32>> {
        let shards = shards.max(1);
        let mut out = vec![Vec::with_capacity(self.len() / shards + 1); shards];
        let mut dups = self.duplicates.iter().peekable();
        for i in 0..self.len() as u32 {
            if dups.peek() == Some(&&i) {
                dups.next();
                continue;
            }
            let h = xxh3_64(self.contact_id(i).as_bytes());
            out[(h % shards as u64) as usize].push(i);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stores_ids_phones_and_marks_duplicates() {
        let mut b = AudienceBuilder::new();
        b.push("c1", Some("+8613123079337"), None).unwrap();
        b.push("c2", None, None).unwrap();
        b.push("c1", None, None).unwrap();
        assert_eq!(b.push(" ", None, None), Err(AudienceError::EmptyContactId));
        let a = b.finish();
        assert_eq!(a.len(), 3);
        assert_eq!(a.contact_id(0), "c1");
        assert_eq!(a.phone(0), Some("+8613123079337"));
        assert_eq!(a.phone(1), None);
        assert_eq!(a.duplicates(), &[2]);
    }

    proptest! {
        #[test]
        fn sharding_is_a_partition_of_the_unique_recipients(ids in proptest::collection::vec("[a-z0-9]{1,6}", 0..200), shards in 1usize..17) {
            let mut b = AudienceBuilder::new();
            for id in &ids { b.push(id, None, None).unwrap(); }
            let a = b.finish();
            let parts = a.shard(shards);
            let mut all: Vec<u32> = parts.iter().flatten().copied().collect();
            all.sort_unstable();
            let unique: std::collections::HashSet<&String> = ids.iter().collect();
            prop_assert_eq!(all.len(), unique.len());
            all.dedup();
            prop_assert_eq!(all.len(), unique.len());
            // The same contact id always lands in the same shard.
            for p in &parts {
                for &i in p {
                    let id = a.contact_id(i);
                    prop_assert!(parts.iter().filter(|q| q.iter().any(|&j| a.contact_id(j) == id)).count() == 1);
                }
            }
        }
    }
}
