//! The fakes the demo and the tests share, each speaking the real protocol on `127.0.0.1`: a
//! simulated Windows kubelet ([`simulator`]: `/stats/summary` and `/pods` as a real node
//! answers them, its stats changing with time) and a Remote Write 1.0 and 2.0 receiver
//! ([`receiver`]) that decodes and checks every request with the agent's own wire decoders and
//! protocol constants (`remote_write::wire`, `remote_write`), and [`server`], the small HTTP
//! server both run on.
//!
//! Compiled for the `demo` feature (on by default) and for the tests (`test-support`, which
//! also compiles what only tests script: faults, queued answers, recorded headers). The agent
//! itself never imports it.

pub mod receiver;
pub mod server;
pub mod simulator;
