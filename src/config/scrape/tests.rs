//! Tests of `config::scrape`: `--scrape`, `--kubelet-scrape`, `--kubelet-summary` and the
//! config file's `scrape` list in, targets or the error naming the flag (or file, line and
//! key) out. Through `Config`, as a start validates them.

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use super::{prometheus_duration, prometheus_size};
use crate::config::{Config, ConfigError};
use crate::scrape::{Endpoint, TargetSettings};

fn config(args: &[&str]) -> Result<Config, ConfigError> {
    let cli = crate::cli::Cli::try_parse_from(
        std::iter::once("kubelet-push").chain(args.iter().copied()),
    )
    .expect("flags parse");
    Config::from_args(&cli.agent)
}

/// `args` after `--dry-run` (no destination needed).
fn dry(args: &[&str]) -> Result<Config, ConfigError> {
    let mut all = vec!["--dry-run"];
    all.extend_from_slice(args);
    config(&all)
}

fn url_of(t: &TargetSettings) -> &str {
    match &t.endpoint {
        Endpoint::Exporter { url, .. } => url.as_str(),
        Endpoint::Kubelet { path } => panic!("kubelet target {path}"),
        Endpoint::Agent => panic!("the agent's own metrics"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn file(text: &str) -> (tempfile::NamedTempFile, String) {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let path = f.path().display().to_string();
    (f, path)
}

#[test]
fn a_scrape_flag_takes_the_agents_interval_and_prometheus_defaults() {
    let c = dry(&["--scrape", "node-exporter=http://127.0.0.1:9100/metrics"]).unwrap();
    assert!(c.poll.kubelet_summary, "the summary stays on by default");
    let [t] = &c.scrape_targets[..] else {
        panic!("{:?}", c.scrape_targets)
    };
    assert_eq!(t.job, "node-exporter");
    assert_eq!(url_of(t), "http://127.0.0.1:9100/metrics");
    assert_eq!((t.interval, t.timeout), (secs(10), secs(8)));
    assert!(!t.honor_labels && t.honor_timestamps);
    assert_eq!((t.limits.sample_limit, t.limits.body_size_limit), (0, 0));
    assert!(t.labels.is_empty());
    let Endpoint::Exporter { access, .. } = &t.endpoint else {
        unreachable!()
    };
    assert!(super::credentials(access) == "none");

    // The default timeout is 80% of the interval, at most 10 s; --scrape-timeout sets it.
    for (interval, timeout) in [
        ("5s", 4000),
        ("12500ms", 10_000),
        ("1m", 10_000),
        ("1s", 800),
    ] {
        let c = dry(&["--scrape=a=http://a:1/m", "--interval", interval]).unwrap();
        assert_eq!(
            c.scrape_targets[0].timeout,
            Duration::from_millis(timeout),
            "{interval}"
        );
    }
    let c = dry(&["--scrape=a=http://a:1/m", "--scrape-timeout=3s"]).unwrap();
    assert_eq!(c.scrape_targets[0].timeout, secs(3));
    // As long as the interval: allowed, as in Prometheus.
    let c = dry(&["--scrape=a=http://a:1/m", "--scrape-timeout=10s"]).unwrap();
    assert_eq!(c.scrape_targets[0].timeout, secs(10));

    // Several, comma-separated as the environment gives them, in order.
    let c = dry(&[
        "--scrape=a=http://a:1/m,b=https://b/x?y=1",
        "--scrape",
        "c=http://[::1]:9/",
    ])
    .unwrap();
    let urls: Vec<&str> = c.scrape_targets.iter().map(url_of).collect();
    assert_eq!(urls, ["http://a:1/m", "https://b/x?y=1", "http://[::1]:9/"]);
}

#[test]
fn bad_scrape_flags_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--scrape=http://a:1/m"], "--scrape", "is not JOB=URL"),
        (&["--scrape= =http://a:1/m"], "--scrape", "the job name is empty"),
        (&["--scrape=a=ftp://a/m"], "--scrape", "a: scheme \"ftp\" is not http or https"),
        (&["--scrape=a=a:9100"], "--scrape", "a: "),
        (&["--scrape=a=127.0.0.1:9100/metrics"], "--scrape", "is not a URL"),
        (
            &["--scrape=a=http://u:hunter2@a:1/m"],
            "--scrape",
            "user:password in the URL is not taken: it would show in the process list; use basic_auth.username and basic_auth.password_file",
        ),
        (
            &["--scrape=a=http://a:1/m", "--scrape-timeout=11s"],
            "--scrape-timeout",
            "11s is longer than --interval (10s)",
        ),
        (
            &["--kubelet-scrape=/metrics", "--interval=5s", "--scrape-timeout=6s"],
            "--scrape-timeout",
            "6s is longer than --interval (5s)",
        ),
    ];
    for (args, flag, reason) in cases {
        let e = dry(args).expect_err(&format!("{args:?}"));
        assert_eq!(e.flag, *flag, "{args:?}: {e}");
        assert!(e.reason.contains(reason), "{args:?}: {e}");
        assert!(!e.reason.contains("hunter2"), "{args:?}: {e}");
    }
}

#[test]
fn kubelet_paths_are_scraped_as_kube_prometheus_labels_them() {
    let c = dry(&[
        "--kubelet-url=https://10.0.0.1:10250",
        "--job=kubelet-win",
        "--kubelet-scrape=/metrics/probes,/metrics",
        "--kubelet-scrape",
        "/metrics/slis",
    ])
    .unwrap();
    // Job, path, labels, one string per target.
    let got: Vec<String> = c
        .scrape_targets
        .iter()
        .map(|t| match &t.endpoint {
            Endpoint::Kubelet { path } => format!("{} {path} {:?}", t.job, t.labels),
            Endpoint::Exporter { url, .. } => panic!("{url}"),
            Endpoint::Agent => panic!("the agent's own metrics"),
        })
        .collect();
    assert_eq!(
        got,
        [
            r#"kubelet-win /metrics/probes [("metrics_path", "/metrics/probes")]"#,
            r#"kubelet-win /metrics [("metrics_path", "/metrics")]"#,
            r#"kubelet-win /metrics/slis [("metrics_path", "/metrics/slis")]"#,
        ]
    );
    for t in &c.scrape_targets {
        assert_eq!((t.interval, t.timeout), (secs(10), secs(8)));
        assert!(!t.honor_labels && t.honor_timestamps);
    }

    // The endpoints whose families the summary also produces are taken beside it (the
    // summary leaves those families to them: tests/it/scrape.rs) and without it.
    for path in ["/metrics/cadvisor", "/metrics/resource"] {
        let c = dry(&["--kubelet-scrape", path]).unwrap();
        assert!(c.poll.kubelet_summary);
        assert_eq!(c.scrape_targets.len(), 1);
        let c = dry(&["--kubelet-scrape", path, "--kubelet-summary=false"]).unwrap();
        assert!(!c.poll.kubelet_summary);
        assert_eq!(c.scrape_targets.len(), 1);
    }

    for (args, reason) in [
        (
            &["--kubelet-scrape=/stats/summary"][..],
            "is not a metrics path of the kubelet",
        ),
        (&["--kubelet-scrape=/metricsx"], "is not a metrics path"),
        (&["--kubelet-scrape=/metrics/"], "is not a metrics path"),
        (
            &["--kubelet-scrape=/metrics/../pods"],
            "is not a metrics path",
        ),
        (&["--kubelet-scrape=/metrics?x=1"], "is not a metrics path"),
        (&["--kubelet-scrape=metrics"], "is not a metrics path"),
        (
            &[
                "--kubelet-scrape=/metrics/probes",
                "--kubelet-scrape=/metrics/probes",
            ],
            "/metrics/probes is given twice",
        ),
        (
            &["--kubelet-scrape=/metrics", "--kubelet-url=file://x.json"],
            "needs a kubelet to scrape, and --kubelet-url is a file:// summary",
        ),
    ] {
        let e = dry(args).unwrap_err();
        assert_eq!(e.flag, "--kubelet-scrape", "{args:?}");
        assert!(e.reason.contains(reason), "{args:?}: {e}");
    }
}

#[test]
fn the_summary_can_be_turned_off_only_with_something_else_to_push() {
    let e = dry(&["--kubelet-summary=false"]).unwrap_err();
    assert_eq!(e.flag, "--kubelet-summary");
    assert!(e.reason.contains("false leaves nothing to push"), "{e}");
    let c = dry(&["--kubelet-summary=false", "--scrape=a=http://a:1/m"]).unwrap();
    assert!(!c.poll.kubelet_summary);
    assert!(c.describe().contains("kubelet-summary: false\n"));
    let (_f, path) = file("scrape:\n  - job_name: a\n    url: http://a:1/m\n");
    let c = dry(&["--kubelet-summary=false", "--config-file", &path]).unwrap();
    assert!(!c.poll.kubelet_summary);
    // A file:// kubelet URL is only the summary: off, it reads nothing.
    let c = dry(&[
        "--kubelet-url=file://x.json",
        "--kubelet-summary=false",
        "--scrape=a=http://a:1/m",
    ])
    .unwrap();
    assert!(!c.poll.kubelet_summary);
    assert!(dry(&[]).unwrap().poll.kubelet_summary);
}

/// An entry pasted from a Prometheus configuration, each kind of setting used.
const PASTED: &str = "\
scrape:
  - job_name: node
    scrape_interval: 15s
    scrape_timeout: 5s
    honor_labels: true
    honor_timestamps: false
    sample_limit: 50000
    body_size_limit: 10MB
    static_configs:
      - targets: ['127.0.0.1:9100', 'localhost']
        labels:
          role: worker
          az: b
      - targets: [node-b.example:9100]
  - job_name: windows-exporter
    scheme: https
    metrics_path: /custom/metrics
    scrape_interval: 1m30s
    tls_config:
      insecure_skip_verify: true
    static_configs:
      - targets: [127.0.0.1:9182]
  - job_name: app
    url: http://127.0.0.1:8080/metrics?format=prometheus
";

#[test]
fn a_pasted_prometheus_scrape_config_becomes_one_target_per_url() {
    let (_f, path) = file(PASTED);
    let c = config(&[
        "--remote-url=http://r/w",
        "--config-file",
        &path,
        "--interval=20s",
    ])
    .unwrap();
    assert_eq!(
        c.remotes.len(),
        1,
        "destinations from the flag: no remote-write list"
    );
    let t = &c.scrape_targets;
    let urls: Vec<&str> = t.iter().map(url_of).collect();
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:9100/metrics",
            "http://localhost/metrics",
            "http://node-b.example:9100/metrics",
            "https://127.0.0.1:9182/custom/metrics",
            "http://127.0.0.1:8080/metrics?format=prometheus",
        ]
    );
    for n in &t[..3] {
        assert_eq!(n.job, "node");
        assert_eq!((n.interval, n.timeout), (secs(15), secs(5)));
        assert!(n.honor_labels && !n.honor_timestamps);
        assert_eq!(n.limits.sample_limit, 50_000);
        assert_eq!(
            n.limits.body_size_limit,
            10 << 20,
            "Prometheus's MB is 2^20"
        );
    }
    assert_eq!(
        t[0].labels,
        labels(&[("az", "b"), ("role", "worker")]),
        "sorted"
    );
    assert_eq!(t[1].labels, t[0].labels);
    assert!(t[2].labels.is_empty());
    // Not given: --interval, and 80% of it; Prometheus's defaults for the rest.
    let w = &t[3];
    assert_eq!(
        (w.job.as_str(), w.interval, w.timeout),
        ("windows-exporter", secs(90), secs(10))
    );
    assert!(!w.honor_labels && w.honor_timestamps);
    assert_eq!(w.limits, Default::default());
    assert_eq!((t[4].interval, t[4].timeout), (secs(20), secs(10)));
    let text = c.describe();
    for line in [
        "scrape 1 job: node\n",
        "scrape 1 url: http://127.0.0.1:9100/metrics\n",
        "scrape 1 instance: 127.0.0.1:9100\n",
        "scrape 2 instance: localhost:80\n",
        "scrape 1 interval: 15s\n",
        "scrape 1 timeout: 5s\n",
        "scrape 1 honor-labels: true\n",
        "scrape 1 honor-timestamps: false\n",
        "scrape 1 sample-limit: 50000\n",
        "scrape 1 body-size-limit: 10485760 bytes\n",
        "scrape 1 labels: [az=b, role=worker]\n",
        "scrape 1 credentials: none\n",
        "scrape 4 interval: 1m 30s\n",
        "scrape 4 credentials: tls_config.insecure_skip_verify true\n",
        // Queries may hold keys: redacted as for the destinations.
        "scrape 5 url: http://127.0.0.1:8080/metrics?redacted\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}

#[test]
fn scrape_timeout_defaults_follow_prometheus() {
    let entry = |extra: &str| format!("scrape:\n  - job_name: a\n    url: http://a:1/m\n{extra}");
    let timeout = |extra: &str, flags: &[&str]| {
        let (_f, path) = file(&entry(extra));
        let mut args = vec!["--config-file", path.as_str()];
        args.extend_from_slice(flags);
        dry(&args).map(|c| c.scrape_targets[0].timeout)
    };
    assert_eq!(timeout("", &[]).unwrap(), secs(8));
    assert_eq!(
        timeout("    scrape_interval: 2s\n", &[]).unwrap(),
        Duration::from_millis(1600)
    );
    // --scrape-timeout is the file's default, cut to a shorter interval as Prometheus cuts
    // its global scrape_timeout.
    assert_eq!(timeout("", &["--scrape-timeout=3s"]).unwrap(), secs(3));
    assert_eq!(
        timeout("    scrape_interval: 2s\n", &["--scrape-timeout=5s"]).unwrap(),
        secs(2)
    );
    assert_eq!(
        timeout("    scrape_interval: 2s\n    scrape_timeout: 2s\n", &[]).unwrap(),
        secs(2)
    );
}

/// Every mistake in a `scrape` entry exits 64 naming the file, line, column and key, with
/// the reason; `wanted` is what follows the file's path.
#[test]
fn scrape_entry_errors_name_file_line_and_key() {
    let head = "scrape:\n  - job_name: a\n";
    let cases: &[(&str, &str)] = &[
        // Keys: unknown, and Prometheus's that kubelet-push does not implement.
        (
            "    url: http://a:1/m\n    scrape_intervl: 5s\n",
            ":4:5: scrape[0].scrape_intervl: unknown key \"scrape_intervl\"; did you mean scrape_interval? (known: job_name, url, static_configs, scheme,",
        ),
        (
            "    url: http://a:1/m\n    metric_relabel_configs: []\n",
            ":4:5: scrape[0].metric_relabel_configs: not supported; --metric-allow and --metric-deny",
        ),
        (
            "    url: http://a:1/m\n    relabel_configs: []\n",
            ":4:5: scrape[0].relabel_configs: not supported",
        ),
        (
            "    kubernetes_sd_configs: [{role: node}]\n",
            ":3:5: scrape[0].kubernetes_sd_configs: service discovery is not supported",
        ),
        (
            "    url: http://a:1/m\n    file_sd_configs: []\n",
            ":4:5: scrape[0].file_sd_configs: service discovery is not supported",
        ),
        (
            "    url: http://a:1/m\n    params: {module: [x]}\n",
            ":4:5: scrape[0].params: not supported; write the query into url",
        ),
        (
            "    url: http://a:1/m\n    authorization: {credentials_file: /t}\n",
            ":4:5: scrape[0].authorization: not supported; for a bearer token, use bearer_token_file",
        ),
        (
            "    url: http://a:1/m\n    follow_redirects: false\n",
            ":4:5: scrape[0].follow_redirects: not supported by kubelet-push",
        ),
        (
            "    url: http://a:1/m\n    enable_http2: false\n",
            ":4:5: scrape[0].enable_http2: not supported by kubelet-push",
        ),
        (
            "    url: http://a:1/m\n    oauth2: {}\n",
            ":4:5: scrape[0].oauth2: not supported",
        ),
        (
            "    url: http://a:1/m\n    bearer_token: s3cret\n",
            ":4:5: scrape[0].bearer_token: a token is not taken inline",
        ),
        (
            "    url: http://a:1/m\n    basic_auth:\n      username: u\n      password: s3cret\n",
            ":6:7: scrape[0].basic_auth.password: a password is not taken inline (it would show in the file); put it in a file and use password_file",
        ),
        (
            "    url: https://a:1/m\n    tls_config:\n      ca: |\n        -----BEGIN CERTIFICATE-----\n",
            ":5:7: scrape[0].tls_config.ca: inline PEM is not taken",
        ),
        (
            "    url: https://a:1/m\n    tls_config: {min_version: TLS13}\n",
            ":4:18: scrape[0].tls_config.min_version: not supported",
        ),
        (
            "    url: http://a:1/m\n    static_configs:\n      - targets: [b:1]\n        lables: {}\n",
            // Inside a list entry, at the entry (marked_yaml's position for it).
            ":5:7: scrape[0].static_configs[0].lables: unknown key \"lables\"; did you mean labels? (known: targets, labels)",
        ),
        // Targets.
        (
            "    url: http://a:1/m\n    static_configs: [{targets: [b:1]}]\n",
            ":4:21: scrape[0].static_configs: cannot be given with url",
        ),
        (
            "    scrape_interval: 5s\n",
            ":2:15: scrape[0].job_name: the entry has no target",
        ),
        (
            "    static_configs: [{targets: []}]\n",
            ":3:21: scrape[0].static_configs: lists no target",
        ),
        (
            "    url: http://a:1/m\n    scheme: https\n",
            ":4:13: scrape[0].scheme: cannot be given with url",
        ),
        (
            "    url: http://a:1/m\n    metrics_path: /x\n",
            ":4:19: scrape[0].metrics_path: cannot be given with url",
        ),
        (
            "    url: ftp://a:1/m\n",
            ":3:10: scrape[0].url: scheme \"ftp\" is not http or https",
        ),
        (
            "    url: http://u:s3cret@a:1/m\n",
            ":3:10: scrape[0].url: \"http://redacted@a:1/m\": user:password in the URL is not taken: a password would show in the file; use basic_auth.username and basic_auth.password_file",
        ),
        (
            "    scheme: gopher\n    static_configs: [{targets: [b:1]}]\n",
            ":3:13: scrape[0].scheme: \"gopher\" is not http or https",
        ),
        (
            "    metrics_path: metrics\n    static_configs: [{targets: [b:1]}]\n",
            ":3:19: scrape[0].metrics_path: \"metrics\" is not a path such as /metrics",
        ),
        (
            "    static_configs:\n      - targets: [b:1, 'http://c:1']\n",
            ":4:24: scrape[0].static_configs[0].targets[1]: \"http://c:1\" has a scheme",
        ),
        (
            "    static_configs:\n      - targets: [b:1/metrics]\n",
            ":4:19: scrape[0].static_configs[0].targets[0]: \"b:1/metrics\" is not HOST:PORT",
        ),
        (
            "    static_configs:\n      - targets: ['b:99999']\n",
            ":4:19: scrape[0].static_configs[0].targets[0]: \"b:99999\" is not HOST:PORT",
        ),
        // Labels.
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {instance: x}\n",
            ":5:18: scrape[0].static_configs[0].labels.instance: instance is set by kubelet-push itself",
        ),
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {node: x}\n",
            ":5:18: scrape[0].static_configs[0].labels.node: node is set by kubelet-push itself",
        ),
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {job: x}\n",
            ":5:18: scrape[0].static_configs[0].labels.job: job is set by kubelet-push itself: use job_name",
        ),
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {__metrics_path__: /x}\n",
            ":5:18: scrape[0].static_configs[0].labels.__metrics_path__: \"__metrics_path__\": names starting with __ are Prometheus's internal labels",
        ),
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {cluster: x}\n",
            ":5:18: scrape[0].static_configs[0].labels.cluster: cluster is an external label (--label)",
        ),
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {app.kubernetes.io/name: x}\n",
            ":5:18: scrape[0].static_configs[0].labels.app.kubernetes.io/name: \"app.kubernetes.io/name\" is not a valid label name",
        ),
        (
            "    static_configs:\n      - targets: [b:1]\n        labels: {team: ''}\n",
            ":5:18: scrape[0].static_configs[0].labels.team: team has an empty value",
        ),
        // Durations, limits.
        (
            "    url: http://a:1/m\n    scrape_interval: 15\n",
            ":4:22: scrape[0].scrape_interval: \"15\": unknown unit \"\"",
        ),
        (
            "    url: http://a:1/m\n    scrape_interval: 30s1m\n",
            ":4:22: scrape[0].scrape_interval: \"30s1m\" is not a duration (Prometheus's syntax",
        ),
        (
            "    url: http://a:1/m\n    scrape_interval: 0\n",
            ":4:22: scrape[0].scrape_interval: must be greater than zero",
        ),
        (
            "    url: http://a:1/m\n    scrape_interval: 500ms\n",
            ":4:22: scrape[0].scrape_interval: must be at least 1s",
        ),
        (
            "    url: http://a:1/m\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
            ":5:21: scrape[0].scrape_timeout: must not be longer than scrape_interval (5s)",
        ),
        (
            "    url: http://a:1/m\n    scrape_timeout: 11s\n",
            ":4:21: scrape[0].scrape_timeout: must not be longer than --interval, the default scrape_interval (10s)",
        ),
        (
            "    url: http://a:1/m\n    sample_limit: many\n",
            ":4:19: scrape[0].sample_limit: \"many\" is not a whole number",
        ),
        (
            "    url: http://a:1/m\n    sample_limit: -1\n",
            ":4:19: scrape[0].sample_limit: \"-1\" is not a whole number",
        ),
        (
            "    url: http://a:1/m\n    body_size_limit: 10kB\n",
            ":4:22: scrape[0].body_size_limit: \"10kB\": Prometheus counts sizes in powers of 1024 and refuses \"kB\"",
        ),
        (
            "    url: http://a:1/m\n    body_size_limit: 1024\n",
            ":4:22: scrape[0].body_size_limit: \"1024\" has no unit; Prometheus needs one: 1024B",
        ),
        (
            "    url: http://a:1/m\n    honor_labels: maybe\n",
            ":4:19: scrape[0].honor_labels:",
        ),
        // Access, through remote_write::access with the file's own keys.
        (
            "    url: http://a:1/m\n    bearer_token_file: /nonexistent/token\n",
            ":4:24: scrape[0].bearer_token_file: cannot read /nonexistent/token",
        ),
        (
            "    url: http://a:1/m\n    bearer_token_file: /etc/hostname\n    basic_auth: {username: u}\n",
            ":4:24: scrape[0].bearer_token_file: cannot be given with scrape[0].basic_auth.username",
        ),
        (
            "    url: http://a:1/m\n    basic_auth: {password_file: /etc/hostname}\n",
            ":4:33: scrape[0].basic_auth.password_file: needs scrape[0].basic_auth.username",
        ),
        (
            "    url: http://a:1/m\n    tls_config: {ca_file: /etc/hostname}\n",
            ":4:27: scrape[0].tls_config.ca_file: needs an https scrape[0].url (TLS settings do nothing for http)",
        ),
        (
            "    static_configs: [{targets: [b:1]}]\n    tls_config: {insecure_skip_verify: true}\n",
            ":4:40: scrape[0].tls_config.insecure_skip_verify: needs an https scrape[0].scheme",
        ),
        (
            "    url: https://a:1/m\n    tls_config: {insecure_skip_verify: true, server_name: b}\n",
            ":4:40: scrape[0].tls_config.insecure_skip_verify: cannot be given with scrape[0].tls_config.server_name",
        ),
        (
            "    url: http://a:1/m\n    proxy_url: socks5://p:1\n",
            ":4:16: scrape[0].proxy_url: must be an http:// or https:// URL",
        ),
        // The entry itself.
        (
            "    url: http://a:1/m\n  - job_name: a\n    url: http://b:1/m\n",
            ":4:15: scrape[1].job_name: also the job_name of scrape[0], line 2; each entry needs its own",
        ),
    ];
    for (body, wanted) in cases {
        let text = format!("{head}{body}");
        let (_f, path) = file(&text);
        let e = dry(&["--config-file", &path, "--label=cluster=c1"])
            .expect_err(&format!("accepted:\n{text}"));
        assert_eq!(e.flag, "--config-file", "{text}");
        assert!(
            e.reason.starts_with(&format!("{path}{wanted}")),
            "{text}\nwanted {wanted}\ngot    {}",
            e.reason
        );
        assert!(!e.reason.contains("s3cret"), "{e}");
    }
    let (_f, path) = file("scrape:\n  - job_name: ' '\n    url: http://a:1/m\n");
    let e = dry(&["--config-file", &path]).unwrap_err();
    assert!(
        e.reason.starts_with(&format!(
            "{path}:2:15: scrape[0].job_name: must not be empty"
        )),
        "{e}"
    );
    let (_f, path) = file("scrape: []\n");
    let e = dry(&["--config-file", &path]).unwrap_err();
    assert_eq!(e.reason, format!("{path}: scrape lists no target"));
}

