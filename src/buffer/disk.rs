//! The durable buffer (`--buffer-dir`): batches appended to segment files, fsynced before
//! [`Buffer::push`] returns, replayed after a restart. Same semantics as
//! [`super::memory::MemoryBuffer`] (FIFO, bounded by [`Request::size`], oldest dropped first),
//! plus: a batch reported as buffered survives `kill -9` and power loss; one buffer at a time
//! per directory (an OS lock, see "The lock"); and the disk holds little more than what is
//! pending, so a small volume works (see "Segment sizing"). Not here: choosing the directory
//! (one per destination, by the agent) and checking free space (a write that does not fit
//! fails, and the caller counts it).
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
//!
//! # Segment sizing
//!
//! For small volumes: the disk holds what is pending, plus the delivered front part of the
//! oldest segment, plus file-system rounding. Deleting a segment as soon as
//! nothing in it is pending, and never appending to one that is partly delivered, keep that
//! delivered part to what was written while nothing of the segment was being sent (an outage's
//! backlog, already on disk); the 1 MiB cap bounds how much of such a backlog must be delivered
//! before a full disk gets space back. A healthy receiver thus needs free space for about
//! one poll's requests, whatever `--buffer-max-size` says (before: the newest segment kept
//! delivered records until it reached 1 MiB, and rolled at up to 64 MiB). The cost: with a
//! healthy receiver, one segment file created and deleted per poll (a create, two fsyncs and
//! an unlink). The buffer does not read the free space; a push the volume cannot take fails
//! and is counted by the caller.
//!
//! # The lock
//!
//! [`DiskBuffer::open`] takes an exclusive OS advisory lock on `lock` ([`File::try_lock`]:
//! `flock` on Linux, `LockFileEx` on Windows) before it reads or writes anything else, holds
//! it for the buffer's life and writes its pid to `lock.pid`. A second opener of the same
//! directory, in another process or this one, fails with [`BufferError::Locked`] naming the
//! directory and the pid it reads from `lock.pid` (which, for a holder that is just starting,
//! may be missing or a previous holder's); it changes nothing on disk. The lock goes with the
//! handle, so an agent that crashed or was killed leaves the files but not the lock: the next
//! start takes it over. The lock is per directory: one buffer per destination, each in its
//! own directory, do not block each other. Neither file is ever deleted (deleting a lock file
//! lets two processes lock two different files of one name). On a file system without locks
//! the buffer opens unguarded, with a warning. Windows refuses to read a locked file, which is
//! why the pid is in a file of its own.
//!
//! # Recovery
//!
//! Recovery ([`DiskBuffer::open`]) reads every segment in name order and checks every crc. The
//! first record that is torn (short header, length past the end of the file) or corrupt (length
//! below the least payload, crc mismatch) ends its segment: the file is truncated there and
//! fsynced, and one warning is logged per damaged file. Records after a corrupt one in the same
//! segment are lost with it (they are counted in `truncated_bytes`, not in `corrupt_records`);
//! later segments still replay. A segment header that is torn (fewer than 16 bytes) or fails
//! its magic or crc is damage the same way: the file is cut to nothing (no record can precede
//! its header) and replaced by a fresh segment on the next append. An empty file holds nothing
//! and is replaced the same way. Then the size bound is applied, as a push would.
//!
//! What a newer release wrote is never deleted, truncated or sent: [`DiskBuffer::open`] fails
//! with [`BufferError::UnknownFormat`] (naming the file and the version) for an intact header
//! of another version, and with [`BufferError::UnknownProtocol`] (naming the file, the
//! record's sequence number, its code and flags) for an intact, unacknowledged version-2
//! record whose protocol code is unknown or that has a flag set (a flag, once defined, changes
//! how the record is read, so a reader must not skip one it does not know). The agent reports
//! either as a `--buffer-dir` configuration error (exit 64) before it polls: a downgrade stops
//! with a message, rather than destroy or garble what the newer release buffered. The operator
//! runs the newer release until the buffer drains, or moves the named files away. Records
//! below the read position are never read for their contents, so an acknowledged one does
//! not stop a start. While running, a record that fails its crc or carries an unknown code
//! (the file changed since start-up) is damage: the rest of its segment is skipped, as before.
//!
//! Memory: a few counters per segment (not per record) and the front batch, cached between
//! [`Buffer::front`] and [`Buffer::ack`]. Dropping for room reads the head (framing and metadata) of each
//! dropped record (or none, when a whole segment goes), so it is exact per record, like the
//! memory buffer.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::warn;

