//! Polling real HTTP kubelets (the simulator) and captured files: failures, recovery, tokens,
//! repeated timestamps and stale markers.

use std::time::Duration;

use kubelet_push::kubelet::ScrapeError;
use kubelet_push::remote_write::is_stale_marker;
use kubelet_push::testkit::simulator::{Fault, KubeletServer};

use crate::support::*;

async fn simulated(pods: usize) -> KubeletServer {
    simulated_kubelet(pods, 7).await
}

/// For pollers of a kubelet on loopback, which answers at once: a timeout of a minute
/// (`PATIENCE`), where the default 10 s would be a deadline a busy machine could miss. Tests
/// that measure a timeout set their own.
const PATIENT: [&str; 2] = ["--kubelet-timeout", "60s"];

/// A dry-run poller of the kubelet at `url`, [`PATIENT`].
fn patient_poller(url: &str) -> kubelet_push::pipeline::Poller {
    poller(&["--kubelet-url", url, PATIENT[0], PATIENT[1], "--dry-run"])
}

#[tokio::test]
async fn polls_a_simulated_kubelet_over_http() {
    let kubelet = simulated(5).await;
    let mut p = patient_poller(&kubelet.url());
    let out = polled(&mut p).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(only_value(&out.series, "up"), 1.0);
    let pods: std::collections::BTreeSet<&str> = named(&out.series, "pod_cpu_usage_seconds_total")
        .iter()
        .filter_map(|ts| label(ts, "pod"))
        .collect();
    assert_eq!(pods.len(), 5);
    let node = named(&out.series, "node_cpu_usage_seconds_total");
    assert_eq!(label(node[0], "node"), Some("demo-win-node"));
    assert!(node[0].samples[0].value > 0.0);
}

/// A kubelet answering 500, a broken document or not in time: each gives `up 0` and an error
/// that says which.
///
/// Real time, with the timeouts far apart: the poller that must not time out has a minute
/// (`PATIENCE`; the kubelet is on loopback and answers at once); the one that must has 500 ms,
/// against a kubelet that would answer after an hour. Its poll takes at least the timeout (a
/// lower bound, sound however slow the machine) and ends within the bounded wait, where
/// waiting for the kubelet would take the hour. (Under paused time, tokio moves the clock to
/// the next timer whenever no socket happens to be ready, which on a busy machine can be in
/// the middle of a request: the timeout then fires on a kubelet that was answering.)
#[tokio::test]
async fn every_kubelet_failure_gives_up_zero_and_a_clear_error() {
    use tokio::time::Instant;
    let kubelet = simulated(3).await;
    let mut p = patient_poller(&kubelet.url());

    kubelet.set_fault(Fault::Status(500));
    let out = polled(&mut p).await;
    assert!(
        matches!(&out.error, Some(ScrapeError::Status { status, .. }) if status.as_u16() == 500),
        "{:?}",
        out.error
    );
    assert_eq!(only_value(&out.series, "up"), 0.0);

    kubelet.set_fault(Fault::BrokenJson);
    let out = polled(&mut p).await;
    assert!(
        matches!(out.error, Some(ScrapeError::Parse(_))),
        "{:?}",
        out.error
    );
    assert_eq!(only_value(&out.series, "up"), 0.0);

    let timeout = Duration::from_millis(500);
    let mut impatient = poller(&[
        "--kubelet-url",
        &kubelet.url(),
        "--kubelet-timeout",
        "500ms",
        "--dry-run",
    ]);
    kubelet.set_fault(Fault::Delay(Duration::from_secs(3600)));
    let started = Instant::now();
    let out = tokio::time::timeout(timeout + PATIENCE, polled(&mut impatient))
        .await
        .expect("the timeout ends the poll, not the kubelet's hour");
    let took = started.elapsed();
    assert!(
        matches!(out.error, Some(ScrapeError::Timeout(_))),
        "{:?}",
        out.error
    );
    assert!(took >= timeout, "timeout honoured: {took:?}");
    assert_eq!(only_value(&out.series, "up"), 0.0);

    kubelet.set_fault(Fault::None);
    let out = polled(&mut p).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(only_value(&out.series, "up"), 1.0);
}

