//! A Prometheus Remote Write 1.0 and 2.0 receiver for the `demo` command and for tests. This
//! module owns checking each request against its protocol, chosen by `Content-Type` (headers,
//! snappy block compression, `prometheus.WriteRequest` or `io.prometheus.write.v2.Request`
//! decoding, a 2.0 symbols table and its refs, series well-formedness), answering 204 (for 2.0
//! with the `X-Prometheus-Remote-Write-*-Written` headers) or 400 with the reason, and keeping
//! the latest requests for whoever reads them ([`Feed`]: the demo's printer). A 2.0 request is kept in its 1.0 form too
//! (labels looked up from the refs, in the order the refs give them), so everything that reads
//! requests reads both. It does not own storing or querying samples, TLS, or authentication.
//!
//! Tests script it further (queued answers, delays, every request kept with its headers, waiting
//! for a count, answering 2.0 like a receiver that predates it): that is [`script`], compiled
//! only with the `test-support` feature, which only the tests turn on, so the release binary
//! carries none of it.

#[cfg(any(test, feature = "test-support"))]
mod script;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use prost::Message;

use crate::remote_write::client::{
    EXEMPLARS_WRITTEN_HEADER, HISTOGRAMS_WRITTEN_HEADER, SAMPLES_WRITTEN_HEADER,
};
use crate::remote_write::proto::v1::{Label, Sample, TimeSeries, WriteRequest};
use crate::remote_write::proto::v2;
use crate::remote_write::wire::{decompress, labels_of, RefError};
use crate::remote_write::{
    Protocol, CONTENT_ENCODING, CONTENT_TYPE_V1, CONTENT_TYPE_V2, PROTO_V1, PROTO_V2,
    VERSION_HEADER, VERSION_V1, VERSION_V2,
};
use crate::testkit::server::LocalServer;

#[cfg(any(test, feature = "test-support"))]
pub use script::{OldReceiver, Response};

/// Compressed bodies above this are refused by the extractor before they reach the checks.
const MAX_COMPRESSED: usize = 32 * 1024 * 1024;
/// Checked against snappy's length header before allocating, so a tiny body cannot claim a
/// huge output.
const MAX_DECOMPRESSED: usize = 128 * 1024 * 1024;
/// Every snappy framed stream starts with this stream identifier chunk.
const SNAPPY_FRAME_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// One request as it arrived and how it was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// What the `Content-Type` says the body is (1.0 when it names neither).
    pub protocol: Protocol,
    pub compressed_bytes: usize,
    /// Present whenever the body decoded, even if a series in it was then found invalid; for a
    /// 2.0 body, its 1.0 form (labels from the refs, metadata and start timestamps left out).
    pub write_request: Option<WriteRequest>,
    /// A 2.0 body as it decoded, with its symbols, metadata and start timestamps.
    pub v2_request: Option<v2::Request>,
    pub status: u16,
    /// Why the request broke the protocol; `None` if it was valid.
    pub rejection: Option<String>,
    #[cfg(any(test, feature = "test-support"))]
    pub path: String,
    /// Names lowercased, in arrival order.
    #[cfg(any(test, feature = "test-support"))]
    pub headers: Vec<(String, String)>,
    /// The body's length once snappy-decoded (0 if it was not): a body holding nothing but
    /// what the message's known fields hold has the length of their encoding, so a test can
    /// tell that no other field (a 1.0 histogram, metadata) travelled.
    #[cfg(any(test, feature = "test-support"))]
    pub decoded_bytes: usize,
    /// When the request arrived, on tokio's clock, so a test under paused time reads virtual
    /// time.
    #[cfg(any(test, feature = "test-support"))]
    pub at: tokio::time::Instant,
}

impl ReceivedRequest {
    /// Valid and answered 2xx, so a real receiver would have ingested it.
    pub fn accepted(&self) -> bool {
        self.rejection.is_none() && (200..300).contains(&self.status)
    }
}

