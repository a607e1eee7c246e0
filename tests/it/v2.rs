//! Remote Write 2.0 delivery and the fallback to 1.0, against the in-process receiver on
//! 127.0.0.1, decoding what went over the wire. The sender is driven directly with 2.0 bodies
//! built with the prost types, each with its expected 1.0 form written out by hand (not
//! derived by the conversion under test).

use std::sync::Arc;
use std::time::Duration;

use kubelet_push::buffer::disk::DiskBuffer;
use kubelet_push::buffer::memory::MemoryBuffer;
use kubelet_push::buffer::{Buffer, Queue};
use kubelet_push::remote_write::proto::v1::{Label, Sample, TimeSeries};
use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::Request;
use kubelet_push::remote_write::{
    Negotiated, Protocol, RemoteWriteClient, CONTENT_TYPE_V1, CONTENT_TYPE_V2, STALE_NAN_BITS,
};
use kubelet_push::sender::{self, SenderSettings};
use kubelet_push::telemetry::{DestinationMetrics, DropReason, Metrics};
use kubelet_push::testkit::receiver::{OldReceiver, ReceivedRequest, Receiver, Response};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{now_ms, wait_until, Logs, PATIENCE};

const FALLBACK_LINE: &str = "the receiver does not take Remote Write 2.0";
const PARTIAL_LINE: &str = "the receiver wrote fewer samples than the request held";

