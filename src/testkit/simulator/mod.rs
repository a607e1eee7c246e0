//! A simulated Windows kubelet for the `demo` command, the tests and the benches. The data
//! flows through its modules in order:
//!
//! ```text
//! rng ──► model ─────────────────────────► wire ──────────────► server
//!         node, pods, turnover, counters    /stats/summary JSON    GET on 127.0.0.1
//!         and caching, as of a given time  with the kubelet's     (+ faults and request capture,
//!                                          Go field names          test-support only)
//! ```
//!
//! It does not own parsing a summary (`kubelet::summary`), TLS, or authentication.

mod model;
mod rng;
mod server;
mod wire;

pub use model::SimulatedKubelet;
#[cfg(any(test, feature = "test-support"))]
pub use server::Fault;
pub use server::KubeletServer;
pub use wire::rfc3339;
