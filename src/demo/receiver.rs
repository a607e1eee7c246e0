//! A Prometheus Remote Write 1.0 receiver for the `demo` command and for tests. This module
//! owns checking each request against the 1.0 protocol (headers, snappy block compression,
//! `prometheus.WriteRequest` decoding, series well-formedness), recording what arrived,
//! answering with programmable responses, and printing a per-interval tally. It does not own
//! storing or querying samples beyond keeping the decoded requests in memory, Remote Write 2.0,
//! TLS, or authentication.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server::LocalServer;
use crate::remote_write::proto::v1::{TimeSeries, WriteRequest};

pub use crate::remote_write::{is_stale_marker, STALE_NAN_BITS};
/// Compressed bodies above this are refused by the extractor before they reach the checks.
const MAX_COMPRESSED: usize = 32 * 1024 * 1024;
/// Checked against snappy's length header before allocating, so a tiny body cannot claim a
/// huge output.
const MAX_DECOMPRESSED: usize = 128 * 1024 * 1024;
/// Every snappy framed stream starts with this stream identifier chunk.
const SNAPPY_FRAME_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// `tokio::time::interval` panics on a zero period.
const MIN_PRINT_INTERVAL: Duration = Duration::from_millis(10);

/// An answer queued with [`Receiver::push_response`] for the next valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (a receiver slower than the client's timeout).
    pub delay: Option<std::time::Duration>,
}

impl Response {
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: None,
        }
    }

    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    fn into_http(self) -> axum::response::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        for (name, value) in self.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(n), Ok(v)) => {
                    response.headers_mut().append(n, v);
                }
                _ => tracing::warn!(%name, %value, "queued response header is not valid HTTP"),
            }
        }
        response
    }
}

/// One request as it arrived and how it was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub compressed_bytes: usize,
    /// Present whenever the body decoded, even if a series in it was then found invalid.
    pub write_request: Option<WriteRequest>,
    pub status: u16,
    /// Why the request broke the protocol; `None` if it was valid.
    pub rejection: Option<String>,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl ReceivedRequest {
    /// Valid and answered 2xx, so a real receiver would have ingested it.
    pub fn accepted(&self) -> bool {
        self.rejection.is_none() && (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What makes a request violate Remote Write 1.0; the text is sent back with the 400.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("method {0} not allowed: Remote Write uses POST")]
    Method(Method),
    #[error("Content-Encoding must be \"snappy\", got {0}")]
    ContentEncoding(String),
    #[error("Content-Type must be \"application/x-protobuf\", got {0}")]
    ContentType(String),
    #[error("X-Prometheus-Remote-Write-Version must be \"0.1.0\", got {0}")]
    Version(String),
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
    queue: VecDeque<Response>,
}

struct Shared {
    state: Mutex<State>,
    /// Number of requests recorded, for waiters.
    count: watch::Sender<usize>,
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
    /// Starts a receiver that keeps every request it records (for tests).
    pub async fn start() -> std::io::Result<Receiver> {
        Self::start_retaining(usize::MAX).await
    }

    /// Starts a receiver that keeps only the latest `retain` requests, so memory stays
    /// bounded however long it runs.
    pub async fn start_retaining(retain: usize) -> std::io::Result<Receiver> {
        Self::start_with(retain, 0).await
    }

    /// Starts a receiver on a given port of 127.0.0.1, keeping every request.
    pub async fn start_at(port: u16) -> std::io::Result<Receiver> {
        Self::start_with(usize::MAX, port).await
    }

    async fn start_with(retain: usize, port: u16) -> std::io::Result<Receiver> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                requests: Vec::new(),
                recorded: 0,
                retain: retain.max(1),
                queue: VecDeque::new(),
            }),
            count: watch::Sender::new(0),
        });
        let handler_shared = Arc::clone(&shared);
        let app = Router::new()
            .fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let shared = Arc::clone(&handler_shared);
                    async move {
                        let (response, delay) = handle(&shared, &method, &uri, &headers, &body);
                        if let Some(delay) = delay {
                            tokio::time::sleep(delay).await;
                        }
                        response
                    }
                },
            )
            .layer(DefaultBodyLimit::max(MAX_COMPRESSED));
        let server = LocalServer::start_at(app, "remote write receiver", port).await?;
        Ok(Receiver { server, shared })
    }

    /// The conventional write URL; any other path on this host works too.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.server.addr())
    }

    /// Queues an answer for the next valid request instead of the default 204. Queued
    /// answers are used first in, first out.
    pub fn push_response(&self, r: Response) {
        self.shared.lock().queue.push_back(r);
    }

    /// Forgets the queued answers: from now on every valid request gets 204.
    pub fn clear_responses(&self) {
        self.shared.lock().queue.clear();
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// All series of accepted requests, in arrival order.
    pub fn accepted_series(&self) -> Vec<TimeSeries> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.accepted())
            .filter_map(|r| r.write_request.as_ref())
            .flat_map(|w| w.timeseries.iter().cloned())
            .collect()
    }

    /// Waits until at least `n` requests (valid or not) have been recorded; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.count.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        matches!(reached, Ok(Ok(_)))
    }
}

