//! The receivers users run, as their projects document them (issue 22, part 5): each an
//! in-test receiver scripted to behave that way, the agent pushing with
//! `--remote-write-version auto`. For each: which protocol the agent ends up on, what it does
//! with each documented error, and that nothing else is lost. The real Prometheus 2.42 and
//! VictoriaMetrics 1.79 run the same way in `e2e::v2` (`…_with_auto_…`).
//!
//! [`PROFILES`] is what `docs/conformance.md` shows; each test asserts its row.

use std::collections::BTreeSet;

use kubelet_push::remote_write::Protocol;
use kubelet_push::telemetry::DropReason;
use kubelet_push::testkit::receiver::{OldReceiver, ReceivedRequest, Receiver, Response};

use super::Run;
use crate::support::Logs;

/// A receiver's row in `docs/conformance.md`.
pub struct Profile {
    pub receiver: &'static str,
    /// How it answers, as its documentation has it (what the test scripts).
    pub behaves: &'static str,
    /// The protocol the agent ends on with `auto`.
    pub ends_on: &'static str,
    /// What the agent does with each documented error.
    pub errors: &'static str,
}

pub const PROFILES: &[Profile] = &[
    Profile {
        receiver: "Grafana Mimir (2.17+)",
        behaves: "tenant in `X-Scope-OrgID` (401 without); 2.0 with written counts; 400 naming the series for per-tenant limits; 429 without `Retry-After` for the ingestion rate; a 2xx whose written count is 0 though it stored the data (mimir#12622)",
        ends_on: "2.0",
        errors: "400: the request dropped, counted `rejected`, one warning, not resent; 429: retried with backoff until stored; written 0: counted `receiver_refused`, no resend, no fall back",
    },
    Profile {
        receiver: "Thanos Receive",
        behaves: "tenant in `THANOS-TENANT`; 1.0 only (415 to 2.0); 409 for out-of-order or conflicting samples; 503 while its hashring changes",
        ends_on: "1.0",
        errors: "415 to 2.0: the same samples resent as 1.0, 1.0 from then on; 409: dropped, counted `rejected`, never retried; 503: retried until stored",
    },
    Profile {
        receiver: "Cortex",
        behaves: "2.0 taken (converted to 1.0 inside), written counts of the samples that passed its validation",
        ends_on: "2.0",
        errors: "a written count below the request's: the difference counted `receiver_refused`, one warning, no resend",
    },
    Profile {
        receiver: "VictoriaMetrics (in-test; the real 1.79 in e2e)",
        behaves: "ignores Content-Type: a 2.0 body read as 1.0, 204 without written counts, nothing stored",
        ends_on: "1.0",
        errors: "the bare 204 to 2.0: the same samples resent as 1.0, 1.0 from then on",
    },
    Profile {
        receiver: "OpenTelemetry Collector (Prometheus remote-write receiver)",
        behaves: "2.0 only: 415 to 1.0; 2.0 answered with written counts (or, in versions without them, a bare 2xx)",
        ends_on: "2.0",
        errors: "with counts: 2.0 throughout; a bare 2xx: taken for an old receiver, 1.0 tried, its 415 switches to 2.0 for good and the bare 2xx is then taken as written (that first request is stored twice: at least once)",
    },
    Profile {
        receiver: "Prometheus 2.42 (real, e2e)",
        behaves: "1.0 only: a 2.0 body read as 1.0, 204 without written counts, nothing stored",
        ends_on: "1.0",
        errors: "as VictoriaMetrics",
    },
];

