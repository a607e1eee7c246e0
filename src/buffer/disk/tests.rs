//! Tests of the durable buffer: the bytes on disk as [`super::format`] draws them, recovery
//! from damage and from older and newer formats, the queue against the memory buffer, and the
//! directory lock. Not here: tests that need a process, a tmpfs or the agent (`tests/it/disk.rs`).

use super::dir::{LOCK, LOCK_PID};
use super::format::{le_i64, le_u32, META_LEN_V1, READ_POS, SEGMENT_MAGIC};
use super::*;
use crate::buffer::memory::MemoryBuffer;
use crate::remote_write::Protocol;
use crate::rng::SplitMix64;
use bytes::Bytes;

/// A batch whose body (`len` bytes) and metadata all derive from `n`.
fn batch(n: u32, len: usize) -> Request {
    Request {
        protocol: Protocol::V1,
        body: (0..len).map(|i| (i as u32 ^ n) as u8).collect(),
        samples: n,
        oldest_ms: -i64::from(n) * 1_000,
        newest_ms: i64::from(n) * 1_000_000_000,
    }
}

/// Bytes one record of a `len`-byte body takes on disk.
fn rec_len(len: usize) -> u64 {
    HEADER_LEN + META_LEN + len as u64
}

/// Everything left, acknowledging it as it goes.
fn drain(b: &mut DiskBuffer) -> Vec<Request> {
    let mut out = Vec::new();
    while let Some((seq, x)) = b.front().unwrap() {
        b.ack(seq).unwrap();
        out.push(x);
    }
    assert_eq!((b.len(), b.bytes(), b.samples()), (0, 0, 0));
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// A version-1 record, as the earlier release wrote it (see the module docs).
fn v1_record(b: &Request) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&b.samples.to_le_bytes());
    payload.extend_from_slice(&b.oldest_ms.to_le_bytes());
    payload.extend_from_slice(&b.newest_ms.to_le_bytes());
    payload.extend_from_slice(&b.body);
    let mut rec = Vec::new();
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    rec.extend_from_slice(&payload);
    rec
}

/// Writes a version-1 segment holding `batches`.
fn write_v1_segment(dir: &Path, first_seq: u64, batches: &[Request]) -> PathBuf {
    let path = dir.join(format!("{first_seq:020}.seg"));
    fs::write(
        &path,
        batches.iter().flat_map(v1_record).collect::<Vec<u8>>(),
    )
    .unwrap();
    path
}

/// Every file in `dir` with its bytes, but the lock file: it holds nothing, and Windows
/// refuses to read a file another handle has locked.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != LOCK)
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

