//! kube-prometheus's Compute Resources dashboards ("Kubernetes / Compute Resources / Pod",
//! "... / Namespace (Pods)" and "... / Cluster", from
//! `tests/fixtures/kube-prometheus/grafana-dashboardDefinitions.yaml`) on what the agent pushed:
//! every panel target's `expr`, filled in as Grafana fills it in, run as an instant query on one
//! Prometheus of [`super::kube_prometheus`]'s harness (its rules loaded, the Windows capture and
//! the 1.34 capture pushed by two agents from fixture kubelets with their `/pods`, a
//! `kube_pod_info` stand-in), for every pod and namespace of both captures and the cluster. The
//! 1.34 capture is the control: the panels empty for the Windows pods because the Windows
//! summary lacks a field (rss, swap) show its pods, so the query works and the gap is the data.
//!
//! Every series name the three dashboards read is classified in [`SOURCES`], with the reason:
//! - sent by kubelet-push (or recorded by the rules from what it sends): the expression must
//!   return, for every group (container, pod, namespace) the summary has the field for, the value
//!   the summary gives, with nothing missing and nothing extra;
//! - kube-state-metrics' requests and limits, pushed by the test as stand-ins with made-up values
//!   (the Windows capture's pods request no cpu nor memory, only a VPC address), together with
//!   `kube_pod_status_phase` which the rules join them with: so the panels' joins of our series
//!   with them (usage / requests) are checked value by value;
//! - series kubelet-push cannot send (the summary has no source: page cache, CFS throttling,
//!   packet counts, block-device IO) and other exporters' series the test does not stand in for
//!   (node-exporter, resource quotas, owners, node allocatable): every expression reading one must
//!   return nothing, so the list cannot go stale (a series appearing makes the test fail, as does
//!   a name read by no dashboard or by a dashboard but not listed).
//!
//! [`WINDOWS_PANELS`] then says, panel by panel, which panels show the Windows pods from our
//! series, and the test fails if one of them shows nothing (or one not listed shows them).
//!
//! Grafana's substitutions: `$cluster` is empty (kube-prometheus sets `cluster` only in
//! multi-cluster setups; the variable's query, `label_values(up{job="kube-state-metrics"},
//! cluster)`, then finds no value, and `cluster=""` matches series without the label, which the
//! rules' `by (cluster, ...)` keep without it); `$namespace` and `$pod` as they are (single-value
//! variables are not regex-escaped); `$__rate_interval` is Grafana's
//! `max($__interval + scrape interval, 4 × scrape interval)` with the datasource's default scrape
//! interval of 15 s: 75 s in the panels whose minimum interval is `1m` (then `$__interval` over
//! the dashboards' default hour), 60 s in the others. Either holds three or four of the samples
//! the fixture kubelets space `STEP_S` (20 s) apart, so `rate` and `irate` are the counters' slope
//! exactly. Grafana runs the time-series targets as range queries; one instant query at the end
//! of the data checks the same expression on the same samples.

use std::collections::{BTreeMap, BTreeSet};

use super::kube_prometheus::{
    assert_close, evaluated_after, fixture_path, label, node, prometheus, query_time, read,
    rules_file, wait_caught_up, Container, Key, Node, StandIns, HISTORY_S, LINUX_PODS,
    LINUX_SUMMARY, RATE, STEP_S, WINDOWS_PODS, WINDOWS_SUMMARY,
};
use super::*;

/// The dashboards checked: their key in the ConfigMaps and their title.
const DASHBOARDS: [(&str, &str); 3] = [
    (
        "k8s-resources-pod.json",
        "Kubernetes / Compute Resources / Pod",
    ),
    (
        "k8s-resources-namespace.json",
        "Kubernetes / Compute Resources / Namespace (Pods)",
    ),
    (
        "k8s-resources-cluster.json",
        "Kubernetes / Compute Resources / Cluster",
    ),
];

/// Grafana's default scrape interval of a Prometheus datasource (kube-prometheus sets none).
const SCRAPE_INTERVAL_S: u64 = 15;

