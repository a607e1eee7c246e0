//! The 1.0 suite at adfa690 (`remotewrite/sender/cases/*.go`, L01-L19). Its target is
//! client_golang's handler (or a static body); the target here serves the same text, made per
//! scrape where the handler has state (a counter that counts its scrapes, a gauge of the
//! time, a gauge unregistered after the first scrape). Its receiver decodes 1.0 only; the
//! cases are run with 2.0 too wherever they say nothing about the wire format, since what
//! they check (values, labels, order, retries) holds for both. Every check looks at every
//! sample of every accepted request, in arrival order, as the suite's validators do.

use std::time::{Duration, SystemTime};

use kubelet_push::clock::unix_ms;
use kubelet_push::remote_write::client::SAMPLES_WRITTEN_HEADER;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::{ReceivedRequest, Response};

use super::inspect::{
    accepted, all_series, label, patient, refused, requests_with, scraped, steady, values,
    Expected, STALE_NAN,
};
use super::{assert_all_valid, passing, Run, Target};

/// client_golang's text for one metric without HELP: `# HELP <name> ` (with its blank),
/// `# TYPE`, then the lines.
fn client_golang(name: &str, kind: &str, lines: &str) -> String {
    format!("# HELP {name} \n# TYPE {name} {kind}\n{lines}")
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it for the values here
/// (client_golang's text format): `1.796665628e+12`.
fn go_float(v: f64) -> String {
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// The page of the gauge `now`: the time of the scrape, whole seconds in milliseconds.
fn now_page() -> String {
    let ms = unix_ms(SystemTime::now()) / 1000 * 1000;
    client_golang("now", "gauge", &format!("now {}\n", go_float(ms as f64)))
}

/// Starts the agent on `target` (scrapes that may take as long as they need).
async fn start_on(
    protocol: Protocol,
    target: Target,
    script: impl FnOnce(&kubelet_push::testkit::receiver::Receiver),
) -> Run {
    Run::start_on(protocol, target, &[], script, patient).await
}

/// Every `now` sample is within 1 % of its timestamp (the suite's check), and in fact within
/// a minute of it; there is at least one.
fn assert_now(requests: &[ReceivedRequest]) {
    let mut n = 0;
    for ts in super::inspect::matching(requests, "now", &[]) {
        for s in &ts.samples {
            let t = s.timestamp as f64;
            assert!((t - s.value).abs() <= 0.01 * t.abs(), "{s:?}");
            assert!((t - s.value).abs() <= 60_000.0, "{s:?}");
            n += 1;
        }
    }
    assert!(n > 0, "no sample of now");
}

const GAUGE: &str = "# HELP gauge \n# TYPE gauge gauge\ngauge 42\n";

/// The counter `counter` counts its scrapes: its samples are exactly 0, 1, 2, ... in arrival
/// order, none lost, repeated or reordered (and no stale marker).
#[tokio::test]
async fn l01_counter() {
    for protocol in passing("L01") {
        let target = Target::serve_per_scrape(|n| {
            client_golang("counter", "counter", &format!("counter {n}\n"))
        })
        .await;
        let run = start_on(protocol, target, |_| {}).await;
        run.until("five counter samples", |reqs| {
            values(reqs, "counter", &[]).len() >= 5
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let got = values(&requests, "counter", &[("job", "test")]);
        let want: Vec<f64> = (0..got.len()).map(|n| n as f64).collect();
        assert_eq!(got, want);
    }
}

/// The gauge `now` holds the scrape's time: every sample's value is within 1 % of its
/// timestamp (and within a minute).
#[tokio::test]
async fn l02_gauge() {
    assert_eq!(go_float(1_796_665_628_000.0), "1.796665628e+12");
    for protocol in passing("L02") {
        let target = Target::serve_per_scrape(|_| now_page()).await;
        let run = start_on(protocol, target, |_| {}).await;
        run.until("three now samples", |reqs| {
            values(reqs, "now", &[]).len() >= 3
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_now(&requests);
    }
}

/// A classic histogram: `le` stays `1`, `2`, `+Inf` as client_golang writes it (the agent
/// does not rewrite it to `1.0` as Prometheus 3 does), every part holds its value, and each
/// part has as many samples as the others.
#[tokio::test]
async fn l03_histogram() {
    let exposition = client_golang(
        "histogram",
        "histogram",
        "histogram_bucket{le=\"1\"} 1\nhistogram_bucket{le=\"2\"} 2\nhistogram_bucket{le=\"+Inf\"} 2\nhistogram_sum 3\nhistogram_count 2\n",
    );
    for protocol in passing("L03") {
        let requests = scraped(protocol, &exposition, "histogram_count").await;
        let b = "histogram_bucket";
        let parts: [Expected; 5] = [
            (b, &[("le", "1")], 1.0),
            (b, &[("le", "2")], 2.0),
            (b, &[("le", "+Inf")], 2.0),
            ("histogram_sum", &[], 3.0),
            ("histogram_count", &[], 2.0),
        ];
        let counts: Vec<usize> = parts
            .iter()
            .map(|(name, want, value)| {
                assert_eq!(steady(&requests, name, want), *value, "{name}{want:?}");
                values(&requests, name, want).len()
            })
            .collect();
        assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
        let les: Vec<&str> = super::inspect::matching(&requests, b, &[])
            .iter()
            .filter_map(|ts| label(ts, "le"))
            .collect();
        assert!(
            les.iter().all(|le| ["1", "2", "+Inf"].contains(le)),
            "{les:?}"
        );
    }
}

/// A summary: the quantiles (labels as written), sum and count hold their values, with as
/// many samples each.
#[tokio::test]
async fn l04_summary() {
    let exposition = client_golang(
        "summary",
        "summary",
        "summary{quantile=\"0.5\"} 2\nsummary{quantile=\"0.9\"} 3\nsummary{quantile=\"0.99\"} 3\nsummary_sum 6\nsummary_count 3\n",
    );
    for protocol in passing("L04") {
        let requests = scraped(protocol, &exposition, "summary_count").await;
        let parts: [Expected; 5] = [
            ("summary", &[("quantile", "0.5")], 2.0),
            ("summary", &[("quantile", "0.9")], 3.0),
            ("summary", &[("quantile", "0.99")], 3.0),
            ("summary_sum", &[], 6.0),
            ("summary_count", &[], 3.0),
        ];
        let counts: Vec<usize> = parts
            .iter()
            .map(|(name, want, value)| {
                assert_eq!(steady(&requests, name, want), *value, "{name}{want:?}");
                values(&requests, name, want).len()
            })
            .collect();
        assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
    }
}

/// `up{job="test"}` is 1 in every sample.
#[tokio::test]
async fn l05_up() {
    for protocol in passing("L05") {
        let requests = scraped(protocol, GAUGE, "gauge").await;
        assert_eq!(steady(&requests, "up", &[("job", "test")]), 1.0);
    }
}

/// An invalid exposition: `up{job="test"}` is 0 in every sample, and nothing of it is sent.
#[tokio::test]
async fn l06_invalid() {
    for protocol in passing("L06") {
        refused(
            protocol,
            "\n# this is not valid prometheus\n1234notvali}{ 444\n",
        )
        .await;
    }
}

/// `gauge{job="test"}` is 42 in every sample.
#[tokio::test]
async fn l07_job_label() {
    for protocol in passing("L07") {
        let requests = scraped(protocol, GAUGE, "gauge").await;
        assert_eq!(steady(&requests, "gauge", &[("job", "test")]), 42.0);
    }
}

/// Every series of every request has `instance` = the target's `127.0.0.1:<port>`.
#[tokio::test]
async fn l08_instance_label() {
    for protocol in passing("L08") {
        let target = Target::serve(GAUGE).await;
        let instance = target.instance();
        assert!(instance.starts_with("127.0.0.1:"), "{instance}");
        let run = start_on(protocol, target, |_| {}).await;
        run.until("two requests with gauge", |reqs| {
            requests_with(reqs, "gauge").len() >= 2
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(steady(&requests, "gauge", &[]), 42.0);
        for ts in all_series(&requests) {
            assert_eq!(label(ts, "instance"), Some(instance.as_str()), "{ts:?}");
        }
    }
}

/// Labels go out sorted by name (`test{b="2",a="1"}` as `a`, `b`), in every series.
#[tokio::test]
async fn l09_sorted_labels() {
    for protocol in passing("L09") {
        let requests = scraped(
            protocol,
            "\n# HELP test A gauge\n# TYPE test gauge\ntest{b=\"2\",a=\"1\"} 1.0\n",
            "test",
        )
        .await;
        for ts in all_series(&requests) {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            assert!(names.windows(2).all(|p| p[0] < p[1]), "{names:?}");
        }
        assert_eq!(steady(&requests, "test", &[("a", "1"), ("b", "2")]), 1.0);
    }
}

/// A repeated label name fails the scrape: no `test` is sent, no series repeats a name.
#[tokio::test]
async fn l10_repeated_labels() {
    for protocol in passing("L10") {
        let requests = refused(
            protocol,
            "\n# HELP test A gauge\n# TYPE test gauge\ntest{a=\"1\",a=\"1\"} 1.0\n",
        )
        .await;
        for ts in all_series(&requests) {
            let mut names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            names.sort();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "{ts:?}");
        }
    }
}

/// A label with an empty value is no label: `test` goes out without `a`, and no series has
/// an empty value.
#[tokio::test]
async fn l11_empty_labels() {
    for protocol in passing("L11") {
        let requests = scraped(
            protocol,
            "\n# HELP test A gauge\n# TYPE test gauge\ntest{a=\"\"} 1.0\n",
            "test",
        )
        .await;
        for ts in all_series(&requests) {
            assert!(ts.labels.iter().all(|l| !l.value.is_empty()), "{ts:?}");
        }
        assert_eq!(steady(&requests, "test", &[]), 1.0);
        for ts in super::inspect::matching(&requests, "test", &[]) {
            assert_eq!(label(ts, "a"), None);
        }
    }
}

/// A series without a name fails the scrape: every series sent has `__name__`, none has
/// `label="value"`.
#[tokio::test]
async fn l12_name_label() {
    for protocol in passing("L12") {
        let requests = refused(
            protocol,
            "\n# HELP test A gauge\n# TYPE test gauge\n{label=\"value\"} 1.0\n",
        )
        .await;
        for ts in all_series(&requests) {
            assert!(label(ts, "__name__").is_some_and(|n| !n.is_empty()));
            assert_eq!(label(ts, "label"), None);
        }
    }
}

/// Without honor_labels, the exposition's `job` and `instance` become `exported_job` and
/// `exported_instance`; the target's own stay.
#[tokio::test]
async fn l13_honor_labels() {
    for protocol in passing("L13") {
        let target = Target::serve(
            "\n# HELP test A gauge\n# TYPE test gauge\ntest{job=\"original\", instance=\"foo\"} 1.0\n",
        )
        .await;
        let instance = target.instance();
        let run = start_on(protocol, target, |_| {}).await;
        run.until("two requests with test", |reqs| {
            requests_with(reqs, "test").len() >= 2
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let want = [
            ("exported_job", "original"),
            ("exported_instance", "foo"),
            ("job", "test"),
            ("instance", instance.as_str()),
            ("node", "conformance-node"),
        ];
        assert_eq!(steady(&requests, "test", &want), 1.0);
        for ts in super::inspect::matching(&requests, "test", &[]) {
            assert_eq!(ts.labels.len(), want.len() + 1, "{ts:?}");
        }
    }
}

/// A series gone from a successful scrape gets a stale marker: `stale` is 0, then the stale
/// NaN once the gauge is unregistered (the page is empty from the second scrape on).
#[tokio::test]
async fn l14_staleness() {
    for protocol in passing("L14") {
        let target = Target::serve_per_scrape(|n| {
            if n == 0 {
                client_golang("stale", "gauge", "stale 0\n")
            } else {
                String::new()
            }
        })
        .await;
        let run = start_on(protocol, target, |_| {}).await;
        run.until("a stale marker", |reqs| {
            values(reqs, "stale", &[])
                .iter()
                .any(|v| v.to_bits() == STALE_NAN)
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let bits: Vec<u64> = values(&requests, "stale", &[])
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, [0.0f64.to_bits(), STALE_NAN]);
    }
}

/// Every sample of every request is stamped within the run, and the stamps never go back,
/// across all series, in arrival order.
#[tokio::test]
async fn l15_timestamp() {
    for protocol in passing("L15") {
        let start = unix_ms(SystemTime::now());
        // The suite takes `start` well before its agent starts; a strict `start < t` must not
        // depend on the agent's first scrape falling in a later millisecond.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let requests = scraped(protocol, GAUGE, "gauge").await;
        let end = unix_ms(SystemTime::now());
        let mut previous = 0;
        for ts in all_series(&requests) {
            for s in &ts.samples {
                assert!(start < s.timestamp && s.timestamp < end, "{s:?}");
                assert!(s.timestamp >= previous, "{s:?} after {previous}");
                previous = s.timestamp;
            }
        }
        assert_eq!(steady(&requests, "gauge", &[]), 42.0);
    }
}

/// Every 1.0 request carries exactly `Content-Encoding: snappy`, `Content-Type:
/// application/x-protobuf` and `X-Prometheus-Remote-Write-Version: 0.1.0`; `now` as in L02.
#[tokio::test]
async fn l16_headers() {
    for protocol in passing("L16") {
        let target = Target::serve_per_scrape(|_| now_page()).await;
        let run = start_on(protocol, target, |_| {}).await;
        run.until("three now samples", |reqs| {
            values(reqs, "now", &[]).len() >= 3
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_now(&requests);
        for r in &requests {
            assert_eq!(r.header("content-encoding"), Some("snappy"));
            assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
            assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
        }
    }
}

/// Delays from a fixed pseudo-random sequence, below a second: the suite sleeps a random
/// 0-5 s before answering; shorter here, so the run stays short and no answer comes near the
/// agent's remote timeout (30 s).
fn delays(n: usize) -> Vec<Duration> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(x % 700)
        })
        .collect()
}

/// 1000 series under slow, uneven answers: each series' timestamps strictly increase in
/// arrival order (no overlap between requests, nothing sent twice); every value is 1.
#[tokio::test]
async fn l17_ordering() {
    let lines: String = (0..1000)
        .map(|i| format!("test{{i=\"{i}\"}} 1\n"))
        .collect();
    let exposition = client_golang("test", "gauge", &lines);
    for protocol in passing("L17") {
        let target = Target::serve(&exposition).await;
        let run = start_on(protocol, target, |rx| {
            for d in delays(12) {
                // A queued answer has no written counts of its own; a 2.0 sender takes a 2xx
                // without them for a receiver that predates 2.0. The agent counts the lesser
                // of this and what it sent.
                rx.push_response(
                    Response::status(204)
                        .with_delay(d)
                        .with_header(SAMPLES_WRITTEN_HEADER, "1000000"),
                );
            }
        })
        .await;
        run.until("fourteen requests with test", |reqs| {
            requests_with(reqs, "test").len() >= 14
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        let mut seen = 0;
        let mut keys = std::collections::HashSet::new();
        for ts in all_series(&requests) {
            let key = format!("{:?}", ts.labels);
            for s in &ts.samples {
                if crate::support::name(ts) == "test" {
                    assert_eq!(s.value, 1.0, "{key}");
                    seen += 1;
                    keys.insert(key.clone());
                }
                let before = last.insert(key.clone(), s.timestamp).unwrap_or(i64::MIN);
                assert!(
                    before < s.timestamp,
                    "{key}: {} after {before}",
                    s.timestamp
                );
            }
        }
        assert!(seen >= 14 * 1000, "{seen}");
        assert_eq!(keys.len(), 1000);
    }
}

/// The timestamp of the last `now` sample of the first request (answered `status`).
fn first_now(requests: &[ReceivedRequest], status: u16) -> i64 {
    let first = &requests[0];
    assert_eq!(first.status, status, "{first:?}");
    first
        .write_request
        .as_ref()
        .and_then(|w| {
            w.timeseries
                .iter()
                .filter(|ts| crate::support::name(ts) == "now")
                .flat_map(|ts| ts.samples.iter())
                .map(|s| s.timestamp)
                .next_back()
        })
        .expect("the first request carries now")
}

/// Accepted `now` samples stamped `t`.
fn delivered(requests: &[ReceivedRequest], t: i64) -> usize {
    accepted(requests)
        .iter()
        .flat_map(|w| w.timeseries.iter())
        .filter(|ts| crate::support::name(ts) == "now")
        .flat_map(|ts| ts.samples.iter())
        .filter(|s| s.timestamp == t)
        .count()
}

/// A request answered 500 is sent again: the `now` sample it carried is delivered, once.
#[tokio::test]
async fn l18_retries_500() {
    for protocol in passing("L18") {
        let target = Target::serve_per_scrape(|_| now_page()).await;
        let run = start_on(protocol, target, |rx| {
            rx.push_response(Response::status(500).with_body("internal server error"));
        })
        .await;
        run.until("the refused sample delivered", |reqs| {
            !reqs.is_empty() && reqs[0].status == 500 && delivered(reqs, first_now(reqs, 500)) > 0
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(delivered(&requests, first_now(&requests, 500)), 1);
        assert_now(&requests);
    }
}

/// A request answered 400 is dropped: its `now` sample is never delivered, while later ones
/// are.
#[tokio::test]
async fn l19_retries_400() {
    for protocol in passing("L19") {
        let target = Target::serve_per_scrape(|_| now_page()).await;
        let run = start_on(protocol, target, |rx| {
            rx.push_response(Response::status(400).with_body("bad request"));
        })
        .await;
        run.until("three later now samples delivered", |reqs| {
            !reqs.is_empty()
                && reqs[0].status == 400
                && super::inspect::matching(reqs, "now", &[])
                    .iter()
                    .flat_map(|ts| ts.samples.iter())
                    .filter(|s| s.timestamp > first_now(reqs, 400))
                    .count()
                    >= 3
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(delivered(&requests, first_now(&requests, 400)), 0);
        assert_now(&requests);
    }
}