use super::{Buffer, BufferError, Dropped};
use crate::remote_write::{Protocol, Request};

/// A record's `len` + `crc` (both versions).
const HEADER_LEN: u64 = 8;
/// Version 1 payload before the body: `samples` + `oldest_ms` + `newest_ms`.
const META_LEN_V1: u64 = 20;
/// Version 2 payload before the body: `protocol` + `flags` + version 1's.
const META_LEN: u64 = 22;
/// The version this release writes.
const FORMAT_VERSION: u32 = 2;
/// Starts every segment from version 2 on. Its first 4 bytes, read as a version-1 `len`, are
/// 11: below [`META_LEN_V1`], so an intact version-1 segment never starts with them.
const SEGMENT_MAGIC: [u8; 8] = [0x0B, 0x00, 0x00, 0x00, b'K', b'P', b'B', b'F'];
/// `magic` + `version` + `crc`.
const SEGMENT_HEADER_LEN: u64 = 16;
/// Bounds of the size at which a segment is closed for appends (`max_bytes / 8` between
/// them). The upper bound keeps what a full disk must deliver before it gets space back
/// small: a segment is deleted only once all of it was delivered.
const MIN_SEGMENT: u64 = 64 << 10;
const MAX_SEGMENT: u64 = 1 << 20;
const SEGMENT_SUFFIX: &str = ".seg";
const READ_POS: &str = "read.pos";
const READ_POS_TMP: &str = "read.pos.tmp";
const PROBE: &str = ".write-probe";
/// Locked (an OS advisory lock) by the process using the directory; its contents are unused.
const LOCK: &str = "lock";
/// The pid of the process holding [`LOCK`], as text, for the error the next one reports.
const LOCK_PID: &str = "lock.pid";

/// What [`DiskBuffer::open`] found on disk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Batches waiting after recovery (equal to [`Buffer::len`] of the opened buffer).
    pub batches: u64,
    /// Samples in them.
    pub samples: u64,
    /// Bytes cut off damaged segment tails.
    pub truncated_bytes: u64,
    /// Records (or segment headers) whose length or crc was invalid (one at most per segment:
    /// it ends the segment).
    pub corrupt_records: u64,
    /// Dropped because the replayed batches exceeded `max_bytes` (e.g. the limit was lowered).
    pub dropped: Dropped,
}

/// How a segment's records are laid out (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// No segment header; records without protocol or flags, all [`Protocol::V1`]. Only read.
    V1,
    /// Segment header, then records that name their protocol.
    V2,
}

impl Format {
    /// Payload bytes before the body.
    fn meta_len(self) -> u64 {
        match self {
            Format::V1 => META_LEN_V1,
            Format::V2 => META_LEN,
        }
    }
}

/// A record's payload fields other than the body.
#[derive(Debug, Clone, Copy)]
struct Meta {
    protocol: u8,
    flags: u8,
    samples: u32,
    oldest_ms: i64,
    newest_ms: i64,
}

impl Meta {
    /// Reads the first [`Format::meta_len`] bytes of a payload.
    fn parse(format: Format, m: &[u8]) -> Meta {
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
    fn protocol(&self) -> Option<Protocol> {
        Protocol::from_code(self.protocol).filter(|_| self.flags == 0)
    }
}

/// One segment file and how much of it is still unacknowledged.
#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    format: Format,
    /// Bytes of the header and of whole records (the file length, after any cut).
    len: u64,
    records: u64,
    /// Records before this index were acknowledged or dropped.
    read_index: u64,
    /// File offset of record `read_index`.
    read_offset: u64,
    /// [`Request::size`] and samples of the records from `read_index` on.
    pending_bytes: u64,
    pending_samples: u64,
    /// Never appended to again (a write error could not be undone, it was damaged, it has no
    /// valid header, or it is version 1).
    sealed: bool,
}

