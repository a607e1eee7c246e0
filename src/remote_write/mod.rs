//! Prometheus Remote Write, one file per concern, imports one way (each file names the others
//! it leaves things to):
//! - `request`: the [`Request`] every other module passes around (encoders make it, the buffer
//!   stores it, the sender sends it) and the [`Encoder`] interface;
//! - `encoders`: [`Encoders`], one encoder of each protocol for a source to keep;
//! - `proto`: the prost-generated wire types;
//! - `wire`: what both sides of the wire share: varints, bounded snappy decompression, the
//!   1.0 and 2.0 decoders, reading 2.0 label refs;
//! - `v1`, `v2`: the hand-written encoders, one per protocol;
//! - `rewrite`: encoded bodies rewritten, 2.0 as 1.0 and trimmed by sample age;
//! - `client`: sending one body and classifying the answer; `access`: how it reaches the
//!   receiver (auth, TLS, proxy);
//! - `reference`: the prost-built encoders the hand-written ones are tested against, compiled
//!   for tests and the `test-support` feature only; the release binary has none of it.
//! - `cases`: the random encoder inputs (`text`, `value`, `timestamp`, …) the `v1` and `v2`
//!   tests draw, compiled for tests only.
//!
//! Here: the protocols' literals (content types, headers) and [`Protocol`] / [`Negotiated`].
//! Retrying and buffering are not here (`sender`, `buffer`).

pub mod access;
#[cfg(test)]
mod cases;
pub mod client;
mod encoders;
pub mod proto;
#[cfg(any(test, feature = "test-support"))]
pub mod reference;
pub mod request;
pub mod rewrite;
pub mod v1;
pub mod v2;
pub mod wire;

pub use crate::series::{is_stale_marker, CommonLabels, STALE_NAN_BITS};
pub use client::{Accepted, RemoteWriteClient, SendError, Written};
pub use encoders::Encoders;
pub use request::{Encoder, Request};

/// `Content-Type` of a Remote Write 1.0 body.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";
/// `Content-Type` of a Remote Write 2.0 body: [`CONTENT_TYPE_V1`] with `proto=` [`PROTO_V2`].
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// The message a 1.0 body holds, as a `proto=` parameter of the content type names it.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// The message a 2.0 body holds.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// Remote Write bodies are snappy *block* format (`snap::raw`), not the framed stream format.
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// The value 1.0 senders put in [`VERSION_HEADER`].
pub const VERSION_V1: &str = "0.1.0";
/// The value 2.0 senders put in [`VERSION_HEADER`].
pub const VERSION_V2: &str = "2.0.0";
/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// Which Remote Write protocol a request body is. Buffered requests carry it (the disk buffer
/// stores [`Protocol::code`] in every record), so whoever sends a body knows its headers, and
/// a fallback from one protocol to another knows what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Remote Write 1.0: a snappy-compressed (block format) `prometheus.WriteRequest`.
    V1,
    /// Remote Write 2.0: a snappy-compressed (block format) `io.prometheus.write.v2.Request`.
    V2,
}

impl Protocol {
    /// The byte that stands for this protocol on disk. Stable: a code, once released, is never
    /// reused for another protocol.
    pub const fn code(self) -> u8 {
        match self {
            Protocol::V1 => 1,
            Protocol::V2 => 2,
        }
    }

    /// The protocol a [`Protocol::code`] stands for; `None` for a code this release does not
    /// know (written by a newer one).
    pub const fn from_code(code: u8) -> Option<Protocol> {
        match code {
            1 => Some(Protocol::V1),
            2 => Some(Protocol::V2),
            _ => None,
        }
    }

    /// `Content-Type` of a body of this protocol.
    pub const fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => CONTENT_TYPE_V1,
            Protocol::V2 => CONTENT_TYPE_V2,
        }
    }

    /// Value of [`VERSION_HEADER`] for a body of this protocol.
    pub const fn version(self) -> &'static str {
        match self {
            Protocol::V1 => VERSION_V1,
            Protocol::V2 => VERSION_V2,
        }
    }
}

/// The protocol a destination is sent, shared by the poller (which encodes new requests in it)
/// and the sender (which falls back from 2.0 to 1.0 when the receiver shows it does not speak
/// 2.0, for the rest of the process). Cloning shares it.
#[derive(Debug, Clone)]
pub struct Negotiated(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl Negotiated {
    pub fn new(protocol: Protocol) -> Self {
        Negotiated(std::sync::Arc::new(std::sync::atomic::AtomicU8::new(
            protocol.code(),
        )))
    }

    pub fn get(&self) -> Protocol {
        Protocol::from_code(self.0.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(Protocol::V1)
    }

    /// Switches to 1.0 for good. Returns whether this call changed it (log it once).
    pub fn fall_back_to_v1(&self) -> bool {
        self.0
            .swap(Protocol::V1.code(), std::sync::atomic::Ordering::Relaxed)
            != Protocol::V1.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2.0 content type is the 1.0 one naming the 2.0 message, as the spec writes it.
    #[test]
    fn content_types_name_their_messages() {
        assert_eq!(
            CONTENT_TYPE_V2,
            format!("{CONTENT_TYPE_V1};proto={PROTO_V2}")
        );
        assert_eq!(PROTO_V1, "prometheus.WriteRequest");
    }
}
