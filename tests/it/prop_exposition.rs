//! Property tests of the exposition parsers: arbitrary bytes, and real bodies with bytes
//! flipped, cut or appended, never panic either parser, and no allocation (nor the peak of
//! live memory) goes beyond a bound linear in the input; generated valid expositions, rendered
//! in either format, parse back to the samples they were made from.

use std::fmt::Write as _;

use kubelet_push::exposition::{parse, Format, Limits};
use proptest::prelude::*;

use crate::alloc::{largest_allocation, peak_bytes};
use crate::prop_buffer::cases;

/// Per input byte at most one 48-byte sample, a 16-byte label and a copied string, each in a
/// vector that may double: anything linear passes, a length believed from the input does not.
fn bound(input: usize) -> usize {
    (256 << 10) + input * 256
}

fn parse_both(body: &[u8]) -> (usize, usize) {
    let limits = Limits::default();
    let (peak, largest) = peak_bytes(|| {
        largest_allocation(|| {
            let _ = parse(Format::Text, body, &limits);
            let _ = parse(Format::OpenMetrics, body, &limits);
        })
        .0
    });
    (peak, largest)
}

fn real_body() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/expositions/prometheus-textparse/alltypes.5mfs.om.txt"
    ))
    .expect("fixture")
}

/// A sample as generated: name, labels, value, timestamp in ms.
type Generated = (String, Vec<(String, String)>, f64, Option<i64>);

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn samples() -> impl Strategy<Value = Vec<Generated>> {
    let value = prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -1e6f64..1e6
    ];
    let label = ("[a-z_][a-z0-9_]{0,6}", "\\PC{0,8}|[\\\\\"\n a]{0,6}");
    let name = "[a-z_:][a-z0-9_:]{0,8}|[a-z]{1,3}\\.[a-z]{1,3}";
    prop::collection::vec(
        (
            name,
            prop::collection::vec(label, 0..4),
            value,
            prop::option::of(0i64..4_000_000_000),
        ),
        1..12,
    )
    .prop_map(|mut samples| {
        // Unique family names, unique label names, and a label that tells samples apart
        // (OpenMetrics wants each metric point once).
        for (i, (name, labels, _, _)) in samples.iter_mut().enumerate() {
            name.push_str(&format!("_f{i}"));
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            labels.dedup_by(|a, b| a.0 == b.0);
            labels.retain(|(n, _)| n != "__name__");
        }
        samples
    })
}

fn render(samples: &[Generated], format: Format) -> String {
    let mut out = String::new();
    for (name, labels, value, ts) in samples {
        let legacy = !name.contains('.');
        let shown = if legacy {
            name.clone()
        } else {
            format!("\"{name}\"")
        };
        let _ = writeln!(out, "# TYPE {shown} gauge");
        let mut set: Vec<String> = labels
            .iter()
            .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
            .collect();
        if !legacy {
            set.insert(0, shown.clone());
        }
        let head = if legacy { name.as_str() } else { "" };
        let braces = if set.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", set.join(","))
        };
        let _ = write!(out, "{head}{braces} {}", number(*value));
        match (ts, format) {
            (Some(ms), Format::Text) => {
                let _ = write!(out, " {ms}");
            }
            // Whole seconds: OpenMetrics' float seconds become milliseconds truncated, as in
            // Prometheus, so 1.001 s may read as 1000 ms.
            (Some(ms), Format::OpenMetrics) => {
                let _ = write!(out, " {}", ms / 1000);
            }
            (None, _) => {}
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (peak, largest) = parse_both(&body);
        prop_assert!(largest <= bound(body.len()), "{largest} for {} bytes", body.len());
        prop_assert!(peak <= 4 * bound(body.len()), "{peak} for {} bytes", body.len());
    }

    #[test]
    fn damaged_real_bodies_never_panic(
        at in any::<prop::sample::Index>(),
        cut in any::<bool>(),
        junk in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut body = real_body();
        let i = at.index(body.len());
        if cut {
            body.truncate(i);
        }
        body.splice(i..i, junk);
        let (peak, largest) = parse_both(&body);
        prop_assert!(largest <= bound(body.len()));
        prop_assert!(peak <= 4 * bound(body.len()));
    }

    #[test]
    fn rendered_expositions_parse_back(samples in samples(), om in any::<bool>()) {
        let format = if om { Format::OpenMetrics } else { Format::Text };
        let body = render(&samples, format);
        let exp = parse(format, body.as_bytes(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
        prop_assert_eq!(exp.len(), samples.len());
        for (got, (name, labels, value, ts)) in exp.samples().zip(&samples) {
            prop_assert_eq!(got.name, name.as_str());
            let got_labels: Vec<(String, String)> =
                got.labels.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            prop_assert_eq!(&got_labels, labels);
            prop_assert!(got.value.to_bits() == value.to_bits() || (got.value.is_nan() && value.is_nan()));
            let want = ts.map(|ms| if om { ms / 1000 * 1000 } else { ms });
            prop_assert_eq!(got.timestamp_ms, want);
        }
    }
}
