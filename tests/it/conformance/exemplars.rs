//! The 2026 suite's exemplar cases (`exemplars_test.go`, N067-N075): every exposition carries
//! an exemplar, so the target serves it as OpenMetrics, and the agent sends each exemplar in
//! Remote Write 2.0, in its sample's series, once (a scrape that repeats a series' last
//! exemplar sends none, as Prometheus's exemplar storage refuses a duplicate). Every exemplar
//! is held to the specification's MUSTs by [`v2_exemplars`] whatever the case: refs in pairs
//! and inside the symbols, a timestamp in milliseconds.
//!
//! Six of these expositions put the exemplar on a counter sample named without `_total`
//! (`test_counter 100 # {...}` under `# TYPE test_counter counter`), which OpenMetrics does
//! not allow (a counter's samples are `<name>_total` and `<name>_created`, and only those and
//! buckets may carry exemplars). The agent's parser refuses such an exposition as a whole
//! (`up` 0, nothing of it sent), which each test checks on the suite's bytes; Prometheus's
//! parser does not check sample names and takes it. The case's rule is then checked on the
//! same line named as OpenMetrics names it (`test_counter_total`).

use kubelet_push::remote_write::Protocol;

use super::cases::row;
use super::inspect::{
    assert_no_histograms, owned_labels, refused, scraped, steady, v2_exemplars, SentExemplar,
};
use super::Verdict;

/// The version an exemplar case is checked in: 2.0 (1.0 has no exemplars).
fn exemplar_case(id: &str) -> Protocol {
    let r = row(id);
    assert!(matches!(r.v1, Verdict::NotApplicable(_)), "{id}");
    assert!(
        matches!(r.v2, Verdict::Pass | Verdict::NotSupported(_)),
        "{id}"
    );
    Protocol::V2
}

/// A case whose exposition (`verbatim`) puts its exemplar on a counter sample without
/// `_total`: refused whole. `valid` is the same line as OpenMetrics names it; its counter
/// `sample` is scraped with `value`, and its one exemplar, sent once, is returned.
async fn counter_case(
    id: &str,
    verbatim: &str,
    valid: &str,
    sample: &str,
    value: f64,
) -> SentExemplar {
    let protocol = exemplar_case(id);
    refused(protocol, verbatim).await;
    let requests = scraped(protocol, valid, sample).await;
    assert_no_histograms(&requests);
    assert_eq!(steady(&requests, sample, &[]), value);
    let sent = v2_exemplars(&requests, sample, &[]);
    assert_eq!(sent.len(), 1, "sent once over every scrape: {sent:?}");
    sent.into_iter().next().expect("one exemplar")
}

