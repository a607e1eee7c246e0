//! Merging Remote Write 2.0 bodies without decoding them into the prost types
//! ([`merge_v2`], for `rewrite::merge`). Each body has its own symbols table, so its series'
//! refs must be mapped into the merged table; everything else in a series (samples,
//! histograms, an exemplar's value and time, a metadata's type) is copied as bytes. One body
//! is held decompressed at a time, and each body's rewritten series are compressed as soon as
//! they are written and kept as snappy elements, then joined behind the symbols block as
//! `wire::concat_snappy` joins blocks: a 2 MiB catch-up request costs about twice its
//! compressed size, not its decoded size (an order of magnitude
//! more: every label of every series becomes a `String`, every sample a struct).
//!
//! The merged request means what the prost-based merge meant, field for field (a test decodes
//! both and compares): symbols interned in the order the bodies name them, `""` first; series
//! in order; label refs, exemplar label refs and metadata help and unit refs mapped; unknown
//! fields left out, as a decode and an encode leave them out.
//!
//! Not here: deciding to merge (`sender`), the 1.0 merge (a plain `wire::concat_snappy`, in
//! `rewrite::merge`), the message's definition (`proto/remote_write_v2.proto`).

use std::collections::HashMap;

use super::wire::{decompress, put_varint, varint_len, WireError};

/// Why bodies cannot be merged; `rewrite::ConvertError` carries each kind as its own.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("series {series}: label ref {reference} is outside the {symbols} symbols")]
    Ref {
        series: usize,
        reference: u32,
        symbols: usize,
    },
    #[error("malformed Remote Write 2.0 body: {0}")]
    Malformed(&'static str),
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Field numbers of `io.prometheus.write.v2` this rewrites.
mod field {
    pub const REQUEST_SYMBOLS: u32 = 4;
    pub const REQUEST_TIMESERIES: u32 = 5;
    pub const SERIES_LABELS_REFS: u32 = 1;
    pub const SERIES_SAMPLES: u32 = 2;
    pub const SERIES_HISTOGRAMS: u32 = 3;
    pub const SERIES_EXEMPLARS: u32 = 4;
    pub const SERIES_METADATA: u32 = 5;
    pub const EXEMPLAR_LABELS_REFS: u32 = 1;
    pub const METADATA_TYPE: u32 = 1;
    pub const METADATA_HELP_REF: u32 = 3;
    pub const METADATA_UNIT_REF: u32 = 4;
}

/// One field as read: its number, its wire type, its value (a varint's value, or the bytes of
/// the rest), and its bytes whole (key included), for copying it as it is.
struct Field<'a> {
    number: u32,
    wire_type: u8,
    varint: u64,
    value: &'a [u8],
    whole: &'a [u8],
}

/// The fields of one message, in order.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

fn malformed(what: &'static str) -> SpliceError {
    SpliceError::Malformed(what)
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, SpliceError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.at)
                .ok_or(malformed("a varint runs past the end"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("a varint is longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SpliceError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(malformed("a field runs past the end"))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn read(&mut self) -> Result<Field<'a>, SpliceError> {
        let start = self.at;
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(malformed("a field number out of range"))?;
        let wire_type = (key & 7) as u8;
        let (varint, value) = match wire_type {
            VARINT => (self.varint()?, &self.buf[self.at..self.at]),
            I64 => (0, self.take(8)?),
            LEN => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("a length out of range"))?;
                (0, self.take(len)?)
            }
            I32 => (0, self.take(4)?),
            _ => return Err(malformed("an unknown or group wire type")),
        };
        Ok(Field {
            number,
            wire_type,
            varint,
            value,
            whole: &self.buf[start..self.at],
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, SpliceError>;

    fn next(&mut self) -> Option<Self::Item> {
        (self.at < self.buf.len()).then(|| {
            let field = self.read();
            if field.is_err() {
                // Nothing after a malformed field can be read.
                self.at = self.buf.len();
            }
            field
        })
    }
}

fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, u64::from(number) << 3 | u64::from(wire_type));
}

fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The refs of a repeated `uint32` field, packed or not, appended to `refs`.
fn push_refs(field: &Field<'_>, refs: &mut Vec<u32>) -> Result<(), SpliceError> {
    let to_u32 = |v: u64| u32::try_from(v).map_err(|_| malformed("a ref out of range"));
    match field.wire_type {
        VARINT => refs.push(to_u32(field.varint)?),
        LEN => {
            let mut packed = Fields::new(field.value);
            while packed.at < packed.buf.len() {
                refs.push(to_u32(packed.varint()?)?);
            }
        }
        _ => return Err(malformed("refs are neither varints nor packed")),
    }
    Ok(())
}

