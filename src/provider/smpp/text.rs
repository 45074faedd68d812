//! Text to and from the bytes of `short_message`: the GSM 03.38 default alphabet (one septet
//! per octet, as SMPP carries `data_coding` 0; extension characters as the escape 0x1B and a
//! second septet) and UCS-2 (UTF-16 big-endian, `data_coding` 8). The GSM set is exactly the
//! one `template::sms` counts by, so the bytes sent are the units herald billed.

/// `data_coding` of the SMSC default alphabet (GSM 03.38 on the SMSCs herald talks to).
pub const DCS_DEFAULT: u8 = 0x00;
/// `data_coding` of IA5 (ASCII).
pub const DCS_IA5: u8 = 0x01;
/// `data_coding` of Latin-1.
pub const DCS_LATIN1: u8 = 0x03;
/// `data_coding` of UCS-2.
pub const DCS_UCS2: u8 = 0x08;

/// The escape septet before an extension-table character.
const ESCAPE: u8 = 0x1b;

/// The basic table, by septet. 0x1B (the escape) decodes as a space when it stands alone.
#[rustfmt::skip]
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É',
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// A character's septets: one from the basic table, or the escape and one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm7 {
    Basic(u8),
    Extended(u8),
}

impl Gsm7 {
    /// Septets it takes.
    pub fn width(self) -> usize {
        match self {
            Gsm7::Basic(_) => 1,
            Gsm7::Extended(_) => 2,
        }
    }

    /// Appends its septets, one per octet.
    pub fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Gsm7::Basic(b) => out.push(b),
            Gsm7::Extended(b) => out.extend_from_slice(&[ESCAPE, b]),
        }
    }
}

/// The GSM 03.38 septets of `c`, or `None` when it is outside the alphabet.
pub fn gsm7(c: char) -> Option<Gsm7> {
    use Gsm7::{Basic, Extended};
    Some(match c {
        'A'..='Z' | 'a'..='z' | '0'..='9' => Basic(c as u8),
        ' ' | '!' | '"' | '#' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-' | '.'
        | '/' | ':' | ';' | '<' | '=' | '>' | '?' => Basic(c as u8),
        '@' => Basic(0x00),
        '$' => Basic(0x02),
        '\n' => Basic(0x0a),
        '\r' => Basic(0x0d),
        '_' => Basic(0x11),
        '\u{0c}' => Extended(0x0a),
        '^' => Extended(0x14),
        '{' => Extended(0x28),
        '}' => Extended(0x29),
        '\\' => Extended(0x2f),
        '[' => Extended(0x3c),
        '~' => Extended(0x3d),
        ']' => Extended(0x3e),
        '|' => Extended(0x40),
        '€' => Extended(0x65),
        c if !c.is_ascii() => {
            let code = BASIC.iter().position(|&b| b == c)?;
            // The ASCII look-alikes above are matched first; 0x1B is not a character.
            if code == usize::from(ESCAPE) {
                return None;
            }
            Basic(code as u8)
        }
        _ => return None,
    })
}

/// Decodes unpacked GSM 03.38 septets (the high bit of each octet is ignored).
pub fn decode_gsm7(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut it = bytes.iter().map(|b| b & 0x7f).peekable();
    while let Some(b) = it.next() {
        if b != ESCAPE {
            out.push(BASIC[usize::from(b)]);
            continue;
        }
        let Some(next) = it.next() else {
            out.push(' ');
            break;
        };
        out.push(match next {
            0x0a => '\u{0c}',
            0x14 => '^',
            0x28 => '{',
            0x29 => '}',
            0x2f => '\\',
            0x3c => '[',
            0x3d => '~',
            0x3e => ']',
            0x40 => '|',
            0x65 => '€',
            // An unknown extension shows as its basic character (23.038's fallback).
            other => BASIC[usize::from(other)],
        });
    }
    out
}

/// UTF-16 big-endian bytes of `text`.
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decodes UTF-16 big-endian bytes; an odd last byte and lone surrogates become U+FFFD.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if bytes.len() % 2 == 1 {
        s.push(char::REPLACEMENT_CHARACTER);
    }
    s
}

