//! The `/pods` documents written for the three Windows summaries (`tests/fixtures/pods/`, see the
//! README there) against the summaries they belong to, read with our own parsers: every pod and
//! container of a summary has the metadata issue 9's labels come from, and the documents say
//! what a kubelet of that era and runtime would (node, runtime scheme, times), so tests built on
//! them exercise the Windows shapes rather than whatever was typed in.

use std::collections::HashSet;
use std::path::PathBuf;

use kubelet_push::kubelet::pods::{self, PodMetadata};
use kubelet_push::kubelet::summary;
use kubelet_push::kubelet::time::parse_rfc3339_ms;
use serde_json::Value;

struct Case {
    /// File stem in `summaries/`; the `/pods` document is `pods/<stem>__pods.json`.
    stem: &'static str,
    /// How this kubelet's runtime prefixes `containerID` and `imageID`.
    container_scheme: &'static str,
    image_id_scheme: &'static str,
    /// Pods and containers of the summary, and pods only `/pods` lists.
    summary_pods: usize,
    summary_containers: usize,
    extra_pods: usize,
    /// (pod name, its `app.kubernetes.io/name` label), for `--pod-label` tests to rely on.
    app_names: &'static [(&'static str, Option<&'static str>)],
}

const CASES: [Case; 3] = [
    Case {
        stem: "seed-windows-node",
        container_scheme: "docker://",
        image_id_scheme: "docker-pullable://",
        summary_pods: 1,
        summary_containers: 1,
        extra_pods: 1,
        app_names: &[
            ("stdlogserverwin-5fbcc5648d-ztqsq", Some("stdlogserverwin")),
            ("iis-1803-7c5b8d6f4b-xk2vn", Some("iis")),
        ],
    },
    Case {
        stem: "dd-integrations-core__stats_summary_windows",
        container_scheme: "docker://",
        image_id_scheme: "docker-pullable://",
        summary_pods: 2,
        summary_containers: 6,
        extra_pods: 1,
        app_names: &[
            ("dd-datadog-lbvkl", None),
            (
                "windows-server-iis-6c68545d57-gwtn9",
                Some("windows-server-iis"),
            ),
            ("aspnetapp-5c7b9f6d48-qz8wt", Some("aspnetapp")),
        ],
    },
    Case {
        stem: "otel-awscontainerinsight-k8swindows__CurSingleKubeletSummary",
        container_scheme: "containerd://",
        image_id_scheme: "",
        summary_pods: 1,
        summary_containers: 1,
        extra_pods: 1,
        app_names: &[
            ("windows-server-iis-ltsc2019-58d94b5844-6v2pg", Some("iis")),
            ("iis-probe-28386180-5xw7k", Some("iis-probe")),
        ],
    },
];

fn read(case: &Case) -> (Vec<u8>, Vec<u8>) {
    let summary_path = crate::support::fixture(&format!("{}.json", case.stem));
    let pods_path: PathBuf = summary_path
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("pods")
        .join(format!("{}__pods.json", case.stem));
    (
        std::fs::read(&summary_path).unwrap(),
        std::fs::read(&pods_path).unwrap(),
    )
}

