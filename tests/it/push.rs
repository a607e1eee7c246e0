//! The agent pushing to an in-process Remote Write receiver: what goes over the wire.

use std::sync::Arc;

use kubelet_push::remote_write::is_stale_marker;
use kubelet_push::telemetry::Metrics;
use kubelet_push::testkit::receiver::{Receiver, Response};
use kubelet_push::Outcome;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// The golden lines of a fixture without the per-poll series, as `name{labels} value ts`.
fn golden_samples(stem: &str) -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{stem}.prom"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("<poll-time>"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Renders received series the way the golden files are written.
fn render(series: &[kubelet_push::remote_write::proto::v1::TimeSeries]) -> Vec<String> {
    let text = kubelet_push::text::render(series);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !(l.starts_with("up{") || l.starts_with("scrape_")))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Retries fast enough for tests. `--once` ends when what it polled is delivered, or when the
/// shutdown timeout runs out: a minute (`PATIENCE`), so a busy machine delivering slowly is not
/// taken for a receiver that never takes it (the 10 s default would be a deadline).
const FAST: [&str; 8] = [
    "--min-backoff",
    "10ms",
    "--max-backoff",
    "100ms",
    "--shutdown-timeout",
    "60s",
    // The receivers answer at once, on loopback: a minute, not the default 30 s deadline.
    "--remote-timeout",
    "60s",
];

/// `--once` with `args`, and the fast defaults each replaced by `args` when it names the same
/// flag.
async fn run_once(args: &[&str]) -> (Outcome, Arc<Metrics>) {
    let stats = Arc::new(Metrics::new());
    let mut args = args.to_vec();
    for pair in FAST.chunks(2) {
        if !args.contains(&pair[0]) {
            args.extend_from_slice(pair);
        }
    }
    let mut sink = Vec::new();
    let outcome = kubelet_push::run(
        config(&args),
        CancellationToken::new(),
        stats.clone(),
        &mut sink,
    )
    .await
    .expect("run");
    (outcome, stats)
}

/// The kubelet of every test here but one: the seed fixture, read from its file.
fn seed_kubelet() -> String {
    format!("file://{}", fixture("seed-windows-node.json").display())
}

/// `--once` from [`seed_kubelet`] to `remote`, with `extra` flags (see [`run_once`]).
async fn seed_once(remote: &str, extra: &[&str]) -> (Outcome, Arc<Metrics>) {
    let kubelet = seed_kubelet();
    let mut args = vec!["--once", "--kubelet-url", &kubelet, "--remote-url", remote];
    args.extend_from_slice(extra);
    run_once(&args).await
}

/// The run loop from [`seed_kubelet`] to `remote`, with `extra` flags. The receivers answer at
/// once, on loopback: a remote timeout of a minute, not the default 30 s deadline.
fn seed_agent(remote: &str, extra: &[&str]) -> Agent {
    let kubelet = seed_kubelet();
    let mut args = vec![
        "--kubelet-url",
        &kubelet,
        "--remote-url",
        remote,
        "--remote-timeout",
        "60s",
    ];
    args.extend_from_slice(extra);
    Agent::start(&args)
}

