//! Scraping, end to end in process: the agent against a simulated kubelet, exporters served on
//! 127.0.0.1 that speak real HTTP, and the decoding receiver. What each test asserts was
//! decoded from what the receiver got.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use kubelet_push::config::Mode;
use kubelet_push::exposition::Limits;
use kubelet_push::remote_write::access::Access;
use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::scrape::{Endpoint, TargetSettings};
use kubelet_push::series::is_stale_marker;
use kubelet_push::telemetry::Metrics;
use kubelet_push::testkit::receiver::Receiver;
use kubelet_push::testkit::server::LocalServer;
use tokio_util::sync::CancellationToken;

use crate::support::{config, label, name, simulated_kubelet, wait_until, Logs};

/// How the fake exporter answers, switchable while it runs.
#[derive(Debug, Clone, PartialEq)]
enum Mode_ {
    /// `up_counter_total` is the number of the scrape (1, 2, ...), `still 42` never changes.
    Ok,
    /// Only `up_counter_total`: `still` vanished.
    WithoutStill,
    Status(u16),
    Malformed,
    /// Never answers.
    Hang,
}

struct Exporter {
    server: LocalServer,
    mode: Arc<Mutex<Mode_>>,
    scrapes: Arc<AtomicUsize>,
}

impl Exporter {
    async fn start() -> Exporter {
        let mode = Arc::new(Mutex::new(Mode_::Ok));
        let scrapes = Arc::new(AtomicUsize::new(0));
        let (m, n) = (mode.clone(), scrapes.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (m, n) = (m.clone(), n.clone());
                async move {
                    let k = n.fetch_add(1, Ordering::SeqCst) + 1;
                    let mode = m.lock().unwrap().clone();
                    let text = "text/plain; version=0.0.4; charset=utf-8";
                    match mode {
                        Mode_::Ok => (
                            [(header::CONTENT_TYPE, text)],
                            format!("# TYPE up_counter_total counter\nup_counter_total {k}\nstill{{job=\"inner\"}} 42\n"),
                        )
                            .into_response(),
                        Mode_::WithoutStill => (
                            [(header::CONTENT_TYPE, text)],
                            format!("up_counter_total {k}\n"),
                        )
                            .into_response(),
                        Mode_::Status(code) => (
                            StatusCode::from_u16(code).unwrap(),
                            "exporter broke\n",
                        )
                            .into_response(),
                        Mode_::Malformed => (
                            [(header::CONTENT_TYPE, text)],
                            "up_counter_total 1\nbroken{ 2\n".to_owned(),
                        )
                            .into_response(),
                        Mode_::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            ().into_response()
                        }
                    }
                }
            }),
        );
        let server = LocalServer::start(app, "exporter").await.unwrap();
        Exporter {
            server,
            mode,
            scrapes,
        }
    }

    fn set(&self, mode: Mode_) {
        *self.mode.lock().unwrap() = mode;
    }

    fn instance(&self) -> String {
        self.server.addr().to_string()
    }

    fn target(&self, job: &str, interval: Duration, timeout: Duration) -> TargetSettings {
        TargetSettings {
            job: job.into(),
            endpoint: Endpoint::Exporter {
                url: format!("http://{}/metrics", self.server.addr())
                    .parse()
                    .unwrap(),
                access: Access::none(),
            },
            interval,
            timeout,
            honor_labels: false,
            honor_timestamps: true,
            limits: Limits::default(),
            labels: Vec::new(),
        }
    }
}

fn kubelet_target(path: &str, interval: Duration) -> TargetSettings {
    TargetSettings {
        job: "kubelet".into(),
        endpoint: Endpoint::Kubelet { path: path.into() },
        interval,
        timeout: Duration::from_secs(5),
        honor_labels: false,
        honor_timestamps: true,
        limits: Limits::default(),
        labels: vec![("metrics_path".into(), path.into())],
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<kubelet_push::Outcome, kubelet_push::RunError>>,
    metrics: Arc<Metrics>,
}

fn start(mut cfg: kubelet_push::Config, targets: Vec<TargetSettings>) -> Running {
    cfg.scrape_targets = targets;
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let task = {
        let (stop, metrics) = (stop.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut sink = Vec::new();
            kubelet_push::run(cfg, stop, metrics, &mut sink).await
        })
    };
    Running {
        stop,
        task,
        metrics,
    }
}

