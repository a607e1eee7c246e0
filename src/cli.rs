//! Raw command-line flags, each with its `KUBELET_PUSH_*` environment twin. Nothing here is
//! validated beyond its type: `config` turns these into a `Config` or a message naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Polls the kubelet Summary API and pushes it as Prometheus Remote Write.
///
/// Every flag can also be set through the environment variable shown with it, and as a
/// --config-file key (its name without --); the flag wins over the variable, the variable over
/// the file. Repeatable flags take a comma-separated list from the environment. An unknown
/// KUBELET_PUSH_* variable exits 64.
#[derive(Debug, Parser)]
#[command(name = "kubelet-push", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the real pipeline against a built-in simulated Windows kubelet and show what a
    /// receiver gets. Pushes to --remote-url when given, otherwise to a built-in receiver that
    /// decodes each request and prints a summary per interval.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Check the flags, KUBELET_PUSH_* environment and --config-file exactly as a start
    /// would, print the settings they give (credentials hidden) and warnings, and exit: 0
    /// when valid, 64 naming the first bad flag, variable or key. Touches no network;
    /// --buffer-dir is checked as a start checks it, and not created.
    CheckConfig,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of simulated pods
    #[arg(
        long,
        env = "KUBELET_PUSH_DEMO_PODS",
        default_value_t = 30,
        value_name = "N"
    )]
    pub pods: usize,
    /// Stop after this long (e.g. 30s, 5m); runs until Ctrl-C when not given
    #[arg(long, env = "KUBELET_PUSH_DEMO_DURATION", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Time between polls of the simulated kubelet, at least 100ms [default: 2s]
    // The same id as the agent's global --interval, so this one (with the demo's own default
    // and floor) is what `demo --help` shows; clap still copies either value to the other.
    #[arg(long, value_parser = parse_demo_interval, value_name = "DURATION")]
    pub interval: Option<Duration>,
    #[command(flatten)]
    pub not_for_demo: NotForDemo,
}

/// The agent's kubelet-access flags, shadowed in `demo` so its `--help` does not offer them:
/// the demo polls its own simulated kubelet. clap propagates a global flag to a subcommand only
/// when the subcommand has no argument of that id; these take their place, hidden. Given on the
/// command line, before or after `demo`, they are refused by [`not_for_demo`]; their values are
/// never read.
#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct NotForDemo {
    #[arg(long, hide = true)]
    kubelet_url: Option<String>,
    #[arg(long, hide = true)]
    kubelet_token_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    kubelet_ca_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    kubelet_insecure_skip_verify: bool,
    #[arg(long, hide = true, value_parser = parse_duration)]
    kubelet_timeout: Option<Duration>,
    #[arg(long, hide = true)]
    kubelet_proxy_url: Option<String>,
    #[arg(long, hide = true)]
    kubelet_scrape: Vec<String>,
    // Any value is taken here (only its presence matters), and stored in a byte: the demo's
    // arguments are a variant of `Command`, which clippy wants small.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "", value_parser = |_: &str| Ok::<_, String>(true))]
    kubelet_summary: Option<bool>,
}

