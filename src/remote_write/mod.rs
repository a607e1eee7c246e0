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
pub mod narrow;
pub mod proto;
#[cfg(any(test, feature = "test-support"))]
pub mod reference;
pub mod request;
pub mod rewrite;
mod splice;
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
/// and the sender (which switches it when the receiver shows it does not take it), and which
/// switches are allowed (`--remote-write-version`):
/// - `1` ([`Negotiated::new`] with 1.0): 1.0 only;
/// - `2` ([`Negotiated::new`] with 2.0): 2.0, falling back to 1.0 for good when the receiver
///   shows it does not speak 2.0 (415, or a 2xx without the written-samples header);
/// - `auto` ([`Negotiated::auto`]): 2.0 first, falling back as `2` does; then, if the
///   receiver answers 415 to 1.0 (one that takes only 2.0 but answered without the
///   written-samples header, like some OpenTelemetry Collector versions), switching to 2.0 for
///   good. So at most one switch each way, and never a loop: a receiver that refuses both
///   gets its requests dropped. A restart probes 2.0 again, so a receiver upgraded meanwhile
///   is noticed.
///
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct Negotiated(std::sync::Arc<std::sync::atomic::AtomicU8>);

/// What a switch request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Switched now: log it once.
    Switched,
    /// Already on the protocol asked for.
    Already,
    /// Not allowed: a pinned version, or that switch made already.
    Refused,
}

/// State bits beside the protocol code (bits 0-1).
const CODE: u8 = 0b11;
const AUTO: u8 = 1 << 2;
const FELL_BACK: u8 = 1 << 3;
const SWITCHED_UP: u8 = 1 << 4;

impl Negotiated {
    /// `--remote-write-version 1` or `2`.
    pub fn new(protocol: Protocol) -> Self {
        Self::with(protocol.code())
    }

    /// `--remote-write-version auto`.
    pub fn auto() -> Self {
        Self::with(Protocol::V2.code() | AUTO)
    }

    fn with(bits: u8) -> Self {
        Negotiated(std::sync::Arc::new(std::sync::atomic::AtomicU8::new(bits)))
    }

    fn bits(&self) -> u8 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn get(&self) -> Protocol {
        Protocol::from_code(self.bits() & CODE).unwrap_or(Protocol::V1)
    }

    /// Whether this destination negotiates both ways (`auto`).
    pub fn is_auto(&self) -> bool {
        self.bits() & AUTO != 0
    }

    /// Whether `auto` switched from 1.0 to 2.0: the receiver refuses 1.0, so a 2xx without
    /// the written-samples header is its way of answering 2.0, not a sign it predates it.
    pub fn switched_to_v2(&self) -> bool {
        self.bits() & SWITCHED_UP != 0
    }

    /// Switches to 1.0 for good: `2` and `auto`, once, and not after a switch to 2.0.
    pub fn fall_back_to_v1(&self) -> Switch {
        self.switch(
            Protocol::V1,
            |bits| bits & (FELL_BACK | SWITCHED_UP) == 0,
            FELL_BACK,
        )
    }

    /// Switches to 2.0 for good: `auto` only, once.
    pub fn switch_to_v2(&self) -> Switch {
        self.switch(
            Protocol::V2,
            |bits| bits & AUTO != 0 && bits & SWITCHED_UP == 0,
            SWITCHED_UP,
        )
    }

    fn switch(&self, to: Protocol, allowed: impl Fn(u8) -> bool, mark: u8) -> Switch {
        use std::sync::atomic::Ordering::Relaxed;
        let mut outcome = Switch::Refused;
        let _ = self.0.fetch_update(Relaxed, Relaxed, |bits| {
            outcome = if bits & CODE == to.code() {
                Switch::Already
            } else if allowed(bits) {
                Switch::Switched
            } else {
                Switch::Refused
            };
            (outcome == Switch::Switched).then_some((bits & !CODE) | to.code() | mark)
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switches each `--remote-write-version` allows: `1` none, `2` one fall back,
    /// `auto` a fall back and then one switch to 2.0, never back again.
    #[test]
    fn negotiation_switches_at_most_once_each_way() {
        let one = Negotiated::new(Protocol::V1);
        assert_eq!(one.switch_to_v2(), Switch::Refused);
        assert_eq!(one.fall_back_to_v1(), Switch::Already);
        assert_eq!(one.get(), Protocol::V1);

        let two = Negotiated::new(Protocol::V2);
        assert!(!two.is_auto());
        assert_eq!(two.switch_to_v2(), Switch::Already);
        assert_eq!(two.fall_back_to_v1(), Switch::Switched);
        assert_eq!(two.fall_back_to_v1(), Switch::Already);
        assert_eq!(two.switch_to_v2(), Switch::Refused);
        assert_eq!(two.get(), Protocol::V1);

        let auto = Negotiated::auto();
        let poller = auto.clone();
        assert!(auto.is_auto());
        assert_eq!(auto.get(), Protocol::V2);
        assert_eq!(auto.fall_back_to_v1(), Switch::Switched);
        assert_eq!(poller.get(), Protocol::V1, "the clone sees it");
        assert!(!auto.switched_to_v2());
        assert_eq!(auto.switch_to_v2(), Switch::Switched);
        assert!(poller.switched_to_v2());
        assert_eq!(poller.get(), Protocol::V2);
        assert_eq!(auto.fall_back_to_v1(), Switch::Refused, "never back");
        assert_eq!(auto.switch_to_v2(), Switch::Already);
        assert_eq!(auto.get(), Protocol::V2);
    }

    #[test]
    fn content_types_name_their_messages() {
        assert_eq!(
            CONTENT_TYPE_V2,
            format!("{CONTENT_TYPE_V1};proto={PROTO_V2}")
        );
        assert_eq!(PROTO_V1, "prometheus.WriteRequest");
    }
}
