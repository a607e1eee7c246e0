//! Raw flags → a validated [`Config`], once, at start-up. Every problem becomes a
//! [`ConfigError`] naming the flag, which `main` turns into exit code 64; nothing is left to
//! fail mid-run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use crate::cli::AgentArgs;
use crate::kubelet::client::{KubeletSettings, Source};
use crate::remote_write::client::PROTOCOL_HEADERS;
use crate::remote_write::Protocol;

/// Where a pod finds its service-account credentials; used when no token or CA file is given.
const SA_DIR: &str = "var/run/secrets/kubernetes.io/serviceaccount";
const SA_TOKEN: &str = "token";
const SA_CA: &str = "ca.crt";

/// Set by containerd inside a Windows HostProcess container: the directory that holds the
/// container's own files and volume mounts. The process itself sees the host's file system,
/// so a volume mounted at `/var/run/secrets/...` appears under this directory (containerd
/// 1.6), or at `C:\var\run\secrets\...` where the runtime binds it in place (containerd 1.7+).
const SANDBOX_MOUNT_POINT: &str = "CONTAINER_SANDBOX_MOUNT_POINT";

/// Label names our metrics use themselves; a `--label` with one of them would collide.
const RESERVED_LABELS: [&str; 18] = [
    "job",
    "instance",
    "node",
    "namespace",
    "pod",
    "container",
    "interface",
    "volume",
    "persistentvolumeclaim",
    "system_container",
    "failure_type",
    "scope",
    "make",
    "model",
    "acc_id",
    "metrics_path",
    "image",
    "name",
];

#[derive(Debug, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub reason: String,
}

fn err(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        reason: reason.into(),
    }
}

/// What one run does after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Poll every interval and push, until shut down.
    Run,
    /// Poll and push once; fail when either fails.
    Once,
    /// Poll once and print the samples instead of pushing.
    DryRun,
}

#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Auth, TLS and proxy toward the receiver, files loaded and checked.
    pub access: crate::remote_write::access::Access,
}

/// How requests are buffered and retried.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub buffer_max_bytes: u64,
    /// `None`: buffer in memory.
    pub buffer_dir: Option<PathBuf>,
    pub max_sample_age: Option<Duration>,
    pub shutdown_timeout: Duration,
}

/// The smallest buffer accepted: one poll of a large node.
const MIN_BUFFER_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct Config {
    pub kubelet: KubeletSettings,
    /// `None` only in dry-run mode.
    pub remote: Option<RemoteSettings>,
    pub mode: Mode,
    pub interval: Duration,
    pub job: String,
    /// Overrides the summary's `nodeName` for the `node` and `instance` labels.
    pub node_name: Option<String>,
    pub external_labels: Vec<(String, String)>,
    /// Whether pod metadata is asked from the kubelet's `/pods`.
    pub kubelet_pods: bool,
    /// `--pod-label`: each pod label and the metric label it becomes.
    pub pod_labels: Vec<(String, String)>,
    pub max_stats_age: Duration,
    pub max_samples_per_send: usize,
    /// `--remote-write-version`: the protocol new requests are encoded in until a receiver
    /// shows it does not speak it (see [`crate::remote_write::Negotiated`]).
    pub remote_protocol: Protocol,
    pub delivery: Delivery,
    pub listen_address: Option<std::net::SocketAddr>,
}

