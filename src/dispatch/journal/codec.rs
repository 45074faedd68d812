//! Compact binary forms of what the dispatch journal stores: audience chunks and the message
//! log records (`sending` before a provider call, `settled` after its answer).
//!
//! Audience chunks, delivery and decision records are LZ4-compressed. `sending` and `settled`
//! records, written for every message on the send path, are not: each body and provider
//! message id is written against the one before it ([`crate::durable::compact`]), which packs
//! them about as well for a fraction of the CPU. Such a record is stored after [`UNPACKED`],
//! which no LZ4 value starts with (it would claim 4 GiB of content).
//!
//! `settled` and `delivered` records carry the time they happened (Unix seconds, one per
//! record), so a job's per-minute series reads the same after a restart.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::durable::compact::{self, unzigzag, zigzag};
use crate::phone::RegionCode;
use crate::provider::OutboundMessage;

/// Recipients per stored audience chunk.
pub const AUDIENCE_CHUNK: usize = 65_536;

const KIND_DELIVERED: u8 = 3;
const KIND_SENDING: u8 = 4;
const KIND_SETTLED: u8 = 5;
const KIND_DECIDED: u8 = 6;
const KIND_WITHDRAWN: u8 = 7;

/// What a stored value that is not LZ4-compressed starts with.
pub const UNPACKED: [u8; 4] = [0xff; 4];

/// Why a stored value could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("journal record unreadable: {0}")]
pub struct CodecError(pub &'static str);

/// A message handed to the provider, as the journal keeps it until its answer is recorded:
/// enough to send it again, unchanged and under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingItem {
    pub index: u32,
    pub to: u64,
    pub parts: u32,
    pub region: RegionCode,
    pub body: String,
}

/// How a message handed to the provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Accepted; charged in the ledger in the same commit.
    Sent,
    /// Refused for good, or retries ran out.
    Failed,
}

/// A message's final answer from the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledItem {
    pub index: u32,
    pub settlement: Settlement,
    pub parts: u32,
    pub cost_micros: i64,
    pub region: RegionCode,
    pub provider_message_id: String,
}

/// One decoded message-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    Sending {
        job: String,
        items: Vec<SendingItem>,
    },
    /// Provider answers that arrived at `at` (Unix seconds).
    Settled {
        job: String,
        at: i64,
        items: Vec<SettledItem>,
    },
    /// Final delivery states from receipts applied at `at` (Unix seconds): (recipient, state
    /// code).
    Delivered {
        job: String,
        at: i64,
        items: Vec<(u32, u8)>,
    },
    /// Outcomes decided without a provider call (rejections; deferrals of a cancelled job),
    /// written when the job ends: (recipient, outcome code).
    Decided { job: String, items: Vec<(u32, u8)> },
    /// Recipients of an earlier `sending` record that never reached the provider (a shutdown
    /// came first): no longer in flight.
    Withdrawn { job: String, items: Vec<u32> },
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn header(&mut self, kind: u8, job: &str, count: usize) {
        self.u8(kind);
        self.bytes(job.as_bytes());
        self.u32(count as u32);
    }
    fn text(&mut self, text: &str, prev: &str) {
        compact::put_text(&mut self.0, text, prev);
    }
    fn finish(self) -> Vec<u8> {
        lz4_flex::compress_prepend_size(&self.0)
    }
    /// The value as written, marked as not compressed; `self` was started with
    /// [`Writer::unpacked`].
    fn finish_unpacked(self) -> Vec<u8> {
        self.0
    }
    fn unpacked(capacity: usize) -> Writer {
        let mut w = Writer(Vec::with_capacity(capacity + UNPACKED.len()));
        w.0.extend_from_slice(&UNPACKED);
        w
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Result<String, CodecError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| CodecError("text is not UTF-8"))
    }
    fn region(&mut self) -> Result<RegionCode, CodecError> {
        let b = self.take(2)?;
        Ok(RegionCode([b[0], b[1]]))
    }
    fn varint(&mut self) -> Result<u64, CodecError> {
        compact::read_varint(&mut self.0).map_err(CodecError)
    }
    /// A text written against `prev`, into `out`.
    fn text_after(&mut self, prev: &str, out: &mut String) -> Result<(), CodecError> {
        compact::read_text(&mut self.0, prev, out).map_err(CodecError)
    }
}

fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    match stored.strip_prefix(&UNPACKED) {
        Some(raw) => Ok(Cow::Borrowed(raw)),
        None => lz4_flex::decompress_size_prepended(stored)
            .map(Cow::Owned)
            .map_err(|_| CodecError("bad compression")),
    }
}

/// Item flags of packed `sending` and `settled` records: which fields repeat the previous
/// item's (an index one past it), and so are not written.
const NEXT_INDEX: u8 = 1 << 0;
const SAME_PARTS: u8 = 1 << 1;
const SAME_REGION: u8 = 1 << 2;
const SAME_SETTLEMENT: u8 = 1 << 3;
const SAME_COST: u8 = 1 << 4;

/// The fields items of one record share with the item before.
#[derive(Default)]
struct Repeats {
    index: Option<u32>,
    parts: u32,
    region: [u8; 2],
    settlement: u8,
    cost: u64,
    to: u64,
}

impl Repeats {
    fn flags(&self, index: u32, parts: u32, region: RegionCode) -> u8 {
        let mut f = 0;
        if self.index.is_some_and(|i| i.wrapping_add(1) == index) {
            f |= NEXT_INDEX;
        }
        if self.index.is_some() && parts == self.parts {
            f |= SAME_PARTS;
        }
        if self.index.is_some() && region.0 == self.region {
            f |= SAME_REGION;
        }
        f
    }
}

/// Encodes the messages of one chunk about to be handed to the provider.
pub fn encode_sending<'a>(
    job: &str,
    items: impl ExactSizeIterator<Item = (u32, RegionCode, &'a OutboundMessage)>,
) -> Vec<u8> {
    let mut w = Writer::unpacked(items.len() * 40 + 64);
    w.header(KIND_SENDING, job, items.len());
    let mut prev = "";
    let mut rep = Repeats::default();
    for (index, region, m) in items {
        let flags = rep.flags(index, m.parts, region);
        w.u8(flags);
        if flags & NEXT_INDEX == 0 {
            w.u32(index);
        }
        if flags & SAME_PARTS == 0 {
            w.u32(m.parts);
        }
        if flags & SAME_REGION == 0 {
            w.0.extend_from_slice(&region.0);
        }
        compact::put_varint(&mut w.0, zigzag(m.to.wrapping_sub(rep.to) as i64));
        w.text(&m.body, prev);
        prev = &m.body;
        rep = Repeats {
            index: Some(index),
            parts: m.parts,
            region: region.0,
            to: m.to,
            ..rep
        };
    }
    w.finish_unpacked()
}

/// Encodes the provider's final answers for messages of one job.
pub fn encode_settled(job: &str, at: i64, items: &[SettledItem]) -> Vec<u8> {
    let mut w = Writer::unpacked(items.len() * 24 + 64);
    w.header(KIND_SETTLED, job, items.len());
    w.u64(at as u64);
    let mut prev = "";
    let mut rep = Repeats::default();
    for s in items {
        let code = settlement_code(s.settlement);
        let cost = s.cost_micros as u64;
        let mut flags = rep.flags(s.index, s.parts, s.region);
        if rep.index.is_some() && code == rep.settlement {
            flags |= SAME_SETTLEMENT;
        }
        if rep.index.is_some() && cost == rep.cost {
            flags |= SAME_COST;
        }
        w.u8(flags);
        if flags & NEXT_INDEX == 0 {
            w.u32(s.index);
        }
        if flags & SAME_SETTLEMENT == 0 {
            w.u8(code);
        }
        if flags & SAME_PARTS == 0 {
            w.u32(s.parts);
        }
        if flags & SAME_COST == 0 {
            w.u64(cost);
        }
        if flags & SAME_REGION == 0 {
            w.0.extend_from_slice(&s.region.0);
        }
        w.text(&s.provider_message_id, prev);
        prev = &s.provider_message_id;
        rep = Repeats {
            index: Some(s.index),
            parts: s.parts,
            region: s.region.0,
            settlement: code,
            cost,
            to: 0,
        };
    }
    w.finish_unpacked()
}