impl Segment {
    fn new(dir: &Path, first_seq: u64) -> Segment {
        Segment {
            first_seq,
            path: dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}")),
            format: Format::V2,
            len: 0,
            records: 0,
            read_index: 0,
            read_offset: 0,
            pending_bytes: 0,
            pending_samples: 0,
            sealed: false,
        }
    }

    fn pending(&self) -> u64 {
        self.records - self.read_index
    }

    fn end_seq(&self) -> u64 {
        self.first_seq.saturating_add(self.records)
    }
}

/// A [`Buffer`] kept in a directory of append-only segment files; see the module docs.
pub struct DiskBuffer {
    dir: PathBuf,
    /// Open for the buffer's life and locked: a second buffer on `dir`, in this process or
    /// another, fails to open. The OS releases the lock when the handle closes (the buffer is
    /// dropped, the process exits or is killed); `None` where the filesystem has no locks.
    _lock: Option<File>,
    max_bytes: u64,
    segment_max: u64,
    /// Oldest first. Every segment has pending records, but the newest may have none yet
    /// (just started, or its first append failed).
    segments: VecDeque<Segment>,
    /// Open handle on the last segment, while it is being appended to.
    writer: Option<File>,
    /// The front batch, once read.
    front: Option<(u64, Request)>,
    next_seq: u64,
    len: usize,
    bytes: u64,
    samples: u64,
}

impl DiskBuffer {
    /// Opens (creating it if needed) the buffer in `dir`, replaying what an earlier run left.
    /// Fails when the directory cannot be created or written, or on an I/O error while
    /// reading or repairing it; damaged data is repaired and reported in [`Recovery`].
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(DiskBuffer, Recovery), BufferError> {
        let dir_err = |source| BufferError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(dir_err)?;
        // Before anything else touches the directory, the probe included: two agents
        // probing at once would delete each other's probe file.
        let lock = lock_dir(dir)?;
        probe(dir).map_err(|source| BufferError::NotWritable {
            path: dir.to_path_buf(),
            source,
        })?;

        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(dir_err)? {
            let name = entry.map_err(dir_err)?.file_name();
            if let Some(seq) = name.to_str().and_then(parse_segment_name) {
                firsts.push(seq);
            }
        }
        firsts.sort_unstable();

        let read_pos = match load_read_pos(dir) {
            Ok(Some(seq)) => seq,
            Ok(None) => {
                if !firsts.is_empty() {
                    warn!(dir = %dir.display(), "read position missing; replaying from the oldest segment");
                }
                0
            }
            Err(error) => {
                warn!(dir = %dir.display(), %error, "read position unreadable; replaying from the oldest segment");
                0
            }
        };

        let mut recovery = Recovery::default();
        let mut segments = VecDeque::with_capacity(firsts.len());
        for first_seq in firsts {
            let seg = scan_segment(Segment::new(dir, first_seq), read_pos, &mut recovery)?;
            segments.push_back(seg);
        }

        let next_seq = segments
            .iter()
            .map(Segment::end_seq)
            .fold(read_pos, u64::max);
        let mut buf = DiskBuffer {
            dir: dir.to_path_buf(),
            _lock: lock,
            max_bytes,
            segment_max: (max_bytes / 8).clamp(MIN_SEGMENT, MAX_SEGMENT),
            segments,
            writer: None,
            front: None,
            next_seq,
            len: 0,
            bytes: 0,
            samples: 0,
        };
        for s in &buf.segments {
            buf.len = buf
                .len
                .saturating_add(usize::try_from(s.pending()).unwrap_or(usize::MAX));
            buf.bytes += s.pending_bytes;
            buf.samples += s.pending_samples;
        }
        buf.reap();
        recovery.dropped = buf.trim();
        // Also replaces a missing or garbled one, so the next start-up does not warn again.
        buf.persist_read_pos()?;
        recovery.batches = buf.len as u64;
        recovery.samples = buf.samples;
        Ok((buf, recovery))
    }

