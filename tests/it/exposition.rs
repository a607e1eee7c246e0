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
