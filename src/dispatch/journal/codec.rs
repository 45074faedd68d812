//! Compact binary forms of what the dispatch journal stores: job plans and controls, audience
//! chunks and the message log records (`sending` before a provider call, `settled` after its
//! answer).
//!
//! Every stored value starts with its format version byte (the versions are below, in one
//! place); a reader refuses one it does not know. A message-log record is `u8 version, u8 kind,
//! body`, the body being `str job, u32 count, items` (`str` as `u32 len, bytes`). One form per
//! kind: the bodies of `delivered`, `decided` and `withdrawn` records are LZ4-compressed (with
//! LZ4's size prefix); the bodies of `sending` and `settled` records, written for every message
//! on the send path, are not: each body and provider message id is written against the one
//! before it ([`crate::durable::compact`]), which packs them about as well for a fraction of
//! the CPU. An audience chunk is `u8 version` and its recipients LZ4-compressed; plans and
//! controls are `u8 version` and their JSON.
//!
//! `settled` and `delivered` records carry the time they happened (Unix seconds, one per
//! record), so a job's per-minute series reads the same after a restart.
//!
//! `sending` and `settled` records name the provider their messages went to (`str provider`
//! after the count), since a job's messages are routed to several: kinds 8 and 9. The kinds 4
//! and 5 written before routing existed have no provider (their job's first provider) and
//! are still read.
//!
//! `consent` records name the tenant whose contacts changed (`str tenant` after the count):
//! kind 14. The kind 12 written before tenants had their own contacts has none (the default
//! tenant) and is still read.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{JobControl, StoredJob};
use crate::durable::compact::{self, unzigzag, zigzag};
use crate::durable::format::{self, FormatError};
use crate::phone::RegionCode;
use crate::provider::OutboundMessage;

/// Format version of message-log records.
pub const RECORD_VERSION: u8 = 1;
/// Format version of audience chunks.
pub const AUDIENCE_CHUNK_VERSION: u8 = 1;
/// Format version of job plans.
pub const PLAN_VERSION: u8 = 1;
/// Format version of job controls.
pub const CONTROL_VERSION: u8 = 1;

/// Recipients per stored audience chunk.
pub const AUDIENCE_CHUNK: usize = 65_536;

const KIND_DELIVERED: u8 = 3;
/// `sending` without a provider, as written before routing; read only.
const KIND_SENDING_UNROUTED: u8 = 4;
/// `settled` without a provider, as written before routing; read only.
const KIND_SETTLED_UNROUTED: u8 = 5;
const KIND_DECIDED: u8 = 6;
const KIND_WITHDRAWN: u8 = 7;
const KIND_SENDING: u8 = 8;
const KIND_SETTLED: u8 = 9;
const KIND_ENGAGED: u8 = 10;
const KIND_BUDGET_EXHAUSTED: u8 = 11;
/// `consent` without a tenant, as written before tenants had their own; read only.
const KIND_CONSENT_UNTENANTED: u8 = 12;
const KIND_IN_DOUBT: u8 = 13;
const KIND_CONSENT: u8 = 14;

/// What an `engaged` item records: an open, or a click on the link of this number plus one.
pub const ENGAGED_OPEN: u8 = 0;

