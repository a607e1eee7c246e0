//! Requests waiting to be sent: encoded, compressed Remote Write bodies, oldest first.
//!
//! The poller pushes one [`Batch`] per request it encodes; the sender reads the oldest with
//! [`Buffer::front`], sends it, and removes it with [`Buffer::ack`] once it was delivered or
//! dropped for good. Both kinds of buffer are bounded in bytes and drop their *oldest* batches
//! when full (newest data wins), reporting what they dropped so it can be counted. Sequence
//! numbers make the hand-over safe: if the front batch is dropped for room while the sender is
//! still sending it, acknowledging it later is a no-op instead of removing a newer batch.
//!
//! Not here: deciding what to send (the poller) or retrying (the sender).

pub mod disk;
pub mod memory;

use bytes::Bytes;

/// One encoded request: the samples of exactly one poll (a request never mixes polls, so a
/// receiver rejecting a too-old poll cannot take a fresh one down with it).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Snappy-compressed (block format) `prometheus.WriteRequest`.
    pub body: Bytes,
    pub samples: u32,
    /// Oldest and newest sample timestamps in the batch (ms since the Unix epoch), so
    /// `--max-sample-age` can be applied without decoding the body.
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

impl Batch {
    /// Bytes the batch occupies in a buffer (its body plus a fixed allowance for the rest).
    pub fn size(&self) -> u64 {
        self.body.len() as u64 + 32
    }
}

/// What a push or a start-up recovery had to drop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub batches: u64,
    pub samples: u64,
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
    #[error("buffer file {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A bounded FIFO of batches. Implementations: [`memory::MemoryBuffer`],
/// [`disk::DiskBuffer`].
pub trait Buffer: Send {
    /// Appends `batch` behind every other. When the buffer is then over its size, the oldest
    /// batches are removed until it fits, and returned as dropped. A batch larger than the
    /// whole buffer is itself dropped.
    fn push(&mut self, batch: Batch) -> Result<Dropped, BufferError>;

    /// The oldest batch not yet acknowledged, with its sequence number; it stays in the
    /// buffer until [`Buffer::ack`].
    fn front(&mut self) -> Result<Option<(u64, Batch)>, BufferError>;

    /// Removes batch `seq` if it is still the oldest; a no-op if it was dropped meanwhile.
    fn ack(&mut self, seq: u64) -> Result<(), BufferError>;

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
