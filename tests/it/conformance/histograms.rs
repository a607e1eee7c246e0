//! The 2026 suite's histogram cases (`histograms_test.go`, N055-N066). Every exposition is a
//! classic histogram in the text format (the suite has no protobuf exposition), so what can
//! be checked is its `_bucket`, `_sum` and `_count` series: each with its exact value, `le`
//! as written, in every scrape's request. Native histograms need the protobuf exposition
//! format, which the agent does not scrape: the cases about their structure are not
//! supported, and their tests check that the classic series go out and no series carries a
//! histogram.

use kubelet_push::remote_write::proto::v2::metadata::MetricType;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::inspect::{assert_samples_only, requests_with, scraped, steady, v2_metadata, v2_series};
use super::{passing, Verdict};

/// A classic histogram `base` as it should arrive: `(le, cumulative count)` per bucket as
/// the exposition writes `le`, the sum and the count.
struct Classic<'a> {
    base: &'a str,
    buckets: &'a [(&'a str, f64)],
    sum: f64,
    count: f64,
}

impl Classic<'_> {
    /// Every part holds its value in every sample, and every request that carries one part
    /// carries all of them (a scrape's family travels together), buckets in the exposition's
    /// order, all stamped with one time; in 2.0 each part is typed a histogram.
    fn assert_sent(&self, requests: &[ReceivedRequest]) {
        let (bucket, sum, count) = (
            format!("{}_bucket", self.base),
            format!("{}_sum", self.base),
            format!("{}_count", self.base),
        );
        for &(le, want) in self.buckets {
            assert_eq!(steady(requests, &bucket, &[("le", le)]), want, "le={le}");
        }
        assert_eq!(steady(requests, &sum, &[]), self.sum);
        assert_eq!(steady(requests, &count, &[]), self.count);
        let parts = [&bucket, &sum, &count];
        let carrying: Vec<_> = super::inspect::accepted(requests)
            .into_iter()
            .filter(|w| {
                w.timeseries
                    .iter()
                    .any(|ts| parts.iter().any(|p| crate::support::name(ts) == p.as_str()))
            })
            .collect();
        assert!(carrying.len() >= 2, "{carrying:?}");
        for w in carrying {
            let les: Vec<&str> = w
                .timeseries
                .iter()
                .filter(|ts| crate::support::name(ts) == bucket)
                .filter_map(|ts| crate::support::label(ts, "le"))
                .collect();
            let want: Vec<&str> = self.buckets.iter().map(|(le, _)| *le).collect();
            assert_eq!(les, want, "buckets of one request, in order");
            let family: Vec<_> = w
                .timeseries
                .iter()
                .filter(|ts| parts.iter().any(|p| crate::support::name(ts) == p.as_str()))
                .collect();
            assert_eq!(family.len(), self.buckets.len() + 2, "{w:?}");
            let stamps: Vec<i64> = family
                .iter()
                .flat_map(|ts| ts.samples.iter().map(|s| s.timestamp))
                .collect();
            assert!(stamps[0] > 1_000_000_000_000, "{stamps:?}");
            assert!(stamps.iter().all(|t| *t == stamps[0]), "{stamps:?}");
        }
        if requests.iter().any(|r| r.protocol == Protocol::V2) {
            for part in parts {
                let found = v2_series(requests, part);
                assert!(!found.is_empty() || part == &bucket && self.buckets.is_empty());
                for (req, ts) in found {
                    assert_eq!(v2_metadata(req, ts).0, MetricType::Histogram, "{part}");
                }
            }
            assert_samples_only(requests);
        }
    }
}

/// The versions a native-histogram case is checked in: 2.0, the only one with histograms,
/// where its row says it is not supported.
fn native_case(id: &str) -> Protocol {
    let row = super::cases::row(id);
    assert!(matches!(row.v2, Verdict::NotSupported(_)), "{id}");
    Protocol::V2
}

