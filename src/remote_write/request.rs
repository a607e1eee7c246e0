//! The Remote Write request as the agent passes it around: [`Request`], one compressed body
//! with what must be known about it without decoding it, and [`Encoder`], the interface that
//! turns the points of one poll into requests. The encoders (`v1`, `v2`) make requests, the
//! buffer (`buffer`, on disk as the record drawn in `buffer::disk`) stores them, the sender
//! sends them, and `rewrite` rewrites them; all of them import it from here, and it imports
//! none of them.
//!
//! Not here: how a body is encoded (`v1`, `v2`) or read (`wire`), the protocols' headers
//! (the parent module), sending one (`client`).

use bytes::Bytes;

use super::Protocol;
use crate::metadata::Catalog;
use crate::series::{Point, SeriesSet};

/// One compressed request body, ready to POST: the samples of exactly one poll (a request
/// never mixes polls, so a receiver rejecting a too-old poll cannot take a fresh one down with
/// it).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What `body` is, so it is sent with the right headers, and a body written by one release
    /// is never taken for another protocol by the next.
    pub protocol: Protocol,
    /// The compressed request, as [`Request::protocol`] defines it (for [`Protocol::V1`]: a
    /// snappy-compressed, block format, `prometheus.WriteRequest`).
    pub body: Bytes,
    /// Samples in `body`, so they are counted (queued, sent, dropped) without decoding it; a
    /// `u32` because the disk record stores it as one.
    pub samples: u32,
    /// Oldest and newest sample timestamps in the request (ms since the Unix epoch), so
    /// `--max-sample-age` can be applied without decoding the body.
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

impl Request {
    /// Bytes the request occupies in a buffer (its body plus a fixed allowance for the rest).
    pub fn size(&self) -> u64 {
        self.body.len() as u64 + 32
    }
}

/// Turns the points of one poll into request bodies of one protocol.
pub trait Encoder: Send {
    /// Encodes `points` in order into requests of at most `max_samples` samples each (at least
    /// one), appended to `out`, with the families kubelet-push itself sends as metadata.
    /// Nothing fails but compression, which only fails on a body larger than snappy's 4 GiB
    /// limit.
    fn encode(
        &mut self,
        series: &SeriesSet,
        points: &[Point],
        max_samples: usize,
        out: &mut Vec<Request>,
    ) -> Result<(), snap::Error> {
        let catalog = crate::metadata::Kubelet;
        self.encode_in(series, points, &catalog, max_samples, out)
    }

    /// [`Encoder::encode`] with the family metadata of `catalog` (a scraped exporter's); a
    /// protocol without metadata ignores it.
    fn encode_in(
        &mut self,
        series: &SeriesSet,
        points: &[Point],
        catalog: &dyn Catalog,
        max_samples: usize,
        out: &mut Vec<Request>,
    ) -> Result<(), snap::Error>;
}
