//! Property tests of the summary parser and converter on mutated real summaries (every
//! fixture in `tests/fixtures/summaries/` and a simulated Windows node): numbers turned into
//! strings, booleans, objects, arrays, numbers past float64 or negative; times turned into
//! garbage or year 9999; sections swapped for other types or deleted; keys repeated; documents
//! cut short or nested deeper than the parser allows.
//!
//! Invariants: nothing panics; a value of the wrong type costs exactly what a missing value
//! costs (the document converts to the same samples as with `null` there), so every intact
//! value is still converted; a time from the future drags no other sample forward; what a poll
//! allocates is bounded by the document's size; a poll logs at most one line per kind of
//! trouble, never one per value.
//!
//! 256 cases per property by default (a few seconds); `PROPTEST_CASES=100000 cargo test
//! --release --test it summary_props` for a long run (docs/robustness.md has one's figures).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use kubelet_push::kubelet::summary;
use kubelet_push::pipeline::convert::{self, Sample};
use kubelet_push::pipeline::Poller;
use kubelet_push::remote_write::Protocol;
use kubelet_push::telemetry::Metrics;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use crate::alloc::peak_bytes;
use crate::support::{config, Logs};

/// A poll time after every fixture's times, and the horizon a poller at that time uses.
const POLL_MS: i64 = 1_800_000_000_000;
const HORIZON_MS: i64 = POLL_MS + convert::FUTURE_ALLOWANCE_MS;

/// Marks a string to be written into the JSON text as it is, unquoted: what a `Value` cannot
/// hold (`1e400`, a repeated key, nesting past the limit).
const RAW: &str = "\u{1}RAW:";

struct Doc {
    name: String,
    value: Value,
}

fn docs() -> &'static [Doc] {
    static DOCS: OnceLock<Vec<Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/summaries");
        let mut docs: Vec<Doc> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| Doc {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                value: serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            })
            .collect();
        docs.sort_by(|a, b| a.name.cmp(&b.name));
        let booted = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sim = kubelet_push::testkit::simulator::SimulatedKubelet::new(8, 5, booted)
            .summary_json(booted + Duration::from_secs(3600));
        docs.push(Doc {
            name: "simulated".into(),
            value: serde_json::from_str(&sim).unwrap(),
        });
        assert!(docs.len() >= 12, "{} documents", docs.len());
        docs
    })
}

/// The JSON text of `v`, with [`RAW`] strings written unquoted.
fn text(v: &Value) -> String {
    let json = serde_json::to_string(v).unwrap();
    let marker = "\"\\u0001RAW:";
    let mut out = String::with_capacity(json.len());
    let mut rest = json.as_str();
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        // The closing quote: the first one not escaped.
        let bytes = after.as_bytes();
        let mut end = 0;
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let raw: String = serde_json::from_str(&format!("\"{}\"", &after[..end])).unwrap();
        out.push_str(&raw);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every node below the root, as the path of keys and indexes that reaches it.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    At(usize),
}

fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(Step::Key(k.clone()));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(Step::At(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn all_paths(v: &Value) -> Vec<Vec<Step>> {
    let mut out = Vec::new();
    paths(v, &mut Vec::new(), &mut out);
    out
}

/// The node at `path`, unless an earlier mutation replaced it or one of its parents.
fn node_mut<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::At(i) => v.get_mut(*i),
    })
}

/// What replaces a node.
#[derive(Clone, Debug)]
enum Bad {
    /// A string where a number belongs (only put on numbers).
    QuotedNumber,
    Number,
    Bool,
    EmptyObject,
    EmptyArray,
    /// `1e400` or `-1e400`: past float64.
    Huge(bool),
    /// Not RFC 3339 (only put on `time` / `startTime` strings).
    GarbageTime,
}