fn settlement_code(s: Settlement) -> u8 {
    match s {
        Settlement::Sent => 0,
        Settlement::Failed => 1,
    }
}

fn settlement(code: u8) -> Result<Settlement, CodecError> {
    match code {
        0 => Ok(Settlement::Sent),
        1 => Ok(Settlement::Failed),
        _ => Err(CodecError("unknown settlement")),
    }
}

/// Encodes final delivery states of one job's messages, applied at `at` (Unix seconds).
pub fn encode_delivered(job: &str, at: i64, items: &[(u32, u8)]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(items.len() * 5 + 64));
    w.header(KIND_DELIVERED, job, items.len());
    w.u64(at as u64);
    for &(index, state) in items {
        w.u32(index);
        w.u8(state);
    }
    w.finish()
}

/// Encodes the outcomes of one job's recipients that were decided without a provider call.
pub fn encode_decided(job: &str, items: &[(u32, u8)]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(items.len() * 5 + 64));
    w.header(KIND_DECIDED, job, items.len());
    for &(index, code) in items {
        w.u32(index);
        w.u8(code);
    }
    w.finish()
}

/// Encodes the recipients of a `sending` record taken back before reaching the provider.
pub fn encode_withdrawn(job: &str, items: &[u32]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(items.len() * 4 + 64));
    w.header(KIND_WITHDRAWN, job, items.len());
    for &index in items {
        w.u32(index);
    }
    w.finish()
}

/// The job a message-log record belongs to, without decoding its items (recovery skips the
/// records of jobs it is not restoring yet).
pub fn record_job(stored: &[u8]) -> Result<String, CodecError> {
    let raw = unpack(stored)?;
    let mut r = Reader(&raw);
    r.u8()?;
    r.text()
}

