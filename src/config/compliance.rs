//! `[[compliance.rules]]`: the content rules every template (and every variant of it) must
//! pass before a job is accepted, and every rendered message before it reaches a provider.
//! Each rule applies to the channels and purposes it names (all when it names none). The
//! checks themselves live in [`crate::compliance`]; this is their shape in the file and its
//! validation, which reads the banned-words lists so a missing or empty list stops the start.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::compliance::Compliance;
use crate::domain::{Channel, Purpose};

/// The `[compliance]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    pub rules: Vec<ComplianceRuleConfig>,
    /// The rules compiled, with their lists read: once per configuration (clones share it).
    #[serde(skip)]
    compiled: Arc<OnceLock<Arc<Compliance>>>,
}

/// What a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A sender signature such as `【品牌】` at the start or the end of the message.
    Signature,
    /// One of the accepted opt-out instructions (`回T退订`, `Reply STOP to opt out`).
    OptOut,
    /// None of the words and phrases of a list file.
    BannedWords,
    /// At most `max` SMS parts.
    MaxParts,
}

/// Where a signature must stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignaturePosition {
    #[default]
    Start,
    End,
}

/// One `[[compliance.rules]]` entry. Which of the optional fields a rule needs depends on its
/// kind; validation says which are missing or out of place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceRuleConfig {
    /// Named in every finding and refusal, so legal can trace a refusal to its rule.
    pub name: String,
    pub kind: RuleKind,
    /// Channels the rule applies to; empty: every channel.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Purposes the rule applies to; empty: both.
    #[serde(default)]
    pub purposes: Vec<Purpose>,
    /// `signature`: the text that opens and closes the signature (`【` and `】`).
    #[serde(default)]
    pub open: Option<String>,
    #[serde(default)]
    pub close: Option<String>,
    /// `signature`: start (default) or end of the message.
    #[serde(default)]
    pub position: SignaturePosition,
    /// `signature`: the longest name between `open` and `close`, in characters (default 16).
    #[serde(default)]
    pub max_len: Option<usize>,
    /// `opt_out`: the accepted instructions (ASCII letters match in any case).
    #[serde(default)]
    pub accepted: Vec<String>,
    /// `banned_words`: the list file (relative to the config file's directory).
    #[serde(default)]
    pub list: Option<String>,
    /// `max_parts`: the most SMS parts a message may take.
    #[serde(default)]
    pub max: Option<u32>,
}

impl ComplianceConfig {
    /// Problems with the rules' shape (files are read by [`ComplianceConfig::load`]).
    pub fn validate(&self, errs: &mut Vec<String>) {
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("compliance.rules[{i}]");
            if r.name.trim().is_empty() {
                errs.push(format!("{at}.name: must not be empty"));
            } else if !names.insert(r.name.as_str()) {
                errs.push(format!("{at}.name: {:?} is used by another rule", r.name));
            }
            let mut need = |ok: bool, field: &str, what: &str| {
                if !ok {
                    errs.push(format!("{at}.{field}: {what}"));
                }
            };
            let nonempty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
            match r.kind {
                RuleKind::Signature => {
                    need(
                        nonempty(&r.open),
                        "open",
                        "is required for a signature rule",
                    );
                    need(
                        nonempty(&r.close),
                        "close",
                        "is required for a signature rule",
                    );
                    need(r.max_len != Some(0), "max_len", "must be at least 1");
                }
                RuleKind::OptOut => need(
                    !r.accepted.is_empty() && r.accepted.iter().all(|a| !a.trim().is_empty()),
                    "accepted",
                    "needs at least one non-empty instruction",
                ),
                RuleKind::BannedWords => {
                    need(nonempty(&r.list), "list", "is required (a list file)")
                }
                RuleKind::MaxParts => need(
                    r.max.is_some_and(|m| m > 0),
                    "max",
                    "is required and must be at least 1",
                ),
            }
        }
    }

    /// Compiles the rules, reading each list file from where `resolve` puts it. Called once at
    /// start with the config file's directory; a configuration built in code compiles on first
    /// use with paths under `config/`.
    pub fn load(&self, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Arc<Compliance>, Vec<String>> {
        let compiled = Arc::new(Compliance::from_config(&self.rules, resolve)?);
        // A second load of the same configuration keeps the first one's result.
        Ok(self.compiled.get_or_init(|| compiled).clone())
    }

    /// The compiled rules.
    pub fn compiled(&self) -> Result<Arc<Compliance>, Vec<String>> {
        match self.compiled.get() {
            Some(c) => Ok(c.clone()),
            None => self.load(&|p| {
                let p = std::path::Path::new(p);
                match p.is_absolute() {
                    true => p.to_path_buf(),
                    false => std::path::Path::new("config").join(p),
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> ComplianceConfig {
        toml::from_str(toml_text).expect("toml")
    }

    #[test]
    fn every_rule_problem_is_reported_at_once() {
        let c = config(
            r#"
[[rules]]
name = "sig"
kind = "signature"
open = "【"

[[rules]]
name = "sig"
kind = "opt_out"

[[rules]]
name = "len"
kind = "max_parts"
max = 0

[[rules]]
name = "words"
kind = "banned_words"
"#,
        );
        let mut errs = Vec::new();
        c.validate(&mut errs);
        let joined = errs.join("\n");
        for expected in [
            "compliance.rules[0].close",
            "compliance.rules[1].name: \"sig\" is used by another rule",
            "compliance.rules[1].accepted",
            "compliance.rules[2].max",
            "compliance.rules[3].list",
        ] {
            assert!(joined.contains(expected), "{expected} in {joined}");
        }
        assert_eq!(errs.len(), 5, "{joined}");
    }

    #[test]
    fn a_misspelt_field_is_refused() {
        let r: Result<ComplianceConfig, _> =
            toml::from_str("[[rules]]\nname = \"x\"\nkind = \"opt_out\"\naccept = [\"STOP\"]\n");
        assert!(r.is_err());
    }

    #[test]
    fn a_missing_list_names_its_rule_and_the_shipped_one_is_always_found() {
        let missing =
            config("[[rules]]\nname = \"w\"\nkind = \"banned_words\"\nlist = \"nope.txt\"\n");
        let errs = missing
            .load(&|p| std::path::Path::new("/nonexistent").join(p))
            .expect_err("no such list");
        assert!(
            errs[0].starts_with("compliance.rules[0].list: cannot read"),
            "{errs:?}"
        );
        let shipped = config(
            "[[rules]]\nname = \"w\"\nkind = \"banned_words\"\nlist = \"banned-words-zh.txt\"\n",
        );
        let rules = shipped
            .load(&|p| std::path::Path::new("/nonexistent").join(p))
            .expect("the built-in copy");
        let job = rules.for_job(Channel::Sms, Purpose::Marketing);
        let parts = crate::template::count_parts("国家级好物");
        assert!(!job.check_message("国家级好物", parts));
    }

    #[test]
    fn rules_apply_to_the_channels_and_purposes_they_name() {
        let c = config(
            "[[rules]]\nname = \"o\"\nkind = \"opt_out\"\nchannels = [\"sms\"]\npurposes = [\"marketing\"]\naccepted = [\"STOP\"]\n",
        );
        let rules = c.compiled().expect("rules");
        assert!(!rules.for_job(Channel::Sms, Purpose::Marketing).is_empty());
        assert!(rules
            .for_job(Channel::Sms, Purpose::Transactional)
            .is_empty());
        assert!(rules.for_job(Channel::Email, Purpose::Marketing).is_empty());
    }
}
