//! Rewriting request bodies that are already encoded: a Remote Write 2.0 body into the 1.0
//! body that carries the same series and samples ([`to_v1`], for a destination that turned out
//! not to speak 2.0, including requests buffered before that was known), and cutting samples
//! out of a body of either protocol by timestamp ([`retain`], for `--max-sample-age`). It owns
//! what survives a conversion; deciding when to convert, and counting, is the sender's.
//!
//! What a 2.0 → 1.0 conversion keeps and drops:
//! - label refs become `(name, value)` labels, sorted by name byte-wise as 1.0 requires (a
//!   label with an empty value is left out: Prometheus treats it as no label, 1.0 receivers
//!   reject it on the wire);
//! - samples keep value bits (stale markers stay the stale NaN) and timestamps;
//! - metadata (type, help, unit), start (created) timestamps and exemplars are dropped: 1.0
//!   as this agent sends it has no place for them (Prometheus sends 1.0 exemplars only with
//!   `send_exemplars`), and a scraped exemplar is an example, not data; the samples it was
//!   attached to are all kept;
//! - histograms have no form in the 1.0 messages this agent knows, and the agent never sends
//!   them: a body holding them is refused ([`ConvertError::Unconvertible`]) rather than
//!   silently thinned;
//! - a series left without samples is left out.
//!
//! Bodies are snappy block format (`snap::raw`) on both sides; encoding goes through the
//! prost-generated types, which is fine here: this runs once per request that needs it, not
//! once per poll. Not here: reading a body (decompressing, decoding, resolving 2.0 label refs:
//! `wire`), the request it returns (`request`), deciding when to rewrite (`sender`).

use bytes::Bytes;
use prost::Message;

