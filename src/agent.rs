//! The running agent: builds the pieces from the configuration and wires them into tasks, and
//! stops them in order. What each task does lives elsewhere: polling in `pipeline`, delivery in
//! `sender`, the endpoints in `telemetry`.
//!
//! ```text
//! pipeline::run ─► Queue (memory or disk) ─► sender::run ─► receiver
//!   tick, poll,      bounded, oldest          retry, backoff,
//!   encode           dropped when full        one in flight
//! ```
//!
//! Shutdown, in pipeline order: the caller's `shutdown` token stops the polling task (a poll in
//! progress is abandoned); then the sender drains the buffer for at most `--shutdown-timeout`;
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
use crate::pipeline::{Poller, Polling};
use crate::remote_write::RemoteWriteClient;
use crate::sender::{self, SenderSettings};
use crate::telemetry::{DropReason, Metrics};

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
    let mut poller = Poller::new(&config, metrics.clone()).map_err(|e| {
        let flag = match e {
            ClientError::Build(_) => "--kubelet-url",
            _ => "--kubelet-ca-file",
        };
        config_error(flag, &e)
    })?;
    if config.mode == Mode::DryRun {
        let poll = poller.poll().await;
        let text = poller.render_text(&poll);
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
    let client = RemoteWriteClient::new(
        remote.url.clone(),
        remote.timeout,
        &remote.headers,
        &remote.access,
    )
    .map_err(|e| config_error("--remote-url", &e))?;
    let delivery = &config.delivery;
    let buffer = open_buffer(delivery, &metrics)?;
    let queue = Arc::new(Queue::new(buffer));
    metrics.buffer_levels(queue.levels());

    // Cancelled when every task must stop at once; each task holds a child of it.
    let root = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some(addr) = config.listen_address {
        let health = crate::telemetry::Health {
            metrics: metrics.clone(),
            queue: queue.clone(),
            interval: config.interval,
            max_backoff: delivery.max_backoff,
        };
        crate::telemetry::serve(addr, health, root.child_token(), &tasks)
            .await
            .map_err(|e| config_error("--listen-address", &e))?;
    }
    info!(
        kubelet = %poller.kubelet_display(),
        remote = client.display_url(),
        remote_write = match config.remote_protocol {
            crate::remote_write::Protocol::V1 => "1.0",
            crate::remote_write::Protocol::V2 => "2.0 (1.0 if the receiver does not take it)",
        },
        interval = ?config.interval,
        buffer = if delivery.buffer_dir.is_some() { "disk" } else { "memory" },
        "kubelet-push started"
    );
    let settings = SenderSettings {
        min_backoff: delivery.min_backoff,
        max_backoff: delivery.max_backoff,
        max_sample_age: delivery.max_sample_age,
    };
    // Tells the sender no more requests will come: deliver what is buffered, then return.
    let drain = CancellationToken::new();
    // One handle for the poller and the sender: a fallback the sender makes is what the
    // poller encodes next.
    let negotiated = poller.negotiated();
    let sender = tasks.spawn(sender::run(
        client,
        queue.clone(),
        metrics.clone(),
        settings,
        negotiated,
        drain.clone(),
        root.child_token(),
    ));
    let polling = Polling {
        interval: config.interval,
        mode: config.mode,
        max_samples_per_send: config.max_samples_per_send,
    };
    let polls = tasks.spawn(crate::pipeline::run(
        poller,
        polling,
        queue.clone(),
        metrics.clone(),
        shutdown.child_token(),
    ));
    tasks.close();

    // A polling task that panicked counts as a failed poll.
    let poll_failed = polls.await.unwrap_or(true);
    drain.cancel();
    // When the timeout runs out, what is left is reported below: kept on disk, or dropped
    // from memory with a warning.
    let _ = tokio::time::timeout(delivery.shutdown_timeout, sender).await;
    root.cancel();
    tasks.wait().await;

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
    let rejected = metrics.dropped_total(DropReason::Rejected)
        + metrics.dropped_total(DropReason::TooOld)
        + metrics.dropped_total(DropReason::ReceiverRefused);
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
