//! The 2026 suite's retry cases (`retry_test.go`, N084-N092): which answers make the agent
//! send a request again. The suite answers every request with the case's status and counts
//! requests in 8 s, which cannot tell a retry from the next poll's request; we tell them apart
//! by their samples (a retry carries exactly the samples it carried before, another poll's
//! request other timestamps), and check what happens to the data: a retried request is
//! delivered once the receiver takes it, a dropped one is counted, and either way the agent
//! goes on and the log says so once per episode.

use kubelet_push::remote_write::Protocol;
use kubelet_push::telemetry::DropReason;
use kubelet_push::testkit::receiver::Response;

use super::sending::*;
use super::{assert_all_valid, passing};
use crate::support::Logs;

/// The receiver answers `status` with `body` to every request: each poll's request goes
/// once and is dropped (counted as rejected, never retried); once the receiver takes requests
/// again, the next polls are delivered. One warning for the rejections, with the receiver's
/// status and message, one line when they end.
pub(super) async fn not_retried(protocol: Protocol, status: u16, body: &str, extra: &[&str]) {
    let (logs, _guard) = Logs::capture();
    let answer = Response::status(status).with_body(body);
    let run = start_at_interval(protocol, extra, |rx| rx.answer_always(Some(answer))).await;
    run.until(&format!("4 requests answered {status}"), |reqs| {
        reqs.iter().filter(|r| r.status == status).count() >= 4
    })
    .await;
    run.rx.clear_responses();
    run.until_series("test_metric").await;
    let dest = run.agent.dest();
    let requests = run.stop().await;

    assert_all_valid(&requests, protocol);
    assert_none_sent_twice(&requests);
    let refused: Vec<_> = requests.iter().filter(|r| r.status == status).collect();
    assert!(refused.len() >= 4);
    // Refused first, accepted after: no request refused once went again later.
    let first_ok = requests.iter().position(|r| r.accepted()).unwrap();
    assert!(requests[first_ok..].iter().all(|r| r.accepted()));
    assert_eq!(dest.retries.get(), 0, "{protocol:?} {status}");
    let refused_samples: u64 = refused.iter().map(|r| sample_count(r)).sum();
    assert_eq!(dest.dropped_total(DropReason::Rejected), refused_samples);
    assert_eq!(
        dest.samples_sent.get() + refused_samples,
        dest.samples_queued.get()
    );
    assert_eq!(dest.remote_write_protocol_now(), Some(protocol));
    let text = logs.text();
    assert_eq!(lines_with(&text, REJECTED_LINE), 1, "{text}");
    let line = text.lines().find(|l| l.contains(REJECTED_LINE)).unwrap();
    assert!(
        line.contains(&format!("receiver answered {status}")),
        "{line}"
    );
    assert_eq!(lines_with(&text, ACCEPTS_AGAIN_LINE), 1, "{text}");
    assert_eq!(lines_with(&text, FAILED_LINE), 0, "{text}");
}

/// The receiver answers `first` to the first `times` requests, then takes them: the first
/// poll's request is sent again, with the same samples, until it goes through; nothing is
/// dropped; one warning when the failures start, naming the status, one line when they end.
pub(super) async fn retried(protocol: Protocol, first: Response, times: usize, extra: &[&str]) {
    let (logs, _guard) = Logs::capture();
    let status = first.status;
    let run = start_at_interval(protocol, extra, |rx| {
        for _ in 0..times {
            rx.push_response(first.clone());
        }
    })
    .await;
    run.until_series("test_metric").await;
    let dest = run.agent.dest();
    let requests = run.stop().await;

    assert_all_valid(&requests, protocol);
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    let mut want = vec![status; times];
    want.push(204);
    assert_eq!(statuses[..=times], want[..], "{statuses:?}");
    let data = samples(&requests[0]);
    assert!(!data.is_empty());
    for r in &requests[1..=times] {
        assert_eq!(samples(r), data, "an attempt carried other samples");
    }
    assert!(requests[times].accepted());
    assert_eq!(dest.retries.get(), times as u64);
    assert_eq!(dest.requests_with(Some(status)), times as u64);
    assert_nothing_lost(&dest);
    let text = logs.text();
    assert_eq!(lines_with(&text, FAILED_LINE), 1, "{text}");
    let line = text.lines().find(|l| l.contains(FAILED_LINE)).unwrap();
    assert!(
        line.contains(&format!("receiver answered {status}")),
        "{line}"
    );
    assert_eq!(lines_with(&text, RECOVERED_LINE), 1, "{text}");
    assert_eq!(lines_with(&text, REJECTED_LINE), 0, "{text}");
}