/// Rewrites the payload of the version-2 record at `at` in `path` and fixes its crc, as a
/// newer release writing another protocol or a flag would.
fn rewrite_record(path: &Path, at: usize, edit: impl FnOnce(&mut [u8])) {
    let mut data = fs::read(path).unwrap();
    let len = le_u32(&data, at) as usize;
    let start = at + HEADER_LEN as usize;
    edit(&mut data[start..start + len]);
    let crc = crc32c::crc32c(&data[start..start + len]);
    data[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    fs::write(path, &data).unwrap();
}

#[test]
fn protocol_codes_are_stable() {
    assert_eq!(Protocol::V1.code(), 1);
    assert_eq!(Protocol::from_code(1), Some(Protocol::V1));
    assert_eq!(Protocol::V2.code(), 2);
    assert_eq!(Protocol::from_code(2), Some(Protocol::V2));
    for unknown in [0, 3, 255] {
        assert_eq!(Protocol::from_code(unknown), None);
    }
    assert_eq!(Protocol::V1.content_type(), "application/x-protobuf");
    assert_eq!(Protocol::V1.version(), "0.1.0");
    assert_eq!(
        Protocol::V2.content_type(),
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    assert_eq!(Protocol::V2.version(), "2.0.0");
}

/// The bytes of a version-2 segment, field by field as the module docs draw them.
#[test]
fn version_2_layout_is_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    let x = Request {
        protocol: Protocol::V1,
        body: Bytes::from_static(b"body!"),
        samples: 0x0102_0304,
        oldest_ms: -5,
        newest_ms: 1_700_000_000_123,
    };
    b.push(x).unwrap();
    drop(b);
    let data = fs::read(segment_files(dir.path()).remove(0)).unwrap();
    assert_eq!(data.len(), 16 + 8 + 22 + 5);
    // Segment header.
    assert_eq!(&data[..8], &[0x0B, 0, 0, 0, b'K', b'P', b'B', b'F']);
    assert!(
        u64::from(le_u32(&data, 0)) < META_LEN_V1,
        "a version-1 reader sees an impossible length"
    );
    assert_eq!(le_u32(&data, 8), 2, "version");
    assert_eq!(le_u32(&data, 12), crc32c::crc32c(&data[..12]));
    // Record.
    let rec = &data[16..];
    assert_eq!(le_u32(rec, 0), 22 + 5, "len");
    assert_eq!(le_u32(rec, 4), crc32c::crc32c(&rec[8..]), "crc");
    assert_eq!(rec[8], 1, "protocol: Remote Write 1.0");
    assert_eq!(rec[9], 0, "flags");
    assert_eq!(le_u32(rec, 10), 0x0102_0304, "samples");
    assert_eq!(le_i64(rec, 14), -5, "oldest_ms");
    assert_eq!(le_i64(rec, 22), 1_700_000_000_123, "newest_ms");
    assert_eq!(&rec[30..], b"body!");
}

/// Segments of the earlier format replay (from the persisted read position, in order,
/// as Remote Write 1.0) beside new ones, and are never appended to.
#[test]
fn version_1_segments_replay_and_are_never_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<Request> = (1..=5).map(|n| batch(n, 40 + n as usize)).collect();
    let first = write_v1_segment(dir.path(), 0, &old[..3]);
    let second = write_v1_segment(dir.path(), 3, &old[3..]);
    write_read_pos(dir.path(), 1).unwrap();
    let second_bytes = fs::read(&second).unwrap();

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((rec.batches, rec.samples), (4, 2 + 3 + 4 + 5));
    assert_eq!((rec.truncated_bytes, rec.corrupt_records), (0, 0));
    let size: u64 = old[1..].iter().map(Request::size).sum();
    assert_eq!((b.len(), b.bytes(), b.samples()), (4, size, 14));
    let (seq, x) = b.front().unwrap().unwrap();
    assert_eq!((seq, &x), (1, &old[1]));
    b.ack(seq).unwrap();
    let new: Vec<Request> = (6..=7).map(|n| batch(n, 30)).collect();
    for x in &new {
        b.push(x.clone()).unwrap();
    }
    assert_eq!(fs::read(&second).unwrap(), second_bytes, "untouched");
    let names: Vec<String> = segment_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00000000000000000000.seg",
            "00000000000000000003.seg",
            "00000000000000000005.seg"
        ]
    );
    drop(b);

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 5);
    let mut want = old[2..].to_vec();
    want.extend(new);
    let got = drain(&mut b);
    assert!(got.iter().all(|x| x.protocol == Protocol::V1));
    assert_eq!(got, want);
    assert!(!first.exists() && !second.exists(), "delivered, deleted");
}

/// The old format's damage handling, unchanged: a torn tail or a bad crc cuts the segment
/// there; a damaged first length (even one that looks like the new magic) cuts all of it,
/// and later segments still replay.
#[test]
fn damage_in_a_version_1_segment_is_cut_as_before() {
    let old: Vec<Request> = (1..=3).map(|n| batch(n, 50)).collect();
    let v1_len = (HEADER_LEN + META_LEN_V1 + 50) as usize;
    for damage in ["torn", "crc", "length looks like the magic"] {
        let dir = tempfile::tempdir().unwrap();
        let seg = write_v1_segment(dir.path(), 0, &old);
        let later = write_v1_segment(dir.path(), 3, &[batch(4, 20)]);
        let mut data = fs::read(&seg).unwrap();
        match damage {
            "torn" => data.truncate(data.len() - 3),
            "crc" => data[v1_len + 30] ^= 0x10,
            _ => data[..4].copy_from_slice(&SEGMENT_MAGIC[..4]),
        }
        fs::write(&seg, &data).unwrap();
        let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        let (kept, cut, corrupt) = match damage {
            "torn" => (2, v1_len - 3, 0),
            "crc" => (1, 2 * v1_len, 1),
            _ => (0, 3 * v1_len, 1),
        };
        assert_eq!(
            (rec.truncated_bytes, rec.corrupt_records),
            (cut as u64, corrupt),
            "{damage}"
        );
        if kept > 0 {
            assert_eq!(fs::metadata(&seg).unwrap().len(), (kept * v1_len) as u64);
        } else {
            assert!(!seg.exists(), "cut to nothing, then deleted");
        }
        let mut want = old[..kept].to_vec();
        want.push(batch(4, 20));
        assert_eq!(drain(&mut b), want, "{damage}");
        assert!(
            !seg.exists() && !later.exists(),
            "delivered, deleted, the newest too"
        );
    }
}