/// Why a stored value could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Damaged or cut short.
    #[error("journal record unreadable: {0}")]
    Unreadable(&'static str),
    /// A plan or control whose JSON does not read.
    #[error("{what} unreadable: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// Written in a format this herald does not know.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// A message handed to the provider, as the journal keeps it until its answer is recorded:
/// enough to send it again, unchanged and under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingItem {
    pub index: u32,
    /// The number of an SMS; 0 on other channels, whose addresses are derived again from
    /// the snapshot when the message is sent again.
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
    /// Messages handed to `provider` (None: the job's first provider, in records written
    /// before routing).
    Sending {
        job: String,
        provider: Option<String>,
        items: Vec<SendingItem>,
    },
    /// Answers of `provider` that arrived at `at` (Unix seconds).
    Settled {
        job: String,
        provider: Option<String>,
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
    /// Opens and clicks noted at `at` (Unix seconds): (recipient, [`ENGAGED_OPEN`] or 1 + the
    /// link's number).
    Engaged {
        job: String,
        at: i64,
        items: Vec<(u32, u8)>,
    },
    /// Consent changes of one tenant's contacts, for announcing to that tenant.
    Consent {
        tenant: crate::access::TenantId,
        items: Vec<ConsentItem>,
    },
    /// The job stopped at its budget at `at` (Unix seconds).
    BudgetExhausted { job: String, at: i64 },
    /// Outcomes decided without a provider call (rejections; deferrals of a cancelled job),
    /// written when the job ends: (recipient, outcome code).
    Decided { job: String, items: Vec<(u32, u8)> },
    /// Recipients of an earlier `sending` record that never reached the provider (a shutdown
    /// came first): no longer in flight.
    Withdrawn { job: String, items: Vec<u32> },
    /// Recipients a restart found in doubt (handed to a provider that may or may not have
    /// taken them), at `at` (Unix seconds): written once per recipient, for announcing.
    InDoubt {
        job: String,
        at: i64,
        items: Vec<u32>,
    },
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
    /// A message-log record of `kind`: its version and kind, then its body's header.
    fn record(kind: u8, job: &str, count: usize, capacity: usize) -> Writer {
        let mut w = Writer(Vec::with_capacity(capacity + 2));
        w.u8(RECORD_VERSION);
        w.u8(kind);
        w.bytes(job.as_bytes());
        w.u32(count as u32);
        w
    }
    fn text(&mut self, text: &str, prev: &str) {
        compact::put_text(&mut self.0, text, prev);
    }
    /// The record as written (`sending`, `settled`).
    fn finish_plain(self) -> Vec<u8> {
        self.0
    }
    /// The record with its body LZ4-compressed (`delivered`, `decided`, `withdrawn`).
    fn finish_compressed(self) -> Vec<u8> {
        let (head, body) = self.0.split_at(2);
        let mut out = head.to_vec();
        out.extend_from_slice(&lz4_flex::compress_prepend_size(body));
        out
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Unreadable("truncated"));
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
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| CodecError::Unreadable("text is not UTF-8"))
    }
    fn region(&mut self) -> Result<RegionCode, CodecError> {
        let b = self.take(2)?;
        Ok(RegionCode([b[0], b[1]]))
    }
    fn varint(&mut self) -> Result<u64, CodecError> {
        compact::read_varint(&mut self.0).map_err(CodecError::Unreadable)
    }
    /// A text written against `prev`, into `out`.
    fn text_after(&mut self, prev: &str, out: &mut String) -> Result<(), CodecError> {
        compact::read_text(&mut self.0, prev, out).map_err(CodecError::Unreadable)
    }
}

fn decompress(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    lz4_flex::decompress_size_prepended(stored)
        .map_err(|_| CodecError::Unreadable("bad compression"))
}

/// The kind of a stored message-log record and its body, decompressed if its kind is.
fn record_body(stored: &[u8]) -> Result<(u8, Cow<'_, [u8]>), CodecError> {
    let rest = format::check("journal record", RECORD_VERSION, stored)?;
    let (&kind, body) = rest
        .split_first()
        .ok_or(CodecError::Unreadable("truncated"))?;
    match kind {
        KIND_SENDING
        | KIND_SETTLED
        | KIND_SENDING_UNROUTED
        | KIND_SETTLED_UNROUTED
        | KIND_BUDGET_EXHAUSTED => Ok((kind, Cow::Borrowed(body))),
        KIND_DELIVERED
        | KIND_DECIDED
        | KIND_WITHDRAWN
        | KIND_ENGAGED
        | KIND_CONSENT
        | KIND_CONSENT_UNTENANTED
        | KIND_IN_DOUBT => Ok((kind, Cow::Owned(decompress(body)?))),
        _ => Err(CodecError::Unreadable("unknown record kind")),
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
    provider: &str,
    items: impl ExactSizeIterator<Item = (u32, RegionCode, &'a OutboundMessage)>,
) -> Vec<u8> {
    let mut w = Writer::record(KIND_SENDING, job, items.len(), items.len() * 40 + 64);
    w.bytes(provider.as_bytes());
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
        // Only an SMS's number is kept (0 otherwise): the other channels' addresses are
        // personal data the recovery derives again from the snapshot.
        let to = m.phone();
        compact::put_varint(&mut w.0, zigzag(to.wrapping_sub(rep.to) as i64));
        w.text(&m.body, prev);
        prev = &m.body;
        rep = Repeats {
            index: Some(index),
            parts: m.parts,
            region: region.0,
            to,
            ..rep
        };
    }
    w.finish_plain()
}

/// Encodes the provider's final answers for messages of one job.
pub fn encode_settled(job: &str, provider: &str, at: i64, items: &[SettledItem]) -> Vec<u8> {
    let mut w = Writer::record(KIND_SETTLED, job, items.len(), items.len() * 24 + 64);
    w.bytes(provider.as_bytes());
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
    w.finish_plain()
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
        _ => Err(CodecError::Unreadable("unknown settlement")),
    }
}