/// What makes a request violate Remote Write 1.0; the text is sent back with the 400.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("method {0} not allowed: Remote Write uses POST")]
    Method(Method),
    #[error("Content-Encoding must be {CONTENT_ENCODING:?}, got {0}")]
    ContentEncoding(String),
    #[error(
        "Content-Type must be {CONTENT_TYPE_V1:?} (1.0) or {CONTENT_TYPE_V2:?} (2.0), got {0}"
    )]
    ContentType(String),
    #[error("{VERSION_HEADER} must be {VERSION_V1:?}, got {0}")]
    Version(String),
    #[error("{VERSION_HEADER} must be {v2}.x for a 2.0 body, got {0}", v2 = v2_major_minor())]
    VersionV2(String),
    #[error("User-Agent header is missing")]
    UserAgent,
    #[error("body is snappy framed (stream) format; Remote Write 1.0 uses the block format")]
    SnappyFramed,
    #[error("snappy block decompression failed: {0}")]
    Snappy(#[from] snap::Error),
    #[error("decompressed body would be {0} bytes, over the {MAX_DECOMPRESSED} byte limit")]
    TooLarge(usize),
    #[error("body is not a prometheus.WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("body is not an io.prometheus.write.v2.Request: {0}")]
    ProtobufV2(prost::DecodeError),
    #[error("symbols table must start with \"\", starts with {0:?}")]
    Symbols(String),
    #[error("series {index}: {problem}")]
    Refs { index: usize, problem: String },
    #[error("series {index} {labels}: {problem}")]
    Series {
        index: usize,
        labels: String,
        problem: String,
    },
}

struct State {
    /// The most recent requests, at most `retain` of them.
    requests: Vec<ReceivedRequest>,
    /// Requests recorded since start, including those no longer retained.
    recorded: usize,
    /// A demo runs for hours: it keeps only what the printer has yet to read.
    retain: usize,
    #[cfg(any(test, feature = "test-support"))]
    script: script::Script,
}

struct Shared {
    state: Mutex<State>,
    #[cfg(any(test, feature = "test-support"))]
    waiters: script::Waiters,
    #[cfg(any(test, feature = "test-support"))]
    gate: script::Gate,
}

impl Shared {
    /// A panicking test thread must not hide what was recorded before it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Remote Write 1.0 endpoint on `127.0.0.1` accepting POSTs on any path. It stops when
/// dropped.
pub struct Receiver {
    server: LocalServer,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver that keeps only the latest `retain` requests, so memory stays
    /// bounded however long it runs.
    pub async fn start_retaining(retain: usize) -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_with(retain, listener)
    }

    fn start_with(retain: usize, listener: tokio::net::TcpListener) -> std::io::Result<Receiver> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                requests: Vec::new(),
                recorded: 0,
                retain: retain.max(1),
                #[cfg(any(test, feature = "test-support"))]
                script: script::Script::default(),
            }),
            #[cfg(any(test, feature = "test-support"))]
            waiters: script::Waiters::default(),
            #[cfg(any(test, feature = "test-support"))]
            gate: script::Gate::default(),
        });
        let handler_shared = Arc::clone(&shared);
        let app = Router::new()
            .fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let shared = Arc::clone(&handler_shared);
                    async move { handle(&shared, &method, &uri, &headers, &body).await }
                },
            )
            .layer(DefaultBodyLimit::max(MAX_COMPRESSED));
        let server = LocalServer::start_on(app, "remote write receiver", listener)?;
        Ok(Receiver { server, shared })
    }

    /// The conventional write URL; any other path on this host works too.
    /// A reader of the requests: first those still retained, then each new one.
    pub fn feed(&self) -> Feed {
        Feed {
            shared: Arc::clone(&self.shared),
            seen: 0,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.server.addr())
    }
}

