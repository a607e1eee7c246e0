//! The pieces both formats share: names, quoted strings with their escapes, label sets and
//! numbers. Each reads one line from a byte position and returns where it stopped, or the
//! reason the line is malformed.
//!
//! A `line` here is the body up to the end of the line being read (so positions are offsets
//! into the body, and reading stops at the newline), and a string read from it is a [`Span`]
//! of the body itself, which the exposition's strings begin with: nothing is copied but a
//! string with escapes, unescaped onto the end of the strings.

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
#[inline]
pub(super) fn skip_blanks(b: &[u8], pos: usize) -> usize {
    // Most calls find no blank at all: one comparison then.
    if !b.get(pos).is_some_and(|&c| is_blank(c)) {
        return pos;
    }
    let rest = b.get(pos..).unwrap_or_default();
    pos + rest
        .iter()
        .position(|&c| !is_blank(c))
        .unwrap_or(rest.len())
}

/// Which bytes may start and continue a legacy metric or label name, one table lookup per
/// byte rather than a chain of comparisons (names are most of an exposition's bytes).
const fn name_bytes(colon: bool, digits: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        table[i] = c.is_ascii_alphabetic()
            || c == b'_'
            || (colon && c == b':')
            || (digits && c.is_ascii_digit());
        i += 1;
    }
    table
}

static METRIC_START: [bool; 256] = name_bytes(true, false);
static METRIC_CONTINUE: [bool; 256] = name_bytes(true, true);
static LABEL_START: [bool; 256] = name_bytes(false, false);
static LABEL_CONTINUE: [bool; 256] = name_bytes(false, true);

fn name_end(b: &[u8], pos: usize, start: &[bool; 256], rest: &[bool; 256]) -> usize {
    match b.get(pos) {
        Some(&c) if start[c as usize] => {}
        _ => return pos,
    }
    let tail = b.get(pos + 1..).unwrap_or_default();
    pos + 1
        + tail
            .iter()
            .position(|&c| !rest[c as usize])
            .unwrap_or(tail.len())
}

/// Whether `c` may continue a legacy metric name.
pub(super) fn continues_metric_name(c: u8) -> bool {
    METRIC_CONTINUE[c as usize]
}

/// The end of a legacy metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) starting at `pos`; `pos`
/// itself when there is none.
pub(super) fn metric_name_end(b: &[u8], pos: usize) -> usize {
    name_end(b, pos, &METRIC_START, &METRIC_CONTINUE)
}

