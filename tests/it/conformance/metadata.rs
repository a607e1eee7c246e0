//! The 2026 suite's metadata cases (`metadata_test.go`, N044-N054), Remote Write 2.0 only
//! (1.0 has no place for metadata): each series carries its family's TYPE, HELP and UNIT.
//! Prometheus 3.8 sends no metadata in the suite's configuration (it needs a feature flag),
//! so the suite's checks there pass through their escape hatch; we send it, and check the
//! exact type, help text and unit on every series of the family in every request.

use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::proto::v2::metadata::MetricType;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::samples::versions;
use super::symbols::{messages, v2_requests};
use super::{assert_all_valid, series_named, Run};

/// What one series says of its family, its refs resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub name: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
    pub help_ref: u32,
}

/// Each series of each message, with the metadata it carries (a series without a metadata
/// field says UNSPECIFIED, no help, no unit).
pub fn said(requests: &[ReceivedRequest]) -> Vec<Said> {
    let mut out = Vec::new();
    for m in messages(requests) {
        for ts in &m.timeseries {
            out.push(said_of(m, ts));
        }
    }
    out
}

fn said_of(m: &v2::Request, ts: &v2::TimeSeries) -> Said {
    let symbol = |r: u32| m.symbols[r as usize].clone();
    let name = ts
        .labels_refs
        .chunks(2)
        .find(|p| m.symbols[p[0] as usize] == "__name__")
        .map(|p| symbol(p[1]))
        .unwrap_or_default();
    let meta = ts.metadata.unwrap_or_default();
    Said {
        name,
        kind: MetricType::try_from(meta.r#type).expect("a known metric type"),
        help: symbol(meta.help_ref),
        unit: symbol(meta.unit_ref),
        help_ref: meta.help_ref,
    }
}

/// Scrapes `exposition` until every one of `names` arrived (2.0), and checks that every
/// series of them in every request says `kind`, `help` and `unit`.
async fn family(
    id: &str,
    exposition: &str,
    names: &[&str],
    kind: MetricType,
    help: &str,
    unit: &str,
) -> Vec<ReceivedRequest> {
    assert_eq!(versions(id), [Protocol::V2]);
    let run = Run::start(Protocol::V2, exposition, &[]).await;
    for n in names {
        run.until_series(n).await;
    }
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V2);
    let all = said(&requests);
    for n in names {
        let of: Vec<&Said> = all.iter().filter(|s| s.name == *n).collect();
        assert!(!of.is_empty(), "no {n}");
        for s in of {
            assert_eq!(
                (s.kind, s.help.as_str(), s.unit.as_str()),
                (kind, help, unit),
                "{s:?}"
            );
        }
    }
    requests
}

/// SHOULD send TYPE for a counter: COUNTER, with its help.
#[tokio::test]
async fn n044_metadata_type_counter() {
    family(
        "N044",
        "# HELP http_requests_total Total HTTP requests\n\
         # TYPE http_requests_total counter\n\
         http_requests_total 100\n",
        &["http_requests_total"],
        MetricType::Counter,
        "Total HTTP requests",
        "",
    )
    .await;
}

/// SHOULD send TYPE for a gauge: GAUGE, with its help.
#[tokio::test]
async fn n045_metadata_type_gauge() {
    family(
        "N045",
        "# HELP memory_usage_bytes Current memory usage\n\
         # TYPE memory_usage_bytes gauge\n\
         memory_usage_bytes 1048576\n",
        &["memory_usage_bytes"],
        MetricType::Gauge,
        "Current memory usage",
        "",
    )
    .await;
}

/// SHOULD send TYPE for a histogram: its `_bucket`, `_sum` and `_count` series all say
/// HISTOGRAM and the family's help.
#[tokio::test]
async fn n046_metadata_type_histogram() {
    family(
        "N046",
        "# HELP request_duration_seconds Request duration\n\
         # TYPE request_duration_seconds histogram\n\
         request_duration_seconds_bucket{le=\"+Inf\"} 100\n\
         request_duration_seconds_sum 50.0\n\
         request_duration_seconds_count 100\n",
        &[
            "request_duration_seconds_bucket",
            "request_duration_seconds_sum",
            "request_duration_seconds_count",
        ],
        MetricType::Histogram,
        "Request duration",
        "",
    )
    .await;
}

/// SHOULD send TYPE for a summary: its quantile, `_sum` and `_count` series all say SUMMARY
/// and the family's help.
#[tokio::test]
async fn n047_metadata_type_summary() {
    family(
        "N047",
        "# HELP rpc_duration_seconds RPC duration\n\
         # TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{quantile=\"0.5\"} 0.05\n\
         rpc_duration_seconds{quantile=\"0.9\"} 0.1\n\
         rpc_duration_seconds_sum 100.0\n\
         rpc_duration_seconds_count 1000\n",
        &[
            "rpc_duration_seconds",
            "rpc_duration_seconds_sum",
            "rpc_duration_seconds_count",
        ],
        MetricType::Summary,
        "RPC duration",
        "",
    )
    .await;
}

/// SHOULD send HELP: the exact text (the suite checks it holds "HTTP requests").
#[tokio::test]
async fn n048_metadata_help_text() {
    family(
        "N048",
        "# HELP http_requests_total The total number of HTTP requests\n\
         # TYPE http_requests_total counter\n\
         http_requests_total 100\n",
        &["http_requests_total"],
        MetricType::Counter,
        "The total number of HTTP requests",
        "",
    )
    .await;
}

