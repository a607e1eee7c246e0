//! Pod metadata from the kubelet's `GET /pods` (a `v1.PodList`): what the Summary API does not
//! say about a pod and cAdvisor's series carry (issue 9): each container's image as the runtime
//! reports it, its runtime id, the pod's labels and QoS class.
//!
//! This module owns the document's types (only the fields used, borrowed, tolerant of anything
//! missing) and [`PodMetadata`], the owned, bounded cache the pipeline keeps between polls:
//! replaced whole by each successful `/pods` answer, so it never holds a pod the kubelet no
//! longer runs, and asked again only when a summary shows a pod it lacks, at most once per
//! interval ([`PodMetadata::wants_refresh`]). Fetching is the client's job, attaching labels
//! the converter's; neither is here.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Parses a `/pods` document.
pub fn parse(bytes: &[u8]) -> Result<PodList<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[derive(Debug, Default, Deserialize)]
pub struct PodList<'a> {
    #[serde(borrow, default)]
    pub items: Option<Vec<Pod<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Pod<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<ObjectMeta<'a>>,
    #[serde(borrow, default)]
    pub status: Option<PodStatus<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectMeta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus<'a> {
    #[serde(borrow, default)]
    pub qos_class: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub container_statuses: Option<Vec<ContainerStatus<'a>>>,
    #[serde(borrow, default)]
    pub init_container_statuses: Option<Vec<ContainerStatus<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub image: Option<Cow<'a, str>>,
    #[serde(rename = "imageID", borrow, default)]
    pub image_id: Option<Cow<'a, str>>,
    #[serde(rename = "containerID", borrow, default)]
    pub container_id: Option<Cow<'a, str>>,
}

/// What is known about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    /// `Guaranteed`, `Burstable` or `BestEffort`, as the kubelet reports it.
    pub qos_class: Option<String>,
    pub labels: Vec<(String, String)>,
    pub containers: Vec<ContainerInfo>,
}

/// What is known about one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    /// The image as cAdvisor shows it in its `image` label: see [`image_as_cadvisor_shows_it`].
    pub image: String,
    /// The runtime's container id without its `containerd://`-style scheme: cAdvisor's `name`.
    pub id: String,
}

impl PodInfo {
    pub fn container(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// The pods the kubelet last listed, by UID. See the module doc.
#[derive(Debug, Default)]
pub struct PodMetadata {
    pods: HashMap<String, PodInfo>,
    /// When `/pods` was last asked, answered or not.
    asked: Option<Instant>,
}

impl PodMetadata {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, uid: &str) -> Option<&PodInfo> {
        self.pods.get(uid)
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Whether `/pods` should be asked now: never asked, or a pod of the current summary is
    /// unknown and the last attempt is at least `min_gap` old (so a pod `/pods` does not list,
    /// or a `/pods` that keeps failing, costs one request per interval, not one per poll).
    pub fn wants_refresh<'u>(
        &self,
        mut summary_uids: impl Iterator<Item = &'u str>,
        now: Instant,
        min_gap: Duration,
    ) -> bool {
        match self.asked {
            None => true,
            Some(at) => {
                now.saturating_duration_since(at) >= min_gap
                    && summary_uids.any(|u| !self.pods.contains_key(u))
            }
        }
    }

    /// Records an attempt to ask `/pods` (call it whether or not it succeeds).
    pub fn asked(&mut self, now: Instant) {
        self.asked = Some(now);
    }

    /// Replaces what is known with a fresh `/pods` answer. Pods without a UID are skipped:
    /// nothing in a summary could name them.
    pub fn replace(&mut self, list: &PodList<'_>) {
        self.pods.clear();
        for pod in list.items.iter().flatten() {
            let Some(meta) = &pod.metadata else { continue };
            let Some(uid) = meta.uid.as_deref().filter(|u| !u.is_empty()) else {
                continue;
            };
            let status = pod.status.as_ref();
            let statuses = status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .chain(
                    status
                        .and_then(|s| s.init_container_statuses.as_ref())
                        .into_iter()
                        .flatten(),
                );
            let containers = statuses
                .filter_map(|c| {
                    Some(ContainerInfo {
                        name: c.name.as_deref()?.to_owned(),
                        image: image_as_cadvisor_shows_it(
                            c.image.as_deref().unwrap_or(""),
                            c.image_id.as_deref().unwrap_or(""),
                        )
                        .to_owned(),
                        id: strip_scheme(c.container_id.as_deref().unwrap_or("")).to_owned(),
                    })
                })
                .collect();
            let labels = meta
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.pods.insert(
                uid.to_owned(),
                PodInfo {
                    name: meta.name.as_deref().unwrap_or("").to_owned(),
                    namespace: meta.namespace.as_deref().unwrap_or("").to_owned(),
                    qos_class: status
                        .and_then(|s| s.qos_class.as_deref())
                        .map(str::to_owned),
                    labels,
                    containers,
                },
            );
        }
    }
}

/// The image reference cAdvisor puts in `image`: the runtime's `status.image`, except for an
/// image pulled by digest, which the runtime reports by its id (`sha256:…`) while cAdvisor
/// shows the `repository@sha256:…` reference the kubelet has as `imageID` (seen in the 1.34
/// capture: metrics-server). Docker-era kubelets prefix `imageID` with `docker-pullable://`.
fn image_as_cadvisor_shows_it<'a>(image: &'a str, image_id: &'a str) -> &'a str {
    let reference = strip_scheme(image_id);
    if image.starts_with("sha256:") && reference.contains('@') {
        reference
    } else {
        image
    }
}

/// `containerd://abc` → `abc`; an id without a scheme is kept as it is.
fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(doc: &str) -> PodMetadata {
        let mut m = PodMetadata::new();
        m.replace(&parse(doc.as_bytes()).unwrap());
        m
    }

