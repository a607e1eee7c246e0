//! The running agent: a poller that turns each kubelet summary into encoded requests and puts
//! them in the buffer, and a sender task that drains the buffer to the receiver.
//!
//! ```text
//! interval ─► Poller::poll ─► encode_batches ─► Queue (memory or disk) ─► sender ─► receiver
//!             fetch, parse, convert, dedupe,     bounded, oldest          retry, backoff,
//!             stale, up/scrape_*                 dropped when full        one in flight
//! ```
//!
//! The poller never waits for the receiver. Shutdown: stop polling, let the sender drain for
//! `--shutdown-timeout`, then stop it; what is left stays on disk (disk buffer) or is counted
//! as dropped (memory buffer).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::buffer::disk::DiskBuffer;
use crate::buffer::memory::MemoryBuffer;
use crate::buffer::{Batch, Buffer, Queue};
use crate::config::{Config, ConfigError, Mode};
use crate::convert::{self, Labels, Sample};
use crate::kubelet::client::{ClientError, KubeletClient};
use crate::kubelet::{summary, ScrapeError};
use crate::remote_write::encode::{encode_batches, time_series};
use crate::remote_write::proto::v1::TimeSeries;
use crate::remote_write::{CommonLabels, EncodedRequest, RemoteWriteClient, STALE_NAN_BITS};
use crate::sender::{self, SenderSettings};
use crate::series::{Admit, SeriesTracker};
use crate::telemetry::{DropReason, Episode, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything that was attempted worked (or the agent was asked to stop).
    Ok,
    /// `--once` / `--dry-run`: the poll failed, or not every sample was delivered.
    Failed,
}

fn config_error(flag: &'static str, e: &(dyn std::error::Error + 'static)) -> ConfigError {
    ConfigError {
        flag,
        reason: error_chain(e),
    }
}

/// Runs the agent until `shutdown` is cancelled (or after one poll for `--once` and
/// `--dry-run`). Dry-run output goes to `out`.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Outcome, RunError> {
    let mut poller = Poller::new(&config, metrics.clone()).map_err(|e| {
        let flag = match e {
            ClientError::Build(_) => "--kubelet-url",
            _ => "--kubelet-ca-file",
        };
        config_error(flag, &e)
    })?;
    if config.mode == Mode::DryRun {
        let poll = poller.poll().await;
        let text = crate::text::render(&poll.series);
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            warn!(error = %e, "cannot write dry-run output");
            return Ok(Outcome::Failed);
        }
        return Ok(if poll.error.is_some() {
            Outcome::Failed
        } else {
            Outcome::Ok
        });
    }
    let Some(remote) = &config.remote else {
        return Err(ConfigError {
            flag: "--remote-url",
            reason: "required unless --dry-run".into(),
        }
        .into());
    };
    let client = RemoteWriteClient::new(remote.url.clone(), remote.timeout, &remote.headers)
        .map_err(|e| config_error("--remote-url", &e))?;
    let delivery = &config.delivery;
    let buffer = open_buffer(delivery, &metrics)?;
    let queue = Arc::new(Queue::new(buffer));
    metrics.buffer_levels(queue.levels());
    let stop_all = CancellationToken::new();
    if let Some(addr) = config.listen_address {
        let health = crate::telemetry::Health {
            metrics: metrics.clone(),
            queue: queue.clone(),
            interval: config.interval,
            max_backoff: delivery.max_backoff,
        };
        crate::telemetry::serve(addr, health, stop_all.clone())
            .await
            .map_err(|e| config_error("--listen-address", &e))?;
    }
    info!(
        kubelet = %poller.kubelet_display(),
        remote = client.display_url(),
        interval = ?config.interval,
        buffer = if delivery.buffer_dir.is_some() { "disk" } else { "memory" },
        "kubelet-push started"
    );
    let drain = CancellationToken::new();
    let settings = SenderSettings {
        min_backoff: delivery.min_backoff,
        max_backoff: delivery.max_backoff,
        max_sample_age: delivery.max_sample_age,
    };
    let mut sender = tokio::spawn(sender::run(
        client,
        queue.clone(),
        metrics.clone(),
        settings,
        drain.clone(),
        stop_all.clone(),
    ));

    let mut poll_failed = false;
    let mut store_failing = Episode::default();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // A poll can take up to --kubelet-timeout; a stop request does not wait for it.
        let poll = tokio::select! {
            _ = shutdown.cancelled() => break,
            poll = poller.poll() => poll,
        };
        poll_failed |= poll.error.is_some();
        let requests = match encode_batches(poll.series, config.max_samples_per_send) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot compress a remote write request; poll dropped");
                poll_failed = true;
                Vec::new()
            }
        };
        enqueue(requests, &queue, &metrics, &mut store_failing);
        if config.mode == Mode::Once {
            break;
        }
    }

    // Stop polling; give the sender a bounded time to deliver what is buffered.
    drain.cancel();
    let flushed = tokio::time::timeout(delivery.shutdown_timeout, &mut sender)
        .await
        .is_ok();
    stop_all.cancel();
    if !flushed {
        let _ = sender.await;
    }
    let left = queue.samples();
    if left > 0 {
        if delivery.buffer_dir.is_some() {
            info!(
                samples = left,
                requests = queue.len(),
                "undelivered samples stay in the disk buffer for the next start"
            );
        } else {
            metrics.dropped(DropReason::Shutdown, left);
            warn!(samples = left, timeout = ?delivery.shutdown_timeout, "shutdown timeout ran out; samples in the memory buffer are dropped");
        }
    }
    info!(
        polls_ok = metrics.polls(true),
        polls_failed = metrics.polls(false),
        samples_sent = metrics.samples_sent.get(),
        samples_pending = left,
        "kubelet-push stopped"
    );
    let rejected =
        metrics.dropped_total(DropReason::Rejected) + metrics.dropped_total(DropReason::TooOld);
    let failed = config.mode == Mode::Once
        && (poll_failed
            || left > 0
            || rejected > 0
            || metrics.dropped_total(DropReason::BufferWrite) > 0);
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}

