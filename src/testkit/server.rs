//! A small HTTP/1.1 server on `127.0.0.1` for the fakes (`testkit`): binds an ephemeral port, serves
//! an axum router, and stops when dropped. Nothing here knows what it serves.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct LocalServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl LocalServer {
    /// Binds `127.0.0.1:0` and serves `app`; `what` names the server in the log line written
    /// if serving fails.
    pub async fn start(app: axum::Router, what: &'static str) -> std::io::Result<LocalServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(app, what, listener)
    }

    /// Like [`LocalServer::start`] on a listener bound already: a receiver coming back on a
    /// port its caller kept reserved while it was down, so nothing else could take it.
    pub fn start_on(
        app: axum::Router,
        what: &'static str,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<LocalServer> {
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let shutdown = cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%err, server = what, "local server stopped");
            }
        });
        Ok(LocalServer { addr, cancel, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // Cancelling lets open connections finish; aborting releases the listener at once, even
        // when a handler is stuck in a long delay.
        self.cancel.cancel();
        self.task.abort();
    }
}