/// Poll `poll` of a node with `pods` pods: one 2.0 request (`job` and `pod` labels, a counter
/// with metadata and start timestamps, pod 0's value a stale marker from poll 2 on), and the
/// 1.0 series a receiver must end up with.
fn poll(poll: i64, pods: i64) -> (Request, Vec<TimeSeries>) {
    let ts = now_ms() - 60_000 + poll * 1_000;
    // Interned in first-use order, as an encoder does; refs by label name.
    let mut symbols: Vec<String> = vec![String::new()];
    let mut intern = |s: &str| -> u32 {
        if let Some(i) = symbols.iter().position(|x| x == s) {
            return i as u32;
        }
        symbols.push(s.to_owned());
        (symbols.len() - 1) as u32
    };
    let mut series = Vec::new();
    let mut expected = Vec::new();
    for pod in 0..pods {
        let pod_name = format!("web-{pod}");
        let value = if pod == 0 && poll >= 2 {
            f64::from_bits(STALE_NAN_BITS)
        } else {
            (poll * 100 + pod) as f64 + 0.5
        };
        let labels = [
            ("__name__", "pod_cpu_usage_seconds_total"),
            ("job", "kubelet"),
            ("pod", pod_name.as_str()),
        ];
        let labels_refs = labels
            .iter()
            .flat_map(|(n, v)| [intern(n), intern(v)])
            .collect();
        series.push(v2::TimeSeries {
            labels_refs,
            samples: vec![v2::Sample {
                value,
                timestamp: ts,
                start_timestamp: ts - 3_600_000,
            }],
            metadata: Some(v2::Metadata {
                r#type: 1,
                help_ref: intern("Cumulative CPU time consumed by the pod"),
                unit_ref: intern("seconds"),
            }),
            ..Default::default()
        });
        expected.push(TimeSeries {
            labels: vec![
                label("__name__", "pod_cpu_usage_seconds_total"),
                label("job", "kubelet"),
                label("pod", &pod_name),
            ],
            samples: vec![Sample {
                value,
                timestamp: ts,
            }],
        });
    }
    let request = v2::Request {
        symbols,
        timeseries: series,
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap();
    let batch = Request {
        protocol: Protocol::V2,
        body: body.into(),
        samples: pods as u32,
        oldest_ms: ts,
        newest_ms: ts,
    };
    (batch, expected)
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

/// Series compared by their encoding: the stale marker is a NaN, never equal to itself.
fn bytes(series: &[TimeSeries]) -> Vec<Vec<u8>> {
    series.iter().map(Message::encode_to_vec).collect()
}

struct Running {
    task: JoinHandle<()>,
    drain: CancellationToken,
    stop: CancellationToken,
    metrics: Arc<DestinationMetrics>,
}

fn start_sender(rx: &Receiver, queue: Arc<Queue>, negotiated: Negotiated) -> Running {
    start_sender_at(&rx.url(), queue, negotiated)
}

fn start_sender_at(url: &str, queue: Arc<Queue>, negotiated: Negotiated) -> Running {
    // Never behind: each buffered request goes as it is (merging: the catch-up tests).
    start_sender_with(
        url,
        queue,
        negotiated,
        Duration::from_secs(3600),
        2 << 20,
        None,
    )
}

/// A sender that is behind from its first request on (a poll interval of zero): whatever
/// waits goes merged, as after an outage.
fn start_catching_up(rx: &Receiver, queue: Arc<Queue>, negotiated: Negotiated) -> Running {
    start_sender_with(&rx.url(), queue, negotiated, Duration::ZERO, 2 << 20, None)
}

fn start_sender_with(
    url: &str,
    queue: Arc<Queue>,
    negotiated: Negotiated,
    interval: Duration,
    max_catch_up_bytes: u64,
    max_sample_age: Option<Duration>,
) -> Running {
    let settings = sender_settings(interval, max_catch_up_bytes, max_sample_age);
    // No request to the in-process receiver is cut short and sent again (which the exact
    // request lists below would show), however loaded the machine.
    spawn_sender(url, PATIENCE, queue, negotiated, settings)
}

/// Retries a few milliseconds apart, so a test's failures cost it no time.
fn sender_settings(
    interval: Duration,
    max_catch_up_bytes: u64,
    max_sample_age: Option<Duration>,
) -> SenderSettings {
    SenderSettings {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_sample_age,
        max_catch_up_bytes,
        interval,
    }
}

/// The sender on `queue`, to `url` with `--remote-timeout` `timeout`.
fn spawn_sender(
    url: &str,
    timeout: Duration,
    queue: Arc<Queue>,
    negotiated: Negotiated,
    settings: SenderSettings,
) -> Running {
    let client = RemoteWriteClient::new(
        url.parse().unwrap(),
        timeout,
        &[],
        &kubelet_push::remote_write::access::Access::none(),
    )
    .unwrap();
    let metrics = Metrics::new().destination(url);
    let (drain, stop) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(sender::run(
        client,
        queue,
        metrics.clone(),
        settings,
        negotiated,
        sender::Ending::new(drain.clone(), stop.clone()),
    ));
    Running {
        task,
        drain,
        stop,
        metrics,
    }
}

impl Running {
    /// Lets the sender empty the queue, then waits for it to end.
    async fn drained(self) -> Arc<DestinationMetrics> {
        self.drain.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the sender drains the queue")
            .unwrap();
        self.metrics
    }
}

/// Not one sample dropped, for any reason.
fn assert_nothing_dropped(metrics: &DestinationMetrics, what: impl std::fmt::Debug) {
    for reason in DropReason::ALL {
        assert_eq!(metrics.dropped_total(reason), 0, "{what:?} {reason:?}");
    }
}

fn memory_queue(batches: &[Request]) -> Arc<Queue> {
    let mut buffer = MemoryBuffer::new(64 << 20);
    for b in batches {
        buffer.push(b.clone()).unwrap();
    }
    Arc::new(Queue::new(Box::new(buffer)))
}

/// (protocol, Content-Type, version header, status) of every request, in arrival order.
fn wire(requests: &[ReceivedRequest]) -> Vec<(Protocol, String, String, u16)> {
    requests
        .iter()
        .map(|r| {
            (
                r.protocol,
                r.header("content-type").unwrap_or_default().to_owned(),
                r.header("x-prometheus-remote-write-version")
                    .unwrap_or_default()
                    .to_owned(),
                r.status,
            )
        })
        .collect()
}

fn v2_wire(status: u16) -> (Protocol, String, String, u16) {
    (Protocol::V2, CONTENT_TYPE_V2.into(), "2.0.0".into(), status)
}

fn v1_wire(status: u16) -> (Protocol, String, String, u16) {
    (Protocol::V1, CONTENT_TYPE_V1.into(), "0.1.0".into(), status)
}

/// The `kubelet_push_remote_write_protocol` gauges of one destination, (1.0, 2.0).
fn protocol_gauge(metrics: &DestinationMetrics) -> (String, String) {
    match metrics.remote_write_protocol_now() {
        Some(Protocol::V1) => ("1".into(), "0".into()),
        Some(Protocol::V2) => ("0".into(), "1".into()),
        None => panic!("no protocol recorded for {}", metrics.url()),
    }
}

#[tokio::test]
async fn a_v2_receiver_gets_v2_and_no_fallback_happens() {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::start().await.unwrap();
    let polls: Vec<_> = (0..3).map(|p| poll(p, 4)).collect();
    let batches: Vec<Request> = polls.iter().map(|(b, _)| b.clone()).collect();
    let negotiated = Negotiated::new(Protocol::V2);
    let metrics = start_sender(&rx, memory_queue(&batches), negotiated.clone())
        .drained()
        .await;

    let got = rx.requests();
    assert_eq!(wire(&got), vec![v2_wire(204); 3]);
    for (r, b) in got.iter().zip(&batches) {
        // Exactly the body that was buffered, metadata and start timestamps included.
        let sent = snap::raw::Decoder::new().decompress_vec(&b.body).unwrap();
        assert_eq!(r.v2_request.as_ref().unwrap().encode_to_vec(), sent);
        assert_eq!(
            r.v2_request.as_ref().unwrap().timeseries[1].samples[0].start_timestamp,
            b.newest_ms - 3_600_000
        );
    }
    let want: Vec<TimeSeries> = polls.iter().flat_map(|(_, e)| e.clone()).collect();
    assert_eq!(bytes(&rx.accepted_series()), bytes(&want));
    assert_eq!(negotiated.get(), Protocol::V2);
    assert_eq!(metrics.samples_sent.get(), 12);
    assert_eq!(metrics.dropped_total(DropReason::ReceiverRefused), 0);
    assert_eq!(protocol_gauge(&metrics), ("0".into(), "1".into()));
    assert!(!logs.text().contains(FALLBACK_LINE), "{}", logs.text());
}

/// An old receiver (415, or 204 without the written headers storing nothing): the first 2.0
/// request is sent again as 1.0, the rest of the buffer goes as 1.0, the destination stays
/// on 1.0, one line says so, and every sample arrives once, in order.
async fn falls_back(old: OldReceiver, first_status: u16) {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::start().await.unwrap();
    rx.answer_v2_like(Some(old));
    let polls: Vec<_> = (0..4).map(|p| poll(p, 3)).collect();
    let batches: Vec<Request> = polls.iter().map(|(b, _)| b.clone()).collect();
    let negotiated = Negotiated::new(Protocol::V2);
    let queue = memory_queue(&batches[..3]);
    // Secrets in the URL must not reach the log line.
    let url = rx.url().replace("http://", "http://user:s3cret@") + "?token=s3cret";
    let running = start_sender_at(&url, queue.clone(), negotiated.clone());
    assert!(rx.wait_for_requests(4, PATIENCE).await);
    // A 2.0 request buffered after the fallback (a poll encoded just before it) is converted too.
    queue.push(batches[3].clone()).1.unwrap();
    let metrics = running.drained().await;

    let mut want_wire = vec![v2_wire(first_status)];
    want_wire.extend(vec![v1_wire(204); 4]);
    assert_eq!(wire(&rx.requests()), want_wire);
    let want: Vec<TimeSeries> = polls.iter().flat_map(|(_, e)| e.clone()).collect();
    assert_eq!(bytes(&rx.accepted_series()), bytes(&want));
    // The stale markers made it through the conversion with their bits.
    let stale = rx
        .accepted_series()
        .iter()
        .flat_map(|t| t.samples.clone())
        .filter(|s| s.value.to_bits() == STALE_NAN_BITS)
        .count();
    assert_eq!(stale, 2);
    assert_eq!(negotiated.get(), Protocol::V1);
    assert_eq!(protocol_gauge(&metrics), ("1".into(), "0".into()));
    assert_eq!(metrics.samples_sent.get(), 12);
    assert_eq!(
        metrics.requests_with(Some(first_status)),
        1 + u64::from(first_status == 204) * 4
    );
    assert_nothing_dropped(&metrics, "");
    let text = logs.text();
    assert_eq!(text.matches(FALLBACK_LINE).count(), 1, "{text}");
    let line = text.lines().find(|l| l.contains(FALLBACK_LINE)).unwrap();
    assert!(line.contains(&format!("status={first_status}")), "{line}");
    assert!(line.contains("127.0.0.1:"), "{line}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn unsupported_media_type_falls_back_to_v1_without_loss() {
    falls_back(OldReceiver::Unsupported, 415).await;
}

#[tokio::test]
async fn a_2xx_without_the_written_header_falls_back_to_v1_without_loss() {
    falls_back(OldReceiver::IgnoresIt, 204).await;
}

#[tokio::test]
async fn a_partial_written_count_is_counted_and_logged_once_per_episode() {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::start().await.unwrap();
    let written = |n: u32| {
        Response::status(204)
            .with_header("X-Prometheus-Remote-Write-Samples-Written", n.to_string())
    };
    // 5 samples per request: 3 and 4 written (one episode), all, then 0 (a second episode).
    rx.push_response(written(3));
    rx.push_response(written(4));
    rx.push_response(written(5));
    rx.push_response(written(0));
    let batches: Vec<Request> = (0..4).map(|p| poll(p, 5).0).collect();
    let negotiated = Negotiated::new(Protocol::V2);
    let metrics = start_sender(&rx, memory_queue(&batches), negotiated.clone())
        .drained()
        .await;

    assert_eq!(wire(&rx.requests()), vec![v2_wire(204); 4]);
    assert_eq!(
        negotiated.get(),
        Protocol::V2,
        "a partial write is no reason to fall back"
    );
    assert_eq!(
        metrics.dropped_total(DropReason::ReceiverRefused),
        2 + 1 + 5
    );
    assert_eq!(metrics.samples_sent.get(), 3 + 4 + 5);
    let text = logs.text();
    let partial: Vec<&str> = text.lines().filter(|l| l.contains(PARTIAL_LINE)).collect();
    assert_eq!(partial.len(), 2, "{text}");
    assert!(partial[0].contains("sent=5 written=3"), "{}", partial[0]);
    assert!(partial[1].contains("sent=5 written=0"), "{}", partial[1]);
    assert_eq!(
        text.matches("the receiver writes every sample again")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(metrics.dropped_total(DropReason::ReceiverRefused), 8);
}

/// A disk buffer full of 2.0 requests meets an old receiver; the agent is stopped halfway
/// (while the receiver answers 503), and the next run, which starts at 2.0 again, falls back
/// again and delivers the rest. Every sample arrives, once, in order.
#[tokio::test]
async fn buffered_v2_requests_on_disk_are_converted_across_a_restart() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await.unwrap();
    rx.answer_v2_like(Some(OldReceiver::Unsupported));
    let polls: Vec<_> = (0..6).map(|p| poll(p, 3)).collect();
    {
        let (mut disk, _) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
        for (b, _) in &polls {
            disk.push(b.clone()).unwrap();
        }
    }

    // First run: two requests go through as 1.0, then the receiver fails until stopped.
    rx.push_response(Response::status(204));
    rx.push_response(Response::status(204));
    for _ in 0..10_000 {
        rx.push_response(Response::status(503));
    }
    let (disk, recovery) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(recovery.batches, 6);
    let queue = Arc::new(Queue::new(Box::new(disk)));
    let first = Negotiated::new(Protocol::V2);
    let running = start_sender(&rx, queue.clone(), first.clone());
    assert!(rx.wait_for_requests(6, PATIENCE).await);
    running.stop.cancel();
    tokio::time::timeout(PATIENCE, running.task)
        .await
        .unwrap()
        .unwrap();
    drop(queue);
    assert_eq!(first.get(), Protocol::V1);
    let before = rx.requests().len();
    assert_eq!(
        wire(&rx.requests()[..4]),
        [v2_wire(415), v1_wire(204), v1_wire(204), v1_wire(503)]
    );

    // Second run: what is left is still 2.0 on disk; a new process starts at 2.0 again.
    rx.clear_responses();
    let (disk, recovery) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(recovery.batches, 4);
    let second = Negotiated::new(Protocol::V2);
    let metrics = start_sender(&rx, Arc::new(Queue::new(Box::new(disk))), second.clone())
        .drained()
        .await;
    assert_eq!(second.get(), Protocol::V1);
    let after = rx.requests();
    let mut want_wire = vec![v2_wire(415)];
    want_wire.extend(vec![v1_wire(204); 4]);
    assert_eq!(wire(&after[before..]), want_wire);
    let want: Vec<TimeSeries> = polls.iter().flat_map(|(_, e)| e.clone()).collect();
    assert_eq!(bytes(&rx.accepted_series()), bytes(&want));
    assert_eq!(metrics.samples_sent.get(), 12);
    assert_eq!(
        logs.text().matches(FALLBACK_LINE).count(),
        2,
        "{}",
        logs.text()
    );
    let (disk, recovery) = DiskBuffer::open(dir.path(), 64 << 20).unwrap();
    assert_eq!((recovery.batches, disk.len()), (0, 0));
}

/// One attempt's outcome for a 2.0 body, classified where the response is read, and each body
/// sent with its own protocol's headers.
#[tokio::test]
async fn the_client_sends_each_protocol_its_headers_and_reads_the_written_counts() {
    use kubelet_push::remote_write::{SendError, Written};
    let rx = Receiver::start().await.unwrap();
    let client = RemoteWriteClient::new(
        rx.url().parse().unwrap(),
        PATIENCE,
        &[],
        &kubelet_push::remote_write::access::Access::none(),
    )
    .unwrap();
    let (batch, expected) = poll(0, 2);
    let v1_body = kubelet_push::remote_write::rewrite::to_v1(&batch.body)
        .unwrap()
        .body;

    let accepted = client.send(Protocol::V2, batch.body.clone()).await.unwrap();
    assert_eq!(accepted.status.as_u16(), 204);
    assert_eq!(
        accepted.written,
        Some(Written {
            samples: 2,
            histograms: 0,
            exemplars: 0
        })
    );
    let accepted = client.send(Protocol::V1, v1_body.clone()).await.unwrap();
    assert_eq!(accepted.written, None, "1.0 has no written headers");
    assert_eq!(wire(&rx.requests()), [v2_wire(204), v1_wire(204)]);
    assert_eq!(bytes(&rx.accepted_series()[2..]), bytes(&expected));

    rx.push_response(
        Response::status(200)
            .with_header("X-Prometheus-Remote-Write-Samples-Written", "1")
            .with_header("X-Prometheus-Remote-Write-Exemplars-Written", "7"),
    );
    let accepted = client.send(Protocol::V2, batch.body.clone()).await.unwrap();
    assert_eq!(
        accepted.written,
        Some(Written {
            samples: 1,
            histograms: 0,
            exemplars: 7
        })
    );
    rx.push_response(Response::status(400).with_body("bad ref"));
    match client.send(Protocol::V2, batch.body.clone()).await {
        Err(SendError::Permanent { status, message }) => {
            assert_eq!((status.as_u16(), message.as_str()), (400, "bad ref"));
        }
        other => panic!("400 stays permanent for 2.0: {other:?}"),
    }

    rx.answer_v2_like(Some(OldReceiver::Unsupported));
    match client.send(Protocol::V2, batch.body.clone()).await {
        Err(e @ SendError::NotV2 { .. }) => {
            assert_eq!(e.status().map(|s| s.as_u16()), Some(415));
            assert_eq!(
                e.to_string(),
                "receiver does not take Remote Write 2.0 (answered 415 Unsupported Media Type)"
            );
        }
        other => panic!("415 to 2.0: {other:?}"),
    }
    rx.answer_v2_like(Some(OldReceiver::IgnoresIt));
    match client.send(Protocol::V2, batch.body.clone()).await {
        Err(e @ SendError::NotV2 { .. }) => assert_eq!(
            e.to_string(),
            "receiver does not take Remote Write 2.0 (answered 204 No Content without the written-samples header)"
        ),
        other => panic!("a bare 204 to 2.0: {other:?}"),
    }
    // A 415 to a 1.0 body is an ordinary rejection.
    rx.answer_v2_like(None);
    rx.push_response(Response::status(415));
    assert!(matches!(
        client.send(Protocol::V1, v1_body).await,
        Err(SendError::Permanent { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// The whole agent, `--remote-write-version 2`, against a simulated kubelet.

const AGENT_FAST: [&str; 8] = [
    "--interval",
    "50ms",
    "--min-backoff",
    "5ms",
    "--max-backoff",
    "20ms",
    "--remote-write-version",
    "2",
];

fn agent_args<'a>(kubelet: &'a str, remote: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--kubelet-url", kubelet, "--remote-url", remote];
    v.extend_from_slice(&AGENT_FAST);
    v.extend_from_slice(extra);
    v
}

/// Every series' samples arrived in strictly increasing time order (so none twice); the
/// number of samples.
fn ordered_once(series: &[TimeSeries]) -> usize {
    let mut lines: std::collections::HashMap<Vec<u8>, Vec<i64>> = Default::default();
    for ts in series {
        let key = TimeSeries {
            labels: ts.labels.clone(),
            samples: Vec::new(),
        }
        .encode_to_vec();
        lines
            .entry(key)
            .or_default()
            .extend(ts.samples.iter().map(|s| s.timestamp));
    }
    for times in lines.values() {
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }
    lines.values().map(Vec::len).sum()
}

/// Per series, timestamps never go back.
fn in_order(series: &[TimeSeries]) {
    let mut last: std::collections::HashMap<Vec<u8>, i64> = Default::default();
    for ts in series {
        let key = TimeSeries {
            labels: ts.labels.clone(),
            samples: Vec::new(),
        }
        .encode_to_vec();
        for s in &ts.samples {
            if let Some(t) = last.insert(key.clone(), s.timestamp) {
                assert!(s.timestamp >= t, "{} after {t}", s.timestamp);
            }
        }
    }
}

#[tokio::test]
async fn the_agent_sends_v2_to_a_v2_receiver() {
    let k = crate::support::simulated_kubelet(5, 21).await;
    let rx = Receiver::start().await.unwrap();
    let (ku, ru) = (k.url(), rx.url());
    let agent = crate::support::Agent::start(&agent_args(&ku, &ru, &[]));
    wait_until("4 requests", || rx.requests().len() >= 4).await;
    agent.wait_drained(1).await;
    let (outcome, m) = agent.stop().await;
    assert_eq!(outcome, kubelet_push::Outcome::Ok);
    let got = rx.requests();
    assert!(got
        .iter()
        .all(|r| r.protocol == Protocol::V2 && r.accepted()));
    // Counters carry metadata and start timestamps on the wire.
    let first = got[0].v2_request.as_ref().unwrap();
    assert!(first.timeseries.iter().all(|t| t.metadata.is_some()));
    assert!(first
        .timeseries
        .iter()
        .flat_map(|t| &t.samples)
        .any(|s| s.start_timestamp > 0));
    assert_eq!(
        ordered_once(&rx.accepted_series()) as u64,
        m.samples_sent.get()
    );
    assert_eq!(m.samples_queued.get(), m.samples_sent.get());
    assert_eq!(protocol_gauge(&m), ("0".into(), "1".into()));
}

/// The first poll goes as 2.0 and is refused the old way; the same samples go again as 1.0,
/// and every later poll is 1.0. Nothing is lost.
async fn the_agent_falls_back(old: OldReceiver, first_status: u16) {
    let k = crate::support::simulated_kubelet(5, 22).await;
    let rx = Receiver::start().await.unwrap();
    rx.answer_v2_like(Some(old));
    let (ku, ru) = (k.url(), rx.url());
    let agent = crate::support::Agent::start(&agent_args(&ku, &ru, &[]));
    wait_until("6 requests", || rx.requests().len() >= 6).await;
    agent.wait_drained(1).await;
    let (outcome, m) = agent.stop().await;
    assert_eq!(outcome, kubelet_push::Outcome::Ok);
    let got = rx.requests();
    assert_eq!(
        (got[0].protocol, got[0].status),
        (Protocol::V2, first_status)
    );
    assert!(!got[0].accepted());
    assert!(
        got[1..]
            .iter()
            .all(|r| r.protocol == Protocol::V1 && r.accepted()),
        "{:?}",
        wire(&got)
    );
    // The refused request's samples are what the first 1.0 request carried.
    let refused = got[0].write_request.as_ref().unwrap();
    let resent = got[1].write_request.as_ref().unwrap();
    let mut refused_sorted = refused.timeseries.clone();
    for t in &mut refused_sorted {
        t.labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    assert_eq!(bytes(&refused_sorted), bytes(&resent.timeseries));
    assert!(resent.timeseries.len() > 50);
    assert_eq!(
        ordered_once(&rx.accepted_series()) as u64,
        m.samples_sent.get()
    );
    assert_eq!(m.samples_queued.get(), m.samples_sent.get(), "nothing lost");
    assert_eq!(protocol_gauge(&m), ("1".into(), "0".into()));
}

#[tokio::test]
async fn the_agent_falls_back_on_415_and_polls_in_1_0_after() {
    the_agent_falls_back(OldReceiver::Unsupported, 415).await;
}

#[tokio::test]
async fn the_agent_falls_back_on_a_bare_204_and_polls_in_1_0_after() {
    the_agent_falls_back(OldReceiver::IgnoresIt, 204).await;
}

/// An outage fills the disk buffer with 2.0 requests; the agent is stopped and started again
/// (at 2.0, as configured) against a receiver that turns out not to speak 2.0: it falls back
/// again, converts everything the first run buffered, and nothing is lost.
#[tokio::test]
async fn a_restarted_agent_falls_back_again_and_delivers_its_v2_disk_buffer() {
    let k = crate::support::simulated_kubelet(5, 23).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ku, ru) = (k.url(), rx.url());
    let extra = ["--buffer-dir", d, "--shutdown-timeout", "50ms"];
    let first = crate::support::Agent::start(&agent_args(&ku, &ru, &extra));
    wait_until("5 polls buffered", || {
        first.dest().buffer_requests.get() >= 5
    })
    .await;
    let agent_metrics = first.metrics.clone();
    let (_, m1) = first.stop().await;
    assert_eq!(m1.samples_sent.get(), 0);
    let buffered = m1.samples_queued.get();
    assert!(rx
        .requests()
        .iter()
        .all(|r| r.protocol == Protocol::V2 && r.status == 503));

    rx.clear_responses();
    rx.answer_v2_like(Some(OldReceiver::Unsupported));
    let before = rx.requests().len();
    // The stop below must deliver what the polls after the drain queued: the first run's
    // 50 ms (for a receiver that is down) could run out on a loaded machine and leave them
    // on disk, which "nothing lost" would count as lost. The receiver is up now, so the drain
    // ends as soon as the buffer is empty.
    let extra = ["--buffer-dir", d, "--shutdown-timeout", "8s"];
    let second = crate::support::Agent::start(&agent_args(&ku, &ru, &extra));
    wait_until("3 fresh polls", || second.metrics.polls(true) >= 3).await;
    second.wait_drained(buffered + 1).await;
    let (outcome, m2) = second.stop().await;
    assert_eq!(outcome, kubelet_push::Outcome::Ok);
    let after = &rx.requests()[before..];
    assert_eq!((after[0].protocol, after[0].status), (Protocol::V2, 415));
    assert!(after[1..]
        .iter()
        .all(|r| r.protocol == Protocol::V1 && r.accepted()));
    // A restarted agent does not know what its predecessor sent, so a kubelet's cached value
    // can go out twice with the same timestamp (as with 1.0): in order, not once.
    let series = rx.accepted_series();
    in_order(&series);
    let delivered: u64 = series.iter().map(|t| t.samples.len() as u64).sum();
    assert_eq!(
        delivered,
        buffered + m2.samples_queued.get(),
        "nothing lost"
    );
    // Each poll's `up` has its own timestamp: no request was delivered twice.
    let ups: Vec<i64> = series
        .iter()
        .filter(|t| {
            t.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "up")
        })
        .map(|t| t.samples[0].timestamp)
        .collect();
    let distinct: std::collections::BTreeSet<i64> = ups.iter().copied().collect();
    assert_eq!(ups.len(), distinct.len());
    assert!(ups.len() as u64 >= agent_metrics.polls(true) + 3);
    assert_eq!(m2.samples_sent.get(), delivered);
    assert_eq!(protocol_gauge(&m2), ("1".into(), "0".into()));
}

// ---------------------------------------------------------------------------------------
// Catching up: a backlog goes merged.

/// The polls each accepted request holds, by their distinct sample timestamps (each poll of
/// [`poll`] has its own).
fn polls_per_request(requests: &[ReceivedRequest]) -> Vec<usize> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .map(|r| {
            let w = r.write_request.as_ref().unwrap();
            let times: std::collections::BTreeSet<i64> = w
                .timeseries
                .iter()
                .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
                .collect();
            times.len()
        })
        .collect()
}

/// Polls waiting in a buffer, four series each (see [`poll`]), as `protocol` encodes them,
/// and what a receiver holds once they are all delivered.
struct Backlog {
    batches: Vec<Request>,
    want: Vec<TimeSeries>,
}

impl Backlog {
    fn of(polls: impl IntoIterator<Item = i64>, protocol: Protocol) -> Backlog {
        let (batches, want) = polls
            .into_iter()
            .map(|p| {
                let (batch, expected) = poll(p, 4);
                let batch = match protocol {
                    Protocol::V2 => batch,
                    Protocol::V1 => {
                        kubelet_push::remote_write::rewrite::to_v1(&batch.body).unwrap()
                    }
                };
                (batch, expected)
            })
            .unzip::<_, _, Vec<_>, Vec<_>>();
        Backlog {
            batches,
            want: want.into_iter().flatten().collect(),
        }
    }

    fn queue(&self) -> Arc<Queue> {
        memory_queue(&self.batches)
    }

    /// The receiver accepted exactly the backlog's series and samples, in order, once.
    fn assert_delivered(&self, rx: &Receiver, what: impl std::fmt::Debug) {
        assert_eq!(bytes(&rx.accepted_series()), bytes(&self.want), "{what:?}");
    }
}

/// Ten polls waiting, in either protocol: they arrive in fewer requests than polls, each
/// series' samples in order, every sample once, nothing dropped; 2.0 stays 2.0.
#[tokio::test]
async fn a_backlog_goes_merged_in_order_and_whole() {
    for protocol in [Protocol::V2, Protocol::V1] {
        let rx = Receiver::start().await.unwrap();
        let backlog = Backlog::of(0..10, protocol);
        let metrics = start_catching_up(&rx, backlog.queue(), Negotiated::new(protocol))
            .drained()
            .await;
        let got = rx.requests();
        assert!(got
            .iter()
            .all(|r| r.protocol == protocol && r.status == 204));
        assert!(
            got.len() < 10,
            "{protocol:?}: {} requests for 10 polls",
            got.len()
        );
        let per_request = polls_per_request(&got);
        assert_eq!(per_request.iter().sum::<usize>(), 10, "{per_request:?}");
        assert!(per_request.iter().any(|n| *n > 1), "{per_request:?}");
        backlog.assert_delivered(&rx, protocol);
        assert_eq!(metrics.samples_sent.get(), 40);
        assert_nothing_dropped(&metrics, protocol);
    }
}

/// A 413 to a merged request drops nothing: the same polls go again in smaller requests.
#[tokio::test]
async fn a_413_to_a_merged_request_sends_smaller_ones_and_loses_nothing() {
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(413).with_body("request too large"));
    let backlog = Backlog::of(0..10, Protocol::V2);
    let metrics = start_catching_up(&rx, backlog.queue(), Negotiated::new(Protocol::V2))
        .drained()
        .await;
    let got = rx.requests();
    assert_eq!(got[0].status, 413);
    let refused = got[0].write_request.as_ref().unwrap().timeseries.len();
    assert_eq!(refused, 40, "the first request held the whole backlog");
    for r in &got[1..] {
        assert_eq!(r.status, 204);
        assert!(r.write_request.as_ref().unwrap().timeseries.len() <= refused / 2);
    }
    backlog.assert_delivered(&rx, "");
    assert_eq!(metrics.samples_sent.get(), 40);
    assert_eq!(metrics.dropped_total(DropReason::Rejected), 0);
}

/// Any other rejection of a merged request drops nothing by itself: its polls go again one
/// at a time, so a poll the receiver refuses takes no other down with it.
#[tokio::test]
async fn a_rejected_merged_request_goes_again_one_poll_at_a_time() {
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(400).with_body("out of order sample"));
    let backlog = Backlog::of(0..10, Protocol::V2);
    let metrics = start_catching_up(&rx, backlog.queue(), Negotiated::new(Protocol::V2))
        .drained()
        .await;
    let got = rx.requests();
    assert_eq!(got[0].status, 400);
    assert_eq!(polls_per_request(&got[1..11]), vec![1; 10]);
    backlog.assert_delivered(&rx, "");
    assert_eq!(metrics.samples_sent.get(), 40);
    assert_eq!(metrics.dropped_total(DropReason::Rejected), 0);
}

/// A merged 2.0 request to a receiver that does not take 2.0 is sent again as 1.0, merged,
/// and the rest of the backlog follows as 1.0: nothing lost, order kept.
#[tokio::test]
async fn a_merged_2_0_request_falls_back_to_1_0_without_loss() {
    let rx = Receiver::start().await.unwrap();
    rx.answer_v2_like(Some(OldReceiver::Unsupported));
    let backlog = Backlog::of(0..10, Protocol::V2);
    let negotiated = Negotiated::new(Protocol::V2);
    let metrics = start_catching_up(&rx, backlog.queue(), negotiated.clone())
        .drained()
        .await;
    let got = rx.requests();
    assert_eq!(wire(&got[..1]), vec![v2_wire(415)]);
    assert!(got[1..]
        .iter()
        .all(|r| r.protocol == Protocol::V1 && r.status == 204));
    backlog.assert_delivered(&rx, "");
    assert_eq!(negotiated.get(), Protocol::V1);
    assert_eq!(metrics.samples_sent.get(), 40);
}

/// A merged request holds at most `--max-catch-up-size` of buffered bytes: here three polls'.
#[tokio::test]
async fn merged_requests_stay_within_the_bound() {
    let rx = Receiver::start().await.unwrap();
    let backlog = Backlog::of(0..10, Protocol::V2);
    let largest = backlog.batches.iter().map(Request::size).max().unwrap();
    let smallest = backlog.batches.iter().map(Request::size).min().unwrap();
    // Room for three of the largest, never four of the smallest.
    let bound = 3 * largest;
    assert!(4 * smallest > bound, "polls of similar size");
    let metrics = start_sender_with(
        &rx.url(),
        backlog.queue(),
        Negotiated::new(Protocol::V2),
        Duration::ZERO,
        bound,
        None,
    )
    .drained()
    .await;
    let per_request = polls_per_request(&rx.requests());
    assert_eq!(per_request, vec![3, 3, 3, 1]);
    backlog.assert_delivered(&rx, "");
    assert_eq!(metrics.samples_sent.get(), 40);
}

/// What a merged run cuts by age is counted once, even when the merged request is given up
/// and its polls go again one at a time (each read and cut again).
#[tokio::test]
async fn a_cut_by_age_in_a_run_given_up_is_counted_once() {
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(400).with_body("out of order sample"));
    // Five polls a minute old (past --max-sample-age 30s), five 20 s old (within it).
    let (old, fresh) = (
        Backlog::of(0..5, Protocol::V2),
        Backlog::of(40..45, Protocol::V2),
    );
    let batches = [old.batches, fresh.batches.clone()].concat();
    let metrics = start_sender_with(
        &rx.url(),
        memory_queue(&batches),
        Negotiated::new(Protocol::V2),
        Duration::ZERO,
        2 << 20,
        Some(Duration::from_secs(30)),
    )
    .drained()
    .await;
    let got = rx.requests();
    assert_eq!(
        got[0].status, 400,
        "the merged request of the five fresh polls"
    );
    assert_eq!(polls_per_request(&got[1..]), vec![1; 5]);
    fresh.assert_delivered(&rx, "");
    assert_eq!(metrics.samples_sent.get(), 20);
    assert_eq!(
        metrics.dropped_total(DropReason::TooOld),
        20,
        "counted once"
    );
    assert_eq!(metrics.dropped_total(DropReason::Rejected), 0);
}

/// A batch the full buffer evicts while it is in flight, and which the receiver then takes,
/// is counted once: as dropped by the eviction, not as sent too.
#[tokio::test]
async fn a_batch_evicted_in_flight_is_not_counted_as_sent_too() {
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(204).held());
    // 1.0, whose receivers answer a bare 204 (a 2.0 one would have to say what it wrote).
    let backlog = Backlog::of(0..3, Protocol::V1);
    let sizes: Vec<u64> = backlog.batches.iter().map(Request::size).collect();
    // Room for the two newest batches, never for all three: the third push evicts the first.
    let room = sizes[1] + sizes[2];
    assert!(room < sizes.iter().sum::<u64>() && room >= sizes[0] + sizes[1]);
    let queue = Arc::new(Queue::new(Box::new(MemoryBuffer::new(room))));
    let pushed = |b: &Request| queue.push(b.clone()).1.unwrap();
    assert_eq!(pushed(&backlog.batches[0]).samples, 0);
    let running = start_catching_up(&rx, Arc::clone(&queue), Negotiated::new(Protocol::V1));
    assert!(
        rx.wait_for_requests(1, PATIENCE).await,
        "the first batch is sent"
    );
    assert_eq!(pushed(&backlog.batches[1]).samples, 0);
    assert_eq!(
        pushed(&backlog.batches[2]).samples,
        4,
        "the first batch evicted"
    );
    rx.release();
    let metrics = running.drained().await;
    // The receiver got everything, the first batch included, in two requests ...
    assert_eq!(polls_per_request(&rx.requests()), [1, 2]);
    backlog.assert_delivered(&rx, "");
    // ... but the agent had counted the first batch's 4 samples as dropped when it evicted
    // them (the poller does; here the test did, above), so "sent" holds only the other 8.
    assert_eq!(metrics.samples_sent.get(), 8);
    assert_nothing_dropped(&metrics, "");
}

/// A run ends before a batch of another protocol (one a restart with another
/// `--remote-write-version` left on disk); what cutting that batch by age dropped is counted
/// when it is sent, in its own run, not also when it ended the run before.
#[tokio::test]
async fn a_cut_batch_that_ends_a_run_is_counted_once() {
    let rx = Receiver::start().await.unwrap();
    let fresh_v1 = Backlog::of([50], Protocol::V1);
    // One batch straddling --max-sample-age 30s: a poll a minute old and one 15 s old.
    let straddling = Backlog::of([0, 45], Protocol::V2);
    let merged =
        kubelet_push::remote_write::rewrite::merge(Protocol::V2, &straddling.batches).unwrap();
    let metrics = start_sender_with(
        &rx.url(),
        memory_queue(&[fresh_v1.batches[0].clone(), merged]),
        Negotiated::new(Protocol::V2),
        Duration::ZERO,
        2 << 20,
        Some(Duration::from_secs(30)),
    )
    .drained()
    .await;
    let got = rx.requests();
    let protocols: Vec<Protocol> = got.iter().map(|r| r.protocol).collect();
    assert_eq!(protocols, [Protocol::V1, Protocol::V2]);
    assert!(got.iter().all(|r| r.status == 204));
    assert_eq!(metrics.samples_sent.get(), 8);
    assert_eq!(metrics.dropped_total(DropReason::TooOld), 4, "counted once");
}

/// A merged request that gets no answer within `--remote-timeout` (a link too slow for it) is
/// not sent again as it is: the catch-up goes on in requests half its size, and loses nothing.
#[tokio::test]
async fn an_unanswered_merged_request_goes_again_in_halves() {
    let rx = Receiver::start().await.unwrap();
    // The first request is never answered: the client gives up after its timeout.
    rx.push_response(Response::status(204).held());
    let backlog = Backlog::of(0..10, Protocol::V1);
    let settings = sender_settings(Duration::ZERO, 2 << 20, None);
    // Long enough for the in-process receiver to answer the later requests on a loaded
    // machine; only the held one runs into it.
    let timeout = Duration::from_secs(5);
    let metrics = spawn_sender(
        &rx.url(),
        timeout,
        backlog.queue(),
        Negotiated::new(Protocol::V1),
        settings,
    )
    .drained()
    .await;
    let got = rx.requests();
    let per_request = polls_per_request(&got);
    assert_eq!(per_request[0], 10, "the whole backlog, unanswered");
    assert!(per_request[1] <= 5, "then half of it: {per_request:?}");
    assert_eq!(
        per_request[1..].iter().sum::<usize>(),
        10,
        "{per_request:?}"
    );
    // What the receiver got after the unanswered request: the backlog, once, in order.
    let after: Vec<TimeSeries> = got[1..]
        .iter()
        .filter_map(|r| r.write_request.as_ref())
        .flat_map(|w| w.timeseries.iter().cloned())
        .collect();
    assert_eq!(bytes(&after), bytes(&backlog.want));
    assert_eq!(metrics.samples_sent.get(), 40);
    assert_eq!(metrics.retries.get(), 1);
    assert_nothing_dropped(&metrics, "");
}

/// A receiver that refuses connections says nothing about the size of a request: once it is
/// back and has taken the probe (the oldest poll alone), the rest of the backlog goes merged,
/// whole.
#[tokio::test]
async fn a_refused_connection_does_not_shrink_a_merged_request() {
    let port = crate::support::ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
    let backlog = Backlog::of(0..10, Protocol::V1);
    let running = start_sender_with(
        &url,
        backlog.queue(),
        Negotiated::new(Protocol::V1),
        Duration::ZERO,
        2 << 20,
        None,
    );
    let metrics = Arc::clone(&running.metrics);
    wait_until("three refused attempts", || metrics.retries.get() >= 3).await;
    let rx = Receiver::start_on(port.listen()).unwrap();
    let metrics = running.drained().await;
    assert_eq!(polls_per_request(&rx.requests()), [1, 9]);
    backlog.assert_delivered(&rx, "");
    assert_eq!(metrics.samples_sent.get(), 40);
}

/// Polls in every request the receiver got, answered or not.
fn polls_per_attempt(requests: &[ReceivedRequest]) -> Vec<(u16, usize)> {
    requests
        .iter()
        .map(|r| {
            let w = r.write_request.as_ref().unwrap();
            let times: std::collections::BTreeSet<i64> = w
                .timeseries
                .iter()
                .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
                .collect();
            (r.status, times.len())
        })
        .collect()
}

/// A merged request that fails (503) is not retried as it is: while the receiver keeps
/// failing, each attempt carries the oldest poll alone, so a receiver behind a load balancer
/// that answers for it is not sent the whole backlog per attempt; once that poll is taken the
/// rest goes merged again. Nothing lost, nothing twice, in order.
#[tokio::test]
async fn a_failing_receiver_is_probed_with_one_poll_not_the_backlog() {
    for protocol in [Protocol::V1, Protocol::V2] {
        let rx = Receiver::start().await.unwrap();
        for _ in 0..3 {
            rx.push_response(Response::status(503).with_body("ingesters unavailable"));
        }
        let backlog = Backlog::of(0..10, protocol);
        let metrics = start_catching_up(&rx, backlog.queue(), Negotiated::new(protocol))
            .drained()
            .await;
        let got = rx.requests();
        assert_eq!(
            polls_per_attempt(&got),
            [(503, 10), (503, 1), (503, 1), (204, 1), (204, 9)],
            "{protocol:?}"
        );
        backlog.assert_delivered(&rx, protocol);
        assert_eq!(metrics.samples_sent.get(), 40);
        assert_eq!(metrics.retries.get(), 3);
        assert_nothing_dropped(&metrics, protocol);
    }
}

/// A 429 to a merged request: the probe waits the receiver's `Retry-After` (1 s, against a
/// `--max-backoff` of 20 ms here), as any retry of a 429 does. (Only a lower bound on the
/// time, which load can only lengthen.)
#[tokio::test]
async fn a_429_to_a_merged_request_waits_its_retry_after_before_the_probe() {
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(429).with_header("Retry-After", "1"));
    let backlog = Backlog::of(0..10, Protocol::V1);
    let started = std::time::Instant::now();
    let metrics = start_catching_up(&rx, backlog.queue(), Negotiated::new(Protocol::V1))
        .drained()
        .await;
    let got = rx.requests();
    assert_eq!(polls_per_attempt(&got), [(429, 10), (204, 1), (204, 9)]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the probe went {:?} after the start",
        started.elapsed()
    );
    backlog.assert_delivered(&rx, "");
    assert_eq!(metrics.samples_sent.get(), 40);
}

mod auto;
