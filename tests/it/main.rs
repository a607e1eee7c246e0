//! Integration tests: one binary, a module per concern.

mod access;
mod alloc;
mod cli;
mod cli_scrape;
mod config_file;
mod conformance;
mod delivery;
mod disk;
#[cfg(unix)]
mod e2e;
mod exposition;
mod golden;
mod hostile_io;
mod hostile_summary;
mod kubelet;
mod layout;
mod pods;
mod prop_bodies;
mod prop_buffer;
mod prop_exposition;
mod prop_series_texts;
mod protocol;
mod push;
mod readme;
mod reload;
mod scrape;
mod selfmetrics;
mod summary_props;
mod support;
mod tls;
mod v2;
mod windows_pods;
