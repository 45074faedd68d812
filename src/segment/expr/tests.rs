//! Parsing, precedence, error positions and evaluation of segment expressions.

use super::*;
use proptest::prelude::*;

/// A contact as the snapshot would present it.
#[derive(Debug, Clone, Default)]
struct Contact {
    tags: Vec<String>,
    attrs: Vec<(String, String)>,
}

impl Contact {
    fn new(tags: &[&str], attrs: &[(&str, &str)]) -> Contact {
        Contact {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl SegmentSubject for Contact {
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn seg(expr: &str) -> Segment {
    Segment::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
}

#[test]
fn the_documented_examples_match_as_expected() {
    let vip_sh = Contact::new(&["vip"], &[("city", "Shanghai"), ("tier", "gold")]);
    let churned = Contact::new(&["churned", "shanghai"], &[("city", "Beijing")]);
    let nameless = Contact::new(&[], &[("tier", "silver")]);

    let s = seg(r#"tag:vip and city = "Shanghai""#);
    assert!(s.matches(&vip_sh) && !s.matches(&churned) && !s.matches(&nameless));

    let s = seg(r#"(tier in ("gold","silver") or tag:shanghai) and not tag:churned"#);
    assert!(s.matches(&vip_sh) && !s.matches(&churned) && s.matches(&nameless));

    let s = seg(r#"city != "Beijing""#);
    assert!(s.matches(&vip_sh) && !s.matches(&churned));
    assert!(
        s.matches(&nameless),
        "a missing attribute is not equal to anything"
    );

    let s = seg("has(first_name)");
    assert!(!s.matches(&vip_sh));
    assert!(s.matches(&Contact::new(&[], &[("first_name", "")])));
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_both() {
    let only_a = Contact::new(&["a"], &[]);
    let only_c = Contact::new(&["c"], &[]);
    let s = seg("tag:a or tag:b and tag:c");
    assert_eq!(s, seg("tag:a or (tag:b and tag:c)"));
    assert!(s.matches(&only_a) && !s.matches(&only_c));
    assert!(!seg("(tag:a or tag:b) and tag:c").matches(&only_a));

    let s = seg("not tag:a and tag:c");
    assert_eq!(s, seg("(not tag:a) and tag:c"));
    assert!(s.matches(&only_c) && !s.matches(&only_a));
    assert!(seg("not (tag:a and tag:c)").matches(&only_a));
}

#[test]
fn keywords_are_case_insensitive_and_values_may_be_bare() {
    let c = Contact::new(&["VIP"], &[("city", "上海"), ("tier", "gold")]);
    assert!(seg("TAG:VIP AND city = 上海 Or NOT Has(x)").matches(&c));
    assert!(seg("tier IN (gold, \"silver\")").matches(&c));
    assert!(
        !seg("tier in (Gold)").matches(&c),
        "values are case-sensitive"
    );
    assert!(seg(r#"tag:"VIP""#).matches(&c));
}

#[test]
fn strings_unescape_quotes_and_backslashes() {
    let c = Contact::new(&[], &[("name", r#"say "hi" \o/"#)]);
    assert!(seg(r#"name = "say \"hi\" \\o/""#).matches(&c));
}

#[test]
fn words_named_like_forms_are_still_attributes() {
    let c = Contact::new(&[], &[("tag", "x"), ("has", "y")]);
    assert!(seg("tag = x and has = y").matches(&c));
}

#[test]
fn missing_attributes_never_equal_and_are_never_in() {
    let c = Contact::default();
    assert!(!seg("city = x").matches(&c));
    assert!(!seg("city in (x, y)").matches(&c));
    assert!(seg("city != x").matches(&c));
}

#[test]
fn works_through_a_trait_object() {
    let c = Contact::new(&["vip"], &[]);
    let dynamic: &dyn SegmentSubject = &c;
    assert!(seg("tag:vip").matches(dynamic));
}

#[test]
fn display_is_canonical_and_parses_back() {
    for (input, canonical) in [
        ("TAG:vip AND city = Shanghai", "tag:vip and city = Shanghai"),
        (
            r#"(tier in ("gold","silver") or tag:shanghai) and not tag:churned"#,
            "(tier in (gold, silver) or tag:shanghai) and not tag:churned",
        ),
        ("not (tag:a or tag:b)", "not (tag:a or tag:b)"),
        ("((tag:a and tag:b) and tag:c)", "tag:a and tag:b and tag:c"),
        (
            r#"x = "a b" or x != "and" or tag:"in""#,
            r#"x = "a b" or x != "and" or tag:"in""#,
        ),
        (r#"x = "q\"\\""#, r#"x = "q\"\\""#),
    ] {
        let s = seg(input);
        assert_eq!(s.to_string(), canonical);
        assert_eq!(seg(canonical), s);
    }
}

/// A reference model of the language, evaluated directly.
#[derive(Debug, Clone)]
enum Model {
    Tag(&'static str),
    Eq(&'static str, &'static str),
    Ne(&'static str, &'static str),
    In(&'static str, Vec<&'static str>),
    Has(&'static str),
    Not(Box<Model>),
    And(Box<Model>, Box<Model>),
    Or(Box<Model>, Box<Model>),
}

const WORDS: [&str; 3] = ["a", "b", "c"];

impl Model {
    fn eval(&self, c: &Contact) -> bool {
        match self {
            Model::Tag(t) => c.has_tag(t),
            Model::Eq(k, v) => c.attribute(k) == Some(v),
            Model::Ne(k, v) => c.attribute(k) != Some(v),
            Model::In(k, vs) => c.attribute(k).is_some_and(|a| vs.contains(&a)),
            Model::Has(k) => c.attribute(k).is_some(),
            Model::Not(m) => !m.eval(c),
            Model::And(a, b) => a.eval(c) && b.eval(c),
            Model::Or(a, b) => a.eval(c) || b.eval(c),
        }
    }

    /// Fully parenthesised text, with keywords in the case `upper` asks for.
    fn text(&self, upper: bool) -> String {
        let kw = |k: &str| {
            if upper {
                k.to_uppercase()
            } else {
                k.to_string()
            }
        };
        match self {
            Model::Tag(t) => format!("{}:{t}", kw("tag")),
            Model::Eq(k, v) => format!("{k} = \"{v}\""),
            Model::Ne(k, v) => format!("{k}!={v}"),
            Model::In(k, vs) => format!("{k} {} ({})", kw("in"), vs.join(",")),
            Model::Has(k) => format!("{}( {k} )", kw("has")),
            Model::Not(m) => format!("{} {}", kw("not"), m.text(upper)),
            Model::And(a, b) => format!("({} {} {})", a.text(upper), kw("and"), b.text(upper)),
            Model::Or(a, b) => format!("({} {} {})", a.text(upper), kw("or"), b.text(upper)),
        }
    }
}

fn model() -> impl Strategy<Value = Model> {
    let word = || prop::sample::select(WORDS.to_vec());
    let leaf = prop_oneof![
        word().prop_map(Model::Tag),
        (word(), word()).prop_map(|(k, v)| Model::Eq(k, v)),
        (word(), word()).prop_map(|(k, v)| Model::Ne(k, v)),
        (word(), prop::collection::vec(word(), 1..3)).prop_map(|(k, v)| Model::In(k, v)),
        word().prop_map(Model::Has),
    ];
    leaf.prop_recursive(5, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|m| Model::Not(Box::new(m))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Model::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Model::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn contact() -> impl Strategy<Value = Contact> {
    let word = || prop::sample::select(WORDS.to_vec());
    (
        prop::collection::vec(word(), 0..3),
        prop::collection::vec((word(), word()), 0..3),
    )
        .prop_map(|(tags, attrs)| {
            let attrs: Vec<(&str, &str)> = attrs;
            Contact::new(&tags, &attrs)
        })
}

/// Fragments that make up near-valid expressions, to reach deep into the parser.
fn token_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "tag", ":", "vip", "(", ")", "and", "OR", "not", "=", "!=", "!", "in", ",", "\"x\"", "\"",
        "\\", "has", "city", " ", "上海", "\\\"", "-", "&",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn parse_never_panics(expr in any::<String>()) {
        let _ = Segment::parse(&expr);
    }

    #[test]
    fn parse_never_panics_on_near_valid_input(expr in token_soup()) {
        if let Ok(s) = Segment::parse(&expr) {
            prop_assert_eq!(Segment::parse(&s.to_string()), Ok(s));
        }
    }

    #[test]
    fn evaluation_agrees_with_the_model(m in model(), upper in any::<bool>(), c in contact()) {
        let s = seg(&m.text(upper));
        prop_assert_eq!(s.matches(&c), m.eval(&c));
        prop_assert_eq!(seg(&s.to_string()), s);
    }
}
