//! Bad networks between the agent and a real receiver: the real `kubelet-push` binary polls a
//! [`FixtureKubelet`] once a second and pushes through our fault-injecting proxy
//! ([`super::faults`]) to Prometheus or VictoriaMetrics. Each case delivers a few polls
//! healthily, applies one fault for at least [`FAULT_POLLS`] polls (and, for the faults that
//! fail requests, at least [`FAILED_ATTEMPTS`] failed attempts), removes it, and waits for the
//! backlog to be delivered. Then, in every case:
//!
//! - the receiver holds exactly one sample per document whose poll completed, at its time, in
//!   order, and nothing else ([`assert_every_poll_once`]);
//! - nothing went to the receiver twice: the proxy next to it decoded every request it passed
//!   on whole, and each sample was in one, as many samples as the agent counted as sent;
//!   VictoriaMetrics, which keeps duplicates, inserted exactly that many
//!   ([`assert_delivered_once`]);
//! - the receiver turned away only the bodies the proxy cut short, never one the agent sent;
//! - every attempt the agent counted as failed is one the proxy broke, and the log tells each
//!   episode once ([`assert_episodes`]): one "remote write failed" warning when it starts, at
//!   most one more per new cause (`sender::Failing`), and one "remote write recovered" counting
//!   its failed attempts; latency, a bandwidth cap and a trickled response fail nothing and
//!   log no warning at all.
//!
//! And per fault: each blackholed connection is given up after `--remote-timeout` (from the
//! request's arrival at the proxy to the agent closing it) and the retry comes on a new
//! connection within the backoff; a request reset mid-body is retried on a new connection; a
//! cut TLS handshake fails at our TLS front ([`crate::access::Front`], in front of the
//! receiver) as often as the proxy cut one; the shaping faults did slow their requests down
//! ([`assert_shaped`]). One more case puts a slow link after an outage: the backlog, merged
//! into one catch-up request too big for the link to carry within `--remote-timeout`, must
//! still get through ([`assert_slow_link_carried_the_backlog`]).
//!
//! Every count is waited for (bounded by [`PATIENCE`]), never expected within a time window;
//! the only durations asserted are what the agent's own timeout and backoff promise, and
//! lower bounds on what the proxy's shaping costs.

use std::net::SocketAddr;

use super::faults::{Connection, Fault, Proxy, Wire};
use super::*;
use crate::support::wait_until;

/// Polls made while a fault is in force, at least.
const FAULT_POLLS: usize = 5;
/// Attempts a failing fault breaks before it is removed, at least.
const FAILED_ATTEMPTS: usize = 3;
/// Polls the slow-link case's outage leaves in the buffer, at least.
const BACKLOG_POLLS: usize = 16;
/// `--remote-timeout` for the blackhole and the slow link: short, so that each attempt gives
/// up quickly, yet with room for a healthy request on a loaded machine (2 s timed healthy
/// requests out when the suite ran at a lower priority than `stress-ng`).
const SHORT_TIMEOUT: Duration = Duration::from_secs(3);
/// `--remote-timeout` for every other case: far longer than any faulted request takes.
const TIMEOUT: &str = "20s";
/// `--max-backoff` of [`ONE_SECOND_POLLS`].
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// What scheduling may add to a timer the agent set, on a loaded machine: the blackhole's
/// bounds are the timeout and backoff, give or take this.
const SLACK: Duration = Duration::from_secs(2);
/// How much earlier than the agent's timer started the proxy may see a request arrive (the
/// agent starts its timer, then connects and writes): the blackhole's lower bound is the
/// timeout less this.
const EARLY: Duration = Duration::from_millis(500);
/// The slow link: one poll's request here is about 1.3 KB of body and 0.25 KB of head, under
/// a second at this rate, so one at a time the link carries more than the agent produces;
/// [`BACKLOG_POLLS`] merged are about 8 KB, more than it carries within [`SHORT_TIMEOUT`].
const SLOW_LINK: u64 = 2 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Latency,
    Bandwidth,
    ResetMidBody,
    Blackhole,
    Trickle,
    CutHandshake,
    /// A blackhole for [`BACKLOG_POLLS`] polls, then a [`SLOW_LINK`] bandwidth cap.
    SlowLinkAfterOutage,
}

