//! The operator dashboard and alerting rules in `deploy/monitoring/`, against a real
//! Prometheus that scrapes two real `kubelet-push` processes (as the PodMonitor would) and
//! receives one's remote write; and again with nothing scraped, both agents pushing their own
//! metrics (`--self-metrics`) to it, one of them also to a receiver of its own that fails, as
//! an outbound-only node would. Every PromQL expression of the dashboard and every rule must
//! return data, each because the test made its condition happen for real: a kubelet answering
//! 500, a receiver rejecting requests (400) and then refusing them (503), an agent killed. The
//! rules stay silent while all is well, and exactly the right ones fire during the outage.
//!
//! The rules run with every `for:` shortened from minutes to seconds, in a copy that differs
//! from `kubelet-push-rules.yaml` in those lines only; the expressions are the file's own. Their
//! production timings are tested by `promtool test rules` on `kubelet-push-rules.test.yaml`.
//!
//! Static checks without a receiver: the dashboard's structure, the PrometheusRule generated
//! from the rules file (`KUBELET_PUSH_BLESS=1` rewrites it), `promtool check rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use kubelet_push::testkit::receiver::{Receiver, Response};
use kubelet_push::testkit::simulator::Fault;

use super::*;
use crate::support::{AgentProcess, ReservedPort, PATIENCE};

/// Pushes to the Prometheus; its kubelet fails for a while.
const NODE_A: &str = "win-node-a";
/// Pushes to an in-process receiver (another system than the Prometheus, as the remote write
/// target often is) that rejects, then refuses, its requests; killed at the end.
const NODE_B: &str = "win-node-b";
/// The agents' scrape job, as the PodMonitor's `jobLabel` names it.
const SCRAPE_JOB: &str = "kubelet-push";
/// Grafana's `$__rate_interval` is at least four scrape intervals; scrapes here are 1 s apart.
const RATE_INTERVAL: &str = "5s";
const DASHBOARD_RANGE: &str = "10m";

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/monitoring")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(monitoring(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Like `available()`, for a tool that is not a receiver.
fn tool_available(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; .ci/run installs it with apt-get (package prometheus)"
        );
        eprintln!("SKIPPED: {name} not installed (apt-get install prometheus)");
    }
    found
}

// ---------------------------------------------------------------------------------------
// The dashboard, as data.

fn dashboard() -> Value {
    serde_json::from_str(&read("kubelet-push-dashboard.json")).expect("dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

fn variables(d: &Value) -> &Vec<Value> {
    d["templating"]["list"].as_array().expect("templating.list")
}

/// Names of the `$name` / `${name}` / `${name:format}` variables an expression uses.
fn used_variables(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name: String = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').expect("closing brace");
            braced[..end].split(':').next().unwrap().to_owned()
        } else {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        out.insert(name);
    }
    out
}

/// The expression as Prometheus will see it: each variable replaced by its value.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_owned();
    // Longest names first, so no name eats the start of a longer one.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = &values[name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "unsubstituted variable in {out}");
    out
}

