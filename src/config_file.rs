//! `--config-file`: the settings of several Remote Write destinations, in YAML, for what flags
//! cannot say readably (each destination with its own headers, credentials and version). Its
//! keys mirror the `--remote-*` flags without the `remote-` prefix:
//!
//! ```yaml
//! remote-write:
//!   - url: https://mimir.example.com/api/v1/push
//!     headers:
//!       X-Scope-OrgID: tenant-1
//!     basic-auth-username: "123456"
//!     basic-auth-password-file: /etc/kubelet-push/mimir-password
//!     version: 2
//!   - url: https://thanos-receive.example.com/api/v1/receive
//!     bearer-token-file: /etc/kubelet-push/thanos-token
//!     ca-file: /etc/kubelet-push/private-ca.pem
//! ```
//!
//! This module only reads the file and keeps where each value was written (line and column);
//! `config` validates the values with the same rules as the flags and names the file, line and
//! key of the first bad one. Unknown keys are errors, so a typo never silently falls back to a
//! default.

use std::collections::HashMap;
use std::path::Path;

use marked_yaml::{Span, Spanned};
use serde::Deserialize;

use crate::remote_write::access::Field;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    remote_write: Vec<Entry>,
}

/// One `remote-write` entry, as written. Scalars stay strings here (YAML 1.1's `yes`/`on`
/// are not booleans to us), except `insecure-skip-verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Entry {
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: HashMap<Spanned<String>, Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub basic_auth_username: Option<Spanned<String>>,
    pub basic_auth_password_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub tls_server_name: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
    pub proxy_url: Option<Spanned<String>>,
}

impl Entry {
    /// The text of an access setting, for the fields that are text.
    pub fn text(&self, field: Field) -> Option<&Spanned<String>> {
        match field {
            Field::BearerTokenFile => self.bearer_token_file.as_ref(),
            Field::BasicAuthUsername => self.basic_auth_username.as_ref(),
            Field::BasicAuthPasswordFile => self.basic_auth_password_file.as_ref(),
            Field::CaFile => self.ca_file.as_ref(),
            Field::CertFile => self.cert_file.as_ref(),
            Field::KeyFile => self.key_file.as_ref(),
            Field::TlsServerName => self.tls_server_name.as_ref(),
            Field::ProxyUrl => self.proxy_url.as_ref(),
            Field::Url => Some(&self.url),
            Field::InsecureSkipVerify | Field::Header => None,
        }
    }

    /// Where `field`'s value was written, for an error about it: the entry's `url` when the
    /// field has no value of its own (the headers are placed one by one by the caller).
    pub fn span(&self, field: Field) -> &Span {
        match (field, &self.insecure_skip_verify) {
            (Field::InsecureSkipVerify, Some(v)) => v.span(),
            _ => self.text(field).unwrap_or(&self.url).span(),
        }
    }
}

/// A problem in the file, already worded as `FILE:LINE:COLUMN: KEY: what is wrong` (or
/// without the position when the problem has none, such as an unreadable file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// The file at `path`, its `remote-write` entries in order.
pub fn load(path: &Path) -> Result<Vec<Entry>, FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError(format!("cannot read {}: {e}", path.display())))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, FileError> {
    let file = path.display();
    if text.trim().is_empty() {
        return Err(FileError(format!(
            "{file}: empty; it needs a remote-write list"
        )));
    }
    match marked_yaml::from_yaml::<File>(0, text) {
        Ok(f) => Ok(f.remote_write),
        Err(marked_yaml::FromYamlError::ParseYaml(e)) => {
            Err(FileError(format!("{file}: not YAML: {e}")))
        }
        Err(marked_yaml::FromYamlError::FromNode(e)) => {
            let place = e
                .start_mark()
                .map_or_else(String::new, |m| format!(":{}:{}", m.line(), m.column()));
            let key = e.path().map_or_else(String::new, |p| format!(" {p}:"));
            let what = match &*e {
                marked_yaml::Error::UnknownFieldError(name, expected, _) => {
                    format!("unknown key {name:?} (known: {})", expected.join(", "))
                }
                other => other.to_string(),
            };
            Err(FileError(format!("{file}{place}:{key} {what}")))
        }
    }
}

/// `FILE:LINE:COLUMN: KEY: reason` for a value that parsed as YAML but is not valid.
pub fn at<T>(path: &Path, value: &Spanned<T>, key: &str, reason: &str) -> String {
    at_span(path, value.span(), key, reason)
}

/// [`at`] for a position already known.
pub fn at_span(path: &Path, span: &Span, key: &str, reason: &str) -> String {
    let place = span
        .start()
        .map_or_else(String::new, |m| format!(":{}:{}", m.line(), m.column()));
    format!("{}{place}: {key}: {reason}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        parse(Path::new("kp.yaml"), text).unwrap_err().0
    }

    #[test]
    fn entries_keep_their_positions() {
        let text = "remote-write:\n  - url: http://a:9090/api/v1/write\n    version: \"2\"\n    headers:\n      X-Scope-OrgID: t1\n  - url: https://b/push\n    insecure-skip-verify: true\n";
        let entries = parse(Path::new("kp.yaml"), text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].url.as_str(), "http://a:9090/api/v1/write");
        assert_eq!(entries[0].version.as_ref().unwrap().as_str(), "2");
        let (name, value) = entries[0].headers.iter().next().unwrap();
        assert_eq!((name.as_str(), value.as_str()), ("X-Scope-OrgID", "t1"));
        assert_eq!(
            at(
                Path::new("kp.yaml"),
                &entries[1].url,
                "remote-write[1].url",
                "bad"
            ),
            "kp.yaml:6:10: remote-write[1].url: bad"
        );
        assert_eq!(
            entries[1].insecure_skip_verify.as_ref().map(|b| **b),
            Some(true)
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = errors("remote-write:\n  - url: http://a\n    versoin: 2\n");
        assert!(e.starts_with("kp.yaml:3:5:"), "{e}");
        assert!(
            e.contains("remote-write[0]") && e.contains("\"versoin\""),
            "{e}"
        );
        let e = errors("remote-write:\n  - url: http://a\n    insecure-skip-verify: maybe\n");
        assert!(e.starts_with("kp.yaml:3:27:"), "{e}");
        assert!(e.contains("remote-write[0].insecure-skip-verify"), "{e}");
        let e = errors("remote-write:\n  - headers: {}\n");
        assert!(e.contains("url"), "{e}");
        let e = errors("remote_write:\n  - url: x\n");
        assert!(e.contains("unknown key \"remote_write\""), "{e}");
        let e = errors("remote-write:\n - url: a\n   bad: : :\n");
        assert!(
            e.starts_with("kp.yaml: not YAML:") && e.contains("3:"),
            "{e}"
        );
        assert!(errors("  \n").contains("empty"));
    }
}
