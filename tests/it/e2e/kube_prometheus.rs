//! kube-prometheus's own queries against what the agent pushed: its container CPU and memory
//! recording rules (`tests/fixtures/kube-prometheus/kubernetesControlPlane-prometheusRule.yaml`,
//! every group of it loaded into a real Prometheus evaluating each second) and
//! prometheus-adapter's container queries (`prometheusAdapter-configMap.yaml`, the ones behind
//! `kubectl top pod --containers`), for every container of the 1.34 capture and of a Windows
//! capture, each served with its `/pods` document by a fixture kubelet and pushed by the real
//! binary. A `kube_pod_info{job="kube-state-metrics"}` series per pod, pushed by the test while it
//! runs, stands in for kube-state-metrics, which the rules join on for `node`. A third agent, on
//! a Prometheus of its own, polls the 1.34 capture with `--kubelet-pods=false`: the rules'
//! `image!=""` finds none of its containers, and the same expressions without that one matcher
//! find them all, so the labels from `/pods` are what makes the rest work.
//!
//! Time: the rules' `rate(...[5m])` is the counter's slope only when the samples cover the whole
//! five minutes (with less, Prometheus extrapolates by half an interval and divides by 300 s).
//! Rather than wait five minutes, the fixture kubelets serve a backdated timeline: document `k`
//! is stamped `HISTORY_S` before the test started plus `k × STEP_S`, with `STEP_S` well above the
//! one-second poll, so the samples sweep the last seven minutes in about 23 s (measured), catch up with the
//! clock and then run ahead of it (queries and rule evaluations see only what is not in their
//! future). Every CPU counter advances `CPU_NS_PER_STEP` per document, so every rate the rules
//! and the adapter compute is `CPU_NS_PER_STEP / STEP_S` exactly, up to float rounding. The
//! agent's first poll waits for the first `/pods` answer, so every document carries `image`
//! here (the summary prints which document was the first labelled one); should a slow `/pods`
//! leave the first polls without it, those series lie minutes back in that timeline, outside
//! the adapter's `irate(...[120s])`, which would otherwise add them to the labelled ones.
//!
//! The rules file is the PrometheusRule's `spec:` block less two spaces of indentation: the
//! manifest is a generated one whose `spec:` is its last top-level key, and the crate has no YAML
//! parser. Prometheus 2.42 loads every group (24 groups, 134 rules; `promtool check rules`
//! objects only through its duplicate-rules lint, to `code_verb:apiserver_request_total:increase1h`
//! recorded twice); the test checks it loaded as many groups and rules as the file holds. The adapter's queries are cut out of the ConfigMap by indentation in the same way and
//! filled in as prometheus-adapter's resource provider does for the pods of one namespace
//! (`pkg/naming/metrics_query.go`): `<<.LabelMatchers>>` is `namespace="<ns>",pod=~"<a>|<b>"`
//! (`pod="<a>"` for one pod) and `<<.GroupBy>>` is `pod,container`.

use std::collections::{BTreeMap, BTreeSet};

use kubelet_push::remote_write::proto::v1::{Label, Sample, TimeSeries};
use kubelet_push::remote_write::{self as rw, reference};

use super::*;

/// Data time between two documents of a fixture kubelet.
pub(super) const STEP_S: i64 = 20;
/// How far before the test's start document 0 is stamped: the five-minute window, plus room
/// for the polls that go out before `/pods` has answered.
pub(super) const HISTORY_S: i64 = 420;
/// The slope of every CPU counter, in cores.
pub(super) const RATE: f64 = CPU_NS_PER_STEP as f64 / 1e9 / STEP_S as f64;
/// The wait for the agents to catch up with the clock: the polls it takes at one a second
/// (the timeline's documents up to now, `HISTORY_S / STEP_S` of them, and one more) plus
/// [`PATIENCE`] for a loaded machine.
const CATCH_UP_WAIT: Duration =
    Duration::from_secs((HISTORY_S / STEP_S + 1) as u64 + PATIENCE.as_secs());

pub(super) const LINUX_SUMMARY: &str = "nri-kubernetes-testutil-1_34__summary.json";
pub(super) const LINUX_PODS: &str = "nri-kubernetes-testutil-1_34__pods.json";
pub(super) const WINDOWS_SUMMARY: &str = "dd-integrations-core__stats_summary_windows.json";
pub(super) const WINDOWS_PODS: &str = "dd-integrations-core__stats_summary_windows__pods.json";

