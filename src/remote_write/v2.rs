//! The Remote Write 2.0 encoder: points of the series model → `io.prometheus.write.v2.Request`
//! (the 2.0-rc.4 schema of `proto/remote_write_v2.proto`), written by hand into reused buffers,
//! then snappy-compressed (block format).
//!
//! ```text
//! Request     := { 4: symbol (string) }* { 5: TimeSeries }*   symbols[0] = "", each string once
//! TimeSeries  := { 1: labels_refs (packed uint32) }           name/value refs, sorted by name
//!                { 2: Sample }                                one per point
//!                { 4: Exemplar }*                             the point's (scraped OpenMetrics)
//!                { 5: Metadata }                              always written, as Prometheus does
//! Sample      := { 1: value (double) }? { 2: timestamp (int64) }? { 3: start_timestamp (int64) }?
//! Exemplar    := { 1: labels_refs (packed uint32) }? { 2: value (double) }? { 3: timestamp }?
//! Metadata    := { 1: type (enum) }? { 3: help_ref }? { 4: unit_ref }?
//! ```
//!
//! Every field is written exactly as prost writes the generated types (field order, proto3
//! defaults left out, packed refs), so bodies are byte-for-byte the reference encoding
//! (`reference::encode_batches_v2`); the tests compare the two on random series sets. Symbols
//! are interned per request in first-use order: for each series its label names and values in
//! label order, then its help text and unit. The table starts empty each request (a request
//! must stand alone), but its memory is kept, so a repeated poll allocates nothing.
//!
//! Series are sent grouped by family (in [`crate::metadata`]'s order, names it does not know
//! last), each family's series in the order given. Every series repeats its family's
//! metadata and name refs, so grouping lets snappy store all but the first as short copies:
//! at 110 pods this cut the body from 0.616x to 0.573x of 1.0's per unique sample
//! (`docs/performance.md`). 1.0 is sent in the order given, where the same grouping made
//! bodies 5 % larger (its repeats are whole label strings, which snappy already finds
//! between a container's series).
//!
//! Metadata comes from [`crate::metadata`] (type, help, unit by metric name); a name it does not
//! know gets an empty `Metadata` (type unspecified). Start timestamps are the points'
//! `start_ms` (0 = unknown, not written).
//!
//! Which start-timestamp field: 2.0-rc.4 (prometheus/docs#2762, Oct 2025) moved the per-series
//! `TimeSeries.created_timestamp` (field 6, rc.1-rc.3) into each sample as
//! `Sample.start_timestamp` (field 3) and reserved field 6. Prometheus receives rc.4 from 3.8.0
//! (prometheus/prometheus#17411, #17564); Mimir handled field 6 from 2.17 (grafana/mimir#11977)
//! and moves to field 3 with field 6 still read (grafana/mimir#16471, #16475). We send rc.4
//! only, so an rc.3 receiver (Prometheus 3.0-3.7) stores the samples and skips the start time
//! as an unknown field: nothing is lost but the start. Stale markers are the 1.0 ones.
//!
//! Not here: which points to send (the series model), choosing 1.0 or 2.0 (`pipeline`, through
//! [`super::Negotiated`]), falling back and converting buffered 2.0 bodies (`sender`,
//! `rewrite`), headers (`client`), the [`Request`] it produces and the [`Encoder`] interface
//! (`request`), the varint helpers and `Metadata.MetricType` values the encoders share and
//! decoding (`wire`).

use std::hash::BuildHasher;

use bytes::Bytes;
use hashbrown::HashTable;

use super::request::{Encoder, Request};
use super::wire::{metric_type, put_varint, varint_len};
use super::{Protocol, METRIC_NAME_LABEL};
use crate::metadata::Catalog;
use crate::series::{Exemplar, Point, SeriesId, SeriesSet};

