//! Delivery through outages: retries, ordering, the bounded buffer, shutdown. The receiver is
//! in-process and scripted per test; the kubelet is the simulator, so every poll has fresh
//! counters (or, where a test must know every poll there was, a kubelet that numbers them).
//! Everything runs in real time: these tests send requests over sockets, and under paused time
//! tokio moves the clock to the next timer whenever no socket happens to be ready, which on a
//! busy machine can be in the middle of a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::rng::SplitMix64;
use kubelet_push::telemetry::DropReason;
use kubelet_push::testkit::receiver::{ReceivedRequest, Receiver, Response};
use kubelet_push::testkit::server::LocalServer;
use kubelet_push::testkit::simulator::KubeletServer;
use kubelet_push::Outcome;

use crate::support::*;

async fn kubelet(pods: usize) -> KubeletServer {
    simulated_kubelet(pods, 11).await
}

fn series_key(ts: &TimeSeries) -> String {
    ts.labels
        .iter()
        .map(|l| format!("{}={};", l.name, l.value))
        .collect()
}

/// Timestamps per series, in arrival order, over the given series.
fn timelines(series: &[TimeSeries]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for ts in series {
        out.entry(series_key(ts))
            .or_default()
            .extend(ts.samples.iter().map(|s| s.timestamp));
    }
    out
}

/// Every series arrived in strictly increasing timestamp order, so nothing arrived twice.
fn assert_ordered_once(series: &[TimeSeries]) -> usize {
    let lines = timelines(series);
    for (key, times) in &lines {
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{key}: {times:?}");
    }
    lines.values().map(Vec::len).sum()
}

/// Fast polls and retries. The kubelet and receiver timeouts are a minute (`PATIENCE`): every
/// kubelet and receiver here is on loopback and answers at once, so a timeout firing would be a
/// machine too busy to answer in the defaults' 10 s and 30 s, not what any test is about. Tests
/// that measure a timeout set their own.
const FAST: [&str; 10] = [
    "--interval",
    "50ms",
    "--min-backoff",
    "5ms",
    "--max-backoff",
    "20ms",
    "--kubelet-timeout",
    "60s",
    "--remote-timeout",
    "60s",
];

/// Flags for the agent: the fast defaults, each replaced by `extra` when it names the same flag.
fn args<'a>(kubelet: &'a str, remote: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--kubelet-url", kubelet, "--remote-url", remote];
    for pair in FAST.chunks(2) {
        if !extra.contains(&pair[0]) {
            v.extend_from_slice(pair);
        }
    }
    v.extend_from_slice(extra);
    v
}

/// The agent binary with these flags (and the tests' short intervals allowed), for the tests
/// that read its log or send it signals.
fn agent_command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(SHORT_INTERVALS.0, SHORT_INTERVALS.1).args(args);
    cmd
}

/// `--log-level` for a spawned agent whose sender logs the delay before every retry (the
/// first at warn, the others at debug).
const SENDER_DEBUG: &str = "info,kubelet_push::sender=debug";

/// The delays the sender chose before its retries, in order, as its log gives them
/// (`retry_in_ms`: whole milliseconds, rounded down).
fn retry_delays(log: &str) -> Vec<Duration> {
    log.lines()
        .filter_map(|line| line.split_once("retry_in_ms="))
        .map(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Duration::from_millis(digits.parse().expect("retry_in_ms is a number"))
        })
        .collect()
}

/// The receiver answers 503 for as long as 20 polls take, then recovers: every sample of the
/// outage arrives exactly once, each series in timestamp order.
#[tokio::test]
async fn an_outage_of_twenty_polls_loses_nothing() {
    let k = kubelet(5).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..100_000 {
        rx.push_response(Response::status(503).with_body("ingester ring not ready"));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(&ku, &ru, &[]));
    // 20 polls and 20 refused sends: on a busy machine each send takes longer, so counting
    // polls alone may end the outage before the sender has retried 20 times.
    wait_until("20 polls and 20 sends answered 503", || {
        k.requests() >= 21 && agent.dest().requests_with(Some(503)) >= 20
    })
    .await;
    // Polls finished, not started: one runtime thread runs the agent and this test, and a poll
    // is queued in the same step that counts it, so every poll counted here is in the buffer.
    let polls_in_outage = agent.metrics.polls(true);
    assert_eq!(agent.dest().samples_sent.get(), 0);
    rx.clear_responses();
    agent.wait_drained(1).await;
    let (_, m) = agent.stop().await;
    let delivered = assert_ordered_once(&rx.accepted_series());
    assert_eq!(delivered as u64, m.samples_sent.get());
    assert_eq!(m.samples_queued.get(), m.samples_sent.get(), "nothing lost");
    assert!(
        m.requests_with(Some(503)) >= 20,
        "{}",
        m.requests_with(None)
    );
    let ups = named(&rx.accepted_series(), "up").len() as u64;
    assert!(
        ups >= polls_in_outage,
        "every poll of the outage arrived: {ups} of {polls_in_outage}"
    );
    // The first request delivered is the first poll: it carries every series.
    let first_ok = rx.requests().into_iter().find(|r| r.status == 204).unwrap();
    assert!(first_ok.write_request.unwrap().timeseries.len() > 100);
}