#[test]
fn targets_that_would_write_the_same_series_are_refused_naming_both() {
    // The same job and instance (the scheme's port filled in), the same labels.
    let e = dry(&["--scrape=a=http://x/m", "--scrape=a=http://x:80/other"]).unwrap_err();
    assert_eq!(e.flag, "--scrape");
    assert_eq!(
        e.reason,
        "a=http://x:80/other: would write the same series as --scrape a=http://x/m (job \"a\", instance \"x:80\", the same labels): give them different job names or labels"
    );
    // Another job, port, scheme's port or label: other series.
    dry(&["--scrape=a=http://x/m", "--scrape=b=http://x/m"]).unwrap();
    dry(&["--scrape=a=http://x/m", "--scrape=a=https://x/m"]).unwrap();
    dry(&["--scrape=a=http://x:1/m", "--scrape=a=http://x:2/m"]).unwrap();

    let (_f, path) = file(
        "scrape:\n  - job_name: a\n    static_configs:\n      - targets: ['x:80']\n        labels: {l: '1'}\n      - targets: ['x:80']\n        labels: {l: '2'}\n  - job_name: b\n    url: https://y/m\n    static_configs_: []\n",
    );
    let e = dry(&["--config-file", &path]).unwrap_err();
    assert!(e.reason.contains("unknown key \"static_configs_\""), "{e}");
    let (_f, path) = file(
        "scrape:\n  - job_name: a\n    static_configs:\n      - targets: ['x:80']\n        labels: {l: '1'}\n      - targets: ['x:80']\n        labels: {l: '2'}\n  - job_name: b\n    url: https://y/m\n",
    );
    dry(&["--config-file", &path]).unwrap();
    // A flag and the file: named as each was written.
    let e = dry(&["--config-file", &path, "--scrape=b=https://y:443/"]).unwrap_err();
    assert_eq!(e.flag, "--config-file");
    assert_eq!(
        e.reason,
        format!("{path}:9:10: scrape[1].url: would write the same series as --scrape b=https://y:443/ (job \"b\", instance \"y:443\", the same labels): give them different job names or labels")
    );
    let (_f, path) = file(
        "scrape:\n  - job_name: a\n    static_configs:\n      - targets: ['x:80']\n      - targets: ['x']\n",
    );
    let e = dry(&["--config-file", &path]).unwrap_err();
    assert_eq!(
        e.reason,
        format!("{path}:5:19: scrape[0].static_configs[1].targets[0]: would write the same series as scrape[0].static_configs[0].targets[0] (line 4) (job \"a\", instance \"x:80\", the same labels): give them different job names or labels")
    );
}