/// `Request` fields.
const TAG_SYMBOL: u8 = 4 << 3 | 2;
const TAG_TIMESERIES: u8 = 5 << 3 | 2;
/// `TimeSeries` fields.
const TAG_LABELS_REFS: u8 = 1 << 3 | 2;
const TAG_SAMPLE: u8 = 2 << 3 | 2;
const TAG_EXEMPLAR: u8 = 4 << 3 | 2;
const TAG_METADATA: u8 = 5 << 3 | 2;
/// `Sample` fields.
const TAG_SAMPLE_VALUE: u8 = 1 << 3 | 1;
const TAG_SAMPLE_TIMESTAMP: u8 = 2 << 3;
const TAG_SAMPLE_START: u8 = 3 << 3;
/// `Exemplar` fields.
const TAG_EXEMPLAR_LABELS_REFS: u8 = 1 << 3 | 2;
const TAG_EXEMPLAR_VALUE: u8 = 2 << 3 | 1;
const TAG_EXEMPLAR_TIMESTAMP: u8 = 3 << 3;
/// `Metadata` fields.
const TAG_METADATA_TYPE: u8 = 1 << 3;
const TAG_METADATA_HELP: u8 = 3 << 3;
const TAG_METADATA_UNIT: u8 = 4 << 3;

pub struct V2Encoder {
    /// The `TimeSeries` of the request being built; written after the symbols they refer to,
    /// which are only all known at the end.
    series: Vec<u8>,
    /// The whole uncompressed request: symbols, then `series`.
    buf: Vec<u8>,
    symbols: Symbols,
    /// Scratch: the label refs of one series.
    refs: Vec<u32>,
    /// Per request, the refs of each common label's name and value once interned (0: not
    /// yet), and of each family's help and unit (help 0: not yet): every series has them, so
    /// they are looked up once per request, not once per series. First use still interns
    /// them, so the symbol order is the reference's.
    common_refs: Vec<(u32, u32)>,
    family_refs: Vec<(u32, u32)>,
    /// Uncompressed series bytes per point seen last, for sizing `series`.
    series_bytes: usize,
    /// Scratch: the points of one request as (family index, position), in sending order.
    order: Vec<(u32, u32)>,
    /// Scratch: the `Exemplar` messages of one series, tagged, as written in it.
    exemplars: Vec<u8>,
    snappy: snap::raw::Encoder,
}

/// Buffers larger than this are not kept between encodes (see `v1`).
const KEEP_BUF: usize = 64 * 1024;