fn is_container_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn ms(v: &Value) -> i64 {
    parse_rfc3339_ms(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

/// Every pod of the summary is in `/pods` by UID, under the same name and namespace, and every
/// container of it has an image and a runtime id, which is what the `image` and `name` labels
/// need; `/pods` also lists pods the summary cannot show, as a real node's does.
#[test]
fn every_summary_container_has_an_image_and_a_runtime_id() {
    for case in &CASES {
        let (summary_doc, pods_doc) = read(case);
        let summary = summary::parse(&summary_doc).unwrap();
        let list = pods::parse(&pods_doc).unwrap();
        let mut meta = PodMetadata::new(vec!["app.kubernetes.io/name".to_owned()]);
        meta.replace(&list, 0, std::time::Instant::now());
        let stem = case.stem;

        let mut summary_uids = HashSet::new();
        let mut containers = 0;
        let mut ids = HashSet::new();
        for pod in summary.pods.iter().flatten() {
            let r = pod.pod_ref.as_ref().unwrap();
            let (ns, name, uid) = (
                r.namespace.as_deref().unwrap(),
                r.name.as_deref().unwrap(),
                r.uid.as_deref().unwrap(),
            );
            summary_uids.insert(uid);
            let info = meta
                .get(uid)
                .unwrap_or_else(|| panic!("{stem}: {ns}/{name} ({uid}) not in /pods"));
            assert_eq!(
                (info.namespace.as_str(), info.name.as_str()),
                (ns, name),
                "{stem}: {uid}"
            );
            for c in pod.containers.iter().flatten() {
                let cname = c.name.as_deref().unwrap();
                let got = info
                    .container(cname)
                    .unwrap_or_else(|| panic!("{stem}: {ns}/{name}/{cname} not in /pods"));
                assert!(!got.image.is_empty(), "{stem}: {ns}/{name}/{cname}");
                assert!(
                    !got.image.contains("://") && !got.image.starts_with("sha256:"),
                    "{stem}: {ns}/{name}/{cname}: image {:?}",
                    got.image
                );
                assert!(
                    is_container_id(&got.id),
                    "{stem}: {ns}/{name}/{cname}: id {:?}",
                    got.id
                );
                assert!(ids.insert(got.id.clone()), "{stem}: {} twice", got.id);
                containers += 1;
            }
        }
        assert_eq!(summary_uids.len(), case.summary_pods, "{stem}");
        assert_eq!(containers, case.summary_containers, "{stem}");
        assert_eq!(
            meta.len(),
            case.summary_pods + case.extra_pods,
            "{stem}: pods in /pods"
        );
        assert!(case.extra_pods >= 1, "{stem}: a real node lists more");

        for &(pod_name, want) in case.app_names {
            let items = list.items.as_ref().unwrap();
            let uid = items
                .iter()
                .filter_map(|p| p.metadata.as_ref())
                .find(|m| m.name.as_deref() == Some(pod_name))
                .and_then(|m| m.uid.as_deref())
                .unwrap_or_else(|| panic!("{stem}: no pod {pod_name}"));
            let info = meta.get(uid).unwrap();
            let got = info
                .labels
                .iter()
                .find(|(k, _)| k == "app.kubernetes.io/name")
                .map(|(_, v)| v.as_str());
            assert_eq!(got, want, "{stem}: {pod_name}");
        }
    }
}

/// What the parser above ignores but a Windows kubelet of that era would have said: the node,
/// a Windows node selector, the runtime's id schemes, times consistent with the summary's
/// (the summary's container `startTime` is the runtime's creation time, `/pods`'s `startedAt`
/// its start, seconds later), and pods the summary lacks being ones with no running container.
#[test]
fn the_pod_list_agrees_with_the_summary_and_the_runtime() {
    for case in &CASES {
        let (summary_doc, pods_doc) = read(case);
        let summary = summary::parse(&summary_doc).unwrap();
        let list: Value = serde_json::from_slice(&pods_doc).unwrap();
        let stem = case.stem;
        assert_eq!(list["kind"], "PodList", "{stem}");
        assert_eq!(list["apiVersion"], "v1", "{stem}");
        let node = summary
            .node
            .as_ref()
            .and_then(|n| n.node_name.as_deref())
            .unwrap();
        let items = list["items"].as_array().unwrap();
        let mut extra = 0;
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap();
            let uid = item["metadata"]["uid"].as_str().unwrap();
            assert_eq!(item["spec"]["nodeName"], node, "{stem}: {name}");
            let selector = &item["spec"]["nodeSelector"];
            let os = selector
                .get("kubernetes.io/os")
                .or_else(|| selector.get("beta.kubernetes.io/os"));
            assert_eq!(
                os.and_then(Value::as_str),
                Some("windows"),
                "{stem}: {name}"
            );
            let statuses: Vec<&Value> = ["initContainerStatuses", "containerStatuses"]
                .iter()
                .filter_map(|k| item["status"][k].as_array())
                .flatten()
                .collect();
            for s in &statuses {
                if let Some(id) = s.get("containerID").and_then(Value::as_str) {
                    let rest = id.strip_prefix(case.container_scheme);
                    assert!(rest.is_some_and(is_container_id), "{stem}: {name}: {id}");
                }
                let image_id = s["imageID"].as_str().unwrap();
                if !image_id.is_empty() {
                    let rest = image_id.strip_prefix(case.image_id_scheme).unwrap();
                    let (_, digest) = rest.split_once("@sha256:").unwrap();
                    assert!(is_container_id(digest), "{stem}: {name}: {image_id}");
                    assert!(!rest.contains("://"), "{stem}: {name}: {image_id}");
                }
            }

            let in_summary = summary
                .pods
                .iter()
                .flatten()
                .find(|p| p.pod_ref.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid));
            let Some(pod) = in_summary else {
                extra += 1;
                let phase = item["status"]["phase"].as_str().unwrap();
                assert!(
                    matches!(phase, "Pending" | "Succeeded"),
                    "{stem}: {name} is {phase}, so the summary would list it"
                );
                assert!(
                    statuses.iter().all(|s| s["state"].get("running").is_none()),
                    "{stem}: {name}"
                );
                continue;
            };
            assert_eq!(item["status"]["phase"], "Running", "{stem}: {name}");
            let started = ms(&item["status"]["startTime"]);
            let sandbox = pod.start_time.unwrap().0;
            assert!(
                (0..=5_000).contains(&(sandbox - started)),
                "{stem}: {name}: pod startTime {started} vs summary {sandbox}"
            );
            for c in pod.containers.iter().flatten() {
                let cname = c.name.as_deref().unwrap();
                let s = statuses
                    .iter()
                    .find(|s| s["name"] == cname)
                    .unwrap_or_else(|| panic!("{stem}: {name}/{cname}"));
                let state = &s["state"];
                let running = state.get("running").or_else(|| state.get("terminated"));
                let started_at = ms(&running.unwrap()["startedAt"]);
                let created = c.start_time.unwrap().0;
                assert!(
                    (0..=60_000).contains(&(started_at - created)),
                    "{stem}: {name}/{cname}: startedAt {started_at} vs summary {created}"
                );
                assert_eq!(s["ready"], true, "{stem}: {name}/{cname}");
            }
        }
        assert_eq!(extra, case.extra_pods, "{stem}");
    }
}
