//! What the sending cases share (retry, backoff, fallback, response, error handling,
//! batching, 1.0 compatibility): the agent started the harness's way but pointed at any URL,
//! with the backoff and interval a case needs, and ways to tell on the wire whether a request
//! was sent again (a retry carries the same samples) or is another poll's.

use std::time::Duration;

use kubelet_push::remote_write::Protocol;
use kubelet_push::telemetry::{DestinationMetrics, DropReason};
use kubelet_push::testkit::receiver::{ReceivedRequest, Receiver, Response};

use super::{version_flag, Run, Target, INTERVAL};
use crate::support::Agent;

/// The exposition of most sending cases, as the suite serves it.
pub const EXPOSITION: &str = "test_metric 42\n";

/// The agent scraping `target` every `interval` as job `test` and pushing `protocol` to `url`,
/// with the harness's flags (`Run::start`'s) and `extra`; a backoff in `extra` replaces the
/// harness's 50 ms-200 ms.
pub fn agent(
    protocol: Protocol,
    target: &Target,
    url: &str,
    extra: &[&str],
    interval: Duration,
) -> Agent {
    let scrape = format!("test={}", target.url());
    let mut args = vec![
        "--kubelet-summary=false",
        "--node-name",
        "conformance-node",
        "--scrape",
        &scrape,
        "--remote-url",
        url,
        "--remote-write-version",
        version_flag(protocol),
        "--shutdown-timeout",
        "5s",
    ];
    if !extra.contains(&"--min-backoff") {
        args.extend(["--min-backoff", "50ms"]);
    }
    if !extra.contains(&"--max-backoff") {
        args.extend(["--max-backoff", "200ms"]);
    }
    args.extend_from_slice(extra);
    let mut cfg = crate::support::config(&args);
    cfg.poll.interval = interval;
    for t in &mut cfg.scrape_targets {
        t.interval = interval;
        t.timeout = interval * 4 / 5;
    }
    Agent::start_config(cfg)
}

/// As `Run::start_with`, with [`agent`]'s flags and interval.
pub async fn start(
    protocol: Protocol,
    exposition: &str,
    extra: &[&str],
    interval: Duration,
    script: impl FnOnce(&Receiver),
) -> Run {
    let target = Target::serve(exposition).await;
    let rx = Receiver::start().await.unwrap();
    script(&rx);
    let agent = agent(protocol, &target, &rx.url(), extra, interval);
    Run {
        target,
        rx,
        agent,
        protocol,
    }
}

/// [`start`] at the harness's interval.
pub async fn start_at_interval(
    protocol: Protocol,
    extra: &[&str],
    script: impl FnOnce(&Receiver),
) -> Run {
    start(protocol, EXPOSITION, extra, INTERVAL, script).await
}

/// One sample as compared across requests: its series' labels (sorted), its timestamp and the
/// bits of its value.
pub type WireSample = (Vec<(String, String)>, i64, u64);

/// A request's samples, sorted: two requests with the same samples carry the same data,
/// whichever protocol each went in.
pub fn samples(r: &ReceivedRequest) -> Vec<WireSample> {
    let mut out: Vec<_> = r
        .write_request
        .iter()
        .flat_map(|w| &w.timeseries)
        .flat_map(|ts| {
            let mut labels: Vec<(String, String)> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            labels.sort();
            ts.samples
                .iter()
                .map(move |s| (labels.clone(), s.timestamp, s.value.to_bits()))
        })
        .collect();
    out.sort();
    out
}

/// The number of samples a request held.
pub fn sample_count(r: &ReceivedRequest) -> u64 {
    r.write_request
        .iter()
        .flat_map(|w| &w.timeseries)
        .map(|ts| ts.samples.len() as u64)
        .sum()
}

/// The timestamps of the samples of series `name` in `r`: the polls it carries.
pub fn polls(r: &ReceivedRequest, name: &str) -> Vec<i64> {
    r.write_request
        .iter()
        .flat_map(|w| &w.timeseries)
        .filter(|ts| crate::support::name(ts) == name)
        .flat_map(|ts| ts.samples.iter().map(|s| s.timestamp))
        .collect()
}

/// No request was sent again: every request holds samples, and no two hold the same ones.
pub fn assert_none_sent_twice(requests: &[ReceivedRequest]) {
    let mut seen: Vec<Vec<WireSample>> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let s = samples(r);
        assert!(!s.is_empty(), "request {i} holds nothing: {r:?}");
        assert!(
            !seen.contains(&s),
            "request {i} ({}) was sent again: {:?}",
            r.status,
            polls(r, "test_metric")
        );
        seen.push(s);
    }
}

/// Nothing was dropped for any reason, and everything queued was delivered.
pub fn assert_nothing_lost(metrics: &DestinationMetrics) {
    for reason in DropReason::ALL {
        assert_eq!(metrics.dropped_total(reason), 0, "{reason:?}");
    }
    let queued = metrics.samples_queued.get();
    assert!(queued > 0, "nothing was queued");
    assert_eq!(metrics.samples_sent.get(), queued);
}

/// The 2.0 answer the suite's fallback and response cases give to every 2xx: fixed counts,
/// whatever the request held.
pub fn written_one(status: u16) -> Response {
    Response::status(status)
        .with_header("X-Prometheus-Remote-Write-Samples-Written", "1")
        .with_header("X-Prometheus-Remote-Write-Exemplars-Written", "0")
        .with_header("X-Prometheus-Remote-Write-Histograms-Written", "0")
}

/// How many lines of `logs` contain `text`.
pub fn lines_with(logs: &str, text: &str) -> usize {
    logs.lines().filter(|l| l.contains(text)).count()
}

/// The log line of one failure episode's start, and of its end.
pub const FAILED_LINE: &str = "remote write failed; retrying until it succeeds";
pub const RECOVERED_LINE: &str = "remote write recovered";
/// The log line of a rejection episode's start, and of its end.
pub const REJECTED_LINE: &str = "remote write rejected by the receiver; request dropped";
pub const ACCEPTS_AGAIN_LINE: &str = "receiver accepts requests again";
/// The line of a fallback to 1.0.
pub const FALLBACK_LINE: &str = "the receiver does not take Remote Write 2.0";
/// The line of a partial-write episode's start.
pub const PARTIAL_LINE: &str = "the receiver wrote fewer samples than the request held";

/// The versions every sending case runs for when its row passes in both (a helper for rows
/// whose test checks a deviation in both versions).
pub const BOTH: [Protocol; 2] = [Protocol::V1, Protocol::V2];
