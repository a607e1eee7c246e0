//! The exposition parsers against real and reference data (`tests/fixtures/expositions/`,
//! sources and licenses in its README): every case of the OpenMetrics parser test suite gets
//! its expected verdict, Prometheus's and `expfmt`'s test data parse (or fail where they are
//! meant to), and real exporter outputs parse with the values, labels and types they hold.

use std::path::{Path, PathBuf};

use kubelet_push::exposition::{
    parse, parse_with, Exposition, Format, Kind, Limits, ParseError, Strictness,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/expositions")
}

fn read(relative: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn parse_file(format: Format, relative: &str) -> Exposition {
    parse(format, &read(relative), &Limits::default()).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Each case's name, body and expected verdict.
fn openmetrics_cases() -> Vec<(String, Vec<u8>, bool)> {
    let dir = fixtures().join("openmetrics-tests/parsers");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("the OpenMetrics cases")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let json = std::fs::read_to_string(path.join("test.json")).expect("test.json");
            assert!(json.contains("\"type\": \"text\""), "{name}: {json}");
            let valid = json.contains("\"shouldParse\": true");
            assert!(valid || json.contains("\"shouldParse\": false"), "{name}");
            (
                name,
                std::fs::read(path.join("metrics")).expect("metrics"),
                valid,
            )
        })
        .collect();
    cases.sort();
    cases
}

