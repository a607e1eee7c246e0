//! What one target's scrape loop remembers and decides, without I/O: an answer (or a
//! failure) in, the points to send out, with Prometheus's scrape-loop semantics. The task
//! (`super::run`) fetches and enqueues; this is the part the tests drive byte for byte.
//!
//! Per scrape, as Prometheus does it:
//! - **Labels.** Every sample gets the target's labels: `job`, `instance`, `node`, the
//!   `--label` ones and the target's own (a `static_configs` entry's, `metrics_path` for a
//!   kubelet endpoint). A sample's label that collides with one of them is renamed
//!   `exported_<name>` (`exported_exported_<name>` if that is taken too), unless
//!   `honor_labels`: then the sample's value wins and the target's label is left out of that
//!   series. Labels with an empty value are no labels.
//! - **Timestamps.** The scrape's start, unless the line has its own and `honor_timestamps`
//!   (the default) is on. A sample stamped past the agent's clock plus 2 minutes is left out
//!   and counted (`future_timestamp`).
//! - **The per-target series** `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//!   `scrape_samples_post_metric_relabeling` (after `--metric-allow`/`--metric-deny`) and
//!   `scrape_series_added` (series this scrape had that the previous one did not), stamped
//!   with the scrape's start, for failed scrapes too.
//! - **Staleness.** A series of the previous successful scrape missing from this one gets
//!   one stale marker. A failed scrape (unreachable, timeout, an error status, malformed,
//!   over a limit) sends nothing of the body and marks every series of the target stale
//!   once, as an empty scrape would. A series whose last sample carried its own timestamp
//!   gets no marker: the exporter decides when its samples end.
//! - **Duplicates.** A series repeated within one exposition keeps its first sample; the
//!   others are left out and counted (`duplicate`).
//! - **Metadata.** Each family's TYPE, HELP and UNIT go out with its series in Remote Write
//!   2.0; `_bucket`, `_sum`, `_count`, `_created`, `_total`, `_info` series carry their
//!   family's.
//!
//! Cost: a scraper keeps its target's series texts (`exposition::SeriesTexts`), each tagged
//! with the series it became, so a line of the last scrape goes to its series without its
//! labels being lexed, merged with the target's, renamed or hashed: the work Prometheus's
//! scrape cache saves too. The first scrape, and every new line, takes the long way and
//! fills the cache.

use std::collections::HashMap;
use std::time::Duration;

use crate::exposition::{self, Format, Kind, Limits, ParseError, SeriesTexts};
use crate::metadata::{Catalog, Kubelet, Meta, MetricType};
use crate::pipeline::filter::MetricFilter;
use crate::remote_write::{Protocol, Request};
use crate::series::{Admit, CommonLabels, Exemplar, Handle, Point, SeriesSet};

/// How far past the agent's clock an explicit timestamp may be (as for the kubelet's).
const FUTURE_ALLOWANCE_MS: i64 = crate::pipeline::convert::FUTURE_ALLOWANCE_MS;

/// Why a scrape failed: the whole scrape is lost, `up` is 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("cannot connect: {0}")]
    Unreachable(String),
    #[error("no answer within {0:?} (scrape_timeout)")]
    Timeout(Duration),
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the request failed: {0}")]
    Request(String),
    #[error("body larger than body_size_limit ({limit} bytes)")]
    BodyTooLarge { limit: usize },
    /// The exposition did not parse, or broke a limit while parsing; `text` is the line.
    #[error("{error}{}", if text.is_empty() { String::new() } else { format!(": {text:?}") })]
    Parse { error: ParseError, text: String },
}

impl Failure {
    /// The `result` label of `kubelet_push_scrapes_total` (one of
    /// `telemetry::Metrics::SCRAPE_RESULTS`).
    pub fn result(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) | Failure::Request(_) => "unreachable",
            Failure::Timeout(_) => "timeout",
            Failure::Status { .. } => "http_status",
            Failure::BodyTooLarge { .. }
            | Failure::Parse {
                error: ParseError::BodyTooLarge { .. },
                ..
            } => "body_size_limit",
            Failure::Parse {
                error: ParseError::SampleLimit { .. },
                ..
            } => "sample_limit",
            Failure::Parse { .. } => "malformed",
        }
    }

    /// The same failure kind, whatever the details: a target failing the same way scrape
    /// after scrape is one episode.
    pub fn same_kind(&self, other: &Failure) -> bool {
        self.result() == other.result()
    }
}