#[tokio::test]
async fn a_receiver_that_is_not_up_yet_gets_everything_once_it_is() {
    let k = kubelet(3).await;
    let port = ReservedPort::new();
    let url = format!("http://127.0.0.1:{}/api/v1/write", port.port());
    let ku = k.url();
    let agent = Agent::start(&args(&ku, &url, &[]));
    // Six polls, counted as finished rather than timed: a busy machine polls less often. The
    // kubelet's count would include a poll whose answer is still on its way, which the stop
    // below may abandon; a finished poll was queued in the same step that counted it (one
    // runtime thread runs the agent and this test).
    wait_until("six polls and two refused connections", || {
        agent.metrics.polls(true) >= 6 && agent.dest().requests_with(None) >= 2
    })
    .await;
    let polls_in_outage = agent.metrics.polls(true);
    let rx = Receiver::start_on(port.listen()).unwrap();
    agent.wait_drained(1).await;
    let (_, m) = agent.stop().await;
    let delivered = assert_ordered_once(&rx.accepted_series());
    assert_eq!(delivered as u64, m.samples_sent.get());
    assert_eq!(m.samples_queued.get(), m.samples_sent.get(), "nothing lost");
    let ups = named(&rx.accepted_series(), "up").len() as u64;
    assert!(
        ups >= polls_in_outage,
        "every poll of the outage arrived: {ups} of {polls_in_outage}"
    );
}

