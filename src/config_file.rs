//! `--config-file`: every flag as a top-level key (its long name without `--`; a list for a
//! repeatable one), and, for what flags cannot say readably, the settings of several Remote
//! Write destinations and the exporters to scrape (each destination or target with its own
//! headers, credentials and version). The `remote-write` keys mirror the `--remote-*` flags
//! without the `remote-` prefix, plus `buffer-max-size`, `metric-allow`, `metric-deny` and
//! `labels`/`label` per destination; the `scrape` keys are those of Prometheus's
//! `scrape_config` (snake_case), so an entry can be pasted from a Prometheus configuration
//! (a text in the `scrape` list is a `--scrape` `JOB=URL`). Flags and `KUBELET_PUSH_*`
//! variables win over the top-level keys (`config::layered` applies them):
//!
//! ```yaml
//! interval: 15s
//! label: [cluster=edge-7]
//! listen-address: :9842
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
//!     metric-allow: [container_.*]
//!     labels:
//!       site: edge-7
//! scrape:
//!   - job_name: node
//!     static_configs:
//!       - targets: [127.0.0.1:9100]
//! ```
//!
//! This module only reads the file and keeps where each value was written (line and column);
//! `config` validates the values with the same rules as the flags and names the file, line and
//! key of the first bad one. Unknown keys are errors, so a typo never silently falls back to a
//! default; the `scrape_config` keys kubelet-push does not implement are refused with the
//! reason ([`unsupported`]), so a pasted entry never half-works.

use std::collections::HashMap;
use std::path::Path;

use marked_yaml::{Span, Spanned};
use serde::Deserialize;

use crate::remote_write::access::Field;

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct File {
    /// `None` when the file has no `remote-write` key: the destinations then come from
    /// `--remote-url` and the other `--remote-*` flags.
    pub remote_write: Option<Vec<Entry>>,
    /// `None` when the file has no `scrape` key.
    pub scrape: Option<Vec<ScrapeEntry>>,
    /// Every other top-level key, in the order written: an agent flag's long name and its
    /// value(s). Which names are flags is the command line's business (`config::layered`
    /// checks them against the flags and applies them under the flags and the environment).
    #[serde(skip)]
    pub settings: Vec<Setting>,
}

/// A top-level setting as written: `interval: 5s` (one value) or `label: [a=b, c=d]` (a
/// list, for a repeatable flag). Scalars stay text, as on a command line.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: Spanned<String>,
    pub values: Vec<Spanned<String>>,
}

/// The top-level keys that are the file's own, not flags.
pub const SECTIONS: [&str; 2] = ["remote-write", "scrape"];

/// The `remote-write` entry keys that take one text or a list of them.
const ENTRY_LISTS: [&str; 3] = ["metric-allow", "metric-deny", "label"];

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
    /// `--remote-retry-auth-errors` for this destination.
    pub retry_auth_errors: Option<Spanned<bool>>,
    /// `--buffer-max-size` for this destination's buffer.
    pub buffer_max_size: Option<Spanned<String>>,
    /// Metric names this destination is sent (beyond what `--metric-allow` lets through at
    /// all); one expression or a list.
    #[serde(default)]
    pub metric_allow: Vec<Spanned<String>>,
    /// Metric names this destination is never sent; one expression or a list.
    #[serde(default)]
    pub metric_deny: Vec<Spanned<String>>,
    /// Extra labels on what this destination is sent, as a map.
    #[serde(default)]
    pub labels: HashMap<Spanned<String>, Spanned<String>>,
    /// The same as `NAME=VALUE` texts, as `--label` takes them; one or a list.
    #[serde(default)]
    pub label: Vec<Spanned<String>>,
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

/// One `scrape` entry: a Prometheus `scrape_config`, as written, with the keys kubelet-push
/// implements. Scalars stay strings (durations and sizes in Prometheus's syntax are parsed by
/// `config`), except the booleans.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeEntry {
    pub job_name: Spanned<String>,
    /// Ours, not Prometheus's: the whole URL of one target, instead of `static_configs`.
    pub url: Option<Spanned<String>>,
    pub static_configs: Option<Spanned<Vec<StaticConfig>>>,
    pub scheme: Option<Spanned<String>>,
    pub metrics_path: Option<Spanned<String>>,
    pub scrape_interval: Option<Spanned<String>>,
    pub scrape_timeout: Option<Spanned<String>>,
    pub honor_labels: Option<Spanned<bool>>,
    pub honor_timestamps: Option<Spanned<bool>>,
    pub sample_limit: Option<Spanned<String>>,
    pub body_size_limit: Option<Spanned<String>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub basic_auth: Option<BasicAuth>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<Spanned<String>>,
}

