//! The on-disk format of the durable buffer: what the directory holds, a segment file, its
//! header, a record and `read.pos`, byte by byte, with the code that writes and parses them.
//! Not here: which segment a record goes to, when segments roll, are cut or deleted (the
//! queue, [`super`]), and the directory's lock, probe and fsync ([`super::dir`]).
//!
//! # On-disk format (version 2)
//!
//! ```text
//! <dir>/
//!     00000000000000000042.seg    segment: records 42, 43, 44, ...
//!     00000000000000000107.seg    segment: records 107, 108, ...
//!     read.pos                    sequence number of the oldest unacknowledged record
//!     read.pos.tmp                (transient: the next read.pos, before its rename)
//!     lock                        empty; locked by the process using the directory
//!     lock.pid                    that process's pid, decimal ASCII and "\n"
//!
//! segment file ("{first_seq:020}.seg"), version 2 := segment_header record*
//!
//! segment_header := {                    // 16 bytes
//!     magic:    [u8; 8] = 0B 00 00 00 'K' 'P' 'B' 'F',
//!                                        // first 4 bytes as a version-1 `len`: 11 (< 20, so
//!                                        // never an intact version-1 segment's start)
//!     version:  u32 LE = 2,              // how the records after it are laid out
//!     crc:      u32 LE,                  // crc32c(magic, version)
//! }
//!
//! record := {
//!     len:      u32 LE,                  // payload length, >= 22
//!     crc:      u32 LE,                  // crc32c(payload)
//!     payload:  [u8; len] := {
//!         protocol:  u8,                 // Request::protocol, as Protocol::code (1 = Remote Write 1.0)
//!         flags:     u8,                 // 0; none defined yet (see below)
//!         samples:   u32 LE,             // Request::samples
//!         oldest_ms: i64 LE,             // Request::oldest_ms
//!         newest_ms: i64 LE,             // Request::newest_ms
//!         body:      [u8; len - 22],     // Request::body, the request as `protocol` defines it
//!     },
//! }
//!
//! read.pos := { seq: u64 LE, crc: u32 LE }   // crc = crc32c(seq as 8 LE bytes); 12 bytes
//! ```
//!
//! Version 1, written by earlier releases (`tests/fixtures/buffer-v1/` is one), is still read,
//! never written: a segment file that does not start with `segment_header` is version 1, and is
//! `record*` with
//!
//! ```text
//! record (version 1) := {
//!     len:      u32 LE,                  // payload length, >= 20
//!     crc:      u32 LE,                  // crc32c(payload)
//!     payload:  [u8; len] := { samples: u32 LE, oldest_ms: i64 LE, newest_ms: i64 LE,
//!                              body: [u8; len - 20] },   // body: Remote Write 1.0
//! }
//! ```
//!
//! Its records are replayed as [`Protocol::V1`]. `read.pos` and the file names did not change.
//! The other way round does not work: a release that reads only version 1 takes a version-2
//! segment for a damaged one (its first `len`, 11, is below 20) and cuts it, so going back to
//! such a release loses what is buffered in version-2 segments, though it never sends it.
//!
//! Invariants:
//! - Record `i` (from 0) of segment `N.seg` has sequence number `N + i`; sequence numbers are
//!   not stored per record. Later segments start at higher numbers; there can be gaps (after a
//!   damaged tail was cut), never overlaps. Segments of both versions may sit side by side.
//! - Segments are append-only and only the newest one is appended to, and only when it is
//!   version 2: a version-1 segment is never appended to (a record must never sit in a file
//!   whose header says another layout). A new segment is started when the newest is at least
//!   `clamp(max_bytes / 8, 64 KiB, 1 MiB)` long (so a segment can exceed that by one record),
//!   when any of its records was delivered or dropped already, after a write error it could
//!   not undo, when the newest is version 1, and whenever its next record number would not be
//!   the buffer's next sequence number.
//! - A new segment's header is written and `sync_data`-ed before its directory entry is fsynced
//!   (unix), and that before its first record is written.
//! - Every record a `push` reported as buffered was written and `sync_data`-ed before `push`
//!   returned. At most the append in progress is lost, and it shows up as a torn tail.
//! - `read.pos` is replaced atomically (write `read.pos.tmp`, fsync, rename, fsync the
//!   directory on unix) after every `ack` and every drop. Records below it were delivered or
//!   dropped. A missing or garbled `read.pos` counts as 0: everything on disk is replayed
//!   (duplicates are possible, loss is not).
//! - A segment whose records are all below the read position is deleted, the newest too,
//!   whatever its size (the next append starts a new one).
//! - Every later version starts with the same 16-byte `segment_header` (same magic, its own
//!   `version`, the crc over both), so this release can tell "newer format" from "damage".

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::dir::sync_dir;
use crate::buffer::BufferError;
use crate::remote_write::{Protocol, Request};