impl Default for V2Encoder {
    fn default() -> Self {
        V2Encoder {
            series: Vec::new(),
            buf: Vec::new(),
            symbols: Symbols::default(),
            refs: Vec::with_capacity(32),
            common_refs: Vec::new(),
            family_refs: Vec::new(),
            series_bytes: 64,
            order: Vec::new(),
            exemplars: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl V2Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the symbols and the series into `buf` and compresses it into a body of exactly
    /// its compressed size.
    fn finish(
        &mut self,
        samples: usize,
        oldest_ms: i64,
        newest_ms: i64,
    ) -> Result<Request, snap::Error> {
        self.buf.clear();
        self.buf
            .reserve_exact(self.symbols.arena.len() + 3 * self.symbols.len() + self.series.len());
        for s in self.symbols.iter() {
            self.buf.push(TAG_SYMBOL);
            put_varint(&mut self.buf, s.len() as u64);
            self.buf.extend_from_slice(s.as_bytes());
        }
        self.buf.extend_from_slice(&self.series);
        let mut body = vec![0; snap::raw::max_compress_len(self.buf.len())];
        let n = self.snappy.compress(&self.buf, &mut body)?;
        body.truncate(n);
        body.shrink_to_fit();
        self.buf.clear();
        self.series.clear();
        Ok(Request {
            protocol: Protocol::V2,
            body: Bytes::from(body),
            samples: u32::try_from(samples).unwrap_or(u32::MAX),
            oldest_ms,
            newest_ms,
        })
    }
}

impl Encoder for V2Encoder {
    fn encode_in(
        &mut self,
        set: &SeriesSet,
        points: &[Point],
        catalog: &dyn Catalog,
        max_samples: usize,
        out: &mut Vec<Request>,
    ) -> Result<(), snap::Error> {
        self.encode_with_exemplars(set, points, &[], catalog, max_samples, out)
    }
}

impl V2Encoder {
    /// [`Encoder::encode_in`] with `exemplars` of some of the points (in the order of their
    /// points), each written in its point's series after the sample.
    pub fn encode_with_exemplars(
        &mut self,
        set: &SeriesSet,
        points: &[Point],
        exemplars: &[Exemplar],
        catalog: &dyn Catalog,
        max_samples: usize,
        out: &mut Vec<Request>,
    ) -> Result<(), snap::Error> {
        let max_samples = max_samples.max(1);
        let common: Vec<(&str, &str)> = set
            .common()
            .as_slice()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut own: Vec<(&str, &str)> = Vec::with_capacity(16);
        let mut pairs: Vec<Pair<'_>> = Vec::with_capacity(16 + common.len());
        for (c, chunk) in points.chunks(max_samples).enumerate() {
            // The index in `points` of the chunk's first point.
            let first = c.saturating_mul(max_samples);
            self.symbols.clear();
            self.common_refs.clear();
            self.common_refs.resize(common.len(), (0, 0));
            self.family_refs.clear();
            self.family_refs.resize(catalog.len(), (0, 0));
            self.series.clear();
            self.series
                .reserve_exact(chunk.len().saturating_mul(self.series_bytes + 16));
            let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
            // Series of one family go together: their metadata and name refs repeat from one
            // series to the next, which snappy then stores as copies (see the module doc).
            self.order.clear();
            self.order.extend(chunk.iter().enumerate().map(|(at, p)| {
                let family = catalog.index(set.name(p.id)).map_or(u32::MAX, |i| i as u32);
                (family, at as u32)
            }));
            self.order.sort_unstable();
            for &(family, at) in &self.order {
                let p = &chunk[at as usize];
                oldest = oldest.min(p.timestamp_ms);
                newest = newest.max(p.timestamp_ms);
                sorted_labels(set, p.id, &common, &mut own, &mut pairs);
                self.refs.clear();
                for &(n, v, from_common) in &pairs {
                    let (nr, vr) = match self.common_refs.get_mut(from_common) {
                        Some(&mut (nr, vr)) if nr != 0 => (nr, vr),
                        Some(cached) => {
                            *cached = (self.symbols.intern(n), self.symbols.intern(v));
                            *cached
                        }
                        None => (self.symbols.intern(n), self.symbols.intern(v)),
                    };
                    self.refs.push(nr);
                    self.refs.push(vr);
                }
                let meta = match (family != u32::MAX).then_some(family as usize) {
                    Some(i) => {
                        let f = catalog.meta(i);
                        let (help, unit) = match self.family_refs[i] {
                            (0, _) => {
                                let refs =
                                    (self.symbols.intern(f.help), self.symbols.intern(f.unit));
                                self.family_refs[i] = refs;
                                refs
                            }
                            refs => refs,
                        };
                        (metric_type(f.kind), help, unit)
                    }
                    None => (0, 0, 0),
                };
                self.exemplars.clear();
                if !exemplars.is_empty() {
                    let point = first + at as usize;
                    let from = exemplars.partition_point(|e| (e.point as usize) < point);
                    for e in exemplars[from..]
                        .iter()
                        .take_while(|e| e.point as usize == point)
                    {
                        write_exemplar(&mut self.exemplars, &mut self.symbols, &mut self.refs, e);
                    }
                }
                write_series(&mut self.series, &self.refs, p, &self.exemplars, meta);
            }
            self.series_bytes = self.series.len() / chunk.len();
            out.push(self.finish(chunk.len(), oldest, newest)?);
        }
        if self.series.capacity() > KEEP_BUF {
            self.series = Vec::new();
        }
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        }
        self.symbols.shrink(KEEP_BUF);
        Ok(())
    }
}

/// The payload of `refs` as a packed repeated `uint32`: their varints.
fn packed_payload(refs: &[u32]) -> usize {
    refs.iter().map(|&r| varint_len(u64::from(r))).sum()
}

/// The bytes [`put_packed`] writes for a payload of `payload` bytes: none when empty (proto3).
fn packed_len(payload: usize) -> usize {
    if payload == 0 {
        return 0;
    }
    1 + varint_len(payload as u64) + payload
}

/// Writes `refs` (whose [`packed_payload`] is `payload`) as the packed repeated `uint32` field
/// `tag`; nothing when empty.
fn put_packed(buf: &mut Vec<u8>, tag: u8, refs: &[u32], payload: usize) {
    if refs.is_empty() {
        return;
    }
    buf.push(tag);
    put_varint(buf, payload as u64);
    for &r in refs {
        put_varint(buf, u64::from(r));
    }
}

/// Appends exemplar `e` to `out` as a tagged `TimeSeries.exemplars` message, its label names
/// and values interned (after the series' own strings); `refs` is scratch.
fn write_exemplar(out: &mut Vec<u8>, symbols: &mut Symbols, refs: &mut Vec<u32>, e: &Exemplar) {
    let mut labels: Vec<&(String, String)> = e.labels.iter().collect();
    labels.sort_unstable();
    let at = refs.len();
    for (n, v) in labels {
        refs.push(symbols.intern(n));
        refs.push(symbols.intern(v));
    }
    let own = &refs[at..];
    let payload = packed_payload(own);
    let mut len = packed_len(payload);
    if e.value != 0.0 {
        len += 9;
    }
    if e.timestamp_ms != 0 {
        len += 1 + varint_len(e.timestamp_ms as u64);
    }
    out.push(TAG_EXEMPLAR);
    put_varint(out, len as u64);
    put_packed(out, TAG_EXEMPLAR_LABELS_REFS, own, payload);
    if e.value != 0.0 {
        out.push(TAG_EXEMPLAR_VALUE);
        out.extend_from_slice(&e.value.to_le_bytes());
    }
    if e.timestamp_ms != 0 {
        out.push(TAG_EXEMPLAR_TIMESTAMP);
        put_varint(out, e.timestamp_ms as u64);
    }
    refs.truncate(at);
}

/// The strings of one request, each once, in first-use order; `""` is always symbol 0. Kept
/// as one string and spans so the table owns its bytes and keeps its memory between requests
/// (the series set's strings are only borrowed for one call).
struct Symbols {
    arena: String,
    /// Start and end in `arena` of each symbol.
    spans: Vec<(usize, usize)>,
    /// Symbol indexes by the hash of their string.
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl Default for Symbols {
    fn default() -> Self {
        let mut s = Symbols {
            arena: String::new(),
            spans: Vec::new(),
            table: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x7072_7732),
        };
        s.clear();
        s
    }
}

impl Symbols {
    /// Starts a request's table: just `""`.
    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.table.clear();
        self.spans.push((0, 0));
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans
            .iter()
            .map(|&(start, end)| &self.arena[start..end])
    }