impl Case {
    fn fault(self) -> Fault {
        match self {
            // Per chunk, each way: a request and its answer take at least 0.5 s.
            Case::Latency => Fault::Latency(Duration::from_millis(250)),
            // Each request takes most of a poll interval, one merged after a wait longer.
            Case::Bandwidth | Case::SlowLinkAfterOutage => Fault::Bandwidth(SLOW_LINK),
            // The body's first KiB (or all of it but its last byte), then a reset.
            Case::ResetMidBody => Fault::ResetMidBody(1024),
            Case::Blackhole => Fault::Blackhole,
            // A byte every 20 ms: a receiver's answer takes one to two seconds, longer than
            // a poll interval, so the buffer falls behind and catches up merged.
            Case::Trickle => Fault::Trickle {
                bytes: 1,
                pause: Duration::from_millis(20),
            },
            Case::CutHandshake => Fault::CutHandshake,
        }
    }

    /// Whether the fault makes requests fail (and the agent retry).
    fn fails(self) -> bool {
        !matches!(self, Case::Latency | Case::Bandwidth | Case::Trickle)
    }

    fn wire(self) -> Wire {
        if self == Case::CutHandshake {
            Wire::Tls
        } else {
            Wire::Http
        }
    }

    fn remote_timeout(self) -> String {
        match self {
            Case::Blackhole | Case::SlowLinkAfterOutage => {
                format!("{}s", SHORT_TIMEOUT.as_secs())
            }
            _ => TIMEOUT.to_owned(),
        }
    }
}

macro_rules! cases {
    ($($name:ident: $kind:ident, $case:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            if available(Kind::$kind) {
                network_fault(Kind::$kind, Case::$case).await;
            }
        }
    )*};
}

cases! {
    prometheus_latency_delivers_everything: Prometheus, Latency;
    victoria_metrics_latency_delivers_everything: VictoriaMetrics, Latency;
    prometheus_bandwidth_cap_delivers_everything: Prometheus, Bandwidth;
    victoria_metrics_bandwidth_cap_delivers_everything: VictoriaMetrics, Bandwidth;
    prometheus_reset_mid_body_loses_nothing: Prometheus, ResetMidBody;
    victoria_metrics_reset_mid_body_loses_nothing: VictoriaMetrics, ResetMidBody;
    prometheus_blackhole_given_up_within_timeout: Prometheus, Blackhole;
    victoria_metrics_blackhole_given_up_within_timeout: VictoriaMetrics, Blackhole;
    prometheus_trickled_response_delivers_everything: Prometheus, Trickle;
    victoria_metrics_trickled_response_delivers_everything: VictoriaMetrics, Trickle;
    prometheus_cut_tls_handshake_loses_nothing: Prometheus, CutHandshake;
    victoria_metrics_cut_tls_handshake_loses_nothing: VictoriaMetrics, CutHandshake;
    prometheus_slow_link_after_outage_carries_the_backlog: Prometheus, SlowLinkAfterOutage;
    victoria_metrics_slow_link_after_outage_carries_the_backlog: VictoriaMetrics, SlowLinkAfterOutage;
}