/// What a newer release wrote is neither read, nor cut, nor deleted: start-up fails,
/// naming the file and the version.
#[test]
fn an_unknown_format_version_stops_start_up_and_touches_nothing() {
    for version in [1, 3, u32::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        b.push(batch(1, 10)).unwrap();
        drop(b);
        let newer = dir.path().join(format!("{:020}.seg", 1));
        let mut data = segment_header(version).to_vec();
        data.extend_from_slice(b"records laid out some other way");
        fs::write(&newer, &data).unwrap();
        let before = snapshot(dir.path());
        let err = DiskBuffer::open(dir.path(), 1 << 20).err().unwrap();
        assert!(
            matches!(&err, BufferError::UnknownFormat { path, version: v } if *path == newer && *v == version),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&newer.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("format version {version}")), "{msg}");
        assert_eq!(snapshot(dir.path()), before, "nothing changed on disk");
    }
}

/// An intact record of a protocol this release does not know (or with a flag it does not
/// know) stops start-up while it waits to be sent; once acknowledged it is never read.
#[test]
fn an_unknown_protocol_stops_start_up_until_it_was_acknowledged() {
    for (code, flags) in [(0u8, 0u8), (3, 0), (200, 0), (1, 1), (1, 0x80)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=3 {
            b.push(batch(n, 10)).unwrap();
        }
        drop(b);
        let seg = segment_files(dir.path()).remove(0);
        let second = (SEGMENT_HEADER_LEN + rec_len(10)) as usize;
        rewrite_record(&seg, second, |p| {
            p[0] = code;
            p[1] = flags;
        });
        let before = snapshot(dir.path());
        let err = DiskBuffer::open(dir.path(), 1 << 20).err().unwrap();
        assert!(
            matches!(&err, BufferError::UnknownProtocol { path, seq: 1, code: c, flags: f }
                if *path == seg && *c == code && *f == flags),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&seg.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("protocol code {code}")), "{msg}");
        assert_eq!(snapshot(dir.path()), before, "nothing changed on disk");

        // Acknowledged by the release that wrote it: no obstacle.
        write_read_pos(dir.path(), 2).unwrap();
        let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((rec.batches, rec.truncated_bytes), (1, 0));
        assert_eq!(drain(&mut b), [batch(3, 10)]);
    }
}

/// A record rewritten under a running buffer with an unknown code is never sent: it is
/// damage found at run time, and the rest of its segment is skipped.
#[test]
fn an_unknown_protocol_found_at_run_time_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    for n in 1..=2 {
        b.push(batch(n, 10)).unwrap();
    }
    let seg = segment_files(dir.path()).remove(0);
    rewrite_record(&seg, SEGMENT_HEADER_LEN as usize, |p| p[0] = 7);
    assert!(b.front().unwrap().is_none());
    assert_eq!((b.len(), b.samples()), (0, 0));
    b.push(batch(3, 10)).unwrap();
    assert_eq!(drain(&mut b), [batch(3, 10)]);
}

/// A torn or corrupt segment header holds no record: the file is cut to nothing, reported,
/// and the name is reused by the next segment. An empty file is replaced silently.
#[test]
fn damaged_segment_headers_and_empty_files_are_replaced() {
    for damage in ["torn", "crc", "magic", "empty"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=2 {
            b.push(batch(n, 10)).unwrap();
        }
        drop(b);
        let seg = segment_files(dir.path()).remove(0);
        let mut data = fs::read(&seg).unwrap();
        let full = data.len() as u64;
        match damage {
            "torn" => data.truncate(7),
            "crc" => data[9] ^= 1,
            "magic" => data[5] = b'X',
            _ => data.clear(),
        }
        fs::write(&seg, &data).unwrap();
        fs::remove_file(dir.path().join(READ_POS)).unwrap();
        let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        let want = match damage {
            "torn" => (7, 0),
            "empty" => (0, 0),
            _ => (full, 1),
        };
        assert_eq!((rec.truncated_bytes, rec.corrupt_records), want, "{damage}");
        assert_eq!((rec.batches, b.len()), (0, 0), "{damage}");
        assert!(!seg.exists(), "{damage}: holds nothing, so deleted");
        b.push(batch(5, 10)).unwrap();
        drop(b);
        assert_eq!(segment_files(dir.path()), [seg.as_path()], "{damage}");
        let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((rec.truncated_bytes, rec.corrupt_records), (0, 0));
        assert_eq!(drain(&mut b), [batch(5, 10)], "{damage}");
    }
}

