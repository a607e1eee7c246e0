//! Prometheus's remote-write sender compliance suites, carried over (issue 22).
//!
//! The suites live in prometheus/compliance, folder `remotewrite/sender/`: the 2026 suite on
//! `main` (cases `N001`-`N157` here, each tagged MUST, SHOULD, MAY or RECOMMENDED) and the
//! older 1.0 suite at commit adfa690 (`L01`-`L19`, no levels). Their Go modules cannot be
//! fetched here, so each case was read and is checked by a test of ours that asserts what the
//! case asserts, driven the suites' way: the agent scrapes a target in the test
//! ([`Target`], serving the case's exposition text) with `--kubelet-summary=false`, and pushes
//! to the in-test receiver (`testkit::receiver`, which decodes and validates every request and
//! answers as the case says). A case that concerns only the sending side may use the kubelet
//! source instead.
//!
//! Where the suites are weaker than their wording (the inventory found validators that look
//! only at the last request and pass on none, checks that cannot fail, fallback cases that
//! never send the 415 they mean to), our test checks what the case's name and level say, and
//! always requires that something was sent.
//!
//! `docs/conformance.md` is rendered from [`cases::ROWS`], each row's verdict per protocol
//! version; the test of each case asserts that its row's verdict holds (a `Pass` passes, a
//! deviation behaves as its reason says), and [`the_table_in_docs_is_current`] compares the
//! rendered table with the checked-in copy, so the document cannot go stale
//! (`KUBELET_PUSH_BLESS=1 cargo test --test it conformance::the_table` rewrites it).

// The harness serves every group of cases; not every group uses every helper.
#![allow(dead_code)]

mod backoff;
mod batching;
mod cases;
mod combined;
mod edge_cases;
mod error_handling;
mod exemplars;
mod fallback;
mod histograms;
mod inspect;
mod labels;
mod metadata;
mod protocol;
mod receivers;
mod response;
mod retry;
mod rw1_compat;
mod samples;
mod sending;
mod suite_1_0;
mod symbols;
mod timestamps;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::{ReceivedRequest, Receiver};
use kubelet_push::testkit::server::LocalServer;

use crate::support::Agent;

pub use cases::Verdict;

/// The scrape interval of every run: short, so a case sees several scrapes quickly.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// What a [`Target`] answers: fixed text, or a page made per scrape (the 1.0 suite's
/// client_golang handlers have state: a counter that counts its scrapes, a gauge unregistered
/// after the first one).
enum Page {
    Fixed(String),
    /// Called with the scrape's number (0 for the first).
    PerScrape(Box<dyn Fn(usize) -> String + Send>),
}

/// A scrape target serving exposition text on every path, as the suites' mock target does:
/// OpenMetrics when the text holds an exemplar (`# {`, with `# EOF` added if missing), the
/// text format 0.0.4 otherwise; `Accept` is not looked at.
pub struct Target {
    server: LocalServer,
    page: Arc<Mutex<(Page, usize)>>,
}

impl Target {
    pub async fn serve(exposition: &str) -> Target {
        Self::serve_page(Page::Fixed(exposition.to_owned())).await
    }

    /// A target answering scrape `n` (0, 1, ...) with `page(n)`.
    pub async fn serve_per_scrape(page: impl Fn(usize) -> String + Send + 'static) -> Target {
        Self::serve_page(Page::PerScrape(Box::new(page))).await
    }

    async fn serve_page(page: Page) -> Target {
        let page = Arc::new(Mutex::new((page, 0)));
        let p = page.clone();
        let app = axum::Router::new().fallback(move || {
            let p = p.clone();
            async move {
                let mut body = {
                    let mut p = p.lock().unwrap();
                    let n = p.1;
                    p.1 += 1;
                    match &p.0 {
                        Page::Fixed(text) => text.clone(),
                        Page::PerScrape(f) => f(n),
                    }
                };
                let content_type = if body.contains("# {") {
                    if !body.ends_with("# EOF\n") {
                        body.push_str("# EOF\n");
                    }
                    "application/openmetrics-text; version=1.0.0; charset=utf-8"
                } else {
                    "text/plain; version=0.0.4; charset=utf-8"
                };
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        });
        let server = LocalServer::start(app, "conformance target").await.unwrap();
        Target { server, page }
    }

    /// `host:port`: the `instance` of what is scraped from it.
    pub fn instance(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.server.addr())
    }