const N055: &str = "# TYPE test_histogram histogram
test_histogram_count 10
test_histogram_sum 25.5
test_histogram_bucket{le=\"1\"} 2
test_histogram_bucket{le=\"5\"} 7
test_histogram_bucket{le=\"+Inf\"} 10
";

/// MUST encode a histogram's structure: the classic one here, every part with its value.
#[tokio::test]
async fn n055_native_histogram_structure() {
    for protocol in passing("N055") {
        let requests = scraped(protocol, N055, "test_histogram_count").await;
        Classic {
            base: "test_histogram",
            buckets: &[("1", 2.0), ("5", 7.0), ("+Inf", 10.0)],
            sum: 25.5,
            count: 10.0,
        }
        .assert_sent(&requests);
    }
}

const COUNT_AND_SUM: &str = "# TYPE test_histogram histogram
test_histogram_count 100
test_histogram_sum 250.5
test_histogram_bucket{le=\"+Inf\"} 100
";

const COUNT_AND_SUM_PARTS: Classic<'static> = Classic {
    base: "test_histogram",
    buckets: &[("+Inf", 100.0)],
    sum: 250.5,
    count: 100.0,
};

/// MUST include the count: `test_histogram_count` is 100 in every scrape.
#[tokio::test]
async fn n056_histogram_count_present() {
    for protocol in passing("N056") {
        let requests = scraped(protocol, COUNT_AND_SUM, "test_histogram_count").await;
        assert_eq!(steady(&requests, "test_histogram_count", &[]), 100.0);
        COUNT_AND_SUM_PARTS.assert_sent(&requests);
    }
}

/// MUST include the sum: `test_histogram_sum` is 250.5 in every scrape.
#[tokio::test]
async fn n057_histogram_sum_present() {
    for protocol in passing("N057") {
        let requests = scraped(protocol, COUNT_AND_SUM, "test_histogram_sum").await;
        assert_eq!(steady(&requests, "test_histogram_sum", &[]), 250.5);
        COUNT_AND_SUM_PARTS.assert_sent(&requests);
    }
}

/// SHOULD send buckets in order: every request carries the five buckets in ascending `le`,
/// with `le` as the exposition writes it (`1.0`, not `1`).
#[tokio::test]
async fn n058_histogram_buckets_ordered() {
    const EXPOSITION: &str = "# TYPE request_duration histogram
request_duration_bucket{le=\"0.1\"} 10
request_duration_bucket{le=\"0.5\"} 50
request_duration_bucket{le=\"1.0\"} 100
request_duration_bucket{le=\"5.0\"} 200
request_duration_bucket{le=\"+Inf\"} 250
request_duration_sum 500.0
request_duration_count 250
";
    for protocol in passing("N058") {
        let requests = scraped(protocol, EXPOSITION, "request_duration_bucket").await;
        Classic {
            base: "request_duration",
            buckets: &[
                ("0.1", 10.0),
                ("0.5", 50.0),
                ("1.0", 100.0),
                ("5.0", 200.0),
                ("+Inf", 250.0),
            ],
            sum: 500.0,
            count: 250.0,
        }
        .assert_sent(&requests);
    }
}

/// Count and sum without buckets: what the agent sends for the native-histogram cases whose
/// exposition has only those two lines.
async fn count_and_sum_only(id: &str, exposition: &str, base: &str, count: f64, sum: f64) {
    let requests = scraped(native_case(id), exposition, &format!("{base}_count")).await;
    Classic {
        base,
        buckets: &[],
        sum,
        count,
    }
    .assert_sent(&requests);
    assert!(requests_with(&requests, &format!("{base}_bucket")).is_empty());
}

/// MAY send a native histogram's positive buckets: not supported (no native histograms); the
/// count and sum of the exposition go out as classic series.
#[tokio::test]
async fn n059_histogram_positive_buckets() {
    const EXPOSITION: &str = "# TYPE test_native_histogram histogram
test_native_histogram_count 100
test_native_histogram_sum 250.0
";
    count_and_sum_only("N059", EXPOSITION, "test_native_histogram", 100.0, 250.0).await;
}

/// MAY send negative buckets: not supported; a negative sum goes out as it is.
#[tokio::test]
async fn n060_histogram_negative_buckets() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_count 50
test_histogram_sum -25.0
";
    count_and_sum_only("N060", EXPOSITION, "test_histogram", 50.0, -25.0).await;
}

/// MAY send a zero bucket: not supported; the classic count and sum go out.
#[tokio::test]
async fn n061_histogram_zero_bucket() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_count 10
test_histogram_sum 0.0
";
    count_and_sum_only("N061", EXPOSITION, "test_histogram", 10.0, 0.0).await;
}

/// MUST give a native histogram's schema: not supported (no native histogram is ever sent);
/// the classic count and sum go out.
#[tokio::test]
async fn n062_histogram_schema() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_count 100
test_histogram_sum 500.0
";
    count_and_sum_only("N062", EXPOSITION, "test_histogram", 100.0, 500.0).await;
}

const WITH_INF: &str = "# TYPE test_histogram histogram
test_histogram_count 100
test_histogram_sum 250.0
test_histogram_bucket{le=\"+Inf\"} 100
";

/// MUST carry a valid timestamp: every part of every scrape is stamped with the scrape's time
/// (milliseconds, the same as its `up`).
#[tokio::test]
async fn n063_histogram_timestamp() {
    for protocol in passing("N063") {
        let requests = scraped(protocol, WITH_INF, "test_histogram_count").await;
        Classic {
            base: "test_histogram",
            buckets: &[("+Inf", 100.0)],
            sum: 250.0,
            count: 100.0,
        }
        .assert_sent(&requests);
        for w in requests_with(&requests, "test_histogram_count") {
            let stamp = |name: &str| {
                w.timeseries
                    .iter()
                    .find(|ts| crate::support::name(ts) == name)
                    .map(|ts| ts.samples[0].timestamp)
            };
            assert_eq!(stamp("test_histogram_count"), stamp("up"), "{w:?}");
        }
    }
}

/// MUST NOT mix histograms and samples in one series: no 2.0 series carries both (none
/// carries a histogram at all).
#[tokio::test]
async fn n064_histogram_no_mixed_with_samples() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_count 100
test_histogram_sum 250.0
";
    for protocol in passing("N064") {
        let requests = scraped(protocol, EXPOSITION, "test_histogram_count").await;
        assert_samples_only(&requests);
        assert_eq!(steady(&requests, "test_histogram_count", &[]), 100.0);
        assert_eq!(steady(&requests, "test_histogram_sum", &[]), 250.0);
    }
}

/// SHOULD handle a histogram with no observations: its zeros go out.
#[tokio::test]
async fn n065_histogram_empty_buckets() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_count 0
test_histogram_sum 0
test_histogram_bucket{le=\"+Inf\"} 0
";
    for protocol in passing("N065") {
        let requests = scraped(protocol, EXPOSITION, "test_histogram_count").await;
        Classic {
            base: "test_histogram",
            buckets: &[("+Inf", 0.0)],
            sum: 0.0,
            count: 0.0,
        }
        .assert_sent(&requests);
    }
}

/// MUST handle large counts: 1e9 and 5e9 exactly.
#[tokio::test]
async fn n066_histogram_large_counts() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_count 1000000000
test_histogram_sum 5000000000.0
test_histogram_bucket{le=\"+Inf\"} 1000000000
";
    for protocol in passing("N066") {
        let requests = scraped(protocol, EXPOSITION, "test_histogram_count").await;
        Classic {
            base: "test_histogram",
            buckets: &[("+Inf", 1e9)],
            sum: 5e9,
            count: 1e9,
        }
        .assert_sent(&requests);
    }
}