#[test]
fn a_file_with_only_a_scrape_list_leaves_the_destinations_to_the_flags() {
    let (_f, path) = file("scrape:\n  - job_name: a\n    url: http://a:1/m\n");
    let c = config(&[
        "--config-file",
        &path,
        "--remote-url=http://r/w",
        "--remote-timeout=5s",
    ])
    .unwrap();
    assert_eq!(c.remotes[0].timeout, secs(5));
    assert_eq!(c.scrape_targets.len(), 1);
    let e = config(&["--config-file", &path]).unwrap_err();
    assert_eq!(e.flag, "--remote-url");
    assert!(
        e.reason.contains("or a remote-write list in --config-file"),
        "{e}"
    );
    // With a remote-write list, it still replaces the flags; targets from both add up.
    let (_f, path) = file(
        "remote-write:\n  - url: http://r/w\nscrape:\n  - job_name: a\n    url: http://a:1/m\n",
    );
    let c = config(&["--config-file", &path, "--scrape=b=http://b:1/m"]).unwrap();
    let jobs: Vec<&str> = c.scrape_targets.iter().map(|t| t.job.as_str()).collect();
    assert_eq!(jobs, ["b", "a"]);
    let e = config(&["--config-file", &path, "--remote-url=http://q/w"]).unwrap_err();
    assert!(
        e.reason
            .starts_with("--remote-url cannot be given with --config-file's remote-write list"),
        "{e}"
    );
    // A dry run reads the scrape list, and leaves the destinations alone as before.
    let (_f, path) = file(
        "remote-write:\n  - url: https://r/w\n    bearer-token-file: /nonexistent/token\nscrape:\n  - job_name: a\n    url: http://a:1/m\n",
    );
    assert_eq!(
        dry(&["--config-file", &path]).unwrap().scrape_targets.len(),
        1
    );
    let (_f, path) = file("");
    let e = dry(&["--config-file", &path]).unwrap_err();
    assert!(
        e.reason
            .ends_with("empty; it needs a remote-write or a scrape list"),
        "{e}"
    );
}