/// The buffer `--buffer-dir` asks for: on disk (replaying what earlier runs left, reporting
/// what start-up recovery cut or dropped), or in memory.
fn open_buffer(
    delivery: &crate::config::Delivery,
    metrics: &Metrics,
) -> Result<Box<dyn Buffer>, ConfigError> {
    metrics
        .buffer_max_bytes
        .set(i64::try_from(delivery.buffer_max_bytes).unwrap_or(i64::MAX));
    let Some(dir) = &delivery.buffer_dir else {
        return Ok(Box::new(MemoryBuffer::new(delivery.buffer_max_bytes)));
    };
    let (disk, recovery) = DiskBuffer::open(dir, delivery.buffer_max_bytes)
        .map_err(|e| config_error("--buffer-dir", &e))?;
    if recovery.batches > 0 || recovery.truncated_bytes > 0 {
        info!(
            dir = %dir.display(),
            requests = recovery.batches,
            samples = recovery.samples,
            damaged_bytes_cut = recovery.truncated_bytes,
            corrupt_records = recovery.corrupt_records,
            "disk buffer replayed; sending what earlier runs left"
        );
    }
    if recovery.dropped.samples > 0 {
        metrics.dropped(DropReason::BufferFull, recovery.dropped.samples);
        warn!(
            samples = recovery.dropped.samples,
            requests = recovery.dropped.batches,
            "the disk buffer held more than --buffer-max-size; oldest requests dropped"
        );
    }
    Ok(Box::new(disk))
}

/// Puts one poll's requests in the buffer. A request the buffer cannot store (a full disk) is
/// counted as dropped; the failure is logged when it starts and when it ends.
fn enqueue(requests: Vec<EncodedRequest>, queue: &Queue, metrics: &Metrics, failing: &mut Episode) {
    for request in requests {
        let samples = request.samples as u64;
        metrics.samples_queued.inc_by(samples);
        let batch = Batch {
            protocol: crate::remote_write::Protocol::V1,
            body: request.body,
            samples: u32::try_from(request.samples).unwrap_or(u32::MAX),
            oldest_ms: request.oldest_ms,
            newest_ms: request.newest_ms,
        };
        let (levels, result) = queue.push(batch);
        metrics.buffer_levels(levels);
        match result {
            Ok(dropped) => {
                if dropped.samples > 0 {
                    metrics.dropped(DropReason::BufferFull, dropped.samples);
                }
                if let Some((n, _)) = failing.recover() {
                    info!(failed_writes = n, "buffer writable again");
                }
            }
            Err(error) => {
                metrics.dropped(DropReason::BufferWrite, samples);
                if failing.fail() {
                    warn!(%error, samples, "cannot store a request in the buffer; dropped");
                }
            }
        }
    }
}

/// The series of one poll, and its error when it failed.
pub struct PollOutput {
    pub series: Vec<TimeSeries>,
    pub error: Option<ScrapeError>,
}

/// Owns everything that lives from one poll to the next.
pub struct Poller {
    kubelet: KubeletClient,
    kubelet_display: String,
    tracker: SeriesTracker,
    job: String,
    node_override: Option<String>,
    external_labels: Vec<(String, String)>,
    /// The node name the common labels were built for, and those labels.
    node: String,
    common: CommonLabels,
    /// Whether `node` came from `--node-name` or a summary, rather than the host name used
    /// until the kubelet first answers.
    node_known: bool,
    max_stats_age_ms: i64,
    /// Size of the last poll, so the next one allocates once.
    capacity_hint: usize,
    /// Time of the previous poll: the next one is stamped at least a millisecond later, so
    /// the per-poll series never repeat a timestamp.
    last_poll_ms: i64,
    kubelet_failing: Episode,
    metrics: Arc<Metrics>,
}

