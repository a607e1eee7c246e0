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
    let summary_doc = fixture("summaries/nri-kubernetes-testutil-1_34__summary.json");
    let summary = kubelet_push::kubelet::summary::parse(&summary_doc).unwrap();
    let pods_doc = fixture("pods/nri-kubernetes-testutil-1_34__pods.json");
    let mut meta = PodMetadata::new(Vec::new());
    meta.replace(
        &pods::parse(&pods_doc).unwrap(),
        0,
        std::time::Instant::now(),
    );
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
    for pod in summary.pods.iter().flatten() {
        let r = pod.pod_ref.as_ref().unwrap();
        let (ns, name, uid) = (
            r.namespace.as_deref().unwrap(),
            r.name.as_deref().unwrap(),
            r.uid.as_deref().unwrap(),
        );
        let info = meta
            .get(uid)
            .unwrap_or_else(|| panic!("{ns}/{name} ({uid}) not in /pods"));
        assert_eq!((info.namespace.as_str(), info.name.as_str()), (ns, name));
        for c in pod.containers.iter().flatten() {
            let cname = c.name.as_deref().unwrap();
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

/// Serves one answer to one request on 127.0.0.1 and hands back the request's head.
async fn answer_once(
    status: &'static str,
    body: Vec<u8>,
) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(reply.as_bytes()).await.unwrap();
        conn.write_all(&body).await.unwrap();
        conn.flush().await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (url, server)
}

/// `/pods` is asked at the kubelet's base URL with the summary's token, and the answer parses
/// into the metadata the cAdvisor comparison above relies on.
#[tokio::test]
async fn the_pod_list_is_fetched_like_the_summary() {
    use kubelet_push::kubelet::KubeletClient;

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (url, server) = answer_once(
        "200 OK",
        fixture("pods/nri-kubernetes-testutil-1_34__pods.json"),
    )
    .await;
    let base = format!("{url}/api/v1/nodes/n1/proxy/");
    let token_arg = token.display().to_string();
    let config = crate::support::config(&[
        "--dry-run",
        "--kubelet-url",
        &base,
        "--kubelet-token-file",
        &token_arg,
    ]);
    let client = KubeletClient::new(config.poll.kubelet.clone()).unwrap();
    let bytes = client.fetch_pods().await.expect("an HTTP kubelet").unwrap();
    let head = server.await.unwrap();
    assert!(
        head.starts_with("GET /api/v1/nodes/n1/proxy/pods HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer s3cret\r\n"),
        "{head}"
    );
    let mut meta = PodMetadata::new(Vec::new());
    meta.replace(&pods::parse(&bytes).unwrap(), 0, std::time::Instant::now());
    assert_eq!(meta.len(), 24);

    // Forbidden (no nodes/proxy permission): the status and the kubelet's words come back.
    let (url, server) = answer_once(
        "403 Forbidden",
        b"Forbidden (user=system:serviceaccount:x:y, verb=get, resource=nodes, subresource=proxy)"
            .to_vec(),
    )
    .await;
    let config = crate::support::config(&["--dry-run", "--kubelet-url", &url]);
    let client = KubeletClient::new(config.poll.kubelet.clone()).unwrap();
    match client.fetch_pods().await.expect("an HTTP kubelet") {
        Err(kubelet_push::kubelet::ScrapeError::Status { status, body }) => {
            assert_eq!(status.as_u16(), 403);
            assert!(body.contains("subresource=proxy"), "{body}");
        }
        other => panic!("403 is a status error: {other:?}"),
    }
    server.await.unwrap();

    // A captured summary has no kubelet behind it.
    let config = crate::support::config(&["--dry-run", "--kubelet-url", "file://unused.json"]);
    assert!(KubeletClient::new(config.poll.kubelet.clone())
        .unwrap()
        .fetch_pods()
        .await
        .is_none());
}

// ---------------------------------------------------------------------------------------
// `/pods` beside the polls: failures, a slow kubelet, a pod the summary shows first.

/// How the fake kubelet answers `/pods` (the summary is always served).
#[derive(Clone)]
enum PodsAnswer {
    List(Vec<u8>),
    Status(u16, &'static str),
    /// A pod list cut off halfway.
    Broken,
    /// The list, after this long.
    Slow(std::time::Duration),
}

struct PodsKubelet {
    server: kubelet_push::testkit::server::LocalServer,
    answer: std::sync::Arc<std::sync::Mutex<PodsAnswer>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Answers cut off halfway ([`PodsAnswer::Broken`]) sent.
    broken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PodsKubelet {
    async fn start(summary: Vec<u8>, answer: PodsAnswer) -> PodsKubelet {
        use axum::http::{header, StatusCode};
        use axum::response::IntoResponse;
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let broken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, r, f, b) = (
            answer.clone(),
            requests.clone(),
            in_flight.clone(),
            broken.clone(),
        );
        let full = fixture("pods/nri-kubernetes-testutil-1_34__pods.json");
        let app = axum::Router::new()
            .route(
                "/stats/summary",
                axum::routing::get(move || async move {
                    ([(header::CONTENT_TYPE, "application/json")], summary)
                }),
            )
            .route(
                "/pods",
                axum::routing::get(move || {
                    let (a, r, f, b, full) =
                        (a.clone(), r.clone(), f.clone(), b.clone(), full.clone());
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let answer = a.lock().unwrap().clone();
                        let json = |b: Vec<u8>| {
                            ([(header::CONTENT_TYPE, "application/json")], b).into_response()
                        };
                        match answer {
                            PodsAnswer::List(b) => json(b),
                            PodsAnswer::Status(code, body) => {
                                (StatusCode::from_u16(code).unwrap(), body).into_response()
                            }
                            PodsAnswer::Broken => {
                                b.fetch_add(1, Ordering::SeqCst);
                                json(full[..full.len() / 2].to_vec())
                            }
                            PodsAnswer::Slow(d) => {
                                f.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(d).await;
                                f.fetch_sub(1, Ordering::SeqCst);
                                json(full)
                            }
                        }
                    }
                }),
            );
        let server = kubelet_push::testkit::server::LocalServer::start(app, "pods kubelet")
            .await
            .unwrap();
        PodsKubelet {
            server,
            answer,
            requests,
            in_flight,
            broken,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    fn set(&self, answer: PodsAnswer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn broken(&self) -> usize {
        self.broken.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The 1.34 capture's pod list without the pod named `name`.
fn pods_without(name: &str) -> Vec<u8> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&fixture("pods/nri-kubernetes-testutil-1_34__pods.json")).unwrap();
    let items = doc["items"].as_array_mut().unwrap();
    let before = items.len();
    items.retain(|p| p["metadata"]["name"] != name);
    assert_eq!(items.len(), before - 1, "{name} is in the capture");
    serde_json::to_vec(&doc).unwrap()
}

use crate::support::{
    current_thread_runtime, eventually, label, metric_in, named, only_value, wait_until, Logs,
    Polled, PATIENCE,
};

/// Container CPU series of one poll: (pod, image) for each, image `None` when unlabelled.
fn container_cpu(p: &Polled) -> Vec<(String, Option<String>)> {
    named(&p.series, "container_cpu_usage_seconds_total")
        .into_iter()
        .filter(|ts| !ts.samples[0].value.is_nan())
        .map(|ts| {
            (
                label(ts, "pod").unwrap().to_owned(),
                label(ts, "image").map(str::to_owned),
            )
        })
        .collect()
}

const LATE_POD: &str = "coredns-66bc5c9577-d98t2";

/// `/pods` forbidden, then answering without a pod the summary already shows, then slow, then
/// broken, then whole: the stats are pushed at once without labels and every poll answers
/// (`up` 1) without waiting for `/pods`; each failing episode is one warning and one recovery
/// line; labels come on a later poll, and the unlabelled series end with a stale marker when
/// their labelled ones start. The summary is the same bytes every time (so after the first
/// poll only label changes send anything), which also checks that new metadata is applied to
/// a summary that did not change.
///
/// `/pods` is asked between polls and its answer taken in by a later poll once it has arrived,
/// with a gap between requests that doubles while they fail: how many polls that takes depends
/// on the machine. So each phase polls until what it waits for has happened (bounded by
/// PATIENCE), every poll checked on the way (no error, `up` 1, and in the quiet phases nothing
/// but the per-poll series: stats never go missing, labels never go back).
#[test]
fn pod_metadata_failures_never_cost_stats_and_labels_come_later() {
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::Instant;
    // How long the slow kubelet holds `/pods`: far past the agent's --kubelet-timeout (1 s),
    // and twice the bound on a poll below, which a correct poll (that never waits for `/pods`)
    // stays far under on any machine.
    const HOLD: Duration = PATIENCE;
    let (logs, _guard) = Logs::capture();
    let rt = current_thread_runtime();
    rt.block_on(async {
        let kubelet = PodsKubelet::start(
            fixture("summaries/nri-kubernetes-testutil-1_34__summary.json"),
            PodsAnswer::Status(
                403,
                "Forbidden (user=system:serviceaccount:monitoring:kubelet-push, verb=get, resource=nodes, subresource=proxy)",
            ),
        )
        .await;
        let url = kubelet.url();
        let metrics = Arc::new(kubelet_push::telemetry::Metrics::new());
        let mut p = kubelet_push::pipeline::Poller::new(
            &crate::support::config(&[
                "--kubelet-url",
                &url,
                "--remote-url",
                "http://127.0.0.1:9/api/v1/write",
                "--interval",
                "10ms",
                "--kubelet-timeout",
                "1s",
            ]).poll,
            metrics.clone(),
        )
        .unwrap();
        // `/pods` answers the poller took in that were failures.
        let failed_answers = || {
            metric_in(
                &metrics.encode(),
                "kubelet_push_pod_list_requests_total{result=\"error\"}",
            )
            .expect("the pod list counter")
        };
        // A poll, checked (no error, `up` 1: the stats never wait for `/pods`), then a pause
        // that paces the polls; nothing below counts on what happens during it.
        async fn poll(p: &mut kubelet_push::pipeline::Poller) -> Polled {
            let polled = crate::support::polled(p).await;
            assert!(polled.error.is_none(), "{:?}", polled.error);
            assert_eq!(only_value(&polled.series, "up"), 1.0);
            tokio::time::sleep(Duration::from_millis(30)).await;
            polled
        }
        // Only the per-poll series: nothing changed, nothing ended.
        let quiet = |polled: &Polled| {
            polled
                .series
                .iter()
                .all(|ts| ["up", "scrape_duration_seconds", "scrape_samples_scraped"].contains(&crate::support::name(ts)))
        };

        // Forbidden: the stats without metadata labels, /pods asked again at most once per
        // poll.
        let first = poll(&mut p).await;
        let cpu = container_cpu(&first);
        assert_eq!(cpu.len(), 18);
        assert!(cpu.iter().all(|(_, image)| image.is_none()), "no metadata yet");
        for _ in 0..2 {
            assert!(quiet(&poll(&mut p).await));
        }
        // The second poll came more than the doubled gap (20 ms) after the first request and
        // found none under way, so it asked again: that request arrives, however slowly.
        wait_until("/pods asked again", || kubelet.requests() >= 2).await;
        assert!((2..=4).contains(&kubelet.requests()), "{}", kubelet.requests());

        // /pods answers, without one pod the summary shows: the others are labelled.
        kubelet.set(PodsAnswer::List(pods_without(LATE_POD)));
        let polled = eventually("labels after /pods answered", PATIENCE, async || {
            let polled = poll(&mut p).await;
            let labelled = container_cpu(&polled).iter().any(|(_, image)| image.is_some());
            labelled.then_some(polled).ok_or_else(String::new)
        })
        .await;
        let cpu = container_cpu(&polled);
        assert_eq!(cpu.len(), 17, "every container but the late pod's, now labelled");
        assert!(cpu.iter().all(|(pod, image)| pod != LATE_POD && image.is_some()));
        let ended = named(&polled.series, "container_cpu_usage_seconds_total")
            .into_iter()
            .filter(|ts| ts.samples[0].value.is_nan())
            .inspect(|ts| assert_eq!(label(ts, "image"), None))
            .count();
        assert_eq!(ended, 17, "their unlabelled series end");

        // Slow: the kubelet holds /pods past --kubelet-timeout; polls do not wait for it. The
        // late pod is still undescribed, so the next poll asks; polls go on (six at least)
        // until one has run while that request was being answered.
        kubelet.set(PodsAnswer::Slow(HOLD));
        let asked = kubelet.requests();
        let deadline = Instant::now() + PATIENCE;
        let mut overlapped = false;
        let mut polls = 0;
        while polls < 6 || !overlapped {
            assert!(
                Instant::now() < deadline,
                "no poll ran while /pods was being answered"
            );
            let polled = tokio::time::timeout(HOLD / 2, poll(&mut p))
                .await
                .expect("a poll never waits for /pods");
            assert!(quiet(&polled));
            overlapped |= kubelet.in_flight() > 0;
            polls += 1;
        }
        assert!(overlapped, "polls ran while /pods was being answered");
        assert!(kubelet.requests() > asked);
        // Broken JSON from now on; the slow request times out (1 s) first, in the same failing
        // episode: no second warning. Labels are kept meanwhile. Polls go on (three at least)
        // until the timeout was taken in (its warning) and then a broken answer too: the
        // failure count rises past the broken answer's arrival.
        kubelet.set(PodsAnswer::Broken);
        let deadline = Instant::now() + PATIENCE;
        let mut polls = 0;
        let mut failures_before_broken = None;
        loop {
            assert!(quiet(&poll(&mut p).await), "the last good answer keeps labelling");
            polls += 1;
            let timed_out = logs.text().contains("did not answer within");
            if failures_before_broken.is_none() && timed_out && kubelet.broken() > 0 {
                // The broken answer is not taken in before the poll after its arrival.
                failures_before_broken = Some(failed_answers());
            }
            if polls >= 3 && failures_before_broken.is_some_and(|n| failed_answers() > n) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no timeout, then broken answer, taken in: {}",
                logs.text()
            );
        }

        // Whole: the late pod is labelled on a later poll; its unlabelled series end.
        kubelet.set(PodsAnswer::List(fixture(
            "pods/nri-kubernetes-testutil-1_34__pods.json",
        )));
        // Failures in a row have doubled the gap between requests (10 ms at first).
        let polled = eventually("the late pod labelled", PATIENCE, async || {
            let polled = poll(&mut p).await;
            (!quiet(&polled)).then_some(polled).ok_or_else(String::new)
        })
        .await;
        assert_eq!(
            container_cpu(&polled),
            vec![(
                LATE_POD.to_owned(),
                Some("registry.k8s.io/coredns/coredns:v1.12.1".to_owned())
            )]
        );
        let ended: Vec<_> = named(&polled.series, "container_cpu_usage_seconds_total")
            .into_iter()
            .filter(|ts| ts.samples[0].value.is_nan())
            .collect();
        assert_eq!(ended.len(), 1, "the late pod's unlabelled series ends");
        assert_eq!(label(ended[0], "pod"), Some(LATE_POD));
        assert_eq!(label(ended[0], "image"), None);
        let late = named(&polled.series, "container_cpu_usage_seconds_total")
            .into_iter()
            .find(|ts| label(ts, "pod") == Some(LATE_POD) && label(ts, "image").is_some())
            .unwrap();
        assert_eq!(
            label(late, "image"),
            Some("registry.k8s.io/coredns/coredns:v1.12.1")
        );
        assert_eq!(
            label(late, "name"),
            Some("ff7f3417e620238051fc79fbc772b6262f7c416ac7f86ea82344e236af66be34")
        );
        assert_eq!(label(late, "metrics_path"), Some("/metrics/cadvisor"));

        // Everything described: no more requests (until the answer is five minutes old).
        let asked = kubelet.requests();
        for _ in 0..3 {
            poll(&mut p).await;
        }
        assert_eq!(kubelet.requests(), asked, "nothing new to ask about");
    });
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cannot get pod metadata"))
        .collect();
    assert_eq!(warnings.len(), 2, "one per failing episode:\n{text}");
    assert!(
        warnings[0].contains("403") && warnings[0].contains("nodes/proxy"),
        "the first says why and what to grant: {}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("did not answer within"),
        "{}",
        warnings[1]
    );
    assert_eq!(
        text.matches("pod metadata (GET /pods) available again")
            .count(),
        2,
        "{text}"
    );
}

/// `--kubelet-pods=false`: `/pods` is never asked, and nothing is labelled from it.
#[tokio::test]
async fn kubelet_pods_false_never_asks() {
    let kubelet = PodsKubelet::start(
        fixture("summaries/nri-kubernetes-testutil-1_34__summary.json"),
        PodsAnswer::List(fixture("pods/nri-kubernetes-testutil-1_34__pods.json")),
    )
    .await;
    let url = kubelet.url();
    let mut p =
        crate::support::poller(&["--kubelet-url", &url, "--dry-run", "--kubelet-pods=false"]);
    let polled = crate::support::polled(&mut p).await;
    assert_eq!(container_cpu(&polled).len(), 18);
    assert!(container_cpu(&polled).iter().all(|(_, i)| i.is_none()));
    assert_eq!(kubelet.requests(), 0);

    // With it on, a lone poll (--dry-run) waits for /pods and labels every container.
    let mut p = crate::support::poller(&["--kubelet-url", &url, "--dry-run"]);
    let polled = crate::support::polled(&mut p).await;
    assert!(container_cpu(&polled).iter().all(|(_, i)| i.is_some()));
    assert_eq!(kubelet.requests(), 1);
}

/// Served the 1.34 summary and `/pods`, every series kubelet-push labels
/// `metrics_path="/metrics/cadvisor"` is, for each family cAdvisor also served on that node,
/// the very series of the capture: the same labels (cAdvisor's `namespace`, `pod`,
/// `container`, `image`, `name`, `failure_type`, `scope`, `interface`; all but `id`, the cgroup
/// path, and `cpu="total"`) and the same value, for every container. The pod network series
/// are cAdvisor's pause-container ones, which it labels with the pause image and id that the
/// summary does not know: they match on `namespace`, `pod` and `interface`.
#[tokio::test]
async fn every_cadvisor_family_matches_the_capture_label_for_label_and_value_for_value() {
    use std::collections::{BTreeMap, BTreeSet};
    type Key = (String, BTreeMap<String, String>);
    let cadvisor_text = String::from_utf8(fixture(
        "cadvisor/nri-kubernetes-testutil-1_34__metrics_cadvisor.txt",
    ))
    .unwrap();
    let mut cadvisor: BTreeMap<Key, f64> = BTreeMap::new();
    for line in cadvisor_text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels)) = series(line) else {
            continue;
        };
        let value: f64 = line
            .rsplit_once('}')
            .unwrap()
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let labels: BTreeMap<String, String> = labels
            .into_iter()
            .filter(|(k, v)| !v.is_empty() && *k != "id" && *k != "cpu")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        cadvisor.insert((name.to_owned(), labels), value);
    }

    let kubelet = PodsKubelet::start(
        fixture("summaries/nri-kubernetes-testutil-1_34__summary.json"),
        PodsAnswer::List(fixture("pods/nri-kubernetes-testutil-1_34__pods.json")),
    )
    .await;
    let url = kubelet.url();
    let mut p = crate::support::poller(&["--kubelet-url", &url, "--dry-run"]);
    let polled = crate::support::polled(&mut p).await;
    assert!(polled.error.is_none());

    let mut matched: BTreeMap<String, usize> = BTreeMap::new();
    let mut without_cadvisor: BTreeSet<String> = BTreeSet::new();
    for ts in &polled.series {
        if label(ts, "metrics_path") != Some("/metrics/cadvisor") {
            continue;
        }
        let name = crate::support::name(ts).to_owned();
        let labels: BTreeMap<String, String> = ts
            .labels
            .iter()
            .filter(|l| {
                !["__name__", "instance", "job", "node", "metrics_path"].contains(&l.name.as_str())
            })
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let value = ts.samples[0].value;
        let key = (name.clone(), labels.clone());
        let want = if name.starts_with("container_network_") {
            // The pause container's series of the same pod and interface.
            cadvisor
                .iter()
                .find(|((n, l), _)| {
                    *n == name
                        && l.get("image").is_some_and(|i| i.contains("pause"))
                        && ["namespace", "pod", "interface"]
                            .iter()
                            .all(|k| l.get(*k) == labels.get(*k))
                })
                .map(|(_, v)| *v)
        } else {
            cadvisor.get(&key).copied()
        };
        match want {
            Some(want) => {
                assert_eq!(value, want, "{key:?}");
                *matched.entry(name).or_default() += 1;
            }
            None => {
                without_cadvisor.insert(name);
            }
        }
    }
    let expected: BTreeMap<String, usize> = [
        ("container_cpu_usage_seconds_total", 18),
        ("container_memory_working_set_bytes", 18),
        ("container_memory_usage_bytes", 18),
        ("container_memory_rss", 18),
        ("container_memory_swap", 18),
        ("container_memory_failures_total", 36),
        ("container_start_time_seconds", 18),
        ("container_pressure_cpu_waiting_seconds_total", 18),
        ("container_pressure_cpu_stalled_seconds_total", 18),
        ("container_pressure_memory_waiting_seconds_total", 18),
        ("container_pressure_memory_stalled_seconds_total", 18),
        ("container_pressure_io_waiting_seconds_total", 18),
        ("container_pressure_io_stalled_seconds_total", 18),
        // 18 pods × 10 interfaces.
        ("container_network_receive_bytes_total", 180),
        ("container_network_transmit_bytes_total", 180),
        ("container_network_receive_errors_total", 180),
        ("container_network_transmit_errors_total", 180),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_owned(), c))
    .collect();
    assert_eq!(matched, expected);
    // cAdvisor on a containerd node has no per-container filesystem series (it had them for
    // Docker); ours come from the CRI's writable-layer stats.
    assert_eq!(
        without_cadvisor,
        [
            "container_fs_inodes_free",
            "container_fs_inodes_total",
            "container_fs_limit_bytes",
            "container_fs_usage_bytes"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
    );
}

