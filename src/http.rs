//! What both HTTP clients of the agent (the kubelet's and the receiver's) share: the TLS
//! crypto provider, the `User-Agent`, URLs and errors fit for one log line, `Retry-After`,
//! and the bounds on what a response may make the agent read: a body up to a limit, an
//! error answer's first [`ERROR_BODY_PREFIX`] bytes and no more. Neither client imports the
//! other; both import this. Not here: what a body means (each client's own module).

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, SystemTime};

/// reqwest is built without a bundled crypto provider, so rustls needs one chosen before the
/// first client is made. ring cross-compiles to Windows with nothing but a C compiler.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A CA bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    Pem {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("{path} holds no PEM certificate")]
    Empty { path: PathBuf },
}

/// The certificates of the PEM bundle at `path`, to trust instead of the system's roots: at
/// least one, or an error naming the file.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, CaError> {
    let pem = std::fs::read(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| CaError::Pem {
        path: path.to_owned(),
        source,
    })?;
    if certs.is_empty() {
        return Err(CaError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// How the user wrote the settings a TLS failure message points to (flags or config keys).
#[derive(Debug, Clone, Default)]
pub struct TlsHints {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    /// Empty when there is no such setting (the kubelet's).
    pub tls_server_name: String,
    /// Whether a CA file and a client certificate are given: the fix differs.
    pub ca_given: bool,
    pub client_cert_given: bool,
}

impl TlsHints {
    pub fn remote_flags() -> Self {
        TlsHints {
            ca_file: "--remote-ca-file".into(),
            cert_file: "--remote-cert-file".into(),
            key_file: "--remote-key-file".into(),
            tls_server_name: "--remote-tls-server-name".into(),
            ca_given: false,
            client_cert_given: false,
        }
    }

    pub fn kubelet_flags(ca_given: bool) -> Self {
        TlsHints {
            ca_file: "--kubelet-ca-file".into(),
            ca_given,
            ..TlsHints::default()
        }
    }
}

/// What went wrong in a TLS handshake, in an operator's words with the setting that fixes
/// it ("certificate signed by an unknown authority; pass --remote-ca-file"), when `e` was
/// caused by one; `None` for every other failure. rustls errors hide inside `io::Error`s,
/// whose `source()` skips them, so each io error's inner error is looked at too.
pub fn tls_problem(
    e: &(dyn std::error::Error + 'static),
    host: &str,
    hints: &TlsHints,
) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut found = None;
    // Bounded: error chains are a handful of links deep.
    for _ in 0..32 {
        let Some(c) = cause else { break };
        if let Some(r) = c.downcast_ref::<R>() {
            found = Some(r);
            break;
        }
        // An io::Error's `source()` is its inner error's source, skipping the inner error
        // itself (where tokio-rustls puts the rustls error): step into it instead.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    let error = found?;
    let name_hint = if hints.tls_server_name.is_empty() {
        String::new()
    } else {
        format!(" or pass {}", hints.tls_server_name)
    };
    let text = match error {
        R::InvalidCertificate(C::UnknownIssuer) if hints.ca_given => format!(
            "the certificate of {host} is signed by an unknown authority, not by the CA in {}",
            hints.ca_file
        ),
        R::InvalidCertificate(C::UnknownIssuer) => format!(
            "the certificate of {host} is signed by an unknown authority; pass {} with the CA that signed it",
            hints.ca_file
        ),
        R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the certificate of {host} is not valid for that name; use a name it holds in the URL{name_hint}"
        ),
        R::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("the certificate of {host} has expired")
        }
        R::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            format!("the certificate of {host} is not valid yet (is this clock right?)")
        }
        // The Windows verifier reports some chains it cannot build as OS errors (measured:
        // Wine 8 answers a certificate from an unknown root with 0x800B010E, revocation
        // failure): a private CA is still the likeliest cause.
        R::InvalidCertificate(other) if !hints.ca_given => format!(
            "the certificate of {host} cannot be verified ({other:?}); if a private CA signed it, pass {}",
            hints.ca_file
        ),
        R::InvalidCertificate(other) => {
            format!("the certificate of {host} cannot be verified: {other:?}")
        }
        // Go servers answer a missing client certificate with bad_certificate, TLS 1.3
        // ones in general with certificate_required.
        R::AlertReceived(
            A::CertificateRequired
            | A::HandshakeFailure
            | A::BadCertificate
            | A::CertificateUnknown,
        ) if !hints.client_cert_given && !hints.cert_file.is_empty() => format!(
            "{host} requires a client certificate; pass {} and {}",
            hints.cert_file, hints.key_file
        ),
        R::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied),
        ) => format!(
            "{host} refused our client certificate ({alert:?}); check {} and {}",
            hints.cert_file, hints.key_file
        ),
        other => format!("TLS with {host} failed: {other}"),
    };
    Some(text)
}

/// `User-Agent` of every request the agent makes.
pub fn user_agent() -> String {
    format!("kubelet-push/{}", env!("CARGO_PKG_VERSION"))
}

/// A URL fit for logs: no userinfo, no query (either may carry credentials).
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("redacted");
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        u.set_query(Some("redacted"));
    }
    u.to_string()
}

/// An explicit HTTP(S) proxy (`--remote-proxy-url`, `--kubelet-proxy-url`), checked once.
#[derive(Clone, Debug)]
pub struct ProxyUrl {
    pub url: reqwest::Url,
    /// Fit for logs and `check-config`: see [`redact_proxy`].
    pub display: String,
}