impl Config {
    /// Validates `args`. `remote_required` is false for the demo, which brings its own
    /// receiver.
    pub fn from_args(args: &AgentArgs, remote_required: bool) -> Result<Self, ConfigError> {
        let source = parse_kubelet_url(&args.kubelet_url)?;
        let mode = match (args.dry_run, args.once) {
            (true, _) => Mode::DryRun,
            (false, true) => Mode::Once,
            (false, false) => Mode::Run,
        };
        let remote = match (&args.remote_url, mode) {
            (_, Mode::DryRun) => None,
            (Some(url), _) => {
                let url = parse_remote_url(url)?;
                let headers = parse_headers(&args.remote_headers)?;
                let access = crate::remote_write::access::validate(
                    &args.remote_access.spec(),
                    &url,
                    &headers,
                    &|f| f.flag().to_owned(),
                )
                .map_err(|e| err(e.field.flag(), e.reason))?;
                Some(RemoteSettings {
                    url,
                    timeout: args.remote_timeout,
                    headers,
                    access,
                })
            }
            (None, _) if remote_required => return Err(err(
                "--remote-url",
                "required (or KUBELET_PUSH_REMOTE_URL); use --dry-run to print instead of pushing",
            )),
            (None, _) => None,
        };
        if args.job.is_empty() {
            return Err(err("--job", "must not be empty"));
        }
        if args.node_name.as_deref() == Some("") {
            return Err(err("--node-name", "must not be empty"));
        }
        if args.max_samples_per_send == 0 {
            return Err(err("--max-samples-per-send", "must be at least 1"));
        }
        let remote_protocol = match args.remote_write_version.trim() {
            "1" => Protocol::V1,
            "2" => Protocol::V2,
            other => {
                return Err(err(
                    "--remote-write-version",
                    format!("must be 1 (Remote Write 1.0) or 2 (Remote Write 2.0), not {other:?}"),
                ))
            }
        };
        let sandbox = std::env::var_os(SANDBOX_MOUNT_POINT).map(PathBuf::from);
        let token_file = match &args.kubelet_token_file {
            Some(p) => Some(readable("--kubelet-token-file", p)?),
            None => service_account_file(SA_TOKEN, sandbox.as_deref()),
        };
        let ca_file = match &args.kubelet_ca_file {
            Some(p) => Some(readable("--kubelet-ca-file", p)?),
            None => service_account_file(SA_CA, sandbox.as_deref()),
        };
        if args.min_backoff > args.max_backoff {
            return Err(err(
                "--max-backoff",
                format!(
                    "must not be shorter than --min-backoff ({:?})",
                    args.min_backoff
                ),
            ));
        }
        if args.buffer_max_size < MIN_BUFFER_BYTES {
            return Err(err("--buffer-max-size", "must be at least 64KiB"));
        }
        let external_labels = parse_labels(&args.labels)?;
        let pod_labels = parse_pod_labels(&args.pod_labels, &external_labels)?;
        if !pod_labels.is_empty() && !args.kubelet_pods {
            return Err(err(
                "--pod-label",
                "needs the pod metadata that --kubelet-pods=false turns off",
            ));
        }
        Ok(Config {
            kubelet: KubeletSettings {
                source,
                timeout: args.kubelet_timeout,
                token_file,
                ca_file,
                insecure_skip_verify: args.kubelet_insecure_skip_verify,
            },
            remote,
            mode,
            interval: args.interval.unwrap_or(Duration::from_secs(10)),
            job: args.job.clone(),
            node_name: args.node_name.clone(),
            external_labels,
            kubelet_pods: args.kubelet_pods,
            pod_labels,
            max_stats_age: args.max_stats_age,
            max_samples_per_send: args.max_samples_per_send,
            remote_protocol,
            delivery: Delivery {
                min_backoff: args.min_backoff,
                max_backoff: args.max_backoff,
                buffer_max_bytes: args.buffer_max_size,
                buffer_dir: args.buffer_dir.clone(),
                max_sample_age: args.max_sample_age,
                shutdown_timeout: args.shutdown_timeout,
            },
            listen_address: args.listen_address,
        })
    }
}

