//! Typed identifiers. Message ids are deterministic so that a resend is recognisably the same
//! message to a provider that deduplicates by idempotency key.

use serde::{Deserialize, Serialize};
use std::fmt;
use xxhash_rust::xxh3::xxh3_128;

use super::Channel;

/// A job's id: `job_` followed by a time-ordered UUID (v7) in simple hex form.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn generate() -> JobId {
        JobId(format!("job_{}", uuid::Uuid::now_v7().simple()))
    }

    /// Accepts only ids of our own shape, so a path segment cannot smuggle anything else in.
    pub fn parse(s: &str) -> Option<JobId> {
        let hex = s.strip_prefix("job_")?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| JobId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message id derived from (job, contact, channel): the same triple always yields the same
/// id, which is sent to the provider as its idempotency key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(u128);

impl MessageId {
    /// Derives the id. The hash input separates fields with a byte that cannot occur in ids.
    pub fn derive(job: &JobId, contact_id: &str, channel: Channel) -> MessageId {
        let mut buf = Vec::with_capacity(job.as_str().len() + contact_id.len() + 10);
        buf.extend_from_slice(job.as_str().as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(contact_id.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(channel.as_str().as_bytes());
        MessageId(xxh3_128(&buf))
    }

    /// The raw 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The id of a raw value, as [`MessageId::as_u128`] gave it.
    pub fn from_u128(raw: u128) -> MessageId {
        MessageId(raw)
    }

    /// The id's text, as `Display` writes it, in `buf`: for hot paths that must not allocate.
    pub fn write_str(self, buf: &mut [u8; 36]) -> &str {
        buf[..4].copy_from_slice(b"msg_");
        let _ = hex::encode_to_slice(self.0.to_be_bytes(), &mut buf[4..]);
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "msg_{:032x}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In the OpenAPI document: the id as text.
impl utoipa::PartialSchema for MessageId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A message id, derived from (job, contact, channel)"))
            .into()
    }
}

impl utoipa::ToSchema for MessageId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_deterministic_per_triple() {
        let job = JobId::generate();
        let a = MessageId::derive(&job, "c1", Channel::Sms);
        assert_eq!(a, MessageId::derive(&job, "c1", Channel::Sms));
        assert_ne!(a, MessageId::derive(&job, "c2", Channel::Sms));
        assert_ne!(a, MessageId::derive(&job, "c1", Channel::Email));
        assert_ne!(a, MessageId::derive(&JobId::generate(), "c1", Channel::Sms));
    }

    #[test]
    fn message_id_text_without_allocating_matches_display() {
        let mut buf = [0u8; 36];
        for n in [0u128, 1, 0xabc, u128::MAX, 1 << 100] {
            let id = MessageId(n);
            assert_eq!(id.write_str(&mut buf), id.to_string());
        }
    }

    #[test]
    fn job_id_parse_rejects_foreign_shapes() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(id.as_str()), Some(id));
        assert!(JobId::parse("job_../../etc").is_none());
        assert!(JobId::parse("123").is_none());
    }
}
