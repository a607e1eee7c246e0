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
use crate::kubelet::client::{first_line, redact, root_cause};

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
            .user_agent(super::user_agent())
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
            .header(USER_AGENT, super::user_agent())
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

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = humantime::parse_rfc3339_weak(value)
        .ok()
        .or_else(|| parse_http_date(value))?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate, the only HTTP date form senders may generate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::kubelet::time::days_from_civil(year, month, day);
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // 1994-11-06T08:49:37Z is 784111777.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
