//! Temporary stand-in while the disk buffer is written; never committed as done.
use std::path::Path;

use super::{Batch, Buffer, BufferError, Dropped};

pub struct DiskBuffer;

#[derive(Debug, Default)]
pub struct Recovery {
    pub batches: u64,
    pub samples: u64,
    pub truncated_bytes: u64,
    pub corrupt_records: u64,
    pub dropped: Dropped,
}

impl DiskBuffer {
    pub fn open(dir: &Path, _max_bytes: u64) -> Result<(DiskBuffer, Recovery), BufferError> {
        Err(BufferError::Dir {
            path: dir.to_path_buf(),
            source: std::io::Error::other("disk buffer not available yet"),
        })
    }
}

impl Buffer for DiskBuffer {
    fn push(&mut self, _batch: Batch) -> Result<Dropped, BufferError> {
        Ok(Dropped::default())
    }
    fn front(&mut self) -> Result<Option<(u64, Batch)>, BufferError> {
        Ok(None)
    }
    fn ack(&mut self, _seq: u64) -> Result<(), BufferError> {
        Ok(())
    }
    fn len(&self) -> usize {
        0
    }
    fn bytes(&self) -> u64 {
        0
    }
    fn samples(&self) -> u64 {
        0
    }
}