/// What one series name measures, per unit (a container, or a pod's network interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    /// The CPU counter's rate: every container.
    Cpu,
    /// A memory or swap field of the summary: the containers that have it.
    Memory(&'static str),
    /// A pod's network byte counter's rate (`rxBytes` or `txBytes`): every interface that has it.
    Network(&'static str),
    /// kube-state-metrics' request (`limit` false) or limit of the app containers (not init
    /// containers, which have a family of their own); `resource` `None`: the selector's
    /// `resource` matcher says which.
    Resource {
        limit: bool,
        resource: Option<&'static str>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Source {
    /// kubelet-push's series, or a recording rule over them.
    Agent(Quantity),
    /// kube-state-metrics' series (or a rule over them), pushed by the test.
    StandIn(Quantity),
    /// The summary has no source for it: kubelet-push cannot send it.
    NotInSummary(&'static str),
    /// Another exporter's; the test pushes no stand-in.
    OtherExporter(&'static str),
}

const PAGE_CACHE: &str = "page cache: the summary's memory section has none";
const THROTTLING: &str = "CFS throttling: the summary's cpu section has none";
const PACKETS: &str = "packet counts: the summary's network section has bytes and errors only";
const BLOCK_IO: &str = "block-device IO: the summary has filesystem usage, not reads or writes";

/// kube-state-metrics' requests (`limit` false) or limits, of `resource` or of the one its
/// selector's `resource` matcher names.
const fn ksm(limit: bool, resource: Option<&'static str>) -> Source {
    Source::StandIn(Quantity::Resource { limit, resource })
}

const fn memory(field: &'static str) -> Source {
    Source::Agent(Quantity::Memory(field))
}

const fn missing(why: &'static str) -> Source {
    Source::NotInSummary(why)
}

const fn elsewhere(why: &'static str) -> Source {
    Source::OtherExporter(why)
}

const CPU: Option<&str> = Some("cpu");
const MEMORY: Option<&str> = Some("memory");

/// Every series name the three dashboards read, and where it comes from.
#[rustfmt::skip]
const SOURCES: &[(&str, Source)] = &[
    ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m", Source::Agent(Quantity::Cpu)),
    ("container_memory_working_set_bytes", memory("workingSetBytes")),
    ("container_memory_rss", memory("rssBytes")),
    ("container_memory_swap", memory("swapUsageBytes")),
    ("container_network_receive_bytes_total", Source::Agent(Quantity::Network("rxBytes"))),
    ("container_network_transmit_bytes_total", Source::Agent(Quantity::Network("txBytes"))),
    ("kube_pod_container_resource_requests", ksm(false, None)),
    ("kube_pod_container_resource_limits", ksm(true, None)),
    ("cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests", ksm(false, CPU)),
    ("cluster:namespace:pod_cpu:active:kube_pod_container_resource_limits", ksm(true, CPU)),
    ("cluster:namespace:pod_memory:active:kube_pod_container_resource_requests", ksm(false, MEMORY)),
    ("cluster:namespace:pod_memory:active:kube_pod_container_resource_limits", ksm(true, MEMORY)),
    ("namespace_cpu:kube_pod_container_resource_requests:sum", ksm(false, CPU)),
    ("namespace_cpu:kube_pod_container_resource_limits:sum", ksm(true, CPU)),
    ("namespace_memory:kube_pod_container_resource_requests:sum", ksm(false, MEMORY)),
    ("namespace_memory:kube_pod_container_resource_limits:sum", ksm(true, MEMORY)),
    ("container_memory_cache", missing(PAGE_CACHE)),
    ("container_cpu_cfs_throttled_periods_total", missing(THROTTLING)),
    ("container_cpu_cfs_periods_total", missing(THROTTLING)),
    ("container_network_receive_packets_total", missing(PACKETS)),
    ("container_network_transmit_packets_total", missing(PACKETS)),
    ("container_network_receive_packets_dropped_total", missing(PACKETS)),
    ("container_network_transmit_packets_dropped_total", missing(PACKETS)),
    ("container_fs_reads_total", missing(BLOCK_IO)),
    ("container_fs_writes_total", missing(BLOCK_IO)),
    ("container_fs_reads_bytes_total", missing(BLOCK_IO)),
    ("container_fs_writes_bytes_total", missing(BLOCK_IO)),
    ("kube_resourcequota", elsewhere("kube-state-metrics' ResourceQuotas")),
    ("kube_pod_owner", elsewhere("kube-state-metrics' pod owners")),
    ("namespace_workload_pod:kube_pod_owner:relabel", elsewhere("recorded from kube-state-metrics' pod owners")),
    ("kube_node_status_allocatable", elsewhere("kube-state-metrics' node allocatable")),
    ("cluster:node_cpu:ratio_rate5m", elsewhere("recorded from node-exporter")),
    (":node_memory_MemAvailable_bytes:sum", elsewhere("recorded from node-exporter")),
    ("node_memory_MemTotal_bytes", elsewhere("node-exporter")),
];

/// Per dashboard, its panels by title: whether they show the Windows pods (their pod, their
/// namespace, or their namespace's row) from kubelet-push's series. Those with `false` are
/// empty for them or show only kube-state-metrics' values (the printed table says which target
/// is empty and why).
const WINDOWS_PANELS: [(&str, &[(&str, bool)]); 3] = [
    (
        "Kubernetes / Compute Resources / Pod",
        &[
            ("CPU Usage", true),
            ("CPU Throttling", false),
            ("CPU Quota", true),
            ("Memory Usage (WSS)", true),
            ("Memory Quota", true),
            ("Receive Bandwidth", true),
            ("Transmit Bandwidth", true),
            ("Rate of Received Packets", false),
            ("Rate of Transmitted Packets", false),
            ("Rate of Received Packets Dropped", false),
            ("Rate of Transmitted Packets Dropped", false),
            ("IOPS (Pod)", false),
            ("ThroughPut (Pod)", false),
            ("IOPS (Containers)", false),
            ("ThroughPut (Containers)", false),
            ("Current Storage IO", false),
        ],
    ),
    (
        "Kubernetes / Compute Resources / Namespace (Pods)",
        &[
            ("CPU Utilisation (from requests)", true),
            ("CPU Utilisation (from limits)", true),
            ("Memory Utilisation (from requests)", true),
            ("Memory Utilisation (from limits)", true),
            ("CPU Usage", true),
            ("CPU Quota", true),
            ("Memory Usage (w/o cache)", true),
            ("Memory Quota", true),
            ("Current Network Usage", true),
            ("Receive Bandwidth", true),
            ("Transmit Bandwidth", true),
            ("Rate of Received Packets", false),
            ("Rate of Transmitted Packets", false),
            ("Rate of Received Packets Dropped", false),
            ("Rate of Transmitted Packets Dropped", false),
            ("IOPS(Reads+Writes)", false),
            ("ThroughPut(Read+Write)", false),
            ("Current Storage IO", false),
        ],
    ),
    (
        "Kubernetes / Compute Resources / Cluster",
        &[
            ("CPU Utilisation", false),
            ("CPU Requests Commitment", false),
            ("CPU Limits Commitment", false),
            ("Memory Utilisation", false),
            ("Memory Requests Commitment", false),
            ("Memory Limits Commitment", false),
            ("CPU Usage", true),
            ("CPU Quota", true),
            // Memory by namespace is rss, which the Windows summary lacks.
            ("Memory", false),
            ("Memory Requests by Namespace", false),
            ("Current Network Usage", true),
            ("Receive Bandwidth", true),
            ("Transmit Bandwidth", true),
            ("Average Container Bandwidth by Namespace: Received", true),
            (
                "Average Container Bandwidth by Namespace: Transmitted",
                true,
            ),
            ("Rate of Received Packets", false),
            ("Rate of Transmitted Packets", false),
            ("Rate of Received Packets Dropped", false),
            ("Rate of Transmitted Packets Dropped", false),
            ("IOPS(Reads+Writes)", false),
            ("ThroughPut(Read+Write)", false),
            ("Current Storage IO", false),
        ],
    ),
];

/// One panel target of a dashboard.
#[derive(Debug, Clone)]
struct Target {
    panel: String,
    /// The panel's minimum interval (`"1m"`), which Grafana's `$__interval` does not go below.
    min_interval: Option<String>,
    expr: String,
}

/// The dashboard JSON under `key: |-` in the ConfigMap list: the lines below it that are
/// indented deeper (JSON needs no dedenting).
fn dashboard(definitions: &str, key: &str) -> Value {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let head = format!("{key}: |-");
    let mut lines = definitions.lines().skip_while(|l| l.trim() != head);
    let first = lines.next().unwrap_or_else(|| panic!("no {key}"));
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > indent(first))
        .collect();
    serde_json::from_str(&body.join("\n")).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Every target of every panel, rows' nested panels included.
fn targets(panels: &Value, out: &mut Vec<Target>) {
    for p in panels.as_array().into_iter().flatten() {
        targets(&p["panels"], out);
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Target {
                panel: p["title"].as_str().expect("panel title").to_owned(),
                min_interval: p["interval"].as_str().map(str::to_owned),
                expr: t["expr"].as_str().expect("target expr").to_owned(),
            });
        }
    }
}

fn seconds(interval: &str) -> u64 {
    if let Some(m) = interval.strip_suffix('m') {
        m.parse::<u64>().unwrap() * 60
    } else {
        interval.strip_suffix('s').unwrap().parse().unwrap()
    }
}

/// `$__rate_interval` for a panel, for a one-hour range (whose own `$__interval` is seconds).
fn rate_interval(min_interval: Option<&str>) -> String {
    let interval = min_interval.map_or(0, seconds);
    let s = (interval + SCRAPE_INTERVAL_S).max(4 * SCRAPE_INTERVAL_S);
    format!("{s}s")
}

/// Which pods one view of a dashboard shows: a namespace (and a pod), or the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scope {
    namespace: Option<String>,
    pod: Option<String>,
}

/// `expr` as Grafana sends it for `scope`.
fn fill_in(target: &Target, scope: &Scope) -> String {
    let mut out = target
        .expr
        .replace(
            "$__rate_interval",
            &rate_interval(target.min_interval.as_deref()),
        )
        .replace("$cluster", "");
    if let Some(ns) = &scope.namespace {
        out = out.replace("$namespace", ns);
    }
    if let Some(pod) = &scope.pod {
        out = out.replace("$pod", pod);
    }
    assert!(!out.contains('$'), "a variable left in {out}");
    out
}

/// Splits `expr` at the operator `op` where it is outside parentheses, braces, brackets and
/// strings.
fn split_top(expr: &str, op: char) -> Vec<&str> {
    let (mut depth, mut quoted, mut from) = (0i32, false, 0);
    let mut parts = Vec::new();
    for (i, c) in expr.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '{' | '[' if !quoted => depth += 1,
            ')' | '}' | ']' if !quoted => depth -= 1,
            c if c == op && depth == 0 && !quoted => {
                parts.push(&expr[from..i]);
                from = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&expr[from..]);
    parts
}

/// The series names `expr` selects: every name right before a `{` outside a string.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut quoted = false;
    let mut out = Vec::new();
    for (i, c) in expr.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => {
                let start = expr[..i]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .map_or(0, |p| p + 1);
                assert!(start < i, "a selector without a name in {expr}");
                out.push(&expr[start..i]);
            }
            _ => {}
        }
    }
    out
}

