//! The byte-level writer and reader the journal's stored forms are built with.

use super::{CodecError, RECORD_VERSION};
use crate::durable::compact;
use crate::phone::RegionCode;

/// Appends a stored form's fields.
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    /// A message-log record of `kind`: its version and kind, then its body's header.
    pub(super) fn record(kind: u8, job: &str, count: usize, capacity: usize) -> Writer {
        let mut w = Writer(Vec::with_capacity(capacity + 2));
        w.u8(RECORD_VERSION);
        w.u8(kind);
        w.bytes(job.as_bytes());
        w.u32(count as u32);
        w
    }
    pub(super) fn text(&mut self, text: &str, prev: &str) {
        compact::put_text(&mut self.0, text, prev);
    }
    /// The record as written (`sending`, `settled`).
    pub(super) fn finish_plain(self) -> Vec<u8> {
        self.0
    }
    /// The record with its body LZ4-compressed (`delivered`, `decided`, `withdrawn`).
    pub(super) fn finish_compressed(self) -> Vec<u8> {
        let (head, body) = self.0.split_at(2);
        let mut out = head.to_vec();
        out.extend_from_slice(&lz4_flex::compress_prepend_size(body));
        out
    }
}

/// Reads a stored form's fields, refusing a truncated one.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Unreadable("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(super) fn text(&mut self) -> Result<String, CodecError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| CodecError::Unreadable("text is not UTF-8"))
    }
    pub(super) fn region(&mut self) -> Result<RegionCode, CodecError> {
        let b = self.take(2)?;
        Ok(RegionCode([b[0], b[1]]))
    }
    pub(super) fn varint(&mut self) -> Result<u64, CodecError> {
        compact::read_varint(&mut self.0).map_err(CodecError::Unreadable)
    }
    /// A text written against `prev`, into `out`.
    pub(super) fn text_after(&mut self, prev: &str, out: &mut String) -> Result<(), CodecError> {
        compact::read_text(&mut self.0, prev, out).map_err(CodecError::Unreadable)
    }
}

/// An LZ4 body with its size prefix, decompressed.
pub(super) fn decompress(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    lz4_flex::decompress_size_prepended(stored)
        .map_err(|_| CodecError::Unreadable("bad compression"))
}
