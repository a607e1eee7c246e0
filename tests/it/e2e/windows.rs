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

use kubelet_push::demo::simulator::SimulatedKubelet;
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
    /// How long to sit on each answer: a poll held here is a poll in progress.
    hold: Arc<Mutex<Duration>>,
    reference: Mutex<SimulatedKubelet>,
}

impl RecordingKubelet {
    async fn start(seed: u64) -> RecordingKubelet {
        let booted = SystemTime::now() - Duration::from_secs(3600);
        let sim = SimulatedKubelet::new(PODS, seed, booted);
        let reference = Mutex::new(sim.clone());
        let sim = Arc::new(Mutex::new(sim));
        let served = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(Mutex::new(Duration::ZERO));
        let (record, held) = (served.clone(), hold.clone());
        let app = axum::Router::new().route(
            "/stats/summary",
            axum::routing::get(move || {
                let (sim, record, held) = (sim.clone(), record.clone(), held.clone());
                async move {
                    let now = SystemTime::now();
                    let second = now
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let doc = sim.lock().unwrap().summary_json(now);
                    let hold = *held.lock().unwrap();
                    record.lock().unwrap().push((second, !hold.is_zero()));
                    tokio::time::sleep(hold).await;
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

    fn hold(&self, answers_for: Duration) {
        *self.hold.lock().unwrap() = answers_for;
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

/// The seconds of the documents served after the first `completed` ones: a stop requested
/// after those completed may find one of these polls in progress, which the agent abandons
/// (DESIGN.md: a stop does not wait for a poll).
fn in_progress(kubelet: &RecordingKubelet, completed: usize) -> BTreeSet<u64> {
    kubelet.served()[completed..].iter().copied().collect()
}

/// One run of the Windows `.exe` under Wine, under an image name of its own.
struct WindowsAgent {
    child: Child,
    image: String,
    listen: String,
    log: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Image names unique within this test process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

impl WindowsAgent {
    fn start(wine: &WineSetup, dir: &Path, image: Option<&str>, args: &[&str]) -> WindowsAgent {
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
        let listen = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new("wine")
            .arg(&exe)
            .args(["--listen-address", &listen])
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
        WindowsAgent {
            child,
            image,
            listen,
            log,
            reader,
        }
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
        let deadline = Instant::now() + WAIT;
        loop {
            let polls = self.metric("kubelet_push_polls_total{result=\"ok\"}").await;
            let sent = self.metric("kubelet_push_samples_sent_total").await;
            let pending = self.metric("kubelet_push_samples_pending").await;
            if let (Some(p), Some(s), Some(q)) = (polls, sent, pending) {
                if done(p, s, q) {
                    return;
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
            assert!(
                Instant::now() < deadline,
                "{}: not {what} within {WAIT:?}:\n{}",
                self.image,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn polls_ok(&self) -> f64 {
        self.metric("kubelet_push_polls_total{result=\"ok\"}")
            .await
            .unwrap_or(0.0)
    }

    /// Waits for a poll to complete (the `at_least`-th or a later one), so that a stop
    /// requested now is unlikely to find a poll in progress.
    async fn just_polled(&mut self, at_least: f64) {
        let before = self.polls_ok().await.max(at_least - 1.0);
        self.wait_until("polled", |polls, _, _| polls > before)
            .await;
    }

    /// Runs `ctrl-event.exe` on this agent: a console control event, or `kill`.
    async fn ctrl_event(&self, wine: &WineSetup, event: &str) {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
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
        .expect("ctrl-event.exe finishes within 30 s")
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

    /// Waits (bounded) for the exit: its code and the whole log.
    async fn exit(mut self, within: Duration) -> (Option<i32>, String) {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "{} still runs {within:?} after it was asked to stop:\n{}",
                self.image,
                self.log()
            ),
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        (status.code(), self.log())
    }
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
/// every document `kubelet` served, exactly (timestamps and values), and nothing else; only
/// the seconds in `may_be_lost` may be missing, one at most. Returns how many seconds were
/// stored, and the lost ones.
async fn assert_every_poll_stored(
    prometheus: &Real,
    kubelet: &RecordingKubelet,
    run: &str,
    may_be_lost: &BTreeSet<u64>,
) -> (usize, Vec<u64>) {
    let served: BTreeSet<u64> = kubelet.served().into_iter().collect();
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
        for &second in &served {
            let (t, v) = kubelet.node_samples(second)[i];
            expected.insert(t, (second, v));
        }
        for (t, v) in &stored {
            let (second, want) = expected
                .get(t)
                .unwrap_or_else(|| panic!("{run}: {metric} at {t}: no document had that time"));
            assert_eq!(
                v, want,
                "{run}: {metric} of the document served at {second}"
            );
        }
        for (t, (second, _)) in &expected {
            if !stored.contains_key(t) {
                assert!(
                    may_be_lost.contains(second),
                    "{run}: {metric} of the document served at {second} (time {t}) is missing; \
                     served {served:?}"
                );
                lost.push(*second);
            }
        }
        stored_seconds = stored.len();
    }
    lost.sort();
    lost.dedup();
    assert!(lost.len() <= 1, "{run}: lost {lost:?}");
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
    let prometheus = Real::start(Kind::Prometheus, dir.path(), free_port()).await;
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
            );
            agent.just_polled(3.0).await;
            let completed = kubelet.served().len();
            let asked = Instant::now();
            match how {
                "sigint" => agent.sigint(),
                event => agent.ctrl_event(wine, event).await,
            }
            let (code, log) = agent.exit(Duration::from_secs(30)).await;
            let took = asked.elapsed();
            assert_eq!(code, Some(0), "{how}: {}:\n{log}", exit_hint(code));
            let stop = line(&log, "shutting down (signal received)");
            assert!(stop.contains(event), "{how}: {stop}");
            let stopped = line(&log, "kubelet-push stopped");
            assert!(stopped.contains("samples_pending=0"), "{how}: {stopped}");
            assert!(!log.contains("second signal"), "{how}:\n{log}");
            let (stored, lost) = assert_every_poll_stored(
                prometheus,
                &kubelet,
                how,
                &in_progress(&kubelet, completed),
            )
            .await;
            // Two polls can fall in the same second (ticks jitter by tens of ms under Wine):
            // their samples share timestamps and are stored once.
            let served: BTreeSet<u64> = kubelet.served().into_iter().collect();
            assert_eq!(stored + lost.len(), served.len(), "{how}");
            assert!(kubelet.served().len() >= 3, "{how}: {:?}", kubelet.served());
            eprintln!("{how}: {event}, clean exit {took:?} after the request, {stored} polls stored, lost {lost:?}");
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
/// receiver comes back and every poll is in Prometheus, exactly, except the one the terminate
/// interrupted.
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
    let mut prometheus = Real::start(Kind::Prometheus, dir.path(), free_port()).await;
    let kubelet = RecordingKubelet::start(7).await;
    let (kubelet_url, write_url) = (kubelet.url(), prometheus.write_url());
    let args: Vec<&str> = [
        "--kubelet-url",
        kubelet_url.as_str(),
        "--remote-url",
        write_url.as_str(),
    ]
    .into_iter()
    .chain(ONE_SECOND_POLLS)
    .chain([
        "--shutdown-timeout",
        "2s",
        "--buffer-dir",
        buffer_dir.as_str(),
        "--label",
        "run=outage",
    ])
    .collect();
    let image = format!("kp-{}-outage.exe", std::process::id());
    let start = || WindowsAgent::start(&wine, dir.path(), Some(&image), &args);

    // Before the outage: delivered as it goes.
    let mut agent = start();
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.just_polled(1.0).await;
    let served_at_stop = kubelet.served().len();
    agent.ctrl_event(&wine, "shutdown").await;
    let (code, log) = agent.exit(Duration::from_secs(30)).await;
    let mut may_be_lost = in_progress(&kubelet, served_at_stop);
    assert_eq!(code, Some(0), "{}:\n{log}", exit_hint(code));
    assert!(line(&log, "shutting down").contains("CTRL_SHUTDOWN_EVENT"));
    line(&log, "undelivered samples stay in the disk buffer");
    // What the agent wrote to Z:\... is in the Linux directory.
    assert!(
        std::fs::read_dir(buffer.path()).unwrap().count() > 0,
        "nothing of {buffer_dir} in {}",
        buffer.path().display()
    );

    // Restarted on the same buffer, then terminated, as after an expired grace period, in
    // the middle of a poll: the kubelet has served the document and sits on the answer.
    let mut agent = start();
    agent
        .wait_until("polling again", |polls, _, _| polls >= 3.0)
        .await;
    kubelet.hold(Duration::from_secs(30));
    let deadline = Instant::now() + WAIT;
    let interrupted = loop {
        if let Some(second) = kubelet.first_held() {
            break second;
        }
        assert!(Instant::now() < deadline, "no poll within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    agent.ctrl_event(&wine, "kill").await;
    let (code, log) = agent.exit(Duration::from_secs(30)).await;
    kubelet.hold(Duration::ZERO);
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
    may_be_lost.insert(interrupted);

    // Restarted again; the receiver comes back and the backlog drains.
    let mut agent = start();
    agent
        .wait_until("polling again", |polls, _, _| polls >= 3.0)
        .await;
    prometheus.restart().await;
    let outage = outage_started.elapsed();
    agent
        .wait_until("drained", |_, sent, pending| sent > 0.0 && pending == 0.0)
        .await;
    agent.just_polled(1.0).await;
    let served_at_stop = kubelet.served().len();
    agent.sigint();
    let (code, log) = agent.exit(Duration::from_secs(30)).await;
    may_be_lost.extend(in_progress(&kubelet, served_at_stop));
    assert_eq!(code, Some(0), "{}:\n{log}", exit_hint(code));
    assert!(line(&log, "kubelet-push stopped").contains("samples_pending=0"));

    let (stored, lost) =
        assert_every_poll_stored(&prometheus, &kubelet, "outage", &may_be_lost).await;
    // The terminate lost the poll it interrupted, and nothing else; unless another poll fell
    // in the same second (the one before it, as ticks jitter by tens of ms under Wine, or
    // the restarted agent's first, when Wine starts it within the second): that one's
    // samples carry the same timestamps and were stored.
    let twice = kubelet
        .served()
        .iter()
        .filter(|s| **s == interrupted)
        .count()
        > 1;
    let expected: &[u64] = if twice { &[] } else { &[interrupted] };
    assert_eq!(lost, expected, "may be lost: {may_be_lost:?}");
    let served = kubelet.served();
    let polls = served.len();
    // The agent was down between the stops and the starts: where the timeline has holes.
    let holes: Vec<u64> = served
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap > 1)
        .collect();
    prometheus.assert_nothing_rejected(0).await;
    eprintln!(
        "{polls} polls served, {stored} seconds stored, lost {lost:?}, holes {holes:?} s, \
         outage {outage:?}, test {:?}",
        started.elapsed()
    );
}