/// An answer to parse: the body and the `Content-Type` it came with (`""` when none).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub body: &'a [u8],
    pub content_type: &'a str,
}

/// The points of one scrape (naming series of the [`Scraper`] that made them, valid until
/// its next scrape) and how it went.
#[derive(Debug)]
pub struct ScrapeOutput {
    pub points: Vec<Point>,
    /// The exemplars of some of the points (OpenMetrics), in the order of their points: only
    /// those new for their series (see [`Scraper`]'s `exemplars`).
    pub exemplars: Vec<Exemplar>,
    pub error: Option<Failure>,
    /// Samples the exposition had (`scrape_samples_scraped`).
    pub scraped: usize,
    /// Samples left out: repeated series, and explicit timestamps in the future.
    pub duplicates: u64,
    pub future: u64,
}

/// How a target's samples are labelled and timed; see the module doc.
#[derive(Debug, Clone)]
pub struct Labelling {
    pub job: String,
    pub instance: String,
    pub node: String,
    /// `--label` pairs, then the target's own; none is `job`, `instance` or `node`.
    pub extra: Vec<(String, String)>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub limits: Limits,
}

impl Labelling {
    /// The target's labels, sorted by name, empty values left out.
    fn target_labels(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("instance".to_owned(), self.instance.clone()),
            ("job".to_owned(), self.job.clone()),
            ("node".to_owned(), self.node.clone()),
        ];
        pairs.extend(self.extra.iter().cloned());
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort();
        pairs
    }
}

/// One target's memory from scrape to scrape.
pub struct Scraper {
    labelling: Labelling,
    /// The target's labels, sorted by name: the series set's common labels, or (with
    /// `honor_labels`) added to each series where the exposition did not set them.
    target: Vec<(String, String)>,
    series: SeriesSet,
    encoders: crate::remote_write::Encoders,
    catalog: ScrapeCatalog,
    filter: Option<MetricFilter>,
    capacity_hint: usize,
    /// The series texts of the target's lines, each tagged with the [`Handle`] of the series
    /// it became (after the target's labels, `exported_` renaming and `honor_labels`, which
    /// do not change for the scraper's life but with the node name, and then every series
    /// starts afresh): a line seen in the last scrape is admitted by its handle, without its
    /// labels being lexed, merged, renamed or hashed. `None` when switched off
    /// (`Scraper::without_cache`, the tests' reference).
    texts: Option<SeriesTexts>,
    /// The points vector of the last scrape, once its caller is done with it
    /// ([`Scraper::recycle`]).
    spare_points: Vec<Point>,
    /// The last exemplar sent of each live series that had one, by [`Handle`] bits: an
    /// exemplar is sent once, when it first appears, not with every scrape that repeats it
    /// (Prometheus's exemplar storage keeps a series' newest and refuses the same one again,
    /// so its remote write sends each once).
    exemplars: HashMap<u64, SentExemplar>,
}

/// What makes an exemplar the same as the last one of its series, as Prometheus compares
/// them: labels and value, and the timestamp only when the exposition gave one (one without
/// is stamped with each scrape's time, and is still the same exemplar).
#[derive(Debug, PartialEq)]
struct SentExemplar {
    labels: Vec<(String, String)>,
    value_bits: u64,
    own_timestamp_ms: Option<i64>,
}

impl Scraper {
    pub fn new(labelling: Labelling, filter: Option<MetricFilter>) -> Self {
        let target = labelling.target_labels();
        let mut scraper = Scraper {
            target,
            series: SeriesSet::default(),
            encoders: Default::default(),
            catalog: ScrapeCatalog::default(),
            filter,
            capacity_hint: 0,
            labelling,
            texts: Some(SeriesTexts::new()),
            spare_points: Vec::new(),
            exemplars: HashMap::new(),
        };
        scraper.series.set_common(scraper.common());
        scraper
    }