    /// The index of `s`, added if new.
    #[inline]
    fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let hash = self.hasher.hash_one(s);
        let (arena, spans) = (&self.arena, &self.spans);
        let found = self.table.find(hash, |&i| {
            let (start, end) = spans[i as usize];
            &arena[start..end] == s
        });
        if let Some(&i) = found {
            return i;
        }
        let i = u32::try_from(self.spans.len()).unwrap_or(u32::MAX);
        let start = self.arena.len();
        self.arena.push_str(s);
        self.spans.push((start, self.arena.len()));
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, i, |&j| {
            let (start, end) = spans[j as usize];
            hasher.hash_one(&arena[start..end])
        });
        i
    }

    /// Lets go of memory a large request grew, so steady small polls do not keep its peak.
    fn shrink(&mut self, keep: usize) {
        if self.arena.capacity() > keep {
            *self = Symbols::default();
        }
    }
}

/// A label to send: name, value, and its index in the common labels (`usize::MAX` for the
/// series' own).
type Pair<'a> = (&'a str, &'a str, usize);

/// The labels series `id` is sent with: `__name__` and its labels with a value, merged with
/// the common labels (already sorted), in byte-wise name order (as `v1` orders them).
fn sorted_labels<'a>(
    set: &'a SeriesSet,
    id: SeriesId,
    common: &[(&'a str, &'a str)],
    own: &mut Vec<(&'a str, &'a str)>,
    out: &mut Vec<Pair<'a>>,
) {
    own.clear();
    own.push((METRIC_NAME_LABEL, set.name(id)));
    own.extend(set.labels(id).filter(|(_, v)| !v.is_empty()));
    own.sort_unstable_by(|a, b| super::v1::name_order(a.0, b.0));
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < own.len() && j < common.len() {
        if super::v1::name_order(own[i].0, common[j].0).is_le() {
            out.push((own[i].0, own[i].1, usize::MAX));
            i += 1;
        } else {
            out.push((common[j].0, common[j].1, j));
            j += 1;
        }
    }
    out.extend(own[i..].iter().map(|&(n, v)| (n, v, usize::MAX)));
    out.extend(
        common[j..]
            .iter()
            .enumerate()
            .map(|(k, &(n, v))| (n, v, j + k)),
    );
}

