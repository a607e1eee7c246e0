//! End to end against real receivers: Debian's `prometheus` and `victoria-metrics`, started
//! per test on 127.0.0.1 ports the test holds ([`Real`]) with temporary data directories, fed
//! by the real `kubelet-push` binary polling a fake kubelet that serves the shared captures.
//! Assertions go through the receivers' own query APIs.
//!
//! In CI (`CI` set) a missing receiver binary fails the test; elsewhere the test says it was
//! skipped and why. `.ci/run` installs both packages.

mod auth;
mod dashboard;
mod destinations;
mod faults;
mod image;
mod kube_prometheus;
mod kube_prometheus_dashboards;
mod network;
mod outage;
mod reload;
mod scrape;
mod v2;
mod values;
mod windows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kubelet_push::testkit::server::LocalServer;
use kubelet_push::testkit::simulator::rfc3339;
use serde_json::Value;
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prometheus,
    VictoriaMetrics,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Prometheus => "prometheus",
            Kind::VictoriaMetrics => "victoria-metrics",
        }
    }
}

/// Finds the receiver's binary, or explains why the test cannot run.
pub fn available(kind: Kind) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(kind.binary()).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is not installed; .ci/run installs it with apt-get",
            kind.binary()
        );
        eprintln!(
            "SKIPPED: {} not installed (apt-get install prometheus victoria-metrics)",
            kind.binary()
        );
    }
    found
}

pub use crate::support::{now_ms, sigterm as stop_agent};

/// In a configuration given to [`Real::launch_prometheus_with`], stands for the `host:port`
/// the Prometheus being launched listens on (for a scrape of its own `/metrics`).
pub const SELF_ADDRESS: &str = "__SELF_ADDRESS__";
use crate::support::{eventually, AgentProcess, ReservedPort, PATIENCE};

/// The agent's flags for a test timeline: a poll a second, and retries quick enough that a
/// receiver coming back is seen within a poll.
pub const ONE_SECOND_POLLS: [&str; 6] = [
    "--interval",
    "1s",
    "--min-backoff",
    "100ms",
    "--max-backoff",
    "1s",
];

/// The Remote Write version an agent starts with (`--remote-write-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    /// `--remote-write-version auto`: starts on 2.0 like `V2`, and against these receivers
    /// (which predate 2.0) falls back the same way.
    Auto,
}

impl Version {
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Version::V1 => &["--remote-write-version", "1"],
            Version::V2 => &["--remote-write-version", "2"],
            Version::Auto => &["--remote-write-version", "auto"],
        }
    }

    /// Whether the agent starts on 2.0.
    pub fn starts_v2(self) -> bool {
        self != Version::V1
    }
}

/// The self-metric lines saying which version a destination is sent in now.
pub const PROTOCOL_V1: &str = "kubelet_push_remote_write_protocol{version=\"1.0\"} ";
pub const PROTOCOL_V2: &str = "kubelet_push_remote_write_protocol{version=\"2.0\"} ";

/// How many times an agent's log says it fell back from 2.0 to 1.0.
pub fn fallbacks(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("the receiver does not take Remote Write 2.0"))
        .count()
}

/// The value of the first sample of a `/metrics` text that `pattern` names (see
/// [`crate::support::metric_in`]).
pub fn metric_value(text: &str, pattern: &str) -> Option<f64> {
    crate::support::metric_in(text, pattern)
}

/// The `kubelet_push_samples_dropped_total` lines of a `/metrics` text that are not 0. Fails
/// when there is none at all (the agent registers every reason at start).
pub fn dropped(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("kubelet_push_samples_dropped_total{"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=\"receiver_refused\"")),
        "no dropped counters:\n{text}"
    );
    lines.into_iter().filter(|l| !l.ends_with(" 0")).collect()
}