/// The table `docs/conformance.md` shows.
pub fn render() -> String {
    let mut out = String::from(
        "## The receivers users run\n\n\
         Each receiver as its project documents it, scripted in an in-test receiver \
         (`tests/it/conformance/receivers.rs`), the agent pushing with \
         `--remote-write-version auto`; Prometheus 2.42 and VictoriaMetrics 1.79 also for real \
         (`tests/it/e2e/v2.rs`). In every case nothing was lost but what the row says was \
         dropped: every sample the agent queued is in a request the receiver stored, or \
         counted as dropped with its reason.\n\n\
         | receiver | behaves | the agent ends on | what the agent does with its errors |\n\
         |---|---|---|---|\n",
    );
    for p in PROFILES {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            p.receiver, p.behaves, p.ends_on, p.errors
        ));
    }
    out.push('\n');
    out
}

fn profile(receiver: &str) -> &'static Profile {
    PROFILES
        .iter()
        .find(|p| p.receiver.starts_with(receiver))
        .unwrap_or_else(|| panic!("no profile {receiver}"))
}

const EXPOSITION: &str = "# TYPE matrix_requests_total counter\n\
matrix_requests_total{code=\"200\"} 7\n\
matrix_requests_total{code=\"500\"} 1\n\
# TYPE matrix_temperature gauge\n\
matrix_temperature 21.5\n";

/// One sample as stored: its labels and timestamp.
type Key = (Vec<(String, String)>, i64);

fn samples_of(r: &ReceivedRequest) -> BTreeSet<Key> {
    r.write_request
        .iter()
        .flat_map(|w| &w.timeseries)
        .flat_map(|ts| {
            let labels: Vec<(String, String)> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            ts.samples
                .iter()
                .map(move |s| (labels.clone(), s.timestamp))
        })
        .collect()
}

/// Every sample of the accepted requests.
fn stored(requests: &[ReceivedRequest]) -> BTreeSet<Key> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .flat_map(samples_of)
        .collect()
}

/// The protocol of the last request.
fn ends_on(requests: &[ReceivedRequest]) -> &'static str {
    match requests.last().map(|r| r.protocol) {
        Some(Protocol::V1) => "1.0",
        Some(Protocol::V2) => "2.0",
        None => "nothing sent",
    }
}

/// Nothing lost but what was dropped with a reason: the samples the agent queued are those
/// stored plus those counted dropped (`rejected` here: a request's samples, which are in the
/// request that was refused).
fn assert_nothing_else_lost(
    requests: &[ReceivedRequest],
    dest: &kubelet_push::telemetry::DestinationMetrics,
    dropped_requests: &[&ReceivedRequest],
) {
    let stored = stored(requests);
    let dropped: BTreeSet<Key> = dropped_requests
        .iter()
        .flat_map(|r| samples_of(r))
        .collect();
    assert!(
        stored.is_disjoint(&dropped),
        "a dropped request's sample was stored after all"
    );
    let queued = dest.samples_queued.get();
    assert_eq!(
        (stored.len() + dropped.len()) as u64,
        queued,
        "stored {} + dropped {} against {queued} queued",
        stored.len(),
        dropped.len()
    );
    assert_eq!(
        dest.dropped_total(DropReason::Rejected),
        dropped.len() as u64
    );
    for reason in DropReason::ALL {
        if !matches!(reason, DropReason::Rejected | DropReason::ReceiverRefused) {
            assert_eq!(dest.dropped_total(reason), 0, "{reason:?}");
        }
    }
}

fn answered(requests: &[ReceivedRequest], status: u16) -> Vec<&ReceivedRequest> {
    requests.iter().filter(|r| r.status == status).collect()
}

