//! The Prometheus text format 0.0.4 (and 1.0.0's quoted names), read as Prometheus's `expfmt`
//! reads it: see the module above for what is accepted.
//!
//! A sample belongs to the family of its name; `foo_sum` and `foo_count` to a summary or
//! histogram `foo`, `foo_bucket` to a histogram `foo`, when `foo` was declared so; any other
//! name starts an untyped family of its own. A family may come back after others (samples are
//! kept in body order); its HELP and TYPE may each appear once, TYPE before its samples.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::cache::{Facts, SeriesTexts};
use super::lex::{self, Dialect, Fail, Reason};
use super::model::{
    Exposition, FamilyRec, Kind, LabelRec, Limits, ParseError, SampleRec, Span, NO_TEXT,
    NO_TIMESTAMP,
};

struct FamilyState {
    has_type: bool,
    has_samples: bool,
}

struct Parser<'a> {
    exp: Exposition,
    state: Vec<FamilyState>,
    by_name: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    limits: &'a Limits,
    /// The previous sample's name and family: consecutive samples of one family skip the
    /// lookup.
    last: Option<(Span, u32)>,
    /// Whether that name was a legacy one, written before the braces: then a line that starts
    /// with the same bytes, not followed by another name byte, has the same name.
    last_legacy: bool,
    /// The target's series texts, when the caller keeps them (`super::parse_cached`).
    cache: Option<&'a mut SeriesTexts>,
}

/// Parses `body`; with `cache`, lines it knows are read from it (see `super::cache`) and
/// lines it does not are added to it.
pub(super) fn parse(
    body: &str,
    limits: &Limits,
    mut cache: Option<&mut SeriesTexts>,
) -> Result<Exposition, ParseError> {
    let (exp, families) = match cache.as_deref_mut() {
        Some(cache) => {
            cache.begin(body.len());
            (cache.exposition(body), cache.families_hint)
        }
        None => (Exposition::with_body(body), 0),
    };
    let mut p = Parser {
        exp,
        state: Vec::with_capacity(families),
        by_name: HashTable::with_capacity(families),
        hasher: foldhash::fast::RandomState::default(),
        limits,
        last: None,
        last_legacy: false,
        cache,
    };
    let result = p.lines(body);
    if let Some(cache) = p.cache {
        cache.end(result.is_ok());
        cache.families_hint = p.exp.families.len();
    }
    result.map(|()| p.exp)
}

