//! Delivery through outages: retries, ordering, the bounded buffer, shutdown. The receiver is
//! in-process and scripted per test; the kubelet is the simulator, so every poll has fresh
//! counters.

use std::collections::HashMap;
use std::time::Duration;

use kubelet_push::demo::receiver::{Receiver, Response};
use kubelet_push::demo::simulator::KubeletServer;
use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::telemetry::DropReason;
use kubelet_push::Outcome;

use crate::support::*;

async fn kubelet(pods: usize) -> KubeletServer {
    simulated_kubelet(pods, 11).await
}

fn series_key(ts: &TimeSeries) -> String {
    ts.labels
        .iter()
        .map(|l| format!("{}={};", l.name, l.value))
        .collect()
}

/// Timestamps per series, in arrival order, over the given series.
fn timelines(series: &[TimeSeries]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for ts in series {
        out.entry(series_key(ts))
            .or_default()
            .extend(ts.samples.iter().map(|s| s.timestamp));
    }
    out
}

/// Every series arrived in strictly increasing timestamp order, so nothing arrived twice.
fn assert_ordered_once(series: &[TimeSeries]) -> usize {
    let lines = timelines(series);
    for (key, times) in &lines {
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{key}: {times:?}");
    }
    lines.values().map(Vec::len).sum()
}

const FAST: [&str; 6] = [
    "--interval",
    "50ms",
    "--min-backoff",
    "5ms",
    "--max-backoff",
    "20ms",
];

/// Flags for the agent: the fast defaults, each replaced by `extra` when it names the same flag.
fn args<'a>(kubelet: &'a str, remote: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--kubelet-url", kubelet, "--remote-url", remote];
    for pair in FAST.chunks(2) {
        if !extra.contains(&pair[0]) {
            v.extend_from_slice(pair);
        }
    }
    v.extend_from_slice(extra);
    v
}

/// The receiver answers 503 for as long as 20 polls take, then recovers: every sample of the
/// outage arrives exactly once, each series in timestamp order.
#[tokio::test]
async fn an_outage_of_twenty_polls_loses_nothing() {
    let k = kubelet(5).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..100_000 {
        rx.push_response(Response::status(503).with_body("ingester ring not ready"));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(&ku, &ru, &[]));
    // 20 polls and 20 refused sends: on a busy machine each send takes longer, so counting
    // polls alone may end the outage before the sender has retried 20 times.
    let deadline = tokio::time::Instant::now() + SHORT;
    while k.requests() < 21 || agent.metrics.requests_with(Some(503)) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            agent.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let polls_in_outage = agent.metrics.polls(true);
    assert_eq!(agent.metrics.samples_sent.get(), 0);
    rx.clear_responses();
    agent.wait_drained(1, SHORT).await;
    let (_, m) = agent.stop().await;
    let delivered = assert_ordered_once(&rx.accepted_series());
    assert_eq!(delivered as u64, m.samples_sent.get());
    assert_eq!(m.samples_queued.get(), m.samples_sent.get(), "nothing lost");
    assert!(m.requests_with(Some(503)) >= 20, "{}", m.encode());
    let ups = named(&rx.accepted_series(), "up").len() as u64;
    assert!(
        ups >= polls_in_outage,
        "every poll of the outage arrived: {ups} of {polls_in_outage}"
    );
    // The first request delivered is the first poll: it carries every series.
    let first_ok = rx.requests().into_iter().find(|r| r.status == 204).unwrap();
    assert!(first_ok.write_request.unwrap().timeseries.len() > 100);
}

