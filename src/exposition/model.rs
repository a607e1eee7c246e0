//! What a parse returns and how it fails: the [`Exposition`] (all strings in one buffer, so a
//! 10 000-sample body costs a handful of allocations), its views [`Sample`] and [`Family`],
//! the [`Limits`] and the [`ParseError`].

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// A family's type. The text format's `untyped` and OpenMetrics' `unknown` are both
/// [`Kind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Kind {
    /// The name OpenMetrics gives the type (`unknown` for the text format's `untyped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::GaugeHistogram => "gaugehistogram",
            Kind::Summary => "summary",
            Kind::Info => "info",
            Kind::StateSet => "stateset",
            Kind::Unknown => "unknown",
        }
    }
}

/// Bounds on one scrape, as Prometheus's scrape config has them; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest body in bytes, checked before anything is parsed.
    pub body_size_limit: usize,
    /// Most samples (OpenMetrics `_created` lines are not samples), checked while parsing.
    pub sample_limit: usize,
}

/// How strictly OpenMetrics is held to its specification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strictness {
    /// Every rule of the specification but the signs of observed values: a histogram with
    /// negative bucket bounds may have a `_sum`, of any sign, and a summary's quantiles and
    /// `_sum` may be negative. client_golang emits both for negative observations (Prometheus's own test
    /// data `alltypes.5mfs.om.txt` has them) and Prometheus accepts them.
    #[default]
    Prometheus,
    /// Every rule, as the OpenMetrics test suite expects.
    Spec,
}

/// Why an exposition was refused; the scrape fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body of {size} bytes is over body_size_limit ({limit} bytes)")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("line {line}: more than sample_limit ({limit}) samples")]
    SampleLimit { limit: usize, line: usize },
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
}

impl ParseError {
    /// The 1-based line the error is on, if it is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::BodyTooLarge { .. } => None,
            ParseError::SampleLimit { line, .. } | ParseError::Malformed { line, .. } => {
                Some(*line)
            }
        }
    }
}

/// Line `line` (1-based) of `body`, cut to 200 bytes and made valid UTF-8, for the log line
/// that names it. Empty when there is no such line.
pub fn line_text(body: &[u8], line: usize) -> String {
    let text = body
        .split(|&b| b == b'\n')
        .nth(line.saturating_sub(1))
        .unwrap_or_default();
    String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned()
}

/// A string in [`Exposition::strings`]. Offsets fit u32: bodies over 2 GiB are refused, and
/// what follows the body's copy (unescaped strings) is never longer than the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The span of `start..end`; the caller has checked that the body fits u32.
    pub fn of(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct LabelRec {
    pub name: Span,
    pub value: Span,
}

/// No timestamp; a saturated conversion lands one above.
pub(super) const NO_TIMESTAMP: i64 = i64::MIN;

/// No [`SeriesText`].
pub(super) const NO_TEXT: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
pub(super) struct SampleRec {
    pub name: Span,
    /// The labels: `labels[labels_start..labels_end]`, or, for a line read from the cache
    /// (which lexes no labels), the label set as written, between its braces.
    pub labels_start: u32,
    pub labels_end: u32,
    pub raw_labels: Span,
    /// The line's entry in the [`super::SeriesTexts`] it was parsed with, or [`NO_TEXT`].
    pub text: u32,
    pub family: u32,
    pub value: f64,
    pub timestamp_ms: i64,
    pub start_ms: i64,
}

/// A line's entry in a [`super::SeriesTexts`]: the same series text (name and label set, as
/// written) as every other line with this entry, in this parse and the earlier ones with the
/// same cache, until the entry is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesText(pub(super) u32);

/// An exemplar of sample `sample`: its labels are `exemplar_labels[labels_start..labels_end]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExemplarRec {
    pub sample: u32,
    pub labels_start: u32,
    pub labels_end: u32,
    pub value: f64,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FamilyRec {
    pub name: Span,
    pub kind: Kind,
    pub help: Option<Span>,
    pub unit: Option<Span>,
}

/// A parsed exposition: its samples in the order of the body, and its families (those that
/// only had metadata included).
#[derive(Debug, Default)]
pub struct Exposition {
    /// A copy of the body, which every name, label, HELP and UNIT without escapes is a span
    /// of, followed by those with escapes, unescaped. One copy of the body costs less than a
    /// copy of each of its strings, and leaves it whole for spans of any part of a line.
    pub(super) strings: String,
    pub(super) labels: Vec<LabelRec>,
    pub(super) samples: Vec<SampleRec>,
    pub(super) families: Vec<FamilyRec>,
    /// OpenMetrics exemplars, by sample index (ascending), and their labels: kept apart from
    /// the samples' so that the (rare) exemplar costs a sample nothing.
    pub(super) exemplars: Vec<ExemplarRec>,
    pub(super) exemplar_labels: Vec<LabelRec>,
}

/// One sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Labels<'a>,
    pub value: f64,
    /// The line's own timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// The OpenMetrics `_created` of its metric point, in milliseconds since the Unix epoch.
    pub start_timestamp_ms: Option<i64>,
    /// Index of its family in [`Exposition::families`].
    pub family: usize,
    /// Its line's series text in the cache it was parsed with ([`super::parse_cached`]);
    /// `None` without a cache, and for lines the cache does not take (see `SeriesTexts`).
    pub series_text: Option<SeriesText>,
}