#[test]
fn credentials_are_files_shown_by_path_and_looked_up_in_the_sandbox() {
    let sandbox = tempfile::tempdir().unwrap();
    let dir = format!("kubelet-push-scrape-sandbox-{}", std::process::id());
    let put = |name: &str, content: &str| {
        let p = sandbox.path().join(&dir).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        (format!("/{dir}/{name}"), p.display().to_string())
    };
    let ca = rcgen::generate_simple_self_signed(vec!["exporter.example".to_owned()]).unwrap();
    let (token, token_in) = put("token", "t0k3n-value");
    let (password, password_in) = put("password", "pa55-value");
    let (ca_file, ca_in) = put("ca.crt", &ca.cert.pem());
    let (cert, cert_in) = put("tls.crt", &ca.cert.pem());
    let (key, key_in) = put("tls.key", &ca.signing_key.serialize_pem());
    let (yaml, _) = put(
        "kp.yaml",
        &format!(
            "scrape:
  - job_name: token
    url: https://exporter.example:9100/metrics
    bearer_token_file: {token}
    tls_config:
      ca_file: {ca_file}
      cert_file: {cert}
      key_file: {key}
      server_name: other.example
  - job_name: basic
    url: http://127.0.0.1:9182/metrics
    basic_auth:
      username: scraper
      password_file: {password}
    proxy_url: http://proxy.example:3128
"
        ),
    );
    let args =
        crate::cli::Cli::try_parse_from(["kubelet-push", "--dry-run", "--config-file", &yaml])
            .unwrap();
    let c = Config::from_args_in(&args.agent, Some(sandbox.path()), None).unwrap();
    let text = c.describe();
    for line in [
        format!("scrape 1 credentials: bearer_token_file {token_in}, tls_config.ca_file {ca_in}, tls_config.cert_file {cert_in}, tls_config.key_file {key_in}, tls_config.server_name other.example\n"),
        format!("scrape 2 credentials: basic_auth.username scraper, basic_auth.password_file {password_in}, proxy_url http://proxy.example:3128/\n"),
    ] {
        assert!(text.contains(&line), "{line:?} missing:\n{text}");
    }
    assert!(!text.contains("t0k3n") && !text.contains("pa55"), "{text}");
    assert!(Path::new(&token_in).is_file());
}

