//! Scraping the node's exporters and the kubelet's own `/metrics*` endpoints, with the
//! semantics of Prometheus's scrape loop, and pushing what they expose beside the kubelet's
//! summary (issue 21).
//!
//! ```text
//! tick ─► fetch ─────────────► scraper ──────────────────────────────► encode ─► Outlets
//!         GET, Accept,         parse (exposition), labels, exported_,   v1 / v2,   the same
//!         scrape_timeout,      timestamps, dedupe, stale, up and        metadata   buffers as
//!         body_size_limit      scrape_* series                                     the kubelet's
//! ```
//!
//! Each target is its own task ([`run`]) on its own interval, so a slow or hanging target
//! never delays the kubelet's poll or another target: it only fails its own scrape after its
//! `scrape_timeout`. Its requests go into every destination's buffer beside the kubelet's
//! (`pipeline::Outlets`); a request never mixes targets or scrapes.
//!
//! Here: the settings a target is scraped with ([`TargetSettings`], as `config` validates
//! them from `--scrape`, `--kubelet-scrape` and the config file's `scrape:` list), the task,
//! and its logging (once per episode: a target that starts failing, one that recovers, an
//! exposition that repeats series). `fetch` gets an answer; `scraper` holds the
//! scrape-loop semantics, without I/O.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub mod fetch;
pub mod scraper;

use crate::clock::unix_ms;
use crate::episode::Episode;
use crate::exposition::Limits;
use crate::pipeline::{fan_out_with, lock_outlets, NodeName, Outlets};
use crate::remote_write::access::Access;
use crate::telemetry::Metrics;
use fetch::Fetcher;
use scraper::{Answer, Failure, Labelling, ScrapeOutput, Scraper};

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
// A handful of targets live for the whole run: the exporter's access settings stay inline.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// An exporter's URL, reached with its own credentials, TLS settings and proxy. Its
    /// `instance` label is the URL's `host:port` (the port the scheme implies when the URL has
    /// none), as Prometheus labels a static target.
    Exporter { url: reqwest::Url, access: Access },
    /// A path of the kubelet (`/metrics`, `/metrics/probes`, `/metrics/resource`,
    /// `/metrics/cadvisor`), reached through `--kubelet-url` with the kubelet's token, CA and
    /// proxy. Labelled as kube-prometheus's kubelet ServiceMonitor labels it: `job` the
    /// `--job` value, `metrics_path` the path (in `labels`), `instance` and `node` the node
    /// name, as for the summary's series.
    Kubelet { path: String },
    /// The agent's own metrics (`--self-metrics`): what `/metrics` serves, encoded from the
    /// same registry at each scrape and read back with the same parser as any target, so the
    /// pushed series are the ones a scrape of `/metrics` would give. `job` is
    /// [`SELF_JOB`], `instance` and `node` the node name.
    Agent,
}

/// The `job` of the agent's own metrics when they are pushed (`--self-metrics`): the job
/// `deploy/monitoring/` selects on, as its PodMonitor names a scrape of the agents.
pub const SELF_JOB: &str = "kubelet-push";

impl TargetSettings {
    /// The agent's own metrics as a target, scraped every `interval`.
    pub fn agent(interval: Duration) -> Self {
        TargetSettings {
            job: SELF_JOB.to_owned(),
            endpoint: Endpoint::Agent,
            interval,
            timeout: interval,
            honor_labels: false,
            honor_timestamps: true,
            limits: Limits::default(),
            labels: Vec::new(),
        }
    }
}

impl TargetSettings {
    /// The `instance` label of an exporter: its URL's `host:port`, the port the scheme
    /// implies when the URL has none (IPv6 hosts in brackets). `None` for a kubelet endpoint,
    /// whose instance is the node's name.
    pub fn exporter_instance(&self) -> Option<String> {
        match &self.endpoint {
            Endpoint::Exporter { url, .. } => Some(instance_of(url)),
            Endpoint::Kubelet { .. } | Endpoint::Agent => None,
        }
    }
}