/// MUST NOT retry a 400.
#[tokio::test]
async fn n084_no_retry_on_400() {
    for protocol in passing("N084") {
        not_retried(protocol, 400, "Bad request", &[]).await;
    }
}

/// MUST NOT retry a 401: a deliberate deviation by default (refused credentials are retried
/// until the credential files are fixed, so a rotation that reaches the node late costs no
/// data); `--remote-retry-auth-errors=false` follows the spec.
#[tokio::test]
async fn n085_no_retry_on_401() {
    for protocol in BOTH {
        retried(
            protocol,
            Response::status(401).with_body("Unauthorized"),
            3,
            &[],
        )
        .await;
        not_retried(
            protocol,
            401,
            "Unauthorized",
            &["--remote-retry-auth-errors=false"],
        )
        .await;
    }
}

/// MUST NOT retry a 404.
#[tokio::test]
async fn n086_no_retry_on_404() {
    for protocol in passing("N086") {
        not_retried(protocol, 404, "Not found", &[]).await;
    }
}

/// MAY retry a 429; ours does, after its `Retry-After` (1 s here): each attempt comes at
/// least that long after the one before.
#[tokio::test]
async fn n087_may_retry_on_429() {
    for protocol in passing("N087") {
        let first = Response::status(429)
            .with_header("Retry-After", "1")
            .with_body("Too many requests");
        let run = start_at_interval(protocol, &[], |rx| {
            rx.push_response(first.clone());
            rx.push_response(first);
        })
        .await;
        run.until_series("test_metric").await;
        let dest = run.agent.dest();
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let statuses: Vec<u16> = requests.iter().take(3).map(|r| r.status).collect();
        assert_eq!(statuses, [429, 429, 204]);
        for w in requests[..3].windows(2) {
            assert_eq!(samples(&w[1]), samples(&w[0]));
            let waited = w[1].at - w[0].at;
            assert!(
                waited >= std::time::Duration::from_secs(1),
                "Retry-After: 1 not waited: {waited:?}"
            );
        }
        assert_eq!(dest.retries.get(), 2);
        assert_nothing_lost(&dest);
    }
}

/// MUST retry a 500.
#[tokio::test]
async fn n088_retry_on_500() {
    for protocol in passing("N088") {
        let r = Response::status(500).with_body("Internal server error");
        retried(protocol, r, 3, &[]).await;
    }
}

/// MUST retry a 503.
#[tokio::test]
async fn n089_retry_on_503() {
    for protocol in passing("N089") {
        let r = Response::status(503).with_body("Service unavailable");
        retried(protocol, r, 3, &[]).await;
    }
}

/// SHOULD retry a 502.
#[tokio::test]
async fn n090_retry_on_502() {
    for protocol in passing("N090") {
        retried(
            protocol,
            Response::status(502).with_body("Bad gateway"),
            3,
            &[],
        )
        .await;
    }
}

/// SHOULD retry a 504.
#[tokio::test]
async fn n091_retry_on_504() {
    for protocol in passing("N091") {
        let r = Response::status(504).with_body("Gateway timeout");
        retried(protocol, r, 3, &[]).await;
    }
}

/// SHOULD NOT retry a 413 (the request alone; a merged catch-up request is sent again
/// smaller, see `delivery.rs`).
#[tokio::test]
async fn n092_no_retry_on_413() {
    for protocol in passing("N092") {
        not_retried(protocol, 413, "Payload too large", &[]).await;
    }
}
