//! The 2026 suite's error-handling cases (`error_handling_test.go`, N112-N121): a receiver
//! that refuses connections, never answers, answers oddly, or cannot be resolved. Every one of
//! the suite's checks is `should(true)`; ours check that the agent keeps running, retries
//! where the spec says to (network errors, timeouts, 5xx), drops where it says to (4xx), loses
//! nothing it should keep, and logs each episode once.

use std::time::Duration;

use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::{Receiver, Response};

use super::retry::not_retried;
use super::sending::*;
use super::{assert_all_valid, passing, Target, INTERVAL};
use crate::support::{wait_until, Logs, ReservedPort};

/// SHOULD handle a refused connection: retried until the receiver comes up on the port,
/// then everything polled meanwhile is delivered; one warning for the outage, saying it
/// cannot connect, one line when it ends.
#[tokio::test]
async fn n112_handle_connection_refused() {
    for protocol in passing("N112") {
        let (logs, _guard) = Logs::capture();
        let port = ReservedPort::new();
        let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
        let target = Target::serve(EXPOSITION).await;
        let agent = agent(protocol, &target, &url, &[], INTERVAL);
        let dest = agent.dest();
        wait_until("five refused attempts", || dest.retries.get() >= 5).await;
        assert!(!agent.task.is_finished());
        assert!(dest.samples_pending.get() > 0);
        let rx = Receiver::start_on(port.listen()).unwrap();
        wait_until("polls delivered", || {
            !super::series_named(&rx.requests(), "test_metric").is_empty()
        })
        .await;
        agent.stop().await;
        let requests = rx.requests();
        assert_all_valid(&requests, protocol);
        assert_nothing_lost(&dest);
        let text = logs.text();
        assert_eq!(lines_with(&text, FAILED_LINE), 1, "{text}");
        let line = text.lines().find(|l| l.contains(FAILED_LINE)).unwrap();
        assert!(line.contains("cannot connect"), "{line}");
        assert_eq!(lines_with(&text, RECOVERED_LINE), 1, "{text}");
    }
}

/// SHOULD handle a request that times out: the suite's receiver sleeps 30 s; ours holds the
/// first answer until the test ends. The agent gives the request up after `--remote-timeout`
/// (1 s), sends the same samples again, and delivers everything.
#[tokio::test]
async fn n113_handle_timeout() {
    for protocol in passing("N113") {
        let (logs, _guard) = Logs::capture();
        let run = start_at_interval(protocol, &["--remote-timeout", "1s"], |rx| {
            rx.push_response(Response::status(200).held())
        })
        .await;
        run.until("the timed-out request sent again", |reqs| {
            reqs.len() >= 2 && reqs[1].accepted()
        })
        .await;
        run.until_series("test_metric").await;
        let dest = run.agent.dest();
        run.rx.release();
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(samples(&requests[1]), samples(&requests[0]));
        // The timeout runs from before the connection was made, the arrival is after it: a
        // little less than the full second may separate the arrivals, never much less.
        let waited = requests[1].at - requests[0].at;
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert_nothing_lost(&dest);
        let text = logs.text();
        assert_eq!(lines_with(&text, FAILED_LINE), 1, "{text}");
        let line = text.lines().find(|l| l.contains(FAILED_LINE)).unwrap();
        assert!(line.contains("timed out (--remote-timeout)"), "{line}");
        assert_eq!(lines_with(&text, RECOVERED_LINE), 1, "{text}");
    }
}

/// A 200 with `body` and no written counts to every request. 1.0: success, every sample
/// delivered once. 2.0: a 2xx without the written-samples header is how a receiver that
/// predates 2.0 answers (it stored nothing), so the first request goes again as 1.0 with the
/// same samples, everything after as 1.0, nothing lost, one line about it.
async fn bare_200(protocol: Protocol, body: &str) {
    let (logs, _guard) = Logs::capture();
    let answer = Response::status(200).with_body(body);
    let run = start_at_interval(protocol, &[], |rx| rx.answer_always(Some(answer))).await;
    run.until("five requests", |reqs| reqs.len() >= 5).await;
    let dest = run.agent.dest();
    let requests = run.stop().await;
    let text = logs.text();
    for r in &requests {
        assert_eq!(r.status, 200);
        assert_eq!(r.rejection, None);
    }
    let mut ones = &requests[..];
    if protocol == Protocol::V2 {
        assert_eq!(requests[0].protocol, Protocol::V2);
        assert_eq!(samples(&requests[1]), samples(&requests[0]));
        ones = &requests[1..];
        assert_eq!(lines_with(&text, FALLBACK_LINE), 1, "{text}");
        let line = text.lines().find(|l| l.contains(FALLBACK_LINE)).unwrap();
        assert!(line.contains("status=200"), "{line}");
    }
    assert!(ones.iter().all(|r| r.protocol == Protocol::V1));
    assert_none_sent_twice(ones);
    assert_eq!(dest.retries.get(), 0);
    assert_nothing_lost(&dest);
    assert_eq!(lines_with(&text, FAILED_LINE), 0, "{text}");
    assert_eq!(lines_with(&text, REJECTED_LINE), 0, "{text}");
}

/// SHOULD handle a partial HTTP write: 200 "partial" without written counts.
#[tokio::test]
async fn n114_handle_partial_write() {
    for protocol in passing("N114") {
        bare_200(protocol, "partial").await;
    }
}

