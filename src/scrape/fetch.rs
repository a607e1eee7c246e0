//! Getting one target's answer: `GET` with Prometheus's `Accept` header and scrape-timeout
//! header, the whole exchange bounded by the target's `scrape_timeout`, the body by its
//! `body_size_limit` (and never more than [`MAX_BODY_BYTES`]). An exporter is reached with
//! its own credentials, TLS settings and proxy, kept current while the agent runs
//! (`remote_write::access::Live`: a rotated token or certificate is picked up); a kubelet
//! endpoint through the kubelet client. Environment proxies are not used for exporters:
//! they are normally on the node itself, and `HTTPS_PROXY` set for the receiver must not
//! carry a scrape of 127.0.0.1 away.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};

use super::scraper::Failure;
use crate::http::{error_chain, error_message, read_body, root_cause, BodyError};
use crate::kubelet::client::KubeletClient;
use crate::kubelet::ScrapeError;
use crate::remote_write::access::{Access, BuildError, Live};

/// Largest body read when the target sets no `body_size_limit`: a 10 000-series exporter
/// sends about 1 MiB; this keeps a runaway one from taking the node's memory.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Where one target's answers come from.
pub enum Fetcher {
    Exporter {
        live: Box<Live>,
        url: reqwest::Url,
    },
    Kubelet {
        client: Arc<KubeletClient>,
        path: String,
    },
    /// The agent's own registry, encoded in process as `/metrics` encodes it.
    Agent(Arc<crate::telemetry::Metrics>),
}

impl Fetcher {
    /// The client for an exporter at `url`.
    pub fn exporter(url: reqwest::Url, access: &Access) -> Result<Self, BuildError> {
        let base = || {
            reqwest::Client::builder()
                .user_agent(crate::http::user_agent())
                .no_proxy()
                // A redirect must not carry the URL's query to another host; reqwest drops
                // `Authorization` itself when the host changes.
                .referer(false)
        };
        let live = Box::new(Live::new(access.clone(), Box::new(base))?);
        Ok(Fetcher::Exporter { live, url })
    }

    /// The body and `Content-Type` of one scrape; `body_size_limit` 0 is no limit of the
    /// target's own.
    pub async fn fetch(
        &self,
        timeout: Duration,
        body_size_limit: usize,
    ) -> Result<(Vec<u8>, String), Failure> {
        let limit = match body_size_limit {
            0 => MAX_BODY_BYTES,
            n => n.min(MAX_BODY_BYTES),
        };
        match self {
            Fetcher::Exporter { live, url } => get(live, url, timeout, limit).await,
            Fetcher::Agent(metrics) => Ok((
                metrics.encode().into_bytes(),
                crate::telemetry::CONTENT_TYPE.to_owned(),
            )),
            Fetcher::Kubelet { client, path } => {
                match client
                    .fetch_metrics(path, crate::exposition::ACCEPT, timeout, limit)
                    .await
                {
                    None => Err(Failure::Request(
                        "the kubelet URL is a file: there is no kubelet to scrape".to_owned(),
                    )),
                    Some(Ok(answer)) => Ok(answer),
                    Some(Err(e)) => Err(match e {
                        ScrapeError::Timeout(_) => Failure::Timeout(timeout),
                        ScrapeError::Connect { reason, .. } => Failure::Unreachable(reason),
                        ScrapeError::Status { status, body } => Failure::Status {
                            status: status.as_u16(),
                            body,
                        },
                        ScrapeError::TooLarge => Failure::BodyTooLarge { limit },
                        other => Failure::Request(error_chain(&other)),
                    }),
                }
            }
        }
    }
}

async fn get(
    live: &Live,
    url: &reqwest::Url,
    timeout: Duration,
    limit: usize,
) -> Result<(Vec<u8>, String), Failure> {
    let current = live.current();
    let mut request = current
        .http
        .get(url.clone())
        .timeout(timeout)
        .header(ACCEPT, HeaderValue::from_static(crate::exposition::ACCEPT))
        // Exporters that do expensive work (blackbox, snmp) bound it by this, as for
        // Prometheus.
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        );
    if let Some(value) = current.authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let classify = |e: reqwest::Error| {
        if e.is_timeout() {
            Failure::Timeout(timeout)
        } else if e.is_connect() {
            Failure::Unreachable(
                crate::http::tls_problem(&e, url.host_str().unwrap_or(""), live.hints())
                    .unwrap_or_else(|| root_cause(&e)),
            )
        } else {
            // reqwest's message quotes the URL, query and all: leave it out.
            Failure::Request(error_chain(&e.without_url()))
        }
    };
    let mut response = request.send().await.map_err(classify)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Status {
            status: status.as_u16(),
            body: error_message(response).await,
        });
    }
    let content_type = crate::http::content_type(&response);
    let body = read_body(&mut response, limit).await.map_err(|e| match e {
        BodyError::TooLarge => Failure::BodyTooLarge { limit },
        BodyError::Read(e) => classify(e),
    })?;
    Ok((body, content_type))
}