/// A record's `len` + `crc` (both versions).
pub(super) const HEADER_LEN: u64 = 8;
/// Version 1 payload before the body: `samples` + `oldest_ms` + `newest_ms`.
pub(super) const META_LEN_V1: u64 = 20;
/// Version 2 payload before the body: `protocol` + `flags` + version 1's.
pub(super) const META_LEN: u64 = 22;
/// The version this release writes.
pub(super) const FORMAT_VERSION: u32 = 2;
/// Starts every segment from version 2 on. Its first 4 bytes, read as a version-1 `len`, are
/// 11: below [`META_LEN_V1`], so an intact version-1 segment never starts with them.
pub(super) const SEGMENT_MAGIC: [u8; 8] = [0x0B, 0x00, 0x00, 0x00, b'K', b'P', b'B', b'F'];
/// `magic` + `version` + `crc`.
pub(super) const SEGMENT_HEADER_LEN: u64 = 16;
pub(super) const SEGMENT_SUFFIX: &str = ".seg";
pub(super) const READ_POS: &str = "read.pos";
const READ_POS_TMP: &str = "read.pos.tmp";

/// How a segment's records are laid out (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// No segment header; records without protocol or flags, all [`Protocol::V1`]. Only read.
    V1,
    /// Segment header, then records that name their protocol.
    V2,
}

impl Format {
    /// Payload bytes before the body.
    pub(super) fn meta_len(self) -> u64 {
        match self {
            Format::V1 => META_LEN_V1,
            Format::V2 => META_LEN,
        }
    }
}

/// A record's payload fields other than the body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) protocol: u8,
    pub(super) flags: u8,
    pub(super) samples: u32,
    pub(super) oldest_ms: i64,
    pub(super) newest_ms: i64,
}

impl Meta {
    /// Reads the first [`Format::meta_len`] bytes of a payload.
    pub(super) fn parse(format: Format, m: &[u8]) -> Meta {
        match format {
            Format::V1 => Meta {
                protocol: Protocol::V1.code(),
                flags: 0,
                samples: le_u32(m, 0),
                oldest_ms: le_i64(m, 4),
                newest_ms: le_i64(m, 12),
            },
            Format::V2 => Meta {
                protocol: m[0],
                flags: m[1],
                samples: le_u32(m, 2),
                oldest_ms: le_i64(m, 6),
                newest_ms: le_i64(m, 14),
            },
        }
    }

    /// The protocol, when this release knows it and no flag is set (no flag is defined yet).
    pub(super) fn protocol(&self) -> Option<Protocol> {
        Protocol::from_code(self.protocol).filter(|_| self.flags == 0)
    }
}

/// [`Request::size`] of a batch with a body of `body_len` bytes.
pub(super) fn size_of_body(body_len: u64) -> u64 {
    body_len + 32
}

