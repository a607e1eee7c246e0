//! Hostile peers and files (issue 12, problems 4-6): answers with huge error bodies, a
//! `file://` summary that never ends or never opens, secrets in URLs and the environment, and
//! a receiver that redirects to another host. The agent's memory is read from the running
//! binary (`VmHWM`, Linux only); everything else holds on every platform unless marked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
#[cfg(unix)]
use std::time::Duration;

use kubelet_push::remote_write::proto::v1::WriteRequest;
use kubelet_push::testkit::receiver::{Receiver, Response};
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// The body every answer of [`HugeBody`] claims and streams: twice the summary limit, so a
/// client that read it whole could not stay under the memory bounds below.
const HUGE: u64 = 128 << 20;

/// Each request's path and body, in arrival order.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A peer on 127.0.0.1 that answers every request with one status and a [`HUGE`] body that
/// starts with `first` and goes on with filler, generated as it is written (never held).
struct HugeBody {
    url: String,
    /// The most body bytes the peer managed to hand to the kernel on one connection: what
    /// the client read plus what socket buffers hold (a few MiB on loopback).
    written: Arc<AtomicU64>,
    requests: Requests,
}

impl HugeBody {
    async fn start(status: &'static str, first: &'static [u8]) -> HugeBody {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let written = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (w, r) = (written.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, status, first, w.clone(), r.clone()));
            }
        });
        HugeBody {
            url,
            written,
            requests,
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.requests.lock().unwrap().clone()
    }

    async fn wait_for(&self, path: &str, n: usize) {
        eventually(format!("{n} requests for {path}"), PATIENCE, async || {
            let paths: Vec<_> = self.requests().into_iter().map(|r| r.0).collect();
            let done = paths.iter().filter(|p| *p == path).count() >= n;
            done.then_some(()).ok_or_else(|| format!("{paths:?}"))
        })
        .await;
    }
}

/// One keep-alive connection: read a request (head, then a `Content-Length` body), answer.
async fn serve(
    mut conn: tokio::net::TcpStream,
    status: &'static str,
    first: &'static [u8],
    written: Arc<AtomicU64>,
    requests: Requests,
) {
    let mut buf = Vec::new();
    while let Some((path, body)) = read_request(&mut conn, &mut buf).await {
        requests.lock().unwrap().push((path, body));
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {HUGE}\r\n\r\n"
        );
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let filler = vec![b'x'; 64 << 10];
        let mut sent = 0u64;
        let mut left = HUGE;
        let mut next: &[u8] = first;
        while left > 0 {
            let n = next.len().min(left as usize);
            if conn.write_all(&next[..n]).await.is_err() {
                return;
            }
            sent += n as u64;
            written.fetch_max(sent, Ordering::Relaxed);
            left -= n as u64;
            next = &filler;
        }
    }
}

/// The agent binary with `args`. Its own metrics are not pushed: these tests count the polls'
/// `up`s and requests (`selfmetrics.rs` tests what the self-metrics add).
fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.args(args)
        .arg("--self-metrics=false")
        .env_remove("KUBELET_PUSH_REMOTE_URL")
        .kill_on_drop(true);
    cmd
}