    /// A scraper that lexes every line of every scrape, as one without the series-text cache
    /// did: the reference the cached one is tested against.
    #[cfg(any(test, feature = "test-support"))]
    pub fn without_cache(labelling: Labelling, filter: Option<MetricFilter>) -> Self {
        let mut scraper = Scraper::new(labelling, filter);
        scraper.texts = None;
        scraper
    }

    /// The series texts the scraper remembers (`None` without the cache).
    pub fn series_texts(&self) -> Option<&SeriesTexts> {
        self.texts.as_ref()
    }

    fn common(&self) -> CommonLabels {
        if self.labelling.honor_labels {
            CommonLabels::default()
        } else {
            CommonLabels::from_sorted(self.target.clone())
        }
    }

    /// The series the points of the last scrape name.
    pub fn series(&self) -> &SeriesSet {
        &self.series
    }

    pub fn job(&self) -> &str {
        &self.labelling.job
    }

    pub fn instance(&self) -> &str {
        &self.labelling.instance
    }

    /// Follows a change of the node name (known once the kubelet first answers), which is
    /// the `instance` too for a kubelet endpoint (`is_instance`). Every series starts
    /// afresh, since none sent so far carries the new name.
    pub fn set_node(&mut self, node: &str, is_instance: bool) {
        if node == self.labelling.node {
            return;
        }
        self.labelling.node = node.to_owned();
        if is_instance {
            self.labelling.instance = node.to_owned();
        }
        self.target = self.labelling.target_labels();
        self.series.clear();
        self.exemplars.clear();
        if let Some(texts) = &mut self.texts {
            // Their handles name nothing any more.
            texts.clear();
        }
        let common = self.common();
        self.series.set_common(common);
    }

    /// One scrape that started at `start_ms` (Unix milliseconds) and took `duration`: its
    /// answer, or why there is none.
    pub fn ingest(
        &mut self,
        answer: Result<Answer<'_>, Failure>,
        start_ms: i64,
        duration: Duration,
    ) -> ScrapeOutput {
        let start_ms = self.series.start_poll(start_ms, FUTURE_ALLOWANCE_MS);
        let live_before = self.series.len();
        let mut points = std::mem::take(&mut self.spare_points);
        points.clear();
        points.reserve(self.capacity_hint);
        let mut out = ScrapeOutput {
            points,
            exemplars: Vec::new(),
            error: None,
            scraped: 0,
            duplicates: 0,
            future: 0,
        };
        let parsed = answer.and_then(|a| {
            let format = Format::from_content_type(a.content_type);
            let limits = &self.labelling.limits;
            match &mut self.texts {
                Some(texts) => exposition::parse_cached(format, a.body, limits, texts),
                None => exposition::parse(format, a.body, limits),
            }
            .map_err(|error| {
                let text = error
                    .line()
                    .map(|line| exposition::line_text(a.body, line))
                    .unwrap_or_default();
                Failure::Parse { error, text }
            })
        });
        let mut post_filter = 0;
        match &parsed {
            Ok(exposition) => {
                out.scraped = exposition.len();
                if self.series.is_empty() {
                    // A first scrape: room for every series at once.
                    self.series.reserve(exposition.len());
                }
                self.catalog.begin(exposition);
                post_filter = self.admit_all(exposition, start_ms, &mut out);
            }
            Err(failure) => {
                out.error = Some(failure.clone());
                self.catalog.clear();
            }
        }
        if let (Ok(exposition), Some(texts)) = (parsed, &mut self.texts) {
            texts.recycle(exposition);
        }
        let added = self.series.len().saturating_sub(live_before);
        let up = if out.error.is_none() { 1.0 } else { 0.0 };
        for (name, value) in [
            ("up", up),
            ("scrape_duration_seconds", duration.as_secs_f64()),
            ("scrape_samples_scraped", out.scraped as f64),
            ("scrape_samples_post_metric_relabeling", post_filter as f64),
            ("scrape_series_added", added as f64),
        ] {
            let target: Vec<(&str, &str)> = if self.labelling.honor_labels {
                self.target
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect()
            } else {
                Vec::new()
            };
            if let Admit::Send(id) = self.series.admit(name, &target, start_ms) {
                out.points.push(Point {
                    id,
                    value,
                    timestamp_ms: start_ms,
                    start_ms: 0,
                });
            }
        }
        // A failed scrape is an empty one: every series of the last successful scrape goes
        // stale (the per-target series were just admitted, so they stay).
        self.series
            .finish_poll(start_ms, |point| out.points.push(point));
        if !self.exemplars.is_empty() {
            let series = &self.series;
            self.exemplars
                .retain(|&bits, _| series.is_live(Handle::from_bits(bits)));
        }
        self.capacity_hint = self.capacity_hint.max(out.points.len());
        out
    }

