//! One Remote Write attempt: POST one compressed body with the headers of its protocol, and
//! classify the outcome where the response is read. Callers (the sender) never look at status
//! codes: they get [`Accepted`] (with what a 2.0 receiver says it wrote),
//! [`SendError::Retryable`] (network error, timeout, 5xx, 429 with its `Retry-After`, and
//! 401/403/407: refused credentials, fixed by rewriting a file the agent re-reads),
//! [`SendError::NotV2`] (a 2.0 body the receiver does not understand: 415, or a 2xx without
//! the written-samples header, which is how receivers that predate 2.0 answer it, storing
//! nothing) or [`SendError::Permanent`] (any other 4xx: the receiver will never take this body).
//! Converting and resending is the sender's business, not this module's.
//!
//! Bounded whatever the receiver sends: an error answer's message is read from its first
//! [`crate::http::ERROR_BODY_PREFIX`] bytes and the rest is never read; a 2xx body is never
//! read at all (Remote Write gives it no meaning).

use std::time::{Duration, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
    USER_AGENT,
};
use reqwest::StatusCode;

use super::access::{Access, Live, TlsHints};
use super::{Protocol, CONTENT_ENCODING as SNAPPY, VERSION_HEADER};
use crate::http::{error_message, parse_retry_after, redact, root_cause, tls_problem};

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

/// Response headers by which a Remote Write 2.0 receiver says what it stored of a request.
pub const SAMPLES_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Samples-Written";
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Histograms-Written";
pub const EXEMPLARS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// A 2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub status: StatusCode,
    /// What the receiver says it stored; `None` for a 1.0 request (1.0 has no such headers).
    pub written: Option<Written>,
}

/// The `X-Prometheus-Remote-Write-*-Written` headers of a 2.0 answer; a missing or unreadable
/// histogram or exemplar count is 0 (the spec lets receivers omit them when nothing was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later, after `retry_after` when the receiver said so.
    #[error("{reason}")]
    Retryable {
        reason: String,
        status: Option<StatusCode>,
        retry_after: Option<Duration>,
        /// The request may have reached the receiver, but no answer came back: a timeout or a
        /// connection lost once it was made. False when no connection was made (refused,
        /// unreachable, a failed handshake) and when the receiver answered.
        unanswered: bool,
    },
    /// The receiver rejected this body for good (400, 404, 413, …; 401, 403 and 407 are
    /// retried, since fixing the credentials makes the same body welcome).
    #[error("receiver answered {status}: {message}")]
    Permanent { status: StatusCode, message: String },
    /// A Remote Write 2.0 body the receiver does not take: it answered 415, or a 2xx without
    /// [`SAMPLES_WRITTEN_HEADER`] (a receiver that predates 2.0 and stored nothing). The same
    /// samples must go again as 1.0.
    #[error("receiver does not take Remote Write 2.0 (answered {status}{})", if *.status == StatusCode::UNSUPPORTED_MEDIA_TYPE { "" } else { " without the written-samples header" })]
    NotV2 { status: StatusCode },
}

impl SendError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SendError::Retryable { status, .. } => *status,
            SendError::Permanent { status, .. } | SendError::NotV2 { status } => Some(*status),
        }
    }
}

pub use super::access::BuildError as ClientBuildError;

pub struct RemoteWriteClient {
    /// The HTTP client and the `Authorization` value, kept current as their files change.
    live: Live,
    url: reqwest::Url,
    /// The URL as it may appear in logs (userinfo and query redacted).
    display_url: String,
    /// `--remote-timeout`: how long one request may take, answer included.
    timeout: Duration,
    /// `--remote-retry-auth-errors`: whether 401, 403 and 407 are retried (the default) or
    /// drop the request, as the Remote Write spec has it for every 4xx but 429.
    retry_auth_errors: bool,
}