/// A receiver process. Killed when dropped, so a failing test leaves nothing running.
///
/// Its port is held by the test for the receiver's whole life, from before the first start
/// to the drop: a socket bound to it with `SO_REUSEADDR` and never listening
/// ([`ReservedPort`]). On Linux the receiver (Go sets `SO_REUSEADDR` on its listeners) can
/// still bind and listen there, which no other process can do meanwhile: a bind without
/// `SO_REUSEADDR` fails on the held port, an ephemeral bind or connect never picks it, and
/// once the receiver listens no one else can listen there either. So a restart after an
/// outage (the receiver killed, the port refusing connections as a receiver that is down)
/// finds its port free, with no window in which another test's process could take it; and
/// the readiness probe also checks the answer comes from this receiver (its data directory,
/// as it reports its own flags), so it can never be satisfied by someone else's.
pub struct Real {
    pub kind: Kind,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
    /// Prometheus's whole configuration file; `None` for the default that scrapes nothing.
    config: Option<Value>,
    /// More command-line flags for Prometheus (`--query.lookback-delta=5s`).
    flags: Vec<String>,
    /// The port, held as the struct's doc says.
    _held: ReservedPort,
}

impl Real {
    /// A receiver of `kind` with its data in `dir`, on a port the test holds (see [`Real`]).
    pub async fn launch(kind: Kind, dir: &Path) -> Real {
        Self::launch_with(kind, dir, None, &[]).await
    }

    /// Prometheus with `config` as its configuration file (scrape configs, rule files, scrape
    /// and evaluation intervals), written as JSON, which YAML reads as it is. It still
    /// receives remote write.
    pub async fn launch_prometheus_with(dir: &Path, config: Value) -> Real {
        Self::launch_with(Kind::Prometheus, dir, Some(config), &[]).await
    }

    /// [`Real::launch_prometheus_with`], with more flags.
    pub async fn launch_prometheus_with_flags(dir: &Path, config: Value, flags: &[&str]) -> Real {
        Self::launch_with(Kind::Prometheus, dir, Some(config), flags).await
    }

    async fn launch_with(kind: Kind, dir: &Path, config: Option<Value>, flags: &[&str]) -> Real {
        kubelet_push::http::install_crypto_provider();
        let held = ReservedPort::new();
        let mut real = Real {
            kind,
            port: held.port(),
            dir: dir.to_path_buf(),
            child: None,
            http: reqwest::Client::new(),
            config,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            _held: held,
        };
        real.spawn().await;
        real
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn spawn(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(self.kind.binary());
        match self.kind {
            Kind::Prometheus => {
                let config = self.dir.join("prometheus.yml");
                let text = match &self.config {
                    Some(json) => serde_json::to_string_pretty(json)
                        .unwrap()
                        .replace(SELF_ADDRESS, &addr),
                    None => "global:\n  scrape_interval: 1h\n".to_owned(),
                };
                std::fs::write(&config, text).unwrap();
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", self.data_dir().display()))
                    .arg(format!("--web.listen-address={addr}"))
                    .arg("--web.enable-remote-write-receiver")
                    .args(&self.flags);
            }
            Kind::VictoriaMetrics => {
                cmd.arg(format!("-httpListenAddr={addr}"))
                    .arg(format!("-storageDataPath={}", self.data_dir().display()))
                    // Query what was just written, without the default 30 s hold-back.
                    .arg("-search.latencyOffset=0s")
                    .arg("-search.disableCache")
                    .arg("-retentionPeriod=100y");
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("receiver.log"))
            .unwrap();
        self.child = Some(
            cmd.stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", self.kind.binary())),
        );
        let what = format!("{:?} ready on {addr}", self.kind);
        eventually(what, PATIENCE, async || {
            // A receiver that cannot start (its port taken after all, or anything else) says
            // so at once, with its log, instead of at the deadline.
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "{:?} exited ({status}) before it was ready on {addr} (\"address already \
                     in use\" would mean another process listens on the held port):\n{}",
                    self.kind,
                    self.log()
                );
            }
            let ready = self.answers_as_ours(&addr).await;
            ready.then_some(()).ok_or_else(|| self.log())
        })
        .await;
    }