/// The recording rules the test checks, and the summary field each container's value comes
/// from (`None`: the CPU counter's rate).
const RULES: [(&str, Option<&str>); 5] = [
    (
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m",
        None,
    ),
    (
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate",
        None,
    ),
    (
        "node_namespace_pod_container:container_memory_working_set_bytes",
        Some("workingSetBytes"),
    ),
    (
        "node_namespace_pod_container:container_memory_rss",
        Some("rssBytes"),
    ),
    (
        "node_namespace_pod_container:container_memory_swap",
        Some("swapUsageBytes"),
    ),
];
/// A rule over a cAdvisor family the summary has no source for: it must stay empty.
const CACHE_RULE: &str = "node_namespace_pod_container:container_memory_cache";

pub(super) fn fixture_path(dir: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(file)
}

pub(super) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Prometheus rules file inside a PrometheusRule manifest: the lines of its top-level
/// `spec:` block, two spaces less indented (`spec.groups` becomes `groups`).
pub(super) fn rules_file(prometheus_rule: &str) -> String {
    let mut lines = prometheus_rule.lines().skip_while(|l| *l != "spec:");
    assert_eq!(lines.next(), Some("spec:"), "no top-level `spec:`");
    let mut out = String::new();
    for line in lines {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        let Some(inner) = line.strip_prefix("  ") else {
            // The next top-level key: `spec:` has ended.
            break;
        };
        out.push_str(inner);
        out.push('\n');
    }
    assert!(
        out.starts_with("groups:"),
        "`spec:` does not open with `groups:`"
    );
    out
}

/// The block scalar under `key` (a line ending in `key: |`) inside `section` (a line that is
/// exactly `section:` after its indentation), dedented: the ConfigMap's queries.
fn block_under(text: &str, section: &str, key: &str) -> String {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut lines = text.lines().skip_while(|l| l.trim() != section);
    assert!(lines.next().is_some(), "no {section}");
    let mut lines = lines.skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no {key} under {section}"));
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > indent(head))
        .collect();
    let depth = body
        .iter()
        .map(|l| indent(l))
        .min()
        .expect("an empty query");
    body.iter().map(|l| format!("{}\n", &l[depth..])).collect()
}

/// What the summary says of one container, and what `/pods` says of it.
#[derive(Debug, Clone)]
pub(super) struct Container {
    pub(super) namespace: String,
    pub(super) pod: String,
    pub(super) uid: String,
    pub(super) container: String,
    /// The summary's memory and swap fields, by name (`workingSetBytes`, `rssBytes`,
    /// `swapUsageBytes`), when present.
    pub(super) values: BTreeMap<&'static str, f64>,
    /// The cpu section's `time` in the capture (ms): with the fixture kubelet's shift, where
    /// each document's sample lands.
    cpu_time_ms: i64,
    /// `containerID` from `/pods` without its scheme: what the `name` label must say.
    runtime_id: String,
}

pub(super) type Key = (String, String, String);

impl Container {
    pub(super) fn key(&self) -> Key {
        (
            self.namespace.clone(),
            self.pod.clone(),
            self.container.clone(),
        )
    }
}

/// The node name and containers of a summary capture, joined with its `/pods` document by pod
/// UID and container name (init containers included).
fn containers(summary: &str, pods: &Path) -> (String, Vec<Container>) {
    let doc: Value =
        serde_json::from_str(&read(&crate::support::fixture(summary))).expect("summary JSON");
    let pod_list: Value = serde_json::from_str(&read(pods)).expect("/pods JSON");
    let mut ids = BTreeMap::new();
    for item in pod_list["items"].as_array().expect("items") {
        let uid = item["metadata"]["uid"].as_str().expect("uid");
        for list in ["containerStatuses", "initContainerStatuses"] {
            for s in item["status"][list].as_array().into_iter().flatten() {
                // A container not started yet has no runtime id (nor stats in the summary).
                let Some(id) = s["containerID"].as_str() else {
                    continue;
                };
                let (_, id) = id.split_once("://").expect("containerID with a scheme");
                ids.insert(
                    (uid.to_owned(), s["name"].as_str().unwrap().to_owned()),
                    id.to_owned(),
                );
            }
        }
    }
    let node = doc["node"]["nodeName"]
        .as_str()
        .expect("nodeName")
        .to_owned();
    let mut out = Vec::new();
    for pod in doc["pods"].as_array().expect("pods") {
        let r = &pod["podRef"];
        let s = |v: &Value| v.as_str().unwrap().to_owned();
        for c in pod["containers"].as_array().expect("containers") {
            let mut values = BTreeMap::new();
            for (section, field) in [
                ("memory", "workingSetBytes"),
                ("memory", "rssBytes"),
                ("swap", "swapUsageBytes"),
            ] {
                if let Some(v) = c[section][field].as_u64() {
                    values.insert(field, v as f64);
                }
            }
            let cpu_time = c["cpu"]["time"].as_str().expect("cpu time");
            let name = s(&c["name"]);
            let runtime_id = ids
                .get(&(s(&r["uid"]), name.clone()))
                .unwrap_or_else(|| panic!("{pods:?} lacks {name} of pod {}", r["name"]))
                .clone();
            out.push(Container {
                namespace: s(&r["namespace"]),
                pod: s(&r["name"]),
                uid: s(&r["uid"]),
                container: name,
                values,
                cpu_time_ms: kubelet_push::kubelet::time::parse_rfc3339_ms(cpu_time).unwrap(),
                runtime_id,
            });
        }
    }
    (node, out)
}