#[tokio::test]
async fn mimir() {
    let (logs, _guard) = Logs::capture();
    let run = Run::start_version(
        "auto",
        EXPOSITION,
        &["--remote-header", "X-Scope-OrgID=tenant-1"],
        |rx: &Receiver| {
            rx.require_tenant(Some(("X-Scope-OrgID", "tenant-1")));
            rx.push_response(Response::status(400).with_body(
                "send data to ingesters: failed pushing to ingester: user=tenant-1: per-user series limit of 1 exceeded (err-mimir-max-series-per-user). series: 'matrix_temperature{instance=...}'",
            ));
            rx.push_response(
                Response::status(200)
                    .with_header("X-Prometheus-Remote-Write-Samples-Written", "0")
                    .with_header("X-Prometheus-Remote-Write-Histograms-Written", "0")
                    .with_header("X-Prometheus-Remote-Write-Exemplars-Written", "0"),
            );
            rx.push_response(Response::status(429).with_body(
                "the request has been rejected because the tenant exceeded the ingestion rate limit (err-mimir-tenant-max-ingestion-rate)",
            ));
        },
    )
    .await;
    let dest = run.agent.dest();
    run.until(
        "the scripted answers and three stored requests after them",
        |reqs| reqs.len() >= 7,
    )
    .await;
    let requests = run.stop().await;
    assert_eq!(ends_on(&requests), profile("Grafana Mimir").ends_on);
    assert!(requests.iter().all(|r| r.protocol == Protocol::V2));
    assert!(requests
        .iter()
        .all(|r| r.header("x-scope-orgid") == Some("tenant-1")));
    let [refused] = answered(&requests, 400)[..] else {
        panic!("one 400: {requests:?}")
    };
    // The 429's samples are stored by a later request.
    let [limited] = answered(&requests, 429)[..] else {
        panic!("one 429")
    };
    assert!(samples_of(limited).is_subset(&stored(&requests)));
    // Written 0: counted, not resent (the receiver kept it), no fall back.
    let at = requests
        .iter()
        .position(|r| r.status == 200)
        .expect("the written-0 answer");
    let zero_samples = samples_of(&requests[at]);
    let later: BTreeSet<Key> = requests[at + 1..].iter().flat_map(samples_of).collect();
    assert!(
        zero_samples.is_disjoint(&later),
        "the written-0 request was resent"
    );
    assert_eq!(
        dest.dropped_total(DropReason::ReceiverRefused),
        zero_samples.len() as u64
    );
    // Stored by the receiver (mimir#12622), so it counts among the stored ones here.
    assert_nothing_else_lost(&requests, &dest, &[refused]);
    let text = logs.text();
    assert_eq!(
        text.matches("remote write rejected by the receiver")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("per-user series limit"), "{text}");
    assert_eq!(text.matches("does not take Remote Write").count(), 0);
}

#[tokio::test]
async fn thanos_receive() {
    let (logs, _guard) = Logs::capture();
    let run = Run::start_version(
        "auto",
        EXPOSITION,
        &["--remote-header", "THANOS-TENANT=team-a"],
        |rx: &Receiver| {
            rx.require_tenant(Some(("THANOS-TENANT", "team-a")));
            rx.answer_v2_like(Some(OldReceiver::Unsupported));
            rx.push_response(Response::status(409).with_body("add 3 samples: out of order sample"));
            rx.push_response(Response::status(503).with_body("hashring changed"));
            rx.push_response(Response::status(503).with_body("hashring changed"));
        },
    )
    .await;
    let dest = run.agent.dest();
    run.until(
        "the scripted answers and three stored requests after them",
        |reqs| reqs.len() >= 8,
    )
    .await;
    let requests = run.stop().await;
    assert_eq!(ends_on(&requests), profile("Thanos").ends_on);
    assert_eq!(
        (requests[0].protocol, requests[0].status),
        (Protocol::V2, 415)
    );
    assert!(requests[1..].iter().all(|r| r.protocol == Protocol::V1));
    assert_eq!(answered(&requests, 415).len(), 1, "one 2.0 attempt");
    let [conflict] = answered(&requests, 409)[..] else {
        panic!("one 409")
    };
    for unavailable in answered(&requests, 503) {
        assert!(samples_of(unavailable).is_subset(&stored(&requests)));
    }
    assert_nothing_else_lost(&requests, &dest, &[conflict]);
    let text = logs.text();
    assert_eq!(
        text.matches("remote write rejected by the receiver")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("remote write failed").count(), 1, "{text}");
}

