//! The poll pipeline: one kubelet summary in, one poll's requests in the buffer out.
//!
//! ```text
//! tick ─► kubelet::client ─► kubelet::summary ─► convert ─► filter ─► series ─────► encoder ──► Queue
//!         GET /stats/summary  serde, borrowed,    samples    --metric-  SeriesSet: ids, v1 bytes,   per
//!         (or file://)        tolerant            to a sink  allow/deny dedupe, stale   or v2,      destination
//!                                                                                       snappy
//! ```
//!
//! [`Poller`] owns what lives from one poll to the next: the kubelet client, the series set
//! (ids, last timestamps, staleness), the common labels, the encoder's per-series caches and
//! the pod metadata of `GET /pods`, asked beside the polls (`pods`).
//! A poll always yields the per-poll series (`up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`); a failed poll marks nothing stale. [`run`] is the polling task:
//! tick, poll, encode, enqueue, until it is told to stop. With several destinations a poll is
//! encoded once per protocol in use (1.0, 2.0) and the same bodies go into each destination's
//! buffer ([`Outlet`]). It never waits for a receiver.
//!
//! Not here: sending and retrying (`sender`), the buffer (`buffer`), task wiring and shutdown
//! (`agent`), and the configuration: `config` holds the [`PollerSettings`] it validated and
//! `agent` builds the [`Polling`] this module runs on, so it never imports `config` (which
//! imports `filter`, `convert::MAX_POD_LABELS` and [`PollerSettings`] from here).

pub mod convert;
pub mod filter;
mod pods;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::buffer::{Dropped, Queue};
use crate::clock::unix_ms;
use crate::episode::Episode;
use crate::kubelet::client::{ClientError, KubeletClient, KubeletSettings};
use crate::kubelet::{summary, ScrapeError};
use crate::remote_write::proto::v1::TimeSeries;
use crate::remote_write::{Negotiated, Protocol, Request};
use crate::series::{Admit, CommonLabels, Point, SeriesSet};
use crate::telemetry::{DestinationMetrics, DropReason, InvalidValue, Metrics};
use convert::FUTURE_ALLOWANCE_MS;

/// The points of one poll, and its error when it failed. Points name series of the
/// [`Poller`] that made them, valid until its next poll.
pub struct PollOutput {
    pub points: Vec<Point>,
    pub error: Option<ScrapeError>,
}

/// What a [`Poller`] is built from: the validated settings it needs, and nothing else. The
/// configuration holds one (`Config::poll`); this module never reads the configuration itself.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    pub kubelet: KubeletSettings,
    /// `--metric-allow` / `--metric-deny`; `None` when neither is given.
    pub metric_filter: Option<filter::MetricFilter>,
    /// How often the pod metadata may be asked again.
    pub interval: Duration,
    pub job: String,
    /// Overrides the summary's `nodeName` for the `node` and `instance` labels.
    pub node_name: Option<String>,
    pub external_labels: Vec<(String, String)>,
    /// Whether pod metadata is asked from the kubelet's `/pods`.
    pub kubelet_pods: bool,
    /// Whether the Summary API is polled at all (`--kubelet-summary`). Off, only the scrape
    /// targets are pushed: for nodes where only the exporters matter, for benchmarks of the
    /// scrape path, and for the remote-write compliance suite, which expects nothing but its
    /// own target's series. `config` refuses it off without a scrape target.
    pub kubelet_summary: bool,
    /// `--pod-label`: each pod label and the metric label it becomes.
    pub pod_labels: Vec<(String, String)>,
    pub max_stats_age: Duration,
}

