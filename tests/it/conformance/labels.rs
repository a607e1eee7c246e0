//! The 2026 suite's label cases (`labels_test.go`, N026-N038): the label sets of scraped
//! series on the wire. Every series of every request is checked (the suite looks at the last
//! request), and the case's own series must arrive with exactly the labels the exposition
//! and the target give it: `job="test"`, `instance` (the target's `host:port`) and `node`
//! (our agent's `--node-name`) besides the exposition's.
//!
//! Ten of the suite's expositions (N029-N038) lack the final newline the text format
//! requires; a parser like Prometheus's refuses such a scrape as a whole, so the suite's
//! validators then only ever see the scrape's own series. Ours refuses it too (`up` 0): N029
//! checks that with the verbatim bytes, then every one of these cases is served with the
//! newline added, so that its labels are what is checked.

use kubelet_push::remote_write::proto::v1::TimeSeries;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::ReceivedRequest;

use super::samples::{deviating, versions};
use super::{assert_all_valid, series_named, steady_value, Run};

/// A series' labels as sent, in wire order.
fn labels(ts: &TimeSeries) -> Vec<(&str, &str)> {
    ts.labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

/// Every series of every accepted request.
fn every_series(requests: &[ReceivedRequest]) -> impl Iterator<Item = &TimeSeries> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .flat_map(|r| r.write_request.as_ref().unwrap().timeseries.iter())
}

/// `exposition` with the final newline it lacks in the suite.
fn with_newline(exposition: &str) -> String {
    assert!(!exposition.ends_with('\n'));
    format!("{exposition}\n")
}

/// The label set `test_metric` must arrive with: `__name__`, the exposition's `own` labels
/// and the target's, sorted by name as the protocol requires.
fn expected(instance: &str, own: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> = [
        ("__name__", "test_metric"),
        ("instance", instance),
        ("job", "test"),
        ("node", "conformance-node"),
    ]
    .iter()
    .chain(own)
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    want.sort();
    want
}

/// Scrapes `exposition` until `test_metric` arrives; every request valid, every sample of
/// `test_metric` 42 and labelled exactly `own` plus the target's, in sorted order; then
/// `check` on every series of every request.
async fn case(
    id: &str,
    exposition: &str,
    own: &[(&str, &str)],
    check: impl Fn(Protocol, &TimeSeries),
) {
    case_in(versions(id), exposition, own, check).await;
}