async fn network_fault(kind: Kind, case: Case) {
    let what = format!("{kind:?}, {case:?}");
    let dir = tempfile::tempdir().unwrap();
    let receiver = Real::launch(kind, dir.path()).await;
    let backend = SocketAddr::from(([127, 0, 0, 1], receiver.port));
    // With TLS: agent -> proxy -> our TLS front -> a second proxy -> receiver. The first sees
    // the handshake; the second passes everything and decodes what it passes (see
    // `assert_delivered_once`), which without TLS the one proxy does.
    let ca = crate::access::ca();
    let inner = match case.wire() {
        Wire::Tls => Some(Proxy::start(backend, Wire::Http).await),
        Wire::Http => None,
    };
    let front = match &inner {
        Some(inner) => {
            let leaf = crate::access::leaf(&ca, &["127.0.0.1"], false);
            let config = crate::access::server_config(&leaf, None);
            Some(crate::access::Front::start(inner.addr, config).await)
        }
        None => None,
    };
    let proxy = Proxy::start(front.as_ref().map_or(backend, |f| f.addr), case.wire()).await;
    let recorder = inner.as_ref().unwrap_or(&proxy);
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let scheme = match case.wire() {
        Wire::Tls => "https",
        Wire::Http => "http",
    };
    let write_url = format!("{scheme}://{}/api/v1/write", proxy.addr);
    // One document per second of virtual time, polled once a second, the timeline behind the
    // wall clock (as in `outage.rs`).
    let kubelet = FixtureKubelet::start("seed-windows-node.json", now_s() - 2, 1, None).await;
    let timeout = case.remote_timeout();
    let mut args: Vec<&str> = ONE_SECOND_POLLS
        .into_iter()
        .chain(["--remote-timeout", &timeout])
        .chain(["--shutdown-timeout", "30s"])
        // The fixture kubelet serves no /pods, which the agent would warn about.
        .chain(["--kubelet-pods=false"])
        .collect();
    let ca_path = ca_file.to_str().unwrap();
    if case.wire() == Wire::Tls {
        args.extend(["--remote-ca-file", ca_path]);
    }
    let (mut agent, listen) = agent_listening(&kubelet.url(), &write_url, &args).await;

    // Healthy first: polls delivered through the proxy.
    wait_metrics(&mut agent, &listen, format!("{what}: delivering"), |m| {
        metric_value(m, "kubelet_push_polls_total{result=\"ok\"}") >= Some(3.0)
            && metric_value(m, "kubelet_push_samples_sent_total") > Some(0.0)
    })
    .await;
    if case == Case::SlowLinkAfterOutage {
        // The outage: a backlog of BACKLOG_POLLS polls, the first of them retried.
        proxy.set(Fault::Blackhole);
        let from = kubelet.requests();
        wait_until(
            format!("{what}: a backlog of {BACKLOG_POLLS} polls"),
            || kubelet.requests() >= from + BACKLOG_POLLS && broken(&proxy.connections()) >= 2,
        )
        .await;
    }
    let fault = case.fault();
    proxy.set(fault);
    let fault_from = kubelet.requests();
    wait_until(
        format!("{what}: {FAULT_POLLS} polls under the fault"),
        || kubelet.requests() >= fault_from + FAULT_POLLS,
    )
    .await;
    let in_use = match case {
        Case::SlowLinkAfterOutage => "requests carried by the slow link after one given up",
        _ if case.fails() => "attempts broken",
        _ => "requests slowed down and answered",
    };
    wait_until(format!("{what}: {FAILED_ATTEMPTS} {in_use}"), || {
        faulted(&proxy, case) >= FAILED_ATTEMPTS
    })
    .await;
    let healed_at = tokio::time::Instant::now();
    proxy.set(Fault::Pass);
    let healed_from = kubelet.requests();
    eprintln!(
        "{what}: documents {fault_from}..{healed_from} polled under the fault, {} faulted \
         requests or connections",
        faulted(&proxy, case)
    );

    // Everything delivered, and two more polls after the fault.
    let (metrics, log) = wait_metrics_and_stop(
        agent,
        &listen,
        format!("{what}: the backlog delivered"),
        |m| {
            kubelet.requests() >= healed_from + 2
                && metric_value(m, "kubelet_push_samples_pending") == Some(0.0)
        },
    )
    .await;
    let stopped_at = now_ms();
    assert_eq!(stopped_field(&log, "samples_pending"), 0, "{what}: {log}");
    assert_eq!(stopped_field(&log, "polls_failed"), 0, "{what}: {log}");
    assert_eq!(dropped(&metrics), Vec::<&str>::new(), "{what}: {log}");
    assert_eq!(proxy.problems(), Vec::<String>::new(), "{what}");

    assert_every_poll_once(kind, &receiver, &kubelet, &log, stopped_at).await;
    // Requests whose head went on but not all of their body: reset mid-body, or given up by
    // the agent on the slow link.
    let cut_short = proxy
        .requests()
        .iter()
        .filter(|(_, r)| r.body_len.is_some() && r.forwarded.is_none())
        .count();
    assert_delivered_once(&what, &receiver, recorder, cut_short, &log).await;
    assert_eq!(recorder.problems(), Vec::<String>::new(), "{what}");

    let failed = metric_value(&metrics, "kubelet_push_requests_total{code=\"error\"}")
        .unwrap_or(0.0) as usize;
    let connections = proxy.connections();
    assert_eq!(
        failed,
        broken(&connections),
        "{what}: every attempt the proxy broke failed at the agent, and no other: {log}"
    );
    let episodes = assert_episodes(&what, &log, failed);
    if case.fails() {
        assert!(failed >= FAILED_ATTEMPTS, "{what}: {connections:#?}");
        // The slow link's outage is one episode, and each merged request it gave up another
        // (one at least; more if the link is still slow when the next catch-up comes).
        let episodes_ok = match case {
            Case::SlowLinkAfterOutage => episodes >= 2,
            _ => episodes == 1,
        };
        assert!(episodes_ok, "{what}: {episodes} episodes: {log}");
    } else {
        assert_eq!(episodes, 0, "{what}: nothing failed: {log}");
        assert_shaped(&what, &proxy, fault, healed_at);
    }
    match case {
        Case::Blackhole => assert_blackholes_given_up(&what, &proxy),
        Case::ResetMidBody => assert_new_connection_per_retry(&what, &proxy, fault),
        Case::CutHandshake => {
            let cut = connections.iter().filter(|c| c.handshake_cut).count();
            assert_eq!(
                front.as_ref().unwrap().failed_handshakes(),
                cut,
                "{what}: the front saw a failed handshake for each one the proxy cut"
            );
            assert_new_connection_per_retry(&what, &proxy, fault);
        }
        Case::SlowLinkAfterOutage => {
            assert_blackholes_given_up(&what, &proxy);
            assert_slow_link_carried_the_backlog(&what, &proxy);
            assert_shaped(&what, &proxy, fault, healed_at);
        }
        Case::Latency | Case::Bandwidth | Case::Trickle => {}
    }
    let requests = proxy.requests();
    let sizes: Vec<u64> = requests.iter().filter_map(|(_, r)| r.body_len).collect();
    eprintln!(
        "{what}: {} connections, {} requests (bodies {} to {} bytes), {failed} failed attempts",
        connections.len(),
        requests.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
    );
}