/// SHOULD handle a malformed response: the suite's is a well-formed 200 whose body reads "Not
/// valid response headers".
#[tokio::test]
async fn n115_handle_malformed_response() {
    for protocol in passing("N115") {
        bare_200(protocol, "Not valid response headers\r\n").await;
    }
}

/// MUST keep running after recoverable errors: 500 to everything for a while; the agent keeps
/// polling (the buffer grows) and retrying, and delivers everything once the receiver
/// recovers. One warning, one recovery line.
#[tokio::test]
async fn n116_sender_continues_after_errors() {
    for protocol in passing("N116") {
        let (logs, _guard) = Logs::capture();
        let answer = Response::status(500).with_body("Internal server error");
        let run = start_at_interval(protocol, &[], |rx| rx.answer_always(Some(answer))).await;
        let dest = run.agent.dest();
        run.until("ten failed attempts", |reqs| reqs.len() >= 10)
            .await;
        let queued = dest.samples_queued.get();
        wait_until("polls go on while the receiver fails", || {
            dest.samples_queued.get() > queued
        })
        .await;
        assert!(!run.agent.task.is_finished());
        run.rx.clear_responses();
        run.until("a request accepted", |reqs| {
            reqs.iter().any(|r| r.accepted())
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let failed = requests.iter().filter(|r| r.status == 500).count();
        assert!(failed >= 10);
        assert_nothing_lost(&dest);
        let text = logs.text();
        assert_eq!(lines_with(&text, FAILED_LINE), 1, "{text}");
        assert_eq!(lines_with(&text, RECOVERED_LINE), 1, "{text}");
    }
}

/// SHOULD handle an invalid status code: 999 is neither success nor one the spec says to
/// retry, so each request is dropped once as rejected (as Prometheus does), logged once, and
/// the agent goes on.
#[tokio::test]
async fn n117_handle_invalid_status_code() {
    for protocol in passing("N117") {
        not_retried(protocol, 999, "", &[]).await;
    }
}

/// SHOULD handle an empty response: 200 without a body or written counts.
#[tokio::test]
async fn n118_handle_empty_response() {
    for protocol in passing("N118") {
        bare_200(protocol, "").await;
    }
}

/// SHOULD handle a large error response: 400 with 1 MiB of `x`. Dropped once (not retried);
/// only the body's first 4 KiB are read, and one log line shows its first 200 characters.
#[tokio::test]
async fn n119_handle_large_error_response() {
    let body = "x".repeat(1 << 20);
    for protocol in passing("N119") {
        not_retried(protocol, 400, &body, &[]).await;
    }
}

/// A host no resolver can look up without asking the network: a label longer than DNS's 63
/// bytes, which the resolver refuses to put in a query (the suite's
/// `nonexistent.invalid.domain` would send a query to the system's DNS server).
fn unresolvable_url() -> String {
    format!("http://{}.invalid:9999/api/v1/write", "n".repeat(64))
}

/// SHOULD handle a failed name resolution: a network error like any other, retried (the
/// name may resolve later); the agent goes on polling and keeps what it polled; one warning.
#[tokio::test]
async fn n120_dns_resolution_failure() {
    for protocol in passing("N120") {
        let (logs, _guard) = Logs::capture();
        let target = Target::serve(EXPOSITION).await;
        let agent = agent(protocol, &target, &unresolvable_url(), &[], INTERVAL);
        let dest = agent.dest();
        wait_until("five failed attempts", || dest.retries.get() >= 5).await;
        let queued = dest.samples_queued.get();
        wait_until("polls go on", || dest.samples_queued.get() > queued).await;
        assert!(!agent.task.is_finished());
        let pending = dest.samples_pending.get();
        assert!(pending > 0);
        for reason in kubelet_push::telemetry::DropReason::ALL {
            assert_eq!(dest.dropped_total(reason), 0, "{reason:?}");
        }
        assert_eq!(dest.samples_sent.get(), 0);
        agent.stop.cancel();
        let _ = tokio::time::timeout(crate::support::PATIENCE, agent.task)
            .await
            .expect("the agent stops");
        let text = logs.text();
        assert_eq!(lines_with(&text, FAILED_LINE), 1, "{text}");
        let line = text.lines().find(|l| l.contains(FAILED_LINE)).unwrap();
        assert!(line.contains("cannot connect"), "{line}");
    }
}

/// SHOULD handle an invalid URL scheme: `invalid://localhost:9999` is refused when the agent
/// starts, with an error naming `--remote-url` and why, instead of being accepted and failing
/// every request as Prometheus does: no request can ever go to such a URL, so it is a
/// configuration mistake to report at once.
#[test]
fn n121_invalid_url_scheme() {
    use clap::Parser;
    let cli = kubelet_push::cli::Cli::try_parse_from([
        "kubelet-push",
        "--kubelet-summary=false",
        "--node-name",
        "n",
        "--scrape",
        "test=http://127.0.0.1:1/metrics",
        "--remote-url",
        "invalid://localhost:9999",
    ]);
    let error = match cli {
        Err(e) => e.to_string(),
        Ok(cli) => match kubelet_push::Config::from_args(&cli.agent) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("invalid://localhost:9999 was accepted"),
        },
    };
    assert!(error.contains("--remote-url"), "{error}");
    assert!(
        error.contains("scheme \"invalid\" is not http or https"),
        "{error}"
    );
}