/// The first flag given on the command line that `demo` cannot honour, if `matches` (the
/// `demo` subcommand's) holds one. Values from the environment are ignored, so the demo runs
/// unchanged inside an agent's pod.
#[cfg(feature = "demo")]
pub fn not_for_demo(matches: &clap::ArgMatches) -> Option<String> {
    // The shadow flags themselves say which they are: nothing to keep in step by hand.
    let shadows = <NotForDemo as Args>::augment_args(clap::Command::new("demo"));
    let flag = shadows
        .get_arguments()
        .find(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .and_then(|arg| arg.get_long())
        .map(|long| format!("--{long}"));
    flag
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Kubelet base URL; /stats/summary is appended. file://PATH reads a captured summary
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_URL",
        default_value = "https://127.0.0.1:10250",
        value_name = "URL",
        hide_env_values = true
    )]
    pub kubelet_url: String,

    /// Remote Write receiver URL, e.g. http://prometheus:9090/api/v1/write (repeatable: every
    /// destination gets every sample, each with its own buffer and retries, and the same
    /// --remote-* settings; use --config-file for settings per destination)
    #[arg(
        long = "remote-url",
        global = true,
        env = "KUBELET_PUSH_REMOTE_URL",
        value_delimiter = ',',
        value_name = "URL",
        hide_env_values = true
    )]
    pub remote_urls: Vec<String>,

    /// YAML file with a remote-write list (one entry per destination, with the --remote-*
    /// settings as keys; instead of --remote-url and the other --remote-* flags, not beside
    /// them), a scrape list (Prometheus scrape_config entries), and any other flag as a
    /// top-level key (flags and environment win over it); see the README
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,

    /// Send only series whose metric name fully matches this regular expression (repeatable;
    /// a name matching any of them is allowed). The environment variable takes one
    /// expression: join several with |
    #[arg(
        long = "metric-allow",
        global = true,
        env = "KUBELET_PUSH_METRIC_ALLOW",
        value_name = "REGEX"
    )]
    pub metric_allow: Vec<String>,

    /// Never send series whose metric name fully matches this regular expression
    /// (repeatable; wins over --metric-allow). The environment variable takes one
    /// expression: join several with |
    #[arg(
        long = "metric-deny",
        global = true,
        env = "KUBELET_PUSH_METRIC_DENY",
        value_name = "REGEX"
    )]
    pub metric_deny: Vec<String>,

    /// Time between polls, at least 1s (the kubelet refreshes its stats every 10-15s)
    /// [default: 10s]
    #[arg(long, global = true, env = "KUBELET_PUSH_INTERVAL", value_parser = parse_interval, value_name = "DURATION")]
    pub interval: Option<Duration>,

    /// Poll and push once, then exit; exit code 1 when the poll or the push fails
    #[arg(long, global = true, env = "KUBELET_PUSH_ONCE", value_parser = boolish("KUBELET_PUSH_ONCE"))]
    pub once: bool,

    /// Poll once and print the samples (Prometheus text format, millisecond timestamps)
    /// instead of pushing
    #[arg(long, global = true, env = "KUBELET_PUSH_DRY_RUN", value_parser = boolish("KUBELET_PUSH_DRY_RUN"))]
    pub dry_run: bool,

    /// Extra label on every series (repeatable)
    #[arg(
        long = "label",
        global = true,
        env = "KUBELET_PUSH_LABEL",
        value_delimiter = ',',
        value_name = "NAME=VALUE"
    )]
    pub labels: Vec<String>,

    /// Value of the node and instance labels [default: the summary's nodeName]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_NODE_NAME",
        value_name = "NAME"
    )]
    pub node_name: Option<String>,

    /// Value of the job label
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_JOB",
        default_value = "kubelet",
        value_name = "NAME"
    )]
    pub job: String,

    /// Stats older than this (relative to the newest time in the same summary) are stamped
    /// with that newest time instead of their own
    #[arg(long, global = true, env = "KUBELET_PUSH_MAX_STATS_AGE", default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub max_stats_age: Duration,

    /// Extra HTTP header on every remote write request, e.g. X-Scope-OrgID=tenant
    /// (repeatable; cannot override the protocol headers)
    #[arg(
        long = "remote-header",
        global = true,
        env = "KUBELET_PUSH_REMOTE_HEADER",
        value_delimiter = ',',
        value_name = "NAME=VALUE",
        hide_env_values = true
    )]
    pub remote_headers: Vec<String>,

    /// Most samples in one remote write request
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_MAX_SAMPLES_PER_SEND",
        default_value_t = 2000,
        value_name = "N"
    )]
    pub max_samples_per_send: usize,

    /// Largest request when catching up: while several polls' requests wait for a
    /// destination (after an outage), they go merged, in order, in requests of at most this
    /// many compressed bytes; a 413 to one halves it for that destination
    #[arg(long, global = true, env = "KUBELET_PUSH_MAX_CATCH_UP_SIZE", default_value = "2MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_catch_up_size: u64,

    /// Remote Write protocol version: 1 (every receiver); 2 (smaller requests, with metric
    /// type, help, unit and counter start times; falls back to 1 for a receiver that does
    /// not take it); or auto (2 first, falling back to 1, and switching to 2 for a receiver
    /// that refuses 1) [default: auto]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_WRITE_VERSION",
        value_name = "1|2|auto"
    )]
    pub remote_write_version: Option<String>,

    /// Retry a request the receiver (or a proxy) refuses with 401, 403 or 407, so that a
    /// rotated credential that reaches the node late costs no data (the Remote Write spec
    /// says never to retry a 4xx but 429: --remote-retry-auth-errors=false does that, and
    /// drops the request) [default: true]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_RETRY_AUTH_ERRORS",
        value_parser = boolish("KUBELET_PUSH_REMOTE_RETRY_AUTH_ERRORS"),
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub remote_retry_auth_errors: Option<bool>,

    /// Timeout of one remote write request [default: 30s]
    #[arg(long, global = true, env = "KUBELET_PUSH_REMOTE_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub remote_timeout: Option<Duration>,

    #[command(flatten)]
    pub remote_access: RemoteAccessArgs,

    /// Ask the kubelet for its pods (GET /pods) to label container series with image, name
    /// and --pod-label values; needs nodes/proxy (see the README). --kubelet-pods=false turns
    /// it off
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_PODS",
        value_parser = boolish("KUBELET_PUSH_KUBELET_PODS"),
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub kubelet_pods: bool,

    /// Copy this pod label onto the pod's and its containers' series as label_<NAME> with
    /// every character outside [a-zA-Z0-9_] made _, e.g. app.kubernetes.io/name (repeatable,
    /// at most 10)
    #[arg(
        long = "pod-label",
        global = true,
        env = "KUBELET_PUSH_POD_LABEL",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub pod_labels: Vec<String>,

    /// Also poll the kubelet's Summary API (the stats this agent exists for);
    /// --kubelet-summary=false pushes only the --scrape and --kubelet-scrape targets (and
    /// the config file's scrape list)
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_SUMMARY",
        value_parser = boolish("KUBELET_PUSH_KUBELET_SUMMARY"),
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub kubelet_summary: bool,

    /// Push the agent's own metrics (kubelet_push_*, process_*: what /metrics serves) every
    /// --interval to every destination, with job="kubelet-push" and the node's labels, for
    /// nodes nothing can scrape; --self-metrics=false turns it off (not with --once or
    /// --dry-run)
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_SELF_METRICS",
        value_parser = boolish("KUBELET_PUSH_SELF_METRICS"),
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub self_metrics: bool,

    /// Scrape this path of the kubelet too, through --kubelet-url with its token, CA and
    /// proxy: /metrics, /metrics/probes, /metrics/resource or /metrics/cadvisor (repeatable).
    /// Labelled job=--job, metrics_path=PATH, as kube-prometheus labels them; needs
    /// nodes/metrics (see the README)
    #[arg(
        long = "kubelet-scrape",
        global = true,
        env = "KUBELET_PUSH_KUBELET_SCRAPE",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub kubelet_scrape: Vec<String>,

    /// Scrape an exporter every --interval and push what it exposes with the kubelet's
    /// stats, e.g. node-exporter=http://127.0.0.1:9100/metrics (repeatable; JOB is the job
    /// label). For credentials, TLS or labels per target, use the config file's scrape list
    #[arg(
        long = "scrape",
        global = true,
        env = "KUBELET_PUSH_SCRAPE",
        value_delimiter = ',',
        value_name = "JOB=URL",
        hide_env_values = true
    )]
    pub scrape: Vec<String>,

    /// Longest one scrape may take, at most the target's interval [default: 80% of the
    /// interval, at most 10s]
    #[arg(long, global = true, env = "KUBELET_PUSH_SCRAPE_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub scrape_timeout: Option<Duration>,

    /// Timeout of one kubelet request (connect and read)
    #[arg(long, global = true, env = "KUBELET_PUSH_KUBELET_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub kubelet_timeout: Duration,

    /// Bearer token file for the kubelet, re-read on every request [default: the pod's
    /// service-account token when it exists]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub kubelet_token_file: Option<PathBuf>,

    /// CA bundle (PEM) that signed the kubelet's serving certificate [default: the pod's
    /// service-account ca.crt when it exists]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_CA_FILE",
        value_name = "PATH"
    )]
    pub kubelet_ca_file: Option<PathBuf>,

    /// Do not verify the kubelet's TLS certificate (kubelets often serve a self-signed one)
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY",
        value_parser = boolish("KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY")
    )]
    pub kubelet_insecure_skip_verify: bool,

    /// HTTP(S) proxy for the kubelet, e.g. http://proxy:3128, for an agent that reaches it
    /// from outside the node (through the API server's node proxy, say) [default: none; the
    /// kubelet is never reached through HTTPS_PROXY or HTTP_PROXY]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_PROXY_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub kubelet_proxy_url: Option<String>,

    /// Shortest wait before retrying a failed push (full jitter below the current ceiling)
    #[arg(long, global = true, env = "KUBELET_PUSH_MIN_BACKOFF", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub min_backoff: Duration,

    /// Longest wait between two attempts of a failed push: a receiver that stays down gets
    /// one attempt per this long, and one that returns is noticed within it
    #[arg(long, global = true, env = "KUBELET_PUSH_MAX_BACKOFF", default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_backoff: Duration,

    /// Most bytes of compressed requests the buffer holds, e.g. 64MiB; past it the oldest
    /// requests are dropped
    #[arg(long, global = true, env = "KUBELET_PUSH_BUFFER_MAX_SIZE", default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    pub buffer_max_size: u64,

    /// Keep the buffer on disk in this directory, so nothing is lost across restarts
    /// [default: in memory]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_BUFFER_DIR",
        value_name = "PATH"
    )]
    pub buffer_dir: Option<PathBuf>,

    /// Drop samples older than this instead of sending them [default: off]
    #[arg(long, global = true, env = "KUBELET_PUSH_MAX_SAMPLE_AGE", value_parser = parse_duration, value_name = "DURATION")]
    pub max_sample_age: Option<Duration>,

    /// How long a shutdown may spend sending what is buffered
    #[arg(long, global = true, env = "KUBELET_PUSH_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,

    /// Serve /metrics, /healthz and /readyz on this address, e.g. 0.0.0.0:9842, or :9842
    /// for every IPv4 interface (0.0.0.0; give [::]:9842 for IPv6) [default: off]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_LISTEN_ADDRESS",
        value_parser = parse_listen_address,
        value_name = "ADDR:PORT"
    )]
    pub listen_address: Option<std::net::SocketAddr>,

    /// Answer POST /-/reload on --listen-address by re-reading --config-file and applying it,
    /// as SIGHUP does (Windows has no SIGHUP); needs --listen-address [default: false]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_ENABLE_RELOAD",
        value_parser = boolish("KUBELET_PUSH_ENABLE_RELOAD"),
        value_name = "BOOL",
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_reload: bool,

    /// Log format
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_LOG_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log level (off, error, warn, info, debug, trace), or comma-separated
    /// directives such as info,kubelet_push=debug
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
}

