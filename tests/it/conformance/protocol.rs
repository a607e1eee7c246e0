//! The 2026 suite's protocol cases (`protocol_test.go`, N001-N009): the headers and body
//! format of every request. The suite checks the last request; we check every request.

use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::{assert_all_valid, passing, Run};

const EXPOSITION: &str = "test_metric 42\n";

/// Every request the agent sends for `id`'s versions, after `test_metric` arrived.
async fn requests(protocol: Protocol) -> Vec<ReceivedRequest> {
    let run = Run::start(protocol, EXPOSITION, &[]).await;
    run.until_series("test_metric").await;
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    requests
}

fn header<'a>(r: &'a ReceivedRequest, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
}

/// Runs `check` on every request of each version `id` passes in.
async fn each_request(id: &str, check: impl Fn(Protocol, &ReceivedRequest)) {
    let versions = passing(id);
    assert!(!versions.is_empty(), "{id} passes in no version");
    for protocol in versions {
        for r in requests(protocol).await {
            check(protocol, &r);
        }
    }
}

/// MUST use `Content-Type: application/x-protobuf` (2.0 adds its `proto` parameter).
#[tokio::test]
async fn n001_content_type_protobuf() {
    each_request("N001", |protocol, r| {
        let ct = header(r, "content-type");
        match protocol {
            Protocol::V1 => assert_eq!(ct, "application/x-protobuf"),
            Protocol::V2 => assert!(ct.starts_with("application/x-protobuf;"), "{ct}"),
        }
    })
    .await;
}

/// SHOULD name the 2.0 message in Content-Type's `proto` parameter.
#[tokio::test]
async fn n002_content_type_with_proto_param() {
    each_request("N002", |_, r| {
        assert_eq!(
            header(r, "content-type"),
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
        );
    })
    .await;
}

/// MUST use `Content-Encoding: snappy`, exactly.
#[tokio::test]
async fn n003_content_encoding_snappy() {
    each_request("N003", |_, r| {
        assert_eq!(header(r, "content-encoding"), "snappy")
    })
    .await;
}

/// MUST send `X-Prometheus-Remote-Write-Version` (1.0's value is `0.1.0`).
#[tokio::test]
async fn n004_version_header_present() {
    each_request("N004", |protocol, r| {
        let v = header(r, "x-prometheus-remote-write-version");
        match protocol {
            Protocol::V1 => assert_eq!(v, "0.1.0"),
            Protocol::V2 => assert!(!v.is_empty()),
        }
    })
    .await;
}

/// SHOULD send version 2.0.x with a 2.0 body.
#[tokio::test]
async fn n005_version_header_value() {
    each_request("N005", |_, r| {
        let v = header(r, "x-prometheus-remote-write-version");
        assert!(v.starts_with("2.0."), "{v}");
    })
    .await;
}

/// MUST send a `User-Agent` (RFC 9110); ours names the agent and its version.
#[tokio::test]
async fn n006_user_agent_present() {
    each_request("N006", |_, r| {
        let ua = header(r, "user-agent");
        assert!(ua.starts_with("kubelet-push/"), "{ua}");
    })
    .await;
}

/// MUST use snappy's block format, not the framed one: the body is not empty, does not start
/// with the framed stream's identifier, and block-decodes (the receiver decoded it).
#[tokio::test]
async fn n007_snappy_block_format() {
    each_request("N007", |_, r| {
        assert!(r.compressed_bytes > 0);
        assert!(r.write_request.is_some(), "{r:?}");
        assert_eq!(r.rejection, None);
    })
    .await;
}

/// MUST send a message that parses as `io.prometheus.write.v2.Request`, with its symbols
/// table (starting with the empty string) and `test_metric` in it.
#[tokio::test]
async fn n008_protobuf_parseable() {
    each_request("N008", |_, r| {
        let v2 = r.v2_request.as_ref().expect("a 2.0 message");
        assert_eq!(v2.symbols.first().map(String::as_str), Some(""));
        assert!(v2.symbols.len() > 1, "{:?}", v2.symbols);
        assert!(!v2.timeseries.is_empty());
    })
    .await;
}

/// MUST use POST: the receiver refuses any other method (405-like rejection), and every
/// request was accepted. (The suite's own check cannot fail: it never looks at the method.)
#[tokio::test]
async fn n009_http_method() {
    each_request("N009", |_, r| {
        assert!(r.accepted(), "{r:?}");
    })
    .await;
}
