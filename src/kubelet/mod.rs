//! Talking to the kubelet: fetching `/stats/summary` (or a captured file) and the document's
//! types. Turning the document into samples is `convert`'s job, not this module's.

pub mod client;
pub mod summary;
pub mod time;

pub use client::{KubeletClient, ScrapeError};
pub use summary::Summary;
