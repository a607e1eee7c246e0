//! The scrape loop's semantics, driven byte for byte through [`Scraper`] and read back from
//! the Remote Write bodies it encodes.

use std::collections::BTreeMap;
use std::time::Duration;

use super::scraper::{Answer, Failure, Labelling, ScrapeOutput, Scraper};
use crate::exposition::{Limits, ParseError};
use crate::remote_write::proto::v2;
use crate::remote_write::wire::{decode_v1, decode_v2};
use crate::remote_write::Protocol;
use crate::series::is_stale_marker;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OM: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const T0: i64 = 1_700_000_000_000;

fn labelling() -> Labelling {
    Labelling {
        job: "node".into(),
        instance: "127.0.0.1:9100".into(),
        node: "n1".into(),
        extra: vec![("cluster".into(), "c1".into())],
        honor_labels: false,
        honor_timestamps: true,
        limits: Limits::default(),
    }
}

/// One decoded sample: the series as `name{a="b",...}` with sorted labels, value, timestamp.
type Row = (String, f64, i64);

fn key(labels: &[(String, String)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let name = labels
        .iter()
        .find(|(n, _)| n == "__name__")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(n, _)| n != "__name__")
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

/// What the 1.0 bodies of `out` carry.
fn sent(s: &mut Scraper, out: &ScrapeOutput) -> Vec<Row> {
    let mut rows = Vec::new();
    for r in s.encode_as(Protocol::V1, out, 10_000).unwrap() {
        for ts in decode_v1(&r.body).unwrap().timeseries {
            let labels: Vec<(String, String)> =
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            for sample in ts.samples {
                rows.push((key(&labels), sample.value, sample.timestamp));
            }
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn value_of(rows: &[Row], series: &str) -> Option<f64> {
    rows.iter().find(|r| r.0 == series).map(|r| r.1)
}

fn scrape(s: &mut Scraper, body: &str, content_type: &str, at: i64) -> ScrapeOutput {
    let answer = Answer {
        body: body.as_bytes(),
        content_type,
    };
    s.ingest(Ok(answer), at, Duration::from_millis(7))
}

const TARGET: &str = r#"cluster="c1",instance="127.0.0.1:9100",job="node",node="n1""#;

#[test]
fn every_sample_carries_the_target_labels_and_the_scrape_time() {
    let mut s = Scraper::new(labelling(), None);
    let out = scrape(
        &mut s,
        "# TYPE a counter\na_total{x=\"1\"} 5\nb 2.5\n",
        TEXT,
        T0,
    );
    assert!(out.error.is_none());
    let rows = sent(&mut s, &out);
    let a = format!("a_total{{{TARGET},x=\"1\"}}");
    assert!(rows.contains(&(a, 5.0, T0)), "{rows:#?}");
    assert!(
        rows.contains(&(format!("b{{{TARGET}}}"), 2.5, T0)),
        "{rows:#?}"
    );
    // The per-target series, with Prometheus's meanings.
    let per = |name: &str| value_of(&rows, &format!("{name}{{{TARGET}}}"));
    assert_eq!(per("up"), Some(1.0));
    assert_eq!(per("scrape_duration_seconds"), Some(0.007));
    assert_eq!(per("scrape_samples_scraped"), Some(2.0));
    assert_eq!(per("scrape_samples_post_metric_relabeling"), Some(2.0));
    assert_eq!(per("scrape_series_added"), Some(2.0));
    assert_eq!(rows.len(), 7, "{rows:#?}");
    // The next scrape adds nothing new.
    let out = scrape(&mut s, "a_total{x=\"1\"} 6\nb 2.5\n", TEXT, T0 + 1000);
    let rows = sent(&mut s, &out);
    assert_eq!(
        value_of(&rows, &format!("scrape_series_added{{{TARGET}}}")),
        Some(0.0)
    );
    assert!(rows.iter().all(|r| r.2 == T0 + 1000), "{rows:#?}");
}

#[test]
fn a_colliding_label_is_exported_unless_honor_labels() {
    let body = "m{job=\"inner\",instance=\"i\",exported_job=\"taken\",le=\"x\"} 1\n";
    let mut s = Scraper::new(labelling(), None);
    let rows = {
        let out = scrape(&mut s, body, TEXT, T0);
        sent(&mut s, &out)
    };
    let want = format!(
        "m{{{TARGET},exported_exported_job=\"inner\",exported_instance=\"i\",exported_job=\"taken\",le=\"x\"}}"
    );
    // Labels come out sorted whatever their order: compare as sets.
    let got: Vec<&Row> = rows.iter().filter(|r| r.0.starts_with("m{")).collect();
    assert_eq!(got.len(), 1, "{rows:#?}");
    assert_eq!(sorted_key(&got[0].0), sorted_key(&want));

    let mut honor = Scraper::new(
        Labelling {
            honor_labels: true,
            ..labelling()
        },
        None,
    );
    let out = scrape(&mut honor, body, TEXT, T0);
    let rows = sent(&mut honor, &out);
    let want = r#"m{cluster="c1",exported_job="taken",instance="i",job="inner",le="x",node="n1"}"#;
    assert!(rows.iter().any(|r| r.0 == want), "{rows:#?}");
    // The per-target series keep the target's labels.
    assert_eq!(value_of(&rows, &format!("up{{{TARGET}}}")), Some(1.0));
}

fn sorted_key(k: &str) -> Vec<String> {
    let (name, rest) = k.split_once('{').unwrap();
    let mut parts: Vec<String> = rest
        .trim_end_matches('}')
        .split(',')
        .map(str::to_owned)
        .collect();
    parts.sort();
    parts.insert(0, name.to_owned());
    parts
}

#[test]
fn explicit_timestamps_are_kept_unless_honor_timestamps_is_off() {
    let body = "a 1 1600000000123\nb 2\n";
    let mut s = Scraper::new(labelling(), None);
    let out = scrape(&mut s, body, TEXT, T0);
    let rows = sent(&mut s, &out);
    assert!(rows.contains(&(format!("a{{{TARGET}}}"), 1.0, 1_600_000_000_123)));
    assert!(rows.contains(&(format!("b{{{TARGET}}}"), 2.0, T0)));
    // The same explicit timestamp again is not sent twice.
    let out = scrape(&mut s, body, TEXT, T0 + 1000);
    let rows = sent(&mut s, &out);
    assert!(!rows.iter().any(|r| r.0.starts_with("a{")), "{rows:#?}");

    let mut off = Scraper::new(
        Labelling {
            honor_timestamps: false,
            ..labelling()
        },
        None,
    );
    let out = scrape(&mut off, body, TEXT, T0);
    let rows = sent(&mut off, &out);
    assert!(rows.contains(&(format!("a{{{TARGET}}}"), 1.0, T0)));
}

#[test]
fn a_vanished_series_gets_one_stale_marker_but_not_one_with_its_own_timestamp() {
    let mut s = Scraper::new(labelling(), None);
    scrape(&mut s, "a 1\nb 2\nc 3 1600000000000\n", TEXT, T0);
    let out = scrape(&mut s, "a 1\n", TEXT, T0 + 1000);
    let rows = sent(&mut s, &out);
    let b: Vec<&Row> = rows.iter().filter(|r| r.0.starts_with("b{")).collect();
    assert_eq!(b.len(), 1, "{rows:#?}");
    assert!(is_stale_marker(b[0].1));
    assert_eq!(b[0].2, T0 + 1000);
    assert!(
        !rows.iter().any(|r| r.0.starts_with("c{")),
        "no marker for c: {rows:#?}"
    );
    // Once only.
    let out = scrape(&mut s, "a 1\n", TEXT, T0 + 2000);
    let rows = sent(&mut s, &out);
    assert!(!rows.iter().any(|r| r.0.starts_with("b{")), "{rows:#?}");
}

#[test]
fn a_failed_scrape_sends_up_0_and_marks_every_series_stale_once() {
    let mut s = Scraper::new(labelling(), None);
    scrape(&mut s, "a 1\nb 2\n", TEXT, T0);
    let out = s.ingest(
        Err(Failure::Timeout(Duration::from_secs(3))),
        T0 + 1000,
        Duration::from_secs(3),
    );
    assert_eq!(out.error.as_ref().map(Failure::result), Some("timeout"));
    let rows = sent(&mut s, &out);
    let per = |rows: &[Row], name: &str| value_of(rows, &format!("{name}{{{TARGET}}}"));
    assert_eq!(per(&rows, "up"), Some(0.0));
    assert_eq!(per(&rows, "scrape_duration_seconds"), Some(3.0));
    assert_eq!(per(&rows, "scrape_samples_scraped"), Some(0.0));
    for name in ["a", "b"] {
        let v = value_of(&rows, &format!("{name}{{{TARGET}}}")).unwrap();
        assert!(is_stale_marker(v), "{name}");
    }
    assert_eq!(rows.len(), 7, "{rows:#?}");
    // Failing again marks nothing more; the recovery sends the series afresh.
    let out = s.ingest(
        Err(Failure::Unreachable("refused".into())),
        T0 + 2000,
        Duration::ZERO,
    );
    assert_eq!(sent(&mut s, &out).len(), 5);
    let out = scrape(&mut s, "a 1\nb 2\n", TEXT, T0 + 3000);
    let rows = sent(&mut s, &out);
    assert_eq!(value_of(&rows, &format!("a{{{TARGET}}}")), Some(1.0));
    assert_eq!(per(&rows, "up"), Some(1.0));
    assert_eq!(per(&rows, "scrape_series_added"), Some(2.0));
}

#[test]
fn a_malformed_exposition_fails_whole_and_names_the_line() {
    let mut s = Scraper::new(labelling(), None);
    scrape(&mut s, "a 1\n", TEXT, T0);
    let out = scrape(&mut s, "a 1\nb{x=\"1} 2\nc 3\n", TEXT, T0 + 1000);
    let Some(Failure::Parse { error, text }) = &out.error else {
        panic!("{:?}", out.error)
    };
    assert_eq!(error.line(), Some(2));
    assert_eq!(text, "b{x=\"1} 2");
    assert_eq!(out.error.as_ref().unwrap().result(), "malformed");
    let rows = sent(&mut s, &out);
    // Nothing of the body: a's last value is not repeated, it is marked stale.
    assert!(is_stale_marker(
        value_of(&rows, &format!("a{{{TARGET}}}")).unwrap()
    ));
    assert!(!rows.iter().any(|r| r.0.starts_with("c{")));
    assert_eq!(value_of(&rows, &format!("up{{{TARGET}}}")), Some(0.0));
}

#[test]
fn limits_fail_the_scrape_with_their_own_result() {
    let limited = |limits| {
        Scraper::new(
            Labelling {
                limits,
                ..labelling()
            },
            None,
        )
    };
    let mut s = limited(Limits {
        sample_limit: 2,
        body_size_limit: 0,
    });
    let out = scrape(&mut s, "a 1\nb 2\nc 3\n", TEXT, T0);
    assert!(matches!(
        out.error,
        Some(Failure::Parse {
            error: ParseError::SampleLimit { limit: 2, .. },
            ..
        })
    ));
    assert_eq!(out.error.as_ref().unwrap().result(), "sample_limit");
    assert_eq!(
        value_of(&sent(&mut s, &out), &format!("up{{{TARGET}}}")),
        Some(0.0)
    );
    let out = scrape(&mut s, "a 1\nb 2\n", TEXT, T0 + 1000);
    assert!(out.error.is_none());

    let mut s = limited(Limits {
        sample_limit: 0,
        body_size_limit: 8,
    });
    let out = scrape(&mut s, "a 1\nb 2\nc 3\n", TEXT, T0);
    assert_eq!(out.error.as_ref().unwrap().result(), "body_size_limit");
    assert_eq!(
        Failure::BodyTooLarge { limit: 8 }.result(),
        "body_size_limit"
    );
}

#[test]
fn a_repeated_series_keeps_its_first_sample_and_is_counted() {
    let mut s = Scraper::new(labelling(), None);
    let out = scrape(
        &mut s,
        "a{x=\"1\"} 1\na{x=\"1\"} 2\na{x=\"2\"} 3\n",
        TEXT,
        T0,
    );
    assert!(out.error.is_none());
    assert_eq!(out.duplicates, 1);
    assert_eq!(out.scraped, 3);
    let rows = sent(&mut s, &out);
    assert_eq!(
        value_of(&rows, &format!("a{{{TARGET},x=\"1\"}}")),
        Some(1.0)
    );
    assert_eq!(
        value_of(&rows, &format!("a{{{TARGET},x=\"2\"}}")),
        Some(3.0)
    );
}

#[test]
fn the_metric_filter_applies_and_is_counted_after_it() {
    let filter = crate::pipeline::filter::MetricFilter::new(&[], &["node_cpu_.*".into()])
        .unwrap()
        .unwrap();
    let mut s = Scraper::new(labelling(), Some(filter));
    let out = scrape(
        &mut s,
        "node_cpu_seconds_total{cpu=\"0\"} 1\nnode_cpu_seconds_total{cpu=\"1\"} 1\nnode_load1 0.5\n",
        TEXT,
        T0,
    );
    let rows = sent(&mut s, &out);
    assert!(
        !rows.iter().any(|r| r.0.starts_with("node_cpu")),
        "{rows:#?}"
    );
    assert_eq!(
        value_of(&rows, &format!("node_load1{{{TARGET}}}")),
        Some(0.5)
    );
    assert_eq!(
        value_of(&rows, &format!("scrape_samples_scraped{{{TARGET}}}")),
        Some(3.0)
    );
    assert_eq!(
        value_of(
            &rows,
            &format!("scrape_samples_post_metric_relabeling{{{TARGET}}}")
        ),
        Some(1.0)
    );
}

#[test]
fn a_sample_from_the_future_is_left_out_and_counted() {
    let mut s = Scraper::new(labelling(), None);
    let ahead = T0 + 10 * 60 * 1000;
    let out = scrape(&mut s, &format!("a 1 {ahead}\nb 2\n"), TEXT, T0);
    assert_eq!(out.future, 1);
    let rows = sent(&mut s, &out);
    assert!(!rows.iter().any(|r| r.0.starts_with("a{")));
    assert_eq!(value_of(&rows, &format!("b{{{TARGET}}}")), Some(2.0));
}

#[test]
fn a_new_node_name_starts_every_series_afresh_with_it() {
    let mut s = Scraper::new(labelling(), None);
    scrape(&mut s, "a 1\n", TEXT, T0);
    s.set_node("n2", false);
    let out = scrape(&mut s, "a 1\n", TEXT, T0 + 1000);
    let rows = sent(&mut s, &out);
    let target = TARGET.replace("n1", "n2");
    assert_eq!(value_of(&rows, &format!("a{{{target}}}")), Some(1.0));
    assert_eq!(
        value_of(&rows, &format!("scrape_series_added{{{target}}}")),
        Some(1.0)
    );
    // A kubelet endpoint's instance is the node name.
    s.set_node("n3", true);
    let out = scrape(&mut s, "a 1\n", TEXT, T0 + 2000);
    let rows = sent(&mut s, &out);
    let target = r#"cluster="c1",instance="n3",job="node",node="n3""#;
    assert_eq!(value_of(&rows, &format!("a{{{target}}}")), Some(1.0));
}

/// Remote Write 2.0 carries each family's type, help and unit (a histogram's `_bucket`,
/// `_sum` and `_count` series their family's), and `_created` as the start timestamp.
#[test]
fn openmetrics_metadata_and_created_go_out_in_2_0() {
    let body = "# TYPE req_seconds histogram\n\
                # HELP req_seconds Request latency.\n\
                # UNIT req_seconds seconds\n\
                req_seconds_bucket{le=\"0.5\"} 3\n\
                req_seconds_bucket{le=\"+Inf\"} 4\n\
                req_seconds_count 4\n\
                req_seconds_sum 1.5\n\
                req_seconds_created 1600000000.5\n\
                # TYPE jobs counter\n\
                jobs_total 7\n\
                jobs_created 1600000001\n\
                # TYPE temp gauge\n\
                temp NaN\n\
                # EOF\n";
    let mut s = Scraper::new(labelling(), None);
    let out = scrape(&mut s, body, OM, T0);
    assert!(out.error.is_none(), "{:?}", out.error);
    let mut got: BTreeMap<String, (i32, String, String, f64, i64)> = BTreeMap::new();
    for r in s.encode_as(Protocol::V2, &out, 10_000).unwrap() {
        let req: v2::Request = decode_v2(&r.body).unwrap();
        let sym = |i: u32| req.symbols[i as usize].clone();
        for ts in &req.timeseries {
            let labels: Vec<(String, String)> = ts
                .labels_refs
                .chunks(2)
                .map(|p| (sym(p[0]), sym(p[1])))
                .collect();
            let meta = ts.metadata.unwrap_or_default();
            let sample = &ts.samples[0];
            got.insert(
                key(&labels),
                (
                    meta.r#type,
                    sym(meta.help_ref),
                    sym(meta.unit_ref),
                    sample.value,
                    sample.start_timestamp,
                ),
            );
        }
    }
    let inf = TARGET.replace("job=\"node\"", "job=\"node\",le=\"+Inf\"");
    let row = |name: &str| {
        got.get(&format!("{name}{{{TARGET}}}"))
            .or_else(|| got.get(&format!("{name}{{{inf}}}")))
            .unwrap_or_else(|| panic!("{name}: {got:#?}"))
            .clone()
    };
    let histogram = v2::metadata::MetricType::Histogram as i32;
    for name in ["req_seconds_bucket", "req_seconds_count", "req_seconds_sum"] {
        let (kind, help, unit, _, start) = row(name);
        assert_eq!(
            (kind, help.as_str(), unit.as_str(), start),
            (histogram, "Request latency.", "seconds", 1_600_000_000_500),
            "{name}"
        );
    }
    let (kind, _, _, value, start) = row("jobs_total");
    assert_eq!(
        (kind, value, start),
        (
            v2::metadata::MetricType::Counter as i32,
            7.0,
            1_600_000_001_000
        )
    );
    assert!(!got.keys().any(|k| k.contains("_created")), "{got:#?}");
    let (kind, _, _, value, _) = row("temp");
    assert_eq!(kind, v2::metadata::MetricType::Gauge as i32);
    assert!(value.is_nan() && !is_stale_marker(value));
    // The scrape's own series, described as a scrape's (not as the kubelet poll's).
    for (name, unit, help) in [
        (
            "up",
            "",
            "1 when the target answered and its exposition parsed, 0 otherwise",
        ),
        (
            "scrape_duration_seconds",
            "seconds",
            "Duration of the scrape: request, answer and parse",
        ),
        ("scrape_samples_scraped", "", "Samples the target exposed"),
        (
            "scrape_samples_post_metric_relabeling",
            "",
            "Samples left after --metric-allow and --metric-deny",
        ),
        (
            "scrape_series_added",
            "",
            "Series this scrape had that the previous one did not",
        ),
    ] {
        let (kind, got_help, got_unit, ..) = row(name);
        assert_eq!(
            (kind, got_help.as_str(), got_unit.as_str()),
            (v2::metadata::MetricType::Gauge as i32, help, unit),
            "{name}"
        );
    }
}

/// Everything a scrape gave, to compare two scrapers: the points (series ids included), the
/// counts, the error, the `--dry-run` text and the bytes of the 1.0 and 2.0 bodies.
fn everything(s: &mut Scraper, out: &ScrapeOutput) -> String {
    let points: Vec<_> = out
        .points
        .iter()
        .map(|p| (p.id, p.value.to_bits(), p.timestamp_ms, p.start_ms))
        .collect();
    let mut all = format!(
        "{points:?}\nscraped {} duplicates {} future {} error {:?}\n{}",
        out.scraped,
        out.duplicates,
        out.future,
        out.error,
        s.render_text(out)
    );
    for protocol in [Protocol::V1, Protocol::V2] {
        for r in s.encode_as(protocol, out, 7).unwrap() {
            all.push_str(&format!("{:?}\n", r.body));
        }
    }
    all
}

/// Series appear, vanish and come back, labels change order, escapes, repeats, collisions
/// with the target's labels, explicit and future timestamps, a failed scrape, types that
/// change: every scrape of a scraper with the series-text cache gives exactly what one
/// without it gives, whatever the labelling.
#[test]
fn the_series_text_cache_changes_nothing_a_scrape_sends() {
    let future = T0 + 3_600_000;
    let base = "# HELP node_cpu_seconds_total Seconds.\n# TYPE node_cpu_seconds_total counter\n\
        node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 10\n\
        node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 3\n\
        # TYPE up_like gauge\nup_like{job=\"other\",instance=\"x\",exported_job=\"y\"} 1\n\
        empty{a=\"\",b=\"1\"} 2\n\
        stamped{s=\"1\"} 5 1700000000000\n\
        # TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc_sum 2\nrpc_count 3\n\
        # TYPE lat histogram\nlat_bucket{le=\"1\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_count 2\n\
        plain 7\n";
    let bodies = [
        base.to_owned(),
        // Values move on; a series and the stamped one vanish.
        base.replace("} 10\n", "} 11\n")
            .replace("stamped{s=\"1\"} 5 1700000000000\n", "")
            .replace("plain 7\n", ""),
        // They come back, with labels reordered, escapes, a repeat and one from the future.
        format!(
            "{}node_cpu_seconds_total{{mode=\"idle\",cpu=\"0\"}} 12\nplain 8\nplain 9\n\
             esc{{p=\"a\\\\b\\\"c\"}} 1\nahead 1 {future}\nstamped{{s=\"1\"}} 6 1700000000001\n",
            base.replace("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 10\n", "")
                .replace("plain 7\n", "")
                .replace("stamped{s=\"1\"} 5 1700000000000\n", "")
        ),
        // Malformed at the end: nothing sent, everything stale.
        format!("{base}broken{{\n"),
        base.to_owned(),
        base.to_owned(),
        // A type that changes (the histogram's buckets become plain gauges); the stamped
        // series, admitted by its cached line last time, vanishes.
        base.replace("# TYPE lat histogram\n", "# TYPE lat_bucket gauge\n")
            .replace("stamped{s=\"1\"} 5 1700000000000\n", ""),
        // A series of the scrape's time now with a timestamp of its own, then gone.
        base.replace("plain 7\n", "plain 7 1700000000005\n"),
        base.replace("plain 7\n", ""),
    ];
    let filter = || {
        crate::pipeline::filter::MetricFilter::new(&[], &["rpc.*".into()])
            .unwrap()
            .unwrap()
    };
    for (honor_labels, honor_timestamps, filtered) in [
        (false, true, false),
        (true, true, false),
        (false, false, false),
        (false, true, true),
    ] {
        let labelling = Labelling {
            honor_labels,
            honor_timestamps,
            ..labelling()
        };
        let mut cached = Scraper::new(labelling.clone(), filtered.then(filter));
        let mut reference = Scraper::without_cache(labelling, filtered.then(filter));
        for (i, body) in bodies.iter().enumerate() {
            let at = T0 + 1000 * i as i64;
            let got = scrape(&mut cached, body, TEXT, at);
            let want = scrape(&mut reference, body, TEXT, at);
            let (got_all, want_all) = (
                everything(&mut cached, &got),
                everything(&mut reference, &want),
            );
            assert_eq!(
                got_all, want_all,
                "scrape {i}, honor_labels {honor_labels}, honor_timestamps {honor_timestamps}, filtered {filtered}"
            );
            if i == 3 {
                assert!(got.error.is_some());
            } else {
                assert!(got.error.is_none(), "{:?}", got.error);
            }
            cached.recycle(got);
        }
        assert!(cached.series_texts().is_some_and(|t| !t.is_empty()));
        assert!(reference.series_texts().is_none());
    }
}

/// A node name that changes starts every series afresh: the cached lines must not bring back
/// series of the old name.
#[test]
fn a_new_node_name_is_not_undone_by_cached_lines() {
    let mut cached = Scraper::new(labelling(), None);
    let mut reference = Scraper::without_cache(labelling(), None);
    let body = "a{x=\"1\"} 1\nb 2\n";
    for (i, node) in ["n1", "n1", "n2", "n2"].iter().enumerate() {
        cached.set_node(node, false);
        reference.set_node(node, false);
        let at = T0 + 1000 * i as i64;
        let got = scrape(&mut cached, body, TEXT, at);
        let want = scrape(&mut reference, body, TEXT, at);
        let rendered = cached.render_text(&got);
        assert_eq!(rendered, reference.render_text(&want));
        assert!(rendered.contains(&format!("node=\"{node}\"")), "{rendered}");
        assert_eq!(
            everything(&mut cached, &got),
            everything(&mut reference, &want)
        );
    }
}

/// One exemplar as a 2.0 body carries it: its series (as [`key`] writes it), its labels
/// (sorted), value and timestamp.
type SentExemplar = (String, Vec<(String, String)>, f64, i64);

/// The exemplars the 2.0 bodies of `out` carry, `max` samples a request; every ref is checked
/// to be inside its request's symbols and in pairs.
fn exemplars_sent(s: &mut Scraper, out: &ScrapeOutput, max: usize) -> Vec<SentExemplar> {
    let mut got = Vec::new();
    for r in s.encode_as(Protocol::V2, out, max).unwrap() {
        let req: v2::Request = decode_v2(&r.body).unwrap();
        let sym = |i: u32| {
            assert!(
                (i as usize) < req.symbols.len(),
                "ref {i} outside the symbols"
            );
            req.symbols[i as usize].clone()
        };
        for ts in &req.timeseries {
            let labels: Vec<(String, String)> = ts
                .labels_refs
                .chunks(2)
                .map(|p| (sym(p[0]), sym(p[1])))
                .collect();
            for e in &ts.exemplars {
                assert_eq!(e.labels_refs.len() % 2, 0, "{e:?}");
                let mut pairs: Vec<(String, String)> = e
                    .labels_refs
                    .chunks(2)
                    .map(|p| (sym(p[0]), sym(p[1])))
                    .collect();
                pairs.sort();
                got.push((key(&labels), pairs, e.value, e.timestamp));
            }
        }
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// OpenMetrics exemplars go out in 2.0, in their sample's series, with their labels, value and
/// timestamp (the scrape's when they have none), whatever the request size; once each: a
/// scrape that repeats the series' last exemplar sends none, one that changes it sends the new
/// one. 1.0 carries the same samples without them.
#[test]
fn exemplars_go_out_in_2_0_once_each() {
    let body = |trace: &str, ts: &str| {
        format!(
            "# TYPE rpc counter\n\
             rpc_total{{code=\"200\"}} 5 # {{trace_id=\"{trace}\"}} 0.5{ts}\n\
             rpc_total{{code=\"500\"}} 1\n\
             # TYPE lat histogram\n\
             lat_bucket{{le=\"0.1\"}} 1 # {{trace_id=\"t9\",span_id=\"s1\"}} 0.07 1700000000.5\n\
             lat_bucket{{le=\"+Inf\"}} 2\n\
             lat_count 2\n\
             lat_sum 0.3\n\
             # EOF\n"
        )
    };
    let rpc = format!(
        "rpc_total{{{}}}",
        TARGET.replace("cluster=\"c1\"", "cluster=\"c1\",code=\"200\"")
    );
    let bucket = format!(
        "lat_bucket{{{}}}",
        TARGET.replace("job=\"node\"", "job=\"node\",le=\"0.1\"")
    );
    let mut s = Scraper::new(labelling(), None);
    let out = scrape(&mut s, &body("a", " 1699999999.25"), OM, T0);
    assert!(out.error.is_none(), "{:?}", out.error);
    let want = vec![
        (
            bucket.clone(),
            pairs(&[("span_id", "s1"), ("trace_id", "t9")]),
            0.07,
            1_700_000_000_500,
        ),
        (
            rpc.clone(),
            pairs(&[("trace_id", "a")]),
            0.5,
            1_699_999_999_250,
        ),
    ];
    assert_eq!(exemplars_sent(&mut s, &out, 10_000), want);
    // One sample a request: each exemplar still in its own point's series.
    assert_eq!(exemplars_sent(&mut s, &out, 1), want);
    // 1.0: the samples, without exemplars.
    let rows = sent(&mut s, &out);
    assert!(rows.contains(&(rpc.clone(), 5.0, T0)), "{rows:?}");
    assert!(rows.contains(&(bucket.clone(), 1.0, T0)), "{rows:?}");
    s.recycle(out);

    let out = scrape(&mut s, &body("a", " 1699999999.25"), OM, T0 + 1_000);
    assert_eq!(
        exemplars_sent(&mut s, &out, 10_000),
        vec![],
        "repeated: none"
    );
    s.recycle(out);
    let out = scrape(&mut s, &body("b", " 1700000001"), OM, T0 + 2_000);
    assert_eq!(
        exemplars_sent(&mut s, &out, 10_000),
        vec![(
            rpc.clone(),
            pairs(&[("trace_id", "b")]),
            0.5,
            1_700_000_001_000
        )]
    );
    s.recycle(out);
    // Without a timestamp of its own: stamped with the scrape's time, and the same exemplar in
    // the next scrape although its stamp would differ.
    let out = scrape(&mut s, &body("c", ""), OM, T0 + 3_000);
    assert_eq!(
        exemplars_sent(&mut s, &out, 10_000),
        vec![(rpc.clone(), pairs(&[("trace_id", "c")]), 0.5, T0 + 3_000)]
    );
    s.recycle(out);
    let out = scrape(&mut s, &body("c", ""), OM, T0 + 4_000);
    assert_eq!(exemplars_sent(&mut s, &out, 10_000), vec![]);
}
