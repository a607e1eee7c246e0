//! What a kubelet reported is what a user can query: for four captures (two Windows, two
//! Linux), every series of the reviewed golden file arrives with its exact value and
//! timestamp, `rate()` over the advancing counters is what the documents imply, a pod that
//! disappears vanishes at once (stale markers), and the receiver rejects nothing.

use super::*;

const FIXTURES: [&str; 4] = [
    "seed-windows-node",
    "dd-integrations-core__stats_summary_windows",
    // Volume stats days older than the rest of the document: none of it may be lost.
    "dd-integrations-core-kubelet__stats_summary",
    "nri-kubernetes-testutil-1_34__summary",
];
const STEP_S: i64 = 10;
const DOCS: usize = 10;
const DROP_POD_FROM: usize = 8;

#[tokio::test]
async fn prometheus_stores_what_the_kubelet_reported() {
    if available(Kind::Prometheus) {
        values_arrive(Kind::Prometheus).await;
    }
}

#[tokio::test]
async fn victoria_metrics_stores_what_the_kubelet_reported() {
    if available(Kind::VictoriaMetrics) {
        values_arrive(Kind::VictoriaMetrics).await;
    }
}

async fn values_arrive(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Real::launch(kind, dir.path()).await;
    let url = receiver.write_url();
    let pushed = push_fixtures(|_| url.clone(), &[], |_| true).await;
    check_fixtures(&receiver, &pushed).await;
}

/// One fixture's run: its kubelet, and what its agent said before it stopped.
pub(super) struct Pushed {
    pub fixture: &'static str,
    pub kubelet: FixtureKubelet,
    /// The agent's stderr, to its exit.
    pub log: String,
    /// The agent's own `/metrics`, read once its kubelet served every document and `settled`
    /// held for it, before its stop.
    pub metrics: String,
}

