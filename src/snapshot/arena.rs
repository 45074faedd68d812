//! The string arena: every contact's variable-length data packed into one byte buffer, so a
//! 10M-contact snapshot holds no `String` per contact and no pointer per string.
//!
//! A contact's blob starts at `Record::blob` and reads, in order:
//!
//! ```text
//! varint len, contact id bytes
//! varint len, email bytes            (len 0 = no valid email)
//! varint len, push tokens            (len 0 = none; `platform:token;...`)
//! varint len, wechat openids         (len 0 = none; `openid` or `account:openid;...`)
//! ntags  x u16 LE tag id             (count in Record::ntags)
//! nattrs x (u16 LE attribute id, varint len, value bytes)   (count in Record::nattrs)
//! ```
//!
//! Lengths are LEB128 varints (one byte for strings under 128 bytes). Everything written
//! came from a `&str`, so every string slice read back is valid UTF-8; readers still check
//! (cheaply) rather than trust it. Offsets are `u32`: a load stops with an error before the
//! arena passes 4 GiB, which is more than any upload the API accepts.

/// Appends `value` as a LEB128 varint.
pub(crate) fn push_varint(buf: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends a length-prefixed string.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &[u8]) {
    // Cells longer than 4 GiB cannot reach here: the arena check stops the load first.
    push_varint(buf, u32::try_from(s.len()).unwrap_or(u32::MAX));
    buf.extend_from_slice(s);
}

/// Appends a little-endian u16 (a tag or attribute id).
pub(crate) fn push_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Reads a varint at `pos`; returns it and the position after it. A truncated varint reads
/// as 0 at the end of the buffer.
#[inline]
pub(crate) fn read_varint(buf: &[u8], mut pos: usize) -> (u32, usize) {
    let mut value = 0u32;
    let mut shift = 0;
    while let Some(&b) = buf.get(pos) {
        pos += 1;
        value |= u32::from(b & 0x7f) << shift;
        if b < 0x80 || shift >= 28 {
            return (value, pos);
        }
        shift += 7;
    }
    (value, pos)
}

/// Reads a length-prefixed string at `pos`; returns it and the position after it.
#[inline]
pub(crate) fn read_str(buf: &[u8], pos: usize) -> (&[u8], usize) {
    // Fast path: ids, emails and attribute values are almost always under 128 bytes.
    if let Some(&len) = buf.get(pos) {
        if len < 0x80 {
            let start = pos + 1;
            let end = start + usize::from(len);
            return (buf.get(start..end).unwrap_or(&[]), end);
        }
    }
    let (len, start) = read_varint(buf, pos);
    let end = start.saturating_add(len as usize);
    (buf.get(start..end).unwrap_or(&[]), end)
}

/// Reads a little-endian u16 at `pos`.
#[inline]
pub(crate) fn read_u16(buf: &[u8], pos: usize) -> u16 {
    match buf.get(pos..pos + 2) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

/// Bytes as `&str`; the arena only ever receives UTF-8, so the fallback is unreachable in
/// practice and exists to avoid a panic path.
#[inline]
pub(crate) fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Where the channel addresses and the tags of one blob are, decoded from its front.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobLayout {
    pub(crate) email: (usize, usize),
    pub(crate) push: (usize, usize),
    pub(crate) wechat: (usize, usize),
    pub(crate) tags: usize,
}

impl BlobLayout {
    /// Skips the id and decodes the address strings of the blob at `start`.
    #[inline]
    pub(crate) fn decode(buf: &[u8], start: usize) -> BlobLayout {
        let (_, after_id) = read_str(buf, start);
        let (email, after_email) = read_str(buf, after_id);
        let (push, after_push) = read_str(buf, after_email);
        let (wechat, tags) = read_str(buf, after_push);
        BlobLayout {
            email: (after_email - email.len(), after_email),
            push: (after_push - push.len(), after_push),
            wechat: (tags - wechat.len(), tags),
            tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut buf = Vec::new();
            push_varint(&mut buf, v);
            assert_eq!(read_varint(&buf, 0), (v, buf.len()), "{v}");
        }
    }

    #[test]
    fn strings_and_layout_round_trip() {
        let mut buf = vec![9u8; 3];
        let long = "x".repeat(200);
        push_str(&mut buf, b"c001");
        push_str(&mut buf, long.as_bytes());
        push_str(&mut buf, b"");
        push_str(&mut buf, b"wx1:o1");
        push_u16(&mut buf, 513);
        let layout = BlobLayout::decode(&buf, 3);
        assert_eq!(read_str(&buf, 3).0, b"c001");
        assert_eq!(as_str(&buf[layout.email.0..layout.email.1]), long);
        assert_eq!(layout.push.0, layout.push.1);
        assert_eq!(&buf[layout.wechat.0..layout.wechat.1], b"wx1:o1");
        assert_eq!(read_u16(&buf, layout.tags), 513);
    }

    #[test]
    fn truncated_data_reads_empty_instead_of_panicking() {
        let buf = [0x85u8, b'a'];
        assert_eq!(read_str(&buf, 0).0, b"");
        assert_eq!(read_str(&buf, 10).0, b"");
        assert_eq!(read_u16(&buf, 1), 0);
    }
}
