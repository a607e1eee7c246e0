//! Two destinations at once, against real receivers: Prometheus stays up while
//! VictoriaMetrics is killed for 30 s, and the agent itself is killed and restarted on its disk
//! buffer halfway through. Prometheus gets every poll on time throughout (a dead destination
//! never delays another); VictoriaMetrics gets its whole backlog, in order, when it returns,
//! across the agent's restart (each destination has its own buffer subdirectory).

use super::*;
use std::collections::BTreeSet;

use crate::support::{dest_buffer, metric_in, wait_until, PATIENCE};

const OUTAGE: Duration = Duration::from_secs(30);
const CPU: &str = "node_cpu_usage_seconds_total{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"35598k8s9001\"}";

/// The timestamps and values of the node CPU counter a receiver holds, every one since
/// `since_ms`: the window is sized from it, so a slow run loses nothing off its far end. (The
/// fixture kubelet stamps its documents a few seconds behind the clock; the margin covers it.)
async fn cpu(receiver: &Real, since_ms: i64) -> Vec<(i64, f64)> {
    receiver.make_visible().await;
    let now = now_ms();
    let window_s = ((now - since_ms) / 1000 + 30) as u64;
    let raw = receiver
        .raw("{instance=\"35598k8s9001\"}", now, window_s)
        .await;
    raw.get(CPU).cloned().unwrap_or_default()
}

/// The node CPU sample's timestamp in the `k`-th document the fixture kubelet serves: the
/// capture's own, moved as the kubelet moves every time of document `k`.
fn cpu_time_ms(kubelet: &FixtureKubelet, k: usize) -> i64 {
    let bytes = std::fs::read(crate::support::fixture("seed-windows-node.json")).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let time = doc["node"]["cpu"]["time"].as_str().unwrap();
    let captured = kubelet_push::kubelet::time::parse_rfc3339_ms(time).unwrap();
    captured / 1000 * 1000 + kubelet.shift_ms(k)
}

/// The agent's `/metrics` at `listen`, and when it was read (ms).
async fn agent_metrics(listen: &str) -> (String, i64) {
    let text = read_metrics(listen).await.expect("the agent's /metrics");
    (text, now_ms())
}

/// One sample per document, one second apart; `restarts` gaps of two seconds allowed (an
/// agent killed mid-poll may lose that poll). Values follow the documents.
fn assert_every_poll(what: &str, cpu: &[(i64, f64)], restarts: usize) {
    let gaps: Vec<i64> = cpu.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let lost = gaps.iter().filter(|g| **g != 1000).count();
    assert!(
        gaps.iter().all(|g| *g == 1000 || *g == 2000) && lost <= restarts,
        "{what}: gaps {gaps:?}"
    );
    for w in cpu.windows(2) {
        let steps = ((w[1].0 - w[0].0) / 1000) as f64;
        assert!(
            (w[1].1 - w[0].1 - steps * CPU_NS_PER_STEP as f64 / 1e9).abs() < 1e-9,
            "{what}: {w:?}"
        );
    }
}

/// Waits (up to [`PATIENCE`]) until `receiver` holds at least `at_least` node CPU samples since
/// `since_ms`; them.
async fn wait_held(what: &str, receiver: &Real, since_ms: i64, at_least: usize) -> Vec<(i64, f64)> {
    eventually(
        format!("{what}: {at_least} polls held"),
        PATIENCE,
        async || {
            let held = cpu(receiver, since_ms).await;
            let n = held.len();
            (n >= at_least)
                .then_some(held)
                .ok_or_else(|| format!("{n} polls held"))
        },
    )
    .await
}

