//! The running agent: builds the pieces from the configuration and wires them into tasks, and
//! stops them in order. What each task does lives elsewhere: polling in `pipeline`, delivery in
//! `sender`, the endpoints in `telemetry`.
//!
//! ```text
//!                  ┌► Queue (memory, or disk in --buffer-dir/<subdir>) ─► sender::run ─► receiver 1
//! pipeline::run ───┤    bounded, oldest dropped when full                 retry, backoff,
//!   tick, poll,    │                                                       one in flight
//!   encode once    └► Queue ─► sender::run ─► receiver 2   (one pair per destination)
//!   per protocol
//! ```
//!
//! Destinations share nothing but the polls: each has its own buffer, sender, backoff and
//! protocol, so a dead one only fills its own buffer.
//!
//! Shutdown, in pipeline order: the caller's `shutdown` token stops the polling task (a poll in
//! progress is abandoned); then the senders drain their buffers, side by side, for at most
//! `--shutdown-timeout`;
//! then the agent's root token stops every task still running (the sender mid-retry, the
//! endpoints), each holding a child of it. All tasks run on one `TaskTracker`, and `run`
//! returns only after every one of them ended. What is left stays on disk (disk buffer) or is
//! counted as dropped (memory buffer).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::buffer::disk::DiskBuffer;
use crate::buffer::memory::MemoryBuffer;
use crate::buffer::{Buffer, Queue};
use crate::config::{Config, ConfigError, Mode};
use crate::http::error_chain;
use crate::kubelet::client::ClientError;
use crate::pipeline::{Outlet, Outlets, Poller, Polling};
use crate::remote_write::{Negotiated, RemoteWriteClient};
use crate::scrape::{Endpoint, Scraping, Target, TargetSettings};
use crate::sender::{self, SenderSettings};
use crate::telemetry::{DestinationMetrics, DropReason, Metrics};

pub use crate::pipeline::PollOutput;

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
    let mut poller = Poller::new(&config.poll, metrics.clone()).map_err(|e| {
        let flag = match e {
            ClientError::Build(_) => "--kubelet-url",
            _ => "--kubelet-ca-file",
        };
        config_error(flag, &e)
    })?;
    for target in &config.scrape_targets {
        if let Endpoint::Kubelet { path } = &target.endpoint {
            poller.scraped_too(path);
        }
    }
    let scraping = Scraping {
        once: config.mode != Mode::Run,
        max_samples_per_send: config.max_samples_per_send,
        external_labels: config.poll.external_labels.clone(),
        metric_filter: config.poll.metric_filter.clone(),
        node: poller.node_name(),
        node_wait: config.poll.kubelet.timeout,
        metrics: metrics.clone(),
    };
    let mut targets = config
        .scrape_targets
        .iter()
        .map(|t| Target::new(t.clone(), poller.kubelet_client(), &scraping))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error("--scrape", &e))?;
    // The agent's own metrics go out beside the node's, every interval, while it runs (a
    // `--once` or `--dry-run` run has no health worth pushing).
    if config.self_metrics && config.mode == Mode::Run {
        let own = TargetSettings::agent(config.poll.interval);
        targets.push(
            Target::new(own, poller.kubelet_client(), &scraping)
                .map_err(|e| config_error("--self-metrics", &e))?,
        );
    }
    let summary = config.poll.kubelet_summary.then_some(poller);
    if config.mode == Mode::DryRun {
        return Ok(dry_run(summary, targets, &scraping, out).await);
    }
    let destinations = build(&config, &metrics)?;
    let sources = Sources {
        summary,
        targets,
        scraping,
    };
    let stopped = run_tasks(&config, &metrics, sources, destinations, shutdown).await?;
    Ok(report(&config, &metrics, &stopped))
}

/// What the agent polls and scrapes: the kubelet's summary (unless `--kubelet-summary=false`)
/// and the scrape targets.
struct Sources {
    summary: Option<Poller>,
    targets: Vec<Target>,
    scraping: Scraping,
}