/// The time between the arrivals of consecutive requests, on the receiver's clock.
fn gaps(requests: &[ReceivedRequest]) -> Vec<Duration> {
    requests.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// A 429's `Retry-After` is waited: raised to `--min-backoff`, so a zero cannot become a busy
/// loop, and honoured past `--max-backoff`, since the receiver said how long it needs. (The cap
/// that keeps an hour from stalling delivery, five minutes, is unit-tested in `src/sender/tests.rs`.)
///
/// Real time, and nothing in it depends on how fast the machine is. The agent runs as its own
/// process and logs the delay it chose before each retry; those delays are asserted exactly.
/// That it waited them is a lower bound: between reading one answer and sending again the
/// sender sleeps the delay it logged, so two attempts arrive at least that far apart. (Paused
/// time cannot measure this: while a request is on its way the runtime may find no socket
/// ready, and auto-advance then moves the clock to the next timer mid-request.)
#[tokio::test]
async fn retry_after_is_honoured_past_the_backoff_and_raised_to_its_minimum() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    for after in ["1", "0", "2"] {
        rx.push_response(Response::status(429).with_header("Retry-After", after));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = AgentProcess::spawn(&mut agent_command(&args(
        &ku,
        &ru,
        &[
            "--interval",
            "1h",
            "--min-backoff",
            "100ms",
            "--max-backoff",
            "1500ms",
            "--log-level",
            SENDER_DEBUG,
        ],
    )));
    // 3.1 s of waiting by design, then PATIENCE.
    let waits = Duration::from_millis(1000 + 100 + 2000);
    assert!(
        rx.wait_for_requests(4, waits + PATIENCE).await,
        "{}",
        agent.log()
    );
    let log = stop_agent(agent).await;
    // Honoured (1 s, neither bound), raised to the minimum, honoured past the maximum.
    let want = [1000, 100, 2000].map(Duration::from_millis);
    assert_eq!(retry_delays(&log), want, "three retries: {log}");
    let r = rx.requests();
    for (gap, want) in gaps(&r[..4]).into_iter().zip(want) {
        assert!(gap >= want, "waited {gap:?}, less than {want:?}");
    }
    assert!(
        r[1..4]
            .iter()
            .all(|x| x.write_request == r[0].write_request),
        "the same request again"
    );
    assert_eq!(r[3].status, 204);
}

/// 5xx retries wait with full jitter under a ceiling that doubles from `--min-backoff` up to
/// `--max-backoff`: each wait is within its attempt's ceiling. (Jitter makes any lower bound
/// zero; the delay sequence itself is unit-tested in `src/sender/tests.rs`.)
///
/// As above, the delays are the ones the agent logged, checked exactly against the ceilings,
/// and each gap between two attempts is at least the delay logged before the second: sound on
/// any machine, where an upper bound on a measured gap would not be.
#[tokio::test]
async fn server_errors_are_retried_within_the_backoff_ceilings() {
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..7 {
        rx.push_response(Response::status(503).with_body("ingester unavailable"));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = AgentProcess::spawn(&mut agent_command(&args(
        &ku,
        &ru,
        &[
            "--interval",
            "1h",
            "--min-backoff",
            "100ms",
            "--max-backoff",
            "400ms",
            "--log-level",
            SENDER_DEBUG,
        ],
    )));
    let ceilings = [100, 200, 400, 400, 400, 400, 400].map(Duration::from_millis);
    let waits: Duration = ceilings.iter().sum();
    assert!(
        rx.wait_for_requests(8, waits + PATIENCE).await,
        "{}",
        agent.log()
    );
    let log = stop_agent(agent).await;
    let delays = retry_delays(&log);
    assert_eq!(delays.len(), 7, "seven retries: {log}");
    for (i, (delay, ceiling)) in delays.iter().zip(ceilings).enumerate() {
        assert!(*delay <= ceiling, "retry {i} chose {delay:?} > {ceiling:?}");
    }
    let r = rx.requests();
    for (i, (gap, delay)) in gaps(&r[..8]).into_iter().zip(&delays).enumerate() {
        assert!(
            gap >= *delay,
            "retry {i} came {gap:?} after, before its {delay:?}"
        );
    }
    assert!(
        r[1..8]
            .iter()
            .all(|x| x.write_request == r[0].write_request),
        "the same request again"
    );
    assert_eq!(r[7].status, 204);
}

#[tokio::test]
async fn a_rejected_request_is_dropped_and_the_next_ones_arrive() {
    let k = kubelet(2).await;
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(400).with_body("err-mimir-sample-out-of-order"));
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(&ku, &ru, &[]));
    assert!(rx.wait_for_requests(4, PATIENCE).await);
    let (_, m) = agent.stop().await;
    let r = rx.requests();
    let rejected: u64 = r[0]
        .write_request
        .as_ref()
        .unwrap()
        .timeseries
        .iter()
        .map(|t| t.samples.len() as u64)
        .sum();
    assert_eq!(r[0].status, 400);
    assert_eq!(m.dropped_total(DropReason::Rejected), rejected);
    assert!(r[1..].iter().all(|x| x.status == 204));
    assert_ne!(r[1].write_request, r[0].write_request, "not retried");
    assert_eq!(
        m.samples_queued.get(),
        m.samples_sent.get() + rejected + m.samples_pending.get() as u64
    );
}

/// The receiver would answer after an hour; `--remote-timeout 1s` gives up on it after that
/// long and sends the same request again.
///
/// Real time with the two far apart. A timeout counts from when its attempt starts, which is
/// after the poll finished; so the `i`th retry arrives at least `i` timeouts after a moment the
/// test saw no poll finished yet (a lower bound, sound however slow the machine; the arrivals
/// themselves lag their attempts' starts by a transfer, so their gaps alone bound nothing). And
/// the first retry comes far sooner than the 30 s an agent ignoring the flag would wait (or the
/// hour one without a timeout would). Only the first answer is slow; should the machine be too
/// busy to answer a retry within a second, that attempt times out too and the next one is sent
/// the same way, so the test asserts that every attempt but the last timed out, whatever their
/// number (one retry on any sane machine).
#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retried() {
    use tokio::time::Instant;
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    rx.push_response(Response::status(204).with_delay(Duration::from_secs(3600)));
    let (ku, ru) = (k.url(), rx.url());
    let timeout = Duration::from_secs(1);
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &["--remote-timeout", "1s", "--interval", "1h"],
    ));
    let mut unpolled = Instant::now();
    wait_until("the first poll", || {
        let now = Instant::now();
        let polled = agent.metrics.polls(true) > 0;
        if !polled {
            unpolled = now;
        }
        polled
    })
    .await;
    assert!(rx.wait_for_requests(2, timeout + PATIENCE).await);
    agent.wait_drained(1).await;
    let (_, m) = agent.stop().await;
    let r = rx.requests();
    assert_eq!(
        m.requests_with(None),
        r.len() as u64 - 1,
        "every attempt but the last timed out: {}",
        m.requests_with(None)
    );
    assert_eq!(m.requests_with(Some(204)), 1, "the last was answered");
    for (i, x) in r.iter().enumerate() {
        let after = x.at - unpolled;
        assert!(
            after >= timeout * i as u32,
            "attempt {i} came {after:?} after the poll, before {i} timeouts"
        );
    }
    let first_retry = r[1].at - r[0].at;
    assert!(
        first_retry < Duration::from_secs(15),
        "retried {first_retry:?} after the first attempt, not after --remote-timeout"
    );
    assert!(
        r.iter().all(|x| x.write_request == r[0].write_request),
        "the timed-out request was sent again"
    );
}

