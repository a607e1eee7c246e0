//! The agent's own metrics pushed (`--self-metrics`, on by default), `process_*`, the
//! per-destination bytes and request durations, and the `/` page: against the agent's real
//! `/metrics` over HTTP and the testkit receiver decoding what went over the wire.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::wire;
use kubelet_push::remote_write::Protocol;
use kubelet_push::scrape::{Scraping, Target, TargetSettings, SELF_JOB};
use kubelet_push::telemetry::{DropReason, Health, Metrics};
use kubelet_push::testkit::receiver::Receiver;

use crate::support::{self, AgentProcess, PATIENCE};

type Series = BTreeMap<String, String>;

/// The series of an exposition text, as `name{labels} value` lines: (name and labels) → value.
/// Written here, not with the agent's parser, so the comparison does not trust what it tests.
fn exposition_samples(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let mut labels = Series::new();
        let name = match series.split_once('{') {
            None => series,
            Some((name, rest)) => {
                let mut rest = rest.strip_suffix('}').expect("labels close");
                while !rest.is_empty() {
                    let (label, after) = rest.split_once("=\"").expect("label=");
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next().expect("closing quote") {
                            (_, '\\') => {
                                let (_, c) = chars.next().expect("escaped");
                                value.push(if c == 'n' { '\n' } else { c });
                            }
                            (i, '"') => break i,
                            (_, c) => value.push(c),
                        }
                    };
                    labels.insert(label.to_owned(), value);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                name
            }
        };
        labels.insert("__name__".to_owned(), name.to_owned());
        out.insert(labels, value.parse().expect("a number"));
    }
    out
}

/// Every series of a 2.0 body with its one value.
fn pushed_samples(request: &v2::Request) -> BTreeMap<Series, f64> {
    request
        .timeseries
        .iter()
        .map(|ts| {
            let labels = wire::labels_of(request, ts)
                .expect("refs resolve")
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(ts.samples.len(), 1, "one sample per series per scrape");
            (labels, ts.samples[0].value)
        })
        .collect()
}

/// What a Prometheus scrape of `/metrics` as job `kubelet-push` adds: the target's labels,
/// an exposition label that collides with one of them kept as `exported_<name>`.
fn as_scraped(mut series: Series, target: &[(&str, &str)]) -> Series {
    for (name, value) in target {
        if let Some(own) = series.insert((*name).to_owned(), (*value).to_owned()) {
            series.insert(format!("exported_{name}"), own);
        }
    }
    series
}