/// MAY attach an exemplar with `trace_id`: sent on its bucket, once; the histogram is scraped
/// whole.
#[tokio::test]
async fn n067_exemplar_with_trace_id() {
    const EXPOSITION: &str = "# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"0.1\"} 50 # {trace_id=\"abc123xyz\"} 0.05 1234567890.123
http_request_duration_seconds_bucket{le=\"+Inf\"} 100
http_request_duration_seconds_sum 10.5
http_request_duration_seconds_count 100
";
    let requests = scraped(
        exemplar_case("N067"),
        EXPOSITION,
        "http_request_duration_seconds_bucket",
    )
    .await;
    assert_no_histograms(&requests);
    let name = "http_request_duration_seconds";
    let bucket = format!("{name}_bucket");
    assert_eq!(steady(&requests, &bucket, &[("le", "0.1")]), 50.0);
    assert_eq!(steady(&requests, &bucket, &[("le", "+Inf")]), 100.0);
    assert_eq!(steady(&requests, &format!("{name}_sum"), &[]), 10.5);
    assert_eq!(steady(&requests, &format!("{name}_count"), &[]), 100.0);
    assert_eq!(steady(&requests, "up", &[]), 1.0);
    assert_eq!(
        v2_exemplars(&requests, &bucket, &[("le", "0.1")]),
        vec![(
            owned_labels(&[("trace_id", "abc123xyz")]),
            0.05,
            1_234_567_890_123
        )]
    );
    assert_eq!(v2_exemplars(&requests, &bucket, &[("le", "+Inf")]), vec![]);
}

/// MAY attach `span_id`, non-empty: sent with it.
#[tokio::test]
async fn n068_exemplar_with_span_id() {
    let sent = counter_case(
        "N068",
        "# TYPE http_requests_total counter
http_requests_total 1000 # {trace_id=\"abc123\",span_id=\"def456\"} 999 1234567890.5
",
        "# TYPE http_requests counter
http_requests_total 1000 # {trace_id=\"abc123\",span_id=\"def456\"} 999 1234567890.5
",
        "http_requests_total",
        1000.0,
    )
    .await;
    assert_eq!(
        sent,
        (
            owned_labels(&[("trace_id", "abc123"), ("span_id", "def456")]),
            999.0,
            1_234_567_890_500
        )
    );
}

/// MUST give an exemplar a valid value: the exposition's, exactly.
#[tokio::test]
async fn n069_exemplar_value_valid() {
    let (_, value, _) = counter_case(
        "N069",
        "# TYPE test_counter counter
test_counter 100 # {trace_id=\"test123\"} 99.5 1234567890.0
",
        "# TYPE test_counter counter
test_counter_total 100 # {trace_id=\"test123\"} 99.5 1234567890.0
",
        "test_counter_total",
        100.0,
    )
    .await;
    assert_eq!(value, 99.5);
}

/// MUST give an exemplar a valid timestamp, in milliseconds: the exposition's seconds × 1000.
#[tokio::test]
async fn n070_exemplar_timestamp_valid() {
    let (_, _, timestamp) = counter_case(
        "N070",
        "# TYPE test_counter counter
test_counter 100 # {trace_id=\"test123\"} 99 1234567890.123
",
        "# TYPE test_counter counter
test_counter_total 100 # {trace_id=\"test123\"} 99 1234567890.123
",
        "test_counter_total",
        100.0,
    )
    .await;
    assert_eq!(timestamp, 1_234_567_890_123);
}

/// MUST give exemplar label refs inside the symbols ([`v2_exemplars`] checks every ref), and
/// they name the exposition's labels.
#[tokio::test]
async fn n071_exemplar_labels_valid_refs() {
    let (labels, value, _) = counter_case(
        "N071",
        "# TYPE test_metric counter
test_metric 100 # {trace_id=\"xyz\"} 99 1234567890.0
",
        "# TYPE test_metric counter
test_metric_total 100 # {trace_id=\"xyz\"} 99 1234567890.0
",
        "test_metric_total",
        100.0,
    )
    .await;
    assert_eq!(
        (labels, value),
        (owned_labels(&[("trace_id", "xyz")]), 99.0)
    );
}

/// MAY attach custom exemplar labels, non-empty: sent as written.
#[tokio::test]
async fn n072_exemplar_custom_labels() {
    let (labels, value, timestamp) = counter_case(
        "N072",
        "# TYPE test_counter counter
test_counter 50 # {user_id=\"user123\",request_id=\"req456\"} 49 1234567890.0
",
        "# TYPE test_counter counter
test_counter_total 50 # {user_id=\"user123\",request_id=\"req456\"} 49 1234567890.0
",
        "test_counter_total",
        50.0,
    )
    .await;
    assert_eq!(
        (labels, value, timestamp),
        (
            owned_labels(&[("user_id", "user123"), ("request_id", "req456")]),
            49.0,
            1_234_567_890_000
        )
    );
}

/// MAY attach exemplars to histogram buckets: sent on the bucket; the histogram is scraped
/// whole.
#[tokio::test]
async fn n073_exemplar_on_histogram() {
    const EXPOSITION: &str = "# TYPE request_duration histogram
request_duration_bucket{le=\"0.1\"} 10 # {trace_id=\"hist123\"} 0.05 1234567890.0
request_duration_bucket{le=\"+Inf\"} 100
request_duration_sum 50.0
request_duration_count 100
";
    let requests = scraped(exemplar_case("N073"), EXPOSITION, "request_duration_bucket").await;
    assert_no_histograms(&requests);
    let bucket = "request_duration_bucket";
    assert_eq!(steady(&requests, bucket, &[("le", "0.1")]), 10.0);
    assert_eq!(steady(&requests, bucket, &[("le", "+Inf")]), 100.0);
    assert_eq!(steady(&requests, "request_duration_sum", &[]), 50.0);
    assert_eq!(steady(&requests, "request_duration_count", &[]), 100.0);
    assert_eq!(
        v2_exemplars(&requests, bucket, &[("le", "0.1")]),
        vec![(
            owned_labels(&[("trace_id", "hist123")]),
            0.05,
            1_234_567_890_000
        )]
    );
}

/// MUST send exemplar label refs in pairs ([`v2_exemplars`] checks each exemplar's).
#[tokio::test]
async fn n074_exemplar_labels_even_length() {
    let (labels, _, _) = counter_case(
        "N074",
        "# TYPE test_counter counter
test_counter 100 # {trace_id=\"test\"} 99 1234567890.0
",
        "# TYPE test_counter counter
test_counter_total 100 # {trace_id=\"test\"} 99 1234567890.0
",
        "test_counter_total",
        100.0,
    )
    .await;
    assert_eq!(labels, owned_labels(&[("trace_id", "test")]));
}

/// MAY attach several exemplars to one series: each bucket's exemplar goes in its own series,
/// once. An OpenMetrics sample line carries one exemplar and each scrape is its own request,
/// so no series carries two (the row says not supported).
#[tokio::test]
async fn n075_multiple_exemplars_per_series() {
    const EXPOSITION: &str = "# TYPE test_histogram histogram
test_histogram_bucket{le=\"0.1\"} 10 # {trace_id=\"ex1\"} 0.05 1234567890.0
test_histogram_bucket{le=\"0.5\"} 50 # {trace_id=\"ex2\"} 0.3 1234567891.0
test_histogram_bucket{le=\"+Inf\"} 100
test_histogram_sum 50.0
test_histogram_count 100
";
    let requests = scraped(exemplar_case("N075"), EXPOSITION, "test_histogram_bucket").await;
    assert_no_histograms(&requests);
    let bucket = "test_histogram_bucket";
    assert_eq!(steady(&requests, bucket, &[("le", "0.1")]), 10.0);
    assert_eq!(steady(&requests, bucket, &[("le", "0.5")]), 50.0);
    assert_eq!(steady(&requests, bucket, &[("le", "+Inf")]), 100.0);
    assert_eq!(steady(&requests, "test_histogram_sum", &[]), 50.0);
    assert_eq!(steady(&requests, "test_histogram_count", &[]), 100.0);
    assert_eq!(
        v2_exemplars(&requests, bucket, &[("le", "0.1")]),
        vec![(
            owned_labels(&[("trace_id", "ex1")]),
            0.05,
            1_234_567_890_000
        )]
    );
    assert_eq!(
        v2_exemplars(&requests, bucket, &[("le", "0.5")]),
        vec![(owned_labels(&[("trace_id", "ex2")]), 0.3, 1_234_567_891_000)]
    );
    for req in super::inspect::v2_requests(&requests) {
        assert!(req.timeseries.iter().all(|ts| ts.exemplars.len() <= 1));
    }
}