// The URI is only recorded for tests.
#[cfg_attr(not(any(test, feature = "test-support")), allow(unused_variables))]
async fn handle(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> axum::response::Response {
    let protocol = protocol_of(headers);
    let (write_request, v2_request, decoded_bytes, verdict) = match decode(method, headers, body) {
        Ok((w, v2, len)) => {
            let verdict = validate(&w);
            (Some(w), v2, len, verdict)
        }
        Err(e) => (None, None, 0, Err(e)),
    };
    let samples: usize = write_request
        .iter()
        .flat_map(|w| &w.timeseries)
        .map(|ts| ts.samples.len())
        .sum();
    let exemplars: usize = v2_request
        .iter()
        .flat_map(|r| &r.timeseries)
        .map(|ts| ts.exemplars.len())
        .sum();
    let (status, text, rejection) = match verdict {
        Ok(()) => (StatusCode::NO_CONTENT, String::new(), None),
        Err(e) => {
            let message = e.to_string();
            tracing::debug!(%message, "rejected remote write request");
            (
                StatusCode::BAD_REQUEST,
                format!("{message}\n"),
                Some(message),
            )
        }
    };
    #[cfg(any(test, feature = "test-support"))]
    let (status, text, rejection) =
        script::as_old_receiver(shared, protocol, status, text, rejection);
    #[cfg(any(test, feature = "test-support"))]
    let (status, text, rejection) =
        script::check_authorization(shared, headers, (status, text, rejection));
    // Only a stored 2.0 request is answered with what was written.
    let accepted = rejection.is_none() && status.is_success();
    let request = ReceivedRequest {
        protocol,
        compressed_bytes: body.len(),
        write_request,
        v2_request,
        status: status.as_u16(),
        rejection,
        #[cfg(any(test, feature = "test-support"))]
        path: uri.path().to_string(),
        #[cfg(any(test, feature = "test-support"))]
        headers: script::lowercased(headers),
        #[cfg(any(test, feature = "test-support"))]
        decoded_bytes,
        #[cfg(any(test, feature = "test-support"))]
        at: tokio::time::Instant::now(),
    };
    #[cfg(not(any(test, feature = "test-support")))]
    shared.lock().keep(request);
    #[cfg(any(test, feature = "test-support"))]
    if let Some(queued) = script::keep(shared, request) {
        if queued.held {
            script::released(shared).await;
        }
        return queued.answer().await;
    }
    let mut response = (status, text).into_response();
    #[cfg(any(test, feature = "test-support"))]
    let accepted = accepted && !Receiver::omits_written(shared);
    if protocol == Protocol::V2 && accepted {
        // Samples and exemplars travel here, no histograms; the spec wants all three counts
        // on a 2.0 answer.
        for (name, count) in [
            (SAMPLES_WRITTEN_HEADER, samples),
            (HISTOGRAMS_WRITTEN_HEADER, 0),
            (EXEMPLARS_WRITTEN_HEADER, exemplars),
        ] {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                response.headers_mut().insert(name, count.into());
            }
        }
    }
    response
}

/// Reads what a [`Receiver`] records, in arrival order, each request once; it keeps the
/// records alive, not the server.
pub struct Feed {
    shared: Arc<Shared>,
    /// Requests recorded when this last read.
    seen: usize,
}

impl Feed {
    /// Calls `f` with the requests recorded since the last call that are still retained (a
    /// reader slower than `retain` requests misses the oldest of them).
    pub fn read_new<R>(&mut self, f: impl FnOnce(&[ReceivedRequest]) -> R) -> R {
        let state = self.shared.lock();
        let unread = (state.recorded - self.seen).min(state.requests.len());
        self.seen = state.recorded;
        f(&state.requests[state.requests.len() - unread..])
    }
}

impl State {
    fn keep(&mut self, request: ReceivedRequest) {
        self.requests.push(request);
        self.recorded += 1;
        if self.requests.len() > self.retain {
            let excess = self.requests.len() - self.retain;
            self.requests.drain(..excess);
        }
    }
}

/// `2.0` of [`VERSION_V2`]: a 2.0 sender may send any patch release.
fn v2_major_minor() -> &'static str {
    VERSION_V2
        .rsplit_once('.')
        .map_or(VERSION_V2, |(major_minor, _)| major_minor)
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<non-ASCII>"))
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "no header".to_string(), |v| format!("{v:?}"))
}

/// The protocol a request's `Content-Type` names: 2.0 for the 2.0 message, else 1.0 (whose
/// checks then say what is wrong with it).
fn protocol_of(headers: &HeaderMap) -> Protocol {
    match header_str(headers, header::CONTENT_TYPE) {
        Some(v) if is_v2_content_type(v) => Protocol::V2,
        _ => Protocol::V1,
    }
}