impl Parser<'_> {
    fn lines(&mut self, body: &str) -> Result<(), ParseError> {
        let p = self;
        let b = body.as_bytes();
        let mut pos = 0;
        let mut number = 0;
        while pos < b.len() {
            number += 1;
            if let Some(end) = p.known_line(body, pos) {
                pos = end + 1;
                continue;
            }
            let fail = |reason| ParseError::Malformed {
                line: number,
                reason,
            };
            let rest = b.get(pos..).unwrap_or_default();
            let end = match memchr::memchr(b'\n', rest) {
                Some(n) => pos + n,
                None if rest.iter().all(|&c| lex::is_blank(c)) => break,
                None => return Err(fail("the last line has no newline")),
            };
            // The body up to the end of this line: positions stay offsets into the body, which
            // are the spans of the strings read.
            let line = body.get(..end).unwrap_or_default();
            p.line(line, pos).map_err(|e| match e {
                Fail::Reason(reason) => fail(reason),
                Fail::Limit(limit) => ParseError::SampleLimit {
                    limit,
                    line: number,
                },
            })?;
            pos = end + 1;
        }
        Ok(())
    }

    fn line(&mut self, line: &str, pos: usize) -> Result<(), Fail> {
        let b = line.as_bytes();
        let pos = lex::skip_blanks(b, pos);
        match b.get(pos) {
            None => Ok(()),
            Some(b'#') => Ok(self.comment(line, pos + 1)?),
            Some(_) => self.lexed_sample(line, pos),
        }
    }

    fn comment(&mut self, line: &str, pos: usize) -> Result<(), Reason> {
        let b = line.as_bytes();
        let pos = lex::skip_blanks(b, pos);
        let end = lex::token_end(b, pos, true);
        let keyword = b.get(pos..end).unwrap_or_default();
        if keyword != b"HELP" && keyword != b"TYPE" {
            return Ok(());
        }
        let pos = lex::skip_blanks(b, end);
        if pos == b.len() {
            // `# HELP` alone is a comment to `expfmt`.
            return Ok(());
        }
        let mark = self.exp.strings.len();
        let (after, name) = if b.get(pos) == Some(&b'"') {
            lex::quoted(line, pos, Dialect::Text, &mut self.exp)?
        } else {
            let end = lex::metric_name_end(b, pos);
            if end == pos || b.get(end).is_some_and(|&c| !lex::is_blank(c)) {
                return Err("invalid metric name in a HELP or TYPE line");
            }
            (end, Span::of(pos, end))
        };
        if b.get(after).is_some_and(|&c| !lex::is_blank(c)) {
            return Err("invalid metric name in a HELP or TYPE line");
        }
        if after == b.len() {
            // A name and nothing after it, not even a blank: `expfmt` ignores the line.
            self.exp.strings.truncate(mark);
            return Ok(());
        }
        let family = self.family_named(name, mark);
        // The samples that follow are most likely this family's: the next one named like it
        // needs no lookup either (a sample's family is the one of its name when there is one).
        self.last = Some((self.exp.families[family as usize].name, family));
        self.last_legacy = b.get(pos) != Some(&b'"');
        let rest_at = lex::skip_blanks(b, after);
        let f = family as usize;
        if keyword == b"HELP" {
            if self.exp.families[f].help.is_some() {
                return Err("a second HELP line for a metric");
            }
            let help = lex::help(line, rest_at, &mut self.exp);
            self.exp.families[f].help = Some(help);
            return Ok(());
        }
        let rest = line.get(rest_at..).unwrap_or_default();
        let kind = match rest.trim_end_matches([' ', '\t']) {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "untyped" => Kind::Unknown,
            _ => return Err("unknown metric type in a TYPE line"),
        };
        let state = &mut self.state[f];
        if state.has_type {
            return Err("a second TYPE line for a metric");
        }
        if state.has_samples {
            return Err("a TYPE line after the metric's samples");
        }
        state.has_type = true;
        self.exp.families[f].kind = kind;
        Ok(())
    }

    /// The family called `name`, created untyped when there is none. When it exists, the
    /// strings appended from `mark` on (the name, if it had escapes) are dropped again.
    fn family_named(&mut self, name: Span, mark: usize) -> u32 {
        // A TYPE line after the HELP line of the same family (or the family of the previous
        // sample): no lookup.
        if let Some((_, f)) = self.last {
            let family = self.exp.families[f as usize].name;
            if self.exp.bytes(family) == self.exp.bytes(name) {
                self.exp.strings.truncate(mark);
                return f;
            }
        }
        let hash = self.hasher.hash_one(self.exp.bytes(name));
        if let Some(f) = self.find_hashed(hash, self.exp.bytes(name)) {
            self.exp.strings.truncate(mark);
            return f;
        }
        self.new_family(name, hash)
    }

    fn new_family(&mut self, name: Span, hash: u64) -> u32 {
        let f = self.exp.families.len() as u32;
        self.exp.families.push(FamilyRec {
            name,
            kind: Kind::Unknown,
            help: None,
            unit: None,
        });
        self.state.push(FamilyState {
            has_type: false,
            has_samples: false,
        });
        let (exp, hasher) = (&self.exp, &self.hasher);
        self.by_name.insert_unique(hash, f, |&g| {
            hasher.hash_one(exp.bytes(exp.families[g as usize].name))
        });
        f
    }

    fn find_hashed(&self, hash: u64, name: &[u8]) -> Option<u32> {
        self.by_name
            .find(hash, |&f| {
                self.exp.bytes(self.exp.families[f as usize].name) == name
            })
            .copied()
    }

    fn find(&self, name: &[u8]) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(name), name)
    }

    /// A sample line that starts (after blanks) with the series text the cache expects next,
    /// read without lexing its name and labels again, with every check that depends on the
    /// rest of the exposition made as for a lexed line. Returns where its newline is; `None`
    /// (nothing recorded) when the line is not such a line or anything in it is not as usual,
    /// and the line is then read as without a cache, which finds the error if there is one.
    #[inline]
    fn known_line(&mut self, body: &str, pos: usize) -> Option<usize> {
        let cache = self.cache.as_deref()?;
        let b = body.as_bytes();
        let start = lex::skip_blanks(b, pos);
        if b.get(start) == Some(&b'#') {
            return None;
        }
        let known = cache.predict(b, start)?;
        let mut i = start + known.len;
        if known.brace == 0 {
            // A name alone ends at a blank, and no label set may follow it.
            if !b.get(i).is_some_and(|&c| lex::is_blank(c)) {
                return None;
            }
            i = lex::skip_blanks(b, i);
            if b.get(i) == Some(&b'{') {
                return None;
            }
        }
        let (value, timestamp_ms, end) = value_to_newline(body, i)?;
        let mut name = Span::of(start, start + known.name_len);
        let family = match self.last {
            // The previous sample's name: shared, so the caller can tell runs by address.
            Some((last, family)) if self.exp.bytes(last) == self.exp.bytes(name) => {
                name = last;
                family
            }
            _ => {
                self.last_legacy = true;
                self.resolve(name)
            }
        };
        let f = family as usize;
        let numeric = match self.required_label(name, f) {
            Some((b"quantile", _)) => known.facts.numeric_quantile,
            Some(_) => known.facts.numeric_le,
            None => true,
        };
        let limit = self.limits.sample_limit;
        if !numeric || (limit != 0 && self.exp.samples.len() >= limit) {
            return None;
        }
        self.state[f].has_samples = true;
        let raw_labels = match known.brace {
            0 => Span::default(),
            brace => Span::of(start + brace + 1, start + known.len - 1),
        };
        let labels = self.exp.labels.len() as u32;
        self.exp.samples.push(SampleRec {
            name,
            labels_start: labels,
            labels_end: labels,
            raw_labels,
            text: known.text.0,
            family,
            value,
            timestamp_ms,
            start_ms: NO_TIMESTAMP,
        });
        if let Some(cache) = self.cache.as_deref_mut() {
            cache.met(known.text);
        }
        Some(end)
    }

    fn lexed_sample(&mut self, line: &str, pos: usize) -> Result<(), Fail> {
        let b = line.as_bytes();
        let labels_start = self.exp.labels.len();
        // Most lines have the previous line's name: one comparison then finds its end (and
        // its family), instead of a name read byte by byte and looked up. Only a legacy name:
        // a quoted one (`"my.metric"`) may not stand there unquoted.
        let repeated = self.last.filter(|&(last, _)| {
            let text = self.exp.bytes(last);
            let end = pos + text.len();
            self.last_legacy
                && b.get(pos..end) == Some(text)
                && !b.get(end).is_some_and(|&c| lex::continues_metric_name(c))
        });
        let mut i = match repeated {
            Some((last, _)) => pos + (last.end - last.start) as usize,
            None => lex::metric_name_end(b, pos),
        };
        let legacy = i > pos;
        let mut name = None;
        // Where the series text ends and its `{` is, when the cache may take it: a legacy
        // name, then no label set or a plain one.
        let mut cacheable = legacy.then_some((i, 0));
        if legacy {
            name = Some(Span::of(pos, i));
            i = lex::skip_blanks(b, i);
        }
        // Whether the label names are known to be distinct and none `__name__`.
        let mut checked = true;
        if b.get(i) == Some(&b'{') {
            checked = false;
            let brace = i;
            i = match lex::plain_label_set(b, i, &mut self.exp.labels) {
                Some((end, distinct)) => {
                    checked = distinct;
                    cacheable = cacheable.map(|_| (end, brace - pos));
                    end
                }
                None => {
                    cacheable = None;
                    let (end, quoted) =
                        lex::label_set(line, i, Dialect::Text, name.is_none(), &mut self.exp)?;
                    if quoted.is_some() {
                        name = quoted;
                    }
                    end
                }
            };
        }
        let Some(name) = name else {
            return Err("a sample line without a metric name".into());
        };
        if !checked && !self.exp.labels_valid(labels_start) {
            return Err("a repeated label name, or __name__ as a label".into());
        }
        let (value, timestamp_ms) = value_and_timestamp(line, i)?;
        let family = match repeated {
            Some((_, family)) => family,
            None => {
                self.last_legacy = legacy;
                self.resolve(name)
            }
        };
        let f = family as usize;
        self.state[f].has_samples = true;
        if let Some((want, reason)) = self.required_label(name, f) {
            if !self.numeric_label(labels_start, want) {
                return Err(reason.into());
            }
        }
        if self.limits.sample_limit != 0 && self.exp.samples.len() >= self.limits.sample_limit {
            return Err(Fail::Limit(self.limits.sample_limit));
        }
        let mut text = NO_TEXT;
        if let (Some((end, brace)), Some(cache)) = (cacheable, self.cache.as_deref_mut()) {
            let key = b.get(pos..end).unwrap_or_default();
            let name_len = (name.end - name.start) as usize;
            let exp = &self.exp;
            text = cache
                .find_or_insert(key, name_len, brace, || facts(exp, labels_start))
                .0;
        }
        self.exp.samples.push(SampleRec {
            name,
            labels_start: labels_start as u32,
            labels_end: self.exp.labels.len() as u32,
            raw_labels: Span::default(),
            text,
            family,
            value,
            timestamp_ms,
            start_ms: NO_TIMESTAMP,
        });
        Ok(())
    }

    /// The label a sample of family `family` called `name` must have with a numeric value,
    /// and the reason it fails without: a summary's quantile needs `quantile`, a histogram's
    /// bucket `le`, as `expfmt` wants.
    #[inline]
    fn required_label(&self, name: Span, family: usize) -> Option<(&'static [u8], Reason)> {
        let f = &self.exp.families[family];
        if !matches!(f.kind, Kind::Summary | Kind::Histogram) {
            return None;
        }
        let base_len = (f.name.end - f.name.start) as usize;
        let suffix = self.exp.bytes(name).get(base_len..).unwrap_or_default();
        match (f.kind, suffix) {
            (Kind::Summary, b"") => Some((
                b"quantile",
                "a summary quantile without a numeric quantile label",
            )),
            (Kind::Histogram, b"_bucket") => {
                Some((b"le", "a histogram bucket without a numeric le label"))
            }
            _ => None,
        }
    }

    /// Whether the labels from `labels_start` on have `want` with a numeric value.
    fn numeric_label(&self, labels_start: usize, want: &[u8]) -> bool {
        self.exp.labels[labels_start..]
            .iter()
            .find(|l| self.exp.bytes(l.name) == want)
            .is_some_and(|l| self.exp.str(l.value).parse::<f64>().is_ok())
    }

    /// The family of a sample's name: the previous sample's when the name is the same, else
    /// the one of that name, or of the summary or histogram it is a `_sum`, `_count` or
    /// `_bucket` of, else a new untyped family named like the sample.
    fn resolve(&mut self, name: Span) -> u32 {
        if let Some((last, family)) = self.last {
            if last == name || self.exp.bytes(last) == self.exp.bytes(name) {
                self.last = Some((name, family));
                return family;
            }
        }
        let text = self.exp.bytes(name);
        let hash = self.hasher.hash_one(text);
        let family = self.find_hashed(hash, text).or_else(|| {
            let typed = |base: Option<&[u8]>, kinds: &[Kind]| {
                base.and_then(|b| self.find(b))
                    .filter(|&f| kinds.contains(&self.exp.families[f as usize].kind))
            };
            let sum_count = text
                .strip_suffix(b"_sum")
                .or_else(|| text.strip_suffix(b"_count"));
            typed(sum_count, &[Kind::Summary, Kind::Histogram])
                .or_else(|| typed(text.strip_suffix(b"_bucket"), &[Kind::Histogram]))
        });
        let family = match family {
            Some(f) => f,
            None => self.new_family(name, hash),
        };
        self.last = Some((name, family));
        family
    }
}