#[test]
fn size_of_body_matches_batch_size() {
    let b = batch(3, 77);
    assert_eq!(size_of_body(77), b.size());
}

/// Segment files on disk, and their bytes in all.
fn disk_use(dir: &Path) -> (usize, u64) {
    let files = segment_files(dir);
    let bytes = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    (files.len(), bytes)
}

/// However large the buffer, a segment is closed at 1 MiB (plus the record that crossed
/// it), so a full disk gets space back after delivering at most that much.
#[test]
fn segments_roll_at_1_mib_for_a_large_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    for n in 0..12u32 {
        b.push(batch(n, 100_000)).unwrap();
    }
    let files = segment_files(dir.path());
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // 10 records are 1_000_316 bytes with the header, below 1 MiB; the 11th crosses it.
    assert_eq!(
        names,
        ["00000000000000000000.seg", "00000000000000000011.seg"]
    );
    assert_eq!(
        fs::metadata(&files[0]).unwrap().len(),
        SEGMENT_HEADER_LEN + 11 * rec_len(100_000)
    );
    for _ in 0..11 {
        let (seq, _) = b.front().unwrap().unwrap();
        b.ack(seq).unwrap();
    }
    assert_eq!(segment_files(dir.path()), files[1..], "delivered, deleted");
}

/// A delivered newest segment is deleted at once, however small: the disk holds only what
/// is pending. The next push starts a new segment, and numbering goes on across restarts.
#[test]
fn a_delivered_newest_segment_is_deleted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    for n in 0..3u32 {
        b.push(batch(n, 1000)).unwrap();
        assert_eq!(
            disk_use(dir.path()),
            (1, SEGMENT_HEADER_LEN + rec_len(1000))
        );
        let (seq, x) = b.front().unwrap().unwrap();
        assert_eq!((seq, x), (u64::from(n), batch(n, 1000)));
        b.ack(seq).unwrap();
        assert_eq!(disk_use(dir.path()), (0, 0), "after ack {n}");
    }
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(rec.batches, 0);
    b.push(batch(3, 10)).unwrap();
    drop(b);
    assert_eq!(
        segment_files(dir.path())[0].file_name().unwrap(),
        "00000000000000000003.seg"
    );
    let (mut b, _) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(b.front().unwrap().unwrap(), (3, batch(3, 10)));
}

/// A sender always one request behind never lets the newest segment be all delivered: a
/// push after part of it was delivered starts a new one, and the old one goes with its
/// last pending request. The disk holds what is pending plus at most one delivered
/// record, not a segment's worth (1 MiB here; 8 MiB before the cap).
#[test]
fn a_sender_one_request_behind_keeps_little_delivered_data_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    let body = 10 << 10;
    let mut max_files = 0;
    for n in 0..200u32 {
        b.push(batch(n, body)).unwrap();
        let (files, bytes) = disk_use(dir.path());
        max_files = max_files.max(files);
        assert!(files <= 2, "{files} segments after push {n}");
        let bound = 2 * SEGMENT_HEADER_LEN + 3 * rec_len(body);
        assert!(bytes <= bound, "{bytes} bytes on disk after push {n}");
        if n > 0 {
            let (seq, x) = b.front().unwrap().unwrap();
            assert_eq!((seq, x), (u64::from(n - 1), batch(n - 1, body)));
            b.ack(seq).unwrap();
        }
        assert_eq!(b.len(), 1);
    }
    assert_eq!(max_files, 2, "rolled over");
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(rec.batches, 1);
    assert_eq!(drain(&mut b), [batch(199, body)]);
    assert_eq!(disk_use(dir.path()), (0, 0));
}

