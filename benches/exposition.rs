//! The scrape parser against the yardstick: merely splitting the body into lines.
//!
//! Inputs, each in its own group with its own yardstick so that the ratio is read off one group:
//! - `node-exporter-10k`: a node_exporter-shaped exposition of 10 000 series, made from the real
//!   node_exporter fixture by repeating each sample line with an extra `copy` label (the
//!   issue's target: parse + convert within 3× of the yardstick). "parse + convert" reads
//!   every sample's name, labels and value as a converter must (hashing them, as the series
//!   model does for its ids), on top of parsing.
//! - `node-exporter-10k-om`: the same series as OpenMetrics (counter families named without
//!   `_total`, `untyped` metadata dropped, `# EOF`), for the OpenMetrics parser.
//! - `windows-exporter`: the real windows_exporter capture (long label values, `\\` escapes).
//! - `kubelet-resource`: the kubelet's `/metrics/resource` (millisecond timestamps).
//!
//! - `scrape-node-exporter-10k`: `benches/scrape.py`'s 10 000-series node_exporter exposition
//!   (`tests/fixtures/expositions/node_exporter_10k.prom`, 952 KB) against its yardstick
//!   (`yardstick_split_lines_bytes`):
//!   - `parse`: the parser alone, without a cache: every line lexed.
//!   - `parse_cached`: the parser with a warm series-text cache (`SeriesTexts`), as the scrape
//!     loop calls it: every line was in the last exposition, so only values are read.
//!   - `parse_convert`: the scrape loop's real conversion, `scrape::scraper::Scraper::ingest`
//!     (parse with the target's cache, the target's labels, series ids, dedupe, the
//!     per-target series and staleness), as every scrape after the first does it: series and
//!     lines known, each sample sent (its time is new), the output handed back
//!     (`Scraper::recycle`) as the scrape task does once it is encoded. The target
//!     (within 3× of the yardstick) is read off this one.
//!   - `parse_convert_cold`: the same for a target's first scrape: a new `Scraper` each time,
//!     every line lexed, every series and series text new (the scraper's making and dropping
//!     are not measured).
//!
//!   Encoding and compression are not in it (the kubelet path's `pipeline` bench has those).
//!
//! `cargo bench --bench exposition`.
//!
//! Reading a ratio: the yardstick is one loop of 22 bytes of machine code, and its time
//! depends on where the linker puts it. On the AMD EPYC these figures come from, the same
//! instructions took 0.38–0.43 ms where the loop sat within one 64-byte line and 0.67–0.79 ms
//! where it straddled two (the release profile optimises for size and does not align loops),
//! so a change anywhere in the bench binary can move the yardstick by 1.7× and every ratio
//! with it. Before reading a ratio off a new build, look at where the loop is:
//! `perf record -- <bench binary> --bench --profile-time 2 scrape-node-exporter-10k/yardstick`,
//! then `perf annotate` shows the `cmpb $0xa` loop's addresses.