/// One `TimeSeries` with one sample and its metadata (type, help ref, unit ref).
fn write_series(
    buf: &mut Vec<u8>,
    refs: &[u32],
    p: &Point,
    exemplars: &[u8],
    (kind, help, unit): (i32, u32, u32),
) {
    let refs_len = packed_payload(refs);
    let mut sample_len = 0;
    if p.value != 0.0 {
        sample_len += 9;
    }
    if p.timestamp_ms != 0 {
        sample_len += 1 + varint_len(p.timestamp_ms as u64);
    }
    if p.start_ms != 0 {
        sample_len += 1 + varint_len(p.start_ms as u64);
    }
    let mut meta_len = 0;
    if kind != 0 {
        // An enum is an int32: negative values would take ten bytes, ours are 1 and 2.
        meta_len += 1 + varint_len(i64::from(kind) as u64);
    }
    if help != 0 {
        meta_len += 1 + varint_len(u64::from(help));
    }
    if unit != 0 {
        meta_len += 1 + varint_len(u64::from(unit));
    }
    let mut series_len = 1 + varint_len(sample_len as u64) + sample_len;
    series_len += exemplars.len();
    series_len += 1 + varint_len(meta_len as u64) + meta_len;
    series_len += packed_len(refs_len);
    buf.push(TAG_TIMESERIES);
    put_varint(buf, series_len as u64);
    put_packed(buf, TAG_LABELS_REFS, refs, refs_len);
    buf.push(TAG_SAMPLE);
    put_varint(buf, sample_len as u64);
    if p.value != 0.0 {
        buf.push(TAG_SAMPLE_VALUE);
        buf.extend_from_slice(&p.value.to_le_bytes());
    }
    if p.timestamp_ms != 0 {
        buf.push(TAG_SAMPLE_TIMESTAMP);
        put_varint(buf, p.timestamp_ms as u64);
    }
    if p.start_ms != 0 {
        buf.push(TAG_SAMPLE_START);
        put_varint(buf, p.start_ms as u64);
    }
    buf.extend_from_slice(exemplars);
    buf.push(TAG_METADATA);
    put_varint(buf, meta_len as u64);
    if kind != 0 {
        buf.push(TAG_METADATA_TYPE);
        put_varint(buf, i64::from(kind) as u64);
    }
    if help != 0 {
        buf.push(TAG_METADATA_HELP);
        put_varint(buf, u64::from(help));
    }
    if unit != 0 {
        buf.push(TAG_METADATA_UNIT);
        put_varint(buf, u64::from(unit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetricType;
    use crate::remote_write::proto::v1::TimeSeries;
    use crate::remote_write::reference::{encode_batches_v2, time_series};
    use crate::remote_write::v1::V1Encoder;
    use crate::remote_write::wire::{decode_v1, decode_v2, labels_of};
    use crate::rng::SplitMix64;
    use crate::series::{Admit, CommonLabels, STALE_NAN_BITS};

    /// A random series set through the hand-written encoder and through prost: the
    /// uncompressed bytes and the decoded messages must be identical, over several polls of
    /// the same set (stale markers included) and random request sizes.
    #[test]
    fn matches_prost_on_random_series_sets() {
        let mut rng = SplitMix64::new(0x51_7cc1_b727_220a);
        let mut encoder = V2Encoder::new();
        for case in 0..300 {
            let external: Vec<(String, String)> = (0..rng.below(3))
                .map(|i| (format!("ext{i}_{}", rng.text(3)), rng.text(4)))
                .collect();
            let common = CommonLabels::new(&rng.text(5), &rng.text(6), &external);
            let mut set = SeriesSet::new(common.clone());
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
                    let name = rng.metric_name();
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
                let mut reference: Vec<(TimeSeries, i64)> = Vec::new();
                for (name, labels) in &series {
                    if rng.below(5) == 0 {
                        continue; // gone this poll: a stale marker
                    }
                    let pairs: Vec<(&str, &str)> = labels
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let (ts, value, start) = (rng.timestamp(), rng.value(), rng.start());
                    if let Admit::Send(id) = set.admit(name, &pairs, ts) {
                        points.push(Point {
                            id,
                            value,
                            timestamp_ms: ts,
                            start_ms: start,
                        });
                        let ts = time_series(name, pairs.iter().copied(), &common, value, ts);
                        reference.push((ts, start));
                    }
                }
                let mut stale = Vec::new();
                set.finish_poll(5, |p| stale.push(p));
                for p in &stale {
                    let labels: Vec<(&str, &str)> = set.labels(p.id).collect();
                    let ts = time_series(set.name(p.id), labels, &common, p.value, p.timestamp_ms);
                    reference.push((ts, 0));
                }
                points.extend(stale);
                let max = 1 + rng.below(7) as usize;
                let mut ours = Vec::new();
                encoder.encode(&set, &points, max, &mut ours).unwrap();
                let theirs = encode_batches_v2(reference, max).unwrap();
                assert_eq!(ours.len(), theirs.len(), "case {case} poll {poll}");
                for (a, b) in ours.iter().zip(&theirs) {
                    assert_eq!(a.protocol, Protocol::V2);
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
                    let (da, db) = (decode_v2(&a.body).unwrap(), decode_v2(&b.body).unwrap());
                    assert_eq!(da.symbols, db.symbols);
                    assert_eq!(da.symbols[0], "");
                    for (x, y) in da.timeseries.iter().zip(&db.timeseries) {
                        assert_eq!(x.labels_refs, y.labels_refs);
                        assert_eq!(x.metadata, y.metadata);
                        let (s, t) = (&x.samples[0], &y.samples[0]);
                        assert_eq!(
                            (s.timestamp, s.start_timestamp, s.value.to_bits()),
                            (t.timestamp, t.start_timestamp, t.value.to_bits())
                        );
                    }
                }
            }
        }
    }

    /// One poll of the 1.34 capture: its series set, points and the 2.0 and 1.0 requests.
    fn capture_134() -> (SeriesSet, Vec<Point>) {
        use crate::pipeline::convert::{self, Context, Sample};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/summaries/nri-kubernetes-testutil-1_34__summary.json"
        );
        let bytes = std::fs::read(path).unwrap();
        let summary = crate::kubelet::summary::parse(&bytes).unwrap();
        let mut set = SeriesSet::new(CommonLabels::new(
            "kubelet",
            "datagen-1-34",
            &[("cluster".to_owned(), "edge".to_owned())],
        ));
        set.begin_poll();
        let mut points = Vec::new();
        convert::convert(
            &summary,
            Context::default(),
            0,
            120_000,
            &mut |s: &Sample<'_>| {
                if let Admit::Send(id) = set.admit_in(s.name, s.family, s.labels, s.timestamp_ms) {
                    points.push(Point {
                        id,
                        value: s.value,
                        timestamp_ms: s.timestamp_ms,
                        start_ms: s.start_ms,
                    });
                }
            },
        );
        (set, points)
    }

    #[test]
    fn capture_symbols_refs_metadata_and_start_timestamps() {
        let (set, points) = capture_134();
        assert!(points.len() > 300, "{}", points.len());
        let mut out = Vec::new();
        V2Encoder::new()
            .encode(&set, &points, 2000, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "one request per poll when it fits");
        assert_eq!(out[0].samples as usize, points.len());
        let request = decode_v2(&out[0].body).unwrap();
        assert!(
            decode_v1(&out[0].body).map_or(true, |r| r.timeseries.is_empty()),
            "a 2.0 body read as 1.0 holds no series (fields 4 and 5 are unknown to 1.0)"
        );
        // Symbols: "" first, each string once.
        assert_eq!(request.symbols[0], "");
        let unique: std::collections::HashSet<&String> = request.symbols.iter().collect();
        assert_eq!(unique.len(), request.symbols.len(), "a symbol repeats");
        assert_eq!(request.timeseries.len(), points.len());
        let mut starts = std::collections::HashMap::new();
        for ts in &request.timeseries {
            let labels = labels_of(&request, ts).expect("refs in range and paired");
            let names: Vec<&str> = labels.iter().map(|l| l.0).collect();
            assert!(
                names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()),
                "refs not sorted by label name: {names:?}"
            );
            assert!(labels.iter().all(|(n, v)| !n.is_empty() && !v.is_empty()));
            for common in ["cluster", "instance", "job", "node"] {
                assert!(names.contains(&common), "{common} missing: {names:?}");
            }
            let name = labels.iter().find(|l| l.0 == "__name__").unwrap().1;
            let family = crate::metadata::family(name).expect("every name has a family");
            let meta = ts.metadata.as_ref().expect("metadata written");
            assert_eq!(meta.r#type, metric_type(family.kind), "{name}");
            assert_eq!(request.symbols[meta.help_ref as usize], family.help);
            assert_eq!(
                request.symbols[meta.unit_ref as usize], family.unit,
                "{name}"
            );
            assert_eq!(ts.samples.len(), 1);
            let sample = &ts.samples[0];
            if family.kind == MetricType::Gauge {
                assert_eq!(sample.start_timestamp, 0, "{name}");
            } else {
                assert!(sample.start_timestamp < sample.timestamp, "{name}");
            }
            let get = |n: &str| labels.iter().find(|l| l.0 == n).map_or("", |l| l.1);
            starts.insert(
                (
                    name.to_owned(),
                    get("pod").to_owned(),
                    get("container").to_owned(),
                ),
                sample.start_timestamp,
            );
        }
        // Checked against the capture's startTime fields by hand.
        let start = |name: &str, pod: &str, container: &str| {
            starts[&(name.to_owned(), pod.to_owned(), container.to_owned())]
        };
        let pod = "e2e-daemonset-79ft8";
        // containers[compute-pi-digits].startTime 2026-01-13T18:39:22Z
        assert_eq!(
            start(
                "container_cpu_usage_seconds_total",
                pod,
                "compute-pi-digits"
            ),
            1_768_329_562_000
        );
        // pods[].startTime 2026-01-13T18:38:44Z
        assert_eq!(
            start("pod_cpu_usage_seconds_total", pod, ""),
            1_768_329_524_000
        );
        // node.startTime 2026-01-07T21:35:20Z
        assert_eq!(
            start("node_cpu_usage_seconds_total", "", ""),
            1_767_821_720_000
        );
        assert_eq!(
            start("container_start_time_seconds", pod, "compute-pi-digits"),
            0
        );
    }

    /// The 2.0 body carries the same series, values and timestamps as the 1.0 body of the
    /// same points: only the framing and the order differ (2.0 groups series by family, in
    /// the metadata table's order, and keeps the given order within a family).
    #[test]
    fn capture_carries_what_v1_carries() {
        let (set, points) = capture_134();
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        V1Encoder::new()
            .encode(&set, &points, 500, &mut v1)
            .unwrap();
        V2Encoder::new()
            .encode(&set, &points, 500, &mut v2)
            .unwrap();
        assert_eq!(v1.len(), v2.len());
        assert!(v2.len() > 1, "several requests, each with its own symbols");
        let mut families_seen = 0;
        for (a, b) in v1.iter().zip(&v2) {
            assert_eq!(
                (a.samples, a.oldest_ms, a.newest_ms),
                (b.samples, b.oldest_ms, b.newest_ms)
            );
            let one = decode_v1(&a.body).unwrap();
            let two = decode_v2(&b.body).unwrap();
            assert_eq!(one.timeseries.len(), two.timeseries.len());
            type Key<'a> = Vec<(&'a str, &'a str)>;
            let mut sent_v1: Vec<(Key<'_>, String, i64, u64)> = one
                .timeseries
                .iter()
                .map(|x| {
                    let s = &x.samples[0];
                    let labels: Key<'_> = x
                        .labels
                        .iter()
                        .map(|l| (l.name.as_str(), l.value.as_str()))
                        .collect();
                    let name = labels[0].1.to_owned();
                    (labels, name, s.timestamp, s.value.to_bits())
                })
                .collect();
            let sent_v2: Vec<(Key<'_>, String, i64, u64)> = two
                .timeseries
                .iter()
                .map(|y| {
                    let s = &y.samples[0];
                    let labels = labels_of(&two, y).unwrap();
                    let name = labels[0].1.to_owned();
                    (labels, name, s.timestamp, s.value.to_bits())
                })
                .collect();
            // Grouped by family, in the table's order; within a family, 1.0's order.
            let rank = |name: &str| crate::metadata::index(name).unwrap_or(usize::MAX);
            let ranks: Vec<usize> = sent_v2.iter().map(|s| rank(&s.1)).collect();
            assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
            families_seen += ranks.windows(2).filter(|w| w[0] != w[1]).count() + 1;
            sent_v1.sort_by_key(|s| rank(&s.1));
            assert_eq!(sent_v1, sent_v2);
        }
        assert!(families_seen > 2 * v2.len(), "{families_seen}");
    }

    #[test]
    fn stale_markers_are_the_v1_nan_without_start() {
        let mut set = SeriesSet::new(CommonLabels::new("j", "n", &[]));
        let mut enc = V2Encoder::new();
        set.begin_poll();
        let Admit::Send(id) = set.admit("container_cpu_usage_seconds_total", &[("pod", "a")], 10)
        else {
            panic!("new series")
        };
        set.finish_poll(11, |_| {});
        set.begin_poll();
        let mut stale = Vec::new();
        set.finish_poll(20, |p| stale.push(p));
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].id, id);
        let mut out = Vec::new();
        enc.encode(&set, &stale, 10, &mut out).unwrap();
        let request = decode_v2(&out[0].body).unwrap();
        let sample = &request.timeseries[0].samples[0];
        assert_eq!(sample.value.to_bits(), STALE_NAN_BITS);
        assert_eq!((sample.timestamp, sample.start_timestamp), (20, 0));
        let meta = request.timeseries[0].metadata.as_ref().unwrap();
        assert_eq!(meta.r#type, 1, "a counter");
        assert_eq!(request.symbols[meta.unit_ref as usize], "seconds");
    }

    #[test]
    fn no_points_no_request() {
        let set = SeriesSet::default();
        let mut out = Vec::new();
        V2Encoder::new().encode(&set, &[], 10, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
