//! The Remote Write 1.0 encoder: points of the series model → `prometheus.WriteRequest`
//! protobuf, written by hand into a reused buffer, then snappy-compressed (block format).
//!
//! ```text
//! WriteRequest := { 1: TimeSeries }*                       one per point, in the order given
//! TimeSeries   := { 1: Label }* { 2: Sample }               labels sorted byte-wise by name
//! Label        := { 1: name (string) } { 2: value (string) }
//! Sample       := { 1: value (double) }? { 2: timestamp (int64 varint) }?
//! ```
//!
//! Every field is written exactly as prost writes the generated types (field order, proto3
//! defaults left out: a `0.0` value or a `0` timestamp is not written), so bodies are
//! byte-for-byte the reference encoding (`reference::encode_batches`); the tests compare the
//! two on random series sets.
//!
//! Labels are written straight from the series set's interned strings (`__name__`, the series'
//! own labels without empty values, the common labels, sorted): nothing is allocated per
//! sample, and nothing is cached per series, since a sample is only encoded when it is new
//! (measured in docs/performance.md: the cache cost more memory than it saved time). Not here:
//! which points to send (the series model), batching policy (the caller passes
//! `--max-samples-per-send`), retries, the [`Request`] it produces and the [`Encoder`]
//! interface (`request`), the varint helpers the encoders share and decoding (`wire`).

use bytes::Bytes;

use super::request::{Encoder, Request};
use super::wire::{put_varint, varint_len};
use super::{Protocol, METRIC_NAME_LABEL};
use crate::series::{Point, SeriesId, SeriesSet};

/// Wire type 2 (length-delimited) tags.
const TAG_TIMESERIES: u8 = 1 << 3 | 2;
const TAG_LABEL: u8 = 1 << 3 | 2;
const TAG_LABEL_NAME: u8 = 1 << 3 | 2;
const TAG_LABEL_VALUE: u8 = 2 << 3 | 2;
const TAG_SAMPLE: u8 = 2 << 3 | 2;
/// Wire type 1 (64-bit) and 0 (varint) tags of `Sample`.
const TAG_SAMPLE_VALUE: u8 = 1 << 3 | 1;
const TAG_SAMPLE_TIMESTAMP: u8 = 2 << 3;

pub struct V1Encoder {
    /// The uncompressed request being built. Sized from the last request's bytes per series,
    /// so a large first poll does not overshoot by doubling, and released after a large
    /// encode, so steady polls (a few fresh samples each) do not keep the first poll's peak.
    buf: Vec<u8>,
    /// Uncompressed bytes per series seen last, for sizing `buf`.
    series_bytes: usize,
    snappy: snap::raw::Encoder,
}

/// A `buf` larger than this is not kept between encodes.
const KEEP_BUF: usize = 64 * 1024;