/// What the test gives each variable: every node, the custom variables' current values, and
/// Grafana's built-ins sized for 1 s scrapes.
fn variable_values(d: &Value) -> BTreeMap<String, String> {
    let mut values = BTreeMap::from([
        ("__rate_interval".to_owned(), RATE_INTERVAL.to_owned()),
        ("__range".to_owned(), DASHBOARD_RANGE.to_owned()),
        ("__interval".to_owned(), "1s".to_owned()),
    ]);
    for v in variables(d) {
        let name = v["name"].as_str().unwrap().to_owned();
        match v["type"].as_str().unwrap() {
            "datasource" => {}
            // "All" of a multi-value query variable is its allValue.
            "query" => {
                values.insert(name, v["allValue"].as_str().unwrap().to_owned());
            }
            "custom" | "constant" | "textbox" => {
                let current = v["current"]["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("variable {name} has no current value"));
                values.insert(name, current.to_owned());
            }
            other => panic!("variable {name}: type {other} not handled by this test"),
        }
    }
    values
}

struct Target {
    panel: String,
    ref_id: String,
    expr: String,
    instant: bool,
}

fn targets(d: &Value) -> Vec<Target> {
    let values = variable_values(d);
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Target {
                panel: p["title"].as_str().unwrap().to_owned(),
                ref_id: t["refId"].as_str().unwrap().to_owned(),
                expr: substitute(t["expr"].as_str().unwrap(), &values),
                instant: t["instant"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    assert!(d["uid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(d["title"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(d["schemaVersion"].as_i64().unwrap() >= 36, "schemaVersion");

    let mut names = BTreeSet::new();
    let mut datasources = BTreeSet::new();
    for v in variables(&d) {
        let name = v["name"].as_str().unwrap();
        assert!(names.insert(name.to_owned()), "variable {name} twice");
        if v["type"] == "datasource" {
            assert_eq!(v["query"], "prometheus", "{name}");
            datasources.insert(format!("${{{name}}}"));
        }
    }
    assert!(datasources.contains("${datasource}"), "{datasources:?}");
    let node = variables(&d).iter().find(|v| v["name"] == "node").unwrap();
    assert_eq!(node["type"], "query");
    assert_eq!(node["multi"], true);
    assert_eq!(node["includeAll"], true);
    assert_eq!(node["allValue"], ".*");
    assert!(datasources.contains(node["datasource"]["uid"].as_str().unwrap()));

    let builtins = ["__rate_interval", "__range", "__interval"];
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    let mut exprs = 0;
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap();
        let id = p["id"].as_i64().unwrap();
        assert!(
            id > 0 && ids.insert(id),
            "panel id {id} ({title}) not unique"
        );
        assert!(titles.insert(title), "panel title {title} twice");
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap());
        assert!(
            x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24,
            "{title}: {g}"
        );
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title.to_owned(), [x, y, w, h]));
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}"
        );
        let ds = &p["datasource"];
        assert_eq!(ds["type"], "prometheus", "{title}");
        let uid = ds["uid"].as_str().unwrap();
        assert!(datasources.contains(uid), "{title}: datasource {uid}");
        let ts = p["targets"].as_array().expect("targets");
        assert!(!ts.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in ts {
            assert_eq!(&t["datasource"], ds, "{title}: a target's datasource");
            let r = t["refId"].as_str().unwrap();
            assert!(refs.insert(r), "{title}: refId {r} twice");
            let expr = t["expr"].as_str().unwrap();
            assert!(!expr.trim().is_empty(), "{title} {r}: empty expr");
            for v in used_variables(expr) {
                assert!(
                    names.contains(&v) || builtins.contains(&v.as_str()),
                    "{title} {r}: unknown variable ${v}"
                );
            }
            exprs += 1;
        }
    }
    // Substitution leaves nothing unresolved.
    assert_eq!(targets(&d).len(), exprs);
    // What the brief promises, by metric.
    let all: String = targets(&d).iter().map(|t| t.expr.clone() + "\n").collect();
    for metric in [
        "kubelet_push_polls_total",
        "kubelet_push_poll_duration_seconds_bucket",
        "kubelet_push_last_successful_send_timestamp_seconds",
        "kubelet_push_last_successful_poll_timestamp_seconds",
        "kubelet_push_buffer_bytes",
        "kubelet_push_buffer_requests",
        "kubelet_push_samples_pending",
        "kubelet_push_samples_dropped_total",
        "kubelet_push_samples_sent_total",
        "kubelet_push_retries_total",
        "kubelet_push_requests_total",
        "kubelet_push_build_info",
        "up{job=\"kubelet\"",
        "up{job=\"kubelet-push\"",
    ] {
        assert!(all.contains(metric), "no panel shows {metric}");
    }
}

// ---------------------------------------------------------------------------------------
// The rules.

