//! A compact stored form for texts that mostly repeat, or nearly repeat, the text before them
//! in the same field: ids that end in 32 hex digits, and message bodies rendered from one
//! template. It takes the place of general-purpose compression on the send path, where LZ4
//! was the largest single CPU cost durability added on the workers' threads.
//!
//! Each text is written against a reference text (usually the previous text of its field),
//! as one of:
//! - `0`: the reference again;
//! - `1`: an id: `u8 prefix_len, prefix, [16]` where the text is the prefix followed by the
//!   32 lowercase hex digits of the 16 bytes;
//! - `2`: a near repeat: `varint head, varint tail, varint len, middle`: the reference's first
//!   `head` bytes, the middle, and the reference's last `tail` bytes;
//! - `3`: plain: `varint len, bytes`.
//!
//! Varints are LEB128: seven bits a byte, low bits first.
//!
//! Reading rebuilds exactly the text written, so what is digested from it is unchanged.

const SAME: u8 = 0;
const HEX_ID: u8 = 1;
const NEAR: u8 = 2;
const PLAIN: u8 = 3;

/// Bytes a near repeat must share with the reference before it is worth its header.
const NEAR_MIN_SHARED: usize = 6;

/// Appends `text`, written against `reference`.
pub fn put_text(out: &mut Vec<u8>, text: &str, reference: &str) {
    let b = text.as_bytes();
    let r = reference.as_bytes();
    if b == r {
        out.push(SAME);
        return;
    }
    let head = common_prefix(b, r);
    let room = b.len().min(r.len()) - head;
    let tail = common_suffix(&b[head..], &r[head..]).min(room);
    let middle = b.len() - head - tail;
    let near_cost = 4 + middle;
    // An id costs at least 18 bytes: not worth checking for when a near repeat is cheaper.
    let hex_prefix = if near_cost > 18 {
        hex_id_prefix(b)
    } else {
        None
    };
    if let Some(prefix_len) = hex_prefix.filter(|p| 2 + p + 16 <= near_cost) {
        out.push(HEX_ID);
        out.push(prefix_len as u8);
        out.extend_from_slice(&b[..prefix_len]);
        out.extend_from_slice(&hex16(&b[prefix_len..]));
    } else if head + tail >= NEAR_MIN_SHARED || hex_prefix.is_some() {
        out.push(NEAR);
        put_varint(out, head as u64);
        put_varint(out, tail as u64);
        put_varint(out, middle as u64);
        out.extend_from_slice(&b[head..head + middle]);
    } else {
        out.push(PLAIN);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// Appends `v` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint, advancing `bytes` past it.
pub fn read_varint(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take(bytes, 1)?[0];
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long")
}

fn read_len(bytes: &mut &[u8]) -> Result<usize, &'static str> {
    usize::try_from(read_varint(bytes)?).map_err(|_| "length out of range")
}

/// Reads one text written by [`put_text`] against `reference` into `out` (replacing what it
/// held), advancing `bytes` past it.
pub fn read_text(bytes: &mut &[u8], reference: &str, out: &mut String) -> Result<(), &'static str> {
    let tag = take(bytes, 1)?[0];
    let mut built = Vec::new();
    match tag {
        SAME => {
            if out.as_str() != reference {
                out.clear();
                out.push_str(reference);
            }
            return Ok(());
        }
        HEX_ID => {
            let n = take(bytes, 1)?[0] as usize;
            built.extend_from_slice(take(bytes, n)?);
            built.extend_from_slice(&digits32(take(bytes, 16)?));
        }
        NEAR => {
            let head = read_len(bytes)?;
            let tail = read_len(bytes)?;
            let n = read_len(bytes)?;
            let r = reference.as_bytes();
            if head.saturating_add(tail) > r.len() {
                return Err("near repeat longer than its reference");
            }
            built.extend_from_slice(&r[..head]);
            built.extend_from_slice(take(bytes, n)?);
            built.extend_from_slice(&r[r.len() - tail..]);
        }
        PLAIN => {
            let n = read_len(bytes)?;
            built.extend_from_slice(take(bytes, n)?);
        }
        _ => return Err("unknown text tag"),
    }
    *out = String::from_utf8(built).map_err(|_| "text is not UTF-8")?;
    Ok(())
}

/// Where the 32 hex digits start, when `b` is a short prefix followed by exactly 32
/// lowercase hex digits (what message ids and most provider ids look like).
fn hex_id_prefix(b: &[u8]) -> Option<usize> {
    let prefix_len = b.len().checked_sub(32)?;
    (prefix_len <= u8::MAX as usize && lowercase_hex(&b[prefix_len..])).then_some(prefix_len)
}

/// Whether every byte is a lowercase hex digit. No early exit and no branch per digit: the
/// check runs on whole vectors, and the digits of ids are random, so branches mispredict.
fn lowercase_hex(digits: &[u8]) -> bool {
    digits.iter().fold(true, |ok, &c| {
        ok & ((c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6))
    })
}

/// The 16 bytes of exactly 32 lowercase hex digits.
pub fn parse_hex16(digits: &[u8]) -> Option<[u8; 16]> {
    (digits.len() == 32 && lowercase_hex(digits)).then(|| hex16(digits))
}

/// A signed value as an unsigned one that is small when the value is near zero (for varints).
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The signed value of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The value of a lowercase hex digit: `0`-`9` are 0x30-0x39, `a`-`f` 0x61-0x66.
fn nibble(c: u8) -> u8 {
    (c & 0x0f) + 9 * (c >> 6)
}

/// The 16 bytes of 32 lowercase hex digits (checked by [`hex_id_prefix`]).
fn hex16(digits: &[u8]) -> [u8; 16] {
    let mut raw = [0u8; 16];
    for (byte, pair) in raw.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    raw
}

