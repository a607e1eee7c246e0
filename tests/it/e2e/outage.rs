//! Outages against real receivers: the receiver is killed and comes back on the same port and
//! data directory; optionally the agent is killed too, mid-outage, and restarted on its disk
//! buffer. Afterwards every sample is queryable, in order, nothing rejected. `e2e::v2` runs the
//! same timelines with an agent that starts on Remote Write 2.0 ([`Version::V2`]).

use super::*;

const OUTAGE: Duration = Duration::from_secs(31);
/// Polls the agent makes while the receiver is down, at least (one a second for OUTAGE less
/// some slack: the count is waited for, bounded, after OUTAGE has passed).
const OUTAGE_POLLS: usize = 25;

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
/// agent falls back before the outage (the test waits until it has) and buffers 1.0, the
/// restarted one starts at 2.0 again and buffers 2.0 behind it. Either way, when the receiver
/// comes back, the first 2.0 request it answers with a bare 204 makes the agent fall back
/// (once) and convert the rest.
///
/// What is asserted is what happened, counted, never what fits in a time window: the fixture
/// kubelet records every document it served, and the receiver must hold exactly the samples
/// of those whose polls completed. The polls that did not complete are known exactly too: the
/// kill lands while the kubelet sits on a poll's answer (that document is lost, DESIGN.md: a
/// crash loses at most the poll in progress), and the final graceful stop reports how many
/// polls it completed (a stop abandons the poll in progress, if any: at most one document).
pub(super) async fn outage(kind: Kind, restart_agent: bool, version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let buffer = tempfile::tempdir().unwrap();
    let mut receiver = Real::launch(kind, dir.path()).await;
    // One document per second of virtual time, polled once a second: the timeline starts two
    // seconds behind the wall clock and stays behind it (an agent polls at most once a second,
    // later under load; a restarted agent's first poll may follow its predecessor's last
    // sooner, one document once), so no sample is from the receiver's future.
    let kubelet = FixtureKubelet::start("seed-windows-node.json", now_s() - 2, 1, None).await;
    // The final stop flushes what the last polls queued to the healthy receiver: a shutdown
    // timeout ample for that on a loaded machine, well within the stop's bound (PATIENCE).
    let args: Vec<&str> = ONE_SECOND_POLLS
        .into_iter()
        .chain(["--shutdown-timeout", "30s"])
        .chain(["--buffer-dir", buffer.path().to_str().unwrap()])
        .chain(version.args().iter().copied())
        .collect();
    let (kubelet_url, write_url) = (kubelet.url(), receiver.write_url());
    let away_first = version.starts_v2() && !restart_agent;
    if away_first {
        receiver.kill().await;
    }
    let (mut agent, mut listen) = agent_listening(&kubelet_url, &write_url, &args).await;
    if !away_first {
        // Delivering before the outage; with 2.0, fallen back to 1.0 (the first agent met the
        // receiver, which is what the restart case needs). Counted, then the receiver goes.
        wait_metrics(
            &mut agent,
            &listen,
            "three polls, samples delivered (and with 2.0, the fallback to 1.0)",
            |m| {
                metric_value(m, "kubelet_push_polls_total{result=\"ok\"}") >= Some(3.0)
                    && metric_value(m, "kubelet_push_samples_sent_total") > Some(0.0)
                    && (!version.starts_v2() || metric_value(m, PROTOCOL_V1) == Some(1.0))
            },
        )
        .await;
        receiver.kill().await;
    }
    // The documents polled while the receiver is down start here (with the receiver away
    // first, at the first one).
    let outage_from = if away_first { 0 } else { kubelet.requests() };
    // The outage lasts OUTAGE (pacing) and at least OUTAGE_POLLS polls (counted, bounded): an
    // agent that stopped polling while its receiver is down fails the wait.
    let mut lost_at_kill = None;
    let last_agent_from = if restart_agent {
        tokio::time::sleep(OUTAGE / 2).await;
        polled(&kubelet, outage_from + OUTAGE_POLLS / 2).await;
        // Killed in the middle of a poll, at a known point: the kubelet sits on its answer.
        kubelet.hold();
        let held = kubelet.wait_held().await;
        agent.child.start_kill().unwrap();
        let (_, killed_log) = agent.wait().await;
        kubelet.release();
        if version.starts_v2() {
            // It met the receiver before the outage.
            assert_eq!(
                fallbacks(&killed_log),
                1,
                "{kind:?}: the first agent fell back once: {killed_log}"
            );
        }
        lost_at_kill = Some(held.k);
        let from = kubelet.requests();
        (agent, listen) = agent_listening(&kubelet_url, &write_url, &args).await;
        tokio::time::sleep(OUTAGE / 2).await;
        from
    } else {
        tokio::time::sleep(OUTAGE).await;
        0
    };
    polled(&kubelet, outage_from + OUTAGE_POLLS).await;
    let outage_until = kubelet.requests();
    eprintln!("{kind:?}: documents {outage_from}..{outage_until} polled during the outage");
    if version.starts_v2() {
        // Every request this agent buffered is 2.0.
        assert_eq!(
            crate::support::self_metric(&listen, PROTOCOL_V2).await,
            Some(1.0),
            "{kind:?}: the agent is still on 2.0 when the receiver returns"
        );
    }
    receiver.restart().await;

    // The backlog is delivered (bounded).
    let (metrics, log) = wait_metrics_and_stop(
        agent,
        &listen,
        format!("{kind:?}: the backlog delivered"),
        |m| metric_value(m, "kubelet_push_samples_pending") == Some(0.0),
    )
    .await;
    let stopped_at = now_ms();
    assert_eq!(
        stopped_field(&log, "samples_pending"),
        0,
        "{kind:?}: the stop delivered everything: {log}"
    );
    assert_eq!(
        stopped_field(&log, "polls_failed"),
        0,
        "{kind:?}: the kubelet always answered: {log}"
    );
    assert_eq!(dropped(&metrics), Vec::<&str>::new(), "{kind:?}: {log}");
    if version.starts_v2() {
        assert_eq!(
            metric_value(&metrics, PROTOCOL_V1),
            Some(1.0),
            "{kind:?}: {metrics}"
        );
        assert_eq!(fallbacks(&log), 1, "{kind:?}: one fallback line: {log}");
    }

    // The documents whose polls completed: all served but the one the kill interrupted and
    // the one the stop abandoned (if the stop came mid-poll).
    let served = kubelet.served();
    let completed_by_last = stopped_field(&log, "polls_ok") as usize;
    let started_by_last = served.len() - last_agent_from;
    assert!(
        completed_by_last <= started_by_last && started_by_last - completed_by_last <= 1,
        "{kind:?}: the last agent completed {completed_by_last} of {started_by_last} polls: a \
         stop abandons at most the one in progress"
    );
    let abandoned = last_agent_from + completed_by_last..served.len();
    let expected: Vec<usize> = (0..served.len())
        .filter(|k| Some(*k) != lost_at_kill && !abandoned.contains(k))
        .collect();
    assert!(
        served.iter().enumerate().all(|(i, s)| s.k == i),
        "{served:?}"
    );
    assert_eq!(
        served
            .iter()
            .filter(|s| s.held)
            .map(|s| s.k)
            .collect::<Vec<_>>(),
        Vec::from_iter(lost_at_kill),
        "{kind:?}: only the poll interrupted by the kill was held"
    );

    assert_one_sample_per_document(
        &receiver,
        &kubelet,
        &served,
        &expected,
        stopped_at,
        &format!(
            "{kind:?}: documents {expected:?} (of {} served; lost at the kill {lost_at_kill:?}, \
             abandoned at the stop {abandoned:?})",
            served.len()
        ),
    )
    .await;
    receiver.assert_nothing_rejected(0).await;
}

/// Waits (bounded) until the kubelet has served `n` documents.
async fn polled(kubelet: &FixtureKubelet, n: usize) {
    crate::support::wait_until(format!("the kubelet served {n} documents"), || {
        kubelet.requests() >= n
    })
    .await;
}