/// Owns everything that lives from one poll to the next.
pub struct Poller {
    kubelet: Arc<KubeletClient>,
    /// `None` when `--kubelet-pods=false` or the summary comes from a file.
    pods: Option<pods::PodSource>,
    kubelet_display: String,
    series: SeriesSet,
    encoders: crate::remote_write::Encoders,
    /// `--metric-allow` / `--metric-deny`, when given.
    filter: Option<filter::CachedFilter>,
    job: String,
    node_override: Option<String>,
    external_labels: Vec<(String, String)>,
    /// The node name the common labels were built for.
    node: String,
    /// Whether `node` came from `--node-name` or a summary, rather than the host name used
    /// until the kubelet first answers.
    node_known: bool,
    max_stats_age_ms: i64,
    /// Size of the last poll, so the next one allocates once.
    capacity_hint: usize,
    kubelet_failing: Episode,
    /// Polls whose summary had values left out (malformed, negative counters): logged when
    /// it starts and when it ends, not per value or per poll.
    values_invalid: Episode,
    /// Polls whose summary had times past the agent's clock plus the allowance.
    clock_ahead: Episode,
    metrics: Arc<Metrics>,
    /// Length and hash of the last summary converted, when polling the same bytes again can
    /// only repeat it (its samples carry the summary's own times, not the poll's).
    last_body: Option<(usize, u64)>,
    /// Distinct series the last converted summary produced, reported again for a repeat.
    last_scraped: usize,
    /// The node name as it is known now, for the scrape targets' `node` (and a kubelet
    /// endpoint's `instance`).
    node_tx: tokio::sync::watch::Sender<NodeName>,
    /// The `metrics_path` of the per-poll series (`up`, `scrape_duration_seconds`,
    /// `scrape_samples_scraped`): `/metrics`, unless the kubelet's real `/metrics` is scraped
    /// too (see [`Poller::per_poll_series_apart`]).
    per_poll_path: &'static (&'static str, &'static str),
    /// The `metrics_path`s whose summary families are left out, because the kubelet's own
    /// endpoint is scraped (see [`Poller::scraped_too`]).
    yielded_paths: Vec<&'static str>,
}

/// The node's name as the poller knows it, for the scrape targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName {
    pub name: String,
    /// From `--node-name` or a summary, rather than the host's name standing in until the
    /// kubelet first answers.
    pub known: bool,
}

/// What a poll fetched.
enum Fetched<'a> {
    /// A body, with its digest (length and hash) when the caller computed it already.
    Body(&'a [u8], Option<(usize, u64)>),
    /// The same bytes as the last summary converted: every sample would be a repeated
    /// timestamp and every series is still there, so parsing it again would change nothing.
    Unchanged,
}

impl Poller {
    pub fn new(settings: &PollerSettings, metrics: Arc<Metrics>) -> Result<Self, ClientError> {
        let kubelet_display = match &settings.kubelet.source {
            crate::kubelet::client::Source::Http(u) => crate::http::redact(u),
            crate::kubelet::client::Source::File(p) => format!("file://{}", p.display()),
        };
        let node = settings.node_name.clone().unwrap_or_else(host_name);
        let node_watched = NodeName {
            name: node.clone(),
            // Nothing more will be learnt without a summary to read it from.
            known: settings.node_name.is_some() || !settings.kubelet_summary,
        };
        let common = CommonLabels::new(&settings.job, &node, &settings.external_labels);
        let kubelet = Arc::new(KubeletClient::new(settings.kubelet.clone())?);
        let from_kubelet = matches!(
            settings.kubelet.source,
            crate::kubelet::client::Source::Http(_)
        );
        let pods = (settings.kubelet_pods && from_kubelet).then(|| {
            pods::PodSource::new(
                kubelet.clone(),
                metrics.clone(),
                settings.pod_labels.clone(),
                settings.interval,
            )
        });
        Ok(Poller {
            kubelet,
            pods,
            kubelet_display,
            series: SeriesSet::new(common),
            encoders: Default::default(),
            filter: settings
                .metric_filter
                .clone()
                .map(filter::CachedFilter::new),
            job: settings.job.clone(),
            node_override: settings.node_name.clone(),
            external_labels: settings.external_labels.clone(),
            node,
            node_known: settings.node_name.is_some(),
            max_stats_age_ms: i64::try_from(settings.max_stats_age.as_millis()).unwrap_or(i64::MAX),
            capacity_hint: 0,
            kubelet_failing: Episode::default(),
            values_invalid: Episode::default(),
            clock_ahead: Episode::default(),
            metrics,
            last_body: None,
            last_scraped: 0,
            node_tx: tokio::sync::watch::channel(node_watched).0,
            per_poll_path: &convert::KUBELET_METRICS,
            yielded_paths: Vec::new(),
        })
    }

    /// The node's name from now on: `--node-name`, else the summary's `nodeName` once the
    /// kubelet answered, else the host's name.
    pub fn node_name(&self) -> tokio::sync::watch::Receiver<NodeName> {
        self.node_tx.subscribe()
    }

    /// The kubelet client, for scraping the kubelet's own endpoints with the same URL, TLS,
    /// token and proxy.
    pub fn kubelet_client(&self) -> &Arc<KubeletClient> {
        &self.kubelet
    }