/// What the cache keeps of the labels from `labels_start` on.
fn facts(exp: &Exposition, labels_start: usize) -> Facts {
    let mut facts = Facts::default();
    let numeric = |l: &LabelRec| exp.str(l.value).parse::<f64>().is_ok();
    // Names are distinct (checked before a line is cached).
    for l in exp.labels.get(labels_start..).unwrap_or_default() {
        match exp.bytes(l.name) {
            b"quantile" => facts.numeric_quantile = numeric(l),
            b"le" => facts.numeric_le = numeric(l),
            _ => {}
        }
    }
    facts
}

/// [`value_and_timestamp`] of a line read in the whole body, from `i` to its newline; also
/// where the newline is. `None` for anything [`value_and_timestamp`] would refuse, and for a
/// last line without a newline.
#[inline]
fn value_to_newline(body: &str, i: usize) -> Option<(f64, i64, usize)> {
    let b = body.as_bytes();
    let token_end = |from: usize| {
        from + b
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|&c| c == b' ' || c == b'\t' || c == b'\n')
            .unwrap_or(b.len().saturating_sub(from))
    };
    let i = lex::skip_blanks(b, i);
    let (value, end) = match lex::decimal_prefix(b, i) {
        Some((v, end)) if matches!(b.get(end), Some(b' ' | b'\t' | b'\n')) => (v, end),
        _ => {
            let end = token_end(i);
            if end == i {
                return None;
            }
            (lex::value(body.get(i..end)?).ok()?, end)
        }
    };
    let mut i = lex::skip_blanks(b, end);
    let mut timestamp_ms = NO_TIMESTAMP;
    if b.get(i) != Some(&b'\n') {
        let end = token_end(i);
        timestamp_ms = match body.get(i..end)?.parse::<i64>() {
            Ok(t) if t != NO_TIMESTAMP => t,
            _ => return None,
        };
        i = lex::skip_blanks(b, end);
    }
    (b.get(i) == Some(&b'\n')).then_some((value, timestamp_ms, i))
}

/// The value and the optional timestamp of a sample line, from `i` (after its series text).
fn value_and_timestamp(line: &str, i: usize) -> Result<(f64, i64), Reason> {
    let b = line.as_bytes();
    let i = lex::skip_blanks(b, i);
    let end = lex::token_end(b, i, true);
    if end == i {
        return Err("a sample without a value");
    }
    let value = lex::value(line.get(i..end).unwrap_or_default())?;
    let i = lex::skip_blanks(b, end);
    let mut timestamp_ms = NO_TIMESTAMP;
    if i < b.len() {
        let end = lex::token_end(b, i, true);
        timestamp_ms = match line.get(i..end).unwrap_or_default().parse::<i64>() {
            Ok(t) if t != NO_TIMESTAMP => t,
            _ => return Err("invalid timestamp (integer milliseconds)"),
        };
        if lex::skip_blanks(b, end) != b.len() {
            return Err("text after the timestamp");
        }
    }
    Ok((value, timestamp_ms))
}
