//! The Windows release `.exe` under Wine, polling a simulated Windows kubelet and pushing to a
//! real Prometheus, stopped the ways a Windows node stops it.
//!
//! containerd's Windows shim stops a container's process with `CTRL_SHUTDOWN_EVENT`,
//! delivered by starting a thread in it at kernel32's `CtrlRoutine`, and after the grace
//! period terminates it (`TerminateProcess`, exit code 1); see `src/signal.rs`. The helper
//! `ctrl-event.exe` (`.ci/wine/ctrl-event.c`) does exactly that under Wine, for every console
//! control event. What Wine 8.0 delivers, measured:
//! - SIGINT to the Wine process: `CTRL_C_EVENT` (the agent logs its stop within
//!   milliseconds, but the Wine process then takes up to ~5 s to exit; 0.1 s otherwise).
//! - `CtrlRoutine` started by another process: all five events (Ctrl-C, Ctrl-Break, close,
//!   logoff, shutdown), as on Windows.
//! - Not delivered: SIGTERM and SIGHUP end the Wine process at once (exit 143, 129; no
//!   handler runs), SIGQUIT is ignored, `wineboot --end-session` and `--shutdown` send
//!   nothing to a process without windows, `wineboot --kill` and `wineserver -k` terminate.
//!   A console window's close and a real logoff or shutdown (the system's own timeouts)
//!   cannot happen here.
//!
//! Needs `.ci/windows-e2e.sh` (`eval "$(.ci/windows-e2e.sh)"`), which sets `WINEPREFIX`,
//! `KUBELET_PUSH_WINDOWS_EXE` and `KUBELET_PUSH_CTRL_EVENT_EXE`; without them the tests fail
//! in CI and are skipped elsewhere.
//!
//! The prefix is shared by the tests running in parallel: a prefix each would cost ~11 s and
//! 700 MB. Each agent runs under an image name of its own (a copy of the `.exe`), so the
//! helper finds exactly it; nothing here ends the wineserver, and every Wine process is a
//! child killed when dropped (its Unix process is the Windows process), so a failing test
//! leaves nothing behind.

use super::*;

use std::collections::BTreeSet;

use kubelet_push::testkit::simulator::SimulatedKubelet;
use tokio::io::AsyncBufReadExt;

/// Pods of the simulated node: enough for a realistic request, few enough to stay small.
const PODS: usize = 4;
/// Every wait on Wine: its first start in a prefix takes a few seconds.
const WAIT: Duration = Duration::from_secs(60);

/// What the tests need from `.ci/windows-e2e.sh`.
struct WineSetup {
    exe: PathBuf,
    ctrl_event: PathBuf,
    prefix: PathBuf,
}

fn wine_setup() -> Option<WineSetup> {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    match (
        var("KUBELET_PUSH_WINDOWS_EXE"),
        var("KUBELET_PUSH_CTRL_EVENT_EXE"),
        var("WINEPREFIX"),
    ) {
        (Some(exe), Some(ctrl_event), Some(prefix)) => {
            for file in [&exe, &ctrl_event] {
                assert!(file.is_file(), "{} does not exist", file.display());
            }
            Some(WineSetup {
                exe,
                ctrl_event,
                prefix,
            })
        }
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "KUBELET_PUSH_WINDOWS_EXE, KUBELET_PUSH_CTRL_EVENT_EXE and WINEPREFIX are not \
                 all set; run eval \"$(.ci/windows-e2e.sh)\" first"
            );
            eprintln!("SKIPPED: no Windows build (eval \"$(.ci/windows-e2e.sh)\" to run it)");
            None
        }
    }
}

/// `Z:\tmp\x` for the Linux path `/tmp/x`: Wine maps the Linux root to drive Z:, and a
/// Windows user passes drive paths.
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// A simulated Windows node that records the second of every document it serves. Its
/// documents are a pure function of (pods, seed, boot time, second), so `reference` answers
/// what any served document held.
struct RecordingKubelet {
    server: LocalServer,
    /// The second of each document served, and whether its answer was held. A document
    /// counts as served when its request arrives.
    served: Arc<Mutex<Vec<(u64, bool)>>>,
    /// While true, answers wait until it is false again: a poll held here is a poll in
    /// progress, for as long as the test needs.
    hold: Arc<tokio::sync::watch::Sender<bool>>,
    reference: Mutex<SimulatedKubelet>,
}