use std::hash::{BuildHasher, Hash, Hasher};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kubelet_push::exposition::{parse, Exposition, Format, Limits};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/expositions/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The node_exporter fixture's sample lines repeated with `copy="1"`, `copy="2"`, … until
/// there are `series` samples (comments kept once).
pub fn node_exporter_shaped(series: usize) -> Vec<u8> {
    let fixture = fixture("node_exporter__e2e-output.txt");
    let samples = fixture.lines().filter(|l| !l.starts_with('#')).count();
    let copies = series.div_ceil(samples);
    let mut out = String::new();
    let mut written = 0;
    for line in fixture.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        for copy in 0..copies {
            if written == series {
                break;
            }
            written += 1;
            if copy == 0 {
                out.push_str(line);
            } else if let Some(brace) = line.find('{') {
                out.push_str(&line[..=brace]);
                out.push_str(&format!("copy=\"{copy}\","));
                out.push_str(&line[brace + 1..]);
            } else if let Some(space) = line.find(' ') {
                out.push_str(&line[..space]);
                out.push_str(&format!("{{copy=\"{copy}\"}}"));
                out.push_str(&line[space..]);
            }
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// [`node_exporter_shaped`] as OpenMetrics: a counter family is named without its samples'
/// `_total`, `untyped` families lose their metadata (they become `unknown`), metadata with no
/// samples is left out, `# EOF` ends it.
pub fn node_exporter_shaped_om(series: usize) -> Vec<u8> {
    let text = String::from_utf8(node_exporter_shaped(series)).expect("utf-8");
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Metadata comes as HELP then TYPE: decide on both together.
            let typ = lines.next().expect("a TYPE after each HELP");
            let kind = typ.rsplit(' ').next().unwrap_or_default();
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if lines.peek().is_none_or(|next| next.starts_with('#')) {
                // Metadata with no samples (the fixture has the Go runtime's): OpenMetrics
                // would take it as a family of its own, clashing with later names.
                continue;
            }
            match kind {
                "untyped" => {}
                "counter" => {
                    let base = name.strip_suffix("_total").expect("counters end in _total");
                    out.push_str(&format!("# HELP {base} {help}\n# TYPE {base} counter\n"));
                }
                _ => out.push_str(&format!("{line}\n{typ}\n")),
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out.into_bytes()
}

/// What a converter does at least: read every sample's name, labels and value.
fn convert(exp: &Exposition) -> u64 {
    let state = foldhash::fast::FixedState::default();
    let mut total = 0u64;
    for s in exp.samples() {
        let mut h = state.build_hasher();
        s.name.hash(&mut h);
        for (name, value) in s.labels.iter() {
            name.hash(&mut h);
            value.hash(&mut h);
        }
        total = total.wrapping_add(h.finish() ^ s.value.to_bits());
    }
    total
}

fn group(c: &mut Criterion, name: &str, format: Format, body: &[u8], samples: usize) {
    let limits = Limits::default();
    let parsed = parse(format, body, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(parsed.len(), samples, "{name}");
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("yardstick_split_lines_bytes", |b| {
        b.iter(|| black_box(body).split(|&c| c == b'\n').count())
    });
    group.bench_function("yardstick_split_lines_str", |b| {
        b.iter(|| {
            std::str::from_utf8(black_box(body))
                .expect("utf-8")
                .split('\n')
                .count()
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| parse(format, black_box(body), &limits).expect("parses"))
    });
    group.bench_function("parse_convert", |b| {
        b.iter(|| convert(&parse(format, black_box(body), &limits).expect("parses")))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let body = node_exporter_shaped(10_000);
    group(c, "node-exporter-10k", Format::Text, &body, 10_000);
    let body = node_exporter_shaped_om(10_000);
    group(
        c,
        "node-exporter-10k-om",
        Format::OpenMetrics,
        &body,
        10_000,
    );
    let body = fixture("windows_exporter__nri-winservices-actual-output.txt").into_bytes();
    group(c, "windows-exporter", Format::Text, &body, 3_602);
    let body = fixture("kubelet__metrics_resource__metrics-server-test.txt").into_bytes();
    group(c, "kubelet-resource", Format::Text, &body, 283);
}

/// The scrape loop's conversion of a whole exposition against the yardstick (see the module
/// doc).
fn scrape(c: &mut Criterion) {
    use kubelet_push::exposition::{parse_cached, SeriesTexts};
    use kubelet_push::scrape::scraper::{Answer, Labelling, Scraper};
    let body = fixture("node_exporter_10k.prom").into_bytes();
    let labelling = Labelling {
        job: "node".into(),
        instance: "127.0.0.1:9100".into(),
        node: "node-1".into(),
        extra: vec![("cluster".into(), "edge".into())],
        honor_labels: false,
        honor_timestamps: true,
        limits: Limits::default(),
    };
    let answer = Answer {
        body: &body,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
    };
    let mut scraper = Scraper::new(labelling.clone(), None);
    let mut at = 1_700_000_000_000i64;
    let first = scraper.ingest(Ok(answer), at, std::time::Duration::ZERO);
    assert!(first.error.is_none());
    assert_eq!(first.scraped, 10_000);
    scraper.recycle(first);
    let mut texts = SeriesTexts::new();
    let parsed = parse_cached(Format::Text, &body, &Limits::default(), &mut texts);
    texts.recycle(parsed.expect("parses"));
    let mut group = c.benchmark_group("scrape-node-exporter-10k");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("yardstick_split_lines_bytes", |b| {
        b.iter(|| black_box(&body).split(|&c| c == b'\n').count())
    });
    group.bench_function("parse", |b| {
        b.iter(|| parse(Format::Text, black_box(&body), &Limits::default()).expect("parses"))
    });
    group.bench_function("parse_cached", |b| {
        b.iter(|| {
            let exposition = parse_cached(
                Format::Text,
                black_box(&body),
                &Limits::default(),
                &mut texts,
            )
            .expect("parses");
            assert_eq!(exposition.len(), 10_000);
            texts.recycle(exposition);
        })
    });
    group.bench_function("parse_convert", |b| {
        b.iter(|| {
            at += 1000;
            let out = scraper.ingest(Ok(black_box(answer)), at, std::time::Duration::ZERO);
            // Every series sent: the scrape's time is new for all of them.
            assert_eq!(out.points.len(), 10_005);
            // As the scrape task does once the points are encoded.
            scraper.recycle(out);
        })
    });
    group.bench_function("parse_convert_cold", |b| {
        b.iter_batched(
            || Scraper::new(labelling.clone(), None),
            |mut cold| {
                let out = cold.ingest(Ok(black_box(answer)), at, std::time::Duration::ZERO);
                assert_eq!(out.points.len(), 10_005);
                // Dropped after the measurement, with the scraper.
                (cold, out)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench, scrape);
criterion_main!(benches);
