//! Canonical form 3: the fields a batch's entries share (kind, job, campaign, channel,
//! provider, currency, time) written once as a header, and one compact row per entry (message
//! id, country, parts, unit price, cost, reference, provider message id). The bytes stored are
//! the bytes hashed, so a worker charging a chunk encodes each entry once, into ~35 bytes, and
//! digests it in one SHA-256 block; form 2 encoded a ~190-byte row to digest (3 blocks) and then
//! packed it again for storage.
//!
//! An entry's hash is `SHA-256(prev_hash ‖ seq ‖ SHA-256(header) ‖ SHA-256(row))`, with the
//! previous hash raw (104 bytes: 2 blocks, as form 2's chain step). Each entry's hash still
//! covers every one of its fields and the previous entry's hash, so verification is entry by
//! entry, exactly as for the earlier forms.
//!
//! Header: `u8 form (3), u8 kind, str job_id, str campaign_id, u8 channel, str provider,
//! [3] currency, i64 at_seconds, u32 at_nanos` (integers little-endian, `str` as varint length
//! and UTF-8 bytes). Row: `u8 flags, message_id, str country, varint parts, zigzag unit_price,
//! zigzag cost, [varint references], [provider_message_id]`. Flags: bit 0 the message id is
//! `msg_` and 32 lowercase hex digits, stored as 16 bytes (else `str`); bit 1 has references;
//! bit 2 has a provider message id; bit 3 that id is a text prefix followed by the message id's
//! 32 hex digits, stored as `str prefix` (else `str`).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::canonical::EntryRef;
use super::entry::{EntryKind, NewEntry};
use crate::domain::{Channel, Currency, Micros};
use crate::durable::bytes::Reader;
use crate::durable::compact::{parse_hex16, put_varint, read_varint, unzigzag, zigzag};

/// The form byte every header starts with.
pub const FORM_COMPACT: u8 = 3;

const ID_PREFIX: &str = "msg_";
const HEX_ID: u8 = 1;
const HAS_REF: u8 = 2;
const HAS_PMID: u8 = 4;
const PMID_SHARES_HEX: u8 = 8;

/// The fields every entry of a batch shares, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub kind: EntryKind,
    pub job_id: &'a str,
    pub campaign_id: &'a str,
    pub channel: Channel,
    pub provider: &'a str,
    pub currency: Currency,
    pub at: DateTime<Utc>,
}

impl<'a> HeaderRef<'a> {
    /// The shared fields of `e`.
    pub fn of(e: &EntryRef<'a>) -> HeaderRef<'a> {
        HeaderRef {
            kind: e.kind,
            job_id: e.job_id,
            campaign_id: e.campaign_id,
            channel: e.channel,
            provider: e.provider,
            currency: e.currency,
            at: e.at,
        }
    }
}

/// The fields that are an entry's own, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub message_id: &'a str,
    pub country: &'a str,
    pub parts: u32,
    pub unit_price_micros: Micros,
    pub cost_micros: Micros,
    pub references: Option<u64>,
    pub provider_message_id: Option<&'a str>,
}

