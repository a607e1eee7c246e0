//! The agent's own metrics (`kubelet_push_*`), exposed on `--listen-address` at `/metrics`,
//! and the health endpoints (`/healthz`, `/readyz`). Not here: keeping a repeating failure to
//! two log lines (`episode`).
//!
//! Metrics are prometheus-client types (atomics underneath), shared by the poller, the senders
//! and the HTTP endpoint through one `Arc<Metrics>`. Delivery metrics are per destination:
//! each sender and its buffer hold an `Arc<DestinationMetrics>` whose members carry the
//! destination's redacted URL as the `url` label.

use std::time::{Duration, SystemTime};
// tokio's clock is the system's monotonic clock in the agent; under a test's paused time it is
// the virtual one, so readiness can be tested without waiting.
use tokio::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub mod process;

/// Why samples were dropped instead of delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The receiver answered a 4xx other than 429: it will never take them.
    Rejected,
    /// The buffer was full (`--buffer-max-size`) and these were its oldest.
    BufferFull,
    /// The disk buffer's file system was full and these were its oldest: their segment
    /// files were deleted so that the newest request could be written.
    DiskFull,
    /// Older than `--max-sample-age`.
    TooOld,
    /// The disk buffer could not store them (an I/O error, or a request larger than the
    /// whole volume).
    BufferWrite,
    /// Still in the memory buffer when the shutdown timeout ran out.
    Shutdown,
    /// A Remote Write 2.0 receiver answered 2xx but said it wrote fewer samples than the
    /// request held (`X-Prometheus-Remote-Write-Samples-Written`): it refused the rest
    /// (invalid, out of order, over a limit) and retrying would not change that.
    ReceiverRefused,
}

impl DropReason {
    /// Every reason, so each drop counter exists at 0 from the start: `increase()` in an
    /// alert cannot see the first drop of a counter that appears with value 1.
    pub const ALL: [DropReason; 7] = [
        DropReason::Rejected,
        DropReason::BufferFull,
        DropReason::DiskFull,
        DropReason::TooOld,
        DropReason::BufferWrite,
        DropReason::Shutdown,
        DropReason::ReceiverRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::BufferFull => "buffer_full",
            DropReason::DiskFull => "disk_full",
            DropReason::TooOld => "too_old",
            DropReason::BufferWrite => "buffer_write_error",
            DropReason::Shutdown => "shutdown",
            DropReason::ReceiverRefused => "receiver_refused",
        }
    }
}

/// Why a value of a summary was left out (`kubelet_push_summary_values_invalid_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidValue {
    /// Not readable: the wrong JSON type, a number past float64, a `time` that is not RFC
    /// 3339 (a whole section of the wrong type counts once).
    Malformed,
    /// A counter below zero.
    NegativeCounter,
    /// A sample stamped past the agent's clock plus the allowance: dropped, not sent.
    FutureTimestamp,
}

