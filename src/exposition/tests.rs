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

/// Exemplars are kept beside their samples: labels (quoted names and escapes read as in a
/// label set), value, timestamp in ms when given; the sample's own labels do not change.
#[test]
fn exemplars_are_kept_with_their_sample() {
    let exp = om("# TYPE a counter\n\
         a_total{x=\"1\"} 3 # {trace_id=\"abc\",\"span.id\"=\"d\\\"e\"} 2.5 1700000000.123\n\
         a_total{x=\"2\"} 4\n\
         # TYPE h histogram\n\
         h_bucket{le=\"1\"} 1 123 # {} 0.5\n\
         h_bucket{le=\"+Inf\"} 2 123\n\
         h_count 2 123\n\
         h_sum 3 123\n\
         # EOF\n")
    .unwrap();
    let got: Vec<_> = exp
        .exemplars()
        .map(|e| {
            let labels: Vec<_> = e.labels.iter().collect();
            (e.sample, labels, e.value, e.timestamp_ms)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                0,
                vec![("trace_id", "abc"), ("span.id", "d\"e")],
                2.5,
                Some(1_700_000_000_123)
            ),
            (2, vec![], 0.5, None),
        ]
    );
    let first: Vec<_> = exp.sample(0).unwrap().labels.iter().collect();
    assert_eq!(first, [("x", "1")]);
    let bucket: Vec<_> = exp.sample(2).unwrap().labels.iter().collect();
    assert_eq!(bucket, [("le", "1")]);
    assert_eq!(exp.sample(2).unwrap().timestamp_ms, Some(123_000));
    // An exposition's buffers used again start without the last one's exemplars.
    let mut cache = SeriesTexts::default();
    cache.recycle(exp);
    let body = b"# TYPE b gauge\nb 1\n# EOF\n";
    let again = parse_cached(Format::OpenMetrics, body, &Limits::default(), &mut cache);
    assert_eq!(again.unwrap().exemplars().len(), 0);
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

/// The fast value path gives the float parser's exact bits where it answers, and leaves
/// everything else to it.
#[test]
fn plain_decimals_read_as_the_float_parser_reads_them() {
    let mut tokens: Vec<String> = [
        "0",
        "-0",
        "+0",
        "1",
        "-3",
        "8192",
        "0.25",
        "-0.5",
        "1.305e-06",
        "2.189426688e+10",
        "1.150976e+06",
        "1e22",
        "1e-22",
        "123456789012345678",
        "9007199254740992",
        ".5",
        "5.",
        "-.5e1",
        "0.1",
        "0.3",
        "1E5",
        "4.9351e-05",
        "7.424100000000001e-05",
        "0e999",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A spread of mantissas and exponents, the fast path's edges among them.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let digits = (x % 17 + 1) as usize;
        let mantissa = (x >> 8) % 10u64.pow(digits as u32);
        let point = (x >> 40) as usize % (digits + 1);
        let mut s = format!("{mantissa:0digits$}");
        s.insert(point, '.');
        if x & 1 == 1 {
            s.push_str(&format!("e{}", ((x >> 50) % 50) as i64 - 25));
        }
        if x & 2 == 2 {
            s.insert(0, '-');
        }
        tokens.push(s);
    }
    let mut fast = 0;
    for token in &tokens {
        let want: f64 = token.parse().unwrap();
        if let Some(got) = lex::plain_decimal(token.as_bytes()) {
            assert_eq!(got.to_bits(), want.to_bits(), "{token}");
            fast += 1;
        }
        assert_eq!(lex::value(token).map(f64::to_bits), Ok(want.to_bits()));
    }
    assert!(fast > tokens.len() / 2, "{fast} of {}", tokens.len());

    // Not taken: more than 19 digits, past 2^53, far exponents, and what is not a plain
    // decimal at all; the float parser reads or refuses those.
    for token in [
        "12345678901234567890",
        "9007199254740993",
        "1e23",
        "1e-23",
        "1e1000",
        "NaN",
        "+Inf",
        "-Inf",
        "inf",
        "",
        "-",
        ".",
        "1e",
        "1e+",
        "1.2.3",
        "0x10",
        "1_000",
        "1 ",
        "--1",
    ] {
        assert_eq!(lex::plain_decimal(token.as_bytes()), None, "{token}");
        assert_eq!(
            lex::value(token).map(f64::to_bits),
            token
                .parse::<f64>()
                .map(f64::to_bits)
                .map_err(|_| "invalid value"),
            "{token}"
        );
    }
}

