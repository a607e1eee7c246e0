//! Reading an exporter's answer: the Prometheus text format (0.0.4, and 1.0.0, which only adds
//! quoted UTF-8 names) and OpenMetrics 1.0 text, into samples with their family metadata.
//!
//! This module owns the `Accept` header a scrape sends, the choice of parser from the answer's
//! `Content-Type`, and the parsers. It does no I/O and does not know targets, `up`, series ids
//! or Remote Write: the scrape loop reads the body, calls [`parse`], and on an error fails the
//! whole scrape (`up` 0, nothing sent) with [`ParseError`]'s line and reason in its log line.
//!
//! A target's exposition is parsed again every scrape, nearly the same each time: with
//! [`parse_cached`] and the target's [`SeriesTexts`], a text-format line whose name and label
//! set (its series text) were in the last exposition, byte for byte, is not lexed again; only
//! its value and timestamp are read, and the checks that depend on the rest of the exposition
//! (its family's TYPE, a TYPE after the samples, `sample_limit`) are made as for any line.
//! The result is the same as [`parse`]'s, samples or error; each sample also names its series
//! text, which the scrape loop maps to its series.
//!
//! What a parse gives ([`Exposition`]): per sample the metric name, labels (escapes resolved,
//! in exposition order), value (`NaN`, `±Inf` included), the explicit timestamp in
//! milliseconds if the line had one, and a start (created) timestamp; per family its type,
//! HELP and UNIT. Choices, each as Prometheus makes it unless said otherwise:
//!
//! - **All or nothing.** A malformed line, a body over `body_size_limit` (checked before
//!   parsing) or more than `sample_limit` samples (checked as they are read) fails the whole
//!   exposition; no partial result is ever returned.
//! - **OpenMetrics `_created` lines are start timestamps, not samples.** Their value is folded
//!   into the start timestamp of the samples of the same metric point (same labels, `le` and
//!   `quantile` aside), before or after it. This is what Prometheus 3 does with
//!   `--enable-feature=created-timestamp-zero-ingestion` (its OpenMetrics parser then skips
//!   the `_created` series); without that flag it stores them as ordinary samples. Remote
//!   Write 2.0 carries the start timestamp; 1.0 has no place for it. The text format has no
//!   `_created`: there a `foo_created` line is an ordinary sample.
//! - **Timestamps.** OpenMetrics timestamps are float seconds, converted as Prometheus does
//!   (`seconds × 1000`, truncated toward zero, saturating); text timestamps are integer
//!   milliseconds.
//! - **Exemplars** are parsed and validated (where they may appear, their label length, value
//!   and timestamp) and kept beside the samples ([`Exposition::exemplars`]): Remote Write 2.0
//!   sends them.
//! - **Quoted names, as Prometheus 3 reads them** (`model/textparse`: `promlex.l`,
//!   `openmetricslex.l` and their parsers). Inside the braces, a quoted string followed by `,`
//!   or `}` instead of `=` is the metric name, wherever it stands in the set
//!   (`{"my.metric", a="b"}`, `{a="b", "my.metric"}`), when the line has no name before the
//!   braces and only once; label names may be quoted (`{"my.label"="x"}`, in exemplars too);
//!   HELP, TYPE and UNIT lines may quote their name (`# TYPE "my.metric" counter`). Outside
//!   the braces a quoted name is refused (`"my.metric" 1`, `"my.metric"{a="b"} 1`), as
//!   neither of Prometheus's lexers has a quoted string there. Escapes in a quoted name read
//!   as in a label value of the same format; unlike Prometheus, which keeps the escapes of a
//!   name in HELP/TYPE/UNIT as written, a metadata line's name is unescaped too, so that it
//!   names the same family as the samples. An empty quoted name (`{""}`, `{""="x"}`) fails
//!   here; Prometheus's parser takes it and its scrape then fails on the invalid name.
//! - **Duplicate series are left to the caller.** Two samples with the same name, labels and
//!   timestamp are both returned, as Prometheus's parsers return them (its storage then keeps
//!   the first and counts the rest as duplicates); [`Exposition::first_duplicate`] finds them.
//! - **OpenMetrics is checked against the specification** as the project's own test suite
//!   does (`tests/it/exposition.rs` runs all its 211 cases): metric points grouped, buckets in
//!   order and ending in `+Inf`, counters neither negative nor NaN, and so on. The signs of
//!   observed values are relaxed by default, [`Strictness::Prometheus`]: a histogram with
//!   negative bucket bounds may carry a `_sum` (of any sign) and a summary's quantiles and sum may be negative,
//!   because the Go client emits exactly that for negative observations and Prometheus
//!   accepts it; [`Strictness::Spec`] enforces those rules too (3 of the 211 cases differ).
//! - **The text format is read as Prometheus's `expfmt` reads it**: blanks and tabs between
//!   tokens, comments, blank lines and a trailing comma in a label set are fine; an unknown
//!   escape in a label value, a second HELP or TYPE, a TYPE after the family's samples, a
//!   float timestamp or a last line without its newline are not. Values are read by Rust's
//!   float parser, which does not take Go's hexadecimal floats (`0x1p-3`), never seen from a
//!   real exporter.