    /// Index of the segment holding the front record.
    fn head(&self) -> Option<usize> {
        self.segments.iter().position(|s| s.pending() > 0)
    }

    /// The read position: the front record's sequence number, or the next one when empty.
    fn read_seq(&self) -> u64 {
        match self.head() {
            Some(i) => {
                let s = &self.segments[i];
                s.first_seq.saturating_add(s.read_index)
            }
            None => self.next_seq,
        }
    }

    /// Removes `n` records (`disk` bytes of file, `size` bytes and `samples` samples as
    /// counted) from the front of segment `i`.
    fn consume(&mut self, i: usize, n: u64, disk: u64, size: u64, samples: u64) {
        let s = &mut self.segments[i];
        s.read_index += n;
        s.read_offset += disk;
        s.pending_bytes -= size;
        s.pending_samples -= samples;
        self.len -= usize::try_from(n).unwrap_or(self.len);
        self.bytes -= size;
        self.samples -= samples;
        self.front = None;
    }

    /// Removes every remaining record of segment `i`; returns how many and their samples.
    fn consume_segment(&mut self, i: usize) -> (u64, u64) {
        let s = &self.segments[i];
        let (n, disk, size, samples) = (
            s.pending(),
            s.len - s.read_offset,
            s.pending_bytes,
            s.pending_samples,
        );
        self.consume(i, n, disk, size, samples);
        (n, samples)
    }

