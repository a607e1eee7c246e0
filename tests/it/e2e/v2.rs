//! Remote Write 2.0 against receivers that predate it: Debian's Prometheus 2.42 and
//! VictoriaMetrics 1.79 answer a 2.0 body with a 2xx and store nothing. An agent started with
//! `--remote-write-version 2` must notice (no `X-Prometheus-Remote-Write-Samples-Written` in
//! the answer), resend the same samples as 1.0, stay on 1.0, and lose nothing: the golden
//! series of the 1.0 suite (`values`) arrive exactly, and the outages of `outage` lose nothing
//! with a disk buffer holding 2.0 requests when the receiver comes back.
//!
//! Between each agent of the golden run and the receiver sits a recording pass-through, so the
//! wire sequence itself is asserted: what the receiver answered to the first 2.0 request, and
//! that the request after it carries the same samples as 1.0. The outages talk to the receiver
//! directly (a pass-through would turn "connection refused" into its own 502).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use kubelet_push::remote_write::wire::{decode_v1, decode_v2, labels_of};
use kubelet_push::testkit::server::LocalServer;

use super::outage::outage;
use super::values::{check_fixtures, push_fixtures, Pushed};
use super::*;

#[tokio::test]
async fn prometheus_stores_what_the_kubelet_reported_after_falling_back() {
    if available(Kind::Prometheus) {
        values_after_fallback(Kind::Prometheus, Version::V2).await;
    }
}

#[tokio::test]
async fn victoria_metrics_stores_what_the_kubelet_reported_after_falling_back() {
    if available(Kind::VictoriaMetrics) {
        values_after_fallback(Kind::VictoriaMetrics, Version::V2).await;
    }
}

#[tokio::test]
async fn prometheus_outage_with_a_2_0_buffer_loses_nothing() {
    if available(Kind::Prometheus) {
        outage(Kind::Prometheus, false, Version::V2).await;
    }
}

#[tokio::test]
async fn victoria_metrics_outage_with_a_2_0_buffer_loses_nothing() {
    if available(Kind::VictoriaMetrics) {
        outage(Kind::VictoriaMetrics, false, Version::V2).await;
    }
}

#[tokio::test]
async fn prometheus_outage_with_a_2_0_buffer_and_agent_restart_loses_nothing() {
    if available(Kind::Prometheus) {
        outage(Kind::Prometheus, true, Version::V2).await;
    }
}

#[tokio::test]
async fn victoria_metrics_outage_with_a_2_0_buffer_and_agent_restart_loses_nothing() {
    if available(Kind::VictoriaMetrics) {
        outage(Kind::VictoriaMetrics, true, Version::V2).await;
    }
}

/// `--remote-write-version auto` against the real receivers (part of issue 22's receiver
/// matrix): both predate 2.0, so it ends on 1.0 exactly as `2` does, nothing lost.
#[tokio::test]
async fn prometheus_with_auto_ends_on_1_0_and_stores_what_the_kubelet_reported() {
    if available(Kind::Prometheus) {
        values_after_fallback(Kind::Prometheus, Version::Auto).await;
    }
}

#[tokio::test]
async fn victoria_metrics_with_auto_ends_on_1_0_and_stores_what_the_kubelet_reported() {
    if available(Kind::VictoriaMetrics) {
        values_after_fallback(Kind::VictoriaMetrics, Version::Auto).await;
    }
}

#[tokio::test]
async fn victoria_metrics_outage_with_auto_and_agent_restart_loses_nothing() {
    if available(Kind::VictoriaMetrics) {
        outage(Kind::VictoriaMetrics, true, Version::Auto).await;
    }
}

async fn values_after_fallback(kind: Kind, version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Real::launch(kind, dir.path()).await;
    let mut recorders = Vec::new();
    for _ in 0..4 {
        recorders.push(Recorder::start(receiver.write_url()).await);
    }
    // The metrics are read once the agent has fallen back and pushed twice (the bare 204 and
    // the resend), waited for: the sender runs apart from the polls, so the kubelet having
    // served every document says nothing of how far it got. An agent that never falls back
    // fails the wait.
    let settled = |m: &str| metric_value(m, PROTOCOL_V1) == Some(1.0) && push_attempts(m) >= 2.0;
    let pushed = push_fixtures(|i| recorders[i].url(), version.args(), settled).await;
    for (p, recorder) in pushed.iter().zip(&recorders) {
        check_fallback(kind, p, &recorder.exchanges());
    }
    check_fixtures(&receiver, &pushed).await;
}

