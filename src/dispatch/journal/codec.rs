//! Compact binary forms of what the dispatch journal stores: audience chunks and the message
//! log records (`sending` before a provider call, `settled` after its answer). Each stored
//! value is LZ4-compressed; message bodies of one template compress to a fraction.

use std::collections::HashMap;

use crate::phone::RegionCode;
use crate::provider::OutboundMessage;

/// Recipients per stored audience chunk.
pub const AUDIENCE_CHUNK: usize = 65_536;

const KIND_SENDING: u8 = 1;
const KIND_SETTLED: u8 = 2;
const KIND_DELIVERED: u8 = 3;

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
    Settled {
        job: String,
        items: Vec<SettledItem>,
    },
    /// Final delivery states from receipts: (recipient, state code).
    Delivered { job: String, items: Vec<(u32, u8)> },
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
    fn finish(self) -> Vec<u8> {
        lz4_flex::compress_prepend_size(&self.0)
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
}

fn unpack(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    lz4_flex::decompress_size_prepended(stored).map_err(|_| CodecError("bad compression"))
}

/// Encodes the messages of one chunk about to be handed to the provider.
pub fn encode_sending<'a>(
    job: &str,
    items: impl ExactSizeIterator<Item = (u32, RegionCode, &'a OutboundMessage)>,
) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(items.len() * 96 + 64));
    w.header(KIND_SENDING, job, items.len());
    for (index, region, m) in items {
        w.u32(index);
        w.u64(m.to);
        w.u32(m.parts);
        w.0.extend_from_slice(&region.0);
        w.bytes(m.body.as_bytes());
    }
    w.finish()
}

/// Encodes the provider's final answers for messages of one job.
pub fn encode_settled(job: &str, items: &[SettledItem]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(items.len() * 64 + 64));
    w.header(KIND_SETTLED, job, items.len());
    for s in items {
        w.u32(s.index);
        w.u8(match s.settlement {
            Settlement::Sent => 0,
            Settlement::Failed => 1,
        });
        w.u32(s.parts);
        w.u64(s.cost_micros as u64);
        w.0.extend_from_slice(&s.region.0);
        w.bytes(s.provider_message_id.as_bytes());
    }
    w.finish()
}

/// Encodes final delivery states of one job's messages.
pub fn encode_delivered(job: &str, items: &[(u32, u8)]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(items.len() * 5 + 64));
    w.header(KIND_DELIVERED, job, items.len());
    for &(index, state) in items {
        w.u32(index);
        w.u8(state);
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
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push(SendingItem {
                    index: r.u32()?,
                    to: r.u64()?,
                    parts: r.u32()?,
                    region: r.region()?,
                    body: r.text()?,
                });
            }
            Ok(LogRecord::Sending { job, items })
        }
        KIND_SETTLED => {
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let index = r.u32()?;
                let settlement = match r.u8()? {
                    0 => Settlement::Sent,
                    1 => Settlement::Failed,
                    _ => return Err(CodecError("unknown settlement")),
                };
                items.push(SettledItem {
                    index,
                    settlement,
                    parts: r.u32()?,
                    cost_micros: r.u64()? as i64,
                    region: r.region()?,
                    provider_message_id: r.text()?,
                });
            }
            Ok(LogRecord::Settled { job, items })
        }
        KIND_DELIVERED => {
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push((r.u32()?, r.u8()?));
            }
            Ok(LogRecord::Delivered { job, items })
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
        let stored = encode_settled(job.as_str(), &settled);
        assert_eq!(
            decode_record(&stored).unwrap(),
            LogRecord::Settled {
                job: job.as_str().into(),
                items: settled
            }
        );
        assert!(decode_record(&stored[..stored.len() - 3]).is_err());
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