/// A kubelet whose every summary is new and says which poll it answers: the `n`th request gets
/// a document timed `n` seconds after a start an hour ago, with the node's working set `n`
/// bytes, and `PODS` pods whose values are pseudo-random (so the requests do not compress
/// away). Every poll is then one request of the same number of samples. Told to hold, it
/// leaves every later request unanswered, so the agent makes no poll after those it was
/// answering.
struct NumberedKubelet {
    server: LocalServer,
    state: Arc<Mutex<Numbered>>,
}

#[derive(Default)]
struct Numbered {
    asked: u64,
    held: bool,
}

impl NumberedKubelet {
    const PODS: u64 = 120;

    async fn start() -> NumberedKubelet {
        use axum::response::IntoResponse;
        let now = SystemTime::now() - Duration::from_secs(3600);
        let start = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            );
        let state = Arc::new(Mutex::new(Numbered::default()));
        let served = state.clone();
        let app = axum::Router::new().route(
            "/stats/summary",
            axum::routing::get(move || {
                let answer = {
                    let mut s = served.lock().unwrap();
                    s.asked += 1;
                    (!s.held).then(|| Self::summary(start, s.asked))
                };
                async move {
                    match answer {
                        Some(doc) => (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            doc,
                        )
                            .into_response(),
                        None => std::future::pending().await,
                    }
                }
            }),
        );
        let server = LocalServer::start(app, "numbered kubelet").await.unwrap();
        NumberedKubelet { server, state }
    }

    fn summary(start: SystemTime, n: u64) -> String {
        let t = humantime::format_rfc3339_seconds(start + Duration::from_secs(n)).to_string();
        let mut rng = SplitMix64::new(n);
        let pods: Vec<String> = (0..Self::PODS)
            .map(|i| {
                let cpu = n * 1_000_000_000_000 + rng.below(1_000_000_000_000);
                let memory = rng.below(4_000_000_000);
                format!(
                    r#"{{"podRef":{{"name":"pod-{i}","namespace":"ns"}},"cpu":{{"time":"{t}","usageCoreNanoSeconds":{cpu}}},"memory":{{"time":"{t}","workingSetBytes":{memory}}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"node":{{"nodeName":"numbered","memory":{{"time":"{t}","workingSetBytes":{n}}}}},"pods":[{}]}}"#,
            pods.join(",")
        )
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Summary requests so far, answered or held.
    fn asked(&self) -> u64 {
        self.state.lock().unwrap().asked
    }

    /// Answers nothing from now on; returns how many requests it answered.
    fn hold(&self) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.held = true;
        s.asked
    }
}

/// The poll a request carries, by the numbered kubelet's node working set.
fn poll_number(request: &ReceivedRequest) -> u64 {
    let series = &request.write_request.as_ref().unwrap().timeseries;
    let n = only_value(series, "node_memory_working_set_bytes");
    assert_eq!(n.fract(), 0.0, "{n}");
    n as u64
}

/// The receiver is down until the 64 KiB memory buffer has overflowed; then the agent's polls
/// stop (the kubelet holds the next one) and the receiver recovers. The kubelet numbers its
/// answers, and each poll is one request of the same size, so the test knows every poll there
/// was and can say exactly what must arrive: the newest polls, without a gap, up to the last
/// one; and exactly the samples of the others counted as dropped.
///
/// Nothing is timed. Polls are counted; the poll held open means none is queued after the ones
/// counted, so "the last poll before the recovery" is a fact, not a moment.
#[tokio::test]
async fn a_full_memory_buffer_drops_the_oldest_and_counts_exactly() {
    let k = NumberedKubelet::start().await;
    let rx = Receiver::start().await.unwrap();
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    let (ku, ru) = (k.url(), rx.url());
    let agent = Agent::start(&args(
        &ku,
        &ru,
        &[
            "--buffer-max-size",
            "64KiB",
            "--kubelet-pods=false",
            // The held poll must stay open: an hour, where the test takes seconds.
            "--kubelet-timeout",
            "1h",
            // One poll per request after the recovery too, so each request names its poll:
            // merging a backlog is tested in v2.rs (the catch-up tests).
            "--max-catch-up-size",
            "0",
        ],
    ));
    // Every poll is one request of the same size, with one `up`; the first attempt is the
    // first poll's.
    let size = |r: &ReceivedRequest| -> u64 {
        let w = r.write_request.as_ref().unwrap();
        assert_eq!(named(&w.timeseries, "up").len(), 1, "one poll per request");
        w.timeseries.iter().map(|t| t.samples.len() as u64).sum()
    };
    assert!(rx.wait_for_requests(1, PATIENCE).await);
    let per_poll = size(&rx.requests()[0]);
    // Fill the buffer past its size (a dozen polls) until five polls were dropped.
    wait_until("five polls dropped from the full buffer", || {
        agent.dest().dropped_total(DropReason::BufferFull) >= 5 * per_poll
    })
    .await;
    let answered = k.hold();
    // The agent is in the poll after the last one answered: every poll before it has finished
    // and is in the buffer (queued in the step that finished it), and no more will be.
    wait_until("the next poll is held", || k.asked() > answered).await;
    assert_eq!(
        agent.metrics.polls(true),
        answered,
        "every answered poll counted"
    );
    assert_eq!(agent.metrics.polls(false), 0);
    // An attempt on its way when the last poll was queued may carry a request that poll then
    // evicted; were the receiver to take it, it would be both dropped and sent. Two more
    // attempts recorded (503) mean the one after the first of them started after that, when
    // the buffer no longer changes: every attempt the recovered receiver sees is of a request
    // still in it.
    let seen = rx.requests().len();
    wait_until("two more attempts", || rx.requests().len() >= seen + 2).await;
    rx.clear_responses();
    agent.wait_drained(1).await;
    let metrics_text = agent.metrics.encode();
    let (_, m) = agent.stop().await;
    let value = |name: &str| -> u64 {
        metric_in(&metrics_text, name)
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics_text}"))
    };
    let queued = value("kubelet_push_samples_queued_total");
    let sent = value("kubelet_push_samples_sent_total");
    let dropped = value("kubelet_push_samples_dropped_total{reason=\"buffer_full\"}");
    let pending = value("kubelet_push_samples_pending");
    assert_eq!(pending, 0);
    assert_eq!(
        queued,
        sent + dropped,
        "every queued sample is sent or dropped"
    );
    let delivered = assert_ordered_once(&rx.accepted_series()) as u64;
    assert_eq!(
        delivered,
        m.samples_sent.get(),
        "sent means received, and no dropped sample arrived"
    );
    let accepted: Vec<ReceivedRequest> =
        rx.requests().into_iter().filter(|r| r.accepted()).collect();
    assert!(accepted.iter().all(|r| size(r) == per_poll));
    assert_eq!(queued, answered * per_poll, "{answered} polls queued");
    // Oldest dropped, newest kept: what arrived is the polls from some `first` on, each once,
    // up to the last one answered; everything before `first` was dropped and counted.
    let mut kept: Vec<u64> = accepted.iter().map(poll_number).collect();
    kept.sort_unstable();
    let first = kept[0];
    assert!(first > 5, "the oldest polls were dropped: {kept:?}");
    assert_eq!(
        kept,
        (first..=answered).collect::<Vec<_>>(),
        "the newest polls, up to the last, none missing, none twice"
    );
    assert_eq!(
        dropped,
        (first - 1) * per_poll,
        "exactly the older polls dropped"
    );
    assert_eq!(sent, (answered - first + 1) * per_poll);
}