/// Encodes final delivery states of one job's messages, applied at `at` (Unix seconds).
pub fn encode_delivered(job: &str, at: i64, items: &[(u32, u8)]) -> Vec<u8> {
    encode_timed_codes(KIND_DELIVERED, job, at, items)
}

/// The body `delivered` and `engaged` records share: a time, then (recipient, code) pairs.
fn encode_timed_codes(kind: u8, job: &str, at: i64, items: &[(u32, u8)]) -> Vec<u8> {
    let mut w = Writer::record(kind, job, items.len(), items.len() * 5 + 64);
    w.u64(at as u64);
    for &(index, code) in items {
        w.u32(index);
        w.u8(code);
    }
    w.finish_compressed()
}

/// Reads what [`encode_timed_codes`] wrote after the header: the time and `count` pairs.
fn read_timed_codes(r: &mut Reader<'_>, count: usize) -> Result<(i64, Vec<(u32, u8)>), CodecError> {
    let at = r.u64()? as i64;
    let mut items = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        items.push((r.u32()?, r.u8()?));
    }
    Ok((at, items))
}

/// Encodes opens and clicks of one job's messages noted at `at`: (recipient, [`ENGAGED_OPEN`]
/// or 1 + the link's number).
pub fn encode_engaged(job: &str, at: i64, items: &[(u32, u8)]) -> Vec<u8> {
    encode_timed_codes(KIND_ENGAGED, job, at, items)
}

/// One consent change as the journal keeps it for announcing (the state store holds the
/// consent itself): no job, so recovery passes over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentItem {
    pub contact_id: String,
    pub channel: u8,
    /// 1 opted in, 2 opted out.
    pub consent: u8,
    pub source: String,
    pub at: i64,
}

/// Encodes consent changes of `tenant`'s contacts (inbound STOP / START replies,
/// unsubscribes).
pub fn encode_consent(tenant: &crate::access::TenantId, items: &[ConsentItem]) -> Vec<u8> {
    let mut w = Writer::record(KIND_CONSENT, "", items.len(), items.len() * 48 + 64);
    w.bytes(tenant.as_str().as_bytes());
    for c in items {
        w.bytes(c.contact_id.as_bytes());
        w.u8(c.channel);
        w.u8(c.consent);
        w.bytes(c.source.as_bytes());
        w.u64(c.at as u64);
    }
    w.finish_compressed()
}

/// Encodes the moment a job stopped at its budget (`at`, Unix seconds).
pub fn encode_budget_exhausted(job: &str, at: i64) -> Vec<u8> {
    let mut w = Writer::record(KIND_BUDGET_EXHAUSTED, job, 0, 16);
    w.u64(at as u64);
    w.finish_plain()
}

/// Encodes the outcomes of one job's recipients that were decided without a provider call.
pub fn encode_decided(job: &str, items: &[(u32, u8)]) -> Vec<u8> {
    let mut w = Writer::record(KIND_DECIDED, job, items.len(), items.len() * 5 + 64);
    for &(index, code) in items {
        w.u32(index);
        w.u8(code);
    }
    w.finish_compressed()
}

/// Encodes the recipients of a `sending` record taken back before reaching the provider.
pub fn encode_withdrawn(job: &str, items: &[u32]) -> Vec<u8> {
    let mut w = Writer::record(KIND_WITHDRAWN, job, items.len(), items.len() * 4 + 64);
    for &index in items {
        w.u32(index);
    }
    w.finish_compressed()
}

/// Encodes the recipients a restart found in doubt, at `at` (Unix seconds).
pub fn encode_in_doubt(job: &str, at: i64, items: &[u32]) -> Vec<u8> {
    let mut w = Writer::record(KIND_IN_DOUBT, job, items.len(), items.len() * 4 + 64);
    w.u64(at as u64);
    for &index in items {
        w.u32(index);
    }
    w.finish_compressed()
}

/// The job a message-log record belongs to, without decoding its items (recovery skips the
/// records of jobs it is not restoring yet).
pub fn record_job(stored: &[u8]) -> Result<String, CodecError> {
    let (_, body) = record_body(stored)?;
    Reader(&body).text()
}