impl ProxyUrl {
    /// Parses a proxy URL; the error never quotes it (it may hold a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(
                "must be an http:// or https:// URL with a host, e.g. http://proxy:3128".into(),
            );
        }
        reqwest::Proxy::all(url.clone()).map_err(|_| "reqwest does not accept it".to_owned())?;
        Ok(ProxyUrl {
            display: redact_proxy(&url),
            url,
        })
    }

    /// The proxy for every request of a client, whatever the environment says.
    pub fn for_client(&self) -> Result<reqwest::Proxy, String> {
        reqwest::Proxy::all(self.url.clone())
            .map_err(|_| format!("proxy {} is not usable", self.display))
    }
}

/// A proxy URL fit for logs: the user name kept (it helps to tell proxies apart), the
/// password and any query removed.
fn redact_proxy(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("redacted"));
    }
    if u.query().is_some() {
        u.set_query(Some("redacted"));
    }
    u.to_string()
}

/// A URL as the user typed it, fit for an error message even when it does not parse (so
/// [`redact`] cannot be used): whatever sits between `://` and the last `@` before the path,
/// and everything from `?`, is replaced.
pub fn redact_str(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(q) = out.find('?') {
        out.replace_range(q.., "?redacted");
    }
    let start = out.find("://").map_or(0, |i| i + 3);
    let authority_end = out[start..]
        .find(['/', '?', '#'])
        .map_or(out.len(), |i| start + i);
    if let Some(at) = out[start..authority_end].rfind('@') {
        out.replace_range(start..start + at, "redacted");
    }
    out
}

/// Most of an error answer's body the agent reads: enough for the message a receiver or a
/// kubelet puts first (Prometheus, Mimir and the kubelet put it on the first line, a few
/// hundred bytes), bounded whatever the peer sends. Measured before this bound: a kubelet
/// answering 500 with a 400 MiB body took the agent to 806 MB of RSS.
pub const ERROR_BODY_PREFIX: usize = 4 << 10;

/// The `Content-Type` of `response`, `""` when it has none (or one that is not text).
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit (said by `Content-Length`, or found while reading).
    TooLarge,
    /// The connection failed or timed out mid-body.
    Read(reqwest::Error),
}

/// Reads `response`'s body, refusing one larger than `limit` bytes before reading it when
/// `Content-Length` says so, and as soon as it passes the limit otherwise (chunked, or a
/// lying length): memory stays within `limit` whatever the peer sends. The client's
/// timeout covers the body too, so a peer that drips bytes is cut off by it.
pub async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if bytes.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The message of an error answer: the first line of its first [`ERROR_BODY_PREFIX`]
/// bytes, bounded by [`first_line`]. The rest is never read: dropping a response whose
/// body is not finished closes its connection (hyper does not put it back in the pool), so
/// a huge body costs one connection, not its size in memory or time. A body that fits in
/// the prefix is read to its end, which keeps the connection reusable.
pub async fn error_message(mut response: reqwest::Response) -> String {
    let mut prefix = Vec::new();
    // A failure mid-body leaves what arrived: the message is usually in the first chunk.
    while prefix.len() < ERROR_BODY_PREFIX {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_PREFIX - prefix.len();
                prefix.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    first_line(&String::from_utf8_lossy(&prefix))
}

/// An error and its sources on one line: `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// The innermost cause of an error ("Connection refused (os error 111)"): the part an
/// operator can act on, without the layers of "error sending request" around it.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The first line of an error body, bounded, so one log line stays one line.
pub fn first_line(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or("");
    let mut out: String = line.chars().take(200).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3, any of the three
/// date forms, through `httpdate`); a date in the past means now. RFC 3339 is accepted too,
/// leniently, since some proxies send it.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value)
        .ok()
        .or_else(|| humantime::parse_rfc3339_weak(value).ok())?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked_and_printed_without_their_password() {
        let p = ProxyUrl::parse(" http://user:pw-5512@proxy:3128?key=k ").unwrap();
        assert_eq!(p.display, "http://user:redacted@proxy:3128/?redacted");
        assert_eq!(p.url.password(), Some("pw-5512"));
        assert!(p.for_client().is_ok());
        for bad in ["socks5://proxy:1080", "proxy:3128", "http://", "not a url"] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert!(!e.contains("pw-"), "{e}");
            assert!(
                e.contains("http://") || e.contains("not a URL"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn redact_hides_credentials() {
        let u = reqwest::Url::parse("https://user:secret@host/x?token=abc").unwrap();
        let r = redact(&u);
        assert!(
            !r.contains("secret") && !r.contains("abc") && !r.contains("user"),
            "{r}"
        );
    }

    #[test]
    fn redact_str_hides_credentials_in_what_does_not_parse() {
        for (raw, want) in [
            (
                "https://user:secret@host:badport/x?token=abc",
                "https://redacted@host:badport/x?redacted",
            ),
            ("https://host/p@th?k=v", "https://host/p@th?redacted"),
            ("user:pw@host", "redacted@host"),
            ("https://a:b@c@host/", "https://redacted@host/"),
            ("http://host:10255", "http://host:10255"),
        ] {
            assert_eq!(redact_str(raw), want, "{raw}");
        }
    }

    #[test]
    fn first_line_is_bounded() {
        assert_eq!(first_line("oops\nmore"), "oops");
        assert_eq!(first_line(""), "(empty body)");
        assert_eq!(first_line(&"x".repeat(500)).chars().count(), 201);
    }

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
        // The two obsolete forms a recipient must still accept (RFC 9110 §5.6.7).
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:37 1994", now),
            Some(Duration::from_secs(60))
        );
    }
}
