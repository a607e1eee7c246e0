//! Fetches one summary: `GET <kubelet-url>/stats/summary` over HTTP(S), or a captured file for
//! `file://` URLs; and the pod list, `GET <kubelet-url>/pods`. Returns the raw bytes; parsing
//! is the caller's (the bytes must outlive the borrowed documents).
//!
//! Every failure kind has its own error, worded for an operator reading one log line: the
//! kubelet refused the connection, timed out, answered a status, sent too much, or the token
//! file is unreadable. The bearer token is re-read on every request because projected
//! service-account tokens rotate about hourly.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use crate::http::{first_line, redact, root_cause};

/// Largest summary accepted. A 110-pod node sends about 2 MiB; this leaves ample room while
/// keeping a misbehaving endpoint from exhausting the node's memory.
pub const MAX_SUMMARY_BYTES: usize = 64 << 20;

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
    #[error("the answer is larger than {MAX_SUMMARY_BYTES} bytes")]
    TooLarge,
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
}

pub struct KubeletClient {
    settings: KubeletSettings,
    http: reqwest::Client,
    summary_url: Option<reqwest::Url>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--kubelet-ca-file` cannot be used; `config` names the flag.
    #[error(transparent)]
    Ca(#[from] crate::http::CaError),
    #[error("cannot build the kubelet HTTP client")]
    Build(#[source] reqwest::Error),
}

impl KubeletClient {
    pub fn new(settings: KubeletSettings) -> Result<Self, ClientError> {
        crate::http::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(crate::http::user_agent())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // The kubelet is local; a proxy from the environment would only get in the way.
            .no_proxy();
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_certs_only(crate::http::load_ca_bundle(path)?);
        }
        if settings.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
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
        })
    }

    /// Fetches the summary's bytes.
    pub async fn fetch(&self) -> Result<Vec<u8>, ScrapeError> {
        match (&self.settings.source, &self.summary_url) {
            (Source::File(path), _) => {
                let file_error = |source| ScrapeError::File {
                    path: path.clone(),
                    source,
                };
                let len = tokio::fs::metadata(path).await.map_err(file_error)?.len();
                if len > MAX_SUMMARY_BYTES as u64 {
                    return Err(ScrapeError::TooLarge);
                }
                tokio::fs::read(path).await.map_err(file_error)
            }
            (Source::Http(_), Some(url)) => self.fetch_http(url.clone()).await,
            (Source::Http(base), None) => self.fetch_http(summary_url(base)).await,
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

    async fn fetch_http(&self, url: reqwest::Url) -> Result<Vec<u8>, ScrapeError> {
        let mut request = self
            .http
            .get(url.clone())
            .header("Accept", "application/json");
        if let Some(path) = &self.settings.token_file {
            let token =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| ScrapeError::Token {
                        path: path.clone(),
                        source,
                    })?;
            request = request.bearer_auth(token.trim());
        }
        let timeout = self.settings.timeout;
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
                ScrapeError::Request(e)
            }
        };
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ScrapeError::Status {
                status,
                body: first_line(&body),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_SUMMARY_BYTES as u64)
        {
            return Err(ScrapeError::TooLarge);
        }
        let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if bytes.len() + chunk.len() > MAX_SUMMARY_BYTES {
                return Err(ScrapeError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
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
