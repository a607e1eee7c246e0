//! The binary as an operator runs it: exit codes, messages naming the flag, `--help`.

use std::process::{Command, Output};

use kubelet_push::testkit::receiver::Receiver;

use crate::support::*;

pub(crate) fn kubelet_push(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .args(args)
        .env_remove("KUBELET_PUSH_REMOTE_URL")
        .output()
        .expect("run kubelet-push")
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--interval", "soon", "--dry-run"], "--interval"),
        (&["--interval", "0s", "--dry-run"], "--interval"),
        (&["--log-format", "xml", "--dry-run"], "--log-format"),
        (&["--log-level", "loud=[", "--dry-run"], "--log-level"),
        // A typo must not silence every log line.
        (&["--log-level", "warning", "--dry-run"], "--log-level"),
        (&["--log-level", "info,=debug", "--dry-run"], "--log-level"),
        (
            &["--max-samples-per-send", "many", "--dry-run"],
            "--max-samples-per-send",
        ),
        (
            &["--kubelet-url", "gopher://x", "--dry-run"],
            "--kubelet-url",
        ),
        (&["--label", "pod=x", "--dry-run"], "--label"),
        (
            &["--kubelet-proxy-url", "socks5://127.0.0.1:9", "--dry-run"],
            "--kubelet-proxy-url",
        ),
        (
            &[
                "--kubelet-proxy-url",
                "http://127.0.0.1:9",
                "--kubelet-url",
                "file:///nonexistent.json",
                "--dry-run",
            ],
            "--kubelet-proxy-url",
        ),
        (
            &[
                "--remote-header",
                "Content-Encoding=gzip",
                "--remote-url",
                "http://127.0.0.1:1/w",
            ],
            "--remote-header",
        ),
        (
            &["--kubelet-ca-file", "/nonexistent/ca.crt", "--dry-run"],
            "--kubelet-ca-file",
        ),
        (&[], "--remote-url"),
        (&["--no-such-flag"], "--no-such-flag"),
        (
            &["--buffer-max-size", "lots", "--dry-run"],
            "--buffer-max-size",
        ),
        (
            &["--listen-address", "nowhere", "--dry-run"],
            "--listen-address",
        ),
    ];
    for (args, flag) in cases {
        let out = kubelet_push(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(flag),
            "{args:?} should name {flag}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_ca_file_without_certificates_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let out = kubelet_push(&["--kubelet-ca-file", ca.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--kubelet-ca-file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_shows_every_environment_twin() {
    let out = kubelet_push(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "kubelet-url",
        "remote-url",
        "interval",
        "once",
        "dry-run",
        "label",
        "node-name",
        "job",
        "max-stats-age",
        "remote-header",
        "max-samples-per-send",
        "remote-timeout",
        "kubelet-timeout",
        "kubelet-token-file",
        "kubelet-ca-file",
        "kubelet-insecure-skip-verify",
        "kubelet-proxy-url",
        "log-format",
        "log-level",
        "min-backoff",
        "max-backoff",
        "buffer-max-size",
        "buffer-dir",
        "max-sample-age",
        "shutdown-timeout",
        "listen-address",
    ] {
        assert!(
            help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n")),
            "--{flag} missing"
        );
        let env = format!("KUBELET_PUSH_{}", flag.to_uppercase().replace('-', "_"));
        assert!(help.contains(&env), "{env} missing from --help");
    }
}

#[test]
fn environment_twins_configure_the_agent() {
    let fixture = fixture("seed-windows-node.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .env("KUBELET_PUSH_DRY_RUN", "true")
        .env(
            "KUBELET_PUSH_KUBELET_URL",
            format!("file://{}", fixture.display()),
        )
        .env("KUBELET_PUSH_LABEL", "cluster=c1,zone=z9")
        .env("KUBELET_PUSH_JOB", "win")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("node_cpu_usage_seconds_total{"))
        .unwrap();
    assert_eq!(
        line,
        "node_cpu_usage_seconds_total{cluster=\"c1\",instance=\"35598k8s9001\",job=\"win\",metrics_path=\"/metrics/resource\",node=\"35598k8s9001\",zone=\"z9\"} 8532.52 1536543892000"
    );
}

/// Every form of file URL an operator may type reaches the same captured summary through the
/// real binary: the standard one (`file:///C:/x` on Windows), the drive-letter forms, and a
/// path relative to the working directory (with `\` too on Windows).
#[test]
fn every_file_url_form_reads_the_same_summary() {
    let relative = "tests/fixtures/summaries/seed-windows-node.json";
    let absolute = std::path::absolute(fixture("seed-windows-node.json")).unwrap();
    let slashed = absolute.to_string_lossy().replace('\\', "/");
    let mut urls = vec![format!("file://{relative}")];
    #[cfg(unix)]
    urls.extend([
        format!("file://{slashed}"),
        format!("file://localhost{slashed}"),
    ]);
    #[cfg(windows)]
    urls.extend([
        format!("file:///{slashed}"),
        format!("file://{slashed}"),
        format!("file://{}", absolute.display()),
        format!("file://{}", relative.replace('/', "\\")),
    ]);
    for url in &urls {
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--dry-run", "--kubelet-url", url])
            .env_remove("KUBELET_PUSH_NODE_NAME")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{url}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("node_cpu_usage_seconds_total{"));
        assert_eq!(
            line,
            Some("node_cpu_usage_seconds_total{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"35598k8s9001\"} 8532.52 1536543892000"),
            "{url}: {text}"
        );
    }
}