/// A label set read by the fast path gives what the general reader gives (a blank after the
/// `{` sends the same set the general way), and the sets the fast path must not take still
/// read, or fail, as the general reader says.
#[test]
fn plain_label_sets_read_as_the_general_reader_reads_them() {
    let labels = |exp: &Exposition| -> Vec<(String, String)> {
        exp.samples()
            .flat_map(|s| s.labels.iter().map(|(n, v)| (n.to_owned(), v.to_owned())))
            .collect()
    };
    for set in [
        "a=\"b\"",
        "a=\"b\",c=\"\"",
        "copy=\"2\",cpu=\"0\",mode=\"idle\"",
        "abcdefgh_1=\"x\",abcdefgh_2=\"y\"",
        "x=\"a value longer than eight bytes, quote at the end\",y=\"é€ — utf-8\"",
        "a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\",g=\"7\",h=\"8\",i=\"9\",j=\"10\"",
    ] {
        let fast = text(&format!("m{{{set}}} 1\n")).unwrap();
        let general = text(&format!("m{{ {set}}} 1\n")).unwrap();
        assert_eq!(labels(&fast), labels(&general), "{set}");
        assert_eq!(labels(&fast).len(), set.matches('=').count(), "{set}");
        let om_fast = om(&format!("m{{{set}}} 1\n# EOF\n")).unwrap();
        assert_eq!(labels(&om_fast), labels(&fast), "{set}");
    }
    // Escapes, quoted names, blanks and a trailing comma leave the fast path; the general
    // reader unescapes, names and accepts them.
    let exp = text("m{a=\"x\\\\y\\\"z\",\"b.c\"=\"v\" ,d=\"e\",} 1\n").unwrap();
    assert_eq!(
        labels(&exp),
        [
            ("a".into(), "x\\y\"z".into()),
            ("b.c".into(), "v".into()),
            ("d".into(), "e".into())
        ]
    );
    // Repeated names and `__name__`: caught whether the fast path keyed them apart or not
    // (same first eight bytes and length, more than eight labels).
    for set in [
        "a=\"1\",a=\"2\"",
        "__name__=\"x\"",
        "abcdefgh_1=\"x\",abcdefgh_1=\"y\"",
        "a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\",g=\"7\",h=\"8\",i=\"9\",a=\"10\"",
    ] {
        assert!(text(&format!("m{{{set}}} 1\n")).is_err(), "{set}");
        assert!(om(&format!("m{{{set}}} 1\n# EOF\n")).is_err(), "{set}");
    }
    // An unterminated value stops at the end of its line, never reading into the next.
    assert!(text("m{a=\"b} 1\nn{c=\"d\"} 2\n").is_err());
}

/// A line that starts with the previous line's name has that name only when no name byte
/// follows, and only when the previous name was a legacy one.
#[test]
fn repeated_names_are_only_taken_when_whole_and_legacy() {
    let exp = text("foo 1\nfoo_bar 2\nfoo:x 3\nfoo{a=\"b\"} 4\nfoo 5\n").unwrap();
    let names: Vec<&str> = exp.samples().map(|s| s.name).collect();
    assert_eq!(names, ["foo", "foo_bar", "foo:x", "foo", "foo"]);
    assert_eq!(
        exp.sample(3).map(|s| s.family),
        exp.sample(0).map(|s| s.family)
    );
    assert_ne!(
        exp.sample(1).map(|s| s.family),
        exp.sample(0).map(|s| s.family)
    );
    // A quoted name may not be repeated unquoted.
    let err = text("{\"my.metric\"} 1\nmy.metric 2\n").unwrap_err();
    assert_eq!(err.line(), Some(2));
    // A histogram's buckets keep their family and checks when repeated.
    let exp = text(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
    )
    .unwrap();
    assert!(exp.samples().all(|s| s.family == 0));
    assert!(text("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{x=\"y\"} 2\n").is_err());
}