/// One value of the wrong type, or a section of the wrong type.
fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        Just(Bad::QuotedNumber),
        Just(Bad::Number),
        Just(Bad::Bool),
        Just(Bad::EmptyObject),
        Just(Bad::EmptyArray),
        any::<bool>().prop_map(Bad::Huge),
        Just(Bad::GarbageTime),
    ]
}

/// The replacement for `node`, or `None` when this kind does not fit it.
fn replacement(bad: &Bad, node: &Value, key: Option<&str>) -> Option<Value> {
    let is_time = matches!(key, Some("time" | "startTime"));
    Some(match bad {
        Bad::QuotedNumber => Value::String(node.as_f64()?.to_string()),
        Bad::Number => 12.into(),
        Bad::Bool => true.into(),
        Bad::EmptyObject => Value::Object(Default::default()),
        Bad::EmptyArray => Value::Array(Vec::new()),
        // serde_json refuses a number past float64 wherever it stands; only the lenient
        // number reads its token first, so only a number may become one (the limit is in
        // kubelet::summary's module doc).
        Bad::Huge(negative) if node.is_number() => {
            Value::String(format!("{RAW}{}1e400", if *negative { "-" } else { "" }))
        }
        Bad::Huge(_) => return None,
        Bad::GarbageTime if is_time => "2024-13-45T99:00:00Z".into(),
        Bad::GarbageTime => return None,
    })
    .filter(|v| !(v.is_string() && node.is_string() && !is_time))
    .filter(|v| !(v.is_number() && node.is_number()))
    .filter(|v| !(v.is_object() && node.is_object()))
    .filter(|v| !(v.is_array() && node.is_array()))
}

/// Every sample of a document as `(name{labels}, value bits, timestamp)`, sorted, or the
/// parse error's text.
fn samples(doc: &str) -> Result<Vec<(String, u64, i64)>, String> {
    let s = summary::parse(doc.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    convert::convert_until(
        &s,
        Default::default(),
        POLL_MS,
        120_000,
        HORIZON_MS,
        &mut |x: &Sample<'_>| {
            let labels: Vec<String> = x.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.push((
                format!("{}{{{}}}", x.name, labels.join(",")),
                x.value.to_bits(),
                x.timestamp_ms,
            ))
        },
    );
    out.sort();
    Ok(out)
}

fn doc_and_path() -> impl Strategy<Value = (usize, Index)> {
    (0..docs().len(), any::<Index>())
}

/// A poller that has already seen the node once (so a changed name is the only thing that
/// could log), with its log lines captured.
fn ingest_twice(doc: &str) -> (usize, usize) {
    let cfg = config(&["--kubelet-url", "file://unused.json", "--dry-run"]);
    let mut p = Poller::new(&cfg.poll, Arc::new(Metrics::new())).unwrap();
    let (logs, _guard) = Logs::capture();
    let (peak, ()) = peak_bytes(|| {
        for i in 0..2 {
            let out = p.ingest(Ok(doc.as_bytes()), POLL_MS + i * 10_000, Instant::now());
            let requests = p.encode_as(Protocol::V1, &out, 2000).unwrap();
            assert!(!requests.is_empty());
        }
    });
    (peak, logs.text().lines().count())
}

fn config_cases() -> ProptestConfig {
    // PROPTEST_CASES overrides this default (proptest reads it itself).
    let default = ProptestConfig::default();
    ProptestConfig {
        failure_persistence: None,
        // A mutation that fits nothing in the drawn document is rejected, about one case in
        // ten: proptest's fixed limit of 1024 would end a long run early.
        max_global_rejects: default.max_global_rejects.max(default.cases),
        ..default
    }
}