fn handle(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (axum::response::Response, Option<std::time::Duration>) {
    let (write_request, verdict) = match decode(method, headers, body) {
        Ok(w) => {
            let verdict = validate(&w);
            (Some(w), verdict)
        }
        Err(e) => (None, Err(e)),
    };
    let mut state = shared.lock();
    let (response, rejection) = match verdict {
        Ok(()) => {
            let queued = state
                .queue
                .pop_front()
                .unwrap_or_else(|| Response::status(204));
            (queued, None)
        }
        Err(e) => {
            let message = e.to_string();
            tracing::debug!(%message, "rejected remote write request");
            (
                Response::status(400).with_body(format!("{message}\n")),
                Some(message),
            )
        }
    };
    state.requests.push(ReceivedRequest {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        compressed_bytes: body.len(),
        write_request,
        status: response.status,
        rejection,
        at: std::time::Instant::now(),
    });
    state.recorded += 1;
    if state.requests.len() > state.retain {
        let excess = state.requests.len() - state.retain;
        state.requests.drain(..excess);
    }
    let recorded = state.recorded;
    drop(state);
    shared.count.send_replace(recorded);
    let delay = response.delay;
    (response.into_http(), delay)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<non-ASCII>"))
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "no header".to_string(), |v| format!("{v:?}"))
}

fn decode(method: &Method, headers: &HeaderMap, body: &[u8]) -> Result<WriteRequest, Invalid> {
    if method != Method::POST {
        return Err(Invalid::Method(method.clone()));
    }
    let encoding = header_str(headers, header::CONTENT_ENCODING);
    if !encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case("snappy")) {
        return Err(Invalid::ContentEncoding(shown(encoding)));
    }
    let content_type = header_str(headers, header::CONTENT_TYPE);
    if !content_type.is_some_and(is_v1_content_type) {
        return Err(Invalid::ContentType(shown(content_type)));
    }
    let version = header_str(
        headers,
        HeaderName::from_static("x-prometheus-remote-write-version"),
    );
    if version.map(str::trim) != Some("0.1.0") {
        return Err(Invalid::Version(shown(version)));
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
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(WriteRequest::decode(raw.as_slice())?)
}

/// Senders in the 2.0 era may name the 1.0 message explicitly; anything else is a different
/// protocol.
fn is_v1_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/x-protobuf"))
    {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("proto") => {
            v.trim() == "prometheus.WriteRequest"
        }
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

/// What arrived during one printing interval, plus the latest known node values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub requests: usize,
    /// Requests that were invalid or answered non-2xx.
    pub not_accepted: usize,
    /// Series and samples count accepted requests only, so retries are not counted twice.
    pub series: usize,
    pub samples: usize,
    pub compressed_bytes: usize,
    pub stale_markers: usize,
    pub node_cpu_cores: Option<f64>,
    pub node_memory_mib: Option<f64>,
    /// Distinct `pod` label values in this interval.
    pub pods: usize,
    pub up: Option<f64>,
}

impl Tally {
    /// The one line the printer writes for this interval.
    pub fn line(&self, every: Duration) -> String {
        if self.requests == 0 {
            return format!(
                "nothing arrived in the last {}",
                humantime::format_duration(every)
            );
        }
        let opt = |v: Option<f64>, decimals: usize| {
            v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
        };
        format!(
            "{} req ({} not accepted), {} series, {} samples, {:.1} KiB, {} stale | \
             node cpu {} cores, mem {} MiB, {} pods, up {}",
            self.requests,
            self.not_accepted,
            self.series,
            self.samples,
            self.compressed_bytes as f64 / 1024.0,
            self.stale_markers,
            opt(self.node_cpu_cores, 2),
            opt(self.node_memory_mib, 0),
            self.pods,
            opt(self.up, 0),
        )
    }
}

/// Turns successive batches of requests into [`Tally`]s, remembering the latest node values
/// across intervals because a rate needs two samples that may arrive in different ones.
#[derive(Debug, Clone, Default)]
pub struct TallyTracker {
    cpu: Option<(i64, f64)>,
    cpu_before: Option<(i64, f64)>,
    memory_bytes: Option<f64>,
    up: Option<f64>,
}

