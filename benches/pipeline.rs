//! The cost of one poll after the bytes arrived, against DESIGN.md's yardstick: merely parsing
//! the same JSON with serde_json. Inputs: the largest real capture (kubelet 1.34, 18 pods, PSI
//! everywhere) and a simulated Windows node at the kubelet's default maximum of 110 pods.
//!
//! `cargo bench --bench pipeline`; results and their reading are in docs/performance.md.
//!
//! `windows-harness-110pods-every-poll-new` is the case of issue 24: the harness's Windows node
//! (`fake_kubelet.py --os windows --pods 110`, dumped once into `benches/fixtures/`), where the
//! kubelet asks the runtime on every call, so every poll is a new summary and every sample of
//! it goes out. Each iteration gets the same document with its `time`s moved one second on.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kubelet_push::cli::Cli;
use kubelet_push::pipeline::Poller;
use kubelet_push::remote_write::Protocol::{V1, V2};
use kubelet_push::telemetry::Metrics;
use kubelet_push::testkit::simulator::SimulatedKubelet;
use kubelet_push::Config;

fn inputs() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let capture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/summaries/nri-kubernetes-testutil-1_34__summary.json"
    ))
    .expect("fixture");
    let started = SystemTime::now() - Duration::from_secs(3600);
    let mut sim = SimulatedKubelet::new(110, 42, started);
    let simulated = sim.summary_json(SystemTime::now()).into_bytes();
    let capture_pods = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pods/nri-kubernetes-testutil-1_34__pods.json"
    ))
    .expect("fixture");
    let simulated_pods = sim.pods_json(SystemTime::now()).into_bytes();
    vec![
        ("linux-1.34-18pods", capture, capture_pods),
        ("windows-sim-110pods", simulated, simulated_pods),
    ]
}

fn poller() -> Poller {
    let cli = Cli::try_parse_from([
        "kubelet-push",
        "--dry-run",
        "--kubelet-url",
        "file://unused.json",
    ])
    .expect("flags");
    let config = Config::from_args(&cli.agent).expect("config");
    Poller::new(&config.poll, Arc::new(Metrics::new())).expect("poller")
}

fn bench(c: &mut Criterion) {
    for (name, bytes, pods) in inputs() {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("serde_json_ignored_any", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&bytes)).expect("json")
            })
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).expect("json"))
        });
        group.bench_function("summary_parse", |b| {
            b.iter(|| kubelet_push::kubelet::summary::parse(black_box(&bytes)).expect("summary"))
        });
        // Where a first poll's time goes: converting the parsed summary to samples (no series
        // set), then parse + convert + admitting every series as new (no encoding).
        group.bench_function("parse_convert", |b| {
            b.iter(|| {
                let summary =
                    kubelet_push::kubelet::summary::parse(black_box(&bytes)).expect("summary");
                let mut n = 0usize;
                kubelet_push::pipeline::convert::convert(
                    &summary,
                    Default::default(),
                    1_800_000_000_000,
                    120_000,
                    &mut |_| n += 1,
                );
                n
            })
        });
        group.bench_function("first_poll_ingest", |b| {
            b.iter_batched(
                poller,
                |mut p| {
                    let out = p.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
                    (out, p)
                },
                BatchSize::LargeInput,
            )
        });
        // A first poll: every series is new and goes out.
        group.bench_function("first_poll_ingest_encode", |b| {
            b.iter_batched(
                poller,
                |mut p| {
                    let out = p.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
                    // Returned, so dropping the poller and its series state is not timed.
                    (p.encode_as(V1, &out, 2000).expect("encode"), p)
                },
                BatchSize::LargeInput,
            )
        });
        // The same first poll encoded as Remote Write 2.0 (symbols, metadata, start times).
        group.bench_function("first_poll_ingest_encode_v2", |b| {
            b.iter_batched(
                poller,
                |mut p| {
                    let out = p.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
                    (p.encode_as(V2, &out, 2000).expect("encode"), p)
                },
                BatchSize::LargeInput,
            )
        });
        // A steady-state poll of an unchanged summary: everything is a repeated timestamp.
        let mut steady = poller();
        let mut t = 1_800_000_000_000;
        group.bench_function("repeat_poll_ingest_encode", |b| {
            b.iter(|| {
                t += 10_000;
                let out = steady.ingest(Ok(&bytes), t, Instant::now());
                steady.encode_as(V1, &out, 2000).expect("encode")
            })
        });
        // The same, with the pod metadata of `/pods` labelling every container (`image`,
        // `name`, one `--pod-label`): the steady state of a real node.
        let mut labelled = poller();
        labelled
            .set_pod_list(&pods, vec![("app".into(), "label_app".into())])
            .expect("pod list");
        group.bench_function("repeat_poll_ingest_encode_with_pods", |b| {
            b.iter(|| {
                t += 10_000;
                let out = labelled.ingest(Ok(&bytes), t, Instant::now());
                labelled.encode_as(V1, &out, 2000).expect("encode")
            })
        });
        let mut steady_v2 = poller();
        group.bench_function("repeat_poll_ingest_encode_v2", |b| {
            b.iter(|| {
                t += 10_000;
                let out = steady_v2.ingest(Ok(&bytes), t, Instant::now());
                steady_v2.encode_as(V2, &out, 2000).expect("encode")
            })
        });
        group.finish();
    }
}

