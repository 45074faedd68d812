//! The template fields of the push and WeChat channels beside the body: a push title and
//! data, a WeChat template id, link and field values. Stored with the job as written
//! ([`ChannelFields`]), checked and compiled once per job ([`CompiledFields`]), and rendered
//! per recipient with the same variables as the body into what the adapters send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compile::Template;
use super::render::MissingVariable;
use crate::domain::Channel;
use crate::provider::content::{PushContent, WechatContent};

/// Most data keys (push) or template fields (WeChat) a job may give.
pub const MAX_DATA_KEYS: usize = 32;
/// Longest push title, in characters.
pub const MAX_TITLE_CHARS: usize = 256;
/// FCM and APNs refuse payloads over 4 KiB: the literal text of title, body and data must
/// leave room for the values rendered into them.
pub const MAX_PUSH_LITERAL_BYTES: usize = 3 * 1024;
/// Longest WeChat template id.
pub const MAX_TEMPLATE_ID: usize = 64;

/// A job's channel fields as written in the request (and stored with the job).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A field that is missing, malformed or not for the job's channel: the request's field
/// name (`template.title`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The fields compiled for one job's channel.
#[derive(Debug, Clone)]
pub enum CompiledFields {
    /// SMS and email: the body (and email's own fields) say everything.
    None,
    Push {
        title: Template,
        data: Vec<(String, Template)>,
    },
    Wechat {
        template_id: String,
        url: Option<Template>,
        data: Vec<(String, Template)>,
    },
}

impl ChannelFields {
    /// Checks the fields against the channel and compiles them; `prefix` is the request's
    /// path to the template (`template`, `variants[1].template`).
    pub fn compile(&self, channel: Channel, prefix: &str) -> Result<CompiledFields, FieldError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let compile = |name: String, text: &str| {
            Template::compile(text).map_err(|e| err(name, e.to_string()))
        };
        let data = |what: &str| -> Result<Vec<(String, Template)>, FieldError> {
            if self.data.len() > MAX_DATA_KEYS {
                return Err(err(field("data"), format!("at most {MAX_DATA_KEYS} keys")));
            }
            self.data
                .iter()
                .map(|(k, v)| {
                    let ok = !k.is_empty()
                        && k.len() <= 64
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
                    if !ok {
                        return Err(err(
                            field("data"),
                            format!("{what} {k:?} must be 1 to 64 letters, digits, `_` or `.`"),
                        ));
                    }
                    Ok((k.clone(), compile(field(&format!("data.{k}")), v)?))
                })
                .collect()
        };
        let only = |name: &str, present: bool, for_channel: &str| {
            if present {
                Err(err(field(name), format!("only for {for_channel} jobs")))
            } else {
                Ok(())
            }
        };
        match channel {
            Channel::Push => {
                only("template_id", self.template_id.is_some(), "wechat")?;
                only("url", self.url.is_some(), "wechat")?;
                // A notification may have a body alone.
                let title = self.title.as_deref().map_or("", str::trim);
                if title.chars().count() > MAX_TITLE_CHARS {
                    return Err(err(
                        field("title"),
                        format!("must be at most {MAX_TITLE_CHARS} characters"),
                    ));
                }
                let title = compile(field("title"), title)?;
                let data = data("key")?;
                let literal = title.body().len()
                    + data
                        .iter()
                        .map(|(k, t)| k.len() + t.body().len())
                        .sum::<usize>();
                if literal > MAX_PUSH_LITERAL_BYTES {
                    return Err(err(
                        field("data"),
                        format!("title and data exceed {MAX_PUSH_LITERAL_BYTES} bytes; push payloads are limited to 4 KiB"),
                    ));
                }
                Ok(CompiledFields::Push { title, data })
            }
            Channel::Wechat => {
                only("title", self.title.is_some(), "push")?;
                let id = self
                    .template_id
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| err(field("template_id"), "is required for wechat jobs"))?;
                let id_ok = id.len() <= MAX_TEMPLATE_ID
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !id_ok {
                    return Err(err(
                        field("template_id"),
                        format!("must be at most {MAX_TEMPLATE_ID} letters, digits, `_` or `-`"),
                    ));
                }
                if self.data.is_empty() {
                    return Err(err(
                        field("data"),
                        "is required for wechat jobs: the value of each template field",
                    ));
                }
                let url = match &self.url {
                    None => None,
                    Some(u) => {
                        let u = u.trim();
                        if !(u.starts_with("https://") || u.starts_with("http://")) {
                            return Err(err(field("url"), "must be an http:// or https:// URL"));
                        }
                        Some(compile(field("url"), u)?)
                    }
                };
                Ok(CompiledFields::Wechat {
                    template_id: id.to_string(),
                    url,
                    data: data("field")?,
                })
            }
            Channel::Sms | Channel::Email => {
                only("title", self.title.is_some(), "push")?;
                only("template_id", self.template_id.is_some(), "wechat")?;
                only("url", self.url.is_some(), "wechat")?;
                only("data", !self.data.is_empty(), "push and wechat")?;
                Ok(CompiledFields::None)
            }
        }
    }
}

