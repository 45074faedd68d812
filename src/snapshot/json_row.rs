//! One NDJSON contact object, parsed into reused buffers.
//!
//! `serde_json` drives a hand-written visitor that copies every string value into one
//! `String` and keeps `(start, end)` spans, so after the first few lines parsing a row
//! allocates nothing, and arbitrary keys become attributes without a map per row. Numbers
//! and booleans in attribute position are stringified; `null` means absent. A value of the
//! wrong shape records a message naming its key, which becomes the row error.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::fields::{split_tags, Column, RowFields, CONSENT_SLOTS};

type Span = (usize, usize);

/// The cells of one NDJSON line.
#[derive(Debug, Default)]
pub(crate) struct JsonRow {
    text: String,
    contact_id: Option<Span>,
    phone: Option<Span>,
    email: Option<Span>,
    push_token: Option<Span>,
    wechat_openid: Option<Span>,
    timezone: Option<Span>,
    updated_at: Option<Span>,
    consents: [Option<Span>; CONSENT_SLOTS],
    tags: Vec<Span>,
    attrs: Vec<(Span, Span)>,
    deleted: bool,
    problem: Option<String>,
    /// Where the address list being read starts in `text`.
    pairs_start: usize,
}

impl JsonRow {
    /// Parses `line` (one JSON object), replacing the previous row. The error names the
    /// offending key where there is one.
    pub(crate) fn parse(&mut self, line: &[u8]) -> Result<(), String> {
        self.clear();
        let mut de = serde_json::Deserializer::from_slice(line);
        let parsed = RowSeed(self).deserialize(&mut de).and_then(|()| de.end());
        parsed.map_err(|e| {
            self.problem
                .take()
                .unwrap_or_else(|| format!("row: not a valid JSON object ({e})"))
        })
    }

    /// The fixed cells (empty when absent).
    pub(crate) fn fields(&self) -> RowFields<'_> {
        let cell = |span: Option<Span>| span.map_or("", |s| self.slice(s));
        RowFields {
            contact_id: cell(self.contact_id),
            phone: cell(self.phone),
            email: cell(self.email),
            push_token: cell(self.push_token),
            wechat_openid: cell(self.wechat_openid),
            timezone: cell(self.timezone),
            consents: self.consents.map(cell),
            updated_at: cell(self.updated_at),
        }
    }

    /// The tags, in order.
    pub(crate) fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(|&s| self.slice(s))
    }

    /// `(name, value)` of every other key with a non-null scalar value.
    pub(crate) fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs
            .iter()
            .map(|&(k, v)| (self.slice(k), self.slice(v)))
    }

    /// Whether the line says `"deleted": true`.
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted
    }

    fn slice(&self, (start, end): Span) -> &str {
        self.text.get(start..end).unwrap_or("")
    }

    fn clear(&mut self) {
        self.text.clear();
        self.contact_id = None;
        self.phone = None;
        self.email = None;
        self.push_token = None;
        self.wechat_openid = None;
        self.timezone = None;
        self.updated_at = None;
        self.consents = [None; CONSENT_SLOTS];
        self.tags.clear();
        self.attrs.clear();
        self.deleted = false;
        self.problem = None;
    }

    /// Appends `s` to the text buffer and returns its span.
    fn push(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    fn fail<E: de::Error>(&mut self, message: String) -> E {
        let err = E::custom(&message);
        self.problem = Some(message);
        err
    }
}

