//! Small cases of the parsers' choices; the reference suites and real outputs are in
//! `tests/it/exposition.rs`.

use super::*;

fn om(body: &str) -> Result<Exposition, ParseError> {
    parse(Format::OpenMetrics, body.as_bytes(), &Limits::default())
}

fn text(body: &str) -> Result<Exposition, ParseError> {
    parse(Format::Text, body.as_bytes(), &Limits::default())
}

#[test]
fn content_type_chooses_the_parser() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    for other in ["text/plain; version=0.0.4", "", "application/json"] {
        assert_eq!(Format::from_content_type(other), Format::Text, "{other}");
    }
    assert!(ACCEPT.starts_with("application/openmetrics-text;version=1.0.0"));
}

#[test]
fn created_lines_become_start_timestamps() {
    let exp = om(
        "# TYPE a counter\na_total{x=\"1\"} 3\na_created{x=\"1\"} 1.5\n\
                  a_created{x=\"2\"} 2\na_total{x=\"2\"} 4\n# EOF\n",
    )
    .unwrap();
    let got: Vec<_> = exp
        .samples()
        .map(|s| (s.name, s.value, s.timestamp_ms, s.start_timestamp_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("a_total", 3.0, None, Some(1500)),
            ("a_total", 4.0, None, Some(2000))
        ]
    );
    assert_eq!(exp.family(0).map(|f| f.kind), Some(Kind::Counter));
}

#[test]
fn text_escapes_timestamps_and_quoted_names() {
    let exp = text(
        "# HELP m a \\\\ help\\n\n# TYPE m counter\nm{a=\"x\\\"y\\\\z\\n\"} +Inf 1700000000000\n\
         {\"my.metric\", \"la.bel\"=\"v\"} NaN\n",
    )
    .unwrap();
    let m = exp.sample(0).unwrap();
    assert_eq!(m.labels.get("a"), Some("x\"y\\z\n"));
    assert_eq!(m.value, f64::INFINITY);
    assert_eq!(m.timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(exp.family(0).and_then(|f| f.help), Some("a \\ help\n"));
    let q = exp.sample(1).unwrap();
    assert_eq!((q.name, q.labels.get("la.bel")), ("my.metric", Some("v")));
    assert!(q.value.is_nan());
}

#[test]
fn errors_name_the_line() {
    let err = text("a 1\nb{c=\"\\t\"} 2\n").unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert_eq!(line_text(b"a 1\nb{c=\"\\t\"} 2\n", 2), "b{c=\"\\t\"} 2");
    assert!(matches!(
        om("a 1\n"),
        Err(ParseError::Malformed { line: 2, .. })
    ));
    assert!(matches!(
        parse(Format::Text, b"a 1\n\xff 2\n", &Limits::default()),
        Err(ParseError::Malformed { line: 2, .. })
    ));
}

#[test]
fn limits_have_their_own_errors() {
    let limits = Limits {
        body_size_limit: 0,
        sample_limit: 1,
    };
    assert!(matches!(
        parse(Format::Text, b"a 1\nb 2\n", &limits),
        Err(ParseError::SampleLimit { limit: 1, line: 2 })
    ));
    let limits = Limits {
        body_size_limit: 4,
        sample_limit: 0,
    };
    assert!(matches!(
        parse(Format::Text, b"a 1\nb 2\n", &limits),
        Err(ParseError::BodyTooLarge { size: 8, limit: 4 })
    ));
}

#[test]
fn duplicates_are_found_not_dropped() {
    let exp = text("a{x=\"1\",y=\"2\"} 1\nb 1\na{y=\"2\",x=\"1\"} 2\n").unwrap();
    assert_eq!(exp.len(), 3);
    assert_eq!(exp.first_duplicate(), Some(2));
}
