//! The canonical binary form of an entry's fields (form 2): the bytes its body digest is taken
//! over, and the row it is stored as. Written straight from borrowed fields, so a worker
//! charging a send builds no owned entry and formats no text.
//!
//! Layout, integers little-endian, `str` as `u32 len, UTF-8 bytes`:
//! `u8 form (2), u8 kind, str message_id, str job_id, str campaign_id, u8 channel,
//! str provider, str country, u32 parts, i64 unit_price, i64 cost, [3] currency,
//! i64 at_seconds, u32 at_nanos, u8 has_ref [u64 ref], u8 has_pmid [str pmid]`.
//! Decoding is strict (flags are 0 or 1, nothing trails), so a row decodes to one entry and
//! that entry encodes back to the same bytes.

use chrono::{DateTime, Utc};

use super::entry::{EntryKind, NewEntry};
use crate::domain::{Channel, Currency, Micros};
use crate::durable::bytes::Reader;

/// The form byte every canonical row starts with.
pub const FORM_BINARY: u8 = 2;

/// An entry's fields, borrowed: what a caller charging a send has at hand.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub kind: EntryKind,
    pub message_id: &'a str,
    pub job_id: &'a str,
    pub campaign_id: &'a str,
    pub channel: Channel,
    pub provider: &'a str,
    pub country: &'a str,
    pub parts: u32,
    pub unit_price_micros: Micros,
    pub cost_micros: Micros,
    pub currency: Currency,
    pub at: DateTime<Utc>,
    pub references: Option<u64>,
    pub provider_message_id: Option<&'a str>,
}

impl NewEntry {
    /// The entry's fields, borrowed.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            kind: self.kind,
            message_id: &self.message_id,
            job_id: &self.job_id,
            campaign_id: &self.campaign_id,
            channel: self.channel,
            provider: &self.provider,
            country: &self.country,
            parts: self.parts,
            unit_price_micros: self.unit_price_micros,
            cost_micros: self.cost_micros,
            currency: self.currency,
            at: self.at,
            references: self.references,
            provider_message_id: self.provider_message_id.as_deref(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends the canonical bytes of `e` to `out`.
pub fn encode(e: &EntryRef<'_>, out: &mut Vec<u8>) {
    out.reserve(96 + e.message_id.len() + e.job_id.len() + e.campaign_id.len());
    out.push(FORM_BINARY);
    out.push(e.kind.code());
    put_str(out, e.message_id);
    put_str(out, e.job_id);
    put_str(out, e.campaign_id);
    out.push(e.channel.index() as u8);
    put_str(out, e.provider);
    put_str(out, e.country);
    out.extend_from_slice(&e.parts.to_le_bytes());
    out.extend_from_slice(&e.unit_price_micros.0.to_le_bytes());
    out.extend_from_slice(&e.cost_micros.0.to_le_bytes());
    out.extend_from_slice(e.currency.as_str().as_bytes());
    out.extend_from_slice(&e.at.timestamp().to_le_bytes());
    out.extend_from_slice(&e.at.timestamp_subsec_nanos().to_le_bytes());
    match e.references {
        Some(r) => {
            out.push(1);
            out.extend_from_slice(&r.to_le_bytes());
        }
        None => out.push(0),
    }
    match e.provider_message_id {
        Some(p) => {
            out.push(1);
            put_str(out, p);
        }
        None => out.push(0),
    }
}

/// The canonical bytes of `e`.
pub fn to_bytes(e: &EntryRef<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(e, &mut out);
    out
}

/// Decodes one canonical row (all of `row`) into its entry.
pub fn decode(row: &[u8]) -> Result<NewEntry, String> {
    let mut r = Reader(row);
    let form = r.u8()?;
    if form != FORM_BINARY {
        return Err(format!("unknown entry form {form}"));
    }
    let kind = EntryKind::from_code(r.u8()?)?;
    let message_id = r.str32()?;
    let job_id = r.str32()?;
    let campaign_id = r.str32()?;
    let channel = r.channel()?;
    let provider = r.str32()?;
    let country = r.str32()?;
    let parts = r.u32()?;
    let unit = r.i64()?;
    let cost = r.i64()?;
    let currency = r.currency()?;
    let at = r.time()?;
    let references = match r.flag()? {
        true => Some(r.u64()?),
        false => None,
    };
    let provider_message_id = match r.flag()? {
        true => Some(r.str32()?),
        false => None,
    };
    if !r.0.is_empty() {
        return Err("trailing bytes after the entry".into());
    }
    Ok(NewEntry {
        kind,
        message_id,
        job_id,
        campaign_id,
        channel,
        provider,
        country,
        parts,
        unit_price_micros: Micros(unit),
        cost_micros: Micros(cost),
        currency,
        at,
        references,
        provider_message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::sample_entry;

    #[test]
    fn rows_round_trip_exactly() {
        for i in 0..20 {
            let e = sample_entry(i);
            let row = to_bytes(&e.as_ref());
            let back = decode(&row).unwrap();
            assert_eq!(back, e);
            assert_eq!(to_bytes(&back.as_ref()), row);
        }
    }

    #[test]
    fn damaged_rows_are_refused() {
        let row = to_bytes(&sample_entry(4).as_ref());
        assert!(decode(&row[..row.len() - 1]).is_err());
        let mut longer = row.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad_form = row.clone();
        bad_form[0] = 1;
        assert!(decode(&bad_form).is_err());
        // The references flag sits right after the fixed fields; 7 is no flag.
        let flag_at = row.len() - "p-4".len() - 4 - 1 - 8 - 1;
        assert_eq!(row[flag_at], 1);
        let mut bad_flag = row;
        bad_flag[flag_at] = 7;
        assert!(decode(&bad_flag).is_err());
    }
}
