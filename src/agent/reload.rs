//! What runs while the agent runs, and changing it without a restart: the destinations (each
//! with its buffer and sender task) and the scrape targets (a task each). A reload (SIGHUP,
//! `POST /-/reload`) re-reads `--config-file` with the same flags ([`Config::reread`]) and
//! applies the difference:
//!
//! - a destination is known by its buffer subdirectory ([`RemoteSettings::buffer_subdir`]:
//!   the URL without userinfo), so the same URL with other headers, credentials, timeout or
//!   version is *changed*, not new: its buffer (queue position, disk segments) stays, and
//!   only its sender is replaced, between two attempts: a request in flight is answered and
//!   acknowledged first (within `--remote-timeout`), so the new sender never repeats what the
//!   receiver holds; a request waiting for its next attempt is the new sender's first.
//! - unchanged destinations are not touched: same buffer, same sender, same queue position.
//! - a removed destination with a disk buffer stops after its request in flight, if any; its
//!   directory stays as it is, replayed when a later start (or reload) lists the URL again.
//!   One with a memory buffer
//!   drains for at most `--shutdown-timeout` beside the others; what is left then is counted
//!   as dropped (reason `shutdown`) with one warning.
//! - scrape targets of the file are started and stopped likewise (one identical to a running
//!   one keeps running); flags cannot change without a restart, so neither can what they set.
//!
//! A file that fails validation changes nothing. Not here: building a destination (`build`),
//! listening for the requests (`signal`, `telemetry`).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::build::{self, Buffered, Destination};
use crate::config::{Config, ConfigError, RemoteSettings};
use crate::pipeline::{lock_outlets, Outlet, Outlets};
use crate::scrape::{Scraping, Target, TargetSettings};
use crate::sender::{self, Ending, SenderSettings};
use crate::signal::{ReloadRequest, Reloaded};
use crate::telemetry::{DropReason, HealthDestinations, Metrics};

/// One destination while the agent runs.
pub(super) struct Running {
    /// Its settings as configured: what a reload compares.
    remote: RemoteSettings,
    pub buffered: Buffered,
    negotiated: crate::remote_write::Negotiated,
    /// Ends this sender alone: its `stop` is a child of the agent's root token, its `drain`
    /// of the agent-wide drain token.
    ending: Ending,
    sender: JoinHandle<()>,
}

/// One scrape target's task while the agent runs.
struct RunningTarget {
    /// Its settings as validated, printed: two targets are the same when these are equal
    /// (`Debug` shows paths, never secrets; a file's content is re-read anyway).
    key: String,
    /// Stops this target alone (a child of the caller's shutdown token).
    stop: CancellationToken,
    task: JoinHandle<bool>,
}

/// Everything a reload changes, and what it needs to start new tasks.
pub(super) struct Fleet {
    pub running: Vec<Running>,
    targets: Vec<RunningTarget>,
    pub outlets: Outlets,
    pub health: HealthDestinations,
    settings: SenderSettings,
    /// The agent-wide drain token: cancelled at shutdown, it drains every sender.
    drain: CancellationToken,
    root: CancellationToken,
    /// The caller's shutdown token: each target's stop token is a child of it.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    scraping: Scraping,
    kubelet: Arc<crate::kubelet::client::KubeletClient>,
    metrics: Arc<Metrics>,
}

/// What a [`Fleet`] starts from.
pub(super) struct Start {
    pub settings: SenderSettings,
    pub drain: CancellationToken,
    pub root: CancellationToken,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub scraping: Scraping,
    pub kubelet: Arc<crate::kubelet::client::KubeletClient>,
    pub metrics: Arc<Metrics>,
}