#[tokio::test]
async fn once_pushes_the_fixture_exactly_with_protocol_headers() {
    let rx = Receiver::start().await.unwrap();
    // The 1.0 protocol's headers (2.0's: `v2::the_agent_sends_v2_to_a_v2_receiver`).
    let (outcome, stats) = seed_once(
        &rx.url(),
        &[
            "--remote-header",
            "X-Scope-OrgID=tenant-a",
            "--remote-write-version",
            "1",
        ],
    )
    .await;
    assert_eq!(outcome, Outcome::Ok);
    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert!(r.accepted(), "{:?}", r.rejection);
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    assert_eq!(
        r.header("user-agent"),
        Some(concat!("kubelet-push/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(r.header("x-scope-orgid"), Some("tenant-a"));

    let series = rx.accepted_series();
    assert_eq!(render(&series), golden_samples("seed-windows-node"));
    for ts in &series {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "labels sorted byte-wise");
        assert!(ts.labels.iter().all(|l| !l.value.is_empty()));
    }
    assert_eq!(only_value(&series, "up"), 1.0);
    assert_eq!(only_value(&series, "scrape_samples_scraped"), 33.0);
    assert_eq!(only_dest(&stats).samples_sent.get(), 36);
    assert_eq!(only_dest(&stats).requests_with(Some(204)), 1);
}

#[tokio::test]
async fn max_samples_per_send_splits_requests_without_losing_any() {
    let rx = Receiver::start().await.unwrap();
    let (outcome, _) = seed_once(&rx.url(), &["--max-samples-per-send", "10"]).await;
    assert_eq!(outcome, Outcome::Ok);
    let sizes: Vec<usize> = rx
        .requests()
        .iter()
        .map(|r| r.write_request.as_ref().unwrap().timeseries.len())
        .collect();
    assert_eq!(sizes, vec![10, 10, 10, 6]);
    assert_eq!(
        render(&rx.accepted_series()),
        golden_samples("seed-windows-node")
    );
}

#[tokio::test]
async fn external_labels_and_overrides_reach_every_series() {
    let rx = Receiver::start().await.unwrap();
    seed_once(
        &rx.url(),
        &[
            "--label",
            "cluster=edge-7",
            "--job",
            "windows-nodes",
            "--node-name",
            "win-01",
        ],
    )
    .await;
    let series = rx.accepted_series();
    assert_eq!(series.len(), 36);
    for ts in &series {
        assert_eq!(label(ts, "cluster"), Some("edge-7"));
        assert_eq!(label(ts, "job"), Some("windows-nodes"));
        assert_eq!(label(ts, "node"), Some("win-01"));
        assert_eq!(label(ts, "instance"), Some("win-01"));
    }
}

/// 400 drops the request for good; 429 and 503 are retried until the receiver takes it.
#[tokio::test]
async fn receiver_errors_are_dropped_or_retried_by_kind() {
    use kubelet_push::telemetry::DropReason;
    for (status, delivered) in [(400, false), (429, true), (503, true)] {
        let rx = Receiver::start().await.unwrap();
        rx.push_response(Response::status(status).with_body(format!("no thanks ({status})")));
        let (outcome, stats) = seed_once(&rx.url(), &[]).await;
        let statuses: Vec<u16> = rx.requests().iter().map(|r| r.status).collect();
        if delivered {
            assert_eq!(outcome, Outcome::Ok, "status {status}");
            assert_eq!(statuses, vec![status, 204]);
            assert_eq!(only_dest(&stats).samples_sent.get(), 36);
            assert_eq!(only_dest(&stats).retries.get(), 1);
            assert_eq!(
                render(&rx.accepted_series()),
                golden_samples("seed-windows-node")
            );
        } else {
            assert_eq!(outcome, Outcome::Failed, "status {status}");
            assert_eq!(statuses, vec![400], "a rejected request is not retried");
            assert_eq!(only_dest(&stats).dropped_total(DropReason::Rejected), 36);
            assert_eq!(only_dest(&stats).samples_sent.get(), 0);
        }
        assert_eq!(only_dest(&stats).requests_with(Some(status)), 1);
    }
}

/// Nothing listens on the receiver's port (kept bound, so connections are refused): the poll
/// is retried until the shutdown timeout runs out, then counted as dropped.
///
/// The retries are counted inside that timeout, so it is generous: 10 s for two retries that
/// each take a refused connection and at most 100 ms of backoff (a refused connection is
/// immediate on Linux, Wine included; Windows itself takes about 2 s for one, trying the SYN
/// again).
#[tokio::test]
async fn once_fails_when_the_receiver_is_unreachable() {
    let port = ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
    let (outcome, stats) = seed_once(&url, &["--shutdown-timeout", "10s"]).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(only_dest(&stats).samples_sent.get(), 0);
    assert!(
        only_dest(&stats).retries.get() >= 2,
        "retried until the shutdown timeout"
    );
    assert_eq!(
        only_dest(&stats).dropped_total(kubelet_push::telemetry::DropReason::Shutdown),
        36,
        "the memory buffer reports what it loses"
    );
    drop(port);
}

#[tokio::test]
async fn once_fails_when_the_kubelet_fails_but_still_pushes_up_zero() {
    let rx = Receiver::start().await.unwrap();
    let (outcome, _) = run_once(&[
        "--once",
        "--kubelet-url",
        "file:///nonexistent/summary.json",
        "--remote-url",
        &rx.url(),
        "--node-name",
        "n1",
    ])
    .await;
    assert_eq!(outcome, Outcome::Failed);
    let series = rx.accepted_series();
    assert_eq!(only_value(&series, "up"), 0.0);
    assert_eq!(only_value(&series, "scrape_samples_scraped"), 0.0);
    assert_eq!(series.len(), 3, "only the per-poll series: {series:?}");
    assert!(series
        .iter()
        .all(|ts| !is_stale_marker(ts.samples[0].value)));
}

/// The run loop keeps polling when pushes fail, and delivers again once the receiver recovers.
#[tokio::test]
async fn run_loop_survives_a_failing_receiver() {
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(503).with_body("overloaded"));
    rx.push_response(Response::status(400).with_body("out of order sample"));
    let agent = seed_agent(
        &rx.url(),
        &[
            "--interval",
            "50ms",
            "--min-backoff",
            "10ms",
            "--max-backoff",
            "50ms",
            // The order of the series below is 1.0's.
            "--remote-write-version",
            "1",
        ],
    );
    assert!(
        rx.wait_for_requests(4, PATIENCE).await,
        "agent kept polling and pushing"
    );
    let (outcome, stats) = agent.stop().await;
    assert_eq!(outcome, Outcome::Ok, "a stopped run loop is a clean exit");
    let statuses: Vec<u16> = rx.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        &statuses[..3],
        &[503, 400, 204],
        "503 retried, 400 dropped, next poll sent"
    );
    // The file never changes: after the first poll only the per-poll series are new.
    let third = rx.requests()[2].write_request.clone().unwrap();
    let names: Vec<&str> = third.timeseries.iter().map(name).collect();
    assert_eq!(
        names,
        vec!["up", "scrape_duration_seconds", "scrape_samples_scraped"]
    );
    assert_eq!(stats.requests_with(Some(503)), 1);
    assert_eq!(stats.requests_with(Some(400)), 1);
    assert_eq!(
        stats.dropped_total(kubelet_push::telemetry::DropReason::Rejected),
        36,
        "the first poll, retried after 503, then rejected"
    );
}

