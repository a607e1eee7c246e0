//! The 2026 suite's edge cases (`edge_cases_test.go`, N128-N140). Several of its expositions
//! are malformed by its generator (Go's `string(rune(48+i))` writes `:`, `;`, ... and C1
//! control characters where a number was meant, and U+FFFD for a timestamp): each such test
//! serves the verbatim bytes, which the agent refuses as a whole as Prometheus does (`up` 0,
//! nothing of the body sent), and then what the generator meant.

use kubelet_push::remote_write::Protocol;

use super::assert_all_valid;
use super::inspect::{
    accepted, all_series, label, refused, requests_with, scraped, start, steady, values, Expected,
    STALE_NAN,
};
use super::passing;

/// The five series the agent adds for every scrape.
const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// SHOULD handle an empty scrape: it succeeds (`up` 1, nothing scraped), and only the
/// target's own series go out, scrape after scrape.
#[tokio::test]
async fn n128_empty_scrape() {
    for protocol in passing("N128") {
        let run = start(protocol, "# No metrics\n", &[]).await;
        run.until("three scrapes reported", |reqs| {
            values(reqs, "up", &[]).len() >= 3
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        assert_eq!(steady(&requests, "up", &[("job", "test")]), 1.0);
        assert_eq!(steady(&requests, "scrape_samples_scraped", &[]), 0.0);
        for ts in all_series(&requests) {
            assert!(REPORT.contains(&crate::support::name(ts)), "{ts:?}");
        }
    }
}

/// SHOULD handle label values of 10 KB: the value arrives whole.
#[tokio::test]
async fn n129_huge_label_values() {
    let large = "x".repeat(10_000);
    let exposition = format!("test_metric{{large_label=\"{large}\"}} 42\n");
    for protocol in passing("N129") {
        let requests = scraped(protocol, &exposition, "test_metric").await;
        assert_eq!(
            steady(&requests, "test_metric", &[("large_label", &large)]),
            42.0
        );
    }
}

/// MUST preserve Unicode in label values: each value arrives byte for byte.
#[tokio::test]
async fn n130_unicode_in_labels() {
    const EXPOSITION: &str = "test_metric{emoji=\"🚀\",chinese=\"测试\",arabic=\"مرحبا\",vietnamese=\"tôi yêu việt nam\"} 42\n";
    for protocol in passing("N130") {
        let requests = scraped(protocol, EXPOSITION, "test_metric").await;
        let want = [
            ("emoji", "🚀"),
            ("chinese", "测试"),
            ("arabic", "مرحبا"),
            ("vietnamese", "tôi yêu việt nam"),
        ];
        assert_eq!(steady(&requests, "test_metric", &want), 42.0);
    }
}

/// `char::from_u32(48 + i)`, Go's `string(rune(48 + i))`.
fn go_rune(i: u32) -> char {
    char::from_u32(48 + i).unwrap_or('\u{FFFD}')
}

/// RECOMMENDED to handle many series: the suite's exposition (invalid from line 11) is
/// refused whole; the 100 series its generator meant all arrive, in one request per scrape.
#[tokio::test]
async fn n131_many_timeseries() {
    let verbatim: String = (0..100)
        .map(|i| format!("metric_00{c} {c}\n", c = go_rune(i)))
        .collect();
    let meant: String = (0..100).map(|i| format!("metric_{i:03} {i}\n")).collect();
    for protocol in passing("N131") {
        refused(protocol, &verbatim).await;
        let requests = scraped(protocol, &meant, "metric_099").await;
        for i in 0..100 {
            assert_eq!(
                steady(&requests, &format!("metric_{i:03}"), &[]),
                f64::from(i)
            );
        }
        for w in requests_with(&requests, "metric_000") {
            let ours = w
                .timeseries
                .iter()
                .filter(|ts| crate::support::name(ts).starts_with("metric_"))
                .count();
            assert_eq!(ours, 100, "a scrape's series in one request");
        }
    }
}

/// RECOMMENDED to handle high cardinality: the suite's exposition (invalid from line 11) is
/// refused whole; the 50 `path` values its generator meant all arrive, in one request per
/// scrape.
#[tokio::test]
async fn n132_high_cardinality() {
    let line = |path: String, value: String| {
        format!("http_requests{{path=\"/api/v1/endpoint_{path}\",method=\"GET\"}} {value}\n")
    };
    let verbatim: String = (0..50)
        .map(|i| {
            line(
                format!("{}{}", go_rune(i / 10), go_rune(i % 10)),
                go_rune(i).to_string(),
            )
        })
        .collect();
    let meant: String = (0..50)
        .map(|i| line(format!("{i:02}"), i.to_string()))
        .collect();
    for protocol in passing("N132") {
        refused(protocol, &verbatim).await;
        let requests = scraped(protocol, &meant, "http_requests").await;
        for i in 0..50 {
            let path = format!("/api/v1/endpoint_{i:02}");
            let want = [("path", path.as_str()), ("method", "GET")];
            assert_eq!(steady(&requests, "http_requests", &want), f64::from(i));
        }
        for w in requests_with(&requests, "http_requests") {
            let n = w
                .timeseries
                .iter()
                .filter(|ts| crate::support::name(ts) == "http_requests")
                .count();
            assert_eq!(n, 50, "a scrape's series in one request");
        }
    }
}

/// SHOULD handle a 757-character metric name: it arrives whole.
#[tokio::test]
async fn n133_very_long_metric_name() {
    let name = format!("metric_{}", "very_long_name_".repeat(50));
    assert_eq!(name.len(), 757);
    for protocol in passing("N133") {
        let requests = scraped(protocol, &format!("{name} 42\n"), &name).await;
        assert_eq!(steady(&requests, &name, &[]), 42.0);
    }
}

/// MUST handle special floats together: all five series, each with its value (the suite
/// is content with one of them).
#[tokio::test]
async fn n134_special_float_combinations() {
    const EXPOSITION: &str = "special_values{type=\"nan\"} NaN
special_values{type=\"inf\"} +Inf
special_values{type=\"ninf\"} -Inf
special_values{type=\"zero\"} 0
special_values{type=\"negative\"} -123.45
";
    for protocol in passing("N134") {
        let requests = scraped(protocol, EXPOSITION, "special_values").await;
        let v = |t: &str| steady(&requests, "special_values", &[("type", t)]);
        assert!(v("nan").is_nan());
        assert_ne!(
            v("nan").to_bits(),
            STALE_NAN,
            "a NaN value is not a stale marker"
        );
        assert_eq!(v("inf"), f64::INFINITY);
        assert_eq!(v("ninf"), f64::NEG_INFINITY);
        assert_eq!(v("zero").to_bits(), 0.0f64.to_bits());
        assert_eq!(v("negative"), -123.45);
    }
}

/// SHOULD handle timestamp 0: the sample goes out once, stamped 0 as the exposition says
/// (`honor_timestamps`), and the scrape goes on.
#[tokio::test]
async fn n135_zero_timestamp() {
    for protocol in passing("N135") {
        let run = start(protocol, "test_metric 42 0\n", &[]).await;
        run.until_series("test_metric").await;
        run.until("two more scrapes", |reqs| {
            values(reqs, "up", &[]).len() >= 3
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let samples: Vec<(f64, i64)> = super::inspect::matching(&requests, "test_metric", &[])
            .iter()
            .flat_map(|ts| ts.samples.iter().map(|s| (s.value, s.timestamp)))
            .collect();
        assert_eq!(
            samples,
            [(42.0, 0)],
            "sent once: later scrapes repeat its time"
        );
        assert_eq!(steady(&requests, "up", &[]), 1.0);
    }
}

/// SHOULD handle future timestamps. The suite's exposition has U+FFFD for a timestamp and is
/// refused whole. What it meant: a sample a minute ahead goes out with its time; a day ahead
/// is past the agent's horizon (its clock plus 2 minutes) and is left out and counted
/// (`kubelet_push_scrape_samples_invalid_total{reason="future_timestamp"}`), where Prometheus
/// would keep it.
#[tokio::test]
async fn n136_future_timestamp() {
    let row = super::cases::row("N136");
    assert!(matches!(row.v1, super::Verdict::Deviation(_)));
    assert!(matches!(row.v2, super::Verdict::Deviation(_)));
    for protocol in [Protocol::V1, Protocol::V2] {
        refused(protocol, "test_metric 42 \u{FFFD}\n").await;
        let now = kubelet_push::clock::unix_ms(std::time::SystemTime::now());
        let (minute, day) = (now + 60_000, now + 86_400_000);
        let exposition = format!("soon 1 {minute}\ntomorrow 2 {day}\n");
        let run = start(protocol, &exposition, &[]).await;
        run.until_series("soon").await;
        run.until("two more scrapes", |reqs| {
            values(reqs, "up", &[]).len() >= 3
        })
        .await;
        let metrics = run.agent.metrics.clone();
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let soon: Vec<(f64, i64)> = super::inspect::matching(&requests, "soon", &[])
            .iter()
            .flat_map(|ts| ts.samples.iter().map(|s| (s.value, s.timestamp)))
            .collect();
        assert_eq!(soon, [(1.0, minute)]);
        assert!(requests_with(&requests, "tomorrow").is_empty());
        assert_eq!(steady(&requests, "up", &[]), 1.0);
        let left_out = crate::support::metric_in(
            &metrics.encode(),
            "kubelet_push_scrape_samples_invalid_total{reason=\"future_timestamp\"}",
        );
        assert!(left_out.is_some_and(|n| n >= 1.0), "{left_out:?}");
    }
}

/// MUST handle colons in metric names: `http:request:duration:seconds` arrives as written.
#[tokio::test]
async fn n137_metric_name_with_colons() {
    for protocol in passing("N137") {
        let name = "http:request:duration:seconds";
        let requests = scraped(protocol, "http:request:duration:seconds 0.5\n", name).await;
        assert_eq!(steady(&requests, name, &[]), 0.5);
    }
}

/// SHOULD handle stale markers. The suite's exposition writes `StaleNaN` as a value, which
/// no format allows: refused whole. A stale marker proper is what the agent sends when a
/// series disappears: `test_metric` once with its value, then once the stale NaN.
#[tokio::test]
async fn n138_stale_marker() {
    for protocol in passing("N138") {
        refused(protocol, "test_metric StaleNaN\n").await;
        let run = start(protocol, "test_metric 1\n", &[]).await;
        run.until_series("test_metric").await;
        run.target.set("other 2\n");
        run.until("a stale marker", |reqs| {
            values(reqs, "test_metric", &[])
                .iter()
                .any(|v| v.to_bits() == STALE_NAN)
        })
        .await;
        run.until_series("other").await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let seen: Vec<u64> = values(&requests, "test_metric", &[])
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let stale = seen.iter().position(|b| *b == STALE_NAN).unwrap();
        assert!(stale > 0, "{seen:?}");
        assert!(
            seen[..stale].iter().all(|b| *b == 1.0f64.to_bits()),
            "{seen:?}"
        );
        assert_eq!(
            seen.len(),
            stale + 1,
            "one stale marker, nothing after: {seen:?}"
        );
    }
}

const FAMILIES: &str = "# Counter
requests_total 100

# Gauge
temperature_celsius 22.5

# Histogram
response_time_bucket{le=\"0.1\"} 50
response_time_bucket{le=\"+Inf\"} 100
response_time_sum 10.5
response_time_count 100

# Summary
rpc_duration{quantile=\"0.5\"} 0.05
rpc_duration{quantile=\"0.9\"} 0.1
rpc_duration_sum 50.0
rpc_duration_count 1000
";

/// MUST handle several families in one payload: all four (the suite wants two), every
/// series with its value, a scrape's ten series in one request.
#[tokio::test]
async fn n139_mixed_sample_and_histogram_families() {
    for protocol in passing("N139") {
        let requests = scraped(protocol, FAMILIES, "requests_total").await;
        let expect: [Expected; 10] = [
            ("requests_total", &[], 100.0),
            ("temperature_celsius", &[], 22.5),
            ("response_time_bucket", &[("le", "0.1")], 50.0),
            ("response_time_bucket", &[("le", "+Inf")], 100.0),
            ("response_time_sum", &[], 10.5),
            ("response_time_count", &[], 100.0),
            ("rpc_duration", &[("quantile", "0.5")], 0.05),
            ("rpc_duration", &[("quantile", "0.9")], 0.1),
            ("rpc_duration_sum", &[], 50.0),
            ("rpc_duration_count", &[], 1000.0),
        ];
        for (name, want, value) in expect {
            assert_eq!(steady(&requests, name, want), value, "{name}{want:?}");
        }
        for w in requests_with(&requests, "requests_total") {
            let ours = w
                .timeseries
                .iter()
                .filter(|ts| !REPORT.contains(&crate::support::name(ts)))
                .count();
            assert_eq!(ours, 10, "{w:?}");
        }
    }
}

/// SHOULD stay stable under load: the 200 series arrive with their values, each scrape's in
/// one request (the suite wants 50 in the last request).
#[tokio::test]
async fn n140_robustness_under_load() {
    let exposition: String = (0..200)
        .map(|i| {
            format!(
                "load_test_metric_{i:03}{{label=\"value_{d}\"}} {d}\n",
                d = i % 10
            )
        })
        .collect();
    for protocol in passing("N140") {
        let requests = scraped(protocol, &exposition, "load_test_metric_199").await;
        for i in 0..200 {
            let value = format!("value_{}", i % 10);
            assert_eq!(
                steady(
                    &requests,
                    &format!("load_test_metric_{i:03}"),
                    &[("label", &value)]
                ),
                f64::from(i % 10)
            );
        }
        for w in accepted(&requests) {
            let n = w
                .timeseries
                .iter()
                .filter(|ts| crate::support::name(ts).starts_with("load_test_metric_"))
                .count();
            assert!(n == 0 || n == 200, "{n} of 200 in one request");
            assert!(w
                .timeseries
                .iter()
                .all(|ts| label(ts, "job") == Some("test")));
        }
    }
}