/// The series pushed as the agent's own metrics are those a scrape of `/metrics` over HTTP
/// gives at the same moment: every name, every label (the scrape's `job`, `instance`, `node`
/// and `--label`s added), every value. Only `process_*` move between two reads (CPU time,
/// memory, the HTTP connection's descriptor): their names and labels must agree, their
/// values be plausible. `--metric-deny` does not reach them.
#[tokio::test]
async fn the_pushed_self_metrics_are_what_metrics_serves() {
    let config = support::config(&[
        "--kubelet-url",
        "http://127.0.0.1:1",
        "--remote-url",
        "http://127.0.0.1:1/api/v1/write",
        "--node-name",
        "node-a",
        "--label",
        "cluster=edge-7",
        "--metric-deny",
        "kubelet_push_.*|process_.*",
    ]);
    let metrics = Arc::new(Metrics::new());
    // Some of every kind: counters with labels, a histogram, gauges, a target's counters.
    metrics.poll_finished(true, Duration::from_millis(20));
    metrics.poll_finished(false, Duration::from_millis(700));
    metrics.scrape_target("node-exporter", "127.0.0.1:9100");
    metrics.scrape_finished("node-exporter", "127.0.0.1:9100", "timeout");
    let dest = metrics.destination("http://receiver:9090/api/v1/write");
    dest.attempted(1234, Duration::from_millis(40));
    dest.request(Some(204));
    dest.sent(789);
    dest.dropped(DropReason::Rejected, 3);
    dest.remote_write_protocol(Protocol::V2);

    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let health = Health {
        metrics: metrics.clone(),
        destinations: Default::default(),
        interval: Duration::from_secs(10),
        max_backoff: Duration::from_secs(3),
        summary: true,
    };
    let addr = kubelet_push::telemetry::serve(
        "127.0.0.1:0".parse().unwrap(),
        health,
        None,
        stop.clone(),
        &tasks,
    )
    .await
    .unwrap();

    let poller = kubelet_push::pipeline::Poller::new(&config.poll, metrics.clone()).unwrap();
    let scraping = Scraping {
        once: false,
        max_samples_per_send: 100_000,
        external_labels: config.poll.external_labels.clone(),
        metric_filter: config.poll.metric_filter.clone(),
        node: poller.node_name(),
        node_wait: Duration::ZERO,
        metrics: metrics.clone(),
    };
    let mut target = Target::new(
        TargetSettings::agent(Duration::from_secs(10)),
        poller.kubelet_client(),
        &scraping,
    )
    .unwrap();

    let (_, scraped) = get_text(&addr.to_string(), "/metrics").await.unwrap();
    let output = target.scrape(&scraping).await;
    assert!(output.error.is_none(), "{:?}", output.error);
    let requests = target.encode_as(Protocol::V2, &output, 100_000).unwrap();
    assert_eq!(requests.len(), 1);
    let request = wire::decode_v2(&requests[0].body).unwrap();
    stop.cancel();

    let target_labels = [
        ("job", SELF_JOB),
        ("instance", "node-a"),
        ("node", "node-a"),
        ("cluster", "edge-7"),
    ];
    let want: BTreeMap<Series, f64> = exposition_samples(&scraped)
        .into_iter()
        .map(|(s, v)| (as_scraped(s, &target_labels), v))
        .collect();
    let mut got = pushed_samples(&request);
    // What any scrape adds about itself.
    got.retain(|s, _| {
        let name = &s["__name__"];
        name != "up" && !name.starts_with("scrape_")
    });
    let process = |s: &Series| s["__name__"].starts_with("process_");
    let names = |m: &BTreeMap<Series, f64>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "the same series");
    for (series, value) in &want {
        let pushed = got[series];
        match series["__name__"].as_str() {
            "process_cpu_seconds_total" => assert!(pushed >= *value && *value > 0.0),
            "process_start_time_seconds" => assert_eq!(pushed, *value),
            _ if process(series) => assert!(pushed > 0.0 && *value > 0.0, "{series:?}"),
            _ => assert_eq!(pushed, *value, "{series:?}"),
        }
    }
    for name in [
        "kubelet_push_polls_total",
        "kubelet_push_sent_bytes_total",
        "kubelet_push_remote_request_duration_seconds_count",
        "kubelet_push_samples_dropped_total",
        "kubelet_push_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ]
    .into_iter()
    // Under Wine (the Windows test run) the handle count is a stub and left out.
    .chain(cfg!(unix).then_some("process_open_fds"))
    {
        assert!(
            got.keys().any(|s| s["__name__"] == name),
            "{name} not pushed"
        );
    }
    // A target's own `job` and `instance` labels, as a scrape keeps them.
    assert!(got
        .keys()
        .any(|s| s["__name__"] == "kubelet_push_scrapes_total"
            && s.get("exported_job").map(String::as_str) == Some("node-exporter")
            && s["job"] == SELF_JOB));
    let bytes = got
        .iter()
        .find(|(s, _)| s["__name__"] == "kubelet_push_sent_bytes_total")
        .map(|(_, v)| *v);
    assert_eq!(bytes, Some(1234.0));

    // Remote Write 2.0 metadata, as for any scraped target.
    let polls = request
        .timeseries
        .iter()
        .find(|ts| {
            wire::labels_of(&request, ts)
                .unwrap()
                .contains(&("__name__", "kubelet_push_polls_total"))
        })
        .expect("polls pushed");
    let metadata = polls.metadata.as_ref().expect("metadata");
    assert_eq!(metadata.r#type, v2::metadata::MetricType::Counter as i32);
    assert_eq!(
        request.symbols[metadata.help_ref as usize],
        "Kubelet polls by result (ok, error)."
    );
}

async fn get_text(listen: &str, path: &str) -> Option<(u16, String)> {
    kubelet_push::http::install_crypto_provider();
    let response = reqwest::get(format!("http://{listen}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Fetches `/metrics` until `done` holds for it (up to [`PATIENCE`]); the last text.
async fn metrics_until(listen: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    support::eventually(what, PATIENCE, async || {
        match get_text(listen, "/metrics").await {
            Some((_, text)) if done(&text) => Ok(text),
            Some((_, text)) => Err(text),
            None => Err("no /metrics".to_owned()),
        }
    })
    .await
}

/// The accepted series of `rx` named `name` with `job`.
fn named(
    rx: &Receiver,
    job: &str,
    name: &str,
) -> Vec<kubelet_push::remote_write::proto::v1::TimeSeries> {
    rx.accepted_series()
        .into_iter()
        .filter(|ts| support::label(ts, "job") == Some(job) && support::name(ts) == name)
        .collect()
}

/// By default the agent's own metrics reach every destination, labelled as the shipped
/// dashboard and alerts select them; each destination's `kubelet_push_sent_bytes_total` is
/// the sum of the bodies it received, and its request histogram counts each request. `/`
/// lists the endpoints.
#[tokio::test]
async fn self_metrics_reach_every_destination_and_bytes_add_up() {
    let k = support::simulated_kubelet(5, 31).await;
    let a = Receiver::start().await.unwrap();
    let b = Receiver::start().await.unwrap();
    let (ku, au, bu) = (k.url(), a.url(), b.url());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    // One tick in the test's time: the first poll and the first self-metrics scrape.
    cmd.args([
        "--kubelet-url",
        &ku,
        "--remote-url",
        &au,
        "--remote-url",
        &bu,
        "--node-name",
        "node-a",
        "--interval",
        "1h",
    ]);
    let (agent, listen) = AgentProcess::listening(&mut cmd).await;
    for rx in [&a, &b] {
        support::wait_until("the agent's own metrics pushed", || {
            !named(rx, SELF_JOB, "kubelet_push_build_info").is_empty()
                && !named(rx, "kubelet", "up").is_empty()
        })
        .await;
        let one = |name: &str| {
            let series = named(rx, SELF_JOB, name);
            assert_eq!(series.len(), 1, "{name}: {series:?}");
            series[0].clone()
        };
        let build = one("kubelet_push_build_info");
        assert_eq!(support::label(&build, "instance"), Some("node-a"));
        assert_eq!(support::label(&build, "node"), Some("node-a"));
        assert_eq!(one("up").samples[0].value, 1.0);
        assert!(one("process_resident_memory_bytes").samples[0].value > 1e6);
        // Under Wine (the Windows test run) the handle count is a stub and left out.
        if cfg!(unix) {
            assert!(one("process_open_fds").samples[0].value > 0.0);
        }
        let started = one("process_start_time_seconds").samples[0].value;
        let now = support::now_ms() as f64 / 1000.0;
        assert!(started <= now && started > now - 3600.0, "{started}");
    }
    for rx in [&a, &b] {
        let url = rx.url();
        let sent = |t: &str| {
            let bytes = support::metric_in(
                t,
                &format!("kubelet_push_sent_bytes_total{{url=\"{url}\"}}"),
            );
            let count = support::metric_in(
                t,
                &format!("kubelet_push_remote_request_duration_seconds_count{{url=\"{url}\"}}"),
            );
            (bytes, count)
        };
        let want = || {
            let got = rx.requests();
            let bytes: usize = got.iter().map(|r| r.compressed_bytes).sum();
            (Some(bytes as f64), Some(got.len() as f64))
        };
        // Counted once the answer is in: wait for it, then the two must agree.
        let text = metrics_until(&listen, "sent bytes and requests counted", |t| {
            sent(t) == want()
        })
        .await;
        assert!(
            rx.requests().len() >= 2,
            "a poll and the agent's own: {text}"
        );
    }
    let (status, index) = get_text(&listen, "/").await.expect("/ answers");
    assert_eq!(status, 200);
    for path in ["/metrics", "/healthz", "/readyz", "/-/reload"] {
        assert!(index.contains(path), "{path} missing from {index}");
    }
    drop(agent);
}

/// `--self-metrics=false`: polls go out, the agent's own metrics do not.
#[tokio::test]
async fn self_metrics_false_sends_none() {
    let k = support::simulated_kubelet(3, 32).await;
    let rx = Receiver::start().await.unwrap();
    let (ku, ru) = (k.url(), rx.url());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(support::SHORT_INTERVALS.0, support::SHORT_INTERVALS.1)
        .args([
            "--kubelet-url",
            &ku,
            "--remote-url",
            &ru,
            "--interval",
            "200ms",
            "--self-metrics=false",
        ]);
    let (agent, listen) = AgentProcess::listening(&mut cmd).await;
    // Three polls delivered: a self-metrics scrape, which starts with the first, would have
    // gone out by then.
    metrics_until(&listen, "three polls delivered", |t| {
        support::metric_in(t, "kubelet_push_polls_total{result=\"ok\"}").unwrap_or(0.0) >= 3.0
            && support::metric_in(t, "kubelet_push_samples_pending").unwrap_or(1.0) == 0.0
    })
    .await;
    support::wait_until("three polls received", || {
        named(&rx, "kubelet", "up").len() >= 3
    })
    .await;
    let own: Vec<_> = rx
        .accepted_series()
        .into_iter()
        .filter(|ts| {
            let name = support::name(ts);
            support::label(ts, "job") == Some(SELF_JOB)
                || name.starts_with("kubelet_push_")
                || name.starts_with("process_")
        })
        .collect();
    assert!(own.is_empty(), "{own:?}");
    drop(agent);
}

/// `--self-metrics` is on by default; the flag and its environment twin turn it off, as
/// `check-config` shows.
#[test]
fn self_metrics_is_on_unless_turned_off() {
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .arg("check-config")
            .args(["--remote-url", "http://127.0.0.1:9/api/v1/write"])
            .args(args)
            .env_remove("KUBELET_PUSH_SELF_METRICS")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?} {env:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(check(&[], &[]).contains("self-metrics: true\n"));
    assert!(check(&["--self-metrics"], &[]).contains("self-metrics: true\n"));
    assert!(check(&["--self-metrics=false"], &[]).contains("self-metrics: false\n"));
    assert!(check(&[], &[("KUBELET_PUSH_SELF_METRICS", "no")]).contains("self-metrics: false\n"));
    assert!(check(
        &["--self-metrics=true"],
        &[("KUBELET_PUSH_SELF_METRICS", "no")]
    )
    .contains("self-metrics: true\n"));
}