/// `--dry-run`: one poll and one scrape of every target, side by side, written to `out` as
/// text: the summary's samples first, then each target's after a comment naming it.
async fn dry_run(
    summary: Option<Poller>,
    targets: Vec<Target>,
    scraping: &Scraping,
    out: &mut (dyn std::io::Write + Send),
) -> Outcome {
    let mut scrapes = tokio::task::JoinSet::new();
    for (i, mut target) in targets.into_iter().enumerate() {
        let scraping = scraping.clone();
        scrapes.spawn(async move {
            let output = target.scrape(&scraping).await;
            (i, target, output)
        });
    }
    let mut failed = false;
    let mut text = String::new();
    if let Some(mut poller) = summary {
        let poll = poller.poll().await;
        failed |= poll.error.is_some();
        text.push_str(&poller.render_text(&poll));
    }
    let mut scraped = scrapes.join_all().await;
    scraped.sort_by_key(|(i, _, _)| *i);
    for (_, target, output) in scraped {
        failed |= output.error.is_some();
        text.push_str(&format!("# scrape {}\n", target.display()));
        text.push_str(&target.render_text(&output));
    }
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        warn!(error = %e, "cannot write dry-run output");
        return Outcome::Failed;
    }
    if failed {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}

/// One destination as `build` leaves it: what its sender task needs, and what the report
/// reads after the tasks ended.
struct Destination {
    client: RemoteWriteClient,
    /// Shared by the sender and the report (what is left in it at the end).
    buffered: Buffered,
    /// One handle for the polling task and this sender: a fallback the sender makes is
    /// what the next poll is encoded in for this destination.
    negotiated: Negotiated,
}

/// A destination's buffer after the tasks are spawned: the health endpoint and the final
/// report read it.
struct Buffered {
    queue: Arc<Queue>,
    metrics: Arc<DestinationMetrics>,
    /// `None` for a memory buffer: what is left in it at the end is dropped, not kept.
    dir: Option<std::path::PathBuf>,
}

/// What `run_tasks` hands to the report once every task ended.
struct Stopped {
    /// The polling task said a poll failed (or it panicked).
    poll_failed: bool,
    buffers: Vec<Buffered>,
}

/// Builds each destination (client, buffer, queue, protocol handle) in `--remote-url` order,
/// moving a buffer an earlier release left in `--buffer-dir` to the first one. Spawns nothing;
/// a bad flag fails here.
fn build(config: &Config, metrics: &Metrics) -> Result<Vec<Destination>, RunError> {
    let delivery = &config.delivery;
    let mut destinations = Vec::with_capacity(config.remotes.len());
    let legacy = delivery.buffer_dir.as_deref().map(adopt_legacy_buffer);
    for (i, remote) in config.remotes.iter().enumerate() {
        let client = RemoteWriteClient::new(
            remote.url.clone(),
            remote.timeout,
            &remote.headers,
            &remote.access,
        )
        .map_err(|e| config_error("--remote-url", &e))?
        .retry_auth_errors(remote.retry_auth_errors);
        let dest_metrics = metrics.destination(client.display_url());
        let dir = delivery
            .buffer_dir
            .as_ref()
            .map(|root| root.join(remote.buffer_subdir()));
        if let (0, Some(Some(old)), Some(dir)) = (i, &legacy, &dir) {
            move_legacy_buffer(old, dir).map_err(|e| config_error("--buffer-dir", &e))?;
        }
        let buffer = open_buffer(dir.as_deref(), delivery, &dest_metrics)?;
        let queue = Arc::new(Queue::new(buffer));
        dest_metrics.buffer_levels(queue.levels());
        destinations.push(Destination {
            client,
            buffered: Buffered {
                queue,
                metrics: dest_metrics,
                dir,
            },
            negotiated: if remote.auto {
                Negotiated::auto()
            } else {
                Negotiated::new(remote.protocol)
            },
        });
    }
    Ok(destinations)
}

