//! The 2026 suite's combined cases (`combined_test.go`, N141-N148), all about Remote Write
//! 2.0: several families, labels and metadata in one payload. The suite looks at the last
//! request only; we look at every accepted request: each family with its exact values and, in
//! 2.0, its TYPE and HELP, and a scrape's series together in one request.

use kubelet_push::remote_write::proto::v2::metadata::MetricType;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::cases::row;
use super::inspect::{
    accepted, all_series, assert_no_histograms, assert_samples_only, label, owned_labels, refused,
    requests_with, scraped, steady, v2_exemplars, v2_metadata, v2_requests, v2_series,
};
use super::{passing, Verdict};

/// Every 2.0 series named `name` is typed `kind` with HELP `help` (none: `""`).
fn assert_metadata(requests: &[ReceivedRequest], name: &str, kind: MetricType, help: &str) {
    let found = v2_series(requests, name);
    assert!(!found.is_empty(), "no 2.0 series {name}");
    for (req, ts) in found {
        let (k, h, u) = v2_metadata(req, ts);
        assert_eq!((k, h, u), (kind, help, ""), "{name}");
    }
}

/// Every accepted request carrying `name` carries exactly `n` series whose name starts with
/// `prefix`: a scrape's series travel together.
fn assert_together(requests: &[ReceivedRequest], name: &str, prefix: &str, n: usize) {
    let carrying = requests_with(requests, name);
    assert!(carrying.len() >= 2, "{carrying:?}");
    for w in carrying {
        let found = w
            .timeseries
            .iter()
            .filter(|ts| crate::support::name(ts).starts_with(prefix))
            .count();
        assert_eq!(found, n, "{prefix}* in one request: {w:?}");
    }
}

