//! Property tests of request decoding and trimming (issue 12): random bytes and real bodies
//! from the encoders with bytes flipped, cut or appended (in the snappy stream, or in the
//! protobuf under it) never panic the decoders (`wire::{decode_v1, decode_v2}`,
//! `rewrite::{to_v1, v2_to_v1, retain}`) nor `sender::trim_to_age`, and no length a body
//! claims is allocated beyond what its bytes can hold; `trim_to_age` keeps exactly the samples
//! newer than the limit. `PROPTEST_CASES=N` runs more cases (see docs/robustness.md).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kubelet_push::remote_write::proto::{v1, v2};
use kubelet_push::remote_write::{rewrite, wire, Protocol, Request};

use proptest::prelude::*;
use prost::Message;

use crate::alloc::largest_allocation;
use crate::prop_buffer::cases;

/// Snappy turns 3 input bytes into at most 64 output bytes; prost's structs cost some dozens of
/// bytes per element of at least 2 input bytes. Anything linear in the input passes; a length
/// taken from the input and allocated as claimed (up to 4 GiB) does not.
fn allocation_bound(input: usize) -> usize {
    (256 << 10) + input * 4096
}

/// Real bodies from the real encoders: one poll of a simulated 10-pod node, in both protocols,
/// in requests of at most 100 samples.
fn real_bodies() -> &'static [(Protocol, Vec<u8>)] {
    static BODIES: OnceLock<Vec<(Protocol, Vec<u8>)>> = OnceLock::new();
    BODIES.get_or_init(|| {
        // A fixed time just before the poll's (1_800_000_000_000): a summary stamped with the
        // real clock would be from the future for it once the real clock passes it.
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 60);
        let bytes = kubelet_push::testkit::simulator::SimulatedKubelet::new(
            10,
            7,
            at - Duration::from_secs(3600),
        )
        .summary_json(at)
        .into_bytes();
        let mut out = Vec::new();
        for protocol in [Protocol::V1, Protocol::V2] {
            let mut poller =
                crate::support::poller(&["--dry-run", "--kubelet-url", "file://unused.json"]);
            let poll = poller.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
            assert!(poll.error.is_none());
            let requests = poller.encode_as(protocol, &poll, 100).unwrap();
            assert!(requests.len() >= 2);
            out.extend(requests.into_iter().map(|r| (protocol, r.body.to_vec())));
        }
        out
    })
}

/// Runs every decoder and the trimmer over `body`; returns the largest allocation made.
fn decode_everything(body: &[u8]) -> usize {
    let (largest, ()) = largest_allocation(|| {
        let _ = wire::decode_v1(body);
        if let Ok(request) = wire::decode_v2(body) {
            let _ = rewrite::v2_to_v1(&request);
        }
        let _ = rewrite::to_v1(body);
        for protocol in [Protocol::V1, Protocol::V2] {
            let _ = rewrite::retain(protocol, body, |t| t % 2 == 0);
            let now = now_ms();
            let batch = Request {
                protocol,
                body: Bytes::copy_from_slice(body),
                samples: 10,
                // Straddles the limit, so the body is decoded.
                oldest_ms: now - 7_200_000,
                newest_ms: now,
            };
            let _ = kubelet_push::sender::trim_to_age(batch, Some(Duration::from_secs(3600)));
        }
    });
    largest
}

use kubelet_push::clock::now_ms;

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Append(Vec<u8>),
    Overwrite(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Append),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, bit) => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        Mutation::Overwrite(i, with) => {
            let at = i.index(bytes.len());
            let end = (at + with.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&with[..end - at]);
        }
    }
}

/// Offsets (ms before now) of generated samples, kept a minute away from the one-hour limit
/// so a test running slowly cannot move a sample across it.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..3_540_000, 3_660_000i64..10_800_000]
}

/// Series of a generated request: per series, sample offsets (distinct, any order) and values.
fn series() -> impl Strategy<Value = Vec<Vec<(i64, f64)>>> {
    prop::collection::vec(
        prop::collection::btree_map(offset(), any::<f64>(), 1..6)
            .prop_map(|m| m.into_iter().rev().collect::<Vec<_>>()),
        1..8,
    )
}

/// (series index, timestamp, value bits) of every sample, sorted.
type Flat = Vec<(usize, i64, u64)>;

/// proto3 leaves a zero `double` out, so -0.0 reaches the receiver as 0.0 (as from Prometheus's
/// own sender): the expectation takes what the wire can carry.
fn wire_bits(value: f64) -> u64 {
    if value == 0.0 {
        0
    } else {
        value.to_bits()
    }
}

fn build(protocol: Protocol, series: &[Vec<(i64, f64)>], now: i64) -> (Request, Flat) {
    let mut flat = Vec::new();
    let body = match protocol {
        Protocol::V1 => {
            let timeseries = series
                .iter()
                .enumerate()
                .map(|(i, samples)| v1::TimeSeries {
                    labels: vec![
                        v1::Label {
                            name: "__name__".into(),
                            value: "m".into(),
                        },
                        v1::Label {
                            name: "i".into(),
                            value: i.to_string(),
                        },
                    ],
                    samples: samples
                        .iter()
                        .map(|&(ago, value)| {
                            flat.push((i, now - ago, wire_bits(value)));
                            v1::Sample {
                                value,
                                timestamp: now - ago,
                            }
                        })
                        .collect(),
                })
                .collect();
            v1::WriteRequest { timeseries }.encode_to_vec()
        }
        Protocol::V2 => {
            let mut symbols = vec![String::new(), "__name__".into(), "m".into(), "i".into()];
            let timeseries = series
                .iter()
                .enumerate()
                .map(|(i, samples)| {
                    symbols.push(i.to_string());
                    v2::TimeSeries {
                        labels_refs: vec![1, 2, 3, symbols.len() as u32 - 1],
                        samples: samples
                            .iter()
                            .map(|&(ago, value)| {
                                flat.push((i, now - ago, wire_bits(value)));
                                v2::Sample {
                                    value,
                                    timestamp: now - ago,
                                    start_timestamp: 0,
                                }
                            })
                            .collect(),
                        ..Default::default()
                    }
                })
                .collect();
            v2::Request {
                symbols,
                timeseries,
            }
            .encode_to_vec()
        }
    };
    flat.sort_unstable();
    let times = flat.iter().map(|&(_, t, _)| t);
    let batch = Request {
        protocol,
        body: snap::raw::Encoder::new()
            .compress_vec(&body)
            .unwrap()
            .into(),
        samples: flat.len() as u32,
        oldest_ms: times.clone().min().unwrap(),
        newest_ms: times.max().unwrap(),
    };
    (batch, flat)
}