    /// Serves `exposition` from the next scrape on.
    pub fn set(&self, exposition: &str) {
        self.page.lock().unwrap().0 = Page::Fixed(exposition.to_owned());
    }

    /// How many times it was scraped so far.
    pub fn scrapes(&self) -> usize {
        self.page.lock().unwrap().1
    }
}

/// The `--remote-write-version` value of `protocol`.
pub fn version_flag(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V1 => "1",
        Protocol::V2 => "2",
    }
}

/// One case's run: the target, the receiver and the agent (in process, the real `run`)
/// scraping the one into the other as job `test`.
pub struct Run {
    pub target: Target,
    pub rx: Receiver,
    pub agent: Agent,
    pub protocol: Protocol,
}

impl Run {
    /// Serves `exposition`, starts a receiver (answering 204, with 2.0's written counts) and
    /// the agent pushing `protocol` with `extra` flags. Answers to queue go on `run.rx` before
    /// anything is scraped: use [`Run::start_with`].
    pub async fn start(protocol: Protocol, exposition: &str, extra: &[&str]) -> Run {
        Self::start_with(protocol, exposition, extra, |_| {}).await
    }

    /// As [`Run::start`], with `script` called on the receiver before the agent starts.
    pub async fn start_with(
        protocol: Protocol,
        exposition: &str,
        extra: &[&str],
        script: impl FnOnce(&Receiver),
    ) -> Run {
        Self::start_version(version_flag(protocol), exposition, extra, script).await
    }

    /// As [`Run::start_with`], with `--remote-write-version` given as text (`auto`).
    pub async fn start_version(
        version: &str,
        exposition: &str,
        extra: &[&str],
        script: impl FnOnce(&Receiver),
    ) -> Run {
        let protocol = if version == "1" {
            Protocol::V1
        } else {
            Protocol::V2
        };
        let target = Target::serve(exposition).await;
        Self::launch(version, protocol, target, extra, script, |_| {}).await
    }

    /// As [`Run::start_with`], scraping `target` (one made with
    /// [`Target::serve_per_scrape`]), with `configure` called on the agent's config last (a
    /// scrape timeout longer than the harness's, say).
    pub async fn start_on(
        protocol: Protocol,
        target: Target,
        extra: &[&str],
        script: impl FnOnce(&Receiver),
        configure: impl FnOnce(&mut kubelet_push::Config),
    ) -> Run {
        Self::launch(
            version_flag(protocol),
            protocol,
            target,
            extra,
            script,
            configure,
        )
        .await
    }

    async fn launch(
        version: &str,
        protocol: Protocol,
        target: Target,
        extra: &[&str],
        script: impl FnOnce(&Receiver),
        configure: impl FnOnce(&mut kubelet_push::Config),
    ) -> Run {
        let rx = Receiver::start().await.unwrap();
        script(&rx);
        let scrape = format!("test={}", target.url());
        let url = rx.url();
        let mut args = vec![
            "--kubelet-summary=false",
            "--node-name",
            "conformance-node",
            "--scrape",
            &scrape,
            "--remote-url",
            &url,
            "--remote-write-version",
            version,
            "--min-backoff",
            "50ms",
            "--max-backoff",
            "200ms",
            "--shutdown-timeout",
            "5s",
        ];
        args.extend_from_slice(extra);
        let mut cfg = crate::support::config(&args);
        cfg.poll.interval = INTERVAL;
        for t in &mut cfg.scrape_targets {
            t.interval = INTERVAL;
            t.timeout = INTERVAL * 4 / 5;
        }
        configure(&mut cfg);
        let agent = Agent::start_config(cfg);
        Run {
            target,
            rx,
            agent,
            protocol,
        }
    }