pub(super) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(super) fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// `"{seq:020}.seg"` → `seq`.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn encode(batch: &Request) -> io::Result<Vec<u8>> {
    let len = u32::try_from(batch.body.len() as u64 + META_LEN).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "batch body too large for a record",
        )
    })?;
    let mut rec = Vec::with_capacity((HEADER_LEN + META_LEN) as usize + batch.body.len());
    rec.extend_from_slice(&len.to_le_bytes());
    rec.extend_from_slice(&[0; 4]);
    rec.push(batch.protocol.code());
    rec.push(0); // flags
    rec.extend_from_slice(&batch.samples.to_le_bytes());
    rec.extend_from_slice(&batch.oldest_ms.to_le_bytes());
    rec.extend_from_slice(&batch.newest_ms.to_le_bytes());
    rec.extend_from_slice(&batch.body);
    let crc = crc32c::crc32c(&rec[HEADER_LEN as usize..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(rec)
}

/// The 16-byte header of a segment of `version`.
pub(super) fn segment_header(version: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What the first bytes of a segment file say about its layout.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    Empty,
    /// No segment header: version-1 records from offset 0.
    V1,
    /// An intact segment header of this version.
    Header(u32),
    /// The start of the magic, then a torn (`false`) or corrupt (`true`) header.
    DamagedHeader(bool),
}

pub(super) fn read_start(mut file: &File, file_len: u64) -> io::Result<Start> {
    if file_len == 0 {
        return Ok(Start::Empty);
    }
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    let n = usize::try_from(file_len.min(SEGMENT_HEADER_LEN)).unwrap_or(h.len());
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut h[..n])?;
    if n < 4 || h[..4] != SEGMENT_MAGIC[..4] {
        return Ok(Start::V1);
    }
    let m = n.min(SEGMENT_MAGIC.len());
    if h[4..m] != SEGMENT_MAGIC[4..m] {
        return Ok(Start::DamagedHeader(true));
    }
    if n < h.len() {
        return Ok(Start::DamagedHeader(false));
    }
    if crc32c::crc32c(&h[..12]) != le_u32(&h, 12) {
        return Ok(Start::DamagedHeader(true));
    }
    Ok(Start::Header(le_u32(&h, 8)))
}

/// Why a record could not be read. Recovery cuts its segment there (torn or corrupt, see
/// [`FrameError::damage`]); a running buffer takes any of these as an [`io::Error`].
#[derive(Debug)]
pub(super) enum FrameError {
    /// The bytes end inside the record (a short read): torn.
    Eof(io::Error),
    /// `len` is below the least payload of the segment's format: corrupt.
    LenTooShort,
    /// `len` runs past the end of the segment: torn.
    LenPastEnd,
    /// The payload does not match `crc`: corrupt.
    Crc,
    /// Reading failed otherwise: not damage, the caller reports it.
    Io(io::Error),
}

impl FrameError {
    /// `Some(true)` for a corrupt record, `Some(false)` for a torn one, `None` for an I/O error.
    pub(super) fn damage(&self) -> Option<bool> {
        match self {
            FrameError::LenTooShort | FrameError::Crc => Some(true),
            FrameError::Eof(_) | FrameError::LenPastEnd => Some(false),
            FrameError::Io(_) => None,
        }
    }
}

impl From<FrameError> for io::Error {
    fn from(error: FrameError) -> io::Error {
        match error {
            FrameError::Eof(e) | FrameError::Io(e) => e,
            FrameError::LenTooShort | FrameError::LenPastEnd => {
                io::Error::new(io::ErrorKind::InvalidData, "record length out of bounds")
            }
            FrameError::Crc => io::Error::new(io::ErrorKind::InvalidData, "record crc mismatch"),
        }
    }
}

/// A record's framing and metadata, read and checked: everything before its body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    /// `len`: payload bytes.
    pub(super) len: u64,
    /// Bytes after the metadata.
    pub(super) body_len: u64,
    pub(super) meta: Meta,
    /// `crc`, as stored, over the whole payload.
    crc: u32,
    /// crc32c of the metadata, continued over the body when it is read.
    meta_crc: u32,
}

/// The one reader of a record's framing, for every place that reads a record: reads `len` and
/// `crc`, checks `len` (not below the format's least payload, not past `room`, the bytes of
/// the segment from the record's start on), then reads the metadata. Its body is read next
/// with [`Head::read_body`] or [`Head::skip_body`], which check the crc.
pub(super) fn read_head(r: &mut impl Read, format: Format, room: u64) -> Result<Head, FrameError> {
    let meta_len = format.meta_len();
    let mut buf = [0u8; (HEADER_LEN + META_LEN) as usize];
    let (header, meta) = buf[..(HEADER_LEN + meta_len) as usize].split_at_mut(HEADER_LEN as usize);
    read_exact(r, header)?;
    let len = u64::from(le_u32(header, 0));
    if len < meta_len {
        return Err(FrameError::LenTooShort);
    }
    if HEADER_LEN + len > room {
        return Err(FrameError::LenPastEnd);
    }
    read_exact(r, meta)?;
    Ok(Head {
        len,
        body_len: len - meta_len,
        meta: Meta::parse(format, meta),
        crc: le_u32(header, 4),
        meta_crc: crc32c::crc32c(meta),
    })
}

