//! Raw flags → a validated [`Config`], once, at start-up. Every problem becomes a
//! [`ConfigError`] naming the flag, which `main` turns into exit code 64; nothing is left to
//! fail mid-run.
//!
//! Not here: the types of the settings it validates, which belong to the modules they
//! configure (`kubelet::client::KubeletSettings`, `remote_write::access`, the metric filter in
//! `pipeline::filter`), and turning a [`Config`] into the poller's and senders' settings
//! (`agent`: `pipeline` and `sender` never import this module). The scrape targets are
//! validated in `config/scrape.rs`, where files are found (the HostProcess sandbox) in
//! `config/sandbox.rs`. Its tests are in `config/tests.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use crate::cli::AgentArgs;
use crate::kubelet::client::{KubeletSettings, Source};
use crate::pipeline::PollerSettings;
use crate::remote_write::client::PROTOCOL_HEADERS;
use crate::remote_write::Protocol;

mod error;
mod layered;
mod sandbox;
mod scrape;

use error::err;
pub use error::ConfigError;
pub use layered::{settle, SettleError, Settled};
#[cfg(test)]
use sandbox::SA_DIR;
use sandbox::{
    access_in_sandbox, in_sandbox, sandbox_mount_point, service_account_file, SA_CA, SA_TOKEN,
};

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

/// One destination: where requests go and how.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The protocol new requests are encoded in until the receiver shows it does not speak
    /// it (see [`crate::remote_write::Negotiated`]).
    pub protocol: Protocol,
    /// `--remote-write-version auto`: 2.0 first, and switches either way as the receiver
    /// shows what it takes ([`crate::remote_write::Negotiated::auto`]).
    pub auto: bool,
    /// Auth, TLS and proxy toward the receiver, files loaded and checked.
    pub access: crate::remote_write::access::Access,
    /// Whether 401, 403 and 407 are retried (`--remote-retry-auth-errors`, the file's
    /// `retry_auth_errors`; default true) or drop the request.
    pub retry_auth_errors: bool,
    /// The config file's `buffer-max-size` for this destination; `--buffer-max-size` when
    /// `None`.
    pub buffer_max_bytes: Option<u64>,
    /// The config file's `metric-allow` / `metric-deny` for this destination: applied after
    /// `--metric-allow` / `--metric-deny`, which every destination shares.
    pub metric_filter: Option<crate::pipeline::filter::MetricFilter>,
    /// The config file's `labels` (and `label`) for this destination, beside `--label`.
    pub labels: Vec<(String, String)>,
}

/// `--remote-timeout` when not given.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

impl RemoteSettings {
    /// A destination at `url` with the default settings.
    pub fn new(url: reqwest::Url) -> Self {
        RemoteSettings {
            url,
            timeout: DEFAULT_REMOTE_TIMEOUT,
            headers: Vec::new(),
            protocol: Protocol::V1,
            auto: false,
            access: crate::remote_write::access::Access::none(),
            retry_auth_errors: true,
            buffer_max_bytes: None,
            metric_filter: None,
            labels: Vec::new(),
        }
    }

    /// The subdirectory of `--buffer-dir` that holds this destination's buffer:
    /// `<host>-<port>-<hash>`, the host readable and the hash (64-bit FNV-1a, fixed here so
    /// the name never changes between releases) over the URL without its userinfo, so
    /// rotating a password in the URL keeps the backlog, while two URLs that differ only in
    /// path or query get two buffers.
    pub fn buffer_subdir(&self) -> String {
        let host: String = self
            .url
            .host_str()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let port = self.url.port_or_known_default().unwrap_or(0);
        let mut key = self.url.clone();
        let _ = key.set_username("");
        let _ = key.set_password(None);
        key.set_fragment(None);
        let hash = key
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        format!("{host}-{port}-{hash:016x}")
    }
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
    /// `--max-catch-up-size`: the most compressed bytes of a merged catch-up request.
    pub max_catch_up_bytes: u64,
}