#[test]
fn check_config_lists_every_target() {
    let c = dry(&[
        "--kubelet-url=https://10.0.0.1:10250",
        "--scrape=node=http://127.0.0.1:9100/metrics",
        "--kubelet-scrape=/metrics/probes",
        "--scrape-timeout=2s",
    ])
    .unwrap();
    let text = c.describe();
    let block = "\
scrape 1 job: node
scrape 1 url: http://127.0.0.1:9100/metrics
scrape 1 instance: 127.0.0.1:9100
scrape 1 interval: 10s
scrape 1 timeout: 2s
scrape 1 honor-labels: false
scrape 1 honor-timestamps: true
scrape 1 sample-limit: none
scrape 1 body-size-limit: none
scrape 1 labels: []
scrape 1 credentials: none
scrape 2 job: kubelet
scrape 2 kubelet path: /metrics/probes (through kubelet-url, with its token, CA and proxy)
scrape 2 instance: (the node name)
scrape 2 interval: 10s
scrape 2 timeout: 2s
scrape 2 honor-labels: false
scrape 2 honor-timestamps: true
scrape 2 sample-limit: none
scrape 2 body-size-limit: none
scrape 2 labels: [metrics_path=/metrics/probes]
";
    assert!(text.ends_with(block), "{text}");
    assert!(text.contains("kubelet-summary: true\n"), "{text}");
    assert!(dry(&[]).unwrap().describe().ends_with("scrape: none\n"));
}

