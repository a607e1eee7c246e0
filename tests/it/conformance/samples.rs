//! The 2026 suite's sample cases (`samples_test.go`, N010-N025): how values, timestamps and
//! the target labels of scraped samples reach the wire. The suite looks at the first sample
//! of the last request; we look at every sample of the case's series in every request, with
//! exact values.

use std::collections::BTreeMap;

use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::remote_write::{Protocol, STALE_NAN_BITS};
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::{assert_all_valid, passing, series_named, steady_value, Run};
use crate::support::label;

/// The versions `id` passes in; a row passing in none would leave its test checking nothing.
pub fn versions(id: &str) -> Vec<Protocol> {
    let versions = passing(id);
    assert!(!versions.is_empty(), "{id} passes in no version");
    versions
}

/// The versions `id`'s row marks as a deviation, whose test asserts our behaviour instead.
pub fn deviating(id: &str) -> Vec<Protocol> {
    let row = super::cases::row(id);
    let versions: Vec<Protocol> = [(Protocol::V1, &row.v1), (Protocol::V2, &row.v2)]
        .into_iter()
        .filter(|(_, v)| matches!(v, super::Verdict::Deviation(_)))
        .map(|(p, _)| p)
        .collect();
    assert!(!versions.is_empty(), "{id} deviates in no version");
    versions
}

/// Milliseconds since the Unix epoch on the test's clock.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Every request the agent sent while scraping `exposition` until `name` arrived, all valid.
pub async fn delivered(protocol: Protocol, exposition: &str, name: &str) -> Vec<ReceivedRequest> {
    let run = Run::start(protocol, exposition, &[]).await;
    run.until_series(name).await;
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    requests
}

/// Every sample value of `name` is `want`, bit for bit (the one number the exposition says).
async fn value_case(id: &str, exposition: &str, name: &str, want: f64) {
    for protocol in versions(id) {
        let requests = delivered(protocol, exposition, name).await;
        let got = steady_value(&requests, name);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{name} ({protocol:?}): {got:e}"
        );
    }
}

/// Every series of the accepted requests, keyed by its label set, with its samples in the
/// order they were sent (requests in arrival order, samples in request order).
pub fn by_series(requests: &[ReceivedRequest]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.accepted()) {
        for ts in &r.write_request.as_ref().unwrap().timeseries {
            out.entry(labels_key(ts))
                .or_default()
                .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
        }
    }
    out
}

