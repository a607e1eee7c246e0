//! The demo's live summary: once per interval, one line telling what the receiver accepted
//! since the last line (requests and the Remote Write version they came in, series, samples,
//! bytes, stale markers) and the latest node
//! values derived from it (CPU cores from the counter's rate, memory, pods, `up`). It owns the
//! tally and the printing loop; it reads the receiver's records, never its server.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::remote_write::is_stale_marker;
use crate::testkit::receiver::{ReceivedRequest, Receiver};

/// `tokio::time::interval` panics on a zero period.
const MIN_PRINT_INTERVAL: Duration = Duration::from_millis(10);

/// What arrived during one printing interval, plus the latest known node values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub requests: usize,
    /// Requests by the Remote Write version they came in (1.0, 2.0), accepted or not.
    pub v1_requests: usize,
    pub v2_requests: usize,
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
    /// Distinct (`pod`, `container`) pairs, and how many of them came with an `image` label
    /// (from the kubelet's `/pods`).
    pub containers: usize,
    pub containers_with_image: usize,
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
        let versions = match (self.v1_requests, self.v2_requests) {
            (_, 0) => "1.0".to_owned(),
            (0, _) => "2.0".to_owned(),
            (v1, v2) => format!("1.0 ×{v1}, 2.0 ×{v2}"),
        };
        format!(
            "{} req as {versions} ({} not accepted), {} series, {} samples, {:.1} KiB, {} stale | \
             node cpu {} cores, mem {} MiB, {} pods, {} containers ({} with image), up {}",
            self.requests,
            self.not_accepted,
            self.series,
            self.samples,
            self.compressed_bytes as f64 / 1024.0,
            self.stale_markers,
            opt(self.node_cpu_cores, 2),
            opt(self.node_memory_mib, 0),
            self.pods,
            self.containers,
            self.containers_with_image,
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
        let mut containers = BTreeSet::new();
        let mut with_image = BTreeSet::new();
        for r in requests {
            tally.compressed_bytes += r.compressed_bytes;
            match r.protocol {
                crate::remote_write::Protocol::V1 => tally.v1_requests += 1,
                crate::remote_write::Protocol::V2 => tally.v2_requests += 1,
            }
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
                let (mut name, mut pod, mut container, mut image) = ("", "", "", false);
                for l in &ts.labels {
                    match l.name.as_str() {
                        "__name__" => name = &l.value,
                        "pod" => pod = &l.value,
                        "container" => container = &l.value,
                        "image" => image = !l.value.is_empty(),
                        _ => {}
                    }
                }
                if !pod.is_empty() {
                    pods.insert(pod.to_owned());
                    if !container.is_empty() {
                        let key = (pod.to_owned(), container.to_owned());
                        if image {
                            with_image.insert(key.clone());
                        }
                        containers.insert(key);
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
        tally.containers = containers.len();
        tally.containers_with_image = with_image.len();
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
    let mut feed = receiver.feed();
    let every = every.max(MIN_PRINT_INTERVAL);
    tokio::spawn(async move {
        let mut tracker = TallyTracker::new();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let tally = feed.read_new(|fresh| tracker.observe(fresh));
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
    use crate::remote_write::proto::v1::WriteRequest;
    use crate::remote_write::STALE_NAN_BITS;
    use crate::testkit::receiver::testing::*;
    use std::sync::{Arc, Mutex};

    fn accepted(w: WriteRequest, bytes: usize) -> ReceivedRequest {
        ReceivedRequest {
            protocol: crate::remote_write::Protocol::V1,
            v2_request: None,
            path: "/api/v1/write".into(),
            headers: Vec::new(),
            compressed_bytes: bytes,
            write_request: Some(w),
            status: 204,
            rejection: None,
            decoded_bytes: 0,
            at: tokio::time::Instant::now(),
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
                v1_requests: 2,
                v2_requests: 0,
                not_accepted: 1,
                series: 6,
                samples: 7,
                compressed_bytes: 1007,
                stale_markers: 1,
                node_cpu_cores: None,
                node_memory_mib: Some(3072.0),
                pods: 2,
                containers: 0,
                containers_with_image: 0,
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
        let mut t = Tally {
            requests: 3,
            v1_requests: 3,
            v2_requests: 0,
            not_accepted: 1,
            series: 412,
            samples: 415,
            compressed_bytes: 18_637,
            stale_markers: 2,
            node_cpu_cores: Some(0.8449),
            node_memory_mib: Some(5123.4),
            pods: 14,
            containers: 20,
            containers_with_image: 19,
            up: Some(1.0),
        };
        assert_eq!(
            t.line(Duration::from_secs(10)),
            "3 req as 1.0 (1 not accepted), 412 series, 415 samples, 18.2 KiB, 2 stale | \
             node cpu 0.84 cores, mem 5123 MiB, 14 pods, 20 containers (19 with image), up 1"
        );
        (t.v1_requests, t.v2_requests) = (0, 3);
        assert!(t
            .line(Duration::from_secs(10))
            .starts_with("3 req as 2.0 (1 not accepted)"));
        (t.v1_requests, t.v2_requests) = (1, 2);
        assert!(t
            .line(Duration::from_secs(10))
            .starts_with("3 req as 1.0 ×1, 2.0 ×2 (1 not accepted)"));
        let unknown = Tally {
            requests: 1,
            ..Tally::default()
        };
        assert_eq!(
            unknown.line(Duration::from_secs(5)),
            "1 req as 1.0 (0 not accepted), 0 series, 0 samples, 0.0 KiB, 0 stale | \
             node cpu - cores, mem - MiB, 0 pods, 0 containers (0 with image), up -"
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

    /// Real time, not paused: the request goes over a socket, and paused time jumps the
    /// clock to the next timer whenever the runtime waits on I/O (under Wine, a socket event
    /// takes a trip through wineserver), which can fire the request's timeout. The waits
    /// are for counted lines, bounded by a minute.
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
            "1 req as 1.0 (0 not accepted), 2 series, 3 samples, {:.1} KiB, 0 stale | \
             node cpu 0.15 cores, mem - MiB, 1 pods, 0 containers (0 with image), up -",
            b.len() as f64 / 1024.0
        );
        // Wait for the request's line and a quiet interval after it, within a bounded time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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
        tokio::time::timeout(Duration::from_secs(60), printer)
            .await
            .unwrap()
            .unwrap();
        let lines = out.lines();
        assert_eq!(lines.iter().filter(|l| l.contains(" req ")).count(), 1);
    }
}