/// `--max-sample-age` on a batch that straddles the limit: the one case that decodes a body.
fn trim(c: &mut Criterion) {
    use kubelet_push::remote_write::reference::{encode_batches, time_series};
    use kubelet_push::remote_write::{CommonLabels, Protocol, Request};

    let now = kubelet_push::clock::now_ms();
    let common = CommonLabels::new("kubelet", "node-1", &[]);
    // Half the samples two hours old, half fresh; a one-hour limit cuts the old half.
    let series = (0..2000)
        .map(|i| {
            let pod = format!("pod-{}", i / 20);
            let labels = [
                ("namespace", "default"),
                ("pod", pod.as_str()),
                ("container", "app"),
            ];
            let age = if i % 2 == 0 { 7_200_000 } else { 0 };
            time_series(
                "container_cpu_usage_seconds_total",
                labels,
                &common,
                f64::from(i),
                now - age,
            )
        })
        .collect();
    let request = encode_batches(series, 2000).expect("encode").remove(0);
    let batch = Request {
        protocol: Protocol::V1,
        body: request.body,
        samples: 2000,
        oldest_ms: request.oldest_ms,
        newest_ms: request.newest_ms,
    };
    c.bench_function("trim_to_age_straddling_2000_samples", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| {
                let (kept, cut) =
                    kubelet_push::sender::trim_to_age(batch, Some(Duration::from_secs(3600)));
                let kept = kept.expect("fresh half kept");
                assert_eq!(cut, 1000);
                assert_eq!(kept.samples, 1000);
                kept
            },
            BatchSize::SmallInput,
        )
    });
}

/// Encoding alone, 1.0 against 2.0, of every series of one poll (a first poll's points, each
/// series new): where the two encoders differ, without the parse and convert they share.
fn encode_only(c: &mut Criterion) {
    for (name, bytes, _) in inputs() {
        let mut group = c.benchmark_group(format!("{name}_encode"));
        for (version, protocol) in [("1", V1), ("2", V2)] {
            let mut p = poller();
            let out = p.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
            group.throughput(Throughput::Elements(out.points.len() as u64));
            group.bench_function(format!("v{version}"), |b| {
                b.iter(|| {
                    p.encode_as(protocol, black_box(&out), 2000)
                        .expect("encode")
                })
            });
        }
        group.finish();
    }
}

/// One poll of the harness's Windows node when every poll is new: the series are known (a
/// steady poller), every `time` moved on, so every sample is sent. Parse, convert, admit,
/// encode and compress, as the agent does between the fetched bytes and the queued body.
fn every_poll_new(c: &mut Criterion) {
    let doc = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/fixtures/fake-kubelet-windows-110pods.json"
    ))
    .expect("fixture");
    let stamped = Restamp::new(doc);
    assert!(
        stamped.at(0).0 == stamped.doc,
        "restamping changed the fixture's own time"
    );
    let mut group = c.benchmark_group("windows-harness-110pods-every-poll-new");
    group.throughput(Throughput::Bytes(stamped.doc.len() as u64));
    for (version, protocol) in [("v1", V1), ("v2", V2)] {
        let mut p = poller();
        let mut second = 0u32;
        let (first, t) = stamped.at(second);
        let warm = p.ingest(Ok(&first), t, Instant::now());
        let sent = warm.points.len();
        group.bench_function(format!("ingest_encode_{version}"), |b| {
            b.iter_batched(
                || {
                    second += 1;
                    stamped.at(second)
                },
                |(doc, t)| {
                    let out = p.ingest(Ok(&doc), t, Instant::now());
                    // Every sample new, or this measures the cheap path.
                    assert!(out.points.len() + 10 >= sent, "a poll repeated timestamps");
                    let requests = p.encode_as(protocol, &out, 2000).expect("encode");
                    (requests, doc)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// A summary whose every `"time"` is one instant (as the fake kubelet writes them), made again
/// with that instant moved on by whole seconds.
struct Restamp {
    doc: Vec<u8>,
    /// Where each `time` value's 20 bytes (`2026-12-07T20:32:22Z`) start.
    at: Vec<usize>,
    /// The fixture's instant in Unix milliseconds.
    base_ms: i64,
}

impl Restamp {
    fn new(doc: Vec<u8>) -> Self {
        let key = b"\"time\": \"";
        let at: Vec<usize> = doc
            .windows(key.len())
            .enumerate()
            .filter(|(_, w)| *w == key)
            .map(|(i, _)| i + key.len())
            .collect();
        let first = std::str::from_utf8(&doc[at[0]..at[0] + 20]).expect("time");
        let base_ms = kubelet_push::kubelet::time::parse_rfc3339_ms(first).expect("time");
        Restamp { doc, at, base_ms }
    }

    /// The document stamped `seconds` after the fixture's instant, and that time in ms.
    fn at(&self, seconds: u32) -> (Vec<u8>, i64) {
        let ms = self.base_ms + i64::from(seconds) * 1000;
        let stamp = kubelet_push::testkit::simulator::rfc3339(
            u64::try_from(ms / 1000).expect("after 1970"),
        );
        let mut doc = self.doc.clone();
        for &i in &self.at {
            doc[i..i + 20].copy_from_slice(stamp.as_bytes());
        }
        (doc, ms)
    }
}

criterion_group!(benches, bench, encode_only, trim, every_poll_new);
criterion_main!(benches);
