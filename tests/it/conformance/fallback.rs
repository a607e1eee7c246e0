//! The 2026 suite's fallback cases (`fallback_test.go`, N097-N102). The suite's receiver is
//! meant to answer the first Remote Write 2.0 request with 415 and every later one with 204,
//! but a bug (inventory G.1) means it never sends the 415; we do what it means: 415 (with the
//! suite's body) to the first 2.0 request, then 204 with the suite's fixed written counts
//! (`Samples-Written: 1`) to everything, and check the downgrade, the 1.0 headers, that the
//! refused samples are sent again and nothing is lost, and that the destination stays on 1.0.
//!
//! The agent starts with `--remote-write-version 2` (2.0 first, 1.0 for good after a 415);
//! the checks read the wire, not the flag, so they hold for any setting that starts with 2.0.

use kubelet_push::remote_write::Protocol;
use kubelet_push::telemetry::DestinationMetrics;
use kubelet_push::testkit::receiver::{ReceivedRequest, Response};

use super::sending::*;
use super::{assert_all_valid, passing};
use crate::support::Logs;
use std::sync::Arc;

/// The run of every fallback case: every request (at least ten), the destination's metrics
/// and the log.
async fn fallen_back() -> (Vec<ReceivedRequest>, Arc<DestinationMetrics>, String) {
    let (logs, _guard) = Logs::capture();
    let run = start_at_interval(Protocol::V2, &[], |rx| {
        rx.push_response(
            Response::status(415).with_body("RW 2.0 not supported, please use RW 1.0"),
        );
        rx.answer_always(Some(written_one(204)));
    })
    .await;
    run.until("ten requests", |reqs| reqs.len() >= 10).await;
    let dest = run.agent.dest();
    let requests = run.stop().await;
    for r in &requests {
        assert_eq!(r.rejection, None, "{r:?}");
    }
    (requests, dest, logs.text())
}

fn header<'a>(r: &'a ReceivedRequest, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", r.headers))
}

/// SHOULD fall back to 1.0 on 415: the first request is 2.0 and refused, the next carries the
/// same samples as 1.0 and is taken; one log line says so.
#[tokio::test]
async fn n097_fallback_on_415_unsupported_media_type() {
    assert_eq!(passing("N097"), [Protocol::V2]);
    let (requests, dest, logs) = fallen_back().await;
    assert_eq!(requests[0].protocol, Protocol::V2);
    assert_eq!(requests[0].status, 415);
    assert_eq!(requests[1].protocol, Protocol::V1);
    assert!(requests[1].accepted());
    assert_eq!(samples(&requests[1]), samples(&requests[0]));
    assert_eq!(dest.remote_write_protocol_now(), Some(Protocol::V1));
    assert_eq!(lines_with(&logs, FALLBACK_LINE), 1, "{logs}");
    let line = logs.lines().find(|l| l.contains(FALLBACK_LINE)).unwrap();
    assert!(line.contains("status=415"), "{line}");
}

/// SHOULD retry with version 0.1.0 after the 415: the refused request is sent again at once
/// (no backoff for a protocol switch), as 1.0.
#[tokio::test]
async fn n098_retry_with_different_version() {
    assert_eq!(passing("N098"), [Protocol::V2]);
    let (requests, dest, _) = fallen_back().await;
    assert_eq!(
        header(&requests[0], "x-prometheus-remote-write-version"),
        "2.0.0"
    );
    assert_eq!(
        header(&requests[1], "x-prometheus-remote-write-version"),
        "0.1.0"
    );
    assert_eq!(samples(&requests[1]), samples(&requests[0]));
    // Not a retry of a failure: nothing was counted as one.
    assert_eq!(dest.retries.get(), 0);
}

/// MUST change Content-Type on fallback: from the 2.0 one to the bare 1.0 one, with a
/// `prometheus.WriteRequest` body the receiver validated as 1.0.
#[tokio::test]
async fn n099_fallback_header_changes() {
    assert_eq!(passing("N099"), [Protocol::V2]);
    let (requests, _, _) = fallen_back().await;
    assert_eq!(
        header(&requests[0], "content-type"),
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    for r in &requests[1..] {
        assert_eq!(header(r, "content-type"), "application/x-protobuf");
        assert_eq!(header(r, "content-encoding"), "snappy");
        assert_eq!(r.protocol, Protocol::V1);
        assert!(r.v2_request.is_none());
        assert!(r.write_request.is_some());
        assert_eq!(r.rejection, None);
    }
}

/// SHOULD take the success after the fallback: every 1.0 request is accepted once (none sent
/// again), and nothing is lost, the refused 2.0 request's samples included. The fixed
/// `Samples-Written: 1` on the 204s means nothing for a 1.0 request.
#[tokio::test]
async fn n100_accept_success_after_fallback() {
    assert_eq!(passing("N100"), [Protocol::V2]);
    let (requests, dest, logs) = fallen_back().await;
    assert!(requests[1..].iter().all(|r| r.accepted()));
    assert_none_sent_twice(&requests[1..]);
    assert_nothing_lost(&dest);
    assert_eq!(lines_with(&logs, PARTIAL_LINE), 0, "{logs}");
    assert_eq!(lines_with(&logs, FAILED_LINE), 0, "{logs}");
}

/// SHOULD remember the fallback: every request after the first is 1.0, for as long as the
/// agent runs (ten requests here; the suite allows flapping back, we do not).
#[tokio::test]
async fn n101_persistent_fallback_choice() {
    assert_eq!(passing("N101"), [Protocol::V2]);
    let (requests, dest, _) = fallen_back().await;
    assert!(requests.len() >= 10);
    let versions: Vec<&str> = requests
        .iter()
        .map(|r| header(r, "x-prometheus-remote-write-version"))
        .collect();
    assert_eq!(versions[0], "2.0.0");
    assert!(versions[1..].iter().all(|v| *v == "0.1.0"), "{versions:?}");
    assert_eq!(dest.remote_write_protocol_now(), Some(Protocol::V1));
}

/// MUST NOT fall back on a 2xx: every request stays 2.0 although each 204 says only one
/// sample was written (the suite's fixed count). The rest of each request is counted as
/// refused by the receiver, not retried, and logged once.
#[tokio::test]
async fn n102_no_fallback_on_2xx() {
    for protocol in passing("N102") {
        let (logs, _guard) = Logs::capture();
        let run =
            start_at_interval(protocol, &[], |rx| rx.answer_always(Some(written_one(204)))).await;
        run.until("six requests", |reqs| reqs.len() >= 6).await;
        let dest = run.agent.dest();
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        for r in &requests {
            assert_eq!(header(r, "x-prometheus-remote-write-version"), "2.0.0");
            assert!(r.accepted());
        }
        assert_none_sent_twice(&requests);
        assert_eq!(dest.retries.get(), 0);
        assert_eq!(dest.remote_write_protocol_now(), Some(Protocol::V2));
        let held: u64 = requests.iter().map(sample_count).sum();
        let n = requests.len() as u64;
        assert_eq!(dest.samples_sent.get(), n);
        assert_eq!(
            dest.dropped_total(kubelet_push::telemetry::DropReason::ReceiverRefused),
            held - n
        );
        let text = logs.text();
        assert_eq!(lines_with(&text, PARTIAL_LINE), 1, "{text}");
        assert_eq!(lines_with(&text, FALLBACK_LINE), 0, "{text}");
    }
}
