//! Reading back what the agent sent, for the histogram, exemplar, edge-case, combined and 1.0
//! cases: series by name and labels over every accepted request, their values, and a 2.0
//! series' metadata, histograms and exemplars as the wire had them.

use kubelet_push::remote_write::proto::v1::{TimeSeries, WriteRequest};
use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::{assert_all_valid, Run};

/// The bits of Prometheus's stale marker, a NaN no exporter writes.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A series expected: its name, some of its labels, its value.
pub type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// The label `name` of `ts`.
pub fn label<'a>(ts: &'a TimeSeries, name: &str) -> Option<&'a str> {
    crate::support::label(ts, name)
}

/// Whether `ts` has every pair of `want` among its labels.
pub fn has(ts: &TimeSeries, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(n, v)| label(ts, n) == Some(*v))
}

/// The accepted requests in their 1.0 form (a 2.0 body with its labels resolved).
pub fn accepted(requests: &[ReceivedRequest]) -> Vec<&WriteRequest> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| r.write_request.as_ref())
        .collect()
}

/// Every series of every accepted request, in arrival order.
pub fn all_series(requests: &[ReceivedRequest]) -> Vec<&TimeSeries> {
    accepted(requests)
        .into_iter()
        .flat_map(|w| w.timeseries.iter())
        .collect()
}

/// The accepted series named `name` with the labels `want` (among others), in arrival order.
pub fn matching<'a>(
    requests: &'a [ReceivedRequest],
    name: &str,
    want: &[(&str, &str)],
) -> Vec<&'a TimeSeries> {
    all_series(requests)
        .into_iter()
        .filter(|ts| crate::support::name(ts) == name && has(ts, want))
        .collect()
}

/// The sample values of `name{want}`, in arrival order.
pub fn values(requests: &[ReceivedRequest], name: &str, want: &[(&str, &str)]) -> Vec<f64> {
    matching(requests, name, want)
        .iter()
        .flat_map(|ts| ts.samples.iter().map(|s| s.value))
        .collect()
}

/// The one value every sample of `name{want}` carries, bit for bit (fails if there is none or
/// they differ).
pub fn steady(requests: &[ReceivedRequest], name: &str, want: &[(&str, &str)]) -> f64 {
    let values = values(requests, name, want);
    assert!(!values.is_empty(), "no sample of {name}{want:?}");
    assert!(
        values.iter().all(|v| v.to_bits() == values[0].to_bits()),
        "{name}{want:?}: {values:?}"
    );
    values[0]
}

/// The accepted requests that carry a series named `name`.
pub fn requests_with<'a>(requests: &'a [ReceivedRequest], name: &str) -> Vec<&'a WriteRequest> {
    accepted(requests)
        .into_iter()
        .filter(|w| {
            w.timeseries
                .iter()
                .any(|ts| crate::support::name(ts) == name)
        })
        .collect()
}

/// The names of the series of `w`, in wire order.
pub fn names(w: &WriteRequest) -> Vec<&str> {
    w.timeseries.iter().map(crate::support::name).collect()
}

/// The accepted 2.0 requests as they decoded.
pub fn v2_requests(requests: &[ReceivedRequest]) -> Vec<&v2::Request> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| r.v2_request.as_ref())
        .collect()
}

/// A 2.0 series' label `name`, looked up in its request's symbols.
pub fn v2_label<'a>(req: &'a v2::Request, ts: &v2::TimeSeries, name: &str) -> Option<&'a str> {
    ts.labels_refs.chunks(2).find_map(|pair| {
        let n = req.symbols.get(*pair.first()? as usize)?;
        let v = req.symbols.get(*pair.get(1)? as usize)?;
        (n == name).then_some(v.as_str())
    })
}

/// Every 2.0 series named `name`, with its request (for the symbols).
pub fn v2_series<'a>(
    requests: &'a [ReceivedRequest],
    name: &str,
) -> Vec<(&'a v2::Request, &'a v2::TimeSeries)> {
    v2_requests(requests)
        .into_iter()
        .flat_map(|req| req.timeseries.iter().map(move |ts| (req, ts)))
        .filter(|(req, ts)| v2_label(req, ts, "__name__") == Some(name))
        .collect()
}

