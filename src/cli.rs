//! Raw command-line flags, each with its `KUBELET_PUSH_*` environment twin. Nothing here is
//! validated beyond its type: `config` turns these into a `Config` or a message naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Polls the kubelet Summary API and pushes it as Prometheus Remote Write.
///
/// Every flag can also be set through the environment variable shown with it; the flag wins
/// when both are given. Repeatable flags take a comma-separated list from the environment.
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
    Demo(DemoArgs),
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Kubelet base URL; /stats/summary is appended. file://PATH reads a captured summary
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_KUBELET_URL",
        default_value = "https://127.0.0.1:10250",
        value_name = "URL"
    )]
    pub kubelet_url: String,

    /// Remote Write receiver URL, e.g. http://prometheus:9090/api/v1/write
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_REMOTE_URL",
        value_name = "URL"
    )]
    pub remote_url: Option<String>,

    /// Time between polls [default: 10s; 2s for demo]
    #[arg(long, global = true, env = "KUBELET_PUSH_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Option<Duration>,

    /// Poll and push once, then exit; exit code 1 when the poll or the push fails
    #[arg(long, global = true, env = "KUBELET_PUSH_ONCE")]
    pub once: bool,

    /// Poll once and print the samples (Prometheus text format, millisecond timestamps)
    /// instead of pushing
    #[arg(long, global = true, env = "KUBELET_PUSH_DRY_RUN")]
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

    /// Timeout of one remote write request
    #[arg(long, global = true, env = "KUBELET_PUSH_REMOTE_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub remote_timeout: Duration,

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
    #[arg(long, global = true, env = "KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY")]
    pub kubelet_insecure_skip_verify: bool,

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

    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// kubelet_push=debug
    #[arg(
        long,
        global = true,
        env = "KUBELET_PUSH_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 1m30s, 500ms)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}