#[tokio::test]
async fn a_receiver_that_is_not_up_yet_gets_everything_once_it_is() {
    let k = kubelet(3).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let ku = k.url();
    let agent = Agent::start(&args(&ku, &url, &[]));
    // Six polls, counted by the kubelet rather than timed: a busy machine polls less often.
    let deadline = tokio::time::Instant::now() + SHORT;
    while k.requests() < 6 || agent.metrics.requests_with(None) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polls {}, connection-refused sends {}",
            k.requests(),
            agent.metrics.requests_with(None)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let polls_in_outage = k.requests();
    let rx = Receiver::start_at(port).await.unwrap();
    agent.wait_drained(1, SHORT).await;
    let (_, m) = agent.stop().await;
    let delivered = assert_ordered_once(&rx.accepted_series());
    assert_eq!(delivered as u64, m.samples_sent.get());
    assert_eq!(m.samples_queued.get(), m.samples_sent.get(), "nothing lost");
    let ups = named(&rx.accepted_series(), "up").len();
    assert!(
        ups >= polls_in_outage,
        "every poll of the outage arrived: {ups} of {polls_in_outage}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(429).with_header("Retry-After", "2"));
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(&ku, &ru, &["--max-backoff", "5s"]));
    assert!(rx.wait_for_requests(2, Duration::from_secs(6)).await);
    let r = rx.requests();
    let gap = r[1].at - r[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(
        gap < Duration::from_secs(4),
        "not much later either: {gap:?}"
    );
    assert_eq!(
        r[1].write_request, r[0].write_request,
        "the same request again"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_rejected_request_is_dropped_and_the_next_ones_arrive() {
    let k = kubelet(2).await;
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(400).with_body("err-mimir-sample-out-of-order"));
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(&ku, &ru, &[]));
    assert!(rx.wait_for_requests(4, SHORT).await);
    let (_, m) = agent.stop().await;
    let r = rx.requests();
    let rejected: u64 = r[0]
        .write_request
        .as_ref()
        .unwrap()
        .timeseries
        .iter()
        .map(|t| t.samples.len() as u64)
        .sum();
    assert_eq!(r[0].status, 400);
    assert_eq!(m.dropped_total(DropReason::Rejected), rejected);
    assert!(r[1..].iter().all(|x| x.status == 204));
    assert_ne!(r[1].write_request, r[0].write_request, "not retried");
    assert_eq!(
        m.samples_queued.get(),
        m.samples_sent.get() + rejected + m.samples_pending.get() as u64
    );
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retried() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(204).with_delay(Duration::from_millis(1500)));
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(&ku, &ru, &["--remote-timeout", "300ms"]));
    assert!(rx.wait_for_requests(3, SHORT).await);
    agent.wait_drained(1, SHORT).await;
    let (_, m) = agent.stop().await;
    assert!(
        m.requests_with(None) >= 1,
        "the slow attempt timed out: {}",
        m.encode()
    );
    let r = rx.requests();
    assert_eq!(
        r[1].write_request, r[0].write_request,
        "the timed-out request was sent again"
    );
    // The receiver stored the slow copy too: at-least-once means that one may repeat.
    let after_first: Vec<TimeSeries> = r[1..]
        .iter()
        .flat_map(|x| x.write_request.clone().unwrap().timeseries)
        .collect();
    assert_ordered_once(&after_first);
}

#[tokio::test]
async fn a_full_memory_buffer_drops_the_oldest_and_counts_exactly() {
    kubelet_push::http::install_crypto_provider();
    let k = kubelet(60).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (ku, ru) = (k.url(), rx.url());
    let started_ms = now_ms();
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &[
            "--buffer-max-size",
            "64KiB",
            "--listen-address",
            &listen,
            "--interval",
            "100ms",
        ],
    ));
    // Fill the buffer past its size: fresh stats every second, ~20 KB per poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while agent.metrics.dropped_total(DropReason::BufferFull) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "buffer never filled: {}",
            agent.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let recovery_ms = now_ms();
    let polls_at_recovery = agent.metrics.polls(true) as usize;
    rx.clear_responses();
    agent.wait_drained(1, Duration::from_secs(10)).await;
    let metrics_text = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, m) = agent.stop().await;
    let value = |name: &str| -> u64 {
        metrics_text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics_text}"))
    };
    let queued = value("kubelet_push_samples_queued_total");
    let sent = value("kubelet_push_samples_sent_total");
    let dropped = value("kubelet_push_samples_dropped_total{reason=\"buffer_full\"}");
    let pending = value("kubelet_push_samples_pending");
    assert!(dropped > 0);
    assert_eq!(
        queued,
        sent + dropped + pending,
        "every queued sample is sent, dropped or pending"
    );
    let delivered = assert_ordered_once(&rx.accepted_series()) as u64;
    assert_eq!(
        delivered,
        m.samples_sent.get(),
        "sent means received, and no dropped sample arrived"
    );
    // Oldest dropped, newest kept. Eviction is FIFO over requests, and a poll's `up` rides in
    // its last, small request, which may outlive the poll's big first request; so the kept
    // `up`s form one run without gaps reaching up to the recovery, though not every dropped
    // poll need be missing from it. (FIFO itself is asserted in the buffers' unit tests.)
    let mut ups: Vec<i64> = named(&rx.accepted_series(), "up")
        .iter()
        .map(|t| t.samples[0].timestamp)
        .collect();
    ups.sort_unstable();
    assert!(
        polls_at_recovery > 10,
        "{polls_at_recovery} polls during the outage"
    );
    // The very first request (the first poll's, answered 503 and recorded by the receiver) is
    // the oldest in the buffer, so the first eviction took it: its node sample never arrived,
    // and every node sample that did is newer.
    let first_attempt = rx.requests()[0].write_request.clone().unwrap().timeseries;
    let t0 = named(&first_attempt, "node_cpu_usage_seconds_total")[0].samples[0].timestamp;
    let delivered_cpu: Vec<i64> = named(&rx.accepted_series(), "node_cpu_usage_seconds_total")
        .iter()
        .map(|t| t.samples[0].timestamp)
        .collect();
    assert!(!delivered_cpu.is_empty());
    assert!(
        delivered_cpu.iter().all(|t| *t > t0),
        "the oldest request was dropped: {t0} in {delivered_cpu:?}"
    );
    assert!(
        ups.windows(2).all(|w| w[1] - w[0] < 400),
        "no poll missing inside the kept run: {ups:?}"
    );
    assert!(
        ups.iter()
            .any(|t| (recovery_ms - 300..=recovery_ms).contains(t)),
        "the poll just before recovery was kept (started at {started_ms})"
    );
}