impl Fleet {
    /// Spawns a sender per destination (`remotes[i]` configures `destinations[i]`).
    pub fn start(start: Start, remotes: &[RemoteSettings], destinations: Vec<Destination>) -> Self {
        let mut fleet = Fleet {
            running: Vec::with_capacity(destinations.len()),
            targets: Vec::new(),
            outlets: Arc::new(std::sync::Mutex::new(Vec::new())),
            health: Arc::new(std::sync::Mutex::new(Vec::new())),
            settings: start.settings,
            drain: start.drain,
            root: start.root,
            shutdown: start.shutdown,
            tasks: start.tasks,
            scraping: start.scraping,
            kubelet: start.kubelet,
            metrics: start.metrics,
        };
        for (remote, d) in remotes.iter().zip(destinations) {
            let running = fleet.spawn_sender(remote.clone(), d);
            fleet.running.push(running);
        }
        fleet.publish(Vec::new());
        fleet
    }
}

impl Running {
    /// How the start line shows a destination: `URL (protocol; buffer where)`.
    pub fn describe(&self) -> String {
        let protocol = match (self.remote.protocol, self.remote.auto) {
            (_, true) => "auto: 2.0 first",
            (crate::remote_write::Protocol::V1, false) => "1.0",
            (crate::remote_write::Protocol::V2, false) => "2.0, 1.0 if refused",
        };
        let buffer = self
            .buffered
            .dir
            .as_ref()
            .map_or_else(|| "memory".to_owned(), |d| d.display().to_string());
        format!(
            "{} ({protocol}; buffer {buffer})",
            self.buffered.metrics.url()
        )
    }
}

impl Fleet {
    fn spawn_sender(&self, remote: RemoteSettings, d: Destination) -> Running {
        let ending = Ending::new(self.drain.child_token(), self.root.child_token());
        let sender = self.tasks.spawn(sender::run(
            d.client,
            d.buffered.queue.clone(),
            d.buffered.metrics.clone(),
            self.settings.clone(),
            d.negotiated.clone(),
            ending.clone(),
        ));
        Running {
            remote,
            buffered: d.buffered,
            negotiated: d.negotiated,
            ending,
            sender,
        }
    }

    /// Makes the polling tasks and `/readyz` see `running`, in its order: an outlet whose
    /// buffer is still running keeps its own state (episodes), with the protocol handle of
    /// the sender now on it. `old` are outlets no longer listed that may be reused.
    fn publish(&self, mut old: Vec<Outlet>) {
        let mut outlets = lock_outlets(&self.outlets);
        old.append(&mut outlets);
        for r in &self.running {
            let outlet = match old
                .iter()
                .position(|o| Arc::ptr_eq(&o.queue, &r.buffered.queue))
            {
                Some(i) => {
                    let mut o = old.swap_remove(i);
                    o.negotiated = r.negotiated.clone();
                    o
                }
                None => Outlet::new(
                    r.buffered.queue.clone(),
                    r.negotiated.clone(),
                    r.buffered.metrics.clone(),
                ),
            }
            // The destination's own filter and labels, as the file says now.
            .narrowed(r.remote.metric_filter.clone(), r.remote.labels.clone());
            outlets.push(outlet);
        }
        drop(outlets);
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self
            .running
            .iter()
            .map(|r| (r.buffered.queue.clone(), r.buffered.metrics.clone()))
            .collect();
    }

    /// Starts a task for each of `targets`, beside those running.
    pub fn start_targets(&mut self, targets: Vec<Target>) {
        for target in targets {
            info!(job = target.job(), target = target.display(), "scraping");
            let key = format!("{:?}", target.settings());
            let stop = self.shutdown.child_token();
            let task = self.tasks.spawn(crate::scrape::run(
                target,
                self.scraping.clone(),
                self.outlets.clone(),
                stop.clone(),
            ));
            self.targets.push(RunningTarget { key, stop, task });
        }
    }

    /// Waits for every scrape task still listed (they end on the caller's shutdown, or
    /// after one scrape for `--once`); true when one failed (or panicked).
    pub async fn targets_failed(&mut self) -> bool {
        let mut failed = false;
        for t in self.targets.drain(..) {
            failed |= t.task.await.unwrap_or(true);
        }
        failed
    }

    /// Waits for every sender still listed, after the drain token was cancelled.
    pub async fn senders_ended(&mut self) {
        for r in &mut self.running {
            let _ = (&mut r.sender).await;
        }
    }

