//! The 2026 suite's batching cases (`batching_test.go`, N122-N127). The suite looks at the
//! last request only; we count requests: while the agent keeps up it sends one request per
//! scrape holding all of the scrape's series (split at `--max-samples-per-send`, 2000), and
//! only when it is behind (after an outage) does it merge several scrapes' requests into
//! larger catch-up requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kubelet_push::remote_write::proto::v2::metadata::MetricType;
use kubelet_push::remote_write::Protocol;
use kubelet_push::testkit::receiver::{ReceivedRequest, Response};

use super::sending::*;
use super::{assert_all_valid, passing};
use crate::support::wait_until;

/// Every request of a run serving `exposition` until the series `name` arrived in at least
/// four requests; a scrape a second, so the agent keeps up (one scrape per request) however
/// loaded the machine.
async fn requests(protocol: Protocol, exposition: &str, name: &str) -> Vec<ReceivedRequest> {
    let run = start(protocol, exposition, &[], Duration::from_secs(1), |_| {}).await;
    run.until(&format!("{name} in four requests"), |reqs| {
        reqs.iter().filter(|r| !polls(r, name).is_empty()).count() >= 4
    })
    .await;
    let requests = run.stop().await;
    assert_all_valid(&requests, protocol);
    requests
}

/// The series (name and labels but `job`, `instance` and the agent's `node`) of one request.
fn series_of(r: &ReceivedRequest) -> BTreeSet<String> {
    r.write_request
        .iter()
        .flat_map(|w| &w.timeseries)
        .map(|ts| {
            ts.labels
                .iter()
                .filter(|l| !["job", "instance", "node"].contains(&l.name.as_str()))
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// RECOMMENDED: several series in one request. Each scrape's request holds all six of the
/// exposition's series (four names), and the scrape's own series beside them.
#[tokio::test]
async fn n122_multiple_series_per_request() {
    let exposition = "# Multiple metrics to batch\n\
                      http_requests_total{method=\"GET\",status=\"200\"} 1000\n\
                      http_requests_total{method=\"POST\",status=\"200\"} 500\n\
                      http_requests_total{method=\"GET\",status=\"404\"} 50\n\
                      cpu_usage_percent 45.2\n\
                      memory_usage_bytes 1048576\n\
                      disk_io_bytes_total 1000000\n";
    let want = set(&[
        "__name__=http_requests_total,method=GET,status=200",
        "__name__=http_requests_total,method=POST,status=200",
        "__name__=http_requests_total,method=GET,status=404",
        "__name__=cpu_usage_percent",
        "__name__=memory_usage_bytes",
        "__name__=disk_io_bytes_total",
    ]);
    for protocol in passing("N122") {
        let requests = requests(protocol, exposition, "cpu_usage_percent").await;
        let with_data: Vec<_> = requests
            .iter()
            .filter(|r| !polls(r, "cpu_usage_percent").is_empty())
            .collect();
        assert!(with_data.len() >= 4);
        for r in with_data {
            let got = series_of(r);
            assert!(want.is_subset(&got), "{got:?}");
            assert!(got.contains("__name__=up"), "{got:?}");
            // One scrape per request while keeping up.
            assert_eq!(polls(r, "cpu_usage_percent").len(), 1);
        }
    }
}

/// RECOMMENDED: at most 10 000 series per request. While the agent keeps up, every request
/// holds at most `--max-samples-per-send` (2000) samples: a scrape of 12 000 series goes in
/// `ceil(n / 2000)` requests. After an outage the agent catches up in merged requests of up
/// to `--max-catch-up-size` (2 MiB compressed): here one holds more than 10 000 series, a
/// deliberate deviation (a backlog goes in a few round trips, not thousands).
#[tokio::test]
async fn n123_batch_size_reasonable() {
    let mut exposition = String::from("# Large scrape to test batch size handling\n");
    for i in 0..12_000 {
        exposition.push_str(&format!("metric{{label=\"{i}\"}} 1\n"));
    }
    for protocol in [Protocol::V1, Protocol::V2] {
        // Keeping up: a scrape every 30 s, far more than a scrape and its requests take on
        // any machine. (A buffer not empty for an interval is behind and goes merged: at 2 s
        // a loaded machine got there, and the first scrape went out in merged requests.)
        let run = start(protocol, &exposition, &[], Duration::from_secs(30), |_| {}).await;
        run.until("the first scrape's 12 000 series", |reqs| {
            reqs.iter().map(|r| polls(r, "metric").len()).sum::<usize>() >= 12_000
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let first = requests
            .iter()
            .flat_map(|r| polls(r, "metric"))
            .min()
            .unwrap();
        let of_first: Vec<_> = requests
            .iter()
            .filter(|r| polls(r, "metric").contains(&first))
            .collect();
        let samples: u64 = of_first.iter().map(|r| sample_count(r)).sum();
        assert!(samples >= 12_000);
        assert_eq!(of_first.len() as u64, samples.div_ceil(2000), "{samples}");
        for r in &requests {
            assert!(sample_count(r) <= 2000, "{}", sample_count(r));
        }

        // Behind: 503 until three scrapes wait, then the backlog goes merged.
        let run = start(
            protocol,
            &exposition,
            &[],
            Duration::from_millis(500),
            |rx| rx.answer_always(Some(Response::status(503))),
        )
        .await;
        let dest = run.agent.dest();
        wait_until("three scrapes waiting", || {
            dest.samples_pending.get() >= 36_000
        })
        .await;
        run.rx.clear_responses();
        run.until("a merged catch-up request", |reqs| {
            reqs.iter()
                .any(|r| r.accepted() && sample_count(r) > 10_000)
        })
        .await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let merged = requests
            .iter()
            .find(|r| r.accepted() && sample_count(r) > 10_000)
            .unwrap();
        let scrapes: BTreeSet<i64> = polls(merged, "metric").into_iter().collect();
        assert!(scrapes.len() >= 2, "{scrapes:?}");
        assert!(merged.compressed_bytes <= 2 << 20);
    }
}

/// RECOMMENDED: varying label cardinality. Every scrape's request holds the five `api_calls`
/// series with their four labels each and the label-less one.
#[tokio::test]
async fn n124_handles_varying_cardinality() {
    let exposition = "# High cardinality metrics\n\
        api_calls{endpoint=\"/users\",method=\"GET\",region=\"us-east\",status=\"200\"} 100\n\
        api_calls{endpoint=\"/users\",method=\"POST\",region=\"us-east\",status=\"201\"} 50\n\
        api_calls{endpoint=\"/posts\",method=\"GET\",region=\"us-west\",status=\"200\"} 200\n\
        api_calls{endpoint=\"/posts\",method=\"DELETE\",region=\"eu-west\",status=\"204\"} 10\n\
        api_calls{endpoint=\"/comments\",method=\"GET\",region=\"ap-south\",status=\"200\"} 500\n\
        low_cardinality_metric 42\n";
    let want = set(&[
        "__name__=api_calls,endpoint=/users,method=GET,region=us-east,status=200",
        "__name__=api_calls,endpoint=/users,method=POST,region=us-east,status=201",
        "__name__=api_calls,endpoint=/posts,method=GET,region=us-west,status=200",
        "__name__=api_calls,endpoint=/posts,method=DELETE,region=eu-west,status=204",
        "__name__=api_calls,endpoint=/comments,method=GET,region=ap-south,status=200",
        "__name__=low_cardinality_metric",
    ]);
    for protocol in passing("N124") {
        let requests = requests(protocol, exposition, "low_cardinality_metric").await;
        for r in requests
            .iter()
            .filter(|r| !polls(r, "low_cardinality_metric").is_empty())
        {
            let got = series_of(r);
            assert!(want.is_subset(&got), "{got:?}");
            if let Some(v2) = &r.v2_request {
                assert!(v2.symbols.iter().filter(|s| !s.is_empty()).count() > 0);
            }
        }
    }
}

/// RECOMMENDED: reuse symbols. In every 2.0 request each string is in the symbols table
/// once, and the shared label values (`api`, `GET`) are one symbol referenced by several
/// series.
#[tokio::test]
async fn n125_efficient_symbol_reuse() {
    let exposition = "# Metrics with shared labels\n\
                      http_requests{service=\"api\",method=\"GET\"} 100\n\
                      http_requests{service=\"api\",method=\"POST\"} 50\n\
                      http_requests{service=\"web\",method=\"GET\"} 200\n\
                      http_duration{service=\"api\",method=\"GET\"} 0.5\n\
                      http_duration{service=\"api\",method=\"POST\"} 0.3\n";
    for protocol in passing("N125") {
        let requests = requests(protocol, exposition, "http_duration").await;
        for r in &requests {
            let v2 = r.v2_request.as_ref().expect("a 2.0 request");
            let mut symbols = v2.symbols.clone();
            symbols.sort();
            let n = symbols.len();
            symbols.dedup();
            assert_eq!(symbols.len(), n, "a symbol twice: {:?}", v2.symbols);
        }
        let r = requests
            .iter()
            .find(|r| !polls(r, "http_duration").is_empty())
            .unwrap();
        let v2 = r.v2_request.as_ref().unwrap();
        let api = v2.symbols.iter().position(|s| s == "api").unwrap() as u32;
        let users = v2
            .timeseries
            .iter()
            .filter(|ts| ts.labels_refs.chunks(2).any(|p| p[1] == api))
            .count();
        assert_eq!(users, 4);
    }
}

/// RECOMMENDED: metadata with the samples. In 2.0 each series carries its type and help in
/// the same request as its samples. 1.0 requests carry no metadata (see N155).
#[tokio::test]
async fn n126_metadata_batching() {
    let exposition = "# HELP http_requests_total Total HTTP requests\n\
                      # TYPE http_requests_total counter\n\
                      http_requests_total{method=\"GET\"} 1000\n\
                      http_requests_total{method=\"POST\"} 500\n\
                      \n\
                      # HELP memory_usage_bytes Current memory usage\n\
                      # TYPE memory_usage_bytes gauge\n\
                      memory_usage_bytes 1048576\n";
    for protocol in passing("N126") {
        let requests = requests(protocol, exposition, "memory_usage_bytes").await;
        for r in requests
            .iter()
            .filter(|r| !polls(r, "memory_usage_bytes").is_empty())
        {
            let v2 = r.v2_request.as_ref().expect("a 2.0 request");
            let mut seen = BTreeMap::new();
            for ts in &v2.timeseries {
                let name = ts
                    .labels_refs
                    .chunks(2)
                    .find(|p| v2.symbols[p[0] as usize] == "__name__")
                    .map(|p| v2.symbols[p[1] as usize].clone())
                    .unwrap();
                let m = ts.metadata.as_ref().expect("metadata");
                let help = v2.symbols[m.help_ref as usize].clone();
                assert!(!ts.samples.is_empty());
                seen.insert(name, (m.r#type, help));
            }
            assert_eq!(
                seen["http_requests_total"],
                (MetricType::Counter as i32, "Total HTTP requests".to_owned())
            );
            assert_eq!(
                seen["memory_usage_bytes"],
                (MetricType::Gauge as i32, "Current memory usage".to_owned())
            );
        }
    }
}

/// MAY send requests in parallel: ours sends one at a time per destination, so each series
/// arrives in timestamp order after any outage (a backlog goes merged instead). With the
/// first answer held (a 503 once released, so the request is retried), the agent keeps
/// scraping but sends nothing else until it is answered; then everything arrives, in order.
#[tokio::test]
async fn n127_concurrent_requests() {
    let exposition = "# Multiple metrics\n\
                      metric_1 1\n\
                      metric_2 2\n\
                      metric_3 3\n\
                      metric_4 4\n\
                      metric_5 5\n";
    for protocol in [Protocol::V1, Protocol::V2] {
        let run = start(
            protocol,
            exposition,
            &["--remote-timeout", "60s"],
            super::INTERVAL,
            |rx| rx.push_response(Response::status(503).held()),
        )
        .await;
        let dest = run.agent.dest();
        run.until("the first request", |reqs| !reqs.is_empty())
            .await;
        let first = dest.samples_queued.get();
        wait_until("three more scrapes queued", || {
            dest.samples_queued.get() >= first * 4
        })
        .await;
        assert_eq!(
            run.rx.requests().len(),
            1,
            "a second request while one was in flight"
        );
        run.rx.release();
        run.until_series("metric_5").await;
        run.until("the backlog", |reqs| reqs.len() >= 2).await;
        let requests = run.stop().await;
        assert_all_valid(&requests, protocol);
        let ts: Vec<i64> = requests
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| polls(r, "metric_1"))
            .collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
    }
}
