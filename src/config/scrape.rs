//! The scrape targets: `--scrape`, `--kubelet-scrape` and the config file's `scrape` list,
//! validated into [`TargetSettings`]. Every problem names the flag, or the file, line and key
//! (the keys are Prometheus's `scrape_config` ones, so an entry can be pasted); nothing about a
//! target is left to fail mid-run except the target itself.
//!
//! What is checked across targets: two that would write the same series (the same `job`,
//! `instance` and labels) are refused, naming both; a target label may not be one kubelet-push
//! sets itself (`job`, `instance`, `node`, an external `--label`) or a Prometheus-internal
//! `__` name. Durations and sizes in the file take Prometheus's syntax ([`prometheus_duration`],
//! [`prometheus_size`]); the flags take the agent's own, like every other flag.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use marked_yaml::Spanned;

use crate::config_file::{at, at_span, ScrapeEntry};
use crate::exposition::Limits;
use crate::remote_write::access::{self, Access, AccessSpec, Field};
use crate::scrape::{Endpoint, TargetSettings};

use super::error::{err, ConfigError};
use super::sandbox::access_in_sandbox;

/// The longest default scrape timeout: Prometheus's default `scrape_timeout`.
pub const MAX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A target's timeout when neither `scrape_timeout` nor `--scrape-timeout` says: 80% of its
/// interval (a scrape that takes longer would run into the next one), at most
/// [`MAX_DEFAULT_TIMEOUT`].
pub fn default_timeout(interval: Duration) -> Duration {
    (interval * 4 / 5).min(MAX_DEFAULT_TIMEOUT)
}

/// What the targets are validated from, besides their own settings.
pub(super) struct Sources<'a> {
    /// `--scrape JOB=URL`, as given.
    pub scrape: &'a [String],
    /// `--kubelet-scrape PATH`, as given (empty for the demo, whose kubelet is simulated).
    pub kubelet_scrape: &'a [String],
    pub scrape_timeout: Option<Duration>,
    /// The config file and its `scrape` entries, when it has them.
    pub file: Option<(&'a Path, &'a [ScrapeEntry])>,
    /// `--job`: the kubelet targets' job.
    pub job: &'a str,
    /// `--interval`: the flag targets' interval, and the file's default.
    pub interval: Duration,
    pub external_labels: &'a [(String, String)],
    /// Whether `--kubelet-url` is a `file://` summary (no kubelet to scrape).
    pub kubelet_is_file: bool,
    pub sandbox: Option<&'a Path>,
}

/// A target and where it was given, for the messages about two of them.
struct Found {
    target: TargetSettings,
    /// Where it was given, at the start of a message about it: `node=http://…` (after
    /// `--scrape: `), or `FILE:LINE:COLUMN: scrape[0].url`.
    origin: String,
    /// The same, inside a message about another: `--scrape node=http://…`, or
    /// `scrape[0].url (line 3)`.
    reference: String,
    from_file: bool,
}