/// An OpenMetrics exemplar (`# {trace_id="…"} 0.05 1700000000.123` after a counter's `_total`
/// or a histogram bucket's value).
#[derive(Debug, Clone, Copy)]
pub struct Exemplar<'a> {
    /// The index of the sample it follows ([`Exposition::sample`]).
    pub sample: usize,
    /// Its labels, as written (names unique, never `__name__`); may be empty.
    pub labels: Labels<'a>,
    pub value: f64,
    /// Its own timestamp, in milliseconds since the Unix epoch; it is optional.
    pub timestamp_ms: Option<i64>,
}

/// A sample's labels, in the order the line had them (never `__name__`; names unique).
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    strings: &'a str,
    labels: &'a [LabelRec],
    /// A cached line's label set as written, between its braces: `a="b",c="d"`, legacy names,
    /// no escapes, no blanks (the only shape the cache takes). Read when iterated.
    raw: Span,
}

impl<'a> Labels<'a> {
    pub fn len(&self) -> usize {
        self.iter().len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.raw.is_empty()
    }

    pub fn iter(&self) -> LabelIter<'a> {
        LabelIter {
            strings: self.strings,
            labels: self.labels.iter(),
            raw: span_str(self.strings, self.raw),
        }
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The labels of a sample as `(name, value)` pairs; see [`Labels`].
#[derive(Debug, Clone)]
pub struct LabelIter<'a> {
    strings: &'a str,
    labels: std::slice::Iter<'a, LabelRec>,
    raw: &'a str,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(l) = self.labels.next() {
            return Some((
                span_str(self.strings, l.name),
                span_str(self.strings, l.value),
            ));
        }
        if self.raw.is_empty() {
            return None;
        }
        // `name="value"` then `,` or the end: the value has no quote, the name no `=`.
        let (name, rest) = self.raw.split_once("=\"")?;
        let (value, rest) = rest.split_once('"').unwrap_or((rest, ""));
        self.raw = rest.strip_prefix(',').unwrap_or(rest);
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Two quotes per label in the raw form.
        let n = self.labels.len() + self.raw.bytes().filter(|&c| c == b'"').count() / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for LabelIter<'_> {}

/// One family's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Family<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub help: Option<&'a str>,
    pub unit: Option<&'a str>,
}

fn span_str(strings: &str, span: Span) -> &str {
    strings
        .get(span.start as usize..span.end as usize)
        .unwrap_or_default()
}

fn timestamp(ms: i64) -> Option<i64> {
    (ms != NO_TIMESTAMP).then_some(ms)
}