    /// Whether the server at `addr` is ready and is this receiver: it reports this receiver's
    /// data directory among its flags.
    async fn answers_as_ours(&self, addr: &str) -> bool {
        let get = |path: &str| {
            let url = format!("http://{addr}{path}");
            async move {
                let r = self.http.get(url).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                r.text().await.ok()
            }
        };
        let data = self.data_dir().display().to_string();
        match self.kind {
            Kind::Prometheus => {
                if get("/-/ready").await.is_none() {
                    return false;
                }
                let Some(flags) = get("/api/v1/status/flags").await else {
                    return false;
                };
                let flags: Value = serde_json::from_str(&flags).unwrap_or_default();
                flags["data"]["storage.tsdb.path"] == data.as_str()
            }
            Kind::VictoriaMetrics => {
                if get("/health").await.is_none() {
                    return false;
                }
                get("/flags")
                    .await
                    .is_some_and(|flags| flags.contains(&format!("-storageDataPath=\"{data}\"")))
            }
        }
    }

    /// Takes the receiver away. Prometheus gets SIGKILL, the harshest outage: its WAL
    /// survives it. VictoriaMetrics gets SIGTERM: it holds the last second or so of
    /// acknowledged rows in memory, which a SIGKILL would lose on the receiver's side.
    pub async fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match self.kind {
            Kind::Prometheus => {
                let _ = child.kill().await;
            }
            Kind::VictoriaMetrics => {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                }
                if tokio::time::timeout(PATIENCE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
            }
        }
    }

    /// Starts again on the same port (held meanwhile, see [`Real`]) and data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("receiver.log")).unwrap_or_default()
    }

    /// `/api/v1/query` at `time_ms`.
    pub async fn query(&self, promql: &str, time_ms: i64) -> Vec<Value> {
        let time = format!("{:.3}", time_ms as f64 / 1000.0);
        let data = self
            .api("/api/v1/query", &[("query", promql), ("time", &time)])
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// `data` of a successful GET of the HTTP API at `path` (e.g. `/api/v1/alerts`).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut url =
            reqwest::Url::parse(&format!("http://127.0.0.1:{}{path}", self.port)).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        let text = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} {params:?}: {e}: {text}"));
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// `/api/v1/query_range` from `start_ms` to `end_ms` every `step_s` seconds: the series
    /// that had a value at any step, each with its `values`.
    pub async fn query_range(
        &self,
        promql: &str,
        start_ms: i64,
        end_ms: i64,
        step_s: f64,
    ) -> Vec<Value> {
        let start = format!("{:.3}", start_ms as f64 / 1000.0);
        let end = format!("{:.3}", end_ms as f64 / 1000.0);
        let step = step_s.to_string();
        let data = self
            .api(
                "/api/v1/query_range",
                &[
                    ("query", promql),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Raw samples of every series matching `selector` in the `window_s` before `time_ms`:
    /// labels (without `__name__`) keyed by name, with (timestamp ms, value) in order.
    pub async fn raw(
        &self,
        selector: &str,
        time_ms: i64,
        window_s: u64,
    ) -> BTreeMap<String, Vec<(i64, f64)>> {
        let result = self
            .query(&format!("{selector}[{window_s}s]"), time_ms)
            .await;
        let mut out = BTreeMap::new();
        for series in result {
            let key = series_key(&series["metric"]);
            let values = series["values"].as_array().unwrap();
            let samples = values
                .iter()
                .map(|pair| {
                    let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
                    (t, v)
                })
                .collect();
            out.insert(key, samples);
        }
        out
    }

    /// Makes everything written so far searchable. VictoriaMetrics keeps fresh rows in memory
    /// for a second or two before queries see them; Prometheus answers from its head at once.
    pub async fn make_visible(&self) {
        if self.kind == Kind::VictoriaMetrics {
            let url = format!("http://127.0.0.1:{}/internal/force_flush", self.port);
            let r = self.http.get(url).send().await.unwrap();
            assert!(r.status().is_success(), "force_flush: {}", r.status());
        }
    }

    /// The receiver's own metrics, as text.
    pub async fn self_metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Fails if the receiver turned any remote write away, or stored fewer samples than sent.
    pub async fn assert_nothing_rejected(&self, samples_sent: u64) {
        let text = self.self_metrics().await;
        match self.kind {
            Kind::Prometheus => {
                let writes: Vec<&str> = text
                    .lines()
                    .filter(|l| {
                        l.starts_with("prometheus_http_requests_total{")
                            && l.contains("handler=\"/api/v1/write\"")
                    })
                    .collect();
                assert!(!writes.is_empty(), "no write handler metrics:\n{text}");
                // 503 is Prometheus's answer to every API request while it starts (its
                // readiness check, before the WAL is replayed): a restarted receiver answers it
                // to the agent's first retries, which try again and lose nothing. Any other
                // status turned samples away.
                for line in writes {
                    assert!(
                        line.contains("code=\"2") || line.contains("code=\"503\""),
                        "a write turned away: {line}"
                    );
                }
            }
            Kind::VictoriaMetrics => {
                let metric = |prefix: &str| -> f64 {
                    text.lines()
                        .find(|l| l.starts_with(prefix))
                        .and_then(|l| l.rsplit(' ').next())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("{prefix} missing"))
                };
                assert_eq!(metric("vm_http_request_errors_total{path=\"/api/v1/write\", protocol=\"promremotewrite\"}"), 0.0);
                // A restarted VictoriaMetrics counts from zero: only check a single run's total.
                if samples_sent > 0 {
                    assert_eq!(
                        metric("vm_rows_inserted_total{type=\"promremotewrite\"}") as u64,
                        samples_sent
                    );
                }
            }
        }
    }
}

/// `name{a="1",b="2"}` with labels sorted, from a query result's `metric` object.
pub fn series_key(metric: &Value) -> String {
    let obj = metric.as_object().unwrap();
    let name = obj.get("__name__").and_then(Value::as_str).unwrap_or("");
    let mut labels: Vec<(String, String)> = obj
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
        .collect();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// One line of a golden `--dry-run` file.
#[derive(Debug, Clone)]
pub struct Golden {
    pub key: String,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// The reviewed golden samples of a fixture, without the per-poll series.
pub fn golden(stem: &str) -> Vec<Golden> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{stem}.prom"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("<poll-time>"))
        .map(|l| {
            let (rest, ts) = l.rsplit_once(' ').unwrap();
            let (series, value) = rest.rsplit_once(' ').unwrap();
            let key = if series.contains('{') {
                series.to_owned()
            } else {
                format!("{series}{{}}")
            };
            Golden {
                key,
                value: value.parse().unwrap(),
                timestamp_ms: ts.parse().unwrap(),
            }
        })
        .collect()
}

/// Cumulative fields the fake kubelet advances between documents, and by how much per step.
/// Small CPU steps keep Prometheus's `rate()` from clamping its extrapolation at zero.
pub const CPU_NS_PER_STEP: u64 = 1_000_000;
pub const BYTES_PER_STEP: u64 = 1_000;

/// A kubelet serving one capture: document `k` (the k-th request) has every `time` moved by
/// one offset plus `k × step`, counters advanced by `k` steps, and from document
/// `drop_pod_from` on, the last pod removed. With [`FixtureKubelet::start_with_pods`] it also
/// answers `GET /pods` with a captured `v1.PodList`, the same bytes every time (pod metadata
/// does not move with the clock); without, `/pods` is a 404 as on any unknown path.
///
/// It records every document it served ([`FixtureKubelet::served`]), so a test can expect
/// exactly those documents' samples at the receiver, and it can sit on its answers
/// ([`FixtureKubelet::hold`]): a poll held there is a poll in progress, so a stop or a kill
/// can be made to land at a known point of the poll cycle.
pub struct FixtureKubelet {
    server: LocalServer,
    state: Arc<FixtureState>,
}

struct FixtureState {
    doc: Value,
    offset_s: i64,
    step_s: i64,
    drop_pod_from: Option<usize>,
    requests: AtomicUsize,
    /// `GET /pods` answers, counted apart from the summaries so `k` stays the summary's index.
    pods_requests: AtomicUsize,
    /// Every summary request, in the order of `k`.
    served: Mutex<Vec<Served>>,
    /// While true, summary answers wait until it is false again.
    hold: tokio::sync::watch::Sender<bool>,
}

/// One summary document a [`FixtureKubelet`] served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Which document: the `k` of [`FixtureKubelet::shift_ms`].
    pub k: usize,
    /// When its request arrived (Unix ms, this machine's clock, as the agent's): after the
    /// start of the poll that asked for it, before the start of the next one.
    pub at_ms: i64,
    /// Whether its answer was held ([`FixtureKubelet::hold`]).
    pub held: bool,
}

impl FixtureKubelet {
    /// `newest_at_s`: where the newest `time` of document 0 lands (Unix seconds).
    pub async fn start(
        fixture: &str,
        newest_at_s: i64,
        step_s: i64,
        drop_pod_from: Option<usize>,
    ) -> FixtureKubelet {
        Self::start_with_pods(fixture, None, newest_at_s, step_s, drop_pod_from).await
    }

    /// As [`FixtureKubelet::start`], and `GET /pods` answers with the file at `pods`.
    pub async fn start_with_pods(
        fixture: &str,
        pods: Option<&Path>,
        newest_at_s: i64,
        step_s: i64,
        drop_pod_from: Option<usize>,
    ) -> FixtureKubelet {
        let pods =
            pods.map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        let bytes = std::fs::read(crate::support::fixture(fixture)).unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        let mut newest = i64::MIN;
        visit_times(&doc, &mut |t| newest = newest.max(t));
        let state = Arc::new(FixtureState {
            offset_s: newest_at_s - newest / 1000,
            doc,
            step_s,
            drop_pod_from,
            requests: AtomicUsize::new(0),
            pods_requests: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
            hold: tokio::sync::watch::Sender::new(false),
        });
        let handler = state.clone();
        let mut app = axum::Router::new().route(
            "/stats/summary",
            axum::routing::get(move || {
                let state = handler.clone();
                async move {
                    // Counted and recorded under one lock, so `served` is in the order of `k`
                    // even when two requests arrive at once (an agent killed mid-poll and its
                    // successor).
                    let (k, held) = {
                        let mut served = state.served.lock().unwrap();
                        let k = state.requests.fetch_add(1, Ordering::SeqCst);
                        let held = *state.hold.borrow();
                        served.push(Served {
                            k,
                            at_ms: now_ms(),
                            held,
                        });
                        (k, held)
                    };
                    let (doc, _) = state.document(k);
                    if held {
                        let mut released = state.hold.subscribe();
                        let _ = released.wait_for(|held| !*held).await;
                    }
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        );
        if let Some(pods) = pods {
            let counter = state.clone();
            app = app.route(
                "/pods",
                axum::routing::get(move || {
                    let (body, state) = (pods.clone(), counter.clone());
                    async move {
                        state.pods_requests.fetch_add(1, Ordering::SeqCst);
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                }),
            );
        }
        let server = LocalServer::start(app, "fixture kubelet").await.unwrap();
        FixtureKubelet { server, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every summary document served so far, in order (`served()[k].k == k`).
    pub fn served(&self) -> Vec<Served> {
        self.state.served.lock().unwrap().clone()
    }

    /// From now on, summary answers wait until [`FixtureKubelet::release`]: the next poll is
    /// held in progress, its document counted as served when its request arrives.
    pub fn hold(&self) {
        self.state.hold.send_replace(true);
    }

    /// Lets held answers go, and later ones through at once.
    pub fn release(&self) {
        self.state.hold.send_replace(false);
    }

    /// Waits (up to [`PATIENCE`]) for a held request: the agent is then in the middle of that
    /// poll, and stays there until [`FixtureKubelet::release`].
    pub async fn wait_held(&self) -> Served {
        eventually("a poll reaches the held kubelet", PATIENCE, async || {
            let served = self.served();
            let held = served.iter().find(|s| s.held).copied();
            held.ok_or_else(|| format!("served: {served:?}"))
        })
        .await
    }

    /// How many times `/pods` was asked for.
    pub fn pods_requests(&self) -> usize {
        self.state.pods_requests.load(Ordering::SeqCst)
    }

    /// Milliseconds to add to a golden timestamp to get document `k`'s.
    pub fn shift_ms(&self, k: usize) -> i64 {
        (self.state.offset_s + k as i64 * self.state.step_s) * 1000
    }

    /// The pod removed from `drop_pod_from` on.
    pub fn dropped_pod(&self) -> String {
        let pods = self.state.doc["pods"].as_array().unwrap();
        pods.last().unwrap()["podRef"]["name"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl FixtureState {
    /// Document `k`, and the newest time (s) it carries.
    fn document(&self, k: usize) -> (String, i64) {
        let mut doc = self.doc.clone();
        let shift = self.offset_s + k as i64 * self.step_s;
        let mut newest = i64::MIN;
        advance(&mut doc, shift, k as u64, &mut newest);
        if self.drop_pod_from.is_some_and(|from| k >= from) {
            if let Some(pods) = doc["pods"].as_array_mut() {
                pods.pop();
            }
        }
        (doc.to_string(), newest)
    }
}

fn visit_times(v: &Value, f: &mut dyn FnMut(i64)) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("time", Value::String(s)) => {
                        f(kubelet_push::kubelet::time::parse_rfc3339_ms(s).unwrap())
                    }
                    _ => visit_times(v, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| visit_times(v, f)),
        _ => {}
    }
}

fn advance(v: &mut Value, shift_s: i64, k: u64, newest: &mut i64) {
    match v {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), &*v) {
                    ("time", Value::String(s)) => {
                        let t = kubelet_push::kubelet::time::parse_rfc3339_ms(s).unwrap() / 1000
                            + shift_s;
                        *newest = (*newest).max(t);
                        *v = Value::String(rfc3339(u64::try_from(t).unwrap()));
                    }
                    ("usageCoreNanoSeconds", Value::Number(n)) => {
                        *v = Value::from(n.as_u64().unwrap() + k * CPU_NS_PER_STEP);
                    }
                    ("rxBytes" | "txBytes", Value::Number(n)) => {
                        *v = Value::from(n.as_u64().unwrap() + k * BYTES_PER_STEP);
                    }
                    _ => advance(v, shift_s, k, newest),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| advance(v, shift_s, k, newest)),
        _ => {}
    }
}

/// What `receiver` holds of the seed Windows node once its agent stopped (its last `up`
/// stamped at `stopped_at` at the latest): exactly one sample of the node's CPU counter per
/// document in `expected`, at that document's time, in order, its value one step up per
/// document; and one `up` per completed poll (one per expected document), each stamped at the
/// start of its poll: after the request of the document before it and no later than the
/// request of its own (one clock, this machine's). `context` heads the failure messages.
pub async fn assert_one_sample_per_document(
    receiver: &Real,
    kubelet: &FixtureKubelet,
    served: &[Served],
    expected: &[usize],
    stopped_at: i64,
    context: &str,
) {
    // VictoriaMetrics rounds an instant query's time down to the second: query a full second
    // after everything the agent stamped. A sleep on the same clock, so sound on any machine.
    receiver.make_visible().await;
    let wait = stopped_at + 1100 - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let end = now_ms();
    let cpu_key = "node_cpu_usage_seconds_total{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"35598k8s9001\"}";
    let up_key = "up{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics\",node=\"35598k8s9001\"}";
    let cpu_t0 = golden("seed-windows-node")
        .into_iter()
        .find(|g| g.key == cpu_key)
        .expect("the node's CPU counter in the golden file")
        .timestamp_ms;
    let first_ms = (cpu_t0 + kubelet.shift_ms(0)).min(served[0].at_ms);
    let window_s = ((end - first_ms) / 1000 + 60) as u64;
    let raw = receiver
        .raw("{instance=\"35598k8s9001\"}", end, window_s)
        .await;

    let cpu = &raw[cpu_key];
    let cpu_times: Vec<i64> = cpu.iter().map(|(t, _)| *t).collect();
    let want_times: Vec<i64> = expected
        .iter()
        .map(|k| cpu_t0 + kubelet.shift_ms(*k))
        .collect();
    assert_eq!(cpu_times, want_times, "{context}: the CPU samples");
    for w in cpu.windows(2) {
        let steps = ((w[1].0 - w[0].0) / 1000) as f64;
        assert!(
            (w[1].1 - w[0].1 - steps * CPU_NS_PER_STEP as f64 / 1e9).abs() < 1e-9,
            "{context}: {w:?}"
        );
    }
    let up = &raw[up_key];
    assert_eq!(
        up.len(),
        expected.len(),
        "{context}: one up sample per completed poll: {up:?}"
    );
    for ((t, v), k) in up.iter().zip(expected) {
        assert_eq!(*v, 1.0, "{context}: up at {t}");
        let after = k
            .checked_sub(1)
            .map_or(i64::MIN, |before| served[before].at_ms);
        assert!(
            (after..=served[*k].at_ms).contains(t),
            "{context}: up at {t} is not the poll of document {k} (requested at {}, the one \
             before at {after})",
            served[*k].at_ms
        );
    }
}

pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The agent binary with its kubelet, receiver and `extra` flags (as [`agent`] starts it), not
/// started yet: [`AgentProcess::spawn`] or [`AgentProcess::listening`] starts it. Its own
/// metrics are not pushed unless `extra` says `--self-metrics`: these tests read what the
/// node's sources stored (the dashboard test turns them on for its push mode).
pub fn agent_command(kubelet: &str, remote: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(
        crate::support::SHORT_INTERVALS.0,
        crate::support::SHORT_INTERVALS.1,
    )
    .args(["--kubelet-url", kubelet, "--remote-url", remote]);
    if !extra.iter().any(|a| a.starts_with("--self-metrics")) {
        cmd.arg("--self-metrics=false");
    }
    cmd.args(extra);
    cmd
}

/// The agent binary as a child process, killed when dropped.
pub fn agent(kubelet: &str, remote: &str, extra: &[&str]) -> Child {
    agent_command(kubelet, remote, extra)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The agent binary serving its `/metrics` on a port it bound itself
/// ([`AgentProcess::listening`]): the agent, and its `host:port`.
pub async fn agent_listening(
    kubelet: &str,
    remote: &str,
    extra: &[&str],
) -> (AgentProcess, String) {
    AgentProcess::listening(&mut agent_command(kubelet, remote, extra)).await
}

/// The `/metrics` text of the agent at `listen`; `None` while it does not answer. Asked
/// directly, never through a proxy the test's own environment may name.
pub async fn read_metrics(listen: &str) -> Option<String> {
    kubelet_push::http::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().ok()?;
    let answer = client
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .ok()?;
    answer.text().await.ok()
}

/// Waits (up to [`PATIENCE`]) until the `/metrics` text of the agent at `listen` satisfies
/// `done`; returns that text. Fails early, with its log, if the agent exited; at the deadline
/// with the last text read and the log.
pub async fn wait_metrics(
    agent: &mut AgentProcess,
    listen: &str,
    what: impl std::fmt::Display,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    eventually(&what, PATIENCE, async || {
        if let Some(text) = read_metrics(listen).await {
            if done(&text) {
                return Ok(text);
            }
            last = text;
        }
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!("the agent exited ({status}) before {what}: {}", agent.log());
        }
        Err(format!("{last}\n{}", agent.log()))
    })
    .await
}

/// How a test ends an agent whose run it has checked: waits (as [`wait_metrics`]) until its
/// `/metrics` text satisfies `done` (its backlog delivered, a sample count reached), then
/// SIGTERM, and the exit must be clean (0). That text, read before the stop, and the agent's
/// whole log.
pub async fn wait_metrics_and_stop(
    mut agent: AgentProcess,
    listen: &str,
    what: impl std::fmt::Display,
    done: impl Fn(&str) -> bool,
) -> (String, String) {
    let metrics = wait_metrics(&mut agent, listen, &what, done).await;
    let (code, log) = stop_agent(agent).await;
    assert_eq!(code, Some(0), "{what}: a clean exit after SIGTERM: {log}");
    (metrics, log)
}

/// The sum of every sample of `name` (all label sets) in a `/metrics` text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `field=N` from the agent's "kubelet-push stopped" line (`polls_ok`, `polls_failed`,
/// `samples_sent`, `samples_pending`).
pub fn stopped_field(log: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("kubelet-push stopped"))
        .unwrap_or_else(|| panic!("no \"kubelet-push stopped\" in:\n{log}"));
    line.split(&format!("{field}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

/// `samples_sent=N` from the agent's last log line.
pub fn samples_sent(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| l.split("samples_sent=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no samples_sent in:\n{log}"))
}