fn source(name: &str) -> Source {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is read by a dashboard but not in SOURCES"))
        .1
}

/// The labels of `side`'s outermost aggregation (`... ) by (pod)`), none for a plain `sum(...)`.
fn grouping(side: &str) -> Vec<String> {
    let s = side.trim();
    let Some(i) = s.rfind(") by (") else {
        return Vec::new();
    };
    let rest = &s[i + ") by (".len()..];
    match rest.strip_suffix(')') {
        Some(labels) if !labels.contains(['(', ')']) => {
            labels.split(',').map(|l| l.trim().to_owned()).collect()
        }
        _ => Vec::new(),
    }
}

/// One unit a quantity is measured on: a container, or a pod's interface.
#[derive(Debug, Clone)]
struct Unit {
    namespace: String,
    pod: String,
    /// `None` for a network interface.
    container: Option<String>,
    windows: bool,
    value: f64,
}

/// What the summaries (and the stand-ins) say, per node.
struct World {
    nodes: Vec<NodeFacts>,
}

struct NodeFacts {
    windows: bool,
    containers: Vec<Container>,
    /// Per (namespace, pod), its interfaces' (has rxBytes, has txBytes).
    interfaces: BTreeMap<(String, String), Vec<(bool, bool)>>,
    /// The stand-in requests and limits of each app container.
    resources: BTreeMap<Key, Resources>,
}

