//! `--remote-retry-auth-errors=false`: refused credentials as the Remote Write spec has it.

use super::*;

/// `--remote-retry-auth-errors=false`, the Remote Write spec's rule for every 4xx but 429: a
/// request refused with 401 is dropped and counted, never sent again; the next poll's request
/// goes. Fixing the token file then delivers the polls from then on (those dropped stay
/// dropped). One warning for the rejections, naming the status.
#[tokio::test(flavor = "current_thread")]
async fn strict_auth_errors_drop_the_refused_requests() {
    let (logs, _guard) = Logs::capture();
    let kubelet = simulated_kubelet(3, 4).await;
    let rx = Receiver::start().await.unwrap();
    rx.require_authorization(Some("Bearer right"));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, "wrong\n");
    let (k, u) = (kubelet.url(), rx.url());
    let agent = Agent::start(&agent_args(
        &k,
        &u,
        &[
            "--remote-bearer-token-file",
            token.to_str().unwrap(),
            "--remote-retry-auth-errors=false",
        ],
    ));
    assert!(rx.wait_for_requests(4, PATIENCE).await);
    let refused = rx.requests();
    assert!(refused.iter().all(|r| r.status == 401));
    // Each refused request is another poll's: none was sent twice.
    let mut firsts: Vec<i64> = refused
        .iter()
        .map(|r| {
            let w = r.write_request.as_ref().unwrap();
            w.timeseries
                .iter()
                .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
                .min()
                .unwrap()
        })
        .collect();
    let n = firsts.len();
    firsts.dedup();
    assert_eq!(
        firsts.len(),
        n,
        "a refused request was sent again: {firsts:?}"
    );
    write(&token, "right\n");
    accepted_more_than(&rx, 2).await;
    let (_, metrics) = agent.stop().await;
    assert_eq!(metrics.retries.get(), 0);
    assert!(metrics.dropped_total(DropReason::Rejected) > 0);
    let text = logs.text();
    assert_eq!(
        text.matches("remote write rejected by the receiver")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("remote write failed"), "{text}");
}