impl RecordingKubelet {
    async fn start(seed: u64) -> RecordingKubelet {
        let booted = SystemTime::now() - Duration::from_secs(3600);
        let sim = SimulatedKubelet::new(PODS, seed, booted);
        let reference = Mutex::new(sim.clone());
        let sim = Arc::new(Mutex::new(sim));
        let served = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(tokio::sync::watch::Sender::new(false));
        let (record, gate) = (served.clone(), hold.clone());
        let app = axum::Router::new().route(
            "/stats/summary",
            axum::routing::get(move || {
                let (sim, record, gate) = (sim.clone(), record.clone(), gate.clone());
                async move {
                    let now = SystemTime::now();
                    let second = now
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let doc = sim.lock().unwrap().summary_json(now);
                    let held = *gate.borrow();
                    record.lock().unwrap().push((second, held));
                    if held {
                        let mut released = gate.subscribe();
                        let _ = released.wait_for(|held| !*held).await;
                    }
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        );
        let server = LocalServer::start(app, "recording kubelet").await.unwrap();
        RecordingKubelet {
            server,
            served,
            hold,
            reference,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// From now on, answers wait until [`RecordingKubelet::release`].
    fn hold(&self) {
        self.hold.send_replace(true);
    }

    fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Whether each document served so far was held, in order.
    fn held(&self) -> Vec<bool> {
        self.served.lock().unwrap().iter().map(|s| s.1).collect()
    }

    /// The seconds of the documents served so far, in order, repeats included.
    fn served(&self) -> Vec<u64> {
        self.served.lock().unwrap().iter().map(|s| s.0).collect()
    }

    /// The second of the first document whose answer was held.
    fn first_held(&self) -> Option<u64> {
        self.served
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.1)
            .map(|s| s.0)
    }

    /// `(timestamp ms, value)` of the node's CPU counter (seconds) and working set (bytes) in
    /// the document served at `second`, read from the JSON as `docs/metrics.md` maps them.
    fn node_samples(&self, second: u64) -> [(i64, f64); 2] {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(second);
        let doc: Value =
            serde_json::from_str(&self.reference.lock().unwrap().summary_json(at)).unwrap();
        let node = &doc["node"];
        let time = |section: &Value| {
            kubelet_push::kubelet::time::parse_rfc3339_ms(section["time"].as_str().unwrap())
                .unwrap()
        };
        let cpu = &node["cpu"];
        let memory = &node["memory"];
        [
            (
                time(cpu),
                cpu["usageCoreNanoSeconds"].as_u64().unwrap() as f64 / 1e9,
            ),
            (
                time(memory),
                memory["workingSetBytes"].as_u64().unwrap() as f64,
            ),
        ]
    }
}

/// The documents one agent asked for, `served[from..to]`, split by what became of them: the
/// seconds of those whose polls completed (the first `completed` of them: polls go one at a
/// time), and of the rest, which the stop abandoned (DESIGN.md: a stop does not wait for a
/// poll; so at most the one in progress).
fn split_polls(served: &[u64], from: usize, to: usize, completed: usize) -> (Vec<u64>, Vec<u64>) {
    let theirs = &served[from..to];
    assert!(
        completed <= theirs.len() && theirs.len() - completed <= 1,
        "{completed} polls completed of {} asked for ({theirs:?}): a stop abandons at most \
         the one in progress",
        theirs.len()
    );
    (theirs[..completed].to_vec(), theirs[completed..].to_vec())
}

/// How many polls an agent that stopped gracefully completed, from its last log line, which
/// also says none failed (the kubelet here always answers): a completed poll is in the
/// buffer, polls go one at a time, so these are the first ones it asked for.
fn polls_completed(log: &str) -> usize {
    assert_eq!(stopped_field(log, "polls_failed"), 0, "{log}");
    stopped_field(log, "polls_ok") as usize
}

/// One run of the Windows `.exe` under Wine, under an image name of its own.
struct WindowsAgent {
    child: Child,
    image: String,
    /// Where it serves `/metrics`: `127.0.0.1:0` bound by the agent, the port read from its
    /// log, so no port is chosen before the agent binds it.
    listen: String,
    log: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Image names unique within this test process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

impl WindowsAgent {
    async fn start(
        wine: &WineSetup,
        dir: &Path,
        image: Option<&str>,
        args: &[&str],
    ) -> WindowsAgent {
        let image = match image {
            Some(name) => name.to_owned(),
            None => format!(
                "kp-{}-{}.exe",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::SeqCst)
            ),
        };
        let exe = dir.join(&image);
        if !exe.exists() {
            std::fs::copy(&wine.exe, &exe).unwrap();
        }
        let mut child = Command::new("wine")
            .arg(&exe)
            .args(["--listen-address", "127.0.0.1:0"])
            // These tests count what the node's sources stored; the agent's own metrics are
            // tested by `selfmetrics` (which the Windows test build runs under Wine too).
            .arg("--self-metrics=false")
            .args(args)
            .env("WINEPREFIX", &wine.prefix)
            .env("WINEDEBUG", "-all")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run wine");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut agent = WindowsAgent {
            child,
            image,
            listen: String::new(),
            log,
            reader,
        };
        let what = format!("{}: serving", agent.image);
        agent.listen = eventually(what, WAIT, async || {
            if let Some(address) = listening_address(&agent.log()) {
                return Ok(address);
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!(
                    "{} exited before serving: {}\n{}",
                    agent.image,
                    exit_hint(status.code()),
                    agent.log()
                );
            }
            Err(agent.log())
        })
        .await;
        agent
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A value of the agent's own `/metrics`, by the line's start (name and labels).
    async fn metric(&self, line_start: &str) -> Option<f64> {
        crate::support::self_metric(&self.listen, line_start).await
    }

    /// Waits until `done` holds for the agent's metrics; fails early if the agent exited.
    async fn wait_until(&mut self, what: &str, done: impl Fn(f64, f64, f64) -> bool) {
        eventually(format!("{}: {what}", self.image), WAIT, async || {
            let polls = self.metric("kubelet_push_polls_total{result=\"ok\"}").await;
            let sent = self.metric("kubelet_push_samples_sent_total").await;
            let pending = self.metric("kubelet_push_samples_pending").await;
            if let (Some(p), Some(s), Some(q)) = (polls, sent, pending) {
                if done(p, s, q) {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited before {what}: {}\n{}",
                    self.image,
                    exit_hint(status.code()),
                    self.log()
                );
            }
            let counts = format!("polls {polls:?}, sent {sent:?}, pending {pending:?}");
            Err(format!("{counts}\n{}", self.log()))
        })
        .await;
    }

    async fn polls_ok(&self) -> f64 {
        self.metric("kubelet_push_polls_total{result=\"ok\"}")
            .await
            .unwrap_or(0.0)
    }

    /// Waits for a poll to complete (the `at_least`-th or a later one): pacing before a stop,
    /// which still lands anywhere in the poll cycle (the tests count on no particular point).
    async fn just_polled(&mut self, at_least: f64) {
        let before = self.polls_ok().await.max(at_least - 1.0);
        self.wait_until("polled", |polls, _, _| polls > before)
            .await;
    }

    /// Runs `ctrl-event.exe` on this agent: a console control event, or `kill`.
    async fn ctrl_event(&self, wine: &WineSetup, event: &str) {
        let out = tokio::time::timeout(
            WAIT,
            Command::new("wine")
                .arg(&wine.ctrl_event)
                .args([self.image.as_str(), event])
                .env("WINEPREFIX", &wine.prefix)
                .env("WINEDEBUG", "-all")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("ctrl-event.exe finishes within WAIT")
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "ctrl-event {event}: {}: {stdout}{}",
            exit_hint(out.status.code()),
            String::from_utf8_lossy(&out.stderr)
        );
        let verb = if event == "kill" {
            "terminated"
        } else {
            "sent"
        };
        assert!(stdout.starts_with(verb), "ctrl-event {event}: {stdout}");
    }

    /// SIGINT to the Wine process, which Wine turns into `CTRL_C_EVENT`.
    fn sigint(&self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits (bounded) for the exit after a graceful stop: its code and the whole log, which
    /// then ends with "kubelet-push stopped". The end of the pipe may come only when the
    /// wineserver exits (it inherits the pipe from the Wine process that started it), so that
    /// line is waited for (bounded) rather than the end of the pipe.
    async fn exit(self, within: Duration) -> (Option<i32>, String) {
        self.exit_until(within, Some("kubelet-push stopped")).await
    }

    /// Waits (bounded) for the exit of an agent that was terminated: its code and its log,
    /// as far as it was read within 5 s of the exit (the end of the pipe may come only when
    /// the wineserver exits, see [`WindowsAgent::exit`]).
    async fn terminated(self, within: Duration) -> (Option<i32>, String) {
        self.exit_until(within, None).await
    }

    async fn exit_until(mut self, within: Duration, last: Option<&str>) -> (Option<i32>, String) {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "{} still runs {within:?} after it was asked to stop:\n{}",
                self.image,
                self.log()
            ),
        };
        match last {
            Some(line) => {
                let what = format!(
                    "{}: exited ({}), {line:?} in its log",
                    self.image,
                    exit_hint(status.code())
                );
                eventually(what, WAIT, async || {
                    let log = self.log();
                    let done = log.contains(line) || self.reader.is_finished();
                    done.then_some(()).ok_or(log)
                })
                .await;
            }
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
            }
        }
        (status.code(), self.log())
    }
}

/// The address in the agent's "serving /metrics" log line (as `support::AgentProcess` reads
/// it; the Windows `.exe` logs the same line).
fn listening_address(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains(kubelet_push::telemetry::SERVING))?;
    let value = line.split_once("address=")?.1;
    let end = value
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(value.len());
    Some(value[..end].to_owned())
}

/// An exit code, with what 53 means under Wine.
fn exit_hint(code: Option<i32>) -> String {
    match code {
        Some(53) => {
            "exit code 53: a DLL the .exe imports was not found (run .ci/wine/setup)".into()
        }
        other => format!("exit code {other:?}"),
    }
}

/// The one line of `log` that contains `needle`, or a failure showing the log.
fn line<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
}

