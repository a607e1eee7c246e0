//! Tests of the config file's top-level settings (`layered`), its per-destination settings and
//! the configuration papercuts: values checked on what `settle` and `Config` return.

use super::*;
use clap::CommandFactory;

fn settle_with(file: &str, args: &[&str]) -> Result<Settled, String> {
    let (f, path) = config_file(file);
    let argv: Vec<std::ffi::OsString> = ["kubelet-push", "--config-file", &path]
        .iter()
        .chain(args)
        .map(Into::into)
        .collect();
    let out = settle(argv).map_err(|e| match e {
        SettleError::Usage(m) => m,
        SettleError::Clap(e) => e.to_string(),
    });
    drop(f);
    out
}

/// A value every flag takes, by its value name: a flag added with a new kind of value fails
/// here until it has one, so no flag can be missing from the file.
fn sample_value(arg: &clap::Arg) -> String {
    if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
        return "true".into();
    }
    let name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    match name.as_str() {
        "DURATION" => "7s",
        "SIZE" => "1MiB",
        "N" => "7",
        "URL" => "http://example.test:1/p",
        "PATH" => "/nonexistent/p",
        "BOOL" => "false",
        "NAME=VALUE" => "team=a",
        "REGEX" => "x_.*",
        "NAME" => "n1",
        "FORMAT" => "json",
        "LEVEL" => "debug",
        "ADDR:PORT" => "127.0.0.1:1",
        "1|2|auto" => "1",
        "JOB=URL" => "j=http://127.0.0.1:1/metrics",
        other => panic!("--{:?}: no sample value for {other:?}", arg.get_long()),
    }
    .into()
}

#[test]
fn every_agent_flag_is_a_config_file_key() {
    let command = crate::cli::Cli::command();
    let mut checked = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "config-file" {
            continue;
        }
        // A variable the test's own environment sets would win over the file.
        if arg.get_env().is_some_and(|e| std::env::var_os(e).is_some()) {
            continue;
        }
        let value = sample_value(arg);
        let settled = settle_with(&format!("{long}: {value:?}\n"), &[])
            .unwrap_or_else(|e| panic!("{long}: {e}"));
        let id = arg.get_id().as_str();
        assert_eq!(
            settled.matches.value_source(id),
            Some(clap::parser::ValueSource::CommandLine),
            "{long}: the file's value was not applied"
        );
        checked += 1;
    }
    assert!(checked > 40, "only {checked} flags");
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let file = "interval: 5s\nlabel: [team=a, zone=b]\njob: filejob\nkubelet-pods: false\n";
    let s = settle_with(file, &[]).unwrap();
    assert_eq!(s.cli.agent.interval, Some(Duration::from_secs(5)));
    assert_eq!(s.cli.agent.labels, ["team=a", "zone=b"]);
    assert_eq!(s.cli.agent.job, "filejob");
    assert!(!s.cli.agent.kubelet_pods);
    let s = settle_with(file, &["--interval=3s", "--label", "x=y"]).unwrap();
    assert_eq!(s.cli.agent.interval, Some(Duration::from_secs(3)));
    assert_eq!(
        s.cli.agent.labels,
        ["x=y"],
        "a repeatable flag replaces the list"
    );
    assert_eq!(s.cli.agent.job, "filejob");
    // One text for a repeatable key is a list of one; a switch takes a boolean.
    let s = settle_with("label: team=a\nonce: yes\ndry-run: off\n", &[]).unwrap();
    assert_eq!(s.cli.agent.labels, ["team=a"]);
    assert!(s.cli.agent.once && !s.cli.agent.dry_run);
}

#[test]
fn file_settings_errors_name_file_line_and_key() {
    let e = settle_with("job: j\ninterval: 5\n", &[]).unwrap_err();
    assert!(
        e.contains(":2:11: interval: invalid value \"5\": not a duration"),
        "{e}"
    );
    let e = settle_with("intervl: 5s\n", &[]).unwrap_err();
    assert!(
        e.contains(":1:1: intervl: unknown key; did you mean interval?"),
        "{e}"
    );
    let e = settle_with("interval: [5s, 6s]\n", &[]).unwrap_err();
    assert!(
        e.contains(":1:1: interval: takes one value, not a list"),
        "{e}"
    );
    let e = settle_with("once: maybe\n", &[]).unwrap_err();
    assert!(e.contains(":1:7: once: takes true or false"), "{e}");
    let e = settle_with("label: {team: a}\n", &[]).unwrap_err();
    assert!(e.contains(":1:8: label: a text or a list of texts"), "{e}");
    let e = settle_with("config-file: other.yaml\n", &[]).unwrap_err();
    assert!(
        e.contains("config-file: a config file cannot name another"),
        "{e}"
    );
    // A bad value the command line overrides is never read.
    settle_with("interval: 5\n", &["--interval=5s"]).unwrap();
}

#[test]
fn unknown_environment_variables_are_named_with_the_closest() {
    use crate::cli::unknown_env;
    assert_eq!(
        unknown_env(["PATH", "KUBELET_PUSH_INTERVAL", "KUBELET_PUSH_BLESS"]),
        None
    );
    let e = unknown_env(["KUBELET_PUSH_INTERVL"]).unwrap();
    assert!(
        e.starts_with(
            "KUBELET_PUSH_INTERVL: not a kubelet-push setting; did you mean KUBELET_PUSH_INTERVAL?"
        ),
        "{e}"
    );
    let e = unknown_env(["KUBELET_PUSH_REMOTE_ULR"]).unwrap();
    assert!(e.contains("did you mean KUBELET_PUSH_REMOTE_URL?"), "{e}");
    let e = unknown_env(["KUBELET_PUSH_SOMETHING_ELSE_ENTIRELY"]).unwrap();
    assert!(!e.contains("did you mean"), "{e}");
    // The demo's variables are settings too.
    #[cfg(feature = "demo")]
    assert_eq!(unknown_env(["KUBELET_PUSH_DEMO_PODS"]), None);
}

