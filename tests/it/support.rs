//! Shared helpers: configs pointing at in-process fakes, and reading series back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use kubelet_push::cli::Cli;
use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::telemetry::{DestinationMetrics, Metrics};
use kubelet_push::{Config, Outcome};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A runtime on this thread, for a `#[test]` that captures logs: `Logs::capture` listens on
/// the calling thread, so the agent's tasks must run there too.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/summaries")
        .join(name)
}

/// A validated config from command-line style arguments.
///
/// `--interval` is applied after validation, so in-process tests may poll faster than the
/// agent's 1 s floor allows an operator to. The agent's own metrics are not pushed unless the
/// arguments say `--self-metrics`: a test counts what the node's sources sent, and
/// `selfmetrics.rs` tests what the self-metrics add.
pub fn config(args: &[&str]) -> Config {
    let self_metrics = args.iter().any(|a| a.starts_with("--self-metrics"));
    let mut interval = None;
    let mut rest = Vec::new();
    let mut args = args.iter().copied();
    while let Some(a) = args.next() {
        match a.strip_prefix("--interval") {
            Some("") => interval = args.next(),
            Some(v) if v.starts_with('=') => interval = Some(&v[1..]),
            _ => rest.push(a),
        }
    }
    let cli =
        Cli::try_parse_from(std::iter::once("kubelet-push").chain(rest)).expect("flags parse");
    let mut config = Config::from_args(&cli.agent).expect("valid config");
    if let Some(i) = interval {
        config.poll.interval = humantime::parse_duration(i).expect("an --interval");
    }
    config.self_metrics &= self_metrics;
    config
}

/// The environment a spawned agent binary needs to accept the tests' sub-second intervals
/// (the test build has the `test-support` feature; the release binary ignores it).
pub const SHORT_INTERVALS: (&str, &str) = (kubelet_push::cli::SHORT_INTERVALS_FOR_TESTS, "1");

/// A poller configured from command-line style arguments, with fresh self-metrics.
pub fn poller(args: &[&str]) -> kubelet_push::pipeline::Poller {
    kubelet_push::pipeline::Poller::new(&config(args).poll, Arc::new(Metrics::new())).unwrap()
}

pub fn label<'a>(ts: &'a TimeSeries, name: &str) -> Option<&'a str> {
    ts.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

pub fn name(ts: &TimeSeries) -> &str {
    label(ts, "__name__").unwrap_or("")
}

/// The series named `metric`.
pub fn named<'a>(series: &'a [TimeSeries], metric: &str) -> Vec<&'a TimeSeries> {
    series.iter().filter(|ts| name(ts) == metric).collect()
}

/// The single value of the single series named `metric`.
pub fn only_value(series: &[TimeSeries], metric: &str) -> f64 {
    let found = named(series, metric);
    assert_eq!(
        found.len(),
        1,
        "expected one {metric} series, got {found:?}"
    );
    assert_eq!(found[0].samples.len(), 1);
    found[0].samples[0].value
}

/// How long a test waits for something a correct agent does in well under a second: long
/// enough that a loaded machine (two busy cores, Wine) never fails a correct run, bounded so
/// that a broken agent fails the test instead of hanging it. Tests wait for counted events
/// with it ([`eventually`]) and assert on what happened, never on what fits in a window.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The first pause between two tries of [`eventually`]'s probe; each pause doubles, up to
/// [`PROBE_EVERY_AT_MOST`]. What is quick is seen quickly; a long wait on a real server
/// (Prometheus, an agent under Wine) asks it ten times a second, not a hundred.
const PROBE_EVERY_AT_FIRST: Duration = Duration::from_millis(10);
const PROBE_EVERY_AT_MOST: Duration = Duration::from_millis(100);

/// Tries `probe` until it answers `Ok`, and returns that; fails past `limit` with `what` and
/// the text of the probe's last `Err`, the latest state it saw. The bounded wait every test
/// uses: the limit bounds a broken agent, never a correct one's pace. A probe may panic itself
/// to fail at once (a process that exited will never get there). Pauses on tokio's clock, so
/// it works under paused time.
pub async fn eventually<T>(
    what: impl std::fmt::Display,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = PROBE_EVERY_AT_FIRST;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "not within {limit:?}: {what}{}{last}",
                if last.is_empty() { "" } else { "\n" }
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(PROBE_EVERY_AT_MOST);
    }
}

/// Waits until `done` holds, at most [`PATIENCE`]; fails with `what`.
pub async fn wait_until(what: impl std::fmt::Display, mut done: impl FnMut() -> bool) {
    eventually(what, PATIENCE, async || {
        done().then_some(()).ok_or_else(String::new)
    })
    .await
}

/// Log lines captured from the current thread.
///
/// One global subscriber writes every event into the buffer of the thread that emitted it, if
/// that thread is capturing. Scoped (`set_default`) subscribers would be simpler, but tracing
/// caches per-callsite interest globally, so with tests on parallel threads they miss events.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

