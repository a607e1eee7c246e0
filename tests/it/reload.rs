//! Reloading `--config-file` in a running agent (the binary, as a child process): by
//! `POST /-/reload` (`--enable-reload`, Windows too) and by SIGHUP (unix). Destinations added
//! start receiving, removed ones stop (a disk buffer stays for a later start, which delivers
//! it), an unchanged one delivers on without a gap or a duplicate, a bad file changes nothing,
//! and no SIGHUP ever ends the process.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubelet_push::testkit::receiver::{Receiver, Response};
use kubelet_push::testkit::simulator::KubeletServer;
use tokio::process::Command;

use crate::support::*;

/// A config file listing `urls` as destinations (and `extra` YAML per entry).
fn write_config(path: &Path, urls: &[&str], extra: &str) {
    let mut text = String::from("remote-write:\n");
    for url in urls {
        text.push_str(&format!("  - url: {url}\n{extra}"));
    }
    std::fs::write(path, text).unwrap();
}

/// The agent on `kubelet` with `--config-file config`, polling every 100 ms.
fn command(kubelet: &str, config: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(SHORT_INTERVALS.0, SHORT_INTERVALS.1)
        .args(["--kubelet-url", kubelet, "--config-file"])
        .arg(config)
        .args([
            "--interval",
            "100ms",
            "--min-backoff",
            "10ms",
            "--max-backoff",
            "50ms",
            // The tests count the summary's `up`; the agent's own target has one too.
            "--self-metrics=false",
        ])
        .args(extra);
    cmd
}

/// What every test here starts from: a simulated kubelet (2 pods), receivers A and B, and a
/// work directory holding the config file and the disk buffers.
struct Rig {
    kubelet: KubeletServer,
    a: Receiver,
    b: Receiver,
    /// Kept for its lifetime: the directory is removed when the rig is dropped.
    _work: tempfile::TempDir,
    config: PathBuf,
    buffers: PathBuf,
}

async fn rig(seed: u64) -> Rig {
    let work = tempfile::tempdir().unwrap();
    Rig {
        kubelet: simulated_kubelet(2, seed).await,
        a: Receiver::start().await.unwrap(),
        b: Receiver::start().await.unwrap(),
        config: work.path().join("config.yaml"),
        buffers: work.path().join("buffer"),
        _work: work,
    }
}

impl Rig {
    /// `--buffer-dir` and the rig's buffer directory.
    fn disk_buffer(&self) -> [&str; 2] {
        ["--buffer-dir", self.buffers.to_str().unwrap()]
    }

    /// Writes the config file listing `urls` (each with `yaml`), starts the agent on it with
    /// `flags`, and waits until `ready` (when given) has accepted two polls.
    async fn start(
        &self,
        urls: &[&str],
        yaml: &str,
        flags: &[&str],
        ready: Option<&Receiver>,
    ) -> (AgentProcess, String) {
        write_config(&self.config, urls, yaml);
        let started =
            AgentProcess::listening(&mut command(&self.kubelet.url(), &self.config, flags)).await;
        if let Some(rx) = ready {
            wait_for_ups(rx, 2).await;
        }
        started
    }
}