mod cache;
mod lex;
mod model;
mod openmetrics;
mod text;

pub use cache::SeriesTexts;
pub use model::{
    line_text, Exemplar, Exposition, Family, Kind, LabelIter, Labels, Limits, ParseError, Sample,
    SeriesText, Strictness,
};

/// The `Accept` header Prometheus 3 sends with its default scrape protocols: OpenMetrics 1.0.0
/// first, then OpenMetrics 0.0.1, the text format 1.0.0 (0.0.4 with quoted UTF-8 names), the
/// text format 0.0.4, and anything else last. `escaping=allow-utf-8` asks for names unescaped:
/// both parsers read quoted names. Prometheus 2 sent
/// `application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
application/openmetrics-text;version=0.0.1;q=0.4,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// The media type of OpenMetrics text, in a `Content-Type`.
pub const OPENMETRICS_MEDIA_TYPE: &str = "application/openmetrics-text";

/// Which parser reads a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, 0.0.4 (and 1.0.0).
    Text,
    /// OpenMetrics 1.0 text (and 0.0.1, which reads the same).
    OpenMetrics,
}

impl Format {
    /// The parser for an answer's `Content-Type` (the header's value; `""` when absent).
    /// `application/openmetrics-text` is OpenMetrics; anything else (`text/plain`, no header,
    /// an unknown type) is read as the text format 0.0.4. That is Prometheus 2's behaviour, and
    /// Prometheus 3's with `fallback_scrape_protocol: PrometheusText0.0.4`; without that
    /// setting Prometheus 3 fails a scrape whose `Content-Type` is missing or unknown. We never
    /// ask for the protobuf format, so a target that sends it anyway fails to parse as text.
    pub fn from_content_type(content_type: &str) -> Format {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case(OPENMETRICS_MEDIA_TYPE) {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Parses a whole exposition with the default [`Strictness::Prometheus`]. On any error nothing
/// of the body is returned.
pub fn parse(format: Format, body: &[u8], limits: &Limits) -> Result<Exposition, ParseError> {
    parse_with(format, body, limits, Strictness::Prometheus)
}

/// [`parse`] with a chosen strictness for OpenMetrics (the text format has no such choice).
pub fn parse_with(
    format: Format,
    body: &[u8],
    limits: &Limits,
    strictness: Strictness,
) -> Result<Exposition, ParseError> {
    parse_inner(format, body, limits, strictness, None)
}

/// [`parse`] for a caller that parses the same target's exposition again and again (the
/// scrape loop): the text format's sample lines are looked up in `cache` by their series text
/// and those it knows are read without lexing their labels (see [`SeriesTexts`]). The result
/// is the same as [`parse`]'s, the same samples or the same error, plus each sample's
/// [`Sample::series_text`]. OpenMetrics is parsed as by [`parse`], without the cache: its
/// checks span the lines of a metric point and are most of its cost.
pub fn parse_cached(
    format: Format,
    body: &[u8],
    limits: &Limits,
    cache: &mut SeriesTexts,
) -> Result<Exposition, ParseError> {
    parse_inner(format, body, limits, Strictness::Prometheus, Some(cache))
}

fn parse_inner(
    format: Format,
    body: &[u8],
    limits: &Limits,
    strictness: Strictness,
    cache: Option<&mut SeriesTexts>,
) -> Result<Exposition, ParseError> {
    if limits.body_size_limit != 0 && body.len() > limits.body_size_limit {
        return Err(ParseError::BodyTooLarge {
            size: body.len(),
            limit: limits.body_size_limit,
        });
    }
    // Spans into the parsed strings (the body, then unescaped strings no longer than it) are
    // u32; no sane exposition comes near 2 GiB.
    const SPAN_LIMIT: usize = (u32::MAX / 2) as usize;
    if body.len() > SPAN_LIMIT {
        return Err(ParseError::BodyTooLarge {
            size: body.len(),
            limit: SPAN_LIMIT,
        });
    }
    let body = match std::str::from_utf8(body) {
        Ok(body) => body,
        Err(error) => {
            let line = body[..error.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(ParseError::Malformed {
                line,
                reason: "invalid UTF-8",
            });
        }
    };
    match format {
        Format::Text => text::parse(body, limits, cache),
        Format::OpenMetrics => openmetrics::parse(body, limits, strictness),
    }
}

#[cfg(test)]
mod tests;