impl Default for V1Encoder {
    fn default() -> Self {
        V1Encoder {
            buf: Vec::new(),
            series_bytes: 256,
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl V1Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compresses `buf` into a body of exactly its compressed size (no slack held by a queued
    /// request).
    fn compress(
        &mut self,
        samples: usize,
        oldest_ms: i64,
        newest_ms: i64,
    ) -> Result<Request, snap::Error> {
        let mut body = vec![0; snap::raw::max_compress_len(self.buf.len())];
        let n = self.snappy.compress(&self.buf, &mut body)?;
        body.truncate(n);
        body.shrink_to_fit();
        self.buf.clear();
        Ok(Request {
            protocol: Protocol::V1,
            body: Bytes::from(body),
            samples: u32::try_from(samples).unwrap_or(u32::MAX),
            oldest_ms,
            newest_ms,
        })
    }
}

impl Encoder for V1Encoder {
    /// 1.0 has no metadata: `catalog` is not read.
    fn encode_in(
        &mut self,
        set: &SeriesSet,
        points: &[Point],
        _catalog: &dyn crate::metadata::Catalog,
        max_samples: usize,
        out: &mut Vec<Request>,
    ) -> Result<(), snap::Error> {
        let max_samples = max_samples.max(1);
        // The common labels are the same on every series: written once here, copied whole.
        let mut common_wire = Vec::new();
        let spans: Vec<std::ops::Range<usize>> = set
            .common()
            .as_slice()
            .iter()
            .map(|(n, v)| {
                let start = common_wire.len();
                write_label(&mut common_wire, &Label::new(n, v));
                start..common_wire.len()
            })
            .collect();
        let common: Vec<Label<'_>> = set
            .common()
            .as_slice()
            .iter()
            .zip(spans)
            .map(|((n, v), span)| Label {
                wire: &common_wire[span],
                ..Label::new(n, v)
            })
            .collect();
        // Scratch lists for the whole call: ordering a series' labels allocates nothing.
        let mut own: Vec<Label<'_>> = Vec::with_capacity(16);
        let mut pairs: Vec<Label<'_>> = Vec::with_capacity(16 + common.len());
        self.buf.clear();
        for chunk in points.chunks(max_samples) {
            let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
            self.buf
                .reserve_exact(chunk.len().saturating_mul(self.series_bytes + 16));
            for p in chunk {
                oldest = oldest.min(p.timestamp_ms);
                newest = newest.max(p.timestamp_ms);
                sorted_labels(set, p.id, &common, &mut own, &mut pairs);
                write_series(&mut self.buf, &pairs, p.value, p.timestamp_ms);
            }
            self.series_bytes = self.buf.len() / chunk.len();
            out.push(self.compress(chunk.len(), oldest, newest)?);
        }
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// One label to write, with the length of its `Label` message.
#[derive(Clone, Copy)]
struct Label<'a> {
    name: &'a str,
    value: &'a str,
    len: usize,
    /// The whole `Label` field (tag, length, message) when written already: a common label.
    wire: &'a [u8],
}

impl<'a> Label<'a> {
    #[inline]
    fn new(name: &'a str, value: &'a str) -> Self {
        let mut len = 0;
        if !name.is_empty() {
            len += 1 + varint_len(name.len() as u64) + name.len();
        }
        if !value.is_empty() {
            len += 1 + varint_len(value.len() as u64) + value.len();
        }
        Label {
            name,
            value,
            len,
            wire: &[],
        }
    }
}

/// The labels series `id` is sent with: `__name__` and its labels with a value (sorted here:
/// a handful), merged with the common labels (sorted once, at start-up), in byte-wise name
/// order as receivers require.
fn sorted_labels<'a>(
    set: &'a SeriesSet,
    id: SeriesId,
    common: &'a [Label<'a>],
    own: &mut Vec<Label<'a>>,
    out: &mut Vec<Label<'a>>,
) {
    own.clear();
    own.push(Label::new(METRIC_NAME_LABEL, set.name(id)));
    own.extend(
        set.labels(id)
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| Label::new(n, v)),
    );
    own.sort_unstable_by(|a, b| name_order(a.name, b.name));
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < own.len() && j < common.len() {
        if name_order(own[i].name, common[j].name).is_le() {
            out.push(own[i]);
            i += 1;
        } else {
            out.push(common[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&own[i..]);
    out.extend_from_slice(&common[j..]);
}

/// One `Label` field of a `TimeSeries`: tag, length, name and value.
#[inline]
fn write_label(buf: &mut Vec<u8>, l: &Label<'_>) {
    buf.push(TAG_LABEL);
    put_varint(buf, l.len as u64);
    if !l.name.is_empty() {
        buf.push(TAG_LABEL_NAME);
        put_varint(buf, l.name.len() as u64);
        buf.extend_from_slice(l.name.as_bytes());
    }
    if !l.value.is_empty() {
        buf.push(TAG_LABEL_VALUE);
        put_varint(buf, l.value.len() as u64);
        buf.extend_from_slice(l.value.as_bytes());
    }
}

/// Byte-wise order of two label names, as receivers require (`str::cmp`). Names mostly differ
/// in their first byte, so that decides first, without the `memcmp` call a slice comparison
/// makes: ordering labels was a tenth of encoding (docs/performance.md, issue 24).
#[inline]
pub(super) fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// One `TimeSeries` with one sample.
fn write_series(buf: &mut Vec<u8>, labels: &[Label<'_>], value: f64, timestamp_ms: i64) {
    let mut sample_len = 0;
    if value != 0.0 {
        sample_len += 9;
    }
    if timestamp_ms != 0 {
        sample_len += 1 + varint_len(timestamp_ms as u64);
    }
    let labels_len: usize = labels
        .iter()
        .map(|l| 1 + varint_len(l.len as u64) + l.len)
        .sum();
    let series_len = labels_len + 1 + varint_len(sample_len as u64) + sample_len;
    buf.push(TAG_TIMESERIES);
    put_varint(buf, series_len as u64);
    for l in labels {
        if l.wire.is_empty() {
            write_label(buf, l);
        } else {
            buf.extend_from_slice(l.wire);
        }
    }
    buf.push(TAG_SAMPLE);
    put_varint(buf, sample_len as u64);
    if value != 0.0 {
        buf.push(TAG_SAMPLE_VALUE);
        buf.extend_from_slice(&value.to_le_bytes());
    }
    if timestamp_ms != 0 {
        buf.push(TAG_SAMPLE_TIMESTAMP);
        // int64 is the two's complement as a 64-bit varint, as prost writes it.
        put_varint(buf, timestamp_ms as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::proto::v1::TimeSeries;
    use crate::remote_write::reference::{encode_batches, time_series};
    use crate::remote_write::wire::decode_v1;
    use crate::rng::SplitMix64;
    use crate::series::{Admit, CommonLabels};

    /// A random series set through the hand-written encoder and through prost: the decoded
    /// messages and the uncompressed bytes must be identical, with label caches exercised by
    /// encoding several polls of the same set.
    #[test]
    fn matches_prost_on_random_series_sets() {
        let mut rng = SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        for case in 0..300 {
            let external: Vec<(String, String)> = (0..rng.below(3))
                .map(|i| (format!("ext{i}_{}", rng.text(3)), rng.text(4)))
                .collect();
            let common = CommonLabels::new(&rng.text(5), &rng.text(6), &external);
            let mut set = SeriesSet::new(common.clone());
            let mut encoder = V1Encoder::new();
            // Label names that cannot collide with the common ones.
            let names = [
                "pod",
                "namespace",
                "container",
                "interface",
                "volume",
                "zz",
                "A",
                "__x",
            ];
            let series: Vec<(String, Vec<(String, String)>)> = (0..1 + rng.below(40))
                .map(|_| {
                    let name = rng.text(12);
                    let n = rng.below(names.len() as u64) as usize;
                    let labels = names[..n]
                        .iter()
                        .map(|l| ((*l).to_owned(), rng.text(6)))
                        .collect();
                    (name, labels)
                })
                .collect();
            for poll in 0..3 {
                set.begin_poll();
                let mut points = Vec::new();
                let mut reference: Vec<TimeSeries> = Vec::new();
                for (name, labels) in &series {
                    let pairs: Vec<(&str, &str)> = labels
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let ts = rng.timestamp();
                    let value = rng.value();
                    // Timestamps only grow per series, except the random extremes; force the
                    // series through with a fresh set where the tracker would hold it back.
                    if let Admit::Send(id) = set.admit(name, &pairs, ts) {
                        points.push(Point {
                            id,
                            value,
                            timestamp_ms: ts,
                            start_ms: 0,
                        });
                        reference.push(time_series(
                            name,
                            pairs.iter().copied(),
                            &common,
                            value,
                            ts,
                        ));
                    }
                }
                let mut stale = Vec::new();
                set.finish_poll(5, |p| stale.push(p));
                for p in &stale {
                    let labels: Vec<(&str, &str)> = set.labels(p.id).collect();
                    reference.push(time_series(
                        set.name(p.id),
                        labels,
                        &common,
                        p.value,
                        p.timestamp_ms,
                    ));
                }
                points.extend(stale);
                let max = 1 + rng.below(7) as usize;
                let mut ours = Vec::new();
                encoder.encode(&set, &points, max, &mut ours).unwrap();
                let theirs = encode_batches(reference, max).unwrap();
                assert_eq!(ours.len(), theirs.len(), "case {case} poll {poll}");
                for (a, b) in ours.iter().zip(&theirs) {
                    assert_eq!(
                        (a.samples, a.oldest_ms, a.newest_ms),
                        (b.samples, b.oldest_ms, b.newest_ms)
                    );
                    let raw = |body: &[u8]| snap::raw::Decoder::new().decompress_vec(body).unwrap();
                    assert_eq!(
                        raw(&a.body),
                        raw(&b.body),
                        "case {case} poll {poll}: bytes differ"
                    );
                    let (da, db) = (decode_v1(&a.body).unwrap(), decode_v1(&b.body).unwrap());
                    assert_eq!(da.timeseries.len(), db.timeseries.len());
                    for (x, y) in da.timeseries.iter().zip(&db.timeseries) {
                        assert_eq!(x.labels, y.labels);
                        assert_eq!(x.samples[0].timestamp, y.samples[0].timestamp);
                        assert_eq!(x.samples[0].value.to_bits(), y.samples[0].value.to_bits());
                    }
                }
            }
        }
    }

    #[test]
    fn a_reused_id_gets_fresh_labels() {
        let mut set = SeriesSet::new(CommonLabels::new("j", "n", &[]));
        let mut enc = V1Encoder::new();
        set.begin_poll();
        let Admit::Send(a) = set.admit("m", &[("pod", "a")], 1) else {
            panic!()
        };
        let mut out = Vec::new();
        enc.encode(
            &set,
            &[Point {
                id: a,
                value: 1.0,
                timestamp_ms: 1,
                start_ms: 0,
            }],
            10,
            &mut out,
        )
        .unwrap();
        set.finish_poll(2, |_| {});
        set.begin_poll();
        set.finish_poll(3, |_| {});
        set.begin_poll();
        let Admit::Send(b) = set.admit("m", &[("pod", "b")], 4) else {
            panic!()
        };
        assert_eq!(a, b, "the slot is reused");
        out.clear();
        enc.encode(
            &set,
            &[Point {
                id: b,
                value: 1.0,
                timestamp_ms: 4,
                start_ms: 0,
            }],
            10,
            &mut out,
        )
        .unwrap();
        let ts = &decode_v1(&out[0].body).unwrap().timeseries[0];
        let pod = ts.labels.iter().find(|l| l.name == "pod").unwrap();
        assert_eq!(pod.value, "b");
    }

    #[test]
    fn name_order_is_byte_order() {
        let names = [
            "",
            "a",
            "b",
            "__name__",
            "_",
            "instance",
            "interface",
            "image",
            "i",
            "job",
            "node",
            "name",
            "namespace",
            "pod",
            "metrics_path",
            "container",
            "\u{e9}",
            "Z",
            "zz",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    name_order(a, b),
                    a.as_bytes().cmp(b.as_bytes()),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn no_points_no_request() {
        let set = SeriesSet::default();
        let mut out = Vec::new();
        V1Encoder::new().encode(&set, &[], 10, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
