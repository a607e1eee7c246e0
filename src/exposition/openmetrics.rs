//! OpenMetrics 1.0 text, checked as the specification (and its parser test suite) requires.
//!
//! A family starts at a metadata line with a new name, or at a sample whose name is not one
//! the current family may have (`foo_total` and `foo_created` for a counter `foo`, and so on);
//! then it is `unknown`, named like the sample. Within a family, the samples of one metric
//! point (same labels, `le`, `quantile` or the stateset's own label aside) come together, and
//! their timestamps are all present or all absent and never go back. When a family ends its
//! names must not clash with an earlier family's, its unit must end its name, and a histogram's
//! points must each have ordered buckets ending in `+Inf`, a `_count` equal to it, and so on.

use std::hash::BuildHasher;

use hashbrown::{HashSet, HashTable};

use super::lex::{self, Dialect, Fail, Reason};
use super::model::{
    ExemplarRec, Exposition, FamilyRec, Kind, Limits, ParseError, SampleRec, Span, Strictness,
    NO_TEXT, NO_TIMESTAMP,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suffix {
    Bare,
    Total,
    Created,
    Sum,
    Count,
    Bucket,
    GSum,
    GCount,
    Info,
}

impl Suffix {
    fn as_str(self) -> &'static str {
        match self {
            Suffix::Bare => "",
            Suffix::Total => "_total",
            Suffix::Created => "_created",
            Suffix::Sum => "_sum",
            Suffix::Count => "_count",
            Suffix::Bucket => "_bucket",
            Suffix::GSum => "_gsum",
            Suffix::GCount => "_gcount",
            Suffix::Info => "_info",
        }
    }
}

/// The sample names a family of this type may have, as suffixes of its name (no TYPE: only
/// the name itself).
fn allowed(kind: Option<Kind>) -> &'static [Suffix] {
    use Suffix::*;
    match kind {
        Some(Kind::Counter) => &[Total, Created],
        Some(Kind::Summary) => &[Bare, Sum, Count, Created],
        Some(Kind::Histogram) => &[Bucket, Sum, Count, Created],
        Some(Kind::GaugeHistogram) => &[Bucket, GSum, GCount],
        Some(Kind::Info) => &[Info],
        None | Some(Kind::Gauge | Kind::StateSet | Kind::Unknown) => &[Bare],
    }
}