/// A kubelet that answers `/pods` with 404 (an API-server proxy path that does not forward
/// it, say): asked again less and less often, not once per poll; every poll still pushes.
#[tokio::test]
async fn a_kubelet_without_pods_is_asked_less_and_less_often() {
    let kubelet = PodsKubelet::start(
        fixture("summaries/nri-kubernetes-testutil-1_34__summary.json"),
        PodsAnswer::Status(404, "404 page not found"),
    )
    .await;
    let url = kubelet.url();
    let mut p = crate::support::poller(&[
        "--kubelet-url",
        &url,
        "--remote-url",
        "http://127.0.0.1:9/api/v1/write",
        "--interval",
        "10ms",
    ]);
    // Polls until the kubelet has been asked five times, however long a loaded machine takes
    // to get there: the assertions are on what happened, never on what fits in a window.
    let started = std::time::Instant::now();
    let deadline = started + crate::support::PATIENCE;
    let mut polls = 0;
    while kubelet.requests() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests for /pods in {polls} polls",
            kubelet.requests()
        );
        let polled = crate::support::polled(&mut p).await;
        assert_eq!(only_value(&polled.series, "up"), 1.0);
        polls += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    // After the first failure the gap doubles from 10 ms: the second request comes at least
    // 20 ms after the first, the fifth at least 20 + 40 + 80 + 160 = 300 ms after it. An
    // agent asking on every poll (or at a fixed gap) gets there in about 5 polls' time. A
    // slow machine only adds time, so this holds on any machine for a correct agent. The
    // exact gaps, up to the 5-minute cap, are `metadata`'s unit tests.
    assert!(
        took >= std::time::Duration::from_millis(300),
        "5 requests for /pods within {took:?} ({polls} polls)"
    );
}