#[test]
fn push_reopen_replays_in_order_and_persists_acks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec, Recovery::default());
    let all: Vec<Request> = (1..=10).map(|n| batch(n, 100 + n as usize)).collect();
    for x in &all {
        assert_eq!(b.push(x.clone()).unwrap(), Dropped::default());
    }
    let bytes: u64 = all.iter().map(Request::size).sum();
    assert_eq!((b.len(), b.samples(), b.bytes()), (10, 55, bytes));
    drop(b);

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((rec.batches, rec.samples, rec.truncated_bytes), (10, 55, 0));
    assert_eq!((b.len(), b.samples(), b.bytes()), (10, 55, bytes));
    for _ in 0..4 {
        let (seq, x) = b.front().unwrap().unwrap();
        assert_eq!(b.front().unwrap().unwrap().0, seq, "front only peeks");
        b.ack(seq).unwrap();
        b.ack(seq).unwrap(); // a repeated ack removes nothing more
        assert!(all.contains(&x));
    }
    assert_eq!(b.len(), 6);
    drop(b);

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((rec.batches, rec.samples), (6, 5 + 6 + 7 + 8 + 9 + 10));
    assert_eq!(drain(&mut b), all[4..]);
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 0);
    assert!(b.front().unwrap().is_none());
    // Sequence numbers keep increasing across restarts.
    b.push(batch(11, 5)).unwrap();
    assert_eq!(b.front().unwrap().unwrap().0, 10);
}

#[test]
fn segments_roll_over_and_acknowledged_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 64 KiB; 20 KiB bodies: 4 records per segment.
    let (mut b, _) = DiskBuffer::open(dir.path(), 256 << 10).unwrap();
    let all: Vec<Request> = (0..10).map(|n| batch(n, 20 << 10)).collect();
    for x in &all {
        b.push(x.clone()).unwrap();
    }
    let files = segment_files(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00000000000000000000.seg",
            "00000000000000000004.seg",
            "00000000000000000008.seg"
        ]
    );
    assert_eq!(
        fs::metadata(&files[0]).unwrap().len(),
        SEGMENT_HEADER_LEN + 4 * rec_len(20 << 10)
    );

    for _ in 0..5 {
        let (seq, _) = b.front().unwrap().unwrap();
        b.ack(seq).unwrap();
    }
    assert_eq!(
        segment_files(dir.path()),
        files[1..],
        "first segment deleted"
    );
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 256 << 10).unwrap();
    assert_eq!(rec.batches, 5);
    assert_eq!(drain(&mut b), all[5..]);
    assert!(
        segment_files(dir.path()).is_empty(),
        "every delivered segment is deleted, the newest too"
    );
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    let all: Vec<Request> = (1..=5).map(|n| batch(n, 50)).collect();
    for x in &all {
        b.push(x.clone()).unwrap();
    }
    drop(b);
    let seg = segment_files(dir.path()).remove(0);
    let full = fs::metadata(&seg).unwrap().len();
    assert_eq!(full, SEGMENT_HEADER_LEN + 5 * rec_len(50));
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(full - 3)
        .unwrap();

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 4);
    assert_eq!(rec.truncated_bytes, rec_len(50) - 3);
    assert_eq!(rec.corrupt_records, 0);
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        SEGMENT_HEADER_LEN + 4 * rec_len(50)
    );
    b.push(batch(6, 60)).unwrap();
    b.push(batch(7, 70)).unwrap();
    drop(b);

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((rec.batches, rec.truncated_bytes), (6, 0));
    let mut want = all[..4].to_vec();
    want.extend([batch(6, 60), batch(7, 70)]);
    assert_eq!(drain(&mut b), want);
}

#[test]
fn short_header_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    b.push(batch(1, 10)).unwrap();
    drop(b);
    let seg = segment_files(dir.path()).remove(0);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[1, 2, 3]).unwrap();
    drop(f);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!((rec.batches, rec.truncated_bytes), (1, 3));
    assert_eq!(drain(&mut b), [batch(1, 10)]);
}

#[test]
fn flipped_byte_fails_the_crc_and_cuts_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    for n in 1..=3 {
        b.push(batch(n, 40)).unwrap();
    }
    drop(b);
    let seg = segment_files(dir.path()).remove(0);
    let mut data = fs::read(&seg).unwrap();
    let at = data.len() - 5;
    data[at] ^= 0x40;
    fs::write(&seg, &data).unwrap();

    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.truncated_bytes, rec_len(40));
    assert_eq!((rec.batches, rec.samples), (2, 3));
    assert_eq!(drain(&mut b), [batch(1, 40), batch(2, 40)]);
}

#[test]
fn damage_in_an_older_segment_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 256 << 10).unwrap();
    let all: Vec<Request> = (0..8).map(|n| batch(n, 20 << 10)).collect();
    for x in &all {
        b.push(x.clone()).unwrap();
    }
    drop(b);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    // Corrupt the length of record 2 of the first segment (records 0..4).
    let mut data = fs::read(&files[0]).unwrap();
    let at = (SEGMENT_HEADER_LEN + 2 * rec_len(20 << 10)) as usize;
    data[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&files[0], &data).unwrap();

    let (mut b, rec) = DiskBuffer::open(dir.path(), 256 << 10).unwrap();
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.truncated_bytes, 2 * rec_len(20 << 10));
    let mut want = all[..2].to_vec();
    want.extend_from_slice(&all[4..]);
    assert_eq!(drain(&mut b), want);
}

