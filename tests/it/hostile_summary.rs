//! A kubelet that sends hostile summaries over HTTP (127.0.0.1): a clock that jumps a day
//! ahead for one poll, one section stamped in year 9999, values of the wrong type or out of
//! range, negative counters, a document that is not an object. What the poll puts on the wire
//! is decoded and checked, with the self-metric and the log lines (issue 12, problems 1 and 7).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use kubelet_push::pipeline::Poller;
use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::telemetry::Metrics;
use kubelet_push::testkit::server::LocalServer;
use kubelet_push::testkit::simulator::SimulatedKubelet;

use crate::support::*;

/// A kubelet whose `/stats/summary` answers whatever the test set last (200, JSON); 404 for
/// anything else, so `/pods` is simply absent.
struct ScriptedKubelet {
    body: Arc<Mutex<String>>,
    server: LocalServer,
}

impl ScriptedKubelet {
    async fn start() -> ScriptedKubelet {
        let body = Arc::new(Mutex::new(String::from("{}")));
        let served = body.clone();
        let app = Router::new().route(
            "/stats/summary",
            axum::routing::get(move || {
                let doc = served.lock().unwrap().clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc).into_response() }
            }),
        );
        let server = LocalServer::start(app, "scripted kubelet").await.unwrap();
        ScriptedKubelet { body, server }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    fn answer(&self, doc: String) {
        *self.body.lock().unwrap() = doc;
    }
}

/// The simulated Windows node's summary as its kubelet would write it at `at` (a function of
/// `at` alone: going back in time is allowed).
/// The simulated Windows node's summary as its kubelet writes it at `at`.
fn summary_at(at: SystemTime) -> serde_json::Value {
    let booted = at - Duration::from_secs(3600);
    let doc = SimulatedKubelet::new(6, 11, booted).summary_json(at);
    serde_json::from_str(&doc).unwrap()
}

/// `doc` as a kubelet whose clock reads `by` later would write it: every measurement `time`
/// moved (the values and the pods stay, as they do when only a clock jumps; start times are
/// recorded once and stay too).
fn shifted(doc: &serde_json::Value, by: Duration) -> String {
    fn walk(v: &mut serde_json::Value, by: Duration) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(t) if k == "time" => {
                            // A time that is not one (a test's garbage) stays as it is.
                            if let Ok(at) = humantime::parse_rfc3339(t) {
                                *t = humantime::format_rfc3339_seconds(at + by).to_string();
                            }
                        }
                        _ => walk(v, by),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, by)),
            _ => {}
        }
    }
    let mut doc = doc.clone();
    walk(&mut doc, by);
    doc.to_string()
}

fn poller_with(kubelet: &ScriptedKubelet, metrics: &Arc<Metrics>) -> Poller {
    let cfg = config(&[
        "--kubelet-url",
        &kubelet.url(),
        "--kubelet-pods=false",
        "--dry-run",
        // The in-process kubelet answers at once; no loaded machine makes that a failed poll.
        "--kubelet-timeout",
        "60s",
    ]);
    Poller::new(&cfg.poll, metrics.clone()).unwrap()
}