    /// Applies one reload request and answers it. `current` is the configuration running,
    /// replaced by the new one when it applies.
    pub async fn reload(&mut self, current: &mut Config, request: ReloadRequest) {
        let outcome = match &current.config_file {
            None => {
                info!(
                    source = request.source,
                    "reload: no --config-file was given; nothing to reload"
                );
                Reloaded::NothingToReload("no --config-file was given: nothing to reload".into())
            }
            Some(file) => {
                // Said first: a changed destination's request in flight is answered before
                // the reload ends (at most --remote-timeout).
                info!(source = request.source, file = %file.display(), "reloading the configuration file");
                match current.reread() {
                    Err(e) => self.refuse(request.source, &e),
                    Ok(next) => match self.apply(current, &next).await {
                        Err(e) => self.refuse(request.source, &e),
                        Ok(changes) => {
                            self.metrics.reloads.succeeded();
                            let what = changes.describe();
                            info!(source = request.source, changes = %what, "configuration reloaded");
                            *current = next;
                            Reloaded::Applied(format!("configuration reloaded: {what}"))
                        }
                    },
                }
            }
        };
        if let Some(answer) = request.answer {
            let _ = answer.send(outcome);
        }
    }

    fn refuse(&self, source: &'static str, e: &ConfigError) -> Reloaded {
        self.metrics.reloads.failed();
        error!(source, error = %e, "reload refused; the running configuration stays");
        Reloaded::Invalid(format!("reload refused: {e}"))
    }

    /// Applies `next` over `current`. Everything that can fail (clients, buffers) is built
    /// before anything running is touched, so an error leaves the agent as it was.
    async fn apply(&mut self, current: &Config, next: &Config) -> Result<Changes, ConfigError> {
        let mut changes = Changes::default();
        // The new list, in the file's order: kept (index into running) or to build.
        enum Plan {
            Keep(usize),
            Change(usize, crate::remote_write::RemoteWriteClient),
            Add(Destination),
        }
        let mut plans = Vec::with_capacity(next.remotes.len());
        let mut taken = vec![false; self.running.len()];
        for remote in &next.remotes {
            let key = remote.buffer_subdir();
            let found = self
                .running
                .iter()
                .position(|r| r.remote.buffer_subdir() == key);
            plans.push(match found {
                Some(i) => {
                    taken[i] = true;
                    if same_settings(&self.running[i].remote, remote) {
                        Plan::Keep(i)
                    } else {
                        Plan::Change(i, build::client(remote)?)
                    }
                }
                None => Plan::Add(build::destination(
                    build::client(remote)?,
                    remote,
                    &next.delivery,
                    &self.metrics,
                )?),
            });
        }
        let next_targets = next.running_targets();
        let new_targets = diff_targets(&self.targets, &next_targets);
        let targets = new_targets
            .added
            .iter()
            .map(|t| Target::new((*t).clone(), &self.kubelet, &self.scraping))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build::config_error("--config-file", &e))?;

