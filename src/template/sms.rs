//! SMS part counting exactly as carriers bill it.
//!
//! Every rendered SMS is counted here before it is priced, so the cost estimate in a preview and
//! the cost in the ledger agree with the carrier's invoice. The rules (GSM 03.38 and 3GPP TS
//! 23.040 concatenation):
//!
//! - If every character is in the GSM 03.38 basic table or its extension table, the message is
//!   sent as GSM-7. Basic characters take one septet; extension characters (`^ { } \ [ ~ ] | €`
//!   and form feed) take two, an escape septet followed by the character.
//! - Otherwise it is sent as UCS-2 and every UTF-16 code unit counts (an emoji outside the Basic
//!   Multilingual Plane is a surrogate pair, two units). Chinese text is always UCS-2.
//! - A message that fits one part (160 septets or 70 units) is one part. A longer one is split
//!   into parts of at most 153 septets or 67 units (the rest of each part carries the
//!   concatenation header), and handsets cannot reassemble an escape pair or a surrogate pair cut
//!   in two, so such a pair always moves whole to the next part. That is why the part count is
//!   computed by filling parts, not by dividing.
//!
//! This runs once per recipient on the dispatch hot path: a 128-entry table answers ASCII, one
//! `match` answers the rest, and nothing allocates.

/// The alphabet a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UCS-2 / UTF-16: used as soon as one character is outside the GSM alphabet.
    Ucs2,
}

impl Encoding {
    /// Units that fit a single, unconcatenated message.
    pub const fn single_part_units(self) -> u32 {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE,
            Encoding::Ucs2 => UCS2_SINGLE,
        }
    }

    /// Units per part once a message is concatenated.
    pub const fn multi_part_units(self) -> u32 {
        match self {
            Encoding::Gsm7 => GSM7_MULTI,
            Encoding::Ucs2 => UCS2_MULTI,
        }
    }

    /// Stable lowercase name (`gsm7`, `ucs2`) for JSON, CSV and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

/// How a carrier counts one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmsParts {
    /// The alphabet the message is sent in.
    pub encoding: Encoding,
    /// Septets (GSM-7, extension characters counting two) or UTF-16 code units (UCS-2).
    /// Saturates at `u32::MAX` for absurdly long input.
    pub units: u32,
    /// Billed parts; at least 1, even for empty text. Saturates at `u32::MAX`.
    pub parts: u32,
}

const GSM7_SINGLE: u32 = 160;
const GSM7_MULTI: u32 = 153;
const UCS2_SINGLE: u32 = 70;
const UCS2_MULTI: u32 = 67;

/// Not in the GSM alphabet.
const NO: u8 = 0;
/// Basic table: one septet.
const B: u8 = 1;
/// Extension table: escape plus character, two septets.
const X: u8 = 2;

/// Septets per ASCII character, or [`NO`]. Of the ASCII controls only LF and CR are in the basic
/// table and form feed in the extension table; the backtick and DEL are not GSM at all.
#[rustfmt::skip]
static ASCII_SEPTETS: [u8; 128] = [
    //  0   1   2   3   4   5   6   7   8   9   A   B   C   D   E   F
    NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, B,  NO, X,  B,  NO, NO, // 0x00 (LF, FF, CR)
    NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, // 0x10
    B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  // 0x20  !"#$%&'()*+,-./
    B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  // 0x30 0-9 :;<=>?
    B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  // 0x40 @A-O
    B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  X,  X,  X,  X,  B,  // 0x50 P-Z [\]^_
    NO, B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  // 0x60 `a-o
    B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  B,  X,  X,  X,  X,  NO, // 0x70 p-z {|}~ DEL
];

/// Septets for a non-ASCII character, or [`NO`].
#[inline]
fn non_ascii_septets(c: char) -> u8 {
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => B,
        '€' => X,
        _ => NO,
    }
}