/// How the agent reaches the receiver: authentication, TLS and proxy. Files are re-read when
/// they change. Validated by `remote_write::access::validate`, which config-file entries share.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteAccessArgs {
    /// File holding a bearer token for the receiver (Authorization: Bearer), re-read when it
    /// changes
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_BEARER_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub remote_bearer_token_file: Option<PathBuf>,

    /// User name for basic auth toward the receiver; needs --remote-basic-auth-password-file
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_BASIC_AUTH_USERNAME",
        value_name = "NAME",
        hide_env_values = true
    )]
    pub remote_basic_auth_username: Option<String>,

    /// File holding the basic-auth password, re-read when it changes
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_BASIC_AUTH_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub remote_basic_auth_password_file: Option<PathBuf>,

    /// CA bundle (PEM) that signed the receiver's certificate, instead of the system's roots
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_CA_FILE",
        value_name = "PATH"
    )]
    pub remote_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS; needs --remote-key-file
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_CERT_FILE",
        value_name = "PATH"
    )]
    pub remote_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --remote-cert-file
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_KEY_FILE",
        value_name = "PATH"
    )]
    pub remote_key_file: Option<PathBuf>,

    /// Name the receiver's certificate must be valid for, instead of the URL's host (SNI
    /// still carries the URL's host)
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub remote_tls_server_name: Option<String>,

    /// Do not verify the receiver's TLS certificate
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_INSECURE_SKIP_VERIFY",
        value_parser = boolish("KUBELET_PUSH_REMOTE_INSECURE_SKIP_VERIFY")
    )]
    pub remote_insecure_skip_verify: bool,

    /// HTTP(S) proxy for the receiver, e.g. http://proxy:3128 [default: HTTPS_PROXY,
    /// HTTP_PROXY and NO_PROXY from the environment; never used for the kubelet]
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_PROXY_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub remote_proxy_url: Option<String>,
}

