//! Two destinations at once, against real receivers: Prometheus stays up while
//! VictoriaMetrics is killed for 30 s, and the agent itself is killed and restarted on its disk
//! buffer halfway through. Prometheus gets every poll on time throughout (a dead destination
//! never delays another); VictoriaMetrics gets its whole backlog, in order, when it returns,
//! across the agent's restart (each destination has its own buffer subdirectory).

use super::*;
use crate::support::{dest_buffer, metric_in};

const OUTAGE: Duration = Duration::from_secs(30);
const CPU: &str = "node_cpu_usage_seconds_total{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"35598k8s9001\"}";

/// The timestamps and values of the node CPU counter a receiver holds for the last `window_s`.
async fn cpu(receiver: &Real, window_s: u64) -> Vec<(i64, f64)> {
    receiver.make_visible().await;
    let raw = receiver
        .raw("{instance=\"35598k8s9001\"}", now_ms(), window_s)
        .await;
    raw.get(CPU).cloned().unwrap_or_default()
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

#[tokio::test]
async fn a_dead_destination_never_delays_the_other_and_gets_its_backlog() {
    if !(available(Kind::Prometheus) && available(Kind::VictoriaMetrics)) {
        return;
    }
    let (pdir, vdir, buffer) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let prometheus = Real::start(Kind::Prometheus, pdir.path(), free_port()).await;
    let mut victoria = Real::start(Kind::VictoriaMetrics, vdir.path(), free_port()).await;
    let kubelet = FixtureKubelet::start("seed-windows-node.json", now_s() - 2, 1, None).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let (purl, vurl) = (prometheus.write_url(), victoria.write_url());
    let args: Vec<&str> = ONE_SECOND_POLLS
        .into_iter()
        .chain([
            "--remote-url",
            vurl.as_str(),
            "--listen-address",
            listen.as_str(),
            "--buffer-dir",
            buffer.path().to_str().unwrap(),
        ])
        .collect();
    let start_agent = || agent(&kubelet.url(), &purl, &args);
    let mut child = start_agent();
    tokio::time::sleep(Duration::from_secs(3)).await;
    victoria.kill().await;
    let outage_started = now_ms();

    // Halfway: Prometheus is current, VictoriaMetrics' requests pile up in its own buffer.
    tokio::time::sleep(OUTAGE / 2).await;
    let text = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pending = |url: &str| {
        metric_in(
            &text,
            &format!("kubelet_push_samples_pending{{url=\"{url}\"}}"),
        )
        .unwrap_or_else(|| panic!("no samples_pending for {url}:\n{text}"))
    };
    assert!(pending(&vurl) > 0.0, "{text}");
    assert!(
        pending(&purl) < 100.0,
        "at most a poll in flight for the live destination: {text}"
    );
    let (pbuf, vbuf) = (
        dest_buffer(buffer.path(), &purl),
        dest_buffer(buffer.path(), &vurl),
    );
    assert!(pbuf.is_dir() && vbuf.is_dir(), "one subdirectory each");
    // Every summary the kubelet served is at Prometheus but the one being polled or sent.
    let served = kubelet.requests();
    let held = cpu(&prometheus, 60).await.len();
    assert!(
        held + 2 >= served,
        "Prometheus holds {held} polls of {served} during the outage"
    );
    let sent_at = metric_in(
        &text,
        &format!("kubelet_push_last_successful_send_timestamp_seconds{{url=\"{purl}\"}}"),
    )
    .unwrap();
    let age = now_ms() as f64 / 1e3 - sent_at;
    assert!(
        age < 2.5,
        "last send to Prometheus {age} s before the metrics were read"
    );

    // The agent dies mid-outage and starts again on the same buffers.
    child.start_kill().unwrap();
    let killed = child.wait_with_output().await.unwrap();
    child = start_agent();
    tokio::time::sleep(OUTAGE / 2).await;
    let polled_in_outage = kubelet.requests();
    let live = cpu(&prometheus, 60).await;
    assert!(
        live.len() + 3 >= polled_in_outage,
        "Prometheus holds {} polls of {polled_in_outage} after the agent's restart",
        live.len()
    );
    assert_every_poll("Prometheus during the outage", &live, 1);
    victoria.restart().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::support::self_metric(
        &listen,
        &format!("kubelet_push_samples_pending{{url=\"{vurl}\"}}"),
    )
    .await
        != Some(0.0)
    {
        assert!(
            Instant::now() < deadline,
            "backlog not delivered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (code, log) = stop_agent(child).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(dropped(&text), Vec::<&str>::new(), "{log}");
    let first_log = String::from_utf8_lossy(&killed.stderr);
    assert!(
        first_log.matches("kubelet-push started").count() == 2,
        "one start line per destination: {first_log}"
    );

    let backlog = cpu(&victoria, 120).await;
    assert_every_poll("VictoriaMetrics after its outage", &backlog, 1);
    let in_outage = backlog.iter().filter(|(t, _)| *t >= outage_started).count();
    assert!(
        in_outage >= 25 && backlog.len() + 1 >= polled_in_outage,
        "VictoriaMetrics: {in_outage} samples from the outage, {} for {polled_in_outage} polls",
        backlog.len()
    );
    // Every poll VictoriaMetrics got, Prometheus got too, with the same value (to the 12
    // significant digits VictoriaMetrics keeps). Prometheus may hold one poll more: the one
    // the killed agent had stored for it but not yet for VictoriaMetrics.
    let final_live = cpu(&prometheus, 120).await;
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