/// A kubelet port where nothing listens (kept bound for the whole poll, so the connection is
/// refused and nothing else can take the port meanwhile).
#[tokio::test]
async fn a_kubelet_that_is_not_listening_is_a_connect_error() {
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let url = format!("http://127.0.0.1:{port}");
    let mut p = poller(&["--kubelet-url", &url, "--dry-run", "--node-name", "n"]);
    let out = polled(&mut p).await;
    drop(reserved);
    let err = out.error.expect("connect error");
    assert!(matches!(err, ScrapeError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(only_value(&out.series, "up"), 0.0);
    assert_eq!(label(named(&out.series, "up")[0], "node"), Some("n"));
}

#[test]
fn failures_are_logged_when_they_start_and_when_they_end() {
    let (logs, _guard) = Logs::capture();
    let rt = current_thread_runtime();
    rt.block_on(async {
        let kubelet = simulated(2).await;
        let mut p = patient_poller(&kubelet.url());
        kubelet.set_fault(Fault::Status(503));
        for _ in 0..4 {
            assert!(p.poll().await.error.is_some());
        }
        kubelet.set_fault(Fault::None);
        assert!(p.poll().await.error.is_none());
        assert!(p.poll().await.error.is_none());
    });
    let text = logs.text();
    assert_eq!(text.matches("kubelet poll failed").count(), 1, "{text}");
    assert!(text.contains("503"), "the first warning says why: {text}");
    assert_eq!(
        text.matches("kubelet is answering again").count(),
        1,
        "{text}"
    );
    assert!(text.contains("failed_polls=4"), "{text}");
}

#[tokio::test]
async fn the_token_file_is_read_again_for_every_request() {
    let kubelet = simulated(1).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let token_arg = token.display().to_string();
    let mut p = poller(&[
        "--kubelet-url",
        &kubelet.url(),
        "--kubelet-token-file",
        &token_arg,
        PATIENT[0],
        PATIENT[1],
        "--dry-run",
    ]);
    assert!(p.poll().await.error.is_none());
    assert_eq!(
        kubelet.last_authorization().as_deref(),
        Some("Bearer first-token")
    );
    std::fs::write(&token, "rotated-token").unwrap();
    assert!(p.poll().await.error.is_none());
    assert_eq!(
        kubelet.last_authorization().as_deref(),
        Some("Bearer rotated-token")
    );
    std::fs::remove_file(&token).unwrap();
    let out = polled(&mut p).await;
    assert!(
        matches!(out.error, Some(ScrapeError::Token { .. })),
        "{:?}",
        out.error
    );
}

/// Polling the same bytes again skips parsing only when that cannot change what is sent: a
/// summary without any `time` is stamped with the poll time, so every poll sends it anew.
#[tokio::test]
async fn the_same_summary_without_times_is_sent_again_at_each_poll() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("summary.json");
    std::fs::write(&file, r#"{"node":{"nodeName":"n","fs":{"usedBytes":5}}}"#).unwrap();
    let url = format!("file://{}", file.display());
    let mut p = poller(&["--kubelet-url", &url, "--dry-run"]);
    let mut stamps = Vec::new();
    for _ in 0..3 {
        let out = polled(&mut p).await;
        assert!(out.error.is_none(), "{:?}", out.error);
        let fs = named(&out.series, "node_fs_used_bytes");
        assert_eq!(fs.len(), 1, "sent at every poll");
        assert_eq!(fs[0].samples[0].value, 5.0);
        stamps.push(fs[0].samples[0].timestamp);
        assert_eq!(only_value(&out.series, "scrape_samples_scraped"), 1.0);
    }
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "{stamps:?}");
}

/// Two pods, then one: the missing pod's series get exactly one stale marker each; a failed
/// poll in between marks nothing stale; an unchanged summary sends nothing twice.
#[tokio::test]
async fn stale_markers_and_repeated_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("summary.json");
    let pod = |name: &str, t: &str| {
        format!(
            r#"{{"podRef":{{"name":"{name}","namespace":"ns"}},"cpu":{{"time":"{t}","usageCoreNanoSeconds":2000000000}},
               "memory":{{"time":"{t}","workingSetBytes":100}}}}"#
        )
    };
    let doc = |t: &str, pods: &[&str]| {
        let pods: Vec<String> = pods.iter().map(|p| pod(p, t)).collect();
        format!(
            r#"{{"node":{{"nodeName":"n","cpu":{{"time":"{t}","usageCoreNanoSeconds":5}}}},"pods":[{}]}}"#,
            pods.join(",")
        )
    };
    let url = format!("file://{}", file.display());
    let mut p = poller(&["--kubelet-url", &url, "--dry-run"]);
    // The kubelet's clock a minute ahead of ours: within what the agent believes (2 min).
    let ahead = std::time::SystemTime::now() + Duration::from_secs(60);
    let ahead = std::time::UNIX_EPOCH
        + Duration::from_secs(
            ahead
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    let at = |s: u64| humantime::format_rfc3339_seconds(ahead + Duration::from_secs(s)).to_string();

    std::fs::write(&file, doc(&at(0), &["a", "b"])).unwrap();
    let first = polled(&mut p).await;
    assert_eq!(named(&first.series, "pod_cpu_usage_seconds_total").len(), 2);
    assert_eq!(only_value(&first.series, "scrape_samples_scraped"), 5.0);

    // Same document: same timestamps, nothing but the per-poll series goes out.
    let again = polled(&mut p).await;
    let names: Vec<&str> = again.series.iter().map(name).collect();
    assert_eq!(
        names,
        vec!["up", "scrape_duration_seconds", "scrape_samples_scraped"]
    );
    assert_eq!(only_value(&again.series, "scrape_samples_scraped"), 5.0);

    // A failed poll: pod b is not declared gone.
    std::fs::write(&file, "{ not json").unwrap();
    let failed = polled(&mut p).await;
    assert!(failed.error.is_some());
    assert!(failed
        .series
        .iter()
        .all(|ts| !is_stale_marker(ts.samples[0].value)));

    // Pod b is gone: its two series get one stale marker each, at the poll time.
    std::fs::write(&file, doc(&at(10), &["a"])).unwrap();
    let gone = polled(&mut p).await;
    let stale: Vec<_> = gone
        .series
        .iter()
        .filter(|ts| is_stale_marker(ts.samples[0].value))
        .collect();
    let mut stale_names: Vec<(&str, Option<&str>)> = stale
        .iter()
        .map(|ts| (name(ts), label(ts, "pod")))
        .collect();
    stale_names.sort();
    assert_eq!(
        stale_names,
        vec![
            ("pod_cpu_usage_seconds_total", Some("b")),
            ("pod_memory_working_set_bytes", Some("b"))
        ]
    );
    // The kubelet's clock runs ahead of ours: the marker follows b's last sample.
    let b_last = kubelet_push::clock::unix_ms(ahead);
    assert!(
        stale.iter().all(|ts| ts.samples[0].timestamp == b_last + 1),
        "{stale:?}"
    );
    let a_cpu: Vec<_> = named(&gone.series, "pod_cpu_usage_seconds_total")
        .into_iter()
        .filter(|ts| !is_stale_marker(ts.samples[0].value))
        .collect();
    assert_eq!(a_cpu.len(), 1);
    assert_eq!(label(a_cpu[0], "pod"), Some("a"));
    assert_eq!(a_cpu[0].samples[0].value, 2.0);
    assert_eq!(a_cpu[0].samples[0].timestamp, b_last + 10_000);

    // Once only.
    std::fs::write(&file, doc(&at(20), &["a"])).unwrap();
    let later = polled(&mut p).await;
    assert!(later
        .series
        .iter()
        .all(|ts| !is_stale_marker(ts.samples[0].value)));
}

