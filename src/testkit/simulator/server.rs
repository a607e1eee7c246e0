//! The simulated kubelet over HTTP: a loopback HTTP/1.1 server answering `GET /stats/summary`,
//! `GET /pods` and `GET /metrics/probes` with the model's documents at the time of the
//! request (404 elsewhere, 405
//! for other methods). With the `test-support` feature (tests only) it also counts requests,
//! keeps the last `Authorization` header and applies injected [`Fault`]s to the summary;
//! release builds compile none of that. It owns neither TLS nor authentication: no credential is ever checked.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::model::SimulatedKubelet;
use crate::testkit::server::LocalServer;

/// Everything the release binary leaves out: tests count and inspect requests and make the
/// kubelet misbehave.
#[cfg(any(test, feature = "test-support"))]
#[derive(Default)]
struct Script {
    /// `/stats/summary` requests: one per poll.
    requests: std::sync::atomic::AtomicUsize,
    pod_requests: std::sync::atomic::AtomicUsize,
    probe_requests: std::sync::atomic::AtomicUsize,
    last_authorization: Mutex<Option<String>>,
    fault: Mutex<Fault>,
}

/// A misbehaviour the server applies to every `/stats/summary` request until replaced.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Answer with this status and a short text body.
    Status(u16),
    /// Answer 200 with a document cut off halfway.
    BrokenJson,
    /// Wait this long, then answer normally.
    Delay(std::time::Duration),
}

struct ServerState {
    sim: Mutex<SimulatedKubelet>,
    #[cfg(any(test, feature = "test-support"))]
    script: Script,
}

/// An HTTP/1.1 server on `127.0.0.1` serving a [`SimulatedKubelet`]. It stops when dropped.
pub struct KubeletServer {
    server: LocalServer,
    /// The handler holds the state; tests read and script it through this second handle.
    #[cfg(any(test, feature = "test-support"))]
    state: Arc<ServerState>,
}

impl KubeletServer {
    pub async fn start(sim: SimulatedKubelet) -> std::io::Result<KubeletServer> {
        let state = Arc::new(ServerState {
            sim: Mutex::new(sim),
            #[cfg(any(test, feature = "test-support"))]
            script: Script::default(),
        });
        let handler_state = Arc::clone(&state);
        let app = Router::new().fallback(move |request: Request| {
            let state = Arc::clone(&handler_state);
            async move { handle(&state, request).await }
        });
        let server = LocalServer::start(app, "simulated kubelet").await?;
        Ok(KubeletServer {
            server,
            #[cfg(any(test, feature = "test-support"))]
            state,
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}

#[cfg(any(test, feature = "test-support"))]
impl KubeletServer {
    /// `/stats/summary` requests received: one per poll.
    pub fn requests(&self) -> usize {
        use std::sync::atomic::Ordering;
        self.state.script.requests.load(Ordering::SeqCst)
    }

    /// `/pods` requests received.
    pub fn pod_requests(&self) -> usize {
        use std::sync::atomic::Ordering;
        self.state.script.pod_requests.load(Ordering::SeqCst)
    }

    /// `/metrics/probes` requests received.
    pub fn probe_requests(&self) -> usize {
        use std::sync::atomic::Ordering;
        self.state.script.probe_requests.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of the most recent request, if it had one.
    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.state.script.last_authorization).clone()
    }

    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.state.script.fault) = fault;
    }
}

/// A panic in another handler must not take the simulator down with it, so poisoning is
/// ignored: the guarded values stay consistent after any single assignment.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn handle(state: &ServerState, request: Request) -> Response {
    #[cfg(any(test, feature = "test-support"))]
    state.script.record(&request);
    let path = request.uri().path();
    if !["/stats/summary", "/pods", "/metrics/probes"].contains(&path) {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    if request.method() != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n").into_response();
    }
    if path == "/pods" {
        return json_response(lock(&state.sim).pods_json(SystemTime::now()));
    }
    if path == "/metrics/probes" {
        let text = lock(&state.sim).probes_text(SystemTime::now());
        return (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response();
    }
    #[cfg(any(test, feature = "test-support"))]
    if let Some(faulty) = state.script.apply_fault(&state.sim).await {
        return faulty;
    }
    let doc = lock(&state.sim).summary_json(SystemTime::now());
    json_response(doc)
}

