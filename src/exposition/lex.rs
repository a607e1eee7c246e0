//! The pieces both formats share: names, quoted strings with their escapes, label sets and
//! numbers. Each reads one line from a byte position and returns where it stopped, or the
//! reason the line is malformed.

use super::model::{Exposition, LabelRec, Span};

pub(super) type Reason = &'static str;

/// Why a line failed: malformed, or one sample past `sample_limit` (the limit).
pub(super) enum Fail {
    Reason(Reason),
    Limit(usize),
}

impl From<Reason> for Fail {
    fn from(reason: Reason) -> Fail {
        Fail::Reason(reason)
    }
}

/// How a quoted string's backslashes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// `\\`, `\"` and `\n` only; anything else is an error (`expfmt`). Blanks and tabs may
    /// separate the tokens of a label set, and a trailing comma is allowed.
    Text,
    /// `\\`, `\"` and `\n`; any other backslash stands for itself (the OpenMetrics test
    /// suite's `\foo`). No blanks inside a label set, no trailing comma.
    OpenMetrics,
}

pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Past the blanks and tabs from `pos`.
pub(super) fn skip_blanks(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos).is_some_and(|&c| is_blank(c)) {
        pos += 1;
    }
    pos
}

/// The end of a legacy metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) starting at `pos`; `pos`
/// itself when there is none.
pub(super) fn metric_name_end(b: &[u8], pos: usize) -> usize {
    match b.get(pos) {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return pos,
    }
    let mut i = pos + 1;
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
    {
        i += 1;
    }
    i
}

/// The end of a legacy label name (`[a-zA-Z_][a-zA-Z0-9_]*`) starting at `pos`.
pub(super) fn label_name_end(b: &[u8], pos: usize) -> usize {
    match b.get(pos) {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return pos,
    }
    let mut i = pos + 1;
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        i += 1;
    }
    i
}

/// Appends `line[from..to]` to `out`; the bounds are always at ASCII bytes, so this only
/// fails on a bug, and then as a malformed line rather than a panic.
fn copy(out: &mut String, line: &str, from: usize, to: usize) -> Result<(), Reason> {
    out.push_str(
        line.get(from..to)
            .ok_or("internal error: cut inside a character")?,
    );
    Ok(())
}

/// Reads the quoted string whose opening `"` is at `pos`, unescaped onto `out`; returns the
/// position after the closing quote.
pub(super) fn quoted(
    line: &str,
    pos: usize,
    dialect: Dialect,
    out: &mut String,
) -> Result<usize, Reason> {
    let b = line.as_bytes();
    let mut i = pos + 1;
    let mut run = i;
    loop {
        match b.get(i) {
            None => return Err("unterminated quoted string"),
            Some(b'"') => {
                copy(out, line, run, i)?;
                return Ok(i + 1);
            }
            Some(b'\\') => {
                copy(out, line, run, i)?;
                match b.get(i + 1) {
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    Some(_) if dialect == Dialect::OpenMetrics => {
                        out.push('\\');
                        i += 1;
                        run = i;
                        continue;
                    }
                    _ => return Err("invalid escape sequence in a quoted string"),
                }
                i += 2;
                run = i;
            }
            Some(_) => i += 1,
        }
    }
}

/// Unescapes a HELP text: `\\` and `\n` (and `\"`, which OpenMetrics writes), any other
/// backslash standing for itself.
pub(super) fn help(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.as_bytes().first() {
            Some(b'\\') => out.push('\\'),
            Some(b'n') => out.push('\n'),
            Some(b'"') => out.push('"'),
            _ => {
                out.push('\\');
                rest = after;
                continue;
            }
        }
        rest = &after[1..];
    }
    out.push_str(rest);
}