/// One fixture node: its kubelet, an agent polling it, and what the test expects of it.
pub(super) struct Node {
    pub(super) name: String,
    pub(super) containers: Vec<Container>,
    pub(super) kubelet: FixtureKubelet,
    pub(super) agent: Child,
}

pub(super) async fn node(
    summary: &str,
    pods: &Path,
    newest_at_s: i64,
    remote: &Real,
    extra: &[&str],
) -> Node {
    let (name, containers) = containers(summary, pods);
    let kubelet =
        FixtureKubelet::start_with_pods(summary, Some(pods), newest_at_s, STEP_S, None).await;
    let args: Vec<&str> = ONE_SECOND_POLLS
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let agent = agent(&kubelet.url(), &remote.write_url(), &args);
    Node {
        name,
        containers,
        kubelet,
        agent,
    }
}

/// Series standing in for kube-state-metrics, pushed every second until dropped, each sample
/// stamped with the current time, as a scrape of it would be.
pub(super) struct StandIns {
    task: tokio::task::JoinHandle<()>,
    pushed: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl StandIns {
    /// `series`: each label set (`__name__` included, any order) with its value.
    pub(super) fn start(remote: &Real, series: Vec<(Vec<(String, String)>, f64)>) -> StandIns {
        let url = remote.write_url();
        let pushed = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (count, failures) = (pushed.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let now = now_ms();
                let batch = series
                    .iter()
                    .map(|(labels, value)| {
                        let mut labels: Vec<Label> = labels
                            .iter()
                            .map(|(name, value)| Label {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect();
                        // Sorted by name, as Remote Write requires.
                        labels.sort_by(|a, b| a.name.cmp(&b.name));
                        TimeSeries {
                            labels,
                            samples: vec![Sample {
                                value: *value,
                                timestamp: now,
                            }],
                        }
                    })
                    .collect();
                for request in reference::encode_batches(batch, usize::MAX).unwrap() {
                    let answer = http
                        .post(&url)
                        .header("Content-Encoding", rw::CONTENT_ENCODING)
                        .header("Content-Type", rw::CONTENT_TYPE_V1)
                        .header(rw::VERSION_HEADER, rw::VERSION_V1)
                        .body(request.body)
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().is_success() => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            failures.lock().unwrap().push(format!("{status}: {text}"));
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        StandIns {
            task,
            pushed,
            failed,
        }
    }

    /// `kube_pod_info`, one per pod of `nodes`: the series the rules join on for `node`.
    pub(super) fn pod_info(remote: &Real, nodes: &[&Node]) -> StandIns {
        let mut pods = BTreeSet::new();
        for n in nodes {
            for c in &n.containers {
                pods.insert((&c.namespace, &c.pod, &c.uid, &n.name));
            }
        }
        let series = pods
            .into_iter()
            .map(|(namespace, pod, uid, node)| {
                let labels = [
                    ("__name__", "kube_pod_info"),
                    ("created_by_kind", "ReplicaSet"),
                    ("host_network", "false"),
                    ("instance", "kube-state-metrics:8080"),
                    ("job", "kube-state-metrics"),
                    ("namespace", namespace.as_str()),
                    ("node", node.as_str()),
                    ("pod", pod.as_str()),
                    ("uid", uid.as_str()),
                ];
                let labels = labels
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect();
                (labels, 1.0)
            })
            .collect();
        StandIns::start(remote, series)
    }

    /// Waits (up to [`PATIENCE`]) until a push was accepted; fails at once on a refused one.
    pub(super) async fn wait_pushed(&self) {
        crate::support::wait_until("a stand-in push accepted", || {
            let failed = self.failed.lock().unwrap();
            assert!(failed.is_empty(), "stand-in pushes failed: {failed:?}");
            self.pushed.load(Ordering::SeqCst) > 0
        })
        .await;
    }

    pub(super) fn assert_all_accepted(&self) {
        let failed = self.failed.lock().unwrap();
        assert!(failed.is_empty(), "stand-in pushes failed: {failed:?}");
        assert!(self.pushed.load(Ordering::SeqCst) > 0, "no stand-in push");
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Prometheus with every group of kube-prometheus's rules, evaluated each second.
pub(super) async fn prometheus(dir: &Path, rules: &str) -> Real {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("kube-prometheus-rules.yaml");
    std::fs::write(&file, rules).unwrap();
    let config = serde_json::json!({
        "global": {"scrape_interval": "1h", "evaluation_interval": "1s"},
        "rule_files": [file],
    });
    let prom = Real::launch_prometheus_with(dir, config).await;
    // Every group and rule of the file, as Prometheus loaded them.
    // Groups are the items of the top-level list (`- name:`, or `- interval:` first).
    let groups = rules.lines().filter(|l| l.starts_with("- ")).count();
    let rule_count = rules
        .lines()
        .filter(|l| l.starts_with("  - alert: ") || l.starts_with("  - expr: "))
        .count();
    let loaded = prom.api("/api/v1/rules", &[]).await["groups"].clone();
    let loaded = loaded.as_array().unwrap();
    let loaded_rules: usize = loaded
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        (loaded.len(), loaded_rules),
        (groups, rule_count),
        "groups and rules loaded: {}",
        prom.log()
    );
    prom
}

/// The rules' queries as Prometheus loaded them, by recorded name.
async fn loaded_queries(prom: &Real) -> BTreeMap<String, String> {
    let groups = prom.api("/api/v1/rules", &[]).await["groups"].clone();
    let mut out = BTreeMap::new();
    for g in groups.as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            if r["type"] == "recording" {
                out.insert(
                    r["name"].as_str().unwrap().to_owned(),
                    r["query"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    out
}

/// Waits until `node`'s CPU series (those with an `image` when `labelled`) have reached the
/// present: the five-minute window behind "now" is then complete.
pub(super) async fn wait_caught_up(prom: &Real, node: &Node, labelled: bool) -> Result<(), String> {
    let image = if labelled { ",image!=\"\"" } else { "" };
    let query = format!(
        "min(timestamp(container_cpu_usage_seconds_total{{node=\"{}\"{image}}}))",
        node.name
    );
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        // Ahead of the clock: the newest sample of each series in the five minutes after now.
        let now = now_ms();
        let result = prom.query(&query, now + 300_000).await;
        let newest_s = result
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok());
        if newest_s.is_some_and(|t| t * 1000.0 > (now + 1000) as f64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: CPU series{image} not caught up with the clock within {CATCH_UP_WAIT:?} ({} \
                 documents served, newest sample {newest_s:?})",
                node.name,
                node.kubelet.requests()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every recorded series in `names` has a sample from an evaluation at least one
/// evaluation (a second) after `caught_up_ms`, and returns the newest evaluation time of each.
///
/// `caught_up_ms` is when every input series was known complete up to the clock and ahead of
/// it (`wait_caught_up`, and the stand-ins pushed): an evaluation stamped after it ran after
/// it, over complete windows, since the inputs stay ahead of the clock; the second one after
/// it also sees what the first one recorded in other groups. How long Prometheus takes to
/// evaluate its 134 rules (two instances compete for the cores) does not matter: the
/// evaluation is waited for, bounded, not assumed to fit in a time.
pub(super) async fn evaluated_after(
    prom: &Real,
    names: &[&str],
    caught_up_ms: i64,
) -> BTreeMap<String, i64> {
    let mut newest = BTreeMap::new();
    let what = format!("every rule evaluated a second after {caught_up_ms}");
    eventually(what, PATIENCE, async || {
        // In order, each one queried until its evaluation is seen.
        for name in names {
            if newest.contains_key(*name) {
                continue;
            }
            let result = prom
                .query(&format!("max(timestamp({name}))"), now_ms())
                .await;
            let t = result
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|t| (t * 1000.0).round() as i64);
            match t.filter(|t| *t >= caught_up_ms + 1000) {
                Some(t) => newest.insert((*name).to_owned(), t),
                None => return Err(format!("{name}: newest {t:?}")),
            };
        }
        Ok(())
    })
    .await;
    newest
}

/// The query time for rules evaluated as [`evaluated_after`] says: the newest of their
/// newest evaluations, so every rule's value at it is one of those evaluations or a later one.
pub(super) fn query_time(evaluations: &BTreeMap<String, i64>) -> i64 {
    *evaluations.values().max().expect("rules to wait for")
}

/// The document whose sample is the first of `node`'s labelled CPU series, for each container;
/// checks each series' first sample lies within a step of the five-minute window of the
/// rate5m rule's evaluation at `evaluated_ms` (the earliest its value at `at_ms` can be from).
async fn first_labelled_documents(
    prom: &Real,
    node: &Node,
    at_ms: i64,
    evaluated_ms: i64,
) -> BTreeSet<i64> {
    let selector = format!(
        "container_cpu_usage_seconds_total{{node=\"{}\",image!=\"\"}}",
        node.name
    );
    let raw = prom.raw(&selector, at_ms, (HISTORY_S + 60) as u64).await;
    assert_eq!(
        raw.len(),
        node.containers.len(),
        "{}: {:?}",
        node.name,
        raw.keys()
    );
    let mut docs = BTreeSet::new();
    for c in &node.containers {
        let (key, samples) = raw
            .iter()
            .find(|(k, _)| {
                k.contains(&format!("pod=\"{}\"", c.pod))
                    && k.contains(&format!("container=\"{}\"", c.container))
            })
            .unwrap_or_else(|| panic!("{}: no labelled CPU series for {c:?}", node.name));
        let first = samples[0].0;
        let at_doc0 = c.cpu_time_ms + node.kubelet.shift_ms(0);
        assert_eq!(
            (first - at_doc0) % (STEP_S * 1000),
            0,
            "{key}: off the timeline"
        );
        docs.insert((first - at_doc0) / (STEP_S * 1000));
        // Within a step of the window's start, so rate() extrapolates over the whole window.
        assert!(
            first <= evaluated_ms - 300_000 + STEP_S * 1000,
            "{key}: labels came too late for a full 5m window: first labelled sample at \
             document {}, {} s before the evaluation",
            (first - at_doc0) / (STEP_S * 1000),
            (evaluated_ms - first) / 1000
        );
    }
    docs
}

pub(super) fn label<'v>(metric: &'v Value, name: &str) -> &'v str {
    metric[name].as_str().unwrap_or("")
}

/// `result` by (namespace, pod, container); fails on a container returned twice.
fn by_container(what: &str, result: &[Value]) -> BTreeMap<Key, (Value, f64)> {
    let mut out = BTreeMap::new();
    for s in result {
        let m = &s["metric"];
        let key = (
            label(m, "namespace").to_owned(),
            label(m, "pod").to_owned(),
            label(m, "container").to_owned(),
        );
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        let previous = out.insert(key.clone(), (m.clone(), value));
        assert!(previous.is_none(), "{what}: {key:?} twice: {result:?}");
    }
    out
}

pub(super) fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= want.abs() * 1e-9 + 1e-12,
        "{what}: got {got}, want {want}"
    );
}

/// What `rule` must return for `nodes`: each container whose summary has the rule's field,
/// with its value (or the CPU rate), keyed by container.
fn expected(nodes: &[&Node], field: Option<&str>) -> BTreeMap<Key, (String, f64, String)> {
    let mut out = BTreeMap::new();
    for n in nodes {
        for c in &n.containers {
            let value = match field {
                None => Some(RATE),
                Some(f) => c.values.get(f).copied(),
            };
            if let Some(v) = value {
                out.insert(c.key(), (n.name.clone(), v, c.runtime_id.clone()));
            }
        }
    }
    out
}

/// Checks every rule of `RULES` on `prom` at `at_ms` against `nodes`, `queries` (when given)
/// replacing the recorded series: returns, per rule, the containers it found.
async fn check_rules(
    prom: &Real,
    at_ms: i64,
    nodes: &[&Node],
    queries: Option<&BTreeMap<String, String>>,
) -> BTreeMap<&'static str, BTreeSet<Key>> {
    let mut found = BTreeMap::new();
    for (rule, field) in RULES {
        let query = queries.map_or(rule.to_owned(), |q| q[rule].clone());
        let got = by_container(rule, &prom.query(&query, at_ms).await);
        let want = expected(nodes, field);
        let got_keys: BTreeSet<Key> = got.keys().cloned().collect();
        let want_keys: BTreeSet<Key> = want.keys().cloned().collect();
        assert_eq!(
            got_keys,
            want_keys,
            "{rule}: missing {:?}, unexpected {:?}",
            want_keys.difference(&got_keys).collect::<Vec<_>>(),
            got_keys.difference(&want_keys).collect::<Vec<_>>()
        );
        for (key, (metric, value)) in &got {
            let (node, want_value, runtime_id) = &want[key];
            let what = format!("{rule} {key:?}");
            assert_close(&what, *value, *want_value);
            // `node` as kube_pod_info says; the memory rules keep the container series' own
            // labels too, cAdvisor's.
            assert_eq!(label(metric, "node"), node, "{what}: {metric}");
            if field.is_some() {
                assert_eq!(label(metric, "job"), "kubelet", "{what}: {metric}");
                assert_eq!(
                    label(metric, "metrics_path"),
                    "/metrics/cadvisor",
                    "{what}: {metric}"
                );
                assert!(!label(metric, "image").is_empty(), "{what}: {metric}");
                assert_eq!(label(metric, "name"), runtime_id, "{what}: {metric}");
            }
        }
        found.insert(rule, got_keys);
    }
    found
}

/// prometheus-adapter's container query for `resource` (`"cpu"` or `"memory"`), filled in as
/// the adapter does for the pods of one namespace.
fn adapter_query(config: &str, resource: &str, namespace: &str, pods: &BTreeSet<&str>) -> String {
    let template = block_under(config, &format!("\"{resource}\":"), "\"containerQuery\"");
    assert!(template.contains("<<.LabelMatchers>>") && template.contains("<<.GroupBy>>"));
    let names: Vec<&str> = pods.iter().copied().collect();
    let pod = match names.as_slice() {
        [one] => format!("pod=\"{one}\""),
        many => format!("pod=~\"{}\"", many.join("|")),
    };
    template
        .replace(
            "<<.LabelMatchers>>",
            &format!("namespace=\"{namespace}\",{pod}"),
        )
        .replace("<<.GroupBy>>", "pod,container")
}

/// `kubectl top pod --containers` for every namespace of `nodes`: every container, CPU at the
/// counters' rate and memory at the working set.
async fn check_adapter(prom: &Real, at_ms: i64, nodes: &[&Node], config: &str) {
    let mut namespaces: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for n in nodes {
        for c in &n.containers {
            namespaces.entry(&c.namespace).or_default().insert(&c.pod);
        }
    }
    for (namespace, pods) in &namespaces {
        let want: Vec<&Container> = nodes
            .iter()
            .flat_map(|n| &n.containers)
            .filter(|c| c.namespace == *namespace)
            .collect();
        for (resource, field) in [("cpu", None), ("memory", Some("workingSetBytes"))] {
            let query = adapter_query(config, resource, namespace, pods);
            let result = prom.query(&query, at_ms).await;
            let mut got = BTreeMap::new();
            for s in &result {
                let m = &s["metric"];
                let key = (label(m, "pod").to_owned(), label(m, "container").to_owned());
                let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
                assert!(got.insert(key, value).is_none(), "{query}: {result:?}");
            }
            let want_keys: BTreeSet<(String, String)> = want
                .iter()
                .map(|c| (c.pod.clone(), c.container.clone()))
                .collect();
            let got_keys: BTreeSet<(String, String)> = got.keys().cloned().collect();
            assert_eq!(
                got_keys, want_keys,
                "adapter {resource} in {namespace}: {query}"
            );
            for c in &want {
                let want_value = field.map_or(RATE, |f| c.values[f]);
                let got_value = got[&(c.pod.clone(), c.container.clone())];
                let what = format!("adapter {resource} {namespace}/{}/{}", c.pod, c.container);
                assert_close(&what, got_value, want_value);
            }
        }
    }
}

/// `query` without its `image!=""` matcher (and the comma that separated it).
fn without_image_matcher(query: &str) -> String {
    let out = query
        .replace(", image!=\"\"", "")
        .replace(",image!=\"\"", "")
        .replace("image!=\"\",", "");
    assert!(!out.contains("image"), "{query}");
    assert_ne!(out, query, "no image matcher in {query}");
    out
}

#[tokio::test]
async fn kube_prometheus_rules_and_adapter_find_every_container() {
    if !available(Kind::Prometheus) {
        return;
    }
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&read(&fixture_path(
        "kube-prometheus",
        "kubernetesControlPlane-prometheusRule.yaml",
    )));
    let adapter = read(&fixture_path(
        "kube-prometheus",
        "prometheusAdapter-configMap.yaml",
    ));
    let prom = prometheus(&dir.path().join("with-pods"), &rules).await;
    // The negative: the same capture with `--kubelet-pods=false`, on a Prometheus of its own
    // since it would double the 1.34 node's containers in the adapter's queries (they do not
    // select on `image`).
    let bare = prometheus(&dir.path().join("without-pods"), &rules).await;

    let newest_at = now_s() - HISTORY_S;
    let linux_pods = fixture_path("pods", LINUX_PODS);
    let windows_pods = fixture_path("pods", WINDOWS_PODS);
    let linux = node(LINUX_SUMMARY, &linux_pods, newest_at, &prom, &[]).await;
    let windows = node(WINDOWS_SUMMARY, &windows_pods, newest_at, &prom, &[]).await;
    let off = node(
        LINUX_SUMMARY,
        &linux_pods,
        newest_at,
        &bare,
        &["--kubelet-pods=false"],
    )
    .await;
    let pusher = StandIns::pod_info(&prom, &[&linux, &windows]);
    let bare_pusher = StandIns::pod_info(&bare, &[&off]);

    let mut waited = Ok(());
    for (prom, n, labelled) in [
        (&prom, &linux, true),
        (&prom, &windows, true),
        (&bare, &off, false),
    ] {
        if waited.is_ok() {
            waited = wait_caught_up(prom, n, labelled).await;
        }
    }
    if let Err(e) = waited {
        let mut logs = String::new();
        for n in [linux, windows, off] {
            let (code, log) = stop_agent(n.agent).await;
            logs.push_str(&format!("\n--- {} (exit {code:?}):\n{log}", n.name));
        }
        panic!("{e}{logs}");
    }
    pusher.wait_pushed().await;
    bare_pusher.wait_pushed().await;
    let caught_up = began.elapsed();
    let caught_up_ms = now_ms();
    // Every rule checked, evaluated over complete windows (waited for, bounded).
    let rules: Vec<&str> = RULES.iter().map(|(r, _)| *r).collect();
    let evaluations = evaluated_after(&prom, &rules, caught_up_ms).await;
    let at = query_time(&evaluations);

    let mut first_docs = BTreeMap::new();
    for n in [&linux, &windows] {
        let rate5m = evaluations[RULES[0].0];
        first_docs.insert(
            n.name.clone(),
            first_labelled_documents(&prom, n, at, rate5m).await,
        );
    }

    // The recording rules: every container of both nodes, with the summary's values...
    let found = check_rules(&prom, at, &[&linux, &windows], None).await;
    // ...except where the Windows summary has no source: its containers report only
    // `workingSetBytes` (no `rssBytes`, no `swap` section), and the agent invents no value.
    let windows_all: BTreeSet<Key> = windows.containers.iter().map(Container::key).collect();
    for (rule, missing_from_windows) in [
        (RULES[0].0, BTreeSet::new()),
        (RULES[1].0, BTreeSet::new()),
        (RULES[2].0, BTreeSet::new()),
        (RULES[3].0, windows_all.clone()),
        (RULES[4].0, windows_all.clone()),
    ] {
        let missing: BTreeSet<Key> = windows_all.difference(&found[rule]).cloned().collect();
        assert_eq!(
            missing, missing_from_windows,
            "{rule}: Windows containers missing"
        );
    }
    assert_eq!(
        found[RULES[0].0].len(),
        18 + 6,
        "18 Linux and 6 Windows containers"
    );
    assert_eq!(
        found[RULES[3].0].len(),
        18,
        "rss: the Linux containers only"
    );
    let cache = prom.query(CACHE_RULE, at).await;
    assert!(
        cache.is_empty(),
        "no summary source for container_memory_cache: {cache:?}"
    );

    // prometheus-adapter, as `kubectl top pod --containers` asks it, namespace by namespace.
    check_adapter(&prom, at, &[&linux, &windows], &adapter).await;

    // Without `/pods`: the container series are there, with cAdvisor's metrics_path but no
    // image, so the rules find none of them; the very same expressions without the `image`
    // matcher find them all, with the right values.
    assert_eq!(
        off.kubelet.pods_requests(),
        0,
        "--kubelet-pods=false asked for /pods"
    );
    let stored = prom_containers(
        &bare,
        &format!(
            "container_memory_working_set_bytes{{job=\"kubelet\",metrics_path=\"/metrics/cadvisor\",node=\"{}\"}}",
            off.name
        ),
        at,
    )
    .await;
    let off_all: BTreeSet<Key> = off.containers.iter().map(Container::key).collect();
    assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), off_all);
    for (key, metric) in &stored {
        assert!(
            metric.get("image").is_none() && metric.get("name").is_none(),
            "{key:?} carries pod metadata without /pods: {metric}"
        );
    }
    for (rule, _) in RULES {
        let result = bare.query(rule, at).await;
        assert!(result.is_empty(), "{rule} without /pods: {result:?}");
    }
    let queries: BTreeMap<String, String> = loaded_queries(&bare)
        .await
        .into_iter()
        .filter(|(name, _)| RULES.iter().any(|(r, _)| r == name))
        .map(|(name, q)| (name, without_image_matcher(&q)))
        .collect();
    assert_eq!(queries.len(), RULES.len());
    let unlabelled = check_rules_unlabelled(&bare, at, &off, &queries).await;
    assert_eq!(unlabelled, off_all.len());
    check_adapter(&bare, at, &[&off], &adapter).await;

    pusher.assert_all_accepted();
    bare_pusher.assert_all_accepted();
    for n in [&linux, &windows] {
        assert!(
            n.kubelet.pods_requests() > 0,
            "{}: /pods never asked for",
            n.name
        );
    }
    let mut logs = Vec::new();
    for n in [linux, windows, off] {
        let (code, log) = stop_agent(n.agent).await;
        assert_eq!(code, Some(0), "{}: {log}", n.name);
        logs.push((n.name, n.kubelet.requests(), n.kubelet.pods_requests()));
    }
    prom.assert_nothing_rejected(0).await;
    bare.assert_nothing_rejected(0).await;
    eprintln!(
        "kube-prometheus e2e: caught up after {:.1} s; first labelled document per node {:?}; \
         (node, summaries, /pods) served {:?}; whole test {:.1} s",
        caught_up.as_secs_f64(),
        first_docs,
        logs,
        began.elapsed().as_secs_f64()
    );
}

/// The series `selector` returns at `at_ms`, by container, with their labels.
async fn prom_containers(prom: &Real, selector: &str, at_ms: i64) -> BTreeMap<Key, Value> {
    by_container(selector, &prom.query(selector, at_ms).await)
        .into_iter()
        .map(|(k, (m, _))| (k, m))
        .collect()
}

/// The rules' expressions without `image!=""` on the node that has no `/pods`: every
/// container with the expected values, `node` from kube_pod_info, no `image`. Returns how
/// many containers the working-set rule found.
async fn check_rules_unlabelled(
    prom: &Real,
    at_ms: i64,
    node: &Node,
    queries: &BTreeMap<String, String>,
) -> usize {
    let mut working_set = 0;
    for (rule, field) in RULES {
        let got = by_container(rule, &prom.query(&queries[rule], at_ms).await);
        let want = expected(&[node], field);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{rule} without its image matcher"
        );
        for (key, (metric, value)) in &got {
            let (node_name, want_value, _) = &want[key];
            assert_close(&format!("{rule} {key:?} unlabelled"), *value, *want_value);
            assert_eq!(label(metric, "node"), node_name);
            assert!(metric.get("image").is_none(), "{metric}");
        }
        if field == Some("workingSetBytes") {
            working_set = got.len();
        }
    }
    working_set
}

