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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
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

impl ComplianceRuleConfig {
    /// Whether the rule applies to jobs of this channel and purpose.
    pub fn applies(&self, channel: Channel, purpose: Purpose) -> bool {
        (self.channels.is_empty() || self.channels.contains(&channel))
            && (self.purposes.is_empty() || self.purposes.contains(&purpose))
    }
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