/// The seed fixture's stats are from 2018: with `--max-sample-age 1h` only the per-poll series
/// are sent, the rest counted as too old, in the same request (trimmed, not dropped whole).
#[tokio::test]
async fn max_sample_age_trims_what_receivers_would_reject() {
    let rx = Receiver::start().await.unwrap();
    let seed = format!("file://{}", fixture("seed-windows-node.json").display());
    let ru = rx.url();
    // 1.0: the order of the series in the request is 1.0's (2.0 keeps its own).
    let agent = Agent::start(&args(
        &seed,
        &ru,
        &[
            "--max-sample-age",
            "1h",
            "--once",
            "--remote-write-version",
            "1",
        ],
    ));
    let outcome = tokio::time::timeout(PATIENCE, agent.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let m = agent.dests[0].clone();
    assert_eq!(
        outcome,
        Outcome::Failed,
        "--once reports samples it could not deliver"
    );
    assert_eq!(m.dropped_total(DropReason::TooOld), 33);
    let names: Vec<String> = rx
        .accepted_series()
        .iter()
        .map(|t| name(t).to_owned())
        .collect();
    assert_eq!(
        names,
        vec!["up", "scrape_duration_seconds", "scrape_samples_scraped"]
    );
    assert_eq!(m.samples_sent.get(), 3);
}

/// A GET answered as (status, body); bounded, as every wait here.
async fn http_get(url: String) -> (u16, String) {
    tokio::time::timeout(PATIENCE, async {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
    .await
    .expect("an answer")
}

/// Waits until the agent serving on `listen` reports `done` in its `/metrics`.
async fn wait_for_metrics(listen: &str, what: &str, done: impl Fn(&str) -> bool) {
    eventually(what, PATIENCE, async || {
        let text = http_get(format!("http://{listen}/metrics")).await.1;
        done(&text).then_some(()).ok_or(text)
    })
    .await;
}

/// The age in whole seconds a `/readyz` refusal gives after `reason`, if it gives that reason.
fn refusal_age(body: &str, reason: &str) -> Option<u64> {
    let rest = body.split_once(reason)?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `/readyz` turns 503 once requests wait and no send succeeded for three intervals plus the
/// longest backoff (here 6 s + 20 ms), not before; `/healthz` stays 200.
///
/// Real time, on the agent binary (the endpoints are what this is about, and it logs the
/// address it bound). Each check is made sound by bracketing when the agent can have judged:
/// between the test sending the GET and reading the answer. The last send the agent counted
/// is no earlier than the receiver's last 204 and no later than its first 503 (the sender has
/// one request in flight and takes the next only after counting the last); so a 200 is due
/// if the answer came before the limit counted from that 204, and a 503 if the GET went after
/// the limit counted from that 503.
#[tokio::test]
async fn health_endpoints_follow_the_receiver() {
    kubelet_push::http::install_crypto_provider();
    let k = kubelet(1).await;
    let rx = Receiver::start().await.unwrap();
    let (ku, ru) = (k.url(), rx.url());
    let (interval, max_backoff) = (Duration::from_secs(2), Duration::from_millis(20));
    let limit = interval * 3 + max_backoff;
    let (agent, listen) =
        AgentProcess::listening(&mut agent_command(&args(&ku, &ru, &["--interval", "2s"]))).await;
    let get = |path: &str| http_get(format!("http://{listen}{path}"));
    let sent_and_none_pending = |text: &str| {
        metric_in(text, "kubelet_push_samples_sent_total").is_some_and(|v| v > 0.0)
            && metric_in(text, "kubelet_push_samples_pending") == Some(0.0)
    };
    wait_for_metrics(&listen, "the first poll delivered", sent_and_none_pending).await;
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
    for _ in 0..100_000 {
        rx.push_response(Response::status(503));
    }
    // No await since the push: nothing was answered in between.
    let last_ok = rx.requests().last().map(|r| (r.at, r.status)).unwrap();
    assert_eq!(last_ok.1, 204);
    wait_until("a request waits (answered 503)", || {
        rx.requests().iter().any(|r| r.status == 503)
    })
    .await;
    let first_503 = rx.requests().iter().find(|r| r.status == 503).unwrap().at;

    // Not unready before the limit: a request waits, and the last send is recent.
    let (status, body) = get("/readyz").await;
    let answered = tokio::time::Instant::now();
    if answered < last_ok.0 + limit {
        assert_eq!(
            (status, body.as_str()),
            (200, "ready\n"),
            "not unready before the limit"
        );
    } else if status != 200 {
        // This one GET took the machine past the limit, so the agent may have judged after
        // it; then its reason must give an age past its limit (for the send, also no older
        // than the last 204).
        assert_eq!(status, 503, "{body}");
        if let Some(age) = refusal_age(&body, "last successful send ") {
            assert!(
                age >= limit.as_secs() && age <= (answered - last_ok.0).as_secs(),
                "{body}"
            );
        } else {
            let age = refusal_age(&body, "last successful kubelet poll ").expect(&body);
            assert!(age >= (interval * 3).as_secs(), "{body}");
        }
    }

    // Unready after it.
    tokio::time::sleep_until(first_503 + limit + Duration::from_millis(10)).await;
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("requests waiting"), "{body}");
    assert_eq!(get("/healthz").await.0, 200, "alive while not ready");

    rx.clear_responses();
    wait_for_metrics(&listen, "delivered again", sent_and_none_pending).await;
    assert_eq!(get("/readyz").await.0, 200);
    let metrics = get("/metrics").await.1;
    // Labelled with the destination's URL, as its logs show it.
    let url = kubelet_push::http::redact(&rx.url().parse().unwrap());
    assert!(
        metrics.contains(&format!(
            "kubelet_push_requests_total{{url=\"{url}\",code=\"503\"}}"
        )),
        "{metrics}"
    );
    stop_agent(agent).await;
}

/// A destination that rejects every request (here a wrong path: 404) loses everything while
/// nothing waits in its buffer. `/readyz` turns 503 once three requests in a row were rejected,
/// naming the destination and the status, and ready again after the next accepted one. The
/// rejection is logged once for the episode, in JSON, with the destination's URL in its span;
/// the drop counter carries it too. A healthy second destination keeps delivering meanwhile.
///
/// Waits for counted events (requests answered), never for time.
#[tokio::test]
async fn a_destination_that_rejects_everything_is_unready_and_named() {
    kubelet_push::http::install_crypto_provider();
    let k = kubelet(1).await;
    let wrong = Receiver::start().await.unwrap();
    let good = Receiver::start().await.unwrap();
    wrong.answer_always(Some(Response::status(404).with_body("404 page not found")));
    let (ku, wu, gu) = (k.url(), wrong.url(), good.url());
    let mut cmd = agent_command(&args(
        &ku,
        &wu,
        &[
            "--remote-url",
            &gu,
            "--log-format",
            "json",
            "--interval",
            "200ms",
        ],
    ));
    let (agent, listen) = AgentProcess::listening(&mut cmd).await;
    let get = |path: &str| http_get(format!("http://{listen}{path}"));
    let url = kubelet_push::http::redact(&wu.parse().unwrap());

    // Two rejected requests are the receiver judging them; the third in a row makes the agent
    // unready. The agent counts a rejection after the receiver answered, so wait for the count.
    assert!(wrong.wait_for_requests(3, PATIENCE).await);
    wait_for_metrics(&listen, "three requests rejected", |m| {
        metric_in(
            m,
            &format!("kubelet_push_requests_total{{url=\"{url}\",code=\"404\"}}"),
        )
        .is_some_and(|n| n >= 3.0)
    })
    .await;
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&url), "names the destination: {body}");
    assert!(body.contains("404 Not Found"), "names the status: {body}");
    assert!(body.contains("rejected the last"), "{body}");
    let metrics = get("/metrics").await.1;
    let dropped = metric_in(
        &metrics,
        &format!("kubelet_push_samples_dropped_total{{url=\"{url}\",reason=\"rejected\"}}"),
    )
    .expect(&metrics);
    assert!(dropped > 0.0, "{metrics}");
    // The healthy destination is not held up by the other one.
    let before = good.requests().len();
    assert!(good.wait_for_requests(before + 2, PATIENCE).await);

    // The receiver is mended: the next accepted request makes the agent ready again.
    wrong.answer_always(None);
    let answered = wrong.requests().len();
    wait_until("an accepted request after the 404s", || {
        wrong.requests()[answered..].iter().any(|r| r.status == 204)
    })
    .await;
    wait_for_metrics(&listen, "a send counted after the 404s", |m| {
        metric_in(
            m,
            &format!("kubelet_push_requests_total{{url=\"{url}\",code=\"204\"}}"),
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));

    let log = stop_agent(agent).await;
    let rejected: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("rejected by the receiver"))
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(rejected.len(), 1, "one line for the episode: {log}");
    assert_eq!(rejected[0]["span"]["url"], url.as_str(), "{log}");
    let recovered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("receiver accepts requests again"))
        .collect();
    assert_eq!(recovered.len(), 1, "{log}");
    assert!(
        recovered[0].contains(&format!("\"url\":\"{url}\"")),
        "{log}"
    );
    let started: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kubelet-push started"))
        .collect();
    assert_eq!(started.len(), 1, "one start line: {log}");
    assert!(
        started[0].contains(&url)
            && started[0].contains(&kubelet_push::http::redact(&gu.parse().unwrap())),
        "lists every destination: {}",
        started[0]
    );
}

