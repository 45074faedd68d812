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

mod job_forms;
#[cfg(test)]
mod tests;
mod wire;

pub use job_forms::{
    decode_audience_chunk, decode_control, decode_plan, encode_audience_chunk, encode_control,
    encode_plan, StoredRecipient,
};
use wire::{decompress, Reader, Writer};

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
