//! The default buffer: batches in a `VecDeque`, bounded by bytes, oldest dropped when full.
//! Lost when the process ends; `--buffer-dir` selects the disk buffer instead.

use std::collections::VecDeque;

use super::{Buffer, BufferError, Dropped};
use crate::remote_write::Request;

pub struct MemoryBuffer {
    batches: VecDeque<(u64, Request)>,
    next_seq: u64,
    max_bytes: u64,
    bytes: u64,
    samples: u64,
}

impl MemoryBuffer {
    pub fn new(max_bytes: u64) -> Self {
        MemoryBuffer {
            batches: VecDeque::new(),
            next_seq: 0,
            max_bytes,
            bytes: 0,
            samples: 0,
        }
    }

    fn pop_oldest(&mut self) -> Option<Request> {
        let (_, b) = self.batches.pop_front()?;
        self.bytes -= b.size();
        self.samples -= u64::from(b.samples);
        Some(b)
    }
}

impl Buffer for MemoryBuffer {
    fn push(&mut self, batch: Request) -> Result<Dropped, BufferError> {
        let mut dropped = Dropped::default();
        if batch.size() > self.max_bytes {
            dropped.add(batch.samples);
            return Ok(dropped);
        }
        while self.bytes + batch.size() > self.max_bytes {
            match self.pop_oldest() {
                Some(old) => dropped.add(old.samples),
                None => break,
            }
        }
        self.bytes += batch.size();
        self.samples += u64::from(batch.samples);
        self.batches.push_back((self.next_seq, batch));
        self.next_seq += 1;
        Ok(dropped)
    }

    fn front(&mut self) -> Result<Option<(u64, Request)>, BufferError> {
        Ok(self.batches.front().cloned())
    }

    fn run(&mut self, max_bytes: u64) -> Result<Vec<(u64, Request)>, BufferError> {
        let mut total = 0u64;
        Ok(self
            .batches
            .iter()
            .enumerate()
            .take_while(|(i, (_, b))| {
                total = total.saturating_add(b.size());
                *i == 0 || total <= max_bytes
            })
            .map(|(_, batch)| batch.clone())
            .collect())
    }

    fn ack(&mut self, seq: u64) -> Result<bool, BufferError> {
        let found = self.batches.front().is_some_and(|(s, _)| *s == seq);
        if found {
            self.pop_oldest();
        }
        Ok(found)
    }

    fn len(&self) -> usize {
        self.batches.len()
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u8, body_len: usize) -> Request {
        Request {
            protocol: crate::remote_write::Protocol::V1,
            body: bytes::Bytes::from(vec![n; body_len]),
            samples: u32::from(n),
            oldest_ms: i64::from(n),
            newest_ms: i64::from(n),
        }
    }

    #[test]
    fn fifo_with_ack() {
        let mut b = MemoryBuffer::new(10_000);
        for n in 1..=3 {
            assert_eq!(b.push(batch(n, 10)).unwrap(), Dropped::default());
        }
        assert_eq!((b.len(), b.samples(), b.bytes()), (3, 6, 3 * 42));
        let (seq, first) = b.front().unwrap().unwrap();
        assert_eq!(first.samples, 1);
        b.ack(seq).unwrap();
        b.ack(seq).unwrap();
        assert_eq!(
            b.front().unwrap().unwrap().1.samples,
            2,
            "a repeated ack removes nothing more"
        );
        assert_eq!(b.len(), 2);
    }

    /// A run: the front and those behind it within the bound, the front always; it starts at
    /// the front again after acknowledgements.
    #[test]
    fn a_run_is_the_front_and_what_fits_behind_it() {
        let mut b = MemoryBuffer::new(1 << 20);
        for n in 1..=5 {
            b.push(batch(n, 100)).unwrap();
        }
        let size = batch(1, 100).size();
        let samples = |run: Vec<(u64, Request)>| -> Vec<u32> {
            run.into_iter().map(|(_, r)| r.samples).collect()
        };
        assert_eq!(samples(b.run(u64::MAX).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(samples(b.run(2 * size).unwrap()), [1, 2]);
        assert_eq!(samples(b.run(2 * size - 1).unwrap()), [1]);
        assert_eq!(
            samples(b.run(0).unwrap()),
            [1],
            "the front, whatever the bound"
        );
        let (front, _) = b.front().unwrap().unwrap();
        b.ack(front).unwrap();
        assert_eq!(samples(b.run(u64::MAX).unwrap()), [2, 3, 4, 5]);
        assert!(MemoryBuffer::new(1 << 20).run(u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn full_buffer_drops_oldest_and_reports_them() {
        // Room for exactly two 68-byte batches.
        let mut b = MemoryBuffer::new(136);
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
        let kept: Vec<u32> = std::iter::from_fn(|| {
            let (s, x) = b.front().unwrap()?;
            b.ack(s).unwrap();
            Some(x.samples)
        })
        .collect();
        assert_eq!(
            kept,
            vec![2, 3],
            "acking a batch dropped while in flight keeps the newer ones"
        );
    }

    #[test]
    fn a_batch_larger_than_the_buffer_is_dropped() {
        let mut b = MemoryBuffer::new(50);
        assert_eq!(
            b.push(batch(7, 100)).unwrap(),
            Dropped {
                batches: 1,
                samples: 7,
                ..Dropped::default()
            }
        );
        assert!(b.is_empty());
    }
}