#[test]
fn durations_take_prometheus_syntax() {
    for (s, ms) in [
        ("15s", 15_000),
        ("1m30s", 90_000),
        ("1m", 60_000),
        ("500ms", 500),
        ("1h1m1s1ms", 3_661_001),
        ("2d", 172_800_000),
        ("1w", 604_800_000),
        ("1y", 31_536_000_000),
        ("0", 0),
    ] {
        assert_eq!(prometheus_duration(s), Ok(Duration::from_millis(ms)), "{s}");
    }
    for bad in [
        "", "15", "1.5s", "30s1m", "1s1s", "1 s", "-1s", "1min", "s", "1us", "10S",
    ] {
        assert!(prometheus_duration(bad).is_err(), "{bad:?}");
    }
    assert!(prometheus_duration("99999999999999999y")
        .unwrap_err()
        .contains("too long"));
}

#[test]
fn sizes_take_prometheus_syntax_in_powers_of_1024() {
    for (s, n) in [
        ("0", 0),
        ("0B", 0),
        ("512B", 512),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("10MB", 10 << 20),
        ("10MiB", 10 << 20),
        ("1GB", 1 << 30),
        ("2TiB", 2 << 40),
        ("1.5MB", 1_572_864),
        ("1MB1KB25B", 1_049_625),
        (".5KB", 512),
    ] {
        assert_eq!(prometheus_size(s), Ok(n), "{s}");
    }
    for (bad, why) in [
        ("1kB", "refuses \"kB\""),
        ("1024", "has no unit"),
        ("-1MB", "negative"),
        ("MB", "is not a size"),
        ("1.2.3MB", "is not a size"),
        ("1ZB", "unknown unit \"ZB\""),
        ("1mb", "unknown unit \"mb\""),
        ("", "is not a size"),
        ("9EB", "too large"),
    ] {
        let e = prometheus_size(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}
