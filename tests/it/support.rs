//! Shared helpers: configs pointing at in-process fakes, and reading series back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use kubelet_push::cli::Cli;
use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::Config;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/summaries")
        .join(name)
}

/// A validated config from command-line style arguments.
pub fn config(args: &[&str]) -> Config {
    let cli = Cli::try_parse_from(std::iter::once("kubelet-push").chain(args.iter().copied()))
        .expect("flags parse");
    Config::from_args(&cli.agent, false).expect("valid config")
}

pub fn label<'a>(ts: &'a TimeSeries, name: &str) -> Option<&'a str> {
    ts.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

pub fn name(ts: &TimeSeries) -> &str {
    label(ts, "__name__").unwrap_or("")
}

/// The series named `metric`.
pub fn named<'a>(series: &'a [TimeSeries], metric: &str) -> Vec<&'a TimeSeries> {
    series.iter().filter(|ts| name(ts) == metric).collect()
}

/// The single value of the single series named `metric`.
pub fn only_value(series: &[TimeSeries], metric: &str) -> f64 {
    let found = named(series, metric);
    assert_eq!(
        found.len(),
        1,
        "expected one {metric} series, got {found:?}"
    );
    assert_eq!(found[0].samples.len(), 1);
    found[0].samples[0].value
}

pub const SHORT: Duration = Duration::from_secs(5);