/// The end of a legacy label name (`[a-zA-Z_][a-zA-Z0-9_]*`) starting at `pos`.
pub(super) fn label_name_end(b: &[u8], pos: usize) -> usize {
    name_end(b, pos, &LABEL_START, &LABEL_CONTINUE)
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

/// Reads the quoted string whose opening `"` is at `pos`; returns the position after the
/// closing quote, and the string: a span of the body when it has no backslash (almost every
/// label value), else unescaped onto the end of `exp`'s strings.
#[inline]
pub(super) fn quoted(
    line: &str,
    pos: usize,
    dialect: Dialect,
    exp: &mut Exposition,
) -> Result<(usize, Span), Reason> {
    let b = line.as_bytes();
    let start = pos + 1;
    match quote_or_backslash(b, start) {
        Some(stop) if b.get(stop) == Some(&b'"') => Ok((stop + 1, Span::of(start, stop))),
        Some(stop) => unescape(line, start, stop, dialect, exp),
        None => Err("unterminated quoted string"),
    }
}

/// The rest of [`quoted`] once a backslash is found at `at`: the string from `start` is
/// unescaped onto the end of `exp`'s strings.
#[cold]
fn unescape(
    line: &str,
    start: usize,
    at: usize,
    dialect: Dialect,
    exp: &mut Exposition,
) -> Result<(usize, Span), Reason> {
    let b = line.as_bytes();
    let mark = exp.strings.len();
    let out = &mut exp.strings;
    let mut i = at;
    let mut run = start;
    loop {
        match b.get(i) {
            None => return Err("unterminated quoted string"),
            Some(b'"') => {
                copy(out, line, run, i)?;
                return Ok((i + 1, exp.span_from(mark)));
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

/// The label set whose `{` is at `pos` when it is the common one, `{name="value",...}` with
/// legacy names, no blanks, no escapes and no trailing comma, which both formats read alike:
/// its labels are appended to `labels`, and the position after the `}` returned with whether
/// its names are known to be distinct and none `__name__` (`false`: the caller must check).
/// Anything else gives `None` with `labels` as it was, and [`label_set`] then reads the set
/// from its start (and says what is wrong with it, if anything is).
#[inline]
pub(super) fn plain_label_set(
    b: &[u8],
    pos: usize,
    labels: &mut Vec<LabelRec>,
) -> Option<(usize, bool)> {
    let mark = labels.len();
    let mut i = pos + 1;
    if b.get(i) == Some(&b'}') {
        return Some((i + 1, true));
    }
    // Each name's first eight bytes and length: two names that differ there differ. Sets of
    // up to eight labels, nearly all, are checked with these alone.
    let mut seen = [(0u64, 0usize); 8];
    let mut count = 0;
    let mut distinct = true;
    loop {
        let name_end = label_name_end(b, i);
        let value_start = name_end + 2;
        if name_end == i || b.get(name_end..value_start) != Some(&b"=\""[..]) {
            break;
        }
        let Some(value_end) = quote_or_backslash(b, value_start) else {
            break;
        };
        if b.get(value_end) != Some(&b'"') {
            break;
        }
        labels.push(LabelRec {
            name: Span::of(i, name_end),
            value: Span::of(value_start, value_end),
        });
        if distinct {
            let key = (first_eight(b, i, name_end), name_end - i);
            let (earlier, rest) = seen.split_at_mut(count);
            match rest.first_mut() {
                Some(slot) if key != RESERVED_NAME && !earlier.contains(&key) => {
                    *slot = key;
                    count += 1;
                }
                _ => distinct = false,
            }
        }
        i = value_end + 1;
        match b.get(i) {
            Some(b'}') => return Some((i + 1, distinct)),
            Some(b',') if b.get(i + 1) != Some(&b'}') => i += 1,
            _ => break,
        }
    }
    labels.truncate(mark);
    None
}

/// `__name__` as [`plain_label_set`] keys names.
const RESERVED_NAME: (u64, usize) = (u64::from_le_bytes(*b"__name__"), 8);

/// The first eight bytes (at most) of `b[start..end]`, little-endian, zero beyond `end`.
#[inline]
fn first_eight(b: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    match b.get(start..start + 8) {
        Some(word) => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let word = u64::from_le_bytes(bytes);
            if len >= 8 {
                word
            } else {
                word & ((1u64 << (8 * len)) - 1)
            }
        }
        None => b
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .take(8)
            .rev()
            .fold(0u64, |word, &c| (word << 8) | u64::from(c)),
    }
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// A mask whose lowest set bit is the high bit of the first zero byte of `x` (bits above
/// it may be set falsely, by the borrow; the lowest is exact).
#[inline]
fn zero_byte(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Where the first `"` or `\` at or after `from` is, eight bytes at a time: label values are
/// scanned for nothing else, and this is most of the bytes of a label set.
#[inline]
pub(super) fn quote_or_backslash(b: &[u8], from: usize) -> Option<usize> {
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let found = zero_byte(word ^ QUOTES) | zero_byte(word ^ BACKSLASHES);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|n| i + n)
}

/// A HELP text, from `pos` to the end of the line: a span of the body when it has no
/// backslash, else unescaped onto the end of `exp`'s strings: `\\` and `\n` (and `\"`,
/// which OpenMetrics writes), any other backslash standing for itself.
pub(super) fn help(line: &str, pos: usize, exp: &mut Exposition) -> Span {
    let text = line.get(pos..).unwrap_or_default();
    if !text.contains('\\') {
        return Span::of(pos, line.len());
    }
    let mark = exp.strings.len();
    let out = &mut exp.strings;
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
    exp.span_from(mark)
}

/// Reads the label set whose `{` is at `pos`, appending its labels to `exp`. A quoted string
/// followed by `,` or `}` instead of `=` is the metric name (Prometheus 3's
/// `{"my.metric", a="b"}`), wherever it stands in the set, as Prometheus's parsers take it; it
/// is returned when `name_allowed` (the line had no name before the `{`), an error otherwise,
/// and so is a second one. Label names may be quoted too (`{"my.label"="x"}`). Returns the
/// position after the `}`. Label names are checked (unique, not `__name__`) by the caller.
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
    loop {
        let label_name = if b.get(i) == Some(&b'"') {
            let (end, text) = quoted(line, i, dialect, exp)?;
            if text.is_empty() {
                // Prometheus's parser takes `""`, and its scrape then fails the target on the
                // empty name; failing here says why.
                return Err("an empty quoted name");
            }
            i = blanks(end);
            if b.get(i) != Some(&b'=') {
                if !name_allowed {
                    return Err("a quoted metric name where a label was expected");
                }
                if name.is_some() {
                    return Err("a second metric name in a label set");
                }
                name = Some(text);
                match separator(b, i, lenient)? {
                    Some(end) => return Ok((end, name)),
                    None => {
                        i = blanks(i + 1);
                        continue;
                    }
                }
            }
            text
        } else {
            let end = label_name_end(b, i);
            if end == i {
                return Err("invalid label name");
            }
            let text = Span::of(i, end);
            i = blanks(end);
            text
        };
        if b.get(i) != Some(&b'=') {
            return Err("expected '=' after a label name");
        }
        i = blanks(i + 1);
        if b.get(i) != Some(&b'"') {
            return Err("expected a quoted label value");
        }
        let (end, value) = quoted(line, i, dialect, exp)?;
        exp.labels.push(LabelRec {
            name: label_name,
            value,
        });
        i = blanks(end);
        match separator(b, i, lenient)? {
            Some(end) => return Ok((end, name)),
            None => i = blanks(i + 1),
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
#[inline]
pub(super) fn value(token: &str) -> Result<f64, Reason> {
    if let Some(v) = plain_decimal(token.as_bytes()) {
        return Ok(v);
    }
    token.parse::<f64>().map_err(|_| "invalid value")
}

/// Exact powers of ten: every one up to 10^22 is an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The fast path of [`value`] for what nearly all samples are, a plain decimal (`0`, `-3`,
/// `8192`, `0.25`, `1.305e-06`) with at most 19 digits whose digits, read as an integer, are
/// at most 2^53, and whose power of ten is within ±22: then the integer and the power of ten
/// are both exact f64s, and one multiplication or division of exact operands rounds to the
/// nearest f64 just as parsing the decimal does (Clinger's fast path, which Rust's and Go's
/// parsers also take). `None` for anything else (`NaN`, `+Inf`, more digits, a far exponent,
/// a malformed token), which the full float parser then reads.
#[inline]
pub(super) fn plain_decimal(token: &[u8]) -> Option<f64> {
    match decimal_prefix(token, 0) {
        Some((v, end)) if end == token.len() => Some(v),
        _ => None,
    }
}

/// [`plain_decimal`] of the number that starts at `start` in `b`, wherever it ends: the value
/// and the position after it. The caller checks what follows (a number followed by anything
/// but its token's end is no plain decimal). Reading the number in place spares a line read
/// from the cache a pass to find the token's end first.
#[inline]
pub(super) fn decimal_prefix(b: &[u8], start: usize) -> Option<(f64, usize)> {
    // Half the values of a node_exporter scrape are one digit (`0`, `1`): read at once.
    if let Some(d) = b
        .get(start)
        .map(|c| c.wrapping_sub(b'0'))
        .filter(|&d| d <= 9)
    {
        if !matches!(b.get(start + 1), Some(b'0'..=b'9' | b'.' | b'e' | b'E')) {
            return Some((f64::from(d), start + 1));
        }
    }
    let mut i = start;
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut fraction = 0i32;
    let mut in_fraction = false;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            digits += 1;
            fraction += i32::from(in_fraction);
        } else if c == b'.' && !in_fraction {
            in_fraction = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 || digits > 19 || mantissa > 1 << 53 {
        return None;
    }
    let mut exponent = 0i32;
    if let Some(b'e' | b'E') = b.get(i) {
        // A sign, then one to three digits.
        i += 1;
        let minus = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let first = i;
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            if i - first == 3 {
                return None;
            }
            exponent = exponent * 10 + i32::from(d);
            i += 1;
        }
        if i == first {
            return None;
        }
        if minus {
            exponent = -exponent;
        }
    }
    let power = exponent - fraction;
    let m = mantissa as f64;
    let v = if power >= 0 {
        m * *POW10.get(power as usize)?
    } else {
        m / *POW10.get(power.unsigned_abs() as usize)?
    };
    Some((if negative { -v } else { v }, i))
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