fn kind_named(name: &str) -> Option<Kind> {
    Some(match name {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        "gaugehistogram" => Kind::GaugeHistogram,
        "summary" => Kind::Summary,
        "info" => Kind::Info,
        "stateset" => Kind::StateSet,
        "unknown" => Kind::Unknown,
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Keyword {
    Help,
    Type,
    Unit,
}

/// The family being read.
struct Head {
    index: u32,
    name: Span,
    kind: Option<Kind>,
    /// A sample (or `_created`) line was read: metadata may no longer come.
    had_lines: bool,
    /// Its first sample in `Exposition::samples`.
    first_sample: usize,
}

/// One metric point of the current family.
struct Group {
    key_start: u32,
    key_end: u32,
    created_ms: i64,
}

/// Which label does not tell metric points apart.
enum Exclude<'a> {
    Nothing,
    Label(&'a str),
    /// Info: a family's samples are all one point.
    All,
}

/// The metric points of the current family, to check their grouping.
#[derive(Default)]
struct Groups {
    keys: Vec<u8>,
    groups: Vec<Group>,
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    current: Option<u32>,
    current_ts: Option<f64>,
    /// Scratch: label indices in name order, and the key they make.
    order: Vec<u32>,
    key: Vec<u8>,
}

impl Groups {
    fn clear(&mut self) {
        self.keys.clear();
        self.groups.clear();
        self.table.clear();
        self.current = None;
        self.current_ts = None;
    }

    /// The metric point of the labels from `labels_start` on; an error when it is an earlier,
    /// finished one, or when timestamps mix or go back within it.
    fn enter(
        &mut self,
        exp: &Exposition,
        labels_start: usize,
        exclude: Exclude<'_>,
        timestamp: Option<f64>,
        info: bool,
    ) -> Result<u32, Reason> {
        self.order.clear();
        self.key.clear();
        if !matches!(exclude, Exclude::All) {
            let labels = exp.labels.get(labels_start..).unwrap_or_default();
            for (i, l) in labels.iter().enumerate() {
                if let Exclude::Label(skip) = exclude {
                    if exp.str(l.name) == skip {
                        continue;
                    }
                }
                self.order.push((labels_start + i) as u32);
            }
            self.order.sort_unstable_by(|&a, &b| {
                exp.str(exp.labels[a as usize].name)
                    .cmp(exp.str(exp.labels[b as usize].name))
            });
            for &i in &self.order {
                let l = exp.labels[i as usize];
                for s in [exp.str(l.name), exp.str(l.value)] {
                    self.key.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    self.key.extend_from_slice(s.as_bytes());
                }
            }
        }
        let same = self.current.is_some_and(|c| {
            let g = &self.groups[c as usize];
            self.keys.get(g.key_start as usize..g.key_end as usize) == Some(&self.key[..])
        });
        let group = if same {
            let current = self.current.unwrap_or_default();
            if timestamp.is_some() != self.current_ts.is_some() {
                return Err("a metric point mixes samples with and without timestamps");
            }
            if let (Some(t), Some(c)) = (timestamp, self.current_ts) {
                if t < c && !info {
                    return Err("timestamps go back within a metric point");
                }
            }
            current
        } else {
            let hash = self.hasher.hash_one(&self.key[..]);
            let (keys, groups) = (&self.keys, &self.groups);
            let slice = |g: u32| {
                let g = &groups[g as usize];
                keys.get(g.key_start as usize..g.key_end as usize)
                    .unwrap_or_default()
            };
            if self
                .table
                .find(hash, |&g| slice(g) == &self.key[..])
                .is_some()
            {
                return Err("the samples of a metric point are not together");
            }
            let index = self.groups.len() as u32;
            let key_start = self.keys.len() as u32;
            self.keys.extend_from_slice(&self.key);
            self.groups.push(Group {
                key_start,
                key_end: self.keys.len() as u32,
                created_ms: NO_TIMESTAMP,
            });
            let (keys, groups, hasher) = (&self.keys, &self.groups, &self.hasher);
            self.table.insert_unique(hash, index, |&g| {
                let g = &groups[g as usize];
                hasher.hash_one(
                    keys.get(g.key_start as usize..g.key_end as usize)
                        .unwrap_or_default(),
                )
            });
            index
        };
        self.current = Some(group);
        self.current_ts = timestamp;
        Ok(group)
    }
}

/// A histogram sample, for the checks made when its family ends.
struct HistogramLine {
    suffix: Suffix,
    group: u32,
    timestamp: Option<f64>,
    le: f64,
    value: f64,
}

struct Parser<'a> {
    exp: Exposition,
    limits: &'a Limits,
    strictness: Strictness,
    head: Option<Head>,
    groups: Groups,
    /// The metric point of each sample of the current family.
    sample_groups: Vec<u32>,
    histogram: Vec<HistogramLine>,
    /// Every sample name the finished families may have had: a later family must not.
    names: HashSet<String, foldhash::fast::RandomState>,
}

pub(super) fn parse(
    body: &str,
    limits: &Limits,
    strictness: Strictness,
) -> Result<Exposition, ParseError> {
    let mut p = Parser {
        exp: Exposition::with_body(body),
        limits,
        strictness,
        head: None,
        groups: Groups::default(),
        sample_groups: Vec::new(),
        histogram: Vec::new(),
        names: HashSet::with_hasher(foldhash::fast::RandomState::default()),
    };
    let mut eof = false;
    let mut number = 0;
    let b = body.as_bytes();
    let mut pos = 0;
    loop {
        number += 1;
        let rest = b.get(pos..).unwrap_or_default();
        let (end, last) = match memchr::memchr(b'\n', rest) {
            Some(n) => (pos + n, false),
            None => (b.len(), true),
        };
        // The body up to the end of this line (positions stay offsets into the body), and
        // the line itself.
        let line = body.get(..end).unwrap_or_default();
        let text = line.get(pos..).unwrap_or_default();
        let fail = |reason| ParseError::Malformed {
            line: number,
            reason,
        };
        if last && text.is_empty() {
            break;
        }
        if eof {
            return Err(fail("text after # EOF"));
        }
        if text.is_empty() {
            return Err(fail("a blank line"));
        }
        let done = if text == "# EOF" {
            eof = true;
            p.finish().map_err(Fail::Reason)
        } else if text.starts_with('#') {
            p.metadata(line, pos).map_err(Fail::Reason)
        } else {
            p.sample(line, pos)
        };
        done.map_err(|e| match e {
            Fail::Reason(reason) => fail(reason),
            Fail::Limit(limit) => ParseError::SampleLimit {
                limit,
                line: number,
            },
        })?;
        if last {
            break;
        }
        pos = end + 1;
    }
    if !eof {
        return Err(ParseError::Malformed {
            line: number.max(1),
            reason: "no # EOF at the end",
        });
    }
    Ok(p.exp)
}

impl Parser<'_> {
    fn metadata(&mut self, line: &str, pos: usize) -> Result<(), Reason> {
        const NOT_METADATA: Reason = "a comment line (only # HELP, # TYPE, # UNIT and # EOF are)";
        let b = line.as_bytes();
        let keyword = match b.get(pos..pos + 7) {
            Some(b"# HELP ") => Keyword::Help,
            Some(b"# TYPE ") => Keyword::Type,
            Some(b"# UNIT ") => Keyword::Unit,
            _ => return Err(NOT_METADATA),
        };
        let pos = pos + 7;
        let mark = self.exp.strings.len();
        let (after, name) = if b.get(pos) == Some(&b'"') {
            lex::quoted(line, pos, Dialect::OpenMetrics, &mut self.exp)?
        } else {
            let end = lex::metric_name_end(b, pos);
            if end == pos {
                return Err("invalid metric name in a metadata line");
            }
            (end, Span::of(pos, end))
        };
        if b.get(after) != Some(&b' ') {
            return Err("a metadata line without its text");
        }
        let text_at = after + 1;
        let text = line.get(text_at..).unwrap_or_default();
        let same = self
            .head
            .as_ref()
            .is_some_and(|h| self.exp.bytes(h.name) == self.exp.bytes(name));
        if same {
            self.exp.strings.truncate(mark);
        } else {
            self.finish()?;
            self.start(name, None);
        }
        let Some(head) = self.head.as_mut() else {
            return Err("internal error: no family");
        };
        if head.had_lines {
            return Err("metadata after the family's samples");
        }
        let family = &mut self.exp.families[head.index as usize];
        match keyword {
            Keyword::Help => {
                if family.help.is_some() {
                    return Err("a second HELP line for a family");
                }
                let help = lex::help(line, text_at, &mut self.exp);
                self.exp.families[head.index as usize].help = Some(help);
            }
            Keyword::Type => {
                if head.kind.is_some() {
                    return Err("a second TYPE line for a family");
                }
                let kind = kind_named(text).ok_or("unknown metric type in a TYPE line")?;
                head.kind = Some(kind);
                family.kind = kind;
            }
            Keyword::Unit => {
                if family.unit.is_some() {
                    return Err("a second UNIT line for a family");
                }
                family.unit = Some(Span::of(text_at, line.len()));
            }
        }
        Ok(())
    }

    fn start(&mut self, name: Span, kind: Option<Kind>) {
        let index = self.exp.families.len() as u32;
        self.exp.families.push(FamilyRec {
            name,
            kind: kind.unwrap_or(Kind::Unknown),
            help: None,
            unit: None,
        });
        self.head = Some(Head {
            index,
            name,
            kind,
            had_lines: false,
            first_sample: self.exp.samples.len(),
        });
        self.groups.clear();
        self.sample_groups.clear();
        self.histogram.clear();
    }

    /// Ends the current family: its names, unit and histogram points checked.
    fn finish(&mut self) -> Result<(), Reason> {
        let Some(head) = self.head.take() else {
            return Ok(());
        };
        let kind = head.kind.unwrap_or(Kind::Unknown);
        let name = self.exp.str(head.name);
        let suffixes = allowed(head.kind).iter().copied();
        for suffix in std::iter::once(Suffix::Bare).chain(suffixes.filter(|&s| s != Suffix::Bare)) {
            let mut full = String::with_capacity(name.len() + 8);
            full.push_str(name);
            full.push_str(suffix.as_str());
            if !self.names.insert(full) {
                return Err("a family's name clashes with an earlier family's");
            }
        }
        if let Some(unit) = self.exp.families[head.index as usize].unit {
            let unit = self.exp.str(unit);
            if !unit.is_empty() {
                let ends = name
                    .strip_suffix(unit)
                    .is_some_and(|rest| rest.ends_with('_'));
                if !ends {
                    return Err("a unit that does not end its family's name");
                }
                if matches!(kind, Kind::Info | Kind::StateSet) {
                    return Err("a unit on an info or stateset family");
                }
            }
        }
        if matches!(kind, Kind::Histogram | Kind::GaugeHistogram) {
            self.check_histogram()?;
        }
        Ok(())
    }

    fn check_histogram(&self) -> Result<(), Reason> {
        #[derive(Default)]
        struct Point {
            bucket: Option<f64>,
            value: f64,
            count: Option<f64>,
            negative_buckets: bool,
            sum: bool,
            gsum: bool,
            negative_gsum: bool,
        }
        let strict = self.strictness == Strictness::Spec;
        let check = |p: &Point| -> Result<(), Reason> {
            if p.bucket != Some(f64::INFINITY) {
                return Err("a histogram point without its +Inf bucket");
            }
            if p.count.is_some_and(|c| c != p.value) {
                return Err("a histogram's _count differs from its +Inf bucket");
            }
            if (p.sum || p.gsum) && p.count.is_none() {
                return Err("a histogram point with a sum and no count");
            }
            if !(p.sum || p.gsum) && p.count.is_some() {
                return Err("a histogram point with a count and no sum");
            }
            if strict && p.negative_buckets && p.sum {
                return Err("a histogram with negative buckets and a _sum");
            }
            if !p.negative_buckets && p.negative_gsum {
                return Err("a negative _gsum with no negative bucket");
            }
            Ok(())
        };
        let mut point: Option<(u32, Option<f64>, Point)> = None;
        for line in &self.histogram {
            let same = point
                .as_ref()
                .is_some_and(|(g, t, _)| *g == line.group && *t == line.timestamp);
            if !same {
                if let Some((_, _, p)) = &point {
                    check(p)?;
                }
                point = Some((line.group, line.timestamp, Point::default()));
            }
            let Some((_, _, p)) = point.as_mut() else {
                continue;
            };
            match line.suffix {
                Suffix::Bucket => {
                    if line.le < 0.0 {
                        p.negative_buckets = true;
                    }
                    if p.bucket.is_some_and(|b| line.le <= b) {
                        return Err("histogram buckets out of order");
                    }
                    if line.value < p.value {
                        return Err("histogram bucket counts going down");
                    }
                    p.bucket = Some(line.le);
                    p.value = line.value;
                }
                Suffix::Count | Suffix::GCount => p.count = Some(line.value),
                Suffix::Sum => p.sum = true,
                Suffix::GSum => {
                    p.gsum = true;
                    p.negative_gsum |= line.value < 0.0;
                }
                _ => {}
            }
        }
        match &point {
            Some((_, _, p)) => check(p),
            None => Ok(()),
        }
    }

    fn sample(&mut self, line: &str, pos: usize) -> Result<(), Fail> {
        let b = line.as_bytes();
        let labels_start = self.exp.labels.len();
        let strings_start = self.exp.strings.len();
        let mut i = lex::metric_name_end(b, pos);
        let mut name = (i > pos).then(|| Span::of(pos, i));
        // Whether the label names are known to be distinct and none `__name__`.
        let mut checked = true;
        if b.get(i) == Some(&b'{') {
            checked = false;
            i = match lex::plain_label_set(b, i, &mut self.exp.labels) {
                Some((end, distinct)) => {
                    checked = distinct;
                    end
                }
                None => {
                    let (end, quoted) = lex::label_set(
                        line,
                        i,
                        Dialect::OpenMetrics,
                        name.is_none(),
                        &mut self.exp,
                    )?;
                    if quoted.is_some() {
                        name = quoted;
                    }
                    end
                }
            };
        }
        let name = name.ok_or("invalid metric name")?;
        if !checked && !self.exp.labels_valid(labels_start) {
            return Err("a repeated label name, or __name__ as a label".into());
        }
        if b.get(i) != Some(&b' ') {
            return Err("expected a space before the value".into());
        }
        let end = lex::token_end(b, i + 1, false);
        let value = lex::value(line.get(i + 1..end).unwrap_or_default())?;
        let mut i = end;
        let mut timestamp = None;
        let mut exemplar = None;
        if i < b.len() {
            i += 1;
            if b.get(i) == Some(&b'#') {
                exemplar = Some(self.exemplar(line, i)?);
            } else {
                let end = lex::token_end(b, i, false);
                timestamp = Some(lex::om_timestamp(line.get(i..end).unwrap_or_default())?);
                if end < b.len() {
                    if b.get(end + 1) != Some(&b'#') {
                        return Err("text after the timestamp".into());
                    }
                    exemplar = Some(self.exemplar(line, end + 1)?);
                }
            }
        }
        self.place(
            name,
            labels_start,
            strings_start,
            value,
            timestamp,
            exemplar,
        )
    }

    /// Reads and checks the exemplar whose `#` is at `pos`. Its labels move to
    /// `exemplar_labels` (their strings stay where the lexer put them), so the sample's labels
    /// end where they did; [`Self::place`] files it under the sample.
    fn exemplar(&mut self, line: &str, pos: usize) -> Result<ExemplarRec, Reason> {
        const INVALID: Reason = "an invalid exemplar";
        let b = line.as_bytes();
        if line.get(pos..pos + 3) != Some("# {") {
            return Err(INVALID);
        }
        let labels = self.exp.labels.len();
        let (end, _) = lex::label_set(line, pos + 2, Dialect::OpenMetrics, false, &mut self.exp)?;
        let valid = self.exp.labels_valid(labels);
        let length: usize = self.exp.labels[labels..]
            .iter()
            .map(|l| self.exp.str(l.name).chars().count() + self.exp.str(l.value).chars().count())
            .sum();
        let labels_start = self.exp.exemplar_labels.len();
        self.exp
            .exemplar_labels
            .extend(self.exp.labels.drain(labels..));
        if !valid {
            return Err(INVALID);
        }
        if length > 128 {
            return Err("exemplar labels over 128 characters");
        }
        if b.get(end) != Some(&b' ') {
            return Err(INVALID);
        }
        let value_end = lex::token_end(b, end + 1, false);
        let value =
            lex::value(line.get(end + 1..value_end).unwrap_or_default()).map_err(|_| INVALID)?;
        let mut timestamp_ms = NO_TIMESTAMP;
        if value_end < b.len() {
            let rest = line.get(value_end + 1..).unwrap_or_default();
            if rest.contains(' ') {
                return Err(INVALID);
            }
            let seconds = lex::om_timestamp(rest).map_err(|_| "an invalid exemplar timestamp")?;
            timestamp_ms = lex::seconds_to_ms(seconds);
        }
        Ok(ExemplarRec {
            sample: 0,
            labels_start: labels_start as u32,
            labels_end: self.exp.exemplar_labels.len() as u32,
            value,
            timestamp_ms,
        })
    }

    /// Puts a parsed sample line in its family, checks it there, and keeps it (a `_created`
    /// line becomes its metric point's start timestamp instead).
    fn place(
        &mut self,
        name: Span,
        labels_start: usize,
        strings_start: usize,
        value: f64,
        timestamp: Option<f64>,
        exemplar: Option<ExemplarRec>,
    ) -> Result<(), Fail> {
        let text = self.exp.str(name);
        let suffix = self.head.as_ref().and_then(|h| {
            let rest = text.strip_prefix(self.exp.str(h.name))?;
            allowed(h.kind).iter().copied().find(|s| s.as_str() == rest)
        });
        let suffix = match suffix {
            Some(suffix) => suffix,
            None => {
                self.finish()?;
                self.start(name, Some(Kind::Unknown));
                Suffix::Bare
            }
        };
        let Some(head) = self.head.as_mut() else {
            return Err("internal error: no family".into());
        };
        head.had_lines = true;
        let kind = head.kind;
        let (family, first_sample) = (head.index, head.first_sample);
        let family_name = self.exp.str(head.name);
        let labels = &self.exp.labels[labels_start..];
        let label = |want: &str| {
            labels
                .iter()
                .find(|l| self.exp.str(l.name) == want)
                .map(|l| self.exp.str(l.value))
        };
        let numeric = |text: &str| -> Option<f64> {
            let n = text.parse::<f64>().ok()?;
            let canonical = !n.is_infinite() || text == "+Inf" || text == "-Inf";
            (canonical && !n.is_nan()).then_some(n)
        };
        let mut le = f64::NAN;
        let exclude = match (kind, suffix) {
            (Some(Kind::StateSet), _) => {
                if label(family_name).is_none() {
                    return Err("a stateset sample without its family's label".into());
                }
                Exclude::Label(family_name)
            }
            (Some(Kind::Histogram | Kind::GaugeHistogram), Suffix::Bucket) => {
                le = label("le")
                    .and_then(numeric)
                    .ok_or("a bucket without a valid le label")?;
                Exclude::Label("le")
            }
            (Some(Kind::Summary), Suffix::Bare) => {
                let q = label("quantile")
                    .and_then(numeric)
                    .filter(|q| (0.0..=1.0).contains(q));
                if q.is_none() {
                    return Err("a quantile without a valid quantile label".into());
                }
                Exclude::Label("quantile")
            }
            (Some(Kind::Info), _) => Exclude::All,
            _ => Exclude::Nothing,
        };
        let info = kind == Some(Kind::Info);
        let group = self
            .groups
            .enter(&self.exp, labels_start, exclude, timestamp, info)?;
        let relaxed = self.strictness == Strictness::Prometheus;
        let relaxed_sum = relaxed
            && matches!(kind, Some(Kind::Histogram | Kind::Summary))
            && suffix == Suffix::Sum;
        use Suffix::*;
        let reason = match kind {
            Some(Kind::StateSet) if value != 0.0 && value != 1.0 => {
                Some("a stateset value other than 0 and 1")
            }
            Some(Kind::Info) if value != 1.0 => Some("an info value other than 1"),
            Some(Kind::Summary) if suffix == Bare && value < 0.0 && !relaxed => {
                Some("a negative quantile")
            }
            _ if matches!(suffix, Total | Sum | Count | Bucket | GCount | GSum)
                && value.is_nan() =>
            {
                Some("a NaN counter, count, sum or bucket")
            }
            _ if matches!(suffix, Total | Sum | Count | Bucket | GCount)
                && value < 0.0
                && !relaxed_sum =>
            {
                Some("a negative counter, count, sum or bucket")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(reason.into());
        }
        let exemplar_allowed = match kind {
            Some(Kind::Histogram | Kind::GaugeHistogram) => suffix == Bucket,
            Some(Kind::Counter) => suffix == Total,
            _ => false,
        };
        if exemplar.is_some() && !exemplar_allowed {
            return Err("an exemplar where none may be".into());
        }
        if suffix == Created {
            let ms = lex::seconds_to_ms(value);
            self.groups.groups[group as usize].created_ms = ms;
            let samples = &mut self.exp.samples[first_sample..];
            for (s, &g) in samples.iter_mut().zip(&self.sample_groups).rev() {
                if g != group {
                    break;
                }
                s.start_ms = ms;
            }
            self.exp.labels.truncate(labels_start);
            // Its name and labels, those that had escapes, were appended from
            // `strings_start` on.
            self.exp.strings.truncate(strings_start);
            return Ok(());
        }
        if self.limits.sample_limit != 0 && self.exp.samples.len() >= self.limits.sample_limit {
            return Err(Fail::Limit(self.limits.sample_limit));
        }
        if matches!(kind, Some(Kind::Histogram | Kind::GaugeHistogram)) {
            self.histogram.push(HistogramLine {
                suffix,
                group,
                timestamp,
                le,
                value,
            });
        }
        self.sample_groups.push(group);
        self.exp.samples.push(SampleRec {
            name,
            labels_start: labels_start as u32,
            labels_end: self.exp.labels.len() as u32,
            raw_labels: Span::default(),
            text: NO_TEXT,
            family,
            value,
            timestamp_ms: timestamp.map_or(NO_TIMESTAMP, lex::seconds_to_ms),
            start_ms: self.groups.groups[group as usize].created_ms,
        });
        if let Some(exemplar) = exemplar {
            self.exp.exemplars.push(ExemplarRec {
                sample: (self.exp.samples.len() - 1) as u32,
                ..exemplar
            });
        }
        Ok(())
    }
}