#[tokio::test]
async fn a_dead_destination_never_delays_the_other_and_gets_its_backlog() {
    if !(available(Kind::Prometheus) && available(Kind::VictoriaMetrics)) {
        return;
    }
    let test_started = now_ms();
    let (pdir, vdir, buffer) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let prometheus = Real::launch(Kind::Prometheus, pdir.path()).await;
    let mut victoria = Real::launch(Kind::VictoriaMetrics, vdir.path()).await;
    let kubelet = FixtureKubelet::start("seed-windows-node.json", now_s() - 2, 1, None).await;
    let (purl, vurl) = (prometheus.write_url(), victoria.write_url());
    let args: Vec<&str> = ONE_SECOND_POLLS
        .into_iter()
        .chain([
            "--remote-url",
            vurl.as_str(),
            "--buffer-dir",
            buffer.path().to_str().unwrap(),
        ])
        .collect();
    let kubelet_url = kubelet.url();
    let start_agent = || agent_listening(&kubelet_url, &purl, &args);
    let (mut agent, mut listen) = start_agent().await;
    // Pacing: VictoriaMetrics gets some polls live before its outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    victoria.kill().await;
    let outage_started = now_ms();
    // Every document from this one on was served while VictoriaMetrics was away.
    let first_in_outage = kubelet.requests();

    // Halfway (the sleep only paces the timeline: what is asserted below is counted):
    // Prometheus is current, VictoriaMetrics' requests pile up in its own buffer.
    tokio::time::sleep(OUTAGE / 2).await;
    let (text, read_at) = agent_metrics(&listen).await;
    let pending = |text: &str, url: &str| {
        metric_in(
            text,
            &format!("kubelet_push_samples_pending{{url=\"{url}\"}}"),
        )
        .unwrap_or_else(|| panic!("no samples_pending for {url}:\n{text}"))
    };
    assert!(pending(&text, &vurl) > 0.0, "{text}");
    // The last send to Prometheus is recent when the metrics were read. An agent that made
    // Prometheus wait on VictoriaMetrics' retries would have sent nothing since the outage
    // began, an age of at least (read_at - outage_started), 15 s and more; half of that is
    // far above what a correct agent shows on a loaded machine (its last poll's send, a
    // second or so ago), and far below what the broken one shows.
    let sent_at = metric_in(
        &text,
        &format!("kubelet_push_last_successful_send_timestamp_seconds{{url=\"{purl}\"}}"),
    )
    .unwrap();
    let age = read_at as f64 / 1e3 - sent_at;
    let bound = (read_at - outage_started) as f64 / 2e3;
    assert!(
        age < bound,
        "last send to Prometheus {age} s before the metrics were read, {bound} s allowed"
    );
    // At most a poll in flight for the live destination: its buffer empties between polls.
    // A destination held up by the dead one never empties it.
    wait_metrics(
        &mut agent,
        &listen,
        "the live destination's buffer empty",
        |m| pending(m, &purl) == 0.0,
    )
    .await;
    let (pbuf, vbuf) = (
        dest_buffer(buffer.path(), &purl),
        dest_buffer(buffer.path(), &vurl),
    );
    assert!(pbuf.is_dir() && vbuf.is_dir(), "one subdirectory each");
    // Every summary the kubelet has served by now reaches Prometheus: counted first, then
    // waited for.
    let served = kubelet.requests();
    wait_held(
        "Prometheus during the outage",
        &prometheus,
        test_started,
        served,
    )
    .await;

    // The agent dies mid-outage and starts again on the same buffers.
    agent.child.start_kill().unwrap();
    let (_, first_log) = agent.wait().await;
    (agent, listen) = start_agent().await;
    let restarted_at = kubelet.requests();
    // Pacing, as above; and the restarted agent has polled into its buffer in the outage, so
    // the backlog crosses the restart.
    tokio::time::sleep(OUTAGE / 2).await;
    wait_until("the restarted agent polling in the outage", || {
        kubelet.requests() >= restarted_at + 2
    })
    .await;
    let polled_in_outage = kubelet.requests();
    // Every document served reaches Prometheus but the one the killed agent may have been
    // polling (served to it, stored nowhere).
    let live = wait_held(
        "Prometheus after the agent's restart",
        &prometheus,
        test_started,
        polled_in_outage - 1,
    )
    .await;
    assert_every_poll("Prometheus during the outage", &live, 1);
    victoria.restart().await;

    let (text, log) =
        wait_metrics_and_stop(agent, &listen, "VictoriaMetrics' backlog delivered", |m| {
            metric_in(
                m,
                &format!("kubelet_push_samples_pending{{url=\"{vurl}\"}}"),
            ) == Some(0.0)
        })
        .await;
    assert_eq!(dropped(&text), Vec::<&str>::new(), "{log}");
    let started: Vec<&str> = first_log
        .lines()
        .filter(|l| l.contains("kubelet-push started"))
        .collect();
    assert_eq!(started.len(), 1, "one start line: {first_log}");
    assert!(
        started[0].contains("destinations=2") && started[0].contains(&vurl),
        "the start line lists both destinations: {}",
        started[0]
    );

    let backlog = cpu(&victoria, test_started).await;
    assert_every_poll("VictoriaMetrics after its outage", &backlog, 1);
    // Every document served while VictoriaMetrics was away is in it, but the one the killed
    // agent may have lost: what the kubelet served, not what fits in 30 s.
    let stamps: BTreeSet<i64> = backlog.iter().map(|(t, _)| *t).collect();
    let missing: Vec<usize> = (first_in_outage..polled_in_outage)
        .filter(|k| !stamps.contains(&cpu_time_ms(&kubelet, *k)))
        .collect();
    assert!(
        missing.len() <= 1,
        "VictoriaMetrics misses documents {missing:?} of {first_in_outage}..{polled_in_outage} \
         served in its outage"
    );
    assert!(
        backlog.len() + 1 >= polled_in_outage,
        "VictoriaMetrics: {} samples for {polled_in_outage} polls",
        backlog.len()
    );
    // Every poll VictoriaMetrics got, Prometheus got too, with the same value (to the 12
    // significant digits VictoriaMetrics keeps). Prometheus may hold one poll more: the one
    // the killed agent had stored for it but not yet for VictoriaMetrics.
    let final_live = cpu(&prometheus, test_started).await;
    let (first, last) = (backlog[0].0, backlog.last().unwrap().0);
    let live_in_range: Vec<(i64, f64)> = final_live
        .iter()
        .filter(|(t, _)| (first..=last).contains(t))
        .copied()
        .collect();
    for (t, v) in &backlog {
        let (_, w) = live_in_range
            .iter()
            .find(|(u, _)| u == t)
            .unwrap_or_else(|| panic!("VictoriaMetrics has {t}, Prometheus does not"));
        assert!((v - w).abs() <= 1e-9 * w.abs().max(1.0), "{t}: {v} and {w}");
    }
    assert!(
        live_in_range.len() <= backlog.len() + 1,
        "{} polls at Prometheus, {} at VictoriaMetrics",
        live_in_range.len(),
        backlog.len()
    );
    prometheus.assert_nothing_rejected(0).await;
    victoria.assert_nothing_rejected(0).await;
}
