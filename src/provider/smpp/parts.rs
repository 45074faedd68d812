//! A message's text as the `short_message` of one or more `submit_sm`: encoded in the alphabet
//! herald bills by, split at the same boundaries as `template::sms::count_parts` (153 septets or
//! 67 UTF-16 units per part, an escape pair or a surrogate pair never cut), and concatenated by
//! a user data header or SAR TLVs. So the number of PDUs sent is the number of parts priced.

use xxhash_rust::xxh3::xxh3_64;

use super::config::{DataCodingPolicy, LongMessages};
use super::text::{self, Gsm7, DCS_DEFAULT, DCS_UCS2};
use crate::domain::MessageId;

const GSM7_SINGLE: usize = 160;
const GSM7_MULTI: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_MULTI: usize = 67;
/// Concatenation numbers parts in one octet.
pub const MAX_PARTS: usize = 255;
/// `esm_class` with the UDH indicator set.
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// The text, encoded and cut into parts (no concatenation header yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub data_coding: u8,
    pub parts: Vec<Vec<u8>>,
}

/// Encodes `text` and cuts it into parts.
pub fn encode(text: &str, _policy: DataCodingPolicy) -> Encoded {
    match text.chars().map(text::gsm7).collect::<Option<Vec<Gsm7>>>() {
        Some(septets) => {
            let total: usize = septets.iter().map(|s| s.width()).sum();
            let per_part = if total <= GSM7_SINGLE {
                GSM7_SINGLE
            } else {
                GSM7_MULTI
            };
            let parts = fill(
                septets.iter().map(|s| (s.width(), *s)),
                per_part,
                |s, out| s.push_to(out),
            );
            Encoded {
                data_coding: DCS_DEFAULT,
                parts,
            }
        }
        None => {
            let total: usize = text.chars().map(char::len_utf16).sum();
            let per_part = if total <= UCS2_SINGLE {
                UCS2_SINGLE
            } else {
                UCS2_MULTI
            };
            let parts = fill(
                text.chars().map(|c| (c.len_utf16(), c)),
                per_part,
                |c, out| {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.extend_from_slice(&u.to_be_bytes());
                    }
                },
            );
            Encoded {
                data_coding: DCS_UCS2,
                parts,
            }
        }
    }
}

/// Fills parts of at most `per_part` units with whole characters.
fn fill<T>(
    items: impl Iterator<Item = (usize, T)>,
    per_part: usize,
    push: impl Fn(T, &mut Vec<u8>),
) -> Vec<Vec<u8>> {
    let mut parts = vec![Vec::new()];
    let mut used = 0;
    for (width, item) in items {
        if used + width > per_part {
            parts.push(Vec::new());
            used = 0;
        }
        used += width;
        if let Some(last) = parts.last_mut() {
            push(item, last);
        }
    }
    parts
}

/// One `submit_sm`'s share of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub esm_class: u8,
    pub data_coding: u8,
    pub short_message: Vec<u8>,
    /// `(sar_msg_ref_num, sar_total_segments, sar_segment_seqnum)` with SAR concatenation.
    pub sar: Option<(u16, u8, u8)>,
}

/// A message that cannot be concatenated: more parts than one octet numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{parts} parts: concatenation numbers at most {MAX_PARTS}")]
pub struct TooManyParts {
    pub parts: usize,
}

/// The parts of an encoded message as PDUs are built from them. `reference` ties the parts
/// of one message together (its low octet with a UDH).
pub fn concatenate(
    encoded: Encoded,
    long: LongMessages,
    reference: u16,
) -> Result<Vec<Part>, TooManyParts> {
    let total = encoded.parts.len();
    if total > MAX_PARTS {
        return Err(TooManyParts { parts: total });
    }
    let data_coding = encoded.data_coding;
    if total == 1 {
        return Ok(encoded
            .parts
            .into_iter()
            .map(|short_message| Part {
                esm_class: 0,
                data_coding,
                short_message,
                sar: None,
            })
            .collect());
    }
    Ok(encoded
        .parts
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let seq = (i + 1) as u8;
            match long {
                LongMessages::Udh => {
                    // IEI 0x00: concatenated short messages, 8-bit reference (23.040 9.2.3.24.1).
                    let mut sm = vec![0x05, 0x00, 0x03, reference as u8, total as u8, seq];
                    sm.extend_from_slice(&payload);
                    Part {
                        esm_class: ESM_CLASS_UDHI,
                        data_coding,
                        short_message: sm,
                        sar: None,
                    }
                }
                LongMessages::Sar => Part {
                    esm_class: 0,
                    data_coding,
                    short_message: payload,
                    sar: Some((reference, total as u8, seq)),
                },
            }
        })
        .collect())
}