impl Running {
    async fn stop(self) -> kubelet_push::Outcome {
        self.stop.cancel();
        tokio::time::timeout(crate::support::PATIENCE, self.task)
            .await
            .expect("agent stops")
            .expect("task")
            .expect("run")
    }
}

/// The samples of the series named `metric` whose job is `job`, in arrival order.
fn samples(series: &[TimeSeries], metric: &str, job: &str) -> Vec<(f64, i64)> {
    series
        .iter()
        .filter(|ts| name(ts) == metric && label(ts, "job") == Some(job))
        .flat_map(|ts| ts.samples.iter().map(|s| (s.value, s.timestamp)))
        .collect()
}

const NODE: &str = "demo-win-node";

/// The agent's configuration for the simulated `kubelet`, pushing to `receiver`, polling every
/// `interval` (sub-second: tests only).
fn pushing(
    kubelet: &kubelet_push::testkit::simulator::KubeletServer,
    receiver: &Receiver,
    interval: &str,
) -> kubelet_push::Config {
    config(&[
        "--kubelet-url",
        &kubelet.url(),
        "--remote-url",
        &receiver.url(),
        "--interval",
        interval,
    ])
}

#[tokio::test]
async fn targets_and_kubelet_endpoints_are_pushed_with_their_labels_beside_the_summary() {
    let kubelet = simulated_kubelet(3, 7).await;
    let exporter = Exporter::start().await;
    let receiver = Receiver::start().await.unwrap();
    let cfg = config(&[
        "--kubelet-url",
        &kubelet.url(),
        "--remote-url",
        &receiver.url(),
        "--interval",
        "100ms",
        "--label",
        "cluster=c1",
    ]);
    let every = Duration::from_millis(100);
    let agent = start(
        cfg,
        vec![
            exporter.target("node-exporter", every, Duration::from_secs(5)),
            kubelet_target("/metrics/probes", every),
        ],
    );
    wait_until("three scrapes of each stored", || {
        let got = receiver.accepted_series();
        samples(&got, "up_counter_total", "node-exporter").len() >= 3
            && samples(&got, "prober_probe_total", "kubelet").len() >= 3
    })
    .await;
    agent.stop().await;
    let got = receiver.accepted_series();
    let node = got
        .iter()
        .find(|ts| name(ts) == "up_counter_total")
        .expect("the exporter's series");
    let instance = exporter.instance();
    let labels: Vec<(&str, &str)> = node
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", "up_counter_total"),
            ("cluster", "c1"),
            ("instance", instance.as_str()),
            ("job", "node-exporter"),
            ("node", NODE),
        ]
    );
    // The counter went up by one per scrape: no scrape lost or sent twice.
    let values: Vec<f64> = samples(&got, "up_counter_total", "node-exporter")
        .iter()
        .map(|s| s.0)
        .collect();
    for pair in values.windows(2) {
        assert_eq!(pair[1], pair[0] + 1.0, "{values:?}");
    }
    // The exposition's own `job` label is kept as exported_job.
    let still = got.iter().find(|ts| name(ts) == "still").unwrap();
    assert_eq!(label(still, "exported_job"), Some("inner"));
    assert_eq!(label(still, "job"), Some("node-exporter"));
    // The kubelet's endpoint is labelled as kube-prometheus labels it.
    let probe = got
        .iter()
        .find(|ts| name(ts) == "prober_probe_total")
        .unwrap();
    assert_eq!(label(probe, "metrics_path"), Some("/metrics/probes"));
    assert_eq!(label(probe, "instance"), Some(NODE));
    assert_eq!(label(probe, "node"), Some(NODE));
    assert_eq!(label(probe, "probe_type"), Some("Readiness"));
    // Each target has its up series, and the summary's still comes in.
    for (job, path) in [
        ("node-exporter", None),
        ("kubelet", Some("/metrics/probes")),
    ] {
        let up = got
            .iter()
            .filter(|ts| name(ts) == "up" && label(ts, "job") == Some(job))
            .find(|ts| label(ts, "metrics_path") == path)
            .unwrap_or_else(|| panic!("up of {job} {path:?}"));
        assert!(up.samples.iter().all(|s| s.value == 1.0));
    }
    assert!(got
        .iter()
        .any(|ts| name(ts) == "up" && label(ts, "metrics_path") == Some("/metrics")));
    assert!(got
        .iter()
        .any(|ts| name(ts) == "container_cpu_usage_seconds_total"));
}

