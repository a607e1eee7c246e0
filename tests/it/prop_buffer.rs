//! Property tests of the disk buffer's record reader (issue 12): whatever bytes a segment file
//! holds, opening and draining the buffer never panics, never allocates what a length field
//! claims beyond the file's size, and delivers, in order, every intact record that precedes
//! the damage. Cases default to a CI-sized count; `PROPTEST_CASES=N` runs more (see
//! docs/robustness.md).

use std::path::Path;

use bytes::Bytes;
use kubelet_push::buffer::disk::DiskBuffer;
use kubelet_push::buffer::Buffer;
use kubelet_push::remote_write::{Protocol, Request};
use proptest::prelude::*;

use crate::alloc::largest_allocation;

const SEGMENT: &str = "00000000000000000000.seg";
const MAX_BYTES: u64 = 64 << 20;

/// `PROPTEST_CASES` when set (a longer run), otherwise `default`.
pub(crate) fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // CI starts from a clean tree; a failure prints its input, which is what to keep.
        failure_persistence: None,
        // Shrinking a failure of a file-backed case is slow and rarely clearer.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// Opens `dir` and takes every batch out in order, acknowledging each. Errors other than a
/// refusal at open time are failures of the property.
fn open_and_drain(dir: &Path) -> Result<Vec<Request>, TestCaseError> {
    let (mut buffer, _recovery) = match DiskBuffer::open(dir, MAX_BYTES) {
        Ok(b) => b,
        // A header of another version, or an unknown protocol code: refused, touching nothing.
        Err(
            kubelet_push::buffer::BufferError::UnknownFormat { .. }
            | kubelet_push::buffer::BufferError::UnknownProtocol { .. },
        ) => return Ok(Vec::new()),
        Err(e) => return Err(TestCaseError::fail(format!("open: {e}"))),
    };
    let mut out = Vec::new();
    while let Some((seq, batch)) = buffer
        .front()
        .map_err(|e| TestCaseError::fail(format!("front: {e}")))?
    {
        buffer
            .ack(seq)
            .map_err(|e| TestCaseError::fail(format!("ack: {e}")))?;
        out.push(batch);
        prop_assert!(out.len() <= 100_000, "more batches than bytes");
    }
    prop_assert_eq!(buffer.len(), 0);
    Ok(out)
}

fn batch_strategy() -> impl Strategy<Value = Request> {
    (
        prop::bool::ANY,
        prop::collection::vec(any::<u8>(), 0..600),
        any::<u32>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(v2, body, samples, a, b)| Request {
            protocol: if v2 { Protocol::V2 } else { Protocol::V1 },
            body: Bytes::from(body),
            samples,
            oldest_ms: a.min(b),
            newest_ms: a.max(b),
        })
}

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the file at this fraction of its length.
    Truncate(f64),
    /// Flip one bit of the byte at this fraction of the length.
    Flip(f64, u8),
    /// Garbage after the last record (a torn append of random bytes).
    Append(Vec<u8>),
    /// Zeros from this fraction of the length to the end (a file system that extended the
    /// file before the data reached it).
    ZeroFrom(f64),
    /// Zeros after the last record.
    AppendZeros(usize),
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Damage::Truncate),
        (0.0..1.0f64, 0u8..8).prop_map(|(at, bit)| Damage::Flip(at, bit)),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
        (0.0..1.0f64).prop_map(Damage::ZeroFrom),
        (1usize..5000).prop_map(Damage::AppendZeros),
    ]
}

