//! The stored forms of a job: its plan and control record (a version byte and JSON) and its
//! audience chunks (a version byte and the recipients, LZ4-compressed).

use std::collections::HashMap;

use super::wire::{decompress, Reader, Writer};
use super::{CodecError, AUDIENCE_CHUNK, AUDIENCE_CHUNK_VERSION, CONTROL_VERSION, PLAN_VERSION};
use crate::dispatch::journal::{JobControl, StoredJob};
use crate::durable::format;

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
