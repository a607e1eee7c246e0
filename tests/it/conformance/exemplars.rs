//! The 2026 suite's exemplar cases (`exemplars_test.go`, N067-N075): every exposition carries
//! an exemplar, so the target serves it as OpenMetrics. The agent reads exemplars, checks
//! them and leaves them out: Remote Write 2.0 exemplars are not sent, and each row says not
//! supported. What the tests check is what the agent does instead:
//!
//! - an exposition that is valid OpenMetrics (exemplars on histogram buckets: N067, N073,
//!   N075) is scraped whole and its samples are sent, with their values, without exemplars;
//! - the others put an exemplar on a counter sample named without `_total` (`test_counter 100
//!   # {...}` under `# TYPE test_counter counter`), which OpenMetrics does not allow (a
//!   counter's samples are `<name>_total` and `<name>_created`, and only those and buckets
//!   may carry exemplars). The agent's parser refuses such an exposition as a whole (`up` 0,
//!   nothing of it sent); Prometheus's parser does not check sample names and takes it.

use kubelet_push::remote_write::Protocol;

use super::cases::row;
use super::inspect::{assert_samples_only, refused, scraped, steady};
use super::Verdict;

/// The version an exemplar case is checked in: 2.0 (1.0 has no exemplars), where its row says
/// not supported.
fn exemplar_case(id: &str) -> Protocol {
    let r = row(id);
    assert!(matches!(r.v1, Verdict::NotApplicable(_)), "{id}");
    assert!(matches!(r.v2, Verdict::NotSupported(_)), "{id}");
    Protocol::V2
}

/// MAY attach an exemplar with `trace_id`: not sent; the histogram whose bucket carried it is
/// scraped whole and sent without it.
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
    assert_samples_only(&requests);
    let name = "http_request_duration_seconds";
    let bucket = format!("{name}_bucket");
    assert_eq!(steady(&requests, &bucket, &[("le", "0.1")]), 50.0);
    assert_eq!(steady(&requests, &bucket, &[("le", "+Inf")]), 100.0);
    assert_eq!(steady(&requests, &format!("{name}_sum"), &[]), 10.5);
    assert_eq!(steady(&requests, &format!("{name}_count"), &[]), 100.0);
    assert_eq!(steady(&requests, "up", &[]), 1.0);
}

/// An exposition whose counter sample lacks `_total` and carries an exemplar: refused whole.
async fn counter_without_total(id: &str, exposition: &str) {
    refused(exemplar_case(id), exposition).await;
}

/// MAY attach `span_id`: not sent; this exposition (`http_requests_total` typed as the
/// family `http_requests_total`, so its sample lacks the family's `_total`) is refused.
#[tokio::test]
async fn n068_exemplar_with_span_id() {
    counter_without_total(
        "N068",
        "# TYPE http_requests_total counter
http_requests_total 1000 # {trace_id=\"abc123\",span_id=\"def456\"} 999 1234567890.5
",
    )
    .await;
}

/// MUST give an exemplar a valid value if it sends one: none is sent; refused exposition.
#[tokio::test]
async fn n069_exemplar_value_valid() {
    counter_without_total(
        "N069",
        "# TYPE test_counter counter
test_counter 100 # {trace_id=\"test123\"} 99.5 1234567890.0
",
    )
    .await;
}

/// MUST give an exemplar a valid timestamp if it sends one: none is sent; refused exposition.
#[tokio::test]
async fn n070_exemplar_timestamp_valid() {
    counter_without_total(
        "N070",
        "# TYPE test_counter counter
test_counter 100 # {trace_id=\"test123\"} 99 1234567890.123
",
    )
    .await;
}

/// MUST give exemplar label refs inside the symbols: none is sent; refused exposition.
#[tokio::test]
async fn n071_exemplar_labels_valid_refs() {
    counter_without_total(
        "N071",
        "# TYPE test_metric counter
test_metric 100 # {trace_id=\"xyz\"} 99 1234567890.0
",
    )
    .await;
}

/// MAY attach custom exemplar labels: none is sent; refused exposition.
#[tokio::test]
async fn n072_exemplar_custom_labels() {
    counter_without_total(
        "N072",
        "# TYPE test_counter counter
test_counter 50 # {user_id=\"user123\",request_id=\"req456\"} 49 1234567890.0
",
    )
    .await;
}

/// MAY attach exemplars to histogram buckets: not sent; the histogram is scraped whole.
#[tokio::test]
async fn n073_exemplar_on_histogram() {
    const EXPOSITION: &str = "# TYPE request_duration histogram
request_duration_bucket{le=\"0.1\"} 10 # {trace_id=\"hist123\"} 0.05 1234567890.0
request_duration_bucket{le=\"+Inf\"} 100
request_duration_sum 50.0
request_duration_count 100
";
    let requests = scraped(exemplar_case("N073"), EXPOSITION, "request_duration_bucket").await;
    assert_samples_only(&requests);
    let bucket = "request_duration_bucket";
    assert_eq!(steady(&requests, bucket, &[("le", "0.1")]), 10.0);
    assert_eq!(steady(&requests, bucket, &[("le", "+Inf")]), 100.0);
    assert_eq!(steady(&requests, "request_duration_sum", &[]), 50.0);
    assert_eq!(steady(&requests, "request_duration_count", &[]), 100.0);
}

/// MUST send exemplar label refs in pairs: none is sent; refused exposition.
#[tokio::test]
async fn n074_exemplar_labels_even_length() {
    counter_without_total(
        "N074",
        "# TYPE test_counter counter
test_counter 100 # {trace_id=\"test\"} 99 1234567890.0
",
    )
    .await;
}

/// MAY attach several exemplars to one series: none is sent; the histogram with two
/// exemplars is scraped whole.
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
    assert_samples_only(&requests);
    let bucket = "test_histogram_bucket";
    assert_eq!(steady(&requests, bucket, &[("le", "0.1")]), 10.0);
    assert_eq!(steady(&requests, bucket, &[("le", "0.5")]), 50.0);
    assert_eq!(steady(&requests, bucket, &[("le", "+Inf")]), 100.0);
    assert_eq!(steady(&requests, "test_histogram_sum", &[]), 50.0);
    assert_eq!(steady(&requests, "test_histogram_count", &[]), 100.0);
}