    /// Length on disk, [`Request::size`] and samples of the front record of segment `i`.
    fn front_record_meta(&self, i: usize) -> io::Result<(u64, u64, u64)> {
        if let Some((_, b)) = &self.front {
            return Ok((
                HEADER_LEN + self.segments[i].format.meta_len() + b.body.len() as u64,
                b.size(),
                u64::from(b.samples),
            ));
        }
        let s = &self.segments[i];
        let meta_len = s.format.meta_len();
        let mut file = File::open(&s.path)?;
        file.seek(SeekFrom::Start(s.read_offset))?;
        let mut head = [0u8; (HEADER_LEN + META_LEN) as usize];
        let head = &mut head[..(HEADER_LEN + meta_len) as usize];
        file.read_exact(head)?;
        let len = u64::from(le_u32(head, 0));
        if len < meta_len || s.read_offset + HEADER_LEN + len > s.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record length out of bounds",
            ));
        }
        let meta = Meta::parse(s.format, &head[HEADER_LEN as usize..]);
        Ok((
            HEADER_LEN + len,
            size_of_body(len - meta_len),
            u64::from(meta.samples),
        ))
    }

    /// Drops the oldest records until the buffer fits `max_bytes`, persisting the new read
    /// position. Whole segments are dropped without reading them when all of them must go.
    fn trim(&mut self) -> Dropped {
        let mut dropped = Dropped::default();
        while self.bytes > self.max_bytes {
            let Some(i) = self.head() else { break };
            if self.bytes - self.segments[i].pending_bytes >= self.max_bytes {
                let (n, samples) = self.consume_segment(i);
                dropped.batches += n;
                dropped.samples += samples;
                continue;
            }
            match self.front_record_meta(i) {
                Ok((disk, size, samples)) => {
                    self.consume(i, 1, disk, size, samples);
                    dropped.batches += 1;
                    dropped.samples += samples;
                }
                Err(error) => {
                    let path = self.segments[i].path.display().to_string();
                    let (n, samples) = self.consume_segment(i);
                    warn!(file = %path, %error, batches = n, "unreadable record while dropping for room; dropped the rest of its segment");
                    dropped.batches += n;
                    dropped.samples += samples;
                }
            }
        }
        if dropped.batches > 0 {
            if let Err(error) = self.persist_read_pos() {
                warn!(%error, "could not persist the read position after dropping");
            }
            self.reap();
        }
        dropped
    }

    /// Writes one encoded record at the end of the newest segment and syncs it. On failure
    /// the partial record is cut back off; if even that fails, the segment is never written
    /// again.
    fn append_record(&mut self, record: &[u8]) -> Result<(), BufferError> {
        self.writable_tail()?;
        let (Some(seg), Some(file)) = (self.segments.back_mut(), self.writer.as_mut()) else {
            return Err(io_error(
                &self.dir,
                io::Error::other("no segment open for writing"),
            ));
        };
        if let Err(source) = append(file, seg.len, record) {
            if file
                .set_len(seg.len)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                seg.sealed = true;
                self.writer = None;
            }
            return Err(io_error(&seg.path, source));
        }
        Ok(())
    }

    fn persist_read_pos(&self) -> Result<(), BufferError> {
        write_read_pos(&self.dir, self.read_seq())
    }

    /// Deletes every segment with nothing pending, the newest included, whatever its size:
    /// delivered requests never hold disk space a new one could use (the next push starts a
    /// new segment). A failed delete is logged: the file only holds consumed records, which
    /// the next start-up skips.
    fn reap(&mut self) {
        if self.segments.back().is_some_and(|s| s.pending() == 0) {
            // Closed first: Windows keeps the name of a deleted file while a handle is open.
            self.writer = None;
        }
        self.segments.retain(|s| {
            let keep = s.pending() > 0;
            if !keep {
                if let Err(error) = fs::remove_file(&s.path) {
                    if error.kind() != io::ErrorKind::NotFound {
                        warn!(file = %s.path.display(), %error, "could not delete a consumed segment");
                    }
                }
            }
            keep
        });
    }

    /// Deletes the newest segment if nothing in it is pending (since `reap` deletes delivered
    /// segments at once, only one whose first append just failed), so the retry starts a
    /// fresh one. True when it was deleted.
    fn reclaim_consumed_tail(&mut self) -> bool {
        let Some(tail) = self.segments.back() else {
            return false;
        };
        if tail.pending() > 0 {
            return false;
        }
        if let Err(error) = fs::remove_file(&tail.path) {
            if error.kind() != io::ErrorKind::NotFound {
                return false;
            }
        }
        self.segments.pop_back();
        self.writer = None;
        true
    }

    /// Makes sure the last segment can take record `next_seq`, starting a new one if needed.
    fn writable_tail(&mut self) -> Result<(), BufferError> {
        let roll = match self.segments.back() {
            None => true,
            Some(s) => {
                s.sealed
                    || s.len >= self.segment_max
                    // Partly delivered: appending would keep the delivered part on disk
                    // for as long as the sender stays behind (see the module docs).
                    || s.read_index > 0
                    || s.end_seq() != self.next_seq
            }
        };
        if !roll {
            if self.writer.is_none() {
                if let Some(s) = self.segments.back_mut() {
                    match OpenOptions::new().read(true).write(true).open(&s.path) {
                        Ok(f) => self.writer = Some(f),
                        Err(source) => {
                            s.sealed = true;
                            return Err(io_error(&s.path, source));
                        }
                    }
                }
            }
            return Ok(());
        }
        self.writer = None;
        // An empty sealed segment (a failed first write) would collide with the new name.
        if self.segments.back().is_some_and(|s| s.records == 0) {
            if let Some(s) = self.segments.pop_back() {
                if let Err(source) = fs::remove_file(&s.path) {
                    if source.kind() != io::ErrorKind::NotFound {
                        let path = s.path.clone();
                        self.segments.push_back(s);
                        return Err(io_error(&path, source));
                    }
                }
            }
        }
        // The segment rolled over may be all delivered by now.
        self.reap();
        let mut seg = Segment::new(&self.dir, self.next_seq);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&seg.path)
            .map_err(|source| io_error(&seg.path, source))?;
        if let Err(source) = append(&mut file, 0, &segment_header(FORMAT_VERSION)) {
            // Without a whole header it takes no record; sealed and empty, the next roll
            // deletes it (and a restart cuts a torn header).
            let path = seg.path.clone();
            seg.sealed = true;
            self.segments.push_back(seg);
            return Err(io_error(&path, source));
        }
        seg.len = SEGMENT_HEADER_LEN;
        seg.read_offset = SEGMENT_HEADER_LEN;
        let synced = sync_dir(&self.dir);
        // Until its directory entry is durable, nothing may be written to it.
        seg.sealed = synced.is_err();
        self.segments.push_back(seg);
        synced.map_err(|source| BufferError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        self.writer = Some(file);
        Ok(())
    }
}