/// Which key a value belongs to, for messages.
#[derive(Clone, Copy)]
enum Key {
    Fixed(&'static str),
    Attr(Span),
}

impl Key {
    fn name(self, row: &JsonRow) -> String {
        match self {
            Key::Fixed(name) => name.to_owned(),
            Key::Attr(span) => row.slice(span).to_owned(),
        }
    }
}

struct RowSeed<'r>(&'r mut JsonRow);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let row = self.0;
        while let Some(key) = map.next_key_seed(KeySeed(row))? {
            let column = Column::from_name(row.slice(key));
            if column.is_some() {
                // The key text of a fixed column is not needed any more.
                row.text.truncate(key.0);
            }
            match column {
                Some(Column::Tags) => {
                    row.tags.clear();
                    map.next_value_seed(TagsSeed(row))?;
                    continue;
                }
                Some(Column::Deleted) => {
                    row.deleted = map.next_value_seed(DeletedSeed(row))?;
                    continue;
                }
                Some(Column::PushToken) => {
                    row.push_token = map.next_value_seed(PairsSeed {
                        row,
                        shape: &PUSH_PAIRS,
                    })?;
                    continue;
                }
                Some(Column::WechatOpenid) => {
                    row.wechat_openid = map.next_value_seed(PairsSeed {
                        row,
                        shape: &WECHAT_PAIRS,
                    })?;
                    continue;
                }
                _ => {}
            }
            let target = column.map_or(Key::Attr(key), |c| Key::Fixed(c.name()));
            let value = map.next_value_seed(ScalarSeed { row, key: target })?;
            let slot = match column {
                Some(Column::ContactId) => &mut row.contact_id,
                Some(Column::Phone) => &mut row.phone,
                Some(Column::Email) => &mut row.email,
                Some(Column::Timezone) => &mut row.timezone,
                Some(Column::UpdatedAt) => &mut row.updated_at,
                Some(c) => match c.consent_slot() {
                    Some(slot) => &mut row.consents[slot],
                    None => continue,
                },
                None => {
                    // A repeated key replaces the earlier value, as for fixed keys.
                    let name = row.text.get(key.0..key.1);
                    if let Some(pos) = row
                        .attrs
                        .iter()
                        .position(|&(k, _)| row.text.get(k.0..k.1) == name)
                    {
                        row.attrs.remove(pos);
                    }
                    if let Some(value) = value {
                        row.attrs.push((key, value));
                    }
                    continue;
                }
            };
            *slot = value;
        }
        Ok(())
    }
}

struct KeySeed<'r>(&'r mut JsonRow);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Span;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Span, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Span;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
        Ok(self.0.push(v))
    }
}