impl Logs {
    /// Captures this thread's log lines (INFO and above) until the guard is dropped. Tests that
    /// capture must run the agent on their own thread (a current-thread runtime).
    pub fn capture() -> (Logs, CaptureGuard) {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        let logs = Logs::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A value from a running agent's own `/metrics` at `listen`: the first line that starts with
/// `line_start` (the name, with labels if any). `None` while the agent does not answer or has
/// no such line. (Its users, the end-to-end suite and the tmpfs test, are unix-only.)
#[cfg(unix)]
pub async fn self_metric(listen: &str, line_start: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric_in(&text, line_start)
}

/// The value of the first sample of a `/metrics` text that `pattern` names: a metric name,
/// optionally with labels (`name{a="x"}`) that the sample must have among its own. Other
/// labels of the sample (the destination's `url`) do not matter, so a pattern written for one
/// destination finds its sample whatever the URL.
pub fn metric_in(text: &str, pattern: &str) -> Option<f64> {
    let pattern = pattern.trim();
    let (name, wanted) = match pattern.split_once('{') {
        Some((n, rest)) => (n, rest.trim_end_matches('}')),
        None => (pattern, ""),
    };
    let wanted: Vec<&str> = wanted.split(',').filter(|l| !l.is_empty()).collect();
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let have: Vec<&str> = labels.split(',').collect();
        (n == name && wanted.iter().all(|w| have.contains(w)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

pub use kubelet_push::clock::now_ms;

/// A simulated Windows node that booted an hour ago, so its counters are well above zero.
pub async fn simulated_kubelet(
    pods: usize,
    seed: u64,
) -> kubelet_push::testkit::simulator::KubeletServer {
    let booted = std::time::SystemTime::now() - Duration::from_secs(3600);
    let sim = kubelet_push::testkit::simulator::SimulatedKubelet::new(pods, seed, booted);
    kubelet_push::testkit::simulator::KubeletServer::start(sim)
        .await
        .unwrap()
}

/// SIGTERM (how Kubernetes stops a pod), then the exit code and stderr.
#[cfg(unix)]
pub async fn sigterm(agent: impl Into<AgentProcess>) -> (Option<i32>, String) {
    let agent = agent.into();
    let pid = agent.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (status, log) = agent.wait().await;
    (status.code(), log)
}

/// Ends an agent whose graceful stop is not what the test is about, and returns its stderr.
///
/// On unix: SIGTERM, and the exit must be clean (code 0). On Windows a test process has no
/// safe way to send a console control event to one child (`GenerateConsoleCtrlEvent` is FFI,
/// and it signals a whole process group), so the agent is terminated (`TerminateProcess`),
/// as a node whose stop outlasts the grace period would. Tests about the graceful stop itself
/// are unix-only here; the Windows console events are tested end to end under Wine.
pub async fn stop_agent(agent: impl Into<AgentProcess>) -> String {
    #[cfg(unix)]
    {
        let (code, log) = sigterm(agent).await;
        assert_eq!(code, Some(0), "a clean exit after SIGTERM: {log}");
        log
    }
    #[cfg(not(unix))]
    {
        let mut agent = agent.into();
        agent.child.start_kill().unwrap();
        agent.wait().await.1
    }
}

/// An agent binary running as a child process (killed when dropped), its stderr read as it
/// comes, so a test can look at the log while the agent runs and still have all of it at the
/// end.
pub struct AgentProcess {
    pub child: tokio::process::Child,
    log: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl From<tokio::process::Child> for AgentProcess {
    /// Takes over a child started with its stderr piped.
    fn from(mut child: tokio::process::Child) -> AgentProcess {
        use tokio::io::AsyncReadExt;
        let mut stderr = child.stderr.take().expect("the agent's stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let into = log.clone();
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
                into.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        AgentProcess { child, log, reader }
    }
}

impl AgentProcess {
    /// Starts `cmd` (the agent binary, with its arguments) with its stderr captured.
    pub fn spawn(cmd: &mut tokio::process::Command) -> AgentProcess {
        cmd.stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start kubelet-push")
            .into()
    }

    /// Starts `cmd` with `--listen-address 127.0.0.1:0` and waits for the address the agent
    /// bound, which it logs: no port is chosen before the agent binds it, so no other test
    /// (or process) can take it in between. Returns `host:port`.
    pub async fn listening(cmd: &mut tokio::process::Command) -> (AgentProcess, String) {
        let mut agent = Self::spawn(cmd.args(["--listen-address", "127.0.0.1:0"]));
        let addr = eventually("the agent serves", PATIENCE, async || {
            if let Some(addr) = listening_address(&agent.log()) {
                return Ok(addr);
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!(
                    "the agent exited ({status}) before serving: {}",
                    agent.log()
                );
            }
            Err(agent.log())
        })
        .await;
        (agent, addr)
    }

    /// What the agent has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Waits (up to [`PATIENCE`]) for the agent to exit; its status and whole log.
    pub async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the agent did not exit: {}", self.log()))
            .unwrap();
        // The pipe closes when the agent exits (it starts no children of its own).
        let _ = tokio::time::timeout(PATIENCE, &mut self.reader).await;
        (status, self.log())
    }
}

/// The address in the agent's "serving /metrics" log line, text or JSON.
fn listening_address(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains(kubelet_push::telemetry::SERVING))?;
    let value = line
        .split_once("address=")
        .or_else(|| line.split_once("\"address\":\""))?
        .1;
    let end = value
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(value.len());
    Some(value[..end].to_owned())
}

/// A port on 127.0.0.1 kept for a server that is not up yet: bound, not listening, so a
/// connection to it is refused (as by a receiver that is down) and nothing else can take it
/// meanwhile, as could happen to a port found free and released.
pub struct ReservedPort(tokio::net::TcpSocket);

impl ReservedPort {
    pub fn new() -> ReservedPort {
        Self::at(0)
    }

    /// The same port again, right after its server stopped (a receiver that will restart
    /// where it was). `SO_REUSEADDR`, as a server sets it, so connections the old server
    /// left in TIME_WAIT do not keep the port.
    pub fn at(port: u16) -> ReservedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        #[cfg(unix)]
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap();
        ReservedPort(socket)
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// Starts listening: the server is up from here on.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.0.listen(1024).unwrap()
    }
}

/// The agent's `run` on a task of this runtime, with its metrics at hand.
pub struct Agent {
    pub task: JoinHandle<Result<Outcome, kubelet_push::RunError>>,
    pub stop: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// Each destination's metrics, in the order configured.
    pub dests: Vec<Arc<DestinationMetrics>>,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        Self::start_config(config(args))
    }

    /// Starts the agent with a configuration the test made or adjusted.
    pub fn start_config(cfg: Config) -> Agent {
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        // The agent takes the same handles when it starts: one per redacted URL.
        let dests = cfg
            .remotes
            .iter()
            .map(|r| metrics.destination(&kubelet_push::http::redact(&r.url)))
            .collect();
        let task = {
            let (stop, metrics) = (stop.clone(), metrics.clone());
            tokio::spawn(async move {
                let mut sink = Vec::new();
                kubelet_push::run(cfg, stop, metrics, &mut sink).await
            })
        };
        Agent {
            task,
            stop,
            metrics,
            dests,
        }
    }

    /// The metrics of the first (usually only) destination.
    pub fn dest(&self) -> Arc<DestinationMetrics> {
        self.dests[0].clone()
    }

    /// Waits (up to [`PATIENCE`]) until the buffer is empty after at least `min_sent`
    /// samples were delivered.
    pub async fn wait_drained(&self, min_sent: u64) {
        let d = self.dest();
        eventually("drained", PATIENCE, async || {
            let drained = d.samples_sent.get() >= min_sent && d.samples_pending.get() == 0;
            drained.then_some(()).ok_or_else(|| self.metrics.encode())
        })
        .await;
    }

    /// Stops the agent; its outcome and its first destination's metrics.
    pub async fn stop(self) -> (Outcome, Arc<DestinationMetrics>) {
        let dest = self.dest();
        self.stop.cancel();
        let outcome = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("agent stops")
            .expect("task")
            .expect("run");
        (outcome, dest)
    }
}

/// One poll, and what it puts on the wire, decoded.
pub struct Polled {
    pub series: Vec<TimeSeries>,
    pub error: Option<kubelet_push::kubelet::ScrapeError>,
}

pub async fn polled(p: &mut kubelet_push::pipeline::Poller) -> Polled {
    let out = p.poll().await;
    Polled {
        series: p.decoded_series(&out),
        error: out.error,
    }
}

/// The metrics of the one destination `m` has (panics unless there is exactly one).
pub fn only_dest(m: &Metrics) -> Arc<DestinationMetrics> {
    let all = m.destinations();
    assert_eq!(all.len(), 1, "one destination expected");
    all[0].clone()
}

/// Where the agent keeps the buffer of the destination at `url` under `--buffer-dir dir`.
pub fn dest_buffer(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let settings = kubelet_push::config::RemoteSettings::new(url.parse().expect("a URL"));
    dir.join(settings.buffer_subdir())
}

/// Reads one HTTP/1.1 request from a raw connection (its head, then a `Content-Length` body)
/// into its path and body, keeping what follows in `buf` for the next one. `None` when the
/// peer closed first. For the tests' hand-written servers, which answer as a case needs.
pub async fn read_request(
    conn: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        assert!(buf.len() < 1 << 20, "request head too large");
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 65536];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some((path, body))
}