/// Decodes a `short_message` by its `data_coding`; `None` for binary and unknown codings.
pub fn decode(data_coding: u8, bytes: &[u8]) -> Option<String> {
    match data_coding {
        DCS_DEFAULT => Some(decode_gsm7(bytes)),
        DCS_IA5 => Some(bytes.iter().map(|&b| char::from(b & 0x7f)).collect()),
        DCS_LATIN1 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        DCS_UCS2 => Some(decode_ucs2(bytes)),
        // The general data coding group with a message class: bits 3-2 pick the alphabet.
        0x10..=0x1f => match (data_coding >> 2) & 0x03 {
            0 => Some(decode_gsm7(bytes)),
            2 => Some(decode_ucs2(bytes)),
            _ => None,
        },
        // The message class group: bit 2 clear is the default alphabet, set is 8-bit data.
        0xf0..=0xff if data_coding & 0x04 == 0 => Some(decode_gsm7(bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{count_parts, Encoding};
    use proptest::prelude::*;

    #[test]
    fn every_basic_and_extension_character_round_trips() {
        let mut all: String = BASIC
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != usize::from(ESCAPE))
            .map(|(_, &c)| c)
            .collect();
        all.push_str("\u{0c}^{}\\[~]|€");
        let mut bytes = Vec::new();
        for c in all.chars() {
            gsm7(c)
                .unwrap_or_else(|| panic!("{c:?} is GSM"))
                .push_to(&mut bytes);
        }
        assert_eq!(decode_gsm7(&bytes), all);
        assert_eq!(bytes.len(), 127 + 2 * 10);
    }

    #[test]
    fn spec_code_points() {
        // 3GPP TS 23.038 table 6.2.1: a few that differ from ASCII.
        assert_eq!(gsm7('@'), Some(Gsm7::Basic(0x00)));
        assert_eq!(gsm7('$'), Some(Gsm7::Basic(0x02)));
        assert_eq!(gsm7('_'), Some(Gsm7::Basic(0x11)));
        assert_eq!(gsm7('¤'), Some(Gsm7::Basic(0x24)));
        assert_eq!(gsm7('¡'), Some(Gsm7::Basic(0x40)));
        assert_eq!(gsm7('à'), Some(Gsm7::Basic(0x7f)));
        assert_eq!(gsm7('€'), Some(Gsm7::Extended(0x65)));
        assert_eq!(gsm7('`'), None);
        assert_eq!(gsm7('\u{1b}'), None);
        assert_eq!(gsm7('中'), None);
    }

    #[test]
    fn ucs2_and_other_codings_decode() {
        assert_eq!(encode_ucs2("退订"), vec![0x90, 0x00, 0x8b, 0xa2]);
        assert_eq!(
            decode(DCS_UCS2, &encode_ucs2("退订 😀")),
            Some("退订 😀".into())
        );
        assert_eq!(
            decode(DCS_UCS2, &[0x00, 0x41, 0x00]),
            Some("A\u{fffd}".into())
        );
        assert_eq!(decode(DCS_LATIN1, &[0x53, 0xe9]), Some("Sé".into()));
        assert_eq!(decode(DCS_IA5, b"STOP"), Some("STOP".into()));
        assert_eq!(decode(DCS_DEFAULT, b"STOP"), Some("STOP".into()));
        assert_eq!(decode(0x04, b"\x01\x02"), None);
        // Message class variants of the general group.
        assert_eq!(decode(0x18, &encode_ucs2("TD")), Some("TD".into()));
        assert_eq!(decode(0xf0, b"STOP"), Some("STOP".into()));
    }

    proptest! {
        /// The encoder agrees with the billing counter: GSM exactly when it counts GSM-7,
        /// with as many septets as it counted units.
        #[test]
        fn agrees_with_the_part_counter(text in "[ -~£€¥èéΔ\\n\u{0c}中😀]{0,200}") {
            let counted = count_parts(&text);
            let encoded: Option<Vec<Gsm7>> = text.chars().map(gsm7).collect();
            match encoded {
                Some(septets) => {
                    prop_assert_eq!(counted.encoding, Encoding::Gsm7);
                    let units: usize = septets.iter().map(|s| s.width()).sum();
                    prop_assert_eq!(units as u32, counted.units);
                    let mut bytes = Vec::new();
                    septets.iter().for_each(|s| s.push_to(&mut bytes));
                    prop_assert_eq!(decode_gsm7(&bytes), text);
                }
                None => {
                    prop_assert_eq!(counted.encoding, Encoding::Ucs2);
                    prop_assert_eq!(encode_ucs2(&text).len() as u32, counted.units * 2);
                }
            }
        }
    }
}