/// The smallest buffer accepted: one poll of a large node.
const MIN_BUFFER_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct Config {
    /// What each poll asks and how its samples are labelled: the poller's own settings.
    pub poll: PollerSettings,
    /// Every destination, in the order given; empty only in dry-run mode (and for the demo,
    /// which brings its own receiver).
    pub remotes: Vec<RemoteSettings>,
    pub mode: Mode,
    pub max_samples_per_send: usize,
    pub delivery: Delivery,
    pub listen_address: Option<std::net::SocketAddr>,
    /// The exporters and kubelet endpoints scraped beside the summary poll: `--scrape`, then
    /// `--kubelet-scrape`, then the config file's `scrape` list, each in the order given.
    pub scrape_targets: Vec<crate::scrape::TargetSettings>,
    /// What is valid but likely not meant (a remote URL without a path, a destination that
    /// `--dry-run` leaves unused), one line each: logged at start, printed by
    /// `check-config`.
    pub warnings: Vec<String>,
    /// `--enable-reload`: `POST /-/reload` on the listen address reloads.
    pub enable_reload: bool,
    /// `--config-file`, as given: what a reload re-reads (`None`: nothing to reload).
    pub config_file: Option<PathBuf>,
    /// `--self-metrics`: push the agent's own metrics every interval (never in the demo,
    /// whose printer shows the node's).
    pub self_metrics: bool,
    /// What this configuration was validated from, so that a reload validates the same flags
    /// with the file as it is now ([`Config::reread`]).
    origin: std::sync::Arc<Origin>,
}

/// The flags (and the demo's setup) a [`Config`] was made from.
#[derive(Debug)]
struct Origin {
    args: AgentArgs,
    sandbox: Option<PathBuf>,
    demo: Option<DemoSetup>,
}

/// What the demo brings in place of the agent's kubelet and destination flags
/// ([`Config::for_demo`]).
#[derive(Debug, Clone)]
pub struct DemoSetup {
    /// The simulated kubelet's URL.
    pub kubelet: reqwest::Url,
    pub interval: Duration,
    /// The built-in receiver, used when the flags name no destination.
    pub receiver: RemoteSettings,
}

impl Config {
    /// Validates `args`: a destination is required unless `--dry-run`.
    pub fn from_args(args: &AgentArgs) -> Result<Self, ConfigError> {
        Self::from_args_in(args, sandbox_mount_point().as_deref(), None)
    }

    /// The demo's configuration: `args` validated as for a start, except that the kubelet is
    /// the demo's own (`demo.kubelet`: local, so no credentials and no proxy), polled every
    /// `demo.interval`, and that `demo.receiver` is the destination when the flags name none.
    #[cfg(feature = "demo")]
    pub fn for_demo(args: &AgentArgs, demo: DemoSetup) -> Result<Self, ConfigError> {
        Self::from_args_in(args, sandbox_mount_point().as_deref(), Some(demo))
    }

    /// The configuration the same flags give with `--config-file` as it is now: what a reload
    /// applies. The same validation as at start-up, so a bad file fails with the same error
    /// (file, line and key).
    pub fn reread(&self) -> Result<Self, ConfigError> {
        let o = &self.origin;
        Self::from_args_in(&o.args, o.sandbox.as_deref(), o.demo.clone())
    }