/// `static_configs[]`: targets as `host:port`, and labels for all of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: HashMap<Spanned<String>, Spanned<String>>,
}

/// `basic_auth`: the password only from a file (an inline `password` is refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

/// `tls_config`, with files only (inline PEM is refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

impl ScrapeEntry {
    /// The text of an access setting, for the fields that are text; `Url` is the entry's
    /// `url` (a `static_configs` target has its own span, placed by the caller).
    pub fn text(&self, field: Field) -> Option<&Spanned<String>> {
        let tls = self.tls_config.as_ref();
        let basic = self.basic_auth.as_ref();
        match field {
            Field::BearerTokenFile => self.bearer_token_file.as_ref(),
            Field::BasicAuthUsername => basic.and_then(|b| b.username.as_ref()),
            Field::BasicAuthPasswordFile => basic.and_then(|b| b.password_file.as_ref()),
            Field::CaFile => tls.and_then(|t| t.ca_file.as_ref()),
            Field::CertFile => tls.and_then(|t| t.cert_file.as_ref()),
            Field::KeyFile => tls.and_then(|t| t.key_file.as_ref()),
            Field::TlsServerName => tls.and_then(|t| t.server_name.as_ref()),
            Field::ProxyUrl => self.proxy_url.as_ref(),
            Field::Url => self.url.as_ref(),
            Field::InsecureSkipVerify | Field::Header => None,
        }
    }

    /// Where `field`'s value was written, for an error about it; `job_name` when the field
    /// has no value of its own.
    pub fn span(&self, field: Field) -> &Span {
        let insecure = self
            .tls_config
            .as_ref()
            .and_then(|t| t.insecure_skip_verify.as_ref());
        match (field, insecure) {
            (Field::InsecureSkipVerify, Some(v)) => v.span(),
            _ => self.text(field).unwrap_or(&self.job_name).span(),
        }
    }
}

/// Why a `scrape_config` key kubelet-push does not implement is refused, for `section` (the
/// entry itself, `basic_auth` or `tls_config`); `None` for a key it implements or does not
/// know (serde then names the keys it knows).
pub fn unsupported(section: &str, key: &str) -> Option<&'static str> {
    let reason = match (section, key) {
        ("", "metric_relabel_configs") => {
            "not supported; --metric-allow and --metric-deny keep or drop metrics by name"
        }
        ("", "relabel_configs") => {
            "not supported: targets are static; give their labels with static_configs' labels"
        }
        ("", "params") => "not supported; write the query into url (url: http://HOST:PORT/PATH?NAME=VALUE)",
        ("", "authorization") => "not supported; for a bearer token, use bearer_token_file",
        ("", "bearer_token") => {
            "a token is not taken inline (it would show in the file); put it in a file and use bearer_token_file"
        }
        ("", "oauth2") => "not supported; use bearer_token_file with a token kept current by something else",
        ("", k) if k.ends_with("_sd_configs") => {
            "service discovery is not supported: kubelet-push scrapes exporters of its own node; list them with url or static_configs"
        }
        (
            "",
            "follow_redirects"
            | "enable_http2"
            | "enable_compression"
            | "http_headers"
            | "no_proxy"
            | "proxy_from_environment"
            | "proxy_connect_header"
            | "scrape_protocols"
            | "fallback_scrape_protocol"
            | "scrape_classic_histograms"
            | "always_scrape_classic_histograms"
            | "convert_classic_histograms_to_nhcb"
            | "scrape_native_histograms"
            | "native_histogram_bucket_limit"
            | "native_histogram_min_bucket_factor"
            | "track_timestamps_staleness"
            | "label_limit"
            | "label_name_length_limit"
            | "label_value_length_limit"
            | "target_limit"
            | "keep_dropped_targets"
            | "metric_name_validation_scheme"
            | "metric_name_escaping_scheme"
            | "scrape_failure_log_file",
        ) => "not supported by kubelet-push; remove it",
        ("basic_auth", "password") => {
            "a password is not taken inline (it would show in the file); put it in a file and use password_file"
        }
        ("basic_auth", "username_file" | "username_ref" | "password_ref") => {
            "not supported; use username and password_file"
        }
        ("tls_config", "ca" | "cert" | "key") => {
            "inline PEM is not taken; put it in a file and use ca_file, cert_file or key_file"
        }
        ("tls_config", "min_version" | "max_version" | "ca_ref" | "cert_ref" | "key_ref") => {
            "not supported by kubelet-push; remove it"
        }
        _ => return None,
    };
    Some(reason)
}