#[test]
fn dry_run_of_a_missing_file_exits_1_and_says_why_once() {
    let out = kubelet_push(&[
        "--dry-run",
        "--kubelet-url",
        "file:///nonexistent/summary.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("kubelet poll failed").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/summary.json"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("up{") && l.contains("} 0 ")),
        "{text}"
    );
}

/// The binary run with `args` and, besides the test's own environment, `env`, to its end.
async fn agent_output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

/// The demo binary, running, its stdout and stderr read as they come.
///
/// The demo's `--duration` timer starts before its start-up, which is slow on a loaded machine
/// and under Wine, so a short one may end a correct demo before it did what a test looks for.
/// On unix it runs without one: a test waits (bounded) for what it looks for, then
/// [`Demo::finish`] stops it with SIGTERM, as Kubernetes would. On Windows a test process
/// cannot stop it cleanly (`support::stop_agent` says why): it runs for a generous duration
/// given by each test, and the test asserts only what a correct demo shows by then.
struct Demo {
    agent: AgentProcess,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// `kubelet-push demo ARGS` (`args` start with `demo`), with `env` besides the test's own
    /// environment; on Windows with `--duration windows_duration` too.
    fn command(
        args: &[&str],
        env: &[(&str, &str)],
        windows_duration: &str,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
        cmd.args(args)
            .envs(env.iter().copied())
            .env_remove("KUBELET_PUSH_REMOTE_URL")
            .stdout(std::process::Stdio::piped());
        if cfg!(windows) {
            cmd.args(["--duration", windows_duration]);
        }
        cmd
    }

    fn start(args: &[&str], env: &[(&str, &str)], windows_duration: &str) -> Demo {
        Self::reading(AgentProcess::spawn(&mut Self::command(
            args,
            env,
            windows_duration,
        )))
    }

    /// Started with `--listen-address` on a port of its own choosing, and its `host:port`.
    async fn listening(args: &[&str], windows_duration: &str) -> (Demo, String) {
        let mut cmd = Self::command(args, &[], windows_duration);
        let (agent, listen) = AgentProcess::listening(&mut cmd).await;
        (Self::reading(agent), listen)
    }

