//! Turning the platform's "please stop" into one cancellation.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Cancels `token` on the first stop request, and exits at once on a second one, for an
/// operator whose patience ran out.
pub fn cancel_on_shutdown(token: CancellationToken) {
    tokio::spawn(async move {
        if let Err(e) = wait().await {
            tracing::warn!(error = %e, "cannot listen for shutdown signals; stop with SIGKILL");
            return;
        }
        info!("shutting down (signal received)");
        token.cancel();
        if wait().await.is_ok() {
            info!("second signal: exiting now");
            std::process::exit(130);
        }
    });
}

#[cfg(unix)]
async fn wait() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // SIGTERM: how Kubernetes asks a pod to stop. SIGINT: Ctrl-C in a terminal.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(windows)]
async fn wait() -> std::io::Result<()> {
    use tokio::signal::windows;
    // Ctrl-C and Ctrl-Break in a console; close when the console window goes away; shutdown
    // when Windows (or the container runtime stopping a Windows container) asks services to
    // stop.
    let mut c = windows::ctrl_c()?;
    let mut brk = windows::ctrl_break()?;
    let mut close = windows::ctrl_close()?;
    let mut shutdown = windows::ctrl_shutdown()?;
    tokio::select! {
        _ = c.recv() => {}
        _ = brk.recv() => {}
        _ = close.recv() => {}
        _ = shutdown.recv() => {}
    }
    Ok(())
}
