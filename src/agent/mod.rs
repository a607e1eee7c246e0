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

use crate::config::{Config, ConfigError, Mode};
use crate::kubelet::client::ClientError;
use crate::pipeline::{Poller, Polling};
use crate::scrape::{Endpoint, Scraping, Target};
use crate::sender::SenderSettings;
use crate::signal::Reloads;
use crate::telemetry::{DestinationMetrics, DropReason, Metrics};

mod build;
mod reload;

use build::{build, config_error, Buffered, Destination};
use reload::{Fleet, Start};

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

/// Runs the agent until `shutdown` is cancelled (or after one poll for `--once` and
/// `--dry-run`). Dry-run output goes to `out`. Nothing reloads it: see [`run_reloadable`].
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Outcome, RunError> {
    let reloads = crate::signal::reload_channel();
    run_reloadable(config, shutdown, metrics, out, reloads).await
}

/// [`run`], reloading `--config-file` on each request from `reloads` (SIGHUP: see
/// [`crate::signal::reload_on_hangup`]) and, with `--enable-reload`, on `POST /-/reload`.
/// Only an agent that runs until stopped takes requests: with `--once` and `--dry-run`,
/// `reloads` is dropped at once.
pub async fn run_reloadable(
    config: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    out: &mut (dyn std::io::Write + Send),
    reloads: Reloads,
) -> Result<Outcome, RunError> {
    let reloads = (config.mode == Mode::Run).then_some(reloads);
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
    let targets = config
        .running_targets()
        .into_iter()
        .map(|t| Target::new(t, poller.kubelet_client(), &scraping))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error("--scrape", &e))?;
    let kubelet = poller.kubelet_client().clone();
    let summary = config.poll.kubelet_summary.then_some(poller);
    if config.mode == Mode::DryRun {
        return Ok(dry_run(summary, targets, &scraping, out).await);
    }
    let destinations = build(&config, &metrics)?;
    let sources = Sources {
        kubelet,
        summary,
        targets,
        scraping,
    };
    let stopped = run_tasks(&config, &metrics, sources, destinations, shutdown, reloads).await?;
    Ok(report(&config, &metrics, &stopped))
}

/// What the agent polls and scrapes: the kubelet's summary (unless `--kubelet-summary=false`)
/// and the scrape targets.
struct Sources {
    summary: Option<Poller>,
    /// The kubelet's client, for scrape targets a reload adds.
    kubelet: Arc<crate::kubelet::client::KubeletClient>,
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

/// What `run_tasks` hands to the report once every task ended.
struct Stopped {
    /// The polling task said a poll failed (or it panicked).
    poll_failed: bool,
    buffers: Vec<Buffered>,
}

/// Spawns a sender per destination, the endpoints and the polling task, waits for the polling
/// task to end (`shutdown`, or one poll for `--once`) while applying each reload request,
/// then stops the rest in order: the senders drain for at most `--shutdown-timeout`, the root
/// token stops what is left, and this returns once every task ended.
async fn run_tasks(
    config: &Config,
    metrics: &Arc<Metrics>,
    sources: Sources,
    destinations: Vec<Destination>,
    shutdown: CancellationToken,
    reloads: Option<Reloads>,
) -> Result<Stopped, RunError> {
    let delivery = &config.delivery;
    // Cancelled when every task must stop at once; each task holds a child of it.
    let root = CancellationToken::new();
    // Tells the senders no more requests will come: deliver what is buffered, then return.
    let drain = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut fleet = Fleet::start(
        Start {
            settings: SenderSettings {
                min_backoff: delivery.min_backoff,
                max_backoff: delivery.max_backoff,
                max_sample_age: delivery.max_sample_age,
                max_catch_up_bytes: delivery.max_catch_up_bytes,
                interval: config.poll.interval,
            },
            drain: drain.clone(),
            root: root.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            scraping: sources.scraping.clone(),
            kubelet: sources.kubelet.clone(),
            metrics: metrics.clone(),
        },
        &config.remotes,
        destinations,
    );
    // `POST /-/reload` hands its requests to the same channel as SIGHUP.
    let (reload_tx, mut incoming) = match reloads {
        Some(r) => (Some(r.requests), Some(r.incoming)),
        None => (None, None),
    };
    if let Some(addr) = config.listen_address {
        let health = crate::telemetry::Health {
            metrics: metrics.clone(),
            destinations: fleet.health.clone(),
            interval: config.poll.interval,
            max_backoff: delivery.max_backoff,
            summary: sources.summary.is_some(),
        };
        let endpoint = reload_tx.filter(|_| config.enable_reload);
        crate::telemetry::serve(addr, health, endpoint, root.child_token(), &tasks)
            .await
            .map_err(|e| config_error("--listen-address", &e))?;
    }
    let kubelet = sources
        .summary
        .as_ref()
        .map_or("off (--kubelet-summary=false)", |p| p.kubelet_display())
        .to_owned();
    // One line for the whole agent; each destination as `URL (protocol, buffer)`.
    let remotes = fleet
        .running
        .iter()
        .map(|r| r.describe())
        .collect::<Vec<_>>();
    info!(
        kubelet = %kubelet,
        scrape_targets = sources.targets.len(),
        destinations = remotes.len(),
        remotes = %remotes.join(", "),
        interval = ?config.poll.interval,
        "kubelet-push started"
    );
    let polling = Polling {
        interval: config.poll.interval,
        once: config.mode == Mode::Once,
        max_samples_per_send: config.max_samples_per_send,
    };
    let summary = sources.summary.map(|poller| {
        tasks.spawn(crate::pipeline::run(
            poller,
            polling,
            fleet.outlets.clone(),
            shutdown.child_token(),
        ))
    });
    fleet.start_targets(sources.targets);
    tasks.close();

    // Until the caller stops the agent, reload on request. The reloads run here, one at a
    // time, between the polls and scrapes running in their own tasks.
    if let Some(incoming) = &mut incoming {
        let mut current = config.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                request = incoming.recv() => match request {
                    Some(request) => fleet.reload(&mut current, request).await,
                    None => break,
                },
            }
        }
    }
    drop(incoming);

    // A polling or scrape task that panicked counts as a failed poll.
    let mut poll_failed = match summary {
        Some(task) => task.await.unwrap_or(true),
        None => false,
    };
    poll_failed |= fleet.targets_failed().await;
    drain.cancel();
    // The senders drain side by side; when the timeout runs out, what is left is reported
    // afterwards: kept on disk, or dropped from memory with a warning.
    let _ = tokio::time::timeout(delivery.shutdown_timeout, fleet.senders_ended()).await;
    root.cancel();
    tasks.wait().await;
    Ok(Stopped {
        poll_failed,
        buffers: fleet.running.into_iter().map(|r| r.buffered).collect(),
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