/// Asserts that Prometheus holds, for run `run`, the node's CPU and working-set samples of
/// exactly the documents served at the seconds in `completed` (those whose polls completed):
/// every one, with its timestamp and value, and nothing else. Two polls in the same second
/// (ticks jitter by tens of ms under Wine) carry the same samples, stored once. Returns how
/// many samples of each series that is, and the seconds of `served` whose samples are not
/// there (the abandoned and interrupted polls' documents, unless a completed poll fell in the
/// same second).
async fn assert_exactly_stored(
    prometheus: &Real,
    kubelet: &RecordingKubelet,
    run: &str,
    completed: &BTreeSet<u64>,
) -> (usize, Vec<u64>) {
    let served: BTreeSet<u64> = kubelet.served().into_iter().collect();
    assert!(
        completed.is_subset(&served),
        "{run}: {completed:?} of {served:?}"
    );
    let first = *served.first().expect("the kubelet served documents");
    let now = now_ms();
    let window_s = (now / 1000 - first as i64 + 30) as u64;
    let mut lost = Vec::new();
    let mut stored_seconds = 0;
    for (i, metric) in [
        "node_cpu_usage_seconds_total",
        "node_memory_working_set_bytes",
    ]
    .iter()
    .enumerate()
    {
        let raw = prometheus
            .raw(&format!("{metric}{{run=\"{run}\"}}"), now, window_s)
            .await;
        assert_eq!(raw.len(), 1, "{run}: one {metric} series: {raw:?}");
        let stored: BTreeMap<i64, f64> = raw.into_values().next().unwrap().into_iter().collect();
        let mut expected = BTreeMap::new();
        for &second in completed {
            let (t, v) = kubelet.node_samples(second)[i];
            expected.insert(t, (second, v));
        }
        for (t, v) in &stored {
            let (second, want) = expected.get(t).unwrap_or_else(|| {
                panic!(
                    "{run}: {metric} at {t}: no completed poll's document had that time \
                     (completed {completed:?}, served {served:?})"
                )
            });
            assert_eq!(
                v, want,
                "{run}: {metric} of the document served at {second}"
            );
        }
        for (t, (second, _)) in &expected {
            assert!(
                stored.contains_key(t),
                "{run}: {metric} of the document served at {second} (time {t}), whose poll \
                 completed, is missing; completed {completed:?}, served {served:?}"
            );
        }
        for &second in &served {
            let (t, _) = kubelet.node_samples(second)[i];
            if !stored.contains_key(&t) {
                lost.push(second);
            }
        }
        stored_seconds = stored.len();
    }
    lost.sort();
    lost.dedup();
    (stored_seconds, lost)
}