    /// Makes room for a scrape of the kubelet's own endpoint `path` (`--kubelet-scrape`), so
    /// that no series is written by both:
    /// - `/metrics`: the per-poll series (`up`, ...) are labelled
    ///   `metrics_path="/stats/summary"` instead, and the scrape's `up` is the one
    ///   kube-prometheus's kubelet alerts read; the summary's `kubelet_volume_stats_*`
    ///   (labelled `/metrics`) are left to the endpoint;
    /// - `/metrics/cadvisor`, `/metrics/resource`: the summary's families labelled with that
    ///   path are left out; the kubelet's own are the real thing (Linux has cAdvisor; Windows
    ///   kubelets serve `/metrics/resource` too).
    pub fn scraped_too(&mut self, path: &str) {
        if path == convert::KUBELET_METRICS.1 {
            self.per_poll_path = &convert::SUMMARY_METRICS;
        }
        let families = [
            convert::KUBELET_METRICS.1,
            convert::CADVISOR.1,
            convert::RESOURCE.1,
        ];
        if let Some(&path) = families.iter().find(|p| **p == path) {
            if !self.yielded_paths.contains(&path) {
                self.yielded_paths.push(path);
            }
            self.last_body = None;
        }
    }

    pub fn kubelet_display(&self) -> &str {
        &self.kubelet_display
    }

    /// Uses `bytes` as the kubelet's `/pods` answer (with the config's `--pod-label`s), as if
    /// it had just arrived: for benchmarks and tests that drive [`Poller::ingest`] without a
    /// kubelet.
    #[cfg(any(test, feature = "test-support"))]
    pub fn set_pod_list(
        &mut self,
        bytes: &[u8],
        pod_labels: Vec<(String, String)>,
    ) -> Result<(), serde_json::Error> {
        let mut source = pods::PodSource::new(
            self.kubelet.clone(),
            self.metrics.clone(),
            pod_labels,
            Duration::MAX,
        );
        source.answered(bytes)?;
        self.pods = Some(source);
        self.last_body = None;
        Ok(())
    }

    /// The series the points of the last poll name.
    pub fn series(&self) -> &SeriesSet {
        &self.series
    }

    /// Polls the kubelet once. Always returns the per-poll series (`up` is 0 on failure); a
    /// failed poll marks nothing stale. The kubelet serves cached stats between its
    /// housekeeping runs (10-15 s), so a poll often fetches exactly the bytes it fetched last
    /// time; then the summary is not parsed again, since it could only repeat what was sent.
    pub async fn poll(&mut self) -> PollOutput {
        let started = Instant::now();
        let poll_time_ms = unix_ms(SystemTime::now());
        if let Some(pods) = &mut self.pods {
            // The first poll asks `/pods` and waits for it, before the summary so both go over
            // one connection (`pods`'s module doc says why it waits); later polls take in
            // an answer that arrived since the last one.
            pods.ask_if_first();
            if pods.collect().await {
                // The same summary converts to other labels now.
                self.last_body = None;
            }
        }
        let fetched = self.kubelet.fetch().await;
        let output = match fetched {
            Ok(bytes) => {
                let digest = (bytes.len(), body_hash(&bytes));
                if self.last_body == Some(digest) {
                    self.ingest_fetched(Ok(Fetched::Unchanged), poll_time_ms, started)
                } else {
                    let fetched = Fetched::Body(&bytes, Some(digest));
                    self.ingest_fetched(Ok(fetched), poll_time_ms, started)
                }
            }
            Err(e) => self.ingest_fetched(Err(e), poll_time_ms, started),
        };
        if let Some(pods) = &mut self.pods {
            // Asked now, in the gap before the next poll, on the connection the summary left
            // idle; its answer labels the next poll.
            pods.ask_if_due();
        }
        output
    }

    /// Everything a poll does after the fetch: parse, convert, dedupe, stale markers and the
    /// per-poll series. No I/O, so benchmarks can measure it apart from the network.
    /// `poll_time_ms` is raised to one millisecond after the previous poll if needed.
    pub fn ingest(
        &mut self,
        fetched: Result<&[u8], ScrapeError>,
        poll_time_ms: i64,
        started: Instant,
    ) -> PollOutput {
        let fetched = fetched.map(|bytes| Fetched::Body(bytes, None));
        self.ingest_fetched(fetched, poll_time_ms, started)
    }