/// One agent's fallback, from its wire exchanges, its `/metrics` and its log.
fn check_fallback(kind: Kind, p: &Pushed, wire: &[Exchange]) {
    let at = format!("{} on {kind:?}", p.fixture);
    assert!(wire.len() >= 3, "{at}: {} requests", wire.len());
    let first = &wire[0];
    eprintln!(
        "{at}: first 2.0 request ({} bytes) answered {} with headers {:?}",
        first.body.len(),
        first.status,
        first.answer_headers
    );
    assert_eq!(
        first.content_type, "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        "{at}"
    );
    assert_eq!(first.version, "2.0.0", "{at}");
    // What issue 10 measured, and what makes a 2xx untrustworthy: success, no written counts.
    assert_eq!(first.status, 204, "{at}: {:?}", first.answer_headers);
    assert!(
        !first
            .answer_headers
            .iter()
            .any(|h| h.starts_with("x-prometheus-remote-write-")),
        "{at}: {:?}",
        first.answer_headers
    );
    for (i, later) in wire.iter().enumerate().skip(1) {
        assert_eq!(later.content_type, "application/x-protobuf", "{at}: #{i}");
        assert_eq!(later.version, "0.1.0", "{at}: #{i}");
        assert!(
            (200..300).contains(&later.status),
            "{at}: #{i} answered {}",
            later.status
        );
    }
    // The request after the bare 204 is the same samples, as 1.0.
    let v2 = decode_v2(&first.body).unwrap();
    let mut as_sent: Vec<Series> = v2
        .timeseries
        .iter()
        .map(|ts| {
            let mut labels: Vec<(String, String)> = labels_of(&v2, ts)
                .unwrap()
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            labels.sort();
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            (labels, samples)
        })
        .collect();
    as_sent.sort();
    let resent = v1_series(&wire[1].body);
    assert!(!as_sent.is_empty(), "{at}: an empty first request");
    assert_eq!(resent, as_sent, "{at}: the resent request");
    // Everything the receiver took went as 1.0, and the agent counts exactly that as sent.
    let on_wire: usize = wire[1..]
        .iter()
        .map(|e| {
            v1_series(&e.body)
                .iter()
                .map(|(_, s)| s.len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(on_wire as u64, samples_sent(&p.log), "{at}: samples sent");
    let attempts = push_attempts(&p.metrics);
    // The metrics were read once the fallback was seen, before the stop's flush: every
    // attempt counted then went through the recorder by the end.
    assert!(
        attempts >= 2.0 && attempts <= wire.len() as f64,
        "{at}: {attempts} attempts counted, {} on the wire",
        wire.len()
    );
    assert_eq!(metric_value(&p.metrics, PROTOCOL_V1), Some(1.0), "{at}");
    assert_eq!(metric_value(&p.metrics, PROTOCOL_V2), Some(0.0), "{at}");
    assert_eq!(dropped(&p.metrics), Vec::<&str>::new(), "{at}");
    assert_eq!(fallbacks(&p.log), 1, "{at}: one fallback line: {}", p.log);
}

/// Every push attempt an agent's `/metrics` text counts, whatever its outcome.
fn push_attempts(metrics: &str) -> f64 {
    metric_sum(metrics, "kubelet_push_requests_total")
}

/// A series as (labels sorted, samples as (timestamp, value bits)).
type Series = (Vec<(String, String)>, Vec<(i64, u64)>);

fn v1_series(body: &[u8]) -> Vec<Series> {
    let mut out: Vec<Series> = decode_v1(body)
        .unwrap()
        .timeseries
        .iter()
        .map(|ts| {
            let mut labels: Vec<(String, String)> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            labels.sort();
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort();
    out
}

/// One request through the [`Recorder`] and the receiver's answer.
#[derive(Clone)]
struct Exchange {
    content_type: String,
    version: String,
    body: Bytes,
    status: u16,
    /// The answer's header names with their values, `name: value`, lowercase names.
    answer_headers: Vec<String>,
}

/// A pass-through for remote write that keeps every request and the receiver's answer. It
/// forwards the headers a receiver reads, and returns the receiver's status, its
/// `X-Prometheus-Remote-Write-*` headers and its body.
struct Recorder {
    server: LocalServer,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

impl Recorder {
    async fn start(upstream: String) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let http = reqwest::Client::new();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (log, http, upstream) = (log.clone(), http.clone(), upstream.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let mut request = http.post(&upstream).body(body.clone());
                    for name in [
                        "content-type",
                        "content-encoding",
                        "user-agent",
                        "x-prometheus-remote-write-version",
                    ] {
                        if let Some(v) = headers.get(name) {
                            request = request.header(name, v.as_bytes());
                        }
                    }
                    let answer = match request.send().await {
                        Ok(a) => a,
                        // Recorded as a 502, which the checks of every exchange refuse (a
                        // panic here would only end this connection).
                        Err(e) => {
                            log.lock().unwrap().push(Exchange {
                                content_type: header("content-type"),
                                version: header("x-prometheus-remote-write-version"),
                                body,
                                status: 502,
                                answer_headers: vec![format!("(no answer: {e})")],
                            });
                            return (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new());
                        }
                    };
                    let status = answer.status().as_u16();
                    let answer_headers: Vec<(String, Vec<u8>)> = answer
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                        .collect();
                    let text = answer.bytes().await.unwrap_or_default();
                    log.lock().unwrap().push(Exchange {
                        content_type: header("content-type"),
                        version: header("x-prometheus-remote-write-version"),
                        body,
                        status,
                        answer_headers: answer_headers
                            .iter()
                            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                            .collect(),
                    });
                    let mut out = HeaderMap::new();
                    for (n, v) in answer_headers {
                        if n.starts_with("x-prometheus-remote-write-") {
                            out.insert(
                                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                                HeaderValue::from_bytes(&v).unwrap(),
                            );
                        }
                    }
                    (StatusCode::from_u16(status).unwrap(), out, text)
                }
            }),
        );
        let server = LocalServer::start(app, "recording pass-through")
            .await
            .unwrap();
        Recorder { server, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.server.addr())
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.seen.lock().unwrap().clone()
    }
}
