//! The 2026 suite's Remote Write 1.0 cases (`rw1_compat_test.go`, N149-N157). The suite
//! runs the sender in 2.0 only, so its 1.0 checks return early; and its receiver decodes a 1.0
//! body as an empty 2.0 message, so they would check nothing anyway. Ours run the agent with
//! `--remote-write-version 1` and read every request as the 1.0 message it is.
//!
//! "Nothing else was sent" (no native histograms, no start timestamps, no metadata, no
//! symbols) is checked on the bytes: a body whose length is exactly the encoding of the
//! `prometheus.WriteRequest` it decoded to holds no field that message lacks.

use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;
use prost::Message;

use super::sending::*;
use super::{assert_all_valid, passing, series_named, Run};

/// Every request of a 1.0 run serving `exposition`, once `name` arrived.
async fn requests(exposition: &str, name: &str) -> Vec<ReceivedRequest> {
    let run = Run::start(Protocol::V1, exposition, &[]).await;
    run.until_series(name).await;
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V1);
    requests
}

/// The body holds the 1.0 message's fields and nothing else, and is no 2.0 message.
fn assert_only_v1_fields(r: &ReceivedRequest) {
    let w = r.write_request.as_ref().expect("a 1.0 message");
    assert_eq!(w.encoded_len(), r.decoded_bytes, "fields 1.0 does not have");
    assert!(r.v2_request.is_none());
}

/// The labels of a series, as `name=value` in wire order.
fn labels(ts: &kubelet_push::remote_write::proto::v1::TimeSeries) -> Vec<String> {
    ts.labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect()
}

/// SHOULD send version `0.1.0` with 1.0: on every request.
#[tokio::test]
async fn n149_rw1_version_header() {
    assert_eq!(passing("N149"), [Protocol::V1]);
    for r in requests(EXPOSITION, "test_metric").await {
        assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    }
}

/// SHOULD use the bare protobuf Content-Type with 1.0 (no `proto` parameter).
#[tokio::test]
async fn n150_rw1_content_type() {
    assert_eq!(passing("N150"), [Protocol::V1]);
    for r in requests(EXPOSITION, "test_metric").await {
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("content-encoding"), Some("snappy"));
    }
}

/// MUST encode 1.0 samples right: `test_counter_total` is 100 with a millisecond timestamp
/// of the scrape, in every request.
#[tokio::test]
async fn n151_rw1_samples_encoding() {
    assert_eq!(passing("N151"), [Protocol::V1]);
    let requests = requests("test_counter_total 100\n", "test_counter_total").await;
    let now = kubelet_push::clock::now_ms();
    let series = series_named(&requests, "test_counter_total");
    assert!(!series.is_empty());
    for ts in &series {
        assert_eq!(ts.samples.len(), 1);
        assert_eq!(ts.samples[0].value, 100.0);
        let age = now - ts.samples[0].timestamp;
        // Milliseconds of this run, not seconds or nanoseconds.
        assert!((0..600_000).contains(&age), "{}", ts.samples[0].timestamp);
    }
    for r in &requests {
        assert_only_v1_fields(r);
    }
}

/// MUST encode 1.0 labels right. The suite's exposition has no final newline, which makes it
/// malformed: the scrape is refused as a whole (`up` 0, no `test_metric`), as Prometheus
/// does. With the newline, the series carries its label, `job`, `instance` and the agent's
/// `node`, sorted.
#[tokio::test]
async fn n152_rw1_labels_encoding() {
    assert_eq!(passing("N152"), [Protocol::V1]);
    let run = Run::start(Protocol::V1, "test_metric{label=\"value\"} 42", &[]).await;
    run.until_series("up").await;
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V1);
    assert!(series_named(&requests, "test_metric").is_empty());
    assert_eq!(super::steady_value(&requests, "up"), 0.0);

    let run = Run::start(Protocol::V1, "test_metric{label=\"value\"} 42\n", &[]).await;
    let instance = run.target.instance();
    run.until_series("test_metric").await;
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V1);
    for ts in series_named(&requests, "test_metric") {
        assert_eq!(
            labels(&ts),
            [
                "__name__=test_metric".to_owned(),
                format!("instance={instance}"),
                "job=test".to_owned(),
                "label=value".to_owned(),
                "node=conformance-node".to_owned(),
            ]
        );
        assert_eq!(ts.samples[0].value, 42.0);
    }
}