    fn ingest_fetched(
        &mut self,
        fetched: Result<Fetched<'_>, ScrapeError>,
        poll_time_ms: i64,
        started: Instant,
    ) -> PollOutput {
        let poll_time_ms = self.series.start_poll(poll_time_ms, FUTURE_ALLOWANCE_MS);
        let mut points = Vec::with_capacity(self.capacity_hint);
        let unchanged = matches!(fetched, Ok(Fetched::Unchanged));
        let result = fetched.and_then(|f| match f {
            Fetched::Body(bytes, digest) => self.convert(bytes, digest, poll_time_ms, &mut points),
            Fetched::Unchanged => Ok(self.last_scraped),
        });
        let scraped = *result.as_ref().unwrap_or(&0);
        let up = if result.is_ok() { 1.0 } else { 0.0 };
        let duration = started.elapsed().as_secs_f64();
        // `metrics_path="/metrics"`, as kube-prometheus labels its scrape of the kubelet: its
        // KubeletDown and KubeletInstanceUnreachable alerts then see this node.
        for (name, value) in [
            ("up", up),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped as f64),
        ] {
            let family = Some(self.per_poll_path);
            if let Admit::Send(id) = self.series.admit_in(name, family, &[], poll_time_ms) {
                points.push(Point {
                    id,
                    value,
                    timestamp_ms: poll_time_ms,
                    start_ms: 0,
                });
            }
        }
        let error = match result {
            Ok(_) => {
                // Only a successful poll may declare series gone; an unchanged summary still
                // has every series the last one had.
                if !unchanged {
                    self.series
                        .finish_poll(poll_time_ms, |point| points.push(point));
                }
                self.metrics.poll_finished(true, started.elapsed());
                self.metrics.samples_scraped.inc_by(scraped as u64);
                if let Some((n, took)) = self.kubelet_failing.recover() {
                    info!(failed_polls = n, after = ?Duration::from_secs(took.as_secs()), "kubelet is answering again");
                }
                None
            }
            Err(e) => {
                self.metrics.poll_finished(false, started.elapsed());
                if self.kubelet_failing.fail() {
                    warn!(kubelet = %self.kubelet_display, error = %crate::http::error_chain(&e), "kubelet poll failed; up=0 until it recovers");
                } else {
                    debug!(error = %crate::http::error_chain(&e), "kubelet poll failed again");
                }
                Some(e)
            }
        };
        self.capacity_hint = self.capacity_hint.max(points.len());
        PollOutput { points, error }
    }

    /// The requests of one poll in `protocol`, at most `max_samples` samples each.
    pub fn encode_as(
        &mut self,
        protocol: Protocol,
        poll: &PollOutput,
        max_samples: usize,
    ) -> Result<Vec<Request>, snap::Error> {
        let catalog = crate::metadata::Kubelet;
        self.encoders.encode(
            protocol,
            &self.series,
            &poll.points,
            &[],
            &catalog,
            max_samples,
        )
    }

    /// The `--dry-run` text of one poll.
    pub fn render_text(&self, poll: &PollOutput) -> String {
        crate::text::render_points(&self.series, &poll.points)
    }

    /// What one poll puts on the wire, encoded and decoded again with the reference types: for
    /// tests that inspect a poll.
    pub fn decoded_series(&mut self, poll: &PollOutput) -> Vec<TimeSeries> {
        self.encode_as(Protocol::V1, poll, usize::MAX)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| crate::remote_write::wire::decode_v1(&r.body).ok())
            .flat_map(|r| r.timeseries)
            .collect()
    }

    /// Parses and converts one summary, admitting its samples through the series set.
    /// Returns the number of distinct series the summary produced.
    fn convert(
        &mut self,
        bytes: &[u8],
        digest: Option<(usize, u64)>,
        poll_time_ms: i64,
        out: &mut Vec<Point>,
    ) -> Result<usize, ScrapeError> {
        self.last_body = None;
        let summary = summary::parse(bytes).map_err(ScrapeError::Parse)?;
        let node = summary.node.as_ref().and_then(|n| n.node_name.as_deref());
        self.refresh_common(node);
        if self.series.is_empty() {
            // A first poll meets every series at once: size the tables for them from the
            // summary's size (about one series per 32 bytes of JSON; compact JSON has fewer
            // bytes per series than indented).
            let estimate = bytes.len() / 32;
            self.series.reserve(estimate);
            out.reserve(estimate);
        }
        let horizon = self.series.horizon();
        let series = &mut self.series;
        let filter = &mut self.filter;
        let yielded = &self.yielded_paths;
        let mut distinct = 0;
        let mut filtered = 0;
        let mut future = 0u64;
        let context = self
            .pods
            .as_ref()
            .map(pods::PodSource::context)
            .unwrap_or_default();
        let converted = convert::convert_until(
            &summary,
            context,
            poll_time_ms,
            self.max_stats_age_ms,
            horizon,
            &mut |sample: &convert::Sample<'_>| {
                if let (false, Some(family)) = (yielded.is_empty(), sample.family) {
                    if yielded.contains(&family.1) {
                        return;
                    }
                }
                if let Some(f) = filter.as_mut() {
                    if !f.allows(sample.name) {
                        filtered += 1;
                        return;
                    }
                }
                match series.admit_in(
                    sample.name,
                    sample.family,
                    sample.labels,
                    sample.timestamp_ms,
                ) {
                    Admit::Send(id) => {
                        distinct += 1;
                        out.push(Point {
                            id,
                            value: sample.value,
                            timestamp_ms: sample.timestamp_ms,
                            start_ms: sample.start_ms,
                        });
                    }
                    Admit::NotNewer => distinct += 1,
                    Admit::Future => {
                        distinct += 1;
                        future += 1;
                    }
                    Admit::Duplicate => {}
                }
            },
        );
        self.metrics.samples_filtered.inc_by(filtered);
        self.report_values(summary.invalid, &converted, future, poll_time_ms);
        self.last_scraped = distinct;
        if let Some(pods) = &mut self.pods {
            pods.converted(converted.undescribed);
        }
        // A summary without any `time` is stamped with the poll time, so the same bytes polled
        // again are new samples: never skipped.
        if converted.newest.is_some() {
            self.last_body = Some(digest.unwrap_or_else(|| (bytes.len(), body_hash(bytes))));
        }
        Ok(distinct)
    }

    /// Counts the values a summary lost and logs each kind of loss when it starts and when it
    /// ends: a kubelet that sends one bad value every poll is one warning, not one per poll.
    fn report_values(
        &mut self,
        invalid: summary::Invalid,
        converted: &convert::Converted,
        future: u64,
        poll_time_ms: i64,
    ) {
        let m = &self.metrics;
        let malformed = invalid.count as u64;
        let negative = converted.negative_counters as u64;
        m.summary_values_invalid(InvalidValue::Malformed, malformed);
        m.summary_values_invalid(InvalidValue::NegativeCounter, negative);
        m.summary_values_invalid(InvalidValue::FutureTimestamp, future);
        if malformed + negative > 0 {
            if self.values_invalid.fail() {
                let first = invalid.first.unwrap_or("a negative counter");
                warn!(
                    malformed,
                    negative_counters = negative,
                    first,
                    "summary values left out (counted in kubelet_push_summary_values_invalid_total); the rest of each poll is kept"
                );
            }
        } else if let Some((polls, _)) = self.values_invalid.recover() {
            info!(polls, "summary values valid again");
        }
        match converted.ahead_ms {
            Some(ahead) if future > 0 => {
                if self.clock_ahead.fail() {
                    let ahead_s = ahead.saturating_sub(poll_time_ms) / 1000;
                    warn!(
                        ahead_s,
                        dropped = future,
                        "summary times ahead of the agent's clock; their samples are dropped until they are not"
                    );
                }
            }
            _ => {
                if let Some((polls, _)) = self.clock_ahead.recover() {
                    info!(polls, "summary times no longer ahead; samples flow again");
                }
            }
        }
    }

    /// Keeps the common labels in step with the node name: `--node-name` wins over the
    /// summary's `nodeName`; with neither, the last known name stays. A real change of name
    /// forgets every series, since none sent so far carries the new labels.
    fn refresh_common(&mut self, summary_node: Option<&str>) {
        let wanted = self
            .node_override
            .as_deref()
            .or(summary_node.filter(|n| !n.is_empty()));
        let Some(wanted) = wanted else { return };
        if wanted == self.node {
            if !self.node_known {
                self.node_known = true;
                self.node_tx.send_replace(NodeName {
                    name: self.node.clone(),
                    known: true,
                });
            }
            return;
        }
        if self.node_known {
            info!(from = %self.node, to = %wanted, "node name changed; series start afresh");
        }
        self.node = wanted.to_owned();
        self.node_known = true;
        self.node_tx.send_replace(NodeName {
            name: self.node.clone(),
            known: true,
        });
        self.series.set_common(CommonLabels::new(
            &self.job,
            &self.node,
            &self.external_labels,
        ));
    }
}