    /// [`Config::from_args`] with every file looked up [`in_sandbox`] `sandbox`, or
    /// [`Config::for_demo`] when `demo` is given.
    fn from_args_in(
        args: &AgentArgs,
        sandbox: Option<&Path>,
        demo: Option<DemoSetup>,
    ) -> Result<Self, ConfigError> {
        let source = match &demo {
            Some(d) => Source::Http(d.kubelet.clone()),
            None => parse_kubelet_url(&args.kubelet_url)?,
        };
        let mode = match (args.dry_run, args.once) {
            (true, _) => Mode::DryRun,
            (false, true) => Mode::Once,
            (false, false) => Mode::Run,
        };
        // Read in every mode: its scrape list applies to a dry run too.
        let file = match &args.config_file {
            Some(path) => {
                let path = in_sandbox(path, sandbox);
                let f = crate::config_file::load(&path).map_err(|e| err("--config-file", e.0))?;
                Some((path, f))
            }
            None => None,
        };
        let file = file.as_ref().map(|(p, f)| (p.as_path(), f));
        let mut warnings = Vec::new();
        let file_remotes = file.is_some_and(|(_, f)| f.remote_write.is_some());
        if mode == Mode::DryRun && (!args.remote_urls.is_empty() || file_remotes) {
            warnings.push(
                "--dry-run prints one poll and pushes nothing: the destinations given (--remote-url, the config file's remote-write) are not used".to_owned(),
            );
        }
        let mut remotes = match mode {
            Mode::DryRun => Vec::new(),
            Mode::Run | Mode::Once => remotes(args, file, sandbox)?,
        };
        if let (true, Some(d), false) = (remotes.is_empty(), &demo, mode == Mode::DryRun) {
            // The built-in receiver speaks both protocols: `--remote-write-version` applies.
            let (protocol, auto) = match &args.remote_write_version {
                Some(v) => parse_protocol(v).map_err(|r| err("--remote-write-version", r))?,
                None => (d.receiver.protocol, d.receiver.auto),
            };
            remotes.push(RemoteSettings {
                protocol,
                auto,
                ..d.receiver.clone()
            });
        }
        if remotes.is_empty() && mode != Mode::DryRun {
            return Err(err(
                "--remote-url",
                "required (or KUBELET_PUSH_REMOTE_URL, or a remote-write list in --config-file); use --dry-run to print instead of pushing",
            ));
        }
        let metric_filter =
            crate::pipeline::filter::MetricFilter::new(&args.metric_allow, &args.metric_deny)
                .map_err(|(flag, reason)| err(flag, reason))?;
        if args.job.is_empty() {
            return Err(err("--job", "must not be empty"));
        }
        if args.node_name.as_deref() == Some("") {
            return Err(err("--node-name", "must not be empty"));
        }
        if args.max_samples_per_send == 0 {
            return Err(err("--max-samples-per-send", "must be at least 1"));
        }
        // The demo's kubelet needs no credentials (never send it the pod's token), and a proxy
        // from the agent's environment does not apply to it: it is local.
        let (token_file, ca_file) = match &demo {
            Some(_) => (None, None),
            None => (
                match &args.kubelet_token_file {
                    Some(p) => Some(readable("--kubelet-token-file", &in_sandbox(p, sandbox))?),
                    None => service_account_file(SA_TOKEN, sandbox),
                },
                match &args.kubelet_ca_file {
                    Some(p) => Some(readable("--kubelet-ca-file", &in_sandbox(p, sandbox))?),
                    None => service_account_file(SA_CA, sandbox),
                },
            ),
        };
        let proxy = match (&args.kubelet_proxy_url, &source) {
            (None, _) => None,
            (Some(_), _) if demo.is_some() => None,
            (Some(_), Source::File(_)) => {
                return Err(err(
                    "--kubelet-proxy-url",
                    "does not apply to a file:// --kubelet-url",
                ))
            }
            (Some(raw), Source::Http(_)) => {
                Some(crate::http::ProxyUrl::parse(raw).map_err(|e| err("--kubelet-proxy-url", e))?)
            }
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
        if let (Some(dir), Mode::Run | Mode::Once) = (&args.buffer_dir, mode) {
            writable_dir(dir).map_err(|r| err("--buffer-dir", r))?;
        }
        for r in &remotes {
            if matches!(r.url.path(), "" | "/") {
                warnings.push(format!(
                    "remote URL {} has no path: receivers take writes at a path such as /api/v1/write (Prometheus, VictoriaMetrics), /api/v1/push (Mimir, Cortex, Loki) or /api/v1/receive (Thanos)",
                    crate::http::redact(&r.url)
                ));
            }
        }
        let external_labels = parse_labels(&args.labels)?;
        let pod_labels = parse_pod_labels(&args.pod_labels, &external_labels)?;
        if !pod_labels.is_empty() && !args.kubelet_pods {
            return Err(err(
                "--pod-label",
                "needs the pod metadata that --kubelet-pods=false turns off",
            ));
        }
        let interval = match &demo {
            Some(d) => d.interval,
            None => args.interval.unwrap_or(Duration::from_secs(10)),
        };
        // The demo polls its simulated kubelet, which serves no /metrics*: the kubelet-scrape
        // settings are refused on its command line (`cli::not_for_demo`) and ignored from the
        // environment, as the other kubelet settings are.
        let (kubelet_scrape, kubelet_summary) = match &demo {
            Some(_) => (&[][..], true),
            None => (&args.kubelet_scrape[..], args.kubelet_summary),
        };
        let scrape_targets = scrape::targets(&scrape::Sources {
            scrape: &args.scrape,
            kubelet_scrape,
            scrape_timeout: args.scrape_timeout,
            file: file.and_then(|(p, f)| f.scrape.as_deref().map(|s| (p, s))),
            job: &args.job,
            interval,
            external_labels: &external_labels,
            kubelet_is_file: matches!(source, Source::File(_)),
            sandbox,
        })?;
        if args.enable_reload && args.listen_address.is_none() {
            return Err(err(
                "--enable-reload",
                "needs --listen-address: POST /-/reload is served there (SIGHUP reloads without it)",
            ));
        }
        if !kubelet_summary && scrape_targets.is_empty() {
            return Err(err(
                "--kubelet-summary",
                "false leaves nothing to push: give --scrape, --kubelet-scrape or a scrape list in --config-file",
            ));
        }
        Ok(Config {
            poll: PollerSettings {
                kubelet: KubeletSettings {
                    source,
                    timeout: args.kubelet_timeout,
                    token_file,
                    ca_file,
                    insecure_skip_verify: args.kubelet_insecure_skip_verify,
                    proxy,
                },
                metric_filter,
                interval,
                job: args.job.clone(),
                node_name: args.node_name.clone(),
                external_labels,
                kubelet_pods: args.kubelet_pods,
                kubelet_summary,
                pod_labels,
                max_stats_age: args.max_stats_age,
            },
            remotes,
            mode,
            max_samples_per_send: args.max_samples_per_send,
            delivery: Delivery {
                min_backoff: args.min_backoff,
                max_backoff: args.max_backoff,
                buffer_max_bytes: args.buffer_max_size,
                buffer_dir: args.buffer_dir.clone(),
                max_sample_age: args.max_sample_age,
                shutdown_timeout: args.shutdown_timeout,
                max_catch_up_bytes: args.max_catch_up_size,
            },
            listen_address: args.listen_address,
            self_metrics: args.self_metrics && demo.is_none(),
            scrape_targets,
            warnings,
            enable_reload: args.enable_reload,
            config_file: args.config_file.clone(),
            origin: std::sync::Arc::new(Origin {
                args: args.clone(),
                sandbox: sandbox.map(Path::to_path_buf),
                demo,
            }),
        })
    }
}

impl Config {
    /// What the agent scrapes while it runs: the scrape targets, then the agent's own
    /// metrics when `--self-metrics` is on (a `--once` or `--dry-run` run has no health worth
    /// pushing). Start-up and a reload both read it, so a reload keeps the agent's own target.
    pub fn running_targets(&self) -> Vec<crate::scrape::TargetSettings> {
        let mut targets = self.scrape_targets.clone();
        if self.self_metrics && self.mode == Mode::Run {
            targets.push(crate::scrape::TargetSettings::agent(self.poll.interval));
        }
        targets
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
        let kubelet = match &self.poll.kubelet.source {
            Source::Http(u) => crate::http::redact(u),
            Source::File(p) => format!("file {}", p.display()),
        };
        line("kubelet-url", &kubelet);
        line("kubelet-token-file", &path(&self.poll.kubelet.token_file));
        line("kubelet-ca-file", &path(&self.poll.kubelet.ca_file));
        line(
            "kubelet-insecure-skip-verify",
            &self.poll.kubelet.insecure_skip_verify,
        );
        line(
            "kubelet-timeout",
            &humantime::format_duration(self.poll.kubelet.timeout),
        );
        line(
            "kubelet-proxy-url",
            &self
                .poll
                .kubelet
                .proxy
                .as_ref()
                .map_or("none (never HTTPS_PROXY or HTTP_PROXY)", |p| {
                    p.display.as_str()
                }),
        );
        if self.remotes.is_empty() {
            line("remote-url", &"none");
        }
        for (i, r) in self.remotes.iter().enumerate() {
            let n = i + 1;
            line(&format!("remote {n} url"), &crate::http::redact(&r.url));
            let headers: Vec<String> = r
                .headers
                .iter()
                .map(
                    |(name, value)| match (credential_header(name.as_str()), value.to_str()) {
                        (false, Ok(v)) => format!("{name}={v}"),
                        _ => format!("{name}=(hidden)"),
                    },
                )
                .collect();
            line(
                &format!("remote {n} header"),
                &format!("[{}]", headers.join(", ")),
            );
            if let Some(bytes) = r.buffer_max_bytes {
                line(
                    &format!("remote {n} buffer-max-size"),
                    &format!("{bytes} bytes"),
                );
            }
            if let Some(f) = &r.metric_filter {
                line(&format!("remote {n} metric filter"), f);
            }
            if !r.labels.is_empty() {
                let labels: Vec<String> =
                    r.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
                line(
                    &format!("remote {n} label"),
                    &format!("[{}]", labels.join(", ")),
                );
            }
            line(
                &format!("remote {n} timeout"),
                &humantime::format_duration(r.timeout),
            );
            let version = match (r.protocol, r.auto) {
                (_, true) => {
                    "auto (2, then 1 if the receiver does not take 2; 2 again if it refuses 1)"
                }
                (Protocol::V1, false) => "1",
                (Protocol::V2, false) => "2 (1 if the receiver does not take 2)",
            };
            line(&format!("remote {n} version"), &version);
            line(
                &format!("remote {n} retry-auth-errors"),
                &if r.retry_auth_errors {
                    "true (401, 403 and 407 are retried until the credentials work)"
                } else {
                    "false (401, 403 and 407 drop the request)"
                },
            );
            for (field, value) in r.access.describe() {
                line(&format!("remote {n} {}", field.key()), &value);
            }
            line(
                &format!("remote {n} buffer subdirectory"),
                &r.buffer_subdir(),
            );
        }
        match &self.poll.metric_filter {
            Some(f) => line("metric filter", f),
            None => line("metric filter", &"none (every metric is sent)"),
        }
        line("interval", &humantime::format_duration(self.poll.interval));
        line("job", &self.poll.job);
        line(
            "node-name",
            &self
                .poll
                .node_name
                .as_deref()
                .unwrap_or("(the summary's nodeName)"),
        );
        let labels: Vec<String> = self
            .poll
            .external_labels
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        line("label", &format!("[{}]", labels.join(", ")));
        line("kubelet-summary", &self.poll.kubelet_summary);
        line("kubelet-pods", &self.poll.kubelet_pods);
        line("self-metrics", &self.self_metrics);
        let pod_labels: Vec<String> = self
            .poll
            .pod_labels
            .iter()
            .map(|(from, to)| format!("{from} as {to}"))
            .collect();
        line("pod-label", &format!("[{}]", pod_labels.join(", ")));
        line(
            "max-stats-age",
            &humantime::format_duration(self.poll.max_stats_age),
        );
        line("max-samples-per-send", &self.max_samples_per_send);
        let d = &self.delivery;
        line(
            "max-catch-up-size",
            &format!("{} bytes", d.max_catch_up_bytes),
        );
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
        scrape::describe(&self.scrape_targets, &mut line);
        out
    }
}

/// Whether `check-config` shows a header's value: not for `Authorization`,
/// `Proxy-Authorization`, or a name holding `key`, `token` or `secret` (any case).
fn credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "proxy-authorization")
        || ["key", "token", "secret"].iter().any(|w| name.contains(w))
}