/// Every console control event Wine delivers stops the agent gracefully: it logs which event,
/// stops polling, delivers what it holds, exits 0, and Prometheus has every poll, the last
/// one included.
#[tokio::test]
async fn windows_console_events_stop_gracefully() {
    let Some(wine) = wine_setup() else { return };
    if !available(Kind::Prometheus) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Real::launch(Kind::Prometheus, dir.path()).await;
    let started = Instant::now();
    // (how it is sent, what the agent must log)
    let cases = [
        ("sigint", "CTRL_C_EVENT"),
        ("c", "CTRL_C_EVENT"),
        ("break", "CTRL_BREAK_EVENT"),
        ("close", "CTRL_CLOSE_EVENT"),
        ("logoff", "CTRL_LOGOFF_EVENT"),
        ("shutdown", "CTRL_SHUTDOWN_EVENT"),
    ];
    let run = |(how, event): (&'static str, &'static str), seed: u64| {
        let (wine, dir, prometheus) = (&wine, dir.path(), &prometheus);
        async move {
            let kubelet = RecordingKubelet::start(seed).await;
            let label = format!("run={how}");
            let mut agent = WindowsAgent::start(
                wine,
                dir,
                None,
                &[
                    "--kubelet-url",
                    &kubelet.url(),
                    "--remote-url",
                    &prometheus.write_url(),
                    "--interval",
                    "1s",
                    "--label",
                    &label,
                    "--shutdown-timeout",
                    "20s",
                ],
            )
            .await;
            // Pacing: a few polls before the stop, which lands anywhere in the poll cycle.
            agent.just_polled(3.0).await;
            let asked = Instant::now();
            match how {
                "sigint" => agent.sigint(),
                event => agent.ctrl_event(wine, event).await,
            }
            let (code, log) = agent.exit(WAIT).await;
            let took = asked.elapsed();
            assert_eq!(code, Some(0), "{how}: {}:\n{log}", exit_hint(code));
            let stop = line(&log, "shutting down (signal received)");
            assert!(stop.contains(event), "{how}: {stop}");
            let stopped = line(&log, "kubelet-push stopped");
            assert!(stopped.contains("samples_pending=0"), "{how}: {stopped}");
            assert!(!log.contains("second signal"), "{how}:\n{log}");
            // Exactly the polls the agent says it completed are in Prometheus: the stop
            // abandoned the one in progress, if it came mid-poll, and lost nothing else.
            let served = kubelet.served();
            assert!(served.len() >= 3, "{how}: {served:?}");
            let (completed, abandoned) =
                split_polls(&served, 0, served.len(), polls_completed(&log));
            let (stored, lost) =
                assert_exactly_stored(prometheus, &kubelet, how, &completed.into_iter().collect())
                    .await;
            eprintln!(
                "{how}: {event}, clean exit {took:?} after the request, {stored} polls stored, \
                 abandoned {abandoned:?}, lost {lost:?}"
            );
        }
    };
    tokio::join!(
        run(cases[0], 1),
        run(cases[1], 2),
        run(cases[2], 3),
        run(cases[3], 4),
        run(cases[4], 5),
        run(cases[5], 6),
    );
    prometheus.assert_nothing_rejected(0).await;
    eprintln!("six Windows stops in {:?}", started.elapsed());
}