impl RemoteWriteClient {
    /// `extra_headers` come from `--remote-header`, already checked against
    /// [`PROTOCOL_HEADERS`]; `access` (auth, TLS, proxy) from [`super::access::validate`].
    pub fn new(
        url: reqwest::Url,
        timeout: Duration,
        extra_headers: &[(HeaderName, HeaderValue)],
        access: &Access,
    ) -> Result<Self, ClientBuildError> {
        let mut headers = HeaderMap::new();
        for (name, value) in extra_headers {
            headers.append(name.clone(), value.clone());
        }
        // Content-Type and the version header depend on each body's protocol: set per request.
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(SNAPPY));
        let base = move || {
            reqwest::Client::builder()
                .default_headers(headers.clone())
                .user_agent(crate::http::user_agent())
                .timeout(timeout)
                // A redirect (307/308 keeps the POST and its body) must not carry the URL's
                // query, which may hold an API key, to another host.
                .referer(false)
                // Nor the `--remote-header` values (an API key, a tenant): reqwest drops only
                // `Authorization` across origins. A redirect within the receiver's origin is
                // followed; one to another origin is not, and the 3xx is retried with a
                // message naming where it pointed, so nothing is lost while the operator
                // fixes --remote-url.
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    let same_origin = attempt
                        .previous()
                        .first()
                        .is_some_and(|first| first.origin() == attempt.url().origin());
                    if !same_origin {
                        attempt.stop()
                    } else if attempt.previous().len() > 5 {
                        attempt.error("more than 5 redirects")
                    } else {
                        attempt.follow()
                    }
                }))
        };
        let live = Live::new(access.clone(), Box::new(base))?;
        let display_url = redact(&url);
        Ok(RemoteWriteClient {
            live,
            url,
            display_url,
            timeout,
            retry_auth_errors: true,
        })
    }

    /// Whether refused credentials (401, 403, 407) are retried (`true`, the default: a
    /// rotated credential that reaches the node late must not cost data) or drop the request
    /// as any other 4xx but 429 does (`false`: the spec's behaviour,
    /// `--remote-retry-auth-errors=false`).
    pub fn retry_auth_errors(mut self, retry: bool) -> Self {
        self.retry_auth_errors = retry;
        self
    }

    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// `--remote-timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one body of `protocol`, with that protocol's `Content-Type` and version header.
    ///
    /// A request written to a pooled keep-alive connection that the peer closed at the same
    /// moment (tinyproxy closes after each answer; a receiver's idle timeout may beat ours)
    /// fails before any answer. That says nothing about the receiver, so such a failure is
    /// tried once more at once (the closed connection has left the pool) before it is
    /// reported: otherwise each such race would cost a backoff and a warning.
    pub async fn send(
        &self,
        protocol: Protocol,
        body: bytes::Bytes,
    ) -> Result<Accepted, SendError> {
        let response = match self.post(protocol, body.clone()).await {
            Err(e) if closed_before_answer(&e) => {
                tracing::debug!(
                    url = %self.display_url,
                    "the connection closed before an answer came; sending again on a new one"
                );
                self.post(protocol, body).await
            }
            other => other,
        }
        .map_err(|e| self.unanswered(&e))?;
        let status = response.status();
        if status.is_success() {
            if protocol == Protocol::V1 {
                return Ok(Accepted {
                    status,
                    written: None,
                });
            }
            let count = |name: &str| -> Option<u64> {
                response
                    .headers()
                    .get(name)?
                    .to_str()
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            };
            let Some(samples) = count(SAMPLES_WRITTEN_HEADER) else {
                return Err(SendError::NotV2 { status });
            };
            return Ok(Accepted {
                status,
                written: Some(Written {
                    samples,
                    histograms: count(HISTOGRAMS_WRITTEN_HEADER).unwrap_or(0),
                    exemplars: count(EXEMPLARS_WRITTEN_HEADER).unwrap_or(0),
                }),
            });
        }
        if protocol == Protocol::V2 && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Err(SendError::NotV2 { status });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok())
                .map_or_else(|| "elsewhere".to_owned(), |u| redact(&u));
            return Err(SendError::Retryable {
                reason: format!(
                    "receiver answered {status} to {to}, another host: not followed, so the request's headers stay with the receiver you named; set --remote-url to where it points"
                ),
                status: Some(status),
                retry_after: None,
                unanswered: false,
            });
        }
        // A prefix only: a proxy's 10 MB HTML page must not cost 10 MB.
        let message = error_message(response).await;
        if self.retry_auth_errors
            && matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::PROXY_AUTHENTICATION_REQUIRED
            )
        {
            // Credentials the receiver (or proxy) refuses are an operator's problem, not the
            // data's: retried, so that fixing the token or password file (re-read before
            // every attempt) delivers everything queued meanwhile. vmagent does the same;
            // Prometheus drops.
            return Err(SendError::Retryable {
                reason: format!(
                    "receiver answered {status}: {message} (check the credentials; they are re-read before every attempt)"
                ),
                status: Some(status),
                retry_after,
                unanswered: false,
            });
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Retryable {
                reason: format!("receiver answered {status}: {message}"),
                status: Some(status),
                retry_after,
                unanswered: false,
            })
        } else {
            Err(SendError::Permanent { status, message })
        }
    }
}

impl RemoteWriteClient {
    /// One POST of `body`, up to the answer's head.
    async fn post(
        &self,
        protocol: Protocol,
        body: bytes::Bytes,
    ) -> reqwest::Result<reqwest::Response> {
        let current = self.live.current();
        let mut request = current.http.post(self.url.clone());
        if let Some(value) = current.authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request
            // Set per request too, so a default header can never shadow it.
            .header(USER_AGENT, crate::http::user_agent())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(protocol.content_type()),
            )
            .header(VERSION_HEADER, HeaderValue::from_static(protocol.version()))
            .body(body)
            .send()
            .await
    }

    /// A request that got no answer (refused, timed out, cut off): always worth trying again.
    fn unanswered(&self, e: &reqwest::Error) -> SendError {
        SendError::Retryable {
            reason: describe(e, &self.display_url, &self.url, self.live.hints()),
            status: None,
            retry_after: None,
            unanswered: !e.is_connect(),
        }
    }
}

/// Whether the request failed because the connection closed before the answer began (hyper's
/// "connection closed before message completed"), not because of a timeout, a refused
/// connection or a failed handshake.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    if e.is_timeout() || e.is_connect() {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A reqwest error in one line, with the cause that matters (refused, timed out, TLS). A TLS
/// failure is said in an operator's words with the setting that fixes it: the sender logs it
/// once per episode, so it must carry the reason itself.
fn describe(e: &reqwest::Error, url: &str, raw: &reqwest::Url, hints: &TlsHints) -> String {
    let host = match (raw.host_str(), raw.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_owned(),
    };
    if let Some(problem) = tls_problem(e, &host, hints) {
        return format!("remote write to {url} failed: {problem}");
    }
    let kind = if e.is_timeout() {
        "timed out (--remote-timeout)"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("remote write to {url} {kind}: {}", root_cause(e))
}
