//! The 2026 suite's timestamp cases (`timestamps_test.go`, N076-N083): sample timestamps in
//! milliseconds, in order, recent; and 2.0's start timestamps. Every sample of every request
//! is checked (the suite looks at the first series of the last request).
//!
//! A start timestamp needs a start time in the exposition: OpenMetrics' `_created` lines.
//! The suite's expositions are the text format 0.0.4, which has none, so for them no start
//! timestamp is sent (0, unset), as Prometheus 3.8 sends none there; each start-timestamp
//! case also serves an OpenMetrics variant with a `_created` line (and an exemplar, which
//! makes the suite's target serve it as OpenMetrics) and checks the start timestamp it gives.

use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::samples::{delivered, now_ms, samples_in_time_order, versions};
use super::symbols::{messages, v2_requests};
use super::{assert_all_valid, series_named, steady_value, Run};

/// Every sample of every series of every accepted request.
fn every_sample(requests: &[ReceivedRequest]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for r in requests.iter().filter(|r| r.accepted()) {
        for ts in &r.write_request.as_ref().unwrap().timeseries {
            let name = crate::support::name(ts).to_string();
            out.extend(ts.samples.iter().map(|s| (name.clone(), s.timestamp)));
        }
    }
    assert!(!out.is_empty(), "no sample");
    out
}

/// The 2.0 samples of the series named `name`, with their start timestamps.
fn v2_samples<'a>(requests: &'a [ReceivedRequest], name: &str) -> Vec<&'a v2::Sample> {
    let mut out = Vec::new();
    for m in messages(requests) {
        for ts in &m.timeseries {
            let named = ts.labels_refs.chunks(2).any(|p| {
                m.symbols[p[0] as usize] == "__name__" && m.symbols[p[1] as usize] == name
            });
            if named {
                out.extend(&ts.samples);
            }
        }
    }
    assert!(!out.is_empty(), "no sample of {name}");
    out
}

/// Every 2.0 sample of every series.
fn every_v2_sample(requests: &[ReceivedRequest]) -> Vec<&v2::Sample> {
    messages(requests)
        .into_iter()
        .flat_map(|m| m.timeseries.iter().flat_map(|ts| ts.samples.iter()))
        .collect()
}

/// A whole second a minute ago, as OpenMetrics' `_created` says it (seconds), and in ms.
fn created_a_minute_ago() -> (i64, i64) {
    let s = now_ms() / 1000 - 60;
    (s, s * 1000)
}

/// MUST stamp in int64 milliseconds since the epoch: every sample of every series (the
/// scrape's own too) lies between the test's clock before the start and after the stop.
#[tokio::test]
async fn n076_timestamp_int64_milliseconds() {
    for protocol in versions("N076") {
        let before = now_ms();
        let requests = delivered(protocol, "test_counter_total 42\n", "test_counter_total").await;
        let after = now_ms();
        for (name, t) in every_sample(&requests) {
            assert!(
                t > 1_000_000_000_000 && t < 10_000_000_000_000_000,
                "{name} {t}"
            );
            assert!(
                (before..=after).contains(&t),
                "{name} {t} not in [{before}, {after}]"
            );
        }
    }
}

/// MUST send a series' samples oldest first: over three scrapes or more, every series only
/// moves forward in time, within and across requests.
#[tokio::test]
async fn n077_timestamp_ordering_within_series() {
    samples_in_time_order(
        "N077",
        "# Multiple metrics over time\nmetric_a 1\nmetric_b 2\nmetric_c 3\n",
        &["metric_a", "metric_b", "metric_c"],
    )
    .await;
}

/// MAY send a counter's start timestamp. The suite's exposition (text format) gives none:
/// every sample's is 0. OpenMetrics' `_created` gives one: every sample of the counter
/// carries it, in milliseconds.
#[tokio::test]
async fn n078_start_timestamp_for_counters() {
    assert_eq!(versions("N078"), [Protocol::V2]);
    let (requests, _) = v2_requests(
        "# TYPE test_counter counter\ntest_counter_total 100\n",
        "test_counter_total",
    )
    .await;
    for s in every_v2_sample(&requests) {
        assert_eq!(s.start_timestamp, 0, "{s:?}");
    }
    let (created, created_ms) = created_a_minute_ago();
    let (requests, _) = v2_requests(
        &format!(
            "# TYPE test_counter counter\n\
             test_counter_total 100 # {{trace_id=\"abc\"}} 1\n\
             test_counter_created {created}\n\
             # EOF\n"
        ),
        "test_counter_total",
    )
    .await;
    assert_eq!(steady_value(&requests, "test_counter_total"), 100.0);
    for s in v2_samples(&requests, "test_counter_total") {
        assert_eq!(s.start_timestamp, created_ms, "{s:?}");
        assert!(s.start_timestamp <= s.timestamp, "{s:?}");
    }
}