#[test]
fn garbled_or_missing_read_pos_replays_from_the_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    let all: Vec<Request> = (1..=4).map(|n| batch(n, 30)).collect();
    for x in &all {
        b.push(x.clone()).unwrap();
    }
    for _ in 0..2 {
        let (seq, _) = b.front().unwrap().unwrap();
        b.ack(seq).unwrap();
    }
    drop(b);
    let pos = dir.path().join(READ_POS);
    fs::write(&pos, b"garbage, not a read position").unwrap();
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 4);
    assert_eq!(b.front().unwrap().unwrap().1, all[0]);
    drop(b);

    // Same length as a real one, wrong crc.
    fs::write(&pos, [0xFFu8; 12]).unwrap();
    let (_, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 4);

    fs::remove_file(&pos).unwrap();
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 4);
    assert_eq!(drain(&mut b), all);
}

#[test]
fn full_buffer_drops_oldest_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    // Room for exactly two 68-byte batches, as in the memory buffer's test.
    let (mut b, _) = DiskBuffer::open(dir.path(), 136).unwrap();
    b.push(batch(1, 36)).unwrap();
    b.push(batch(2, 36)).unwrap();
    let (in_flight, _) = b.front().unwrap().unwrap();
    let dropped = b.push(batch(3, 36)).unwrap();
    assert_eq!(
        dropped,
        Dropped {
            batches: 1,
            samples: 1,
            ..Dropped::default()
        }
    );
    b.ack(in_flight).unwrap();
    assert_eq!((b.len(), b.bytes(), b.samples()), (2, 136, 5));
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 136).unwrap();
    assert_eq!((rec.batches, rec.dropped), (2, Dropped::default()));
    assert_eq!(
        drain(&mut b),
        [batch(2, 36), batch(3, 36)],
        "acking a batch dropped while in flight keeps the newer ones"
    );
}

#[test]
fn drops_span_segments_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    // 20 KiB bodies (20512 bytes counted): 12 fit in 256 KiB, 4 per 64 KiB segment.
    let (mut b, _) = DiskBuffer::open(dir.path(), 256 << 10).unwrap();
    for n in 0..12 {
        assert_eq!(b.push(batch(n, 20 << 10)).unwrap(), Dropped::default());
    }
    // 246144 + 61536 bytes: the three oldest (61536 bytes) must go.
    let big = batch(100, 3 * (20 << 10) + 64);
    assert_eq!(
        b.push(big.clone()).unwrap(),
        Dropped {
            batches: 3,
            samples: 1 + 2,
            ..Dropped::default()
        }
    );
    assert_eq!((b.len(), b.bytes()), (10, 9 * 20512 + 61536));
    drop(b);
    // A lower limit at start-up drops more (102400 bytes: records 3..=10), the middle
    // segment (records 4..8) as a whole.
    let (mut b, rec) = DiskBuffer::open(dir.path(), 100 << 10).unwrap();
    assert_eq!(
        rec.dropped,
        Dropped {
            batches: 8,
            samples: (3..=10).sum(),
            ..Dropped::default()
        }
    );
    assert_eq!((rec.batches, rec.samples), (2, 11 + 100));
    let names: Vec<_> = segment_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["00000000000000000008.seg", "00000000000000000012.seg"]
    );
    assert_eq!(drain(&mut b), [batch(11, 20 << 10), big]);
}

