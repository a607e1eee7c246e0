//! Scraping against the real thing: Debian's `prometheus-node-exporter` and the real
//! Prometheus's own `/metrics` (OpenMetrics, since both ask for it first) are scraped by the
//! agent binary, which pushes to that Prometheus, while Prometheus scrapes the same two targets
//! itself under other job names. Whatever Prometheus stored from its own scrapes is the
//! reference: the agent's series must have the same names and label sets (`job`, `instance`
//! and the agent's `node` aside), `up` 1, and the same values for every series whose value did
//! not change between Prometheus's own scrapes.
//!
//! Two differences are by design and left out of the comparison: Prometheus 2.42 stores an
//! OpenMetrics `_created` line as a series of its own, where the agent sends it as the start
//! timestamp of its family's samples (Prometheus 3 with created-timestamp ingestion does the
//! same); and Prometheus's own `/metrics` grows series while the test queries it (a handler's
//! first request), so for that target the metric names are compared, not every label set.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const COLLECTORS: [&str; 8] = [
    "--collector.disable-defaults",
    "--collector.cpu",
    "--collector.meminfo",
    "--collector.loadavg",
    "--collector.uname",
    "--collector.vmstat",
    "--collector.time",
    "--collector.stat",
];

/// Every series of `job` in the 10 s before `at_ms`, keyed by name and labels without `job`,
/// `instance` and `node`, with its raw samples' values.
async fn series_of(prom: &Real, job: &str, at_ms: i64) -> BTreeMap<String, Vec<f64>> {
    series_at(prom, job, at_ms)
        .await
        .into_iter()
        .map(|(k, samples)| (k, samples.into_iter().map(|s| s.1).collect()))
        .collect()
}

