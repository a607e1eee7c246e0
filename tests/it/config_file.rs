//! The config file's per-destination settings, on the wire: two receivers, each decoding what
//! it was sent, one with a metric filter, labels and a buffer size of its own.

use std::sync::Arc;

use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::telemetry::Metrics;
use kubelet_push::testkit::receiver::Receiver;
use kubelet_push::Outcome;
use tokio_util::sync::CancellationToken;

use crate::support::*;

fn names(series: &[TimeSeries]) -> Vec<String> {
    let mut n: Vec<String> = series
        .iter()
        .filter_map(|ts| label(ts, "__name__").map(str::to_owned))
        .collect();
    n.sort();
    n.dedup();
    n
}

/// Destination 1 (Remote Write 2.0) is sent only `container_*` but `container_fs_*`, with
/// `team=a` and `zone=z`, from a 128 KiB buffer; destination 2 (1.0) everything, with `zone=b`.
/// Both carry `--label cluster=c1`; the series both get have the same samples.
#[tokio::test]
async fn each_destination_gets_its_own_filter_labels_and_buffer_size() {
    let (a, b) = (
        Receiver::start().await.unwrap(),
        Receiver::start().await.unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kp.yaml");
    std::fs::write(
        &file,
        format!(
            "remote-write:\n  - url: {}\n    version: 2\n    metric-allow: container_.*\n    metric-deny: [container_fs_.*]\n    labels: {{team: a}}\n    label: zone=z\n    buffer-max-size: 128KiB\n  - url: {}\n    version: 1\n    label: [zone=b]\n",
            a.url(),
            b.url()
        ),
    )
    .unwrap();
    let kubelet = format!("file://{}", fixture("seed-windows-node.json").display());
    let args = [
        "--once",
        "--kubelet-url",
        &kubelet,
        "--config-file",
        file.to_str().unwrap(),
        "--label",
        "cluster=c1",
    ];
    let metrics = Arc::new(Metrics::new());
    let mut sink = Vec::new();
    let outcome = kubelet_push::run(
        config(&args),
        CancellationToken::new(),
        metrics.clone(),
        &mut sink,
    )
    .await
    .expect("run");
    assert_eq!(outcome, Outcome::Ok);
    assert!(
        a.requests().iter().all(|r| r.header("content-type")
            == Some("application/x-protobuf;proto=io.prometheus.write.v2.Request")),
        "destination 1 speaks 2.0"
    );
    let (to_a, to_b) = (a.accepted_series(), b.accepted_series());
    let expected: Vec<String> = names(&to_b)
        .into_iter()
        .filter(|n| {
            n == "up"
                || n.starts_with("scrape_")
                || (n.starts_with("container_") && !n.starts_with("container_fs_"))
        })
        .collect();
    assert!(expected.iter().any(|n| n.starts_with("container_memory")));
    assert!(names(&to_b).iter().any(|n| n.starts_with("node_")));
    assert_eq!(names(&to_a), expected);
    for ts in &to_a {
        assert_eq!(
            (label(ts, "team"), label(ts, "zone"), label(ts, "cluster")),
            (Some("a"), Some("z"), Some("c1")),
            "{ts:?}"
        );
        let sorted = ts.labels.windows(2).all(|w| w[0].name < w[1].name);
        assert!(sorted, "labels sorted by name: {ts:?}");
        let n = label(ts, "__name__").unwrap_or("");
        if n == "up" || n.starts_with("scrape_") {
            continue;
        }
        let twin = to_b
            .iter()
            .find(|t| {
                let strip = |s: &TimeSeries| -> Vec<(String, String)> {
                    s.labels
                        .iter()
                        .filter(|l| !matches!(l.name.as_str(), "team" | "zone"))
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect()
                };
                strip(t) == strip(ts)
            })
            .expect("sent to destination 2 too");
        assert_eq!(twin.samples, ts.samples);
    }
    for ts in &to_b {
        assert_eq!(
            (label(ts, "team"), label(ts, "zone")),
            (None, Some("b")),
            "{ts:?}"
        );
    }
    let dests = metrics.destinations();
    assert_eq!(dests.len(), 2);
    assert_eq!(dests[0].buffer_max_bytes.get(), 128 << 10);
    assert_eq!(dests[1].buffer_max_bytes.get(), 64 << 20);
    assert_eq!(dests[0].samples_queued.get(), to_a.len() as u64);
    assert_eq!(dests[1].samples_queued.get(), to_b.len() as u64);
}

/// `check-config` from the binary with `args`, `env` for the child only, and no
/// `KUBELET_PUSH_*` of the test's own environment but the ones CI sets for itself (the Wine
/// run's marker among them, which finds leftover processes).
fn check_config(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.arg("check-config").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("KUBELET_PUSH_") && !kubelet_push::cli::NOT_SETTINGS.contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run kubelet-push")
}

fn setting(out: &std::process::Output, name: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The file gives what neither a flag nor the environment gives; the environment wins over
/// the file and a flag over both, for a single value (`interval`) and a repeatable one
/// (`label`).
#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kp.yaml");
    std::fs::write(
        &file,
        "interval: 5s\nlabel: [team=a, zone=b]\njob: filejob\ndry-run: true\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = check_config(&["--config-file", path], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(setting(&out, "interval"), "5s");
    assert_eq!(setting(&out, "label"), "[team=a, zone=b]");
    assert_eq!(setting(&out, "mode"), "dry-run");
    let env = [
        ("KUBELET_PUSH_INTERVAL", "7s"),
        ("KUBELET_PUSH_LABEL", "env=1"),
    ];
    let out = check_config(&["--config-file", path], &env);
    assert_eq!(setting(&out, "interval"), "7s");
    assert_eq!(setting(&out, "label"), "[env=1]");
    assert_eq!(setting(&out, "job"), "filejob");
    let out = check_config(
        &["--config-file", path, "--interval=9s", "--label=flag=1"],
        &env,
    );
    assert_eq!(setting(&out, "interval"), "9s");
    assert_eq!(setting(&out, "label"), "[flag=1]");
}

/// A typo in a variable's name or a file key exits 64 naming the closest setting, at start
/// and in `check-config` alike; a bad value from the environment names the variable, one from
/// the file its line.
#[test]
fn unknown_names_and_bad_values_exit_64_saying_where() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kp.yaml");
    let path = file.to_str().unwrap();
    /// The file, the arguments, the environment, and what the error says.
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("", &["--dry-run"], &[("KUBELET_PUSH_INTERVL", "5s")], "error: KUBELET_PUSH_INTERVL: not a kubelet-push setting; did you mean KUBELET_PUSH_INTERVAL?"),
        ("", &["--dry-run"], &[("KUBELET_PUSH_INTERVAL", "5")], "error: KUBELET_PUSH_INTERVAL (--interval from the environment): invalid value \"5\": not a duration: give a number with a unit, such as 10s, 1m30s or 500ms\n"),
        ("dry-run: true\nintervall: 5s\n", &["--config-file", path], &[], ":2:1: intervall: unknown key; did you mean interval?"),
        ("dry-run: true\ninterval: 5\n", &["--config-file", path], &[], ":2:11: interval: invalid value \"5\": not a duration"),
    ];
    for (text, args, env, want) in cases {
        std::fs::write(&file, text).unwrap();
        for start in [true, false] {
            let out = if start {
                let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
                for (k, _) in std::env::vars() {
                    if k.starts_with("KUBELET_PUSH_")
                        && !kubelet_push::cli::NOT_SETTINGS.contains(&k.as_str())
                    {
                        cmd.env_remove(k);
                    }
                }
                cmd.args(*args).envs(env.iter().copied()).output().unwrap()
            } else {
                check_config(args, env)
            };
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}: {err}");
            assert!(err.contains(want), "{args:?} {env:?}: {err}");
        }
    }
    // The variables CI and the tests set for themselves are not settings, and not refused.
    let out = check_config(
        &["--dry-run"],
        &[("KUBELET_PUSH_BLESS", "1"), ("KUBELET_PUSH_IMAGE", "x")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's top-level example is valid as printed, and gives what it says.
#[test]
fn the_readme_top_level_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = "```yaml\n# kubelet-push --config-file kp.yaml\n";
    let start = readme.find(marker).expect("the example") + "```yaml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kp.yaml");
    std::fs::write(&file, example).unwrap();
    let out = check_config(&["--config-file", file.to_str().unwrap()], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(setting(&out, "interval"), "15s");
    assert_eq!(setting(&out, "label"), "[cluster=edge-7, region=eu]");
    assert_eq!(setting(&out, "listen-address"), "0.0.0.0:9842");
    assert_eq!(setting(&out, "kubelet-insecure-skip-verify"), "true");
    let out = check_config(
        &["--config-file", file.to_str().unwrap()],
        &[("KUBELET_PUSH_INTERVAL", "5s")],
    );
    assert_eq!(setting(&out, "interval"), "5s");
}