/// Attempts the proxy broke: requests that never went on whole on a connection that ended
/// (the proxy reset it, or the agent gave up on it: a blackhole, a timeout), TLS handshakes
/// it cut, and kept-alive TLS connections it reset as the agent used them again.
fn broken(connections: &[Connection]) -> usize {
    connections
        .iter()
        .map(|c| {
            let ended = c.reset.is_some() || c.client_closed.is_some();
            let unfinished = c.requests.iter().filter(|r| r.forwarded.is_none()).count();
            usize::from(c.handshake_cut)
                + usize::from(c.reset_when_used)
                + if ended { unfinished } else { 0 }
        })
        .sum()
}

/// What the proxy did under `case`'s fault so far: for the faults that shape, the requests
/// that started under it and were answered; for the ones that fail, the attempts it broke;
/// for the slow link, the requests it carried after the agent gave one up.
fn faulted(proxy: &Proxy, case: Case) -> usize {
    let fault = case.fault();
    match case {
        Case::Latency | Case::Bandwidth | Case::Trickle => proxy
            .requests()
            .iter()
            .filter(|(_, r)| r.fault == fault && r.answered.is_some())
            .count(),
        Case::SlowLinkAfterOutage => {
            carried_after_giving_up(proxy).map_or(0, |(_, after)| after.len())
        }
        _ => broken(&proxy.connections()),
    }
}

/// On the slow link: the first request the agent gave up (started under the cap, never
/// carried whole, its connection closed by the agent), with its body's length, and the body
/// lengths of the requests the link carried whole and answered after it.
fn carried_after_giving_up(proxy: &Proxy) -> Option<(u64, Vec<u64>)> {
    let slow = Fault::Bandwidth(SLOW_LINK);
    let requests = proxy.requests();
    let connections = proxy.connections();
    let given_up = requests.iter().position(|(id, r)| {
        r.fault == slow && r.forwarded.is_none() && connections[*id].client_closed.is_some()
    })?;
    let carried = requests[given_up + 1..]
        .iter()
        .filter(|(_, r)| r.fault == slow && r.answered.is_some())
        .map(|(_, r)| r.body_len.unwrap_or(0))
        .collect();
    Some((requests[given_up].1.body_len.unwrap_or(0), carried))
}