#[test]
fn destinations_have_their_own_buffer_size_filter_and_labels() {
    let (_f, path) = config_file(
        "remote-write:\n  - url: http://a/w\n    buffer-max-size: 128KiB\n    metric-allow: container_.*\n    metric-deny: [container_fs_.*]\n    labels: {team: a}\n    label: [zone=z]\n  - url: http://b/w\n",
    );
    let c = config(&["--config-file", &path, "--label=cluster=c1"]).unwrap();
    let (a, b) = (&c.remotes[0], &c.remotes[1]);
    assert_eq!(a.buffer_max_bytes, Some(128 << 10));
    let f = a.metric_filter.as_ref().unwrap();
    assert!(f.allows("container_cpu_usage_seconds_total"));
    assert!(!f.allows("container_fs_usage_bytes") && !f.allows("node_cpu_usage_seconds_total"));
    assert_eq!(
        a.labels,
        [
            ("team".to_owned(), "a".to_owned()),
            ("zone".into(), "z".into())
        ]
    );
    assert!(b.buffer_max_bytes.is_none() && b.metric_filter.is_none() && b.labels.is_empty());
    let text = c.describe();
    assert!(
        text.contains("remote 1 buffer-max-size: 131072 bytes\n"),
        "{text}"
    );
    assert!(
        text.contains("remote 1 label: [team=a, zone=z]\n"),
        "{text}"
    );
    assert!(
        text.contains("remote 1 metric filter: allow [container_.*], deny [container_fs_.*]\n"),
        "{text}"
    );

    let refused = |entry: &str, want: &str| {
        let (_f, path) = config_file(&format!("remote-write:\n  - url: http://a/w\n{entry}"));
        let e = config(&["--config-file", &path, "--label=cluster=c1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{entry}: {e}");
    };
    refused(
        "    buffer-max-size: 1KiB\n",
        ":3:22: remote-write[0].buffer-max-size: must be at least 64KiB",
    );
    refused(
        "    metric-allow: \"(\"\n",
        ":3:19: remote-write[0].metric-allow: \"(\" is not a regular expression",
    );
    refused(
        "    labels: {job: x}\n",
        "remote-write[0].labels: \"job\" is set by kubelet-push itself",
    );
    refused(
        "    label: cluster=c2\n",
        "\"cluster\" is set by label (--label) for every destination already",
    );
    refused("    label: [a=1, a=2]\n", "\"a\" is given twice");
}

#[test]
fn papercuts() {
    // A path given as the kubelet URL says how to write it.
    let e = config(&["--dry-run", "--kubelet-url", "/abs/path.json"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("write file:///abs/path.json"), "{e}");
    // Go's :PORT listens on every IPv4 interface.
    let c = config(&["--dry-run", "--listen-address", ":9842"]).unwrap();
    assert_eq!(c.listen_address, Some("0.0.0.0:9842".parse().unwrap()));
    // A URL without a path works, with a warning; one with a path has none.
    let c = config(&["--remote-url", "http://mimir:8080"]).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("http://mimir:8080/ has no path"),
        "{:?}",
        c.warnings
    );
    assert!(config(&["--remote-url", "http://mimir:8080/api/v1/push"])
        .unwrap()
        .warnings
        .is_empty());
    // --dry-run with a destination says the destination is not used.
    let c = config(&["--dry-run", "--once", "--remote-url", "http://r/w"]).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("pushes nothing")),
        "{:?}",
        c.warnings
    );
    // Header values are shown, credentials' not.
    let c = config(&[
        "--remote-url=http://r/w",
        "--remote-header=X-Scope-OrgID=tenant-1",
        "--remote-header=X-Api-Key=k3y",
        "--remote-header=X-Auth-Token=t0k",
        "--remote-header=Authorization=Bearer b",
        "--remote-header=X-Client-Secret=s3c",
    ])
    .unwrap();
    let text = c.describe();
    assert!(text.contains("remote 1 header: [x-scope-orgid=tenant-1, x-api-key=(hidden), x-auth-token=(hidden), authorization=(hidden), x-client-secret=(hidden)]\n"), "{text}");
    for secret in ["k3y", "t0k", "Bearer b", "s3c"] {
        assert!(!text.contains(secret), "{secret}: {text}");
    }
    // A buffer directory the start could not use is refused by the same check.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("buffer");
    let e = config(&[
        "--remote-url=http://r/w",
        "--buffer-dir",
        under_file.to_str().unwrap(),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("--buffer-dir: ") && e.contains("is not a directory"),
        "{e}"
    );
    let e = config(&[
        "--remote-url=http://r/w",
        "--buffer-dir",
        file.to_str().unwrap(),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("is not a directory"), "{e}");
    let fresh = dir.path().join("new/buffer");
    config(&[
        "--remote-url=http://r/w",
        "--buffer-dir",
        fresh.to_str().unwrap(),
    ])
    .unwrap();
    assert!(!fresh.exists(), "the check creates nothing");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no probe left behind"
    );
}
