//! Pod metadata from `/pods` against what cAdvisor shows for the same node at the same moment
//! (the 1.34 captures in `tests/fixtures/{summaries,pods,cadvisor}`, see their READMEs).

use std::collections::HashMap;
use std::path::Path;

use kubelet_push::kubelet::pods::{self, PodMetadata};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// `name{a="b",...} value ts` → (name, labels). Enough for cAdvisor's own output.
fn series(line: &str) -> Option<(&str, HashMap<&str, &str>)> {
    let (name, rest) = line.split_once('{')?;
    let (body, _) = rest.rsplit_once('}')?;
    let mut labels = HashMap::new();
    let mut s = body;
    while let Some((key, after)) = s.split_once("=\"") {
        let end = after.find('"')?;
        labels.insert(key.trim_start_matches(','), &after[..end]);
        s = &after[end + 1..];
    }
    Some((name, labels))
}

/// For every container of the summary, `/pods` gives exactly the `image` and `name` labels
/// cAdvisor put on that container's series.
#[test]
fn image_and_runtime_id_match_cadvisor_for_every_container() {
    let summary: serde_json::Value = serde_json::from_slice(&fixture(
        "summaries/nri-kubernetes-testutil-1_34__summary.json",
    ))
    .unwrap();
    let pods_doc = fixture("pods/nri-kubernetes-testutil-1_34__pods.json");
    let mut meta = PodMetadata::new();
    meta.replace(&pods::parse(&pods_doc).unwrap());
    let cadvisor = String::from_utf8(fixture(
        "cadvisor/nri-kubernetes-testutil-1_34__metrics_cadvisor.txt",
    ))
    .unwrap();
    // (namespace, pod, container) -> (image, name) from cAdvisor's CPU series.
    let mut want = HashMap::new();
    for line in cadvisor
        .lines()
        .filter(|l| l.starts_with("container_cpu_usage_seconds_total{"))
    {
        let (_, l) = series(line).unwrap();
        if !l["container"].is_empty() {
            want.insert(
                (l["namespace"], l["pod"], l["container"]),
                (l["image"], l["name"]),
            );
        }
    }
    assert_eq!(want.len(), 18, "containers with CPU series in the capture");
    let mut checked = 0;
    for pod in summary["pods"].as_array().unwrap() {
        let r = &pod["podRef"];
        let (ns, name, uid) = (
            r["namespace"].as_str().unwrap(),
            r["name"].as_str().unwrap(),
            r["uid"].as_str().unwrap(),
        );
        let info = meta
            .get(uid)
            .unwrap_or_else(|| panic!("{ns}/{name} ({uid}) not in /pods"));
        assert_eq!((info.namespace.as_str(), info.name.as_str()), (ns, name));
        for c in pod["containers"].as_array().into_iter().flatten() {
            let cname = c["name"].as_str().unwrap();
            let Some(&(image, id)) = want.get(&(ns, name, cname)) else {
                panic!("{ns}/{name}/{cname}: no cAdvisor series")
            };
            let got = info
                .container(cname)
                .unwrap_or_else(|| panic!("{ns}/{name}/{cname}"));
            assert_eq!(
                (got.image.as_str(), got.id.as_str()),
                (image, id),
                "{ns}/{name}/{cname}"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        want.len(),
        "every cAdvisor container is in the summary"
    );
}
