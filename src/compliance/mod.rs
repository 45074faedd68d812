//! Content compliance: the rules legal sets for what a message may say (a sender signature,
//! an opt-out instruction for marketing, no banned terms such as the absolute terms of the
//! PRC Advertising Law, a most number of SMS parts), per channel and purpose.
//!
//! Where it sits: the configuration compiles the rules once ([`Compliance`]); the API checks
//! every template (every variant) at submit ([`JobRules::check_template`]), refusing with the
//! first [`Finding`] or, for a dry run, listing them all; the policy pipeline checks every
//! rendered message ([`JobRules::check_message`]) for what a variable's value could bring in,
//! and rejects such a recipient with `content_rule`. Nothing that fails a rule reaches a
//! provider.

pub mod banned;
mod finding;
mod rule;

use std::path::PathBuf;
use std::sync::Arc;

pub use banned::{BannedHit, BannedList};
pub use finding::Finding;
pub use rule::{Check, Rule, DEFAULT_SIGNATURE_MAX_LEN};

use crate::config::{ComplianceRuleConfig, RuleKind};
use crate::domain::{Channel, Purpose};
use crate::template::{SmsParts, Template};

/// Every configured rule, compiled.
#[derive(Debug, Default)]
pub struct Compliance {
    rules: Vec<Rule>,
}

/// Stands in for a placeholder's text when a template is checked: it matches no term,
/// signature or instruction, and keeps character positions.
const PLACEHOLDER_MASK: char = '\u{FFFC}';

impl Compliance {
    /// Compiles `rules`, reading each banned-words list from where `resolve` puts it. The
    /// shipped list is used when a rule names it and the file is not there.
    pub fn from_config(
        rules: &[ComplianceRuleConfig],
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> Result<Compliance, Vec<String>> {
        let mut errs = Vec::new();
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let check = match r.kind {
                RuleKind::Signature => Check::Signature {
                    open: r.open.clone().unwrap_or_default(),
                    close: r.close.clone().unwrap_or_default(),
                    position: r.position,
                    max_len: r.max_len.unwrap_or(DEFAULT_SIGNATURE_MAX_LEN),
                },
                RuleKind::OptOut => Check::OptOut {
                    accepted: r.accepted.iter().map(|a| a.to_ascii_lowercase()).collect(),
                },
                RuleKind::MaxParts => Check::MaxParts {
                    max: r.max.unwrap_or(u32::MAX),
                },
                RuleKind::BannedWords => {
                    let name = r.list.as_deref().unwrap_or_default();
                    match read_list(name, resolve) {
                        Ok(list) => Check::BannedWords {
                            list: Arc::new(list),
                        },
                        Err(e) => {
                            errs.push(format!("compliance.rules[{i}].list: {e}"));
                            continue;
                        }
                    }
                }
            };
            out.push(Rule {
                name: r.name.clone(),
                channels: r.channels.clone(),
                purposes: r.purposes.clone(),
                check,
            });
        }
        match errs.is_empty() {
            true => Ok(Compliance { rules: out }),
            false => Err(errs),
        }
    }

    /// The rules for a job of this channel and purpose.
    pub fn for_job(&self, channel: Channel, purpose: Purpose) -> JobRules {
        JobRules {
            rules: self
                .rules
                .iter()
                .filter(|r| r.applies(channel, purpose))
                .cloned()
                .collect(),
        }
    }
}

fn read_list(name: &str, resolve: &dyn Fn(&str) -> PathBuf) -> Result<BannedList, String> {
    let path = resolve(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if name == banned::SHIPPED_LIST_NAME && e.kind() == std::io::ErrorKind::NotFound => {
            banned::SHIPPED_LIST.to_string()
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    BannedList::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The rules one job is held to.
#[derive(Debug, Clone, Default)]
pub struct JobRules {
    rules: Vec<Rule>,
}

impl JobRules {
    /// Whether no rule applies.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every finding for a template (of `variant`, when the job has variants). Placeholders
    /// are masked: the sender's literal text must pass on its own, whatever the values are.
    /// Parts are counted on `as_sent` (the template with its links tracked, as messages will
    /// carry them), on its literal text: the least any message takes. A part limit's
    /// position is given only when that text is the template as written.
    pub fn check_template(
        &self,
        template: &Template,
        as_sent: &Template,
        variant: Option<&str>,
    ) -> Vec<Finding> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let masked = template.masked_body(PLACEHOLDER_MASK);
        let literal: String = as_sent
            .masked_body(PLACEHOLDER_MASK)
            .chars()
            .filter(|&c| c != PLACEHOLDER_MASK)
            .collect();
        let exact = template.is_literal() && as_sent.body() == template.body();
        self.rules
            .iter()
            .filter_map(|r| match r.check {
                Check::MaxParts { .. } => r.check(&literal).map(|mut f| {
                    if !exact {
                        f.position = None;
                        f.message = format!("at least {}", f.message);
                    }
                    f
                }),
                _ => r.check(&masked),
            })
            .map(|mut f| {
                f.variant = variant.map(str::to_string);
                f
            })
            .collect()
    }

    /// Whether a rendered message passes what its values (or its tracked links' length)
    /// could break: banned terms, the part limit.
    pub fn check_message(&self, body: &str, parts: SmsParts) -> bool {
        self.rules.iter().all(|r| r.check_message(body, parts))
    }
}