/// The agent binary with `args`, its stderr kept for [`stop_agent`].
fn agent(args: &[&str]) -> tokio::process::Child {
    command(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kubelet-push")
}

/// The peak resident memory of a running process, in MiB (`VmHWM`).
#[cfg(target_os = "linux")]
fn peak_rss_mib(child: &tokio::process::Child) -> f64 {
    let pid = child.id().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

/// The log lines that contain `needle`, each checked to be one bounded line.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    let found: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
    for line in &found {
        assert!(line.len() < 1000, "one short line: {} bytes", line.len());
    }
    found
}

/// Every decoded `up` value the receiver accepted.
fn up_values(rx: &Receiver) -> Vec<f64> {
    named(&rx.accepted_series(), "up")
        .iter()
        .flat_map(|ts| ts.samples.iter().map(|s| s.value))
        .collect()
}

/// A kubelet answering 500 with a 128 MiB body (summary and `/pods` alike): the agent reads
/// 4 KiB of it for the message and drops the connection. Before: the body was read whole (a
/// 400 MiB one took the agent to 806 MB).
#[tokio::test]
async fn a_huge_error_body_from_the_kubelet_is_not_read() {
    let kubelet = HugeBody::start("500 Internal Server Error", b"kubelet exploded ").await;
    let rx = Receiver::start().await.unwrap();
    let (ku, ru) = (kubelet.url.clone(), rx.url());
    let child = agent(&[
        "--kubelet-url",
        &ku,
        "--remote-url",
        &ru,
        "--interval",
        "1s",
        "--node-name",
        "n1",
    ]);
    kubelet.wait_for("/stats/summary", 3).await;
    kubelet.wait_for("/pods", 1).await;
    assert!(rx.wait_for_requests(2, PATIENCE).await);
    #[cfg(target_os = "linux")]
    let peak = peak_rss_mib(&child);
    let log = stop_agent(child).await;

    let ups = up_values(&rx);
    assert!(ups.len() >= 2 && ups.iter().all(|v| *v == 0.0), "{ups:?}");
    // Four answers of 128 MiB were offered; what the kernel took is socket buffers, not them.
    let written = kubelet.written();
    assert!(
        written < 32 << 20,
        "the agent read {written} bytes of error bodies"
    );
    let failed = lines_with(&log, "kubelet poll failed");
    assert_eq!(failed.len(), 1, "said once: {log}");
    assert!(
        failed[0].contains("kubelet answered 500 Internal Server Error: kubelet exploded xxx")
            && failed[0].contains("xxx…"),
        "the message, cut: {}",
        failed[0]
    );
    #[cfg(target_os = "linux")]
    {
        eprintln!("peak RSS {peak:.1} MiB; {written} bytes of one error body written at most");
        assert!(peak < 40.0, "peak RSS {peak:.1} MiB");
    }
}

/// A receiver answering 400 with a 128 MiB body: the request is dropped with the first line
/// of the body as the reason, and the next request goes; memory stays flat. Before: every
/// rejected request read the whole body (a 10 MB one added about 18 MB).
#[tokio::test]
async fn a_huge_error_body_from_the_receiver_is_not_read() {
    let kubelet = simulated_kubelet(3, 7).await;
    let rx = HugeBody::start(
        "400 Bad Request",
        b"out of order sample\nand then a page of HTML",
    )
    .await;
    let ku = kubelet.url();
    let ru = format!("{}/api/v1/write", rx.url);
    // 1.0: the bodies are read back as 1.0 below.
    let child = agent(&[
        "--kubelet-url",
        &ku,
        "--remote-url",
        &ru,
        "--interval",
        "1s",
        "--remote-write-version",
        "1",
    ]);
    rx.wait_for("/api/v1/write", 3).await;
    #[cfg(target_os = "linux")]
    let peak = peak_rss_mib(&child);
    let log = stop_agent(child).await;

    // What was offered is whole polls (a poll may take several requests), each request
    // once: a rejected request is dropped, not retried.
    let requests = rx.requests();
    let bodies: std::collections::BTreeSet<_> = requests.iter().map(|(_, b)| b).collect();
    assert_eq!(bodies.len(), requests.len(), "no request sent twice");
    let mut ups = std::collections::BTreeSet::new();
    let mut pods = std::collections::BTreeSet::new();
    for (_, body) in &requests {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        let w = <WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
        for ts in named(&w.timeseries, "up") {
            assert_eq!(ts.samples[0].value, 1.0);
            ups.insert(ts.samples[0].timestamp);
        }
        for ts in named(&w.timeseries, "pod_cpu_usage_seconds_total") {
            pods.insert(label(ts, "pod").unwrap().to_owned());
        }
    }
    assert!(ups.len() >= 2, "polls offered: {ups:?}");
    assert_eq!(pods.len(), 3, "{pods:?}");
    let written = rx.written();
    assert!(
        written < 32 << 20,
        "the agent read {written} bytes of error bodies"
    );
    let rejected = lines_with(&log, "remote write rejected by the receiver");
    assert!(!rejected.is_empty(), "{log}");
    assert!(
        rejected[0].contains("receiver answered 400 Bad Request: out of order sample")
            && !rejected[0].contains("HTML"),
        "{}",
        rejected[0]
    );
    #[cfg(target_os = "linux")]
    {
        eprintln!("peak RSS {peak:.1} MiB; {written} bytes of one error body written at most");
        assert!(peak < 40.0, "peak RSS {peak:.1} MiB");
    }
}

/// `file:///dev/zero` never ends: the read stops one byte past the 64 MiB limit and the poll
/// fails saying so. Before: 8.9 GB in 6 s.
#[cfg(unix)]
#[tokio::test]
async fn a_file_that_never_ends_is_read_up_to_the_limit() {
    let rx = Receiver::start().await.unwrap();
    let ru = rx.url();
    let child = agent(&[
        "--kubelet-url",
        "file:///dev/zero",
        "--remote-url",
        &ru,
        "--interval",
        "1s",
    ]);
    assert!(rx.wait_for_requests(2, PATIENCE).await);
    #[cfg(target_os = "linux")]
    let peak = peak_rss_mib(&child);
    let log = stop_agent(child).await;
    let ups = up_values(&rx);
    assert!(ups.len() >= 2 && ups.iter().all(|v| *v == 0.0), "{ups:?}");
    let failed = lines_with(&log, "kubelet poll failed");
    assert_eq!(failed.len(), 1, "said once: {log}");
    assert!(
        failed[0].contains("captured summary /dev/zero is larger than the limit of 64 MiB"),
        "{}",
        failed[0]
    );
    // The limit's worth of zeros, once, and the agent itself.
    #[cfg(target_os = "linux")]
    {
        eprintln!("peak RSS {peak:.1} MiB");
        assert!(peak < 64.0 + 40.0, "peak RSS {peak:.1} MiB");
    }
}

/// A captured summary over the limit is refused by its size, before it is read.
#[tokio::test]
async fn a_captured_summary_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(kubelet_push::kubelet::client::MAX_SUMMARY_BYTES as u64 + 1)
        .unwrap();
    drop(file);
    let url = format!("file://{}", path.display());
    let out = polled(&mut poller(&["--kubelet-url", &url, "--dry-run"])).await;
    let err = out.error.expect("refused");
    assert!(
        matches!(err, kubelet_push::kubelet::ScrapeError::FileTooLarge { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("larger than the limit of 64 MiB"),
        "{err}"
    );
    assert_eq!(only_value(&out.series, "up"), 0.0);
}

/// The path of a new FIFO in `dir` (`mkfifo(1)`: no FFI in tests either).
#[cfg(unix)]
fn fifo(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("summary.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    path
}

/// A FIFO nobody writes blocks in `open(2)` for ever: each poll gives up after
/// `--kubelet-timeout` with a clear error, and once four reads are stuck the next is refused
/// at once instead of adding a fifth thread. Before: the first poll never returned.
///
/// On tokio's paused clock: the poll is a file read on a thread of its own, awaited with a
/// timer, and no socket is involved (a `--dry-run` poller of a `file://` URL asks no `/pods`),
/// so the clock moves only when every task waits, straight to the next timer. Each time read
/// below is then exactly what the agent waited for, whatever the machine's load: a stuck read
/// takes its 200 ms, a refused one none, and one that never returned would run into the
/// PATIENCE timer instead of hanging the test.
#[cfg(unix)]
#[tokio::test(start_paused = true)]
async fn a_fifo_without_a_writer_times_out_and_stuck_reads_are_capped() {
    use kubelet_push::kubelet::ScrapeError;
    use tokio::time::{timeout, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = fifo(dir.path());
    let url = format!("file://{}", path.display());
    let mut p = poller(&[
        "--kubelet-url",
        &url,
        "--kubelet-timeout",
        "200ms",
        "--dry-run",
    ]);
    for _ in 0..kubelet_push::kubelet::client::MAX_STUCK_READS {
        let started = Instant::now();
        let out = timeout(PATIENCE, polled(&mut p))
            .await
            .expect("the poll returns");
        let took = started.elapsed();
        let err = out.error.expect("timed out");
        assert!(matches!(err, ScrapeError::FileTimeout { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("did not finish within 200ms (--kubelet-timeout)"),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(only_value(&out.series, "up"), 0.0);
    }
    let started = Instant::now();
    let out = timeout(PATIENCE, polled(&mut p))
        .await
        .expect("the poll returns");
    assert!(
        matches!(out.error, Some(ScrapeError::FileBusy { .. })),
        "{:?}",
        out.error
    );
    // A fifth read started and waited for would take the 200 ms timeout.
    assert!(started.elapsed() < Duration::from_millis(100));
    // A writer lets the stuck readers go (they read nothing and end).
    drop(std::fs::OpenOptions::new().write(true).open(&path).unwrap());
}

/// SIGTERM while a poll is stuck opening a FIFO: the agent stops within
/// `--shutdown-timeout` with exit 0. Before: it never exited (the runtime waited for the
/// blocking read at exit).
#[cfg(unix)]
#[tokio::test]
async fn sigterm_ends_an_agent_stuck_on_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo(dir.path());
    let url = format!("file://{}", path.display());
    let rx = Receiver::start().await.unwrap();
    let ru = rx.url();
    // Serving means the signal handlers are in place (they are installed before the agent
    // starts), so the SIGTERM below is the agent's to handle, not the default action's.
    let (agent, _) = AgentProcess::listening(&mut command(&[
        "--kubelet-url",
        &url,
        "--kubelet-timeout",
        "60s",
        "--remote-url",
        &ru,
        "--shutdown-timeout",
        "2s",
    ]))
    .await;
    // The first poll starts right after that and stays in open(2), on the agent's thread for
    // file reads: wait until that thread is there, not for a guessed second.
    #[cfg(target_os = "linux")]
    {
        let pid = agent.child.id().expect("running");
        wait_until("the agent reads the FIFO", || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|name| name.trim() == "kubelet-file")
                })
        })
        .await;
    }
    assert_eq!(rx.requests().len(), 0, "no poll finished");
    let asked = std::time::Instant::now();
    let (code, log) = sigterm(agent).await;
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "{log}");
    // The stuck read only ends with --kubelet-timeout (60 s): an agent that waited for it
    // would take twice this bound; a correct one takes the 2 s drain at most, and a loaded
    // machine only adds to that far less than the 28 s left.
    assert!(took < Duration::from_secs(30), "stopped in {took:?}: {log}");
}

/// `--help` shows no value of a flag that may hold a secret, however it is set in the
/// environment. Every flag whose environment value `--help` does show is named here, so a new
/// flag that shows its value is a decision someone made.
#[test]
fn help_shows_no_secret_from_the_environment() {
    let run = |env: &[(String, String)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .arg("--help")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    // Flattened: clap wraps lines between "[env:" and the name.
    let flat = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let plain = flat(run(&[]));
    let names: std::collections::BTreeSet<String> = plain
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split([']', '=']).next())
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 40, "{names:?}");
    // Every variable holds a secret-looking URL, so a flag showing its value is caught.
    let env: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            let v = format!("https://user-{n}:pw-{n}@host.example/w?api_key=key-{n}");
            (n.clone(), v)
        })
        .collect();
    let help = flat(run(&env));
    let shown: Vec<&str> = names
        .iter()
        // Followed by what ends the value (`]`, or `@` after the password), so a name that
        // begins another (KUBELET_PUSH_SCRAPE, KUBELET_PUSH_SCRAPE_TIMEOUT) is told apart.
        .filter(|n| help.contains(&format!("key-{n}]")) || help.contains(&format!("pw-{n}@")))
        .map(String::as_str)
        .collect();
    // Durations, sizes, names, switches and paths: nothing an operator keeps secret.
    let harmless = [
        "KUBELET_PUSH_BUFFER_DIR",
        "KUBELET_PUSH_BUFFER_MAX_SIZE",
        "KUBELET_PUSH_CONFIG_FILE",
        "KUBELET_PUSH_DRY_RUN",
        "KUBELET_PUSH_INTERVAL",
        "KUBELET_PUSH_JOB",
        "KUBELET_PUSH_KUBELET_CA_FILE",
        "KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY",
        "KUBELET_PUSH_KUBELET_PODS",
        "KUBELET_PUSH_KUBELET_SCRAPE",
        "KUBELET_PUSH_KUBELET_SUMMARY",
        "KUBELET_PUSH_KUBELET_TIMEOUT",
        "KUBELET_PUSH_KUBELET_TOKEN_FILE",
        "KUBELET_PUSH_LABEL",
        "KUBELET_PUSH_LISTEN_ADDRESS",
        "KUBELET_PUSH_LOG_FORMAT",
        "KUBELET_PUSH_LOG_LEVEL",
        "KUBELET_PUSH_MAX_BACKOFF",
        "KUBELET_PUSH_MAX_SAMPLES_PER_SEND",
        "KUBELET_PUSH_MAX_CATCH_UP_SIZE",
        "KUBELET_PUSH_MAX_SAMPLE_AGE",
        "KUBELET_PUSH_MAX_STATS_AGE",
        "KUBELET_PUSH_METRIC_ALLOW",
        "KUBELET_PUSH_METRIC_DENY",
        "KUBELET_PUSH_MIN_BACKOFF",
        "KUBELET_PUSH_NODE_NAME",
        "KUBELET_PUSH_ONCE",
        "KUBELET_PUSH_POD_LABEL",
        "KUBELET_PUSH_REMOTE_BEARER_TOKEN_FILE",
        "KUBELET_PUSH_REMOTE_BASIC_AUTH_PASSWORD_FILE",
        "KUBELET_PUSH_REMOTE_CA_FILE",
        "KUBELET_PUSH_REMOTE_CERT_FILE",
        "KUBELET_PUSH_REMOTE_INSECURE_SKIP_VERIFY",
        "KUBELET_PUSH_REMOTE_KEY_FILE",
        "KUBELET_PUSH_REMOTE_RETRY_AUTH_ERRORS",
        "KUBELET_PUSH_REMOTE_TIMEOUT",
        "KUBELET_PUSH_REMOTE_TLS_SERVER_NAME",
        "KUBELET_PUSH_REMOTE_WRITE_VERSION",
        "KUBELET_PUSH_SCRAPE_TIMEOUT",
        "KUBELET_PUSH_SELF_METRICS",
        "KUBELET_PUSH_ENABLE_RELOAD",
        "KUBELET_PUSH_SHUTDOWN_TIMEOUT",
        "KUBELET_PUSH_DEMO_PODS",
        "KUBELET_PUSH_DEMO_DURATION",
    ];
    for name in &shown {
        assert!(
            harmless.contains(name),
            "--help shows the value of {name}: hide it (hide_env_values) or name it harmless"
        );
    }
    for secret in [
        "KUBELET_PUSH_KUBELET_URL",
        "KUBELET_PUSH_REMOTE_URL",
        "KUBELET_PUSH_REMOTE_HEADER",
        "KUBELET_PUSH_REMOTE_PROXY_URL",
        "KUBELET_PUSH_REMOTE_BASIC_AUTH_USERNAME",
    ] {
        assert!(names.contains(secret), "{secret} not in --help");
        assert!(
            !help.contains(&format!("key-{secret}")) && !help.contains(&format!("pw-{secret}")),
            "--help shows {secret}'s value"
        );
    }
}