/// Made-up requests and limits (cores, bytes) for one container.
#[derive(Debug, Clone, Copy)]
struct Resources {
    cpu: (f64, f64),
    memory: (f64, f64),
}

impl Resources {
    /// Distinct per container, so a join that pairs the wrong ones shows.
    fn made_up(index: usize) -> Resources {
        let i = (index + 1) as f64;
        Resources {
            cpu: (0.05 * i, 0.1 * i),
            memory: (32.0 * 1024.0 * 1024.0 * i, 64.0 * 1024.0 * 1024.0 * i),
        }
    }

    fn get(&self, resource: &str, limit: bool) -> f64 {
        let pair = match resource {
            "cpu" => self.cpu,
            "memory" => self.memory,
            other => panic!("resource {other}"),
        };
        if limit {
            pair.1
        } else {
            pair.0
        }
    }
}

/// The init containers of a `/pods` document, by (namespace, pod, container): kube-state-metrics
/// reports no `kube_pod_container_resource_*` for them.
fn init_containers(pods: &Path) -> BTreeSet<Key> {
    let doc: Value = serde_json::from_str(&read(pods)).expect("/pods JSON");
    let mut out = BTreeSet::new();
    for item in doc["items"].as_array().expect("items") {
        let m = &item["metadata"];
        for c in item["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.insert((
                m["namespace"].as_str().unwrap().to_owned(),
                m["name"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// Each pod's interfaces the agent sends byte counters for, read from the capture: the named
/// entries of `interfaces` (an unnamed one only when it is the sole entry), or else the inline
/// default interface; with whether each has `rxBytes` and `txBytes`.
fn interfaces(summary: &str) -> BTreeMap<(String, String), Vec<(bool, bool)>> {
    let doc: Value =
        serde_json::from_str(&read(&crate::support::fixture(summary))).expect("summary JSON");
    let has = |i: &Value| (i["rxBytes"].is_u64(), i["txBytes"].is_u64());
    let mut out = BTreeMap::new();
    for pod in doc["pods"].as_array().expect("pods") {
        let net = &pod["network"];
        if net.is_null() {
            continue;
        }
        let list = net["interfaces"].as_array().cloned().unwrap_or_default();
        let found: Vec<(bool, bool)> = if list.is_empty() {
            vec![has(net)]
        } else {
            let sole = list.len() == 1;
            list.iter()
                .filter(|i| sole || !i["name"].as_str().unwrap_or("").is_empty())
                .map(has)
                .collect()
        };
        let r = &pod["podRef"];
        out.insert(
            (
                r["namespace"].as_str().unwrap().to_owned(),
                r["name"].as_str().unwrap().to_owned(),
            ),
            found,
        );
    }
    out
}

impl World {
    fn new(nodes: [(&Node, &str, &Path, bool); 2]) -> World {
        let mut index = 0;
        let nodes = nodes
            .into_iter()
            .map(|(node, summary, pods, windows)| {
                let init = init_containers(pods);
                let mut resources = BTreeMap::new();
                for c in &node.containers {
                    if !init.contains(&c.key()) {
                        resources.insert(c.key(), Resources::made_up(index));
                        index += 1;
                    }
                }
                NodeFacts {
                    windows,
                    containers: node.containers.clone(),
                    interfaces: interfaces(summary),
                    resources,
                }
            })
            .collect();
        World { nodes }
    }

    fn units(&self, q: Quantity, resource_matcher: Option<&str>) -> Vec<Unit> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let unit = |namespace: &str, pod: &str, container: Option<&str>, value: f64| Unit {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                container: container.map(str::to_owned),
                windows: n.windows,
                value,
            };
            match q {
                Quantity::Network(field) => {
                    for ((namespace, pod), list) in &n.interfaces {
                        for (rx, tx) in list {
                            if (field == "rxBytes" && *rx) || (field == "txBytes" && *tx) {
                                let rate = BYTES_PER_STEP as f64 / STEP_S as f64;
                                out.push(unit(namespace, pod, None, rate));
                            }
                        }
                    }
                }
                Quantity::Cpu | Quantity::Memory(_) => {
                    for c in &n.containers {
                        let value = match q {
                            Quantity::Cpu => Some(RATE),
                            Quantity::Memory(field) => c.values.get(field).copied(),
                            _ => unreachable!(),
                        };
                        if let Some(v) = value {
                            out.push(unit(&c.namespace, &c.pod, Some(&c.container), v));
                        }
                    }
                }
                Quantity::Resource { limit, resource } => {
                    let resource = resource
                        .or(resource_matcher)
                        .expect("a resource requests/limits selector without `resource`");
                    for ((namespace, pod, container), r) in &n.resources {
                        let v = r.get(resource, limit);
                        out.push(unit(namespace, pod, Some(container), v));
                    }
                }
            }
        }
        out
    }
}

/// The value of `resource="..."` in `side`, if any.
fn resource_matcher(side: &str) -> Option<&str> {
    let (_, rest) = side.split_once("resource=\"")?;
    rest.split_once('"').map(|(v, _)| v)
}

type Groups = BTreeMap<Vec<String>, (f64, bool)>;

/// What one side of a `/` must return for `scope`: per group (the values of `by` labels), the
/// sum (or mean) of its units' values, and whether a Windows unit is in it.
fn expected_side(side: &str, scope: &Scope, world: &World) -> (Vec<String>, Groups, bool) {
    let names = metric_names(side);
    assert_eq!(names.len(), 1, "one series name per side: {side}");
    let (q, agent) = match source(names[0]) {
        Source::Agent(q) => (q, true),
        Source::StandIn(q) => (q, false),
        other => unreachable!("{other:?}"),
    };
    let body = side.trim_start();
    let mean = if body.starts_with("avg(") {
        true
    } else {
        assert!(
            body.starts_with("sum(") || body.starts_with("sum by"),
            "{side}"
        );
        false
    };
    let factor = if side.contains("(8 *") { 8.0 } else { 1.0 };
    let by = grouping(side);
    let mut sums: BTreeMap<Vec<String>, (f64, usize, bool)> = BTreeMap::new();
    for u in world.units(q, resource_matcher(side)) {
        if scope
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != u.namespace)
            || scope.pod.as_ref().is_some_and(|p| *p != u.pod)
        {
            continue;
        }
        let key = by
            .iter()
            .map(|l| match l.as_str() {
                "namespace" => u.namespace.clone(),
                "pod" => u.pod.clone(),
                "container" => u
                    .container
                    .clone()
                    .unwrap_or_else(|| panic!("no container for {q:?}")),
                other => panic!("grouping by {other} in {side}"),
            })
            .collect();
        let e = sums.entry(key).or_insert((0.0, 0, false));
        e.0 += u.value * factor;
        e.1 += 1;
        e.2 |= u.windows;
    }
    let groups = sums
        .into_iter()
        .map(|(k, (sum, n, w))| (k, (if mean { sum / n as f64 } else { sum }, w)))
        .collect();
    (by, groups, agent)
}

/// How a target came out for the Windows pods of one view.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// kubelet-push's series (alone or joined with the stand-ins) show them.
    Agent,
    /// Only the kube-state-metrics stand-ins do.
    StandIn,
    Empty(String),
}

