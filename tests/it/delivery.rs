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
    while k.requests() < 21 || agent.dest().requests_with(Some(503)) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            agent.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let polls_in_outage = agent.metrics.polls(true);
    assert_eq!(agent.dest().samples_sent.get(), 0);
    rx.clear_responses();
    agent.wait_drained(1, SHORT).await;
    let (_, m) = agent.stop().await;
    let delivered = assert_ordered_once(&rx.accepted_series());
    assert_eq!(delivered as u64, m.samples_sent.get());
    assert_eq!(m.samples_queued.get(), m.samples_sent.get(), "nothing lost");
    assert!(
        m.requests_with(Some(503)) >= 20,
        "{}",
        m.requests_with(None)
    );
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
    let port = ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
    let ku = k.url();
    let agent = Agent::start(&args(&ku, &url, &[]));
    // Six polls, counted by the kubelet rather than timed: a busy machine polls less often.
    let deadline = tokio::time::Instant::now() + SHORT;
    while k.requests() < 6 || agent.dest().requests_with(None) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polls {}, connection-refused sends {}",
            k.requests(),
            agent.dest().requests_with(None)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let polls_in_outage = k.requests();
    let rx = Receiver::start_on(port.listen()).unwrap();
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

/// Seconds between the arrivals of consecutive requests, on tokio's (here virtual) clock.
fn gaps(requests: &[kubelet_push::demo::receiver::ReceivedRequest]) -> Vec<Duration> {
    requests.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// Paused time makes the waits exact: the receiver stamps arrivals with tokio's clock, and on
/// loopback in one current-thread runtime a response is readable as soon as it is written, so
/// the clock only moves when every task waits on a timer. The allowance is tokio's 1 ms timer
/// granularity.
const TICK: Duration = Duration::from_millis(5);

/// A 429's `Retry-After` is waited exactly, clamped to `[--min-backoff, --max-backoff]`: a zero
/// cannot become a busy loop, an hour cannot stall delivery.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_clamped() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    for after in ["2", "0", "3600"] {
        rx.push_response(Response::status(429).with_header("Retry-After", after));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &[
            "--interval",
            "1h",
            "--min-backoff",
            "1s",
            "--max-backoff",
            "5s",
        ],
    ));
    assert!(rx.wait_for_requests(4, Duration::from_secs(3600)).await);
    let r = rx.requests();
    let want = [2000, 1000, 5000].map(Duration::from_millis);
    for (gap, want) in gaps(&r[..4]).into_iter().zip(want) {
        assert!(
            gap >= want && gap <= want + TICK,
            "waited {gap:?}, not {want:?}"
        );
    }
    assert!(
        r[1..4]
            .iter()
            .all(|x| x.write_request == r[0].write_request),
        "the same request again"
    );
    assert_eq!(r[3].status, 204);
    assert_eq!(agent.dest().retries.get(), 3);
    agent.stop().await;
}

/// 5xx retries wait with full jitter under a ceiling that doubles from `--min-backoff` up to
/// `--max-backoff`: each wait is within its attempt's ceiling. (Jitter makes any lower bound
/// zero; the delay sequence itself is unit-tested in `sender.rs`.)
#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_within_the_backoff_ceilings() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..7 {
        rx.push_response(Response::status(503).with_body("ingester unavailable"));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &[
            "--interval",
            "1h",
            "--min-backoff",
            "1s",
            "--max-backoff",
            "4s",
        ],
    ));
    assert!(rx.wait_for_requests(8, Duration::from_secs(3600)).await);
    let r = rx.requests();
    let ceilings = [1, 2, 4, 4, 4, 4, 4].map(Duration::from_secs);
    let waited = gaps(&r[..8]);
    for (i, (gap, ceiling)) in waited.iter().zip(ceilings).enumerate() {
        assert!(
            *gap <= ceiling + TICK,
            "retry {i} waited {gap:?} > {ceiling:?}"
        );
    }
    assert!(
        r[1..8]
            .iter()
            .all(|x| x.write_request == r[0].write_request),
        "the same request again"
    );
    assert_eq!(r[7].status, 204);
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