#[tokio::test]
async fn duplicate_interfaces_and_claims_are_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("summary.json");
    std::fs::write(
        &file,
        r#"{"node":{"nodeName":"n","network":{"time":"2020-01-01T00:00:00Z","interfaces":[
              {"name":"eth0","rxBytes":1},{"name":"eth0","rxBytes":2}]}},
            "pods":[
              {"podRef":{"name":"p1","namespace":"ns"},"volume":[{"time":"2020-01-01T00:00:00Z","name":"d","usedBytes":7,"pvcRef":{"name":"c","namespace":"ns"}}]},
              {"podRef":{"name":"p2","namespace":"ns"},"volume":[{"time":"2020-01-01T00:00:00Z","name":"d","usedBytes":7,"pvcRef":{"name":"c","namespace":"ns"}}]}]}"#,
    )
    .unwrap();
    let url = format!("file://{}", file.display());
    let out = polled(&mut poller(&["--kubelet-url", &url, "--dry-run"])).await;
    assert_eq!(
        only_value(&out.series, "node_network_receive_bytes_total"),
        1.0,
        "first listed wins"
    );
    assert_eq!(
        only_value(&out.series, "kubelet_volume_stats_used_bytes"),
        7.0
    );
    assert_eq!(named(&out.series, "pod_volume_used_bytes").len(), 2);
}