    #[test]
    fn keeps_what_cadvisor_shows_and_tolerates_gaps() {
        let m = list(
            r#"{"kind":"PodList","items":[
              {"metadata":{"name":"web","namespace":"shop","uid":"u1","labels":{"app":"web","team":"a"}},
               "status":{"qosClass":"Burstable","containerStatuses":[
                 {"name":"app","image":"docker.io/library/nginx:1.27","containerID":"containerd://abc123"},
                 {"name":"side","image":"x"}],
                 "initContainerStatuses":[{"name":"init","image":"busybox","containerID":"docker://i1"}]}},
              {"metadata":{"name":"no-uid"}},
              {"metadata":{"name":"bare","namespace":"ns","uid":"u2"}},
              {}
            ]}"#,
        );
        assert_eq!(m.len(), 2);
        let web = m.get("u1").unwrap();
        assert_eq!((web.name.as_str(), web.namespace.as_str()), ("web", "shop"));
        assert_eq!(web.qos_class.as_deref(), Some("Burstable"));
        assert_eq!(
            web.labels,
            vec![("app".into(), "web".into()), ("team".into(), "a".into())]
        );
        let app = web.container("app").unwrap();
        assert_eq!(
            (app.image.as_str(), app.id.as_str()),
            ("docker.io/library/nginx:1.27", "abc123")
        );
        assert_eq!(web.container("side").unwrap().id, "");
        assert_eq!(web.container("init").unwrap().id, "i1");
        let bare = m.get("u2").unwrap();
        assert!(bare.containers.is_empty() && bare.labels.is_empty() && bare.qos_class.is_none());
    }

    #[test]
    fn an_image_pulled_by_digest_is_named_by_its_reference() {
        assert_eq!(
            image_as_cadvisor_shows_it("sha256:bc6c", "registry.k8s.io/ms@sha256:8925"),
            "registry.k8s.io/ms@sha256:8925"
        );
        assert_eq!(
            image_as_cadvisor_shows_it("sha256:bc6c", "docker-pullable://r/ms@sha256:8925"),
            "r/ms@sha256:8925"
        );
        assert_eq!(
            image_as_cadvisor_shows_it(
                "docker.io/library/perl:5.34.0",
                "docker.io/library/perl@sha256:2584"
            ),
            "docker.io/library/perl:5.34.0"
        );
        assert_eq!(image_as_cadvisor_shows_it("sha256:bc6c", ""), "sha256:bc6c");
    }

    #[test]
    fn a_fresh_answer_replaces_everything() {
        let mut m = list(r#"{"items":[{"metadata":{"uid":"old"}}]}"#);
        m.replace(&parse(br#"{"items":[{"metadata":{"uid":"new"}}]}"#).unwrap());
        assert!(m.get("old").is_none());
        assert!(m.get("new").is_some());
        m.replace(&parse(b"{}").unwrap());
        assert!(m.is_empty());
    }

    #[test]
    fn asks_again_only_for_an_unknown_pod_and_at_most_once_per_gap() {
        let gap = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut m = PodMetadata::new();
        assert!(m.wants_refresh(std::iter::empty(), t0, gap), "never asked");
        m.asked(t0);
        m.replace(&parse(br#"{"items":[{"metadata":{"uid":"a"}}]}"#).unwrap());
        let later = t0 + gap;
        assert!(!m.wants_refresh(["a"].into_iter(), later, gap), "all known");
        assert!(
            !m.wants_refresh(["a", "b"].into_iter(), t0 + gap / 2, gap),
            "unknown, but asked too recently"
        );
        assert!(m.wants_refresh(["a", "b"].into_iter(), later, gap));
    }
}