/// One poll's series as they go over the wire (encoded, then decoded), the per-poll series
/// left out, as `name{labels}` with the sample.
fn kubelet_series(series: &[TimeSeries]) -> Vec<(String, f64, i64)> {
    let mut out: Vec<(String, f64, i64)> = series
        .iter()
        .filter(|ts| {
            !matches!(
                name(ts),
                "up" | "scrape_duration_seconds" | "scrape_samples_scraped"
            )
        })
        .flat_map(|ts| {
            let key = ts
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            ts.samples
                .iter()
                .map(move |s| (key.clone(), s.value, s.timestamp))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn invalid_total(metrics: &Metrics, reason: &str) -> Option<f64> {
    metric_in(
        &metrics.encode(),
        &format!("kubelet_push_summary_values_invalid_total{{reason=\"{reason}\"}}"),
    )
}

/// Samples a document converts to, counted without the agent's clock (no future check): what
/// the day-ahead poll would have sent.
fn samples_in(doc: &str) -> usize {
    let summary = kubelet_push::kubelet::summary::parse(doc.as_bytes()).unwrap();
    let mut n = 0;
    kubelet_push::pipeline::convert::convert(&summary, Default::default(), 0, 120_000, &mut |_| {
        n += 1
    });
    n
}

use kubelet_push::clock::unix_ms;

/// The kubelet's clock jumps a day ahead for one poll, then comes back: the day-ahead samples
/// are dropped and counted (never sent, never remembered), and every series goes on at the
/// next poll. One warning when it starts, one line when it ends.
#[test]
fn a_kubelet_clock_a_day_ahead_for_one_poll_silences_nothing() {
    let (logs, _guard) = Logs::capture();
    let rt = current_thread_runtime();
    let metrics = Arc::new(Metrics::new());
    // The kubelet's times: ten minutes behind the agent's clock, 10 s apart.
    let t0 = SystemTime::now() - Duration::from_secs(600);
    let base = summary_at(t0);
    let ahead_doc = shifted(&base, Duration::from_secs(86_400 + 10));
    let (before, ahead, after) = rt.block_on(async {
        let kubelet = ScriptedKubelet::start().await;
        let mut p = poller_with(&kubelet, &metrics);
        kubelet.answer(shifted(&base, Duration::ZERO));
        let before = polled(&mut p).await;
        kubelet.answer(ahead_doc.clone());
        let ahead = polled(&mut p).await;
        kubelet.answer(shifted(&base, Duration::from_secs(20)));
        let after = polled(&mut p).await;
        (before, ahead, after)
    });
    for poll in [&before, &ahead, &after] {
        assert!(poll.error.is_none(), "{:?}", poll.error);
        assert_eq!(only_value(&poll.series, "up"), 1.0);
    }
    let before_series = kubelet_series(&before.series);
    assert!(before_series.len() > 50, "{}", before_series.len());
    let sent_ahead = kubelet_series(&ahead.series);
    assert!(
        sent_ahead.is_empty(),
        "nothing from the future is sent, yet {} samples were, e.g. {:?}",
        sent_ahead.len(),
        sent_ahead.first()
    );
    let after_series = kubelet_series(&after.series);
    let keys = |s: &[(String, f64, i64)]| s.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert!(
        keys(&after_series) == keys(&before_series),
        "every series goes on after the clock comes back: {} of {} sent",
        after_series.len(),
        before_series.len()
    );
    let limit = unix_ms(SystemTime::now());
    for (key, _, ts) in &after_series {
        assert!(*ts <= limit, "{key} stamped {ts}, after the agent's clock");
    }
    let cpu = "node_cpu_usage_seconds_total";
    let value = |s: &[(String, f64, i64)]| {
        s.iter()
            .find(|x| x.0.contains(&format!("__name__={cpu},")))
            .map(|x| (x.1, x.2))
            .unwrap()
    };
    let (v0, ts0) = value(&before_series);
    let (v2, ts2) = value(&after_series);
    assert_eq!(ts2 - ts0, 20_000, "the kubelet's own times, 20 s apart");
    assert_eq!(v2, v0);

    assert_eq!(
        invalid_total(&metrics, "future_timestamp"),
        Some(samples_in(&ahead_doc) as f64),
        "every sample of the day-ahead poll counted"
    );
    let text = logs.text();
    assert_eq!(
        text.matches("ahead of the agent's clock").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("no longer ahead").count(), 1, "{text}");
}

/// One section stamped in year 9999: only its samples are dropped (and counted); the rest of
/// the poll keeps its own times, and the next poll is not held back.
#[test]
fn one_section_in_year_9999_drops_only_that_section() {
    let (logs, _guard) = Logs::capture();
    let rt = current_thread_runtime();
    let metrics = Arc::new(Metrics::new());
    let t0 = SystemTime::now() - Duration::from_secs(600);
    let base = summary_at(t0);
    let mut doc: serde_json::Value =
        serde_json::from_str(&shifted(&base, Duration::from_secs(10))).unwrap();
    let memory = &mut doc["node"]["memory"];
    memory["time"] = "9999-12-31T23:59:59Z".into();
    let section_samples =
        samples_in(&serde_json::json!({"node": {"memory": memory.clone()}}).to_string());
    assert!(section_samples >= 3, "{section_samples}");
    let (first, future, next) = rt.block_on(async {
        let kubelet = ScriptedKubelet::start().await;
        let mut p = poller_with(&kubelet, &metrics);
        kubelet.answer(shifted(&base, Duration::ZERO));
        let first = polled(&mut p).await;
        kubelet.answer(doc.to_string());
        let future = polled(&mut p).await;
        kubelet.answer(shifted(&base, Duration::from_secs(20)));
        let next = polled(&mut p).await;
        (first, future, next)
    });
    let first = kubelet_series(&first.series);
    let future = kubelet_series(&future.series);
    let next = kubelet_series(&next.series);
    assert!(first.len() > 50);
    let memory_section = |k: &String| {
        k.contains("__name__=node_memory_") || k.contains("__name__=node_pressure_memory")
    };
    let without_memory: Vec<String> = first
        .iter()
        .map(|x| x.0.clone())
        .filter(|k| !memory_section(k))
        .collect();
    assert_eq!(first.len() - without_memory.len(), section_samples);
    let future_keys: Vec<String> = future.iter().map(|x| x.0.clone()).collect();
    assert!(
        future_keys == without_memory,
        "everything else is sent: {} samples, {} expected; extra {:?}",
        future.len(),
        without_memory.len(),
        future_keys
            .iter()
            .filter(|k| !without_memory.contains(k))
            .collect::<Vec<_>>()
    );
    // The documents differ only by their times, 10 s apart: so do the samples.
    let first_ts: std::collections::HashMap<&str, i64> =
        first.iter().map(|x| (x.0.as_str(), x.2)).collect();
    for (key, _, ts) in &future {
        assert_eq!(
            *ts,
            first_ts[key.as_str()] + 10_000,
            "{key} keeps the kubelet's time, not year 9999"
        );
    }
    assert_eq!(next.len(), first.len(), "every series goes on");
    for (key, _, ts) in &next {
        assert_eq!(*ts, first_ts[key.as_str()] + 20_000, "{key}");
    }
    assert_eq!(
        invalid_total(&metrics, "future_timestamp"),
        Some(section_samples as f64)
    );
    let text = logs.text();
    assert_eq!(
        text.matches("ahead of the agent's clock").count(),
        1,
        "{text}"
    );
}

/// Bad values cost only themselves: a string where a number belongs, a number past float64, a
/// garbage `time`, a section of the wrong type and a negative counter are left out and
/// counted; every other value of the poll goes out, `up` stays 1; one warning for the episode,
/// one line when a clean summary ends it.
#[test]
fn bad_values_are_left_out_and_the_poll_kept() {
    let (logs, _guard) = Logs::capture();
    let rt = current_thread_runtime();
    let metrics = Arc::new(Metrics::new());
    let base = summary_at(SystemTime::now() - Duration::from_secs(60));
    let clean = shifted(&base, Duration::ZERO);
    let mut bad = base.clone();
    let node = &mut bad["node"];
    node["cpu"]["usageCoreNanoSeconds"] = "12".into();
    node["memory"]["workingSetBytes"] = serde_json::Value::Null;
    node["fs"] = serde_json::json!([1, 2]);
    let pods = bad["pods"].as_array_mut().unwrap();
    pods[0]["memory"]["usageBytes"] = "__HUGE__".into();
    pods[1]["cpu"]["usageCoreNanoSeconds"] = (-5).into();
    pods[2]["memory"]["time"] = "yesterday".into();
    // serde_json cannot hold 1e400: it goes into the text last.
    let bad_at = |by| shifted(&bad, by).replace("\"__HUGE__\"", "1e400");
    let (clean_poll, bad_poll, bad_again, clean_again) = rt.block_on(async {
        let kubelet = ScriptedKubelet::start().await;
        let mut p = poller_with(&kubelet, &metrics);
        kubelet.answer(clean.clone());
        let a = polled(&mut p).await;
        // Each poll a new summary (10 s later), as a kubelet sends.
        kubelet.answer(bad_at(Duration::from_secs(10)));
        let b = polled(&mut p).await;
        kubelet.answer(bad_at(Duration::from_secs(20)));
        let c = polled(&mut p).await;
        kubelet.answer(shifted(&base, Duration::from_secs(30)));
        let d = polled(&mut p).await;
        (a, b, c, d)
    });
    for poll in [&clean_poll, &bad_poll, &bad_again, &clean_again] {
        assert!(poll.error.is_none(), "{:?}", poll.error);
        assert_eq!(only_value(&poll.series, "up"), 1.0);
    }
    let clean_keys: Vec<String> = kubelet_series(&clean_poll.series)
        .into_iter()
        .map(|x| x.0)
        .collect();
    let bad_keys: Vec<String> = kubelet_series(&bad_poll.series)
        .into_iter()
        .map(|x| x.0)
        .collect();
    let pod_of = |i: usize| {
        base["pods"][i]["podRef"]["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let lost = |k: &String| {
        k.contains("__name__=node_cpu_usage_seconds_total,")
            || k.contains("__name__=node_memory_working_set_bytes,")
            || k.contains("__name__=node_fs_")
            || (k.contains("__name__=pod_memory_usage_bytes,") && k.contains(&pod_of(0)))
            || (k.contains("__name__=pod_cpu_usage_seconds_total,") && k.contains(&pod_of(1)))
    };
    let expected: Vec<String> = clean_keys.iter().filter(|k| !lost(k)).cloned().collect();
    // node CPU and working set, three node_fs_* (Windows has no inodes), one of each pod.
    assert_eq!(clean_keys.len() - expected.len(), 7, "series lost");
    // The stale markers of the lost series aside, the bad poll sends exactly the rest.
    let sent: Vec<String> = kubelet_series(&bad_poll.series)
        .into_iter()
        .filter(|x| !x.1.is_nan())
        .map(|x| x.0)
        .collect();
    assert!(
        sent == expected,
        "{} sent, {} expected",
        sent.len(),
        expected.len()
    );
    assert!(bad_keys.len() >= sent.len());
    // A section that lost its time keeps its values: they carry the summary's newest time.
    let newest = kubelet_series(&bad_poll.series)
        .iter()
        .filter(|x| !x.1.is_nan())
        .map(|x| x.2)
        .max()
        .unwrap();
    let timeless = kubelet_series(&bad_poll.series)
        .into_iter()
        .find(|x| {
            x.0.contains("__name__=pod_memory_working_set_bytes,") && x.0.contains(&pod_of(2))
        })
        .expect("the pod's memory is sent");
    assert_eq!(timeless.2, newest);
    // Per poll: "12", 1e400, "yesterday", the fs array; the negative CPU separately.
    assert_eq!(invalid_total(&metrics, "malformed"), Some(8.0));
    assert_eq!(invalid_total(&metrics, "negative_counter"), Some(2.0));
    assert_eq!(invalid_total(&metrics, "future_timestamp"), Some(0.0));
    assert_eq!(
        kubelet_series(&clean_again.series)
            .iter()
            .filter(|x| !x.1.is_nan())
            .count(),
        clean_keys.len(),
        "all back"
    );
    let text = logs.text();
    assert_eq!(text.matches("summary values left out").count(), 1, "{text}");
    assert!(
        text.contains("first=\"a string where a number belongs\""),
        "{text}"
    );
    assert_eq!(
        text.matches("summary values valid again").count(),
        1,
        "{text}"
    );
}

/// A summary that is not a JSON object (`[]` used to pass as a healthy empty summary) fails
/// the poll with a message saying so, and pushes `up` 0.
#[tokio::test]
async fn a_summary_that_is_not_an_object_fails_the_poll() {
    let kubelet = ScriptedKubelet::start().await;
    let metrics = Arc::new(Metrics::new());
    let mut p = poller_with(&kubelet, &metrics);
    for (doc, found) in [("[]", "an array"), ("null", "null"), ("42", "a number")] {
        kubelet.answer(doc.to_owned());
        let out = polled(&mut p).await;
        let err = out.error.expect("a poll error");
        let chain = kubelet_push::http::error_chain(&err);
        assert!(
            chain.contains(&format!("the summary must be a JSON object, found {found}")),
            "{chain}"
        );
        assert_eq!(only_value(&out.series, "up"), 0.0);
    }
}

/// The agent's own clock (with the kubelet's: one node) ran a day ahead and is put back: the
/// series and the per-poll ones go on at once, stamped with the real time, not a day ahead.
#[test]
fn the_agents_clock_put_back_a_day_holds_nothing_back() {
    let metrics = Arc::new(Metrics::new());
    let cfg = config(&["--kubelet-url", "file://unused.json", "--dry-run"]);
    let mut p = Poller::new(&cfg.poll, metrics).unwrap();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let base = summary_at(t0);
    let t0_ms = unix_ms(t0) / 1000 * 1000;
    let day = Duration::from_secs(86_400);
    let ahead = shifted(&base, day);
    let started = std::time::Instant::now();
    let out = p.ingest(Ok(ahead.as_bytes()), t0_ms + 86_400_000, started);
    let first = p.decoded_series(&out);
    assert!(kubelet_series(&first).len() > 50);
    let back = shifted(&base, Duration::from_secs(10));
    let out = p.ingest(Ok(back.as_bytes()), t0_ms + 10_000, started);
    let series = p.decoded_series(&out);
    let again = kubelet_series(&series);
    assert_eq!(
        again.len(),
        kubelet_series(&first).len(),
        "every series goes on"
    );
    for name in ["up", "scrape_samples_scraped"] {
        let ts = named(&series, name)[0].samples[0].timestamp;
        assert_eq!(ts, t0_ms + 10_000, "{name} at the real time");
    }
}