/// What the polling task needs besides the poller.
pub struct Polling {
    pub interval: Duration,
    /// `--once`: stop after the first poll.
    pub once: bool,
    pub max_samples_per_send: usize,
}

/// One destination as the polling task sees it: its buffer, the protocol its sender has
/// negotiated (shared: a fallback the sender makes is what the next poll is encoded in) and
/// its metrics.
pub struct Outlet {
    pub queue: Arc<Queue>,
    pub negotiated: Negotiated,
    pub metrics: Arc<DestinationMetrics>,
    /// Buffer write failures, logged when they start and when they end.
    store_failing: Episode,
    /// Pushes that evicted older requests for `--buffer-max-size`.
    buffer_full: Evicting,
    /// Pushes that evicted older requests because the disk buffer's file system was full.
    disk_full: Evicting,
    /// This destination's own metric filter and labels, when it has any.
    narrow: Option<Narrow>,
}

/// A destination's own `metric-allow`, `metric-deny` and labels (the config file's
/// `remote-write` entry): its requests are rewritten from the shared ones
/// ([`crate::remote_write::narrow::narrow`]). The per-poll series (`up`, `scrape_*`) always
/// pass, as they pass `--metric-allow`.
struct Narrow {
    filter: Option<filter::MetricFilter>,
    labels: Vec<(String, String)>,
    /// The filter's decision per metric name seen.
    decided: std::collections::HashMap<String, bool>,
    /// Requests that could not be rewritten, logged when it starts and when it ends.
    failing: Episode,
}

