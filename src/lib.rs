//! kubelet-push polls the kubelet's Summary API on a timer and pushes what it reports (CPU,
//! memory, filesystems, network, volumes of the node, its pods and containers) to any
//! Prometheus Remote Write receiver. It is built for nodes nothing can scrape: Windows nodes
//! without cAdvisor, edge nodes behind NAT that can only dial out.
//!
//! The modules follow the data:
//!
//! ```text
//! timer ──► kubelet ──────► kubelet::summary ─► convert ──► series ─────► remote_write::encode ─► agent (queue) ─► remote_write::client
//!           GET /stats/     serde, borrowed,    samples,    dedupe,       WriteRequest batches,    one request        POST, classify
//!           summary         tolerant            timestamps  stale marks   snappy block             in flight          the answer
//! ```
//!
//! `convert`, `series` and `remote_write::encode` are pure; I/O lives in `kubelet::client`,
//! `remote_write::client` and `agent`. `config` validates flags once at start-up, `demo` runs
//! the whole pipeline against a simulated kubelet and a decoding receiver.

#![forbid(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod convert;
pub mod demo;
pub mod http;
pub mod kubelet;
pub mod remote_write;
pub mod sender;
pub mod series;
pub mod signal;
pub mod telemetry;
pub mod text;

pub use agent::{run, Outcome, RunError};
pub use config::{Config, ConfigError};