/// Every target: the `--scrape` ones, then the `--kubelet-scrape` ones, then the file's, each
/// in the order given.
pub(super) fn targets(s: &Sources) -> Result<Vec<TargetSettings>, ConfigError> {
    let mut found = Vec::new();
    let flag_targets = !s.scrape.is_empty() || !s.kubelet_scrape.is_empty();
    if let (true, Some(t)) = (flag_targets, s.scrape_timeout) {
        if t > s.interval {
            return Err(err(
                "--scrape-timeout",
                format!(
                    "{} is longer than --interval ({}), the interval of the --scrape and --kubelet-scrape targets",
                    humantime::format_duration(t),
                    humantime::format_duration(s.interval)
                ),
            ));
        }
    }
    let flag_timeout = s.scrape_timeout.unwrap_or(default_timeout(s.interval));
    for raw in s.scrape {
        found.push(from_flag(raw, s.interval, flag_timeout)?);
    }
    let mut paths: Vec<&str> = Vec::new();
    for raw in s.kubelet_scrape {
        let path = kubelet_path(raw.trim(), s).map_err(|r| err("--kubelet-scrape", r))?;
        if paths.contains(&path) {
            return Err(err("--kubelet-scrape", format!("{path} is given twice")));
        }
        paths.push(path);
        found.push(Found {
            target: TargetSettings {
                job: s.job.to_owned(),
                endpoint: Endpoint::Kubelet {
                    path: path.to_owned(),
                },
                interval: s.interval,
                timeout: flag_timeout,
                honor_labels: false,
                honor_timestamps: true,
                limits: Limits::default(),
                labels: vec![("metrics_path".to_owned(), path.to_owned())],
            },
            origin: path.to_owned(),
            reference: format!("--kubelet-scrape {path}"),
            from_file: false,
        });
    }
    if let Some((path, entries)) = s.file {
        if entries.is_empty() {
            return Err(err(
                "--config-file",
                format!("{}: scrape lists no target", path.display()),
            ));
        }
        for (i, e) in entries.iter().enumerate() {
            if let Some(j) = entries[..i]
                .iter()
                .position(|o| o.job_name.trim() == e.job_name.trim())
            {
                let line = entries[j]
                    .job_name
                    .span()
                    .start()
                    .map_or_else(String::new, |m| format!(", line {}", m.line()));
                return Err(err(
                    "--config-file",
                    at(
                        path,
                        &e.job_name,
                        &format!("scrape[{i}].job_name"),
                        &format!(
                            "also the job_name of scrape[{j}]{line}; each entry needs its own"
                        ),
                    ),
                ));
            }
            found.extend(from_entry(path, i, e, s)?);
        }
    }
    for (i, t) in found.iter().enumerate() {
        if let Some(o) = found[..i]
            .iter()
            .find(|o| same_series(&t.target, &o.target))
        {
            let flag = if t.from_file || o.from_file {
                "--config-file"
            } else {
                "--scrape"
            };
            return Err(err(
                flag,
                format!(
                    "{}: would write the same series as {} (job {:?}, instance {:?}, the same labels): give them different job names or labels",
                    t.origin,
                    o.reference,
                    t.target.job,
                    instance(&t.target).unwrap_or_default()
                ),
            ));
        }
    }
    for t in &mut found {
        t.target.labels.sort();
    }
    Ok(found.into_iter().map(|f| f.target).collect())
}

/// One `--scrape JOB=URL`.
fn from_flag(raw: &str, interval: Duration, timeout: Duration) -> Result<Found, ConfigError> {
    const FLAG: &str = "--scrape";
    // Quoted redacted: the URL may hold a password, which is refused below but never echoed.
    let shown = crate::http::redact_str(raw);
    let (job, url) = raw.split_once('=').ok_or_else(|| {
        err(
            FLAG,
            format!("{shown:?} is not JOB=URL, e.g. node-exporter=http://127.0.0.1:9100/metrics"),
        )
    })?;
    let job = job.trim();
    if job.is_empty() {
        return Err(err(FLAG, format!("{shown:?}: the job name is empty")));
    }
    let url_text = url.trim();
    let url = exporter_url(
        url_text,
        "it would show in the process list; use basic_auth.username and basic_auth.password_file in a --config-file scrape entry",
    )
        .map_err(|r| err(FLAG, format!("{job}: {r}")))?;
    // Nothing to check with no settings, but the names go into TLS messages at run time: a
    // certificate problem points at the config file's key that fixes it.
    let access = access::validate(&AccessSpec::default(), &url, &[], &|f| {
        format!("{} in a --config-file scrape entry", scrape_key(f))
    })
    .map_err(|e| err(FLAG, format!("{job}: {}", e.reason)))?;
    // As written (`http://x:80/` stays so: the parsed URL drops a default port).
    let shown = format!("{job}={}", crate::http::redact_str(url_text));
    Ok(Found {
        reference: format!("--scrape {shown}"),
        origin: shown,
        target: TargetSettings {
            job: job.to_owned(),
            endpoint: Endpoint::Exporter { url, access },
            interval,
            timeout,
            honor_labels: false,
            honor_timestamps: true,
            limits: Limits::default(),
            labels: Vec::new(),
        },
        from_file: false,
    })
}

/// A `--kubelet-scrape` path: `/metrics` or under it, as the kubelet serves them.
fn kubelet_path<'a>(path: &'a str, s: &Sources) -> Result<&'a str, String> {
    if s.kubelet_is_file {
        return Err("needs a kubelet to scrape, and --kubelet-url is a file:// summary".to_owned());
    }
    let under = path == "/metrics" || path.starts_with("/metrics/");
    let clean = !path.contains(['?', '#', '\\'])
        && !path.chars().any(char::is_whitespace)
        && path
            .split('/')
            .skip(1)
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if !under || !clean {
        return Err(format!(
            "{path:?} is not a metrics path of the kubelet: /metrics or a path under it (/metrics/probes, /metrics/resource, /metrics/cadvisor, /metrics/slis)"
        ));
    }
    // Beside the summary poll, the poller makes room for the endpoint (`Poller::scraped_too`):
    // the summary's families of that `metrics_path` are left to it.
    Ok(path)
}