impl Buffer for DiskBuffer {
    fn push(&mut self, batch: Request) -> Result<Dropped, BufferError> {
        let mut dropped = Dropped::default();
        if batch.size() > self.max_bytes {
            dropped.add(batch.samples);
            return Ok(dropped);
        }
        let record = encode(&batch).map_err(|source| io_error(&self.dir, source))?;
        if let Err(first) = self.append_record(&record) {
            // A full disk may be full of records already delivered: free them and try once more.
            if !self.reclaim_consumed_tail() {
                return Err(first);
            }
            self.append_record(&record)?;
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(io_error(
                &self.dir,
                io::Error::other("no segment after an append"),
            ));
        };
        seg.len += record.len() as u64;
        seg.records += 1;
        seg.pending_bytes += batch.size();
        seg.pending_samples += u64::from(batch.samples);
        self.len += 1;
        self.bytes += batch.size();
        self.samples += u64::from(batch.samples);
        self.next_seq = self.next_seq.saturating_add(1);
        Ok(self.trim())
    }

    fn front(&mut self) -> Result<Option<(u64, Request)>, BufferError> {
        loop {
            if let Some(front) = &self.front {
                return Ok(Some(front.clone()));
            }
            let Some(i) = self.head() else {
                return Ok(None);
            };
            let s = &self.segments[i];
            let seq = s.first_seq.saturating_add(s.read_index);
            match read_record(s) {
                Ok(batch) => self.front = Some((seq, batch)),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::InvalidData
                            | io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::NotFound
                    ) =>
                {
                    // Damaged since start-up: skip the rest of the segment rather than get
                    // stuck on it forever.
                    let path = s.path.display().to_string();
                    let offset = s.read_offset;
                    let (n, samples) = self.consume_segment(i);
                    self.segments[i].sealed = true;
                    if i + 1 == self.segments.len() {
                        self.writer = None;
                    }
                    warn!(file = %path, offset, batches = n, samples, %error, "damaged segment; skipped the rest of it");
                    if let Err(error) = self.persist_read_pos() {
                        warn!(%error, "could not persist the read position");
                    }
                    self.reap();
                }
                Err(source) => return Err(io_error(&s.path, source)),
            }
        }
    }

    /// On an error persisting the read position the batch is still removed (in memory); it
    /// may be delivered again after a restart.
    fn ack(&mut self, seq: u64) -> Result<(), BufferError> {
        let Some(i) = self.head() else { return Ok(()) };
        if self.read_seq() != seq {
            return Ok(());
        }
        let (disk, size, samples) = self
            .front_record_meta(i)
            .map_err(|source| io_error(&self.segments[i].path, source))?;
        self.consume(i, 1, disk, size, samples);
        let persisted = self.persist_read_pos();
        self.reap();
        persisted
    }

    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn samples(&self) -> u64 {
        self.samples
    }
}