impl Poller {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, ClientError> {
        let kubelet_display = match &config.kubelet.source {
            crate::kubelet::client::Source::Http(u) => crate::http::redact(u),
            crate::kubelet::client::Source::File(p) => format!("file://{}", p.display()),
        };
        let node = config.node_name.clone().unwrap_or_else(host_name);
        let common = CommonLabels::new(&config.job, &node, &config.external_labels);
        Ok(Poller {
            kubelet: KubeletClient::new(config.kubelet.clone())?,
            kubelet_display,
            tracker: SeriesTracker::new(),
            job: config.job.clone(),
            node_override: config.node_name.clone(),
            external_labels: config.external_labels.clone(),
            node,
            common,
            node_known: config.node_name.is_some(),
            max_stats_age_ms: i64::try_from(config.max_stats_age.as_millis()).unwrap_or(i64::MAX),
            capacity_hint: 0,
            last_poll_ms: i64::MIN,
            kubelet_failing: Episode::default(),
            metrics,
        })
    }

    pub fn kubelet_display(&self) -> &str {
        &self.kubelet_display
    }

    /// Polls the kubelet once. Always returns the per-poll series (`up` is 0 on failure); a
    /// failed poll marks nothing stale.
    pub async fn poll(&mut self) -> PollOutput {
        let started = Instant::now();
        let poll_time_ms = unix_ms(SystemTime::now());
        match self.kubelet.fetch().await {
            Ok(bytes) => self.ingest(Ok(&bytes), poll_time_ms, started),
            Err(e) => self.ingest(Err(e), poll_time_ms, started),
        }
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
        let poll_time_ms = poll_time_ms.max(self.last_poll_ms.saturating_add(1));
        self.last_poll_ms = poll_time_ms;
        let mut series = Vec::with_capacity(self.capacity_hint);
        self.tracker.begin_poll();
        let result = fetched.and_then(|bytes| self.convert(bytes, poll_time_ms, &mut series));
        let scraped = *result.as_ref().unwrap_or(&0);
        let up = if result.is_ok() { 1.0 } else { 0.0 };
        let duration = started.elapsed().as_secs_f64();
        let common = &self.common;
        for (name, value) in [
            ("up", up),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped as f64),
        ] {
            let sample = Sample {
                name,
                labels: Labels::new(),
                value,
                timestamp_ms: poll_time_ms,
            };
            if self.tracker.admit(&sample) == Admit::Send {
                series.push(time_series(name, [], common, value, poll_time_ms));
            }
        }
        let error = match result {
            Ok(_) => {
                // Only a successful poll may declare series gone.
                self.tracker.finish_poll(poll_time_ms, |name, labels, ts| {
                    let labels = labels.iter().map(|(n, v)| (*n, &**v));
                    series.push(time_series(
                        name,
                        labels,
                        common,
                        f64::from_bits(STALE_NAN_BITS),
                        ts,
                    ));
                });
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
                    warn!(kubelet = %self.kubelet_display, error = %error_chain(&e), "kubelet poll failed; pushing up=0 until it recovers");
                } else {
                    debug!(error = %error_chain(&e), "kubelet poll failed again");
                }
                Some(e)
            }
        };
        self.capacity_hint = self.capacity_hint.max(series.len());
        PollOutput { series, error }
    }

    /// Parses and converts one summary, admitting its samples through the tracker. Returns
    /// the number of distinct series the summary produced.
    fn convert(
        &mut self,
        bytes: &[u8],
        poll_time_ms: i64,
        out: &mut Vec<TimeSeries>,
    ) -> Result<usize, ScrapeError> {
        let summary = summary::parse(bytes).map_err(ScrapeError::Parse)?;
        let mut samples = Vec::with_capacity(self.capacity_hint);
        convert::convert(&summary, poll_time_ms, self.max_stats_age_ms, &mut samples);
        let node = summary.node.as_ref().and_then(|n| n.node_name.as_deref());
        self.refresh_common(node);
        let common = &self.common;
        let mut distinct = 0;
        for sample in &samples {
            match self.tracker.admit(sample) {
                Admit::Send => {
                    distinct += 1;
                    let labels = sample.labels.as_slice().iter().copied();
                    out.push(time_series(
                        sample.name,
                        labels,
                        common,
                        sample.value,
                        sample.timestamp_ms,
                    ));
                }
                Admit::NotNewer => distinct += 1,
                Admit::Duplicate => {}
            }
        }
        Ok(distinct)
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
            self.node_known = true;
            return;
        }
        if self.node_known {
            info!(from = %self.node, to = %wanted, "node name changed; series start afresh");
            self.tracker.clear();
        }
        self.node = wanted.to_owned();
        self.node_known = true;
        self.common = CommonLabels::new(&self.job, &self.node, &self.external_labels);
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

/// An error and its sources on one line: `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}
