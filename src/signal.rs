//! Turning the platform's "please stop" into one cancellation: the first stop request cancels
//! the root token (stop polling, drain for `--shutdown-timeout`, keep the rest on disk), a
//! second one exits at once. It owns no shutdown logic beyond that; the drain is `agent.rs`'s.
//!
//! What a Kubernetes stop delivers, as read in the sources (containerd `internal/cri/server/
//! container_stop.go`; hcsshim `cmd/containerd-shim-runhcs-v1/exec_hcs.go`,
//! `internal/signals/signal.go`, `internal/jobcontainers/{process,jobcontainer}.go`):
//! - The kubelet calls CRI `StopContainer` with the pod's grace period; containerd sends the
//!   image's stop signal (default SIGTERM), waits for the grace period, then sends SIGKILL.
//! - On Windows the shim turns SIGTERM into `CTRL_SHUTDOWN_EVENT` and SIGKILL into a terminate
//!   (exit code 1, no handler runs). A HostProcess container's process gets the event through
//!   a thread the shim starts in it at kernel32's `CtrlRoutine`, since
//!   `GenerateConsoleCtrlEvent` cannot send it; a process-isolated container gets it from
//!   HCS. Only the container's first process is signalled, so the image runs the `.exe`
//!   itself. Once that first process has exited, the shim sends CTRL_SHUTDOWN to whatever is
//!   left in the job and ends the job 5 s later (`JobContainer.Shutdown`).
//! - Where the host can bind files into the container (containerd 1.7+ on Windows Server
//!   2022 and later), hcsshim itself wraps the command in `cmd /c` (`jobcontainer.go`, "a
//!   process that will always exist"). Then cmd.exe is the first process: it takes the event
//!   and exits, and the agent gets CTRL_SHUTDOWN from the clean-up above, with 5 s before the
//!   terminate, whatever the grace period. The Windows DaemonSet sets `--shutdown-timeout=4s`
//!   for that reason. On Windows Server 2019 the agent is the first process and the grace
//!   period is its limit, as described next.
//! - No console host watches that thread, so Windows does not end the process when a
//!   handler returns or after a timeout: the limit is the grace period. `--shutdown-timeout`
//!   must stay below `terminationGracePeriodSeconds`; past it the terminate ends the drain,
//!   and what the disk buffer holds is sent after the restart (at least once; a terminate
//!   loses at most the poll in progress). With the memory buffer it is lost.
//! - A real console differs: closing its window, logging off or shutting down ends the
//!   process about 5 s after the event whatever the handler does, so a longer
//!   `--shutdown-timeout` is cut short there.
//!
//! tokio's handler never returns for close, logoff and shutdown (a console host would end the
//! process as soon as it did), so our drain runs to its end. While it waits, kernel32's
//! dispatcher keeps its handler lock, so a later event is not delivered: after one of those
//! three, only a terminate stops the process early (measured under Wine 8.0; ReactOS's
//! kernel32 holds the lock the same way).

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` on the first stop request, and exits at once on a second one, for an
/// operator whose patience ran out.
pub fn cancel_on_shutdown(token: CancellationToken) {
    // Listen before returning, and for the whole run: on Windows an event that finds no
    // listener goes to the default handler, which ends the process without a drain.
    let mut requests = match StopRequests::listen() {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot listen for shutdown signals; stop with SIGKILL");
            return;
        }
    };
    tokio::spawn(async move {
        let Some(signal) = requests.next().await else {
            return;
        };
        info!(signal, "shutting down (signal received)");
        token.cancel();
        if let Some(signal) = requests.next().await {
            info!(signal, "second signal: exiting now");
            std::process::exit(130);
        }
    });
}

#[cfg(unix)]
struct StopRequests {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl StopRequests {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopRequests {
            // How Kubernetes (the container runtime) asks a pod to stop.
            term: signal(SignalKind::terminate())?,
            // Ctrl-C in a terminal.
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next request's name; `None` once no more can arrive.
    async fn next(&mut self) -> Option<&'static str> {
        tokio::select! {
            Some(()) = self.term.recv() => Some("SIGTERM"),
            Some(()) = self.int.recv() => Some("SIGINT"),
            else => None,
        }
    }
}

#[cfg(windows)]
struct StopRequests {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    logoff: tokio::signal::windows::CtrlLogoff,
    shutdown: tokio::signal::windows::CtrlShutdown,
}

#[cfg(windows)]
impl StopRequests {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::windows;
        Ok(StopRequests {
            // Ctrl-C in a console, or `GenerateConsoleCtrlEvent`; also what Wine makes of
            // SIGINT.
            c: windows::ctrl_c()?,
            // Ctrl-Break in a console, or `GenerateConsoleCtrlEvent` to a process group.
            brk: windows::ctrl_break()?,
            // The console window closing (or End task); the system ends the process ~5 s
            // later.
            close: windows::ctrl_close()?,
            // A user logging off; only services and HostProcess containers outlive it.
            logoff: windows::ctrl_logoff()?,
            // What containerd sends for SIGTERM (pod stop), and Windows at shutdown.
            shutdown: windows::ctrl_shutdown()?,
        })
    }

    /// The next request's name; `None` once no more can arrive.
    async fn next(&mut self) -> Option<&'static str> {
        tokio::select! {
            Some(()) = self.c.recv() => Some("CTRL_C_EVENT"),
            Some(()) = self.brk.recv() => Some("CTRL_BREAK_EVENT"),
            Some(()) = self.close.recv() => Some("CTRL_CLOSE_EVENT"),
            Some(()) = self.logoff.recv() => Some("CTRL_LOGOFF_EVENT"),
            Some(()) = self.shutdown.recv() => Some("CTRL_SHUTDOWN_EVENT"),
            else => None,
        }
    }
}

/// A request to re-read `--config-file` and apply it: from SIGHUP, or from `POST /-/reload`
/// (`--enable-reload`), which waits for the answer.
#[derive(Debug)]
pub struct ReloadRequest {
    /// What asked, for the log line: `SIGHUP` or `POST /-/reload`.
    pub source: &'static str,
    /// Where the outcome goes; `None` when nobody waits (a signal).
    pub answer: Option<tokio::sync::oneshot::Sender<Reloaded>>,
}

/// How a reload ended, as the one log line and the HTTP answer say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// Applied (or nothing had changed): what changed.
    Applied(String),
    /// The file (or a flag's validation with it) failed: the running configuration stays.
    Invalid(String),
    /// There is nothing to re-read: no `--config-file`.
    NothingToReload(String),
}

/// How many reload requests may wait while one is being applied; more are refused (a burst
/// of SIGHUPs needs one reload after the last edit, not one each).
pub const RELOAD_QUEUE: usize = 4;

/// The channel reload requests travel in: SIGHUP's listener and `POST /-/reload` send on
/// `requests`; the agent takes them from `incoming` while it runs.
pub struct Reloads {
    pub requests: tokio::sync::mpsc::Sender<ReloadRequest>,
    pub incoming: tokio::sync::mpsc::Receiver<ReloadRequest>,
}

pub fn reload_channel() -> Reloads {
    let (requests, incoming) = tokio::sync::mpsc::channel(RELOAD_QUEUE);
    Reloads { requests, incoming }
}

/// Listens for SIGHUP, for the whole run, and turns each into a [`ReloadRequest`] on
/// `requests`. SIGHUP's default action ends the process (exit 129, no drain): listening
/// replaces it, so a SIGHUP never stops the agent, in any mode. When no agent takes requests
/// (`--once`, `--dry-run`, the demo) or a reload is already waiting, one line says so.
/// Windows has no SIGHUP: there only `POST /-/reload` reloads.
#[cfg(unix)]
pub fn reload_on_hangup(requests: tokio::sync::mpsc::Sender<ReloadRequest>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; a SIGHUP would end the process");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let request = ReloadRequest {
                source: "SIGHUP",
                answer: None,
            };
            match requests.try_send(request) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    info!("SIGHUP: reloads are waiting already; this one is left out");
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    info!("SIGHUP: nothing to reload (not running as an agent); ignored");
                }
            }
        }
    });
}

/// Windows has no SIGHUP: `POST /-/reload` (`--enable-reload`) is the way to reload.
#[cfg(not(unix))]
pub fn reload_on_hangup(requests: tokio::sync::mpsc::Sender<ReloadRequest>) {
    drop(requests);
}