/// [`case`] for the given versions.
async fn case_in(
    versions: Vec<Protocol>,
    exposition: &str,
    own: &[(&str, &str)],
    check: impl Fn(Protocol, &TimeSeries),
) {
    for protocol in versions {
        let run = Run::start(protocol, exposition, &[]).await;
        let want = expected(&run.target.instance(), own);
        run.until_series("test_metric").await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(steady_value(&requests, "test_metric"), 42.0);
        for ts in series_named(&requests, "test_metric") {
            let got: Vec<(String, String)> = labels(&ts)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{protocol:?}");
        }
        for ts in every_series(&requests) {
            check(protocol, ts);
        }
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// MUST sort labels by name: `test_metric`'s arrive as `__name__`, `aaa`, `bbb`, `instance`,
/// `job`, `node`, `zzz`, and every series of every request is strictly sorted (byte order).
#[tokio::test]
async fn n026_label_lexicographic_ordering() {
    case(
        "N026",
        "test_metric{aaa=\"1\",bbb=\"2\",zzz=\"3\"} 42\n",
        &[("aaa", "1"), ("bbb", "2"), ("zzz", "3")],
        |protocol, ts| {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            assert!(
                names.windows(2).all(|p| p[0].as_bytes() < p[1].as_bytes()),
                "{protocol:?}: {names:?}"
            );
        },
    )
    .await;
}

/// MUST carry `__name__` on every series, not empty.
#[tokio::test]
async fn n027_metric_name_label_present() {
    case("N027", "test_metric 42\n", &[], |protocol, ts| {
        let name = crate::support::label(ts, "__name__");
        assert!(name.is_some_and(|n| !n.is_empty()), "{protocol:?}: {ts:?}");
    })
    .await;
}

/// MUST send metric names matching `[a-zA-Z_:][a-zA-Z0-9_:]*`: every series' name does, and
/// `valid_metric_name:subsystem_total` arrives with its value and name unchanged.
#[tokio::test]
async fn n028_metric_name_format_valid() {
    let name = "valid_metric_name:subsystem_total";
    for protocol in versions("N028") {
        let run = Run::start(protocol, &format!("{name} 42\n"), &[]).await;
        run.until_series(name).await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(steady_value(&requests, name), 42.0);
        for ts in every_series(&requests) {
            let n = crate::support::name(ts);
            assert!(is_metric_name(n), "{protocol:?}: {n:?}");
        }
    }
}

/// MUST send label names matching `[a-zA-Z_][a-zA-Z0-9_]*` (`__name__` aside). First the
/// suite's verbatim exposition, without its final newline: the scrape is refused as a whole
/// (`up` 0, `test_metric` never sent), and the series that are sent (the scrape's own) have
/// valid names. Then with the newline: `valid_label` and `another_1` arrive as exposed.
#[tokio::test]
async fn n029_label_name_format_valid() {
    let verbatim = "test_metric{valid_label=\"value\",another_1=\"val2\"} 42";
    let check = |protocol: Protocol, ts: &TimeSeries| {
        for l in &ts.labels {
            assert!(
                l.name == "__name__" || is_label_name(&l.name),
                "{protocol:?}: {:?}",
                l.name
            );
        }
    };
    for protocol in versions("N029") {
        let run = Run::start(protocol, verbatim, &[]).await;
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
        assert_all_valid(&requests, protocol);
        assert_eq!(steady_value(&requests, "up"), 0.0);
        assert!(series_named(&requests, "test_metric").is_empty());
        for ts in every_series(&requests) {
            check(protocol, ts);
        }
    }
    case(
        "N029",
        &with_newline(verbatim),
        &[("another_1", "val2"), ("valid_label", "value")],
        check,
    )
    .await;
}

/// MUST NOT repeat a label name in a series: no series of any request does, and
/// `test_metric` has `foo` and `baz` once each.
#[tokio::test]
async fn n030_no_duplicate_label_names() {
    case(
        "N030",
        &with_newline("test_metric{foo=\"bar\",baz=\"qux\"} 42"),
        &[("baz", "qux"), ("foo", "bar")],
        |protocol, ts| {
            let mut names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{protocol:?}: {ts:?}");
        },
    )
    .await;
}

/// MUST NOT send an empty label name (in 2.0: no name ref points at the empty symbol).
#[tokio::test]
async fn n031_label_names_not_empty() {
    case(
        "N031",
        &with_newline("test_metric{label=\"value\"} 42"),
        &[("label", "value")],
        |protocol, ts| {
            assert!(
                ts.labels.iter().all(|l| !l.name.is_empty()),
                "{protocol:?}: {ts:?}"
            );
        },
    )
    .await;
}

/// MAY send empty label values. A deviation, we never do: in Prometheus's data model a label
/// with an empty value is no label, so `test_metric{empty=""}` arrives as `test_metric` with
/// the target's labels only, as Prometheus sends it, and no series carries an empty value.
/// The suite's check (every value ref resolves) holds.
#[tokio::test]
async fn n032_label_values_may_be_empty() {
    case_in(
        deviating("N032"),
        &with_newline("test_metric{empty=\"\"} 42"),
        &[],
        |protocol, ts| {
            assert!(
                ts.labels.iter().all(|l| !l.value.is_empty()),
                "{protocol:?}: {ts:?}"
            );
        },
    )
    .await;
}

/// SHOULD keep `__`-prefixed names for internal use: no series carries one besides
/// `__name__` (no `__type__`, `__unit__`, ...).
#[tokio::test]
async fn n033_reserved_label_prefix() {
    case(
        "N033",
        &with_newline("test_metric{normal=\"value\"} 42"),
        &[("normal", "value")],
        |protocol, ts| {
            for l in &ts.labels {
                assert!(
                    l.name == "__name__" || !l.name.starts_with("__"),
                    "{protocol:?}: {:?}",
                    l.name
                );
            }
        },
    )
    .await;
}

/// MUST carry Unicode label values: the rocket and the Chinese text arrive byte for byte
/// (the suite only checks that some non-ASCII value is not empty).
#[tokio::test]
async fn n034_unicode_in_label_values() {
    case(
        "N034",
        &with_newline("test_metric{emoji=\"🚀\",chinese=\"测试\"} 42"),
        &[("chinese", "测试"), ("emoji", "🚀")],
        |_, _| {},
    )
    .await;
}

/// MUST carry special characters in label values: the path and the query string arrive
/// exactly (the suite only checks that they are not empty).
#[tokio::test]
async fn n035_special_chars_in_label_values() {
    case(
        "N035",
        &with_newline("test_metric{path=\"/api/v1/users\",query=\"foo=bar&baz=qux\"} 42"),
        &[("path", "/api/v1/users"), ("query", "foo=bar&baz=qux")],
        |_, _| {},
    )
    .await;
}

/// SHOULD carry long label names: the 66-character name arrives whole.
#[tokio::test]
async fn n036_very_long_label_names() {
    let name = "very_long_label_name_that_exceeds_normal_length_but_is_still_valid";
    assert_eq!(name.len(), 66);
    case(
        "N036",
        &with_newline(&format!("test_metric{{{name}=\"value\"}} 42")),
        &[(name, "value")],
        |_, _| {},
    )
    .await;
}

/// SHOULD carry long label values: the 161-character description arrives whole.
#[tokio::test]
async fn n037_very_long_label_values() {
    let value = "This is a very long label value that contains a lot of text to test how senders handle long strings in label values which might be common in real-world scenarios";
    assert!(value.len() > 100);
    case(
        "N037",
        &with_newline(&format!("test_metric{{description=\"{value}\"}} 42")),
        &[("description", value)],
        |_, _| {},
    )
    .await;
}

/// SHOULD carry many labels: all ten of the exposition's arrive (fourteen labels with
/// `__name__` and the target's).
#[tokio::test]
async fn n038_many_labels_per_series() {
    let own: Vec<(String, String)> = (1..=10)
        .map(|i| (format!("l{i}"), format!("v{i}")))
        .collect();
    let own: Vec<(&str, &str)> = own.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    case(
        "N038",
        &with_newline(
            "test_metric{l1=\"v1\",l2=\"v2\",l3=\"v3\",l4=\"v4\",l5=\"v5\",l6=\"v6\",l7=\"v7\",l8=\"v8\",l9=\"v9\",l10=\"v10\"} 42",
        ),
        &own,
        |_, _| {},
    )
    .await;
}
