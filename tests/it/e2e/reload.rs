//! A reload adds the real Prometheus as a destination: before it Prometheus holds nothing
//! of the node, after it Prometheus stores the kubelet's samples, with the values the
//! destination that was there from the start received too.

use super::*;

use kubelet_push::testkit::receiver::Receiver;

use crate::support::{label, metric_in, name, simulated_kubelet, wait_until, AgentProcess};

const CPU: &str = "node_cpu_usage_seconds_total";

#[tokio::test]
async fn a_reload_adds_prometheus_and_it_stores_the_kubelets_samples() {
    if !available(Kind::Prometheus) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Real::launch(Kind::Prometheus, dir.path()).await;
    let k = simulated_kubelet(2, 21).await;
    let first = Receiver::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("remote-write:\n  - url: {}\n", first.url()),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(
        crate::support::SHORT_INTERVALS.0,
        crate::support::SHORT_INTERVALS.1,
    )
    .args(["--kubelet-url", &k.url(), "--config-file"])
    .arg(&config)
    .args(["--interval", "1s", "--enable-reload"]);
    let (agent, listen) = AgentProcess::listening(&mut cmd).await;
    wait_until("the first destination gets the node's CPU", || {
        first.accepted_series().iter().any(|ts| name(ts) == CPU)
    })
    .await;
    assert!(
        prometheus.query(CPU, now_ms()).await.is_empty(),
        "Prometheus is no destination yet"
    );

    std::fs::write(
        &config,
        format!(
            "remote-write:\n  - url: {}\n  - url: {}\n",
            first.url(),
            prometheus.write_url()
        ),
    )
    .unwrap();
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{listen}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body = answer.text().await.unwrap();
    assert!(body.contains(&prometheus.write_url()), "{body}");

    // Prometheus stores the node's CPU counter with the node's name, a value the first
    // destination received as well (each poll is encoded once for every destination).
    let stored = eventually("Prometheus stores the CPU counter", PATIENCE, async || {
        let result = prometheus.query(CPU, now_ms()).await;
        result.first().cloned().ok_or_else(|| prometheus.log())
    })
    .await;
    let node = stored["metric"]["node"].as_str().unwrap().to_owned();
    let value: f64 = stored["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value > 0.0, "{stored}");
    let seen = first.accepted_series();
    assert!(
        seen.iter().any(|ts| name(ts) == CPU
            && label(ts, "node") == Some(node.as_str())
            && ts.samples.iter().any(|s| (s.value - value).abs() < 1e-9)),
        "{value} for {node} never reached the first destination"
    );
    let text = read_metrics(&listen).await.unwrap();
    assert_eq!(
        metric_in(
            &text,
            "kubelet_push_config_reloads_total{result=\"success\"}"
        ),
        Some(1.0)
    );
    let log = crate::support::stop_agent(agent).await;
    assert!(log.contains("configuration reloaded"), "{log}");
}
