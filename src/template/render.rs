//! Rendering a compiled template for one recipient.
//!
//! This runs once per recipient, so it appends to a caller-owned buffer and asks for values by
//! variable index: the caller resolves names to columns once per job and looks values up by
//! position. A missing value is a per-recipient rejection (`Reason::MissingVariable`), never a
//! message with a hole in it.

use std::sync::Arc;

use super::compile::{Piece, Template};

/// A variable had no value for this recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing template variable `{name}`")]
pub struct MissingVariable {
    /// Index of the variable in [`Template::variables`].
    pub index: usize,
    /// Its name. Shared with the template, so reporting a miss does not allocate.
    pub name: Arc<str>,
}

impl Template {
    /// Appends this template rendered for one recipient to `out`.
    ///
    /// `lookup` receives an index into [`Template::variables`] and returns that variable's value
    /// for the recipient; it is called once per placeholder occurrence, in body order. The first
    /// variable it has no value for is returned as [`MissingVariable`], and `out` is then left
    /// exactly as it was. Nothing is allocated beyond the growth of `out`, which is reserved
    /// up front for at least the literal text.
    pub fn render_into<'a>(
        &self,
        out: &mut String,
        mut lookup: impl FnMut(usize) -> Option<&'a str>,
    ) -> Result<(), MissingVariable> {
        let start_len = out.len();
        out.reserve(self.literal_len);
        for piece in &self.pieces {
            match *piece {
                Piece::Literal { start, end } => out.push_str(&self.body[start..end]),
                Piece::Variable { index } => match lookup(index) {
                    Some(value) => out.push_str(value),
                    None => {
                        out.truncate(start_len);
                        return Err(self.missing(index));
                    }
                },
            }
        }
        Ok(())
    }

    /// Renders with values looked up by name: a convenience for previews and tests, which
    /// allocates. Each variable is looked up once.
    pub fn render_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, MissingVariable> {
        let values: Vec<Option<String>> = self.variables.iter().map(|n| lookup(n)).collect();
        let mut out = String::new();
        self.render_into(&mut out, |i| values.get(i).and_then(|v| v.as_deref()))?;
        Ok(out)
    }

    fn missing(&self, index: usize) -> MissingVariable {
        MissingVariable {
            index,
            // Every index in `pieces` was made by `compile` from `shared_names`.
            name: Arc::clone(&self.shared_names[index]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn renders_names_with_and_without_spaces() {
        let t = Template::compile("Hi {{first_name}}, {{ city }} sale!").expect("compiles");
        let out = t.render_with(vars(&[("first_name", "Anna"), ("city", "上海")]));
        assert_eq!(out.as_deref(), Ok("Hi Anna, 上海 sale!"));
    }

    #[test]
    fn literal_templates_render_to_themselves() {
        for body in ["", "plain text", "a { b } c }} {x} ${y}", "你好 😀"] {
            let t = Template::compile(body).expect("compiles");
            assert_eq!(t.render_with(|_| None).as_deref(), Ok(body));
        }
    }

    #[test]
    fn repeated_and_adjacent_variables() {
        let t = Template::compile("{{a}}{{b}}{{a}}").expect("compiles");
        assert_eq!(
            t.render_with(vars(&[("a", "1"), ("b", "2")])).as_deref(),
            Ok("121")
        );
    }

    #[test]
    fn missing_variable_is_named_and_leaves_the_buffer_alone() {
        let t = Template::compile("Hi {{first_name}}, {{city}}!").expect("compiles");
        let mut out = String::from("prefix|");
        let err = t
            .render_into(&mut out, |i| (i == 0).then_some("Anna"))
            .expect_err("city is missing");
        assert_eq!(err.index, 1);
        assert_eq!(&*err.name, "city");
        assert_eq!(err.to_string(), "missing template variable `city`");
        assert_eq!(out, "prefix|");
    }

    #[test]
    fn render_into_asks_by_index_and_appends() {
        let t = Template::compile("{{x}}-{{y}}-{{x}}").expect("compiles");
        let row = ["X", "Y"]; // values pre-resolved by variable index
        let mut asked = Vec::new();
        let mut out = String::from(">");
        t.render_into(&mut out, |i| {
            asked.push(i);
            row.get(i).copied()
        })
        .expect("renders");
        assert_eq!(out, ">X-Y-X");
        assert_eq!(asked, [0, 1, 0]);
    }

    #[test]
    fn rendering_reuses_the_buffer() {
        let t = Template::compile("Dear {{name}}, your code is {{code}}.").expect("compiles");
        let mut out = String::with_capacity(256);
        let ptr = out.as_ptr();
        for name in ["Li", "Wang", "Zhang"] {
            out.clear();
            t.render_into(&mut out, |i| Some(if i == 0 { name } else { "1234" }))
                .expect("renders");
        }
        assert_eq!(out, "Dear Zhang, your code is 1234.");
        assert_eq!(out.as_ptr(), ptr, "no reallocation within capacity");
    }
}