/// The request in its 1.0 form, for a 2.0 body also as it decoded, and the length of the
/// snappy-decoded body.
fn decode(
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(WriteRequest, Option<v2::Request>, usize), Invalid> {
    if method != Method::POST {
        return Err(Invalid::Method(method.clone()));
    }
    let encoding = header_str(headers, header::CONTENT_ENCODING);
    if !encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case(CONTENT_ENCODING)) {
        return Err(Invalid::ContentEncoding(shown(encoding)));
    }
    let content_type = header_str(headers, header::CONTENT_TYPE);
    let protocol = protocol_of(headers);
    if protocol == Protocol::V1 && !content_type.is_some_and(is_v1_content_type) {
        return Err(Invalid::ContentType(shown(content_type)));
    }
    let version = header_str(headers, VERSION_HEADER);
    match protocol {
        Protocol::V1 if version.map(str::trim) != Some(VERSION_V1) => {
            return Err(Invalid::Version(shown(version)));
        }
        Protocol::V2
            if !version.is_some_and(|v| {
                v.trim()
                    .strip_prefix(v2_major_minor())
                    .is_some_and(|patch| patch.starts_with('.'))
            }) =>
        {
            return Err(Invalid::VersionV2(shown(version)));
        }
        _ => {}
    }
    if !headers.contains_key(header::USER_AGENT) {
        return Err(Invalid::UserAgent);
    }
    // The block decoder would report a confusing length error on framed data, so the
    // common mix-up gets its own message.
    if body.starts_with(SNAPPY_FRAME_MAGIC) {
        return Err(Invalid::SnappyFramed);
    }
    let len = snap::raw::decompress_len(body)?;
    if len > MAX_DECOMPRESSED {
        return Err(Invalid::TooLarge(len));
    }
    let raw = decompress(body)?;
    match protocol {
        Protocol::V1 => Ok((WriteRequest::decode(raw.as_slice())?, None, raw.len())),
        Protocol::V2 => {
            let request = v2::Request::decode(raw.as_slice()).map_err(Invalid::ProtobufV2)?;
            Ok((v1_form(&request)?, Some(request), raw.len()))
        }
    }
}

/// A 2.0 request's series with labels looked up from the refs, kept in ref order (not sorted
/// here, so [`validate`] catches an encoder that does not sort).
fn v1_form(request: &v2::Request) -> Result<WriteRequest, Invalid> {
    if let Some(first) = request.symbols.first().filter(|s| !s.is_empty()) {
        return Err(Invalid::Symbols(first.clone()));
    }
    let mut timeseries = Vec::with_capacity(request.timeseries.len());
    for (index, ts) in request.timeseries.iter().enumerate() {
        let refs_problem = |e: RefError| Invalid::Refs {
            index,
            problem: e.to_string(),
        };
        let labels = labels_of(request, ts)
            .map_err(refs_problem)?
            .into_iter()
            .map(|(name, value)| Label {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect();
        let symbols = request.symbols.len();
        for e in &ts.exemplars {
            if e.labels_refs.len() % 2 != 0 {
                return Err(Invalid::Refs {
                    index,
                    problem: format!(
                        "an exemplar with an odd number of label refs ({})",
                        e.labels_refs.len()
                    ),
                });
            }
            if let Some(&reference) = e.labels_refs.iter().find(|r| **r as usize >= symbols) {
                return Err(refs_problem(RefError::OutOfRange { reference, symbols }));
            }
        }
        if let Some(m) = &ts.metadata {
            if let Some(reference) = [m.help_ref, m.unit_ref]
                .into_iter()
                .find(|r| *r as usize >= symbols)
            {
                return Err(refs_problem(RefError::OutOfRange { reference, symbols }));
            }
        }
        timeseries.push(TimeSeries {
            labels,
            samples: ts
                .samples
                .iter()
                .map(|s| Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
        });
    }
    Ok(WriteRequest { timeseries })
}

fn is_v2_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case(CONTENT_TYPE_V1))
        && parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("proto") && v.trim() == PROTO_V2
            })
        })
}

/// Senders in the 2.0 era may name the 1.0 message explicitly; anything else is a different
/// protocol.
fn is_v1_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case(CONTENT_TYPE_V1))
    {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("proto") => v.trim() == PROTO_V1,
        _ => true,
    })
}

fn label_set(ts: &TimeSeries) -> String {
    let mut s = String::from("{");
    for (i, l) in ts.labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={:?}", l.name, l.value);
        if s.len() > 200 {
            s.push_str(", …");
            break;
        }
    }
    s.push('}');
    s
}