/// Decodes a message-log record.
pub fn decode_record(stored: &[u8]) -> Result<LogRecord, CodecError> {
    let (kind, body) = record_body(stored)?;
    let mut r = Reader(&body);
    let job = r.text()?;
    let count = r.u32()? as usize;
    let provider = match kind {
        KIND_SENDING | KIND_SETTLED => Some(r.text()?),
        _ => None,
    };
    match kind {
        KIND_SENDING | KIND_SENDING_UNROUTED => {
            let mut items: Vec<SendingItem> = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let prev = items.last();
                let flags = r.u8()?;
                if prev.is_none() && flags != 0 {
                    return Err(CodecError::Unreadable("first item repeats nothing"));
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
            Ok(LogRecord::Sending {
                job,
                provider,
                items,
            })
        }
        KIND_SETTLED | KIND_SETTLED_UNROUTED => {
            let at = r.u64()? as i64;
            let mut items: Vec<SettledItem> = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let prev = items.last();
                let flags = r.u8()?;
                if prev.is_none() && flags != 0 {
                    return Err(CodecError::Unreadable("first item repeats nothing"));
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
            Ok(LogRecord::Settled {
                job,
                provider,
                at,
                items,
            })
        }
        KIND_DELIVERED => {
            let (at, items) = read_timed_codes(&mut r, count)?;
            Ok(LogRecord::Delivered { job, at, items })
        }
        KIND_CONSENT | KIND_CONSENT_UNTENANTED => {
            let tenant = match kind {
                KIND_CONSENT => crate::access::TenantId::parse(&r.text()?)
                    .map_err(|_| CodecError::Unreadable("consent record names no tenant"))?,
                _ => crate::access::TenantId::default_tenant(),
            };
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push(ConsentItem {
                    contact_id: r.text()?,
                    channel: r.u8()?,
                    consent: r.u8()?,
                    source: r.text()?,
                    at: r.u64()? as i64,
                });
            }
            Ok(LogRecord::Consent { tenant, items })
        }
        KIND_BUDGET_EXHAUSTED => Ok(LogRecord::BudgetExhausted {
            job,
            at: r.u64()? as i64,
        }),
        KIND_ENGAGED => {
            let (at, items) = read_timed_codes(&mut r, count)?;
            Ok(LogRecord::Engaged { job, at, items })
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
        KIND_IN_DOUBT => {
            let at = r.u64()? as i64;
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push(r.u32()?);
            }
            Ok(LogRecord::InDoubt { job, at, items })
        }
        _ => Err(CodecError::Unreadable("unknown record kind")),
    }
}

/// The stored form of a job's plan.
pub fn encode_plan(plan: &StoredJob) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![PLAN_VERSION];
    serde_json::to_writer(&mut out, plan)?;
    Ok(out)
}

/// A job's plan from its stored form.
pub fn decode_plan(stored: &[u8]) -> Result<StoredJob, CodecError> {
    let json = format::check("job plan", PLAN_VERSION, stored)?;
    serde_json::from_slice(json).map_err(|source| CodecError::Json {
        what: "job plan",
        source,
    })
}

/// The stored form of a job's control record.
pub fn encode_control(control: &JobControl) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![CONTROL_VERSION];
    serde_json::to_writer(&mut out, control)?;
    Ok(out)
}

/// A job's control record from its stored form.
pub fn decode_control(stored: &[u8]) -> Result<JobControl, CodecError> {
    let json = format::check("job control", CONTROL_VERSION, stored)?;
    serde_json::from_slice(json).map_err(|source| CodecError::Json {
        what: "job control",
        source,
    })
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
    let mut out = Vec::with_capacity(1 + w.0.len() / 2);
    out.push(AUDIENCE_CHUNK_VERSION);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&w.0));
    out
}

