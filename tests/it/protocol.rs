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

/// Compressed bytes per sample, 2.0 against 1.0, on the same polls: printed for
/// docs/performance.md and the report (`cargo test --test it wire_bytes -- --nocapture`).
/// Asserts only what makes the figures meaningful: both bodies decode to the same number of
/// samples.
#[test]
fn wire_bytes_per_sample_v2_vs_v1() {
    use kubelet_push::demo::simulator::SimulatedKubelet;
    use std::time::{Duration, SystemTime};

    let poller = |version: &str| {
        Poller::new(
            &config(&[
                "--dry-run",
                "--kubelet-url",
                "file://unused.json",
                "--remote-write-version",
                version,
            ]),
            std::sync::Arc::new(kubelet_push::telemetry::Metrics::new()),
        )
        .expect("poller")
    };
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut sim = SimulatedKubelet::new(110, 42, start - Duration::from_secs(3600));
    let sim_pods = sim.pods_json(start).into_bytes();
    let sim_polls: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            sim.summary_json(start + Duration::from_secs(10 * i))
                .into_bytes()
        })
        .collect();
    let capture_pods = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pods/nri-kubernetes-testutil-1_34__pods.json"
    ))
    .expect("fixture");
    // Input name, its successive summaries, its `/pods` answer.
    type Case<'a> = (&'a str, Vec<Vec<u8>>, &'a [u8]);
    let cases: [Case<'_>; 2] = [
        ("linux-1.34-18pods", vec![capture()], &capture_pods),
        ("windows-sim-110pods", sim_polls, &sim_pods),
    ];
    eprintln!("input                 poll      samples  v1 bytes  v2 bytes  v1 B/sample  v2 B/sample  v2/v1");
    for (name, polls, pods) in &cases {
        for max in [2000, usize::MAX] {
            let mut p1 = poller("1");
            let mut p2 = poller("2");
            for p in [&mut p1, &mut p2] {
                p.set_pod_list(pods, vec![("app".into(), "label_app".into())])
                    .expect("pods");
            }
            for (i, bytes) in polls.iter().enumerate() {
                let t = 1_800_000_000_000 + 10_000 * i as i64;
                let o1 = p1.ingest(Ok(bytes), t, Instant::now());
                let o2 = p2.ingest(Ok(bytes), t, Instant::now());
                assert_eq!(o1.points.len(), o2.points.len());
                let r1 = p1.encode(&o1, max).expect("v1");
                let r2 = p2.encode(&o2, max).expect("v2");
                let n: usize = r1.iter().map(|r| r.samples).sum();
                let decoded2: usize = r2
                    .iter()
                    .map(|r| decode_v2(&r.body).expect("v2").timeseries.len())
                    .sum();
                let decoded1: usize = r1
                    .iter()
                    .map(|r| decode(&r.body).expect("v1").timeseries.len())
                    .sum();
                assert_eq!((decoded1, decoded2), (n, n));
                let b1: usize = r1.iter().map(|r| r.body.len()).sum();
                let b2: usize = r2.iter().map(|r| r.body.len()).sum();
                let label = if i == 0 { "first" } else { "next" };
                let per = if max == usize::MAX {
                    "1 req"
                } else {
                    "2000/req"
                };
                eprintln!(
                    "{name:21} {label:5} {per:8} {n:6} {b1:9} {b2:9} {:12.2} {:12.2} {:6.3}",
                    b1 as f64 / n as f64,
                    b2 as f64 / n as f64,
                    b2 as f64 / b1 as f64
                );
            }
        }
    }
}