impl InvalidValue {
    pub const ALL: [InvalidValue; 3] = [
        InvalidValue::Malformed,
        InvalidValue::NegativeCounter,
        InvalidValue::FutureTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidValue::Malformed => "malformed",
            InvalidValue::NegativeCounter => "negative_counter",
            InvalidValue::FutureTimestamp => "future_timestamp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetResultLabels {
    job: String,
    instance: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetReasonLabels {
    job: String,
    instance: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UrlLabel {
    url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UrlReasonLabels {
    url: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UrlCodeLabels {
    url: String,
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UrlVersionLabels {
    url: String,
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The families every destination has a member of, by its `url` label.
#[derive(Clone)]
struct DestinationFamilies {
    samples_queued: Family<UrlLabel, Counter>,
    samples_sent: Family<UrlLabel, Counter>,
    samples_dropped: Family<UrlReasonLabels, Counter>,
    samples_pending: Family<UrlLabel, Gauge>,
    buffer_bytes: Family<UrlLabel, Gauge>,
    buffer_max_bytes: Family<UrlLabel, Gauge>,
    buffer_requests: Family<UrlLabel, Gauge>,
    requests: Family<UrlCodeLabels, Counter>,
    protocol: Family<UrlVersionLabels, Gauge>,
    retries: Family<UrlLabel, Counter>,
    last_send: Family<UrlLabel, FloatGauge>,
    sent_bytes: Family<UrlLabel, Counter>,
    request_duration: Family<UrlLabel, Histogram, fn() -> Histogram>,
}

/// Buckets of `kubelet_push_remote_request_duration_seconds`: a LAN round trip to
/// `--remote-timeout`'s default.
fn request_duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Default for DestinationFamilies {
    fn default() -> Self {
        DestinationFamilies {
            samples_queued: Family::default(),
            samples_sent: Family::default(),
            samples_dropped: Family::default(),
            samples_pending: Family::default(),
            buffer_bytes: Family::default(),
            buffer_max_bytes: Family::default(),
            buffer_requests: Family::default(),
            requests: Family::default(),
            protocol: Family::default(),
            retries: Family::default(),
            last_send: Family::default(),
            sent_bytes: Family::default(),
            request_duration: Family::new_with_constructor(request_duration_histogram),
        }
    }
}

/// The agent's metrics: the polls' own, and one [`DestinationMetrics`] per destination.
pub struct Metrics {
    registry: Registry,
    polls: Family<ResultLabel, Counter>,
    pod_list_requests: Family<ResultLabel, Counter>,
    /// Pods and containers of the last summary that the `/pods` answer did not describe
    /// (sent without `image` and `name`).
    pub undescribed: Gauge,
    pub poll_duration: Histogram,
    pub samples_scraped: Counter,
    /// Samples the polls left out by `--metric-allow` / `--metric-deny`.
    pub samples_filtered: Counter,
    /// Summary values left out, by [`InvalidValue`].
    summary_values_invalid: Family<ReasonLabel, Counter>,
    /// Scrapes of the `--scrape` / `--kubelet-scrape` targets by target and result.
    scrapes: Family<TargetResultLabels, Counter>,
    /// Scraped samples left out by target and reason (`duplicate`, `future_timestamp`).
    scrape_samples_invalid: Family<TargetReasonLabels, Counter>,
    families: DestinationFamilies,
    destinations: std::sync::Mutex<Vec<std::sync::Arc<DestinationMetrics>>>,
    last_poll: FloatGauge,
    /// Monotonic twin of the timestamp above, for `/readyz`.
    last_poll_at: std::sync::Mutex<Option<Instant>>,
    /// When the agent started, for readiness before the first send.
    pub started: Instant,
    /// Reloads of `--config-file` (SIGHUP, `POST /-/reload`).
    pub reloads: ReloadMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // `process_*` unprefixed at the root, everything else under `kubelet_push_`.
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("kubelet_push");
        let m = Metrics {
            polls: Family::default(),
            pod_list_requests: Family::default(),
            undescribed: Gauge::default(),
            poll_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            samples_scraped: Counter::default(),
            samples_filtered: Counter::default(),
            summary_values_invalid: Family::default(),
            scrapes: Family::default(),
            scrape_samples_invalid: Family::default(),
            families: DestinationFamilies::default(),
            destinations: std::sync::Mutex::new(Vec::new()),
            last_poll: Gauge::default(),
            last_poll_at: std::sync::Mutex::new(None),
            started: Instant::now(),
            registry: Registry::default(),
            reloads: ReloadMetrics::default(),
        };
        m.reloads.register(registry);
        registry.register(
            "polls",
            "Kubelet polls by result (ok, error)",
            m.polls.clone(),
        );
        registry.register(
            "pod_list_requests",
            "Kubelet GET /pods requests (pod metadata) by result (ok, error)",
            m.pod_list_requests.clone(),
        );
        registry.register(
            "pods_without_metadata",
            "Pods and containers of the last summary that the last /pods answer did not describe: their series go out without image and name",
            m.undescribed.clone(),
        );
        registry.register(
            "poll_duration_seconds",
            "Wall time of a kubelet poll",
            m.poll_duration.clone(),
        );
        registry.register(
            "samples_scraped",
            "Samples the polls produced, before dedupe",
            m.samples_scraped.clone(),
        );
        registry.register(
            "samples_filtered",
            "Samples the polls produced that --metric-allow / --metric-deny left out",
            m.samples_filtered.clone(),
        );
        registry.register(
            "summary_values_invalid",
            "Summary values left out by reason: malformed (wrong type, past float64, a bad time), negative_counter, future_timestamp (past the agent's clock plus 2m)",
            m.summary_values_invalid.clone(),
        );
        for reason in InvalidValue::ALL {
            let _ = m.summary_values_invalid.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        registry.register(
            "scrapes",
            "Scrapes of the --scrape and --kubelet-scrape targets by job, instance and result: success, or why the scrape failed (unreachable, timeout, http_status, body_size_limit, sample_limit, malformed)",
            m.scrapes.clone(),
        );
        registry.register(
            "scrape_samples_invalid",
            "Scraped samples left out by job, instance and reason: duplicate (a series repeated within one exposition), future_timestamp (an explicit timestamp past the agent's clock plus 2m)",
            m.scrape_samples_invalid.clone(),
        );
        let f = &m.families;
        registry.register(
            "samples_queued",
            "Samples put in a destination's buffer (after dedupe, with stale markers and per-poll series)",
            f.samples_queued.clone(),
        );
        registry.register(
            "samples_sent",
            "Samples the destination accepted",
            f.samples_sent.clone(),
        );
        registry.register(
            "samples_dropped",
            "Samples given up, by destination and reason",
            f.samples_dropped.clone(),
        );
        registry.register(
            "samples_pending",
            "Samples waiting in a destination's buffer",
            f.samples_pending.clone(),
        );
        registry.register(
            "buffer_bytes",
            "Bytes held by a destination's buffer",
            f.buffer_bytes.clone(),
        );
        registry.register(
            "buffer_max_bytes",
            "Bytes a destination's buffer may hold (--buffer-max-size); the oldest requests go beyond it",
            f.buffer_max_bytes.clone(),
        );
        registry.register(
            "buffer_requests",
            "Requests waiting in a destination's buffer",
            f.buffer_requests.clone(),
        );
        registry.register(
            "sent_bytes",
            "Compressed bytes of the request bodies POSTed to a destination, every attempt counted (retries too), whatever the answer",
            f.sent_bytes.clone(),
        );
        registry.register(
            "remote_request_duration_seconds",
            "Wall time of one POST to a destination, from sending to the answer's status (or the failure), every attempt",
            f.request_duration.clone(),
        );
        registry.register(
            "requests",
            "Remote write attempts by destination and HTTP status code (\"error\" when no answer came)",
            f.requests.clone(),
        );
        registry.register(
            "remote_write_protocol",
            "1 for the Remote Write version (1.0, 2.0) a destination's requests go out in now, 0 for the other",
            f.protocol.clone(),
        );
        registry.register(
            "retries",
            "Remote write attempts that were retried, by destination",
            f.retries.clone(),
        );
        registry.register(
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last successful kubelet poll",
            m.last_poll.clone(),
        );
        registry.register(
            "last_successful_send_timestamp_seconds",
            "Unix time of the last request the destination accepted",
            f.last_send.clone(),
        );
        for result in ["ok", "error"] {
            let _ = m.polls.get_or_create(&ResultLabel { result });
            let _ = m.pod_list_requests.get_or_create(&ResultLabel { result });
        }
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Always 1; the version in a label", build);
        Metrics {
            registry: root,
            ..m
        }
    }

    /// The metrics of the destination whose redacted URL is `url`, created with every drop
    /// reason at 0 on first use; the same handle for the same `url` after that.
    pub fn destination(&self, url: &str) -> std::sync::Arc<DestinationMetrics> {
        let mut all = lock(&self.destinations);
        if let Some(d) = all.iter().find(|d| d.url == url) {
            return d.clone();
        }
        let f = &self.families;
        let label = UrlLabel {
            url: url.to_owned(),
        };
        let d = std::sync::Arc::new(DestinationMetrics {
            url: url.to_owned(),
            samples_queued: f.samples_queued.get_or_create(&label).clone(),
            samples_sent: f.samples_sent.get_or_create(&label).clone(),
            dropped: DropReason::ALL.map(|reason| {
                f.samples_dropped
                    .get_or_create(&UrlReasonLabels {
                        url: url.to_owned(),
                        reason: reason.as_str(),
                    })
                    .clone()
            }),
            samples_pending: f.samples_pending.get_or_create(&label).clone(),
            buffer_bytes: f.buffer_bytes.get_or_create(&label).clone(),
            buffer_max_bytes: f.buffer_max_bytes.get_or_create(&label).clone(),
            buffer_requests: f.buffer_requests.get_or_create(&label).clone(),
            requests: f.requests.clone(),
            protocol: f.protocol.clone(),
            retries: f.retries.get_or_create(&label).clone(),
            last_send: f.last_send.get_or_create(&label).clone(),
            sent_bytes: f.sent_bytes.get_or_create(&label).clone(),
            request_duration: f.request_duration.get_or_create(&label).clone(),
            last_send_at: std::sync::Mutex::new(None),
            started: self.started,
            rejecting: std::sync::Mutex::new(None),
        });
        all.push(d.clone());
        d
    }

    /// Every destination's metrics, in the order they were created.
    pub fn destinations(&self) -> Vec<std::sync::Arc<DestinationMetrics>> {
        lock(&self.destinations).clone()
    }

    pub fn poll_finished(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.polls.get_or_create(&ResultLabel { result }).inc();
        self.poll_duration.observe(took.as_secs_f64());
        if ok {
            self.last_poll.set(unix_secs());
            *lock(&self.last_poll_at) = Some(Instant::now());
        }
    }

    /// Counts `n` summary values left out for `reason`.
    pub fn summary_values_invalid(&self, reason: InvalidValue, n: u64) {
        // Called every poll, nearly always with 0: no lookup then (each reason's counter
        // exists from registration on).
        if n == 0 {
            return;
        }
        self.summary_values_invalid
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }

    /// Every result a target's scrapes can have, so a target's counters exist at 0 from its
    /// first scrape on (a rate over a counter that appears at 1 misses the first failure).
    pub const SCRAPE_RESULTS: [&'static str; 7] = [
        "success",
        "unreachable",
        "timeout",
        "http_status",
        "body_size_limit",
        "sample_limit",
        "malformed",
    ];

    /// Creates a target's scrape counters at 0 (every result, every invalid reason).
    pub fn scrape_target(&self, job: &str, instance: &str) {
        for result in Self::SCRAPE_RESULTS {
            let _ = self.scrapes.get_or_create(&TargetResultLabels {
                job: job.to_owned(),
                instance: instance.to_owned(),
                result,
            });
        }
        for reason in ["duplicate", "future_timestamp"] {
            let _ = self
                .scrape_samples_invalid
                .get_or_create(&TargetReasonLabels {
                    job: job.to_owned(),
                    instance: instance.to_owned(),
                    reason,
                });
        }
    }

    /// Counts one scrape of the target `job`/`instance` with `result` (one of
    /// [`Metrics::SCRAPE_RESULTS`]).
    pub fn scrape_finished(&self, job: &str, instance: &str, result: &'static str) {
        self.scrapes
            .get_or_create(&TargetResultLabels {
                job: job.to_owned(),
                instance: instance.to_owned(),
                result,
            })
            .inc();
    }

    /// Scrapes of a target with `result` so far.
    pub fn scrapes(&self, job: &str, instance: &str, result: &'static str) -> u64 {
        self.scrapes
            .get_or_create(&TargetResultLabels {
                job: job.to_owned(),
                instance: instance.to_owned(),
                result,
            })
            .get()
    }

    /// Counts `n` scraped samples of a target left out for `reason` (`duplicate`,
    /// `future_timestamp`).
    pub fn scrape_samples_invalid(&self, job: &str, instance: &str, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.scrape_samples_invalid
            .get_or_create(&TargetReasonLabels {
                job: job.to_owned(),
                instance: instance.to_owned(),
                reason,
            })
            .inc_by(n);
    }

    pub fn polls(&self, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "error" };
        self.polls.get_or_create(&ResultLabel { result }).get()
    }

    /// Counts one `/pods` request by its outcome.
    pub fn pod_list_request(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.pod_list_requests
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn since_last_poll(&self) -> Option<Duration> {
        lock(&self.last_poll_at).map(|t| t.elapsed())
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One destination's delivery metrics, each a member of a `url`-labelled family of
/// [`Metrics`] (the URL redacted as in logs). The sender and the polling task's enqueue for
/// that destination hold it.
pub struct DestinationMetrics {
    url: String,
    pub samples_queued: Counter,
    pub samples_sent: Counter,
    /// By [`DropReason::ALL`]'s order.
    dropped: [Counter; DropReason::ALL.len()],
    pub samples_pending: Gauge,
    pub buffer_bytes: Gauge,
    /// `--buffer-max-size`, so a dashboard or alert can show how full the buffer is.
    pub buffer_max_bytes: Gauge,
    pub buffer_requests: Gauge,
    requests: Family<UrlCodeLabels, Counter>,
    /// 1 for the Remote Write version the destination is sent now, 0 for the other: a
    /// destination configured for 2.0 that fell back to 1.0 shows here.
    protocol: Family<UrlVersionLabels, Gauge>,
    pub retries: Counter,
    last_send: FloatGauge,
    /// `kubelet_push_sent_bytes_total`: body bytes of every attempt.
    pub sent_bytes: Counter,
    /// `kubelet_push_remote_request_duration_seconds`: every attempt's wall time.
    pub request_duration: Histogram,
    last_send_at: std::sync::Mutex<Option<Instant>>,
    started: Instant,
    /// Requests rejected in a row since the last one accepted: `/readyz` names the
    /// destination once the streak is [`REJECTED_IN_A_ROW`] long.
    rejecting: std::sync::Mutex<Option<Rejecting>>,
}

/// How many rejected requests in a row, with none accepted between them, make a destination
/// (and so the agent) unready: one rejected request among accepted ones (a sample out of
/// order, say) is the receiver judging that request; a run of them is a wrong path, tenant or
/// credential that loses everything.
pub const REJECTED_IN_A_ROW: u64 = 3;

/// A destination's current run of rejected requests.
struct Rejecting {
    requests: u64,
    /// The last rejection's status, as `/readyz` shows it (`404 Not Found`).
    status: String,
    since: Instant,
}

impl DestinationMetrics {
    /// The `url` label: the destination's URL as logs show it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets the buffer gauges to what the buffer holds.
    pub fn buffer_levels(&self, levels: crate::buffer::Levels) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.samples_pending.set(gauge(levels.samples));
        self.buffer_bytes.set(gauge(levels.bytes));
        self.buffer_requests.set(gauge(levels.requests));
    }

    fn drop_counter(&self, reason: DropReason) -> &Counter {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.dropped[i]
    }

    pub fn dropped(&self, reason: DropReason, samples: u64) {
        self.drop_counter(reason).inc_by(samples);
    }

    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        self.drop_counter(reason).get()
    }

    /// One remote write attempt made: its body's (compressed) size and how long it took,
    /// whatever the answer.
    pub fn attempted(&self, body_bytes: usize, took: Duration) {
        self.sent_bytes
            .inc_by(u64::try_from(body_bytes).unwrap_or(u64::MAX));
        self.request_duration.observe(took.as_secs_f64());
    }

    /// One remote write attempt's outcome: a status code, or none for network errors.
    pub fn request(&self, status: Option<u16>) {
        self.requests.get_or_create(&self.code(status)).inc();
    }

    pub fn requests_with(&self, status: Option<u16>) -> u64 {
        self.requests.get_or_create(&self.code(status)).get()
    }

    fn code(&self, status: Option<u16>) -> UrlCodeLabels {
        UrlCodeLabels {
            url: self.url.clone(),
            code: status.map_or_else(|| "error".to_owned(), |s| s.to_string()),
        }
    }

    /// Records the protocol the destination is sent from now on.
    pub fn remote_write_protocol(&self, protocol: crate::remote_write::Protocol) {
        use crate::remote_write::Protocol;
        for p in [Protocol::V1, Protocol::V2] {
            self.protocol
                .get_or_create(&self.version(p))
                .set(i64::from(p == protocol));
        }
    }

    /// The protocol [`DestinationMetrics::remote_write_protocol`] last recorded, if any.
    pub fn remote_write_protocol_now(&self) -> Option<crate::remote_write::Protocol> {
        use crate::remote_write::Protocol;
        [Protocol::V1, Protocol::V2]
            .into_iter()
            .find(|p| self.protocol.get_or_create(&self.version(*p)).get() == 1)
    }

    fn version(&self, p: crate::remote_write::Protocol) -> UrlVersionLabels {
        UrlVersionLabels {
            url: self.url.clone(),
            version: version_label(p),
        }
    }

    pub fn sent(&self, samples: u64) {
        self.samples_sent.inc_by(samples);
        self.last_send.set(unix_secs());
        *lock(&self.last_send_at) = Some(Instant::now());
        *lock(&self.rejecting) = None;
    }

    /// A request the receiver will never take (`status`): one more in this destination's
    /// run of rejections. An accepted request ([`sent`](Self::sent)) ends the run.
    pub fn rejected(&self, status: impl std::fmt::Display) {
        let mut rejecting = lock(&self.rejecting);
        let run = rejecting.get_or_insert_with(|| Rejecting {
            requests: 0,
            status: String::new(),
            since: Instant::now(),
        });
        run.requests += 1;
        run.status = status.to_string();
    }

    /// Why this destination makes the agent unready, if it does: its last
    /// [`REJECTED_IN_A_ROW`] or more requests were all rejected.
    fn rejecting(&self) -> Option<String> {
        let rejecting = lock(&self.rejecting);
        let run = rejecting
            .as_ref()
            .filter(|r| r.requests >= REJECTED_IN_A_ROW)?;
        Some(format!(
            "{}: the receiver rejected the last {} requests ({}) over {}s and none since; their samples were dropped",
            self.url,
            run.requests,
            run.status,
            run.since.elapsed().as_secs()
        ))
    }

    pub fn since_last_send(&self) -> Option<Duration> {
        lock(&self.last_send_at).map(|t| t.elapsed())
    }

    /// When the agent started, for readiness before this destination's first send.
    pub fn since_start(&self) -> Duration {
        self.started.elapsed()
    }
}

fn version_label(p: crate::remote_write::Protocol) -> &'static str {
    match p {
        crate::remote_write::Protocol::V1 => "1.0",
        crate::remote_write::Protocol::V2 => "2.0",
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reloads of the configuration, as Prometheus counts its own: how many by result, and
/// when the configuration in use was last loaded (at start-up, then by each reload that
/// applied).
#[derive(Debug, Default)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
    last_success: FloatGauge,
}

impl ReloadMetrics {
    fn register(&self, registry: &mut Registry) {
        for result in ["success", "failure"] {
            let _ = self.reloads.get_or_create(&ResultLabel { result });
        }
        self.last_success.set(unix_secs());
        registry.register(
            "config_reloads",
            "Reloads of --config-file (SIGHUP, POST /-/reload) by result (success, failure)",
            self.reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration in use was loaded: at start-up, then by the last reload that succeeded",
            self.last_success.clone(),
        );
    }

    /// A reload that applied its file (or found nothing changed).
    pub fn succeeded(&self) {
        self.reloads
            .get_or_create(&ResultLabel { result: "success" })
            .inc();
        self.last_success.set(unix_secs());
    }

    /// A reload refused: the running configuration stays.
    pub fn failed(&self) {
        self.reloads
            .get_or_create(&ResultLabel { result: "failure" })
            .inc();
    }
}

/// Each destination's buffer and metrics, as `/readyz` reads them; a reload swaps them.
pub type HealthDestinations = std::sync::Arc<
    std::sync::Mutex<
        Vec<(
            std::sync::Arc<crate::buffer::Queue>,
            std::sync::Arc<DestinationMetrics>,
        )>,
    >,
>;

/// What `/readyz` judges by.
pub struct Health {
    pub metrics: std::sync::Arc<Metrics>,
    /// Each destination's buffer and metrics.
    pub destinations: HealthDestinations,
    pub interval: Duration,
    pub max_backoff: Duration,
    /// Whether the kubelet's summary is polled (`--kubelet-summary`); when it is not, no
    /// poll is expected.
    pub summary: bool,
}

impl Health {
    /// Ready when a poll succeeded within three intervals (if the summary is polled), no
    /// destination rejected its last [`REJECTED_IN_A_ROW`] requests in a row (a wrong path,
    /// tenant or credential: everything sent there is dropped, so nothing waits in the
    /// buffer to show it), and, for every destination with requests waiting, a send succeeded
    /// within three intervals plus the longest backoff. A scrape target that is down does not make the agent unready:
    /// its `up` says so, as Prometheus's would.
    pub fn ready(&self) -> Result<(), String> {
        let poll_limit = self.interval * 3;
        match self.metrics.since_last_poll() {
            _ if !self.summary => {}
            None => return Err("no successful kubelet poll yet".into()),
            Some(age) if age > poll_limit => {
                return Err(format!(
                    "last successful kubelet poll {}s ago",
                    age.as_secs()
                ));
            }
            Some(_) => {}
        }
        let send_limit = poll_limit + self.max_backoff;
        for (queue, metrics) in lock(&self.destinations).iter() {
            if let Some(why) = metrics.rejecting() {
                return Err(why);
            }
            let waiting = queue.len();
            if waiting == 0 {
                continue;
            }
            let url = metrics.url();
            match metrics.since_last_send() {
                Some(age) if age <= send_limit => {}
                Some(age) => {
                    return Err(format!(
                        "{url}: {waiting} requests waiting; last successful send {}s ago",
                        age.as_secs()
                    ))
                }
                // Before the first send, give the agent as long as it would have after one.
                None if metrics.since_start() <= send_limit => {}
                None => {
                    return Err(format!(
                        "{url}: {waiting} requests waiting; nothing sent yet"
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop` is cancelled. Binding
/// happens before this returns, so a busy port is a start-up error. The address bound is
/// logged and returned: with port 0 the system picks one (what tests do, so that no two
/// agents ever race for a port).
pub async fn serve(
    addr: std::net::SocketAddr,
    health: Health,
    reload: Option<ReloadSender>,
    stop: tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<std::net::SocketAddr> {
    use axum::http::{header, StatusCode};
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "{SERVING}");
    let health = std::sync::Arc::new(health);
    let metrics = health.metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()) }
            }),
        )
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/-/reload",
            axum::routing::post(move || reload_answer(reload.clone())),
        )
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.ready() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        );
    tasks.spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// Where `POST /-/reload` hands its request (`None`: `--enable-reload` is off).
pub type ReloadSender = tokio::sync::mpsc::Sender<crate::signal::ReloadRequest>;

/// `POST /-/reload`: 200 once applied, 400 with the error when the file is refused, 403 when
/// `--enable-reload` is off (as Prometheus answers without `--web.enable-lifecycle`), 503
/// while the agent is stopping. Other methods get axum's 405.
async fn reload_answer(reload: Option<ReloadSender>) -> (axum::http::StatusCode, String) {
    use crate::signal::{ReloadRequest, Reloaded};
    use axum::http::StatusCode;
    let Some(reload) = reload else {
        return (
            StatusCode::FORBIDDEN,
            "reload is off: start with --enable-reload (or send SIGHUP)\n".to_owned(),
        );
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = ReloadRequest {
        source: "POST /-/reload",
        answer: Some(tx),
    };
    let stopping = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is stopping\n".to_owned(),
        )
    };
    if reload.send(request).await.is_err() {
        return stopping();
    }
    match rx.await {
        Ok(Reloaded::Applied(what)) => (StatusCode::OK, format!("{what}\n")),
        Ok(Reloaded::Invalid(why) | Reloaded::NothingToReload(why)) => {
            (StatusCode::BAD_REQUEST, format!("{why}\n"))
        }
        Err(_) => stopping(),
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text (what `/metrics` answers with, and what
/// the pushed self-metrics are parsed as).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `/` answers: the endpoints, linked.
pub const INDEX: &str = "<!DOCTYPE html>
<html><head><title>kubelet-push</title></head><body>
<h1>kubelet-push</h1>
<ul>
<li><a href=\"metrics\">/metrics</a>: the agent's own metrics (kubelet_push_*, process_*)</li>
<li><a href=\"healthz\">/healthz</a>: the process is alive</li>
<li><a href=\"readyz\">/readyz</a>: polls and sends are keeping up</li>
<li>/-/reload (POST, when --enable-reload): re-read the configuration</li>
</ul>
</body></html>
";

/// The message of the log line that gives the address `serve` bound (its `address` field).
pub const SERVING: &str = "serving /metrics, /healthz and /readyz";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.poll_finished(true, Duration::from_millis(20));
        m.poll_finished(false, Duration::from_millis(5));
        let a = m.destination("http://a:9090/api/v1/write");
        let b = m.destination("https://b/push");
        assert!(std::sync::Arc::ptr_eq(
            &a,
            &m.destination("http://a:9090/api/v1/write")
        ));
        a.dropped(DropReason::Rejected, 36);
        a.request(Some(503));
        a.request(None);
        a.sent(10);
        b.sent(4);
        b.remote_write_protocol(crate::remote_write::Protocol::V2);
        let text = m.encode();
        for line in [
            "kubelet_push_polls_total{result=\"ok\"} 1",
            "kubelet_push_polls_total{result=\"error\"} 1",
            "kubelet_push_samples_dropped_total{url=\"http://a:9090/api/v1/write\",reason=\"rejected\"} 36",
            "kubelet_push_samples_dropped_total{url=\"https://b/push\",reason=\"buffer_full\"} 0",
            "kubelet_push_requests_total{url=\"http://a:9090/api/v1/write\",code=\"503\"} 1",
            "kubelet_push_requests_total{url=\"http://a:9090/api/v1/write\",code=\"error\"} 1",
            "kubelet_push_samples_sent_total{url=\"http://a:9090/api/v1/write\"} 10",
            "kubelet_push_samples_sent_total{url=\"https://b/push\"} 4",
            "kubelet_push_remote_write_protocol{url=\"https://b/push\",version=\"2.0\"} 1",
            "kubelet_push_poll_duration_seconds_count 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.contains(&format!(
            "kubelet_push_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(a.since_last_send().is_some() && m.since_last_poll().is_some());
        assert_eq!(m.destinations().len(), 2);
    }

    /// Unready after [`REJECTED_IN_A_ROW`] rejected requests with none accepted between them,
    /// not before; an accepted one ends the run and starts the count afresh.
    #[tokio::test(start_paused = true)]
    async fn a_run_of_rejected_requests_makes_the_agent_unready() {
        let m = std::sync::Arc::new(Metrics::new());
        m.poll_finished(true, Duration::from_millis(1));
        let d = m.destination("http://mimir:8080/wrong");
        let health = Health {
            metrics: m.clone(),
            destinations: std::sync::Arc::new(std::sync::Mutex::new(vec![(
                std::sync::Arc::new(crate::buffer::Queue::new(Box::new(
                    crate::buffer::memory::MemoryBuffer::new(1 << 20),
                ))),
                d.clone(),
            )])),
            interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3),
            summary: true,
        };
        let not_found = reqwest::StatusCode::NOT_FOUND;
        for _ in 1..REJECTED_IN_A_ROW {
            d.rejected(not_found);
            assert_eq!(health.ready(), Ok(()));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        d.rejected(not_found);
        assert_eq!(
            health.ready(),
            Err("http://mimir:8080/wrong: the receiver rejected the last 3 requests (404 Not Found) over 2s and none since; their samples were dropped".to_owned())
        );
        d.sent(1);
        assert_eq!(health.ready(), Ok(()));
        for _ in 1..REJECTED_IN_A_ROW {
            d.rejected(not_found);
        }
        assert_eq!(health.ready(), Ok(()), "the count starts afresh");
    }
}