/// Decodes a message-log record.
pub fn decode_record(stored: &[u8]) -> Result<LogRecord, CodecError> {
    let raw = unpack(stored)?;
    let mut r = Reader(&raw);
    let kind = r.u8()?;
    let job = r.text()?;
    let count = r.u32()? as usize;
    match kind {
        KIND_SENDING => {
            let mut items: Vec<SendingItem> = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let prev = items.last();
                let flags = r.u8()?;
                if prev.is_none() && flags != 0 {
                    return Err(CodecError("first item repeats nothing"));
                }
                let index = match prev.filter(|_| flags & NEXT_INDEX != 0) {
                    Some(p) => p.index.wrapping_add(1),
                    None => r.u32()?,
                };
                let parts = match prev.filter(|_| flags & SAME_PARTS != 0) {
                    Some(p) => p.parts,
                    None => r.u32()?,
                };
                let region = match prev.filter(|_| flags & SAME_REGION != 0) {
                    Some(p) => p.region,
                    None => r.region()?,
                };
                let delta = unzigzag(r.varint()?);
                let to = prev.map_or(0, |p| p.to).wrapping_add(delta as u64);
                let mut body = String::new();
                r.text_after(prev.map_or("", |p| p.body.as_str()), &mut body)?;
                items.push(SendingItem {
                    index,
                    to,
                    parts,
                    region,
                    body,
                });
            }
            Ok(LogRecord::Sending { job, items })
        }
        KIND_SETTLED => {
            let at = r.u64()? as i64;
            let mut items: Vec<SettledItem> = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let prev = items.last();
                let flags = r.u8()?;
                if prev.is_none() && flags != 0 {
                    return Err(CodecError("first item repeats nothing"));
                }
                let index = match prev.filter(|_| flags & NEXT_INDEX != 0) {
                    Some(p) => p.index.wrapping_add(1),
                    None => r.u32()?,
                };
                let settlement = match prev.filter(|_| flags & SAME_SETTLEMENT != 0) {
                    Some(p) => p.settlement,
                    None => settlement(r.u8()?)?,
                };
                let parts = match prev.filter(|_| flags & SAME_PARTS != 0) {
                    Some(p) => p.parts,
                    None => r.u32()?,
                };
                let cost_micros = match prev.filter(|_| flags & SAME_COST != 0) {
                    Some(p) => p.cost_micros,
                    None => r.u64()? as i64,
                };
                let region = match prev.filter(|_| flags & SAME_REGION != 0) {
                    Some(p) => p.region,
                    None => r.region()?,
                };
                let mut provider_message_id = String::new();
                let reference = prev.map_or("", |p| p.provider_message_id.as_str());
                r.text_after(reference, &mut provider_message_id)?;
                items.push(SettledItem {
                    index,
                    settlement,
                    parts,
                    cost_micros,
                    region,
                    provider_message_id,
                });
            }
            Ok(LogRecord::Settled { job, at, items })
        }
        KIND_DELIVERED => {
            let at = r.u64()? as i64;
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push((r.u32()?, r.u8()?));
            }
            Ok(LogRecord::Delivered { job, at, items })
        }
        KIND_DECIDED => {
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push((r.u32()?, r.u8()?));
            }
            Ok(LogRecord::Decided { job, items })
        }
        KIND_WITHDRAWN => {
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push(r.u32()?);
            }
            Ok(LogRecord::Withdrawn { job, items })
        }
        _ => Err(CodecError("unknown record kind")),
    }
}

/// One recipient as the audience stores it.
pub struct StoredRecipient<'a> {
    pub contact_id: &'a str,
    pub phone: Option<&'a str>,
    pub variables: Option<&'a HashMap<String, String>>,
}

/// Encodes one chunk of an audience, in submission order.
pub fn encode_audience_chunk<'a>(recipients: impl Iterator<Item = StoredRecipient<'a>>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(AUDIENCE_CHUNK * 40));
    for r in recipients {
        w.bytes(r.contact_id.as_bytes());
        w.bytes(r.phone.unwrap_or("").as_bytes());
        match r.variables.filter(|v| !v.is_empty()) {
            Some(v) => w.bytes(&serde_json::to_vec(v).unwrap_or_default()),
            None => w.u32(0),
        }
    }
    w.finish()
}