/// `host:port` of `url`, as Prometheus's `instance` label names a static target.
pub fn instance_of(url: &reqwest::Url) -> String {
    // An IPv6 host comes in brackets already.
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// What every scrape task shares with the rest of the agent.
#[derive(Clone)]
pub struct Scraping {
    /// `--once`: scrape one time and end.
    pub once: bool,
    pub max_samples_per_send: usize,
    /// `--label` pairs.
    pub external_labels: Vec<(String, String)>,
    /// `--metric-allow` / `--metric-deny`.
    pub metric_filter: Option<crate::pipeline::filter::MetricFilter>,
    /// The node's name, as the kubelet's poller knows it (`--node-name`, else the summary's,
    /// else the host's): `node` on every sample, and `instance` of kubelet endpoints.
    pub node: watch::Receiver<NodeName>,
    /// How long a target's first scrape waits for the node's name to be known (the first
    /// poll's `--kubelet-timeout`), so that its first samples do not go out under the host's
    /// name and start afresh under the node's a moment later.
    pub node_wait: Duration,
    pub metrics: Arc<Metrics>,
}

/// One target, ready to run: how to fetch it and what it remembers.
pub struct Target {
    settings: TargetSettings,
    fetcher: Fetcher,
    scraper: Scraper,
    /// How the target is named in logs.
    display: String,
    failing: Episode,
    /// The kind of failure logged last, so a target that fails another way says so.
    last_failure: Option<Failure>,
    duplicates: Episode,
    /// Whether the first scrape has waited for the node's name.
    named: bool,
}

impl Target {
    /// Builds the client and the scraper of `settings`; kubelet endpoints use `kubelet`.
    pub fn new(
        settings: TargetSettings,
        kubelet: &Arc<crate::kubelet::client::KubeletClient>,
        scraping: &Scraping,
    ) -> Result<Self, crate::remote_write::access::BuildError> {
        let node = scraping.node.borrow().name.clone();
        let fetcher = match &settings.endpoint {
            Endpoint::Exporter { url, access } => Fetcher::exporter(url.clone(), access)?,
            Endpoint::Kubelet { path } => Fetcher::Kubelet {
                client: kubelet.clone(),
                path: path.clone(),
            },
            Endpoint::Agent => Fetcher::Agent(scraping.metrics.clone()),
        };
        let mut extra = scraping.external_labels.clone();
        extra.extend(settings.labels.iter().cloned());
        let labelling = Labelling {
            job: settings.job.clone(),
            instance: settings.exporter_instance().unwrap_or_else(|| node.clone()),
            node,
            extra,
            honor_labels: settings.honor_labels,
            honor_timestamps: settings.honor_timestamps,
            limits: settings.limits,
        };
        let agent = matches!(settings.endpoint, Endpoint::Agent);
        // --metric-allow and --metric-deny choose among what the node exposes; the agent's
        // own health is not theirs to leave out (`--self-metrics=false` is).
        let filter = if agent {
            None
        } else {
            scraping.metric_filter.clone()
        };
        let scraper = Scraper::new(labelling, filter);
        if !agent {
            scraping
                .metrics
                .scrape_target(scraper.job(), scraper.instance());
        }
        Ok(Target {
            display: match &settings.endpoint {
                Endpoint::Exporter { url, .. } => crate::http::redact(url),
                Endpoint::Kubelet { path } => format!("kubelet {path}"),
                Endpoint::Agent => "the agent's own metrics".to_owned(),
            },
            settings,
            fetcher,
            scraper,
            failing: Episode::default(),
            last_failure: None,
            duplicates: Episode::default(),
            named: false,
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn job(&self) -> &str {
        self.scraper.job()
    }

    /// The target's settings, as validated.
    pub fn settings(&self) -> &TargetSettings {
        &self.settings
    }

    /// Scrapes once: fetch (bounded by the target's timeout), then everything after.
    pub async fn scrape(&mut self, scraping: &Scraping) -> ScrapeOutput {
        if !self.named {
            let mut node = scraping.node.clone();
            let _ = tokio::time::timeout(scraping.node_wait, node.wait_for(|n| n.known)).await;
            self.named = true;
        }
        let node = scraping.node.borrow().name.clone();
        let kubelet = matches!(
            self.settings.endpoint,
            Endpoint::Kubelet { .. } | Endpoint::Agent
        );
        self.scraper.set_node(&node, kubelet);
        let started = Instant::now();
        let start_ms = unix_ms(SystemTime::now());
        let fetched = self
            .fetcher
            .fetch(self.settings.timeout, self.settings.limits.body_size_limit)
            .await;
        let answer = fetched
            .as_ref()
            .map(|(body, content_type)| Answer { body, content_type });
        let output = self
            .scraper
            .ingest(answer.map_err(Clone::clone), start_ms, started.elapsed());
        // The agent's own metrics are not a target of the node's: not counted among them.
        if !matches!(self.settings.endpoint, Endpoint::Agent) {
            self.report(&output, &scraping.metrics);
        }
        output
    }

    /// Counts the scrape and logs what starts or ends an episode.
    fn report(&mut self, output: &ScrapeOutput, metrics: &Metrics) {
        let (job, instance) = (self.scraper.job(), self.scraper.instance());
        let result = output.error.as_ref().map_or("success", Failure::result);
        metrics.scrape_finished(job, instance, result);
        metrics.scrape_samples_invalid(job, instance, "duplicate", output.duplicates);
        metrics.scrape_samples_invalid(job, instance, "future_timestamp", output.future);
        match &output.error {
            Some(failure) => {
                let new_kind = self
                    .last_failure
                    .as_ref()
                    .is_some_and(|last| !last.same_kind(failure));
                if self.failing.fail() || new_kind {
                    warn!(job, target = %self.display, error = %failure, "scrape failed; up=0 and the target's series are stale until it recovers");
                } else {
                    debug!(job, target = %self.display, error = %failure, "scrape failed again");
                }
                self.last_failure = Some(failure.clone());
            }
            None => {
                if let Some((n, took)) = self.failing.recover() {
                    info!(job, target = %self.display, failed_scrapes = n, after = ?Duration::from_secs(took.as_secs()), "target is answering again");
                }
                self.last_failure = None;
            }
        }
        if output.duplicates > 0 {
            if self.duplicates.fail() {
                warn!(job, target = %self.display, samples = output.duplicates, "the exposition repeats series; the first sample of each is kept, the others are left out (counted in kubelet_push_scrape_samples_invalid_total)");
            }
        } else if output.error.is_none() {
            if let Some((n, _)) = self.duplicates.recover() {
                info!(job, target = %self.display, scrapes = n, "the exposition no longer repeats series");
            }
        }
    }

    /// The requests of one scrape, in `protocol`.
    pub fn encode_as(
        &mut self,
        protocol: crate::remote_write::Protocol,
        output: &ScrapeOutput,
        max_samples: usize,
    ) -> Result<Vec<crate::remote_write::Request>, snap::Error> {
        self.scraper.encode_as(protocol, output, max_samples)
    }

    /// The `--dry-run` text of one scrape.
    pub fn render_text(&self, output: &ScrapeOutput) -> String {
        self.scraper.render_text(output)
    }

    /// Hands a scrape's output back once it is encoded (see [`Scraper::recycle`]).
    pub fn recycle(&mut self, output: ScrapeOutput) {
        self.scraper.recycle(output);
    }
}

/// A target's task: scrapes every `scrape_interval` (the first at once; one time for
/// `--once`), puts each scrape's requests in every destination's buffer, until `stop`. A
/// scrape in progress is abandoned on stop. Returns whether any scrape failed.
pub async fn run(
    mut target: Target,
    scraping: Scraping,
    outlets: Outlets,
    stop: CancellationToken,
) -> bool {
    let mut failed = false;
    let mut ticker = tokio::time::interval(target.settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let output = tokio::select! {
            _ = stop.cancelled() => break,
            output = target.scrape(&scraping) => output,
        };
        failed |= output.error.is_some();
        let max = scraping.max_samples_per_send;
        failed |= !fan_out_with(
            &mut |protocol| target.encode_as(protocol, &output, max),
            &mut lock_outlets(&outlets),
        );
        target.recycle(output);
        if scraping.once {
            break;
        }
    }
    failed
}

#[cfg(test)]
mod tests;
