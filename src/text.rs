//! `--dry-run` output: the series of one poll in the Prometheus text format, one sample per line
//! with its millisecond timestamp, sorted by metric name and then labels, so captured
//! summaries give reproducible, reviewable output.

use std::fmt::Write as _;

use crate::remote_write::proto::v1::TimeSeries;
use crate::remote_write::METRIC_NAME_LABEL;

/// A series ready to print: metric name, other labels, the series itself.
type Line<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a TimeSeries);

/// Renders `series` (each with its labels sorted, as the encoder builds them).
pub fn render(series: &[TimeSeries]) -> String {
    let mut lines: Vec<Line<'_>> = series
        .iter()
        .map(|ts| {
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == METRIC_NAME_LABEL)
                .map_or("", |l| l.value.as_str());
            let labels = ts
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME_LABEL)
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            (name, labels, ts)
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    for (name, labels, ts) in lines {
        for sample in &ts.samples {
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
            let _ = writeln!(out, " {} {}", format_value(sample.value), sample.timestamp);
        }
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
    use crate::remote_write::encode::{time_series, CommonLabels};

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
}