/// The series every poll and scrape adds of its own, which no metric filter drops.
const PER_POLL_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

impl Narrow {
    /// `requests` as this destination is sent them; a request left with no sample is left
    /// out.
    fn apply(&mut self, requests: &[Request], metrics: &DestinationMetrics) -> Vec<Request> {
        let mut out = Vec::with_capacity(requests.len());
        let Narrow {
            filter,
            labels,
            decided,
            failing,
        } = self;
        let mut keep = |name: &str| -> bool {
            let Some(f) = filter.as_ref() else {
                return true;
            };
            if PER_POLL_SERIES.contains(&name) {
                return true;
            }
            if let Some(known) = decided.get(name) {
                return *known;
            }
            let allowed = f.allows(name);
            decided.insert(name.to_owned(), allowed);
            allowed
        };
        for request in requests {
            match crate::remote_write::narrow::narrow(
                request.protocol,
                &request.body,
                &mut keep,
                labels,
            ) {
                Ok(narrowed) => {
                    out.extend(narrowed);
                    if failing.recover().is_some() {
                        info!(
                            url = metrics.url(),
                            "requests narrowed for the destination again"
                        );
                    }
                }
                Err(error) => {
                    metrics.dropped(DropReason::BufferWrite, u64::from(request.samples));
                    if failing.fail() {
                        warn!(url = metrics.url(), %error, "cannot narrow a request to the destination's metric-allow, metric-deny and labels; dropped");
                    }
                }
            }
        }
        out
    }
}

/// Pushes that evicted older requests for one cause, logged when they start and when they
/// end, with the samples evicted meanwhile: the counter alone tells no one it is happening.
#[derive(Debug, Default)]
struct Evicting {
    episode: Episode,
    samples: u64,
    /// Polls in a row since the last eviction.
    quiet_polls: u32,
    /// Bytes buffered after the last eviction.
    high: u64,
}

impl Evicting {
    /// A poll that evicted `samples`, leaving `buffered` bytes; true when this starts an
    /// episode (log it).
    fn evicted(&mut self, samples: u64, buffered: u64) -> bool {
        self.samples += samples;
        self.quiet_polls = 0;
        self.high = buffered;
        self.episode.fail()
    }

    /// A poll that evicted nothing. One poll that happened to fit is no recovery: the
    /// episode ends once [`BUFFER_FULL_QUIET_POLLS`] polls in a row went in whole and the
    /// sender has drained the buffer to `calm` bytes, so a buffer that only overflows on the
    /// kubelet's full refreshes (every 10-15 s) says so once, not per refresh. Returns the
    /// samples evicted in the episode and its length when it ends (log it).
    fn quiet(
        &mut self,
        buffered: impl FnOnce() -> u64,
        calm: impl FnOnce(u64) -> u64,
    ) -> Option<(u64, Duration)> {
        if !self.episode.failing() {
            return None;
        }
        self.quiet_polls += 1;
        if self.quiet_polls < BUFFER_FULL_QUIET_POLLS || buffered() > calm(self.high) {
            return None;
        }
        let (_, took) = self.episode.recover()?;
        Some((std::mem::take(&mut self.samples), took))
    }
}

impl Outlet {
    pub fn new(
        queue: Arc<Queue>,
        negotiated: Negotiated,
        metrics: Arc<DestinationMetrics>,
    ) -> Self {
        Outlet {
            queue,
            negotiated,
            metrics,
            store_failing: Episode::default(),
            buffer_full: Evicting::default(),
            disk_full: Evicting::default(),
            narrow: None,
        }
    }