/// Reads the label set whose `{` is at `pos`, appending its labels to `exp`. A quoted string
/// with no `=` after it, first in the set, is the metric name (Prometheus 3's
/// `{"my.metric", a="b"}`); it is returned when `name_allowed`, an error otherwise. Returns
/// the position after the `}`. Label names are checked (unique, not `__name__`) by the caller.
pub(super) fn label_set(
    line: &str,
    pos: usize,
    dialect: Dialect,
    name_allowed: bool,
    exp: &mut Exposition,
) -> Result<(usize, Option<Span>), Reason> {
    let b = line.as_bytes();
    let lenient = dialect == Dialect::Text;
    let blanks = |i: usize| if lenient { skip_blanks(b, i) } else { i };
    let mut name = None;
    let mut i = blanks(pos + 1);
    if b.get(i) == Some(&b'}') {
        return Ok((i + 1, None));
    }
    let mut first = true;
    loop {
        let start = exp.strings.len();
        if b.get(i) == Some(&b'"') {
            i = blanks(quoted(line, i, dialect, &mut exp.strings)?);
            if b.get(i) != Some(&b'=') {
                if !(first && name_allowed) {
                    return Err("a quoted metric name where a label was expected");
                }
                name = Some(exp.span_from(start));
                first = false;
                match separator(b, blanks(i), lenient)? {
                    Some(end) => return Ok((end, name)),
                    None => {
                        i = blanks(skip_comma(b, i, lenient));
                        continue;
                    }
                }
            }
        } else {
            let end = label_name_end(b, i);
            if end == i {
                return Err("invalid label name");
            }
            copy(&mut exp.strings, line, i, end)?;
            i = blanks(end);
        }
        let label_name = exp.span_from(start);
        if b.get(i) != Some(&b'=') {
            return Err("expected '=' after a label name");
        }
        i = blanks(i + 1);
        if b.get(i) != Some(&b'"') {
            return Err("expected a quoted label value");
        }
        let start = exp.strings.len();
        i = quoted(line, i, dialect, &mut exp.strings)?;
        exp.labels.push(LabelRec {
            name: label_name,
            value: exp.span_from(start),
        });
        first = false;
        i = blanks(i);
        match separator(b, i, lenient)? {
            Some(end) => return Ok((end, name)),
            None => i = blanks(skip_comma(b, i, lenient)),
        }
    }
}

/// At a `}` (returns the position after it), or at a `,` followed by another label (returns
/// `None`); a `,` right before the `}` ends the set in the text format only.
fn separator(b: &[u8], i: usize, lenient: bool) -> Result<Option<usize>, Reason> {
    match b.get(i) {
        Some(b'}') => Ok(Some(i + 1)),
        Some(b',') => {
            let next = if lenient {
                skip_blanks(b, i + 1)
            } else {
                i + 1
            };
            if b.get(next) == Some(&b'}') {
                if lenient {
                    Ok(Some(next + 1))
                } else {
                    Err("a comma before '}'")
                }
            } else {
                Ok(None)
            }
        }
        _ => Err("expected ',' or '}' in a label set"),
    }
}

fn skip_comma(b: &[u8], i: usize, lenient: bool) -> usize {
    let i = if lenient { skip_blanks(b, i) } else { i };
    i + 1
}

/// The end of the token at `pos`: the next space (and, in the text format, tab) or the end.
pub(super) fn token_end(b: &[u8], pos: usize, tabs_too: bool) -> usize {
    let mut i = pos;
    while let Some(&c) = b.get(i) {
        if c == b' ' || (tabs_too && c == b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// A sample value: a decimal number, `NaN`, `+Inf`, `-Inf` (case does not matter, as in Go's
/// `ParseFloat` and the OpenMetrics grammar).
pub(super) fn value(token: &str) -> Result<f64, Reason> {
    token.parse::<f64>().map_err(|_| "invalid value")
}

/// OpenMetrics float seconds to milliseconds, as Prometheus converts them (truncated toward
/// zero, saturating); never [`super::model::NO_TIMESTAMP`].
pub(super) fn seconds_to_ms(seconds: f64) -> i64 {
    ((seconds * 1000.0) as i64).max(i64::MIN + 1)
}

/// An OpenMetrics timestamp: float seconds, finite.
pub(super) fn om_timestamp(token: &str) -> Result<f64, Reason> {
    match token.parse::<f64>() {
        Ok(t) if t.is_finite() => Ok(t),
        _ => Err("invalid timestamp"),
    }
}