fn io_error(path: &Path, source: io::Error) -> BufferError {
    BufferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// [`Request::size`] of a batch with a body of `body_len` bytes.
fn size_of_body(body_len: u64) -> u64 {
    body_len + 32
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// `"{seq:020}.seg"` → `seq`.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode(batch: &Request) -> io::Result<Vec<u8>> {
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
fn segment_header(version: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn append(file: &mut File, at: u64, record: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.write_all(record)?;
    file.sync_data()
}

/// Reads and checks the front record of `s`. Damage comes back as `InvalidData`.
fn read_record(s: &Segment) -> io::Result<Request> {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut file = File::open(&s.path)?;
    file.seek(SeekFrom::Start(s.read_offset))?;
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header)?;
    let len = u64::from(le_u32(&header, 0));
    let meta_len = s.format.meta_len();
    if len < meta_len || s.read_offset + HEADER_LEN + len > s.len {
        return Err(invalid("record length out of bounds"));
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact(&mut payload)?;
    if crc32c::crc32c(&payload) != le_u32(&header, 4) {
        return Err(invalid("record crc mismatch"));
    }
    let meta = Meta::parse(s.format, &payload);
    // Start-up refused unknown codes; one here means the file changed since.
    let protocol = meta
        .protocol()
        .ok_or_else(|| invalid("unknown protocol code or flags"))?;
    Ok(Request {
        protocol,
        body: Bytes::from(payload).slice(meta_len as usize..),
        samples: meta.samples,
        oldest_ms: meta.oldest_ms,
        newest_ms: meta.newest_ms,
    })
}

/// What the first bytes of a segment file say about its layout.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Empty,
    /// No segment header: version-1 records from offset 0.
    V1,
    /// An intact segment header of this version.
    Header(u32),
    /// The start of the magic, then a torn (`false`) or corrupt (`true`) header.
    DamagedHeader(bool),
}

fn read_start(mut file: &File, file_len: u64) -> io::Result<Start> {
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

/// Checks every record of `seg`, counts what is pending at or after `read_pos`, and cuts the
/// file at the first torn or corrupt record (or to nothing, when its header is damaged).
/// Fails, touching nothing in the file, on another format version or on an unacknowledged
/// record of an unknown protocol.
fn scan_segment(
    mut seg: Segment,
    read_pos: u64,
    recovery: &mut Recovery,
) -> Result<Segment, BufferError> {
    let path = seg.path.clone();
    let err = |source| io_error(&path, source);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(err)?;
    let file_len = file.metadata().map_err(err)?.len();
    let mut offset = 0u64;
    // Some(true): corrupt record or header; Some(false): torn tail or header.
    let mut damage = None;
    match read_start(&file, file_len).map_err(err)? {
        Start::Empty => seg.sealed = true,
        Start::V1 => {
            seg.format = Format::V1;
            seg.sealed = true;
        }
        Start::Header(FORMAT_VERSION) => offset = SEGMENT_HEADER_LEN,
        Start::Header(version) => return Err(BufferError::UnknownFormat { path, version }),
        Start::DamagedHeader(corrupt) => {
            seg.sealed = true;
            damage = Some(corrupt);
        }
    }
    let header_damaged = damage.is_some();
    seg.read_offset = offset;
    let meta_len = seg.format.meta_len();
    (&file).seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut r = BufReader::with_capacity(64 << 10, &file);
    let mut chunk = vec![0u8; 64 << 10];
    while damage.is_none() && offset < file_len {
        let remaining = file_len - offset;
        let mut head_buf = [0u8; (HEADER_LEN + META_LEN) as usize];
        let head = &mut head_buf[..(HEADER_LEN + meta_len) as usize];
        if remaining < HEADER_LEN {
            damage = Some(false);
            break;
        }
        let len = match read_full(&mut r, &mut head[..HEADER_LEN as usize]).map_err(err)? {
            true => u64::from(le_u32(head, 0)),
            false => {
                damage = Some(false);
                break;
            }
        };
        if len < meta_len {
            damage = Some(true);
            break;
        }
        if len > remaining - HEADER_LEN {
            damage = Some(false);
            break;
        }
        if !read_full(&mut r, &mut head[HEADER_LEN as usize..]).map_err(err)? {
            damage = Some(false);
            break;
        }
        let mut crc = crc32c::crc32c(&head[HEADER_LEN as usize..]);
        let mut left = len - meta_len;
        while left > 0 {
            let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = r.read(&mut chunk[..want]).map_err(err)?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &chunk[..n]);
            left -= n as u64;
        }
        if left > 0 {
            damage = Some(false);
            break;
        }
        if crc != le_u32(head, 4) {
            damage = Some(true);
            break;
        }
        let meta = Meta::parse(seg.format, &head[HEADER_LEN as usize..]);
        let seq = seg.first_seq.saturating_add(seg.records);
        let rec_len = HEADER_LEN + len;
        if seq < read_pos {
            seg.read_index += 1;
            seg.read_offset += rec_len;
        } else {
            if meta.protocol().is_none() {
                return Err(BufferError::UnknownProtocol {
                    path,
                    seq,
                    code: meta.protocol,
                    flags: meta.flags,
                });
            }
            seg.pending_bytes += size_of_body(len - meta_len);
            seg.pending_samples += u64::from(meta.samples);
        }
        seg.records += 1;
        offset += rec_len;
    }
    drop(r);
    seg.len = offset;
    if let Some(corrupt) = damage {
        let cut = file_len - offset;
        file.set_len(offset).map_err(err)?;
        file.sync_all().map_err(err)?;
        recovery.truncated_bytes += cut;
        recovery.corrupt_records += u64::from(corrupt);
        let reason = match (header_damaged, corrupt) {
            (false, true) => "corrupt record",
            (false, false) => "torn tail",
            (true, true) => "corrupt segment header",
            (true, false) => "torn segment header",
        };
        warn!(
            file = %path.display(),
            offset,
            bytes_cut = cut,
            reason,
            "damaged buffer segment; truncated at the last good record"
        );
    }
    Ok(seg)
}

/// `read_exact` that reports a short read as `false` instead of an error.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// `Ok(None)` when there is no read position; `Err` when it is unreadable or garbled.
fn load_read_pos(dir: &Path) -> io::Result<Option<u64>> {
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

fn write_read_pos(dir: &Path, seq: u64) -> Result<(), BufferError> {
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
        return overwrite_read_pos(&dir.join(READ_POS), &data).map_err(|_| io_error(&tmp, source));
    }
    let target = dir.join(READ_POS);
    fs::rename(&tmp, &target).map_err(|source| io_error(&target, source))?;
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

/// Takes the exclusive lock on `dir` (see the module docs) and records this process's pid
/// beside it. Fails with [`BufferError::Locked`] when another handle holds it.
fn lock_dir(dir: &Path) -> Result<Option<File>, BufferError> {
    let not_writable = |source| BufferError::NotWritable {
        path: dir.to_path_buf(),
        source,
    };
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(not_writable)?;
    // A lock this very process recorded can only be held by a copy of our descriptor: a
    // child forked a moment ago keeps copies of every descriptor until its exec closes them
    // (flock locks belong to the open file, not to the process). The agent forks nothing, but
    // a process that embeds it, or runs its tests, may: wait for that exec, up to 2 s.
    let mut own_waits = 0;
    let locked = loop {
        match file.try_lock() {
            Err(fs::TryLockError::WouldBlock)
                if cfg!(unix)
                    && own_waits < 200
                    && lock_holder(dir) == Some(std::process::id()) =>
            {
                own_waits += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(BufferError::Locked {
                path: dir.to_path_buf(),
                pid: lock_holder(dir),
            })
        }
        // A filesystem without locks: the buffer still works, unguarded.
        Err(fs::TryLockError::Error(error)) if error.kind() == io::ErrorKind::Unsupported => {
            warn!(file = %path.display(), %error, "cannot lock the buffer directory; make sure no other agent uses it");
            return Ok(None);
        }
        Err(fs::TryLockError::Error(source)) => return Err(io_error(&path, source)),
    }
    fs::write(dir.join(LOCK_PID), format!("{}\n", std::process::id())).map_err(not_writable)?;
    Ok(Some(file))
}

/// The pid the holder of the lock recorded, if it is readable. A holder that has just taken
/// the lock may not have written it yet: then this is a previous holder's, or nothing.
fn lock_holder(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join(LOCK_PID))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Creates, fsyncs and removes a small file and fsyncs the directory, so a directory the
/// buffer could not use fails at start-up rather than on the first push or ack.
fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE);
    let mut f = File::create(&path)?;
    f.write_all(b"probe")?;
    f.sync_all()?;
    drop(f);
    fs::remove_file(&path)?;
    sync_dir(dir)
}

/// Makes created, renamed and removed directory entries durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows has no directory fsync; NTFS journals its metadata.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::memory::MemoryBuffer;

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
                samples: 1
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
                samples: 1 + 2
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
                samples: (3..=10).sum()
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
                samples: 7
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
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        let mut in_flight = None;
        for step in 0..400u32 {
            match next(10) {
                0..=4 => {
                    let x = batch(step, next(30_000) as usize);
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
}
