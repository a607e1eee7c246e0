//! The durable buffer (`--buffer-dir`): batches appended to segment files, fsynced before
//! [`Buffer::push`] returns, replayed after a restart. Same semantics as
//! [`super::memory::MemoryBuffer`] (FIFO, bounded by [`Request::size`], oldest dropped first),
//! plus: a batch reported as buffered survives `kill -9` and power loss; one buffer at a time
//! per directory (an OS lock, see `dir.rs`); and the disk holds little more than what is
//! pending, so a small volume works (see "Segment sizing"). Not here: choosing the directory
//! (one per destination, by the agent). Free space is not checked ahead: a write that does
//! not fit deletes the oldest segments until it does (see "Segment sizing").
//!
//! The on-disk format (segment files, records, `read.pos`) is drawn in `format.rs`; the
//! directory's lock, probe and fsync are in `dir.rs`.
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
//! an unlink). The buffer does not read the free space. A push the volume cannot take
//! (`ENOSPC`, or a quota) deletes the oldest segment, its pending records dropped and counted
//! apart from those `--buffer-max-size` drops, and tries again: a full file system keeps the
//! newest data, like a full buffer. Only a record that does not fit on the volume even with
//! nothing else buffered fails, and the caller counts it.
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

mod dir;
mod format;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::{Buffer, BufferError, Dropped};
use crate::remote_write::Request;
use dir::{lock_dir, probe, sync_dir};
use format::{
    encode, load_read_pos, parse_segment_name, read_head, read_start, segment_header, size_of_body,
    write_read_pos, Format, Start, FORMAT_VERSION, HEADER_LEN, META_LEN, SEGMENT_HEADER_LEN,
    SEGMENT_SUFFIX,
};

