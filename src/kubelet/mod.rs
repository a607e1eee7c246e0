//! Talking to the kubelet: fetching `/stats/summary` (or a captured file) and the document's
//! types, and the pod metadata of `GET /pods`. Turning the document into samples is the
//! pipeline's job, not this module's.

pub mod client;
pub mod pods;
pub mod summary;
pub mod time;

pub use client::{KubeletClient, ScrapeError};
pub use summary::Summary;