/// MAY send UNIT. The suite's exposition is the text format 0.0.4, which has no UNIT line
/// (`# UNIT` is a comment there, as to Prometheus): no unit is sent for it. The same family
/// in OpenMetrics, whose UNIT line is part of the format, arrives with unit `bytes`. (The
/// OpenMetrics exposition carries a counter with an exemplar, so the suite's target serves
/// it as OpenMetrics.)
#[tokio::test]
async fn n049_metadata_unit() {
    family(
        "N049",
        "# HELP memory_usage_bytes Memory usage\n\
         # TYPE memory_usage_bytes gauge\n\
         # UNIT memory_usage_bytes bytes\n\
         memory_usage_bytes 1048576\n",
        &["memory_usage_bytes"],
        MetricType::Gauge,
        "Memory usage",
        "",
    )
    .await;
    family(
        "N049",
        "# TYPE memory_usage_bytes gauge\n\
         # UNIT memory_usage_bytes bytes\n\
         # HELP memory_usage_bytes Memory usage\n\
         memory_usage_bytes 1048576\n\
         # TYPE served_as_openmetrics counter\n\
         served_as_openmetrics_total 1 # {trace_id=\"abc\"} 1\n\
         # EOF\n",
        &["memory_usage_bytes"],
        MetricType::Gauge,
        "Memory usage",
        "bytes",
    )
    .await;
}

/// SHOULD preserve newlines in HELP. The text format's HELP is one line, a newline in it
/// written `\n`: such a HELP arrives with the newline. The suite's exposition instead gives
/// the family two HELP lines, which the text format forbids ("only one HELP line may exist
/// for any given metric name"): like `expfmt`, our parser refuses that scrape as a whole
/// (`up` 0, the family not sent); Prometheus's own parser keeps one of the two.
#[tokio::test]
async fn n050_metadata_help_with_newlines() {
    family(
        "N050",
        "# HELP multiline_metric This is a help text\\nthat spans multiple lines\n\
         # TYPE multiline_metric gauge\n\
         multiline_metric 42\n",
        &["multiline_metric"],
        MetricType::Gauge,
        "This is a help text\nthat spans multiple lines",
        "",
    )
    .await;
    let run = Run::start(
        Protocol::V2,
        "# HELP multiline_metric This is a help text\n\
         # HELP multiline_metric that spans multiple lines\n\
         # TYPE multiline_metric gauge\n\
         multiline_metric 42\n",
        &[],
    )
    .await;
    run.until("two failed scrapes (up 0)", |reqs| {
        series_named(reqs, "up")
            .iter()
            .flat_map(|ts| &ts.samples)
            .filter(|s| s.value == 0.0)
            .count()
            >= 2
    })
    .await;
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V2);
    assert!(series_named(&requests, "multiline_metric").is_empty());
    assert!(series_named(&requests, "up")
        .iter()
        .flat_map(|ts| &ts.samples)
        .all(|s| s.value == 0.0));
}

/// SHOULD preserve special characters in HELP: quotes stay, and in the text format only
/// `\\` and `\n` are escapes, so `\b` and the final `\` arrive as written (the suite checks
/// that the help is not empty).
#[tokio::test]
async fn n051_metadata_help_with_special_chars() {
    family(
        "N051",
        "# HELP special_metric This help contains \"quotes\" and \\backslashes\\\n\
         # TYPE special_metric counter\n\
         special_metric 100\n",
        &["special_metric"],
        MetricType::Counter,
        "This help contains \"quotes\" and \\backslashes\\",
        "",
    )
    .await;
}

/// MUST point help and unit refs into the table: every series' refs of every request are
/// below the table's length, and `test_metric`'s help resolves to its text.
#[tokio::test]
async fn n052_metadata_help_refs_valid() {
    assert_eq!(versions("N052"), [Protocol::V2]);
    let (requests, _) = v2_requests(
        "# HELP test_metric Test metric description\n\
         # TYPE test_metric counter\n\
         test_metric 42\n",
        "test_metric",
    )
    .await;
    for m in messages(&requests) {
        for ts in &m.timeseries {
            let meta = ts.metadata.unwrap_or_default();
            assert!((meta.help_ref as usize) < m.symbols.len(), "{ts:?}");
            assert!((meta.unit_ref as usize) < m.symbols.len(), "{ts:?}");
        }
    }
    for s in said(&requests).iter().filter(|s| s.name == "test_metric") {
        assert_eq!(s.help, "Test metric description");
        assert_eq!(s.kind, MetricType::Counter);
    }
    assert!(!series_named(&requests, "test_metric").is_empty());
}

/// SHOULD send one family's metadata alike on all its series: both series of every request
/// say COUNTER and point at the same help entry.
#[tokio::test]
async fn n053_metadata_consistent_across_series() {
    let requests = family(
        "N053",
        "# HELP http_requests_total Total HTTP requests\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{method=\"GET\"} 100\n\
         http_requests_total{method=\"POST\"} 50\n",
        &["http_requests_total"],
        MetricType::Counter,
        "Total HTTP requests",
        "",
    )
    .await;
    for m in messages(&requests) {
        let of: Vec<Said> = m
            .timeseries
            .iter()
            .map(|ts| said_of(m, ts))
            .filter(|s| s.name == "http_requests_total")
            .collect();
        if of.is_empty() {
            continue;
        }
        assert_eq!(of.len(), 2, "{of:?}");
        assert_eq!(of[0].help_ref, of[1].help_ref);
        assert_eq!(of[0].kind, of[1].kind);
    }
}

/// MAY send a family without HELP: `no_help_metric` arrives typed COUNTER, help ref 0.
#[tokio::test]
async fn n054_metadata_empty_help_allowed() {
    let requests = family(
        "N054",
        "# TYPE no_help_metric counter\nno_help_metric 42\n",
        &["no_help_metric"],
        MetricType::Counter,
        "",
        "",
    )
    .await;
    for s in said(&requests)
        .iter()
        .filter(|s| s.name == "no_help_metric")
    {
        assert_eq!(s.help_ref, 0);
    }
}