/// One attempt's outcome is classified where the response is read.
#[tokio::test]
async fn send_errors_are_classified_for_the_retry_policy() {
    use kubelet_push::remote_write::{Protocol, RemoteWriteClient, SendError};
    use std::time::Duration;

    let rx = Receiver::start().await.unwrap();
    // A timeout that no loopback answer misses, however busy the machine.
    let client = RemoteWriteClient::new(
        rx.url().parse().unwrap(),
        PATIENCE,
        &[],
        &kubelet_push::remote_write::access::Access::none(),
    )
    .unwrap();
    let body = {
        let c = kubelet_push::remote_write::CommonLabels::new("j", "n", &[]);
        let ts = kubelet_push::remote_write::reference::time_series("m", [], &c, 1.0, 1);
        kubelet_push::remote_write::reference::encode_batches(vec![ts], 10)
            .unwrap()
            .remove(0)
            .body
    };
    rx.push_response(Response::status(400).with_body("out of order sample\nsecond line"));
    rx.push_response(Response::status(429).with_header("Retry-After", "3"));
    rx.push_response(Response::status(503).with_body("ingester unavailable"));
    match client.send(Protocol::V1, body.clone()).await {
        Err(SendError::Permanent { status, message }) => {
            assert_eq!(status.as_u16(), 400);
            assert_eq!(message, "out of order sample");
        }
        other => panic!("400 is permanent: {other:?}"),
    }
    match client.send(Protocol::V1, body.clone()).await {
        Err(SendError::Retryable {
            status,
            retry_after,
            ..
        }) => {
            assert_eq!(status.map(|s| s.as_u16()), Some(429));
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("429 is retryable: {other:?}"),
    }
    match client.send(Protocol::V1, body.clone()).await {
        Err(SendError::Retryable {
            status,
            reason,
            retry_after,
            unanswered,
        }) => {
            assert_eq!(status.map(|s| s.as_u16()), Some(503));
            assert!(reason.contains("ingester unavailable"), "{reason}");
            assert_eq!(retry_after, None);
            assert!(!unanswered, "the receiver answered");
        }
        other => panic!("503 is retryable: {other:?}"),
    }
    client
        .send(Protocol::V1, body)
        .await
        .expect("204 is success");
    assert_eq!(rx.requests().len(), 4);
}

/// Paused time: the client waits on a socket that never becomes readable, so the runtime idles
/// and the clock jumps straight to the 300 ms timeout, which must then fire exactly.
///
/// Sound on any machine, though real sockets are involved: the request's timeout is the only
/// timer there is (nothing else sleeps, and a connection enters the pool, with its idle timer,
/// only once answered), and the receiver never answers. Wherever the request is when tokio
/// finds no socket ready and moves the clock, it moves it exactly to that timeout, and the
/// outcome is the same timeout at the same virtual time.
#[tokio::test(start_paused = true)]
async fn remote_timeout_bounds_a_receiver_that_never_answers() {
    use kubelet_push::remote_write::{Protocol, RemoteWriteClient, SendError};
    use std::time::Duration;
    use tokio::time::Instant;

    // Accepts connections and reads, but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let url = format!("http://{addr}/api/v1/write").parse().unwrap();
    let client = RemoteWriteClient::new(
        url,
        Duration::from_millis(300),
        &[],
        &kubelet_push::remote_write::access::Access::none(),
    )
    .unwrap();
    let started = Instant::now();
    let err = client
        .send(Protocol::V1, bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(305),
        "{took:?}"
    );
    match err {
        SendError::Retryable {
            reason,
            status: None,
            unanswered,
            ..
        } => {
            assert!(reason.contains("timed out"), "{reason}");
            assert!(unanswered, "sent, and no answer came");
        }
        other => panic!("{other:?}"),
    }
    silent.abort();
}

/// A keep-alive connection the peer closes just as the next request goes out on it (tinyproxy
/// closes after each answer) fails before any answer: the client sends again at once, on a
/// new connection, and the caller sees the receiver's answer, not an error to back off from.
/// The peer here reads the second request whole before closing, so the race is always lost.
#[tokio::test]
async fn a_pooled_connection_closed_under_a_request_is_sent_again_at_once() {
    use kubelet_push::remote_write::{Protocol, RemoteWriteClient};
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // (connection number, body) of every request read.
    type Seen = Arc<std::sync::Mutex<Vec<(usize, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let server = tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut conn, _)) = listener.accept().await {
            n += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut answered = 0;
                while let Some((_, body)) = read_request(&mut conn, &mut buf).await {
                    log.lock().unwrap().push((n, body));
                    // The first connection answers once, then drops the next request.
                    if n == 1 && answered == 1 {
                        return;
                    }
                    let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
                    if conn.write_all(ok).await.is_err() {
                        return;
                    }
                    answered += 1;
                }
            });
        }
    });
    let url = format!("http://{addr}/api/v1/write").parse().unwrap();
    let client = RemoteWriteClient::new(
        url,
        PATIENCE,
        &[],
        &kubelet_push::remote_write::access::Access::none(),
    )
    .unwrap();
    for body in [&b"first"[..], b"second"] {
        let accepted = client
            .send(Protocol::V1, bytes::Bytes::from_static(body))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
        assert_eq!(accepted.status, 204);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (1, b"first".to_vec()),
            (1, b"second".to_vec()),
            (2, b"second".to_vec())
        ]
    );
    server.abort();
}

