//! Outages against real receivers: the receiver is killed and comes back on the same port and
//! data directory; optionally the agent is killed too, mid-outage, and restarted on its disk
//! buffer. Afterwards every sample is queryable, in order, nothing rejected. `e2e::v2` runs the
//! same timelines with an agent that starts on Remote Write 2.0 ([`Version::V2`]).

use super::*;

const OUTAGE: Duration = Duration::from_secs(31);

#[tokio::test]
async fn prometheus_outage_loses_nothing() {
    if available(Kind::Prometheus) {
        outage(Kind::Prometheus, false, Version::V1).await;
    }
}

#[tokio::test]
async fn victoria_metrics_outage_loses_nothing() {
    if available(Kind::VictoriaMetrics) {
        outage(Kind::VictoriaMetrics, false, Version::V1).await;
    }
}

#[tokio::test]
async fn prometheus_outage_with_agent_restart_loses_nothing() {
    if available(Kind::Prometheus) {
        outage(Kind::Prometheus, true, Version::V1).await;
    }
}

#[tokio::test]
async fn victoria_metrics_outage_with_agent_restart_loses_nothing() {
    if available(Kind::VictoriaMetrics) {
        outage(Kind::VictoriaMetrics, true, Version::V1).await;
    }
}

/// With [`Version::V2`] the disk buffer holds 2.0 requests when the receiver returns: without
/// an agent restart the receiver is away before the agent's first push, so the agent never
/// learns it speaks 1.0 only and buffers the whole outage as 2.0; with a restart, the first
/// agent falls back during the 3 s before the outage and buffers 1.0, the restarted one starts
/// at 2.0 again and buffers 2.0 behind it. Either way, when the receiver comes back, the first
/// 2.0 request it answers with a bare 204 makes the agent fall back (once) and convert the rest.
pub(super) async fn outage(kind: Kind, restart_agent: bool, version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let buffer = tempfile::tempdir().unwrap();
    let mut receiver = Real::start(kind, dir.path(), free_port()).await;
    // One document per second of virtual time, polled once a second: the timeline tracks the
    // wall clock a couple of seconds behind it.
    let kubelet = FixtureKubelet::start("seed-windows-node.json", now_s() - 2, 1, None).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let args: Vec<&str> = ONE_SECOND_POLLS
        .into_iter()
        .chain([
            "--listen-address",
            listen.as_str(),
            "--buffer-dir",
            buffer.path().to_str().unwrap(),
        ])
        .chain(version.args().iter().copied())
        .collect();
    let write_url = receiver.write_url();
    let start_agent = || agent(&kubelet.url(), &write_url, &args);
    let away_first = version == Version::V2 && !restart_agent;
    if away_first {
        receiver.kill().await;
    }
    let mut child = start_agent();
    if !away_first {
        tokio::time::sleep(Duration::from_secs(3)).await;
        receiver.kill().await;
    }
    let outage_started = now_ms();
    if restart_agent {
        tokio::time::sleep(OUTAGE / 2).await;
        child.start_kill().unwrap();
        let killed = child.wait_with_output().await.unwrap();
        if version == Version::V2 {
            // It met the receiver before the outage.
            assert_eq!(
                fallbacks(&String::from_utf8_lossy(&killed.stderr)),
                1,
                "{kind:?}: the first agent fell back once"
            );
        }
        child = start_agent();
        tokio::time::sleep(OUTAGE / 2).await;
    } else {
        tokio::time::sleep(OUTAGE).await;
    }
    let polled_in_outage = kubelet.requests();
    if version == Version::V2 {
        // Every request this agent buffered is 2.0.
        assert_eq!(
            crate::support::self_metric(&listen, PROTOCOL_V2).await,
            Some(1.0),
            "{kind:?}: the agent is still on 2.0 when the receiver returns"
        );
    }
    receiver.restart().await;
    let outage_ended = now_ms();

    // Within 60 s the backlog is delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if crate::support::self_metric(&listen, "kubelet_push_samples_pending ").await == Some(0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?}: backlog not delivered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (code, log) = stop_agent(child).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(dropped(&metrics), Vec::<&str>::new(), "{kind:?}: {log}");
    if version == Version::V2 {
        assert_eq!(
            metric_value(&metrics, PROTOCOL_V1),
            Some(1.0),
            "{kind:?}: {metrics}"
        );
        assert_eq!(fallbacks(&log), 1, "{kind:?}: one fallback line: {log}");
    }
    receiver.make_visible().await;

    let end = now_ms();
    let raw = receiver.raw("{instance=\"35598k8s9001\"}", end, 300).await;
    // The kubelet's series: one sample per document, one second apart, none missing, except
    // that an agent killed mid-poll may lose that one poll (DESIGN.md: a crash loses at most
    // the poll in progress).
    let cpu = &raw["node_cpu_usage_seconds_total{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"35598k8s9001\"}"];
    let gaps: Vec<i64> = cpu.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let lost = gaps.iter().filter(|g| **g != 1000).count();
    assert!(
        gaps.iter()
            .all(|g| *g == 1000 || (restart_agent && *g == 2000)),
        "{kind:?}: gaps {gaps:?}"
    );
    assert!(
        lost <= usize::from(restart_agent),
        "{kind:?}: {lost} polls lost: {gaps:?}"
    );
    assert!(
        cpu.len() + lost >= polled_in_outage,
        "{kind:?}: {} samples for {polled_in_outage} polls",
        cpu.len()
    );
    let in_outage = cpu
        .iter()
        .filter(|(t, _)| (outage_started..outage_ended).contains(t))
        .count();
    assert!(
        in_outage >= 25,
        "{kind:?}: only {in_outage} samples from the outage"
    );
    // Values follow the documents: the counter grew by one step per document.
    for w in cpu.windows(2) {
        let steps = ((w[1].0 - w[0].0) / 1000) as f64;
        assert!(
            (w[1].1 - w[0].1 - steps * CPU_NS_PER_STEP as f64 / 1e9).abs() < 1e-9,
            "{w:?}"
        );
    }
    // The agent's own `up`, at its own clock: no hole longer than an agent restart.
    let up = &raw["up{instance=\"35598k8s9001\",job=\"kubelet\",metrics_path=\"/metrics\",node=\"35598k8s9001\"}"];
    let worst = up.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(
        worst <= if restart_agent { 4000 } else { 1500 },
        "{kind:?}: up has a {worst} ms hole"
    );
    receiver.assert_nothing_rejected(0).await;
}