impl TallyTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, requests: &[ReceivedRequest]) -> Tally {
        let mut tally = Tally {
            requests: requests.len(),
            ..Tally::default()
        };
        let mut pods = BTreeSet::new();
        for r in requests {
            tally.compressed_bytes += r.compressed_bytes;
            let Some(w) = r.write_request.as_ref().filter(|_| r.accepted()) else {
                tally.not_accepted += 1;
                continue;
            };
            for ts in &w.timeseries {
                tally.series += 1;
                tally.samples += ts.samples.len();
                tally.stale_markers += ts
                    .samples
                    .iter()
                    .filter(|s| is_stale_marker(s.value))
                    .count();
                let mut name = "";
                for l in &ts.labels {
                    match l.name.as_str() {
                        "__name__" => name = &l.value,
                        "pod" => {
                            pods.insert(l.value.clone());
                        }
                        _ => {}
                    }
                }
                let mut live = ts.samples.iter().filter(|s| !is_stale_marker(s.value));
                match name {
                    "node_cpu_usage_seconds_total" => {
                        for s in live {
                            if self.cpu.is_none_or(|(t, _)| s.timestamp > t) {
                                self.cpu_before = self.cpu;
                                self.cpu = Some((s.timestamp, s.value));
                            }
                        }
                    }
                    "node_memory_working_set_bytes" => {
                        if let Some(s) = live.next_back() {
                            self.memory_bytes = Some(s.value);
                        }
                    }
                    "up" => {
                        if let Some(s) = live.next_back() {
                            self.up = Some(s.value);
                        }
                    }
                    _ => {}
                }
            }
        }
        tally.pods = pods.len();
        tally.node_cpu_cores = match (self.cpu_before, self.cpu) {
            // A counter reset makes the difference meaningless until the next sample.
            (Some((t0, v0)), Some((t1, v1))) if t1 > t0 && v1 >= v0 => {
                Some((v1 - v0) / ((t1 - t0) as f64 / 1000.0))
            }
            _ => None,
        };
        tally.node_memory_mib = self.memory_bytes.map(|b| b / (1024.0 * 1024.0));
        tally.up = self.up;
        tally
    }
}