/// Spawns a sender per destination, the endpoints and the polling task, waits for the polling
/// task to end (`shutdown`, or one poll for `--once`), then stops the rest in order: the
/// senders drain for at most `--shutdown-timeout`, the root token stops what is left, and this
/// returns once every task ended.
async fn run_tasks(
    config: &Config,
    metrics: &Arc<Metrics>,
    sources: Sources,
    destinations: Vec<Destination>,
    shutdown: CancellationToken,
) -> Result<Stopped, RunError> {
    let delivery = &config.delivery;
    let settings = SenderSettings {
        min_backoff: delivery.min_backoff,
        max_backoff: delivery.max_backoff,
        max_sample_age: delivery.max_sample_age,
        max_catch_up_bytes: delivery.max_catch_up_bytes,
        interval: config.poll.interval,
    };
    // Cancelled when every task must stop at once; each task holds a child of it.
    let root = CancellationToken::new();
    // Tells the senders no more requests will come: deliver what is buffered, then return.
    let drain = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut outlets = Vec::with_capacity(destinations.len());
    let mut senders = Vec::with_capacity(destinations.len());
    let mut buffers = Vec::with_capacity(destinations.len());
    for Destination {
        client,
        buffered,
        negotiated,
    } in destinations
    {
        let queue = buffered.queue.clone();
        let dest_metrics = buffered.metrics.clone();
        buffers.push(buffered);
        senders.push(tasks.spawn(sender::run(
            client,
            queue.clone(),
            dest_metrics.clone(),
            settings.clone(),
            negotiated.clone(),
            drain.clone(),
            root.child_token(),
        )));
        outlets.push(Outlet::new(queue, negotiated, dest_metrics));
    }
    if let Some(addr) = config.listen_address {
        let health = crate::telemetry::Health {
            metrics: metrics.clone(),
            destinations: buffers
                .iter()
                .map(|b| (b.queue.clone(), b.metrics.clone()))
                .collect(),
            interval: config.poll.interval,
            max_backoff: delivery.max_backoff,
            summary: sources.summary.is_some(),
        };
        crate::telemetry::serve(addr, health, root.child_token(), &tasks)
            .await
            .map_err(|e| config_error("--listen-address", &e))?;
    }
    let kubelet = sources
        .summary
        .as_ref()
        .map_or("off (--kubelet-summary=false)", |p| p.kubelet_display())
        .to_owned();
    for (remote, b) in config.remotes.iter().zip(&buffers) {
        info!(
            kubelet = %kubelet,
            scrape_targets = sources.targets.len(),
            remote = b.metrics.url(),
            remote_write = match (remote.protocol, remote.auto) {
                (_, true) => "auto (2.0 first)",
                (crate::remote_write::Protocol::V1, false) => "1.0",
                (crate::remote_write::Protocol::V2, false) => "2.0 (1.0 if the receiver does not take it)",
            },
            interval = ?config.poll.interval,
            buffer = %b.dir.as_ref().map_or_else(|| "memory".to_owned(), |d| d.display().to_string()),
            "kubelet-push started"
        );
    }
    let polling = Polling {
        interval: config.poll.interval,
        once: config.mode == Mode::Once,
        max_samples_per_send: config.max_samples_per_send,
    };
    let outlets: Outlets = Arc::new(std::sync::Mutex::new(outlets));
    let mut polls = Vec::new();
    if let Some(poller) = sources.summary {
        polls.push(tasks.spawn(crate::pipeline::run(
            poller,
            polling,
            outlets.clone(),
            shutdown.child_token(),
        )));
    }
    for target in sources.targets {
        info!(job = target.job(), target = target.display(), "scraping");
        polls.push(tasks.spawn(crate::scrape::run(
            target,
            sources.scraping.clone(),
            outlets.clone(),
            shutdown.child_token(),
        )));
    }
    tasks.close();

    // A polling or scrape task that panicked counts as a failed poll.
    let mut poll_failed = false;
    for polling in polls {
        poll_failed |= polling.await.unwrap_or(true);
    }
    drain.cancel();
    // The senders drain side by side; when the timeout runs out, what is left is reported
    // afterwards: kept on disk, or dropped from memory with a warning.
    let _ = tokio::time::timeout(delivery.shutdown_timeout, async {
        for sender in senders {
            let _ = sender.await;
        }
    })
    .await;
    root.cancel();
    tasks.wait().await;
    Ok(Stopped {
        poll_failed,
        buffers,
    })
}