/// SHOULD send samples with their metadata: both series, each typed a counter with its HELP.
#[tokio::test]
async fn n141_samples_with_metadata() {
    const EXPOSITION: &str = "# HELP http_requests_total Total HTTP requests received
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",status=\"200\"} 1000
http_requests_total{method=\"POST\",status=\"201\"} 500
";
    for protocol in passing("N141") {
        let requests = scraped(protocol, EXPOSITION, "http_requests_total").await;
        let name = "http_requests_total";
        assert_eq!(
            steady(&requests, name, &[("method", "GET"), ("status", "200")]),
            1000.0
        );
        assert_eq!(
            steady(&requests, name, &[("method", "POST"), ("status", "201")]),
            500.0
        );
        assert_metadata(
            &requests,
            name,
            MetricType::Counter,
            "Total HTTP requests received",
        );
        assert_together(&requests, name, name, 2);
    }
}

/// MAY send samples with exemplars. The suite's exposition (an exemplar on the counter sample
/// `request_count`, which OpenMetrics names `request_count_total`) is refused whole, as for
/// N068-N074 (Prometheus takes it); named `_total`, the sample and its exemplar go out.
#[tokio::test]
async fn n142_samples_with_exemplars() {
    assert!(matches!(row("N142").v2, Verdict::Pass));
    let protocol = kubelet_push::remote_write::Protocol::V2;
    refused(
        protocol,
        "# TYPE request_count counter
request_count 1000 # {trace_id=\"abc123\",span_id=\"def456\"} 999 1234567890.123
",
    )
    .await;
    let name = "request_count_total";
    let requests = scraped(
        protocol,
        "# TYPE request_count counter
request_count_total 1000 # {trace_id=\"abc123\",span_id=\"def456\"} 999 1234567890.123
",
        name,
    )
    .await;
    assert_no_histograms(&requests);
    assert_eq!(steady(&requests, name, &[]), 1000.0);
    assert_eq!(
        v2_exemplars(&requests, name, &[]),
        vec![(
            owned_labels(&[("trace_id", "abc123"), ("span_id", "def456")]),
            999.0,
            1_234_567_890_123
        )]
    );
}

/// MAY send a histogram with metadata and exemplars: the metadata goes with every part
/// (typed a histogram, with its HELP), and the bucket's exemplar goes with the bucket.
#[tokio::test]
async fn n143_histogram_with_metadata_and_exemplars() {
    const EXPOSITION: &str = "# HELP request_duration_seconds Request duration in seconds
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{le=\"0.1\"} 100 # {trace_id=\"hist123\"} 0.05 1234567890.0
request_duration_seconds_bucket{le=\"0.5\"} 250
request_duration_seconds_bucket{le=\"1.0\"} 500
request_duration_seconds_bucket{le=\"+Inf\"} 1000
request_duration_seconds_sum 450.5
request_duration_seconds_count 1000
";
    assert!(matches!(row("N143").v2, Verdict::Pass));
    let protocol = kubelet_push::remote_write::Protocol::V2;
    let requests = scraped(protocol, EXPOSITION, "request_duration_seconds_count").await;
    assert_no_histograms(&requests);
    let base = "request_duration_seconds";
    assert_eq!(
        v2_exemplars(&requests, &format!("{base}_bucket"), &[("le", "0.1")]),
        vec![(
            owned_labels(&[("trace_id", "hist123")]),
            0.05,
            1_234_567_890_000
        )]
    );
    for (le, value) in [
        ("0.1", 100.0),
        ("0.5", 250.0),
        ("1.0", 500.0),
        ("+Inf", 1000.0),
    ] {
        assert_eq!(
            steady(&requests, &format!("{base}_bucket"), &[("le", le)]),
            value
        );
    }
    assert_eq!(steady(&requests, &format!("{base}_sum"), &[]), 450.5);
    assert_eq!(steady(&requests, &format!("{base}_count"), &[]), 1000.0);
    for part in ["_bucket", "_sum", "_count"] {
        assert_metadata(
            &requests,
            &format!("{base}{part}"),
            MetricType::Histogram,
            "Request duration in seconds",
        );
    }
    assert_together(&requests, &format!("{base}_count"), base, 6);
}

/// MUST handle several types in one request: the counter, the gauge and the histogram, each
/// with its value and type, in one request per scrape.
#[tokio::test]
async fn n144_multiple_metric_types() {
    const EXPOSITION: &str = "# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 123.45

# TYPE process_memory_bytes gauge
process_memory_bytes 1048576

# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{le=\"+Inf\"} 100
request_duration_seconds_sum 50.0
request_duration_seconds_count 100
";
    for protocol in passing("N144") {
        let requests = scraped(protocol, EXPOSITION, "process_cpu_seconds_total").await;
        assert_eq!(steady(&requests, "process_cpu_seconds_total", &[]), 123.45);
        assert_eq!(steady(&requests, "process_memory_bytes", &[]), 1048576.0);
        let bucket = "request_duration_seconds_bucket";
        assert_eq!(steady(&requests, bucket, &[("le", "+Inf")]), 100.0);
        assert_eq!(steady(&requests, "request_duration_seconds_sum", &[]), 50.0);
        assert_eq!(
            steady(&requests, "request_duration_seconds_count", &[]),
            100.0
        );
        assert_metadata(
            &requests,
            "process_cpu_seconds_total",
            MetricType::Counter,
            "",
        );
        assert_metadata(&requests, "process_memory_bytes", MetricType::Gauge, "");
        assert_metadata(
            &requests,
            "request_duration_seconds_count",
            MetricType::Histogram,
            "",
        );
        for w in requests_with(&requests, "process_cpu_seconds_total") {
            for name in [
                "process_memory_bytes",
                "request_duration_seconds_bucket",
                "request_duration_seconds_sum",
                "request_duration_seconds_count",
            ] {
                assert!(
                    w.timeseries
                        .iter()
                        .any(|ts| crate::support::name(ts) == name),
                    "{name} not with the counter: {w:?}"
                );
            }
        }
    }
}

/// RECOMMENDED to handle many label values: the six series with their labels and values,
/// in one request per scrape, their repeated strings once in the symbols.
#[tokio::test]
async fn n145_high_cardinality_labels() {
    const EXPOSITION: &str = "# TYPE http_requests_total counter
http_requests_total{method=\"GET\",path=\"/api/v1/users\",status=\"200\"} 100
http_requests_total{method=\"GET\",path=\"/api/v1/posts\",status=\"200\"} 200
http_requests_total{method=\"POST\",path=\"/api/v1/users\",status=\"201\"} 50
http_requests_total{method=\"POST\",path=\"/api/v1/posts\",status=\"201\"} 75
http_requests_total{method=\"GET\",path=\"/api/v1/comments\",status=\"200\"} 300
http_requests_total{method=\"DELETE\",path=\"/api/v1/users\",status=\"204\"} 10
";
    for protocol in passing("N145") {
        let name = "http_requests_total";
        let requests = scraped(protocol, EXPOSITION, name).await;
        for (method, path, status, value) in [
            ("GET", "/api/v1/users", "200", 100.0),
            ("GET", "/api/v1/posts", "200", 200.0),
            ("POST", "/api/v1/users", "201", 50.0),
            ("POST", "/api/v1/posts", "201", 75.0),
            ("GET", "/api/v1/comments", "200", 300.0),
            ("DELETE", "/api/v1/users", "204", 10.0),
        ] {
            let want = [("method", method), ("path", path), ("status", status)];
            assert_eq!(steady(&requests, name, &want), value, "{want:?}");
        }
        assert_together(&requests, name, name, 6);
        for req in v2_requests(&requests) {
            let mut symbols = req.symbols.clone();
            symbols.sort();
            let before = symbols.len();
            symbols.dedup();
            assert_eq!(
                symbols.len(),
                before,
                "a symbol repeated: {:?}",
                req.symbols
            );
        }
    }
}

/// MUST send a family's parts together: every request with any part of the histogram has
/// all six (four buckets, sum, count) with their values.
#[tokio::test]
async fn n146_complete_metric_family() {
    const EXPOSITION: &str = "# HELP api_request_duration_seconds API request duration
# TYPE api_request_duration_seconds histogram
api_request_duration_seconds_bucket{le=\"0.1\"} 50
api_request_duration_seconds_bucket{le=\"0.5\"} 150
api_request_duration_seconds_bucket{le=\"1.0\"} 250
api_request_duration_seconds_bucket{le=\"+Inf\"} 300
api_request_duration_seconds_sum 200.5
api_request_duration_seconds_count 300
";
    for protocol in passing("N146") {
        let base = "api_request_duration_seconds";
        let requests = scraped(protocol, EXPOSITION, &format!("{base}_count")).await;
        let bucket = format!("{base}_bucket");
        for (le, value) in [
            ("0.1", 50.0),
            ("0.5", 150.0),
            ("1.0", 250.0),
            ("+Inf", 300.0),
        ] {
            assert_eq!(steady(&requests, &bucket, &[("le", le)]), value);
        }
        assert_eq!(steady(&requests, &format!("{base}_sum"), &[]), 200.5);
        assert_eq!(steady(&requests, &format!("{base}_count"), &[]), 300.0);
        for w in accepted(&requests) {
            let parts = w
                .timeseries
                .iter()
                .filter(|ts| crate::support::name(ts).starts_with(base))
                .count();
            assert!(parts == 0 || parts == 6, "{parts} of 6 parts: {w:?}");
        }
        assert_together(&requests, &bucket, base, 6);
        assert_metadata(
            &requests,
            &bucket,
            MetricType::Histogram,
            "API request duration",
        );
    }
}

/// SHOULD encode many labels with metadata: the three series with all five labels, their
/// values, typed a counter with their HELP.
#[tokio::test]
async fn n147_mixed_labels_and_metadata() {
    const EXPOSITION: &str = "# HELP api_calls_total Total API calls with detailed labels
# TYPE api_calls_total counter
api_calls_total{service=\"auth\",method=\"POST\",endpoint=\"/login\",region=\"us-east\",status=\"200\"} 1000
api_calls_total{service=\"auth\",method=\"POST\",endpoint=\"/logout\",region=\"us-east\",status=\"200\"} 500
api_calls_total{service=\"users\",method=\"GET\",endpoint=\"/profile\",region=\"eu-west\",status=\"200\"} 2000
";
    for protocol in passing("N147") {
        let name = "api_calls_total";
        let requests = scraped(protocol, EXPOSITION, name).await;
        for (service, method, endpoint, region, value) in [
            ("auth", "POST", "/login", "us-east", 1000.0),
            ("auth", "POST", "/logout", "us-east", 500.0),
            ("users", "GET", "/profile", "eu-west", 2000.0),
        ] {
            let want = [
                ("service", service),
                ("method", method),
                ("endpoint", endpoint),
                ("region", region),
                ("status", "200"),
            ];
            assert_eq!(steady(&requests, name, &want), value, "{want:?}");
        }
        assert_together(&requests, name, name, 3);
        assert_metadata(
            &requests,
            name,
            MetricType::Counter,
            "Total API calls with detailed labels",
        );
    }
}

/// MUST handle a realistic payload: every series named, none mixing samples and histograms,
/// all seven names with their values; the exposition's own `up 1` and the agent's `up` are
/// one series, sent once per scrape.
#[tokio::test]
async fn n148_real_world_scenario() {
    const EXPOSITION: &str = "# Realistic scrape output with multiple metric types
# TYPE up gauge
up 1

# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 45.67

# TYPE go_memstats_alloc_bytes gauge
go_memstats_alloc_bytes 2097152

# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"0.05\"} 100
http_request_duration_seconds_bucket{le=\"0.1\"} 200
http_request_duration_seconds_bucket{le=\"0.5\"} 450
http_request_duration_seconds_bucket{le=\"1.0\"} 480
http_request_duration_seconds_bucket{le=\"+Inf\"} 500
http_request_duration_seconds_sum 125.5
http_request_duration_seconds_count 500

# TYPE http_requests_total counter
http_requests_total{method=\"GET\",code=\"200\"} 5000
http_requests_total{method=\"POST\",code=\"201\"} 1000
";
    for protocol in passing("N148") {
        let requests = scraped(protocol, EXPOSITION, "go_memstats_alloc_bytes").await;
        assert_samples_only(&requests);
        for ts in all_series(&requests) {
            assert!(!crate::support::name(ts).is_empty(), "{ts:?}");
        }
        assert_eq!(steady(&requests, "up", &[("job", "test")]), 1.0);
        assert_eq!(steady(&requests, "process_cpu_seconds_total", &[]), 45.67);
        assert_eq!(steady(&requests, "go_memstats_alloc_bytes", &[]), 2097152.0);
        let bucket = "http_request_duration_seconds_bucket";
        for (le, value) in [
            ("0.05", 100.0),
            ("0.1", 200.0),
            ("0.5", 450.0),
            ("1.0", 480.0),
            ("+Inf", 500.0),
        ] {
            assert_eq!(steady(&requests, bucket, &[("le", le)]), value);
        }
        assert_eq!(
            steady(&requests, "http_request_duration_seconds_sum", &[]),
            125.5
        );
        assert_eq!(
            steady(&requests, "http_request_duration_seconds_count", &[]),
            500.0
        );
        let total = "http_requests_total";
        assert_eq!(
            steady(&requests, total, &[("method", "GET"), ("code", "200")]),
            5000.0
        );
        assert_eq!(
            steady(&requests, total, &[("method", "POST"), ("code", "201")]),
            1000.0
        );
        for w in requests_with(&requests, "go_memstats_alloc_bytes") {
            let ups: Vec<_> = w
                .timeseries
                .iter()
                .filter(|ts| crate::support::name(ts) == "up")
                .collect();
            assert_eq!(ups.len(), 1, "{ups:?}");
            assert_eq!(ups[0].samples.len(), 1, "{ups:?}");
            assert_eq!(
                label(ups[0], "instance"),
                label(&w.timeseries[0], "instance")
            );
        }
    }
}
