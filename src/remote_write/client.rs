//! One Remote Write attempt: POST one compressed body with the protocol headers, and classify
//! the outcome where the response is read. Callers (the sender) never look at status codes:
//! they get [`SendError::Retryable`] (network error, timeout, 5xx, 429 with its `Retry-After`)
//! or [`SendError::Permanent`] (any other 4xx: the receiver will never take this body).

use std::time::{Duration, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use reqwest::StatusCode;

use super::{CONTENT_ENCODING as SNAPPY, CONTENT_TYPE_V1, VERSION_HEADER, VERSION_V1};
use crate::http::{first_line, parse_retry_after, redact, root_cause};

/// Headers that the protocol sets and `--remote-header` must not override.
pub const PROTOCOL_HEADERS: [&str; 7] = [
    "content-type",
    "content-encoding",
    "x-prometheus-remote-write-version",
    "user-agent",
    "content-length",
    "host",
    "transfer-encoding",
];

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later, after `retry_after` when the receiver said so.
    #[error("{reason}")]
    Retryable {
        reason: String,
        status: Option<StatusCode>,
        retry_after: Option<Duration>,
    },
    /// The receiver rejected this body for good (400, 401, 403, 404, 413, …).
    #[error("receiver answered {status}: {message}")]
    Permanent { status: StatusCode, message: String },
}

impl SendError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SendError::Retryable { status, .. } => *status,
            SendError::Permanent { status, .. } => Some(*status),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the remote write HTTP client")]
pub struct ClientBuildError(#[source] reqwest::Error);

pub struct RemoteWriteClient {
    http: reqwest::Client,
    url: reqwest::Url,
    /// The URL as it may appear in logs (userinfo and query redacted).
    display_url: String,
}

impl RemoteWriteClient {
    /// `extra_headers` come from `--remote-header`, already checked against
    /// [`PROTOCOL_HEADERS`].
    pub fn new(
        url: reqwest::Url,
        timeout: Duration,
        extra_headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Self, ClientBuildError> {
        crate::http::install_crypto_provider();
        let mut headers = HeaderMap::new();
        for (name, value) in extra_headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(SNAPPY));
        headers.insert(VERSION_HEADER, HeaderValue::from_static(VERSION_V1));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(crate::http::user_agent())
            .timeout(timeout)
            .build()
            .map_err(ClientBuildError)?;
        let display_url = redact(&url);
        Ok(RemoteWriteClient {
            http,
            url,
            display_url,
        })
    }

    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Sends one body once; the receiver's success status on success.
    pub async fn send(&self, body: bytes::Bytes) -> Result<StatusCode, SendError> {
        let response = self
            .http
            .post(self.url.clone())
            // Set per request too, so a default header can never shadow it.
            .header(USER_AGENT, crate::http::user_agent())
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retryable {
                reason: describe(&e, &self.display_url),
                status: None,
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let message = first_line(&response.text().await.unwrap_or_default());
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Retryable {
                reason: format!("receiver answered {status}: {message}"),
                status: Some(status),
                retry_after,
            })
        } else {
            Err(SendError::Permanent { status, message })
        }
    }
}

/// A reqwest error in one line, with the cause that matters (refused, timed out, TLS).
fn describe(e: &reqwest::Error, url: &str) -> String {
    let kind = if e.is_timeout() {
        "timed out (--remote-timeout)"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("remote write to {url} {kind}: {}", root_cause(e))
}