#[tokio::test]
async fn cortex() {
    let (logs, _guard) = Logs::capture();
    let run = Run::start_version("auto", EXPOSITION, &[], |rx: &Receiver| {
        // One sample failed its validation.
        rx.push_response(
            Response::status(204)
                .with_header("X-Prometheus-Remote-Write-Samples-Written", "7")
                .with_header("X-Prometheus-Remote-Write-Histograms-Written", "0")
                .with_header("X-Prometheus-Remote-Write-Exemplars-Written", "0"),
        );
    })
    .await;
    let dest = run.agent.dest();
    run.until("three requests", |reqs| reqs.len() >= 3).await;
    let requests = run.stop().await;
    assert_eq!(ends_on(&requests), profile("Cortex").ends_on);
    assert!(requests.iter().all(|r| r.protocol == Protocol::V2));
    let first = samples_of(&requests[0]).len() as u64;
    assert_eq!(dest.dropped_total(DropReason::ReceiverRefused), first - 7);
    assert_nothing_else_lost(&requests, &dest, &[]);
    assert_eq!(
        logs.text()
            .matches("wrote fewer samples than the request held")
            .count(),
        1
    );
}

#[tokio::test]
async fn victoria_metrics() {
    let run = Run::start_version("auto", EXPOSITION, &[], |rx: &Receiver| {
        rx.answer_v2_like(Some(OldReceiver::IgnoresIt));
    })
    .await;
    let dest = run.agent.dest();
    run.until("three stored requests", |reqs| {
        reqs.iter().filter(|r| r.accepted()).count() >= 3
    })
    .await;
    let requests = run.stop().await;
    assert_eq!(ends_on(&requests), profile("VictoriaMetrics").ends_on);
    assert_eq!(
        (requests[0].protocol, requests[0].status),
        (Protocol::V2, 204)
    );
    assert!(!requests[0].accepted(), "it stored nothing of the 2.0 body");
    assert!(requests[1..].iter().all(|r| r.protocol == Protocol::V1));
    assert_eq!(
        samples_of(&requests[0]),
        samples_of(&requests[1]),
        "resent as 1.0"
    );
    assert_nothing_else_lost(&requests, &dest, &[]);
}

#[tokio::test]
async fn opentelemetry_collector() {
    // With the written counts: 2.0 throughout.
    let run = Run::start_version("auto", EXPOSITION, &[], |rx: &Receiver| {
        rx.answer_only_v2(Some(true));
    })
    .await;
    let dest = run.agent.dest();
    run.until("three requests", |reqs| reqs.len() >= 3).await;
    let requests = run.stop().await;
    assert_eq!(ends_on(&requests), profile("OpenTelemetry").ends_on);
    assert!(requests
        .iter()
        .all(|r| r.protocol == Protocol::V2 && r.accepted()));
    assert_nothing_else_lost(&requests, &dest, &[]);

    // Without them: 2.0, then 1.0 (415), then 2.0 for good.
    let run = Run::start_version("auto", EXPOSITION, &[], |rx: &Receiver| {
        rx.answer_only_v2(Some(false));
    })
    .await;
    let dest = run.agent.dest();
    run.until("five requests", |reqs| reqs.len() >= 5).await;
    let requests = run.stop().await;
    let wire: Vec<(Protocol, u16)> = requests.iter().map(|r| (r.protocol, r.status)).collect();
    assert_eq!(
        wire[..3],
        [
            (Protocol::V2, 204),
            (Protocol::V1, 415),
            (Protocol::V2, 204)
        ]
    );
    assert!(
        wire[3..].iter().all(|w| *w == (Protocol::V2, 204)),
        "{wire:?}"
    );
    assert_eq!(ends_on(&requests), profile("OpenTelemetry").ends_on);
    assert_nothing_else_lost(&requests, &dest, &[]);
}