/// The receiver holds exactly one sample of the node's CPU counter per document whose poll
/// completed (every one served but the one the final stop may have abandoned), at that
/// document's time, in order, its value one step up per document; and one `up` per completed
/// poll, stamped within that poll.
async fn assert_every_poll_once(
    kind: Kind,
    receiver: &Real,
    kubelet: &FixtureKubelet,
    log: &str,
    stopped_at: i64,
) {
    let served = kubelet.served();
    let completed = stopped_field(log, "polls_ok") as usize;
    assert!(
        completed <= served.len() && served.len() - completed <= 1,
        "{kind:?}: the agent completed {completed} of {} polls: a stop abandons at most the \
         one in progress",
        served.len()
    );
    assert!(
        served.iter().enumerate().all(|(i, s)| s.k == i && !s.held),
        "{served:?}"
    );
    let expected: Vec<usize> = (0..completed).collect();

    assert_one_sample_per_document(
        receiver,
        kubelet,
        &served,
        &expected,
        stopped_at,
        &format!(
            "{kind:?}: documents 0..{completed} (of {} served)",
            served.len()
        ),
    )
    .await;
}

/// Nothing reached the receiver twice, and the receiver turned away only what the proxy cut.
///
/// `recorder` is the proxy next to the receiver, which decoded every request it passed on
/// whole: each sample went on once (a whole request retried would have sent its samples
/// twice, and a receiver that keeps duplicates would hold them twice), and they are as many as
/// the agent counted as sent. VictoriaMetrics, which keeps duplicates, also inserted exactly
/// that many. The receiver's failed writes are the bodies the proxy cut short (the receiver
/// read a truncated body), and none else.
async fn assert_delivered_once(
    what: &str,
    receiver: &Real,
    recorder: &Proxy,
    cut_short: usize,
    log: &str,
) {
    let sent = stopped_field(log, "samples_sent");
    let passed = recorder.passed();
    let twice: Vec<_> = passed.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: samples passed on more than once: {twice:?}"
    );
    assert_eq!(
        passed.len() as u64,
        sent,
        "{what}: the samples passed on whole are the samples the agent sent"
    );
    let text = receiver.self_metrics().await;
    match receiver.kind {
        Kind::Prometheus => {
            let turned_away: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("prometheus_http_requests_total{")
                        && l.contains("handler=\"/api/v1/write\"")
                        && !l.contains("code=\"2")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            assert_eq!(
                turned_away, cut_short as f64,
                "{what}: Prometheus failed only the bodies the proxy cut short"
            );
        }
        Kind::VictoriaMetrics => {
            assert_eq!(
                metric_value(&text, "vm_rows_inserted_total{type=\"promremotewrite\"}"),
                Some(sent as f64),
                "{what}: VictoriaMetrics inserted each sample the agent sent once"
            );
            // Written as VictoriaMetrics writes it, with a space after the comma.
            let errors = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "vm_http_request_errors_total{path=\"/api/v1/write\", protocol=\"promremotewrite\"} ",
                    )
                })
                .and_then(|v| v.parse::<f64>().ok());
            assert_eq!(
                errors,
                Some(cut_short as f64),
                "{what}: VictoriaMetrics failed only the bodies the proxy cut short"
            );
        }
    }
}

/// The `error` field of a log line (text format, up to the next field).
fn error_field(line: &str) -> &str {
    let from = line.split_once(" error=").map_or("", |(_, rest)| rest);
    from.split(" retry_in_ms=").next().unwrap_or(from)
}