proptest! {
    #![proptest_config(config_cases())]

    /// A value or section of the wrong type costs exactly what `null` there costs: every
    /// other value is converted as before.
    #[test]
    fn a_wrong_type_costs_what_null_costs(
        (d, at) in doc_and_path(),
        bad in bad(),
        extra in prop::collection::vec((any::<Index>(), bad()), 0..6),
    ) {
        let doc = &docs()[d];
        let mut mutated = doc.value.clone();
        let mut nulled = doc.value.clone();
        let paths = all_paths(&doc.value);
        let mut changed = 0;
        for (at, bad) in std::iter::once((at, bad)).chain(extra) {
            let path = at.get(&paths);
            let key = match path.last() { Some(Step::Key(k)) => Some(k.as_str()), _ => None };
            // A node replaced before, or inside one, is left alone (`null` marks it).
            let Some(n) = node_mut(&mut nulled, path).filter(|n| !n.is_null()) else { continue };
            let Some(v) = replacement(&bad, n, key) else { continue };
            *n = Value::Null;
            if let Some(node) = node_mut(&mut mutated, path) {
                *node = v;
            }
            changed += 1;
        }
        prop_assume!(changed > 0);
        let got = samples(&text(&mutated));
        let want = samples(&text(&nulled));
        prop_assert!(want.is_ok(), "{}: null variant failed: {:?}", doc.name, want);
        let (got, want) = (got.unwrap_or_default(), want.unwrap_or_default());
        prop_assert!(
            got == want,
            "{}: only with the bad value {:?}; only with null {:?}; text {}",
            doc.name,
            got.iter().filter(|s| !want.contains(s)).collect::<Vec<_>>(),
            want.iter().filter(|s| !got.contains(s)).collect::<Vec<_>>(),
            text(&mutated).chars().take(3000).collect::<String>()
        );
    }

    /// A negative number: dropped when it is a counter's, passed on otherwise; nothing else
    /// changes.
    #[test]
    fn a_negative_number_changes_only_its_own_sample((d, at) in doc_and_path()) {
        let doc = &docs()[d];
        let paths = all_paths(&doc.value);
        let path = at.get(&paths);
        let mut mutated = doc.value.clone();
        let node = node_mut(&mut mutated, path).unwrap();
        let Some(v) = node.as_f64().filter(|v| *v > 0.0) else { return Ok(()) };
        *node = (-v).into();
        let mut nulled = doc.value.clone();
        *node_mut(&mut nulled, path).unwrap() = Value::Null;
        let got = samples(&text(&mutated)).unwrap();
        let without = samples(&text(&nulled)).unwrap();
        let extra: Vec<_> = got.iter().filter(|s| !without.contains(s)).collect();
        prop_assert!(without.iter().all(|s| got.contains(s)), "{}", doc.name);
        // One value makes at most two samples (a volume and its claim; swap under two names).
        prop_assert!(extra.len() <= 2, "{}: {extra:?}", doc.name);
        for (name, bits, _) in extra {
            prop_assert_eq!(f64::from_bits(*bits), -v);
            let kind = kubelet_push::metadata::family(name.split('{').next().unwrap()).map(|f| f.kind);
            prop_assert_ne!(kind, Some(kubelet_push::metadata::MetricType::Counter), "{}", name);
        }
    }

    /// A section stamped in year 9999 drags nothing forward: every other sample stays at or
    /// before the newest believable time, and only its own samples are past the horizon.
    #[test]
    fn a_time_from_the_future_moves_nothing_else((d, at) in doc_and_path()) {
        let doc = &docs()[d];
        let paths: Vec<_> = all_paths(&doc.value)
            .into_iter()
            .filter(|p| matches!(p.last(), Some(Step::Key(k)) if k == "time"))
            .collect();
        prop_assume!(!paths.is_empty());
        let path = at.get(&paths);
        let mut mutated = doc.value.clone();
        *node_mut(&mut mutated, path).unwrap() = "9999-12-31T23:59:59Z".into();
        let before = samples(&text(&doc.value)).unwrap();
        let newest = before.iter().map(|s| s.2).max().unwrap_or(POLL_MS);
        let got = samples(&text(&mutated)).unwrap();
        prop_assert_eq!(got.len(), before.len());
        for (name, _, ts) in &got {
            prop_assert!(*ts <= newest || *ts > HORIZON_MS, "{}: {} at {}", doc.name, name, ts);
        }
    }

    /// Repeated keys, documents cut short, nesting past the limit: an error or a summary,
    /// never a panic; a repeated key that is accepted changes nothing.
    #[test]
    fn broken_structure_is_an_error_not_a_panic(
        (d, at) in doc_and_path(),
        cut in any::<Index>(),
        depth in 1usize..5000,
        kind in 0u8..3,
    ) {
        let doc = &docs()[d];
        let paths = all_paths(&doc.value);
        let path = at.get(&paths).clone();
        let original = text(&doc.value);
        let broken = match kind {
            0 => {
                // The same key twice in one object: the entry written again, raw.
                let Some((Step::Key(key), parent)) = path.split_last() else { return Ok(()) };
                let mut v = doc.value.clone();
                let entry = node_mut(&mut v, parent).unwrap().as_object_mut().unwrap();
                let again = format!("{RAW}{}:{}", serde_json::to_string(key).unwrap(), text(&entry[key.as_str()]));
                let mut rebuilt = serde_json::Map::new();
                for (k, val) in entry.iter() {
                    rebuilt.insert(k.clone(), val.clone());
                }
                // Written as `"<key>":<value>,"\u{1}…"` then turned into a second entry.
                rebuilt.insert(String::from("\u{2}dup"), Value::String(again));
                *entry = rebuilt;
                text(&v).replace("\"\\u0002dup\":", "")
            }
            1 => {
                let mut end = cut.index(original.len());
                while !original.is_char_boundary(end) { end -= 1; }
                original[..end].to_owned()
            }
            _ => {
                let mut v = doc.value.clone();
                *node_mut(&mut v, &path).unwrap() = Value::String(format!("{RAW}{}{}", "[".repeat(depth), "]".repeat(depth)));
                text(&v)
            }
        };
        let (peak, got) = peak_bytes(|| samples(&broken));
        prop_assert!(peak <= 64 * broken.len() + (1 << 20), "{}: {peak} bytes for {}", doc.name, broken.len());
        if kind == 0 {
            if let Ok(got) = got {
                prop_assert_eq!(got, samples(&original).unwrap());
            }
        }
    }
}