/// An instant query's result as series, a scalar `NaN` (`scalar()` of nothing) as none.
async fn instant(prom: &Real, query: &str, at_ms: i64) -> Vec<Value> {
    let time = format!("{:.3}", at_ms as f64 / 1000.0);
    let data = prom
        .api("/api/v1/query", &[("query", query), ("time", &time)])
        .await;
    match data["resultType"].as_str() {
        Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
        Some("scalar") => {
            let v = data["result"][1].as_str().unwrap();
            assert_eq!(v, "NaN", "{query}: a scalar from nothing: {data}");
            Vec::new()
        }
        other => panic!("{query}: result type {other:?}"),
    }
}

/// Runs `target` for `scope` and checks it against `world`; says how it came out for the
/// Windows pods in the view.
async fn check_target(
    prom: &Real,
    at_ms: i64,
    target: &Target,
    scope: &Scope,
    world: &World,
) -> Outcome {
    let query = fill_in(target, scope);
    let got = instant(prom, &query, at_ms).await;
    let what = format!("{:?} {} {scope:?}: {query}", target.panel, target.expr);
    let names = metric_names(&query);
    assert!(!names.is_empty(), "{what}: no series");
    let missing = names.iter().find_map(|n| match source(n) {
        Source::NotInSummary(why) | Source::OtherExporter(why) => Some(why),
        _ => None,
    });
    if let Some(why) = missing {
        assert!(got.is_empty(), "{what}: expected nothing ({why}): {got:?}");
        return Outcome::Empty(why.to_owned());
    }
    let sides = split_top(&query, '/');
    assert!(sides.len() <= 2, "{what}: more than one division");
    let (by, mut want, mut agent) = expected_side(sides[0], scope, world);
    if let Some(denominator) = sides.get(1) {
        let (by_d, d, agent_d) = expected_side(denominator, scope, world);
        assert_eq!(by, by_d, "{what}: sides grouped apart");
        want = want
            .into_iter()
            .filter_map(|(k, (n, w))| d.get(&k).map(|(dv, dw)| (k, (n / dv, w || *dw))))
            .collect();
        agent |= agent_d;
    }
    let mut got_groups = BTreeMap::new();
    for s in &got {
        let key: Vec<String> = by
            .iter()
            .map(|l| label(&s["metric"], l).to_owned())
            .collect();
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(
            got_groups.insert(key.clone(), value).is_none(),
            "{what}: {key:?} twice"
        );
    }
    assert_eq!(
        got_groups.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: groups"
    );
    for (key, (value, _)) in &want {
        assert_close(&format!("{what} {key:?}"), got_groups[key], *value);
    }
    if want.values().any(|(_, windows)| *windows) {
        if agent {
            Outcome::Agent
        } else {
            Outcome::StandIn
        }
    } else {
        let fields: Vec<String> = names
            .iter()
            .filter_map(|n| match source(n) {
                Source::Agent(Quantity::Memory(f)) => Some(format!("no {f} in the summary")),
                _ => None,
            })
            .collect();
        Outcome::Empty(if fields.is_empty() {
            "no data".to_owned()
        } else {
            fields.join(", ")
        })
    }
}