    /// Admits every sample of `exposition`; returns how many passed the metric filter.
    fn admit_all(
        &mut self,
        exposition: &exposition::Exposition,
        start_ms: i64,
        out: &mut ScrapeOutput,
    ) -> usize {
        let Labelling {
            honor_labels,
            honor_timestamps,
            ..
        } = self.labelling;
        let target = &self.target;
        let series = &mut self.series;
        let mut texts = self.texts.as_mut();
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(16);
        let mut owned: Vec<(String, String)> = Vec::new();
        let mut kept = 0;
        // The samples of a family are together, and the parser gives a run of one name one
        // copy of it: the filter and the catalog are asked once per run, found by address.
        let mut run: Option<(&str, bool)> = None;
        let mut exemplars = exposition.exemplars().peekable();
        let last_exemplars = &mut self.exemplars;
        for (index, sample) in exposition.samples().enumerate() {
            let allowed = match run {
                Some((name, allowed)) if same_str(name, sample.name) => allowed,
                _ => {
                    self.catalog.note(sample.name, sample.family);
                    let allowed = self.filter.as_ref().is_none_or(|f| f.allows(sample.name));
                    run = Some((sample.name, allowed));
                    allowed
                }
            };
            if !allowed {
                continue;
            }
            kept += 1;
            let explicit = sample.timestamp_ms.filter(|_| honor_timestamps);
            let timestamp_ms = explicit.unwrap_or(start_ms);
            let tracked = explicit.is_none();
            // A line of a series met before: admitted by its handle.
            let text = sample.series_text.zip(texts.as_deref_mut());
            let known = text
                .as_ref()
                .and_then(|(text, texts)| texts.tag(*text))
                .and_then(|tag| series.admit_handle(Handle::from_bits(tag), timestamp_ms, tracked));
            if let Some(admit) = known {
                out.take(admit, sample.value, timestamp_ms, sample.start_timestamp_ms);
                continue;
            }
            // Only OpenMetrics has exemplars, and the cache above only takes the text
            // format's lines: a sample with an exemplar is always admitted here.
            let exemplar = match exemplars.peek() {
                Some(e) if e.sample == index => exemplars.next(),
                Some(e) if e.sample < index => {
                    // Its sample was filtered out.
                    while exemplars.next_if(|e| e.sample < index).is_some() {}
                    exemplars.next_if(|e| e.sample == index)
                }
                _ => None,
            };
            pairs.clear();
            pairs.extend(sample.labels.iter().filter(|(_, v)| !v.is_empty()));
            let renamed: Vec<(&str, &str)>;
            let labels: &[(&str, &str)] = if honor_labels {
                // The exposition's labels win; the target's fill in the rest.
                for (n, v) in target {
                    if !pairs.iter().any(|(pn, _)| pn == n) {
                        pairs.push((n, v));
                    }
                }
                &pairs
            } else if pairs.iter().any(|(n, _)| is_target_label(target, n)) {
                exported(&pairs, target, &mut owned);
                renamed = owned
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                &renamed
            } else {
                &pairs
            };
            let (admit, handle) =
                series.admit_with_handle(sample.name, labels, timestamp_ms, tracked);
            if let Some((text, texts)) = text {
                texts.set_tag(text, handle.to_bits());
            }
            out.take(admit, sample.value, timestamp_ms, sample.start_timestamp_ms);
            if let (Some(e), Admit::Send(_)) = (exemplar, admit) {
                out.take_exemplar(&e, timestamp_ms, handle, last_exemplars);
            }
        }
        kept
    }