/// A receiver that refuses the connection never saw the request: not "unanswered" (the sender
/// makes a merged request smaller only when it may have been too large to go through).
#[tokio::test]
async fn a_refused_connection_is_not_an_unanswered_request() {
    use kubelet_push::remote_write::{Protocol, RemoteWriteClient, SendError};
    let port = crate::support::ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port())
        .parse()
        .unwrap();
    let client = RemoteWriteClient::new(
        url,
        crate::support::PATIENCE,
        &[],
        &kubelet_push::remote_write::access::Access::none(),
    )
    .unwrap();
    match client
        .send(Protocol::V1, bytes::Bytes::from_static(b"x"))
        .await
    {
        Err(SendError::Retryable {
            reason,
            status: None,
            unanswered,
            ..
        }) => {
            assert!(reason.contains("cannot connect"), "{reason}");
            assert!(!unanswered, "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// A receiver that fails request after request is reported once when the failures start and
/// once when they end, with their count, not once per attempt: a 503 (retried) as a failure, a
/// 400 (a tenant's limit, say: each request dropped) as a rejection, the next accepted request
/// saying how many were rejected.
#[tokio::test]
async fn repeated_failures_are_logged_when_they_start_and_when_they_end() {
    struct Case {
        name: &'static str,
        status: u16,
        body: &'static str,
        /// How many requests in a row get `status`.
        times: usize,
        flags: &'static [&'static str],
        /// Requests the receiver must have seen before the agent stops: the failures and
        /// at least two accepted after them.
        requests: usize,
        began: &'static str,
        ended: &'static str,
        /// The count the ending line gives.
        counted: &'static str,
    }
    let cases = [
        Case {
            name: "503, retried",
            status: 503,
            body: "ingester unavailable",
            times: 3,
            flags: &["--min-backoff", "10ms", "--max-backoff", "30ms"],
            requests: 5,
            began: "remote write failed",
            ended: "remote write recovered",
            counted: "failed_attempts=3",
        },
        Case {
            name: "400, dropped",
            status: 400,
            body: "tenant limit",
            times: 4,
            flags: &[],
            requests: 6,
            began: "rejected by the receiver",
            ended: "receiver accepts requests again",
            counted: "rejected_requests=4",
        },
    ];
    for case in cases {
        let name = case.name;
        let (logs, _guard) = Logs::capture();
        let rx = Receiver::start().await.unwrap();
        for _ in 0..case.times {
            rx.push_response(Response::status(case.status).with_body(case.body));
        }
        let mut flags = vec!["--interval", "30ms"];
        flags.extend_from_slice(case.flags);
        let agent = seed_agent(&rx.url(), &flags);
        assert!(
            rx.wait_for_requests(case.requests, PATIENCE).await,
            "{name}: {} requests",
            case.requests
        );
        agent.stop().await;
        let text = logs.text();
        assert_eq!(text.matches(case.began).count(), 1, "{name}: {text}");
        assert!(
            text.contains(&case.status.to_string()) && text.contains(case.body),
            "{name}: {text}"
        );
        assert_eq!(text.matches(case.ended).count(), 1, "{name}: {text}");
        assert!(text.contains(case.counted), "{name}: {text}");
    }
}

/// `--metric-allow` / `--metric-deny` decide what goes on the wire, before dedupe: the
/// denied families are absent from the decoded request, the allowed ones are there with the
/// same values as without a filter, and `up`/`scrape_*` always go. What was left out is
/// counted, not queued.
#[tokio::test]
async fn metric_filters_leave_series_out_before_they_are_queued() {
    let names = |series: &[kubelet_push::remote_write::proto::v1::TimeSeries]| {
        let mut n: Vec<String> = series
            .iter()
            .filter_map(|ts| label(ts, "__name__").map(str::to_owned))
            .collect();
        n.sort();
        n.dedup();
        n
    };
    let all_rx = Receiver::start().await.unwrap();
    let (outcome, _) = seed_once(&all_rx.url(), &[]).await;
    assert_eq!(outcome, Outcome::Ok);
    let everything = all_rx.accepted_series();

    let rx = Receiver::start().await.unwrap();
    let (outcome, stats) = seed_once(
        &rx.url(),
        &[
            "--metric-allow",
            "container_.*",
            "--metric-allow",
            "node_cpu_usage_seconds_total",
            "--metric-deny",
            "container_fs_.*",
        ],
    )
    .await;
    assert_eq!(outcome, Outcome::Ok);
    let sent = rx.accepted_series();
    let expected: Vec<String> = names(&everything)
        .into_iter()
        .filter(|n| {
            n == "up"
                || n.starts_with("scrape_")
                || n == "node_cpu_usage_seconds_total"
                || (n.starts_with("container_") && !n.starts_with("container_fs_"))
        })
        .collect();
    assert!(expected.iter().any(|n| n.starts_with("container_memory")));
    assert_eq!(names(&sent), expected);
    // The kept series are the same, with the same values, as without the filter (the
    // per-poll series carry each run's own time).
    for ts in sent.iter().filter(|ts| {
        let n = label(ts, "__name__").unwrap_or("");
        n != "up" && !n.starts_with("scrape_")
    }) {
        let twin = everything
            .iter()
            .find(|t| t.labels == ts.labels)
            .expect("sent without the filter too");
        assert_eq!(twin.samples, ts.samples);
    }
    let left_out = everything.len() - sent.len();
    assert!(left_out > 0);
    assert_eq!(stats.samples_filtered.get(), left_out as u64);
    assert_eq!(only_dest(&stats).samples_queued.get(), sent.len() as u64);
}