/// The first key of a `scrape` entry (or of its `basic_auth` or `tls_config`) that
/// [`unsupported`] refuses, as `FILE:LINE:COLUMN: KEY: reason`. Run on the parsed tree before
/// serde, which would only call it unknown.
fn refuse_unsupported(path: &Path, root: &marked_yaml::Node) -> Result<(), FileError> {
    let Some(list) = root
        .as_mapping()
        .and_then(|m| m.get_node("scrape"))
        .and_then(marked_yaml::Node::as_sequence)
    else {
        return Ok(());
    };
    for (i, entry) in list.iter().enumerate() {
        let Some(map) = entry.as_mapping() else {
            continue; // serde says what is wrong with it
        };
        let mut sections = vec![(String::new(), format!("scrape[{i}]"), map)];
        for name in ["basic_auth", "tls_config"] {
            if let Some(inner) = map.get_mapping(name) {
                sections.push((name.to_owned(), format!("scrape[{i}].{name}"), inner));
            }
        }
        for (section, prefix, map) in sections {
            for key in map.keys() {
                if let Some(reason) = unsupported(&section, key.as_str()) {
                    let place = format!("{prefix}.{}", key.as_str());
                    return Err(FileError(at_span(path, key.span(), &place, reason)));
                }
            }
        }
    }
    Ok(())
}

/// The root with only its [`SECTIONS`] (each `remote-write` entry's [`ENTRY_LISTS`] keys
/// made lists when written as one text), and the other top-level keys as settings. A
/// setting's value must be a text or a list of texts.
fn split_settings(
    path: &Path,
    root: marked_yaml::Node,
) -> Result<(marked_yaml::Node, Vec<Setting>), FileError> {
    use marked_yaml::types::{MarkedMappingNode, MarkedSequenceNode};
    use marked_yaml::Node;
    let Node::Mapping(map) = root else {
        return Ok((root, Vec::new())); // serde says what is wrong with it
    };
    let span = *map.span();
    let mut sections = Vec::new();
    let mut settings = Vec::new();
    for (key, value) in map.iter() {
        // `scrape` is a section (scrape_config entries) and a flag (`JOB=URL` texts): the
        // texts of its list, or a text alone, are the flag's.
        if key.as_str() == "scrape" {
            let (texts, entries): (Vec<&Node>, Vec<&Node>) = match value {
                Node::Scalar(_) => (vec![value], Vec::new()),
                Node::Sequence(list) => list.iter().partition(|n| n.as_scalar().is_some()),
                Node::Mapping(_) => (Vec::new(), vec![value]),
            };
            if !texts.is_empty() {
                let values = texts
                    .iter()
                    .filter_map(|n| n.as_scalar())
                    .map(|s| Spanned::new(*s.span(), s.as_str().to_owned()))
                    .collect();
                let name = Spanned::new(*key.span(), "scrape".to_owned());
                settings.push(Setting { key: name, values });
                if entries.is_empty() {
                    continue;
                }
                let list =
                    MarkedSequenceNode::new(*value.span(), entries.into_iter().cloned().collect());
                sections.push((key.clone(), Node::Sequence(list)));
                continue;
            }
        }
        if SECTIONS.contains(&key.as_str()) {
            let mut value = value.clone();
            if let (true, Some(list)) = (key.as_str() == "remote-write", value.as_sequence_mut()) {
                for entry in list.iter_mut().filter_map(Node::as_mapping_mut) {
                    for name in ENTRY_LISTS {
                        if let Some(one @ Node::Scalar(_)) = entry.get_mut(name) {
                            let span = *one.span();
                            let text = std::mem::replace(one, Node::from(""));
                            *one = Node::Sequence(MarkedSequenceNode::new(span, vec![text]));
                        }
                    }
                }
            }
            sections.push((key.clone(), value));
            continue;
        }
        let known = crate::cli::file_keys();
        if !known.iter().any(|k| k == key.as_str()) {
            let hint = crate::cli::closest(
                key.as_str(),
                known.iter().map(String::as_str).chain(SECTIONS),
            )
            .map_or_else(String::new, |k| format!("; did you mean {k}?"));
            return Err(FileError(at_span(
                path,
                key.span(),
                key.as_str(),
                &format!("unknown key{hint} (the top-level keys are remote-write, scrape and every flag's long name without --)"),
            )));
        }
        if key.as_str() == "config-file" {
            return Err(FileError(at_span(
                path,
                key.span(),
                "config-file",
                "a config file cannot name another",
            )));
        }
        let name = Spanned::new(*key.span(), key.as_str().to_owned());
        let text = |n: &Node| {
            n.as_scalar()
                .map(|s| Spanned::new(*s.span(), s.as_str().to_owned()))
        };
        let values = match value {
            Node::Scalar(_) => text(value).into_iter().collect(),
            Node::Sequence(list) => list
                .iter()
                .map(text)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    FileError(at_span(
                        path,
                        value.span(),
                        key.as_str(),
                        "a list of texts is expected (one per value, as the flag is repeated)",
                    ))
                })?,
            Node::Mapping(_) => return Err(FileError(at_span(
                path,
                value.span(),
                key.as_str(),
                "a text or a list of texts is expected, as the flag takes (e.g. label: [team=a])",
            ))),
        };
        settings.push(Setting { key: name, values });
    }
    let mut kept: MarkedMappingNode = sections.into_iter().collect();
    *kept.span_mut() = span;
    Ok((Node::Mapping(kept), settings))
}