/// Logs what each destination left (kept on disk, or dropped from memory) and the final
/// summary, and says how the run ended: `--once` fails on a failed poll or any sample not
/// delivered.
fn report(config: &Config, metrics: &Metrics, stopped: &Stopped) -> Outcome {
    let delivery = &config.delivery;
    let mut left_total = 0;
    let mut failed = config.mode == Mode::Once && stopped.poll_failed;
    for Buffered {
        queue,
        metrics: m,
        dir,
    } in &stopped.buffers
    {
        let left = queue.samples();
        left_total += left;
        if left > 0 {
            if dir.is_some() {
                info!(
                    url = m.url(),
                    samples = left,
                    requests = queue.len(),
                    "undelivered samples stay in the disk buffer for the next start"
                );
            } else {
                m.dropped(DropReason::Shutdown, left);
                warn!(url = m.url(), samples = left, timeout = ?delivery.shutdown_timeout, "shutdown timeout ran out; samples in the memory buffer are dropped");
            }
        }
        let rejected = m.dropped_total(DropReason::Rejected)
            + m.dropped_total(DropReason::TooOld)
            + m.dropped_total(DropReason::ReceiverRefused);
        failed |= config.mode == Mode::Once
            && (left > 0 || rejected > 0 || m.dropped_total(DropReason::BufferWrite) > 0);
    }
    let total = |count: &dyn Fn(&DestinationMetrics) -> u64| -> u64 {
        stopped.buffers.iter().map(|b| count(&b.metrics)).sum()
    };
    info!(
        polls_ok = metrics.polls(true),
        polls_failed = metrics.polls(false),
        samples_queued = total(&|m| m.samples_queued.get()),
        samples_sent = total(&|m| m.samples_sent.get()),
        samples_dropped = total(&|m| DropReason::ALL.iter().map(|r| m.dropped_total(*r)).sum()),
        samples_pending = left_total,
        "kubelet-push stopped"
    );
    if failed {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}

/// Buffers written before destinations had subdirectories sit in `--buffer-dir` itself.
/// Returns that directory when it holds such segments, so the first destination adopts them.
fn adopt_legacy_buffer(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let has_segments = std::fs::read_dir(dir).ok()?.any(|e| {
        e.ok()
            .and_then(|e| e.file_name().to_str().map(|n| n.ends_with(".seg")))
            .unwrap_or(false)
    });
    has_segments.then(|| dir.to_path_buf())
}

/// Moves the segments and read position an earlier release left in `old` (the buffer
/// directory itself) into `new` (the first destination's subdirectory), unless `new` already
/// holds a buffer: then they stay where they are, and a warning says so.
fn move_legacy_buffer(old: &std::path::Path, new: &std::path::Path) -> std::io::Result<()> {
    // Two agents on one --buffer-dir (a mistake the buffer's own lock reports) must not split
    // the old segments between them: the move happens under a lock of its own, and the agent
    // that does not get it leaves the files to the other.
    let guard = std::fs::File::create(old.join("move.lock"))?;
    match guard.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(std::io::Error::other(format!(
                "another kubelet-push is moving the buffer in {} into its subdirectory; each agent needs a buffer directory of its own",
                old.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    if new.join("read.pos").exists() || std::fs::read_dir(new).is_ok_and(|mut d| d.next().is_some())
    {
        warn!(old = %old.display(), new = %new.display(), "a buffer from an earlier release is in --buffer-dir, but the destination's own buffer exists already: the old one is left as it is");
        return Ok(());
    }
    std::fs::create_dir_all(new)?;
    let mut moved = 0;
    for entry in std::fs::read_dir(old)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name.to_str() else { continue };
        if n.ends_with(".seg") || n == "read.pos" {
            std::fs::rename(entry.path(), new.join(&name))?;
            moved += 1;
        }
    }
    info!(files = moved, from = %old.display(), to = %new.display(), "buffer of an earlier release moved into the first destination's subdirectory");
    drop(guard);
    // Nothing is left to move: the lock file has done its job.
    let _ = std::fs::remove_file(old.join("move.lock"));
    Ok(())
}

/// The buffer of one destination: on disk in `dir` (replaying what earlier runs left,
/// reporting what start-up recovery cut or dropped), or in memory when `dir` is `None`.
fn open_buffer(
    dir: Option<&std::path::Path>,
    delivery: &crate::config::Delivery,
    metrics: &DestinationMetrics,
) -> Result<Box<dyn Buffer>, ConfigError> {
    metrics
        .buffer_max_bytes
        .set(i64::try_from(delivery.buffer_max_bytes).unwrap_or(i64::MAX));
    let Some(dir) = dir else {
        return Ok(Box::new(MemoryBuffer::new(delivery.buffer_max_bytes)));
    };
    let (disk, recovery) = DiskBuffer::open(dir, delivery.buffer_max_bytes)
        .map_err(|e| config_error("--buffer-dir", &e))?;
    if recovery.batches > 0 || recovery.truncated_bytes > 0 {
        info!(
            url = metrics.url(),
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
            url = metrics.url(),
            samples = recovery.dropped.samples,
            requests = recovery.dropped.batches,
            "the disk buffer held more than --buffer-max-size; oldest requests dropped"
        );
    }
    Ok(Box::new(disk))
}
