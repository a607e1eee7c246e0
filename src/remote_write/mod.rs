//! Prometheus Remote Write: the wire types, turning series into compressed request bodies
//! (`encode`), and sending one body (`client`). Retrying and buffering are not here.

pub mod client;
pub mod encode;
pub mod proto;

pub use client::{RemoteWriteClient, SendError};
pub use encode::{CommonLabels, EncodedRequest};

/// `Content-Type` of a Remote Write 1.0 body.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";
/// Remote Write bodies are snappy *block* format (`snap::raw`), not the framed stream format.
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// The value 1.0 senders put in [`VERSION_HEADER`].
pub const VERSION_V1: &str = "0.1.0";
/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// Prometheus's staleness marker: a NaN with these exact bits, distinct from an ordinary NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (an ordinary NaN is not).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