/// A 2.0 series' metadata: its type, HELP and UNIT, resolved from the symbols.
pub fn v2_metadata<'a>(
    req: &'a v2::Request,
    ts: &v2::TimeSeries,
) -> (v2::metadata::MetricType, &'a str, &'a str) {
    let meta = ts.metadata.unwrap_or_default();
    let text = |r: u32| req.symbols.get(r as usize).map_or("", String::as_str);
    (meta.r#type(), text(meta.help_ref), text(meta.unit_ref))
}

/// No series of any 2.0 request carries a native histogram or an exemplar, and every one
/// carries samples: what the agent sends for an exposition without exemplars, since it parses
/// text formats only.
pub fn assert_samples_only(requests: &[ReceivedRequest]) {
    assert_no_histograms(requests);
    for req in v2_requests(requests) {
        for ts in &req.timeseries {
            assert!(ts.exemplars.is_empty(), "{ts:?}");
        }
    }
}

/// No series of any 2.0 request carries a native histogram, and every one carries samples
/// (an exemplar goes with its sample, never alone).
pub fn assert_no_histograms(requests: &[ReceivedRequest]) {
    let v2 = v2_requests(requests);
    assert!(!v2.is_empty(), "no accepted 2.0 request");
    for req in v2 {
        for ts in &req.timeseries {
            assert!(ts.histograms.is_empty(), "{ts:?}");
            assert!(!ts.samples.is_empty(), "{ts:?}");
        }
    }
}

/// One exemplar as a 2.0 request carried it: its labels, resolved and sorted, its value and
/// its timestamp.
pub type SentExemplar = (Vec<(String, String)>, f64, i64);

/// The exemplars of every accepted 2.0 series named `name` with the labels `want`, in arrival
/// order. Each is held to the specification's MUSTs on the way: label refs in pairs (N074),
/// every ref inside its request's symbols (N071), a timestamp in milliseconds (N070: after
/// 2001-09-09, 1e12), a label name never empty; the value is a double by the schema (N069),
/// so the caller compares it.
pub fn v2_exemplars(
    requests: &[ReceivedRequest],
    name: &str,
    want: &[(&str, &str)],
) -> Vec<SentExemplar> {
    let mut out = Vec::new();
    for (req, ts) in v2_series(requests, name) {
        if !want.iter().all(|(n, v)| v2_label(req, ts, n) == Some(*v)) {
            continue;
        }
        for e in &ts.exemplars {
            assert_eq!(e.labels_refs.len() % 2, 0, "refs in pairs: {e:?}");
            let symbol = |r: u32| -> String {
                req.symbols
                    .get(r as usize)
                    .unwrap_or_else(|| panic!("ref {r} outside {} symbols", req.symbols.len()))
                    .clone()
            };
            let mut labels: Vec<(String, String)> = e
                .labels_refs
                .chunks(2)
                .map(|p| (symbol(p[0]), symbol(p[1])))
                .collect();
            assert!(labels.iter().all(|(n, _)| !n.is_empty()), "{labels:?}");
            labels.sort();
            assert!(e.timestamp > 1_000_000_000_000, "ms: {e:?}");
            out.push((labels, e.value, e.timestamp));
        }
    }
    out
}

/// `(name, value)` pairs as owned strings, sorted, as [`SentExemplar`] has them.
pub fn owned_labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

/// Scrapes may take as long as they need here: a scrape that timed out on a loaded machine
/// would say `up` 0 where the case expects 1.
pub fn patient(cfg: &mut kubelet_push::Config) {
    for t in &mut cfg.scrape_targets {
        t.timeout = crate::support::PATIENCE;
    }
}

/// [`Run::start`] with [`patient`] scrapes.
pub async fn start(protocol: Protocol, exposition: &str, extra: &[&str]) -> Run {
    let target = super::Target::serve(exposition).await;
    Run::start_on(protocol, target, extra, |_| {}, patient).await
}

/// Runs the agent on `exposition` until at least two accepted requests carried a series named
/// `name` (two scrapes, so a value is seen to hold), and returns every request, all valid.
pub async fn scraped(protocol: Protocol, exposition: &str, name: &str) -> Vec<ReceivedRequest> {
    let run = start(protocol, exposition, &[]).await;
    run.until(&format!("two requests with {name}"), |reqs| {
        requests_with(reqs, name).len() >= 2
    })
    .await;
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    requests
}

/// Runs the agent on an exposition it refuses as a whole: until two scrapes said `up` 0.
/// Returns every request, all valid; nothing but the target's own five series was sent, and
/// never `up` 1.
pub async fn refused(protocol: Protocol, exposition: &str) -> Vec<ReceivedRequest> {
    let run = start(protocol, exposition, &[]).await;
    run.until("two scrapes with up 0", |reqs| {
        values(reqs, "up", &[])
            .iter()
            .filter(|v| **v == 0.0)
            .count()
            >= 2
    })
    .await;
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    assert_eq!(steady(&requests, "up", &[("job", "test")]), 0.0);
    for ts in all_series(&requests) {
        assert!(
            [
                "up",
                "scrape_duration_seconds",
                "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling",
                "scrape_series_added",
            ]
            .contains(&crate::support::name(ts)),
            "a series of a refused exposition was sent: {ts:?}"
        );
    }
    assert_eq!(steady(&requests, "scrape_samples_scraped", &[]), 0.0);
    requests
}