/// The seed fixture's stats are from 2018: with `--max-sample-age 1h` only the per-poll series
/// are sent, the rest counted as too old, in the same request (trimmed, not dropped whole).
#[tokio::test]
async fn max_sample_age_trims_what_receivers_would_reject() {
    let rx = Receiver::start().await.unwrap();
    let seed = format!("file://{}", fixture("seed-windows-node.json").display());
    let ru = rx.url();
    let agent = Agent::start(&args(&seed, &ru, &["--max-sample-age", "1h", "--once"]));
    let outcome = tokio::time::timeout(SHORT, agent.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let m = agent.metrics;
    assert_eq!(
        outcome,
        Outcome::Failed,
        "--once reports samples it could not deliver"
    );
    assert_eq!(m.dropped_total(DropReason::TooOld), 33);
    let names: Vec<String> = rx
        .accepted_series()
        .iter()
        .map(|t| name(t).to_owned())
        .collect();
    assert_eq!(
        names,
        vec!["up", "scrape_duration_seconds", "scrape_samples_scraped"]
    );
    assert_eq!(m.samples_sent.get(), 3);
}

#[tokio::test]
async fn health_endpoints_follow_the_receiver() {
    kubelet_push::http::install_crypto_provider();
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (ku, ru) = (k.url(), rx.url());
    // Ready means a poll within 3 intervals: at 50 ms, a busy machine that stalls the
    // test's runtime for 150 ms would make it flap.
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &["--listen-address", &listen, "--interval", "250ms"],
    ));
    let get = |path: &'static str| {
        let url = format!("http://{listen}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    agent.wait_drained(1, SHORT).await;
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    // Three intervals (750 ms) plus the longest backoff (20 ms) without a successful send.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("requests waiting"), "{body}");
    assert_eq!(get("/healthz").await.0, 200, "alive while not ready");
    rx.clear_responses();
    agent.wait_drained(1, SHORT).await;
    assert_eq!(get("/readyz").await.0, 200);
    let metrics = get("/metrics").await.1;
    assert!(
        metrics.contains("kubelet_push_requests_total{code=\"503\"}"),
        "{metrics}"
    );
    agent.stop().await;
}

/// SIGTERM (how Kubernetes stops a pod) with a healthy receiver: exit 0, everything sent.
/// With the receiver gone: exit 0 after --shutdown-timeout, the loss reported.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_flushes_within_the_shutdown_timeout() {
    use std::time::Instant;
    for healthy in [true, false] {
        let k = kubelet(3).await;
        let rx = Receiver::start().await.unwrap();
        let (ku, ru) = (k.url(), rx.url());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .args(args(
                &ku,
                &ru,
                &["--shutdown-timeout", "2s", "--interval", "100ms"],
            ))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        assert!(rx.wait_for_requests(3, SHORT).await);
        if !healthy {
            for _ in 0..100_000 {
                rx.push_response(Response::status(503));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let asked = Instant::now();
        let (code, log) = sigterm(child).await;
        let took = asked.elapsed();
        assert_eq!(code, Some(0), "{log}");
        if healthy {
            assert!(took < Duration::from_secs(2), "flushed quickly: {took:?}");
            assert!(log.contains("samples_pending=0"), "{log}");
        } else {
            assert!(
                took >= Duration::from_secs(2) && took < Duration::from_secs(4),
                "{took:?}"
            );
            assert!(
                log.contains("samples in the memory buffer are dropped"),
                "{log}"
            );
        }
    }
}
