//! Scraping the node's exporters and the kubelet's own `/metrics*` endpoints, with the
//! semantics of Prometheus's scrape loop, and pushing what they expose beside the kubelet's
//! summary (issue 21).
//!
//! This file holds the settings one target is scraped with, as `config` validates them from
//! `--scrape`, `--kubelet-scrape` and the config file's `scrape:` list. The loop itself is
//! being built (`scraper`).

use std::time::Duration;

use crate::exposition::Limits;
use crate::remote_write::access::Access;

/// One scrape target, validated.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    /// The `job` label of every sample of the target.
    pub job: String,
    pub endpoint: Endpoint,
    /// How often it is scraped (`scrape_interval`; `--interval` by default).
    pub interval: Duration,
    /// How long one scrape may take (`scrape_timeout`; `--scrape-timeout` by default); never
    /// longer than `interval`.
    pub timeout: Duration,
    /// `honor_labels`: a label of the exposition that collides with a target label keeps the
    /// exposition's value (else it becomes `exported_<name>`).
    pub honor_labels: bool,
    /// `honor_timestamps` (default true): an explicit timestamp in the exposition is kept
    /// (else every sample is stamped with the scrape's start).
    pub honor_timestamps: bool,
    /// `body_size_limit` and `sample_limit` (0: none).
    pub limits: Limits,
    /// Labels the target adds to every sample besides `job`, `instance`, `node` and the
    /// `--label` ones: a `static_configs` entry's `labels`, and `metrics_path` for a kubelet
    /// endpoint. Sorted by name; none of them is `job`, `instance` or `node`.
    pub labels: Vec<(String, String)>,
}

/// Where a target is scraped.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// An exporter's URL, reached with its own credentials, TLS settings and proxy. Its
    /// `instance` label is the URL's `host:port` (the port the scheme implies when the URL has
    /// none), as Prometheus labels a static target.
    Exporter {
        url: reqwest::Url,
        access: Access,
    },
    /// A path of the kubelet (`/metrics`, `/metrics/probes`, `/metrics/resource`,
    /// `/metrics/cadvisor`), reached through `--kubelet-url` with the kubelet's token, CA and
    /// proxy. Labelled as kube-prometheus's kubelet ServiceMonitor labels it: `job` the
    /// `--job` value, `metrics_path` the path (in `labels`), `instance` and `node` the node
    /// name, as for the summary's series.
    Kubelet { path: String },
}
