//! kubelet-push polls the kubelet's Summary API on a timer and pushes what it reports (CPU,
//! memory, filesystems, network, volumes of the node, its pods and containers) to any
//! Prometheus Remote Write receiver. It is built for nodes nothing can scrape: Windows nodes
//! without cAdvisor, edge nodes behind NAT that can only dial out.
//!
//! The modules follow the data:
//!
//! ```text
//! scrape (a task per target: exporters, the kubelet's /metrics*) ───────────────┐
//! pipeline (one task) ──────────────────────────────────────────────────────────► buffer ──► sender ──► remote_write::client
//!   kubelet::client ─► kubelet::summary ─► pipeline::convert ─► series ─► remote_write::v1/v2 Queue:    retry,     POST, classify
//!   GET /stats/        serde, borrowed,    samples, timestamps  ids,      hand-written       memory or   backoff,   the answer
//!   summary            tolerant            to a sink            dedupe,   protobuf, snappy   disk        drop by age
//!                                                               stale
//! ```
//!
//! `series` is the neutral series model every encoder reads; `metadata` is the type, help and
//! unit of every family (sent by the 2.0 encoder). `pipeline::convert`, `series` and
//! the encoders are pure; I/O lives in `kubelet::client`, `remote_write::client`, `buffer` and
//! the tasks. `agent` only wires the tasks, swaps destinations and scrape targets on a reload (`agent::reload`), and stops them in order. `config` validates flags once at start-up, `demo` runs
//! the whole pipeline against `testkit`'s simulated kubelet and decoding receiver (the fakes
//! the tests use too). Both are left out of a build without the default `demo` feature
//! (`cargo build --release --no-default-features`); nothing else imports them.
//!
//! Imports run one way, downward (`tests/it/layout.rs` fails on any loop, between top-level
//! modules or between the files of one):
//!
//! ```text
//! demo ─► testkit (simulator, receiver) ─► remote_write, kubelet, rng
//!   └──► agent ─► config ─► cli, config_file (─► cli: the flags a file key may name)
//!           │        └─────► the settings it builds: kubelet, pipeline (filter), remote_write (access), scrape (targets)
//!           ├─► scrape ───► pipeline (outlets, filter), exposition, kubelet (client), remote_write, telemetry
//!           ├─► pipeline ─► kubelet, text, remote_write, buffer, telemetry
//!           └─► sender ───► remote_write, buffer, telemetry
//! telemetry ─► buffer ─► remote_write ─► series, metadata, http, episode
//! leaves (nothing of the crate): episode (once-per-episode logging), http, series, metadata, signal,
//!   clock (Unix epoch milliseconds), rng (the seeded generator), exposition (the Prometheus
//!   text and OpenMetrics parsers the scrape targets are read with)
//! ```
//!
//! `pipeline` and `sender` take settings the config holds or `agent` builds from it; neither
//! imports `config`.

// No unsafe code, except the one module that reads the process's own numbers on Windows
// (`telemetry::process`: four Win32 calls the standard library does not wrap), which allows
// it for itself; `deny` rather than `forbid` so that one `allow` can exist.
#![deny(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_file;
#[cfg(feature = "demo")]
pub mod demo;
pub mod episode;
pub mod exposition;
pub mod http;
pub mod kubelet;
pub mod metadata;
pub mod pipeline;
pub mod remote_write;
pub mod rng;
pub mod scrape;
pub mod sender;
pub mod series;
pub mod signal;
pub mod telemetry;
#[cfg(any(test, feature = "demo", feature = "test-support"))]
pub mod testkit;
pub mod text;

pub use agent::{run, Outcome, RunError};
pub use config::{Config, ConfigError};
