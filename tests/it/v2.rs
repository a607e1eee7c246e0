//! Remote Write 2.0 delivery and the fallback to 1.0, against the in-process receiver on
//! 127.0.0.1, decoding what went over the wire. The sender is driven directly with 2.0 bodies
//! built with the prost types, each with its expected 1.0 form written out by hand (not
//! derived by the conversion under test).

use std::sync::Arc;
use std::time::Duration;

use kubelet_push::buffer::disk::DiskBuffer;
use kubelet_push::buffer::memory::MemoryBuffer;
use kubelet_push::buffer::{Batch, Buffer, Queue};
use kubelet_push::demo::receiver::{OldReceiver, ReceivedRequest, Receiver, Response};
use kubelet_push::remote_write::proto::v1::{Label, Sample, TimeSeries};
use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::{
    Negotiated, Protocol, RemoteWriteClient, CONTENT_TYPE_V1, CONTENT_TYPE_V2, STALE_NAN_BITS,
};
use kubelet_push::sender::{self, SenderSettings};
use kubelet_push::telemetry::{DropReason, Metrics};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{now_ms, Logs};

const FALLBACK_LINE: &str = "the receiver does not take Remote Write 2.0";
const PARTIAL_LINE: &str = "the receiver wrote fewer samples than the request held";

/// Poll `poll` of a node with `pods` pods: one 2.0 request (`job` and `pod` labels, a counter
/// with metadata and start timestamps, pod 0's value a stale marker from poll 2 on), and the
/// 1.0 series a receiver must end up with.
fn poll(poll: i64, pods: i64) -> (Batch, Vec<TimeSeries>) {
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
    let batch = Batch {
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
    metrics: Arc<Metrics>,
}

fn start_sender(rx: &Receiver, queue: Arc<Queue>, negotiated: Negotiated) -> Running {
    start_sender_at(&rx.url(), queue, negotiated)
}

fn start_sender_at(url: &str, queue: Arc<Queue>, negotiated: Negotiated) -> Running {
    let client = RemoteWriteClient::new(url.parse().unwrap(), Duration::from_secs(5), &[]).unwrap();
    let metrics = Arc::new(Metrics::new());
    let settings = SenderSettings {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_sample_age: None,
    };
    let (drain, stop) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(sender::run(
        client,
        queue,
        metrics.clone(),
        settings,
        negotiated,
        drain.clone(),
        stop.clone(),
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
    async fn drained(self) -> Arc<Metrics> {
        self.drain.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the sender drains the queue")
            .unwrap();
        self.metrics
    }
}

fn memory_queue(batches: &[Batch]) -> Arc<Queue> {
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

fn protocol_gauge(metrics: &Metrics) -> (String, String) {
    let text = metrics.encode();
    let line = |v: &str| {
        let start = format!("kubelet_push_remote_write_protocol{{version=\"{v}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&start).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {start} in {text}"))
    };
    (line("1.0"), line("2.0"))
}

#[tokio::test]
async fn a_v2_receiver_gets_v2_and_no_fallback_happens() {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::start().await.unwrap();
    let polls: Vec<_> = (0..3).map(|p| poll(p, 4)).collect();
    let batches: Vec<Batch> = polls.iter().map(|(b, _)| b.clone()).collect();
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
    let batches: Vec<Batch> = polls.iter().map(|(b, _)| b.clone()).collect();
    let negotiated = Negotiated::new(Protocol::V2);
    let queue = memory_queue(&batches[..3]);
    // Secrets in the URL must not reach the log line.
    let url = rx.url().replace("http://", "http://user:s3cret@") + "?token=s3cret";
    let running = start_sender_at(&url, queue.clone(), negotiated.clone());
    assert!(rx.wait_for_requests(4, Duration::from_secs(10)).await);
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
    for reason in DropReason::ALL {
        assert_eq!(metrics.dropped_total(reason), 0, "{reason:?}");
    }
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
    let batches: Vec<Batch> = (0..4).map(|p| poll(p, 5).0).collect();
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
    assert!(metrics
        .encode()
        .contains("kubelet_push_samples_dropped_total{reason=\"receiver_refused\"} 8"));
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
    assert!(rx.wait_for_requests(6, Duration::from_secs(10)).await);
    running.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running.task)
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
    let client =
        RemoteWriteClient::new(rx.url().parse().unwrap(), Duration::from_secs(5), &[]).unwrap();
    let (batch, expected) = poll(0, 2);
    let v1_body = kubelet_push::remote_write::fallback::to_v1(&batch.body)
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
