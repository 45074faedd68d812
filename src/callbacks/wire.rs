//! The body shapes callbacks accept: one JSON object, a JSON array of objects, or NDJSON.
//! Errors name the item (`receipts[2].status`, `line 3: status`) so a provider can fix it.

use serde::de::DeserializeOwned;

use super::receipt::WireError;

fn error(field: impl Into<String>, message: impl Into<String>) -> WireError {
    WireError {
        field: field.into(),
        message: message.into(),
    }
}

/// Deserialises `bytes` whole, answering (path, message) on failure (path "" at the root).
fn from_slice<W: DeserializeOwned>(bytes: &[u8]) -> Result<W, (String, String)> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })?;
    de.end().map_err(|_| {
        let at = crate::api::error::trailing_offset(bytes);
        (
            String::new(),
            format!("unexpected bytes after the JSON value at byte {at}"),
        )
    })?;
    Ok(value)
}

/// Parses every item of `body` with `convert`; `name` prefixes array paths (`receipts`).
pub(crate) fn parse_items<W: DeserializeOwned, T>(
    body: &[u8],
    name: &str,
    convert: impl Fn(W) -> Result<T, (&'static str, String)>,
) -> Result<Vec<T>, WireError> {
    let trimmed = body.trim_ascii();
    match trimmed.first() {
        None => Err(error("body", "is empty")),
        Some(b'[') => {
            let items: Vec<W> = from_slice(trimmed).map_err(|(path, m)| {
                let field = if path.is_empty() {
                    "body".to_string()
                } else {
                    format!("{name}{path}")
                };
                error(field, m)
            })?;
            items
                .into_iter()
                .enumerate()
                .map(|(i, w)| convert(w).map_err(|(f, m)| error(format!("{name}[{i}].{f}"), m)))
                .collect()
        }
        Some(b'{') => {
            if let Ok(w) = serde_json::from_slice::<W>(trimmed) {
                return convert(w)
                    .map(|t| vec![t])
                    .map_err(|(f, m)| error(format!("{name}[0].{f}"), m));
            }
            let mut out = Vec::new();
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let no = n + 1;
                let w: W = from_slice(line).map_err(|(path, m)| {
                    let field = if path.is_empty() {
                        format!("line {no}")
                    } else {
                        format!("line {no}: {path}")
                    };
                    error(field, m)
                })?;
                out.push(convert(w).map_err(|(f, m)| error(format!("line {no}: {f}"), m))?);
            }
            Ok(out)
        }
        Some(_) => Err(error(
            "body",
            "must be a JSON object, a JSON array of objects, or NDJSON",
        )),
    }
}