/// The eight-bytes-at-a-time search finds the first `"` or `\` wherever it stands, as a byte
/// loop does, and nothing past the slice it is given.
#[test]
fn quote_search_finds_the_first_quote_or_backslash() {
    for len in 0..40 {
        for at in 0..=len {
            for (c, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                let mut b = vec![b'x'; len];
                b.extend_from_slice("é".as_bytes());
                if at < len {
                    b[at] = c;
                    // A later stop never wins over the first.
                    if at + 3 < len {
                        b[at + 3] = other;
                    }
                }
                for from in [0, at.min(3)] {
                    let naive = b
                        .iter()
                        .skip(from)
                        .position(|&x| x == b'"' || x == b'\\')
                        .map(|n| n + from);
                    assert_eq!(
                        lex::quote_or_backslash(&b, from),
                        naive,
                        "{len} {at} {from}"
                    );
                }
            }
        }
    }
    assert_eq!(lex::quote_or_backslash(b"abc", 3), None);
    assert_eq!(lex::quote_or_backslash(b"abc", 4), None);
}

/// Everything a parse gives, as text to compare: each sample (name, labels in order, value
/// bits, timestamps, its family) and each family, or the error.
fn outcome(parsed: &Result<Exposition, ParseError>) -> Result<Vec<String>, ParseError> {
    let exp = parsed.as_ref().map_err(Clone::clone)?;
    let mut out: Vec<String> = exp
        .samples()
        .map(|s| {
            let labels: Vec<_> = s.labels.iter().collect();
            assert_eq!(labels.len(), s.labels.len());
            assert_eq!(labels.is_empty(), s.labels.is_empty());
            format!(
                "{} {labels:?} {:#x} {:?} {:?} {:?}",
                s.name,
                s.value.to_bits(),
                s.timestamp_ms,
                s.start_timestamp_ms,
                exp.family(s.family)
            )
        })
        .collect();
    out.extend(exp.families().map(|f| format!("{f:?}")));
    out.push(format!("first duplicate {:?}", exp.first_duplicate()));
    Ok(out)
}

/// Parses `bodies` in turn with one cache, each compared with a parse without one; returns
/// the cached parses' outcomes.
fn cached_as_cold(bodies: &[&str], limits: &[Limits]) -> Vec<Result<Vec<String>, ParseError>> {
    let mut cache = SeriesTexts::new();
    let mut outcomes = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let limits = limits.get(i).copied().unwrap_or_default();
        let cold = parse(Format::Text, body.as_bytes(), &limits);
        let cached = parse_cached(Format::Text, body.as_bytes(), &limits, &mut cache);
        let got = outcome(&cached);
        assert_eq!(got, outcome(&cold), "body {i}:\n{body}");
        if let Ok(exp) = cached {
            cache.recycle(exp);
        }
        outcomes.push(got);
    }
    outcomes
}

#[test]
fn a_cached_parse_gives_what_a_cold_one_does() {
    let bodies = [
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\nb{x=\"1\",y=\"2\"} 2\n\
         c{q=\"0.5\"} 3\nd{} 4\n",
        // The same lines: other values, timestamps, blanks and tabs around them.
        "# HELP a_total A.\n# TYPE a_total counter\na_total   7 1700000000000\n\
         b{x=\"1\",y=\"2\"}\t+Inf\n  c{q=\"0.5\"} NaN  \nd{} -0.0 -5\n",
        // Labels reordered, a line gone, a new one, escapes, a line twice.
        "b{y=\"2\",x=\"1\"} 2\nb{x=\"1\",y=\"2\"} 3\nb{x=\"1\",y=\"2\"} 4\n\
         e{p=\"a\\\\b\\\"c\\nd\"} 1\ne{p=\"a\\\\b\\\"c\\nd\"} 2\nc{q=\"0.5\"} 1\n",
        // Back again, and shapes the cache does not take.
        "a_total 1\nb{x=\"1\",y=\"2\"} 2\nc { q = \"0.5\" , } 3\n{\"f.g\", h=\"i\"} 4\n\
         c{q=\"0.5\"} 5\n",
        // A name cached alone, now with labels; a set cached, now with more after it.
        "a_total {x=\"1\"} 1\na_total{} 2\na_totally 3\nb{x=\"1\",y=\"2\"}9\n",
        "a_total 1\na_total{x=\"1\"} 2\nb{x=\"1\",y=\"2\"}{z=\"3\"} 3\n",
        "a_total 1\nb{x=\"1\",y=\"2\"}x 3\n",
        "a_total\nb{x=\"1\",y=\"2\"} 3\n",
        "a_total 1\nb{x=\"1\",y=\"2\"} 3 4 5\n",
        "a_total 1\nb{x=\"1\",y=\"2\"} 3 4.5\n",
        "a_total 1\nb{x=\"1\",y=\"2\"} 3",
        "a_total 1\nb{x=\"1\",y=\"2\"} 3\r\n",
        "a_total 1\nb{x=\"1\",y=\"2\"} 3\n",
    ];
    let outcomes = cached_as_cold(&bodies, &[]);
    // Not compared with each other only: the cache's verdicts, written out.
    assert!(outcomes[..5].iter().all(Result::is_ok), "{outcomes:?}");
    let reasons: Vec<_> = outcomes[5..12]
        .iter()
        .map(|o| o.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            Some("line 3: invalid value".into()),
            Some("line 2: invalid value".into()),
            Some("line 1: a sample without a value".into()),
            Some("line 2: text after the timestamp".into()),
            Some("line 2: invalid timestamp (integer milliseconds)".into()),
            Some("line 2: the last line has no newline".into()),
            Some("line 2: invalid value".into()),
        ]
    );
    assert!(outcomes[12].is_ok());
}