impl<'a> RowRef<'a> {
    /// The own fields of `e`.
    pub fn of(e: &EntryRef<'a>) -> RowRef<'a> {
        RowRef {
            message_id: e.message_id,
            country: e.country,
            parts: e.parts,
            unit_price_micros: e.unit_price_micros,
            cost_micros: e.cost_micros,
            references: e.references,
            provider_message_id: e.provider_message_id,
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the header bytes of `h` to `out`.
pub fn encode_header(h: &HeaderRef<'_>, out: &mut Vec<u8>) {
    out.push(FORM_COMPACT);
    out.push(h.kind.code());
    put_str(out, h.job_id);
    put_str(out, h.campaign_id);
    out.push(h.channel.index() as u8);
    put_str(out, h.provider);
    out.extend_from_slice(&h.currency.code());
    out.extend_from_slice(&h.at.timestamp().to_le_bytes());
    out.extend_from_slice(&h.at.timestamp_subsec_nanos().to_le_bytes());
}

/// The 16 bytes of a `msg_` id with 32 lowercase hex digits.
fn hex_id(id: &str) -> Option<[u8; 16]> {
    parse_hex16(id.strip_prefix(ID_PREFIX)?.as_bytes())
}

/// Appends the row bytes of `r` to `out`.
pub fn encode_row(r: &RowRef<'_>, out: &mut Vec<u8>) {
    let raw = hex_id(r.message_id);
    // The provider's id, when it is a prefix and this message id's hex digits.
    let pmid_prefix = match (raw, r.provider_message_id) {
        (Some(_), Some(p)) => {
            let hex = &r.message_id[ID_PREFIX.len()..];
            p.strip_suffix(hex)
        }
        _ => None,
    };
    let mut flags = 0;
    if raw.is_some() {
        flags |= HEX_ID;
    }
    if r.references.is_some() {
        flags |= HAS_REF;
    }
    if r.provider_message_id.is_some() {
        flags |= HAS_PMID;
    }
    if pmid_prefix.is_some() {
        flags |= PMID_SHARES_HEX;
    }
    out.push(flags);
    match raw {
        Some(raw) => out.extend_from_slice(&raw),
        None => put_str(out, r.message_id),
    }
    put_str(out, r.country);
    put_varint(out, r.parts as u64);
    put_varint(out, zigzag(r.unit_price_micros.0));
    put_varint(out, zigzag(r.cost_micros.0));
    if let Some(reference) = r.references {
        put_varint(out, reference);
    }
    match (pmid_prefix, r.provider_message_id) {
        (Some(prefix), _) => put_str(out, prefix),
        (None, Some(p)) => put_str(out, p),
        (None, None) => {}
    }
}

/// SHA-256 of header or row bytes.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The chain hash of a form 3 entry.
pub fn chain(prev: &[u8; 32], seq: u64, header: &[u8; 32], row: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(header);
    h.update(row);
    h.finalize().into()
}

/// An entry's header bytes followed by its row bytes, and where the row starts.
pub fn encode_entry(e: &NewEntry) -> (Vec<u8>, usize) {
    let e = e.as_ref();
    let mut bytes = Vec::with_capacity(128);
    encode_header(&HeaderRef::of(&e), &mut bytes);
    let row_at = bytes.len();
    encode_row(&RowRef::of(&e), &mut bytes);
    (bytes, row_at)
}

/// The header and row digests of an entry, re-encoded from its fields (verification).
pub fn digests_of(e: &NewEntry) -> ([u8; 32], [u8; 32]) {
    let (bytes, row_at) = encode_entry(e);
    (digest(&bytes[..row_at]), digest(&bytes[row_at..]))
}

fn read_str(r: &mut Reader<'_>) -> Result<String, String> {
    let n = varint(r)?;
    let n = usize::try_from(n).map_err(|_| "length out of range".to_string())?;
    r.text(n)
}

fn varint(r: &mut Reader<'_>) -> Result<u64, String> {
    read_varint(&mut r.0).map_err(str::to_string)
}

/// A decoded header: the shared fields.
struct Header {
    kind: EntryKind,
    job_id: String,
    campaign_id: String,
    channel: Channel,
    provider: String,
    currency: Currency,
    at: DateTime<Utc>,
}

fn decode_header(r: &mut Reader<'_>) -> Result<Header, String> {
    let form = r.u8()?;
    if form != FORM_COMPACT {
        return Err(format!("unknown entry form {form}"));
    }
    let kind = EntryKind::from_code(r.u8()?)?;
    let job_id = read_str(r)?;
    let campaign_id = read_str(r)?;
    let channel = r.channel()?;
    let provider = read_str(r)?;
    let currency = r.currency()?;
    let at = r.time()?;
    Ok(Header {
        kind,
        job_id,
        campaign_id,
        channel,
        provider,
        currency,
        at,
    })
}

fn decode_row(r: &mut Reader<'_>, h: &Header) -> Result<NewEntry, String> {
    let flags = r.u8()?;
    if flags & !(HEX_ID | HAS_REF | HAS_PMID | PMID_SHARES_HEX) != 0 {
        return Err(format!("unknown row flags {flags:#x}"));
    }
    let shares = flags & PMID_SHARES_HEX != 0;
    if shares && (flags & HEX_ID == 0 || flags & HAS_PMID == 0) {
        return Err("provider id shares a hex id the row does not have".into());
    }
    let message_id = match flags & HEX_ID != 0 {
        true => format!("{ID_PREFIX}{}", hex::encode(r.take(16)?)),
        false => read_str(r)?,
    };
    let country = read_str(r)?;
    let parts = u32::try_from(varint(r)?).map_err(|_| "parts out of range".to_string())?;
    let unit = unzigzag(varint(r)?);
    let cost = unzigzag(varint(r)?);
    let references = match flags & HAS_REF != 0 {
        true => Some(varint(r)?),
        false => None,
    };
    let provider_message_id = match (flags & HAS_PMID != 0, shares) {
        (true, true) => Some(format!(
            "{}{}",
            read_str(r)?,
            &message_id[ID_PREFIX.len()..]
        )),
        (true, false) => Some(read_str(r)?),
        (false, _) => None,
    };
    Ok(NewEntry {
        kind: h.kind,
        message_id,
        job_id: h.job_id.clone(),
        campaign_id: h.campaign_id.clone(),
        channel: h.channel,
        provider: h.provider.clone(),
        country,
        parts,
        unit_price_micros: Micros(unit),
        cost_micros: Micros(cost),
        currency: h.currency,
        at: h.at,
        references,
        provider_message_id,
    })
}

/// Decodes a stored form 3 batch (a header and `count` rows, nothing after them).
pub fn decode(bytes: &[u8], count: usize) -> Result<Vec<NewEntry>, String> {
    let mut r = Reader(bytes);
    let header = decode_header(&mut r)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(decode_row(&mut r, &header)?);
    }
    if !r.0.is_empty() {
        return Err("trailing bytes after the last row".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::sample_entry;

    fn stored(entries: &[NewEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(&HeaderRef::of(&entries[0].as_ref()), &mut out);
        for e in entries {
            encode_row(&RowRef::of(&e.as_ref()), &mut out);
        }
        out
    }

    #[test]
    fn rows_round_trip_exactly() {
        for i in 0..20 {
            let e = sample_entry(i);
            assert_eq!(
                decode(&stored(std::slice::from_ref(&e)), 1).unwrap(),
                vec![e]
            );
        }
        // Ids in the hex form, a provider id that shares its digits, negative amounts.
        let mut e = sample_entry(3);
        e.message_id = format!("msg_{:032x}", 0xdead_beef_u128 << 64);
        e.provider_message_id = Some(format!("sbx-{}", &e.message_id[4..]));
        e.cost_micros = Micros(-90_000);
        e.references = Some(7);
        let mut other = e.clone();
        other.provider_message_id = Some("unrelated".into());
        other.message_id = "msg_NOT-HEX".into();
        let both = vec![e, other];
        let bytes = stored(&both);
        assert_eq!(decode(&bytes, 2).unwrap(), both);
    }

    #[test]
    fn only_lowercase_hex_ids_take_the_short_form() {
        let id = format!("msg_{:032x}", 0x0123_4567_89ab_cdef_u128 << 61);
        let raw = hex_id(&id).unwrap();
        assert_eq!(hex::encode(raw), id[4..]);
        for bad in [
            id.to_uppercase(),
            id.replace('0', "g"),
            id.replace("msg_", "msh_"),
            format!("{id}0"),
            id[..id.len() - 1].to_string(),
            format!("msg_{}:", &id[4..35]),
        ] {
            assert_eq!(hex_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_hex_id_and_its_provider_id_take_few_bytes() {
        let mut e = sample_entry(2);
        e.message_id = format!("msg_{:032x}", u128::MAX / 3);
        e.provider_message_id = Some(format!("sbx-{}", &e.message_id[4..]));
        let mut row = Vec::new();
        encode_row(&RowRef::of(&e.as_ref()), &mut row);
        // One SHA-256 block holds rows up to 55 bytes.
        assert!(row.len() <= 40, "{} bytes", row.len());
    }

    #[test]
    fn damaged_batches_are_refused() {
        let entries: Vec<NewEntry> = (0..4)
            .map(sample_entry)
            .map(|mut e| {
                e.kind = EntryKind::Charge;
                e.job_id = "job_0".into();
                e.at = sample_entry(0).at;
                e
            })
            .collect();
        let bytes = stored(&entries);
        assert_eq!(decode(&bytes, 4).unwrap(), entries);
        assert!(decode(&bytes, 5).is_err());
        assert!(decode(&bytes, 3).is_err());
        assert!(decode(&bytes[..bytes.len() - 1], 4).is_err());
        let mut bad_form = bytes.clone();
        bad_form[0] = 2;
        assert!(decode(&bad_form, 4).is_err());
    }

    #[test]
    fn every_field_changes_the_digests() {
        let base = sample_entry(2);
        let (h, r) = digests_of(&base);
        let edits: Vec<fn(&mut NewEntry)> = vec![
            |e| e.kind = EntryKind::Correction,
            |e| e.job_id.push('x'),
            |e| e.campaign_id.push('x'),
            |e| e.channel = Channel::Email,
            |e| e.provider.push('x'),
            |e| e.currency = Currency::parse("USD").unwrap(),
            |e| e.at += chrono::Duration::nanoseconds(1),
            |e| e.message_id.push('x'),
            |e| e.country = "US".into(),
            |e| e.parts += 1,
            |e| e.unit_price_micros = Micros(e.unit_price_micros.0 + 1),
            |e| e.cost_micros = Micros(e.cost_micros.0 - 1),
            |e| e.references = Some(1),
            |e| e.provider_message_id = None,
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut e = base.clone();
            edit(&mut e);
            assert_ne!(
                digests_of(&e),
                (h, r),
                "edit {i} left the digests unchanged"
            );
        }
    }
}