/// Decodes one audience chunk, calling `push` per recipient in order.
pub fn decode_audience_chunk(
    stored: &[u8],
    mut push: impl FnMut(&str, Option<&str>, Option<HashMap<String, String>>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let raw = unpack(stored)?;
    let mut r = Reader(&raw);
    while !r.0.is_empty() {
        let id = std::str::from_utf8(r.bytes()?).map_err(|_| CodecError("contact id"))?;
        let phone = std::str::from_utf8(r.bytes()?).map_err(|_| CodecError("phone"))?;
        let vars = r.bytes()?;
        let vars = if vars.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(vars).map_err(|_| CodecError("variables"))?)
        };
        push(id, (!phone.is_empty()).then_some(phone), vars)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, JobId, MessageId};

    #[test]
    fn log_records_round_trip() {
        let job = JobId::generate();
        let msg = OutboundMessage {
            id: MessageId::derive(&job, "c1", Channel::Sms),
            to: 8613123079337,
            channel: Channel::Sms,
            body: "你好 {{name}}".into(),
            parts: 2,
        };
        let cn = RegionCode(*b"CN");
        let stored = encode_sending(job.as_str(), [(7u32, cn, &msg)].into_iter());
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Sending {
                job: job.as_str().into(),
                items: vec![SendingItem {
                    index: 7,
                    to: msg.to,
                    parts: 2,
                    region: cn,
                    body: msg.body.clone()
                }]
            }
        );
        let settled = vec![SettledItem {
            index: 7,
            settlement: Settlement::Sent,
            parts: 2,
            cost_micros: 90_000,
            region: cn,
            provider_message_id: "p-1".into(),
        }];
        let stored = encode_settled(job.as_str(), 1_764_000_000, &settled);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Settled {
                job: job.as_str().into(),
                at: 1_764_000_000,
                items: settled
            }
        );
        assert!(decode_record(&stored[..stored.len() - 3]).is_err());
        assert_eq!(record_job(&stored).unwrap(), job.as_str());
        let stored = encode_delivered(job.as_str(), 1_764_000_060, &[(7, 1)]);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Delivered {
                job: job.as_str().into(),
                at: 1_764_000_060,
                items: vec![(7, 1)]
            }
        );
        let stored = encode_decided(job.as_str(), &[(3, 9), (4, 2)]);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Decided {
                job: job.as_str().into(),
                items: vec![(3, 9), (4, 2)]
            }
        );
        let stored = encode_withdrawn(job.as_str(), &[5, 6]);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Withdrawn {
                job: job.as_str().into(),
                items: vec![5, 6]
            }
        );
        assert_eq!(record_job(&stored).unwrap(), job.as_str());
    }

    #[test]
    fn records_of_one_template_are_stored_in_few_bytes_per_message() {
        let job = JobId::generate();
        let messages: Vec<OutboundMessage> = (0..512)
            .map(|i| OutboundMessage {
                id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
                to: 33_612_345_000 + i as u64,
                channel: Channel::Sms,
                body: format!("Hi Name{i}, 20% off in City{} tonight only", i % 9),
                parts: 1,
            })
            .collect();
        let fr = RegionCode(*b"FR");
        let stored = encode_sending(
            job.as_str(),
            messages.iter().enumerate().map(|(i, m)| (i as u32, fr, m)),
        );
        let body_bytes: usize = messages.iter().map(|m| m.body.len()).sum();
        assert!(
            stored.len() < 512 * 18 + body_bytes / 2,
            "{} bytes",
            stored.len()
        );
        let LogRecord::Sending { items, .. } = decode_record(&stored).unwrap() else {
            panic!("a sending record");
        };
        let bodies: Vec<&str> = items.iter().map(|i| i.body.as_str()).collect();
        let sent: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, sent);
        let settled: Vec<SettledItem> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| SettledItem {
                index: i as u32,
                settlement: if i % 50 == 7 {
                    Settlement::Failed
                } else {
                    Settlement::Sent
                },
                parts: 1,
                cost_micros: 45_000,
                region: fr,
                provider_message_id: if i % 50 == 7 {
                    String::new()
                } else {
                    format!("sbx-{:032x}", m.id.as_u128())
                },
            })
            .collect();
        let stored = encode_settled(job.as_str(), 1_764_000_000, &settled);
        assert!(stored.len() < 512 * 40, "{} bytes", stored.len());
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Settled {
                job: job.as_str().into(),
                at: 1_764_000_000,
                items: settled
            }
        );
    }

    #[test]
    fn audience_chunks_round_trip() {
        let vars: HashMap<String, String> = [("name".to_string(), "Li".to_string())].into();
        let stored = encode_audience_chunk(
            [
                StoredRecipient {
                    contact_id: "c1",
                    phone: Some("+8613123079337"),
                    variables: Some(&vars),
                },
                StoredRecipient {
                    contact_id: "c2",
                    phone: None,
                    variables: None,
                },
            ]
            .into_iter(),
        );
        let mut seen = Vec::new();
        decode_audience_chunk(&stored, |id, phone, v| {
            seen.push((id.to_string(), phone.map(str::to_string), v));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("c1".into(), Some("+8613123079337".into()), Some(vars)),
                ("c2".into(), None, None)
            ]
        );
    }
}