/// kube-state-metrics' requests and limits of every app container and the `Running` phase of
/// every pod, as it exports them (`unit` "core" / "byte").
fn kube_state_metrics(world: &World, node_names: [&str; 2]) -> Vec<(Vec<(String, String)>, f64)> {
    let ksm = |name: &str, pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut labels = vec![
            ("__name__".to_owned(), name.to_owned()),
            ("job".to_owned(), "kube-state-metrics".to_owned()),
            ("instance".to_owned(), "kube-state-metrics:8080".to_owned()),
        ];
        labels.extend(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        labels
    };
    let mut out = Vec::new();
    for (n, node) in world.nodes.iter().zip(node_names) {
        let mut pods = BTreeMap::new();
        for c in &n.containers {
            pods.insert((c.namespace.clone(), c.pod.clone()), c.uid.clone());
        }
        for ((namespace, pod), uid) in &pods {
            let labels = ksm(
                "kube_pod_status_phase",
                &[
                    ("namespace", namespace),
                    ("pod", pod),
                    ("uid", uid),
                    ("phase", "Running"),
                ],
            );
            out.push((labels, 1.0));
        }
        for ((namespace, pod, container), r) in &n.resources {
            let uid = &pods[&(namespace.clone(), pod.clone())];
            for (family, limit) in [
                ("kube_pod_container_resource_requests", false),
                ("kube_pod_container_resource_limits", true),
            ] {
                for (resource, unit) in [("cpu", "core"), ("memory", "byte")] {
                    let labels = ksm(
                        family,
                        &[
                            ("namespace", namespace),
                            ("pod", pod),
                            ("uid", uid),
                            ("container", container),
                            ("node", node),
                            ("resource", resource),
                            ("unit", unit),
                        ],
                    );
                    out.push((labels, r.get(resource, limit)));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn kube_prometheus_compute_resources_dashboards_show_windows_pods() {
    if !available(Kind::Prometheus) {
        return;
    }
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&read(&fixture_path(
        "kube-prometheus",
        "kubernetesControlPlane-prometheusRule.yaml",
    )));
    let definitions = read(&fixture_path(
        "kube-prometheus",
        "grafana-dashboardDefinitions.yaml",
    ));
    let mut dashboards = Vec::new();
    for (key, title) in DASHBOARDS {
        let d = dashboard(&definitions, key);
        assert_eq!(d["title"], title, "{key}");
        let mut list = Vec::new();
        targets(&d["panels"], &mut list);
        assert!(!list.is_empty(), "{title}: no targets");
        dashboards.push((title, list));
    }
    // Every listed name is read by some dashboard, and every name read is listed.
    let read_names: BTreeSet<&str> = dashboards
        .iter()
        .flat_map(|(_, ts)| ts.iter().flat_map(|t| metric_names(&t.expr)))
        .collect();
    let listed: BTreeSet<&str> = SOURCES.iter().map(|(n, _)| *n).collect();
    assert_eq!(read_names, listed, "SOURCES against the dashboards");

    let prom = prometheus(&dir.path().join("prometheus"), &rules).await;
    let newest_at = now_s() - HISTORY_S;
    let linux_pods = fixture_path("pods", LINUX_PODS);
    let windows_pods = fixture_path("pods", WINDOWS_PODS);
    let linux = node(LINUX_SUMMARY, &linux_pods, newest_at, &prom, &[]).await;
    let windows = node(WINDOWS_SUMMARY, &windows_pods, newest_at, &prom, &[]).await;
    let world = World::new([
        (&windows, WINDOWS_SUMMARY, &windows_pods, true),
        (&linux, LINUX_SUMMARY, &linux_pods, false),
    ]);
    let pod_info = StandIns::pod_info(&prom, &[&linux, &windows]);
    let stand_ins = StandIns::start(
        &prom,
        kube_state_metrics(&world, [&windows.name, &linux.name]),
    );

    let mut waited = Ok(());
    for n in [&linux, &windows] {
        if waited.is_ok() {
            waited = wait_caught_up(&prom, n, true).await;
        }
    }
    if let Err(e) = waited {
        let mut logs = String::new();
        for n in [linux, windows] {
            let (code, log) = stop_agent(n.agent).await;
            logs.push_str(&format!("\n--- {} (exit {code:?}):\n{log}", n.name));
        }
        panic!("{e}{logs}");
    }
    pod_info.wait_pushed().await;
    stand_ins.wait_pushed().await;
    let caught_up = began.elapsed();
    let caught_up_ms = now_ms();
    // Every recorded series the dashboards read from our series or the stand-ins, evaluated
    // over complete windows (waited for, bounded); the other exporters' are empty.
    let recorded: Vec<&str> = SOURCES
        .iter()
        .filter(|(name, source)| {
            name.contains(':') && matches!(source, Source::Agent(_) | Source::StandIn(_))
        })
        .map(|(name, _)| *name)
        .collect();
    let at = query_time(&evaluated_after(&prom, &recorded, caught_up_ms).await);

    // The views a user opens: every pod, every namespace, the cluster.
    let mut pods = BTreeSet::new();
    let mut windows_pods_seen = BTreeSet::new();
    for (n, is_windows) in [(&linux, false), (&windows, true)] {
        for c in &n.containers {
            pods.insert((c.namespace.clone(), c.pod.clone()));
            if is_windows {
                windows_pods_seen.insert((c.namespace.clone(), c.pod.clone()));
            }
        }
    }
    let namespaces: BTreeSet<String> = pods.iter().map(|(ns, _)| ns.clone()).collect();
    let windows_namespaces: BTreeSet<String> =
        windows_pods_seen.iter().map(|(ns, _)| ns.clone()).collect();
    let linux_namespaces: BTreeSet<String> = linux
        .containers
        .iter()
        .map(|c| c.namespace.clone())
        .collect();
    assert!(
        windows_namespaces.is_disjoint(&linux_namespaces),
        "a namespace on both nodes: its view would not be the Windows pods alone"
    );
    let scopes = |title: &str| -> Vec<(Scope, bool)> {
        match title {
            "Kubernetes / Compute Resources / Pod" => pods
                .iter()
                .map(|(ns, pod)| {
                    let w = windows_pods_seen.contains(&(ns.clone(), pod.clone()));
                    (
                        Scope {
                            namespace: Some(ns.clone()),
                            pod: Some(pod.clone()),
                        },
                        w,
                    )
                })
                .collect(),
            "Kubernetes / Compute Resources / Namespace (Pods)" => namespaces
                .iter()
                .map(|ns| {
                    (
                        Scope {
                            namespace: Some(ns.clone()),
                            pod: None,
                        },
                        windows_namespaces.contains(ns),
                    )
                })
                .collect(),
            _ => vec![(
                Scope {
                    namespace: None,
                    pod: None,
                },
                true,
            )],
        }
    };

    let mut queries = 0;
    let mut table = Vec::new();
    for ((title, list), (want_title, want_panels)) in dashboards.iter().zip(WINDOWS_PANELS) {
        assert_eq!(*title, want_title);
        let titles: BTreeSet<&str> = list.iter().map(|t| t.panel.as_str()).collect();
        let want_titles: BTreeSet<&str> = want_panels.iter().map(|(t, _)| *t).collect();
        assert_eq!(titles, want_titles, "{title}: WINDOWS_PANELS' panels");
        for (scope, has_windows) in scopes(title) {
            // Per panel, each target's outcome for the Windows pods of this view.
            let mut panels: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
            for t in list {
                let outcome = check_target(&prom, at, t, &scope, &world).await;
                queries += 1;
                panels.entry(&t.panel).or_default().push(outcome);
            }
            if !has_windows {
                continue;
            }
            for (panel, shows) in want_panels {
                let outcomes = &panels[panel];
                assert_eq!(
                    outcomes.contains(&Outcome::Agent),
                    *shows,
                    "{title} / {panel} for {scope:?}: targets {outcomes:?}"
                );
                table.push((title.to_owned(), panel.to_owned(), outcomes.clone()));
            }
        }
    }
    let mut seen = BTreeSet::new();
    table.retain(|row| seen.insert(row.clone()));

    pod_info.assert_all_accepted();
    stand_ins.assert_all_accepted();
    for n in [linux, windows] {
        let (code, log) = stop_agent(n.agent).await;
        assert_eq!(code, Some(0), "{}: {log}", n.name);
    }
    prom.assert_nothing_rejected(0).await;
    for (dashboard, panel, outcomes) in &table {
        let targets: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Agent => "kubelet-push".to_owned(),
                Outcome::StandIn => "kube-state-metrics".to_owned(),
                Outcome::Empty(why) => format!("empty ({why})"),
            })
            .collect();
        eprintln!("{dashboard} | {panel} | {}", targets.join("; "));
    }
    eprintln!(
        "kube-prometheus dashboards e2e: caught up after {:.1} s; {queries} queries; whole test \
         {:.1} s",
        caught_up.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn dashboard_expressions_are_taken_apart() {
    let expr = "sum(max by (cluster, namespace, pod, container)(node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m{cluster=\"\", namespace=\"a\"})) by (pod) / sum(max by (cluster, namespace, pod, container)(cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests{cluster=\"\", namespace=\"a\"})) by (pod)";
    let sides = split_top(expr, '/');
    assert_eq!(sides.len(), 2);
    assert_eq!(grouping(sides[0]), ["pod"]);
    assert_eq!(grouping(sides[1]), ["pod"]);
    assert_eq!(
        metric_names(expr),
        [
            "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m",
            "cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests"
        ]
    );
    // A `/` inside a string is no division; `bytes` is no `by`.
    let net = "sum(rate(container_fs_reads_total{device=~\"(/dev/)?(sd.+)\"}[60s]))";
    assert_eq!(split_top(net, '/').len(), 1);
    assert!(grouping("sum(max by (pod)(container_memory_working_set_bytes{}))").is_empty());
    assert_eq!(
        resource_matcher("sum(kube_pod_container_resource_limits{resource=\"cpu\"})"),
        Some("cpu")
    );
    assert_eq!(rate_interval(Some("1m")), "75s");
    assert_eq!(rate_interval(None), "60s");
    let target = Target {
        panel: "p".to_owned(),
        min_interval: None,
        expr: "rate(x{cluster=\"$cluster\", namespace=\"$namespace\", pod=~\"$pod\"}[$__rate_interval])".to_owned(),
    };
    let scope = Scope {
        namespace: Some("ns".to_owned()),
        pod: Some("p-1".to_owned()),
    };
    assert_eq!(
        fill_in(&target, &scope),
        "rate(x{cluster=\"\", namespace=\"ns\", pod=~\"p-1\"}[60s])"
    );
}
