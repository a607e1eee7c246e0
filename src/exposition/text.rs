//! The Prometheus text format 0.0.4 (and 1.0.0's quoted names), read as Prometheus's `expfmt`
//! reads it: see the module above for what is accepted.
//!
//! A sample belongs to the family of its name; `foo_sum` and `foo_count` to a summary or
//! histogram `foo`, `foo_bucket` to a histogram `foo`, when `foo` was declared so; any other
//! name starts an untyped family of its own. A family may come back after others (samples are
//! kept in body order); its HELP and TYPE may each appear once, TYPE before its samples.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::lex::{self, Dialect, Fail, Reason};
use super::model::{
    Exposition, FamilyRec, Kind, Limits, ParseError, SampleRec, Span, NO_TIMESTAMP,
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
}

pub(super) fn parse(body: &str, limits: &Limits) -> Result<Exposition, ParseError> {
    let mut p = Parser {
        exp: Exposition::with_body(body),
        state: Vec::new(),
        by_name: HashTable::new(),
        hasher: foldhash::fast::RandomState::default(),
        limits,
        last: None,
        last_legacy: false,
    };
    let b = body.as_bytes();
    let mut pos = 0;
    let mut number = 0;
    while pos < b.len() {
        number += 1;
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
    Ok(p.exp)
}

impl Parser<'_> {
    fn line(&mut self, line: &str, pos: usize) -> Result<(), Fail> {
        let b = line.as_bytes();
        let pos = lex::skip_blanks(b, pos);
        match b.get(pos) {
            None => Ok(()),
            Some(b'#') => Ok(self.comment(line, pos + 1)?),
            Some(_) => self.sample(line, pos),
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

    fn sample(&mut self, line: &str, pos: usize) -> Result<(), Fail> {
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
        if legacy {
            name = Some(Span::of(pos, i));
            i = lex::skip_blanks(b, i);
        }
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
        let i = lex::skip_blanks(b, i);
        let end = lex::token_end(b, i, true);
        if end == i {
            return Err("a sample without a value".into());
        }
        let value = lex::value(line.get(i..end).unwrap_or_default())?;
        let i = lex::skip_blanks(b, end);
        let mut timestamp_ms = NO_TIMESTAMP;
        if i < b.len() {
            let end = lex::token_end(b, i, true);
            timestamp_ms = match line.get(i..end).unwrap_or_default().parse::<i64>() {
                Ok(t) if t != NO_TIMESTAMP => t,
                _ => return Err("invalid timestamp (integer milliseconds)".into()),
            };
            if lex::skip_blanks(b, end) != b.len() {
                return Err("text after the timestamp".into());
            }
        }
        let family = match repeated {
            Some((_, family)) => family,
            None => {
                self.last_legacy = legacy;
                self.resolve(name)
            }
        };
        let f = family as usize;
        self.state[f].has_samples = true;
        let kind = self.exp.families[f].kind;
        if matches!(kind, Kind::Summary | Kind::Histogram) {
            self.check_quantile_or_bucket(kind, name, f, labels_start)?;
        }
        if self.limits.sample_limit != 0 && self.exp.samples.len() >= self.limits.sample_limit {
            return Err(Fail::Limit(self.limits.sample_limit));
        }
        self.exp.samples.push(SampleRec {
            name,
            labels_start: labels_start as u32,
            labels_end: self.exp.labels.len() as u32,
            family,
            value,
            timestamp_ms,
            start_ms: NO_TIMESTAMP,
        });
        Ok(())
    }

    /// A summary's quantile needs a numeric `quantile` label, a histogram's bucket a numeric
    /// `le`, as `expfmt` wants.
    fn check_quantile_or_bucket(
        &self,
        kind: Kind,
        name: Span,
        family: usize,
        labels_start: usize,
    ) -> Result<(), Reason> {
        let family_name = self.exp.families[family].name;
        let base_len = (family_name.end - family_name.start) as usize;
        let suffix = self.exp.bytes(name).get(base_len..).unwrap_or_default();
        let (want, reason): (&[u8], _) = match (kind, suffix) {
            (Kind::Summary, b"") => (
                b"quantile",
                "a summary quantile without a numeric quantile label",
            ),
            (Kind::Histogram, b"_bucket") => {
                (b"le", "a histogram bucket without a numeric le label")
            }
            _ => return Ok(()),
        };
        let numeric = self.exp.labels[labels_start..]
            .iter()
            .find(|l| self.exp.bytes(l.name) == want)
            .is_some_and(|l| self.exp.str(l.value).parse::<f64>().is_ok());
        if numeric {
            Ok(())
        } else {
            Err(reason)
        }
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