#[cfg(any(test, feature = "test-support"))]
impl Script {
    fn record(&self, request: &Request) {
        let counter = match request.uri().path() {
            "/pods" => &self.pod_requests,
            "/metrics/probes" => &self.probe_requests,
            _ => &self.requests,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *lock(&self.last_authorization) = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    }

    /// The answer the current fault gives instead of the document, if it replaces it.
    async fn apply_fault(&self, sim: &Mutex<SimulatedKubelet>) -> Option<Response> {
        let fault = lock(&self.fault).clone();
        match fault {
            Fault::None => None,
            Fault::Status(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Some((status, format!("simulated fault: status {code}\n")).into_response())
            }
            Fault::BrokenJson => {
                let mut doc = lock(sim).summary_json(SystemTime::now());
                let mut cut = doc.len() / 2;
                while !doc.is_char_boundary(cut) {
                    cut -= 1;
                }
                doc.truncate(cut);
                Some(json_response(doc))
            }
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
        }
    }
}

fn json_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct RawResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    /// A minimal HTTP/1.1 client: the tests want to see exactly what went over the wire.
    async fn get(url: &str, path: &str, extra: &[(&str, &str)]) -> std::io::Result<RawResponse> {
        let addr = url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw)).await??;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no header end"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
        {
            body = dechunk(&body)?;
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let eol = data
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| std::io::Error::other("bad chunk"))?;
            let size = usize::from_str_radix(&String::from_utf8_lossy(&data[..eol]), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
            data = &data[eol + 2 + size + 2..];
        }
    }

    #[tokio::test]
    async fn server_serves_summary_and_records_authorization() {
        let server = KubeletServer::start(SimulatedKubelet::new(6, 1, SystemTime::now()))
            .await
            .unwrap();
        assert!(server.url().starts_with("http://127.0.0.1:"));
        assert!(!server.url().ends_with('/'));
        let r = get(
            &server.url(),
            "/stats/summary",
            &[("Authorization", "Bearer demo-token")],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["node"]["nodeName"], "demo-win-node");
        assert_eq!(v["pods"].as_array().unwrap().len(), 6);
        assert_eq!(
            server.last_authorization().as_deref(),
            Some("Bearer demo-token")
        );

        let r = get(&server.url(), "/metrics/resource", &[]).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(server.last_authorization(), None);
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn server_faults() {
        let server = KubeletServer::start(SimulatedKubelet::new(3, 2, SystemTime::now()))
            .await
            .unwrap();
        let url = server.url();

        server.set_fault(Fault::Status(503));
        let r = get(&url, "/stats/summary", &[]).await.unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "simulated fault: status 503\n"
        );

        server.set_fault(Fault::BrokenJson);
        let r = get(&url, "/stats/summary", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.starts_with(b"{\"node\":{"));
        let err = serde_json::from_slice::<Value>(&r.body).unwrap_err();
        assert!(err.is_eof(), "truncated, not garbled: {err}");

        server.set_fault(Fault::Delay(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        let r = get(&url, "/stats/summary", &[]).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(r.status, 200);
        serde_json::from_slice::<Value>(&r.body).unwrap();

        server.set_fault(Fault::None);
        let r = get(&url, "/stats/summary", &[]).await.unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["pods"].as_array().unwrap().len(), 3);
        assert_eq!(server.requests(), 4);
    }

    #[tokio::test]
    async fn server_stops_when_dropped() {
        let server = KubeletServer::start(SimulatedKubelet::new(1, 2, SystemTime::now()))
            .await
            .unwrap();
        let addr = server.url().trim_start_matches("http://").to_string();
        drop(server);
        // Let the aborted task run its cancellation so the listener is closed.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    }
}