fn mismatches(strictness: Strictness) -> Vec<String> {
    openmetrics_cases()
        .into_iter()
        .filter_map(|(name, body, valid)| {
            let got = parse_with(Format::OpenMetrics, &body, &Limits::default(), strictness);
            match (valid, got) {
                (true, Err(e)) => Some(format!("{name}: should parse, got {e}")),
                (false, Ok(exp)) => {
                    Some(format!("{name}: should fail, parsed {} samples", exp.len()))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn every_openmetrics_case_gets_its_verdict() {
    let cases = openmetrics_cases();
    assert_eq!(cases.len(), 211);
    assert_eq!(cases.iter().filter(|c| c.2).count(), 44);
    let wrong = mismatches(Strictness::Spec);
    assert!(
        wrong.is_empty(),
        "{} of 211:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The default strictness differs from the specification on the signs of observed values
/// only, and so on the three cases that test them.
#[test]
fn prometheus_strictness_accepts_negative_observations_only() {
    let wrong = mismatches(Strictness::Prometheus);
    let names: Vec<&str> = wrong
        .iter()
        .map(|w| w.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "bad_counter_values_17",
            "bad_counter_values_19",
            "bad_histograms_3"
        ],
        "{wrong:#?}"
    );
}

#[test]
fn real_text_exporters_parse() {
    let node = parse_file(Format::Text, "node_exporter__e2e-output.txt");
    assert!(node.len() > 3000, "{}", node.len());
    assert!(node.first_duplicate().is_none());
    let s = node
        .samples()
        .find(|s| s.name == "node_cpu_seconds_total" && s.labels.get("mode") == Some("idle"))
        .expect("cpu idle");
    assert_eq!(node.family(s.family).map(|f| f.kind), Some(Kind::Counter));
    parse_file(Format::Text, "node_exporter__e2e-64k-page-output.txt");

    let windows = parse_file(
        Format::Text,
        "windows_exporter__nri-winservices-actual-output.txt",
    );
    let escaped = windows
        .samples()
        .find(|s| {
            s.labels
                .iter()
                .any(|(_, v)| v == "NT AUTHORITY\\LocalService")
        })
        .expect("a run_as label with its backslash unescaped");
    assert!(
        escaped.name.starts_with("windows_service"),
        "{}",
        escaped.name
    );

    let kubelet = parse_file(
        Format::Text,
        "kubelet__metrics_resource__metrics-server-test.txt",
    );
    let with_ts = kubelet
        .samples()
        .filter(|s| s.timestamp_ms.is_some())
        .count();
    assert!(with_ts > 200, "{with_ts}");
    for s in kubelet.samples().filter(|s| s.timestamp_ms.is_some()) {
        assert!(s.timestamp_ms.unwrap() > 1_500_000_000_000, "{s:?}");
    }
}

#[test]
fn prometheus_test_data_parses() {
    for file in [
        "prometheus-textparse/promtestdata.txt",
        "prometheus-textparse/promtestdata.nometa.txt",
        "prometheus-common-expfmt/testdata_text",
    ] {
        let exp = parse_file(Format::Text, file);
        assert!(exp.len() > 10, "{file}");
        assert!(
            exp.samples().any(|s| s.value.is_nan()) || file.ends_with("text"),
            "{file}"
        );
    }
    let all = parse_file(
        Format::OpenMetrics,
        "prometheus-textparse/alltypes.5mfs.om.txt",
    );
    assert!(all.samples().all(|s| !s.name.ends_with("_created")));
    let errors = all
        .samples()
        .find(|s| {
            s.name == "promhttp_metric_handler_errors_total"
                && s.labels.get("cause") == Some("encoding")
        })
        .expect("errors_total");
    assert_eq!(errors.start_timestamp_ms, Some(1_726_839_813_016));
    let sum = all
        .samples()
        .find(|s| s.name == "rpc_durations_histogram_seconds_sum")
        .expect("sum");
    assert_eq!(sum.value, -8.452185437166741e-05);
    assert_eq!(sum.start_timestamp_ms, Some(1_726_839_813_016));
    let kinds: Vec<Kind> = all.families().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Gauge,
            Kind::Counter,
            Kind::Histogram,
            Kind::Summary,
            Kind::Counter
        ]
    );
    let one = parse_file(
        Format::OpenMetrics,
        "prometheus-textparse/1histogram.om.txt",
    );
    assert!(one.samples().any(|s| s.labels.get("le") == Some("+Inf")));
}

#[test]
fn expfmt_fuzz_corpus_gets_its_verdicts() {
    let dir = fixtures().join("prometheus-common-expfmt/fuzz-corpus");
    let mut wrong = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let valid = !name.starts_with("from_test_parse_error_");
        let got = parse(
            Format::Text,
            &std::fs::read(&path).unwrap(),
            &Limits::default(),
        );
        count += 1;
        if got.is_ok() != valid {
            wrong.push(format!(
                "{name}: expected valid={valid}, got {:?}",
                got.map(|e| e.len())
            ));
        }
    }
    assert_eq!(count, 26);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn limits_fail_the_whole_exposition() {
    let body = read("node_exporter__e2e-output.txt");
    let limits = Limits {
        body_size_limit: 1000,
        sample_limit: 0,
    };
    assert!(matches!(
        parse(Format::Text, &body, &limits),
        Err(ParseError::BodyTooLarge { .. })
    ));
    let limits = Limits {
        body_size_limit: 0,
        sample_limit: 100,
    };
    match parse(Format::Text, &body, &limits) {
        Err(ParseError::SampleLimit { limit: 100, line }) => assert!(line > 100),
        other => panic!("{other:?}"),
    }
}

/// A sample as (name, labels in line order, value).
type Owned = (String, Vec<(String, String)>, f64);

/// Each sample as [`Owned`], for comparing with what Prometheus's own tests expect (they list
/// `__name__` first and sort the rest; we keep line order).
fn samples_of(exp: &Exposition) -> Vec<Owned> {
    exp.samples()
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            (s.name.to_owned(), labels, s.value)
        })
        .collect()
}

fn owned(name: &str, labels: &[(&str, &str)], value: f64) -> Owned {
    let labels = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    (name.to_owned(), labels, value)
}

const HEIZOEL: &str =
    "Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}";
const STRANGE: &str = "strange©™\n'quoted' \"name\"";

/// Prometheus 3's text parser test `TestUTF8PromParse` (model/textparse/promparse_test.go):
/// its input verbatim but for a final newline (`expfmt`, which we follow, wants one), and
/// the samples it expects, quantiles as written (Prometheus rewrites `0` as `0.0` after
/// parsing, for summaries and histograms; that is the converter's business).
#[test]
fn prometheus_utf8_text_cases_parse_as_prometheus_reads_them() {
    let body = r#"# HELP "go.gc_duration_seconds" A summary of the GC invocation durations.
# 	TYPE "go.gc_duration_seconds" summary
{"go.gc_duration_seconds",quantile="0"} 4.9351e-05
{"go.gc_duration_seconds",quantile="0.25",} 7.424100000000001e-05
{"go.gc_duration_seconds",quantile="0.5",a="b"} 8.3835e-05
{"go.gc_duration_seconds",quantile="0.8", a="b"} 8.3835e-05
{"go.gc_duration_seconds", quantile="0.9", a="b"} 8.3835e-05
{"go.gc_duration_seconds", quantile="1.0", a="b" } 8.3835e-05
{ "go.gc_duration_seconds", quantile="1.0", a="b" } 8.3835e-05
{ "go.gc_duration_seconds", quantile= "1.0", a= "b", } 8.3835e-05
{ "go.gc_duration_seconds", quantile = "1.0", a = "b" } 8.3835e-05
{"go.gc_duration_seconds_count"} 99
{"Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}","strange©™\n'quoted' \"name\""="6"} 10.0
"#;
    let exp = parse(Format::Text, body.as_bytes(), &Limits::default()).expect("parses");
    let gc = "go.gc_duration_seconds";
    let q = |q, a: bool, v| {
        let mut labels = vec![("quantile", q)];
        if a {
            labels.push(("a", "b"));
        }
        owned(gc, &labels, v)
    };
    assert_eq!(
        samples_of(&exp),
        [
            q("0", false, 4.9351e-05),
            q("0.25", false, 7.424100000000001e-05),
            q("0.5", true, 8.3835e-05),
            q("0.8", true, 8.3835e-05),
            q("0.9", true, 8.3835e-05),
            q("1.0", true, 8.3835e-05),
            q("1.0", true, 8.3835e-05),
            q("1.0", true, 8.3835e-05),
            q("1.0", true, 8.3835e-05),
            owned("go.gc_duration_seconds_count", &[], 99.0),
            owned(HEIZOEL, &[(STRANGE, "6")], 10.0),
        ]
    );
    let family = exp.family(0).expect("the summary");
    assert_eq!(
        (family.name, family.kind, family.help),
        (
            gc,
            Kind::Summary,
            Some("A summary of the GC invocation durations.")
        )
    );
    // `_count` belongs to the quoted summary, as it would to a legacy-named one.
    assert_eq!(exp.sample(9).map(|s| s.family), Some(0));
}

/// Prometheus 3's OpenMetrics parser test `TestOpenMetricsParse_UTF8`
/// (model/textparse/openmetricsparse_test.go), its lines made a valid OpenMetrics exposition:
/// Prometheus's parser does not check families, ours does, so the summary's `_sum` moves up
/// into its family (Prometheus's input has it after another family), and the exemplars with
/// quoted label names go on a counter's `_total` (its input has them on an untyped `_count`).
/// The quoted name may stand anywhere in the braces (`{q="0.9","http.status",a="b"}`).
#[test]
fn prometheus_utf8_openmetrics_cases_parse_as_prometheus_reads_them() {
    let body = r#"# HELP "go.gc_duration_seconds" A summary of the GC invocation durations.
# TYPE "go.gc_duration_seconds" summary
# UNIT "go.gc_duration_seconds" seconds
{"go.gc_duration_seconds",quantile="0"} 4.9351e-05
{"go.gc_duration_seconds",quantile="0.25"} 7.424100000000001e-05
{"go.gc_duration_seconds_sum"} 0.004304266
{"go.gc_duration_seconds_created"} 1520872607.123
{"go.gc_duration_seconds",quantile="0.5",a="b"} 8.3835e-05
{"http.status",q="0.9",a="b"} 8.3835e-05
{"http.status",q="0.9",a="b"} 8.3835e-05
{q="0.9","http.status",a="b"} 8.3835e-05
{"Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}","strange©™\n'quoted' \"name\""="6"} 10.0
# TYPE quotedexemplar counter
quotedexemplar_total 1 # {"id.thing"="histogram-count-test"} 4
# TYPE quotedexemplar2 counter
quotedexemplar2_total 1 # {"id.thing"="histogram-count-test",other="hello"} 4
# EOF
"#;
    let exp = parse(Format::OpenMetrics, body.as_bytes(), &Limits::default()).expect("parses");
    let gc = "go.gc_duration_seconds";
    let status = [("q", "0.9"), ("a", "b")];
    assert_eq!(
        samples_of(&exp),
        [
            owned(gc, &[("quantile", "0")], 4.9351e-05),
            owned(gc, &[("quantile", "0.25")], 7.424100000000001e-05),
            owned("go.gc_duration_seconds_sum", &[], 0.004304266),
            owned(gc, &[("quantile", "0.5"), ("a", "b")], 8.3835e-05),
            owned("http.status", &status, 8.3835e-05),
            owned("http.status", &status, 8.3835e-05),
            owned("http.status", &status, 8.3835e-05),
            owned(HEIZOEL, &[(STRANGE, "6")], 10.0),
            owned("quotedexemplar_total", &[], 1.0),
            owned("quotedexemplar2_total", &[], 1.0),
        ]
    );
    // `_created` starts the metric point without `a`: the first two quantiles and the sum.
    let created = Some(1_520_872_607_123);
    let starts: Vec<Option<i64>> = exp.samples().map(|s| s.start_timestamp_ms).collect();
    assert_eq!(starts[..4], [created, created, created, None]);
    let family = exp.family(0).expect("the summary");
    assert_eq!(
        (family.name, family.kind, family.unit),
        (gc, Kind::Summary, Some("seconds"))
    );
}

/// The quoted-name forms Prometheus 3's lexers (`promlex.l`, `openmetricslex.l`) and parsers
/// refuse, refused here too: a quoted name outside the braces (neither lexer has a quoted
/// string at the start of a line), a second metric name, a set with no name at all, and
/// the malformed sets of its `TestPromParseErrors` / `TestOpenMetricsParseErrors`. An empty
/// quoted name passes Prometheus's parser but fails its scrape (an invalid metric or label
/// name); it fails here already.
#[test]
fn quoted_names_prometheus_refuses_are_refused() {
    let text = [
        "\"my.metric\" 1\n",
        "\"my.metric\"{a=\"b\"} 1\n",
        "\"my.metric\" {a=\"b\"} 1\n",
        "foo{\"my.metric\"} 1\n",
        "foo{a=\"b\",\"my.metric\"} 1\n",
        "{\"a\",\"b\"} 1\n",
        "{\"a\",a=\"b\",\"b\"} 1\n",
        "{a=\"ok\"} 1\n",
        "{\"my.label\"=\"ok\"} 1\n",
        "{\"a\", \"b = \"c\"}\n",
        "{\"a\",b\\nc=\"d\"} 1\n",
        "{\"a\",,b=\"c\"} 1\n",
        "{,\"a\"} 1\n",
        "{\"\"} 1\n",
        "{\"a\",\"\"=\"x\"} 1\n",
        "{\"a\" \"b\"} 1\n",
        "# TYPE \"a\"counter\n",
    ];
    for body in text {
        let got = parse(Format::Text, body.as_bytes(), &Limits::default());
        assert!(
            matches!(got, Err(ParseError::Malformed { line: 1, .. })),
            "text {body:?}: {got:?}"
        );
    }
    let openmetrics = [
        "\"my.metric\" 1\n# EOF\n",
        "\"my.metric\"{a=\"b\"} 1\n# EOF\n",
        "foo{\"my.metric\"} 1\n# EOF\n",
        "{\"a\",\"b\"} 1\n# EOF\n",
        "{a=\"ok\"} 1\n# EOF\n",
        "{\"a\",\"b = \"c\"}\n# EOF\n",
        "{\"a\",b\\nc=\"d\"} 1\n# EOF\n",
        "{\"\"} 1\n# EOF\n",
        // No blanks in an OpenMetrics label set, quoted names or not.
        "{ \"a\"} 1\n# EOF\n",
        "{\"a\" ,b=\"c\"} 1\n# EOF\n",
        "{\"a\",\"b\" =\"c\"} 1\n# EOF\n",
        // An exemplar has labels, never a metric name.
        "# TYPE a counter\na_total 1 # {\"x.y\"} 1\n# EOF\n",
    ];
    for body in openmetrics {
        let got = parse(Format::OpenMetrics, body.as_bytes(), &Limits::default());
        assert!(
            matches!(got, Err(ParseError::Malformed { .. })),
            "openmetrics {body:?}: {got:?}"
        );
    }
}

/// The forms Prometheus 3 accepts beyond its own tests' lines: the quoted name last in the
/// set, a legacy name with quoted label names, metadata for a quoted name tied to its samples
/// (also when the name has escapes), and the text format's blanks around a quoted name.
#[test]
fn quoted_names_prometheus_accepts_are_accepted() {
    let body = "# TYPE \"my.counter\" counter\n\
                # HELP \"my\\\"odd\" help for a name with a quote\n\
                {a=\"b\", \"my.counter\"} 1\n\
                foo{\"my.label\"=\"x\",\"other.label\"=\"y\"} 2\n\
                {\"my\\\"odd\"} 3\n\
                {\t\"spaced\" ,\ta=\"b\" , } 4\n";
    let exp = parse(Format::Text, body.as_bytes(), &Limits::default()).expect("parses");
    assert_eq!(
        samples_of(&exp),
        [
            owned("my.counter", &[("a", "b")], 1.0),
            owned("foo", &[("my.label", "x"), ("other.label", "y")], 2.0),
            owned("my\"odd", &[], 3.0),
            owned("spaced", &[("a", "b")], 4.0),
        ]
    );
    let kind = |i: usize| {
        exp.sample(i)
            .and_then(|s| exp.family(s.family))
            .map(|f| (f.kind, f.help))
    };
    assert_eq!(kind(0), Some((Kind::Counter, None)));
    assert_eq!(
        kind(2),
        Some((Kind::Unknown, Some("help for a name with a quote")))
    );

    let body = "# TYPE \"my.counter\" counter\n\
                {a=\"b\",\"my.counter_total\"} 1\n\
                foo{\"my.label\"=\"x\"} 2\n\
                # EOF\n";
    let exp = parse(Format::OpenMetrics, body.as_bytes(), &Limits::default()).expect("parses");
    assert_eq!(
        samples_of(&exp),
        [
            owned("my.counter_total", &[("a", "b")], 1.0),
            owned("foo", &[("my.label", "x")], 2.0),
        ]
    );
    assert_eq!(exp.family(0).map(|f| f.kind), Some(Kind::Counter));
}
