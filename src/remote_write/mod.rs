//! Prometheus Remote Write: the wire types, the encoder interface and the reference encoding
//! (`encode`), the 1.0 encoder (`v1`), and sending one body (`client`). Retrying and buffering are not here.

pub mod client;
pub mod encode;
pub mod proto;
pub mod v1;

pub use crate::series::{is_stale_marker, CommonLabels, STALE_NAN_BITS};
pub use client::{RemoteWriteClient, SendError};
pub use encode::{EncodedRequest, Encoder};

/// `Content-Type` of a Remote Write 1.0 body.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";
/// Remote Write bodies are snappy *block* format (`snap::raw`), not the framed stream format.
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// The value 1.0 senders put in [`VERSION_HEADER`].
pub const VERSION_V1: &str = "0.1.0";
/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";