use super::proto::{v1, v2};
use super::request::Request;
use super::splice::SpliceError;
use super::wire::{decode_v1, decode_v2, labels_of, RefError, WireError};
use super::Protocol;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The body cannot be read, or the rewritten one cannot be compressed.
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("series {series}: label ref {reference} is outside the {symbols} symbols")]
    Ref {
        series: usize,
        reference: u32,
        symbols: usize,
    },
    /// A 2.0 body merged on the wire ([`merge`]) that is not the protobuf it should be.
    #[error("malformed Remote Write 2.0 body: {0}")]
    Malformed(&'static str),
    #[error("series {series}: an odd number of label refs ({refs})")]
    OddRefs { series: usize, refs: usize },
    #[error("series {series} holds {what}, which Remote Write 1.0 as sent here cannot carry")]
    Unconvertible { series: usize, what: &'static str },
}

impl From<SpliceError> for ConvertError {
    fn from(error: SpliceError) -> Self {
        match error {
            SpliceError::Wire(e) => ConvertError::Wire(e),
            SpliceError::Ref {
                series,
                reference,
                symbols,
            } => ConvertError::Ref {
                series,
                reference,
                symbols,
            },
            SpliceError::Malformed(what) => ConvertError::Malformed(what),
        }
    }
}

/// The 1.0 request holding exactly the series and samples of `request`.
pub fn v2_to_v1(request: &v2::Request) -> Result<v1::WriteRequest, ConvertError> {
    let mut timeseries = Vec::with_capacity(request.timeseries.len());
    for (i, ts) in request.timeseries.iter().enumerate() {
        if !ts.histograms.is_empty() {
            return Err(ConvertError::Unconvertible {
                series: i,
                what: "histograms",
            });
        }
        if ts.labels_refs.len() % 2 != 0 {
            return Err(ConvertError::OddRefs {
                series: i,
                refs: ts.labels_refs.len(),
            });
        }
        if ts.samples.is_empty() {
            continue;
        }
        let mut labels: Vec<v1::Label> = labels_of(request, ts)
            .map_err(|e| match e {
                RefError::Odd(refs) => ConvertError::OddRefs { series: i, refs },
                RefError::OutOfRange { reference, symbols } => ConvertError::Ref {
                    series: i,
                    reference,
                    symbols,
                },
            })?
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| v1::Label {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect();
        labels.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let samples = ts
            .samples
            .iter()
            .map(|s| v1::Sample {
                value: s.value,
                timestamp: s.timestamp,
            })
            .collect();
        timeseries.push(v1::TimeSeries { labels, samples });
    }
    Ok(v1::WriteRequest { timeseries })
}

/// A 2.0 body as the equivalent 1.0 request, compressed. `samples` may be 0 (every series of
/// the body was empty): there is then nothing to send.
pub fn to_v1(body: &[u8]) -> Result<Request, ConvertError> {
    let request = v2_to_v1(&decode_v2(body)?)?;
    finish_v1(&request)
}

/// The 2.0 request holding exactly the series and samples of `request`: labels interned into
/// one symbols table (the empty string first), in the order the 1.0 series had them; no
/// metadata (1.0 bodies as this agent buffers them carry none) and no start timestamps.
pub fn v1_to_v2(request: &v1::WriteRequest) -> v2::Request {
    let mut symbols = vec![String::new()];
    let mut index: std::collections::HashMap<&str, u32> =
        std::collections::HashMap::from([("", 0)]);
    let mut timeseries = Vec::with_capacity(request.timeseries.len());
    for ts in &request.timeseries {
        if ts.samples.is_empty() {
            continue;
        }
        let mut labels_refs = Vec::with_capacity(ts.labels.len() * 2);
        for label in &ts.labels {
            for text in [label.name.as_str(), label.value.as_str()] {
                let next = u32::try_from(symbols.len()).unwrap_or(u32::MAX);
                let at = *index.entry(text).or_insert_with(|| {
                    symbols.push(text.to_owned());
                    next
                });
                labels_refs.push(at);
            }
        }
        let samples = ts
            .samples
            .iter()
            .map(|s| v2::Sample {
                value: s.value,
                timestamp: s.timestamp,
                start_timestamp: 0,
            })
            .collect();
        timeseries.push(v2::TimeSeries {
            labels_refs,
            samples,
            ..Default::default()
        });
    }
    v2::Request {
        symbols,
        timeseries,
    }
}

/// A 1.0 body as the equivalent 2.0 request, compressed: for a destination that turned out to
/// take only 2.0 (it answered 415 to 1.0), including requests buffered before that was known.
pub fn to_v2(body: &[u8]) -> Result<Request, ConvertError> {
    let request = v1_to_v2(&decode_v1(body)?);
    finish_v2(&request)
}

/// `body` (of `protocol`) with only the samples whose timestamp `keep` accepts, and the number
/// cut. `None` when no sample is left. Series left empty are removed; a 2.0 body keeps its
/// symbols table as it was (unused symbols are allowed, and rebuilding it would cost more than
/// the bytes it saves on a request sent once).
pub fn retain(
    protocol: Protocol,
    body: &[u8],
    keep: impl Fn(i64) -> bool,
) -> Result<(Option<Request>, u64), ConvertError> {
    let mut cut = 0u64;
    let kept = match protocol {
        Protocol::V1 => {
            let mut request = decode_v1(body)?;
            for ts in &mut request.timeseries {
                let before = ts.samples.len();
                ts.samples.retain(|s| keep(s.timestamp));
                cut += (before - ts.samples.len()) as u64;
            }
            request.timeseries.retain(|ts| !ts.samples.is_empty());
            finish_v1(&request)?
        }
        Protocol::V2 => {
            let mut request = decode_v2(body)?;
            for ts in &mut request.timeseries {
                let before = ts.samples.len();
                ts.samples.retain(|s| keep(s.timestamp));
                cut += (before - ts.samples.len()) as u64;
            }
            request
                .timeseries
                .retain(|ts| !ts.samples.is_empty() || !ts.histograms.is_empty());
            finish_v2(&request)?
        }
    };
    Ok(((kept.samples > 0).then_some(kept), cut))
}

/// One request holding every series and sample of `requests` (all of `protocol`), in their
/// order: for catching up, where many polls' requests wait and each would cost a round trip.
/// A series that appears in several requests appears once per request, its samples still
/// oldest first across them, so a receiver without out-of-order ingestion takes it.
///
/// 1.0: the bodies are concatenated, which protobuf reads as one message whose repeated fields
/// hold all of theirs, without being decompressed ([`super::wire::concat_snappy`]): merging
/// costs a copy of the compressed bytes, not a decompression and a compression (for a 2 MiB
/// catch-up request, about 18 MB decompressed and a core's tenth of a second). 2.0: each
/// request's symbols are interned into one table and its refs (labels, help, unit, exemplar
/// labels) mapped to it, on the wire, one body decompressed at a time
/// ([`super::splice::merge_v2`]): no request is decoded.
pub fn merge(protocol: Protocol, requests: &[Request]) -> Result<Request, ConvertError> {
    let (samples, oldest_ms, newest_ms) =
        requests
            .iter()
            .fold((0u32, i64::MAX, i64::MIN), |(n, lo, hi), r| {
                (
                    n.saturating_add(r.samples),
                    lo.min(r.oldest_ms),
                    hi.max(r.newest_ms),
                )
            });
    let body = match protocol {
        Protocol::V1 => super::wire::concat_snappy(requests.iter().map(|r| &r.body[..]))
            .map_err(WireError::from)?,
        Protocol::V2 => super::splice::merge_v2(requests.iter().map(|r| &r.body[..]))?,
    };
    Ok(Request {
        protocol,
        body: Bytes::from(body),
        samples,
        oldest_ms,
        newest_ms,
    })
}

/// A 1.0 request encoded and compressed, with its samples' count and time bounds.
pub(super) fn finish_v1(request: &v1::WriteRequest) -> Result<Request, ConvertError> {
    let times = request.timeseries.iter().flat_map(|ts| &ts.samples);
    finish(Protocol::V1, request, times.map(|s| s.timestamp))
}

/// A 2.0 request encoded and compressed, with its float samples' count and time bounds.
pub(super) fn finish_v2(request: &v2::Request) -> Result<Request, ConvertError> {
    let times = request.timeseries.iter().flat_map(|ts| &ts.samples);
    finish(Protocol::V2, request, times.map(|s| s.timestamp))
}

/// Encodes and compresses `message`, with the sample count and time bounds of `times`.
fn finish(
    protocol: Protocol,
    message: &impl Message,
    times: impl Iterator<Item = i64>,
) -> Result<Request, ConvertError> {
    let (samples, oldest_ms, newest_ms) = times
        .fold((0usize, i64::MAX, i64::MIN), |(n, lo, hi), t| {
            (n + 1, lo.min(t), hi.max(t))
        });
    let body = snap::raw::Encoder::new()
        .compress_vec(&message.encode_to_vec())
        .map_err(WireError::from)?;
    Ok(Request {
        protocol,
        body: Bytes::from(body),
        samples: u32::try_from(samples).unwrap_or(u32::MAX),
        oldest_ms,
        newest_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::STALE_NAN_BITS;

    // The crate's splitmix64, so the property test needs no dependency and every failure is
    // reproducible from its seed.
    use crate::rng::SplitMix64 as Rng;

    /// What a decoded request means, independent of protocol: per series, its labels (as the
    /// 1.0 form orders them) and its samples as (value bits, timestamp).
    type Meaning = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

    /// The meaning of a 2.0 request, computed independently of [`v2_to_v1`]: labels looked up
    /// in a name → value map (so sorting comes from the map, not from the code under test).
    fn meaning_v2(r: &v2::Request) -> Meaning {
        r.timeseries
            .iter()
            .filter(|ts| !ts.samples.is_empty())
            .map(|ts| {
                let labels: std::collections::BTreeMap<Vec<u8>, String> = ts
                    .labels_refs
                    .chunks(2)
                    .map(|p| {
                        (
                            r.symbols[p[0] as usize].as_bytes().to_vec(),
                            r.symbols[p[1] as usize].clone(),
                        )
                    })
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                (
                    labels
                        .into_iter()
                        .map(|(n, v)| (String::from_utf8(n).unwrap(), v))
                        .collect(),
                    ts.samples
                        .iter()
                        .map(|s| (s.value.to_bits(), s.timestamp))
                        .collect(),
                )
            })
            .collect()
    }

    fn meaning_v1(r: &v1::WriteRequest) -> Meaning {
        r.timeseries
            .iter()
            .map(|ts| {
                (
                    ts.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    ts.samples
                        .iter()
                        .map(|s| (s.value.to_bits(), s.timestamp))
                        .collect(),
                )
            })
            .collect()
    }

    /// A random 2.0 request as an encoder might write it: `""` first, symbols shared between
    /// series in random order, refs in random label order, metadata and start timestamps on
    /// some series, stale markers, values of every kind, series without samples.
    fn random_request(rng: &mut Rng) -> v2::Request {
        let pool = [
            "__name__",
            "pod",
            "namespace",
            "container",
            "node",
            "job",
            "instance",
            "Zone",
            "a",
            "b",
            "ü",
            "x-y",
            "interface",
            "device",
            "image",
        ];
        let mut symbols = vec![String::new()];
        let mut index = std::collections::HashMap::from([(String::new(), 0u32)]);
        let mut intern = |s: String, symbols: &mut Vec<String>| -> u32 {
            *index.entry(s.clone()).or_insert_with(|| {
                symbols.push(s);
                (symbols.len() - 1) as u32
            })
        };
        let series = rng.below(12);
        let mut timeseries = Vec::new();
        for _ in 0..series {
            let mut names: Vec<&str> = pool.to_vec();
            // Distinct names per series; a random subset in random order.
            for i in (1..names.len()).rev() {
                names.swap(i, rng.below(i as u64 + 1) as usize);
            }
            names.truncate(1 + rng.below(6) as usize);
            let mut labels_refs = Vec::new();
            for n in names {
                let value = match rng.below(5) {
                    0 => String::new(),
                    1 => pool[rng.below(pool.len() as u64) as usize].to_owned(),
                    _ => format!("v{}", rng.below(20)),
                };
                let n = intern(n.to_owned(), &mut symbols);
                let v = intern(value, &mut symbols);
                labels_refs.extend([n, v]);
            }
            let mut t = 1_700_000_000_000 + rng.below(1_000_000) as i64;
            let samples = (0..rng.below(4))
                .map(|_| {
                    t += 1 + rng.below(20_000) as i64;
                    let value = match rng.below(6) {
                        0 => f64::from_bits(STALE_NAN_BITS),
                        1 => -0.0,
                        2 => f64::INFINITY,
                        3 => rng.next_u64() as f64,
                        _ => f64::from_bits(rng.next_u64() & !(0x7ff << 52)),
                    };
                    let start_timestamp = if rng.below(2) == 0 { 0 } else { t - 5_000 };
                    v2::Sample {
                        value,
                        timestamp: t,
                        start_timestamp,
                    }
                })
                .collect();
            let metadata = (rng.below(2) == 0).then(|| v2::Metadata {
                r#type: 1 + rng.below(2) as i32,
                help_ref: intern(format!("help {}", rng.below(3)), &mut symbols),
                unit_ref: intern("seconds".to_owned(), &mut symbols),
            });
            timeseries.push(v2::TimeSeries {
                labels_refs,
                samples,
                metadata,
                ..Default::default()
            });
        }
        v2::Request {
            symbols,
            timeseries,
        }
    }

    fn compress(m: &impl Message) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&m.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn random_v2_requests_convert_to_the_same_series_and_samples() {
        let mut total_samples = 0;
        let mut stale = 0;
        for seed in 0..500 {
            let mut rng = Rng::new(seed);
            let request = random_request(&mut rng);
            let body = compress(&request);
            // What is on the wire: proto3 leaves out a double equal to its default, and
            // -0.0 == 0.0, so prost sends -0.0 as nothing, which decodes as +0.0.
            let sent = decode_v2(&body).unwrap();
            let converted = to_v1(&body).unwrap();
            assert_eq!(converted.protocol, Protocol::V1);
            let v1 = decode_v1(&converted.body).unwrap();
            assert_eq!(meaning_v1(&v1), meaning_v2(&sent), "seed {seed}");
            let want: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
            assert_eq!(converted.samples as usize, want, "seed {seed}");
            for ts in &v1.timeseries {
                assert!(!ts.samples.is_empty());
                assert!(ts.labels.iter().all(|l| !l.value.is_empty()));
                assert!(
                    ts.labels
                        .windows(2)
                        .all(|p| p[0].name.as_bytes() < p[1].name.as_bytes()),
                    "seed {seed}: labels sorted and unique"
                );
            }
            let times: Vec<i64> = v1
                .timeseries
                .iter()
                .flat_map(|t| &t.samples)
                .map(|s| s.timestamp)
                .collect();
            if let (Some(lo), Some(hi)) = (times.iter().min(), times.iter().max()) {
                assert_eq!((converted.oldest_ms, converted.newest_ms), (*lo, *hi));
            }
            total_samples += want;
            stale += v1
                .timeseries
                .iter()
                .flat_map(|t| &t.samples)
                .filter(|s| s.value.to_bits() == STALE_NAN_BITS)
                .count();
        }
        // The generator really produced what the property is about.
        assert!(total_samples > 2000, "{total_samples}");
        assert!(stale > 200, "{stale}");
    }

    /// 1.0 → 2.0 (for a receiver that takes only 2.0) keeps every series and sample: the
    /// random 2.0 requests, turned into 1.0 and back, mean what they meant, and each 2.0
    /// body is valid (symbols start with "", refs in range and paired, no symbol twice).
    #[test]
    fn v1_requests_convert_to_2_0_with_the_same_series_and_samples() {
        let mut total = 0;
        for seed in 0..500 {
            let mut rng = Rng::new(seed);
            let body = compress(&random_request(&mut rng));
            let v1 = to_v1(&body).unwrap();
            let v2 = to_v2(&v1.body).unwrap();
            assert_eq!(v2.protocol, Protocol::V2);
            assert_eq!(
                (v2.samples, v2.oldest_ms, v2.newest_ms),
                (v1.samples, v1.oldest_ms, v1.newest_ms),
                "seed {seed}"
            );
            let back = decode_v2(&v2.body).unwrap();
            assert_eq!(
                meaning_v2(&back),
                meaning_v1(&decode_v1(&v1.body).unwrap()),
                "seed {seed}"
            );
            assert_eq!(back.symbols[0], "");
            let mut unique = back.symbols.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), back.symbols.len(), "seed {seed}");
            for ts in &back.timeseries {
                assert_eq!(ts.labels_refs.len() % 2, 0);
                assert!(ts
                    .labels_refs
                    .iter()
                    .all(|r| (*r as usize) < back.symbols.len()));
                assert!(ts.metadata.is_none());
            }
            total += v2.samples;
        }
        assert!(total > 2000, "{total}");
    }

    #[test]
    fn a_known_request_converts_to_written_out_labels() {
        let request = v2::Request {
            symbols: [
                "", "__name__", "up", "pod", "web", "job", "kubelet", "help", "seconds",
                "trace_id", "abc",
            ]
            .map(String::from)
            .to_vec(),
            timeseries: vec![v2::TimeSeries {
                // Not in name order: the 1.0 form must be.
                labels_refs: vec![3, 4, 1, 2, 5, 6],
                samples: vec![
                    v2::Sample {
                        value: 1.0,
                        timestamp: 10,
                        start_timestamp: 5,
                    },
                    v2::Sample {
                        value: f64::from_bits(STALE_NAN_BITS),
                        timestamp: 20,
                        start_timestamp: 0,
                    },
                ],
                metadata: Some(v2::Metadata {
                    r#type: 2,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                // Dropped; the samples stay.
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![9, 10],
                    value: 0.5,
                    timestamp: 10,
                }],
                ..Default::default()
            }],
        };
        let v1 = v2_to_v1(&request).unwrap();
        assert_eq!(v1.timeseries.len(), 1);
        let labels: Vec<(&str, &str)> = v1.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("__name__", "up"), ("job", "kubelet"), ("pod", "web")]
        );
        let s = &v1.timeseries[0].samples;
        assert_eq!((s[0].value, s[0].timestamp), (1.0, 10));
        assert_eq!((s[1].value.to_bits(), s[1].timestamp), (STALE_NAN_BITS, 20));
    }

    #[test]
    fn broken_bodies_are_errors_not_panics() {
        let bad_ref = v2::Request {
            symbols: vec![String::new(), "a".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 7],
                samples: vec![v2::Sample::default()],
                ..Default::default()
            }],
        };
        let e = to_v1(&compress(&bad_ref)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "series 0: label ref 7 is outside the 2 symbols"
        );
        let odd = v2::Request {
            symbols: vec![String::new(), "a".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1],
                ..Default::default()
            }],
        };
        assert!(matches!(
            to_v1(&compress(&odd)),
            Err(ConvertError::OddRefs { series: 0, refs: 1 })
        ));
        let histogram = v2::Request {
            symbols: vec![String::new()],
            timeseries: vec![v2::TimeSeries {
                histograms: vec![v2::Histogram::default()],
                ..Default::default()
            }],
        };
        assert!(matches!(
            to_v1(&compress(&histogram)),
            Err(ConvertError::Unconvertible {
                what: "histograms",
                ..
            })
        ));
        assert!(matches!(
            to_v1(b"\xff\xff\xff"),
            Err(ConvertError::Wire(WireError::Snappy(_)))
        ));
    }

    #[test]
    fn retain_cuts_by_timestamp_in_either_protocol() {
        let mut rng = Rng::new(99);
        let mut request = random_request(&mut rng);
        while request
            .timeseries
            .iter()
            .map(|t| t.samples.len())
            .sum::<usize>()
            < 10
        {
            request = random_request(&mut rng);
        }
        let times: Vec<i64> = request
            .timeseries
            .iter()
            .flat_map(|t| &t.samples)
            .map(|s| s.timestamp)
            .collect();
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let limit = sorted[sorted.len() / 2];
        let keep = |t: i64| t >= limit;
        let want_cut = times.iter().filter(|t| !keep(**t)).count() as u64;

        let v2_body = compress(&request);
        // -0.0 goes on the wire as +0.0 (see above): compare with what was sent.
        let request = decode_v2(&v2_body).unwrap();
        let (kept, cut) = retain(Protocol::V2, &v2_body, keep).unwrap();
        let kept = kept.unwrap();
        assert_eq!(cut, want_cut);
        assert_eq!(kept.protocol, Protocol::V2);
        assert_eq!(kept.samples as u64, times.len() as u64 - want_cut);
        assert_eq!(kept.oldest_ms, limit);
        let trimmed = decode_v2(&kept.body).unwrap();
        // Metadata and start timestamps survive a trim (the body stays 2.0).
        let mut want = request.clone();
        for ts in &mut want.timeseries {
            ts.samples.retain(|s| keep(s.timestamp));
        }
        want.timeseries.retain(|ts| !ts.samples.is_empty());
        // Bytes, not values: NaN (the stale marker) is never equal to itself.
        assert_eq!(trimmed.encode_to_vec(), want.encode_to_vec());

        let v1_body = compress(&v2_to_v1(&request).unwrap());
        let (kept1, cut1) = retain(Protocol::V1, &v1_body, keep).unwrap();
        let kept1 = kept1.unwrap();
        assert_eq!(cut1, want_cut);
        assert_eq!(kept1.protocol, Protocol::V1);
        assert_eq!(
            meaning_v1(&decode_v1(&kept1.body).unwrap()),
            meaning_v2(&want)
        );

        let (none, all) = retain(Protocol::V2, &v2_body, |_| false).unwrap();
        assert!(none.is_none());
        assert_eq!(all, times.len() as u64);
    }

    /// Merging keeps every series and sample in order, for both protocols, and for 2.0 the
    /// merged symbols are shared: the same meaning as the requests one after the other.
    #[test]
    fn merged_requests_mean_what_they_meant_one_after_the_other() {
        for seed in 0..200u64 {
            let mut rng = Rng::new(seed);
            // As the wire carries them: prost leaves out a proto3 field at its default, so a
            // value of -0.0 arrives as 0.0 (the hand-written encoders keep the sign).
            let parts: Vec<v2::Request> = (0..1 + rng.below(5))
                .map(|_| v2::Request::decode(random_request(&mut rng).encode_to_vec().as_slice()))
                .collect::<Result<_, _>>()
                .unwrap();
            let as_request = |p: Protocol, body: Vec<u8>, n: usize| Request {
                protocol: p,
                body: Bytes::from(snap::raw::Encoder::new().compress_vec(&body).unwrap()),
                samples: n as u32,
                oldest_ms: 0,
                newest_ms: 0,
            };
            let samples = |r: &v2::Request| r.timeseries.iter().map(|t| t.samples.len()).sum();
            // 2.0 as 2.0.
            let v2_parts: Vec<Request> = parts
                .iter()
                .map(|r| as_request(Protocol::V2, r.encode_to_vec(), samples(r)))
                .collect();
            let merged = merge(Protocol::V2, &v2_parts).unwrap();
            let got = decode_v2(&merged.body).unwrap();
            assert_eq!(
                got.symbols.first().map(String::as_str),
                Some(""),
                "seed {seed}"
            );
            let want: Meaning = parts.iter().flat_map(meaning_v2).collect();
            assert_eq!(meaning_v2(&got), want, "seed {seed}");
            assert_eq!(
                merged.samples as usize,
                parts.iter().map(samples).sum::<usize>()
            );
            // Each symbol once.
            let distinct: std::collections::BTreeSet<&String> = got.symbols.iter().collect();
            assert_eq!(distinct.len(), got.symbols.len(), "seed {seed}");
            // 1.0 as 1.0.
            let v1: Vec<v1::WriteRequest> = parts.iter().map(|r| v2_to_v1(r).unwrap()).collect();
            let v1_parts: Vec<Request> = v1
                .iter()
                .map(|r| as_request(Protocol::V1, r.encode_to_vec(), 0))
                .collect();
            let merged = merge(Protocol::V1, &v1_parts).unwrap();
            let got = decode_v1(&merged.body).unwrap();
            let want: Meaning = v1.iter().flat_map(meaning_v1).collect();
            assert_eq!(meaning_v1(&got), want, "seed {seed}");
        }
    }

    /// The 2.0 merge as it was built before it worked on the wire: decode every body, intern
    /// its symbols, map its refs, encode. The wire merge must give the same message.
    fn merge_v2_decoded(parts: &[v2::Request]) -> v2::Request {
        let mut merged = v2::Request {
            symbols: vec![String::new()],
            timeseries: Vec::new(),
        };
        let mut index = std::collections::HashMap::from([(String::new(), 0u32)]);
        for request in parts {
            let map: Vec<u32> = request
                .symbols
                .iter()
                .map(|symbol| {
                    let next = merged.symbols.len() as u32;
                    *index.entry(symbol.clone()).or_insert_with(|| {
                        merged.symbols.push(symbol.clone());
                        next
                    })
                })
                .collect();
            for ts in &request.timeseries {
                let mut ts = ts.clone();
                let remap = |r: &mut u32| *r = map[*r as usize];
                ts.labels_refs.iter_mut().for_each(remap);
                for e in &mut ts.exemplars {
                    e.labels_refs.iter_mut().for_each(remap);
                }
                if let Some(m) = &mut ts.metadata {
                    remap(&mut m.help_ref);
                    remap(&mut m.unit_ref);
                }
                merged.timeseries.push(ts);
            }
        }
        merged
    }

    /// Random 2.0 requests, some series with exemplars and histograms, some bodies with a
    /// symbols table in another order: the wire merge decodes to exactly the message the
    /// decoding merge built, byte for byte once encoded again.
    #[test]
    fn the_2_0_merge_on_the_wire_gives_the_message_decoding_gave() {
        for seed in 0..300u64 {
            let mut rng = Rng::new(seed);
            let mut parts: Vec<v2::Request> = (0..1 + rng.below(5))
                .map(|_| random_request(&mut rng))
                .collect();
            for part in &mut parts {
                let symbols = part.symbols.len() as u64;
                for ts in &mut part.timeseries {
                    if rng.below(3) == 0 {
                        ts.exemplars.push(v2::Exemplar {
                            labels_refs: vec![rng.below(symbols) as u32, rng.below(symbols) as u32],
                            value: rng.next_u64() as f64,
                            timestamp: rng.below(1 << 40) as i64,
                        });
                    }
                    if rng.below(4) == 0 {
                        ts.samples.clear();
                        ts.histograms.push(v2::Histogram {
                            sum: 12.5,
                            schema: 3,
                            positive_deltas: vec![1, -2, 3],
                            timestamp: 1_700_000_000_000 + rng.below(1000) as i64,
                            count: Some(v2::histogram::Count::CountInt(rng.below(100))),
                            ..Default::default()
                        });
                    }
                    if let Some(m) = &mut ts.metadata {
                        if rng.below(3) == 0 {
                            // A ref of 0 is left out on the wire; it must still be mapped.
                            m.help_ref = 0;
                        }
                    }
                }
                if rng.below(3) == 0 && part.symbols.len() > 2 {
                    // Another table order (symbol 0 stays ""), refs moved with it.
                    let n = part.symbols.len();
                    let perm: Vec<usize> = std::iter::once(0).chain((1..n).rev()).collect();
                    let mut inverse = vec![0u32; n];
                    for (new, &old) in perm.iter().enumerate() {
                        inverse[old] = new as u32;
                    }
                    part.symbols = perm.iter().map(|&i| part.symbols[i].clone()).collect();
                    for ts in &mut part.timeseries {
                        let f = |r: &mut u32| *r = inverse[*r as usize];
                        ts.labels_refs.iter_mut().for_each(f);
                        ts.exemplars
                            .iter_mut()
                            .for_each(|e| e.labels_refs.iter_mut().for_each(f));
                        if let Some(m) = &mut ts.metadata {
                            f(&mut m.help_ref);
                            f(&mut m.unit_ref);
                        }
                    }
                }
            }
            let bodies: Vec<Request> = parts
                .iter()
                .map(|p| Request {
                    protocol: Protocol::V2,
                    body: Bytes::from(compress(p)),
                    samples: 0,
                    oldest_ms: 0,
                    newest_ms: 0,
                })
                .collect();
            let merged = merge(Protocol::V2, &bodies).unwrap();
            let got = decode_v2(&merged.body).unwrap();
            // Bytes, not values: NaN (the stale marker) is never equal to itself.
            assert_eq!(
                got.encode_to_vec(),
                merge_v2_decoded(&parts).encode_to_vec(),
                "seed {seed}"
            );
        }
    }

    /// What the wire merge refuses: a ref outside its body's table (named with the series,
    /// counted across the merged bodies), a truncated body, a field of the wrong wire type.
    #[test]
    fn the_2_0_merge_on_the_wire_refuses_what_does_not_decode() {
        let ok = v2::Request {
            symbols: vec![String::new(), "__name__".into(), "up".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 5,
                    start_timestamp: 0,
                }],
                ..Default::default()
            }],
        };
        let mut bad_ref = ok.clone();
        bad_ref.timeseries[0].labels_refs = vec![1, 7];
        let request = |bytes: Vec<u8>| Request {
            protocol: Protocol::V2,
            body: Bytes::from(snap::raw::Encoder::new().compress_vec(&bytes).unwrap()),
            samples: 1,
            oldest_ms: 5,
            newest_ms: 5,
        };
        let two = [
            request(ok.encode_to_vec()),
            request(bad_ref.encode_to_vec()),
        ];
        match merge(Protocol::V2, &two) {
            Err(ConvertError::Ref {
                series: 1,
                reference: 7,
                symbols: 3,
            }) => {}
            other => panic!("{other:?}"),
        }
        let mut truncated = ok.encode_to_vec();
        truncated.pop();
        assert!(matches!(
            merge(Protocol::V2, &[request(truncated)]),
            Err(ConvertError::Malformed(_))
        ));
        // Field 5 (a series) as a varint.
        assert!(matches!(
            merge(Protocol::V2, &[request(vec![0x28, 0x01])]),
            Err(ConvertError::Malformed(_))
        ));
        // A symbol that is not UTF-8.
        assert!(matches!(
            merge(Protocol::V2, &[request(vec![0x22, 0x01, 0xff])]),
            Err(ConvertError::Malformed(_))
        ));
        let good = merge(Protocol::V2, &[request(ok.encode_to_vec())]).unwrap();
        assert_eq!(decode_v2(&good.body).unwrap(), ok);
    }
}