/// `prometheusrule.yaml` as it must be: its own lines up to `spec:`, then the rules file's
/// from `groups:` on, indented under `spec:`.
fn generated_prometheus_rule(current: &str, rules: &str) -> String {
    let mut out = String::new();
    for line in current.lines() {
        out.push_str(line);
        out.push('\n');
        if line == "spec:" {
            break;
        }
    }
    assert!(
        out.ends_with("spec:\n"),
        "prometheusrule.yaml has no `spec:` line"
    );
    let from = rules
        .lines()
        .position(|l| l == "groups:")
        .expect("rules file has `groups:`");
    for line in rules.lines().skip(from) {
        if !line.is_empty() {
            out.push_str("  ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[test]
fn prometheus_rule_carries_the_rules_file() {
    let path = monitoring("prometheusrule.yaml");
    let current = read("prometheusrule.yaml");
    let want = generated_prometheus_rule(&current, &read("kubelet-push-rules.yaml"));
    if std::env::var_os("KUBELET_PUSH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        current == want,
        "prometheusrule.yaml differs from kubelet-push-rules.yaml; edit the rules file, then \
         KUBELET_PUSH_BLESS=1 cargo test --test it e2e::dashboard"
    );
    assert!(current.contains("kind: PrometheusRule\n"));
    assert!(current.contains("apiVersion: monitoring.coreos.com/v1\n"));
}

#[test]
fn rules_pass_promtool() {
    if !tool_available("promtool") {
        return;
    }
    for args in [
        ["check", "rules", "kubelet-push-rules.yaml"],
        ["test", "rules", "kubelet-push-rules.test.yaml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(monitoring(""))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
        assert!(text.contains("SUCCESS"), "promtool {args:?}:\n{text}");
    }
}

/// The rules file with each `for: <n>m` turned into `for: <n>s`, and how many were.
fn minutes_as_seconds(rules: &str) -> (String, usize) {
    let mut out = String::new();
    let mut changed = 0;
    for line in rules.lines() {
        match line.trim_start().strip_prefix("for: ") {
            Some(d) => {
                let minutes = d
                    .strip_suffix('m')
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or_else(|| panic!("`{line}`: write every for: in whole minutes"));
                let indent = &line[..line.len() - line.trim_start().len()];
                out.push_str(&format!("{indent}for: {minutes}s\n"));
                changed += 1;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    (out, changed)
}

// ---------------------------------------------------------------------------------------
// Against the real Prometheus.

/// Polls `check` until it holds; fails after `timeout`.
async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, timeout, async || {
        check().await.then_some(()).ok_or_else(String::new)
    })
    .await;
}

/// Polls the active alerts until `want` holds of them; fails after `timeout`, showing them.
async fn wait_for_alerts(
    prom: &Real,
    what: &str,
    timeout: Duration,
    want: impl Fn(&BTreeSet<(String, String, String)>) -> bool,
) {
    eventually(what, timeout, async || {
        let active = alerts(prom).await;
        want(&active)
            .then_some(())
            .ok_or_else(|| format!("active alerts: {active:?}"))
    })
    .await;
}

/// Active alerts as (name, node or "", state).
async fn alerts(prom: &Real) -> BTreeSet<(String, String, String)> {
    let data = prom.api("/api/v1/alerts", &[]).await;
    data["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let l = &a["labels"];
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (s(&l["alertname"]), s(&l["node"]), s(&a["state"]))
        })
        .collect()
}

fn firing(set: &BTreeSet<(String, String, String)>) -> BTreeSet<(String, String)> {
    set.iter()
        .filter(|(_, _, state)| state == "firing")
        .map(|(n, node, _)| (n.clone(), node.clone()))
        .collect()
}

fn named(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(a, n)| (a.to_string(), n.to_string()))
        .collect()
}

/// Every value of every series of a range result.
fn numbers(series: &Value) -> Vec<f64> {
    series["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
        .collect()
}

/// The series of `result` whose `label` is `value`, with all their values.
fn values_where(result: &[Value], label: &str, value: &str) -> Vec<f64> {
    result
        .iter()
        .filter(|s| s["metric"][label] == value)
        .flat_map(numbers)
        .collect()
}

fn scrape_target(address: &str, node: &str) -> Value {
    serde_json::json!({
        "targets": [address],
        // What the PodMonitor's relabelling and the operator add.
        "labels": {"node": node, "namespace": "kubelet-push", "pod": format!("kubelet-push-{node}")},
    })
}

/// Writes the agents' scrape targets where Prometheus's file discovery reads them: whole, by a
/// rename, so Prometheus never reads half a file.
fn write_targets(path: &Path, targets: &[(&str, &str)]) {
    let list: Vec<Value> = targets
        .iter()
        .map(|(address, node)| scrape_target(address, node))
        .collect();
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// The longest `for:` of a rules file, in seconds (`for: 15s` as the test's copy has them).
fn longest_for_s(rules: &str) -> u64 {
    rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("for: "))
        .map(|d| {
            d.strip_suffix('s')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("for: {d}: not in seconds"))
        })
        .max()
        .expect("a for:")
}

/// The time (Unix seconds) of the rule group evaluated longest ago: every group has been
/// evaluated at or after it. From Prometheus's own metrics, so it is the evaluations' time,
/// however late a loaded machine runs them.
async fn rules_evaluated_at(prom: &Real) -> f64 {
    let text = prom.self_metrics().await;
    text.lines()
        .filter(|l| l.starts_with("prometheus_rule_group_last_evaluation_timestamp_seconds{"))
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap();
            value.parse::<f64>().unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .reduce(f64::min)
        .unwrap_or_else(|| panic!("no rule group evaluation times:\n{text}"))
}

/// How the agents' own metrics reach the Prometheus the dashboard and rules read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// It scrapes their `/metrics` as the PodMonitor would; they push the node's data only
    /// (`--self-metrics=false`).
    Scraped,
    /// They push them with the node's data (`--self-metrics`) and nothing is scraped: the
    /// outbound-only node. B pushes to its failing receiver and to the Prometheus, which
    /// carries B's alarms about the other destination.
    Pushed,
}

#[tokio::test]
async fn every_panel_and_rule_has_data_and_the_outage_fires_send_stalled() {
    the_dashboard_and_rules_work(Mode::Scraped).await;
}

#[tokio::test]
async fn every_panel_and_rule_has_data_when_the_agents_push_their_own_metrics() {
    the_dashboard_and_rules_work(Mode::Pushed).await;
}

async fn the_dashboard_and_rules_work(mode: Mode) {
    if !available(Kind::Prometheus) {
        return;
    }
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();

    // The rules as Prometheus will run them: the file's own, with minutes of `for:` as seconds.
    let original = read("kubelet-push-rules.yaml");
    let (fast, changed) = minutes_as_seconds(&original);
    let alert_rules = original
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert: "))
        .count();
    assert_eq!(changed, alert_rules, "one for: per alerting rule");
    for (a, b) in original.lines().zip(fast.lines()) {
        assert!(
            a == b || (a.trim_start().starts_with("for: ") && b.trim_start().starts_with("for: ")),
            "the copy differs beyond for: `{a}` / `{b}`"
        );
    }
    assert_eq!(original.lines().count(), fast.lines().count());
    let rules_copy = dir.path().join("kubelet-push-rules.yaml");
    std::fs::write(&rules_copy, &fast).unwrap();

    let kubelet_a = crate::support::simulated_kubelet(5, 1).await;
    let kubelet_b = crate::support::simulated_kubelet(5, 2).await;
    let receiver = Receiver::start().await.unwrap();
    // Before the agents run, Prometheus scrapes two addresses where nothing listens (bound,
    // not listening: refused, as a pod that is not running); once the agents have bound their
    // own ports and said which, the file Prometheus discovers its targets in names those.
    let (absent_a, absent_b) = (ReservedPort::new(), ReservedPort::new());
    let targets_file = dir.path().join("targets.json");
    write_targets(
        &targets_file,
        &[
            (&format!("127.0.0.1:{}", absent_a.port()), NODE_A),
            (&format!("127.0.0.1:{}", absent_b.port()), NODE_B),
        ],
    );
    let mut config = serde_json::json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules_copy],
    });
    let prom = match mode {
        Mode::Scraped => {
            config["scrape_configs"] = serde_json::json!([{
                "job_name": SCRAPE_JOB,
                // The most a 1 s interval allows; a scrape that a loaded machine makes slower
                // is `up` 0 for once, which the healthy phase below allows for.
                "scrape_timeout": "1s",
                "file_sd_configs": [{"files": [&targets_file], "refresh_interval": "1s"}],
            }]);
            Real::launch_prometheus_with(dir.path(), config).await
        }
        // A pushed series that stops gets no stale marker (a scrape that fails writes one):
        // it is seen for the lookback, 5 minutes by default, 10 s here, as the rules' `for:`
        // minutes are seconds.
        Mode::Pushed => {
            Real::launch_prometheus_with_flags(dir.path(), config, &["--query.lookback-delta=10s"])
                .await
        }
    };
    let p = &prom;
    let t0 = now_ms();

    // Rules loaded from the copy, one per alert, none of them a surprise to this test.
    let groups = prom.api("/api/v1/rules", &[]).await["groups"].clone();
    let mut rules: Vec<(String, String)> = Vec::new();
    for g in groups.as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["type"], "alerting", "{r}");
            rules.push((
                r["name"].as_str().unwrap().to_owned(),
                r["query"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let names: BTreeSet<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "KubeletPushAbsent",
            "KubeletPushAgentDown",
            "KubeletPushAgentSilent",
            "KubeletPushKubeletDown",
            "KubeletPushPollsFailing",
            "KubeletPushSamplesDropped",
            "KubeletPushSendStalled",
        ]),
        "a rule this test does not drive (or one gone)"
    );

    // Before the agents run: both targets down, no agent metrics at all.
    if mode == Mode::Scraped {
        wait_for("both targets scraped as down", PATIENCE, || async move {
            p.query(&format!("up{{job=\"{SCRAPE_JOB}\"}} == 0"), now_ms())
                .await
                .len()
                == 2
        })
        .await;
    }
    assert_eq!(
        prom.query("absent(kubelet_push_build_info)", now_ms())
            .await
            .len(),
        1
    );

    let common = ONE_SECOND_POLLS;
    let own = match mode {
        Mode::Scraped => "--self-metrics=false",
        Mode::Pushed => "--self-metrics",
    };
    let prom_url = prom.write_url();
    let args_a: Vec<&str> = ["--node-name", NODE_A, own]
        .into_iter()
        .chain(common)
        .collect();
    let mut args_b: Vec<&str> = ["--node-name", NODE_B, own]
        .into_iter()
        .chain(common)
        .collect();
    if mode == Mode::Pushed {
        args_b.extend(["--remote-url", prom_url.as_str()]);
    }
    let (child_a, listen_a) = AgentProcess::listening(&mut agent_command(
        &kubelet_a.url(),
        &prom.write_url(),
        &args_a,
    ))
    .await;
    let (mut child_b, listen_b) = AgentProcess::listening(&mut agent_command(
        &kubelet_b.url(),
        &receiver.url(),
        &args_b,
    ))
    .await;
    write_targets(&targets_file, &[(&listen_a, NODE_A), (&listen_b, NODE_B)]);
    // Which address was which, for a failure to name: an alert on an absent address is the
    // start-up's, one on an agent's is a scrape that failed while the agent ran.
    let addresses = format!(
        "absent before the agents: 127.0.0.1:{} ({NODE_A}), 127.0.0.1:{} ({NODE_B}); \
         agents: {listen_a} ({NODE_A}), {listen_b} ({NODE_B})",
        absent_a.port(),
        absent_b.port()
    );
    drop((absent_a, absent_b));

    // Warm-up: both agents scraped after a delivery, A's pushed `up` stored.
    wait_for(
        "both agents delivering and scraped",
        PATIENCE,
        || async move {
            p.query(
                "sum by (node) (kubelet_push_samples_sent_total) > 0",
                now_ms(),
            )
            .await
            .len()
                == 2
                && p.query(
                    &format!("up{{job=\"kubelet\",node=\"{NODE_A}\"}} == 1"),
                    now_ms(),
                )
                .await
                .len()
                    == 1
        },
    )
    .await;
    // Healthy: no alert fires. Not "no expression ever has a value": on a loaded machine a
    // healthy fleet has hiccups that are no fault of the rules (a scrape over its 1 s timeout
    // is `up` 0 once, KubeletPushAgentDown's condition; a poll a few seconds late is
    // KubeletPushPollsFailing's), and absorbing them is what every rule's `for:` is for (5
    // minutes in deploy/monitoring, 5 s in this copy; KubeletPushSamplesDropped's 0, so any
    // drop fires at once): such an alert is pending for an evaluation or two and never reaches
    // Alertmanager. A rule that is wrong on a healthy fleet is true at every evaluation, so it
    // fires once its `for:` has passed. Hence: the start-up's alerts (the absent targets' down)
    // resolve first, and then, for evaluations that span more than the longest `for:`
    // (measured on Prometheus's evaluation clock, so a slow machine only takes longer), not one
    // alert fires. Pending ones may come and go.
    // Resolved means inactive, not merely "not firing": the absent targets' KubeletPushAgentDown
    // may still be pending here, and would fire inside the healthy window (seen once in CI).
    wait_for_alerts(p, "the start-up's alerts resolved", PATIENCE, |a| {
        a.is_empty()
    })
    .await;
    let healthy_start = now_ms();
    let span_s = longest_for_s(&fast) + 2;
    wait_for(
        "rules evaluated for the longest for: on a healthy fleet",
        PATIENCE,
        || async move {
            rules_evaluated_at(p).await * 1000.0 >= (healthy_start + span_s as i64 * 1000) as f64
        },
    )
    .await;
    let healthy_end = now_ms();
    // Every firing evaluation writes an ALERTS sample; the raw samples of the window, not a
    // range query's steps, so not one is missed. Whole seconds inside [healthy_start, end].
    let window_s = ((healthy_end - healthy_start) / 1000) as u64;
    let fired = prom
        .raw("ALERTS{alertstate=\"firing\"}", healthy_end, window_s)
        .await;
    let active = alerts(&prom).await;
    if !fired.is_empty() || !firing(&active).is_empty() {
        // What Prometheus saw of each target over the window, so the failure says whether a
        // scrape failed (and how slow the scrapes were) or an alert outlived its target.
        let mut seen = String::new();
        for metric in ["up", "scrape_duration_seconds"] {
            let selector = format!("{metric}{{job=\"{SCRAPE_JOB}\"}}");
            let raw = prom.raw(&selector, healthy_end, window_s + 10).await;
            seen.push_str(&format!("\n{metric}: {raw:?}"));
        }
        panic!(
            "alerts fired on a healthy fleet: {fired:?}\nactive now: {active:?}\n{addresses}\
             \nwindow: {healthy_start}..{healthy_end} ms{seen}"
        );
    }

    // B's receiver rejects four requests: their samples are dropped, reason "rejected".
    for _ in 0..4 {
        receiver.push_response(Response::status(400).with_body("out of order sample"));
    }
    let r = &receiver;
    wait_for("four requests rejected", PATIENCE, || async move {
        r.requests().iter().filter(|q| q.status == 400).count() == 4
    })
    .await;

    // The outage: A's kubelet answers 500, B's receiver 503 to everything.
    let outage_started = Instant::now();
    kubelet_a.set_fault(Fault::Status(500));
    for _ in 0..10_000 {
        receiver.push_response(Response::status(503).with_body("overloaded"));
    }
    let expected = named(&[
        ("KubeletPushSendStalled", NODE_B),
        ("KubeletPushSamplesDropped", NODE_B),
        ("KubeletPushPollsFailing", NODE_A),
        ("KubeletPushKubeletDown", NODE_A),
    ]);
    let want = &expected;
    wait_for_alerts(
        p,
        "the outage's alerts firing",
        Duration::from_secs(90),
        |a| firing(a).is_superset(want),
    )
    .await;
    let fired_after = outage_started.elapsed();
    let active = alerts(&prom).await;
    assert_eq!(firing(&active), expected, "{active:?}");
    // The firing alert as Alertmanager would get it: labels and rendered annotations.
    let data = prom.api("/api/v1/alerts", &[]).await;
    let stalled = data["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "KubeletPushSendStalled")
        .unwrap();
    assert_eq!(stalled["labels"]["severity"], "warning");
    assert_eq!(stalled["labels"]["url"], receiver.url());
    if mode == Mode::Scraped {
        assert_eq!(stalled["labels"]["pod"], format!("kubelet-push-{NODE_B}"));
    }
    let summary = stalled["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!(
            "kubelet-push on {NODE_B} has delivered nothing for "
        )),
        "{summary}"
    );
    let lag: f64 = stalled["value"].as_str().unwrap().parse().unwrap();
    assert!(lag > 6.0, "lag {lag}");

    // Recovery: the outage's alerts resolve (none of them is active, not even pending); only
    // the drop stays (its window is 15 minutes). Another alert pending for a hiccup, as in the
    // healthy phase, is not the outage's.
    kubelet_a.set_fault(Fault::None);
    receiver.clear_responses();
    let dropped_only = named(&[("KubeletPushSamplesDropped", NODE_B)]);
    let (want, outage) = (&dropped_only, &expected);
    wait_for_alerts(p, "the outage's alerts resolved", PATIENCE, |a| {
        firing(a) == *want
            && a.iter().all(|(name, node, _)| {
                want.contains(&(name.clone(), node.clone()))
                    || !outage.contains(&(name.clone(), node.clone()))
            })
    })
    .await;

    // B is killed: it falls silent, and, scraped, its target is down; those fire for it alone.
    child_b.child.start_kill().unwrap();
    child_b.child.wait().await.unwrap();
    let mut down = vec![
        ("KubeletPushSamplesDropped", NODE_B),
        ("KubeletPushAgentSilent", NODE_B),
    ];
    if mode == Mode::Scraped {
        down.push(("KubeletPushAgentDown", NODE_B));
    }
    let down = named(&down);
    let want = &down;
    wait_for_alerts(p, "B's silence firing", PATIENCE, |a| firing(a) == *want).await;
    let end = now_ms();

    // Every rule's expression had a value at some point of the run; but a pushed `up` is
    // never 0: KubeletPushAgentDown is the scrape's (KubeletPushAgentSilent stands for it).
    for (name, query) in &rules {
        if mode == Mode::Pushed && name == "KubeletPushAgentDown" {
            continue;
        }
        let result = prom.query_range(query, t0, end, 0.5).await;
        assert!(!result.is_empty(), "rule {name} never had a value: {query}");
    }

    // Every panel's every target had data, as Grafana would query it.
    let d = dashboard();
    let mut empty = Vec::new();
    let mut results = BTreeMap::new();
    for t in targets(&d) {
        let result = if t.instant {
            prom.query(&t.expr, end).await
        } else {
            prom.query_range(&t.expr, t0, end, 1.0).await
        };
        if result.is_empty() {
            empty.push(format!("{} {}: {}", t.panel, t.ref_id, t.expr));
        }
        results.insert((t.panel, t.ref_id), result);
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    let panel = |title: &str| -> &Vec<Value> {
        results
            .get(&(title.to_owned(), "A".to_owned()))
            .unwrap_or_else(|| panic!("no panel {title}"))
    };
    // And the data says what happened.
    let codes: BTreeSet<&str> = panel("Remote write requests by code")
        .iter()
        .map(|s| s["metric"]["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.is_superset(&BTreeSet::from(["204", "400", "503"])),
        "{codes:?}"
    );
    let rejected = values_where(panel("Samples dropped by reason"), "reason", "rejected");
    assert!(rejected.iter().any(|v| *v > 0.0), "{rejected:?}");
    let failed_polls = values_where(panel("Failed polls per node"), "node", NODE_A);
    assert!(failed_polls.iter().any(|v| *v > 0.0), "{failed_polls:?}");
    let up_a = values_where(panel("Kubelet up, as pushed"), "node", NODE_A);
    assert!(up_a.contains(&0.0) && up_a.contains(&1.0), "{up_a:?}");
    let retries = values_where(panel("Retries per node"), "node", NODE_B);
    assert!(retries.iter().any(|v| *v > 0.0), "{retries:?}");
    let lag_b = values_where(panel("Lag of the last successful send"), "node", NODE_B);
    assert!(lag_b.iter().any(|v| *v > 6.0), "{lag_b:?}");
    // Scraped, targets that are down count 0; pushed, an agent is there or not.
    let agents_up: Vec<f64> = panel("Agents scraped").iter().flat_map(numbers).collect();
    assert!(
        agents_up.contains(&2.0) && (mode == Mode::Pushed || agents_up.contains(&0.0)),
        "{agents_up:?}"
    );
    let versions = panel("Agents by node");
    assert!(
        versions
            .iter()
            .any(|s| s["metric"]["version"] == env!("CARGO_PKG_VERSION")),
        "{versions:?}"
    );

    // The node variable lists both agents' nodes, through the label API that Grafana's
    // label_values() uses.
    for v in variables(&d).iter().filter(|v| v["type"] == "query") {
        let def = v["definition"].as_str().unwrap();
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {def}", v["name"]));
        let (metric, label) = inner.split_once(',').unwrap();
        let data = prom
            .api(
                &format!("/api/v1/label/{}/values", label.trim()),
                &[
                    ("match[]", metric.trim()),
                    ("start", &(t0 / 1000).to_string()),
                    ("end", &(end / 1000 + 1).to_string()),
                ],
            )
            .await;
        let got: BTreeSet<&str> = data
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(got, BTreeSet::from([NODE_A, NODE_B]), "{def}");
    }

    let (code, log) = stop_agent(child_a).await;
    assert_eq!(code, Some(0), "{log}");
    eprintln!(
        "dashboard e2e ({mode:?}): alerts fired {:.1} s into the outage; whole test {:.1} s",
        fired_after.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}
