//! `missing_variable`: the message is rendered per recipient from, in order of precedence,
//! the recipient's own variables, the contact's snapshot attributes and the job's variables.
//! A variable found in none of them rejects the recipient; a message never goes out with a hole.

use std::collections::HashMap;

use super::Verdict;
use crate::domain::Reason;
use crate::provider::content::ChannelContent;
use crate::snapshot::ContactView;
use crate::template::channel::CompiledFields;
use crate::template::Template;

/// Renders `template` for one recipient into `out`.
pub fn render(
    template: &Template,
    recipient_vars: Option<&HashMap<String, String>>,
    contact: &ContactView<'_>,
    job_vars: &HashMap<String, String>,
    out: &mut String,
) -> Verdict {
    let names = template.variables();
    let result = template.render_into(out, |i| {
        let name = names[i].as_str();
        recipient_vars
            .and_then(|v| v.get(name))
            .map(String::as_str)
            .or_else(|| contact.attribute(name))
            .or_else(|| job_vars.get(name).map(String::as_str))
    });
    match result {
        Ok(()) => Verdict::Allow,
        Err(_) => Verdict::Reject(Reason::MissingVariable),
    }
}

/// Renders a push or WeChat job's channel fields for one recipient, with the same variables
/// as the body (already rendered as `body`); `Ok(None)` for other channels.
pub fn render_fields(
    fields: &CompiledFields,
    body: &str,
    recipient_vars: Option<&HashMap<String, String>>,
    contact: &ContactView<'_>,
    job_vars: &HashMap<String, String>,
) -> Result<Option<ChannelContent>, Verdict> {
    let lookup = |name: &str| {
        recipient_vars
            .and_then(|v| v.get(name))
            .map(String::as_str)
            .or_else(|| contact.attribute(name))
            .or_else(|| job_vars.get(name).map(String::as_str))
            .map(str::to_string)
    };
    let missing = |_| Verdict::Reject(Reason::MissingVariable);
    if let Some(push) = fields
        .render_push(body.to_string(), &lookup)
        .map_err(missing)?
    {
        return Ok(Some(ChannelContent::Push(push)));
    }
    Ok(fields
        .render_wechat(&lookup)
        .map_err(missing)?
        .map(ChannelContent::Wechat))
}
