//! The field-packed storage form of a batch's rows ([`super::batch::Packing::Fields`]): each
//! entry written against the one before it, so that what repeats within a batch (job,
//! campaign, provider, currency, time, mostly the country and price) costs a bit or a byte,
//! and ids cost their 16 raw bytes ([`crate::durable::compact`]): smaller than general-purpose
//! compression of the rows, for a fraction of the CPU. Unpacking rebuilds the exact canonical
//! rows, which are what is digested and chained, so the packing is invisible to verification.
//!
//! A packed row is `u16 changed`, then each fixed field whose bit is set, in bit order, and
//! then the text fields, each written against its previous value:
//! bits `0 kind u8, 1 channel u8, 2 parts u32, 3 unit i64, 4 cost i64, 5 currency [3],
//! 6 at (i64 seconds, u32 nanos), 7 references (u8 flag [u64]), 8 has provider message id`;
//! texts: `message_id, job_id, campaign_id, provider, country`, each against the previous
//! row's, and `provider_message_id` (when there is one) against the row's message id.

use chrono::{DateTime, Utc};

use super::canonical::{self, EntryRef};
use super::entry::EntryKind;
use crate::domain::{Channel, Currency, Micros};
use crate::durable::bytes::Reader;
use crate::durable::compact::{put_text, read_text};

const KIND: u16 = 1 << 0;
const CHANNEL: u16 = 1 << 1;
const PARTS: u16 = 1 << 2;
const UNIT: u16 = 1 << 3;
const COST: u16 = 1 << 4;
const CURRENCY: u16 = 1 << 5;
const AT: u16 = 1 << 6;
const REFERENCES: u16 = 1 << 7;
const HAS_PMID: u16 = 1 << 8;
const ALL: u16 = (1 << 9) - 1;

/// The previous row's fields, owned, as both sides keep them.
#[derive(Default)]
struct Previous {
    kind: u8,
    channel: u8,
    parts: u32,
    unit: i64,
    cost: i64,
    currency: [u8; 3],
    at: (i64, u32),
    references: Option<u64>,
    has_pmid: bool,
    message_id: String,
    job_id: String,
    campaign_id: String,
    provider: String,
    country: String,
    /// Unpacking only: the row's provider message id.
    pmid: String,
}

fn keep(slot: &mut String, text: &str) {
    if slot != text {
        slot.clear();
        slot.push_str(text);
    }
}

/// Packs rows one after another.
#[derive(Default)]
pub struct RowPacker {
    out: Vec<u8>,
    prev: Previous,
    rows: usize,
}

impl RowPacker {
    /// A packer with room for about `n` rows.
    pub fn with_capacity(n: usize) -> RowPacker {
        RowPacker {
            out: Vec::with_capacity(n * 64),
            ..RowPacker::default()
        }
    }