/// `--buffer-dir`, checked as the start needs it: an existing directory the agent can create
/// files in, or one it can create (its nearest existing parent is a directory it can write
/// to). Checked by creating and removing a probe file, the only test every platform answers
/// truly (permission bits say nothing of ACLs, read-only mounts or quotas); nothing else is
/// left behind, and a missing directory is not created here.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(if existing == dir {
            format!("{} is not a directory", dir.display())
        } else {
            format!(
                "{} cannot be created: {} is not a directory",
                dir.display(),
                existing.display()
            )
        });
    }
    let probe = existing.join(format!(".kubelet-push-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if existing == dir => Err(format!("cannot write in {}: {e}", dir.display())),
        Err(e) => Err(format!(
            "{} does not exist and cannot be created in {}: {e}",
            dir.display(),
            existing.display()
        )),
    }
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
    // Quoted redacted: a URL that does not parse may still hold a password or a key.
    let shown = crate::http::redact_str(s);
    let url = reqwest::Url::parse(s).map_err(|e| {
        // A path typed without its scheme parses as a relative URL.
        let hint = match (s.contains("://"), s.starts_with('/')) {
            (true, _) => String::new(),
            (false, true) => format!("; for a captured summary, write file://{shown}"),
            (false, false) => format!(
                "; for a captured summary, write file://{shown}, or give http(s)://HOST:PORT"
            ),
        };
        err(FLAG, format!("{shown:?} is not a URL: {e}{hint}"))
    })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(Source::Http(url)),
        "http" | "https" => Err(err(FLAG, format!("{shown:?} has no host"))),
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

/// The destinations: from the config file's `remote-write` list when it has one (and then no
/// `--remote-*` flag may be given), else one per `--remote-url`, each with the `--remote-*`
/// flags' settings. Two destinations with the same buffer subdirectory (the same URL twice)
/// are refused. Files are looked up [`in_sandbox`] (`file`'s path already is).
fn remotes(
    args: &AgentArgs,
    file: Option<(&Path, &crate::config_file::File)>,
    sandbox: Option<&Path>,
) -> Result<Vec<RemoteSettings>, ConfigError> {
    let listed = file.and_then(|(p, f)| f.remote_write.as_deref().map(|e| (p, e)));
    let remotes = match listed {
        Some((path, entries)) => {
            let beside = [
                ("--remote-url", !args.remote_urls.is_empty()),
                ("--remote-header", !args.remote_headers.is_empty()),
                ("--remote-timeout", args.remote_timeout.is_some()),
                (
                    "--remote-retry-auth-errors",
                    args.remote_retry_auth_errors.is_some(),
                ),
                (
                    "--remote-write-version",
                    args.remote_write_version.is_some(),
                ),
            ]
            .into_iter()
            .filter_map(|(flag, given)| given.then_some(flag))
            .chain(args.remote_access.spec().given().map(|f| f.flag()))
            .next();
            if let Some(flag) = beside {
                return Err(err(
                    "--config-file",
                    format!("{flag} cannot be given with --config-file's remote-write list: set it per destination in the file"),
                ));
            }
            if entries.is_empty() {
                return Err(err(
                    "--config-file",
                    format!("{}: remote-write lists no destination", path.display()),
                ));
            }
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| from_entry(path, i, e, sandbox, &args.labels))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => {
            let (protocol, auto) = match &args.remote_write_version {
                Some(v) => parse_protocol(v).map_err(|r| err("--remote-write-version", r))?,
                None => (Protocol::V2, true),
            };
            let headers = parse_headers(&args.remote_headers)?;
            let spec = access_in_sandbox(args.remote_access.spec(), sandbox);
            args.remote_urls
                .iter()
                .map(|u| {
                    let url = parse_remote_url(u).map_err(|r| err("--remote-url", r))?;
                    let access =
                        crate::remote_write::access::validate(&spec, &url, &headers, &|f| {
                            f.flag().to_owned()
                        })
                        .map_err(|e| err(e.field.flag(), e.reason))?;
                    Ok(RemoteSettings {
                        url,
                        timeout: args.remote_timeout.unwrap_or(DEFAULT_REMOTE_TIMEOUT),
                        headers: headers.clone(),
                        protocol,
                        auto,
                        access,
                        retry_auth_errors: args.remote_retry_auth_errors.unwrap_or(true),
                        buffer_max_bytes: None,
                        metric_filter: None,
                        labels: Vec::new(),
                    })
                })
                .collect::<Result<Vec<_>, ConfigError>>()?
        }
    };
    for (i, r) in remotes.iter().enumerate() {
        if let Some(j) = remotes[..i]
            .iter()
            .position(|o| o.buffer_subdir() == r.buffer_subdir())
        {
            let flag = if listed.is_some() {
                "--config-file"
            } else {
                "--remote-url"
            };
            return Err(err(
                flag,
                format!(
                    "destinations {} and {} are the same URL ({})",
                    j + 1,
                    i + 1,
                    crate::http::redact(&r.url)
                ),
            ));
        }
    }
    Ok(remotes)
}

/// One `--config-file` entry, validated with the flags' rules; errors name the file, line
/// and key.
fn from_entry(
    path: &Path,
    i: usize,
    e: &crate::config_file::Entry,
    sandbox: Option<&Path>,
    shared_labels: &[String],
) -> Result<RemoteSettings, ConfigError> {
    use crate::config_file::at;
    let fail = |reason: String| err("--config-file", reason);
    let key = |name: &str| format!("remote-write[{i}].{name}");
    let url = parse_remote_url(&e.url).map_err(|r| fail(at(path, &e.url, &key("url"), &r)))?;
    let timeout = match &e.timeout {
        Some(t) => {
            crate::cli::parse_duration(t).map_err(|r| fail(at(path, t, &key("timeout"), &r)))?
        }
        None => DEFAULT_REMOTE_TIMEOUT,
    };
    let (protocol, auto) = match &e.version {
        Some(v) => parse_protocol(v).map_err(|r| fail(at(path, v, &key("version"), &r)))?,
        None => (Protocol::V2, true),
    };
    let mut named: Vec<_> = e.headers.iter().collect();
    named.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let mut headers = Vec::with_capacity(named.len());
    for (name, value) in named {
        let header = parse_header(name, value).map_err(|r| {
            fail(at(
                path,
                name,
                &key(&format!("headers.{}", name.as_str())),
                &r,
            ))
        })?;
        headers.push(header);
    }
    use crate::remote_write::access::{AccessSpec, Field};
    let text = |f: Field| e.text(f).map(|v| v.to_string());
    let spec = access_in_sandbox(
        AccessSpec {
            bearer_token_file: text(Field::BearerTokenFile).map(Into::into),
            basic_auth_username: text(Field::BasicAuthUsername),
            basic_auth_password_file: text(Field::BasicAuthPasswordFile).map(Into::into),
            ca_file: text(Field::CaFile).map(Into::into),
            cert_file: text(Field::CertFile).map(Into::into),
            key_file: text(Field::KeyFile).map(Into::into),
            tls_server_name: text(Field::TlsServerName),
            insecure_skip_verify: e.insecure_skip_verify.as_ref().is_some_and(|b| **b),
            proxy_url: text(Field::ProxyUrl),
        },
        sandbox,
    );
    // An error points at the value it is about; the URL when it has none of its own.
    let access = crate::remote_write::access::validate(&spec, &url, &headers, &|f| key(f.key()))
        .map_err(|ae| {
            let span = e.span(ae.field);
            fail(crate::config_file::at_span(
                path,
                span,
                &key(ae.field.key()),
                &ae.reason,
            ))
        })?;
    let buffer_max_bytes = match &e.buffer_max_size {
        Some(size) => {
            let bytes = crate::cli::parse_size(size)
                .map_err(|r| fail(at(path, size, &key("buffer-max-size"), &r)))?;
            if bytes < MIN_BUFFER_BYTES {
                let r = "must be at least 64KiB";
                return Err(fail(at(path, size, &key("buffer-max-size"), r)));
            }
            Some(bytes)
        }
        None => None,
    };
    let texts = |list: &[marked_yaml::Spanned<String>]| -> Vec<String> {
        list.iter().map(|v| v.to_string()).collect()
    };
    let metric_filter =
        crate::pipeline::filter::MetricFilter::new(&texts(&e.metric_allow), &texts(&e.metric_deny))
            .map_err(|(flag, reason)| {
                let name = flag.trim_start_matches('-');
                let list = if name == "metric-allow" {
                    &e.metric_allow
                } else {
                    &e.metric_deny
                };
                let span = list.first().map_or_else(|| e.url.span(), |v| v.span());
                fail(crate::config_file::at_span(path, span, &key(name), &reason))
            })?;
    let labels = entry_labels(path, i, e, shared_labels)?;
    Ok(RemoteSettings {
        url,
        timeout,
        headers,
        protocol,
        auto,
        access,
        retry_auth_errors: e.retry_auth_errors.as_ref().is_none_or(|b| **b),
        buffer_max_bytes,
        metric_filter,
        labels,
    })
}

/// A `remote-write` entry's extra labels, from `labels` (a map) and `label` (`NAME=VALUE`
/// texts), checked as `--label` is; one that `--label` sets for every destination is refused.
fn entry_labels(
    path: &Path,
    i: usize,
    e: &crate::config_file::Entry,
    shared: &[String],
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut named: Vec<_> = e.labels.iter().collect();
    named.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let mut written: Vec<(String, &marked_yaml::Span, &str)> = named
        .into_iter()
        .map(|(n, v)| (format!("{}={}", n.as_str(), v.as_str()), n.span(), "labels"))
        .collect();
    written.extend(e.label.iter().map(|l| (l.to_string(), l.span(), "label")));
    let mut labels = Vec::with_capacity(written.len());
    for (text, span, name) in &written {
        let place = |reason: &str| {
            err(
                "--config-file",
                crate::config_file::at_span(
                    path,
                    span,
                    &format!("remote-write[{i}].{name}"),
                    reason,
                ),
            )
        };
        let mut one = parse_labels(std::slice::from_ref(text)).map_err(|e| place(&e.reason))?;
        let Some((n, v)) = one.pop() else { continue };
        if shared
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(s, _)| s == n))
        {
            return Err(place(&format!(
                "{n:?} is set by label (--label) for every destination already"
            )));
        }
        if labels.iter().any(|(o, _): &(String, String)| *o == n) {
            return Err(place(&format!("{n:?} is given twice")));
        }
        labels.push((n, v));
    }
    Ok(labels)
}

