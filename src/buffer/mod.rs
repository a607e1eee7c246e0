//! Requests waiting to be sent: encoded, compressed Remote Write bodies, oldest first.
//!
//! The poller pushes each [`Request`] it encodes (a *batch*, once buffered: the word this
//! module and its callers use for a request waiting here); the sender reads the oldest with
//! [`Buffer::front`], sends it, and removes it with [`Buffer::ack`] once it was delivered or
//! dropped for good. Both kinds of buffer are bounded in bytes and drop their *oldest* batches
//! when full (newest data wins), reporting what they dropped so it can be counted. Sequence
//! numbers make the hand-over safe: if the front batch is dropped for room while the sender is
//! still sending it, acknowledging it later is a no-op instead of removing a newer batch.
//!
//! Not here: deciding what to send (the poller), retrying (the sender), what a request holds
//! (`remote_write::request`), or the self-metrics: [`Queue`] returns the [`Levels`] each change
//! leaves and what it dropped, and its callers report them.

pub mod disk;
pub mod memory;

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::remote_write::Request;

/// What a push or a start-up recovery had to drop: the oldest batches, so that the newest
/// fit. The two causes are counted apart, each under its own reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// For `--buffer-max-size` (or, alone, a batch larger than the whole buffer).
    pub batches: u64,
    pub samples: u64,
    /// For a full file system (the disk buffer): the oldest segment files deleted so that
    /// the new batch could be written.
    pub disk_full_batches: u64,
    pub disk_full_samples: u64,
}

impl Dropped {
    pub fn add(&mut self, samples: u32) {
        self.batches += 1;
        self.samples += u64::from(samples);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer directory {path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("buffer directory {path} is not writable: {source}")]
    NotWritable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another buffer (another agent, or another destination given the same directory) holds
    /// the directory's lock: two writers would interleave their records in one segment.
    #[error("buffer directory {path} is in use by another kubelet-push ({}); each agent and each destination needs a buffer directory of its own", holder(*.pid))]
    Locked {
        path: std::path::PathBuf,
        /// As the holder recorded it, when readable.
        pid: Option<u32>,
    },
    /// A segment written in a format this release cannot read, by a newer one. Start-up
    /// stops rather than delete it: a downgrade must not destroy what an upgrade buffered.
    #[error("buffer file {path} has format version {version}, which this release cannot read (it reads versions 1 and 2); a newer kubelet-push wrote it: run that release until the buffer is delivered, or move the file away to discard what it holds")]
    UnknownFormat {
        path: std::path::PathBuf,
        version: u32,
    },
    /// A record whose protocol code (or flags) this release does not know, written by a newer
    /// one; sending its body as if it were another protocol would be garbage to the receiver.
    #[error("buffer file {path}: request {seq} has protocol code {code} and flags {flags:#04x}, which this release does not know; a newer kubelet-push wrote it: run that release until the buffer is delivered, or move the file away to discard what it holds")]
    UnknownProtocol {
        path: std::path::PathBuf,
        seq: u64,
        code: u8,
        flags: u8,
    },
    #[error("buffer file {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BufferError {
    /// An I/O error on the buffer file or directory at `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> BufferError {
        BufferError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file system (or the user's quota on it) is full: deleting older files makes room.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            BufferError::Io { source, .. }
            | BufferError::Dir { source, .. }
            | BufferError::NotWritable { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            BufferError::Locked { .. }
            | BufferError::UnknownFormat { .. }
            | BufferError::UnknownProtocol { .. } => false,
        }
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "process id unknown".to_owned(),
    }
}

/// A bounded FIFO of batches. Implementations: [`memory::MemoryBuffer`],
/// [`disk::DiskBuffer`].
pub trait Buffer: Send {
    /// Appends `batch` behind every other. When the buffer is then over its size, the oldest
    /// batches are removed until it fits, and returned as dropped; so are those a disk buffer
    /// deletes because the file system is full. A batch larger than the whole buffer is itself
    /// dropped. An error means `batch` could not be stored.
    fn push(&mut self, batch: Request) -> Result<Dropped, BufferError>;

    /// The oldest batch not yet acknowledged, with its sequence number; it stays in the
    /// buffer until [`Buffer::ack`].
    fn front(&mut self) -> Result<Option<(u64, Request)>, BufferError>;