/// The disk buffer across a receiver outage, with the agent stopped twice during it the two
/// ways a Windows node stops a container: gracefully (`CTRL_SHUTDOWN_EVENT`, the buffer keeps
/// what could not be sent) and by `TerminateProcess` (the grace period ran out). Then the
/// receiver comes back and every poll is in Prometheus, exactly: every poll that completed,
/// and none of the one the terminate interrupted (held at the kubelet, so it lands at a known
/// point) nor of one a graceful stop abandoned (it lands anywhere in the poll cycle, starting
/// `ctrl-event.exe` under Wine taking 0.5-3 s; the agent's last log line says how many polls
/// it completed).
#[tokio::test]
async fn windows_exe_keeps_every_poll_across_an_outage_and_two_stops() {
    let Some(wine) = wine_setup() else { return };
    if !available(Kind::Prometheus) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let buffer = tempfile::tempdir().unwrap();
    let buffer_dir = windows_path(buffer.path());
    let mut prometheus = Real::launch(Kind::Prometheus, dir.path()).await;
    let kubelet = RecordingKubelet::start(7).await;
    let (kubelet_url, write_url) = (kubelet.url(), prometheus.write_url());
    // The agents stopped during the outage keep what they cannot send in the buffer after a
    // 2 s grace; the last one stops after the receiver is back, with a timeout ample for its
    // final flush on a loaded machine.
    let args_with = |shutdown_timeout: &'static str| -> Vec<&str> {
        [
            "--kubelet-url",
            kubelet_url.as_str(),
            "--remote-url",
            write_url.as_str(),
        ]
        .into_iter()
        .chain(ONE_SECOND_POLLS)
        .chain([
            "--shutdown-timeout",
            shutdown_timeout,
            "--buffer-dir",
            buffer_dir.as_str(),
            "--label",
            "run=outage",
        ])
        .collect()
    };
    let (args, last_args) = (args_with("2s"), args_with("20s"));
    let image = format!("kp-{}-outage.exe", std::process::id());
    let start = || WindowsAgent::start(&wine, dir.path(), Some(&image), &args);
    // The seconds of the documents whose polls completed, over the three agents.
    let mut completed: BTreeSet<u64> = BTreeSet::new();

    // Before the outage: delivered as it goes.
    let mut agent = start().await;
    agent
        .wait_until("delivering", |polls, sent, pending| {
            polls >= 3.0 && sent > 0.0 && pending == 0.0
        })
        .await;
    prometheus.kill().await;
    let outage_started = Instant::now();

    // A graceful stop mid-outage: CTRL_SHUTDOWN_EVENT, as containerd sends for SIGTERM.
    agent
        .wait_until("buffering", |_, _, pending| pending > 0.0)
        .await;
    // Pacing: a few polls buffered before the stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.just_polled(1.0).await;
    agent.ctrl_event(&wine, "shutdown").await;
    let (code, log) = agent.exit(WAIT).await;
    assert_eq!(code, Some(0), "{}:\n{log}", exit_hint(code));
    assert!(line(&log, "shutting down").contains("CTRL_SHUTDOWN_EVENT"));
    line(&log, "undelivered samples stay in the disk buffer");
    // What the agent wrote to Z:\... is in the Linux directory.
    assert!(
        std::fs::read_dir(buffer.path()).unwrap().count() > 0,
        "nothing of {buffer_dir} in {}",
        buffer.path().display()
    );
    let first_end = kubelet.served().len();
    let (done, abandoned_at_shutdown) =
        split_polls(&kubelet.served(), 0, first_end, polls_completed(&log));
    completed.extend(done);

    // Restarted on the same buffer, then terminated, as after an expired grace period, in
    // the middle of a poll: the kubelet has served the document and sits on the answer until
    // the agent is gone.
    let mut agent = start().await;
    agent
        .wait_until("polling again", |polls, _, _| polls >= 3.0)
        .await;
    kubelet.hold();
    let interrupted = eventually("a held poll", WAIT, async || {
        kubelet.first_held().ok_or_else(String::new)
    })
    .await;
    // The agent sits in the held poll: its counts are final, every earlier poll completed.
    let polls_ok = agent
        .metric("kubelet_push_polls_total{result=\"ok\"}")
        .await
        .unwrap_or_else(|| panic!("no polls count: {}", agent.log())) as usize;
    let polls_failed = agent
        .metric("kubelet_push_polls_total{result=\"error\"}")
        .await;
    assert_eq!(polls_failed, Some(0.0), "{}", agent.log());
    agent.ctrl_event(&wine, "kill").await;
    let (code, log) = agent.terminated(WAIT).await;
    kubelet.release();
    // Windows reports TerminateProcess's 1. Under Wine the Linux exit status depends on
    // which thread learns of the termination first: one woken from a server call exits with
    // the code given, one reached by SIGQUIT exits with 0 (ntdll's quit_handler calls
    // abort_thread(0)); CI saw both. Either way the agent did not stop by itself: it never
    // began a graceful stop nor logged the end of one.
    assert!(
        matches!(code, Some(1) | Some(0)),
        "TerminateProcess(1): {}:\n{log}",
        exit_hint(code)
    );
    assert!(!log.contains("shutting down"), "{log}");
    assert!(!log.contains("kubelet-push stopped"), "{log}");
    let second_end = kubelet.served().len();
    let held: Vec<usize> = (0..second_end).filter(|i| kubelet.held()[*i]).collect();
    assert_eq!(
        held,
        [second_end - 1],
        "the held poll, the terminated agent's last"
    );
    let (done, interrupted_docs) = split_polls(&kubelet.served(), first_end, second_end, polls_ok);
    assert_eq!(
        interrupted_docs,
        [interrupted],
        "the terminated agent completed every poll but the held one"
    );
    completed.extend(done);

    // Restarted again; the receiver comes back and the backlog drains.
    let mut agent = WindowsAgent::start(&wine, dir.path(), Some(&image), &last_args).await;
    agent
        .wait_until("polling again", |polls, _, _| polls >= 3.0)
        .await;
    prometheus.restart().await;
    let outage = outage_started.elapsed();
    agent
        .wait_until("drained", |_, sent, pending| sent > 0.0 && pending == 0.0)
        .await;
    // Pacing: a poll after the drain, then the stop, anywhere in the poll cycle.
    agent.just_polled(1.0).await;
    agent.sigint();
    let (code, log) = agent.exit(WAIT).await;
    assert_eq!(code, Some(0), "{}:\n{log}", exit_hint(code));
    assert!(line(&log, "kubelet-push stopped").contains("samples_pending=0"));
    let served = kubelet.served();
    let (done, abandoned_at_sigint) =
        split_polls(&served, second_end, served.len(), polls_completed(&log));
    completed.extend(done);

    // Every completed poll's document is in Prometheus, and nothing else.
    let (stored, lost) = assert_exactly_stored(&prometheus, &kubelet, "outage", &completed).await;
    let polls = served.len();
    // The agent was down between the stops and the starts: where the timeline has holes.
    let holes: Vec<u64> = served
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap > 1)
        .collect();
    prometheus.assert_nothing_rejected(0).await;
    eprintln!(
        "{polls} polls served, {stored} seconds stored, interrupted {interrupted}, abandoned \
         {abandoned_at_shutdown:?} and {abandoned_at_sigint:?}, lost {lost:?}, holes {holes:?} \
         s, outage {outage:?}, test {:?}",
        started.elapsed()
    );
}