/// An exporter's URL: http or https, with a host, without credentials (`instead` says why,
/// and where they go).
fn exporter_url(s: &str, instead: &str) -> Result<reqwest::Url, String> {
    let shown = crate::http::redact_str(s);
    let url = reqwest::Url::parse(s).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => {}
        "http" | "https" => return Err(format!("{shown:?} has no host")),
        other => return Err(format!("scheme {other:?} is not http or https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown:?}: user:password in the URL is not taken: {instead}"
        ));
    }
    Ok(url)
}

/// The `instance` label of an exporter target: its URL's host and port, the scheme's port
/// when the URL has none. `None` for a kubelet target (the node name, known once it answers).
fn instance(t: &TargetSettings) -> Option<String> {
    match &t.endpoint {
        Endpoint::Exporter { url, .. } => Some(format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        )),
        Endpoint::Kubelet { .. } | Endpoint::Agent => None,
    }
}

/// Whether `a` and `b` would write the same series: the same job, instance and labels. Two
/// kubelet targets share the node's instance; their paths (refused twice) tell them apart.
fn same_series(a: &TargetSettings, b: &TargetSettings) -> bool {
    let sorted = |t: &TargetSettings| {
        let mut l = t.labels.clone();
        l.sort();
        l
    };
    let (Some(ia), Some(ib)) = (instance(a), instance(b)) else {
        return false;
    };
    a.job == b.job && ia == ib && sorted(a) == sorted(b)
}

/// How a config-file entry writes an access setting, under `scrape[i].`.
fn scrape_key(f: Field) -> &'static str {
    match f {
        Field::BearerTokenFile => "bearer_token_file",
        Field::BasicAuthUsername => "basic_auth.username",
        Field::BasicAuthPasswordFile => "basic_auth.password_file",
        Field::CaFile => "tls_config.ca_file",
        Field::CertFile => "tls_config.cert_file",
        Field::KeyFile => "tls_config.key_file",
        Field::TlsServerName => "tls_config.server_name",
        Field::InsecureSkipVerify => "tls_config.insecure_skip_verify",
        Field::ProxyUrl => "proxy_url",
        Field::Header => "http_headers",
        Field::Url => "url",
    }
}

/// One URL of a `scrape` entry, before its access settings are checked against it.
struct Written<'a> {
    url: reqwest::Url,
    /// Its `static_configs` entry's labels, sorted.
    labels: Vec<(String, String)>,
    /// `scrape[0].url` or `scrape[0].static_configs[0].targets[1]`.
    key: String,
    span: &'a marked_yaml::Span,
}