#[test]
fn a_batch_larger_than_the_buffer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 50).unwrap();
    assert_eq!(
        b.push(batch(7, 100)).unwrap(),
        Dropped {
            batches: 1,
            samples: 7,
            ..Dropped::default()
        }
    );
    assert!(b.is_empty());
    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn behaves_like_the_memory_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let max = 96 << 10;
    let (mut d, _) = DiskBuffer::open(dir.path(), max).unwrap();
    let mut m = MemoryBuffer::new(max);
    let mut rng = SplitMix64::new(0x2545_f491_4f6c_dd1d);
    let mut in_flight = None;
    for step in 0..400u32 {
        match rng.below(10) {
            0..=4 => {
                let x = batch(step, rng.below(30_000) as usize);
                assert_eq!(
                    d.push(x.clone()).unwrap(),
                    m.push(x).unwrap(),
                    "step {step}"
                );
            }
            5 => {
                in_flight = d
                    .front()
                    .unwrap()
                    .map(|(s, _)| s)
                    .zip(m.front().unwrap().map(|(s, _)| s));
            }
            6..=7 => {
                if let Some((ds, ms)) = in_flight.take() {
                    d.ack(ds).unwrap();
                    m.ack(ms).unwrap();
                }
            }
            8 => {
                let f = d.front().unwrap().map(|(_, x)| x);
                assert_eq!(f, m.front().unwrap().map(|(_, x)| x), "step {step}");
            }
            _ => {
                drop(d);
                let (reopened, rec) = DiskBuffer::open(dir.path(), max).unwrap();
                d = reopened;
                assert_eq!(rec.batches, m.len() as u64);
                in_flight = None;
            }
        }
        assert_eq!(
            (d.len(), d.bytes(), d.samples()),
            (m.len(), m.bytes(), m.samples())
        );
    }
    while let Some((s, x)) = m.front().unwrap() {
        m.ack(s).unwrap();
        let (ds, dx) = d.front().unwrap().unwrap();
        assert_eq!(dx, x);
        d.ack(ds).unwrap();
    }
    assert!(d.front().unwrap().is_none());
    assert!(segment_files(dir.path()).len() <= 1);
}

#[test]
fn unwritable_directory_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let under_file = file.join("buffer");
    let err = DiskBuffer::open(&under_file, 1 << 20).err().unwrap();
    assert!(
        err.to_string().contains(&under_file.display().to_string()),
        "{err}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("read-only");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        // Permissions do not bind root; only assert where they do.
        if File::create(ro.join("try")).is_err() {
            let err = DiskBuffer::open(&ro, 1 << 20).err().unwrap();
            assert!(matches!(err, BufferError::NotWritable { .. }), "{err:?}");
            assert!(err.to_string().contains(&ro.display().to_string()), "{err}");
            assert!(err.to_string().contains("not writable"), "{err}");
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A second buffer on the same directory fails while the first is open, naming the
/// directory and the holder's pid, and touches nothing; once the first is dropped the
/// directory opens again, with everything the first left.
#[test]
fn a_second_buffer_on_one_directory_fails_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    first.push(batch(1, 10)).unwrap();
    let before = snapshot(dir.path());
    let err = DiskBuffer::open(dir.path(), 1 << 20).err().unwrap();
    let pid = std::process::id();
    assert!(
        matches!(&err, BufferError::Locked { path, pid: Some(p) } if path == dir.path() && *p == pid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "buffer directory {} is in use by another kubelet-push (process {pid}); each \
             agent and each destination needs a buffer directory of its own",
            dir.path().display()
        )
    );
    assert_eq!(snapshot(dir.path()), before, "the loser changed nothing");
    // The holder is unaffected.
    first.push(batch(2, 10)).unwrap();
    assert_eq!(first.front().unwrap().unwrap().1, batch(1, 10));
    drop(first);

    let (mut second, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 2);
    assert_eq!(drain(&mut second), [batch(1, 10), batch(2, 10)]);
    // Without a readable pid, the error says so instead of guessing.
    fs::write(dir.path().join(LOCK_PID), b"not a pid").unwrap();
    let err = DiskBuffer::open(dir.path(), 1 << 20).err().unwrap();
    assert!(
        matches!(err, BufferError::Locked { pid: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("process id unknown"), "{err}");
}

/// What a killed agent leaves (a lock file and a pid that is not ours, but no lock: the
/// OS dropped it with the process) does not stop the next one, which records its own pid.
#[test]
fn a_lock_file_left_by_a_dead_holder_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(LOCK), b"").unwrap();
    fs::write(dir.path().join(LOCK_PID), b"999999\n").unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join(LOCK_PID)).unwrap(),
        format!("{}\n", std::process::id())
    );
    b.push(batch(1, 10)).unwrap();
    assert_eq!(drain(&mut b), [batch(1, 10)]);
}

/// The lock is per directory: one buffer per destination under one parent directory.
#[test]
fn buffers_in_sibling_directories_do_not_block_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, _) = DiskBuffer::open(&dir.path().join("a"), 1 << 20).unwrap();
    let (mut b, _) = DiskBuffer::open(&dir.path().join("b"), 1 << 20).unwrap();
    a.push(batch(1, 10)).unwrap();
    b.push(batch(2, 10)).unwrap();
    assert_eq!(drain(&mut a), [batch(1, 10)]);
    assert_eq!(drain(&mut b), [batch(2, 10)]);
}

