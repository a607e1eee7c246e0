//! Fetches one summary: `GET <kubelet-url>/stats/summary` over HTTP(S), or a captured file for
//! `file://` URLs; and the pod list, `GET <kubelet-url>/pods`. Returns the raw bytes; parsing
//! is the caller's (the bytes must outlive the borrowed documents).
//!
//! Every failure kind has its own error, worded for an operator reading one log line: the
//! kubelet refused the connection, timed out, answered a status, sent too much, or the token
//! file is unreadable. The bearer token is re-read on every request because projected
//! service-account tokens rotate about hourly.
//!
//! Everything read is bounded in size and time, whatever is at the other end: a body (summary
//! or pod list) up to [`MAX_SUMMARY_BYTES`], an error answer's first
//! [`crate::http::ERROR_BODY_PREFIX`] bytes, and files (a `file://` summary, the token) within
//! `--kubelet-timeout`. A file is read on a thread of its own rather than tokio's blocking
//! pool: opening a FIFO with no writer blocks in `open(2)` for ever, and the runtime waits
//! for its blocking-pool threads when it is dropped at exit, so one such read would keep a
//! stopped agent alive. A detached thread is abandoned instead (the process exits without
//! it), and at most [`MAX_STUCK_READS`] of them may be stuck at once, so a FIFO polled every
//! interval does not pile up threads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use crate::http::{error_message, read_body, redact, root_cause, BodyError};

/// Largest summary (or pod list) accepted, over HTTP or from a file. A 110-pod node sends
/// about 2 MiB; this leaves ample room while keeping a misbehaving endpoint from exhausting
/// the node's memory.
pub const MAX_SUMMARY_BYTES: usize = 64 << 20;

/// Largest token file read: a service-account token is about 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

/// File reads that may be stuck (a FIFO nobody writes) before the next one is refused
/// instead of started: the summary's and the pod list's token reads run side by side, so
/// more than one is normal; an interval's worth of stuck threads is not.
pub const MAX_STUCK_READS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("kubelet did not answer within {0:?} (--kubelet-timeout)")]
    Timeout(Duration),
    #[error("cannot connect to the kubelet at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("kubelet request failed")]
    Request(#[source] reqwest::Error),
    #[error("kubelet answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the kubelet's answer is larger than the limit of {} MiB", MAX_SUMMARY_BYTES >> 20)]
    TooLarge,
    #[error("captured summary {path} is larger than the limit of {} MiB", MAX_SUMMARY_BYTES >> 20)]
    FileTooLarge { path: PathBuf },
    /// A file that does not end (a FIFO without a writer, a device): the read is abandoned.
    #[error("reading {path} did not finish within {timeout:?} (--kubelet-timeout); a FIFO nobody writes, or a device?")]
    FileTimeout { path: PathBuf, timeout: Duration },
    /// Earlier reads are still stuck; starting another would only add a stuck thread.
    #[error("not reading {path}: {MAX_STUCK_READS} earlier file reads are still stuck (a FIFO nobody writes?)")]
    FileBusy { path: PathBuf },
    #[error("the kubelet token file {path} is larger than {} KiB", MAX_TOKEN_BYTES >> 10)]
    TokenTooLarge { path: PathBuf },
    #[error("cannot read the kubelet token file {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read captured summary {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("summary is not valid JSON for the Summary API")]
    Parse(#[source] serde_json::Error),
}

/// Where the summary comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Base URL of the kubelet; `/stats/summary` is appended.
    Http(reqwest::Url),
    /// A captured summary document.
    File(PathBuf),
}

/// Settings for [`KubeletClient::new`], already validated by `config`.
#[derive(Debug, Clone)]
pub struct KubeletSettings {
    pub source: Source,
    pub timeout: Duration,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// `--kubelet-proxy-url`: the only way a kubelet request goes through a proxy.
    pub proxy: Option<crate::http::ProxyUrl>,
}