#[tokio::test]
async fn an_oversized_summary_is_refused_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).await;
        // Claims 1 GiB; sends a few bytes of it.
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{\"node\":")
            .await;
        let _ = conn.flush().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    // One connection, one answer: for the summary, so no /pods first.
    let out = polled(&mut poller(&[
        "--kubelet-url",
        &url,
        "--dry-run",
        "--node-name",
        "n",
        "--kubelet-pods=false",
        PATIENT[0],
        PATIENT[1],
    ]))
    .await;
    assert!(
        matches!(out.error, Some(ScrapeError::TooLarge)),
        "{:?}",
        out.error
    );
    assert_eq!(only_value(&out.series, "up"), 0.0);
    server.abort();
}

/// A stop request does not wait for a slow kubelet.
///
/// Real time, with the scales far apart: the kubelet would answer after an hour and the
/// agent's `--kubelet-timeout` is an hour too, so a stop that waited for the poll would take
/// an hour; it must end within the bounded wait (`PATIENCE`). The poll is known to be under way
/// by the kubelet's count of requests, not by a sleep.
#[tokio::test]
async fn shutdown_interrupts_a_slow_poll() {
    let kubelet = simulated(1).await;
    kubelet.set_fault(Fault::Delay(Duration::from_secs(3600)));
    let rx = kubelet_push::testkit::receiver::Receiver::start()
        .await
        .unwrap();
    let agent = Agent::start(&[
        "--kubelet-url",
        &kubelet.url(),
        "--remote-url",
        &rx.url(),
        "--kubelet-timeout",
        "1h",
    ]);
    wait_until("the poll is under way", || kubelet.requests() >= 1).await;
    assert_eq!(kubelet.requests(), 1, "one poll");
    agent.stop.cancel();
    let outcome = tokio::time::timeout(PATIENCE, agent.task)
        .await
        .expect("the stop does not wait for the poll")
        .expect("task")
        .expect("run");
    assert_eq!(outcome, kubelet_push::Outcome::Ok);
    assert!(rx.requests().is_empty(), "the abandoned poll sent nothing");
}

/// Before the kubelet first answers, `up 0` carries the host name; the summary's `nodeName`
/// then takes over quietly. A later real change of name is reported once.
#[test]
fn node_label_follows_the_summary() {
    let (logs, _guard) = Logs::capture();
    let rt = current_thread_runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("summary.json");
        let url = format!("file://{}", file.display());
        let mut p = poller(&["--kubelet-url", &url, "--dry-run"]);
        let down = polled(&mut p).await;
        assert_eq!(only_value(&down.series, "up"), 0.0);
        let host = label(named(&down.series, "up")[0], "node")
            .unwrap()
            .to_owned();
        assert!(!host.is_empty());

        std::fs::write(
            &file,
            r#"{"node":{"nodeName":"win-7","fs":{"usedBytes":1}}}"#,
        )
        .unwrap();
        let up = polled(&mut p).await;
        assert!(
            up.series
                .iter()
                .all(|ts| label(ts, "node") == Some("win-7")),
            "{:?}",
            up.series
        );
        assert!(up
            .series
            .iter()
            .all(|ts| label(ts, "instance") == Some("win-7")));

        std::fs::write(
            &file,
            r#"{"node":{"nodeName":"win-8","fs":{"usedBytes":1}}}"#,
        )
        .unwrap();
        let renamed = polled(&mut p).await;
        assert_eq!(
            named(&renamed.series, "node_fs_used_bytes").len(),
            1,
            "a new series, sent again"
        );
        assert!(renamed
            .series
            .iter()
            .all(|ts| label(ts, "node") == Some("win-8")));
    });
    let text = logs.text();
    assert_eq!(text.matches("node name changed").count(), 1, "{text}");
    assert!(
        text.contains("from=win-7") && text.contains("to=win-8"),
        "{text}"
    );
}