/// The Windows `.exe` as the one push path off a Windows node: beside the summary it scrapes
/// a windows_exporter (its real output, `tests/fixtures/expositions/`, served as the exporter
/// serves it) and the simulated kubelet's `/metrics/probes` through the kubelet URL. The real
/// Prometheus then holds every sample of the exporter's exposition, with its value, under the
/// target's `job` and `instance`; the probes labelled as kube-prometheus labels the kubelet's
/// endpoints; and `up` 1 for both targets and the summary.
#[tokio::test]
async fn windows_exe_scrapes_an_exporter_and_the_kubelets_probes() {
    let Some(wine) = wine_setup() else { return };
    if !available(Kind::Prometheus) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Real::launch(Kind::Prometheus, dir.path()).await;
    let kubelet = crate::support::simulated_kubelet(PODS, 11).await;
    let fixture = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/expositions/windows_exporter__nri-winservices-actual-output.txt"),
    )
    .unwrap();
    let expected = kubelet_push::exposition::parse(
        kubelet_push::exposition::Format::Text,
        &fixture,
        &Default::default(),
    )
    .expect("the fixture parses");
    let body = fixture.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let exporter = LocalServer::start(app, "windows_exporter").await.unwrap();
    let instance = exporter.addr().to_string();
    let target = format!("windows-exporter=http://{instance}/metrics");
    let (kubelet_url, write_url) = (kubelet.url(), prometheus.write_url());
    let args: Vec<&str> = ["--kubelet-url", &kubelet_url, "--remote-url", &write_url]
        .into_iter()
        .chain(ONE_SECOND_POLLS)
        .chain([
            "--scrape",
            target.as_str(),
            "--kubelet-scrape",
            "/metrics/probes",
        ])
        .collect();
    let agent = WindowsAgent::start(&wine, dir.path(), None, &args).await;
    let count = |v: &[Value]| {
        v.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eventually("exporter and probe metrics stored", WAIT, async || {
        let ups = prometheus
            .query(
                "count_over_time(up{job=\"windows-exporter\"}[1m])",
                now_ms(),
            )
            .await;
        let probes = prometheus
            .query(
                "count(prober_probe_total{job=\"kubelet\",metrics_path=\"/metrics/probes\"})",
                now_ms(),
            )
            .await;
        let (ups, probes) = (count(&ups), count(&probes));
        (ups >= 3.0 && probes > 0.0).then_some(()).ok_or_else(|| {
            format!(
                "{ups} exporter scrapes, {probes} probe series\n{}",
                agent.log()
            )
        })
    })
    .await;
    let at = now_ms();
    let stored = prometheus
        .query(
            &format!(
                "{{job=\"windows-exporter\",instance=\"{instance}\",__name__!~\"up|scrape_.*\"}}"
            ),
            at,
        )
        .await;
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for series in &stored {
        let mut metric = series["metric"].as_object().unwrap().clone();
        for label in ["job", "instance", "node"] {
            metric.remove(label);
        }
        let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        got.insert(series_key(&Value::Object(metric)), value);
    }
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for sample in expected.samples() {
        let mut metric = serde_json::Map::new();
        metric.insert("__name__".into(), Value::from(sample.name));
        for (n, v) in sample.labels.iter().filter(|(_, v)| !v.is_empty()) {
            metric.insert(n.into(), Value::from(v));
        }
        want.insert(series_key(&Value::Object(metric)), sample.value);
    }
    assert_eq!(got.len(), want.len(), "series stored and exposed");
    for (key, value) in &want {
        assert_eq!(got.get(key), Some(value), "{key}");
    }
    for (selector, what) in [
        (
            format!("up{{job=\"windows-exporter\",instance=\"{instance}\"}}"),
            "the exporter",
        ),
        (
            "up{job=\"kubelet\",metrics_path=\"/metrics/probes\"}".to_owned(),
            "the probes",
        ),
        (
            "up{job=\"kubelet\",metrics_path=\"/metrics\"}".to_owned(),
            "the summary",
        ),
    ] {
        let up = prometheus.query(&selector, at).await;
        assert_eq!(up.len(), 1, "{what}: {up:?}");
        assert_eq!(up[0]["value"][1], "1", "{what}");
    }
    let probe = prometheus
        .query("prober_probe_total{job=\"kubelet\"}", at)
        .await;
    let node = probe[0]["metric"]["node"].as_str().unwrap();
    assert_eq!(probe[0]["metric"]["instance"].as_str(), Some(node));
    agent.ctrl_event(&wine, "shutdown").await;
    let (code, log) = agent.exit(WAIT).await;
    assert_eq!(code, Some(0), "{}:\n{log}", exit_hint(code));
    assert!(!log.contains("scrape failed"), "{log}");
}