pub struct KubeletClient {
    settings: KubeletSettings,
    http: reqwest::Client,
    summary_url: Option<reqwest::Url>,
    /// File reads whose threads have not returned (see the module doc).
    reads_in_flight: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--kubelet-ca-file` cannot be used; `config` names the flag.
    #[error(transparent)]
    Ca(#[from] crate::http::CaError),
    #[error("cannot build the kubelet HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("{0}")]
    Proxy(String),
}

impl KubeletClient {
    pub fn new(settings: KubeletSettings) -> Result<Self, ClientError> {
        crate::http::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(crate::http::user_agent())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // The kubelet is normally local: a proxy from the environment (set for the
            // receiver) would only get in the way. `--kubelet-proxy-url` is asked for.
            .no_proxy()
            // A redirect must not carry the URL's query (which may hold a key) to another
            // host; reqwest drops `Authorization` itself when the host changes.
            .referer(false);
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_certs_only(crate::http::load_ca_bundle(path)?);
        }
        if settings.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(proxy) = &settings.proxy {
            builder = builder.proxy(proxy.for_client().map_err(ClientError::Proxy)?);
        }
        let http = builder.build().map_err(ClientError::Build)?;
        let summary_url = match &settings.source {
            Source::Http(base) => Some(summary_url(base)),
            Source::File(_) => None,
        };
        Ok(KubeletClient {
            settings,
            http,
            summary_url,
            reads_in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Fetches the summary's bytes.
    pub async fn fetch(&self) -> Result<Vec<u8>, ScrapeError> {
        match (&self.settings.source, &self.summary_url) {
            (Source::File(path), _) => self
                .read_file(path, MAX_SUMMARY_BYTES)
                .await
                .map_err(|e| self.file_error(path, e, Role::Summary)),
            (Source::Http(_), Some(url)) => self.fetch_http(url.clone()).await,
            (Source::Http(base), None) => self.fetch_http(summary_url(base)).await,
        }
    }

    /// Reads at most `limit` bytes of `path` within `--kubelet-timeout`, on a thread of its
    /// own (see the module doc for why not tokio's).
    async fn read_file(&self, path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
        let counter = self.reads_in_flight.clone();
        if counter.fetch_add(1, Ordering::AcqRel) >= MAX_STUCK_READS {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(FileError::Busy);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let owned = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("kubelet-file".into())
            .spawn(move || {
                let result = read_bounded(&owned, limit);
                counter.fetch_sub(1, Ordering::AcqRel);
                // The poll may have given up waiting: nobody to tell.
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            self.reads_in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(FileError::Io(e));
        }
        match tokio::time::timeout(self.settings.timeout, rx).await {
            Ok(Ok(result)) => result,
            // The thread ended without answering: it panicked.
            Ok(Err(_)) => Err(FileError::Io(std::io::Error::other(
                "the reading thread failed",
            ))),
            Err(_) => Err(FileError::Timeout),
        }
    }

    fn file_error(&self, path: &Path, e: FileError, role: Role) -> ScrapeError {
        let path = path.to_owned();
        match (e, role) {
            (FileError::Io(source), Role::Summary) => ScrapeError::File { path, source },
            (FileError::Io(source), Role::Token) => ScrapeError::Token { path, source },
            (FileError::TooLarge, Role::Summary) => ScrapeError::FileTooLarge { path },
            (FileError::TooLarge, Role::Token) => ScrapeError::TokenTooLarge { path },
            (FileError::Timeout, _) => ScrapeError::FileTimeout {
                path,
                timeout: self.settings.timeout,
            },
            (FileError::Busy, _) => ScrapeError::FileBusy { path },
        }
    }

    /// Fetches the kubelet's pod list (`GET <kubelet-url>/pods`) with the same TLS settings,
    /// token, timeout and size limit as the summary. `None` when the summary comes from a
    /// file: there is no kubelet to ask.
    pub async fn fetch_pods(&self) -> Option<Result<Vec<u8>, ScrapeError>> {
        match &self.settings.source {
            Source::Http(base) => Some(self.fetch_http(endpoint(base, "pods")).await),
            Source::File(_) => None,
        }
    }

    /// Fetches one of the kubelet's own metrics endpoints (`path`, such as `/metrics/probes`)
    /// with the summary's TLS settings, token and proxy, asking for `accept`, within
    /// `timeout` (the scrape's, not `--kubelet-timeout`), reading at most `limit` bytes.
    /// Returns the body and its `Content-Type` (`""` when absent). `None` when the summary
    /// comes from a file: there is no kubelet to ask.
    pub async fn fetch_metrics(
        &self,
        path: &str,
        accept: &'static str,
        timeout: Duration,
        limit: usize,
    ) -> Option<Result<(Vec<u8>, String), ScrapeError>> {
        let Source::Http(base) = &self.settings.source else {
            return None;
        };
        let path = path.trim_start_matches('/');
        Some(self.get(endpoint(base, path), accept, timeout, limit).await)
    }

    async fn fetch_http(&self, url: reqwest::Url) -> Result<Vec<u8>, ScrapeError> {
        let (timeout, limit) = (self.settings.timeout, MAX_SUMMARY_BYTES);
        let (body, _) = self.get(url, "application/json", timeout, limit).await?;
        Ok(body)
    }

    async fn get(
        &self,
        url: reqwest::Url,
        accept: &'static str,
        timeout: Duration,
        limit: usize,
    ) -> Result<(Vec<u8>, String), ScrapeError> {
        let mut request = self
            .http
            .get(url.clone())
            .timeout(timeout)
            .header("Accept", accept);
        if let Some(path) = &self.settings.token_file {
            let token = self
                .read_file(path, MAX_TOKEN_BYTES)
                .await
                .map_err(|e| self.file_error(path, e, Role::Token))?;
            let token = String::from_utf8(token).map_err(|_| ScrapeError::Token {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                ),
            })?;
            request = request.bearer_auth(token.trim());
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                ScrapeError::Timeout(timeout)
            } else if e.is_connect() {
                ScrapeError::Connect {
                    url: redact(&url),
                    // A certificate we cannot verify is said with the flag that fixes it.
                    reason: crate::http::tls_problem(
                        &e,
                        url.host_str().unwrap_or(""),
                        &crate::http::TlsHints::kubelet_flags(self.settings.ca_file.is_some()),
                    )
                    .unwrap_or_else(|| root_cause(&e)),
                }
            } else {
                // reqwest's message quotes the URL, query (a key?) and all: it is logged.
                ScrapeError::Request(e.without_url())
            }
        };
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ScrapeError::Status {
                status,
                body: error_message(response).await,
            });
        }
        let content_type = crate::http::content_type(&response);
        let body = read_body(&mut response, limit).await.map_err(|e| match e {
            BodyError::TooLarge => ScrapeError::TooLarge,
            BodyError::Read(e) => classify(e),
        })?;
        Ok((body, content_type))
    }
}

/// How a bounded file read failed; the caller turns it into the error that names the file's
/// role (summary or token).
#[derive(Debug)]
enum FileError {
    Io(std::io::Error),
    TooLarge,
    Timeout,
    Busy,
}

/// What a file read is for, which the error names.
#[derive(Debug, Clone, Copy)]
enum Role {
    Summary,
    Token,
}

/// Reads at most `limit` bytes of `path`, blocking; one byte more means too large. Memory
/// stays within the limit even for a file that never ends (`/dev/zero`): the buffer grows by
/// what arrives, never by what the file's size claims.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(FileError::Io)?;
    // A regular file says its size: refused without reading. Devices and FIFOs say 0.
    if file.metadata().map_err(FileError::Io)?.len() > limit as u64 {
        return Err(FileError::TooLarge);
    }
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() > limit {
        return Err(FileError::TooLarge);
    }
    Ok(bytes)
}

fn summary_url(base: &reqwest::Url) -> reqwest::Url {
    endpoint(base, "stats/summary")
}

fn endpoint(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let path = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_url_appends_the_path() {
        let u = |s: &str| summary_url(&reqwest::Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("https://127.0.0.1:10250"),
            "https://127.0.0.1:10250/stats/summary"
        );
        assert_eq!(u("https://h:10250/"), "https://h:10250/stats/summary");
        assert_eq!(
            u("https://apiserver/api/v1/nodes/n1/proxy/"),
            "https://apiserver/api/v1/nodes/n1/proxy/stats/summary"
        );
        let pods = endpoint(&reqwest::Url::parse("https://h:10250/").unwrap(), "pods");
        assert_eq!(pods.as_str(), "https://h:10250/pods");
    }
}