/// Writes one [`Tally::line`] per `every` (at least 10 ms) until `cancel` fires or writing
/// fails. The printer keeps the receiver's records alive, not its server.
pub fn spawn_printer(
    receiver: &Receiver,
    every: Duration,
    mut out: impl std::io::Write + Send + 'static,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let shared = Arc::clone(&receiver.shared);
    let every = every.max(MIN_PRINT_INTERVAL);
    tokio::spawn(async move {
        let mut tracker = TallyTracker::new();
        let mut seen = 0;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let tally = {
                let state = shared.lock();
                let unread = (state.recorded - seen).min(state.requests.len());
                let fresh = &state.requests[state.requests.len() - unread..];
                seen = state.recorded;
                tracker.observe(fresh)
            };
            if let Err(err) = writeln!(out, "{}", tally.line(every)).and_then(|()| out.flush()) {
                tracing::debug!(%err, "tally printer stopped: output closed");
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::proto::v1::{Label, Sample};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const GOOD_HEADERS: &[(&str, &str)] = &[
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("User-Agent", "kubelet-push/test"),
    ];

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
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

    fn body(w: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&w.encode_to_vec())
            .unwrap()
    }

    fn sample_request() -> WriteRequest {
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

    struct RawResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl RawResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A minimal HTTP/1.1 client, so the test sees exactly the bytes the receiver got.
    async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
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
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
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

    fn with_header<'a>(name: &'a str, value: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
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
                "Content-Type must be \"application/x-protobuf\", got \"application/json\"",
            ),
            (
                with_header(
                    "Content-Type",
                    Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
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

    #[tokio::test]
    async fn queued_responses_are_used_in_order() {
        let rx = Receiver::start().await.unwrap();
        rx.push_response(
            Response::status(503)
                .with_header("Retry-After", "2")
                .with_body("overloaded"),
        );
        rx.push_response(Response::status(200).with_body("ok"));
        let w = sample_request();
        let b = body(&w);

        // An invalid request does not consume the queue.
        let bad = with_header("Content-Encoding", Some("gzip"));
        assert_eq!(post(&rx.url(), &bad, &b).await.status, 400);

        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(r.body, "overloaded");
        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!(r.status, 204);

        let got = rx.requests();
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [400, 503, 200, 204]);
        assert!(!got[1].accepted());
        assert_eq!(got[1].rejection, None);
        assert_eq!(got[1].write_request.as_ref(), Some(&w));
        // Only the 200 and the 204 count as accepted.
        assert_eq!(rx.accepted_series().len(), 2 * w.timeseries.len());
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

    fn accepted(w: WriteRequest, bytes: usize) -> ReceivedRequest {
        ReceivedRequest {
            path: "/api/v1/write".into(),
            headers: Vec::new(),
            compressed_bytes: bytes,
            write_request: Some(w),
            status: 204,
            rejection: None,
            at: std::time::Instant::now(),
        }
    }

    #[test]
    fn tally_counts_and_derives_node_values() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let first = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "node_cpu_usage_seconds_total")],
                    &[(100.0, 10_000)],
                ),
                series(
                    &[("__name__", "node_memory_working_set_bytes")],
                    &[(3.0 * 1024.0 * 1024.0 * 1024.0, 10_000)],
                ),
                series(&[("__name__", "up")], &[(1.0, 10_000)]),
                series(
                    &[("__name__", "pod_cpu_usage_seconds_total"), ("pod", "a")],
                    &[(1.0, 10_000)],
                ),
                series(
                    &[("__name__", "pod_memory_working_set_bytes"), ("pod", "a")],
                    &[(1.0, 10_000)],
                ),
                series(
                    &[("__name__", "pod_cpu_usage_seconds_total"), ("pod", "b")],
                    // A plain NaN is a value, not a stale marker.
                    &[(stale, 10_000), (f64::NAN, 10_001)],
                ),
            ],
        };
        let mut rejected = accepted(first.clone(), 7);
        rejected.status = 503;
        let mut tracker = TallyTracker::new();
        let t = tracker.observe(&[accepted(first, 1000), rejected]);
        assert_eq!(
            t,
            Tally {
                requests: 2,
                not_accepted: 1,
                series: 6,
                samples: 7,
                compressed_bytes: 1007,
                stale_markers: 1,
                node_cpu_cores: None,
                node_memory_mib: Some(3072.0),
                pods: 2,
                up: Some(1.0),
            }
        );

        // The rate spans intervals: 5 CPU-seconds over 10 s is half a core.
        let second = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "node_cpu_usage_seconds_total")],
                    &[(105.0, 20_000)],
                ),
                series(&[("__name__", "up")], &[(0.0, 20_000), (stale, 20_001)]),
            ],
        };
        let t = tracker.observe(&[accepted(second, 10)]);
        assert_eq!(t.node_cpu_cores, Some(0.5));
        assert_eq!(t.node_memory_mib, Some(3072.0));
        assert_eq!(t.up, Some(0.0));
        assert_eq!((t.series, t.samples, t.stale_markers, t.pods), (2, 3, 1, 0));

        let t = tracker.observe(&[]);
        assert_eq!(t.requests, 0);
    }

    #[test]
    fn tally_line_format() {
        let t = Tally {
            requests: 3,
            not_accepted: 1,
            series: 412,
            samples: 415,
            compressed_bytes: 18_637,
            stale_markers: 2,
            node_cpu_cores: Some(0.8449),
            node_memory_mib: Some(5123.4),
            pods: 14,
            up: Some(1.0),
        };
        assert_eq!(
            t.line(Duration::from_secs(10)),
            "3 req (1 not accepted), 412 series, 415 samples, 18.2 KiB, 2 stale | \
             node cpu 0.84 cores, mem 5123 MiB, 14 pods, up 1"
        );
        let unknown = Tally {
            requests: 1,
            ..Tally::default()
        };
        assert_eq!(
            unknown.line(Duration::from_secs(5)),
            "1 req (0 not accepted), 0 series, 0 samples, 0.0 KiB, 0 stale | \
             node cpu - cores, mem - MiB, 0 pods, up -"
        );
        assert_eq!(
            Tally::default().line(Duration::from_millis(1500)),
            "nothing arrived in the last 1s 500ms"
        );
    }

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl SharedBuf {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[tokio::test]
    async fn printer_writes_a_line_per_interval() {
        let rx = Receiver::start().await.unwrap();
        let out = SharedBuf::default();
        let cancel = CancellationToken::new();
        let every = Duration::from_millis(100);
        let printer = spawn_printer(&rx, every, out.clone(), cancel.clone());

        let b = body(&sample_request());
        assert_eq!(post(&rx.url(), GOOD_HEADERS, &b).await.status, 204);
        let want = format!(
            "1 req (0 not accepted), 2 series, 3 samples, {:.1} KiB, 0 stale | \
             node cpu 0.15 cores, mem - MiB, 1 pods, up -",
            b.len() as f64 / 1024.0
        );
        // Wait for the request's line and a quiet interval after it, within a bounded time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let lines = out.lines();
            if let Some(i) = lines.iter().position(|l| *l == want) {
                if lines[i + 1..]
                    .iter()
                    .any(|l| l == "nothing arrived in the last 100ms")
                {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "{lines:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), printer)
            .await
            .unwrap()
            .unwrap();
        let lines = out.lines();
        assert_eq!(lines.iter().filter(|l| l.contains(" req ")).count(), 1);
    }
}