impl RemoteAccessArgs {
    pub fn spec(&self) -> crate::remote_write::access::AccessSpec {
        crate::remote_write::access::AccessSpec {
            bearer_token_file: self.remote_bearer_token_file.clone(),
            basic_auth_username: self.remote_basic_auth_username.clone(),
            basic_auth_password_file: self.remote_basic_auth_password_file.clone(),
            ca_file: self.remote_ca_file.clone(),
            cert_file: self.remote_cert_file.clone(),
            key_file: self.remote_key_file.clone(),
            tls_server_name: self.remote_tls_server_name.clone(),
            insecure_skip_verify: self.remote_insecure_skip_verify,
            proxy_url: self.remote_proxy_url.clone(),
        }
    }
}

/// `--listen-address`: `ADDR:PORT`, or Go's `:PORT` for every IPv4 interface (`0.0.0.0`; an
/// IPv6 socket does not take IPv4 everywhere, Windows' included, so `[::]:PORT` is asked for
/// by name).
fn parse_listen_address(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_owned(),
    };
    full.parse().map_err(|_| {
        format!("{s:?} is not ADDR:PORT (examples: 0.0.0.0:9842, 127.0.0.1:9842, [::]:9842, :9842)")
    })
}

/// The top-level keys a `--config-file` may set: the long name of every agent flag
/// (`config-file` among them, which the file refuses with a reason of its own).
pub fn file_keys() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command()
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// Every `KUBELET_PUSH_*` variable the binary reads as a setting: the flags' twins, the
/// demo's included.
pub fn env_names() -> Vec<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let mut names: Vec<String> = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .filter_map(|a| a.get_env().and_then(|e| e.to_str()).map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `KUBELET_PUSH_*` variables that are not settings but may be in an agent's environment: the
/// test suite's and CI's own (a golden-file rewrite, the binaries and the image under test,
/// the Wine run's marker, the manifests check's venv), which the tests' agents inherit. The
/// binary ignores them instead of refusing them as unknown.
pub const NOT_SETTINGS: [&str; 8] = [
    "KUBELET_PUSH_BLESS",
    "KUBELET_PUSH_BIN",
    "KUBELET_PUSH_IMAGE",
    "KUBELET_PUSH_WINDOWS_EXE",
    "KUBELET_PUSH_CTRL_EVENT_EXE",
    "KUBELET_PUSH_WINE_RUN",
    "KUBELET_PUSH_MANIFESTS_VENV",
    SHORT_INTERVALS_FOR_TESTS,
];

/// The first of `names` (the environment's variable names) that starts with
/// `KUBELET_PUSH_` but is neither a setting ([`env_names`]) nor one of [`NOT_SETTINGS`],
/// worded as an error with the closest setting's name: a typo such as
/// `KUBELET_PUSH_INTERVL` would otherwise leave the setting at its default unnoticed.
pub fn unknown_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let known = env_names();
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|n| n.starts_with("KUBELET_PUSH_"))
        .filter(|n| !known.iter().any(|k| k == n) && !NOT_SETTINGS.contains(n))
        .collect();
    unknown.sort_unstable();
    let name = unknown.first()?;
    let hint = closest(name, known.iter().map(String::as_str))
        .map_or_else(String::new, |k| format!("; did you mean {k}?"));
    Some(format!(
        "{name}: not a kubelet-push setting{hint} (every flag's variable is KUBELET_PUSH_ and its long name in capitals with _ for -; see --help)"
    ))
}

