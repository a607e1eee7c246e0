//! The scrape parser against the yardstick: merely splitting the body into lines.
//! Input: a node_exporter-shaped exposition of 10 000 series, made from the real node_exporter
//! fixture by repeating each sample line with an extra `copy` label. "parse + convert" reads
//! every sample's name, labels and value as a converter must (hashing them, as the series
//! model does for its ids), on top of parsing.
//!
//! `cargo bench --bench exposition`.

use std::hash::{BuildHasher, Hash, Hasher};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubelet_push::exposition::{parse, Exposition, Format, Limits};

/// The node_exporter fixture's sample lines repeated with `copy="1"`, `copy="2"`, … until
/// there are `series` samples (comments kept once).
pub fn node_exporter_shaped(series: usize) -> Vec<u8> {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/expositions/node_exporter__e2e-output.txt"
    ))
    .expect("fixture");
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

fn bench(c: &mut Criterion) {
    let body = node_exporter_shaped(10_000);
    let limits = Limits::default();
    let parsed = parse(Format::Text, &body, &limits).expect("parses");
    assert_eq!(parsed.len(), 10_000);
    let mut group = c.benchmark_group("node-exporter-10k");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("yardstick_split_lines_bytes", |b| {
        b.iter(|| black_box(&body).split(|&c| c == b'\n').count())
    });
    group.bench_function("yardstick_split_lines_str", |b| {
        b.iter(|| {
            std::str::from_utf8(black_box(&body))
                .expect("utf-8")
                .split('\n')
                .count()
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| parse(Format::Text, black_box(&body), &limits).expect("parses"))
    });
    group.bench_function("parse_convert", |b| {
        b.iter(|| convert(&parse(Format::Text, black_box(&body), &limits).expect("parses")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