/// One `scrape` entry: a target per URL (`url`, or each of `static_configs`' targets).
fn from_entry(
    path: &Path,
    i: usize,
    e: &ScrapeEntry,
    s: &Sources,
) -> Result<Vec<Found>, ConfigError> {
    let key = |name: &str| format!("scrape[{i}].{name}");
    let fail = |reason: String| err("--config-file", reason);
    let bad = |value: &Spanned<String>, name: &str, reason: &str| {
        fail(at(path, value, &key(name), reason))
    };
    let job = e.job_name.trim();
    if job.is_empty() {
        return Err(bad(&e.job_name, "job_name", "must not be empty"));
    }
    let interval = match &e.scrape_interval {
        Some(v) => {
            let d = prometheus_duration(v)
                .and_then(positive)
                .map_err(|r| bad(v, "scrape_interval", &r))?;
            let floor = crate::cli::interval_floor();
            if d < floor {
                return Err(bad(
                    v,
                    "scrape_interval",
                    &format!("must be at least {}", humantime::format_duration(floor)),
                ));
            }
            d
        }
        None => s.interval,
    };
    let timeout = match &e.scrape_timeout {
        Some(v) => {
            let d = prometheus_duration(v)
                .and_then(positive)
                .map_err(|r| bad(v, "scrape_timeout", &r))?;
            if d > interval {
                let from = if e.scrape_interval.is_some() {
                    "scrape_interval"
                } else {
                    "--interval, the default scrape_interval"
                };
                return Err(bad(
                    v,
                    "scrape_timeout",
                    &format!(
                        "must not be longer than {from} ({})",
                        humantime::format_duration(interval)
                    ),
                ));
            }
            d
        }
        // As Prometheus does with its global scrape_timeout: cut to a shorter interval.
        None => s
            .scrape_timeout
            .map_or(default_timeout(interval), |t| t.min(interval)),
    };
    let sample_limit = match &e.sample_limit {
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            bad(
                v,
                "sample_limit",
                &format!(
                    "{:?} is not a whole number of samples (0: no limit)",
                    v.as_str()
                ),
            )
        })?,
        None => 0,
    };
    let body_size_limit = match &e.body_size_limit {
        Some(v) => prometheus_size(v)
            .and_then(|n| usize::try_from(n).map_err(|_| "too large".to_owned()))
            .map_err(|r| bad(v, "body_size_limit", &r))?,
        None => 0,
    };

    // The URLs, each with its own labels and where it was written.
    let mut urls: Vec<Written> = Vec::new();
    let credentials_hint =
        "a password would show in the file; use basic_auth.username and basic_auth.password_file";
    match (&e.url, &e.static_configs) {
        (Some(_), Some(sc)) => {
            return Err(fail(at(
                path,
                sc,
                &key("static_configs"),
                "cannot be given with url: give one target as url, or targets in static_configs",
            )))
        }
        (None, None) => {
            return Err(bad(
                &e.job_name,
                "job_name",
                "the entry has no target: give url (http://HOST:PORT/PATH) or static_configs",
            ))
        }
        (Some(u), None) => {
            for (value, name) in [(&e.scheme, "scheme"), (&e.metrics_path, "metrics_path")] {
                if let Some(v) = value {
                    return Err(bad(
                        v,
                        name,
                        "cannot be given with url, which holds the scheme and the path (or use static_configs)",
                    ));
                }
            }
            let url = exporter_url(u.trim(), credentials_hint).map_err(|r| bad(u, "url", &r))?;
            urls.push(Written {
                url,
                labels: Vec::new(),
                key: key("url"),
                span: u.span(),
            });
        }
        (None, Some(sc)) => {
            let scheme = match &e.scheme {
                Some(v) if matches!(v.trim(), "http" | "https") => v.trim(),
                Some(v) => {
                    return Err(bad(
                        v,
                        "scheme",
                        &format!("{:?} is not http or https", v.as_str()),
                    ))
                }
                None => "http",
            };
            let metrics_path = match &e.metrics_path {
                Some(v) => {
                    let p = v.trim();
                    if !p.starts_with('/')
                        || p.contains(['?', '#'])
                        || p.chars().any(char::is_whitespace)
                    {
                        return Err(bad(
                            v,
                            "metrics_path",
                            &format!("{p:?} is not a path such as /metrics (a query goes into url; params is not supported)"),
                        ));
                    }
                    p
                }
                None => "/metrics",
            };
            for (j, c) in sc.iter().enumerate() {
                let labels =
                    static_labels(path, &key(&format!("static_configs[{j}].labels")), c, s)?;
                for (k, t) in c.targets.iter().enumerate() {
                    let name = format!("static_configs[{j}].targets[{k}]");
                    let url = static_url(scheme, t.trim(), metrics_path)
                        .map_err(|r| bad(t, &name, &r))?;
                    urls.push(Written {
                        url,
                        labels: labels.clone(),
                        key: key(&name),
                        span: t.span(),
                    });
                }
            }
            if urls.is_empty() {
                return Err(fail(at(
                    path,
                    sc,
                    &key("static_configs"),
                    "lists no target (targets: [HOST:PORT, ...])",
                )));
            }
        }
    }

    use crate::remote_write::access::Field as F;
    let text = |f: F| e.text(f).map(|v| v.trim().to_owned());
    let spec = access_in_sandbox(
        AccessSpec {
            bearer_token_file: text(F::BearerTokenFile).map(Into::into),
            basic_auth_username: text(F::BasicAuthUsername),
            basic_auth_password_file: text(F::BasicAuthPasswordFile).map(Into::into),
            ca_file: text(F::CaFile).map(Into::into),
            cert_file: text(F::CertFile).map(Into::into),
            key_file: text(F::KeyFile).map(Into::into),
            tls_server_name: text(F::TlsServerName),
            insecure_skip_verify: e
                .tls_config
                .as_ref()
                .and_then(|t| t.insecure_skip_verify.as_ref())
                .is_some_and(|b| **b),
            proxy_url: text(F::ProxyUrl),
        },
        s.sandbox,
    );
    let mut out = Vec::with_capacity(urls.len());
    for Written {
        url,
        labels,
        key: url_key,
        span: url_span,
    } in urls
    {
        let scheme_key = if e.url.is_some() {
            key("url")
        } else {
            key("scheme")
        };
        let access = access::validate(&spec, &url, &[], &|f| match f {
            F::Url => scheme_key.clone(),
            f => key(scrape_key(f)),
        })
        .map_err(|ae| {
            let span = match ae.field {
                F::Url => url_span,
                f => e.span(f),
            };
            fail(at_span(path, span, &key(scrape_key(ae.field)), &ae.reason))
        })?;
        let line = url_span
            .start()
            .map_or_else(String::new, |m| format!(" (line {})", m.line()));
        out.push(Found {
            origin: at_span(path, url_span, &url_key, "")
                .trim_end_matches(": ")
                .to_owned(),
            reference: format!("{url_key}{line}"),
            target: TargetSettings {
                job: job.to_owned(),
                endpoint: Endpoint::Exporter { url, access },
                interval,
                timeout,
                honor_labels: e.honor_labels.as_ref().is_some_and(|b| **b),
                honor_timestamps: e.honor_timestamps.as_ref().is_none_or(|b| **b),
                limits: Limits {
                    body_size_limit,
                    sample_limit,
                },
                labels,
            },
            from_file: true,
        });
    }
    Ok(out)
}