/// Decodes one audience chunk, calling `push` per recipient in order.
pub fn decode_audience_chunk(
    stored: &[u8],
    mut push: impl FnMut(&str, Option<&str>, Option<HashMap<String, String>>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let raw = decompress(format::check(
        "audience chunk",
        AUDIENCE_CHUNK_VERSION,
        stored,
    )?)?;
    let mut r = Reader(&raw);
    while !r.0.is_empty() {
        let id =
            std::str::from_utf8(r.bytes()?).map_err(|_| CodecError::Unreadable("contact id"))?;
        let phone = std::str::from_utf8(r.bytes()?).map_err(|_| CodecError::Unreadable("phone"))?;
        let vars = r.bytes()?;
        let vars = if vars.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(vars).map_err(|_| CodecError::Unreadable("variables"))?)
        };
        push(id, (!phone.is_empty()).then_some(phone), vars)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Channel, JobId, MessageId};

    #[test]
    fn log_records_round_trip() {
        let job = JobId::generate();
        let msg = OutboundMessage {
            id: MessageId::derive(&job, "c1", Channel::Sms),
            to: Address::Phone(8613123079337),
            channel: Channel::Sms,
            body: "你好 {{name}}".into(),
            parts: 2,
            content: None,
        };
        let cn = RegionCode(*b"CN");
        let stored = encode_sending(job.as_str(), "carrier-b", [(7u32, cn, &msg)].into_iter());
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Sending {
                job: job.as_str().into(),
                provider: Some("carrier-b".into()),
                items: vec![SendingItem {
                    index: 7,
                    to: msg.phone(),
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
        let stored = encode_settled(job.as_str(), "carrier-b", 1_764_000_000, &settled);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Settled {
                job: job.as_str().into(),
                provider: Some("carrier-b".into()),
                at: 1_764_000_000,
                items: settled.clone()
            }
        );
        // As written before routing: kind 5, no provider.
        let old = unrouted(&stored, KIND_SETTLED_UNROUTED, "carrier-b");
        assert!(matches!(
            decode_record(&old).unwrap(),
            LogRecord::Settled { provider: None, items, .. } if items == settled
        ));
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
        let stored = encode_engaged(job.as_str(), 1_764_000_120, &[(7, ENGAGED_OPEN), (7, 2)]);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Engaged {
                job: job.as_str().into(),
                at: 1_764_000_120,
                items: vec![(7, ENGAGED_OPEN), (7, 2)]
            }
        );
        let consent = vec![ConsentItem {
            contact_id: "c-9".into(),
            channel: 0,
            consent: 2,
            source: "inbound:carrier".into(),
            at: 1_764_000_240,
        }];
        let acme = crate::access::TenantId::parse("acme").unwrap();
        let stored = encode_consent(&acme, &consent);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Consent {
                tenant: acme,
                items: consent.clone()
            }
        );
        assert_eq!(record_job(&stored).unwrap(), "");
        // The form written before tenants had their own contacts reads as the default one's.
        let mut w = Writer::record(KIND_CONSENT_UNTENANTED, "", 1, 64);
        for c in &consent {
            w.bytes(c.contact_id.as_bytes());
            w.u8(c.channel);
            w.u8(c.consent);
            w.bytes(c.source.as_bytes());
            w.u64(c.at as u64);
        }
        assert_eq!(
            decode_record(&w.finish_compressed()).unwrap(),
            LogRecord::Consent {
                tenant: crate::access::TenantId::default_tenant(),
                items: consent
            }
        );
        let stored = encode_in_doubt(job.as_str(), 1_764_000_300, &[7, 9]);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::InDoubt {
                job: job.as_str().into(),
                at: 1_764_000_300,
                items: vec![7, 9]
            }
        );
        assert_eq!(record_job(&stored).unwrap(), job.as_str());
        let stored = encode_budget_exhausted(job.as_str(), 1_764_000_180);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::BudgetExhausted {
                job: job.as_str().into(),
                at: 1_764_000_180
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

    /// `stored` (a routed record naming `provider`) in the form written before routing.
    fn unrouted(stored: &[u8], kind: u8, provider: &str) -> Vec<u8> {
        let job_len = u32::from_le_bytes(stored[2..6].try_into().unwrap()) as usize;
        let provider_at = 2 + 4 + job_len + 4;
        let mut old = stored[..provider_at].to_vec();
        old[1] = kind;
        old.extend_from_slice(&stored[provider_at + 4 + provider.len()..]);
        old
    }

    #[test]
    fn sending_records_written_before_routing_read_without_a_provider() {
        let job = JobId::generate();
        let msg = OutboundMessage {
            id: MessageId::derive(&job, "c1", Channel::Sms),
            to: Address::Phone(8613123079337),
            channel: Channel::Sms,
            body: "hi".into(),
            parts: 1,
            content: None,
        };
        let cn = RegionCode(*b"CN");
        let stored = encode_sending(job.as_str(), "a", [(3u32, cn, &msg)].into_iter());
        let old = unrouted(&stored, KIND_SENDING_UNROUTED, "a");
        match decode_record(&old).unwrap() {
            LogRecord::Sending {
                provider, items, ..
            } => {
                assert_eq!(provider, None);
                assert_eq!((items[0].index, items[0].to), (3, msg.phone()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_of_one_template_are_stored_in_few_bytes_per_message() {
        let job = JobId::generate();
        let messages: Vec<OutboundMessage> = (0..512)
            .map(|i| OutboundMessage {
                id: MessageId::derive(&job, &format!("c{i}"), Channel::Sms),
                to: Address::Phone(33_612_345_000 + i as u64),
                channel: Channel::Sms,
                body: format!("Hi Name{i}, 20% off in City{} tonight only", i % 9),
                parts: 1,
                content: None,
            })
            .collect();
        let fr = RegionCode(*b"FR");
        let stored = encode_sending(
            job.as_str(),
            "p",
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
        let stored = encode_settled(job.as_str(), "p", 1_764_000_000, &settled);
        assert!(stored.len() < 512 * 40, "{} bytes", stored.len());
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Settled {
                job: job.as_str().into(),
                provider: Some("p".into()),
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

    /// `stored` with its version byte replaced by 7.
    fn version_7(mut stored: Vec<u8>) -> Vec<u8> {
        stored[0] = 7;
        stored
    }

    fn refused(e: CodecError, what: &str) {
        assert!(matches!(e, CodecError::Format(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("{what}: format version 7 is not known to this herald")
        );
    }

    #[test]
    fn values_of_an_unknown_format_version_are_refused() {
        let job = JobId::generate();
        let msg = OutboundMessage {
            id: MessageId::derive(&job, "c1", Channel::Sms),
            to: Address::Phone(8613123079337),
            channel: Channel::Sms,
            body: "hi".into(),
            parts: 1,
            content: None,
        };
        let cn = RegionCode(*b"CN");
        let records = [
            encode_sending(job.as_str(), "p", [(1u32, cn, &msg)].into_iter()),
            encode_settled(job.as_str(), "p", 1_764_000_000, &[]),
            encode_delivered(job.as_str(), 1_764_000_000, &[(1, 1)]),
            encode_decided(job.as_str(), &[(1, 2)]),
            encode_withdrawn(job.as_str(), &[1]),
        ];
        for stored in records {
            assert_eq!(stored[0], RECORD_VERSION);
            assert!(decode_record(&stored).is_ok());
            let stored = version_7(stored);
            refused(decode_record(&stored).unwrap_err(), "journal record");
            refused(record_job(&stored).unwrap_err(), "journal record");
        }
        // The kinds of the first journal (1 and 2) are not read.
        for kind in [1, 2] {
            let mut stored = encode_withdrawn(job.as_str(), &[1]);
            stored[1] = kind;
            assert!(matches!(
                decode_record(&stored),
                Err(CodecError::Unreadable("unknown record kind"))
            ));
        }

        let chunk = encode_audience_chunk(
            [StoredRecipient {
                contact_id: "c1",
                phone: None,
                variables: None,
            }]
            .into_iter(),
        );
        assert_eq!(chunk[0], AUDIENCE_CHUNK_VERSION);
        let e = decode_audience_chunk(&version_7(chunk), |_, _, _| Ok(())).unwrap_err();
        refused(e, "audience chunk");

        let plan = StoredJob {
            id: job.clone(),
            spec: crate::dispatch::job::JobSpec {
                campaign_id: "c".into(),
                channel: Channel::Sms,
                purpose: crate::domain::Purpose::Transactional,
                priority: 200,
                send_at: None,
                template_body: "hi".into(),
                phone_mismatch: Default::default(),
                created_at: "2026-11-23T04:00:00Z".parse().unwrap(),
                variants: None,
                tenant: Default::default(),
                fields: None,
                wechat_account: None,
            },
            variables: HashMap::new(),
            track_links: false,
            audience_len: 1,
            shards: 1,
        };
        let stored = encode_plan(&plan).unwrap();
        assert_eq!(stored[0], PLAN_VERSION);
        assert_eq!(decode_plan(&stored).unwrap().id, job);
        refused(decode_plan(&version_7(stored)).unwrap_err(), "job plan");

        let control = JobControl {
            status: crate::domain::JobStatus::Running,
            started_at: None,
            finished_at: None,
            budget_micros: Some(5),
            rollout: None,
        };
        let stored = encode_control(&control).unwrap();
        assert_eq!(stored[0], CONTROL_VERSION);
        assert_eq!(decode_control(&stored).unwrap().budget_micros, Some(5));
        refused(
            decode_control(&version_7(stored)).unwrap_err(),
            "job control",
        );
    }
}