    /// This outlet with a metric filter and extra labels of its own (the config file's
    /// per-destination `metric-allow`, `metric-deny` and labels), applied after
    /// `--metric-allow`, `--metric-deny` and `--label`, which every destination shares.
    #[must_use]
    pub fn narrowed(
        mut self,
        filter: Option<filter::MetricFilter>,
        labels: Vec<(String, String)>,
    ) -> Self {
        self.narrow = (filter.is_some() || !labels.is_empty()).then(|| Narrow {
            filter,
            labels,
            decided: std::collections::HashMap::new(),
            failing: Episode::default(),
        });
        self
    }
}

/// Every destination's outlet, shared by the sources that fill them (the kubelet's polling
/// task and each scrape target's task): one lock, taken only to enqueue a poll's requests
/// (never across an await), so each outlet's episodes are one story whoever pushed.
pub type Outlets = Arc<std::sync::Mutex<Vec<Outlet>>>;

/// Locks `outlets`; a source that panicked while holding the lock left nothing half-done
/// that matters (a request is in a buffer or not), so a poisoned lock is used as it is.
pub fn lock_outlets(outlets: &Outlets) -> std::sync::MutexGuard<'_, Vec<Outlet>> {
    outlets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The polling task: polls every `interval` (once for `--once`), encodes each poll and puts
/// its requests in every outlet's buffer, until `stop` is cancelled. A poll in progress is
/// abandoned on stop; what it would have produced is not half-queued. Returns whether any
/// poll failed.
pub async fn run(
    mut poller: Poller,
    settings: Polling,
    outlets: Outlets,
    stop: CancellationToken,
) -> bool {
    let mut poll_failed = false;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // A poll can take up to --kubelet-timeout; a stop request does not wait for it.
        let poll = tokio::select! {
            _ = stop.cancelled() => break,
            poll = poller.poll() => poll,
        };
        poll_failed |= poll.error.is_some();
        poll_failed |= !fan_out(
            &mut poller,
            &poll,
            &mut lock_outlets(&outlets),
            settings.max_samples_per_send,
        );
        if settings.once {
            break;
        }
    }
    poll_failed
}

/// Encodes one poll once per protocol the outlets speak at this moment and puts the requests
/// in every outlet's buffer (the bodies are shared, not copied). Never waits: a destination
/// that is down only fills its own buffer. False when a request could not be compressed (a
/// body over snappy's 4 GiB limit): the poll is then lost for every destination, logged.
pub fn fan_out(
    poller: &mut Poller,
    poll: &PollOutput,
    outlets: &mut [Outlet],
    max_samples: usize,
) -> bool {
    fan_out_with(
        &mut |protocol| poller.encode_as(protocol, poll, max_samples),
        outlets,
    )
}

/// [`fan_out`] for any source: `encode` gives the requests of what it polled or scraped in
/// the protocol asked, and is asked at most once per protocol.
pub fn fan_out_with(
    encode: &mut dyn FnMut(Protocol) -> Result<Vec<Request>, snap::Error>,
    outlets: &mut [Outlet],
) -> bool {
    let mut encoded: [Option<Vec<Request>>; 2] = [None, None];
    let mut ok = true;
    for outlet in outlets.iter_mut() {
        let protocol = outlet.negotiated.get();
        let slot = &mut encoded[usize::from(protocol == Protocol::V2)];
        if slot.is_none() {
            match encode(protocol) {
                Ok(requests) => *slot = Some(requests),
                Err(e) => {
                    warn!(error = %e, "cannot compress a remote write request; poll dropped");
                    ok = false;
                    *slot = Some(Vec::new());
                }
            }
        }
        if let Some(requests) = slot {
            enqueue(requests, outlet);
        }
    }
    ok
}