/// A stop drains the buffer for at most `--shutdown-timeout`: at once when the receiver takes
/// everything, the whole timeout when it answers 503 forever, retrying meanwhile, and then
/// what is left is counted as dropped.
///
/// Real time, with the two timeouts far apart so that bounds generous to a busy machine still
/// tell right from wrong: the healthy drain has an hour, and must end within `PATIENCE`; the
/// other has 5 s, and must take at least that (a lower bound, sound anywhere) and end within
/// `PATIENCE` after it. (The SIGTERM path of the real binary is tested below.)
#[tokio::test]
async fn the_drain_is_bounded_by_the_shutdown_timeout() {
    for healthy in [true, false] {
        let k = kubelet(2).await;
        let rx = Receiver::start().await.unwrap();
        if !healthy {
            for _ in 0..100_000 {
                rx.push_response(Response::status(503));
            }
        }
        let (ku, ru) = (k.url(), rx.url());
        let shutdown = if healthy { "1h" } else { "5s" };
        let agent = Agent::start(&args(
            &ku,
            &ru,
            &["--interval", "1h", "--shutdown-timeout", shutdown],
        ));
        assert!(rx.wait_for_requests(1, PATIENCE).await);
        let asked = tokio::time::Instant::now();
        agent.stop.cancel();
        let timeout = Duration::from_secs(5);
        tokio::time::timeout(timeout + PATIENCE, agent.task)
            .await
            .expect("the drain ends")
            .unwrap()
            .unwrap();
        let took = asked.elapsed();
        let m = &agent.dests[0];
        let queued = m.samples_queued.get();
        assert!(queued > 0);
        if healthy {
            // Ended within the bounded wait above, where waiting out the hour would not.
            assert_eq!(m.samples_sent.get(), queued);
            assert_eq!(m.dropped_total(DropReason::Shutdown), 0);
        } else {
            assert!(took >= timeout, "stopped after {took:?}");
            assert_eq!(m.samples_sent.get(), 0);
            assert_eq!(m.dropped_total(DropReason::Shutdown), queued);
            // Two attempts arrived after the stop was asked: the second was sent after it.
            // (The sender retries every 20 ms at most; 5 s leaves a busy machine plenty.)
            let after = rx.requests().iter().filter(|r| r.at >= asked).count();
            assert!(after >= 2, "retried while draining: {after} attempts");
        }
    }
}

