//! The 2026 suite's response cases (`response_test.go`, N103-N111): what the agent makes of
//! the receiver's answer. The suite checks only that a request arrived; we check what the
//! answer did: a 2xx is success (not sent again, no fallback), the 2.0 written counts are
//! taken as said (fewer than sent: the rest counted as refused, not retried), an error answer
//! drops the request once and is logged as the receiver wrote it, and a large one costs a
//! bounded read.

use kubelet_push::remote_write::Protocol;
use kubelet_push::telemetry::DropReason;
use kubelet_push::testkit::receiver::Response;

use super::retry::not_retried;
use super::sending::*;
use super::{assert_all_valid, passing, Run};
use crate::support::Logs;

/// Every request answered `answer` (a 2xx): each taken as success, once: no request sent
/// again, no retry, no fallback. For 2.0 the written count in the answer is what counts as
/// sent (`written` per request), the rest of each request as refused by the receiver, logged
/// once; for 1.0 every sample counts as sent.
async fn success(protocol: Protocol, exposition: &str, answer: Response, written: Option<u64>) {
    let (logs, _guard) = Logs::capture();
    let run = start(protocol, exposition, &[], super::INTERVAL, |rx| {
        rx.answer_always(Some(answer))
    })
    .await;
    run.until("five requests", |reqs| reqs.len() >= 5).await;
    let dest = run.agent.dest();
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    assert!(requests.iter().all(|r| r.accepted()));
    assert_none_sent_twice(&requests);
    assert_eq!(dest.retries.get(), 0);
    assert_eq!(dest.remote_write_protocol_now(), Some(protocol));
    let held: u64 = requests.iter().map(sample_count).sum();
    let text = logs.text();
    match (protocol, written) {
        (Protocol::V2, Some(w)) => {
            let n = requests.len() as u64;
            assert_eq!(dest.samples_sent.get(), n * w);
            assert_eq!(
                dest.dropped_total(DropReason::ReceiverRefused),
                held - n * w
            );
            assert_eq!(lines_with(&text, PARTIAL_LINE), 1, "{text}");
        }
        _ => {
            assert_eq!(dest.samples_sent.get(), held);
            assert_nothing_lost(&dest);
        }
    }
    assert_eq!(lines_with(&text, FALLBACK_LINE), 0, "{text}");
    assert_eq!(lines_with(&text, FAILED_LINE), 0, "{text}");
    assert_eq!(lines_with(&text, REJECTED_LINE), 0, "{text}");
}

/// SHOULD ignore the body of a 2xx: a 200 with a body (the suite's 204 cannot carry one) is
/// success; the body is never read.
#[tokio::test]
async fn n103_ignore_response_body_on_success() {
    for protocol in passing("N103") {
        let answer = written_one(200).with_body("This body should be ignored");
        success(protocol, EXPOSITION, answer, Some(1)).await;
        let answer = written_one(204).with_body("This body should be ignored");
        success(protocol, EXPOSITION, answer, Some(1)).await;
    }
}

/// MAY use the written-count headers: ours does, `Samples-Written: 3` (fixed, fewer than each
/// request holds) counts 3 samples sent per request and the rest refused.
#[tokio::test]
async fn n104_process_written_count_headers() {
    let exposition = "# Multiple samples\n\
                      test_counter_total{label=\"a\"} 100\n\
                      test_counter_total{label=\"b\"} 200\n\
                      test_gauge{label=\"c\"} 50\n";
    for protocol in passing("N104") {
        let answer = Response::status(204)
            .with_header("X-Prometheus-Remote-Write-Samples-Written", "3")
            .with_header("X-Prometheus-Remote-Write-Exemplars-Written", "0")
            .with_header("X-Prometheus-Remote-Write-Histograms-Written", "0");
        success(protocol, exposition, answer, Some(3)).await;
    }
}