/// A `static_configs` entry's `labels`, checked: valid names, none that kubelet-push sets
/// itself, no empty value.
fn static_labels(
    path: &Path,
    key: &str,
    c: &crate::config_file::StaticConfig,
    s: &Sources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut labels = Vec::with_capacity(c.labels.len());
    for (name, value) in &c.labels {
        target_label(name, value, s.external_labels).map_err(|r| {
            err(
                "--config-file",
                at(path, name, &format!("{key}.{}", name.as_str()), &r),
            )
        })?;
        labels.push((name.as_str().to_owned(), value.as_str().to_owned()));
    }
    labels.sort();
    Ok(labels)
}

/// Whether a target may add label `name` with `value` to its samples.
fn target_label(name: &str, value: &str, external: &[(String, String)]) -> Result<(), String> {
    if !valid_label_name(name) {
        return Err(format!(
            "{name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "{name:?}: names starting with __ are Prometheus's internal labels, never sent; scheme and metrics_path set what __scheme__ and __metrics_path__ would"
        ));
    }
    match name {
        "job" => return Err("job is set by kubelet-push itself: use job_name".to_owned()),
        "instance" => {
            return Err("instance is set by kubelet-push itself: the target's host:port".to_owned())
        }
        "node" => return Err("node is set by kubelet-push itself: the node's name".to_owned()),
        _ => {}
    }
    if external.iter().any(|(n, _)| n == name) {
        return Err(format!(
            "{name} is an external label (--label), already on every sample"
        ));
    }
    if value.is_empty() {
        return Err(format!("{name} has an empty value"));
    }
    Ok(())
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: the label names every receiver and Remote Write 1.0 take.
pub(super) fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
}

/// The URL Prometheus scrapes for a `static_configs` target: `scheme://HOST:PORT` and the
/// metrics path.
fn static_url(scheme: &str, target: &str, metrics_path: &str) -> Result<reqwest::Url, String> {
    if target.is_empty() {
        return Err("empty; a target is HOST:PORT".to_owned());
    }
    if target.contains("://") {
        return Err(format!(
            "{target:?} has a scheme; a target is HOST:PORT, and scheme says http or https"
        ));
    }
    if target.contains(['/', '?', '#', '@']) || target.chars().any(char::is_whitespace) {
        return Err(format!(
            "{target:?} is not HOST:PORT (the path is metrics_path; credentials go into basic_auth)"
        ));
    }
    let url = reqwest::Url::parse(&format!("{scheme}://{target}{metrics_path}"))
        .map_err(|e| format!("{target:?} is not HOST:PORT: {e}"))?;
    if url.host().is_none() {
        return Err(format!("{target:?} has no host"));
    }
    Ok(url)
}

fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

/// A duration in Prometheus's syntax (`model.ParseDuration`): whole numbers with the units
/// `y` (365 days), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and from the largest to the
/// smallest (`1m30s`, not `30s1m`), or `0`.
pub fn prometheus_duration(s: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let bad = || format!("{s:?} is not a duration (Prometheus's syntax: 15s, 1m30s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..len];
        rest = &rest[len..];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (Prometheus's units: ms, s, m, h, d, w, y)"
            ));
        };
        if pos < next_unit {
            return Err(bad());
        }
        next_unit = pos + 1;
        ms = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| ms.checked_add(v))
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    Ok(Duration::from_millis(ms))
}