impl Config {
    /// The settings as `check-config` prints them: one `name: value` line each, in flag
    /// terms, URLs redacted and header values never shown.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
        };
        let mut out = String::new();
        let mut line = |name: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{name}: {value}");
        };
        let mode = match self.mode {
            Mode::Run => "run",
            Mode::Once => "once",
            Mode::DryRun => "dry-run",
        };
        line("mode", &mode);
        let kubelet = match &self.kubelet.source {
            Source::Http(u) => crate::http::redact(u),
            Source::File(p) => format!("file {}", p.display()),
        };
        line("kubelet-url", &kubelet);
        line("kubelet-token-file", &path(&self.kubelet.token_file));
        line("kubelet-ca-file", &path(&self.kubelet.ca_file));
        line(
            "kubelet-insecure-skip-verify",
            &self.kubelet.insecure_skip_verify,
        );
        line(
            "kubelet-timeout",
            &humantime::format_duration(self.kubelet.timeout),
        );
        match &self.remote {
            Some(r) => {
                line("remote-url", &crate::http::redact(&r.url));
                let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
                line(
                    "remote-header",
                    &format!("[{}] (values hidden)", names.join(", ")),
                );
                line("remote-timeout", &humantime::format_duration(r.timeout));
                for (name, value) in r.access.describe() {
                    line(name, &value);
                }
            }
            None => line("remote-url", &"none"),
        }
        line("interval", &humantime::format_duration(self.interval));
        line("job", &self.job);
        line(
            "node-name",
            &self
                .node_name
                .as_deref()
                .unwrap_or("(the summary's nodeName)"),
        );
        let labels: Vec<String> = self
            .external_labels
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        line("label", &format!("[{}]", labels.join(", ")));
        line("kubelet-pods", &self.kubelet_pods);
        let pod_labels: Vec<String> = self
            .pod_labels
            .iter()
            .map(|(from, to)| format!("{from} as {to}"))
            .collect();
        line("pod-label", &format!("[{}]", pod_labels.join(", ")));
        line(
            "max-stats-age",
            &humantime::format_duration(self.max_stats_age),
        );
        line("max-samples-per-send", &self.max_samples_per_send);
        let version = match self.remote_protocol {
            Protocol::V1 => "1",
            Protocol::V2 => "2 (1 for a receiver that does not take 2)",
        };
        line("remote-write-version", &version);
        let d = &self.delivery;
        let buffer = match &d.buffer_dir {
            Some(dir) => dir.display().to_string(),
            None => "none (in memory)".to_owned(),
        };
        line("buffer-dir", &buffer);
        line("buffer-max-size", &format!("{} bytes", d.buffer_max_bytes));
        line("min-backoff", &humantime::format_duration(d.min_backoff));
        line("max-backoff", &humantime::format_duration(d.max_backoff));
        line(
            "max-sample-age",
            &d.max_sample_age.map_or_else(
                || "off".to_owned(),
                |a| humantime::format_duration(a).to_string(),
            ),
        );
        line(
            "shutdown-timeout",
            &humantime::format_duration(d.shutdown_timeout),
        );
        line(
            "listen-address",
            &self
                .listen_address
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
        );
        out
    }
}

/// The service-account file `name` of this pod, if it has one: under the HostProcess sandbox
/// when there is one, else at the standard path (on Windows relative to the current drive's
/// root, which is where containerd 1.7+ binds the volume).
fn service_account_file(name: &str, sandbox: Option<&Path>) -> Option<PathBuf> {
    let standard = Path::new("/").join(SA_DIR).join(name);
    let in_sandbox = sandbox.map(|root| root.join(SA_DIR).join(name));
    in_sandbox
        .into_iter()
        .chain(std::iter::once(standard))
        .find(|p| p.is_file())
}

fn readable(flag: &'static str, path: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::File::open(path)
        .map_err(|e| err(flag, format!("cannot read {}: {e}", path.display())))?;
    Ok(path.to_path_buf())
}