/// The `failed` attempts of the agent's log told in episodes, each once: a "remote write
/// failed; retrying until it succeeds" warning when it starts, a "still failing, now for
/// another reason" one per cause not seen yet in the episode (`sender::Failing`), and a
/// "remote write recovered" that ends it, their `failed_attempts` adding up to `failed`; no
/// other warning at all. The number of episodes.
fn assert_episodes(what: &str, log: &str, failed: usize) -> usize {
    let mut episodes = 0;
    let mut causes: Option<Vec<&str>> = None;
    let mut counted = 0;
    let mut told = Vec::new();
    for line in log.lines() {
        if line.contains("remote write recovered") {
            let causes = causes
                .take()
                .unwrap_or_else(|| panic!("{what}: a recovery with no failure before: {log}"));
            let n = line
                .split(" failed_attempts=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{what}: no failed_attempts in {line}"));
            assert!(n >= causes.len(), "{what}: {line} after {causes:?}");
            counted += n;
            episodes += 1;
            told.push(causes);
        } else if !line.contains(" WARN ") {
            continue;
        } else if line.contains("remote write failed; retrying until it succeeds") {
            assert!(causes.is_none(), "{what}: an episode started twice: {log}");
            causes = Some(vec![error_field(line)]);
        } else if line.contains("remote write still failing, now for another reason") {
            let causes = causes
                .as_mut()
                .unwrap_or_else(|| panic!("{what}: a new cause outside an episode: {log}"));
            let cause = error_field(line);
            assert!(
                !causes.contains(&cause),
                "{what}: {cause} told twice: {log}"
            );
            causes.push(cause);
        } else {
            panic!("{what}: an unexpected warning: {line}");
        }
    }
    assert!(causes.is_none(), "{what}: an episode never ended: {log}");
    assert_eq!(
        counted, failed,
        "{what}: the recoveries count every failed attempt: {log}"
    );
    if episodes > 0 {
        eprintln!("{what}: {failed} failed attempts told in {episodes} episode(s): {told:?}");
    }
    episodes
}

/// Each blackholed connection was given up (closed by the agent) after `--remote-timeout`
/// from its request's arrival, and the next attempt came on a new connection within the
/// backoff, none in between. Bounds are the agent's promises plus [`SLACK`] for a loaded
/// machine; the lower one less [`EARLY`] (the agent's timer starts before the request
/// reaches the proxy).
fn assert_blackholes_given_up(what: &str, proxy: &Proxy) {
    let connections = proxy.connections();
    let holed: Vec<usize> = (0..connections.len())
        .filter(|&i| connections[i].blackholed.is_some())
        .collect();
    assert!(holed.len() >= FAILED_ATTEMPTS, "{what}: {connections:#?}");
    // Each retry on a new connection: all but the first blackholed one (which may be the
    // connection kept alive from before) were accepted under the blackhole for that request.
    assert!(
        proxy.accepted_under(Fault::Blackhole) + 1 >= holed.len()
            && holed[1..]
                .iter()
                .all(|&i| connections[i].requests.len() == 1),
        "{what}: {connections:#?}"
    );
    for &i in &holed {
        let c = &connections[i];
        let start = c.requests.last().unwrap().at;
        let closed = c
            .client_closed
            .unwrap_or_else(|| panic!("{what}: blackholed connection {i} never given up"));
        let held = closed - start;
        assert!(
            held + EARLY >= SHORT_TIMEOUT && held <= SHORT_TIMEOUT + SLACK,
            "{what}: connection {i} given up {held:?} after its request, with \
             --remote-timeout {SHORT_TIMEOUT:?}"
        );
        let next = connections
            .get(i + 1)
            .unwrap_or_else(|| panic!("{what}: no connection after blackholed {i}"));
        assert!(
            next.accepted >= closed,
            "{what}: connection {} opened before {i} was given up",
            i + 1
        );
        let wait = next.accepted - closed;
        assert!(
            wait <= MAX_BACKOFF + SLACK,
            "{what}: the retry after connection {i} came {wait:?} after giving it up"
        );
        eprintln!(
            "{what}: connection {i} given up {} ms after its request, next connection {} ms \
             later",
            held.as_millis(),
            wait.as_millis()
        );
    }
}

