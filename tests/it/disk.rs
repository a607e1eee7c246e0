//! The disk buffer through the real binary: SIGKILL and restart, damaged files, a directory
//! that cannot be written, a disk that fills up; and a buffer directory written by the first
//! on-disk format (`tests/fixtures/buffer-v1/`), replayed by the library and by an agent.
//!
//! SIGKILL is `Child::start_kill`, which is `TerminateProcess` on Windows, so these run there
//! too. Unix-only: the graceful stop (no safe way for a test to send one child a Windows
//! console event, see `support::stop_agent`), the full disk and the small volume (tmpfs mounts).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
#[cfg(unix)]
use std::time::Duration;

use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::testkit::receiver::Receiver;
use kubelet_push::testkit::simulator::KubeletServer;
use tokio::process::{Child, Command};

use crate::support::*;

async fn kubelet(pods: usize) -> KubeletServer {
    simulated_kubelet(pods, 5).await
}

/// The agent binary on `kubelet`, `remote` and `--buffer-dir dir`, polling every 100 ms. Its
/// own metrics are not pushed: these tests count the polls' requests and `up`s, and wait for
/// an empty buffer (`selfmetrics.rs` tests what the self-metrics add).
fn command(kubelet: &str, remote: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(SHORT_INTERVALS.0, SHORT_INTERVALS.1)
        .args([
            "--kubelet-url",
            kubelet,
            "--remote-url",
            remote,
            "--buffer-dir",
        ])
        .arg(dir)
        .args([
            "--interval",
            "100ms",
            "--min-backoff",
            "10ms",
            "--max-backoff",
            "50ms",
            "--self-metrics=false",
        ])
        .args(extra)
        .kill_on_drop(true);
    cmd
}