#[test]
fn the_rules_file_is_the_spec_block() {
    let manifest = "apiVersion: v1\nkind: PrometheusRule\nspec:\n  groups:\n  - name: a\n    rules:\n\n    - record: x\n      expr: |\n        up\n";
    assert_eq!(
        rules_file(manifest),
        "groups:\n- name: a\n  rules:\n\n  - record: x\n    expr: |\n      up\n"
    );
    // A top-level key after `spec:` ends it.
    assert_eq!(
        rules_file("spec:\n  groups: []\nstatus: {}\n"),
        "groups: []\n"
    );
}

#[test]
fn adapter_queries_are_filled_in_as_the_adapter_does() {
    let config = read(&fixture_path(
        "kube-prometheus",
        "prometheusAdapter-configMap.yaml",
    ));
    let one = adapter_query(&config, "memory", "ns", &BTreeSet::from(["p"]));
    assert_eq!(
        one,
        "sum by (pod,container) (\n  container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container!=\"\",pod!=\"\"}\n)\n"
    );
    let two = adapter_query(&config, "cpu", "ns", &BTreeSet::from(["a", "b"]));
    assert!(
        two.contains("container_cpu_usage_seconds_total{namespace=\"ns\",pod=~\"a|b\",container!=\"\",pod!=\"\"}[120s]"),
        "{two}"
    );
    assert!(
        two.starts_with("sum by (pod,container) (\n  irate ("),
        "{two}"
    );
}
