//! The series-text cache (`exposition::SeriesTexts`, kept by each scrape target) against its
//! absence, on generated sequences of text expositions: series that come and go, labels in a
//! new order, escapes, blanks, values and timestamps of every kind, TYPE lines that come and go
//! or come too late, summaries and histograms whose required labels are or are not numbers,
//! names that collide with the target's labels, malformed lines, `sample_limit`. Each parse
//! with the cache must give what a parse without it gives (the same samples or the same error
//! on the same line), and each scrape of a scraper with it must send exactly what one without
//! it sends (the same points, series ids, counts, 1.0 and 2.0 bytes).

use std::time::Duration;

use kubelet_push::exposition::SeriesTexts;
use kubelet_push::exposition::{parse, parse_cached, Exposition, Format, Limits, ParseError};
use kubelet_push::remote_write::Protocol;
use kubelet_push::rng::SplitMix64;
use kubelet_push::scrape::scraper::{Answer, Labelling, ScrapeOutput, Scraper};
use proptest::prelude::*;

use crate::prop_buffer::cases;

const T0: i64 = 1_700_000_000_000;

fn pick<'a>(rng: &mut SplitMix64, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

/// A series: a name and its labels, in their first order.
type Series = (&'static str, Vec<(&'static str, &'static str)>);

fn pool(rng: &mut SplitMix64) -> Vec<Series> {
    const NAMES: &[&str] = &[
        "a", "a_total", "s", "s_sum", "s_count", "h_bucket", "h_count", "h_sum", "g", "job",
    ];
    const LABELS: &[&str] = &[
        "x",
        "y",
        "le",
        "quantile",
        "job",
        "instance",
        "exported_job",
    ];
    const VALUES: &[&str] = &[
        "", "1", "0.5", "+Inf", "v", "a\\\\b", "q\\\"", "NaN", "n\\nl",
    ];
    (0..rng.range(1, 12))
        .map(|_| {
            let name = pick(rng, NAMES);
            let mut labels: Vec<(&str, &str)> = Vec::new();
            for _ in 0..rng.below(4) {
                let label = pick(rng, LABELS);
                if !labels.iter().any(|(n, _)| *n == label) {
                    labels.push((label, pick(rng, VALUES)));
                }
            }
            (name, labels)
        })
        .collect()
}

/// One exposition of some of the pool's series, in some order, each line in some form.
fn body(rng: &mut SplitMix64, pool: &[Series]) -> String {
    let mut out = String::new();
    let types = [
        ("s", "summary"),
        ("h", "histogram"),
        ("a_total", "counter"),
        ("g", "gauge"),
        ("h_bucket", "gauge"),
    ];
    let mut late = Vec::new();
    for (name, kind) in types {
        match rng.below(12) {
            0..=3 => out.push_str(&format!("# TYPE {name} {kind}\n")),
            4 => late.push(format!("# TYPE {name} {kind}\n")),
            _ => {}
        }
    }
    if rng.below(4) == 0 {
        out.push_str("# HELP g Some help.\n");
    }
    let mut lines = Vec::new();
    for (name, labels) in pool {
        if rng.below(4) == 0 {
            continue;
        }
        let mut labels = labels.clone();
        if rng.below(4) == 0 {
            labels.reverse();
        }
        let lead = if rng.below(10) == 0 { " " } else { "" };
        let gap = if rng.below(10) == 0 { " \t" } else { " " };
        let set = match (labels.is_empty(), rng.below(8)) {
            (true, 0) => "{}".to_owned(),
            (true, _) => String::new(),
            (false, 0) => format!(
                "{{ {} ,}}",
                labels
                    .iter()
                    .map(|(n, v)| format!("{n} = \"{v}\""))
                    .collect::<Vec<_>>()
                    .join(" , ")
            ),
            (false, _) => format!(
                "{{{}}}",
                labels
                    .iter()
                    .map(|(n, v)| format!("{n}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        // Now and then a value or timestamp the text format refuses.
        let value = match rng.below(40) {
            0 => "0x1",
            _ => pick(
                rng,
                &[
                    "1",
                    "-2.5",
                    "NaN",
                    "+Inf",
                    "-Inf",
                    "1e3",
                    "7",
                    "12345678901234567890",
                ],
            ),
        };
        let timestamp = match rng.below(40) {
            0 => format!("{gap}1.5"),
            1..=5 => format!("{gap}{}", T0 - 5000),
            6 | 7 => format!("{gap}{}", T0 + 86_400_000),
            _ => String::new(),
        };
        let line = format!("{lead}{name}{set}{gap}{value}{timestamp}\n");
        lines.push(line.clone());
        if rng.below(12) == 0 {
            // The same line twice.
            lines.push(line);
        }
    }
    if rng.below(4) == 0 {
        let i = rng.below(lines.len() as u64 + 1) as usize;
        lines.insert(i, lines.get(i).cloned().unwrap_or_default());
    }
    for line in lines {
        out.push_str(&line);
    }
    for line in late {
        out.push_str(&line);
    }
    match rng.below(16) {
        0 => out.push_str("broken{\n"),
        1 => out.push_str("g 1"),
        _ => {}
    }
    out
}

/// A parse's samples and families as text, or its error.
fn outcome(parsed: &Result<Exposition, ParseError>) -> Result<Vec<String>, ParseError> {
    let exp = parsed.as_ref().map_err(Clone::clone)?;
    let mut out: Vec<String> = exp
        .samples()
        .map(|s| {
            let labels: Vec<_> = s.labels.iter().collect();
            format!(
                "{} {labels:?} {:#x} {:?} {:?}",
                s.name,
                s.value.to_bits(),
                s.timestamp_ms,
                exp.family(s.family)
            )
        })
        .collect();
    out.extend(exp.families().map(|f| format!("{f:?}")));
    Ok(out)
}

/// Everything a scrape gave: points (series ids included), counts, error, the `--dry-run`
/// text, the 1.0 and 2.0 bodies.
fn everything(s: &mut Scraper, out: &ScrapeOutput) -> String {
    let points: Vec<_> = out
        .points
        .iter()
        .map(|p| (p.id, p.value.to_bits(), p.timestamp_ms, p.start_ms))
        .collect();
    let mut all = format!(
        "{points:?}\n{} {} {} {:?}\n{}",
        out.scraped,
        out.duplicates,
        out.future,
        out.error,
        s.render_text(out)
    );
    for protocol in [Protocol::V1, Protocol::V2] {
        for r in s.encode_as(protocol, out, 5).expect("encodes") {
            all.push_str(&format!("{:?}\n", r.body));
        }
    }
    all
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let mut rng = SplitMix64::new(seed);
    let pool = pool(&mut rng);
    let limits = Limits {
        sample_limit: if rng.below(4) == 0 { 6 } else { 0 },
        ..Limits::default()
    };
    let labelling = Labelling {
        job: "node".into(),
        instance: "127.0.0.1:9100".into(),
        node: "n1".into(),
        extra: vec![("cluster".into(), "c1".into())],
        honor_labels: rng.below(2) == 0,
        honor_timestamps: rng.below(4) != 0,
        limits,
    };
    let mut cached = Scraper::new(labelling.clone(), None);
    let mut reference = Scraper::without_cache(labelling, None);
    let mut texts = SeriesTexts::new();
    for scrape in 0..rng.range(2, 7) {
        let body = body(&mut rng, &pool);
        let cold = parse(Format::Text, body.as_bytes(), &limits);
        let warm = parse_cached(Format::Text, body.as_bytes(), &limits, &mut texts);
        prop_assert_eq!(
            outcome(&warm),
            outcome(&cold),
            "seed {} scrape {}:\n{}",
            seed,
            scrape,
            body
        );
        if let Ok(exp) = warm {
            texts.recycle(exp);
        }
        let at = T0 + 1000 * scrape as i64;
        let answer = Answer {
            body: body.as_bytes(),
            content_type: "text/plain; version=0.0.4",
        };
        let got = cached.ingest(Ok(answer), at, Duration::from_millis(3));
        let want = reference.ingest(Ok(answer), at, Duration::from_millis(3));
        prop_assert_eq!(
            everything(&mut cached, &got),
            everything(&mut reference, &want),
            "seed {} scrape {}:\n{}",
            seed,
            scrape,
            body
        );
        cached.recycle(got);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn the_cache_changes_nothing(seed in any::<u64>()) {
        check(seed)?;
    }
}

/// The generator makes what the property is about, often enough: cached lines, errors of
/// every kind, sample_limit reached.
#[test]
fn the_generated_cases_cover_the_cache() {
    let (mut cached_lines, mut failed, mut ok) = (0, 0, 0);
    for seed in 0..300 {
        let mut rng = SplitMix64::new(seed);
        let pool = pool(&mut rng);
        let mut texts = SeriesTexts::new();
        for _ in 0..4 {
            let body = body(&mut rng, &pool);
            match parse_cached(
                Format::Text,
                body.as_bytes(),
                &Limits::default(),
                &mut texts,
            ) {
                Ok(exp) => {
                    ok += 1;
                    cached_lines += exp.samples().filter(|s| s.series_text.is_some()).count();
                    texts.recycle(exp);
                }
                Err(_) => failed += 1,
            }
        }
    }
    assert!(cached_lines > 1000, "{cached_lines}");
    assert!(ok > 400 && failed > 300, "{ok} parsed, {failed} failed");
}
