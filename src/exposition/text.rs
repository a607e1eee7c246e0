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
    /// lookup and share the name's bytes.
    last: Option<(Span, u32)>,
}

pub(super) fn parse(body: &str, limits: &Limits) -> Result<Exposition, ParseError> {
    let mut p = Parser {
        exp: Exposition::default(),
        state: Vec::new(),
        by_name: HashTable::new(),
        hasher: foldhash::fast::RandomState::default(),
        limits,
        last: None,
    };
    let mut lines = body.split('\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        let last = lines.peek().is_none();
        if last && line.is_empty() {
            break;
        }
        let fail = |reason| ParseError::Malformed {
            line: number,
            reason,
        };
        if last && !line.bytes().all(lex::is_blank) {
            return Err(fail("the last line has no newline"));
        }
        p.line(line, number).map_err(|e| match e {
            Fail::Reason(reason) => fail(reason),
            Fail::Limit(limit) => ParseError::SampleLimit {
                limit,
                line: number,
            },
        })?;
    }
    Ok(p.exp)
}

impl Parser<'_> {
    fn line(&mut self, line: &str, _number: usize) -> Result<(), Fail> {
        let b = line.as_bytes();
        let pos = lex::skip_blanks(b, 0);
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
        let keyword = line.get(pos..end).unwrap_or_default();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let pos = lex::skip_blanks(b, end);
        if pos == b.len() {
            // `# HELP` alone is a comment to `expfmt`.
            return Ok(());
        }
        let start = self.exp.strings.len();
        let after = if b.get(pos) == Some(&b'"') {
            lex::quoted(line, pos, Dialect::Text, &mut self.exp.strings)?
        } else {
            let end = lex::metric_name_end(b, pos);
            if end == pos || b.get(end).is_some_and(|&c| !lex::is_blank(c)) {
                return Err("invalid metric name in a HELP or TYPE line");
            }
            self.exp.strings.push_str(&line[pos..end]);
            end
        };
        if b.get(after).is_some_and(|&c| !lex::is_blank(c)) {
            return Err("invalid metric name in a HELP or TYPE line");
        }
        if after == b.len() {
            // A name and nothing after it, not even a blank: `expfmt` ignores the line.
            self.exp.strings.truncate(start);
            return Ok(());
        }
        let name = self.exp.span_from(start);
        let family = self.family_named(name);
        let rest_at = lex::skip_blanks(b, after);
        let rest = line.get(rest_at..).unwrap_or_default();
        let f = family as usize;
        if keyword == "HELP" {
            if self.exp.families[f].help.is_some() {
                return Err("a second HELP line for a metric");
            }
            let start = self.exp.strings.len();
            lex::help(rest, &mut self.exp.strings);
            self.exp.families[f].help = Some(self.exp.span_from(start));
            return Ok(());
        }
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

    /// The family called `name` (just appended to the strings: dropped again when the family
    /// exists), created untyped when there is none.
    fn family_named(&mut self, name: Span) -> u32 {
        let text = self.exp.str(name);
        let hash = self.hasher.hash_one(text);
        let exp = &self.exp;
        if let Some(&f) = self
            .by_name
            .find(hash, |&f| exp.str(exp.families[f as usize].name) == text)
        {
            self.exp.strings.truncate(name.start as usize);
            return f;
        }
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
            hasher.hash_one(exp.str(exp.families[g as usize].name))
        });
        f
    }

    fn find(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.by_name
            .find(hash, |&f| {
                self.exp.str(self.exp.families[f as usize].name) == name
            })
            .copied()
    }

    fn sample(&mut self, line: &str, pos: usize) -> Result<(), Fail> {
        let b = line.as_bytes();
        let labels_start = self.exp.labels.len();
        let mut i = lex::metric_name_end(b, pos);
        let mut name = None;
        if i > pos {
            let text = &line[pos..i];
            name = Some(self.exp.push_name(text, self.last.map(|(last, _)| last)));
            i = lex::skip_blanks(b, i);
        }
        if b.get(i) == Some(&b'{') {
            let (end, quoted) =
                lex::label_set(line, i, Dialect::Text, name.is_none(), &mut self.exp)?;
            if quoted.is_some() {
                name = quoted;
            }
            i = end;
        }
        let Some(name) = name else {
            return Err("a sample line without a metric name".into());
        };
        if !self.exp.labels_valid(labels_start) {
            return Err("a repeated label name, or __name__ as a label".into());
        }
        let i = lex::skip_blanks(b, i);
        let end = lex::token_end(b, i, true);
        if end == i {
            return Err("a sample without a value".into());
        }
        let value = lex::value(&line[i..end])?;
        let i = lex::skip_blanks(b, end);
        let mut timestamp_ms = NO_TIMESTAMP;
        if i < b.len() {
            let end = lex::token_end(b, i, true);
            timestamp_ms = match line[i..end].parse::<i64>() {
                Ok(t) if t != NO_TIMESTAMP => t,
                _ => return Err("invalid timestamp (integer milliseconds)".into()),
            };
            if lex::skip_blanks(b, end) != b.len() {
                return Err("text after the timestamp".into());
            }
        }
        let (name, family) = self.resolve(name);
        let f = family as usize;
        self.state[f].has_samples = true;
        let kind = self.exp.families[f].kind;
        let sample_name = self.exp.str(name);
        let base_len = self.exp.families[f].name.end - self.exp.families[f].name.start;
        let suffix = sample_name.get(base_len as usize..).unwrap_or("");
        let labels = &self.exp.labels[labels_start..];
        let label = |want: &str| {
            labels
                .iter()
                .find(|l| self.exp.str(l.name) == want)
                .map(|l| self.exp.str(l.value))
        };
        let numeric = |name: &str| label(name).and_then(|v| v.parse::<f64>().ok()).is_some();
        let reason = match (kind, suffix) {
            (Kind::Summary, "") if !numeric("quantile") => {
                Some("a summary quantile without a numeric quantile label")
            }
            (Kind::Histogram, "_bucket") if !numeric("le") => {
                Some("a histogram bucket without a numeric le label")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(reason.into());
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

    /// The family of the sample name just appended (`name`), and the name's span, shared with
    /// the previous sample's when equal.
    fn resolve(&mut self, name: Span) -> (Span, u32) {
        if let Some((last, family)) = self.last {
            if last == name || self.exp.str(last) == self.exp.str(name) {
                return (name, family);
            }
        }
        let text = self.exp.str(name);
        let family = self.find(text).or_else(|| {
            let typed = |base: Option<&str>, kinds: &[Kind]| {
                base.and_then(|b| self.find(b))
                    .filter(|&f| kinds.contains(&self.exp.families[f as usize].kind))
            };
            let sum_count = text
                .strip_suffix("_sum")
                .or_else(|| text.strip_suffix("_count"));
            typed(sum_count, &[Kind::Summary, Kind::Histogram])
                .or_else(|| typed(text.strip_suffix("_bucket"), &[Kind::Histogram]))
        });
        let family = match family {
            Some(f) => f,
            None => {
                // A new family named like the sample: its name is the sample's bytes, copied
                // so that the sample keeps its own span.
                let copy = self.exp.strings.len();
                self.exp
                    .strings
                    .extend_from_within(name.start as usize..name.end as usize);
                let span = self.exp.span_from(copy);
                self.family_named(span)
            }
        };
        self.last = Some((name, family));
        (name, family)
    }
}