/// The receiver takes 1.5 s; `--remote-timeout 300ms` gives up on it after exactly that long
/// (virtual time: the receiver's delay and the client's timeout are both tokio timers), and the
/// request is sent again after a backoff of at most 20 ms.
#[tokio::test(start_paused = true)]
async fn a_receiver_slower_than_the_timeout_is_retried() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(204).with_delay(Duration::from_millis(1500)));
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &["--remote-timeout", "300ms", "--interval", "1h"],
    ));
    assert!(rx.wait_for_requests(2, Duration::from_secs(3600)).await);
    agent.wait_drained(1, SHORT).await;
    let (_, m) = agent.stop().await;
    assert_eq!(
        m.requests_with(None),
        1,
        "the slow attempt timed out: {}",
        m.requests_with(None)
    );
    let r = rx.requests();
    let gap = r[1].at - r[0].at;
    let (timeout, max_backoff) = (Duration::from_millis(300), Duration::from_millis(20));
    assert!(
        gap >= timeout && gap <= timeout + max_backoff + TICK,
        "retried {gap:?} after the first attempt"
    );
    assert_eq!(
        r[1].write_request, r[0].write_request,
        "the timed-out request was sent again"
    );
    assert_eq!(r.len(), 2, "one poll, one retry");
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
    while agent.dest().dropped_total(DropReason::BufferFull) == 0 {
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
        crate::support::metric_in(&metrics_text, name)
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
    let m = agent.dests[0].clone();
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

/// `/readyz` turns 503 once requests wait and no send succeeded for three intervals plus the
/// longest backoff (here 3 s + 20 ms), not before; `/healthz` stays 200. Under paused time the
/// boundary is checked to within 100 ms on either side instead of by sleeping past it.
#[tokio::test(start_paused = true)]
async fn health_endpoints_follow_the_receiver() {
    kubelet_push::http::install_crypto_provider();
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &["--listen-address", &listen, "--interval", "1s"],
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
    // No await since the push: nothing was answered in between.
    let last_ok = rx.requests().last().map(|r| (r.at, r.status)).unwrap();
    assert_eq!(last_ok.1, 204);
    let limit = Duration::from_secs(3) + Duration::from_millis(20);
    let margin = Duration::from_millis(100);
    tokio::time::sleep_until(last_ok.0 + limit - margin).await;
    assert!(
        rx.requests().iter().any(|r| r.status == 503),
        "a request is waiting"
    );
    assert_eq!(get("/readyz").await.0, 200, "not unready before the limit");
    tokio::time::sleep_until(last_ok.0 + limit + margin).await;
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("requests waiting"), "{body}");
    assert_eq!(get("/healthz").await.0, 200, "alive while not ready");
    rx.clear_responses();
    agent.wait_drained(1, SHORT).await;
    assert_eq!(get("/readyz").await.0, 200);
    let metrics = get("/metrics").await.1;
    // Labelled with the destination's URL, as its logs show it.
    let url = kubelet_push::http::redact(&rx.url().parse().unwrap());
    assert!(
        metrics.contains(&format!(
            "kubelet_push_requests_total{{url=\"{url}\",code=\"503\"}}"
        )),
        "{metrics}"
    );
    agent.stop().await;
}

/// A stop drains the buffer for at most `--shutdown-timeout`, measured in virtual time: at once
/// when the receiver takes everything, exactly the timeout when it answers 503 forever, and
/// then what is left is counted as dropped. (The SIGTERM path of the real binary is tested
/// below on the wall clock.)
#[tokio::test(start_paused = true)]
async fn the_drain_is_bounded_by_the_shutdown_timeout() {
    for healthy in [true, false] {
        let k = kubelet(2).await;
        let rx = Receiver::start().await.unwrap();
        if !healthy {
            for _ in 0..100_000 {
                rx.push_response(Response::status(503));
            }
        }
        let (ku, ru) = (k.url(), rx.url());
        let agent = Agent::start(&args(
            &ku,
            &ru,
            &[
                "--interval",
                "1h",
                "--shutdown-timeout",
                "7s",
                "--min-backoff",
                "1s",
                "--max-backoff",
                "2s",
            ],
        ));
        assert!(rx.wait_for_requests(1, Duration::from_secs(3600)).await);
        let asked = tokio::time::Instant::now();
        agent.stop.cancel();
        tokio::time::timeout(Duration::from_secs(3600), agent.task)
            .await
            .expect("the drain ends")
            .unwrap()
            .unwrap();
        let took = asked.elapsed();
        let m = &agent.dests[0];
        let queued = m.samples_queued.get();
        assert!(queued > 0);
        if healthy {
            assert!(
                took < Duration::from_millis(100),
                "flushed at once: {took:?}"
            );
            assert_eq!(m.samples_sent.get(), queued);
        } else {
            let timeout = Duration::from_secs(7);
            assert!(
                took >= timeout && took <= timeout + TICK,
                "stopped after {took:?}"
            );
            assert_eq!(m.samples_sent.get(), 0);
            assert_eq!(m.dropped_total(DropReason::Shutdown), queued);
            assert!(rx.requests().len() >= 3, "retried while draining");
        }
    }
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
            .env(SHORT_INTERVALS.0, SHORT_INTERVALS.1)
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
