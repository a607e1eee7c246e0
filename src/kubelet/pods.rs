//! Pod metadata from the kubelet's `GET /pods` (a `v1.PodList`): what the Summary API does not
//! say about a pod and cAdvisor's series carry (issue 9): each container's image as the runtime
//! reports it, its runtime id, the pod's labels and QoS class.
//!
//! This module owns the document's types (only the fields used, borrowed, tolerant of anything
//! missing) and [`PodMetadata`], the owned, bounded cache the pipeline keeps between polls:
//! replaced whole by each successful `/pods` answer, so it never holds a pod the kubelet no
//! longer runs, keeps only the pod labels `--pod-label` asks for, and is asked again only when
//! a summary shows something it cannot describe, at most once per interval, or when it is
//! [`MAX_AGE`] old ([`PodMetadata::wants_refresh`]). Fetching is the client's job, attaching
//! labels the converter's, deciding when to fetch the pipeline's; none of them is here.

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
    /// The pod labels `--pod-label` asks for, in the document's (sorted) order.
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

    /// The value of pod label `name`, if the pod has it and it was kept.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How old an answer may get before `/pods` is asked again even though every pod and
/// container is known: bounds how long a changed pod label goes unnoticed.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// How long after the `/pods` answer a container may have started and still be described by
/// it. The kubelet updates a pod's status a moment after the runtime starts a container, so an
/// answer taken just after the start may still name the container it replaced; a container
/// that started this close to (or after) the answer makes the next poll ask again.
pub const STATUS_LAG_MS: i64 = 5_000;

/// The pods the kubelet last listed, by UID. See the module doc.
#[derive(Debug, Default)]
pub struct PodMetadata {
    pods: HashMap<String, PodInfo>,
    /// The pod labels to keep (`--pod-label`); all others are dropped on arrival.
    keep_labels: Vec<String>,
    /// When `/pods` was last asked, answered or not.
    asked: Option<Instant>,
    /// Wall-clock time (Unix ms) and monotonic time of the answer held, if any.
    answered: Option<(i64, Instant)>,
}

/// Whether a container's metadata can be trusted for the stats in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The answer was taken well after the container started: label it.
    Current,
    /// The container started shortly before the answer: label it, but ask again to be sure.
    Recheck,
    /// The container started after the answer (or is unknown): its id and image may be the
    /// ones of the container it replaced, so it is not labelled until `/pods` is asked again.
    Unknown,
}

impl PodMetadata {
    /// An empty cache that keeps the pod labels named in `keep_labels`.
    pub fn new(keep_labels: Vec<String>) -> Self {
        PodMetadata {
            keep_labels,
            ..Self::default()
        }
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

    /// Whether `/pods` should be asked now: never asked; or the last attempt is at least
    /// `min_gap` old and either the last summary had something this answer could not describe
    /// (`incomplete`: a pod it lacks, a container started after it) or the answer is
    /// [`MAX_AGE`] old. So a pod `/pods` does not list, or a `/pods` that keeps failing, costs
    /// one request per `min_gap`, not one per poll.
    pub fn wants_refresh(&self, incomplete: bool, now: Instant, min_gap: Duration) -> bool {
        let Some(asked) = self.asked else { return true };
        if now.saturating_duration_since(asked) < min_gap {
            return false;
        }
        let stale = self
            .answered
            .is_none_or(|(_, at)| now.saturating_duration_since(at) >= MAX_AGE);
        incomplete || stale
    }

    /// Records an attempt to ask `/pods` (call it whether or not it succeeds).
    pub fn asked(&mut self, now: Instant) {
        self.asked = Some(now);
    }

    /// Whether a container that started at `started_ms` (Unix ms, the summary's
    /// `startTime`; `None` when the summary does not say) is described by the answer held.
    pub fn coverage(&self, started_ms: Option<i64>) -> Coverage {
        let Some((answered_ms, _)) = self.answered else {
            return Coverage::Unknown;
        };
        match started_ms {
            Some(s) if s > answered_ms => Coverage::Unknown,
            Some(s) if s > answered_ms - STATUS_LAG_MS => Coverage::Recheck,
            _ => Coverage::Current,
        }
    }

    /// Replaces what is known with a fresh `/pods` answer, received at `answered_ms` (Unix ms)
    /// and `now`. Pods without a UID are skipped: nothing in a summary could name them.
    pub fn replace(&mut self, list: &PodList<'_>, answered_ms: i64, now: Instant) {
        self.answered = Some((answered_ms, now));
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
                .filter(|(k, _)| {
                    self.keep_labels
                        .iter()
                        .any(|keep| keep.as_str() == k.as_ref())
                })
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
        let mut m = PodMetadata::new(vec!["app".into(), "team".into()]);
        m.replace(&parse(doc.as_bytes()).unwrap(), 0, Instant::now());
        m
    }

    #[test]
    fn keeps_what_cadvisor_shows_and_tolerates_gaps() {
        let m = list(
            r#"{"kind":"PodList","items":[
              {"metadata":{"name":"web","namespace":"shop","uid":"u1","labels":{"app":"web","pod-template-hash":"5d","team":"a"}},
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
            vec![("app".into(), "web".into()), ("team".into(), "a".into())],
            "only the labels asked for"
        );
        assert_eq!(web.label("team"), Some("a"));
        assert_eq!(web.label("pod-template-hash"), None);
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
        let now = Instant::now();
        m.replace(
            &parse(br#"{"items":[{"metadata":{"uid":"new"}}]}"#).unwrap(),
            1,
            now,
        );
        assert!(m.get("old").is_none());
        assert!(m.get("new").is_some());
        m.replace(&parse(b"{}").unwrap(), 2, now);
        assert!(m.is_empty());
    }

    #[test]
    fn asks_again_when_incomplete_or_old_and_at_most_once_per_gap() {
        let gap = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut m = PodMetadata::new(Vec::new());
        assert!(m.wants_refresh(false, t0, gap), "never asked");
        m.asked(t0);
        assert!(
            !m.wants_refresh(true, t0 + gap / 2, gap),
            "asked too recently, even unanswered"
        );
        assert!(
            m.wants_refresh(false, t0 + gap, gap),
            "asked, never answered"
        );
        m.replace(
            &parse(br#"{"items":[{"metadata":{"uid":"a"}}]}"#).unwrap(),
            0,
            t0,
        );
        let later = t0 + gap;
        assert!(!m.wants_refresh(false, later, gap), "all known");
        assert!(!m.wants_refresh(true, t0 + gap / 2, gap), "too recently");
        assert!(m.wants_refresh(true, later, gap), "incomplete");
        assert!(
            !m.wants_refresh(false, t0 + MAX_AGE - gap, gap),
            "not old yet"
        );
        assert!(m.wants_refresh(false, t0 + MAX_AGE, gap), "old");
    }

    #[test]
    fn a_container_started_after_the_answer_is_not_covered() {
        let mut m = PodMetadata::new(Vec::new());
        assert_eq!(m.coverage(Some(0)), Coverage::Unknown, "no answer yet");
        m.replace(&parse(b"{}").unwrap(), 100_000, Instant::now());
        assert_eq!(m.coverage(None), Coverage::Current);
        assert_eq!(m.coverage(Some(100_000 - STATUS_LAG_MS)), Coverage::Current);
        assert_eq!(
            m.coverage(Some(100_000 - STATUS_LAG_MS + 1)),
            Coverage::Recheck
        );
        assert_eq!(m.coverage(Some(100_000)), Coverage::Recheck);
        assert_eq!(m.coverage(Some(100_001)), Coverage::Unknown);
    }
}