/// How one body's refs map to the merged table, and the series being rewritten (for errors).
struct Mapping<'m> {
    map: &'m [u32],
    series: usize,
}

impl Mapping<'_> {
    fn get(&self, reference: u32) -> Result<u32, SpliceError> {
        self.map
            .get(reference as usize)
            .copied()
            .ok_or(SpliceError::Ref {
                series: self.series,
                reference,
                symbols: self.map.len(),
            })
    }

    /// `refs` mapped, as one packed field `number` (none when there are no refs).
    fn put_refs(
        &self,
        out: &mut Vec<u8>,
        number: u32,
        refs: &[u32],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SpliceError> {
        if refs.is_empty() {
            return Ok(());
        }
        scratch.clear();
        for &r in refs {
            put_varint(scratch, u64::from(self.get(r)?));
        }
        put_len(out, number, scratch);
        Ok(())
    }
}

/// Buffers reused from series to series.
#[derive(Default)]
struct Scratch {
    refs: Vec<u32>,
    packed: Vec<u8>,
    nested: Vec<u8>,
    series: Vec<u8>,
}

/// Writes the series `bytes` with its refs mapped (labels first, then the other fields in
/// their order) into `scratch.series`.
fn rewrite_series(
    bytes: &[u8],
    mapping: &Mapping<'_>,
    scratch: &mut Scratch,
) -> Result<(), SpliceError> {
    let Scratch {
        refs,
        packed,
        nested,
        series: out,
    } = scratch;
    out.clear();
    refs.clear();
    for field in Fields::new(bytes) {
        let field = field?;
        if field.number == field::SERIES_LABELS_REFS {
            push_refs(&field, refs)?;
        }
    }
    mapping.put_refs(out, field::SERIES_LABELS_REFS, refs, packed)?;
    for field in Fields::new(bytes) {
        let field = field?;
        match (field.number, field.wire_type) {
            (field::SERIES_LABELS_REFS, _) => {}
            (field::SERIES_EXEMPLARS, LEN) => {
                nested.clear();
                refs.clear();
                for inner in Fields::new(field.value) {
                    let inner = inner?;
                    if inner.number == field::EXEMPLAR_LABELS_REFS {
                        push_refs(&inner, refs)?;
                    }
                }
                mapping.put_refs(nested, field::EXEMPLAR_LABELS_REFS, refs, packed)?;
                for inner in Fields::new(field.value) {
                    let inner = inner?;
                    if inner.number != field::EXEMPLAR_LABELS_REFS {
                        nested.extend_from_slice(inner.whole);
                    }
                }
                put_len(out, field::SERIES_EXEMPLARS, nested);
            }
            (field::SERIES_METADATA, LEN) => {
                // proto3 leaves a field at 0 out, and a ref of 0 maps to wherever the body's
                // first symbol went: every ref is read with its default and mapped.
                let (mut kind, mut help, mut unit) = (0u64, 0u32, 0u32);
                let to_u32 = |v: u64| u32::try_from(v).map_err(|_| malformed("a ref out of range"));
                for inner in Fields::new(field.value) {
                    let inner = inner?;
                    match (inner.number, inner.wire_type) {
                        (field::METADATA_TYPE, VARINT) => kind = inner.varint,
                        (field::METADATA_HELP_REF, VARINT) => help = to_u32(inner.varint)?,
                        (field::METADATA_UNIT_REF, VARINT) => unit = to_u32(inner.varint)?,
                        (
                            field::METADATA_TYPE
                            | field::METADATA_HELP_REF
                            | field::METADATA_UNIT_REF,
                            _,
                        ) => return Err(malformed("a metadata field of the wrong wire type")),
                        _ => {}
                    }
                }
                nested.clear();
                for (number, value) in [
                    (field::METADATA_TYPE, kind),
                    (field::METADATA_HELP_REF, u64::from(mapping.get(help)?)),
                    (field::METADATA_UNIT_REF, u64::from(mapping.get(unit)?)),
                ] {
                    if value != 0 {
                        put_key(nested, number, VARINT);
                        put_varint(nested, value);
                    }
                }
                put_len(out, field::SERIES_METADATA, nested);
            }
            // Samples and histograms hold no refs: copied as they are.
            (field::SERIES_SAMPLES | field::SERIES_HISTOGRAMS, LEN) => {
                out.extend_from_slice(field.whole)
            }
            (
                field::SERIES_SAMPLES
                | field::SERIES_HISTOGRAMS
                | field::SERIES_EXEMPLARS
                | field::SERIES_METADATA,
                _,
            ) => return Err(malformed("a series field of the wrong wire type")),
            // Unknown fields: left out, as a decode and an encode would.
            _ => {}
        }
    }
    Ok(())
}

