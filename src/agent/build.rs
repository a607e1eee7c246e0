//! Building destinations from the configuration: each one's client, buffer (memory, or disk
//! in `--buffer-dir/<subdir>`, replaying what earlier runs left) and protocol handle. At
//! start-up for every destination (`build`), and on a reload for each added one
//! (`destination`). Spawns nothing: the tasks are `agent`'s and `reload`'s.

use std::sync::Arc;

use tracing::{info, warn};

use crate::buffer::disk::DiskBuffer;
use crate::buffer::memory::MemoryBuffer;
use crate::buffer::{Buffer, Queue};
use crate::config::{Config, ConfigError, Delivery, RemoteSettings};
use crate::http::error_chain;
use crate::remote_write::{Negotiated, RemoteWriteClient};
use crate::telemetry::{DestinationMetrics, DropReason, Metrics};

pub(super) fn config_error(
    flag: &'static str,
    e: &(dyn std::error::Error + 'static),
) -> ConfigError {
    ConfigError {
        flag,
        reason: error_chain(e),
    }
}

/// One destination as `build` leaves it: what its sender task needs, and what the report
/// reads after the tasks ended.
pub(super) struct Destination {
    pub client: RemoteWriteClient,
    /// Shared by the sender and the report (what is left in it at the end).
    pub buffered: Buffered,
    /// One handle for the polling task and this sender: a fallback the sender makes is
    /// what the next poll is encoded in for this destination.
    pub negotiated: Negotiated,
}

/// A destination's buffer after the tasks are spawned: the health endpoint and the final
/// report read it.
pub(super) struct Buffered {
    pub queue: Arc<Queue>,
    pub metrics: Arc<DestinationMetrics>,
    /// `None` for a memory buffer: what is left in it at the end is dropped, not kept.
    pub dir: Option<std::path::PathBuf>,
}

/// Builds each destination (client, buffer, queue, protocol handle) in `--remote-url` order,
/// moving a buffer an earlier release left in `--buffer-dir` to the first one. Spawns nothing;
/// a bad flag fails here.
pub(super) fn build(config: &Config, metrics: &Metrics) -> Result<Vec<Destination>, ConfigError> {
    let delivery = &config.delivery;
    let legacy = delivery.buffer_dir.as_deref().and_then(adopt_legacy_buffer);
    let mut destinations = Vec::with_capacity(config.remotes.len());
    for (i, remote) in config.remotes.iter().enumerate() {
        let client = client(remote)?;
        if let (0, Some(old), Some(root)) = (i, &legacy, &delivery.buffer_dir) {
            move_legacy_buffer(old, &root.join(remote.buffer_subdir()))
                .map_err(|e| config_error("--buffer-dir", &e))?;
        }
        destinations.push(destination(client, remote, delivery, metrics)?);
    }
    Ok(destinations)
}

/// The client of `remote`, with its own headers, access settings and timeout.
pub(super) fn client(remote: &RemoteSettings) -> Result<RemoteWriteClient, ConfigError> {
    Ok(RemoteWriteClient::new(
        remote.url.clone(),
        remote.timeout,
        &remote.headers,
        &remote.access,
    )
    .map_err(|e| config_error("--remote-url", &e))?
    .retry_auth_errors(remote.retry_auth_errors))
}

/// One destination around `client`: its buffer opened (a disk buffer in its subdirectory of
/// `--buffer-dir`, replaying what it holds), its protocol handle as `remote` says.
pub(super) fn destination(
    client: RemoteWriteClient,
    remote: &RemoteSettings,
    delivery: &Delivery,
    metrics: &Metrics,
) -> Result<Destination, ConfigError> {
    let dest_metrics = metrics.destination(client.display_url());
    let dir = delivery
        .buffer_dir
        .as_ref()
        .map(|root| root.join(remote.buffer_subdir()));
    let max_bytes = remote.buffer_max_bytes.unwrap_or(delivery.buffer_max_bytes);
    let buffer = open_buffer(dir.as_deref(), max_bytes, &dest_metrics)?;
    let queue = Arc::new(Queue::new(buffer));
    dest_metrics.buffer_levels(queue.levels());
    Ok(Destination {
        client,
        buffered: Buffered {
            queue,
            metrics: dest_metrics,
            dir,
        },
        negotiated: negotiated(remote),
    })
}

/// A fresh protocol handle for `remote`: auto (2.0 first) or the version it names.
pub(super) fn negotiated(remote: &RemoteSettings) -> Negotiated {
    if remote.auto {
        Negotiated::auto()
    } else {
        Negotiated::new(remote.protocol)
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
    max_bytes: u64,
    metrics: &DestinationMetrics,
) -> Result<Box<dyn Buffer>, ConfigError> {
    metrics
        .buffer_max_bytes
        .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
    let Some(dir) = dir else {
        return Ok(Box::new(MemoryBuffer::new(max_bytes)));
    };
    let (disk, recovery) =
        DiskBuffer::open(dir, max_bytes).map_err(|e| config_error("--buffer-dir", &e))?;
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