/// Record `i` of a fresh version-2 segment ends at `ends[i]` (16-byte segment header, then an
/// 8-byte record header and a 22-byte meta before each body).
fn record_ends(batches: &[Request]) -> Vec<usize> {
    let mut end = 16;
    batches
        .iter()
        .map(|b| {
            end += 8 + 22 + b.body.len();
            end
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(256))]

    /// Random bytes as a segment, with or without a valid segment header in front: never a
    /// panic, never an allocation beyond the file's size, and whatever is delivered can be
    /// acknowledged.
    #[test]
    fn random_segment_bytes_never_panic_nor_overallocate(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        with_header in prop::bool::ANY,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut file = Vec::new();
        if with_header {
            // The real header of an empty segment, taken from the buffer itself.
            let (mut b, _) = DiskBuffer::open(dir.path(), MAX_BYTES).unwrap();
            b.push(Request { protocol: Protocol::V1, body: Bytes::new(), samples: 0, oldest_ms: 0, newest_ms: 0 }).unwrap();
            drop(b);
            let written = std::fs::read(dir.path().join(SEGMENT)).unwrap();
            file.extend_from_slice(&written[..16]);
        }
        file.extend_from_slice(&bytes);
        std::fs::write(dir.path().join(SEGMENT), &file).unwrap();
        std::fs::remove_file(dir.path().join("read.pos")).ok();
        let (largest, drained) = largest_allocation(|| open_and_drain(dir.path()));
        let drained = drained?;
        let body_bytes: usize = drained.iter().map(|b| b.body.len()).sum();
        prop_assert!(body_bytes <= file.len());
        // The reader's fixed 64 KiB scan buffer, or a record no larger than the file.
        prop_assert!(largest <= (1 << 17).max(2 * file.len()), "{largest} bytes allocated for a {}-byte file", file.len());
    }

    /// A real segment with one kind of damage: every record that ends before the damage is
    /// delivered, in order, unchanged; nothing is delivered that was not written.
    #[test]
    fn damaged_segments_deliver_every_intact_record_before_the_damage(
        batches in prop::collection::vec(batch_strategy(), 1..12),
        damage in damage_strategy(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = DiskBuffer::open(dir.path(), MAX_BYTES).unwrap();
            for batch in &batches {
                b.push(batch.clone()).unwrap();
            }
        }
        let path = dir.path().join(SEGMENT);
        let mut file = std::fs::read(&path).unwrap();
        let ends = record_ends(&batches);
        prop_assert_eq!(file.len(), *ends.last().unwrap(), "one segment, laid out as documented");
        let at = |f: f64| ((file.len() as f64 * f) as usize).min(file.len() - 1);
        // Records wholly before this offset must come back.
        let intact_before = match &damage {
            Damage::Truncate(f) => { let k = at(*f); file.truncate(k); k }
            Damage::Flip(f, bit) => { let k = at(*f); file[k] ^= 1 << bit; k }
            Damage::Append(g) => { let k = file.len(); file.extend_from_slice(g); k }
            Damage::ZeroFrom(f) => { let k = at(*f); file[k..].fill(0); k }
            Damage::AppendZeros(n) => { let k = file.len(); file.resize(k + n, 0); k }
        };
        std::fs::write(&path, &file).unwrap();
        let (largest, drained) = largest_allocation(|| open_and_drain(dir.path()));
        let drained = drained?;
        let intact = ends.iter().filter(|&&end| end <= intact_before).count();
        prop_assert!(drained.len() >= intact, "{} delivered, {intact} intact before {damage:?}", drained.len());
        prop_assert!(drained.len() <= batches.len());
        prop_assert_eq!(&drained[..], &batches[..drained.len()]);
        match damage {
            // A flipped bit or a cut always takes its record (crc, or a short read) and
            // everything after it in the segment.
            Damage::Flip(..) | Damage::Truncate(_) => prop_assert_eq!(drained.len(), intact),
            Damage::Append(_) | Damage::AppendZeros(_) => prop_assert_eq!(drained.len(), batches.len()),
            Damage::ZeroFrom(_) => {}
        }
        prop_assert!(largest <= (1 <<17).max(2 * file.len()), "{largest} bytes allocated for a {}-byte file", file.len());
    }
}

/// A record whose length field claims up to 4 GiB: the claim is checked against the file's
/// size before anything is allocated, and the record is cut as a torn tail; the record before
/// it is still delivered.
#[test]
fn a_record_claiming_4_gib_is_not_allocated() {
    let kept = Request {
        protocol: Protocol::V1,
        body: Bytes::from_static(b"kept"),
        samples: 1,
        oldest_ms: 5,
        newest_ms: 5,
    };
    for claim in [u32::MAX, 0xFFFF_FFF0, 1 << 31, 64 << 20] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut b, _) = DiskBuffer::open(dir.path(), MAX_BYTES).unwrap();
            b.push(kept.clone()).unwrap();
        }
        let path = dir.path().join(SEGMENT);
        let mut hostile = std::fs::read(&path).unwrap();
        hostile.extend_from_slice(&claim.to_le_bytes());
        hostile.extend_from_slice(&[0xAB; 60]);
        std::fs::write(&path, &hostile).unwrap();
        let (largest, drained) = largest_allocation(|| open_and_drain(dir.path()));
        assert_eq!(drained.unwrap(), vec![kept.clone()], "claim {claim}");
        assert!(
            largest < 1 << 20,
            "claim {claim}: {largest} bytes allocated"
        );
    }
}