impl CompiledFields {
    /// Every variable the fields use, for the job's variable checks.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            CompiledFields::None => Vec::new(),
            CompiledFields::Push { title, data } => std::iter::once(title)
                .chain(data.iter().map(|(_, t)| t))
                .collect(),
            CompiledFields::Wechat { url, data, .. } => {
                url.iter().chain(data.iter().map(|(_, t)| t)).collect()
            }
        }
    }

    /// The push notification for one recipient, the body rendered already.
    pub fn render_push(
        &self,
        body: String,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<PushContent>, MissingVariable> {
        let CompiledFields::Push { title, data } = self else {
            return Ok(None);
        };
        let mut rendered = BTreeMap::new();
        for (k, t) in data {
            rendered.insert(k.clone(), t.render_with(lookup)?);
        }
        Ok(Some(PushContent {
            title: title.render_with(lookup)?,
            body,
            data: rendered,
        }))
    }

    /// The WeChat template message for one recipient.
    pub fn render_wechat(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<WechatContent>, MissingVariable> {
        let CompiledFields::Wechat {
            template_id,
            url,
            data,
        } = self
        else {
            return Ok(None);
        };
        let mut rendered = BTreeMap::new();
        for (k, t) in data {
            rendered.insert(k.clone(), t.render_with(lookup)?);
        }
        Ok(Some(WechatContent {
            template_id: template_id.clone(),
            url: url.as_ref().map(|u| u.render_with(lookup)).transpose()?,
            data: rendered,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: serde_json::Value) -> ChannelFields {
        serde_json::from_value(json).expect("fields")
    }

    fn field_of(f: &ChannelFields, channel: Channel) -> String {
        f.compile(channel, "template").expect_err("refused").field
    }

    #[test]
    fn push_takes_a_title_and_data_and_refuses_wechat_fields() {
        let ok =
            fields(serde_json::json!({"title": "Hi {{first_name}}", "data": {"sku": "{{sku}}"}}));
        let compiled = ok.compile(Channel::Push, "template").expect("valid");
        let vars = |n: &str| match n {
            "first_name" => Some("Ann".to_string()),
            "sku" => Some("42".to_string()),
            _ => None,
        };
        let content = compiled
            .render_push("Body".into(), &vars)
            .expect("rendered")
            .expect("push");
        assert_eq!(content.title, "Hi Ann");
        assert_eq!(content.data["sku"], "42");
        // A body alone is a notification too.
        assert!(fields(serde_json::json!({}))
            .compile(Channel::Push, "template")
            .is_ok());
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"title": "t", "template_id": "x"})),
                Channel::Push
            ),
            "template.template_id"
        );
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"title": "t", "data": {"bad key": "v"}})),
                Channel::Push
            ),
            "template.data"
        );
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"title": "{{unclosed"})),
                Channel::Push
            ),
            "template.title"
        );
        let missing = compiled.render_push("b".into(), &|_| None);
        assert!(missing.is_err());
    }

    #[test]
    fn wechat_needs_a_template_id_and_data() {
        let ok = fields(
            serde_json::json!({"template_id": "TPL-1", "url": "https://s.example/{{order}}",
            "data": {"first": "Hello {{first_name}}", "keyword1": "{{order}}"}}),
        );
        let compiled = ok.compile(Channel::Wechat, "template").expect("valid");
        let vars = |n: &str| match n {
            "first_name" => Some("Ann".to_string()),
            "order" => Some("o-7".to_string()),
            _ => None,
        };
        let content = compiled
            .render_wechat(&vars)
            .expect("rendered")
            .expect("wechat");
        assert_eq!(content.url.as_deref(), Some("https://s.example/o-7"));
        assert_eq!(content.data["first"], "Hello Ann");
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"data": {"a": "b"}})),
                Channel::Wechat
            ),
            "template.template_id"
        );
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"template_id": "T"})),
                Channel::Wechat
            ),
            "template.data"
        );
        assert_eq!(
            field_of(
                &fields(
                    serde_json::json!({"template_id": "T", "data": {"a": "b"}, "url": "ftp://x"})
                ),
                Channel::Wechat
            ),
            "template.url"
        );
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"template_id": "T", "data": {"a": "b"}, "title": "t"})),
                Channel::Wechat
            ),
            "template.title"
        );
    }

    #[test]
    fn sms_refuses_every_channel_field() {
        assert_eq!(
            field_of(&fields(serde_json::json!({"title": "t"})), Channel::Sms),
            "template.title"
        );
        assert_eq!(
            field_of(
                &fields(serde_json::json!({"data": {"a": "b"}})),
                Channel::Sms
            ),
            "template.data"
        );
        assert!(matches!(
            fields(serde_json::json!({})).compile(Channel::Sms, "template"),
            Ok(CompiledFields::None)
        ));
    }
}