/// SIGTERM (how Kubernetes stops a pod) with a healthy receiver: exit 0, everything sent.
/// With the receiver gone: exit 0 after --shutdown-timeout, the loss reported.
///
/// As in the drain test the timeouts are far apart: the healthy agent has an hour and must
/// exit within `PATIENCE` (`sigterm` waits no longer); the other has 2 s, must take at least
/// that, and must say the timeout ran out.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_flushes_within_the_shutdown_timeout() {
    use std::time::Instant;
    for healthy in [true, false] {
        let k = kubelet(3).await;
        let rx = Receiver::start().await.unwrap();
        let (ku, ru) = (k.url(), rx.url());
        let shutdown = if healthy { "1h" } else { "2s" };
        let agent = AgentProcess::spawn(&mut agent_command(&args(
            &ku,
            &ru,
            &["--shutdown-timeout", shutdown, "--interval", "100ms"],
        )));
        assert!(rx.wait_for_requests(3, PATIENCE).await, "{}", agent.log());
        if !healthy {
            for _ in 0..100_000 {
                rx.push_response(Response::status(503));
            }
            // A request is waiting once one has been answered 503.
            wait_until("a request answered 503", || {
                rx.requests().iter().any(|r| r.status == 503)
            })
            .await;
        }
        let asked = Instant::now();
        let (code, log) = sigterm(agent).await;
        let took = asked.elapsed();
        assert_eq!(code, Some(0), "{log}");
        if healthy {
            assert!(log.contains("samples_pending=0"), "{log}");
            assert!(!log.contains("shutdown timeout ran out"), "{log}");
        } else {
            assert!(took >= Duration::from_secs(2), "{took:?}");
            assert!(
                log.contains("shutdown timeout ran out; samples in the memory buffer are dropped"),
                "{log}"
            );
        }
    }
}