        // Nothing can fail from here on.
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        for (i, was) in taken.iter().enumerate() {
            if !was {
                if let Some(r) = old[i].take() {
                    changes.removed.push(r.buffered.metrics.url().to_owned());
                    self.retire(r, &current.delivery).await;
                }
            }
        }
        for (plan, remote) in plans.into_iter().zip(&next.remotes) {
            let running = match plan {
                Plan::Keep(i) => old[i].take(),
                Plan::Change(i, client) => match old[i].take() {
                    Some(mut r) => {
                        changes.changed.push(r.buffered.metrics.url().to_owned());
                        // The new sender goes on where the old one ended.
                        self.end_between_attempts(&r.ending, &mut r.sender).await;
                        let d = Destination {
                            client,
                            buffered: r.buffered,
                            negotiated: build::negotiated(remote),
                        };
                        Some(self.spawn_sender(remote.clone(), d))
                    }
                    None => None,
                },
                Plan::Add(d) => {
                    changes.added.push(d.buffered.metrics.url().to_owned());
                    Some(self.spawn_sender(remote.clone(), d))
                }
            };
            if let Some(r) = running {
                self.running.push(r);
            }
        }
        self.publish(Vec::new());
        for i in new_targets.removed.into_iter().rev() {
            let t = self.targets.remove(i);
            t.stop.cancel();
            changes.targets_removed += 1;
        }
        changes.targets_added = targets.len();
        self.start_targets(targets);
        Ok(changes)
    }

    /// Ends a sender before its next attempt and waits for it: one in flight is answered and
    /// acknowledged first (within `--remote-timeout`), so that nothing the receiver holds is
    /// sent again, by the sender that takes over or after a later start. If the agent is shut
    /// down meanwhile, the sender stops at once.
    async fn end_between_attempts(&self, ending: &Ending, sender: &mut JoinHandle<()>) {
        ending.retire.cancel();
        tokio::select! {
            _ = &mut *sender => return,
            () = self.shutdown.cancelled() => {}
        }
        ending.stop.cancel();
        let _ = sender.await;
    }

    /// Stops a destination no longer listed. A disk buffer stops at once and is closed
    /// before this returns (its directory lock released, for a later start or reload); a
    /// memory buffer drains for at most `--shutdown-timeout` in a task of its own.
    async fn retire(&self, r: Running, delivery: &crate::config::Delivery) {
        let Running {
            buffered,
            ending,
            mut sender,
            ..
        } = r;
        if let Some(dir) = &buffered.dir {
            self.end_between_attempts(&ending, &mut sender).await;
            info!(
                url = buffered.metrics.url(),
                dir = %dir.display(),
                samples = buffered.queue.samples(),
                "destination removed; its disk buffer stays for a later start"
            );
            return;
        }
        let timeout = delivery.shutdown_timeout;
        ending.drain.cancel();
        self.tasks.spawn(async move {
            if tokio::time::timeout(timeout, &mut sender).await.is_err() {
                ending.stop.cancel();
                let _ = sender.await;
            }
            let left = buffered.queue.samples();
            if left > 0 {
                buffered.metrics.dropped(DropReason::Shutdown, left);
                warn!(url = buffered.metrics.url(), samples = left, timeout = ?timeout, "destination removed; --shutdown-timeout ran out and samples in its memory buffer are dropped");
            }
        });
    }
}

/// Whether two settings of one URL are the same destination as far as a sender goes: the
/// files' contents are not compared (they are re-read live), their paths are.
fn same_settings(a: &RemoteSettings, b: &RemoteSettings) -> bool {
    a.url == b.url
        && a.timeout == b.timeout
        && a.headers == b.headers
        && a.protocol == b.protocol
        && a.auto == b.auto
        && a.retry_auth_errors == b.retry_auth_errors
        && format!("{:?}", a.access) == format!("{:?}", b.access)
}

/// Scrape targets to start and stop so that `running` becomes `next`.
struct TargetDiff<'a> {
    added: Vec<&'a TargetSettings>,
    /// Indexes into `running`, ascending.
    removed: Vec<usize>,
}

fn diff_targets<'a>(running: &[RunningTarget], next: &'a [TargetSettings]) -> TargetDiff<'a> {
    let mut kept = vec![false; running.len()];
    let mut added = Vec::new();
    for t in next {
        let key = format!("{t:?}");
        match (0..running.len()).find(|&i| !kept[i] && running[i].key == key) {
            Some(i) => kept[i] = true,
            None => added.push(t),
        }
    }
    let removed = (0..running.len()).filter(|&i| !kept[i]).collect();
    TargetDiff { added, removed }
}

/// What a reload changed, for its log line and answer.
#[derive(Debug, Default)]
struct Changes {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    targets_added: usize,
    targets_removed: usize,
}

impl Changes {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (what, urls) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !urls.is_empty() {
                parts.push(format!("destinations {what}: {}", urls.join(", ")));
            }
        }
        if self.targets_added > 0 || self.targets_removed > 0 {
            parts.push(format!(
                "scrape targets: {} started, {} stopped",
                self.targets_added, self.targets_removed
            ));
        }
        if parts.is_empty() {
            "nothing changed".to_owned()
        } else {
            parts.join("; ")
        }
    }
}
