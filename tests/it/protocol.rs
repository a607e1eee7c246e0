//! `--remote-write-version`: the poller encodes each poll in the protocol negotiated at that
//! moment, so a fallback to 1.0 (made by the sender through the shared handle) takes effect
//! from the next poll. Bodies are decoded, not just counted.

use std::time::Instant;

use kubelet_push::pipeline::Poller;
use kubelet_push::remote_write::encode::{decode, decode_v2, v2_labels};
use kubelet_push::remote_write::Protocol;

use crate::support::config;

fn capture() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/summaries/nri-kubernetes-testutil-1_34__summary.json"
    );
    std::fs::read(path).expect("fixture")
}

#[test]
fn polls_follow_the_negotiated_protocol() {
    let poller_for = |version: &str| {
        Poller::new(
            &config(&[
                "--dry-run",
                "--kubelet-url",
                "file://unused.json",
                "--node-name",
                "n1",
                "--remote-write-version",
                version,
            ]),
            std::sync::Arc::new(kubelet_push::telemetry::Metrics::new()),
        )
        .expect("poller")
    };
    let bytes = capture();
    assert_eq!(poller_for("1").negotiated().get(), Protocol::V1);

    let mut poller = poller_for("2");
    let negotiated = poller.negotiated();
    assert_eq!(negotiated.get(), Protocol::V2);
    let first = poller.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
    assert!(first.error.is_none());
    let requests = poller.encode(&first, 2000).expect("encode");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].protocol, Protocol::V2);
    assert_eq!(requests[0].samples, first.points.len());
    let request = decode_v2(&requests[0].body).expect("a 2.0 body");
    assert_eq!(request.timeseries.len(), first.points.len());
    let up = request
        .timeseries
        .iter()
        .find(|ts| {
            v2_labels(&request, ts)
                .expect("refs")
                .contains(&("__name__", "up"))
        })
        .expect("up is sent");
    assert_eq!(up.samples[0].value, 1.0);
    assert_eq!(up.samples[0].timestamp, 1_800_000_000_000);
    assert!(v2_labels(&request, up)
        .expect("refs")
        .contains(&("node", "n1")));

    // The sender sees a receiver that does not take 2.0: from the next poll on, 1.0.
    assert!(
        negotiated.fall_back_to_v1(),
        "the first fallback changes it"
    );
    assert!(!poller.negotiated().fall_back_to_v1(), "once");
    let second = poller.ingest(Ok(&bytes), 1_800_000_010_000, Instant::now());
    let requests = poller.encode(&second, 2000).expect("encode");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].protocol, Protocol::V1);
    let body = decode(&requests[0].body).expect("a 1.0 body");
    let mut names: Vec<&str> = body
        .timeseries
        .iter()
        .filter_map(|ts| crate::support::label(ts, "__name__"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["scrape_duration_seconds", "scrape_samples_scraped", "up"],
        "the same summary again: only the per-poll series are new"
    );
}
