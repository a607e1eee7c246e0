//! The 2026 suite's backoff cases (`backoff_test.go`, N093-N096): the time between attempts
//! while the receiver answers 503 (502 in N095) to everything. The suite measures the gaps
//! between arrivals over 20 s; we do the same on one request's attempts (every attempt
//! carries the first poll's samples: the agent sends nothing else while that one fails), with
//! `--min-backoff 100ms --max-backoff 400ms`, and assert only lower bounds the settings give
//! (and generous upper ones): with full jitter a delay below the cap may be anything from 0 to
//! its ceiling, and at the cap every delay is `--max-backoff` itself.
//!
//! Each delay the agent sleeps is drawn by `kubelet_push::sender::Backoff`, a pure function
//! of the attempt and a seed; the shape of the sequence (the doubling ceiling, the jitter) is
//! checked on it directly, since no wall-clock measurement can show a distribution without
//! being a timed test.

use std::time::Duration;

use kubelet_push::remote_write::Protocol;
use kubelet_push::sender::Backoff;
use kubelet_push::testkit::receiver::{ReceivedRequest, Response};

use super::sending::*;
use super::{assert_all_valid, passing};

const MIN: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_millis(400);
/// Attempts whose delay is drawn below the cap or as the first at it: 100, 200, 400 ms
/// ceilings. Every later delay is `MAX`.
const DRAWN: usize = 3;

/// Every attempt of the first poll's request while the receiver answers `status`, at least
/// `attempts` of them: all with the same samples, all valid.
async fn attempts(protocol: Protocol, status: u16, attempts: usize) -> Vec<ReceivedRequest> {
    let run = start_at_interval(
        protocol,
        &["--min-backoff", "100ms", "--max-backoff", "400ms"],
        |rx| {
            rx.answer_always(Some(
                Response::status(status).with_body("Service unavailable"),
            ))
        },
    )
    .await;
    run.until(&format!("{attempts} attempts"), |reqs| {
        reqs.len() >= attempts
    })
    .await;
    let dest = run.agent.dest();
    assert!(!run.agent.task.is_finished(), "the agent stopped");
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    assert!(requests.iter().all(|r| r.status == status));
    let first = samples(&requests[0]);
    assert!(!first.is_empty());
    for r in &requests {
        assert_eq!(
            samples(r),
            first,
            "another request went while the first failed"
        );
    }
    assert!(dest.retries.get() >= attempts as u64 - 1);
    requests
}

/// The gaps between consecutive arrivals.
fn gaps(requests: &[ReceivedRequest]) -> Vec<Duration> {
    requests.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// From the first delay at the cap on, every gap is at least `--max-backoff`.
fn assert_capped_gaps(gaps: &[Duration]) {
    assert!(gaps.len() > DRAWN, "{gaps:?}");
    for (i, g) in gaps.iter().enumerate().skip(DRAWN) {
        assert!(*g >= MAX, "gap {i} is {g:?}, under --max-backoff: {gaps:?}");
    }
}

/// The delays `Backoff` draws for one request, and their ceilings.
fn drawn(seed: u64, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut b = Backoff::new(MIN, MAX, seed);
    (0..n)
        .map(|_| {
            let c = b.ceiling();
            (b.next_delay(), c)
        })
        .unzip()
}

/// SHOULD back off exponentially. Ours does, with full jitter: each delay is drawn between 0
/// and a ceiling that doubles from `--min-backoff` to `--max-backoff`, so a delay may be
/// shorter than the one before (the suite's check, each gap ≥ 0.8× the previous, fails on
/// about one pair in five below the cap); at the cap every delay is `--max-backoff`.
#[tokio::test]
async fn n093_exponential_backoff_on_retries() {
    // The ceilings double up to the cap, then stay; each delay lies under its ceiling.
    for seed in 0..200 {
        let (delays, ceilings) = drawn(seed, 6);
        let ms: Vec<u128> = ceilings.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 400, 400, 400]);
        for (d, c) in delays.iter().zip(&ceilings) {
            assert!(d <= c, "{delays:?}");
        }
        assert_eq!(delays[DRAWN..], [MAX; 3]);
    }
    // The deviation itself: some draws shrink from one delay to the next.
    let shrinking = (0..200)
        .filter(|&seed| {
            let (d, _) = drawn(seed, 2);
            d[1].as_secs_f64() < 0.8 * d[0].as_secs_f64()
        })
        .count();
    assert!(shrinking > 0);
    for protocol in [Protocol::V1, Protocol::V2] {
        let requests = attempts(protocol, 503, DRAWN + 4).await;
        assert_capped_gaps(&gaps(&requests));
    }
}

/// MUST back off: the first poll's request is retried (at least twice), never in a busy
/// loop: each arrival comes after the one before, and from the cap on at least
/// `--max-backoff` after it.
#[tokio::test]
async fn n094_backoff_required() {
    for protocol in passing("N094") {
        let requests = attempts(protocol, 503, DRAWN + 4).await;
        let gaps = gaps(&requests);
        assert!(gaps.iter().all(|g| !g.is_zero()), "{gaps:?}");
        assert_capped_gaps(&gaps);
    }
}

/// SHOULD cap the delay: every gap is at least `--max-backoff` once capped, and none is
/// anywhere near the suite's 60 s (30 s here: 75 times the cap, for a loaded machine).
#[tokio::test]
async fn n095_backoff_max_delay() {
    for protocol in passing("N095") {
        let requests = attempts(protocol, 502, DRAWN + 4).await;
        let gaps = gaps(&requests);
        assert_capped_gaps(&gaps);
        assert!(
            gaps.iter().all(|g| *g < Duration::from_secs(30)),
            "{gaps:?}"
        );
    }
}

/// MAY jitter: ours draws each delay below the cap (and the first at it) at random, per
/// request and per agent, so agents that failed together do not retry together; the agent
/// retries as the suite wants to see (≥ 3 attempts).
#[tokio::test]
async fn n096_backoff_with_jitter() {
    // Different requests (seeds) draw different delays, spread over the whole range.
    let firsts: Vec<Duration> = (0..200).map(|seed| drawn(seed, 1).0[0]).collect();
    let mut distinct = firsts.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 190, "{} distinct of 200", distinct.len());
    assert!(firsts.iter().any(|d| *d < MIN / 4));
    assert!(firsts.iter().any(|d| *d > MIN * 3 / 4));
    for protocol in passing("N096") {
        let requests = attempts(protocol, 503, 3).await;
        assert!(requests.len() >= 3);
    }
}