    /// Takes back the output of a scrape once it is encoded: its vector holds the next
    /// scrape's points, so a large target does not allocate (and fault in) a fresh one every
    /// scrape.
    pub fn recycle(&mut self, output: ScrapeOutput) {
        self.spare_points = output.points;
    }

    /// The requests of one scrape in `protocol`, at most `max_samples` samples each.
    pub fn encode_as(
        &mut self,
        protocol: Protocol,
        output: &ScrapeOutput,
        max_samples: usize,
    ) -> Result<Vec<Request>, snap::Error> {
        self.encoders.encode(
            protocol,
            &self.series,
            &output.points,
            &output.exemplars,
            &self.catalog,
            max_samples,
        )
    }

    /// The `--dry-run` text of one scrape.
    pub fn render_text(&self, output: &ScrapeOutput) -> String {
        crate::text::render_points(&self.series, &output.points)
    }
}

/// Whether `a` and `b` are the same text: by address and length first (the parser shares one
/// copy of a name among the lines that repeat it), by content otherwise.
fn same_str(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Whether `name` is one of the target's label names: compared by length and first byte
/// before the bytes, since nearly every label of an exposition is not one (this runs for every
/// label of every sample).
fn is_target_label(target: &[(String, String)], name: &str) -> bool {
    target.iter().any(|(t, _)| {
        t.len() == name.len() && t.as_bytes().first() == name.as_bytes().first() && t == name
    })
}

impl ScrapeOutput {
    /// Sends exemplar `e` of the point just taken (stamped `timestamp_ms` when it has no
    /// timestamp of its own), unless it is the one last sent for its series `handle`.
    fn take_exemplar(
        &mut self,
        e: &exposition::Exemplar<'_>,
        timestamp_ms: i64,
        handle: Handle,
        last: &mut HashMap<u64, SentExemplar>,
    ) {
        let seen = SentExemplar {
            labels: e
                .labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            value_bits: e.value.to_bits(),
            own_timestamp_ms: e.timestamp_ms,
        };
        if last.get(&handle.to_bits()) == Some(&seen) {
            return;
        }
        self.exemplars.push(Exemplar {
            point: (self.points.len() - 1) as u32,
            labels: seen.labels.clone(),
            value: e.value,
            timestamp_ms: e.timestamp_ms.unwrap_or(timestamp_ms),
        });
        last.insert(handle.to_bits(), seen);
    }

    /// Records what admitting a sample decided.
    #[inline]
    fn take(&mut self, admit: Admit, value: f64, timestamp_ms: i64, start_ms: Option<i64>) {
        match admit {
            Admit::Send(id) => self.points.push(Point {
                id,
                value,
                timestamp_ms,
                start_ms: start_ms.unwrap_or(0),
            }),
            Admit::Duplicate => self.duplicates += 1,
            Admit::Future => self.future += 1,
            Admit::NotNewer => {}
        }
    }
}

/// `labels` with every name the target sets renamed `exported_<name>` (prefixed again while
/// the new name is taken by another label of the sample), as Prometheus does without
/// `honor_labels`; written to `out`.
fn exported(labels: &[(&str, &str)], target: &[(String, String)], out: &mut Vec<(String, String)>) {
    out.clear();
    for &(n, v) in labels {
        if !is_target_label(target, n) {
            out.push((n.to_owned(), v.to_owned()));
            continue;
        }
        let mut name = format!("exported_{n}");
        while labels.iter().any(|(other, _)| *other == name)
            || target.iter().any(|(t, _)| *t == name)
        {
            name.insert_str(0, "exported_");
        }
        out.push((name, v.to_owned()));
    }
}

/// The family metadata of the last exposition: which family each sample name belongs to,
/// and its type, HELP and UNIT. Names the exposition did not have (the per-target series,
/// and stale markers of vanished series) fall back to kubelet-push's own families. Kept from
/// scrape to scrape, so a steady exposition allocates nothing here: the metadata strings are
/// rewritten in place, and a name is looked up once per run of its samples.
#[derive(Default)]
struct ScrapeCatalog {
    names: hashbrown::HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    metas: Vec<OwnedMeta>,
    /// Families of the current exposition (the first `len` of `metas`).
    len: usize,
    /// Names noted in this scrape, to notice when `names` holds many gone ones.
    noted: usize,
}

#[derive(Default)]
struct OwnedMeta {
    kind: MetricType,
    help: String,
    unit: String,
}

impl ScrapeCatalog {
    fn clear(&mut self) {
        self.names.clear();
        self.len = 0;
    }

    /// Takes the families of `exposition`; the names follow with [`ScrapeCatalog::note`].
    fn begin(&mut self, exposition: &exposition::Exposition) {
        // Names that vanished stay mapped until they are most of the map.
        if self.names.len() > 2 * self.noted + 64 {
            self.names.clear();
        }
        self.noted = 0;
        self.len = 0;
        for f in exposition.families() {
            if self.metas.len() == self.len {
                self.metas.push(OwnedMeta::default());
            }
            let m = &mut self.metas[self.len];
            m.kind = metric_type(f.kind);
            m.help.clear();
            m.help.push_str(f.help.unwrap_or_default());
            m.unit.clear();
            m.unit.push_str(f.unit.unwrap_or_default());
            self.len += 1;
        }
    }

    /// Sample name `name` belongs to family `family` of the current exposition.
    fn note(&mut self, name: &str, family: usize) {
        self.noted += 1;
        let family = u32::try_from(family).unwrap_or(u32::MAX);
        match self.names.get_mut(name) {
            Some(f) => *f = family,
            None => {
                self.names.insert(name.into(), family);
            }
        }
    }
}

/// The series a scrape adds of its own, with what they mean for a scrape target (the
/// kubelet's families of the same names describe a poll of the summary).
const REPORT: [(&str, &str, &str); 5] = [
    (
        "up",
        "",
        "1 when the target answered and its exposition parsed, 0 otherwise",
    ),
    (
        "scrape_duration_seconds",
        "seconds",
        "Duration of the scrape: request, answer and parse",
    ),
    ("scrape_samples_scraped", "", "Samples the target exposed"),
    (
        "scrape_samples_post_metric_relabeling",
        "",
        "Samples left after --metric-allow and --metric-deny",
    ),
    (
        "scrape_series_added",
        "",
        "Series this scrape had that the previous one did not",
    ),
];

/// Families: the exposition's (`0..len`), then the scrape's own series ([`REPORT`]), then
/// the kubelet's (for the kubelet endpoints' per-poll series).
impl Catalog for ScrapeCatalog {
    fn len(&self) -> usize {
        self.len + REPORT.len() + Kubelet.len()
    }

    fn index(&self, name: &str) -> Option<usize> {
        match self.names.get(name) {
            Some(&i) if (i as usize) < self.len => Some(i as usize),
            _ => match REPORT.iter().position(|(n, ..)| *n == name) {
                Some(i) => Some(self.len + i),
                None => Kubelet.index(name).map(|i| self.len + REPORT.len() + i),
            },
        }
    }

    fn meta(&self, index: usize) -> Meta<'_> {
        if let Some(m) = self.metas.get(index).filter(|_| index < self.len) {
            return Meta {
                kind: m.kind,
                help: &m.help,
                unit: &m.unit,
            };
        }
        match REPORT.get(index - self.len) {
            Some((_, unit, help)) => Meta {
                kind: MetricType::Gauge,
                help,
                unit,
            },
            None => Kubelet.meta(index - self.len - REPORT.len()),
        }
    }
}

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
        Kind::GaugeHistogram => MetricType::GaugeHistogram,
        Kind::Summary => MetricType::Summary,
        Kind::Info => MetricType::Info,
        Kind::StateSet => MetricType::StateSet,
        Kind::Unknown => MetricType::Unknown,
    }
}