fn parse_kubelet_url(s: &str) -> Result<Source, ConfigError> {
    const FLAG: &str = "--kubelet-url";
    if let Some(rest) = s.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(err(FLAG, "file:// needs a path, e.g. file://summary.json"));
        }
        return Ok(Source::File(file_url_path(s, rest)));
    }
    let url = reqwest::Url::parse(s).map_err(|e| err(FLAG, format!("{s:?} is not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(Source::Http(url)),
        "http" | "https" => Err(err(FLAG, format!("{s:?} has no host"))),
        other => Err(err(
            FLAG,
            format!("scheme {other:?} is not http, https or file"),
        )),
    }
}

/// The file a `file://` URL names. A URL this platform can turn into a path is taken as a
/// URL (RFC 8089, percent-decoded): `file:///var/x.json` on Linux; `file:///C:/x.json`,
/// `file://C:/x.json` and `file://C:\x.json` on Windows. Anything else is the rest taken
/// literally, so a relative path typed by hand (`file://summary.json`, which a URL parser
/// would read as a host name) works everywhere; `file://server/share` is not read as UNC.
fn file_url_path(url: &str, rest: &str) -> PathBuf {
    reqwest::Url::parse(url)
        .ok()
        // A host would be a UNC server on Windows (`\\tests\fixtures`): a relative path
        // such as `file://tests/x.json` is never meant as one.
        .filter(|u| matches!(u.host_str(), None | Some("" | "localhost")))
        .and_then(|u| u.to_file_path().ok())
        .unwrap_or_else(|| PathBuf::from(rest))
}

fn parse_remote_url(s: &str) -> Result<reqwest::Url, ConfigError> {
    const FLAG: &str = "--remote-url";
    let url = reqwest::Url::parse(s).map_err(|e| err(FLAG, format!("not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(err(FLAG, "the URL has no host")),
        other => Err(err(FLAG, format!("scheme {other:?} is not http or https"))),
    }
}

fn split_pair<'a>(flag: &'static str, s: &'a str) -> Result<(&'a str, &'a str), ConfigError> {
    s.split_once('=')
        .ok_or_else(|| err(flag, format!("{s:?} is not NAME=VALUE")))
}

/// `--pod-label` names and the metric labels they become, kube-state-metrics' way:
/// `label_` + the name with every character outside `[a-zA-Z0-9_]` made `_`. Two names that
/// become the same label, or one that collides with a `--label`, are refused.
fn parse_pod_labels(
    raw: &[String],
    external: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    const FLAG: &str = "--pod-label";
    let max = crate::pipeline::convert::MAX_POD_LABELS;
    if raw.len() > max {
        return Err(err(FLAG, format!("at most {max} may be given")));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for name in raw {
        let name = name.trim();
        if name.is_empty() {
            return Err(err(FLAG, "a pod label name must not be empty"));
        }
        let label = format!(
            "label_{}",
            name.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                })
                .collect::<String>()
        );
        if let Some((other, _)) = out.iter().find(|(_, l)| *l == label) {
            return Err(err(
                FLAG,
                format!("{name:?} and {other:?} would both be sent as {label}"),
            ));
        }
        if external.iter().any(|(n, _)| *n == label) {
            return Err(err(
                FLAG,
                format!("{name:?} would be sent as {label}, which --label sets too"),
            ));
        }
        out.push((name.to_owned(), label));
    }
    Ok(out)
}

fn parse_labels(raw: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    const FLAG: &str = "--label";
    let mut out: Vec<(String, String)> = Vec::new();
    for item in raw {
        let (name, value) = split_pair(FLAG, item)?;
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(err(
                FLAG,
                format!("{name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            ));
        }
        if name.starts_with("__") {
            return Err(err(
                FLAG,
                format!("{name:?}: names starting with __ are reserved"),
            ));
        }
        if RESERVED_LABELS.contains(&name) {
            let hint = match name {
                "job" => "; use --job",
                "node" | "instance" => "; use --node-name",
                _ => "",
            };
            return Err(err(
                FLAG,
                format!("{name:?} is set by kubelet-push itself{hint}"),
            ));
        }
        if value.is_empty() {
            return Err(err(FLAG, format!("{name:?} has an empty value")));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(err(FLAG, format!("{name:?} is given twice")));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn parse_headers(raw: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    const FLAG: &str = "--remote-header";
    let mut out = Vec::new();
    for item in raw {
        let (name, value) = split_pair(FLAG, item)?;
        let name = name.trim();
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(FLAG, format!("{name:?} is not a valid header name")))?;
        if PROTOCOL_HEADERS.contains(&header.as_str()) {
            return Err(err(
                FLAG,
                format!("{name} is set by the Remote Write protocol and cannot be overridden"),
            ));
        }
        // The value may be a credential: never echo it.
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
            err(
                FLAG,
                format!("the value of {name} is not a valid header value"),
            )
        })?;
        value.set_sensitive(true);
        out.push((header, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("kubelet-push").chain(args.iter().copied()),
        )
        .expect("flags parse");
        Config::from_args(&cli.agent, true)
    }

    #[test]
    fn pod_labels_become_kube_state_metrics_names() {
        let c = config(&["--remote-url=http://r/w"]).unwrap();
        assert!(c.kubelet_pods, "on by default");
        assert!(c.pod_labels.is_empty());
        let c = config(&[
            "--remote-url=http://r/w",
            "--pod-label",
            "app.kubernetes.io/name",
            "--pod-label=team",
        ])
        .unwrap();
        assert_eq!(
            c.pod_labels,
            vec![
                (
                    "app.kubernetes.io/name".into(),
                    "label_app_kubernetes_io_name".into()
                ),
                ("team".into(), "label_team".into()),
            ]
        );
        let c = config(&["--remote-url=http://r/w", "--kubelet-pods=false"]).unwrap();
        assert!(!c.kubelet_pods);
        let refused = |args: &[&str], want: &str| {
            let mut all = vec!["--remote-url=http://r/w"];
            all.extend_from_slice(args);
            let e = config(&all).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        };
        refused(
            &["--pod-label=a.b", "--pod-label=a/b"],
            "both be sent as label_a_b",
        );
        refused(
            &["--pod-label=team", "--label=label_team=x"],
            "--label sets too",
        );
        refused(&["--pod-label="], "must not be empty");
        refused(
            &["--pod-label=app", "--kubelet-pods=false"],
            "--kubelet-pods=false",
        );
        refused(&["--label=metrics_path=x"], "set by kubelet-push itself");
        let eleven: Vec<String> = (0..11).map(|i| format!("--pod-label=l{i}")).collect();
        let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
        refused(&eleven, "at most 10");
    }

    #[test]
    fn defaults() {
        let c = config(&["--remote-url", "http://127.0.0.1:9090/api/v1/write"]).unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.max_stats_age, Duration::from_secs(120));
        assert_eq!(c.job, "kubelet");
        assert_eq!(c.mode, Mode::Run);
        assert_eq!(c.remote_protocol, Protocol::V1);
        assert_eq!(c.max_samples_per_send, 2000);
        match &c.kubelet.source {
            Source::Http(u) => assert_eq!(u.as_str(), "https://127.0.0.1:10250/"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn remote_url_is_required_unless_dry_run() {
        let e = config(&[]).unwrap_err();
        assert_eq!(e.flag, "--remote-url");
        let c = config(&["--dry-run", "--kubelet-url", "file://x.json"]).unwrap();
        assert_eq!(c.mode, Mode::DryRun);
        assert!(c.remote.is_none());
        match c.kubelet.source {
            Source::File(p) => assert_eq!(p, PathBuf::from("x.json")),
            other => panic!("{other:?}"),
        }
    }

    fn file_source(url: &str) -> PathBuf {
        match parse_kubelet_url(url).unwrap() {
            Source::File(p) => p,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn file_urls_are_urls_and_relative_paths_stay_literal() {
        assert_eq!(file_source("file://x.json"), PathBuf::from("x.json"));
        assert_eq!(
            file_source("file://captures/node a.json"),
            PathBuf::from("captures/node a.json")
        );
        #[cfg(unix)]
        {
            assert_eq!(file_source("file:///x/y.json"), PathBuf::from("/x/y.json"));
            assert_eq!(
                file_source("file:///x/node%20a.json"),
                PathBuf::from("/x/node a.json")
            );
            assert_eq!(
                file_source("file://localhost/x/y.json"),
                PathBuf::from("/x/y.json")
            );
        }
        #[cfg(windows)]
        {
            let want = PathBuf::from(r"C:\x\y.json");
            assert_eq!(file_source("file:///C:/x/y.json"), want);
            assert_eq!(file_source("file://C:/x/y.json"), want);
            assert_eq!(file_source(r"file://C:\x\y.json"), want);
            assert_eq!(
                file_source("file:///c:/x/y%20z.json"),
                PathBuf::from(r"c:\x\y z.json")
            );
            assert_eq!(file_source(r"file://x\y.json"), PathBuf::from(r"x\y.json"));
        }
    }

    #[test]
    fn service_account_files_are_found_in_the_hostprocess_sandbox_first() {
        let sandbox = tempfile::tempdir().unwrap();
        let dir = sandbox.path().join(SA_DIR);
        assert_eq!(
            service_account_file(SA_TOKEN, Some(sandbox.path())),
            service_account_file(SA_TOKEN, None),
            "an empty sandbox falls back to the standard path"
        );
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SA_TOKEN), "t").unwrap();
        std::fs::write(dir.join(SA_CA), "c").unwrap();
        assert_eq!(
            service_account_file(SA_TOKEN, Some(sandbox.path())),
            Some(dir.join(SA_TOKEN))
        );
        assert_eq!(
            service_account_file(SA_CA, Some(sandbox.path())),
            Some(dir.join(SA_CA))
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        let r = ["--remote-url", "http://127.0.0.1:1/w"];
        let cases: &[(&[&str], &str)] = &[
            (&["--kubelet-url", "ftp://x"], "--kubelet-url"),
            (&["--kubelet-url", "file://"], "--kubelet-url"),
            (&["--label", "novalue"], "--label"),
            (&["--label", "1abc=x"], "--label"),
            (&["--label", "pod=x"], "--label"),
            (&["--label", "job=x"], "--label"),
            (&["--label", "__x=y"], "--label"),
            (&["--label", "a=x", "--label", "a=y"], "--label"),
            (&["--label", "a="], "--label"),
            (
                &["--remote-header", "Content-Type=text/plain"],
                "--remote-header",
            ),
            (&["--remote-header", "user-agent=x"], "--remote-header"),
            (&["--remote-header", "bad header=x"], "--remote-header"),
            (&["--max-samples-per-send", "0"], "--max-samples-per-send"),
            (&["--job", ""], "--job"),
            (
                &["--kubelet-token-file", "/nonexistent/token"],
                "--kubelet-token-file",
            ),
        ];
        for (extra, flag) in cases {
            let mut args: Vec<&str> = r.to_vec();
            args.extend_from_slice(extra);
            let e = config(&args).expect_err(&format!("{extra:?} should be rejected"));
            assert_eq!(e.flag, *flag, "{extra:?}: {e}");
        }
        let e = config(&["--remote-url", "localhost:9090"]).unwrap_err();
        assert_eq!(e.flag, "--remote-url");
    }

    #[test]
    fn describe_names_every_setting_and_hides_secrets() {
        let c = config(&[
            "--remote-url",
            "https://alice:hunter2@mimir.example:443/api/v1/push?api_key=s3cret",
            // Not Authorization: beside user:password in the URL that is refused.
            "--remote-header",
            "X-Scope-OrgID=tok3n",
            "--label",
            "cluster=edge-7",
            "--buffer-dir",
            "/var/lib/kubelet-push",
        ])
        .unwrap();
        let text = c.describe();
        // A distinctive user name: "user" is part of the remote-basic-auth-username line.
        for secret in ["hunter2", "alice", "s3cret", "tok3n"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        for line in [
            "mode: run\n",
            "remote-url: https://redacted@mimir.example/api/v1/push?redacted\n",
            "remote-header: [x-scope-orgid] (values hidden)\n",
            "label: [cluster=edge-7]\n",
            "buffer-dir: /var/lib/kubelet-push\n",
            "interval: 10s\n",
            "listen-address: off\n",
            "remote-write-version: 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn remote_write_version_is_1_or_2() {
        let r = "--remote-url=http://r/w";
        let c = config(&[r, "--remote-write-version", "2"]).unwrap();
        assert_eq!(c.remote_protocol, Protocol::V2);
        assert!(c
            .describe()
            .contains("remote-write-version: 2 (1 for a receiver that does not take 2)\n"));
        let c = config(&[r, "--remote-write-version=1"]).unwrap();
        assert_eq!(c.remote_protocol, Protocol::V1);
        for bad in ["3", "2.0", "v2", ""] {
            let e = config(&[r, "--remote-write-version", bad]).unwrap_err();
            assert_eq!(e.flag, "--remote-write-version", "{bad}");
            assert!(
                e.to_string().contains("must be 1 (Remote Write 1.0) or 2"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn labels_and_headers_parse() {
        let c = config(&[
            "--remote-url",
            "http://127.0.0.1:1/w",
            "--label",
            "cluster=prod",
            "--label",
            "Region=eu-west",
            "--remote-header",
            "X-Scope-OrgID=team-a",
        ])
        .unwrap();
        assert_eq!(
            c.external_labels,
            vec![
                ("cluster".into(), "prod".into()),
                ("Region".into(), "eu-west".into())
            ]
        );
        let h = &c.remote.unwrap().headers;
        assert_eq!(h[0].0.as_str(), "x-scope-orgid");
        assert_eq!(h[0].1.to_str().unwrap(), "team-a");
        assert!(h[0].1.is_sensitive());
    }
}