/// Septets for one character in GSM-7, or `None` when the message must be sent as UCS-2.
#[inline(always)]
fn gsm7_septets(c: char) -> Option<u8> {
    let w = match ASCII_SEPTETS.get(c as usize) {
        Some(&w) => w,
        None => non_ascii_septets(c),
    };
    (w != NO).then_some(w)
}

/// Counts the encoding, units and billed parts of `text` as a carrier does.
///
/// Empty text is one part of zero units. The count depends on the whole text (one character
/// outside the GSM alphabet turns the message into UCS-2), so count the rendered message, not
/// the template.
pub fn count_parts(text: &str) -> SmsParts {
    let bytes = text.as_bytes();
    let mut units: u64 = 0;
    let mut wide = false;
    let mut i = 0;
    loop {
        // Fast path: eight ASCII bytes at a time, branch-free inside.
        while let Some(chunk) = bytes.get(i..i + 8) {
            if chunk.iter().any(|&b| b >= 0x80) {
                break;
            }
            let (mut sum, mut foreign, mut two) = (0u32, false, false);
            for &b in chunk {
                let w = ASCII_SEPTETS[usize::from(b)];
                sum += u32::from(w);
                foreign |= w == NO;
                two |= w == X;
            }
            if foreign {
                return count_ucs2(text);
            }
            units += u64::from(sum);
            wide |= two;
            i += 8;
        }
        // One character at a time near the end and around non-ASCII text.
        let Some(&b) = bytes.get(i) else { break };
        let w = if b < 0x80 {
            i += 1;
            ASCII_SEPTETS[usize::from(b)]
        } else {
            // `i` is always on a character boundary, so this decodes one whole character.
            let Some(c) = text.get(i..).and_then(|rest| rest.chars().next()) else {
                break;
            };
            i += c.len_utf8();
            non_ascii_septets(c)
        };
        if w == NO {
            return count_ucs2(text);
        }
        units += u64::from(w);
        wide |= w == X;
    }
    finish(Encoding::Gsm7, units, wide, || {
        text.chars().filter_map(gsm7_septets).map(u32::from)
    })
}

/// UCS-2 counting straight from the UTF-8 bytes: every lead byte starts one character, and only
/// the four-byte sequences (outside the Basic Multilingual Plane) are surrogate pairs.
fn count_ucs2(text: &str) -> SmsParts {
    let bytes = text.as_bytes();
    // Continuation bytes are 0b10xx_xxxx; a lead byte of 0xF0 or more starts a four-byte one.
    // Written as a branch-free sum over chunks so that it vectorises.
    let (mut chars, mut pairs) = (0u64, 0u64);
    for chunk in bytes.chunks(u16::MAX as usize) {
        let (mut c, mut p) = (0u32, 0u32);
        for &b in chunk {
            c += u32::from(b & 0xC0 != 0x80);
            p += u32::from(b >= 0xF0);
        }
        chars += u64::from(c);
        pairs += u64::from(p);
    }
    finish(Encoding::Ucs2, chars + pairs, pairs > 0, || {
        text.chars().map(|c| c.len_utf16() as u32)
    })
}

/// Turns a total into parts. Only when the text is concatenated and holds two-unit characters
/// can a pair land on a part boundary; then the parts are filled character by character.
#[inline]
fn finish<I: Iterator<Item = u32>>(
    encoding: Encoding,
    units: u64,
    wide: bool,
    widths: impl FnOnce() -> I,
) -> SmsParts {
    let per_part = encoding.multi_part_units();
    let parts = if units <= u64::from(encoding.single_part_units()) {
        1
    } else if !wide {
        units.div_ceil(u64::from(per_part))
    } else {
        let (mut parts, mut fill) = (1u64, 0u32);
        for w in widths() {
            if fill + w > per_part {
                parts += 1;
                fill = 0;
            }
            fill += w;
        }
        parts
    };
    SmsParts {
        encoding,
        units: u32::try_from(units).unwrap_or(u32::MAX),
        parts: u32::try_from(parts).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests;