/// A target that never answers holds up neither the kubelet's polls nor another target:
/// both go on while its first scrape is still waiting for its (long) timeout.
#[tokio::test]
async fn a_hanging_target_delays_neither_the_kubelet_nor_another_target() {
    let kubelet = simulated_kubelet(2, 3).await;
    let (slow, fast) = (Exporter::start().await, Exporter::start().await);
    slow.set(Mode_::Hang);
    let receiver = Receiver::start().await.unwrap();
    let cfg = pushing(&kubelet, &receiver, "50ms");
    let every = Duration::from_millis(50);
    let agent = start(
        cfg,
        vec![
            slow.target("slow", every, Duration::from_secs(3000)),
            fast.target("fast", every, Duration::from_secs(5)),
        ],
    );
    wait_until(
        "ten scrapes of the fast target and ten polls stored",
        || {
            let got = receiver.accepted_series();
            samples(&got, "up_counter_total", "fast").len() >= 10
                && got
                    .iter()
                    .filter(|ts| name(ts) == "up" && label(ts, "job") == Some("kubelet"))
                    .map(|ts| ts.samples.len())
                    .sum::<usize>()
                    >= 10
        },
    )
    .await;
    // The slow target's first scrape has not ended: nothing of it was counted or sent.
    assert_eq!(slow.scrapes.load(Ordering::SeqCst), 1);
    let instance = slow.instance();
    for result in Metrics::SCRAPE_RESULTS {
        assert_eq!(agent.metrics.scrapes("slow", &instance, result), 0);
    }
    assert!(samples(&receiver.accepted_series(), "up", "slow").is_empty());
    agent.stop().await;
}

/// Every way a scrape fails sets up to 0 and marks the target's series stale once; the log
/// says so once per episode (and again when the failure changes kind), and once when the
/// target recovers. The agent counts every scrape by result.
#[test]
fn a_failing_target_reports_up_0_marks_stale_once_and_logs_per_episode() {
    let (logs, _guard) = Logs::capture();
    crate::support::current_thread_runtime().block_on(async {
        let kubelet = simulated_kubelet(1, 5).await;
        let exporter = Exporter::start().await;
        let receiver = Receiver::start().await.unwrap();
        let cfg = pushing(&kubelet, &receiver, "50ms");
        // The timeout is what a hanging scrape costs, and what a good one must never reach:
        // at 300 ms a loaded machine (Wine, every core busy, one runtime thread for the agent,
        // the exporter and the receiver) timed a good scrape out, an episode the counts below
        // did not expect. 3 s keeps the hanging episodes short and the good scrapes clear of it.
        let agent = start(
            cfg,
            vec![exporter.target("exp", Duration::from_millis(50), Duration::from_secs(3))],
        );
        let instance = exporter.instance();
        let metrics = agent.metrics.clone();
        let count = |result| metrics.scrapes("exp", &instance, result);
        wait_until("two good scrapes", || count("success") >= 2).await;
        // `still` vanishes from a good scrape: one stale marker.
        exporter.set(Mode_::WithoutStill);
        let at = count("success");
        wait_until("two scrapes without still", || count("success") >= at + 2).await;
        for (mode, result) in [
            (Mode_::Status(500), "http_status"),
            (Mode_::Malformed, "malformed"),
            (Mode_::Hang, "timeout"),
        ] {
            exporter.set(Mode_::Ok);
            let at = count("success");
            wait_until("recovered", || count("success") >= at + 2).await;
            exporter.set(mode);
            let at = count(result);
            wait_until(result, || count(result) >= at + 2).await;
        }
        exporter.set(Mode_::Ok);
        let at = count("success");
        wait_until("recovered at last", || count("success") >= at + 2).await;
        let sent = agent.metrics.destinations()[0].samples_queued.get();
        wait_until("everything delivered", || {
            agent.metrics.destinations()[0].samples_sent.get() >= sent
        })
        .await;
        agent.stop().await;

        let got = receiver.accepted_series();
        let ups = samples(&got, "up", "exp");
        let downs = ups.iter().filter(|s| s.0 == 0.0).count() as u64;
        assert_eq!(
            downs,
            count("http_status") + count("malformed") + count("timeout"),
            "one up=0 per failed scrape"
        );
        // `still`: a stale marker when it vanished, and one per failure episode that
        // followed a scrape that had it; never two in a row.
        let still = samples(&got, "still", "exp");
        let markers = still.iter().filter(|s| is_stale_marker(s.0)).count();
        assert_eq!(markers, 4, "{still:?}");
        for pair in still.windows(2) {
            assert!(
                !(is_stale_marker(pair[0].0) && is_stale_marker(pair[1].0)),
                "{still:?}"
            );
        }
        for pair in still.windows(2) {
            assert!(pair[0].1 < pair[1].1, "in order: {still:?}");
        }
    });
    let text = logs.text();
    let warnings = text.matches("scrape failed;").count();
    assert_eq!(warnings, 3, "one per episode:\n{text}");
    assert_eq!(
        text.matches("target is answering again").count(),
        3,
        "{text}"
    );
    for needle in ["answered 500", "line 2", "scrape_timeout"] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
}