/// A scalar value: string, number or bool as text; `null` as absent.
struct ScalarSeed<'r> {
    row: &'r mut JsonRow,
    key: Key,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = Option<Span>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Span>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_> {
    type Value = Option<Span>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Span>, E> {
        Ok(Some(self.row.push(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<Span>, E> {
        self.visit_str(if v { "true" } else { "false" })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<Span>, E> {
        let start = self.row.text.len();
        let _ = write!(self.row.text, "{v}");
        Ok(Some((start, self.row.text.len())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<Span>, E> {
        let start = self.row.text.len();
        let _ = write!(self.row.text, "{v}");
        Ok(Some((start, self.row.text.len())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<Span>, E> {
        let start = self.row.text.len();
        let _ = write!(self.row.text, "{v}");
        Ok(Some((start, self.row.text.len())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Span>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Option<Span>, A::Error> {
        let name = self.key.name(self.row);
        Err(self.row.fail(format!(
            "{name}: must be a string, number or boolean, not an array"
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Option<Span>, A::Error> {
        let name = self.key.name(self.row);
        Err(self.row.fail(format!(
            "{name}: must be a string, number or boolean, not an object"
        )))
    }
}

/// `tags`: an array of strings, a `;`-separated string, or null.
struct TagsSeed<'r>(&'r mut JsonRow);

const TAGS_SHAPE: &str = "tags: must be an array of strings";

impl<'de> DeserializeSeed<'de> for TagsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let row = self.0;
        while let Some(tag) = seq.next_element_seed(ScalarSeed {
            row,
            key: Key::Fixed("tags"),
        })? {
            row.tags.extend(tag);
        }
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        for tag in split_tags(v) {
            let span = self.0.push(tag);
            self.0.tags.push(span);
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.0.fail(TAGS_SHAPE.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.0.fail(TAGS_SHAPE.to_owned()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.0.fail(TAGS_SHAPE.to_owned()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.0.fail(TAGS_SHAPE.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.0.fail(TAGS_SHAPE.to_owned()))
    }
}

/// How an address list is spelt in NDJSON: an array of objects with two keys, the first of
/// which may be optional (the default WeChat account), or (WeChat) an object of first to
/// second. Either way it is written out in the CSV form (`first:second;...`) that the shared
/// validation in `fields.rs` checks.
struct PairShape {
    column: &'static str,
    first: &'static str,
    second: &'static str,
    first_optional: bool,
    /// Whether `{"first value": "second value", ...}` is accepted too.
    as_object: bool,
}

const PUSH_PAIRS: PairShape = PairShape {
    column: "push_token",
    first: "platform",
    second: "token",
    first_optional: false,
    as_object: false,
};

const WECHAT_PAIRS: PairShape = PairShape {
    column: "wechat_openid",
    first: "account",
    second: "openid",
    first_optional: true,
    as_object: true,
};

impl PairShape {
    fn problem(&self) -> String {
        let object = if self.as_object {
            format!(", an object of {} to {}", self.first, self.second)
        } else {
            String::new()
        };
        format!(
            "{}: must be a string, an array of {{\"{}\", \"{}\"}} objects{object}, or null",
            self.column, self.first, self.second
        )
    }
}

/// Reads an address list into the row's text in the CSV form; `None` for null.
struct PairsSeed<'r> {
    row: &'r mut JsonRow,
    shape: &'static PairShape,
}

impl PairsSeed<'_> {
    fn push_pair(&mut self, first: Option<&str>, second: &str) {
        if self.row.text.len() > self.start() {
            self.row.text.push(';');
        }
        if let Some(first) = first {
            self.row.text.push_str(first);
            self.row.text.push(':');
        }
        self.row.text.push_str(second);
    }

    fn start(&self) -> usize {
        self.row.pairs_start
    }
}

impl<'de> DeserializeSeed<'de> for PairsSeed<'_> {
    type Value = Option<Span>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Span>, D::Error> {
        self.row.pairs_start = self.row.text.len();
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PairsSeed<'_> {
    type Value = Option<Span>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address list")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Span>, E> {
        Ok(Some(self.row.push(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Span>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Option<Span>, A::Error> {
        let shape = self.shape;
        loop {
            let pair = match seq.next_element::<Option<HashMap<String, String>>>() {
                Ok(Some(pair)) => pair.unwrap_or_default(),
                Ok(None) => break,
                Err(_) => return Err(self.row.fail(shape.problem())),
            };
            let unknown = pair.keys().any(|k| k != shape.first && k != shape.second);
            let first = pair.get(shape.first);
            match (pair.get(shape.second), first) {
                (Some(second), first) if !unknown && (first.is_some() || shape.first_optional) => {
                    self.push_pair(first.map(String::as_str), second)
                }
                _ => return Err(self.row.fail(shape.problem())),
            }
        }
        let start = self.start();
        Ok(Some((start, self.row.text.len())))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Option<Span>, A::Error> {
        if !self.shape.as_object {
            return Err(self.row.fail(self.shape.problem()));
        }
        loop {
            match map.next_entry::<String, String>() {
                Ok(Some((first, second))) => self.push_pair(Some(&first), &second),
                Ok(None) => break,
                Err(_) => return Err(self.row.fail(self.shape.problem())),
            }
        }
        let start = self.start();
        Ok(Some((start, self.row.text.len())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<Span>, E> {
        Err(self.row.fail(self.shape.problem()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<Span>, E> {
        Err(self.row.fail(self.shape.problem()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<Span>, E> {
        Err(self.row.fail(self.shape.problem()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<Span>, E> {
        Err(self.row.fail(self.shape.problem()))
    }
}

/// `deleted`: a boolean or null.
struct DeletedSeed<'r>(&'r mut JsonRow);

impl<'de> DeserializeSeed<'de> for DeletedSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DeletedSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Err(self.0.fail("deleted: must be true or false".to_owned()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Err(self.0.fail("deleted: must be true or false".to_owned()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Err(self.0.fail("deleted: must be true or false".to_owned()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Err(self.0.fail("deleted: must be true or false".to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(self.0.fail("deleted: must be true or false".to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(self.0.fail("deleted: must be true or false".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_cells_tags_and_attributes() {
        let mut row = JsonRow::default();
        let line = br#"{"contact_id":"c1","phone":"+8613123079337","tags":["vip","sh\u0061nghai"],
            "city":"Shanghai","age":42,"ratio":0.5,"member":true,"gone":null,"sms_consent":"opt_in"}"#;
        row.parse(line).expect("valid");
        let f = row.fields();
        assert_eq!(f.contact_id, "c1");
        assert_eq!(f.consents[0], "opt_in");
        assert_eq!(row.tags().collect::<Vec<_>>(), ["vip", "shanghai"]);
        let attrs: Vec<_> = row.attributes().collect();
        assert_eq!(
            attrs,
            [
                ("city", "Shanghai"),
                ("age", "42"),
                ("ratio", "0.5"),
                ("member", "true")
            ]
        );
        assert!(!row.is_deleted());

        row.parse(br#"{"contact_id":"c2","deleted":true}"#)
            .expect("valid");
        assert!(row.is_deleted());
        assert_eq!(row.fields().contact_id, "c2");
        assert_eq!(row.attributes().count(), 0);
    }

    #[test]
    fn shape_errors_name_the_key() {
        let mut row = JsonRow::default();
        let e = row
            .parse(br#"{"contact_id":"c1","city":["a"]}"#)
            .expect_err("array attr");
        assert!(e.starts_with("city:"), "{e}");
        let e = row
            .parse(br#"{"contact_id":"c1","tags":[1,{"a":1}]}"#)
            .expect_err("object tag");
        assert!(e.starts_with("tags:"), "{e}");
        let e = row
            .parse(br#"{"contact_id":"c1","deleted":"yes"}"#)
            .expect_err("bad deleted");
        assert!(e.starts_with("deleted:"), "{e}");
        let e = row.parse(b"[1,2]").expect_err("not an object");
        assert!(e.starts_with("row:"), "{e}");
        let e = row.parse(br#"{"contact_id":"c1""#).expect_err("truncated");
        assert!(e.starts_with("row:"), "{e}");
    }

    #[test]
    fn address_lists_become_the_csv_form_and_bad_shapes_name_the_key() {
        let mut row = JsonRow::default();
        row.parse(
            br#"{"contact_id":"c1","push_token":[{"platform":"apns","token":"ab"},{"platform":"fcm","token":"x:y"}],
                "wechat_openid":[{"openid":"o0"},{"account":"wx1","openid":"o1"}]}"#,
        )
        .expect("valid");
        let f = row.fields();
        assert_eq!(f.push_token, "apns:ab;fcm:x:y");
        assert_eq!(f.wechat_openid, "o0;wx1:o1");
        row.parse(
            br#"{"contact_id":"c1","wechat_openid":{"wx1":"o1","wx2":"o2"},"push_token":"fcm:t"}"#,
        )
        .expect("valid");
        assert_eq!(row.fields().wechat_openid, "wx1:o1;wx2:o2");
        assert_eq!(row.fields().push_token, "fcm:t");
        row.parse(br#"{"contact_id":"c1","push_token":null}"#)
            .expect("valid");
        assert_eq!(row.fields().push_token, "");
        for bad in [
            &br#"{"contact_id":"c1","push_token":[{"token":"t"}]}"#[..],
            br#"{"contact_id":"c1","push_token":{"fcm":"t"}}"#,
            br#"{"contact_id":"c1","push_token":[{"platform":"fcm","token":"t","x":1}]}"#,
            br#"{"contact_id":"c1","push_token":7}"#,
        ] {
            let e = row.parse(bad).expect_err("bad shape");
            assert!(e.starts_with("push_token:"), "{e}");
        }
        let e = row
            .parse(br#"{"contact_id":"c1","wechat_openid":[{"account":"wx1"}]}"#)
            .expect_err("no openid");
        assert!(e.starts_with("wechat_openid:"), "{e}");
    }

    #[test]
    fn tags_accept_a_separated_string_and_repeated_keys_replace() {
        let mut row = JsonRow::default();
        row.parse(br#"{"contact_id":"c1","tags":"a; b","city":"x","city":"y"}"#)
            .expect("valid");
        assert_eq!(row.tags().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(row.attributes().collect::<Vec<_>>(), [("city", "y")]);
    }
}
