//! The Remote Write wire format as every side of it reads and writes it, below any one
//! encoder: protobuf varints (`varint_len`, `put_varint`) and the 2.0 `Metadata.MetricType`
//! values (`metric_type`), which the hand-written encoders and the reference encoders
//! (`reference`) share; snappy decompression bounded by what a body's bytes can hold
//! ([`decompress`]); the 1.0 and 2.0 decoders ([`decode_v1`], [`decode_v2`]) with their one
//! error ([`WireError`]); and reading a 2.0 series' label refs ([`labels_of`], [`RefError`]).
//!
//! Decoding goes through the prost-generated types (`proto`): the agent only decodes a body it
//! rewrites (`rewrite`: 2.0 → 1.0, trimming by age) or that a test inspects
//! (`pipeline::Poller::decoded_series`); the demo receiver and the tests read bodies with it too.
//! Bodies are snappy block format (`snap::raw`), not the framed stream format.
//!
//! Not here: encoding a request (`v1`, `v2`), the request (`request`), rewriting one
//! (`rewrite`), checking a request against the protocol as a receiver does (`testkit::receiver`).

use prost::Message;

use super::proto::{v1, v2};
use crate::metadata::MetricType;

#[inline(always)]
pub(super) fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline(always)]
pub(super) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// `Metadata.MetricType` values.
pub(crate) fn metric_type(kind: MetricType) -> i32 {
    match kind {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

/// Why a body cannot be read (or, rewriting one, compressed again).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decompresses and decodes a 1.0 body.
pub fn decode_v1(body: &[u8]) -> Result<v1::WriteRequest, WireError> {
    let raw = decompress(body)?;
    Ok(v1::WriteRequest::decode(raw.as_slice())?)
}

/// Decompresses and decodes a 2.0 body.
pub fn decode_v2(body: &[u8]) -> Result<v2::Request, WireError> {
    let raw = decompress(body)?;
    Ok(v2::Request::decode(raw.as_slice())?)
}

/// The most output one input byte of a snappy block can give: a 3-byte copy element yields at
/// most 64 bytes, and nothing yields more per byte.
const SNAPPY_MAX_EXPANSION: usize = 22;

/// `snap::raw::Decoder::decompress_vec`, except that the length the body's header claims is
/// checked against what its bytes can hold before it is allocated: `decompress_vec` allocates
/// the claim as is, so five bytes claiming 4 GiB cost a 4 GiB allocation (found by the
/// property tests, `tests/it/prop_bodies.rs`).
pub fn decompress(body: &[u8]) -> Result<Vec<u8>, snap::Error> {
    decompressed_len(body)?;
    snap::raw::Decoder::new().decompress_vec(body)
}

/// The length a snappy `body` says it decompresses to, refused (as [`decompress`] does) when
/// more than its bytes could expand to.
pub fn decompressed_len(body: &[u8]) -> Result<usize, snap::Error> {
    let claimed = snap::raw::decompress_len(body)?;
    let most = body.len().saturating_mul(SNAPPY_MAX_EXPANSION);
    if claimed > most {
        return Err(snap::Error::TooBig {
            given: claimed as u64,
            max: most as u64,
        });
    }
    Ok(claimed)
}

/// One snappy block that decompresses to the concatenation of what `bodies` decompress to,
/// without decompressing them. A block is its decompressed length (a varint) followed by
/// elements, each a literal or a copy of output at most its offset back; a body's copies
/// reach back only into its own output, which stays just as far back when bodies are laid
/// end to end. So the result is the total length followed by every body's elements. Each
/// body's length is checked as [`decompressed_len`] does; a total over the format's 4 GiB
/// limit is refused.
pub fn concat_snappy<'b>(
    bodies: impl Iterator<Item = &'b [u8]> + Clone,
) -> Result<Vec<u8>, snap::Error> {
    let mut total = 0u64;
    let mut elements = 0usize;
    for body in bodies.clone() {
        total += decompressed_len(body)? as u64;
        elements += body.len() - snappy_header_len(body)?;
    }
    let total_u32 = u32::try_from(total).map_err(|_| snap::Error::TooBig {
        given: total,
        max: u64::from(u32::MAX),
    })?;
    let mut out = Vec::with_capacity(varint_len(total) + elements);
    put_varint(&mut out, u64::from(total_u32));
    for body in bodies {
        out.extend_from_slice(&body[snappy_header_len(body)?..]);
    }
    Ok(out)
}

/// The bytes of a snappy block's length header (a varint of at most 5 bytes).
fn snappy_header_len(body: &[u8]) -> Result<usize, snap::Error> {
    body.iter()
        .take(5)
        .position(|b| b & 0x80 == 0)
        .map(|i| i + 1)
        .ok_or(snap::Error::Header)
}

/// Why a 2.0 series' label refs cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("an odd number of label refs ({0})")]
    Odd(usize),
    #[error("label ref {reference} is outside the {symbols} symbols")]
    OutOfRange { reference: u32, symbols: usize },
}