    /// Waits (at most `support::PATIENCE`) until the requests received so far satisfy `done`.
    pub async fn until(&self, what: &str, mut done: impl FnMut(&[ReceivedRequest]) -> bool) {
        crate::support::wait_until(format_args!("{what} ({:?})", self.protocol), || {
            done(&self.rx.requests())
        })
        .await;
    }

    /// Waits until an accepted request held a series named `name`.
    pub async fn until_series(&self, name: &str) {
        self.until(&format!("a series named {name}"), |reqs| {
            !series_named(reqs, name).is_empty()
        })
        .await;
    }

    /// Stops the agent (it flushes what it holds) and returns every request it sent.
    pub async fn stop(self) -> Vec<ReceivedRequest> {
        let rx = self.rx;
        self.agent.stop().await;
        drop(self.target);
        rx.requests()
    }
}

/// The series named `name` in the accepted requests, in arrival order (a 2.0 request in its
/// 1.0 form: labels resolved from the symbols).
pub fn series_named(requests: &[ReceivedRequest], name: &str) -> Vec<TimeSeries> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| r.write_request.as_ref())
        .flat_map(|w| w.timeseries.iter())
        .filter(|ts| crate::support::name(ts) == name)
        .cloned()
        .collect()
}

/// The one value every sample of the series named `name` carries (fails if they differ or
/// there are none).
pub fn steady_value(requests: &[ReceivedRequest], name: &str) -> f64 {
    let values: Vec<f64> = series_named(requests, name)
        .iter()
        .flat_map(|ts| ts.samples.iter().map(|s| s.value))
        .collect();
    assert!(!values.is_empty(), "no sample of {name}");
    assert!(
        values
            .iter()
            .all(|v| v.to_bits() == values[0].to_bits() || (v.is_nan() && values[0].is_nan())),
        "{name}: {values:?}"
    );
    values[0]
}

/// Every request, sent in `protocol` and valid by the in-test receiver's checks (the Remote
/// Write spec's headers, snappy block format, the message, the symbols and refs of 2.0).
pub fn assert_all_valid(requests: &[ReceivedRequest], protocol: Protocol) {
    assert!(!requests.is_empty(), "nothing was sent");
    for r in requests {
        assert_eq!(r.protocol, protocol, "{r:?}");
        assert_eq!(r.rejection, None, "{r:?}");
    }
}

/// The versions a case's test runs for: those its row passes in (a deviation or an
/// unsupported version is checked by the case's own test, as its reason says).
pub fn passing(id: &str) -> Vec<Protocol> {
    let row = cases::row(id);
    [(Protocol::V1, &row.v1), (Protocol::V2, &row.v2)]
        .into_iter()
        .filter(|(_, v)| matches!(v, Verdict::Pass))
        .map(|(p, _)| p)
        .collect()
}

/// `docs/conformance.md` as the rows say it is.
#[test]
fn the_table_in_docs_is_current() {
    let rendered = cases::render();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/conformance.md");
    if std::env::var_os("KUBELET_PUSH_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/conformance.md is not what the cases say; rerun with KUBELET_PUSH_BLESS=1 and review the diff"
    );
}

/// Every case of both suites has exactly one row.
#[test]
fn every_case_has_a_row() {
    let ids: Vec<&str> = cases::ROWS.iter().map(|r| r.id).collect();
    let want: Vec<String> = (1..=157)
        .map(|n| format!("N{n:03}"))
        .chain((1..=19).map(|n| format!("L{n:02}")))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "a case listed twice");
    let mut want_sorted: Vec<&str> = want.iter().map(String::as_str).collect();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted);
}