/// A size in Prometheus's syntax (`units.ParseBase2Bytes`, what `body_size_limit` takes): a
/// number, with a fraction if wanted, and a unit, repeated (`1MB512KB`), or `0`. Every unit
/// counts in powers of 1024, with or without the `i`: `B`, `KB` or `KiB`, `MB` or `MiB`, `GB`
/// or `GiB`, `TB` or `TiB`, `PB` or `PiB`, `EB` or `EiB`. Like Prometheus, a number without a
/// unit and the SI spelling `kB` are refused.
pub fn prometheus_size(s: &str) -> Result<u64, String> {
    const UNITS: [(&str, &str, u32); 7] = [
        ("B", "B", 0),
        ("KB", "KiB", 10),
        ("MB", "MiB", 20),
        ("GB", "GiB", 30),
        ("TB", "TiB", 40),
        ("PB", "PiB", 50),
        ("EB", "EiB", 60),
    ];
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let bad = || {
        format!("{s:?} is not a size (Prometheus's syntax: a number and a unit, 512KiB, 10MB, 1.5GB; 0: no limit)")
    };
    if s.is_empty() {
        return Err(bad());
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} is negative (0: no limit)"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let n: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(&(_, _, shift)) = UNITS.iter().find(|(a, b, _)| unit == *a || unit == *b) else {
            return Err(match unit {
                "" => format!("{s:?} has no unit; Prometheus needs one: {number}B for bytes"),
                "kB" | "kiB" => format!(
                    "{s:?}: Prometheus counts sizes in powers of 1024 and refuses {unit:?}; write KB or KiB"
                ),
                _ => format!(
                    "{s:?}: unknown unit {unit:?} (B, KB or KiB, MB or MiB, GB or GiB, TB or TiB, all powers of 1024)"
                ),
            });
        };
        total += n * (1u64 << shift) as f64;
    }
    // 2^63, where Prometheus's int64 overflows too.
    if total >= 9.223_372_036_854_776e18 {
        return Err(format!("{s:?} is too large"));
    }
    // Truncated toward zero, as Prometheus does.
    Ok(total as u64)
}

/// The `check-config` lines of every target, numbered from 1: `scrape N key: value`.
pub(super) fn describe(targets: &[TargetSettings], line: &mut dyn FnMut(&str, &dyn Display)) {
    if targets.is_empty() {
        line("scrape", &"none");
    }
    for (i, t) in targets.iter().enumerate() {
        let n = i + 1;
        let mut put = |name: &str, value: &dyn Display| line(&format!("scrape {n} {name}"), value);
        put("job", &t.job);
        match &t.endpoint {
            Endpoint::Exporter { url, .. } => {
                put("url", &crate::http::redact(url));
                put("instance", &instance(t).unwrap_or_default());
            }
            Endpoint::Kubelet { path } => {
                put(
                    "kubelet path",
                    &format!("{path} (through kubelet-url, with its token, CA and proxy)"),
                );
                put("instance", &"(the node name)");
            }
            // Never in the list: `--self-metrics` is printed on its own line.
            Endpoint::Agent => put("agent", &"its own metrics"),
        }
        put("interval", &humantime::format_duration(t.interval));
        put("timeout", &humantime::format_duration(t.timeout));
        put("honor-labels", &t.honor_labels);
        put("honor-timestamps", &t.honor_timestamps);
        let limit = |n: usize, unit: &str| {
            if n == 0 {
                "none".to_owned()
            } else {
                format!("{n}{unit}")
            }
        };
        put("sample-limit", &limit(t.limits.sample_limit, ""));
        put(
            "body-size-limit",
            &limit(t.limits.body_size_limit, " bytes"),
        );
        let labels: Vec<String> = t.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
        put("labels", &format!("[{}]", labels.join(", ")));
        if let Endpoint::Exporter { access, .. } = &t.endpoint {
            put("credentials", &credentials(access));
        }
    }
}

/// The access settings of a target that are set, as the config file's keys with their files
/// (never a secret's content): `bearer_token_file /etc/x, tls_config.ca_file /etc/ca.crt`.
fn credentials(access: &Access) -> String {
    let set: Vec<String> = access
        .describe()
        .into_iter()
        .filter(|(_, v)| v != "none" && v != "false" && !v.starts_with("none ("))
        .map(|(f, v)| format!("{} {v}", scrape_key(f)))
        .collect();
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.join(", ")
    }
}

#[cfg(test)]
mod tests;