/// `POST /-/reload` (or another method): the status and the body.
async fn reload(listen: &str, method: reqwest::Method) -> (u16, String) {
    kubelet_push::http::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .request(method, format!("http://{listen}/-/reload"))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

async fn post_reload(listen: &str) -> (u16, String) {
    reload(listen, reqwest::Method::POST).await
}

/// The `up` timestamps a receiver accepted, in the order they arrived.
fn ups(rx: &Receiver) -> Vec<i64> {
    named(&rx.accepted_series(), "up")
        .iter()
        .map(|t| t.samples[0].timestamp)
        .collect()
}

async fn wait_for_ups(rx: &Receiver, n: usize) {
    wait_until(format!("{n} polls arrive"), || ups(rx).len() >= n).await;
}

/// Each poll once, in order: strictly increasing `up` timestamps.
fn assert_once_in_order(what: &str, ups: &[i64]) {
    assert!(
        ups.windows(2).all(|w| w[0] < w[1]),
        "{what}: a poll twice or out of order: {ups:?}"
    );
}

/// An agent's self-metric at `listen` (0 when absent).
async fn self_value(listen: &str, pattern: &str) -> f64 {
    kubelet_push::http::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = client
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_in(&text, pattern).unwrap_or(0.0)
}

/// Adding a destination by `POST /-/reload`: it starts receiving the kubelet's samples, while
/// the one already there keeps delivering every poll once, in order, without a gap. Then
/// removing the first one: it receives nothing more, and its disk buffer stays.
#[tokio::test]
async fn post_reload_adds_a_destination_and_removes_one() {
    let r = rig(7).await;
    let (a, b, config) = (&r.a, &r.b, &r.config);
    let flags = [&["--enable-reload"][..], &r.disk_buffer()].concat();
    let (agent, listen) = r.start(&[&a.url()], "", &flags, Some(a)).await;
    wait_for_ups(a, 3).await;

    // GET is not how a reload is asked for.
    assert_eq!(reload(&listen, reqwest::Method::GET).await.0, 405);

    write_config(config, &[&a.url(), &b.url()], "");
    let (status, body) = post_reload(&listen).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("destinations added: {}", b.url())),
        "{body}"
    );
    wait_for_ups(b, 3).await;
    // What B gets is the kubelet's samples, decoded from the wire: the node's series (sent
    // when the kubelet's stats next change, as to every destination).
    wait_until("the node's series at the added destination", || {
        b.accepted_series().iter().any(|ts| {
            name(ts) == "node_cpu_usage_seconds_total"
                && label(ts, "node").is_some_and(|n| !n.is_empty())
                && ts.samples.iter().all(|s| s.value > 0.0)
        })
    })
    .await;
    assert_eq!(
        self_value(
            &listen,
            "kubelet_push_config_reloads_total{result=\"success\"}"
        )
        .await,
        1.0
    );

    write_config(config, &[&b.url()], "");
    let (status, body) = post_reload(&listen).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("destinations removed: {}", a.url())),
        "{body}"
    );
    // The removed sender has stopped by the time the answer came: nothing more arrives.
    let a_requests = a.requests().len();
    let b_before = ups(b).len();
    wait_for_ups(b, b_before + 5).await;
    assert_eq!(
        a.requests().len(),
        a_requests,
        "the removed destination still receives"
    );
    assert!(
        dest_buffer(&r.buffers, &a.url()).is_dir(),
        "the removed disk buffer is kept"
    );

    let log = stop_agent(agent).await;
    assert_once_in_order("the destination there from the start", &ups(a));
    // B from its first poll to the last: once each, in order, and no poll missing from
    // when it was added (it never waited behind A).
    assert_once_in_order("the added destination", &ups(b));
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(!log.contains("reload refused"), "{log}");
}

/// A removed destination whose receiver was down keeps its disk buffer; a later start that
/// lists it again delivers every request that was buffered, in order, nothing lost.
#[tokio::test]
async fn a_removed_destination_keeps_its_disk_buffer_for_a_later_start() {
    let r = rig(8).await;
    let (a, b, config) = (&r.a, &r.b, &r.config);
    a.answer_always(Some(Response::status(503)));
    let flags = [&["--enable-reload"][..], &r.disk_buffer()].concat();
    let (agent, listen) = r.start(&[&a.url(), &b.url()], "", &flags, Some(b)).await;
    // A refuses while B takes polls: A's buffer fills.
    wait_for_ups(b, 5).await;
    write_config(config, &[&b.url()], "");
    let (status, body) = post_reload(&listen).await;
    assert_eq!(status, 200, "{body}");
    // Logged before the answer, but read from the agent's stderr by another task: waited for.
    wait_until("the removal line", || {
        agent.log().contains("its disk buffer stays")
    })
    .await;
    let kept = agent.log();
    let line = kept
        .lines()
        .find(|l| l.contains("its disk buffer stays"))
        .unwrap_or_else(|| panic!("no removal line: {kept}"));
    let samples: u64 = line
        .split("samples=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no samples in {line}"));
    assert!(samples > 0, "{line}");
    // Its sender stopped with the answer: no retry reaches A any more.
    let a_requests = a.requests().len();
    let b_before = ups(b).len();
    wait_for_ups(b, b_before + 3).await;
    assert_eq!(
        a.requests().len(),
        a_requests,
        "the removed sender still retries"
    );
    // Every poll A was offered (and refused) before its removal.
    let offered: BTreeSet<i64> = a
        .requests()
        .iter()
        .filter_map(|r| r.write_request.as_ref())
        .flat_map(|w| {
            named(&w.timeseries, "up")
                .into_iter()
                .map(|t| t.samples[0].timestamp)
                .collect::<Vec<_>>()
        })
        .collect();
    stop_agent(agent).await;

    // A is back, and a new agent lists it again.
    a.answer_always(None);
    let (again, _) = r.start(&[&a.url()], "", &r.disk_buffer(), None).await;
    wait_until("the kept buffer is replayed", || {
        again.log().contains("disk buffer replayed")
    })
    .await;
    let replay = again.log();
    assert!(
        replay.contains(&format!("samples={samples}")),
        "replayed what was kept ({samples} samples): {replay}"
    );
    let delivered: BTreeSet<i64> = ups(a).into_iter().collect();
    wait_until("every offered poll arrives", || {
        let got: BTreeSet<i64> = ups(a).into_iter().collect();
        offered.is_subset(&got)
    })
    .await;
    let _ = delivered;
    let log = stop_agent(again).await;
    let order = ups(a);
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {order:?} {log}"
    );
}