/// The candidate closest to `word` by edit distance (insertions, deletions, substitutions,
/// ignoring case and `-`/`_`), when close enough to be a typo of it: at most a third of
/// its length, and at least 1 or 2 for short words.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let w = norm(word);
    let limit = (w.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&w, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The `--log-level` filter: a level (`off`, `error`, `warn`, `info`, `debug`, `trace`), or
/// comma-separated directives that are a level or `target=level`. Anything else is an error,
/// so a typo such as `warning` is refused instead of silencing every log line.
pub fn log_filter(spec: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};

    let level = |s: &str| -> Result<LevelFilter, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(LevelFilter::OFF),
            "error" => Ok(LevelFilter::ERROR),
            "warn" => Ok(LevelFilter::WARN),
            "info" => Ok(LevelFilter::INFO),
            "debug" => Ok(LevelFilter::DEBUG),
            "trace" => Ok(LevelFilter::TRACE),
            other => Err(format!(
                "{spec:?}: {other:?} is not a level (off, error, warn, info, debug, trace)"
            )),
        }
    };
    let mut filter = Targets::new();
    let mut any = false;
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        filter = match directive.split_once('=') {
            Some((target, lvl)) => {
                let target = target.trim();
                let valid = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                if !valid {
                    return Err(format!(
                        "{spec:?}: {target:?} is not a module path such as kubelet_push::sender"
                    ));
                }
                filter.with_target(target, level(lvl)?)
            }
            None => filter.with_default(level(directive)?),
        };
    }
    if !any {
        return Err(format!("{spec:?}: empty"));
    }
    Ok(filter)
}