/// `--remote-write-version`: the protocol to start with, and whether it is `auto`.
fn parse_protocol(s: &str) -> Result<(Protocol, bool), String> {
    match s.trim() {
        "1" => Ok((Protocol::V1, false)),
        "2" => Ok((Protocol::V2, false)),
        "auto" => Ok((Protocol::V2, true)),
        other => Err(format!(
            "must be auto (2.0, or 1.0 for a receiver that does not take 2.0), 1 (Remote Write 1.0) or 2 (Remote Write 2.0, falling back to 1.0), not {other:?}"
        )),
    }
}

fn parse_remote_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("scheme {other:?} is not http or https")),
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
        if !scrape::valid_label_name(name) {
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
    raw.iter()
        .map(|item| {
            // Not quoted: `Authorization: Bearer …` (a colon for the `=`) is a credential.
            let (name, value) = item.split_once('=').ok_or_else(|| {
                err(
                    FLAG,
                    "expected NAME=VALUE (the value is not shown: it may be a secret)",
                )
            })?;
            parse_header(name, value).map_err(|r| err(FLAG, r))
        })
        .collect()
}

/// One extra header, as `--remote-header` or a config file's `headers` give it.
fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = name.trim();
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    if PROTOCOL_HEADERS.contains(&header.as_str()) {
        return Err(format!(
            "{name} is set by the Remote Write protocol and cannot be overridden"
        ));
    }
    // The value may be a credential: never echo it.
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    value.set_sensitive(true);
    Ok((header, value))
}

#[cfg(test)]
mod tests;