fn labels_key(ts: &TimeSeries) -> String {
    ts.labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

/// Within every series, each sample is newer than the one sent before it, across requests
/// too (no retries happen here, so arrival order is sending order); and each of `names`
/// was sent in at least three samples, so the order had something to hold over.
pub async fn samples_in_time_order(id: &str, exposition: &str, names: &[&str]) {
    for protocol in versions(id) {
        let run = Run::start(protocol, exposition, &[]).await;
        run.until("three samples of each metric", |reqs| {
            names.iter().all(|n| {
                series_named(reqs, n)
                    .iter()
                    .map(|t| t.samples.len())
                    .sum::<usize>()
                    >= 3
            })
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let series = by_series(&requests);
        for (key, samples) in &series {
            for pair in samples.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "{key} ({protocol:?}): {:?} sent before {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
        for n in names {
            assert!(
                series
                    .keys()
                    .any(|k| k.starts_with(&format!("__name__={n:?},"))),
                "{n} missing ({protocol:?})"
            );
        }
    }
}

/// MUST encode a regular float exactly.
#[tokio::test]
async fn n010_float_value_encoding() {
    value_case("N010", "test_metric 123.45\n", "test_metric", 123.45).await;
}

/// MUST encode an integer as the float it is.
#[tokio::test]
async fn n011_integer_value_encoding() {
    value_case(
        "N011",
        "test_counter_total 42\n",
        "test_counter_total",
        42.0,
    )
    .await;
}

/// MUST encode zero (positive zero: the exposition says `0`).
#[tokio::test]
async fn n012_zero_value_encoding() {
    value_case("N012", "test_gauge 0\n", "test_gauge", 0.0).await;
}

/// MUST encode a negative value.
#[tokio::test]
async fn n013_negative_value_encoding() {
    value_case(
        "N013",
        "temperature_celsius -15.5\n",
        "temperature_celsius",
        -15.5,
    )
    .await;
}

/// MUST encode +Inf.
#[tokio::test]
async fn n014_positive_infinity_encoding() {
    value_case("N014", "test_gauge +Inf\n", "test_gauge", f64::INFINITY).await;
}

/// MUST encode -Inf.
#[tokio::test]
async fn n015_negative_infinity_encoding() {
    value_case("N015", "test_gauge -Inf\n", "test_gauge", f64::NEG_INFINITY).await;
}

/// MUST encode NaN: every sample is a NaN, and not the staleness marker (a NaN the exposition
/// says is a value; the marker would say the series ended).
#[tokio::test]
async fn n016_nan_encoding() {
    for protocol in versions("N016") {
        let requests = delivered(protocol, "test_gauge NaN\n", "test_gauge").await;
        assert!(steady_value(&requests, "test_gauge").is_nan());
        for ts in series_named(&requests, "test_gauge") {
            for s in &ts.samples {
                assert_ne!(s.value.to_bits(), STALE_NAN_BITS, "{protocol:?}");
            }
        }
    }
}

/// The timestamps of every sample of `name`, checked by `check`, over at least one sample.
fn each_timestamp(requests: &[ReceivedRequest], name: &str, check: impl Fn(i64)) {
    let series = series_named(requests, name);
    assert!(!series.is_empty(), "no {name}");
    for ts in &series {
        assert!(!ts.samples.is_empty(), "{name} without samples");
        for s in &ts.samples {
            check(s.timestamp);
        }
    }
}

/// MUST stamp samples in milliseconds since the epoch: every timestamp lies between the
/// test's clock before the agent started and after it stopped (a seconds or microseconds
/// clock would be off by a factor of a thousand).
#[tokio::test]
async fn n017_timestamp_milliseconds_format() {
    for protocol in versions("N017") {
        let before = now_ms();
        let requests = delivered(protocol, "test_metric 42\n", "test_metric").await;
        let after = now_ms();
        each_timestamp(&requests, "test_metric", |t| {
            assert!(t > 1_000_000_000_000 && t < 10_000_000_000_000_000, "{t}");
            assert!(
                (before..=after).contains(&t),
                "{t} not in [{before}, {after}]"
            );
        });
    }
}

/// SHOULD stamp fresh scrapes with the current time: within the suite's 5 minutes of now.
#[tokio::test]
async fn n018_timestamp_recent() {
    for protocol in versions("N018") {
        let requests = delivered(protocol, "test_metric 42\n", "test_metric").await;
        let now = now_ms();
        each_timestamp(&requests, "test_metric", |t| {
            assert!((now - t).abs() < 300_000, "{t} vs now {now}");
        });
    }
}

/// MAY send several samples of one series in different requests: we send one per scrape, so
/// the series arrives in several requests, each sample newer than the last, all `100`.
#[tokio::test]
async fn n019_multiple_samples_same_series() {
    let name = "test_counter_total";
    for protocol in versions("N019") {
        let run = Run::start(protocol, "test_counter_total 100\n", &[]).await;
        run.until("three requests with the series", |reqs| {
            reqs.iter()
                .filter(|r| !series_named(std::slice::from_ref(r), name).is_empty())
                .count()
                >= 3
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(steady_value(&requests, name), 100.0);
        let stamps: Vec<i64> = series_named(&requests, name)
            .iter()
            .flat_map(|ts| ts.samples.iter().map(|s| s.timestamp))
            .collect();
        assert!(stamps.windows(2).all(|p| p[0] < p[1]), "{stamps:?}");
    }
}

/// MUST carry the largest finite float exactly.
#[tokio::test]
async fn n020_large_float_values() {
    value_case(
        "N020",
        "test_large 1.7976931348623157e+308\n",
        "test_large",
        f64::MAX,
    )
    .await;
}

/// MUST carry the smallest normal float exactly (not rounded to zero).
#[tokio::test]
async fn n021_small_float_values() {
    value_case(
        "N021",
        "test_small 2.2250738585072014e-308\n",
        "test_small",
        f64::MIN_POSITIVE,
    )
    .await;
}

/// MUST read scientific notation: exactly the float `1.23e-4` parses to (the suite allows
/// ±1e-7).
#[tokio::test]
async fn n022_scientific_notation() {
    value_case(
        "N022",
        "test_scientific 1.23e-4\n",
        "test_scientific",
        1.23e-4,
    )
    .await;
}

/// SHOULD preserve precision: the 15 significant digits arrive as the exact float they
/// parse to (the suite only checks that a sample arrived).
#[tokio::test]
async fn n023_precision_preservation() {
    value_case(
        "N023",
        "test_precision 0.123456789012345\n",
        "test_precision",
        0.123_456_789_012_345,
    )
    .await;
}

/// SHOULD carry `job` and `instance`: every sample of `test_metric` has `job="test"` and the
/// target's `host:port` (the suite only checks that they are not empty).
#[tokio::test]
async fn n024_job_instance_labels_present() {
    for protocol in versions("N024") {
        let run = Run::start(protocol, "test_metric 42\n", &[]).await;
        let instance = run.target.instance();
        run.until_series("test_metric").await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        for ts in series_named(&requests, "test_metric") {
            assert_eq!(label(&ts, "job"), Some("test"), "{ts:?}");
            assert_eq!(label(&ts, "instance"), Some(instance.as_str()), "{ts:?}");
        }
    }
}

/// MUST send older samples before newer ones within a series: over three scrapes at least,
/// every series (the three metrics and the scrape's own) only moves forward in time, within
/// a request and from one request to the next. The suite only looks inside the last request,
/// where each series has one sample, so it checks nothing.
#[tokio::test]
async fn n025_sample_ordering() {
    samples_in_time_order(
        "N025",
        "# Multiple metrics\nmetric_a 1\nmetric_b 2\nmetric_c 3\n",
        &["metric_a", "metric_b", "metric_c"],
    )
    .await;
}