/// A URL that does not parse, and a header written with a colon, are refused (exit 64, naming
/// the flag) without echoing the password, key or token they hold.
#[test]
fn refused_flags_do_not_echo_secrets() {
    for args in [
        &[
            "--kubelet-url",
            "https://admin:pw-SECRET@kubelet:port/?key=key-SECRET",
        ][..],
        &["--kubelet-url", "https://admin:pw-SECRET@/?key=key-SECRET"][..],
        &["--remote-header", "Authorization: Bearer tok-SECRET"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .args(args)
            .args(["--remote-url", "http://127.0.0.1:9/w"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(args[0]), "names the flag: {err}");
        assert!(!err.contains("SECRET"), "{args:?}: {err}");
    }
}

/// A receiver that redirects (307) to another port, another origin: the agent does not follow
/// (the request's headers, an API key among them, stay with the receiver the operator named),
/// retries with one warning naming where it pointed (query redacted), and once the receiver
/// takes requests again everything arrives, in order. A redirect within the receiver's own
/// origin is followed. Nothing of the key, the header or the token reaches the log at
/// `--log-level trace`. Before: the second host got every request with a `Referer` carrying
/// the first URL's `api_key` and the `--remote-header` value.
#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_and_loses_nothing() {
    let kubelet = simulated_kubelet(2, 7).await;
    let second = Receiver::start().await.unwrap();
    let first = Receiver::start().await.unwrap();
    let elsewhere = format!("{}?tenant=second", second.url());
    let same_origin = format!("{}?moved=1", first.url());
    for _ in 0..3 {
        first.push_response(Response::status(307).with_header("Location", elsewhere.clone()));
    }
    for _ in 0..2 {
        first.push_response(Response::status(307).with_header("Location", same_origin.clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-SECRET-123\n").unwrap();
    let ku = kubelet.url();
    let ru = format!("{}?api_key=key-SECRET-456", first.url());
    let child = agent(&[
        "--kubelet-url",
        &ku,
        "--remote-url",
        &ru,
        "--remote-bearer-token-file",
        token.to_str().unwrap(),
        "--remote-header",
        "X-Api-Key=hdr-SECRET-789",
        "--interval",
        "1s",
        "--min-backoff",
        "50ms",
        "--max-backoff",
        "200ms",
        "--log-level",
        "trace",
        // Every poll's requests are delivered at the stop however long a loaded machine
        // takes (the default 10 s could cut the drain short and lose the `up` counted below).
        "--shutdown-timeout",
        "30s",
    ]);
    // Three refused redirects, two followed ones, then at least three polls delivered.
    eventually("three requests accepted", PATIENCE, async || {
        let requests = first.requests();
        let done = requests.iter().filter(|r| r.accepted()).count() >= 3;
        done.then_some(()).ok_or_else(|| format!("{requests:?}"))
    })
    .await;
    let log = stop_agent(child).await;

    assert!(
        second.requests().is_empty(),
        "nothing went to the other host"
    );
    let asked = first.requests();
    assert!(asked.iter().all(
        |r| r.header("authorization") == Some("Bearer tok-SECRET-123")
            && r.header("x-api-key") == Some("hdr-SECRET-789")
            && r.header("referer").is_none()
    ));
    // Every poll arrived once, in order: the refused and followed attempts lost nothing.
    let ups: Vec<i64> = first
        .accepted_series()
        .iter()
        .filter(|t| label(t, "__name__") == Some("up"))
        .map(|t| t.samples[0].timestamp)
        .collect();
    assert!(ups.len() >= 3, "{ups:?}");
    assert!(ups.windows(2).all(|w| w[0] < w[1]), "{ups:?}");
    let polls = kubelet.requests();
    assert!(ups.len() + 1 >= polls, "{} of {polls} polls", ups.len());
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("not followed"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning for the episode:\n{log}");
    assert!(warned[0].contains("?redacted"), "{}", warned[0]);
    assert!(log.contains("kubelet-push started"), "{log}");
    assert!(!log.contains("SECRET"), "a secret in the log:\n{log}");
}

/// A FIFO given as a receiver's token file is refused at start-up (exit 64, naming the flag)
/// instead of freezing the agent in open(2): those files are read on the runtime's thread
/// before every request. Before: the agent hung at start-up.
#[cfg(unix)]
#[tokio::test]
async fn a_fifo_as_the_remote_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo(dir.path());
    let child = agent(&[
        "--kubelet-url",
        "http://127.0.0.1:9",
        "--remote-url",
        "http://127.0.0.1:9/api/v1/write",
        "--remote-bearer-token-file",
        path.to_str().unwrap(),
    ]);
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("exits without waiting for a writer")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("--remote-bearer-token-file") && err.contains("is not a regular file"),
        "{err}"
    );
}
