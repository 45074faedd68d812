//! The parts of an HTTP provider's configuration that need more than a field: the credential
//! read from the environment (never from the file) and the validation of URL, header and limits.

use super::model::ProviderConfig;

/// Largest accepted `batch_size` of an HTTP provider.
pub const MAX_HTTP_BATCH_SIZE: usize = 10_000;

/// The checks of a `kind = "http"` provider.
pub(super) fn validate_http_provider(i: usize, p: &ProviderConfig, errs: &mut Vec<String>) {
    match p.url.as_deref().map(str::trim) {
        None | Some("") => errs.push(format!("providers[{i}].url: required for kind = \"http\"")),
        Some(u) => match reqwest::Url::parse(u) {
            Err(e) => errs.push(format!("providers[{i}].url: {u:?} is not a URL: {e}")),
            Ok(url) if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() => {
                errs.push(format!(
                    "providers[{i}].url: {u:?} must be an http:// or https:// URL with a host"
                ))
            }
            Ok(_) => {}
        },
    }
    if reqwest::header::HeaderName::from_bytes(p.auth_header.trim().as_bytes()).is_err() {
        errs.push(format!(
            "providers[{i}].auth_header: {:?} is not a valid header name",
            p.auth_header
        ));
    }
    if let Some(var) = p.auth_header_env.as_deref() {
        match &p.auth_value {
            None => errs.push(format!(
                "providers[{i}].auth_header_env: environment variable {var:?} is not set"
            )),
            Some(v) if reqwest::header::HeaderValue::from_bytes(v.expose()).is_err() => {
                errs.push(format!(
                    "providers[{i}].auth_header_env: the value of {var:?} is not a valid header value"
                ))
            }
            Some(_) => {}
        }
    }
    validate_transport(i, p, errs);
    if !(1..=MAX_HTTP_BATCH_SIZE).contains(&p.batch_size) {
        errs.push(format!(
            "providers[{i}].batch_size: must be between 1 and {MAX_HTTP_BATCH_SIZE}"
        ));
    }
}

/// The checks every HTTP-speaking provider shares (`http` and the cloud SMS kinds): the
/// connection limits and the CA file, read and parsed now so that a wrong path stops the
/// start rather than the first send.
pub(super) fn validate_transport(i: usize, p: &ProviderConfig, errs: &mut Vec<String>) {
    if p.max_in_flight == 0 {
        errs.push(format!("providers[{i}].max_in_flight: must be at least 1"));
    }
    if p.request_timeout_ms == 0 || p.connect_timeout_ms == 0 {
        errs.push(format!(
            "providers[{i}].request_timeout_ms, connect_timeout_ms: must be > 0"
        ));
    }
    if let Some(path) = p.ca_file.as_deref() {
        if let Err(reason) = crate::provider::https_client::read_ca_file(path) {
            errs.push(format!("providers[{i}].ca_file: {path:?} {reason}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ProviderKind, Secret, DEFAULT_TOML};

    fn with_http(adjust: impl FnOnce(&mut crate::config::ProviderConfig)) -> Config {
        let mut c: Config = toml::from_str(DEFAULT_TOML).expect("default config");
        let p = &mut c.providers[0];
        p.kind = ProviderKind::Http;
        p.url = Some("http://127.0.0.1:9000/v1/messages".into());
        adjust(p);
        c
    }

    #[test]
    fn a_plain_http_provider_is_valid() {
        assert_eq!(with_http(|_| {}).validate(), Ok(()));
    }

    #[test]
    fn url_is_required_parseable_and_http_or_https() {
        assert_eq!(
            with_http(|p| p.url = Some("https://sms.example/v1".into())).validate(),
            Ok(())
        );
        for (url, needle) in [
            (None, "required"),
            (Some("not a url"), "not a URL"),
            (
                Some("ftp://sms.example/"),
                "must be an http:// or https:// URL",
            ),
        ] {
            let c = with_http(|p| p.url = url.map(str::to_string));
            let errs = c.validate().expect_err("invalid");
            assert!(
                errs.iter()
                    .any(|e| e.contains("providers[0].url") && e.contains(needle)),
                "{url:?}: {errs:?}"
            );
        }
    }

    #[test]
    fn the_credential_comes_from_the_named_variable() {
        let text = DEFAULT_TOML.replace(
            "kind = \"sandbox\"",
            "kind = \"http\"\nurl = \"http://127.0.0.1:9000/\"\nauth_header_env = \"HERALD_PROVIDER_TOKEN\"",
        );
        let mut c: Config = toml::from_str(&text).expect("toml");
        c.apply_env(&|_| None);
        let errs = c.validate().expect_err("variable missing");
        assert!(
            errs.iter().any(|e| e.contains("HERALD_PROVIDER_TOKEN")),
            "{errs:?}"
        );
        c.apply_env(&|k| (k == "HERALD_PROVIDER_TOKEN").then(|| "Bearer s3cret".to_string()));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.providers[0].auth_value,
            Some(Secret::new("Bearer s3cret"))
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret is never printed"
        );
    }

    #[test]
    fn a_ca_file_must_be_readable_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem").display().to_string();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        for (path, needle) in [
            (missing, "cannot read it"),
            (garbage.display().to_string(), "no PEM certificate"),
        ] {
            let c = with_http(|p| p.ca_file = Some(path.clone()));
            let errs = c.validate().expect_err("invalid");
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("providers[0].ca_file") && e.contains(needle)),
                "{path}: {errs:?}"
            );
        }
    }

    #[test]
    fn limits_are_checked() {
        let c = with_http(|p| {
            p.batch_size = 0;
            p.max_in_flight = 0;
            p.request_timeout_ms = 0;
            p.auth_header = "bad header".into();
        });
        let errs = c.validate().expect_err("invalid");
        assert_eq!(errs.len(), 4, "{errs:?}");
    }
}
