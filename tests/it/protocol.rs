//! `--remote-write-version`: each poll is encoded in the protocol each destination has
//! negotiated at that moment, so a fallback to 1.0 (made by that destination's sender through
//! the shared handle) takes effect from the next poll, for that destination only. Bodies are
//! decoded, not just counted.

use std::time::Instant;

use std::sync::Arc;

use kubelet_push::buffer::memory::MemoryBuffer;
use kubelet_push::buffer::Queue;
use kubelet_push::pipeline::{fan_out, Outlet, Poller};
use kubelet_push::remote_write::wire::{decode_v1, decode_v2, labels_of};
use kubelet_push::remote_write::{Negotiated, Protocol, Request, Switch};
use kubelet_push::telemetry::Metrics;

use crate::support::config;

fn capture() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/summaries/nri-kubernetes-testutil-1_34__summary.json"
    );
    std::fs::read(path).expect("fixture")
}

/// Takes every batch out of `queue`, in order.
fn drain(queue: &Queue) -> Vec<Request> {
    let mut out = Vec::new();
    while let Some((seq, batch)) = queue.front().expect("memory") {
        queue.ack(seq).1.expect("ack");
        out.push(batch);
    }
    out
}

/// Two destinations, one configured for 2.0 and one for 1.0, fed by one poller: each gets
/// its own protocol from the same poll, and the 2.0 one follows its sender's fallback from
/// the next poll on, while the other is untouched.
#[test]
fn polls_follow_each_destinations_negotiated_protocol() {
    let metrics = Arc::new(Metrics::new());
    let mut poller = Poller::new(
        &config(&[
            "--dry-run",
            "--kubelet-url",
            "file://unused.json",
            "--node-name",
            "n1",
        ])
        .poll,
        metrics.clone(),
    )
    .expect("poller");
    let outlet = |url: &str, protocol| {
        Outlet::new(
            Arc::new(Queue::new(Box::new(MemoryBuffer::new(64 << 20)))),
            Negotiated::new(protocol),
            metrics.destination(url),
        )
    };
    let mut outlets = vec![
        outlet("http://two/", Protocol::V2),
        outlet("http://one/", Protocol::V1),
    ];
    let negotiated = outlets[0].negotiated.clone();
    let bytes = capture();
    let first = poller.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
    assert!(first.error.is_none());
    assert!(fan_out(&mut poller, &first, &mut outlets, 2000));
    let two = drain(&outlets[0].queue);
    let one = drain(&outlets[1].queue);
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].protocol, Protocol::V2);
    assert_eq!(two[0].samples as usize, first.points.len());
    assert_eq!((one.len(), one[0].protocol), (1, Protocol::V1));
    let request = decode_v2(&two[0].body).expect("a 2.0 body");
    assert_eq!(request.timeseries.len(), first.points.len());
    let up = request
        .timeseries
        .iter()
        .find(|ts| {
            labels_of(&request, ts)
                .expect("refs")
                .contains(&("__name__", "up"))
        })
        .expect("up is sent");
    assert_eq!(up.samples[0].value, 1.0);
    assert_eq!(up.samples[0].timestamp, 1_800_000_000_000);
    assert!(labels_of(&request, up)
        .expect("refs")
        .contains(&("node", "n1")));
    let v1 = decode_v1(&one[0].body).expect("a 1.0 body");
    assert_eq!(v1.timeseries.len(), first.points.len());
    for (o, name) in outlets.iter().zip(["http://two/", "http://one/"]) {
        assert_eq!(o.metrics.url(), name);
        assert_eq!(o.metrics.samples_queued.get(), first.points.len() as u64);
    }

    // The first destination's sender sees a receiver that does not take 2.0: from the next
    // poll on, 1.0 for it.
    assert_eq!(
        negotiated.fall_back_to_v1(),
        Switch::Switched,
        "the first fallback changes it"
    );
    assert_eq!(
        outlets[0].negotiated.fall_back_to_v1(),
        Switch::Already,
        "once"
    );
    let second = poller.ingest(Ok(&bytes), 1_800_000_010_000, Instant::now());
    assert!(fan_out(&mut poller, &second, &mut outlets, 2000));
    let two = drain(&outlets[0].queue);
    let one = drain(&outlets[1].queue);
    assert_eq!((two.len(), two[0].protocol), (1, Protocol::V1));
    assert_eq!(
        two[0].body, one[0].body,
        "encoded once, the same body for both"
    );
    let body = decode_v1(&two[0].body).expect("a 1.0 body");
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
    use kubelet_push::testkit::simulator::SimulatedKubelet;
    use std::time::{Duration, SystemTime};

    let poller = || {
        Poller::new(
            &config(&["--dry-run", "--kubelet-url", "file://unused.json"]).poll,
            Arc::new(Metrics::new()),
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
            let mut p1 = poller();
            let mut p2 = poller();
            for p in [&mut p1, &mut p2] {
                p.set_pod_list(pods, vec![("app".into(), "label_app".into())])
                    .expect("pods");
            }
            for (i, bytes) in polls.iter().enumerate() {
                let t = 1_800_000_000_000 + 10_000 * i as i64;
                let o1 = p1.ingest(Ok(bytes), t, Instant::now());
                let o2 = p2.ingest(Ok(bytes), t, Instant::now());
                assert_eq!(o1.points.len(), o2.points.len());
                let r1 = p1.encode_as(Protocol::V1, &o1, max).expect("v1");
                let r2 = p2.encode_as(Protocol::V2, &o2, max).expect("v2");
                let n: usize = r1.iter().map(|r| r.samples as usize).sum();
                let decoded2: usize = r2
                    .iter()
                    .map(|r| decode_v2(&r.body).expect("v2").timeseries.len())
                    .sum();
                let decoded1: usize = r1
                    .iter()
                    .map(|r| decode_v1(&r.body).expect("v1").timeseries.len())
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