/// Bounds of the size at which a segment is closed for appends (`max_bytes / 8` between
/// them). The upper bound keeps what a full disk must deliver before it gets space back
/// small: a segment is deleted only once all of it was delivered.
const MIN_SEGMENT: u64 = 64 << 10;
const MAX_SEGMENT: u64 = 1 << 20;

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
    /// Read-position writes so far, for the tests that count them.
    #[cfg(test)]
    read_pos_writes: std::sync::atomic::AtomicU32,
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
            #[cfg(test)]
            read_pos_writes: Default::default(),
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
        let mut file = File::open(&s.path)?;
        file.seek(SeekFrom::Start(s.read_offset))?;
        // Framing and metadata in one read, checked after it: a file cut shorter since
        // start-up fails as a short read whatever its length field says.
        let mut buf = [0u8; (HEADER_LEN + META_LEN) as usize];
        let buf = &mut buf[..(HEADER_LEN + s.format.meta_len()) as usize];
        file.read_exact(buf)?;
        let head = read_head(&mut &buf[..], s.format, s.len.saturating_sub(s.read_offset))?;
        Ok((
            head.disk_len(),
            size_of_body(head.body_len),
            u64::from(head.meta.samples),
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
            return Err(BufferError::io(
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
            return Err(BufferError::io(&seg.path, source));
        }
        Ok(())
    }

    /// Appends `record`. On a full file system, first frees what is already delivered, then
    /// deletes the oldest segment, its pending records counted in `dropped` (`disk_full_*`),
    /// and tries again, until the record fits: the newest data wins, as at
    /// `--buffer-max-size`. Room comes back a whole segment file at a time, at most
    /// `segment_max` of records. Fails on any other error, and when even an empty buffer has
    /// no room for the record.
    fn append_making_room(
        &mut self,
        record: &[u8],
        dropped: &mut Dropped,
    ) -> Result<(), BufferError> {
        let mut reclaimed = false;
        loop {
            let Err(error) = self.append_record(record) else {
                return Ok(());
            };
            // A full disk may be full of records already delivered: free them and try again.
            if !reclaimed && self.reclaim_consumed_tail() {
                reclaimed = true;
                continue;
            }
            if !error.is_out_of_space() {
                return Err(error);
            }
            let Some(i) = self.head() else {
                return Err(error);
            };
            let (n, samples) = self.consume_segment(i);
            dropped.disk_full_batches += n;
            dropped.disk_full_samples += samples;
            // Overwrites read.pos in place when there is no room for a new file.
            if let Err(error) = self.persist_read_pos() {
                warn!(%error, "could not persist the read position after dropping for space");
            }
            self.reap();
        }
    }

    /// Removes batch `seq` in memory if it is still the oldest (its read position is not
    /// written: the caller does that once for all it removed); whether it was.
    fn take_front(&mut self, seq: u64) -> Result<bool, BufferError> {
        let Some(i) = self.head() else {
            return Ok(false);
        };
        if self.read_seq() != seq {
            return Ok(false);
        }
        let (disk, size, samples) = self
            .front_record_meta(i)
            .map_err(|source| BufferError::io(&self.segments[i].path, source))?;
        self.consume(i, 1, disk, size, samples);
        Ok(true)
    }

    fn persist_read_pos(&self) -> Result<(), BufferError> {
        #[cfg(test)]
        self.read_pos_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                            return Err(BufferError::io(&s.path, source));
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
                        return Err(BufferError::io(&path, source));
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
            .map_err(|source| BufferError::io(&seg.path, source))?;
        if let Err(source) = append(&mut file, 0, &segment_header(FORMAT_VERSION)) {
            // Without a whole header it takes no record; sealed and empty, the next roll
            // deletes it (and a restart cuts a torn header).
            let path = seg.path.clone();
            seg.sealed = true;
            self.segments.push_back(seg);
            return Err(BufferError::io(&path, source));
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
        let record = encode(&batch).map_err(|source| BufferError::io(&self.dir, source))?;
        self.append_making_room(&record, &mut dropped)?;
        let Some(seg) = self.segments.back_mut() else {
            return Err(BufferError::io(
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
        let trimmed = self.trim();
        dropped.batches += trimmed.batches;
        dropped.samples += trimmed.samples;
        Ok(dropped)
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
                Err(source) => return Err(BufferError::io(&s.path, source)),
            }
        }
    }

    /// The front as [`Buffer::front`] reads it, then the records behind it, read in order from
    /// their files, one at a time: memory holds at most `max_bytes` of bodies, however long the
    /// backlog. A record that cannot be read ends the run early; its turn at the front deals
    /// with it (see [`Buffer::front`]).
    fn run(&mut self, max_bytes: u64) -> Result<Vec<(u64, Request)>, BufferError> {
        let Some(front) = self.front()? else {
            return Ok(Vec::new());
        };
        let mut total = front.1.size();
        let mut next_seq = front.0.saturating_add(1);
        let mut out = vec![front];
        let Some(head) = self.head() else {
            return Ok(out);
        };
        for (n, s) in self.segments.iter().skip(head).enumerate() {
            // The head segment's front record was read above; later segments from their
            // first pending record.
            let (mut offset, mut index) = (s.read_offset, s.read_index);
            if n == 0 {
                let (disk, _, _) = match self.front_record_meta(head) {
                    Ok(meta) => meta,
                    Err(_) => return Ok(out),
                };
                offset += disk;
                index += 1;
            }
            if index >= s.records {
                continue;
            }
            let Ok(file) = File::open(&s.path) else {
                return Ok(out);
            };
            let mut file = BufReader::new(file);
            if file.seek(SeekFrom::Start(offset)).is_err() {
                return Ok(out);
            }
            while index < s.records {
                let Ok(frame) = read_head(&mut file, s.format, s.len.saturating_sub(offset)) else {
                    return Ok(out);
                };
                if total.saturating_add(size_of_body(frame.body_len)) > max_bytes {
                    return Ok(out);
                }
                let Ok(request) = frame.read_request(&mut file) else {
                    return Ok(out);
                };
                let seq = s.first_seq.saturating_add(index);
                if seq != next_seq {
                    return Ok(out);
                }
                total += request.size();
                out.push((seq, request));
                next_seq = seq.saturating_add(1);
                offset += frame.disk_len();
                index += 1;
            }
        }
        Ok(out)
    }

    /// On an error persisting the read position the batch is still removed (in memory); it
    /// may be delivered again after a restart.
    fn ack(&mut self, seq: u64) -> Result<bool, BufferError> {
        if !self.take_front(seq)? {
            return Ok(false);
        }
        let persisted = self.persist_read_pos();
        self.reap();
        persisted.map(|()| true)
    }

    /// One read-position write for the whole run (see [`Buffer::ack_run`]).
    fn ack_run(&mut self, seqs: &[u64]) -> crate::buffer::Acked {
        let mut acked = crate::buffer::Acked::default();
        for &seq in seqs {
            match self.take_front(seq) {
                Ok(found) => acked.found.push(found),
                // The front could not be read: it and those behind it stay, to be sent again
                // (as after a failed `ack`), never counted as dropped.
                Err(error) => {
                    acked.found.resize(seqs.len(), true);
                    acked.error = Some(error);
                    break;
                }
            }
        }
        if acked.found.contains(&true) {
            if let Err(error) = self.persist_read_pos() {
                acked.error.get_or_insert(error);
            }
            self.reap();
        }
        acked
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

fn append(file: &mut File, at: u64, record: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.write_all(record)?;
    file.sync_data()
}

/// Reads and checks the front record of `s`. Damage comes back as `InvalidData`.
fn read_record(s: &Segment) -> io::Result<Request> {
    let mut file = File::open(&s.path)?;
    file.seek(SeekFrom::Start(s.read_offset))?;
    let head = read_head(&mut file, s.format, s.len.saturating_sub(s.read_offset))?;
    head.read_request(&mut file)
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
    let err = |source| BufferError::io(&path, source);
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
    (&file).seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut r = BufReader::with_capacity(64 << 10, &file);
    let mut chunk = vec![0u8; 64 << 10];
    while damage.is_none() && offset < file_len {
        let frame = read_head(&mut r, seg.format, file_len - offset)
            .and_then(|head| head.skip_body(&mut r, &mut chunk).map(|()| head));
        let head = match frame {
            Ok(head) => head,
            Err(error) => match error.damage() {
                Some(corrupt) => {
                    damage = Some(corrupt);
                    break;
                }
                None => return Err(err(error.into())),
            },
        };
        let meta = head.meta;
        let seq = seg.first_seq.saturating_add(seg.records);
        let rec_len = head.disk_len();
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
            seg.pending_bytes += size_of_body(head.body_len);
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