fn validate(w: &WriteRequest) -> Result<(), Invalid> {
    for (index, ts) in w.timeseries.iter().enumerate() {
        if let Some(problem) = series_problem(ts) {
            return Err(Invalid::Series {
                index,
                labels: label_set(ts),
                problem,
            });
        }
    }
    Ok(())
}

fn series_problem(ts: &TimeSeries) -> Option<String> {
    for l in &ts.labels {
        if l.name.is_empty() {
            return Some(format!("a label has an empty name (value {:?})", l.value));
        }
        if l.value.is_empty() {
            return Some(format!("label {:?} has an empty value", l.name));
        }
    }
    for pair in ts.labels.windows(2) {
        let (a, b) = (&pair[0].name, &pair[1].name);
        // String ordering is byte-wise, which is what the protocol requires.
        if a == b {
            return Some(format!("label name {a:?} is repeated"));
        }
        if a > b {
            return Some(format!(
                "labels not sorted by name: {a:?} comes before {b:?}"
            ));
        }
    }
    if !ts.labels.iter().any(|l| l.name == "__name__") {
        return Some("no __name__ label".to_string());
    }
    if ts.samples.is_empty() {
        return Some("no samples".to_string());
    }
    if ts
        .samples
        .windows(2)
        .any(|p| p[1].timestamp < p[0].timestamp)
    {
        return Some("samples are not in timestamp order".to_string());
    }
    None
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the unit tests of the receiver, its printer and its script share.

    use super::*;
    use crate::remote_write::proto::v1::{Label, Sample};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub const GOOD_HEADERS: &[(&str, &str)] = &[
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("User-Agent", "kubelet-push/test"),
    ];

    pub fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
        }
    }

    pub fn body(w: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&w.encode_to_vec())
            .unwrap()
    }

    pub fn sample_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "node_cpu_usage_seconds_total"),
                        ("node", "demo-win-node"),
                    ],
                    &[(1234.5, 1_795_600_807_000), (1236.0, 1_795_600_817_000)],
                ),
                series(
                    &[
                        ("__name__", "pod_memory_working_set_bytes"),
                        ("namespace", "shop"),
                        ("pod", "web-7d9f8c6b5-x2kqp"),
                    ],
                    &[(157_286_400.0, 1_795_600_807_000)],
                ),
            ],
        }
    }

    pub struct RawResponse {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl RawResponse {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A minimal HTTP/1.1 client, so the test sees exactly the bytes the receiver got.
    pub async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
        let rest = url.trim_start_matches("http://");
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect::<Vec<_>>();
        assert!(
            !headers.iter().any(|(k, _)| k == "transfer-encoding"),
            "fixed-length bodies only"
        );
        RawResponse {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn with_header<'a>(name: &'a str, value: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut h: Vec<_> = GOOD_HEADERS
            .iter()
            .copied()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .collect();
        if let Some(v) = value {
            h.push((name, v));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn retention_bounds_what_is_kept_not_what_is_counted() {
        let rx = Receiver::start_retaining(2).await.unwrap();
        let b = body(&sample_request());
        for _ in 0..3 {
            assert_eq!(post(&rx.url(), GOOD_HEADERS, &b).await.status, 204);
        }
        assert!(rx.wait_for_requests(3, Duration::from_secs(1)).await);
        assert_eq!(rx.requests().len(), 2);
    }

    #[tokio::test]
    async fn valid_write_is_recorded_and_decoded() {
        let rx = Receiver::start().await.unwrap();
        assert!(rx.url().starts_with("http://127.0.0.1:"));
        assert!(rx.url().ends_with("/api/v1/write"));
        let w = sample_request();
        let b = body(&w);
        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!(r.status, 204);
        assert_eq!(r.body, "");
        assert!(rx.wait_for_requests(1, Duration::from_secs(1)).await);

        let got = rx.requests();
        assert_eq!(got.len(), 1);
        let g = &got[0];
        assert_eq!(g.path, "/api/v1/write");
        assert_eq!(g.status, 204);
        assert_eq!(g.rejection, None);
        assert!(g.accepted());
        assert_eq!(g.compressed_bytes, b.len());
        assert_eq!(g.header("user-agent"), Some("kubelet-push/test"));
        assert_eq!(g.header("X-Prometheus-Remote-Write-Version"), Some("0.1.0"));
        let decoded = g.write_request.as_ref().unwrap();
        assert_eq!(decoded, &w);
        let cpu = &decoded.timeseries[0];
        assert_eq!(cpu.labels[0].value, "node_cpu_usage_seconds_total");
        assert_eq!(cpu.labels[1].name, "node");
        assert_eq!(cpu.labels[1].value, "demo-win-node");
        assert_eq!(cpu.samples[1].value, 1236.0);
        assert_eq!(cpu.samples[1].timestamp, 1_795_600_817_000);
        assert_eq!(rx.accepted_series(), w.timeseries);

        // Any path is accepted.
        let other = rx.url().replace("/api/v1/write", "/receive");
        assert_eq!(post(&other, GOOD_HEADERS, &b).await.status, 204);
        assert_eq!(rx.requests()[1].path, "/receive");
        assert_eq!(rx.accepted_series().len(), 4);
        assert!(!rx.wait_for_requests(3, Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn protocol_header_violations_get_400_with_reason() {
        let rx = Receiver::start().await.unwrap();
        let b = body(&sample_request());
        let cases = [
            (
                with_header("Content-Encoding", Some("gzip")),
                "Content-Encoding must be \"snappy\", got \"gzip\"",
            ),
            (
                with_header("Content-Encoding", None),
                "Content-Encoding must be \"snappy\", got no header",
            ),
            (
                with_header("Content-Type", Some("application/json")),
                "Content-Type must be \"application/x-protobuf\" (1.0) or \"application/x-protobuf;proto=io.prometheus.write.v2.Request\" (2.0), got \"application/json\"",
            ),
            (
                // A 2.0 Content-Type makes it a 2.0 request, which needs the 2.0 version.
                with_header(
                    "Content-Type",
                    Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                ),
                "X-Prometheus-Remote-Write-Version must be 2.0.x for a 2.0 body, got \"0.1.0\"",
            ),
            (
                with_header(
                    "Content-Type",
                    Some("application/x-protobuf;proto=something.Else"),
                ),
                "Content-Type must be",
            ),
            (
                with_header("X-Prometheus-Remote-Write-Version", Some("2.0.0")),
                "X-Prometheus-Remote-Write-Version must be \"0.1.0\", got \"2.0.0\"",
            ),
            (
                with_header("User-Agent", None),
                "User-Agent header is missing",
            ),
        ];
        for (i, (headers, want)) in cases.iter().enumerate() {
            let r = post(&rx.url(), headers, &b).await;
            assert_eq!(r.status, 400, "case {i}");
            assert!(r.body.starts_with(want), "case {i}: {:?}", r.body);
            let rec = &rx.requests()[i];
            assert_eq!(rec.status, 400);
            assert_eq!(rec.rejection.as_deref(), Some(r.body.trim_end()));
            assert_eq!(rec.write_request, None);
            assert!(!rec.accepted());
        }
        // The explicit 1.0 content type parameter is fine.
        let ok = with_header(
            "Content-Type",
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
        );
        assert_eq!(post(&rx.url(), &ok, &b).await.status, 204);
        assert_eq!(rx.accepted_series().len(), 2);
    }

    #[tokio::test]
    async fn invalid_series_get_400_with_reason() {
        let rx = Receiver::start().await.unwrap();
        let cases = [
            (
                series(&[("pod", "a"), ("__name__", "up")], &[(1.0, 1)]),
                "series 1 {pod=\"a\", __name__=\"up\"}: labels not sorted by name: \"pod\" comes before \"__name__\"",
            ),
            (
                series(&[("__name__", "up"), ("job", "a"), ("job", "b")], &[(1.0, 1)]),
                "label name \"job\" is repeated",
            ),
            (
                series(&[("__name__", "up"), ("pod", "")], &[(1.0, 1)]),
                "label \"pod\" has an empty value",
            ),
            (
                series(&[("", "x"), ("__name__", "up")], &[(1.0, 1)]),
                "a label has an empty name",
            ),
            (series(&[("job", "a")], &[(1.0, 1)]), "no __name__ label"),
            (series(&[("__name__", "up")], &[]), "no samples"),
            (
                series(&[("__name__", "up")], &[(1.0, 2), (1.0, 1)]),
                "samples are not in timestamp order",
            ),
        ];
        let valid = series(&[("__name__", "up"), ("job", "kubelet")], &[(1.0, 1)]);
        for (i, (bad, want)) in cases.into_iter().enumerate() {
            let w = WriteRequest {
                timeseries: vec![valid.clone(), bad],
            };
            let r = post(&rx.url(), GOOD_HEADERS, &body(&w)).await;
            assert_eq!(r.status, 400, "case {i}");
            assert!(r.body.contains(want), "case {i}: {:?}", r.body);
            let rec = &rx.requests()[i];
            assert_eq!(rec.rejection.as_deref(), Some(r.body.trim_end()));
            // It decoded fine, so what was sent is still inspectable.
            assert_eq!(rec.write_request.as_ref(), Some(&w));
        }
        assert!(rx.accepted_series().is_empty());
    }

    #[tokio::test]
    async fn framed_snappy_and_garbage_bodies_are_rejected() {
        use std::io::Write;
        let rx = Receiver::start().await.unwrap();
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(&sample_request().encode_to_vec()).unwrap();
        let framed = framed.into_inner().unwrap();
        let r = post(&rx.url(), GOOD_HEADERS, &framed).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            "body is snappy framed (stream) format; Remote Write 1.0 uses the block format\n"
        );

        let r = post(&rx.url(), GOOD_HEADERS, b"\xff\xff\xff\xff\xff\xff").await;
        assert_eq!(r.status, 400);
        assert!(
            r.body.starts_with("snappy block decompression failed"),
            "{}",
            r.body
        );

        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff")
            .unwrap();
        let r = post(&rx.url(), GOOD_HEADERS, &not_proto).await;
        assert_eq!(r.status, 400);
        assert!(
            r.body.starts_with("body is not a prometheus.WriteRequest"),
            "{}",
            r.body
        );
        assert_eq!(rx.requests().len(), 3);
        assert!(rx.requests().iter().all(|r| r.write_request.is_none()));
    }

    pub const V2_HEADERS: &[(&str, &str)] = &[
        ("Content-Encoding", "snappy"),
        (
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
        ("User-Agent", "kubelet-push/test"),
    ];

    fn v2_sample_request() -> v2::Request {
        v2::Request {
            symbols: [
                "",
                "__name__",
                "node_cpu_usage_seconds_total",
                "node",
                "demo-win-node",
                "Cumulative CPU time",
                "seconds",
            ]
            .map(String::from)
            .to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    v2::Sample {
                        value: 1234.5,
                        timestamp: 1_795_600_807_000,
                        start_timestamp: 1_795_000_000_000,
                    },
                    v2::Sample {
                        value: 1236.0,
                        timestamp: 1_795_600_817_000,
                        start_timestamp: 1_795_000_000_000,
                    },
                ],
                metadata: Some(v2::Metadata {
                    r#type: 1,
                    help_ref: 5,
                    unit_ref: 6,
                }),
                ..Default::default()
            }],
        }
    }

    fn v2_body(r: &v2::Request) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&r.encode_to_vec())
            .unwrap()
    }

    #[tokio::test]
    async fn a_valid_v2_write_is_decoded_and_answered_with_the_written_counts() {
        let rx = Receiver::start().await.unwrap();
        let w = v2_sample_request();
        let r = post(&rx.url(), V2_HEADERS, &v2_body(&w)).await;
        assert_eq!(r.status, 204);
        assert_eq!(
            r.header("x-prometheus-remote-write-samples-written"),
            Some("2")
        );
        assert_eq!(
            r.header("x-prometheus-remote-write-histograms-written"),
            Some("0")
        );
        assert_eq!(
            r.header("x-prometheus-remote-write-exemplars-written"),
            Some("0")
        );
        let got = &rx.requests()[0];
        assert_eq!(got.protocol, Protocol::V2);
        assert!(got.accepted());
        assert_eq!(got.v2_request.as_ref(), Some(&w));
        assert_eq!(
            rx.accepted_series(),
            vec![series(
                &[
                    ("__name__", "node_cpu_usage_seconds_total"),
                    ("node", "demo-win-node")
                ],
                &[(1234.5, 1_795_600_807_000), (1236.0, 1_795_600_817_000)],
            )]
        );
        // A 1.0 request is still answered without the 2.0 headers.
        let r = post(&rx.url(), GOOD_HEADERS, &body(&sample_request())).await;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-prometheus-remote-write-samples-written"), None);
        assert_eq!(rx.requests()[1].protocol, Protocol::V1);
    }

    #[tokio::test]
    async fn broken_v2_requests_get_400_with_reason() {
        let rx = Receiver::start().await.unwrap();
        let mut unsorted = v2_sample_request();
        unsorted.timeseries[0].labels_refs = vec![3, 4, 1, 2];
        let mut bad_ref = v2_sample_request();
        bad_ref.timeseries[0].labels_refs = vec![1, 2, 3, 40];
        let mut bad_help = v2_sample_request();
        bad_help.timeseries[0].metadata.as_mut().unwrap().help_ref = 99;
        let mut no_empty_first = v2_sample_request();
        no_empty_first.symbols[0] = "x".into();
        let mut odd = v2_sample_request();
        odd.timeseries[0].labels_refs.pop();
        let exemplar = |labels_refs: Vec<u32>| {
            let mut w = v2_sample_request();
            w.timeseries[0].exemplars = vec![v2::Exemplar {
                labels_refs,
                value: 1.0,
                timestamp: 1,
            }];
            w
        };
        let cases = [
            (
                unsorted,
                "labels not sorted by name: \"node\" comes before \"__name__\"",
            ),
            (bad_ref, "series 0: label ref 40 is outside the 7 symbols"),
            (bad_help, "series 0: label ref 99 is outside the 7 symbols"),
            (
                no_empty_first,
                "symbols table must start with \"\", starts with \"x\"",
            ),
            (odd, "series 0: an odd number of label refs (3)"),
            (
                exemplar(vec![1]),
                "series 0: an exemplar with an odd number of label refs (1)",
            ),
            (
                exemplar(vec![1, 70]),
                "series 0: label ref 70 is outside the 7 symbols",
            ),
        ];
        for (i, (w, want)) in cases.iter().enumerate() {
            let r = post(&rx.url(), V2_HEADERS, &v2_body(w)).await;
            assert_eq!(r.status, 400, "case {i}");
            assert!(r.body.contains(want), "case {i}: {:?}", r.body);
            assert_eq!(r.header("x-prometheus-remote-write-samples-written"), None);
        }
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\x2a\xff\xff\xff")
            .unwrap();
        let r = post(&rx.url(), V2_HEADERS, &garbage).await;
        assert!(
            r.body
                .starts_with("body is not an io.prometheus.write.v2.Request"),
            "{}",
            r.body
        );
        assert!(rx.accepted_series().is_empty());
    }

    #[tokio::test]
    async fn a_scripted_old_receiver_answers_v2_like_the_real_ones() {
        let rx = Receiver::start().await.unwrap();
        let w = v2_body(&v2_sample_request());
        rx.answer_v2_like(Some(OldReceiver::Unsupported));
        let r = post(&rx.url(), V2_HEADERS, &w).await;
        assert_eq!(r.status, 415);
        rx.answer_v2_like(Some(OldReceiver::IgnoresIt));
        let r = post(&rx.url(), V2_HEADERS, &w).await;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-prometheus-remote-write-samples-written"), None);
        // 1.0 is taken as always.
        let r = post(&rx.url(), GOOD_HEADERS, &body(&sample_request())).await;
        assert_eq!(r.status, 204);
        let got = rx.requests();
        assert_eq!(
            got.iter()
                .map(|r| (r.status, r.accepted()))
                .collect::<Vec<_>>(),
            [(415, false), (204, false), (204, true)]
        );
        // Nothing of the 2.0 requests counts as stored.
        assert_eq!(rx.accepted_series(), sample_request().timeseries);
        rx.answer_v2_like(None);
        assert_eq!(post(&rx.url(), V2_HEADERS, &w).await.status, 204);
        assert!(rx.requests()[3].accepted());
    }

    #[tokio::test]
    async fn receiver_stops_when_dropped() {
        let rx = Receiver::start().await.unwrap();
        let url = rx.url();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/api/v1/write")
            .to_string();
        drop(rx);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    }
}