impl Head {
    /// Bytes the whole record takes on disk.
    pub(super) fn disk_len(&self) -> u64 {
        HEADER_LEN + self.len
    }

    /// Reads the body and checks the payload's crc.
    pub(super) fn read_body(&self, r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
        let len = usize::try_from(self.body_len).map_err(|_| FrameError::LenPastEnd)?;
        let mut body = vec![0u8; len];
        read_exact(r, &mut body)?;
        if crc32c::crc32c_append(self.meta_crc, &body) != self.crc {
            return Err(FrameError::Crc);
        }
        Ok(body)
    }

    /// Reads the body, checks the payload's crc, and gives the record back as the request it
    /// stored. Damage, and a protocol code or flags this build does not know (start-up
    /// refused those, so the file changed since), come back as `InvalidData`.
    pub(super) fn read_request(&self, r: &mut impl Read) -> io::Result<Request> {
        let body = self.read_body(r)?;
        let protocol = self.meta.protocol().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unknown protocol code or flags")
        })?;
        Ok(Request {
            protocol,
            body: body.into(),
            samples: self.meta.samples,
            oldest_ms: self.meta.oldest_ms,
            newest_ms: self.meta.newest_ms,
        })
    }

    /// Reads past the body a `chunk` at a time, checking the payload's crc without keeping
    /// the body in memory.
    pub(super) fn skip_body(&self, r: &mut impl Read, chunk: &mut [u8]) -> Result<(), FrameError> {
        let mut crc = self.meta_crc;
        let mut left = self.body_len;
        while left > 0 {
            let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = r.read(&mut chunk[..want]).map_err(FrameError::Io)?;
            if n == 0 {
                return Err(FrameError::Eof(io::ErrorKind::UnexpectedEof.into()));
            }
            crc = crc32c::crc32c_append(crc, &chunk[..n]);
            left -= n as u64;
        }
        if crc != self.crc {
            return Err(FrameError::Crc);
        }
        Ok(())
    }
}

/// `read_exact`, telling a short read (damage) from a failed one.
fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Eof(e),
        _ => FrameError::Io(e),
    })
}

/// `Ok(None)` when there is no read position; `Err` when it is unreadable or garbled.
pub(super) fn load_read_pos(dir: &Path) -> io::Result<Option<u64>> {
    let bytes = match fs::read(dir.join(READ_POS)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() != 12 || crc32c::crc32c(&bytes[..8]) != le_u32(&bytes, 8) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "garbled read position",
        ));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    Ok(Some(u64::from_le_bytes(seq)))
}

pub(super) fn write_read_pos(dir: &Path, seq: u64) -> Result<(), BufferError> {
    let tmp = dir.join(READ_POS_TMP);
    let mut data = [0u8; 12];
    data[..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&data[..8]);
    data[8..].copy_from_slice(&crc.to_le_bytes());
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()
    };
    if let Err(source) = write() {
        let _ = fs::remove_file(&tmp);
        // On a full disk there is no room for a second file, but overwriting the existing
        // 12 bytes needs no new space. Not atomic, but a torn write fails its crc and only
        // means replaying from the oldest segment.
        return overwrite_read_pos(&dir.join(READ_POS), &data)
            .map_err(|_| BufferError::io(&tmp, source));
    }
    let target = dir.join(READ_POS);
    fs::rename(&tmp, &target).map_err(|source| BufferError::io(&target, source))?;
    sync_dir(dir).map_err(|source| BufferError::Dir {
        path: dir.to_path_buf(),
        source,
    })
}

fn overwrite_read_pos(path: &Path, data: &[u8; 12]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(data)?;
    f.sync_data()
}