/// A file that does not validate is refused with the file, line and key, `POST` answers 400
/// with that error, the failure is counted, and the agent delivers on as before. Without
/// `--enable-reload` the endpoint answers 403.
#[tokio::test]
async fn an_invalid_file_is_refused_and_the_running_configuration_stays() {
    let r = rig(9).await;
    let (a, config) = (&r.a, &r.config);
    let (agent, listen) = r
        .start(&[&a.url()], "", &["--enable-reload"], Some(a))
        .await;

    write_config(config, &[&a.url()], "    timeot: 5s\n");
    let (status, body) = post_reload(&listen).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("config.yaml:3"), "file and line: {body}");
    assert!(body.contains("timeot"), "the key: {body}");
    assert_eq!(
        self_value(
            &listen,
            "kubelet_push_config_reloads_total{result=\"failure\"}"
        )
        .await,
        1.0
    );
    let before = ups(a).len();
    wait_for_ups(a, before + 3).await;
    assert!(agent.child.id().is_some());
    let log = stop_agent(agent).await;
    assert_eq!(log.matches("reload refused").count(), 1, "{log}");
    assert_once_in_order("the running destination", &ups(a));

    let (off, listen) = r.start(&[&a.url()], "", &[], None).await;
    let (status, body) = post_reload(&listen).await;
    assert_eq!(status, 403, "{body}");
    stop_agent(off).await;
}

/// SIGHUP, with the memory buffer: a reload with nothing changed says so, one that changes
/// the destination's headers (same URL) keeps its buffer, and after SIGTERM every sample
/// queued was delivered, each poll once and in order. The agent never exits on SIGHUP.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_and_the_memory_buffer_loses_nothing() {
    let r = rig(10).await;
    let (a, config) = (&r.a, &r.config);
    let (agent, listen) = r.start(&[&a.url()], "", &[], Some(a)).await;

    hangup(&agent);
    wait_until("the reload with nothing changed", || {
        agent.log().contains("nothing changed")
    })
    .await;
    write_config(
        config,
        &[&a.url()],
        "    headers:\n      X-Scope-OrgID: tenant-2\n",
    );
    hangup(&agent);
    wait_until("the changed destination", || {
        agent.log().contains("destinations changed")
    })
    .await;
    let before = ups(a).len();
    wait_for_ups(a, before + 3).await;
    assert!(
        a.requests()
            .last()
            .is_some_and(|r| r.header("x-scope-orgid") == Some("tenant-2")),
        "the new header is sent"
    );
    assert_eq!(
        self_value(
            &listen,
            "kubelet_push_config_reloads_total{result=\"success\"}"
        )
        .await,
        2.0
    );
    let (code, log) = sigterm(agent).await;
    assert_eq!(code, Some(0), "{log}");
    let field = |name: &str| crate::e2e::stopped_field(&log, name);
    assert_eq!(field("samples_pending"), 0, "{log}");
    assert_eq!(field("samples_dropped"), 0, "{log}");
    assert_eq!(field("samples_sent"), field("samples_queued"), "{log}");
    let received: u64 = a
        .accepted_series()
        .iter()
        .map(|ts| ts.samples.len() as u64)
        .sum();
    assert_eq!(received, field("samples_sent"), "{log}");
    assert_once_in_order("across two reloads", &ups(a));
}