/// Puts one poll's requests in one outlet's buffer. A request the buffer cannot store (a
/// failing disk) is counted as dropped, and so are the oldest requests a full buffer or a full
/// disk evicts, each cause under its own reason; each is logged when it starts and when it
/// ends, never per request.
fn enqueue(requests: &[Request], outlet: &mut Outlet) {
    let narrowed;
    let requests = match &mut outlet.narrow {
        Some(narrow) => {
            narrowed = narrow.apply(requests, &outlet.metrics);
            &narrowed[..]
        }
        None => requests,
    };
    let metrics = &outlet.metrics;
    let mut evicted = Dropped::default();
    let mut buffered = 0;
    for request in requests {
        let samples = u64::from(request.samples);
        metrics.samples_queued.inc_by(samples);
        let (levels, result) = outlet.queue.push(request.clone());
        metrics.buffer_levels(levels);
        buffered = levels.bytes;
        match result {
            Ok(dropped) => {
                metrics.dropped(DropReason::BufferFull, dropped.samples);
                metrics.dropped(DropReason::DiskFull, dropped.disk_full_samples);
                evicted.samples += dropped.samples;
                evicted.disk_full_samples += dropped.disk_full_samples;
                if let Some((n, _)) = outlet.store_failing.recover() {
                    info!(
                        url = metrics.url(),
                        failed_writes = n,
                        "buffer writable again"
                    );
                }
            }
            Err(error) => {
                metrics.dropped(DropReason::BufferWrite, samples);
                if outlet.store_failing.fail() {
                    warn!(url = metrics.url(), %error, samples, "cannot store a request in the buffer; dropped");
                }
            }
        }
    }
    let levels = || outlet.queue.levels().bytes;
    let max_bytes = u64::try_from(metrics.buffer_max_bytes.get()).unwrap_or(0);
    if evicted.samples > 0 {
        if outlet.buffer_full.evicted(evicted.samples, buffered) {
            warn!(
                url = metrics.url(),
                max_bytes,
                dropped_samples = evicted.samples,
                "buffer full: dropping the oldest requests to keep the newest; the receiver is down or not keeping up, or --buffer-max-size is smaller than a few polls"
            );
        }
    } else if let Some((samples, took)) = outlet.buffer_full.quiet(levels, |_| max_bytes / 2) {
        info!(
            url = metrics.url(),
            dropped_samples = samples,
            after = ?Duration::from_secs(took.as_secs()),
            "buffer no longer full; nothing dropped for {BUFFER_FULL_QUIET_POLLS} polls"
        );
    }
    if evicted.disk_full_samples > 0 {
        if outlet
            .disk_full
            .evicted(evicted.disk_full_samples, buffered)
        {
            warn!(
                url = metrics.url(),
                buffered_bytes = buffered,
                dropped_samples = evicted.disk_full_samples,
                "disk full: deleting the oldest buffered requests to keep the newest; the receiver is down or not keeping up, and the buffer's volume holds less than --buffer-max-size"
            );
        }
    } else if let Some((samples, took)) = outlet.disk_full.quiet(levels, |high| high / 2) {
        info!(
            url = metrics.url(),
            dropped_samples = samples,
            after = ?Duration::from_secs(took.as_secs()),
            "disk no longer full; nothing dropped for {BUFFER_FULL_QUIET_POLLS} polls"
        );
    }
}

/// Polls in a row that must go into the buffer without evicting anything before a buffer-full
/// episode is declared over.
const BUFFER_FULL_QUIET_POLLS: u32 = 10;

/// A fingerprint of a summary body: two polls with the same length and hash are taken as the
/// same bytes. Not cryptographic: the kubelet is not an adversary of its own node's agent,
/// and a collision would only skip one poll (the next different summary is converted).
fn body_hash(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6b75_6265_6c65_7421).hash_one(bytes)
}

/// The host name, for the node label when the kubelet has never answered and no
/// `--node-name` is set.
fn host_name() -> String {
    #[cfg(windows)]
    let name = std::env::var("COMPUTERNAME").ok();
    #[cfg(not(windows))]
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    name.map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An eviction episode starts with the first eviction and ends only after
    /// `BUFFER_FULL_QUIET_POLLS` polls in a row without one, once the buffer has drained to
    /// the calm level; it reports every sample evicted in it.
    #[test]
    fn an_eviction_episode_is_said_once_and_ends_when_quiet_and_drained() {
        let mut e = Evicting::default();
        assert_eq!(e.quiet(|| 0, |_| 0), None, "no episode, nothing to end");
        assert!(e.evicted(30, 1000));
        assert!(!e.evicted(12, 900), "the same episode");
        // Quiet polls, but still more than half of what was held at the last eviction.
        for _ in 0..BUFFER_FULL_QUIET_POLLS {
            assert_eq!(e.quiet(|| 451, |high| high / 2), None);
        }
        // Drained to the calm level after enough quiet polls: ended, with its samples.
        let (samples, _) = e.quiet(|| 450, |high| high / 2).unwrap();
        assert_eq!(samples, 42);
        assert_eq!(e.quiet(|| 0, |_| 0), None);
        // An eviction in between quiet polls starts the count again.
        assert!(e.evicted(5, 100));
        for _ in 1..BUFFER_FULL_QUIET_POLLS {
            assert_eq!(e.quiet(|| 0, |high| high / 2), None);
        }
        assert!(!e.evicted(1, 100));
        for _ in 1..BUFFER_FULL_QUIET_POLLS {
            assert_eq!(e.quiet(|| 0, |high| high / 2), None);
        }
        assert_eq!(e.quiet(|| 0, |high| high / 2).map(|(n, _)| n), Some(6));
    }
}