#[test]
fn a_cached_line_is_checked_against_the_types_of_this_exposition() {
    let err = |line, reason| Err(ParseError::Malformed { line, reason });
    // Untyped first, then a summary: its quantile label must be a number.
    let got = cached_as_cold(
        &[
            "c{quantile=\"x\"} 1\n",
            "# TYPE c summary\nc{quantile=\"x\"} 1\n",
        ],
        &[],
    );
    assert_eq!(
        got[1],
        err(2, "a summary quantile without a numeric quantile label")
    );
    // The same for a histogram's le.
    let got = cached_as_cold(
        &[
            "h_bucket{le=\"x\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"x\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "h_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        ],
        &[],
    );
    assert_eq!(
        got[1],
        err(2, "a histogram bucket without a numeric le label")
    );
    assert!(got[2].is_ok() && got[3].is_ok());
    // A TYPE that came first, then after the samples it types.
    let got = cached_as_cold(&["# TYPE g gauge\ng 1\n", "g 1\n# TYPE g gauge\n"], &[]);
    assert_eq!(got[1], err(2, "a TYPE line after the metric's samples"));
    // A summary's samples under a new TYPE of their own.
    let got = cached_as_cold(
        &[
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\n",
            "# TYPE s_sum gauge\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\n",
        ],
        &[],
    );
    assert!(got[1].is_ok());
    // sample_limit, reached on a cached line.
    let limit = Limits {
        sample_limit: 2,
        ..Limits::default()
    };
    let got = cached_as_cold(
        &["a 1\nb 1\nc 1\n", "a 1\nb 1\nc 1\n"],
        &[Limits::default(), limit],
    );
    assert_eq!(got[1], Err(ParseError::SampleLimit { limit: 2, line: 3 }));
}

#[test]
fn the_cache_names_each_series_text_and_keeps_only_the_last_exposition() {
    let mut cache = SeriesTexts::new();
    let parse_texts = |cache: &mut SeriesTexts, body: &str| {
        let exp = parse_cached(Format::Text, body.as_bytes(), &Limits::default(), cache).unwrap();
        let texts: Vec<_> = exp.samples().map(|s| s.series_text).collect();
        cache.recycle(exp);
        texts
    };
    let first = parse_texts(
        &mut cache,
        "a 1\nb{x=\"1\"} 2\nb{x=\"1\"} 3\nc{x=\"\\\\\"} 4\n",
    );
    assert!(first[0].is_some() && first[1].is_some());
    assert_eq!(first[1], first[2], "the same text, the same entry");
    assert_ne!(first[0], first[1]);
    assert_eq!(first[3], None, "escapes are lexed every time");
    let second = parse_texts(&mut cache, "b{x=\"1\"} 5\na 6\n");
    assert_eq!(second, [first[1], first[0]]);
    assert_eq!(cache.len(), 2);
    let third = parse_texts(&mut cache, "b{x=\"2\"} 5\n");
    assert_eq!(cache.len(), 1, "the lines of the last exposition only");
    assert!(third[0].is_some());
    // A failed parse keeps those of the last good one too.
    assert!(parse_cached(
        Format::Text,
        b"a 1\nb 1\n!\n",
        &Limits::default(),
        &mut cache
    )
    .is_err());
    assert_eq!(cache.len(), 3);
    // OpenMetrics is not cached.
    let om = parse_cached(
        Format::OpenMetrics,
        b"a 1\n# EOF\n",
        &Limits::default(),
        &mut cache,
    )
    .unwrap();
    assert_eq!(om.sample(0).unwrap().series_text, None);
}