    fn reading(mut agent: AgentProcess) -> Demo {
        use tokio::io::AsyncReadExt;
        let mut out = agent.child.stdout.take().expect("stdout piped");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = stdout.clone();
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = out.read(&mut chunk).await {
                into.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Demo {
            agent,
            stdout,
            reader,
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn log(&self) -> String {
        self.agent.log()
    }

    /// Waits until `done` holds, at most [`PATIENCE`].
    async fn wait_for(&self, what: &str, done: impl Fn(&Demo) -> bool) {
        eventually(what, PATIENCE, async || {
            done(self)
                .then_some(())
                .ok_or_else(|| format!("{}\n{}", self.stdout(), self.log()))
        })
        .await;
    }

    /// Ends the demo (unix: SIGTERM; Windows: the end of its `--duration`): its exit code,
    /// stdout and stderr.
    async fn finish(self) -> (Option<i32>, String, String) {
        #[cfg(unix)]
        let (code, log) = sigterm(self.agent).await;
        #[cfg(not(unix))]
        let (code, log) = {
            let (status, log) = self.agent.wait().await;
            (status.code(), log)
        };
        // The pipe closes when the demo exits.
        let _ = tokio::time::timeout(PATIENCE, self.reader).await;
        let stdout = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
        (code, stdout, log)
    }
}

/// The distinct `up` timestamps (one per poll) among the series `rx` accepted.
fn up_times(rx: &Receiver) -> std::collections::BTreeSet<i64> {
    rx.accepted_series()
        .iter()
        .filter(|ts| label(ts, "__name__") == Some("up"))
        .flat_map(|ts| ts.samples.iter().map(|s| s.timestamp))
        .collect()
}

#[tokio::test]
async fn once_exit_codes_follow_the_push() {
    let rx = Receiver::start().await.unwrap();
    let url = rx.url();
    let kubelet_url = format!("file://{}", fixture("seed-windows-node.json").display());
    let ok = agent_output(
        &[
            "--once",
            "--kubelet-url",
            &kubelet_url,
            "--remote-url",
            &url,
            "--log-format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(rx.accepted_series().len(), 36);
    // JSON logs: one object per line.
    for line in String::from_utf8_lossy(&ok.stderr).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json log line");
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }

    rx.push_response(
        kubelet_push::testkit::receiver::Response::status(400).with_body("bad labels"),
    );
    let failed = agent_output(
        &[
            "--once",
            "--kubelet-url",
            &kubelet_url,
            "--remote-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(
        err.contains("400") && err.contains("bad labels"),
        "the receiver's message is logged: {err}"
    );
}

/// The built-in receiver shows what arrived, and the demo ends with its tally. (On unix it is
/// stopped by SIGTERM once a line shows the first poll; `--duration` is the Windows run's.)
#[tokio::test]
async fn demo_runs_for_its_duration_and_shows_decoded_traffic() {
    let demo = Demo::start(
        &[
            "demo",
            "--pods",
            "4",
            "--interval",
            "300ms",
            // The drain at the end is never what cuts samples on a loaded machine.
            "--shutdown-timeout",
            "30s",
        ],
        &[],
        "20s",
    );
    demo.wait_for("a line showing the first poll", |d| {
        let text = d.stdout();
        text.contains("4 pods") && text.contains("up 1")
    })
    .await;
    let (code, text, err) = demo.finish().await;
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("4 pods"), "{text}");
    assert!(text.contains("up 1"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("demo finished: "), "{text}");
    assert!(last.contains("0 samples dropped"), "{last}");
}

/// `--remote-write-version 2` applies to the built-in receiver too: what it shows arrived as
/// 2.0, and nothing as 1.0.
#[tokio::test]
async fn demo_speaks_remote_write_2_to_its_receiver_when_asked() {
    let demo = Demo::start(
        &[
            "demo",
            "--pods",
            "2",
            "--interval",
            "300ms",
            "--remote-write-version",
            "2",
            "--shutdown-timeout",
            "30s",
        ],
        &[],
        "20s",
    );
    demo.wait_for("a line showing a request", |d| {
        d.stdout().contains(" req as ")
    })
    .await;
    let (code, text, err) = demo.finish().await;
    assert_eq!(code, Some(0), "{err}");
    let shown: Vec<&str> = text.lines().filter(|l| l.contains(" req as ")).collect();
    assert!(!shown.is_empty(), "{text}");
    for line in shown {
        assert!(
            line.contains(" req as 2.0 (0 not accepted)"),
            "{line}\n{text}"
        );
    }
}

/// With `--remote-url` the demo pushes there: every poll at least one request of its own.
#[tokio::test]
async fn demo_pushes_to_a_given_remote_url() {
    let rx = Receiver::start().await.unwrap();
    let demo = Demo::start(
        &[
            "demo",
            "--pods",
            "3",
            "--interval",
            "200ms",
            "--remote-url",
            &rx.url(),
        ],
        &[],
        "20s",
    );
    // Counted, not timed: three polls delivered, however long a loaded machine takes.
    demo.wait_for("three polls delivered", |_| up_times(&rx).len() >= 3)
        .await;
    let (code, _, err) = demo.finish().await;
    assert_eq!(code, Some(0), "{err}");
    let series = rx.accepted_series();
    // Pods may be replaced during the run; the first poll shows exactly the ones asked for.
    let first = rx.requests()[0].write_request.clone().unwrap().timeseries;
    let pods: std::collections::BTreeSet<&str> = named(&first, "pod_cpu_usage_seconds_total")
        .iter()
        .filter_map(|ts| label(ts, "pod"))
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(series
        .iter()
        .all(|ts| label(ts, "node") == Some("demo-win-node")));
    // Each poll's `up` has its own timestamp: at least as many requests as polls delivered
    // (never fewer, as if polls were merged), and at least three of those.
    let polls = up_times(&rx).len();
    assert!(
        rx.requests().len() >= polls && polls >= 3,
        "one request per poll at least: {} requests, {polls} polls",
        rx.requests().len()
    );
}

/// Ctrl-C (SIGINT) and SIGTERM end the demo and the agent cleanly, with exit code 0.
#[cfg(unix)]
#[test]
fn a_signal_stops_the_demo_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    for signal in ["-INT", "-TERM"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .args(["demo", "--pods", "2", "--interval", "200ms"])
            .env_remove("KUBELET_PUSH_REMOTE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The printer writes a line every interval, "nothing arrived" until the first poll's
        // request has (on a loaded machine, not always by the first line): the signal goes
        // once a line shows a request, however long that takes.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let line = lines.next().expect("a tally line").unwrap();
            if line.contains("req") {
                break;
            }
            assert!(line.starts_with("nothing arrived"), "{line}");
            assert!(
                Instant::now() < deadline,
                "no request arrived within {PATIENCE:?}"
            );
        }
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not stop after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "{signal}");
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(
            rest.last().is_some_and(|l| l.starts_with("demo finished")),
            "{signal}: {rest:?}"
        );
    }
}

/// The README's `--config-file` example is valid as printed: `check-config` takes it and shows
/// both destinations with their own settings, and a mistake in it names file, line and key.
#[test]
fn the_readme_config_file_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```yaml\nremote-write:").expect("the example") + "```yaml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kp.yaml");
    std::fs::write(&path, example).unwrap();
    let out = kubelet_push(&["check-config", "--config-file", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}{text}", stderr(&out));
    for line in [
        "remote 1 url: http://prometheus-local:9090/api/v1/write\n",
        "remote 2 url: https://mimir.example.com/api/v1/push\n",
        "remote 2 version: 2 (1 if the receiver does not take 2)\n",
        "remote 2 timeout: 10s\n",
        "remote 2 header: [x-scope-orgid=edge]\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }

    std::fs::write(
        &path,
        example.replace("timeout: 10s", "timeout: 10 parsecs"),
    )
    .unwrap();
    let out = kubelet_push(&["check-config", "--config-file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let line = example.lines().position(|l| l.contains("timeout")).unwrap() + 1;
    let wanted = format!("{}:{line}:14: remote-write[1].timeout:", path.display());
    assert!(
        stderr(&out).contains(&wanted),
        "{wanted} in {}",
        stderr(&out)
    );
}

/// An interval below the floor would only hammer the kubelet (it refreshes its stats every
/// 10-15 s): refused at start, naming the flag and the floor, from the flag and from the
/// environment alike. The demo has its own, lower floor.
#[test]
fn an_interval_below_the_floor_exits_64_naming_it() {
    for args in [
        &["--interval", "1ns", "--dry-run"][..],
        &["--interval", "999ms", "--dry-run"],
        &["demo", "--interval", "99ms", "--duration", "1s"],
    ] {
        let out = kubelet_push(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains("--interval"), "{args:?}: {err}");
        let floor = if args[0] == "demo" { "100ms" } else { "1s" };
        assert!(
            err.contains(&format!("at least {floor}")),
            "{args:?}: {err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .args(["check-config", "--dry-run"])
        .env("KUBELET_PUSH_INTERVAL", "10ms")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("at least 1s"), "{}", stderr(&out));
    // The floor itself is accepted.
    let out = kubelet_push(&["check-config", "--dry-run", "--interval", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("interval: 1s\n"));
}

/// `KUBELET_PUSH_ONCE=1` and the other usual spellings work for every boolean flag's
/// environment twin; anything else exits 64 naming the variable.
#[test]
fn boolean_environment_twins_take_the_usual_spellings() {
    let check = |vars: &[(&str, &str)]| -> (Option<i32>, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .args(["check-config", "--remote-url", "http://127.0.0.1:1/w"])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    };
    for yes in ["1", "true", "TRUE", "yes", "Yes", "on", "ON"] {
        let (code, text, err) = check(&[
            ("KUBELET_PUSH_ONCE", yes),
            ("KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY", yes),
        ]);
        assert_eq!(code, Some(0), "{yes}: {err}");
        assert!(text.contains("mode: once\n"), "{yes}: {text}");
        assert!(
            text.contains("kubelet-insecure-skip-verify: true\n"),
            "{yes}: {text}"
        );
    }
    for no in ["0", "false", "False", "no", "NO", "off", "Off"] {
        let (code, text, err) =
            check(&[("KUBELET_PUSH_ONCE", no), ("KUBELET_PUSH_KUBELET_PODS", no)]);
        assert_eq!(code, Some(0), "{no}: {err}");
        assert!(text.contains("mode: run\n"), "{no}: {text}");
        assert!(text.contains("kubelet-pods: false\n"), "{no}: {text}");
    }
    // A dry run switched on from the environment prints samples.
    let fixture = format!("file://{}", fixture("seed-windows-node.json").display());
    let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .args(["--kubelet-url", &fixture])
        .env("KUBELET_PUSH_DRY_RUN", "1")
        .env_remove("KUBELET_PUSH_REMOTE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nnode_cpu_usage_seconds_total{"));
    for var in [
        "KUBELET_PUSH_ONCE",
        "KUBELET_PUSH_DRY_RUN",
        "KUBELET_PUSH_KUBELET_PODS",
        "KUBELET_PUSH_KUBELET_INSECURE_SKIP_VERIFY",
        "KUBELET_PUSH_REMOTE_INSECURE_SKIP_VERIFY",
    ] {
        for bad in ["maybe", "2"] {
            let (code, _, err) = check(&[(var, bad)]);
            assert_eq!(code, Some(64), "{var}={bad:?}: {err}");
            assert!(err.contains(var), "{var}={bad:?} must be named: {err}");
        }
    }
}

/// `demo --help` offers only what applies to the demo; the agent's `--help` stays complete
/// (`help_shows_every_environment_twin`).
#[test]
fn demo_help_lists_only_flags_that_apply() {
    let out = kubelet_push(&["demo", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for absent in [
        "--kubelet-url",
        "--kubelet-token-file",
        "--kubelet-ca-file",
        "--kubelet-insecure-skip-verify",
        "--kubelet-timeout",
        "--kubelet-proxy-url",
    ] {
        assert!(!help.contains(absent), "{absent} in demo --help:\n{help}");
    }
    for present in [
        "--pods ",
        "--duration ",
        "--remote-url ",
        "--remote-write-version ",
        "--buffer-dir ",
        "--listen-address ",
        "--log-level ",
    ] {
        assert!(help.contains(present), "{present} missing:\n{help}");
    }
    let interval = help
        .split("--interval <DURATION>")
        .nth(1)
        .and_then(|rest| rest.split("\n      --").next())
        .expect("--interval in demo --help");
    assert!(interval.contains("[default: 2s]"), "{interval}");
    assert!(interval.contains("at least 100ms"), "{interval}");
    assert_eq!(help.matches("--interval <DURATION>").count(), 1, "{help}");
}

/// A kubelet flag cannot be honoured by the demo (it polls its own simulated kubelet): given on
/// the command line, before or after `demo`, it exits 64 naming it. From the environment (the
/// demo run inside an agent's pod) it is ignored.
#[tokio::test]
async fn demo_refuses_kubelet_flags_and_ignores_their_environment() {
    for args in [
        &["demo", "--kubelet-url", "http://127.0.0.1:1"][..],
        &["--kubelet-url", "http://127.0.0.1:1", "demo"],
        &["demo", "--kubelet-token-file", "/nonexistent"],
        &["demo", "--kubelet-insecure-skip-verify"],
        &["demo", "--kubelet-timeout", "5s"],
        &["demo", "--kubelet-proxy-url", "http://127.0.0.1:9"],
    ] {
        let out = kubelet_push(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        let flag = args.iter().find(|a| a.starts_with("--")).unwrap();
        assert!(
            err.contains(&format!("{flag}: does not apply to demo")),
            "{args:?}: {err}"
        );
    }
    let rx = Receiver::start().await.unwrap();
    let demo = Demo::start(
        &[
            "demo",
            "--pods",
            "2",
            "--interval",
            "200ms",
            "--remote-url",
            &rx.url(),
        ],
        &[
            ("KUBELET_PUSH_KUBELET_URL", "http://127.0.0.1:1"),
            // Ignored like the others (a value a loaded machine cannot run into either).
            ("KUBELET_PUSH_KUBELET_TIMEOUT", "30s"),
            ("KUBELET_PUSH_KUBELET_PROXY_URL", "http://127.0.0.1:9"),
        ],
        "20s",
    );
    demo.wait_for("the first push", |_| !rx.requests().is_empty())
        .await;
    let (code, _, err) = demo.finish().await;
    assert_eq!(code, Some(0), "{err}");
    let first = rx.requests()[0].write_request.clone().unwrap().timeseries;
    let up = named(&first, "up");
    assert_eq!(up.len(), 1);
    assert_eq!(
        up[0].samples[0].value, 1.0,
        "the simulated kubelet answered"
    );
}

/// `demo --interval 10s` is honoured even though it is the agent's default (it used to be
/// taken for "not given" and replaced by the demo's 2 s): a run shorter than 10 s polls once,
/// not every 2 s.
///
/// The run is 9 s of the demo's own clock, which starts before its start-up: a correct demo
/// cannot poll twice in it (its second tick is 10 s after its first, which comes after that
/// start), whatever the load; it polls once unless start-up and the first poll take 9 s
/// (they take well under a second), and a demo polling every 2 s polls at least twice unless
/// they take 7 s. The same on Windows: no early stop needed.
#[tokio::test]
async fn demo_honours_an_interval_of_ten_seconds() {
    let rx = Receiver::start().await.unwrap();
    let out = agent_output(
        &[
            "demo",
            "--pods",
            "2",
            "--duration",
            "9s",
            "--interval",
            "10s",
            "--remote-url",
            &rx.url(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("interval=10s"), "{}", stderr(&out));
    let polls = up_times(&rx);
    assert_eq!(polls.len(), 1, "one poll in 9 s at 10 s: {polls:?}");

    // Without --interval the demo keeps its own 2 s default. (Logged at start-up, before
    // any poll: the run's length does not matter.)
    let rx = Receiver::start().await.unwrap();
    let out = agent_output(
        &[
            "demo",
            "--pods",
            "2",
            "--duration",
            "3s",
            "--remote-url",
            &rx.url(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("interval=2s"), "{}", stderr(&out));
}

/// A buffer that fills while the receiver is down says so once, with the destination, and once
/// more when the receiver has drained it; the drops are counted as before.
///
/// Driven by what happened, not by a clock: the receiver stays down until the buffer is full
/// and two more polls have evicted in the same episode (so one line for three evictions is
/// what is checked), then comes back, and the demo is stopped once the episode has ended.
/// With requests of at most 100 samples (a few KiB against the 64 KiB buffer), evicting
/// leaves the buffer nearly full, so the episode cannot end (that needs it half empty) while
/// the receiver is down, however a loaded machine spaces the polls; and 30 pods give a steady
/// flow (about 12 KiB a second) far below what a healthy receiver takes, so no second episode
/// follows the first unless the sender stalls for seconds.
#[tokio::test]
async fn a_full_buffer_is_logged_once_per_episode_with_its_url() {
    use kubelet_push::testkit::receiver::Response;
    let rx = Receiver::start().await.unwrap();
    // Down until the test lets it come back.
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    let url = rx.url();
    let (demo, listen) = Demo::listening(
        &[
            "demo",
            "--pods",
            "30",
            "--interval",
            "200ms",
            "--buffer-max-size",
            "64KiB",
            "--max-samples-per-send",
            "100",
            "--remote-url",
            &url,
            "--min-backoff",
            "100ms",
            "--max-backoff",
            "100ms",
            // The drain at the end is never what cuts samples on a loaded machine.
            "--shutdown-timeout",
            "30s",
        ],
        "45s",
    )
    .await;
    kubelet_push::http::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let evicted = || {
        let (client, url) = (client.clone(), format!("http://{listen}/metrics"));
        async move {
            let text = client.get(url).send().await.ok()?.text().await.ok()?;
            metric_in(
                &text,
                "kubelet_push_samples_dropped_total{reason=\"buffer_full\"}",
            )
        }
    };
    demo.wait_for("the buffer fills", |d| d.log().contains("buffer full"))
        .await;
    // Each rise of the count is a later poll that evicted (a poll's evictions happen in one
    // go, which the endpoint, on the same thread, never splits). `None`: no answer, no value.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = None;
    let mut rises = 0;
    while rises < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rises} evictions seen: {}",
            demo.log()
        );
        if let Some(now) = evicted().await {
            if seen.is_some_and(|before| now > before) {
                rises += 1;
            }
            if seen.is_none_or(|before| now > before) {
                seen = Some(now);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    rx.clear_responses();
    demo.wait_for("the receiver drains the buffer", |d| {
        d.log().contains("buffer no longer full")
    })
    .await;
    let (code, text, err) = demo.finish().await;
    assert_eq!(code, Some(0), "{err}");
    let full: Vec<&str> = err.lines().filter(|l| l.contains("buffer full")).collect();
    assert_eq!(full.len(), 1, "{err}");
    assert!(
        full[0].contains(&url) && full[0].contains("WARN"),
        "{}",
        full[0]
    );
    let recovered: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("buffer no longer full"))
        .collect();
    assert_eq!(recovered.len(), 1, "{err}");
    assert!(recovered[0].contains(&url), "{}", recovered[0]);
    let dropped: u64 = recovered[0]
        .split("dropped_samples=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("dropped_samples in the recovery line");
    let finished = text.lines().last().unwrap_or_default();
    assert!(
        dropped > 0 && finished.contains(&format!(", {dropped} samples dropped")),
        "the recovery line counts what the run dropped: {dropped} vs {finished}"
    );
    // The receiver came back: refused while down, then every request accepted.
    let requests = rx.requests();
    let refused = requests.iter().take_while(|r| r.status == 503).count();
    assert!(
        refused > 0 && requests.len() > refused && requests[refused..].iter().all(|r| r.accepted()),
        "{refused} refused of {}",
        requests.len()
    );
}

/// A dry run does not claim to push anything, even when the kubelet fails.
#[test]
fn dry_run_logs_do_not_say_pushing() {
    let out = kubelet_push(&[
        "--dry-run",
        "--kubelet-url",
        "file:///nonexistent/summary.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("kubelet poll failed"), "{err}");
    assert!(!err.contains("pushing"), "{err}");
}

/// Go's `:PORT` listens on every IPv4 interface; a URL without a path works, with a warning on
/// stderr; a path given as the kubelet URL says how to write it.
#[test]
fn listen_port_alone_path_warning_and_file_url_hint() {
    let out = kubelet_push(&["check-config", "--dry-run", "--listen-address", ":9842"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen-address: 0.0.0.0:9842\n"));
    let out = kubelet_push(&["check-config", "--remote-url", "http://mimir:8080"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out)
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("http://mimir:8080/ has no path"),
        "{}",
        stderr(&out)
    );
    let out = kubelet_push(&[
        "check-config",
        "--dry-run",
        "--kubelet-url",
        "/abs/path.json",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("write file:///abs/path.json"),
        "{}",
        stderr(&out)
    );
}