/// Snappy blocks compressed one after another and joined as `wire::concat_snappy` joins them:
/// only their elements are kept, in one buffer, and the length header is written when the
/// total is known. A block compressed into a fresh `Vec` would keep the capacity of its worst
/// case (its input and a sixth) until the end.
struct Blocks {
    encoder: snap::raw::Encoder,
    /// The last block, compressed; reused.
    block: Vec<u8>,
    elements: Vec<u8>,
    total: u64,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks {
            encoder: snap::raw::Encoder::new(),
            block: Vec::new(),
            elements: Vec::new(),
            total: 0,
        }
    }
}

impl Blocks {
    fn push(&mut self, raw: &[u8]) -> Result<(), SpliceError> {
        self.block.resize(snap::raw::max_compress_len(raw.len()), 0);
        let n = self
            .encoder
            .compress(raw, &mut self.block)
            .map_err(WireError::from)?;
        self.elements
            .extend_from_slice(&self.block[varint_len(raw.len() as u64)..n]);
        self.total += raw.len() as u64;
        Ok(())
    }

    /// `first`'s block, then every pushed one, as one block.
    fn finish(mut self, first: &[u8]) -> Result<Vec<u8>, SpliceError> {
        let mut head = Blocks::default();
        head.push(first)?;
        self.block = Vec::new();
        let total = u32::try_from(head.total + self.total).map_err(|_| {
            WireError::from(snap::Error::TooBig {
                given: head.total + self.total,
                max: u64::from(u32::MAX),
            })
        })?;
        let mut out = Vec::with_capacity(5 + head.elements.len() + self.elements.len());
        put_varint(&mut out, u64::from(total));
        out.extend_from_slice(&head.elements);
        out.extend_from_slice(&self.elements);
        Ok(out)
    }
}

/// One 2.0 body (compressed) holding every symbol, series and sample of `bodies`, in order.
pub(super) fn merge_v2<'b>(bodies: impl Iterator<Item = &'b [u8]>) -> Result<Vec<u8>, SpliceError> {
    let mut symbols = Vec::new();
    put_len(&mut symbols, field::REQUEST_SYMBOLS, b"");
    let mut index: HashMap<Vec<u8>, u32> = HashMap::from([(Vec::new(), 0)]);
    let mut blocks = Blocks::default();
    let mut map = Vec::new();
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut series = 0usize;
    for body in bodies {
        let raw = decompress(body).map_err(WireError::from)?;
        map.clear();
        for field in Fields::new(&raw) {
            let field = field?;
            if field.number != field::REQUEST_SYMBOLS {
                continue;
            }
            if field.wire_type != LEN {
                return Err(malformed("a symbol is not length-delimited"));
            }
            std::str::from_utf8(field.value).map_err(|_| malformed("a symbol is not UTF-8"))?;
            let at = match index.get(field.value) {
                Some(&at) => at,
                None => {
                    let at = u32::try_from(index.len())
                        .map_err(|_| malformed("more than 2^32 symbols"))?;
                    index.insert(field.value.to_vec(), at);
                    put_len(&mut symbols, field::REQUEST_SYMBOLS, field.value);
                    at
                }
            };
            map.push(at);
        }
        out.clear();
        for field in Fields::new(&raw) {
            let field = field?;
            match (field.number, field.wire_type) {
                (field::REQUEST_TIMESERIES, LEN) => {
                    let mapping = Mapping { map: &map, series };
                    rewrite_series(field.value, &mapping, &mut scratch)?;
                    put_len(&mut out, field::REQUEST_TIMESERIES, &scratch.series);
                    series += 1;
                }
                (field::REQUEST_TIMESERIES, _) => {
                    return Err(malformed("a series is not length-delimited"))
                }
                _ => {}
            }
        }
        drop(raw);
        blocks.push(&out)?;
    }
    drop((index, out, scratch));
    blocks.finish(&symbols)
}