/// A 2.0 series' labels as (name, value) pairs, resolved through the request's symbols, in the
/// order of its refs (empty values kept): the one reading of refs that the conversion, the
/// demo's receiver and the tests share.
pub fn labels_of<'r>(
    request: &'r v2::Request,
    series: &v2::TimeSeries,
) -> Result<Vec<(&'r str, &'r str)>, RefError> {
    let refs = &series.labels_refs;
    if !refs.len().is_multiple_of(2) {
        return Err(RefError::Odd(refs.len()));
    }
    let symbol = |reference: u32| {
        request
            .symbols
            .get(reference as usize)
            .map(String::as_str)
            .ok_or(RefError::OutOfRange {
                reference,
                symbols: request.symbols.len(),
            })
    };
    refs.chunks_exact(2)
        .map(|pair| Ok((symbol(pair[0])?, symbol(pair[1])?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies with repeats near and far (copies with 1-, 2- and 4-byte offsets), literals, an
    /// empty body and length headers of one to three bytes, laid end to end in every order of
    /// a few: what the one block decompresses to is exactly their concatenation.
    #[test]
    fn concatenated_snappy_blocks_decompress_to_the_concatenation() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(), b"x".to_vec()];
        for len in [100, 5_000, 70_000, 300_000] {
            // Runs drawn from a small alphabet with repeats of earlier stretches, so the
            // compressor emits copies, some of them more than 64 KiB back.
            let mut raw = Vec::with_capacity(len);
            while raw.len() < len {
                if raw.len() > 1000 && next() % 3 == 0 {
                    let from = (next() as usize) % (raw.len() - 500);
                    let n = 16 + (next() as usize) % 400;
                    raw.extend_from_within(from..from + n);
                } else {
                    raw.push(b'a' + (next() % 7) as u8);
                }
            }
            raw.truncate(len);
            bodies.push(raw);
        }
        let compressed: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| snap::raw::Encoder::new().compress_vec(b).unwrap())
            .collect();
        for round in 0..20 {
            let picks: Vec<usize> = (0..1 + round % 5)
                .map(|_| (next() as usize) % bodies.len())
                .collect();
            let merged = concat_snappy(picks.iter().map(|&i| &compressed[i][..])).unwrap();
            let want: Vec<u8> = picks.iter().flat_map(|&i| bodies[i].clone()).collect();
            assert_eq!(decompressed_len(&merged).unwrap(), want.len(), "{picks:?}");
            assert!(decompress(&merged).unwrap() == want, "{picks:?}");
        }
    }

    #[test]
    fn concatenating_a_body_without_a_length_header_is_an_error() {
        let good = snap::raw::Encoder::new().compress_vec(b"abc").unwrap();
        for bad in [&[][..], &[0xff; 5][..], &[0x80, 0x80][..]] {
            assert!(
                concat_snappy([&good[..], bad].into_iter()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn varint_lengths_match_prost() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
            (-1i64) as u64,
        ] {
            assert_eq!(varint_len(v), prost::encoding::encoded_len_varint(v), "{v}");
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs);
        }
    }
}