/// The concatenation reference of a message: derived from its id, so a resend of the same
/// message carries the same reference (a handset then drops parts it already holds).
pub fn reference(id: MessageId) -> u16 {
    xxh3_64(&id.as_u128().to_le_bytes()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::count_parts;
    use proptest::prelude::*;

    fn parts(text: &str) -> Encoded {
        encode(text, DataCodingPolicy::Auto)
    }

    #[test]
    fn single_parts_carry_no_header() {
        let e = parts("Hello @ $5");
        assert_eq!(e.data_coding, DCS_DEFAULT);
        assert_eq!(e.parts, vec![b"Hello \x00 \x025".to_vec()]);
        let sms = concatenate(e, LongMessages::Udh, 7).expect("one part");
        assert_eq!(sms[0].esm_class, 0);
        let e = parts("退订");
        assert_eq!((e.data_coding, e.parts.len()), (DCS_UCS2, 1));
        assert_eq!(parts("").parts, vec![Vec::<u8>::new()]);
    }

    #[test]
    fn long_gsm_is_cut_at_153_septets_with_a_udh() {
        let text = "a".repeat(161);
        let e = parts(&text);
        assert_eq!(
            e.parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![153, 8]
        );
        let sms = concatenate(e, LongMessages::Udh, 0x1234).expect("two parts");
        assert_eq!(sms.len(), 2);
        assert_eq!(sms[1].esm_class, ESM_CLASS_UDHI);
        assert_eq!(&sms[0].short_message[..6], &[5, 0, 3, 0x34, 2, 1]);
        assert_eq!(&sms[1].short_message[..6], &[5, 0, 3, 0x34, 2, 2]);
        assert_eq!(sms[1].short_message.len(), 6 + 8);
    }

    #[test]
    fn an_escape_pair_moves_whole_to_the_next_part() {
        // 152 septets, then '€' (two): it cannot straddle the boundary.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let e = parts(&text);
        assert_eq!(e.parts[0].len(), 152);
        assert_eq!(&e.parts[1][..2], &[0x1b, 0x65]);
        assert_eq!(e.parts.len() as u32, count_parts(&text).parts);
    }

    #[test]
    fn a_surrogate_pair_moves_whole_to_the_next_part() {
        let text = format!("{}😀{}", "中".repeat(66), "文".repeat(10));
        let e = parts(&text);
        assert_eq!(e.data_coding, DCS_UCS2);
        assert_eq!(e.parts[0].len(), 66 * 2);
        assert_eq!(e.parts.len() as u32, count_parts(&text).parts);
    }

    #[test]
    fn sar_parts_carry_tlvs_and_no_header() {
        let sms = concatenate(parts(&"中".repeat(71)), LongMessages::Sar, 513).expect("sar");
        assert_eq!(sms.len(), 2);
        assert_eq!(sms[0].sar, Some((513, 2, 1)));
        assert_eq!(sms[1].sar, Some((513, 2, 2)));
        assert_eq!(sms[0].esm_class, 0);
        assert_eq!(sms[0].short_message.len(), 67 * 2);
    }

    #[test]
    fn more_than_255_parts_is_refused() {
        let e = parts(&"x".repeat(153 * 256));
        assert_eq!(
            concatenate(e, LongMessages::Udh, 1),
            Err(TooManyParts { parts: 256 })
        );
    }

    proptest! {
        /// Herald bills `count_parts(text).parts`: that is how many PDUs go out, each within
        /// its limit, and together they hold the text.
        #[test]
        fn parts_sent_equal_parts_billed(text in "[ -~€\\[\\]中😀]{0,700}") {
            let counted = count_parts(&text);
            let e = parts(&text);
            prop_assert_eq!(e.parts.len() as u32, counted.parts);
            let (max_single, max_multi) = if e.data_coding == DCS_UCS2 { (140, 134) } else { (160, 153) };
            let max = if e.parts.len() == 1 { max_single } else { max_multi };
            prop_assert!(e.parts.iter().all(|p| p.len() <= max));
            let joined: Vec<u8> = e.parts.concat();
            let back = text::decode(e.data_coding, &joined).unwrap_or_default();
            prop_assert_eq!(back, text);
        }
    }
}