/// MAY send a histogram's start timestamp. The suite's exposition (text format) gives none:
/// every sample's is 0. OpenMetrics' `_created` gives one: the `_bucket`, `_count` and
/// `_sum` samples carry it.
#[tokio::test]
async fn n079_start_timestamp_for_histograms() {
    assert_eq!(versions("N079"), [Protocol::V2]);
    let (requests, _) = v2_requests(
        "# TYPE test_histogram histogram\n\
         test_histogram_count 100\n\
         test_histogram_sum 250.0\n\
         test_histogram_bucket{le=\"+Inf\"} 100\n",
        "test_histogram_count",
    )
    .await;
    assert_eq!(steady_value(&requests, "test_histogram_count"), 100.0);
    for s in every_v2_sample(&requests) {
        assert_eq!(s.start_timestamp, 0, "{s:?}");
    }
    let (created, created_ms) = created_a_minute_ago();
    let (requests, _) = v2_requests(
        &format!(
            "# TYPE test_histogram histogram\n\
             test_histogram_bucket{{le=\"+Inf\"}} 100 # {{trace_id=\"abc\"}} 1\n\
             test_histogram_count 100\n\
             test_histogram_sum 250.0\n\
             test_histogram_created {created}\n\
             # EOF\n"
        ),
        "test_histogram_count",
    )
    .await;
    for name in [
        "test_histogram_bucket",
        "test_histogram_count",
        "test_histogram_sum",
    ] {
        for s in v2_samples(&requests, name) {
            assert_eq!(s.start_timestamp, created_ms, "{name} {s:?}");
        }
    }
}

/// SHOULD treat a start timestamp of 0 as unset: no sample's start timestamp is a made-up
/// time (each is 0, or a real time in milliseconds), and an OpenMetrics `_created 0` (the
/// epoch, which no counter started at) is sent as unset, 0.
#[tokio::test]
async fn n080_start_timestamp_zero_handling() {
    assert_eq!(versions("N080"), [Protocol::V2]);
    let (requests, _) = v2_requests(
        "# TYPE test_counter counter\ntest_counter_total 50\n",
        "test_counter_total",
    )
    .await;
    for s in every_v2_sample(&requests) {
        assert!(
            s.start_timestamp == 0 || s.start_timestamp > 1_000_000_000_000,
            "{s:?}"
        );
    }
    let (requests, _) = v2_requests(
        "# TYPE test_counter counter\n\
         test_counter_total 50 # {trace_id=\"abc\"} 1\n\
         test_counter_created 0\n\
         # EOF\n",
        "test_counter_total",
    )
    .await;
    for s in v2_samples(&requests, "test_counter_total") {
        assert_eq!(s.start_timestamp, 0, "{s:?}");
    }
}

/// SHOULD keep millisecond precision: two scrapes a quarter second apart are not both on a
/// whole second (a clock cut to seconds would make them so), and every timestamp is within
/// the suite's 10 minutes of now.
#[tokio::test]
async fn n081_timestamp_precision() {
    for protocol in versions("N081") {
        let run = Run::start(protocol, "test_metric 42\n", &[]).await;
        run.until("two samples of test_metric", |reqs| {
            series_named(reqs, "test_metric")
                .iter()
                .map(|t| t.samples.len())
                .sum::<usize>()
                >= 2
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let now = now_ms();
        let stamps: Vec<i64> = series_named(&requests, "test_metric")
            .iter()
            .flat_map(|ts| ts.samples.iter().map(|s| s.timestamp))
            .collect();
        assert!(stamps.iter().any(|t| t % 1000 != 0), "{stamps:?}");
        assert!(
            stamps.iter().all(|t| (now - t).abs() < 600_000),
            "{stamps:?}"
        );
    }
}

/// SHOULD handle timestamps slightly in the future. The suite's exposition has none, and no
/// sample is stamped past the test's clock. An explicit timestamp a minute ahead (within
/// the agent's two-minute allowance for clock skew) is sent as it is.
#[tokio::test]
async fn n082_timestamp_future_values() {
    for protocol in versions("N082") {
        let requests = delivered(protocol, "test_metric 42\n", "test_metric").await;
        let now = now_ms();
        for (name, t) in every_sample(&requests) {
            assert!(t <= now, "{name} {t} is after {now}");
        }
        let ahead = now_ms() + 60_000;
        let requests = delivered(
            protocol,
            &format!("test_metric 42 {ahead}\n"),
            "test_metric",
        )
        .await;
        assert_eq!(steady_value(&requests, "test_metric"), 42.0);
        for ts in series_named(&requests, "test_metric") {
            for s in &ts.samples {
                assert_eq!(s.timestamp, ahead, "{protocol:?}");
            }
        }
    }
}

/// SHOULD send a start timestamp no later than its sample's: with the suite's exposition
/// there is none; with a `_created` a minute ago, every sample's start is at or before its
/// timestamp.
#[tokio::test]
async fn n083_start_timestamp_before_sample_timestamp() {
    assert_eq!(versions("N083"), [Protocol::V2]);
    let (requests, _) = v2_requests(
        "# TYPE test_counter counter\ntest_counter_total 100\n",
        "test_counter_total",
    )
    .await;
    for s in every_v2_sample(&requests) {
        assert!(s.start_timestamp <= s.timestamp, "{s:?}");
    }
    let (created, created_ms) = created_a_minute_ago();
    let (requests, _) = v2_requests(
        &format!(
            "# TYPE test_counter counter\n\
             test_counter_total 100 # {{trace_id=\"abc\"}} 1\n\
             test_counter_created {created}\n\
             # EOF\n"
        ),
        "test_counter_total",
    )
    .await;
    let samples = v2_samples(&requests, "test_counter_total");
    for s in &samples {
        assert_eq!(s.start_timestamp, created_ms, "{s:?}");
        assert!(s.start_timestamp <= s.timestamp, "{s:?}");
    }
    for s in every_v2_sample(&requests) {
        assert!(s.start_timestamp <= s.timestamp, "{s:?}");
    }
}