/// The shortest agent `--interval`: the kubelet refreshes its stats every 10-15 s, so polling
/// faster only loads it (and the receiver) with repeats.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `demo --interval`: the simulated kubelet is local and made for watching.
#[cfg(feature = "demo")]
pub const MIN_DEMO_INTERVAL: Duration = Duration::from_millis(100);

fn parse_interval(s: &str) -> Result<Duration, String> {
    at_least(
        parse_duration(s)?,
        interval_floor(),
        "the kubelet refreshes its stats every 10-15s",
    )
}

/// [`MIN_INTERVAL`], except in a build with the `test-support` feature (never the release
/// binary) whose environment has [`SHORT_INTERVALS_FOR_TESTS`]: the integration tests run the
/// binary at 10-200 ms intervals to stay fast.
pub(crate) fn interval_floor() -> Duration {
    #[cfg(feature = "test-support")]
    if std::env::var_os(SHORT_INTERVALS_FOR_TESTS).is_some() {
        return Duration::from_millis(1);
    }
    MIN_INTERVAL
}

/// See [`interval_floor`]; read only by builds with the `test-support` feature.
pub const SHORT_INTERVALS_FOR_TESTS: &str = "KUBELET_PUSH_TEST_SHORT_INTERVALS";

#[cfg(feature = "demo")]
fn parse_demo_interval(s: &str) -> Result<Duration, String> {
    at_least(parse_duration(s)?, MIN_DEMO_INTERVAL, "demo")
}

