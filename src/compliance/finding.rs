//! A content rule's finding: which rule, in which variant, where, and why. A submission with
//! findings is refused (422, the first finding); a dry run lists them all.

use serde::Serialize;

use crate::config::RuleKind;

/// One rule a template does not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// The rule's configured name.
    pub rule: String,
    pub kind: RuleKind,
    /// The variant's name, when the job has variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// 1-based character position in the template body (the variant's own body), when the
    /// problem has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    pub message: String,
}

impl Finding {
    /// The field of the job request the finding is about.
    pub fn field(&self, variant_index: Option<usize>) -> String {
        match variant_index {
            Some(i) => format!("variants[{i}].template.body"),
            None => "template.body".to_string(),
        }
    }

    /// The finding as one sentence for an error message.
    pub fn describe(&self) -> String {
        let mut s = format!("content rule `{}`", self.rule);
        if let Some(v) = &self.variant {
            s.push_str(&format!(" in variant `{v}`"));
        }
        if let Some(p) = self.position {
            s.push_str(&format!(" at character {p}"));
        }
        s.push_str(": ");
        s.push_str(&self.message);
        s
    }
}