    /// Appends the entry's row.
    pub fn push(&mut self, e: &EntryRef<'_>) {
        let p = &mut self.prev;
        let at = (e.at.timestamp(), e.at.timestamp_subsec_nanos());
        let currency = e.currency.code();
        let mut changed = 0u16;
        let mut mark = |bit: u16, differs: bool| {
            if differs {
                changed |= bit;
            }
        };
        mark(KIND, e.kind.code() != p.kind);
        mark(CHANNEL, e.channel.index() as u8 != p.channel);
        mark(PARTS, e.parts != p.parts);
        mark(UNIT, e.unit_price_micros.0 != p.unit);
        mark(COST, e.cost_micros.0 != p.cost);
        mark(CURRENCY, currency != p.currency);
        mark(AT, at != p.at);
        mark(REFERENCES, e.references != p.references);
        mark(HAS_PMID, e.provider_message_id.is_some() != p.has_pmid);
        if self.rows == 0 {
            changed = ALL;
        }
        let out = &mut self.out;
        out.extend_from_slice(&changed.to_le_bytes());
        if changed & KIND != 0 {
            out.push(e.kind.code());
        }
        if changed & CHANNEL != 0 {
            out.push(e.channel.index() as u8);
        }
        if changed & PARTS != 0 {
            out.extend_from_slice(&e.parts.to_le_bytes());
        }
        if changed & UNIT != 0 {
            out.extend_from_slice(&e.unit_price_micros.0.to_le_bytes());
        }
        if changed & COST != 0 {
            out.extend_from_slice(&e.cost_micros.0.to_le_bytes());
        }
        if changed & CURRENCY != 0 {
            out.extend_from_slice(&currency);
        }
        if changed & AT != 0 {
            out.extend_from_slice(&at.0.to_le_bytes());
            out.extend_from_slice(&at.1.to_le_bytes());
        }
        if changed & REFERENCES != 0 {
            match e.references {
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(&r.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        if changed & HAS_PMID != 0 {
            out.push(e.provider_message_id.is_some() as u8);
        }
        put_text(out, e.message_id, &p.message_id);
        put_text(out, e.job_id, &p.job_id);
        put_text(out, e.campaign_id, &p.campaign_id);
        put_text(out, e.provider, &p.provider);
        put_text(out, e.country, &p.country);
        if let Some(pmid) = e.provider_message_id {
            // Against the message id: many providers answer with our id, or its digits.
            put_text(out, pmid, e.message_id);
        }
        p.kind = e.kind.code();
        p.channel = e.channel.index() as u8;
        p.parts = e.parts;
        p.unit = e.unit_price_micros.0;
        p.cost = e.cost_micros.0;
        p.currency = currency;
        p.at = at;
        p.references = e.references;
        p.has_pmid = e.provider_message_id.is_some();
        keep(&mut p.message_id, e.message_id);
        keep(&mut p.job_id, e.job_id);
        keep(&mut p.campaign_id, e.campaign_id);
        keep(&mut p.provider, e.provider);
        keep(&mut p.country, e.country);
        self.rows += 1;
    }

    /// The packed rows.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Rebuilds the canonical rows of packed rows, each after its `u32` length, as
/// [`super::batch::split_rows`] splits them.
pub fn unpack(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(bytes.len() * 3);
    let mut r = Reader(bytes);
    let mut p = Previous::default();
    let mut text = String::new();
    let mut first = true;
    while !r.0.is_empty() {
        let changed = r.u16()?;
        if changed & !ALL != 0 || (first && changed != ALL) {
            return Err(format!("bad packed row header {changed:#x}"));
        }
        first = false;
        if changed & KIND != 0 {
            p.kind = r.u8()?;
        }
        if changed & CHANNEL != 0 {
            p.channel = r.u8()?;
        }
        if changed & PARTS != 0 {
            p.parts = r.u32()?;
        }
        if changed & UNIT != 0 {
            p.unit = r.i64()?;
        }
        if changed & COST != 0 {
            p.cost = r.i64()?;
        }
        if changed & CURRENCY != 0 {
            p.currency = r.array()?;
        }
        if changed & AT != 0 {
            p.at = (r.i64()?, r.u32()?);
        }
        if changed & REFERENCES != 0 {
            p.references = match r.flag()? {
                true => Some(r.u64()?),
                false => None,
            };
        }
        if changed & HAS_PMID != 0 {
            p.has_pmid = r.flag()?;
        }
        for slot in [
            &mut p.message_id,
            &mut p.job_id,
            &mut p.campaign_id,
            &mut p.provider,
            &mut p.country,
        ] {
            read_text(&mut r.0, slot, &mut text)?;
            std::mem::swap(slot, &mut text);
        }
        if p.has_pmid {
            read_text(&mut r.0, &p.message_id, &mut p.pmid)?;
        }
        let row = EntryRef {
            kind: EntryKind::from_code(p.kind)?,
            message_id: &p.message_id,
            job_id: &p.job_id,
            campaign_id: &p.campaign_id,
            channel: Channel::from_index(p.channel as usize)
                .ok_or_else(|| format!("unknown channel {}", p.channel))?,
            provider: &p.provider,
            country: &p.country,
            parts: p.parts,
            unit_price_micros: Micros(p.unit),
            cost_micros: Micros(p.cost),
            currency: std::str::from_utf8(&p.currency)
                .ok()
                .and_then(Currency::parse)
                .ok_or_else(|| format!("bad currency {:?}", p.currency))?,
            at: DateTime::<Utc>::from_timestamp(p.at.0, p.at.1)
                .ok_or("time out of range".to_string())?,
            references: p.references,
            provider_message_id: p.has_pmid.then_some(p.pmid.as_str()),
        };
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        canonical::encode(&row, &mut out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{sample_entry, NewEntry};

    fn raw_rows(entries: &[NewEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            let row = canonical::to_bytes(&e.as_ref());
            out.extend_from_slice(&(row.len() as u32).to_le_bytes());
            out.extend_from_slice(&row);
        }
        out
    }

    fn packed(entries: &[NewEntry]) -> Vec<u8> {
        let mut p = RowPacker::with_capacity(entries.len());
        for e in entries {
            p.push(&e.as_ref());
        }
        p.finish()
    }

    #[test]
    fn packed_rows_unpack_to_the_exact_canonical_rows() {
        let mut entries: Vec<NewEntry> = (0..40).map(sample_entry).collect();
        // Fields changing back and forth, and absent optional fields.
        entries[3].references = Some(17);
        entries[5].provider_message_id = None;
        entries[6].provider_message_id = None;
        entries[8].kind = EntryKind::Refund;
        entries[8].cost_micros = Micros(-90_000);
        entries[9].channel = Channel::Email;
        entries[10].currency = Currency::parse("EUR").unwrap();
        entries[11].message_id = "not-a-hex-id".into();
        assert_eq!(unpack(&packed(&entries)).unwrap(), raw_rows(&entries));
        assert_eq!(unpack(&[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_batch_of_one_job_packs_smaller_than_its_rows() {
        let entries: Vec<NewEntry> = (0..200)
            .map(|i| {
                let mut e = sample_entry(0);
                e.message_id = format!("msg_{:032x}", i as u128 * 104_729);
                e.provider_message_id = Some(format!("sbx-{:032x}", i as u128 * 7_919));
                e.country = ["FR", "DE", "GB"][i % 3].into();
                e
            })
            .collect();
        let packed = packed(&entries);
        assert_eq!(unpack(&packed).unwrap(), raw_rows(&entries));
        let per_row = packed.len() / entries.len();
        assert!(per_row <= 56, "{per_row} bytes per packed row");
    }

    #[test]
    fn damaged_packed_rows_are_errors_not_panics() {
        let entries: Vec<NewEntry> = (0..3).map(sample_entry).collect();
        let packed = packed(&entries);
        for cut in 1..packed.len() {
            // A cut between rows is a shorter batch, not damage; anywhere else it is refused.
            if let Ok(rows) = unpack(&packed[..cut]) {
                assert!(raw_rows(&entries).starts_with(&rows));
            }
        }
        let mut bad = packed.clone();
        bad[0] = 0;
        assert!(
            unpack(&bad).is_err(),
            "the first row must carry every field"
        );
        let mut bad = packed;
        bad[1] = 0xff;
        assert!(unpack(&bad).is_err());
    }
}