/// SHOULD handle a partial write: the suite's 400 "Rejected 1 sample" carries no written
/// counts (they go on 2xx only), so the request counts as not written at all: dropped once as
/// rejected, not retried, the message logged.
#[tokio::test]
async fn n105_handle_partial_write_response() {
    for protocol in passing("N105") {
        not_retried(protocol, 400, "Rejected 1 sample", &[]).await;
    }
}

/// SHOULD assume nothing was written when a 4xx has no written counts: the whole request is
/// counted as rejected.
#[tokio::test]
async fn n106_handle_missing_written_headers() {
    for protocol in passing("N106") {
        not_retried(protocol, 400, "Bad request", &[]).await;
    }
}

/// An error answer's message as the log shows it (the rejection warning), for every request
/// answered `status` with `body`.
async fn logged_rejection(protocol: Protocol, status: u16, body: &str) -> String {
    let (logs, _guard) = Logs::capture();
    let answer = Response::status(status).with_body(body);
    let run = start_at_interval(protocol, &[], |rx| rx.answer_always(Some(answer))).await;
    run.until("three requests", |reqs| reqs.len() >= 3).await;
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    assert_none_sent_twice(&requests);
    let text = logs.text();
    assert_eq!(lines_with(&text, REJECTED_LINE), 1, "{text}");
    text.lines()
        .find(|l| l.contains(REJECTED_LINE))
        .unwrap()
        .to_owned()
}

/// MUST log the receiver's error message as it is: the line holds the body verbatim (quotes
/// and all), once for the episode.
#[tokio::test]
async fn n107_log_error_messages_verbatim() {
    let message = "Error: Invalid label name '__invalid__'";
    for protocol in passing("N107") {
        let line = logged_rejection(protocol, 400, message).await;
        assert!(
            line.contains(&format!("receiver answered 400 Bad Request: {message}")),
            "{line}"
        );
    }
}

/// SHOULD handle a large error body: the suite's 28 015 bytes end up as the first 200
/// characters in one log line; the request is dropped once, not retried, and the agent goes
/// on.
#[tokio::test]
async fn n108_handle_large_error_body() {
    let body = format!(
        "Error details: {}",
        "detailed error information; ".repeat(1000)
    );
    assert_eq!(body.len(), 28_015);
    for protocol in passing("N108") {
        let line = logged_rejection(protocol, 400, &body).await;
        let shown: String = body.chars().take(200).collect();
        assert!(line.contains(&format!("{shown}…")), "{line}");
        assert!(line.len() < 1000, "{} bytes: {line}", line.len());
        not_retried(protocol, 400, &body, &[]).await;
    }
}

/// MUST take 204 as success: the receiver's own 204 with the true counts (every sample
/// written), and the suite's with `Samples-Written: 1`.
#[tokio::test]
async fn n109_handle_204_no_content() {
    for protocol in passing("N109") {
        let run = Run::start(protocol, EXPOSITION, &[]).await;
        run.until("five requests", |reqs| reqs.len() >= 5).await;
        let dest = run.agent.dest();
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert!(requests.iter().all(|r| r.accepted() && r.status == 204));
        assert_none_sent_twice(&requests);
        assert_eq!(dest.retries.get(), 0);
        assert_nothing_lost(&dest);
        success(protocol, EXPOSITION, written_one(204), Some(1)).await;
    }
}

/// MUST take 200 as success (the suite's, with body "OK" and `Samples-Written: 1`).
#[tokio::test]
async fn n110_handle_200_ok() {
    for protocol in passing("N110") {
        success(
            protocol,
            EXPOSITION,
            written_one(200).with_body("OK"),
            Some(1),
        )
        .await;
    }
}

/// SHOULD handle content-type negotiation: the first request already names the protobuf
/// message it carries (and so does every later one).
#[tokio::test]
async fn n111_content_type_negotiation() {
    for protocol in passing("N111") {
        let run =
            start_at_interval(protocol, &[], |rx| rx.answer_always(Some(written_one(204)))).await;
        run.until_series("test_metric").await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let want = match protocol {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        };
        for r in &requests {
            assert_eq!(r.header("content-type"), Some(want));
        }
    }
}