/// Every attempt the proxy broke was made on a connection of its own: after the first (which
/// may be the connection kept alive from before the fault), each one that failed came on a
/// connection accepted under the fault, and no connection saw two.
fn assert_new_connection_per_retry(what: &str, proxy: &Proxy, fault: Fault) {
    let connections = proxy.connections();
    let broken: Vec<usize> = (0..connections.len())
        .filter(|&i| {
            let c = &connections[i];
            c.handshake_cut
                || (c.reset.is_some() && c.requests.last().is_some_and(|r| r.fault == fault))
        })
        .collect();
    assert!(broken.len() >= FAILED_ATTEMPTS, "{what}: {connections:#?}");
    for &i in &broken[1..] {
        assert_eq!(
            connections[i].fault, fault,
            "{what}: connection {i} broken, accepted under {:?}",
            connections[i].fault
        );
    }
}

/// The requests made and answered while `fault` (latency, a bandwidth cap, a trickle) was in
/// force took as long as it makes them take, at least: proof that the proxy did slow them
/// down, so that "nothing failed" means something. Lower bounds only, which a loaded machine
/// meets all the more.
fn assert_shaped(what: &str, proxy: &Proxy, fault: Fault, healed_at: tokio::time::Instant) {
    let shaped: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter_map(|(_, r)| Some((r, r.answered?)))
        .filter(|(r, (answered, _))| r.fault == fault && *answered < healed_at)
        .collect();
    assert!(shaped.len() >= 3, "{what}: {shaped:#?}");
    let mut took = Vec::new();
    for (r, (answered, answer_len)) in shaped {
        let (done, least) = match fault {
            // One chunk of the request and one of the answer, each held back.
            Fault::Latency(delay) => (answered, delay * 2),
            // The body, less the slice that goes before the first pause.
            Fault::Bandwidth(per_second) => {
                let body = r.body_len.unwrap();
                let paced = body.saturating_sub(per_second / 20);
                let forwarded = r.forwarded.unwrap();
                (
                    forwarded,
                    Duration::from_secs_f64(paced as f64 / per_second as f64),
                )
            }
            // The first chunk of the answer, a few bytes at a time.
            Fault::Trickle { bytes, pause } => {
                let pieces = answer_len.div_ceil(bytes) as u32;
                (answered, pause * pieces.saturating_sub(1))
            }
            other => unreachable!("{other:?} does not shape"),
        };
        let took_ms = (done - r.at).as_millis();
        assert!(
            done - r.at >= least,
            "{what}: a request took {took_ms} ms, less than the {least:?} the fault makes it take"
        );
        took.push(took_ms);
    }
    took.sort();
    eprintln!(
        "{what}: {} requests under the fault took {} to {} ms (median {})",
        took.len(),
        took[0],
        took[took.len() - 1],
        took[took.len() / 2]
    );
}

/// The slow link carried the backlog: the agent gave up a request the link could not carry
/// within `--remote-timeout` (the merged backlog, bigger than one poll's request), no sooner
/// than the timeout, and the link then carried whole requests, each smaller than it, instead
/// of the same one timing out again and again.
fn assert_slow_link_carried_the_backlog(what: &str, proxy: &Proxy) {
    let (given_up, carried) = carried_after_giving_up(proxy)
        .unwrap_or_else(|| panic!("{what}: no request given up on the slow link"));
    let requests = proxy.requests();
    let single = requests
        .iter()
        .filter_map(|(_, r)| r.body_len)
        .min()
        .unwrap();
    let carries = SLOW_LINK * SHORT_TIMEOUT.as_secs();
    assert!(
        given_up > carries && given_up > 2 * single,
        "{what}: the request given up ({given_up} bytes) is a merged one (one poll's is \
         {single}) bigger than the link carries within --remote-timeout ({carries})"
    );
    assert!(
        carried.len() >= FAILED_ATTEMPTS && carried.iter().all(|&len| len < given_up),
        "{what}: carried after it, bodies of {carried:?} bytes"
    );
    let connections = proxy.connections();
    let slow = Fault::Bandwidth(SLOW_LINK);
    for (id, r) in &requests {
        let c = &connections[*id];
        if r.fault != slow || r.forwarded.is_some() || c.client_closed.is_none() {
            continue;
        }
        let held = c.client_closed.unwrap() - r.at;
        assert!(
            held + EARLY >= SHORT_TIMEOUT,
            "{what}: a request on the slow link given up after {held:?}"
        );
    }
    eprintln!(
        "{what}: a {given_up}-byte request given up, then bodies of {carried:?} bytes carried"
    );
}
