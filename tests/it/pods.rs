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
    let client = KubeletClient::new(config.kubelet.clone()).unwrap();
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
    let mut meta = PodMetadata::new();
    meta.replace(&pods::parse(&bytes).unwrap());
    assert_eq!(meta.len(), 24);

    // Forbidden (no nodes/proxy permission): the status and the kubelet's words come back.
    let (url, server) = answer_once(
        "403 Forbidden",
        b"Forbidden (user=system:serviceaccount:x:y, verb=get, resource=nodes, subresource=proxy)"
            .to_vec(),
    )
    .await;
    let config = crate::support::config(&["--dry-run", "--kubelet-url", &url]);
    let client = KubeletClient::new(config.kubelet.clone()).unwrap();
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
    assert!(KubeletClient::new(config.kubelet.clone())
        .unwrap()
        .fetch_pods()
        .await
        .is_none());
}