impl Exposition {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn sample(&self, index: usize) -> Option<Sample<'_>> {
        self.samples.get(index).map(|s| self.view(s))
    }

    pub fn samples(&self) -> impl ExactSizeIterator<Item = Sample<'_>> + '_ {
        self.samples.iter().map(|s| self.view(s))
    }

    /// The exemplars, in the order of their samples (at most one per sample).
    pub fn exemplars(&self) -> impl ExactSizeIterator<Item = Exemplar<'_>> + '_ {
        self.exemplars.iter().map(|e| Exemplar {
            sample: e.sample as usize,
            labels: Labels {
                strings: &self.strings,
                labels: self
                    .exemplar_labels
                    .get(e.labels_start as usize..e.labels_end as usize)
                    .unwrap_or_default(),
                raw: Span::default(),
            },
            value: e.value,
            timestamp_ms: timestamp(e.timestamp_ms),
        })
    }

    pub fn families(&self) -> impl ExactSizeIterator<Item = Family<'_>> + '_ {
        self.families.iter().map(|f| Family {
            name: self.str(f.name),
            kind: f.kind,
            help: f.help.map(|h| self.str(h)),
            unit: f.unit.map(|u| self.str(u)),
        })
    }

    pub fn family(&self, index: usize) -> Option<Family<'_>> {
        self.families().nth(index)
    }

    /// The index of the first sample whose name, labels (in any order) and timestamp repeat
    /// an earlier sample's: what Prometheus's storage would refuse as a duplicate.
    pub fn first_duplicate(&self) -> Option<usize> {
        let hasher = foldhash::fast::FixedState::default();
        let key = |s: &SampleRec| {
            let mut pairs: Vec<(&str, &str)> = self.labels_of(s).iter().collect();
            pairs.sort_unstable();
            (self.str(s.name), s.timestamp_ms, pairs)
        };
        let hashes: Vec<u64> = self
            .samples
            .iter()
            .map(|s| hasher.hash_one(key(s)))
            .collect();
        let mut seen: HashTable<u32> = HashTable::with_capacity(self.samples.len());
        for (i, (s, &hash)) in self.samples.iter().zip(&hashes).enumerate() {
            let k = key(s);
            if seen
                .find(hash, |&j| key(&self.samples[j as usize]) == k)
                .is_some()
            {
                return Some(i);
            }
            seen.insert_unique(hash, i as u32, |&j| hashes[j as usize]);
        }
        None
    }

    fn labels_of(&self, s: &SampleRec) -> Labels<'_> {
        Labels {
            strings: &self.strings,
            labels: self
                .labels
                .get(s.labels_start as usize..s.labels_end as usize)
                .unwrap_or_default(),
            raw: s.raw_labels,
        }
    }

    fn view<'a>(&'a self, s: &SampleRec) -> Sample<'a> {
        Sample {
            name: self.str(s.name),
            labels: self.labels_of(s),
            value: s.value,
            timestamp_ms: timestamp(s.timestamp_ms),
            start_timestamp_ms: timestamp(s.start_ms),
            family: s.family as usize,
            series_text: (s.text != NO_TEXT).then_some(SeriesText(s.text)),
        }
    }

    pub(super) fn str(&self, span: Span) -> &str {
        span_str(&self.strings, span)
    }

    /// The span of what was appended to `strings` since `start`.
    pub(super) fn span_from(&self, start: usize) -> Span {
        Span {
            start: start as u32,
            end: self.strings.len() as u32,
        }
    }

    /// A span's bytes: comparing them skips the character-boundary checks of [`Self::str`].
    pub(super) fn bytes(&self, span: Span) -> &[u8] {
        self.strings
            .as_bytes()
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// Whether the labels from `start` on have distinct names, none `__name__`.
    pub(super) fn labels_valid(&self, start: usize) -> bool {
        let labels = self.labels.get(start..).unwrap_or_default();
        let len = |s: Span| s.end - s.start;
        for (i, a) in labels.iter().enumerate() {
            let name = self.bytes(a.name);
            if name == b"__name__" {
                return false;
            }
            // Lengths first: most names differ in length, and comparing them needs no slice.
            if labels[..i]
                .iter()
                .any(|b| len(b.name) == len(a.name) && self.bytes(b.name) == name)
            {
                return false;
            }
        }
        true
    }

    /// An exposition whose strings begin with a copy of `body`, with room for what a body of
    /// that size typically holds, so that the vectors do not grow (and copy themselves) a
    /// dozen times while a large body is read. Only an estimate: they still grow when a body
    /// is denser.
    pub(super) fn with_body(body: &str) -> Exposition {
        let mut strings = String::with_capacity(body.len() + body.len() / 16);
        strings.push_str(body);
        Exposition {
            strings,
            labels: Vec::with_capacity(body.len() / 32),
            samples: Vec::with_capacity(body.len() / 64),
            families: Vec::new(),
            exemplars: Vec::new(),
            exemplar_labels: Vec::new(),
        }
    }

    /// [`Exposition::with_body`] in the buffers of an exposition its caller is done with.
    pub(super) fn refill(mut self, body: &str) -> Exposition {
        self.strings.clear();
        self.labels.clear();
        self.samples.clear();
        self.families.clear();
        self.exemplars.clear();
        self.exemplar_labels.clear();
        self.strings.reserve(body.len() + body.len() / 16);
        self.strings.push_str(body);
        self
    }
}