/// [`series_of`] with each sample's timestamp (ms).
async fn series_at(prom: &Real, job: &str, at_ms: i64) -> BTreeMap<String, Vec<(i64, f64)>> {
    let result = prom.query(&format!("{{job=\"{job}\"}}[10s]"), at_ms).await;
    let mut out = BTreeMap::new();
    for series in result {
        let mut metric = series["metric"].as_object().unwrap().clone();
        for label in ["job", "instance", "node"] {
            metric.remove(label);
        }
        let values = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, pair[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(series_key(&Value::Object(metric)), values);
    }
    out
}

/// The metric names of `series`, `_created` ones aside, each with when it was first seen in
/// the window.
fn names(series: &BTreeMap<String, Vec<(i64, f64)>>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for (key, samples) in series {
        let name = key.split('{').next().unwrap().to_owned();
        if name.ends_with("_created") {
            continue;
        }
        let first = samples.first().map_or(i64::MAX, |s| s.0);
        let at = out.entry(name).or_insert(first);
        *at = (*at).min(first);
    }
    out
}

#[tokio::test]
async fn exporters_scraped_by_the_agent_match_prometheus_scraping_them_itself() {
    if !available(Kind::Prometheus) {
        return;
    }
    let exporter_bin = "prometheus-node-exporter";
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(exporter_bin).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{exporter_bin} is not installed; .ci/run installs it with apt-get"
        );
        eprintln!("SKIPPED: {exporter_bin} not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exporter_port = ReservedPort::new();
    let exporter_addr = format!("127.0.0.1:{}", exporter_port.port());
    // The port stays held until the exporter binds it: ours is released just before.
    drop(exporter_port);
    let _exporter = Command::new(exporter_bin)
        .arg(format!("--web.listen-address={exporter_addr}"))
        .arg("--web.disable-exporter-metrics")
        .args(COLLECTORS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let config = serde_json::json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "direct-node", "static_configs": [{"targets": [exporter_addr]}]},
            {"job_name": "direct-prom", "static_configs": [{"targets": [SELF_ADDRESS]}]},
        ],
    });
    let prom = Real::launch_prometheus_with(dir.path(), config).await;
    let prom_addr = format!("127.0.0.1:{}", prom.port);
    let node_target = format!("pushed-node=http://{exporter_addr}/metrics");
    let prom_target = format!("pushed-prom=http://{prom_addr}/metrics");
    let (agent, listen) = agent_listening(
        "http://127.0.0.1:9",
        &prom.write_url(),
        &[
            "--kubelet-summary=false",
            "--node-name",
            "e2e-node",
            "--interval",
            "1s",
            "--scrape",
            &node_target,
            "--scrape",
            &prom_target,
        ],
    )
    .await;
    // Five scrapes of each target by each side, stored.
    eventually("five scrapes each", PATIENCE, async || {
        let mut counts = Vec::new();
        for job in ["direct-node", "direct-prom", "pushed-node", "pushed-prom"] {
            let n = prom
                .query(
                    &format!("count_over_time(up{{job=\"{job}\"}}[1m])"),
                    now_ms(),
                )
                .await;
            let count = n
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            counts.push((job, count));
        }
        let ready = counts.iter().all(|(_, count)| *count >= 5.0);
        ready
            .then_some(())
            .ok_or_else(|| format!("{counts:?}\n{}\n{}", agent.log(), prom.log()))
    })
    .await;
    let at = now_ms();
    let direct = series_of(&prom, "direct-node", at).await;
    let pushed = series_of(&prom, "pushed-node", at).await;
    let (d_keys, p_keys): (BTreeSet<&String>, BTreeSet<&String>) =
        (direct.keys().collect(), pushed.keys().collect());
    assert_eq!(
        d_keys.difference(&p_keys).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "series Prometheus has and the agent does not"
    );
    assert_eq!(
        p_keys.difference(&d_keys).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "series the agent has and Prometheus does not"
    );
    assert!(direct.len() > 50, "{} series", direct.len());
    for up in [&direct["up{}"], &pushed["up{}"]] {
        assert!(up.iter().all(|v| *v == 1.0), "{up:?}");
    }
    // Values of the series that stood still through both sides' scrapes of the window
    // (totals, sizes, the uname): the agent must have stored exactly Prometheus's value. One
    // that moved in between (a dirty-page count) is not "unchanged between scrapes".
    let still = |values: &[f64]| values.len() >= 2 && values.windows(2).all(|w| w[0] == w[1]);
    let mut compared = 0;
    for (key, values) in &direct {
        if !still(values) || !still(&pushed[key]) || key.starts_with("scrape_") {
            continue;
        }
        assert_eq!(pushed[key][0], values[0], "{key}");
        compared += 1;
    }
    assert!(compared > 20, "only {compared} stable series");

    // Prometheus's own /metrics: the same metric names, up 1, and its build info equal.
    // A name one side has and the other lacks may only be one Prometheus began to expose in
    // the window's last 3 s (a handler's first request, as this test queries it): the other
    // side's next scrape has it.
    let direct = series_at(&prom, "direct-prom", at).await;
    let pushed = series_at(&prom, "pushed-prom", at).await;
    let (d_names, p_names) = (names(&direct), names(&pushed));
    let one_sided: Vec<(&String, i64)> = d_names
        .iter()
        .filter(|(n, _)| !p_names.contains_key(*n))
        .chain(p_names.iter().filter(|(n, _)| !d_names.contains_key(*n)))
        .map(|(n, first)| (n, *first))
        .filter(|(_, first)| *first < at - 3_000)
        .collect();
    assert_eq!(one_sided, vec![], "metric names of Prometheus's /metrics");
    assert!(d_names.len() > 100, "{} names", d_names.len());
    assert!(pushed["up{}"].iter().all(|s| s.1 == 1.0));
    let build: Vec<&String> = pushed
        .keys()
        .filter(|k| k.starts_with("prometheus_build_info{"))
        .collect();
    assert_eq!(build.len(), 1);
    assert!(direct[build[0]].iter().all(|s| s.1 == 1.0));

    let text = read_metrics(&listen).await.unwrap();
    for job in ["pushed-node", "pushed-prom"] {
        let line = format!("kubelet_push_scrapes_total{{job=\"{job}\",");
        let ok = text
            .lines()
            .filter(|l| l.starts_with(&line) && l.contains("result=\"success\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        assert!(ok >= 5.0, "{job}: {text}");
    }
    let (code, log) = stop_agent(agent).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}