/// Runs one agent per fixture, all at once, each pushing to `write_url(fixture index)` with
/// `extra` flags, and stops each cleanly once its kubelet has served every document and its
/// `/metrics` text satisfies `settled` (what the caller asserts on it, waited for: an agent
/// that never gets there fails the wait), and checks its buffer emptied.
pub(super) async fn push_fixtures(
    write_url: impl Fn(usize) -> String,
    extra: &[&str],
    settled: impl Fn(&str) -> bool,
) -> Vec<Pushed> {
    // The whole virtual timeline (documents STEP_S apart) lies in the last few minutes:
    // receivers do not answer for samples in the future.
    let newest_at = now_s() - 5 - STEP_S * DOCS as i64;
    let mut runs = Vec::new();
    for (i, fixture) in FIXTURES.into_iter().enumerate() {
        let kubelet = FixtureKubelet::start(
            &format!("{fixture}.json"),
            newest_at,
            STEP_S,
            Some(DROP_POD_FROM),
        )
        .await;
        // A shutdown timeout ample for the final flush to a healthy local receiver on a
        // loaded machine (well within the stop's own bound, PATIENCE): the test is about what
        // arrives, not about how fast.
        let args: Vec<&str> = [
            "--interval",
            "200ms",
            "--min-backoff",
            "50ms",
            "--shutdown-timeout",
            "30s",
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        let (agent, listen) = agent_listening(&kubelet.url(), &write_url(i), &args).await;
        runs.push((fixture, kubelet, listen, agent));
    }
    // One deadline for all: the agents poll side by side, so every kubelet's DROP_POD_FROM-th
    // request (where check_fixture looks for the stale markers) comes within it.
    crate::support::wait_until(format!("every kubelet served {DOCS} documents"), || {
        runs.iter()
            .all(|(_, kubelet, _, _)| kubelet.requests() >= DOCS)
    })
    .await;
    let mut pushed = Vec::new();
    for (fixture, kubelet, listen, child) in runs {
        let (metrics, log) = wait_metrics_and_stop(
            child,
            &listen,
            format!("{fixture}: the agent's metrics settled"),
            &settled,
        )
        .await;
        assert!(
            log.contains("samples_pending=0"),
            "{fixture}: everything flushed: {log}"
        );
        pushed.push(Pushed {
            fixture,
            kubelet,
            log,
            metrics,
        });
    }
    pushed
}

/// Every fixture's golden series, values, rates and stale markers, as the receiver stores
/// them, and nothing turned away.
pub(super) async fn check_fixtures(receiver: &Real, pushed: &[Pushed]) {
    receiver.make_visible().await;
    // The stale markers went out before the agents stopped, stamped with the start of the
    // poll that found the pod gone, which was before its request reached the kubelet.
    // check_fixture looks for them a second after that request (VictoriaMetrics rounds an
    // instant query's time down to the second); this sleep puts "now" past that time, on the
    // same clock, so it is sound on any machine.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut sent = 0;
    for p in pushed {
        check_fixture(receiver, p.fixture, &p.kubelet).await;
        sent += samples_sent(&p.log);
    }
    receiver.assert_nothing_rejected(sent).await;
}

async fn check_fixture(receiver: &Real, fixture: &str, kubelet: &FixtureKubelet) {
    let golden = golden(fixture);
    let instance = golden[0]
        .key
        .split("instance=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let end_ms = kubelet.shift_ms(DOCS) + golden.iter().map(|g| g.timestamp_ms).max().unwrap();
    let raw = receiver
        .raw(&format!("{{instance=\"{instance}\"}}"), end_ms, 600)
        .await;
    let per_poll = |k: &str| k.starts_with("up{") || k.starts_with("scrape_");
    let stored: Vec<&String> = raw.keys().filter(|k| !per_poll(k)).collect();

    // Every promised series, and no other, with document 0's exact value and timestamp.
    let expected: Vec<&String> = golden.iter().map(|g| &g.key).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !raw.contains_key(**k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{fixture} on {:?}: missing {missing:?}",
        receiver.kind
    );
    assert_eq!(
        stored.len(),
        expected.len(),
        "{fixture} on {:?}: unexpected series",
        receiver.kind
    );
    for g in &golden {
        let (t, v) = raw[&g.key][0];
        let at = g.timestamp_ms + kubelet.shift_ms(0);
        assert_eq!(
            t, at,
            "{fixture} on {:?}: timestamp of {}",
            receiver.kind, g.key
        );
        assert!(
            same_value(receiver.kind, v, g.value),
            "{fixture} on {:?}: {} is {v}, the kubelet said {}",
            receiver.kind,
            g.key,
            g.value
        );
    }
    // A counter advances with the documents: each one is CPU_NS_PER_STEP ns of CPU later.
    // Evaluated at document 6, before the last pod is dropped: the 1m window then holds
    // samples 10 s apart from edge to edge, so even Prometheus's extrapolation is exact.
    let dropped = kubelet.dropped_pod();
    let expected_rate = CPU_NS_PER_STEP as f64 / 1e9 / STEP_S as f64;
    let rate_at = kubelet.shift_ms(6) + golden.iter().map(|g| g.timestamp_ms).max().unwrap();
    let rates = receiver
        .query(
            &format!("rate(container_cpu_usage_seconds_total{{instance=\"{instance}\"}}[1m])"),
            rate_at,
        )
        .await;
    let mut compared = 0;
    for r in &rates {
        let key = series_key(&r["metric"]);
        let base = golden.iter().find(|g| {
            g.key.starts_with("container_cpu_usage_seconds_total{")
                && key == g.key.replacen("container_cpu_usage_seconds_total", "", 1)
        });
        // Prometheus stops extrapolating at a counter's zero point; skip counters too close to it.
        let Some(base) = base.filter(|g| g.value >= 0.01) else {
            continue;
        };
        let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
        assert!(
            (value - expected_rate).abs() < expected_rate * 1e-6,
            "{fixture} on {:?}: rate of {} is {value}, documents imply {expected_rate}",
            receiver.kind,
            base.key
        );
        compared += 1;
    }
    assert!(
        compared > 0,
        "{fixture}: no container CPU rate to compare ({rates:?})"
    );

    // The dropped pod's series end at their last sample: no five-minute trail.
    let gone: Vec<&String> = stored
        .iter()
        .copied()
        .filter(|k| k.contains(&format!("pod=\"{dropped}\"")))
        .take(3)
        .collect();
    assert!(!gone.is_empty(), "{fixture}: no series of pod {dropped}");
    for key in gone {
        let samples = &raw[key];
        assert_eq!(
            samples.len(),
            DROP_POD_FROM,
            "{fixture}: {key} has documents 0..{DROP_POD_FROM}"
        );
        let last = samples.last().unwrap().0;
        let selector = key.clone();
        assert_eq!(
            receiver.query(&selector, last).await.len(),
            1,
            "{fixture}: {key} present at its last sample"
        );
        // A second after the request of the first document without the pod (its poll's
        // start stamped the stale marker, before that request) and well within the
        // five-minute lookback of that last sample: only the stale marker the agent sent when
        // the pod vanished can make the series disappear. Within the lookback by
        // construction: that request came within PATIENCE of the agents' start (push_fixtures
        // waits for it with one deadline), minutes before the lookback ends.
        let after_ms = kubelet.served()[DROP_POD_FROM].at_ms + 1000;
        assert!(after_ms <= now_ms(), "{fixture}: {after_ms} in the future");
        assert!(after_ms - last < 240_000, "{fixture}: {key} last at {last}");
        let after = receiver.query(&selector, after_ms).await;
        assert!(
            after.is_empty(),
            "{fixture} on {:?}: {key} still answers after its pod vanished: {after:?}",
            receiver.kind
        );
    }
}

/// Prometheus stores float64 as is. VictoriaMetrics stores values as decimals with 12
/// significant digits (2505.102601908 comes back as 2505.10260191): a property of the
/// receiver, documented in the README.
fn same_value(kind: Kind, stored: f64, sent: f64) -> bool {
    match kind {
        Kind::Prometheus => stored.to_bits() == sent.to_bits(),
        Kind::VictoriaMetrics => stored == sent || (stored - sent).abs() <= sent.abs() * 1e-11,
    }
}