/// A problem in the file, already worded as `FILE:LINE:COLUMN: KEY: what is wrong` (or
/// without the position when the problem has none, such as an unreadable file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// The file at `path`, its entries in order.
pub fn load(path: &Path) -> Result<File, FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError(format!("cannot read {}: {e}", path.display())))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<File, FileError> {
    let file = path.display();
    let empty = || {
        FileError(format!(
            "{file}: empty; it needs a remote-write or a scrape list"
        ))
    };
    if text.trim().is_empty() {
        return Err(empty());
    }
    let root = marked_yaml::parse_yaml(0, text)
        .map_err(|e| FileError(format!("{file}: not YAML: {e}")))?;
    refuse_unsupported(path, &root)?;
    let (root, settings) = split_settings(path, root)?;
    match marked_yaml::from_node::<File>(&root) {
        Ok(File {
            remote_write: None,
            scrape: None,
            ..
        }) if settings.is_empty() => Err(empty()),
        Ok(f) => Ok(File { settings, ..f }),
        Err(e) => {
            let place = e
                .start_mark()
                .map_or_else(String::new, |m| format!(":{}:{}", m.line(), m.column()));
            let key = e.path().map_or_else(String::new, |p| format!(" {p}:"));
            let what = match &*e {
                marked_yaml::Error::UnknownFieldError(name, expected, _) => {
                    let hint = crate::cli::closest(name, expected.iter().copied())
                        .map_or_else(String::new, |k| format!("; did you mean {k}?"));
                    format!(
                        "unknown key {name:?}{hint} (known: {})",
                        expected.join(", ")
                    )
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
        let entries = parse(Path::new("kp.yaml"), text)
            .unwrap()
            .remote_write
            .unwrap();
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
        assert!(
            e.starts_with("kp.yaml:1:1: remote_write: unknown key; did you mean remote-write?"),
            "{e}"
        );
        let e = errors("intervl: 5s\n");
        assert!(e.contains("did you mean interval?"), "{e}");
        let e = errors("remote-write:\n  - url: http://a\n    versoin: 2\n");
        assert!(e.contains("did you mean version?"), "{e}");
        let e = errors("remote-write:\n - url: a\n   bad: : :\n");
        assert!(
            e.starts_with("kp.yaml: not YAML:") && e.contains("3:"),
            "{e}"
        );
        assert!(errors("  \n").contains("empty"));
    }
}