    /// The oldest batch and those right behind it, in order, as long as their [`Request::size`]
    /// adds up to at most `max_bytes` (the oldest is always there, whatever its size): what a
    /// sender catching up sends as one request. They stay in the buffer until acknowledged,
    /// oldest first.
    fn run(&mut self, max_bytes: u64) -> Result<Vec<(u64, Request)>, BufferError>;

    /// Removes batch `seq` if it is still the oldest, and says whether it was: `Ok(false)` if
    /// it was dropped meanwhile (evicted for room, or skipped as damaged). An error comes only
    /// after the batch was found.
    fn ack(&mut self, seq: u64) -> Result<bool, BufferError>;

    /// Acknowledges the batches `seqs`, oldest first, as [`Buffer::ack`] one after the other
    /// would, but records the delivery once for all of them: a merged request of 50 batches
    /// costs a disk buffer one read-position write, not 50 (each one a write, an fsync and a
    /// rename). Says per batch whether it was still there; an error (after the batches were
    /// removed in memory) concerns all that were.
    fn ack_run(&mut self, seqs: &[u64]) -> Acked {
        let mut acked = Acked::default();
        for &seq in seqs {
            match self.ack(seq) {
                Ok(found) => acked.found.push(found),
                Err(error) => {
                    acked.found.push(true);
                    acked.error.get_or_insert(error);
                }
            }
        }
        acked
    }

    /// Batches waiting.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, as counted against the size limit.
    fn bytes(&self) -> u64;

    /// Samples waiting.
    fn samples(&self) -> u64;
}

/// What [`Buffer::ack_run`] did: per batch, whether it was still there (false: dropped
/// meanwhile), and the error recording the delivery, if any.
#[derive(Debug, Default)]
pub struct Acked {
    pub found: Vec<bool>,
    pub error: Option<BufferError>,
}

/// What a buffer holds, for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Levels {
    pub requests: u64,
    pub bytes: u64,
    pub samples: u64,
}

impl Levels {
    fn of(buffer: &dyn Buffer) -> Self {
        Levels {
            requests: buffer.len() as u64,
            bytes: buffer.bytes(),
            samples: buffer.samples(),
        }
    }
}

/// A buffer shared by the poller (which pushes) and the sender (which reads and acknowledges),
/// waking the sender when something arrives. Each change returns the levels it left, so the
/// caller can keep the gauges in step.
pub struct Queue {
    buffer: Mutex<Box<dyn Buffer>>,
    changed: Notify,
}

impl Queue {
    pub fn new(buffer: Box<dyn Buffer>) -> Self {
        Queue {
            buffer: Mutex::new(buffer),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Box<dyn Buffer>> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a batch. `Ok` says what the buffer dropped for room; an error means the batch
    /// itself could not be stored. The levels are after the attempt either way.
    pub fn push(&self, batch: Request) -> (Levels, Result<Dropped, BufferError>) {
        let mut buffer = self.lock();
        let result = buffer.push(batch);
        let levels = Levels::of(&**buffer);
        drop(buffer);
        if result.is_ok() {
            self.changed.notify_one();
        }
        (levels, result)
    }

    pub fn front(&self) -> Result<Option<(u64, Request)>, BufferError> {
        self.lock().front()
    }

    /// See [`Buffer::run`].
    pub fn run(&self, max_bytes: u64) -> Result<Vec<(u64, Request)>, BufferError> {
        self.lock().run(max_bytes)
    }

    /// Acknowledges batch `seq` (see [`Buffer::ack`]). A failure to record that on disk only
    /// means the batch may be sent again after a restart: the caller logs it and goes on.
    pub fn ack(&self, seq: u64) -> (Levels, Result<bool, BufferError>) {
        let mut buffer = self.lock();
        let result = buffer.ack(seq);
        (Levels::of(&**buffer), result)
    }

    /// [`Buffer::ack_run`], with the levels after it.
    pub fn ack_run(&self, seqs: &[u64]) -> (Levels, Acked) {
        let mut buffer = self.lock();
        let acked = buffer.ack_run(seqs);
        (Levels::of(&**buffer), acked)
    }

    pub fn levels(&self) -> Levels {
        Levels::of(&**self.lock())
    }

    /// Resolves after the next push (at once if one happened since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub fn samples(&self) -> u64 {
        self.lock().samples()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
