//! `--dry-run` on every captured summary, compared with a reviewed golden file.
//!
//! The golden files are the contract for METRICS.md on real kubelet output: a change to any
//! metric shows up here as a diff to review. Regenerate with `KUBELET_PUSH_BLESS=1 cargo test
//! golden` and read the diff before committing it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/summaries");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

use crate::support::now_ms;

/// The per-poll series carry the wall-clock poll time and a measured duration; everything
/// else comes from the summary. Replace the two moving parts after checking they are sane.
fn normalize(output: &str, before_ms: i64, after_ms: i64) -> String {
    let mut out = String::new();
    for line in output.lines() {
        let is_poll_series = ["up{", "scrape_duration_seconds{", "scrape_samples_scraped{"]
            .iter()
            .any(|p| line.starts_with(p));
        if !is_poll_series {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let (rest, ts) = line.rsplit_once(' ').expect("timestamp");
        let ts: i64 = ts.parse().expect("numeric timestamp");
        assert!(
            (before_ms..=after_ms).contains(&ts),
            "poll time {ts} outside the run: {line}"
        );
        let (series, value) = rest.rsplit_once(' ').expect("value");
        if series.starts_with("scrape_duration_seconds{") {
            let v: f64 = value.parse().expect("numeric duration");
            assert!(v > 0.0 && v < 60.0, "{line}");
            out.push_str(&format!("{series} <duration> <poll-time>\n"));
        } else {
            out.push_str(&format!("{series} {value} <poll-time>\n"));
        }
    }
    out
}

#[test]
fn dry_run_matches_golden_files() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut failures = Vec::new();
    let files = fixtures();
    assert!(
        files.len() >= 11,
        "expected every shared fixture, found {}",
        files.len()
    );
    for fixture in files {
        let stem = fixture.file_stem().unwrap().to_string_lossy().into_owned();
        let before = now_ms();
        let output = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .arg("--dry-run")
            .arg(format!("--kubelet-url=file://{}", fixture.display()))
            .env_remove("KUBELET_PUSH_NODE_NAME")
            .output()
            .expect("run kubelet-push");
        let after = now_ms();
        assert!(
            output.status.success(),
            "{stem}: exit {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = normalize(
            &String::from_utf8(output.stdout).expect("utf-8"),
            before,
            after,
        );
        assert!(
            text.contains("up{") && text.contains(" 1 <poll-time>"),
            "{stem}: no up 1"
        );
        compare(
            &golden_dir.join(format!("{stem}.prom")),
            &text,
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

/// Compares `text` with the golden file (or writes it, with `KUBELET_PUSH_BLESS`), adding a
/// short description of any difference to `failures`.
fn compare(golden: &Path, text: &str, failures: &mut Vec<String>) {
    let stem = golden.file_name().unwrap().to_string_lossy();
    if std::env::var_os("KUBELET_PUSH_BLESS").is_some() {
        std::fs::write(golden, text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(golden)
        .unwrap_or_else(|e| panic!("{}: {e} (run with KUBELET_PUSH_BLESS=1)", golden.display()));
    if expected != text {
        let diff: Vec<String> = expected
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("  golden: {a}\n  actual: {b}"))
            .collect();
        failures.push(format!(
            "{stem}: {} golden lines, {} actual\n{}",
            expected.lines().count(),
            text.lines().count(),
            diff.join("\n")
        ));
    }
}

/// The pod labels the metadata goldens copy: ones the captures' pods have.
const POD_LABELS: [&str; 2] = ["app", "app.kubernetes.io/name"];

/// `--dry-run` against a kubelet on 127.0.0.1 that serves a capture's summary and its `/pods`
/// document (`tests/fixtures/pods/<stem>__pods.json`, or without `__summary`), with `--pod-label`: the labels that come
/// from pod metadata, on real kubelet output, in `tests/golden/<stem>.pods.prom`. A lone poll
/// waits for `/pods`, so every container the document describes is labelled.
#[tokio::test]
async fn dry_run_with_pod_metadata_matches_golden_files() {
    use axum::routing::get;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden_dir = root.join("tests/golden");
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for fixture in fixtures() {
        let stem = fixture.file_stem().unwrap().to_string_lossy().into_owned();
        // `<stem>__pods.json`; the real capture's is named after its source's own name, without
        // the summary's `__summary`.
        let base = stem.strip_suffix("__summary").unwrap_or(&stem);
        let Some(pods) = [&stem, base].iter().find_map(|s| {
            std::fs::read(root.join(format!("tests/fixtures/pods/{s}__pods.json"))).ok()
        }) else {
            continue;
        };
        let summary = std::fs::read(&fixture).unwrap();
        let summary_copy = summary.clone();
        let json = |body: Vec<u8>| {
            move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        };
        let app = axum::Router::new()
            .route("/stats/summary", get(json(summary)))
            .route("/pods", get(json(pods)));
        let kubelet = kubelet_push::testkit::server::LocalServer::start(app, "golden kubelet")
            .await
            .unwrap();
        let before = now_ms();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
        command
            .arg("--dry-run")
            .arg(format!("--kubelet-url=http://{}", kubelet.addr()))
            .env_remove("KUBELET_PUSH_NODE_NAME");
        for label in POD_LABELS {
            command.arg(format!("--pod-label={label}"));
        }
        let output = command.output().await.expect("run kubelet-push");
        let after = now_ms();
        assert!(
            output.status.success(),
            "{stem}: exit {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = normalize(
            &String::from_utf8(output.stdout).expect("utf-8"),
            before,
            after,
        );
        assert!(
            text.contains("image=\""),
            "{stem}: no container labelled from /pods\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // kube-prometheus's container selector, `{job="kubelet",
        // metrics_path="/metrics/cadvisor", container!="", image!=""}`, finds every container
        // of the summary (Windows ones included), for CPU and for memory.
        let parsed = kubelet_push::kubelet::summary::parse(&summary_copy).unwrap();
        for pod in parsed.pods.iter().flatten() {
            let r = pod.pod_ref.as_ref().unwrap();
            let pod_name = r.name.as_deref().unwrap();
            for c in pod.containers.iter().flatten() {
                let container = c.name.as_deref().unwrap();
                for family in [
                    "container_cpu_usage_seconds_total{",
                    "container_memory_working_set_bytes{",
                ] {
                    let found = text.lines().any(|l| {
                        l.starts_with(family)
                            && l.contains(&format!("container=\"{container}\""))
                            && l.contains(&format!("pod=\"{pod_name}\""))
                            && l.contains("job=\"kubelet\"")
                            && l.contains("metrics_path=\"/metrics/cadvisor\"")
                            && l.contains("image=\"")
                    });
                    let has_value = match family {
                        "container_cpu_usage_seconds_total{" => c
                            .cpu
                            .as_ref()
                            .is_some_and(|x| x.usage_core_nano_seconds.is_some()),
                        _ => c
                            .memory
                            .as_ref()
                            .is_some_and(|x| x.working_set_bytes.is_some()),
                    };
                    assert_eq!(
                        found, has_value,
                        "{stem}: {family}}} for {pod_name}/{container}"
                    );
                }
            }
        }
        compare(
            &golden_dir.join(format!("{stem}.pods.prom")),
            &text,
            &mut failures,
        );
        checked.push(stem);
    }
    assert_eq!(
        checked,
        [
            "dd-integrations-core__stats_summary_windows",
            "nri-kubernetes-testutil-1_34__summary",
            "otel-awscontainerinsight-k8swindows__CurSingleKubeletSummary",
            "seed-windows-node",
        ],
        "every capture with a /pods document"
    );
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

/// The shared fixtures are copied here so the tests stand alone; a fixture added to (or
/// changed in) `../shared` must be copied too, or it would silently go untested.
#[test]
fn fixture_copies_match_shared() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/summaries");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        // Outside the project's workspace there is no shared/ to compare with.
        eprintln!("no {} to compare with", shared.display());
        return;
    };
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/summaries");
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let ours = std::fs::read(local.join(name)).unwrap_or_else(|_| {
            panic!(
                "{} is not copied into tests/fixtures/summaries",
                name.to_string_lossy()
            )
        });
        assert_eq!(
            ours,
            std::fs::read(&path).unwrap(),
            "{} differs from shared",
            name.to_string_lossy()
        );
    }
}

/// Every capture in `../shared/fixtures/summaries` parses into the summary model, read
/// straight from there (the golden test above works on the copies).
#[test]
fn every_shared_fixture_parses() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/summaries");
    let dir = if shared.is_dir() {
        shared
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/summaries")
    };
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let summary = kubelet_push::kubelet::summary::parse(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let node = summary
            .node
            .as_ref()
            .expect("every capture has a node section");
        assert!(
            node.node_name.as_deref().is_some_and(|n| !n.is_empty()),
            "{}",
            path.display()
        );
        let mut samples = 0;
        kubelet_push::pipeline::convert::convert(
            &summary,
            Default::default(),
            0,
            120_000,
            &mut |_| samples += 1,
        );
        assert!(samples >= 30, "{}: only {samples} samples", path.display(),);
        parsed += 1;
    }
    assert!(parsed >= 11, "{parsed} fixtures in {}", dir.display());
}