/// The samples of a (trimmed) batch, decoded, in the form [`build`] gives.
fn flatten(batch: &Request) -> Flat {
    let mut flat = Vec::new();
    let series_index = |labels: Vec<(&str, &str)>| -> usize {
        let i = labels.iter().find(|(n, _)| *n == "i").unwrap().1;
        i.parse().unwrap()
    };
    match batch.protocol {
        Protocol::V1 => {
            for ts in wire::decode_v1(&batch.body).unwrap().timeseries {
                let i = series_index(
                    ts.labels
                        .iter()
                        .map(|l| (l.name.as_str(), l.value.as_str()))
                        .collect(),
                );
                flat.extend(
                    ts.samples
                        .iter()
                        .map(|s| (i, s.timestamp, s.value.to_bits())),
                );
            }
        }
        Protocol::V2 => {
            let request = wire::decode_v2(&batch.body).unwrap();
            for ts in &request.timeseries {
                let i = series_index(wire::labels_of(&request, ts).unwrap());
                flat.extend(
                    ts.samples
                        .iter()
                        .map(|s| (i, s.timestamp, s.value.to_bits())),
                );
            }
        }
    }
    flat.sort_unstable();
    flat
}

proptest! {
    #![proptest_config(cases(256))]

    /// Random bytes, and random bytes behind a snappy length header claiming up to 4 GiB.
    #[test]
    fn random_bodies_are_errors_not_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        claim in prop::option::of(any::<u32>()),
    ) {
        let mut body = Vec::new();
        if let Some(claim) = claim {
            // The snappy block header: the decompressed length as a varint.
            let mut n = claim;
            while n >= 0x80 {
                body.push((n as u8) | 0x80);
                n >>= 7;
            }
            body.push(n as u8);
        }
        body.extend_from_slice(&bytes);
        let largest = decode_everything(&body);
        prop_assert!(largest <= allocation_bound(body.len()), "{largest} bytes allocated for a {}-byte body", body.len());
    }

    /// Real bodies with their compressed bytes damaged.
    #[test]
    fn damaged_real_bodies_are_errors_not_panics(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let bodies = real_bodies();
        let mut body = bodies[which.index(bodies.len())].1.clone();
        for m in &mutations {
            apply(&mut body, m);
        }
        let largest = decode_everything(&body);
        prop_assert!(largest <= allocation_bound(body.len()), "{largest} bytes allocated for a {}-byte body", body.len());
    }

    /// Real bodies with the protobuf under the snappy layer damaged and compressed again, so
    /// the damage reaches the message decoders and the 2.0 → 1.0 conversion.
    #[test]
    fn damaged_real_messages_are_errors_not_panics(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let bodies = real_bodies();
        let (protocol, body) = &bodies[which.index(bodies.len())];
        let mut raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        for m in &mutations {
            apply(&mut raw, m);
        }
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let largest = decode_everything(&body);
        prop_assert!(largest <= allocation_bound(raw.len()), "{largest} bytes allocated for a {}-byte message", raw.len());
        // What still decodes as 2.0 converts to 1.0 with no more samples than it had.
        if *protocol == Protocol::V2 {
            if let Ok(request) = wire::decode_v2(&body) {
                if let Ok(v1) = rewrite::v2_to_v1(&request) {
                    let before: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
                    let after: usize = v1.timeseries.iter().map(|t| t.samples.len()).sum();
                    prop_assert!(after <= before);
                }
            }
        }
    }

    /// `--max-sample-age 1h`: exactly the samples newer than the limit are kept, in the same
    /// protocol; the rest are counted as dropped; the kept batch's bounds are its samples'.
    #[test]
    fn trimming_keeps_exactly_the_samples_newer_than_the_limit(
        v2 in prop::bool::ANY,
        series in series(),
    ) {
        let protocol = if v2 { Protocol::V2 } else { Protocol::V1 };
        let now = now_ms();
        let (batch, flat) = build(protocol, &series, now);
        let limit = now - 3_600_000;
        let expected: Flat = flat.iter().copied().filter(|&(_, t, _)| t >= limit).collect();
        let (kept, cut) = kubelet_push::sender::trim_to_age(batch, Some(Duration::from_secs(3600)));
        prop_assert_eq!(cut, (flat.len() - expected.len()) as u64);
        match kept {
            None => prop_assert!(expected.is_empty()),
            Some(kept) => {
                prop_assert_eq!(kept.protocol, protocol);
                prop_assert_eq!(kept.samples as usize, expected.len());
                prop_assert_eq!(flatten(&kept), expected.clone());
                prop_assert_eq!(kept.oldest_ms, expected.iter().map(|e| e.1).min().unwrap());
                prop_assert_eq!(kept.newest_ms, expected.iter().map(|e| e.1).max().unwrap());
            }
        }
    }
}