/// `--dry-run` prints each target's samples after the summary's, and fails when a target
/// fails; `--kubelet-summary=false` leaves the summary out.
#[tokio::test]
async fn dry_run_prints_each_target_beside_the_kubelet() {
    let kubelet = simulated_kubelet(1, 9).await;
    let exporter = Exporter::start().await;
    let mut cfg = config(&["--kubelet-url", &kubelet.url(), "--dry-run"]);
    assert_eq!(cfg.mode, Mode::DryRun);
    let every = Duration::from_secs(10);
    cfg.scrape_targets = vec![exporter.target("exp", every, Duration::from_secs(5))];
    let mut out = Vec::new();
    let outcome = kubelet_push::run(
        cfg.clone(),
        CancellationToken::new(),
        Arc::new(Metrics::new()),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(outcome, kubelet_push::Outcome::Ok);
    let text = String::from_utf8(out).unwrap();
    let instance = exporter.instance();
    let header = format!("# scrape http://{instance}/metrics\n");
    let (summary, scraped) = text.split_once(&header).expect(&text);
    assert!(summary.contains("container_cpu_usage_seconds_total{"));
    assert!(
        scraped.contains(&format!(
            "up_counter_total{{instance=\"{instance}\",job=\"exp\",node=\"{NODE}\"}} 1 "
        )),
        "{scraped}"
    );
    assert!(scraped.contains("\nup{"), "{scraped}");

    exporter.set(Mode_::Status(503));
    cfg.poll.kubelet_summary = false;
    let mut out = Vec::new();
    let outcome = kubelet_push::run(
        cfg,
        CancellationToken::new(),
        Arc::new(Metrics::new()),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(outcome, kubelet_push::Outcome::Failed);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(&header), "{text}");
    assert!(!text.contains("container_cpu"), "{text}");
    assert!(
        text.contains(&format!("up{{instance=\"{instance}\",job=\"exp\"")),
        "{text}"
    );
}

/// `--once` with the summary off: each target scraped once, pushed, and the run says
/// whether every scrape worked.
#[tokio::test]
async fn once_scrapes_every_target_once() {
    let kubelet = simulated_kubelet(1, 9).await;
    let (good, bad) = (Exporter::start().await, Exporter::start().await);
    bad.set(Mode_::Malformed);
    let receiver = Receiver::start().await.unwrap();
    let mut cfg = config(&[
        "--kubelet-url",
        &kubelet.url(),
        "--remote-url",
        &receiver.url(),
        "--once",
    ]);
    cfg.poll.kubelet_summary = false;
    let every = Duration::from_secs(10);
    cfg.scrape_targets = vec![
        good.target("good", every, Duration::from_secs(5)),
        bad.target("bad", every, Duration::from_secs(5)),
    ];
    let outcome = kubelet_push::run(
        cfg,
        CancellationToken::new(),
        Arc::new(Metrics::new()),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        kubelet_push::Outcome::Failed,
        "the bad target failed"
    );
    assert_eq!(
        (
            good.scrapes.load(Ordering::SeqCst),
            bad.scrapes.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(kubelet.requests(), 0, "no summary poll");
    let got = receiver.accepted_series();
    assert_eq!(
        samples(&got, "up_counter_total", "good"),
        samples(&got, "up_counter_total", "good")[..1]
    );
    assert_eq!(samples(&got, "up", "good").len(), 1);
    assert_eq!(samples(&got, "up", "bad")[0].0, 0.0);
    assert!(!got.iter().any(|ts| label(ts, "job") == Some("kubelet")));
}

/// With the kubelet's own `/metrics` scraped too, the summary's per-poll series move to
/// `metrics_path="/stats/summary"`, so the two `up` series never collide.
#[tokio::test]
async fn scraping_the_kubelets_metrics_moves_the_summarys_up_aside() {
    let kubelet = simulated_kubelet(1, 2).await;
    let receiver = Receiver::start().await.unwrap();
    let cfg = pushing(&kubelet, &receiver, "100ms");
    let agent = start(
        cfg,
        vec![kubelet_target("/metrics", Duration::from_millis(100))],
    );
    wait_until("both up series", || {
        let got = receiver.accepted_series();
        let paths: Vec<Option<&str>> = got
            .iter()
            .filter(|ts| name(ts) == "up")
            .map(|ts| label(ts, "metrics_path"))
            .collect();
        paths.contains(&Some("/metrics")) && paths.contains(&Some("/stats/summary"))
    })
    .await;
    agent.stop().await;
    let got = receiver.accepted_series();
    // The simulated kubelet has no /metrics: that scrape fails (404), the summary's works.
    let up = |path| {
        got.iter()
            .filter(|ts| name(ts) == "up" && label(ts, "metrics_path") == Some(path))
            .flat_map(|ts| ts.samples.iter().map(|s| s.value))
            .collect::<Vec<f64>>()
    };
    assert!(up("/metrics").iter().all(|v| *v == 0.0));
    assert!(up("/stats/summary").iter().all(|v| *v == 1.0));
}

/// With the kubelet's own `/metrics/resource` scraped, the summary leaves out its families of
/// that path (the endpoint's are the real ones), and keeps the rest.
#[tokio::test]
async fn scraping_a_kubelet_endpoint_leaves_its_families_to_it() {
    let kubelet = simulated_kubelet(2, 4).await;
    let receiver = Receiver::start().await.unwrap();
    let cfg = pushing(&kubelet, &receiver, "100ms");
    let agent = start(
        cfg,
        vec![kubelet_target(
            "/metrics/resource",
            Duration::from_millis(100),
        )],
    );
    wait_until("three polls stored", || {
        receiver
            .accepted_series()
            .iter()
            .filter(|ts| name(ts) == "up" && label(ts, "metrics_path") == Some("/metrics"))
            .map(|ts| ts.samples.len())
            .sum::<usize>()
            >= 3
    })
    .await;
    agent.stop().await;
    let got = receiver.accepted_series();
    let resource: Vec<&str> = got
        .iter()
        .filter(|ts| label(ts, "metrics_path") == Some("/metrics/resource"))
        .map(name)
        .collect();
    // Only the failed scrape's own series (the simulator has no /metrics/resource).
    assert!(
        resource
            .iter()
            .all(|n| *n == "up" || n.starts_with("scrape_")),
        "{resource:?}"
    );
    assert!(!got
        .iter()
        .any(|ts| name(ts) == "pod_cpu_usage_seconds_total"));
    assert!(got
        .iter()
        .any(|ts| name(ts) == "container_cpu_usage_seconds_total"
            && label(ts, "metrics_path") == Some("/metrics/cadvisor")));
}