fn spawn(kubelet: &str, remote: &str, dir: &Path, extra: &[&str]) -> Child {
    command(kubelet, remote, dir, extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn sigkill(mut child: Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// Per series, timestamps never go back. A timestamp may repeat: a restarted agent has no
/// memory of what its predecessor sent, so the kubelet's cached values can go out twice.
fn assert_in_order(series: &[TimeSeries]) {
    let mut last: HashMap<String, i64> = HashMap::new();
    for ts in series {
        let key: String = ts
            .labels
            .iter()
            .map(|l| format!("{}={};", l.name, l.value))
            .collect();
        for s in &ts.samples {
            if let Some(t) = last.get(&key) {
                assert!(s.timestamp >= *t, "{key}: {} after {t}", s.timestamp);
            }
            last.insert(key.clone(), s.timestamp);
        }
    }
}

/// `up` timestamps the receiver got, sorted.
fn ups(rx: &Receiver) -> Vec<i64> {
    let mut v: Vec<i64> = named(&rx.accepted_series(), "up")
        .iter()
        .map(|t| t.samples[0].timestamp)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Waits until the kubelet has answered `n` polls in all: on a busy machine (and under Wine,
/// whose process start-up is slow) a fixed sleep may cover only one or two.
async fn wait_for_polls(k: &KubeletServer, n: usize) {
    wait_until(format!("the kubelet answers {n} polls"), || {
        k.requests() >= n
    })
    .await;
}

async fn wait_for_up_count(rx: &Receiver, n: usize) {
    wait_until(format!("{n} polls arrive"), || ups(rx).len() >= n).await;
}

#[tokio::test]
async fn a_killed_agent_delivers_everything_after_restart() {
    let k = kubelet(4).await;
    let dir = tempfile::tempdir().unwrap();
    let port = ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
    let first = spawn(&k.url(), &url, dir.path(), &[]);
    // Receiver down: polls pile up on disk.
    wait_for_polls(&k, 8).await;
    let polls_before_kill = k.requests();
    sigkill(first).await;
    let killed_at = now_ms();

    let polls_at_kill = k.requests();

    let second = spawn(&k.url(), &url, dir.path(), &[]);
    // The receiver comes back once the second agent has replayed the buffer and polled on top
    // of it (a poll of its own behind the replayed ones), not after a guessed start-up time.
    wait_for_polls(&k, polls_at_kill + 1).await;
    let rx = Receiver::start_on(port.listen()).unwrap();
    // Every poll of the first run, except perhaps the one the kill interrupted, arrives.
    let before_kill = || ups(&rx).iter().filter(|t| **t < killed_at).count();
    wait_until(
        format!("{} polls of the first run arrive", polls_before_kill - 1),
        || before_kill() >= polls_before_kill - 1,
    )
    .await;
    let log = stop_agent(second).await;
    assert!(log.contains("disk buffer replayed"), "{log}");
    let before_kill = before_kill();
    assert!(
        before_kill >= polls_before_kill - 1,
        "{before_kill} of {polls_before_kill} polls before the kill arrived"
    );
    // Each poll's `up` has its own timestamp: a buffered request delivered twice would show
    // one twice. The receiver was down during the first run, so nothing was in flight.
    let all_ups = named(&rx.accepted_series(), "up").len();
    assert_eq!(all_ups, ups(&rx).len(), "no request delivered twice");
    assert_in_order(&rx.accepted_series());
}

#[cfg(unix)]
#[tokio::test]
async fn a_stopped_agent_keeps_what_it_could_not_send() {
    let k = kubelet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let port = ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
    let first = spawn(&k.url(), &url, dir.path(), &["--shutdown-timeout", "300ms"]);
    wait_for_polls(&k, 5).await;
    let (code, log) = sigterm(first).await;
    let polls = k.requests();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stay in the disk buffer"), "{log}");
    let rx = Receiver::start_on(port.listen()).unwrap();
    let second = spawn(&k.url(), &url, dir.path(), &[]);
    wait_for_up_count(&rx, polls).await;
    sigterm(second).await;
    assert_in_order(&rx.accepted_series());
}

/// Damage at the end of the newest segment (a torn write, a flipped bit): start-up cuts it
/// off, warns once, and delivers every intact record.
#[tokio::test]
async fn damaged_buffer_files_are_repaired_at_start_up() {
    for damage in ["truncate", "flip"] {
        let k = kubelet(2).await;
        let dir = tempfile::tempdir().unwrap();
        let port = ReservedPort::new();
        let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
        let first = spawn(&k.url(), &url, dir.path(), &[]);
        // Enough polls that the ones before the damaged last one are a real replay.
        wait_for_polls(&k, 6).await;
        sigkill(first).await;
        let polls = k.requests();
        let mut segments: Vec<_> = std::fs::read_dir(dest_buffer(dir.path(), &url))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segments.sort();
        let newest = segments.last().expect("a segment").clone();
        let mut bytes = std::fs::read(&newest).unwrap();
        match damage {
            "truncate" => bytes.truncate(bytes.len() - 7),
            _ => {
                let i = bytes.len() - 3;
                bytes[i] ^= 0x40;
            }
        }
        std::fs::write(&newest, &bytes).unwrap();

        let rx = Receiver::start_on(port.listen()).unwrap();
        let second = spawn(&k.url(), &url, dir.path(), &[]);
        // The damaged record is the last poll's; every earlier one arrives.
        wait_for_up_count(&rx, polls - 2).await;
        let log = stop_agent(second).await;
        assert_eq!(
            log.matches("damaged buffer segment").count(),
            1,
            "{damage}: {log}"
        );
        let reason = if damage == "truncate" {
            "torn tail"
        } else {
            "corrupt record"
        };
        assert!(log.contains(reason), "{damage}: {log}");
        assert_in_order(&rx.accepted_series());
    }
}

/// Two agents on one `--buffer-dir`. Started together, exactly one runs and the other exits
/// 64 saying the directory is in use (once, the loser deleted the winner's probe file and
/// said "not writable"); started while the first runs, the second names the first's pid.
/// The first never notices: it delivers every poll, once, in order, and leaves no damage.
#[tokio::test]
async fn a_second_agent_on_one_buffer_dir_exits_64_and_the_first_delivers_everything() {
    let k = kubelet(2).await;
    let rx = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The destination's own directory under `--buffer-dir` is the one locked.
    let own = dest_buffer(dir.path(), &rx.url());
    let shown = own.display().to_string();
    let check_loser = |out: std::process::Output, pids: &[String]| {
        assert_eq!(out.status.code(), Some(64));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("--buffer-dir"), "{err}");
        assert!(
            err.contains(&format!(
                "buffer directory {shown} is in use by another kubelet-push"
            )),
            "{err}"
        );
        assert!(!err.contains("not writable"), "{err}");
        assert!(
            pids.iter().any(|p| err.contains(&format!("({p})"))),
            "{err} names none of {pids:?}"
        );
        err
    };

    let mut a = spawn(&k.url(), &rx.url(), dir.path(), &[]);
    let mut b = spawn(&k.url(), &rx.url(), dir.path(), &[]);
    let a_lost = eventually(
        "one of two agents on one buffer directory exits",
        PATIENCE,
        async || {
            if a.try_wait().unwrap().is_some() {
                return Ok(true);
            }
            if b.try_wait().unwrap().is_some() {
                return Ok(false);
            }
            Err("both agents run on one buffer directory".to_owned())
        },
    )
    .await;
    let (first, loser) = if a_lost { (b, a) } else { (a, b) };
    let first_pid = first.id().expect("the first agent runs").to_string();
    // Started together, the loser may read the pid file before the winner wrote it.
    let out = loser.wait_with_output().await.unwrap();
    check_loser(
        out,
        &[format!("process {first_pid}"), "process id unknown".into()],
    );

    wait_for_up_count(&rx, 3).await;
    let later = spawn(&k.url(), &rx.url(), dir.path(), &[]);
    let out = tokio::time::timeout(PATIENCE, later.wait_with_output())
        .await
        .expect("the second agent exits at start-up")
        .unwrap();
    check_loser(out, &[format!("process {first_pid}")]);

    let delivered = ups(&rx).len();
    wait_for_up_count(&rx, delivered + 5).await;
    let log = stop_agent(first).await;
    assert!(!log.contains("damaged"), "{log}");
    assert!(rx.requests().iter().all(|r| r.accepted()));
    let all_ups = named(&rx.accepted_series(), "up").len();
    assert_eq!(all_ups, ups(&rx).len(), "no request delivered twice");
    assert_in_order(&rx.accepted_series());
    // Every sample the first agent sent, and only those, arrived (the losers sent nothing).
    #[cfg(unix)]
    {
        let received: usize = rx.accepted_series().iter().map(|ts| ts.samples.len()).sum();
        let field = |name: &str| crate::e2e::stopped_field(&log, name);
        assert_eq!(
            (field("samples_sent"), field("samples_pending")),
            (received as u64, 0),
            "{log}"
        );
    }
    // Nothing interleaved: the directory opens without damage (a kill on Windows may tear
    // the append in progress, which is not corruption).
    let (_, rec) = kubelet_push::buffer::disk::DiskBuffer::open(&own, 64 << 20).unwrap();
    assert_eq!(rec.corrupt_records, 0, "{rec:?}");
    #[cfg(unix)]
    assert_eq!((rec.truncated_bytes, rec.batches), (0, 0), "{rec:?}");
}

#[tokio::test]
async fn an_unusable_buffer_dir_is_a_start_up_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("buffer");
    let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .args([
            "--kubelet-url",
            "file:///nonexistent.json",
            "--remote-url",
            "http://127.0.0.1:1/w",
            "--buffer-dir",
        ])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--buffer-dir") && err.contains(&*dir.to_string_lossy()),
        "{err}"
    );
}

/// Windows: another process (a virus scanner, a backup agent) may hold a buffer file open
/// without sharing it. With `read.pos` held that way, recording a delivery fails (the rename
/// onto it is refused): delivery goes on, the failure is one warning, and once the file is
/// free again recording works again.
#[cfg(windows)]
#[tokio::test]
async fn a_buffer_file_held_by_another_process_does_not_stop_delivery() {
    use std::os::windows::fs::OpenOptionsExt;
    let k = kubelet(2).await;
    let rx = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = spawn(&k.url(), &rx.url(), dir.path(), &[]);
    wait_for_up_count(&rx, 2).await;
    // The agent replaces read.pos after every delivery: open it between two replacements.
    let read_pos = dest_buffer(dir.path(), &rx.url()).join("read.pos");
    let held = eventually("read.pos opened unshared", PATIENCE, async || {
        std::fs::OpenOptions::new()
            .read(true)
            .share_mode(0)
            .open(&read_pos)
            .map_err(|e| e.to_string())
    })
    .await;
    let delivered = ups(&rx).len();
    wait_for_up_count(&rx, delivered + 5).await;
    drop(held);
    let delivered = ups(&rx).len();
    wait_for_up_count(&rx, delivered + 3).await;
    let log = stop_agent(agent).await;
    assert_eq!(
        log.matches("cannot record delivery in the buffer").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("recording deliveries in the buffer works again"),
        "{log}"
    );
    assert_in_order(&rx.accepted_series());
}

/// A tmpfs of `size` (as `mount -o size=` takes it) mounted on a fresh temporary directory,
/// unmounted on drop. Mounting needs root; CI runs as root and must not skip: `None` (the test
/// returns, saying so) only outside CI.
#[cfg(unix)]
struct Tmpfs(tempfile::TempDir);

#[cfg(unix)]
impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount a tmpfs (runs as root)"
            );
            eprintln!("skipped: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(unix)]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// A running agent's own `/metrics`, read with one client for the whole test: a client per
/// read (`support::self_metric`) costs more in a debug build than the polls these tests count.
#[cfg(unix)]
#[derive(Clone)]
struct SelfMetrics {
    client: reqwest::Client,
    url: String,
}

#[cfg(unix)]
impl SelfMetrics {
    fn at(listen: &str) -> SelfMetrics {
        kubelet_push::http::install_crypto_provider();
        SelfMetrics {
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            url: format!("http://{listen}/metrics"),
        }
    }

    /// The value `pattern` names (see `support::metric_in`); `None` while the agent does not
    /// answer.
    async fn get(&self, pattern: &str) -> Option<f64> {
        let response = self.client.get(&self.url).send().await.ok()?;
        metric_in(&response.text().await.ok()?, pattern)
    }

    /// The value `pattern` names, waiting (bounded) while the agent does not answer: a failed
    /// read is never taken for a value.
    async fn read(&self, pattern: &str) -> f64 {
        eventually(
            format!("a {pattern} value at {}", self.url),
            PATIENCE,
            async || self.get(pattern).await.ok_or_else(String::new),
        )
        .await
    }
}

/// A real full file system (a 256 KiB tmpfs, under a 16 MiB `--buffer-max-size`): every push
/// is stored, the oldest segments making room, so what is left is exactly the newest batches,
/// in order; what went is counted as `disk_full` drops, apart from `--buffer-max-size`'s.
#[cfg(unix)]
#[test]
fn a_full_file_system_evicts_the_oldest_batches() {
    use kubelet_push::buffer::disk::DiskBuffer;
    use kubelet_push::buffer::{Buffer, Dropped};
    use kubelet_push::remote_write::{Protocol, Request};
    const DISK: u64 = 256 << 10;
    let Some(mount) = Tmpfs::mount(&format!("{}k", DISK >> 10)) else {
        return;
    };
    // `--buffer-max-size 512KiB`: 64 KiB segments, so a full disk loses a quarter of itself
    // at a time, not everything.
    let (mut buffer, _) = DiskBuffer::open(mount.path(), 512 << 10).unwrap();
    let batch = |n: u32| Request {
        protocol: Protocol::V1,
        // Incompressible bytes (the buffer stores bodies as they are), 3 KiB, distinct per batch.
        body: (0..3072u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ n) as u8)
            .collect(),
        samples: n,
        oldest_ms: i64::from(n),
        newest_ms: i64::from(n),
    };
    let mut dropped = Dropped::default();
    let mut pushed = 0u32;
    // Three times the volume: the disk fills, and room is made for each push again and again.
    while u64::from(pushed) * 3072 < 3 * DISK {
        pushed += 1;
        let d = buffer
            .push(batch(pushed))
            .unwrap_or_else(|e| panic!("push {pushed}: {e}"));
        dropped.disk_full_batches += d.disk_full_batches;
        dropped.disk_full_samples += d.disk_full_samples;
        dropped.batches += d.batches;
    }
    assert_eq!(dropped.batches, 0, "nothing dropped for --buffer-max-size");
    let evicted = u32::try_from(dropped.disk_full_batches).unwrap();
    assert!(
        evicted > 0 && evicted < pushed,
        "{evicted} of {pushed} evicted"
    );
    // The evicted are the oldest, whole segments of them, and were counted exactly.
    assert_eq!(
        dropped.disk_full_samples,
        (1..=evicted).map(u64::from).sum::<u64>()
    );
    let mut left = Vec::new();
    while let Some((seq, b)) = buffer.front().unwrap() {
        left.push(b.samples);
        assert!(buffer.ack(seq).unwrap());
    }
    assert_eq!(left, (evicted + 1..=pushed).collect::<Vec<_>>());
}

/// A real full disk (a 256 KiB tmpfs, under a 512 KiB `--buffer-max-size`), through the agent:
/// while the receiver is down the disk fills, and every later poll is still stored, the oldest
/// requests deleted to make room (newest data wins, as at `--buffer-max-size`), counted as
/// `reason="disk_full"` and said once per episode; no write fails. Once the receiver is back
/// everything not evicted arrives, in order. Mounting needs root; CI runs as root and must not
/// skip this.
#[cfg(unix)]
#[tokio::test]
async fn a_full_disk_evicts_the_oldest_and_keeps_polling() {
    use kubelet_push::testkit::receiver::Response;
    const DISK: usize = 256 << 10;
    // A stored request's record: its header and a body of at least the per-poll series.
    const MIN_RECORD: usize = 64;
    let Some(mount) = Tmpfs::mount(&format!("{}k", DISK >> 10)) else {
        return;
    };

    let k = kubelet(80).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    let (agent, listen) = AgentProcess::listening(&mut command(
        &k.url(),
        &rx.url(),
        mount.path(),
        &["--buffer-max-size", "512KiB"],
    ))
    .await;
    let metrics = SelfMetrics::at(&listen);
    let read = |pattern: &'static str| {
        let metrics = metrics.clone();
        async move { metrics.read(pattern).await }
    };
    let disk_full = "kubelet_push_samples_dropped_total{reason=\"disk_full\"}";
    // Bounded in polls, not in time: filling the disk takes stores, and a loaded machine
    // polls slower. Until the disk is full, every poll stores a request of at least
    // `MIN_RECORD` bytes, so within `DISK / MIN_RECORD` polls it is; then evictions come
    // every few polls (a 64 KiB segment at a time). Wait for two, so that polls were stored
    // on a full disk in between.
    let most_polls = 2 * DISK / MIN_RECORD;
    let mut evictions = Vec::new();
    while evictions.len() < 2 {
        assert!(
            k.requests() < most_polls,
            "the disk never filled in {} polls: {} samples pending",
            k.requests(),
            read("kubelet_push_samples_pending").await
        );
        let before = k.requests();
        wait_for_polls(&k, before + 1).await;
        let now = read(disk_full).await;
        if now > evictions.last().copied().unwrap_or(0.0) {
            evictions.push(now);
        }
    }
    rx.clear_responses();
    eventually("drained", PATIENCE, async || {
        let pending = read("kubelet_push_samples_pending").await;
        let sent = read("kubelet_push_samples_sent_total").await;
        (pending == 0.0 && sent > 0.0)
            .then_some(())
            .ok_or_else(|| format!("{pending} samples pending, {sent} sent"))
    })
    .await;
    // With the receiver back and the buffer drained, nothing is evicted any more.
    let evicted = read(disk_full).await;
    let (code, log) = sigterm(agent).await;
    assert_eq!(code, Some(0), "{log}");
    // No write failed: the disk always made room.
    assert!(!log.contains("cannot store a request"), "{log}");
    // One episode (it ends only after quiet polls with the buffer drained): said once.
    assert_eq!(
        log.matches("disk full: deleting the oldest").count(),
        1,
        "{log}"
    );
    // Everything queued was delivered or evicted for space; nothing else was dropped.
    let field = |name: &str| crate::e2e::stopped_field(&log, name) as f64;
    assert!(evicted >= evictions[1], "{evicted} {evictions:?}");
    assert_eq!(field("samples_pending"), 0.0, "{log}");
    assert_eq!(field("samples_dropped"), evicted, "{log}");
    assert_eq!(
        field("samples_sent") + evicted,
        field("samples_queued"),
        "{log}"
    );
    let received: usize = rx.accepted_series().iter().map(|ts| ts.samples.len()).sum();
    assert_eq!(received as f64, field("samples_sent"));
    // Which ones were evicted (the oldest, whole segments) is
    // `a_full_file_system_evicts_the_oldest_batches`'s to check; here, what arrived is in order.
    assert_in_order(&rx.accepted_series());
}