/// 1.0 has no native histograms: a classic histogram goes as its float series, and the body
/// holds nothing but 1.0's fields.
#[tokio::test]
async fn n153_rw1_no_native_histograms() {
    assert_eq!(passing("N153"), [Protocol::V1]);
    let exposition = "# TYPE test_histogram histogram\n\
                      test_histogram_count 100\n\
                      test_histogram_sum 250.0\n\
                      test_histogram_bucket{le=\"+Inf\"} 100\n";
    let requests = requests(exposition, "test_histogram_bucket").await;
    assert_eq!(
        super::steady_value(&requests, "test_histogram_count"),
        100.0
    );
    assert_eq!(super::steady_value(&requests, "test_histogram_sum"), 250.0);
    assert_eq!(
        super::steady_value(&requests, "test_histogram_bucket"),
        100.0
    );
    for ts in series_named(&requests, "test_histogram_bucket") {
        assert!(labels(&ts).contains(&"le=+Inf".to_owned()), "{ts:?}");
    }
    for r in &requests {
        assert_only_v1_fields(r);
    }
}

/// 1.0 has no start timestamp: a counter's samples go as value and timestamp only.
#[tokio::test]
async fn n154_rw1_no_start_timestamp() {
    assert_eq!(passing("N154"), [Protocol::V1]);
    let exposition = "# TYPE test_counter counter\ntest_counter_total 100\n";
    let requests = requests(exposition, "test_counter_total").await;
    assert_eq!(super::steady_value(&requests, "test_counter_total"), 100.0);
    for r in &requests {
        assert_only_v1_fields(r);
    }
}

/// MAY send metadata separately with 1.0: ours sends none in 1.0 (type, help and unit go
/// with Remote Write 2.0); the 1.0 requests hold the samples and nothing else.
#[tokio::test]
async fn n155_rw1_metadata_handling() {
    let exposition = "# HELP test_metric Test metric description\n\
                      # TYPE test_metric counter\n\
                      test_metric 42\n";
    let requests = requests(exposition, "test_metric").await;
    assert_eq!(super::steady_value(&requests, "test_metric"), 42.0);
    for r in &requests {
        assert_only_v1_fields(r);
    }
}

/// 1.0 has no symbols table: each series spells its label names and values out.
#[tokio::test]
async fn n156_rw1_symbol_table_not_used() {
    assert_eq!(passing("N156"), [Protocol::V1]);
    let exposition = "http_requests{method=\"GET\",status=\"200\"} 100\n\
                      http_requests{method=\"POST\",status=\"200\"} 50\n";
    let requests = requests(exposition, "http_requests").await;
    let series = series_named(&requests, "http_requests");
    assert!(series
        .iter()
        .any(|ts| labels(ts).contains(&"method=GET".to_owned())));
    assert!(series
        .iter()
        .any(|ts| labels(ts).contains(&"method=POST".to_owned())));
    for ts in &series {
        assert!(labels(ts).contains(&"status=200".to_owned()));
    }
    for r in &requests {
        assert_only_v1_fields(r);
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    }
}

/// SHOULD support a 1.0 configuration: `--remote-write-version 1` and `2` both work, and
/// every request says its version (`0.1.0`, `2.0.0`).
#[tokio::test]
async fn n157_rw1_configuration() {
    for protocol in passing("N157") {
        let run = Run::start(protocol, EXPOSITION, &[]).await;
        run.until_series("test_metric").await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let want = match protocol {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        };
        for r in &requests {
            assert_eq!(r.header("x-prometheus-remote-write-version"), Some(want));
        }
    }
}
