//! `--dry-run` output: the series of one poll in the Prometheus text format, one sample per line
//! with its millisecond timestamp, sorted by metric name and then labels, so captured
//! summaries give reproducible, reviewable output.

use std::fmt::Write as _;

use crate::remote_write::proto::v1::TimeSeries;
use crate::remote_write::METRIC_NAME_LABEL;
use crate::series::{Point, SeriesSet};

/// One line before sorting: metric name, other labels sorted by name, value, timestamp.
type Line<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64, i64);

/// Renders the points of one poll with the labels the encoder would send: the series' own
/// labels with a value and the common labels.
pub fn render_points(set: &SeriesSet, points: &[Point]) -> String {
    let common = set.common().as_slice();
    let lines = points
        .iter()
        .map(|p| {
            let mut labels: Vec<(&str, &str)> = set
                .labels(p.id)
                .filter(|(_, v)| !v.is_empty())
                .chain(common.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .collect();
            labels.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            (set.name(p.id), labels, p.value, p.timestamp_ms)
        })
        .collect();
    render_lines(lines)
}

/// Renders decoded Remote Write 1.0 series (each with its labels sorted, as encoders send
/// them): what a receiver got, in the same form as `--dry-run`.
pub fn render(series: &[TimeSeries]) -> String {
    let mut lines = Vec::new();
    for ts in series {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == METRIC_NAME_LABEL)
            .map_or("", |l| l.value.as_str());
        let labels: Vec<(&str, &str)> = ts
            .labels
            .iter()
            .filter(|l| l.name != METRIC_NAME_LABEL)
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        for sample in &ts.samples {
            lines.push((name, labels.clone(), sample.value, sample.timestamp));
        }
    }
    render_lines(lines)
}

fn render_lines(mut lines: Vec<Line<'_>>) -> String {
    lines.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    for (name, labels, value, timestamp) in lines {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (n, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{n}=\"{}\"", escape(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {} {}", format_value(value), timestamp);
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Shortest text that reads back as the same float64; integers print without an exponent so
/// byte counts are easy to compare with the summary by eye.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::reference::time_series;
    use crate::remote_write::v1::V1Encoder;
    use crate::remote_write::wire::decode_v1;
    use crate::remote_write::{CommonLabels, Encoder};
    use crate::series::Admit;

    #[test]
    fn renders_sorted_escaped_lines() {
        let c = CommonLabels::new("j", "n", &[]);
        let series = vec![
            time_series("b_metric", [], &c, 1.5, 10),
            time_series(
                "a_metric",
                [("pod", "q\"x\\y\nz")],
                &c,
                18446744073709551615.0,
                20,
            ),
            time_series("a_metric", [("pod", "p")], &c, f64::NAN, 30),
        ];
        assert_eq!(
            render(&series),
            "a_metric{instance=\"n\",job=\"j\",node=\"n\",pod=\"p\"} NaN 30\n\
             a_metric{instance=\"n\",job=\"j\",node=\"n\",pod=\"q\\\"x\\\\y\\nz\"} 18446744073709552000 20\n\
             b_metric{instance=\"n\",job=\"j\",node=\"n\"} 1.5 10\n"
        );
    }

    /// Dry-run output (from the series model) and what a receiver decodes (from the wire)
    /// render alike.
    #[test]
    fn points_render_as_their_encoding_decodes() {
        let mut set = SeriesSet::new(CommonLabels::new("j", "n", &[("zone".into(), "a".into())]));
        set.begin_poll();
        let mut points = Vec::new();
        for (name, labels, v) in [
            ("b", vec![("pod", "p"), ("interface", "")], 1.0),
            ("a", vec![("pod", "q\"")], f64::NAN),
            ("a", vec![], 2.5),
        ] {
            let Admit::Send(id) = set.admit(name, &labels, 7) else {
                panic!("new series")
            };
            points.push(Point {
                id,
                value: v,
                timestamp_ms: 7,
                start_ms: 0,
            });
        }
        let mut requests = Vec::new();
        V1Encoder::new()
            .encode(&set, &points, 2, &mut requests)
            .unwrap();
        let decoded: Vec<TimeSeries> = requests
            .iter()
            .flat_map(|r| decode_v1(&r.body).unwrap().timeseries)
            .collect();
        assert_eq!(render_points(&set, &points), render(&decoded));
        assert!(render(&decoded)
            .contains("b{instance=\"n\",job=\"j\",node=\"n\",pod=\"p\",zone=\"a\"} 1 7\n"));
    }
}