#[test]
fn write_error_is_reported_and_the_next_push_works() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    b.push(batch(1, 10)).unwrap();
    // Swap the segment's handle for a read-only one: the append (and the cleanup) fail.
    let seg = segment_files(dir.path()).remove(0);
    b.writer = Some(File::open(&seg).unwrap());
    let err = b.push(batch(2, 10)).unwrap_err();
    assert!(matches!(err, BufferError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&seg.display().to_string()),
        "{err}"
    );
    assert_eq!((b.len(), b.samples()), (1, 1));
    // The next push starts a new segment.
    b.push(batch(3, 10)).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(drain(&mut b), [batch(1, 10), batch(3, 10)]);
}

#[test]
fn damage_found_at_run_time_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    for n in 1..=3 {
        b.push(batch(n, 10)).unwrap();
    }
    let seg = segment_files(dir.path()).remove(0);
    let mut data = fs::read(&seg).unwrap();
    let at = (SEGMENT_HEADER_LEN + rec_len(10)) as usize + 20;
    data[at] ^= 1;
    fs::write(&seg, &data).unwrap();
    let (seq, x) = b.front().unwrap().unwrap();
    assert_eq!(x, batch(1, 10));
    b.ack(seq).unwrap();
    assert!(
        b.front().unwrap().is_none(),
        "the rest of the segment is skipped"
    );
    assert_eq!((b.len(), b.bytes(), b.samples()), (0, 0, 0));
    b.push(batch(4, 10)).unwrap();
    assert_eq!(drain(&mut b), [batch(4, 10)]);
}

/// A run reads the records behind the front in order, across segment files, bounded by
/// bytes (the front always in it), and starts at the front again after acknowledgements.
#[test]
fn a_run_reads_on_across_segments_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    let pushed: Vec<Request> = (1..=20).map(|n| batch(n, 20_000)).collect();
    for r in &pushed {
        b.push(r.clone()).unwrap();
    }
    assert!(
        segment_files(dir.path()).len() >= 3,
        "spans several segments"
    );
    let all = b.run(u64::MAX).unwrap();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (seqs[0]..seqs[0] + 20).collect::<Vec<_>>());
    assert_eq!(all.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), pushed);

    let size = pushed[0].size();
    let three = b.run(3 * size).unwrap();
    assert_eq!(three.len(), 3);
    assert_eq!(b.run(0).unwrap().len(), 1, "the front, whatever the bound");
    // Acknowledged oldest first, the next run starts behind them, the front read again.
    b.ack(three[0].0).unwrap();
    b.ack(three[1].0).unwrap();
    let rest = b.run(u64::MAX).unwrap();
    assert_eq!(rest.len(), 18);
    assert_eq!(rest[0].0, three[2].0);
    assert_eq!(
        rest.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        pushed[2..]
    );
    // A reopened buffer reads the same run.
    drop(b);
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        b.run(u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>(),
        pushed[2..]
    );
}

/// A run acknowledged together (a merged catch-up request) is recorded with one read-position
/// write, not one per batch; what was acknowledged stays acknowledged across a restart, and a
/// batch evicted meanwhile is reported as not found.
#[test]
fn a_run_is_acknowledged_with_one_read_position_write() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    for n in 0..10u32 {
        b.push(batch(n, 100)).unwrap();
    }
    let run: Vec<u64> = b.run(u64::MAX).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(run, (0..10).collect::<Vec<u64>>());
    let before = b.read_pos_writes.load(Ordering::Relaxed);
    let acked = b.ack_run(&run[..6]);
    assert!(acked.error.is_none());
    assert_eq!(acked.found, vec![true; 6]);
    assert_eq!(b.read_pos_writes.load(Ordering::Relaxed), before + 1);
    assert_eq!(b.len(), 4);
    // 5 was acknowledged already: not found; 6 and 7 are.
    let acked = b.ack_run(&[5, 6, 7]);
    assert_eq!(acked.found, vec![false, true, true]);
    assert_eq!(b.read_pos_writes.load(Ordering::Relaxed), before + 2);
    // Nothing found: nothing written.
    assert_eq!(b.ack_run(&[3]).found, vec![false]);
    assert_eq!(b.read_pos_writes.load(Ordering::Relaxed), before + 2);
    drop(b);
    let (mut b, rec) = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(rec.batches, 2);
    assert_eq!(drain(&mut b), [batch(8, 100), batch(9, 100)]);
}