/// A poller costs 30 ms to build (its HTTP client), and each case needs a fresh one so its
/// log lines are its own: a quarter of the cases.
fn poller_cases() -> ProptestConfig {
    let default = config_cases();
    ProptestConfig {
        cases: (default.cases / 4).max(1),
        ..default
    }
}

proptest! {
    #![proptest_config(poller_cases())]

    /// What a poll allocates is bounded by the document's size, and however many values are
    /// bad, two polls log at most one line per kind of trouble.
    #[test]
    fn bounded_allocation_and_no_log_line_per_value(
        (d, _at) in doc_and_path(),
        bads in prop::collection::vec((any::<Index>(), bad()), 1..40),
    ) {
        let doc = &docs()[d];
        let paths = all_paths(&doc.value);
        let mut mutated = doc.value.clone();
        for (at, bad) in bads {
            let path = at.get(&paths);
            let key = match path.last() { Some(Step::Key(k)) => Some(k.as_str()), _ => None };
            let Some(node) = node_mut(&mut mutated, path) else { continue };
            if let Some(v) = replacement(&bad, node, key) { *node = v; }
        }
        let doc_text = text(&mutated);
        let (peak, lines) = ingest_twice(&doc_text);
        prop_assert!(peak <= 64 * doc_text.len() + (1 << 20), "{}: {peak} bytes for {}", doc.name, doc_text.len());
        // At most: bad values, times ahead, a failed poll; each once.
        prop_assert!(lines <= 3, "{}: {lines} lines", doc.name);
    }
}