/// Lowercase hex digits of 16 bytes.
fn digits32(raw: &[u8]) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (pair, &byte) in out.chunks_exact_mut(2).zip(raw) {
        pair[0] = HEX[(byte >> 4) as usize];
        pair[1] = HEX[(byte & 0x0f) as usize];
    }
    out
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && word(a, i) == word(b, i) {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + 8 <= n && word(a, n - i - 8) == word(b, n - i - 8) {
        i += 8;
    }
    while i < n && a[n - i - 1] == b[n - i - 1] {
        i += 1;
    }
    i
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if bytes.len() < n {
        return Err("truncated");
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(texts: &[&str]) -> usize {
        let mut out = Vec::new();
        let mut prev = "";
        for t in texts {
            put_text(&mut out, t, prev);
            prev = t;
        }
        let written = out.len();
        let mut bytes = out.as_slice();
        let mut prev = String::new();
        for t in texts {
            let mut got = String::from("left over");
            read_text(&mut bytes, &prev, &mut got).unwrap();
            assert_eq!(&got, t);
            prev = got;
        }
        assert!(bytes.is_empty(), "every byte read");
        written
    }

    #[test]
    fn texts_read_back_exactly() {
        round_trip(&[
            "",
            "a",
            "a",
            "",
            "héllo wörld",
            "héllo wörld!",
            "你好 {{name}}",
        ]);
        // Hex ids, upper case (not packed), and 32 hex digits with nothing before them.
        round_trip(&[
            "msg_0123456789abcdef0123456789abcdef",
            "msg_0123456789abcdef0123456789abcdef",
            "sbx-ffffffffffffffffffffffffffffffff",
            "0123456789ABCDEF0123456789ABCDEF",
            "00000000000000000000000000000000",
        ]);
        // Near repeats that overlap at either end, and one with nothing in between.
        round_trip(&[
            "Hi Anna, 20% off in Paris tonight only",
            "Hi Bob, 20% off in Rome tonight only",
            "Hi Bob, 20% off in Rome tonight only, really",
            "Hi Bob, 20% off in Rome tonight only",
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaa",
        ]);
    }

    #[test]
    fn repeating_texts_take_a_fraction_of_their_bytes() {
        let ids: Vec<String> = (0..100u128)
            .map(|i| format!("msg_{:032x}", i * 7919))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let plain: usize = ids.iter().map(|t| t.len() + 4).sum();
        assert!(round_trip(&ids) * 10 < plain * 7, "ids packed to 16 bytes");
        let bodies: Vec<String> = (0..100)
            .map(|i| format!("Hi user{i}, 20% off in city{} tonight only", i % 7))
            .collect();
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let plain: usize = bodies.iter().map(|t| t.len() + 4).sum();
        assert!(
            round_trip(&bodies) * 3 < plain * 2,
            "bodies of one template share their ends"
        );
    }

    #[test]
    fn shared_heads_and_tails_are_found_at_every_length() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).collect();
            for cut in 0..=n {
                let mut b = a.clone();
                if cut < n {
                    b[cut] ^= 0x80;
                }
                assert_eq!(common_prefix(&a, &b), cut);
                let mut c = a.clone();
                if cut < n {
                    c[n - 1 - cut] ^= 0x80;
                }
                assert_eq!(common_suffix(&a, &c), cut);
                assert_eq!(common_suffix(&a[cut..], &a), n - cut);
                assert_eq!(common_prefix(&a[..cut], &a), cut);
            }
        }
        assert_eq!(hex16(b"000102030405060708090a0b0c0d0eff"), {
            let mut raw = [0u8; 16];
            hex::decode_to_slice("000102030405060708090a0b0c0d0eff", &mut raw).unwrap();
            raw
        });
        assert_eq!(
            &digits32(&hex16(b"0123456789abcdef0123456789abcdef")),
            b"0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn varints_read_back() {
        let values = [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let mut out = Vec::new();
        for v in values {
            put_varint(&mut out, v);
        }
        let mut bytes = out.as_slice();
        for v in values {
            assert_eq!(read_varint(&mut bytes).unwrap(), v);
        }
        assert!(bytes.is_empty());
        let mut endless: &[u8] = &[0xff; 11];
        assert!(read_varint(&mut endless).is_err());
    }

    #[test]
    fn an_id_that_repeats_another_ids_digits_costs_its_prefix() {
        let mut out = Vec::new();
        let id = "msg_0123456789abcdef0123456789abcdef";
        put_text(&mut out, "sbx-0123456789abcdef0123456789abcdef", id);
        assert!(out.len() <= 8, "{} bytes", out.len());
        let mut got = String::new();
        read_text(&mut out.as_slice(), id, &mut got).unwrap();
        assert_eq!(got, "sbx-0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn damaged_texts_are_errors_not_panics() {
        let mut out = Vec::new();
        put_text(
            &mut out,
            "Hi Bob, 20% off in Rome tonight only",
            "Hi Anna, 20% off in Paris tonight only",
        );
        for cut in 0..out.len() {
            let mut bytes = &out[..cut];
            assert!(read_text(
                &mut bytes,
                "Hi Anna, 20% off in Paris tonight only",
                &mut String::new()
            )
            .is_err());
        }
        // A near repeat read against a shorter previous text.
        let mut bytes = out.as_slice();
        assert!(read_text(&mut bytes, "Hi", &mut String::new()).is_err());
        let mut bytes: &[u8] = &[9];
        assert!(read_text(&mut bytes, "", &mut String::new()).is_err());
        let mut bytes: &[u8] = &[PLAIN, 2, 0xff, 0xfe];
        assert!(read_text(&mut bytes, "", &mut String::new()).is_err());
    }
}