/// A simulated kubelet whose clock moves 15 s per poll (starting an hour ago, so nothing is
/// ever in the future): every poll finds every value refreshed, as a real kubelet's would be
/// polled every 15 s, so each request is as large as a first poll's.
///
/// Once [`FastKubelet::drained_first`] names the agent's `/metrics`, it answers a summary only
/// when the agent has nothing pending: each poll starts with an empty buffer, as it does with
/// a receiver that keeps up, however slowly the machine lets the agent deliver.
#[cfg(unix)]
struct FastKubelet {
    server: kubelet_push::testkit::server::LocalServer,
    polls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    agent: std::sync::Arc<std::sync::Mutex<Option<SelfMetrics>>>,
}

#[cfg(unix)]
impl FastKubelet {
    async fn start(pods: usize) -> FastKubelet {
        use axum::http::header;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::SystemTime;
        let now = SystemTime::now();
        let sim = kubelet_push::testkit::simulator::SimulatedKubelet::new(
            pods,
            5,
            now - Duration::from_secs(2 * 3600),
        );
        let sim = Arc::new(Mutex::new(sim));
        let polls = Arc::new(AtomicUsize::new(0));
        let agent: Arc<Mutex<Option<SelfMetrics>>> = Arc::new(Mutex::new(None));
        let start = now - Duration::from_secs(3600);
        let clock = {
            let polls = polls.clone();
            move || start + Duration::from_secs(15) * polls.load(Ordering::SeqCst) as u32
        };
        let (s1, p1, c1, a1) = (sim.clone(), polls.clone(), clock.clone(), agent.clone());
        let json = || [(header::CONTENT_TYPE, "application/json")];
        let app = axum::Router::new()
            .route(
                "/stats/summary",
                axum::routing::get(move || {
                    let (s1, p1, c1, a1) = (s1.clone(), p1.clone(), c1.clone(), a1.clone());
                    async move {
                        // Unbounded here: a test whose agent never drains fails on its own
                        // deadline for polls (the agent's --kubelet-timeout is longer).
                        loop {
                            let agent = a1.lock().unwrap().clone();
                            if let Some(agent) = agent {
                                let pending = agent.get("kubelet_push_samples_pending").await;
                                if pending == Some(0.0) {
                                    break;
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let doc = s1.lock().unwrap().summary_json(c1());
                        p1.fetch_add(1, Ordering::SeqCst);
                        (json(), doc)
                    }
                }),
            )
            .route(
                "/pods",
                axum::routing::get(move || {
                    let doc = sim.lock().unwrap().pods_json(clock());
                    async move { (json(), doc) }
                }),
            );
        let server = kubelet_push::testkit::server::LocalServer::start(app, "fast kubelet")
            .await
            .unwrap();
        FastKubelet {
            server,
            polls,
            agent,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Polls answered.
    fn polls(&self) -> usize {
        self.polls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, a summary only for an agent (serving `metrics`) that has nothing pending.
    fn drained_first(&self, metrics: &SelfMetrics) {
        *self.agent.lock().unwrap() = Some(metrics.clone());
    }
}

/// A disk buffer on a small volume (a 256 KiB tmpfs) with a healthy receiver and the default
/// `--buffer-max-size` (64 MiB, far more than the volume): what waits never comes near the
/// volume's size, so every sample must arrive and none may be dropped as a write error.
/// Before segments were sized for small volumes, delivered requests stayed on disk in the
/// newest segment until it reached 1 MiB; once that filled the volume, a request stored while
/// another was in flight failed (measured with this test on that code: 1.4-1.6 % of the
/// samples in each of 3 runs, over 4.3 volumes' worth; 9 % in the trial that found it).
///
/// "Healthy" is a precondition, not a race: the kubelet answers the next poll only once the
/// agent has delivered everything (see [`FastKubelet`]), so on a loaded machine the polls slow
/// down instead of a backlog building up. That still fails on the old code: a poll is several
/// requests stored one right after the other while the first is in flight (5 ms each), so the
/// request that meets the full volume is, in all but one case in a poll's worth, stored while
/// an earlier one of its poll is pending, when there is nothing delivered to free first; and
/// the volume fills every ~20 polls. Measured on that code (with this gate, 100 polls): 223,
/// 529 and 571 samples dropped as write errors in 3 of 3 runs. 120 polls take the volume's
/// worth through it about five times (4.3-4.4 in 100), above the 4 asserted below.
#[cfg(unix)]
#[tokio::test]
async fn a_small_volume_with_a_healthy_receiver_loses_nothing() {
    use kubelet_push::testkit::receiver::Response;
    const VOLUME: f64 = 256.0 * 1024.0;
    const POLLS: usize = 120;
    let Some(mount) = Tmpfs::mount("256k") else {
        return;
    };
    let k = FastKubelet::start(10).await;
    let rx = Receiver::start().await.unwrap();
    // Healthy, but a network away: each answer takes 5 ms. A poll is several requests (at
    // most 100 samples each), stored one after the other, so the sender is usually still
    // waiting for the first when the next is stored.
    for _ in 0..2000 {
        rx.push_response(Response::status(204).with_delay(Duration::from_millis(5)));
    }
    let (agent, listen) = AgentProcess::listening(&mut command(
        &k.url(),
        &rx.url(),
        mount.path(),
        // A summary held back until the agent drained must not time the poll out.
        // 1.0: the scripted answers carry no 2.0 written counts.
        &[
            "--max-samples-per-send",
            "100",
            "--kubelet-timeout",
            "10m",
            "--remote-write-version",
            "1",
        ],
    ))
    .await;
    let metrics = SelfMetrics::at(&listen);
    k.drained_first(&metrics);
    // Progress, not a total time: each poll must come within PATIENCE of the one before.
    let mut deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = k.polls();
    let mut peak = 0.0f64;
    while k.polls() < POLLS {
        let held = metrics.get("kubelet_push_buffer_bytes").await;
        peak = peak.max(held.unwrap_or(0.0));
        if k.polls() > seen {
            seen = k.polls();
            deadline = tokio::time::Instant::now() + PATIENCE;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck at {} polls: {}",
            k.polls(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped_line = "kubelet_push_samples_dropped_total{reason=\"buffer_write_error\"}";
    let write_errors = metrics.read(dropped_line).await;
    let queued = metrics.read("kubelet_push_samples_queued_total").await;
    let (code, log) = sigterm(agent).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        write_errors, 0.0,
        "{write_errors} of {queued} samples dropped as write errors: {log}"
    );
    assert!(!log.contains("cannot store a request"), "{log}");
    // The receiver kept up: what waited stayed far below the volume (sampled every 50 ms).
    assert!(
        peak > 0.0 && peak < VOLUME / 3.0,
        "{peak} bytes waited at most"
    );

    let field = |name: &str| crate::e2e::stopped_field(&log, name);
    assert_eq!(field("samples_pending"), 0, "{log}");
    let sent = field("samples_sent");
    assert!(sent as f64 >= queued, "{sent} sent of {queued} queued");
    let received: usize = rx.accepted_series().iter().map(|ts| ts.samples.len()).sum();
    assert_eq!(
        received as u64, sent,
        "the receiver decoded every sample sent"
    );
    assert!(
        rx.requests().iter().all(|r| r.accepted()),
        "every request was accepted"
    );
    // Every value is new in every poll, so this went through the volume several times over.
    let bytes: usize = rx.requests().iter().map(|r| r.compressed_bytes).sum();
    assert!(bytes as f64 > 4.0 * VOLUME, "{bytes} bytes delivered");
    assert_in_order(&rx.accepted_series());
}

/// `tests/fixtures/buffer-v1/` (see tests/fixtures/README.md): polls 0..6 of a node, one
/// request each, written by the format-1 disk buffer; polls 0 and 1 acknowledged.
mod buffer_v1 {
    use std::path::{Path, PathBuf};

    use kubelet_push::remote_write::proto::v1::{Label, WriteRequest};
    use kubelet_push::remote_write::STALE_NAN_BITS;
    use prost::Message;

    /// Series of `container_cpu_usage_seconds_total` in each poll's request (each request
    /// also carries one stale marker).
    pub const SERIES: [usize; 6] = [900, 900, 900, 900, 3, 2];
    /// The read position: polls before it were delivered.
    pub const ACKED: usize = 2;
    const T0: i64 = 1_700_000_000_000;

    pub fn time(poll: usize) -> i64 {
        T0 + poll as i64 * 15_000
    }

    /// Copies the fixture into `to`, so a test never changes the checked-in files.
    pub fn copy_to(to: &Path) -> Vec<PathBuf> {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/buffer-v1");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            names.push(to.join(entry.file_name()));
        }
        names.sort();
        assert_eq!(names.len(), 3, "two segments and read.pos: {names:?}");
        names
    }

    pub fn decode(body: &[u8]) -> WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        WriteRequest::decode(raw.as_slice()).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect()
    }

    /// The request of `poll`, sample by sample, as the generator wrote it.
    pub fn assert_request(w: &WriteRequest, poll: usize) {
        let n = SERIES[poll];
        assert_eq!(w.timeseries.len(), n + 1, "poll {poll}");
        for (i, ts) in w.timeseries[..n].iter().enumerate() {
            let (c, ns, pod) = (format!("c{i}"), format!("ns-{}", i % 3), format!("pod-{i}"));
            assert_eq!(
                ts.labels,
                labels(&[
                    ("__name__", "container_cpu_usage_seconds_total"),
                    ("container", &c),
                    ("instance", "fixture-node"),
                    ("job", "kubelet-push"),
                    ("namespace", &ns),
                    ("node", "fixture-node"),
                    ("pod", &pod),
                ]),
                "poll {poll} series {i}"
            );
            assert_eq!(ts.samples.len(), 1);
            assert_eq!(
                ts.samples[0].value,
                poll as f64 * 1e6 + i as f64 + 0.25,
                "poll {poll} series {i}"
            );
            assert_eq!(ts.samples[0].timestamp, time(poll));
        }
        let stale = &w.timeseries[n];
        let gone = format!("gone-{poll}");
        assert_eq!(
            stale.labels,
            labels(&[
                ("__name__", "container_memory_working_set_bytes"),
                ("instance", "fixture-node"),
                ("job", "kubelet-push"),
                ("node", "fixture-node"),
                ("pod", &gone),
            ])
        );
        assert_eq!(stale.samples.len(), 1);
        assert_eq!(stale.samples[0].value.to_bits(), STALE_NAN_BITS);
        assert_eq!(stale.samples[0].timestamp, time(poll));
    }
}

/// A few values written out, so the formula in `buffer_v1::assert_request` is checked against
/// something other than itself.
#[test]
fn the_v1_fixture_holds_what_its_readme_says() {
    use kubelet_push::buffer::disk::DiskBuffer;
    use kubelet_push::buffer::Buffer;
    let dir = tempfile::tempdir().unwrap();
    buffer_v1::copy_to(dir.path());
    let (mut b, _) = DiskBuffer::open(dir.path(), 16 << 20).unwrap();
    let (seq, first) = b.front().unwrap().unwrap();
    assert_eq!(seq, 2);
    let w = buffer_v1::decode(&first.body);
    let s = &w.timeseries[899];
    assert_eq!(label(s, "pod"), Some("pod-899"));
    assert_eq!(label(s, "namespace"), Some("ns-2"));
    assert_eq!(s.samples[0].value, 2_000_899.25);
    assert_eq!(s.samples[0].timestamp, 1_700_000_030_000);
}

/// A request in the new format, built without the crate's encoder.
fn new_batch(n: u32) -> kubelet_push::remote_write::Request {
    use kubelet_push::remote_write::proto::v1::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;
    let t = 1_800_000_000_000 + i64::from(n);
    let w = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: format!("new_{n}"),
            }],
            samples: vec![Sample {
                value: f64::from(n),
                timestamp: t,
            }],
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&w.encode_to_vec())
        .unwrap();
    kubelet_push::remote_write::Request {
        protocol: kubelet_push::remote_write::Protocol::V1,
        body: body.into(),
        samples: 1,
        oldest_ms: t,
        newest_ms: t,
    }
}

/// The directory the format-1 release left replays exactly its unacknowledged requests, in
/// order, as Remote Write 1.0, sample for sample; new requests go behind them in the new
/// format, and a restart replays old and new in order.
#[test]
fn a_buffer_written_by_format_1_replays_its_unacknowledged_requests() {
    use kubelet_push::buffer::disk::DiskBuffer;
    use kubelet_push::buffer::Buffer;
    use kubelet_push::remote_write::Protocol;
    let dir = tempfile::tempdir().unwrap();
    let old_files = buffer_v1::copy_to(dir.path());
    let pending: Vec<usize> = (buffer_v1::ACKED..buffer_v1::SERIES.len()).collect();
    let samples: u64 = pending
        .iter()
        .map(|p| buffer_v1::SERIES[*p] as u64 + 1)
        .sum();

    let (mut b, rec) = DiskBuffer::open(dir.path(), 16 << 20).unwrap();
    assert_eq!(
        (
            rec.batches,
            rec.samples,
            rec.truncated_bytes,
            rec.corrupt_records
        ),
        (4, samples, 0, 0)
    );
    let new = [new_batch(6), new_batch(7)];
    for x in &new {
        b.push(x.clone()).unwrap();
    }
    drop(b);
    // New requests go into a new segment, in the new format.
    let newest = dir.path().join("00000000000000000006.seg");
    let head = std::fs::read(&newest).unwrap();
    assert_eq!(&head[..8], &[0x0B, 0, 0, 0, b'K', b'P', b'B', b'F']);

    let (mut b, rec) = DiskBuffer::open(dir.path(), 16 << 20).unwrap();
    assert_eq!((rec.batches, rec.samples), (6, samples + 2));
    let mut got = Vec::new();
    while let Some((seq, x)) = b.front().unwrap() {
        b.ack(seq).unwrap();
        got.push((seq, x));
    }
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6, 7]);
    for ((_, x), poll) in got.iter().zip(&pending) {
        assert_eq!(x.protocol, Protocol::V1);
        assert_eq!(x.samples as usize, buffer_v1::SERIES[*poll] + 1);
        assert_eq!(
            (x.oldest_ms, x.newest_ms),
            (buffer_v1::time(*poll), buffer_v1::time(*poll))
        );
        buffer_v1::assert_request(&buffer_v1::decode(&x.body), *poll);
    }
    let replayed_new: Vec<_> = got[4..].iter().map(|(_, x)| x.clone()).collect();
    assert_eq!(replayed_new, new);
    let w = buffer_v1::decode(&got[5].1.body);
    assert_eq!(w.timeseries[0].samples[0].value, 7.0);
    drop(b);
    // Delivered: every segment is gone, the old ones and the new one.
    for f in old_files[..2].iter().chain([&newest]) {
        assert!(!f.exists(), "{f:?}");
    }
}

/// An upgraded agent finds the format-1 directory and delivers it, oldest first, before its
/// own poll. It was written by a release that kept the buffer in `--buffer-dir` itself: the
/// agent moves it into the destination's subdirectory first.
#[tokio::test]
async fn an_agent_delivers_a_format_1_buffer_before_its_own_poll() {
    use kubelet_push::telemetry::Metrics;
    use kubelet_push::Outcome;
    let rx = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    buffer_v1::copy_to(dir.path());
    let seed = fixture("seed-windows-node.json");
    let kubelet_url = format!("file://{}", seed.display());
    let buffer_dir = dir.path().to_str().unwrap();
    let cfg = config(&[
        "--once",
        // The format-1 buffer holds 1.0 requests; with 1.0 pinned they go as they are.
        "--remote-write-version",
        "1",
        "--kubelet-url",
        &kubelet_url,
        "--remote-url",
        &rx.url(),
        "--buffer-dir",
        buffer_dir,
        "--min-backoff",
        "10ms",
        "--max-backoff",
        "100ms",
    ]);
    let metrics = std::sync::Arc::new(Metrics::new());
    let mut sink = Vec::new();
    let outcome = kubelet_push::run(
        cfg,
        tokio_util::sync::CancellationToken::new(),
        metrics.clone(),
        &mut sink,
    )
    .await
    .expect("run");
    assert_eq!(outcome, Outcome::Ok);

    let requests = rx.requests();
    assert_eq!(requests.len(), 5, "four replayed, one poll");
    for (r, poll) in requests.iter().zip(buffer_v1::ACKED..) {
        assert!(r.accepted(), "{:?}", r.rejection);
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
        if poll < buffer_v1::SERIES.len() {
            buffer_v1::assert_request(r.write_request.as_ref().unwrap(), poll);
        }
    }
    let own = requests[4].write_request.as_ref().unwrap();
    assert_eq!(only_value(&own.timeseries, "up"), 1.0);
    let replayed: u64 = (buffer_v1::ACKED..buffer_v1::SERIES.len())
        .map(|p| buffer_v1::SERIES[p] as u64 + 1)
        .sum();
    assert_eq!(
        only_dest(&metrics).samples_sent.get(),
        replayed + own.timeseries.len() as u64
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let own = dest_buffer(dir.path(), &rx.url());
    assert_eq!(
        left,
        [own.file_name().unwrap().to_string_lossy().into_owned()],
        "the old buffer moved into the destination's subdirectory"
    );
    let (_, rec) = kubelet_push::buffer::disk::DiskBuffer::open(&own, 16 << 20).unwrap();
    assert_eq!(rec.batches, 0, "everything delivered and acknowledged");
}

/// A segment a newer release wrote (format version 3 here) stops the agent at start-up with
/// exit 64, naming `--buffer-dir`, the file and the version, and leaves every file as it was:
/// a downgrade must not destroy what the newer release buffered.
#[tokio::test]
async fn a_buffer_from_a_newer_release_stops_start_up_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    // Where a newer release keeps the destination's buffer.
    let own = dest_buffer(dir.path(), "http://127.0.0.1:1/w");
    std::fs::create_dir_all(&own).unwrap();
    buffer_v1::copy_to(&own);
    let newer = own.join("00000000000000000006.seg");
    let mut header = vec![0x0B, 0, 0, 0, b'K', b'P', b'B', b'F'];
    header.extend_from_slice(&3u32.to_le_bytes());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(b"whatever format 3 holds");
    std::fs::write(&newer, &header).unwrap();
    // What is buffered; `lock` and `lock.pid` are the agent's own (it took the lock before
    // it read anything).
    let snapshot = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("lock")
            })
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&own);
    let out = tokio::time::timeout(
        PATIENCE,
        Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .args([
                "--kubelet-url",
                "file:///nonexistent.json",
                "--remote-url",
                "http://127.0.0.1:1/w",
                "--buffer-dir",
            ])
            .arg(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits at start-up")
    .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--buffer-dir"), "{err}");
    assert!(err.contains(&*newer.to_string_lossy()), "{err}");
    assert!(err.contains("format version 3"), "{err}");
    assert_eq!(snapshot(&own), before, "nothing changed on disk");
}