fn at_least(d: Duration, floor: Duration, why: &str) -> Result<Duration, String> {
    if d < floor {
        return Err(format!(
            "must be at least {} ({why})",
            humantime::format_duration(floor)
        ));
    }
    Ok(d)
}

/// A boolean flag's value parser: the spellings operators and Helm charts use (1/0, true/false,
/// yes/no, on/off, any case). clap's own takes only true/false; a value set on the command line
/// for a plain switch is always "true", so an error here names the environment variable `env`
/// that most likely held it.
fn boolish(
    env: &'static str,
) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        parse_bool(s)
            .ok_or_else(|| format!("{env} (or the flag) takes 1/0, true/false, yes/no or on/off"))
    }
}

/// The boolean spellings of [`boolish`]: 1/0, true/false, yes/no, on/off, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|_| {
        "not a duration: give a number with a unit, such as 10s, 1m30s or 500ms".to_owned()
    })?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A byte size: a number with an optional unit, binary (KiB, MiB, GiB) or decimal (KB, MB,
/// GB); `B` or no unit means bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 64MiB, 500MB, 1GiB)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn boolean_spellings() {
        let parse = super::boolish("KUBELET_PUSH_ONCE");
        for yes in ["1", "true", "TRUE", "Yes", "on", " On "] {
            assert_eq!(parse(yes), Ok(true), "{yes:?}");
        }
        for no in ["0", "false", "False", "NO", "off"] {
            assert_eq!(parse(no), Ok(false), "{no:?}");
        }
        for bad in ["", "2", "y", "enabled", "truee"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("KUBELET_PUSH_ONCE"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn interval_floors() {
        use std::time::Duration;
        assert_eq!(super::parse_interval("1s"), Ok(Duration::from_secs(1)));
        let e = super::parse_interval("999ms").unwrap_err();
        assert!(e.contains("at least 1s"), "{e}");
        assert!(super::parse_interval("1ns").is_err());
    }

    #[cfg(feature = "demo")]
    #[test]
    fn demo_interval_floor() {
        use std::time::Duration;
        assert_eq!(
            super::parse_demo_interval("100ms"),
            Ok(Duration::from_millis(100))
        );
        assert!(super::parse_demo_interval("99ms")
            .unwrap_err()
            .contains("at least 100ms"));
    }

    #[test]
    fn log_levels_and_directives() {
        use tracing::Level;
        let f = log_filter("warn,kubelet_push::sender=DEBUG").unwrap();
        assert!(f.would_enable("kubelet_push::sender", &Level::DEBUG));
        assert!(!f.would_enable("kubelet_push::sender", &Level::TRACE));
        assert!(f.would_enable("hyper", &Level::WARN));
        assert!(!f.would_enable("hyper", &Level::INFO));
        let only = log_filter("kubelet_push=info").unwrap();
        assert!(!only.would_enable("hyper", &Level::ERROR));
        assert!(!log_filter("off")
            .unwrap()
            .would_enable("kubelet_push", &Level::ERROR));
        for bad in [
            "warning",
            "",
            " , ",
            "=info",
            "a b=info",
            "info=",
            "kubelet_push=loud",
        ] {
            assert!(log_filter(bad).is_err(), "{bad:?}");
        }
    }

    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10 KiB"), Ok(10 << 10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