/// Without `--config-file`, SIGHUP reloads nothing and says so; the agent runs on.
#[cfg(unix)]
#[tokio::test]
async fn sighup_without_a_config_file_does_not_exit() {
    let k = simulated_kubelet(1, 11).await;
    let a = Receiver::start().await.unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubelet-push"));
    cmd.env(SHORT_INTERVALS.0, SHORT_INTERVALS.1).args([
        "--kubelet-url",
        &k.url(),
        "--remote-url",
        &a.url(),
        "--interval",
        "100ms",
        "--self-metrics=false",
    ]);
    let (agent, _) = AgentProcess::listening(&mut cmd).await;
    wait_for_ups(&a, 1).await;
    hangup(&agent);
    wait_until("nothing to reload", || {
        agent.log().contains("nothing to reload")
    })
    .await;
    let before = ups(&a).len();
    wait_for_ups(&a, before + 2).await;
    let (code, log) = sigterm(agent).await;
    assert_eq!(code, Some(0), "{log}");
}

#[cfg(unix)]
fn hangup(agent: &AgentProcess) {
    let pid = agent.child.id().expect("the agent runs").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
}

/// A removed destination with the memory buffer and its receiver down drains for at most
/// `--shutdown-timeout`; then what it held is counted as dropped (reason `shutdown`) with one
/// warning, and the other destination delivers on.
#[tokio::test]
async fn a_removed_memory_destination_drains_then_counts_what_is_left_as_dropped() {
    let r = rig(12).await;
    let (a, b, config) = (&r.a, &r.b, &r.config);
    a.answer_always(Some(Response::status(503)));
    let flags = ["--enable-reload", "--shutdown-timeout", "300ms"];
    let (agent, listen) = r.start(&[&a.url(), &b.url()], "", &flags, Some(b)).await;
    wait_for_ups(b, 3).await;
    wait_until("A refused a request", || !a.requests().is_empty()).await;
    write_config(config, &[&b.url()], "");
    let (status, body) = post_reload(&listen).await;
    assert_eq!(status, 200, "{body}");
    let dropped = format!(
        "kubelet_push_samples_dropped_total{{url=\"{}\",reason=\"shutdown\"}}",
        a.url()
    );
    eventually(format!("{dropped} counted"), PATIENCE, async || {
        let counted = self_value(&listen, &dropped).await != 0.0;
        counted.then_some(()).ok_or_else(|| agent.log())
    })
    .await;
    let before = ups(b).len();
    wait_for_ups(b, before + 3).await;
    let log = stop_agent(agent).await;
    assert_eq!(
        log.matches("samples in its memory buffer are dropped")
            .count(),
        1,
        "{log}"
    );
    assert_once_in_order("the destination kept", &ups(b));
}

/// A reload that changes a destination replaces its sender between two attempts, never in the
/// middle of one: the request the receiver holds (stored, its answer not yet sent) is answered
/// and acknowledged first, and the new sender goes on with the next one. Cutting it off would
/// leave it in the buffer for the new sender to send again: a duplicate for a receiver that
/// stored the first copy.
#[tokio::test]
async fn a_changed_destination_is_never_sent_a_request_twice() {
    let r = rig(12).await;
    let (a, config) = (&r.a, &r.config);
    // 1.0: a scripted 204 carries no written-samples header, which `auto` would take for a
    // receiver that stored nothing of a 2.0 request.
    let v1 = "    version: \"1\"\n";
    let (agent, listen) = r
        .start(&[&a.url()], v1, &["--enable-reload"], Some(a))
        .await;

    a.push_response(Response::status(204).held());
    let before = a.requests().len();
    wait_until("a request held", || a.requests().len() > before).await;
    write_config(
        config,
        &[&a.url()],
        "    version: \"1\"\n    headers:\n      X-Scope-OrgID: tenant-3\n",
    );
    let reload = tokio::spawn({
        let listen = listen.clone();
        async move { post_reload(&listen).await }
    });
    wait_until("the reload began", || {
        agent.log().contains("reloading the configuration file")
    })
    .await;
    a.release();
    let (status, body) = reload.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("destinations changed"), "{body}");
    let before = ups(a).len();
    wait_for_ups(a, before + 3).await;
    assert!(
        a.requests()
            .last()
            .is_some_and(|r| r.header("x-scope-orgid") == Some("tenant-3")),
        "the new header is sent"
    );
    let log = stop_agent(agent).await;
    assert_once_in_order(&format!("across the reload\n{log}"), &ups(a));
}
