//! Every case of both compliance suites, with our verdict per protocol version: what
//! `docs/conformance.md` shows. A verdict is claimed here and held by the case's test (see the
//! module doc of `conformance`): a row may not say `Pass` for a case whose test does not
//! exist or does not run that version.

/// Which suite a case comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// prometheus/compliance `remotewrite/sender/` on `main` (2026, written for 2.0).
    Main2026,
    /// The 1.0 suite, `remotewrite/sender/cases/` at commit adfa690.
    V1Adfa690,
}

/// The requirement level the case declares (the 1.0 suite declares none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
    May,
    /// "Not in specification but recommended for performance" (the 2026 suite's README).
    Recommended,
    None,
}

/// What our agent does for a case in one protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Passes: the case's test asserts what the case asserts.
    Pass,
    /// Deliberately different, for the reason given; the case's test asserts our behaviour.
    Deviation(&'static str),
    /// Not supported, for the reason given.
    NotSupported(&'static str),
    /// The case is about the other protocol version.
    NotApplicable(&'static str),
    /// Not carried over yet: no test of ours checks it. The issue stays open while any row
    /// says this.
    Pending,
}

impl Verdict {
    fn cell(&self) -> String {
        match self {
            Verdict::Pass => "pass".into(),
            Verdict::Deviation(why) => format!("deviation: {why}"),
            Verdict::NotSupported(why) => format!("not supported: {why}"),
            Verdict::NotApplicable(why) => format!("n/a ({why})"),
            Verdict::Pending => "not carried over yet".into(),
        }
    }
}

pub struct Row {
    /// `N001`-`N157` (2026), `L01`-`L19` (1.0); our tests are named after it.
    pub id: &'static str,
    pub suite: Suite,
    /// The case as the suite names it (Go test path).
    pub case: &'static str,
    pub level: Level,
    /// What the case checks, in one line.
    pub what: &'static str,
    pub v1: Verdict,
    pub v2: Verdict,
}

pub fn row(id: &str) -> &'static Row {
    ROWS.iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no conformance row {id}"))
}

/// The document, rendered from [`ROWS`].
pub fn render() -> String {
    let mut out = String::from(
        "# Remote Write sender conformance\n\
         \n\
         <!-- Written by `KUBELET_PUSH_BLESS=1 cargo test --test it conformance::the_table`; \
         `cargo test` fails when this file and tests/it/conformance/cases.rs disagree. -->\n\
         \n\
         Prometheus publishes a compliance suite for Remote Write senders in\n\
         [prometheus/compliance](https://github.com/prometheus/compliance), folder\n\
         `remotewrite/sender/`: the 2026 suite on `main` (written for Remote Write 2.0, each case\n\
         tagged MUST, SHOULD, MAY or RECOMMENDED) and the older 1.0 suite at commit `adfa690`\n\
         (no levels). Its Go modules are not used here: each case was read and is checked by a\n\
         test of ours in `tests/it/conformance/`, named after the case's id below, that drives\n\
         the agent the suite's way (the agent scrapes a target serving the case's exposition\n\
         and pushes to an in-test receiver that records every request and answers as the case\n\
         says) and asserts what the case asserts, with `--remote-write-version 1` and `2` where\n\
         the case applies. Where a case is weaker than its name (the suite's validators often\n\
         look at the last request only and pass when none arrived), our test checks what the\n\
         name and level say and requires that something was sent.\n\
         \n\
         A row's verdict is what its test asserts: *pass*; *deviation*, our behaviour differs on\n\
         purpose for the reason given, and the test asserts ours; *not supported*, with the\n\
         reason; *n/a*, the case is about the other protocol version; *not carried over yet*,\n\
         no test of ours checks it so far.\n\
         \n",
    );
    let count = |f: &dyn Fn(&Verdict) -> bool| {
        ROWS.iter()
            .map(|r| usize::from(f(&r.v1)) + usize::from(f(&r.v2)))
            .sum::<usize>()
    };
    out.push_str(&format!(
        "Cases: {} (2026: {}, 1.0: {}). Verdicts over both versions: {} pass, {} deviation, {} not supported, {} n/a, {} not carried over yet.\n\n",
        ROWS.len(),
        ROWS.iter().filter(|r| r.suite == Suite::Main2026).count(),
        ROWS.iter().filter(|r| r.suite == Suite::V1Adfa690).count(),
        count(&|v| matches!(v, Verdict::Pass)),
        count(&|v| matches!(v, Verdict::Deviation(_))),
        count(&|v| matches!(v, Verdict::NotSupported(_))),
        count(&|v| matches!(v, Verdict::NotApplicable(_))),
        count(&|v| matches!(v, Verdict::Pending)),
    ));
    for (suite, title) in [
        (Suite::Main2026, "## The 2026 suite (`main`)"),
        (Suite::V1Adfa690, "## The 1.0 suite (`adfa690`)"),
    ] {
        out.push_str(title);
        out.push_str(
            "\n\n| id | case | level | what it checks | 1.0 | 2.0 |\n|---|---|---|---|---|---|\n",
        );
        for r in ROWS.iter().filter(|r| r.suite == suite) {
            let level = match r.level {
                Level::Must => "MUST",
                Level::Should => "SHOULD",
                Level::May => "MAY",
                Level::Recommended => "RECOMMENDED",
                Level::None => "",
            };
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} |\n",
                r.id,
                r.case,
                level,
                r.what.replace('|', "\\|"),
                r.v1.cell(),
                r.v2.cell()
            ));
        }
        out.push('\n');
    }
    out.push_str(&super::receivers::render());
    out
}

/// Why the native-histogram cases are not supported.
const NATIVE_HISTOGRAMS: &str =
    "native histograms need the protobuf exposition format, which the agent does not scrape";

/// Why N075 is not supported.
const ONE_EXEMPLAR_PER_SERIES: &str = "an OpenMetrics sample line carries one exemplar and each scrape goes as its own request, so a series carries at most one; each bucket's exemplar goes in its own series, once";

/// The deviation of N136.
const FUTURE: &str = "a sample more than 2 minutes ahead of the agent's clock is left out and counted (`kubelet_push_scrape_samples_invalid_total{reason=\"future_timestamp\"}`); Prometheus keeps it";

/// One line per case: `id suite level "case" "what" v1 v2;`, a verdict being `Pass`,
/// `Pending` or `(Deviation "reason")`, `(NotSupported "reason")`, `(NotApplicable "why")`.
/// (A line each, so the list reads as the table it is.)
macro_rules! rows {
    ($($id:ident $suite:ident $level:ident $case:literal $what:literal $v1:tt $v2:tt;)*) => {
        [$(Row {
            id: stringify!($id),
            suite: Suite::$suite,
            case: $case,
            level: Level::$level,
            what: $what,
            v1: verdict!($v1),
            v2: verdict!($v2),
        },)*]
    };
}

macro_rules! verdict {
    (($kind:ident $why:expr)) => {
        Verdict::$kind($why)
    };
    ($kind:ident) => {
        Verdict::$kind
    };
}

pub const ROWS: &[Row] = &rows! {
    N001 Main2026 Must "TestProtocolCompliance/content_type_protobuf" "Content-Type contains `application/x-protobuf`" Pass Pass;
    N002 Main2026 Should "TestProtocolCompliance/content_type_with_proto_param" "Content-Type contains `proto=io.prometheus.write.v2.Request`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N003 Main2026 Must "TestProtocolCompliance/content_encoding_snappy" "Content-Encoding == `snappy`" Pass Pass;
    N004 Main2026 Must "TestProtocolCompliance/version_header_present" "X-Prometheus-Remote-Write-Version non-empty" Pass Pass;
    N005 Main2026 Should "TestProtocolCompliance/version_header_value" "version starts with `2.0`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N006 Main2026 Must "TestProtocolCompliance/user_agent_present" "User-Agent non-empty" Pass Pass;
    N007 Main2026 Must "TestProtocolCompliance/snappy_block_format" "body non-empty, not snappy-framed magic" Pass Pass;
    N008 Main2026 Must "TestProtocolCompliance/protobuf_parseable" "decodes as v2, symbols non-empty" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N009 Main2026 Must "TestHTTPMethod" "requests use POST (the suite never checks the method; our receiver refuses any other)" Pass Pass;
    N010 Main2026 Must "TestSampleEncoding/float_value_encoding" "every sample of `test_metric` in every request is exactly 123.45 (suite: the first sample of the last request)" Pass Pass;
    N011 Main2026 Must "TestSampleEncoding/integer_value_encoding" "every sample of `test_counter_total` is exactly 42.0" Pass Pass;
    N012 Main2026 Must "TestSampleEncoding/zero_value_encoding" "every sample of `test_gauge` is exactly 0.0" Pass Pass;
    N013 Main2026 Must "TestSampleEncoding/negative_value_encoding" "every sample of `temperature_celsius` is exactly −15.5" Pass Pass;
    N014 Main2026 Must "TestSampleEncoding/positive_infinity_encoding" "every sample of `test_gauge` is +Inf" Pass Pass;
    N015 Main2026 Must "TestSampleEncoding/negative_infinity_encoding" "every sample of `test_gauge` is −Inf" Pass Pass;
    N016 Main2026 Must "TestSampleEncoding/nan_encoding" "every sample of `test_gauge` is a NaN, none of them the staleness marker" Pass Pass;
    N017 Main2026 Must "TestSampleEncoding/timestamp_milliseconds_format" "every timestamp of `test_metric` is in ms: between the test's clock before the start and after the stop (suite: 1e12 < ts < 1e16)" Pass Pass;
    N018 Main2026 Should "TestSampleEncoding/timestamp_recent" "every timestamp of `test_metric` is within 5 min of now" Pass Pass;
    N019 Main2026 May "TestSampleEncoding/multiple_samples_same_series" "`test_counter_total` arrives in three requests or more, a newer sample in each, all 100 (suite: present in the last request)" Pass Pass;
    N020 Main2026 Must "TestSampleEncoding/large_float_values" "every sample of `test_large` is exactly 1.7976931348623157e308, the largest float (suite: > 1e307)" Pass Pass;
    N021 Main2026 Must "TestSampleEncoding/small_float_values" "every sample of `test_small` is exactly 2.2250738585072014e-308 (suite: 0 < v < 1e-307)" Pass Pass;
    N022 Main2026 Must "TestSampleEncoding/scientific_notation" "every sample of `test_scientific` is exactly the float 1.23e-4 (suite: within 1e-7)" Pass Pass;
    N023 Main2026 Should "TestSampleEncoding/precision_preservation" "every sample of `test_precision` is exactly 0.123456789012345 (suite: value unchecked)" Pass Pass;
    N024 Main2026 Should "TestSampleEncoding/job_instance_labels_present" "every `test_metric` has `job=\"test\"` and `instance` = the target's host:port (suite: both non-empty)" Pass Pass;
    N025 Main2026 Must "TestSampleOrdering" "over three scrapes or more, each sample of every series is newer than the one sent before it, within and across requests (suite: within the last request, where each series has one sample)" Pass Pass;
    N026 Main2026 Must "TestLabelValidation/label_lexicographic_ordering" "`test_metric`'s labels arrive as `__name__`, `aaa`, `bbb`, `instance`, `job`, `node`, `zzz`; every series of every request strictly sorted by name" Pass Pass;
    N027 Main2026 Must "TestLabelValidation/metric_name_label_present" "every series of every request has a non-empty `__name__`" Pass Pass;
    N028 Main2026 Must "TestLabelValidation/metric_name_format_valid" "every series name matches `[a-zA-Z_:][a-zA-Z0-9_:]*`; `valid_metric_name:subsystem_total` arrives as 42" Pass Pass;
    N029 Main2026 Must "TestLabelValidation/label_name_format_valid" "the suite's bytes lack the final newline the text format requires: the scrape is refused (`up` 0, `test_metric` not sent), and what is sent has valid label names; with the newline, `valid_label` and `another_1` arrive and every label name matches `[a-zA-Z_][a-zA-Z0-9_]*`" Pass Pass;
    N030 Main2026 Must "TestLabelValidation/no_duplicate_label_names" "(newline added, see N029) no series repeats a label name; `test_metric` has `foo` and `baz` once each" Pass Pass;
    N031 Main2026 Must "TestLabelValidation/label_names_not_empty" "(newline added, see N029) no series has an empty label name; `label=\"value\"` arrives" Pass Pass;
    N032 Main2026 May "TestLabelValidation/label_values_may_be_empty" "(newline added, see N029) `test_metric` arrives without `empty`, and no series has an empty value" (Deviation "empty values are not sent: in Prometheus's data model a label with an empty value is no label, so `empty=\"\"` is left out, as Prometheus leaves it out") (Deviation "empty values are not sent: in Prometheus's data model a label with an empty value is no label, so `empty=\"\"` is left out, as Prometheus leaves it out");
    N033 Main2026 Should "TestLabelValidation/reserved_label_prefix" "(newline added, see N029) no series has a `__` label besides `__name__`; `normal` arrives" Pass Pass;
    N034 Main2026 Must "TestLabelValidation/unicode_in_label_values" "(newline added, see N029) `emoji=\"🚀\"` and `chinese=\"测试\"` arrive byte for byte (suite: some non-ASCII value non-empty)" Pass Pass;
    N035 Main2026 Must "TestLabelValidation/special_chars_in_label_values" "(newline added, see N029) `path` and `query` arrive exactly (suite: non-empty)" Pass Pass;
    N036 Main2026 Should "TestLabelValidation/very_long_label_names" "(newline added, see N029) the 66-character label name arrives with its value (suite: cannot fail)" Pass Pass;
    N037 Main2026 Should "TestLabelValidation/very_long_label_values" "(newline added, see N029) the 161-character value arrives exactly (suite: cannot fail)" Pass Pass;
    N038 Main2026 Should "TestLabelValidation/many_labels_per_series" "(newline added, see N029) all ten labels arrive, 14 with `__name__`, `instance`, `job`, `node` (suite: cannot fail)" Pass Pass;
    N039 Main2026 Must "TestSymbolTable/empty_string_at_index_zero" "every request's symbols start with \"\"" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N040 Main2026 Recommended "TestSymbolTable/string_deduplication" "no string twice in any request's table (the empty one included) and none unreferenced; the repeated series keeps its first sample" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N041 Main2026 Must "TestSymbolTable/labels_refs_valid_indices" "every label, metadata and exemplar ref of every request < len(symbols)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N042 Main2026 Must "TestSymbolTable/labels_refs_even_length" "every series' `labels_refs` has even length, in every request" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N043 Main2026 Recommended "TestSymbolTableEfficiency" "≤ 30 non-empty entries; checked as what the bound means: each string once per table, and ≤ 30 leaving out what only we add (the `node` label, and the help and unit strings of the scrape's own series, which Prometheus does not send in the suite's setup)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N044 Main2026 Should "TestMetadataEncoding/metadata_type_counter" "every `http_requests_total` series says COUNTER, help \"Total HTTP requests\", no unit (suite: if typed, COUNTER)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N045 Main2026 Should "TestMetadataEncoding/metadata_type_gauge" "every `memory_usage_bytes` series says GAUGE, help \"Current memory usage\" (suite: if typed, GAUGE)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N046 Main2026 Should "TestMetadataEncoding/metadata_type_histogram" "the `_bucket`, `_sum` and `_count` series all say HISTOGRAM and help \"Request duration\" (suite: if typed, HISTOGRAM on `_count`)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N047 Main2026 Should "TestMetadataEncoding/metadata_type_summary" "the quantile, `_sum` and `_count` series all say SUMMARY and help \"RPC duration\" (suite: if typed, SUMMARY)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N048 Main2026 Should "TestMetadataEncoding/metadata_help_text" "the help is exactly \"The total number of HTTP requests\" (suite: contains \"HTTP requests\")" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N049 Main2026 May "TestMetadataEncoding/metadata_unit" "the text format 0.0.4 has no UNIT (`# UNIT` is a comment there): none is sent for the suite's bytes; the same family in OpenMetrics arrives with unit `bytes`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N050 Main2026 Should "TestMetadataEncoding/metadata_help_with_newlines" "a HELP with an escaped newline arrives with the newline; the suite's bytes give one metric two HELP lines, which the text format forbids: the scrape is refused (`up` 0), as `expfmt` refuses it (Prometheus keeps one of them)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N051 Main2026 Should "TestMetadataEncoding/metadata_help_with_special_chars" "the help arrives exactly as `This help contains \"quotes\" and \\backslashes\\` (text format HELP escapes only backslash and newline; suite: non-empty)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N052 Main2026 Must "TestMetadataEncoding/metadata_help_refs_valid" "every help and unit ref of every request < len(symbols); `test_metric`'s help resolves to its text" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N053 Main2026 Should "TestMetadataEncoding/metadata_consistent_across_series" "in every request both series say COUNTER and point at the same help entry" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N054 Main2026 May "TestMetadataEncoding/metadata_empty_help_allowed" "`no_help_metric` arrives typed COUNTER with help ref 0" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N055 Main2026 Must "TestHistogramEncoding/native_histogram_structure" "the classic `_bucket`, `_sum`, `_count` series, each with its value, buckets in order, in one request per scrape (the suite has no native histogram input)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N056 Main2026 Must "TestHistogramEncoding/histogram_count_present" "`test_histogram_count` == 100 in every scrape, with the other parts" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N057 Main2026 Must "TestHistogramEncoding/histogram_sum_present" "`test_histogram_sum` == 250.5 in every scrape, with the other parts" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N058 Main2026 Should "TestHistogramEncoding/histogram_buckets_ordered" "every request carries the five buckets in ascending `le`, `le` as written (`1.0`)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N059 Main2026 May "TestHistogramEncoding/histogram_positive_buckets" "native positive spans; we check the classic `_count`/`_sum` go out" (NotApplicable "a Remote Write 2.0 feature") (NotSupported NATIVE_HISTOGRAMS);
    N060 Main2026 May "TestHistogramEncoding/histogram_negative_buckets" "native negative buckets; we check a negative classic `_sum` goes out" (NotApplicable "a Remote Write 2.0 feature") (NotSupported NATIVE_HISTOGRAMS);
    N061 Main2026 May "TestHistogramEncoding/histogram_zero_bucket" "native zero bucket; we check the classic `_count`/`_sum` go out" (NotApplicable "a Remote Write 2.0 feature") (NotSupported NATIVE_HISTOGRAMS);
    N062 Main2026 Must "TestHistogramEncoding/histogram_schema" "native schema; we check the classic `_count`/`_sum` go out" (NotApplicable "a Remote Write 2.0 feature") (NotSupported NATIVE_HISTOGRAMS);
    N063 Main2026 Must "TestHistogramEncoding/histogram_timestamp" "every part stamped with the scrape's time (ms), the same as its `up`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N064 Main2026 Must "TestHistogramEncoding/histogram_no_mixed_with_samples" "no 2.0 series carries both samples and histograms (none carries histograms)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N065 Main2026 Should "TestHistogramEncoding/histogram_empty_buckets" "a histogram with no observations: its zeros go out" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N066 Main2026 Must "TestHistogramEncoding/histogram_large_counts" "count and `+Inf` bucket 1e9, sum 5e9, exactly" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N067 Main2026 May "TestExemplarEncoding/exemplar_with_trace_id" "first exemplar has `trace_id`: on its bucket, value and ms timestamp exact, sent once" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N068 Main2026 May "TestExemplarEncoding/exemplar_with_span_id" "`span_id` non-empty if present; the suite's line (a counter sample without `_total`, not OpenMetrics) is refused whole, `up` 0; checked on it named `_total`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N069 Main2026 Must "TestExemplarEncoding/exemplar_value_valid" "the exemplar's value exactly; the suite's line (a counter sample without `_total`) is refused whole, `up` 0; checked on it named `_total`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N070 Main2026 Must "TestExemplarEncoding/exemplar_timestamp_valid" "exemplar timestamp in ms, exactly the exposition's seconds x 1000 (every exemplar: > 1e12); the suite's line is refused whole, checked on it named `_total`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N071 Main2026 Must "TestExemplarEncoding/exemplar_labels_valid_refs" "exemplar refs < len(symbols) (every exemplar), naming its labels; the suite's line is refused whole, checked on it named `_total`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N072 Main2026 May "TestExemplarEncoding/exemplar_custom_labels" "custom exemplar labels sent as written; the suite's line is refused whole, checked on it named `_total`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N073 Main2026 May "TestExemplarEncoding/exemplar_on_histogram" "the bucket series carries its exemplar, once; the histogram scraped whole" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N074 Main2026 Must "TestExemplarEncoding/exemplar_labels_even_length" "exemplar refs in pairs (every exemplar); the suite's line is refused whole, checked on it named `_total`" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N075 Main2026 May "TestExemplarEncoding/multiple_exemplars_per_series" "> 1 exemplar on a series; EH" (NotApplicable "a Remote Write 2.0 feature") (NotSupported ONE_EXEMPLAR_PER_SERIES);
    N076 Main2026 Must "TestTimestampEncoding/timestamp_int64_milliseconds" "every sample of every series is in ms: between the test's clock before the start and after the stop (suite: the first series, 1e12 < ts < 1e16)" Pass Pass;
    N077 Main2026 Must "TestTimestampEncoding/timestamp_ordering_within_series" "as N025: each sample of every series newer than the one sent before it, over three scrapes or more (no histograms here)" Pass Pass;
    N078 Main2026 May "TestTimestampEncoding/start_timestamp_for_counters" "the text format has no start time: every start timestamp 0 (unset) for the suite's bytes; with OpenMetrics `_created`, every sample of the counter carries it in ms" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N079 Main2026 May "TestTimestampEncoding/start_timestamp_for_histograms" "as N078 for a histogram: start 0 for the suite's bytes; the `_created` time on every `_bucket`, `_count` and `_sum` sample" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N080 Main2026 Should "TestTimestampEncoding/start_timestamp_zero_handling" "every start timestamp is 0 or a real ms time; an OpenMetrics `_created 0` is sent as unset (0)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N081 Main2026 Should "TestTimestampEncoding/timestamp_precision" "two scrapes a quarter second apart are not both on a whole second; every timestamp within 10 min of now" Pass Pass;
    N082 Main2026 Should "TestTimestampEncoding/timestamp_future_values" "no sample stamped past the test's clock; an explicit timestamp 1 min ahead (within the agent's 2 min allowance) arrives as it is" Pass Pass;
    N083 Main2026 Should "TestTimestampEncoding/start_timestamp_before_sample_timestamp" "with the suite's bytes no start is sent; with `_created` a minute ago every start equals it and is ≤ its sample's timestamp" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N084 Main2026 Must "TestRetryBehavior/no_retry_on_400" "400 to every request: each poll's request sent once, dropped and counted, one warning; later polls delivered" Pass Pass;
    N085 Main2026 Must "TestRetryBehavior/no_retry_on_401" "401: ours retries until it works (default); with --remote-retry-auth-errors=false each request goes once and is dropped" (Deviation "401, 403 and 407 are retried by default until the credentials work (they are re-read before every attempt), so a rotated credential that reaches the node late costs no data; --remote-retry-auth-errors=false drops the request as the spec says") (Deviation "401, 403 and 407 are retried by default until the credentials work (they are re-read before every attempt), so a rotated credential that reaches the node late costs no data; --remote-retry-auth-errors=false drops the request as the spec says");
    N086 Main2026 Must "TestRetryBehavior/no_retry_on_404" "404: each poll's request sent once, dropped and counted, one warning" Pass Pass;
    N087 Main2026 May "TestRetryBehavior/may_retry_on_429" "429 + Retry-After: 1: the same request again, each attempt at least 1 s after the last; nothing lost" Pass Pass;
    N088 Main2026 Must "TestRetryBehavior/retry_on_500" "500 three times: the same request until taken; nothing lost, one warning" Pass Pass;
    N089 Main2026 Must "TestRetryBehavior/retry_on_503" "503 three times: the same request until taken; nothing lost, one warning" Pass Pass;
    N090 Main2026 Should "TestRetryBehavior/retry_on_502" "502 three times: the same request until taken; nothing lost, one warning" Pass Pass;
    N091 Main2026 Should "TestRetryBehavior/retry_on_504" "504 three times: the same request until taken; nothing lost, one warning" Pass Pass;
    N092 Main2026 Should "TestRetryBehavior/no_retry_on_413" "413: each poll's request sent once, dropped and counted, one warning" Pass Pass;
    N093 Main2026 Should "TestBackoffBehavior/exponential_backoff_on_retries" "503 to everything: ceilings double up to --max-backoff, then every gap is at least --max-backoff" (Deviation "full jitter: each delay is drawn between 0 and a ceiling that doubles from --min-backoff to --max-backoff, so a delay may be shorter than the one before (the suite wants each at least 0.8 times the previous); at the cap every delay is --max-backoff") (Deviation "full jitter: each delay is drawn between 0 and a ceiling that doubles from --min-backoff to --max-backoff, so a delay may be shorter than the one before (the suite wants each at least 0.8 times the previous); at the cap every delay is --max-backoff");
    N094 Main2026 Must "TestBackoffBehavior/backoff_required" "503 to everything: one request retried, never in a busy loop, gaps at least --max-backoff once capped" Pass Pass;
    N095 Main2026 Should "TestBackoffBehavior/backoff_max_delay" "502 to everything: gaps at least --max-backoff once capped, none near 60 s" Pass Pass;
    N096 Main2026 Recommended "TestBackoffBehavior/backoff_with_jitter" "503 to everything: ≥ 3 attempts; delays drawn at random per request" Pass Pass;
    N097 Main2026 Should "TestFallbackBehavior/fallback_on_415_unsupported_media_type" "415 to the first 2.0 request (the suite never sends it): the same samples again as 1.0, one log line" (NotApplicable "the fallback goes from 2.0 to 1.0") Pass;
    N098 Main2026 Should "TestFallbackBehavior/retry_with_different_version" "after the 415, the same samples with version 0.1.0, at once" (NotApplicable "the fallback goes from 2.0 to 1.0") Pass;
    N099 Main2026 Must "TestFallbackBehavior/fallback_header_changes" "after the 415, Content-Type application/x-protobuf and a valid 1.0 body on every request" (NotApplicable "the fallback goes from 2.0 to 1.0") Pass;
    N100 Main2026 Should "TestFallbackBehavior/accept_success_after_fallback" "after the 415, every 1.0 request taken once, nothing lost" (NotApplicable "the fallback goes from 2.0 to 1.0") Pass;
    N101 Main2026 Should "TestFallbackBehavior/persistent_fallback_choice" "after the 415, every later request (≥ 10) is 1.0" (NotApplicable "the fallback goes from 2.0 to 1.0") Pass;
    N102 Main2026 Must "TestNoFallbackOn2xx" "204 + Samples-Written: 1 to everything: all 2.0, nothing sent again, the rest counted refused, one warning" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N103 Main2026 Should "TestResponseProcessing/ignore_response_body_on_success" "2xx with a body (200 and 204, Samples-Written: 1): success, nothing sent again" Pass Pass;
    N104 Main2026 May "TestResponseProcessing/process_written_count_headers" "Samples-Written: 3: 3 counted sent per request, the rest refused, one warning" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N105 Main2026 Should "TestResponseProcessing/handle_partial_write_response" "400 \"Rejected 1 sample\" (no written counts): dropped once as rejected, not retried" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N106 Main2026 Should "TestResponseProcessing/handle_missing_written_headers" "400 without written counts: all counted rejected, not retried" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N107 Main2026 Must "TestResponseProcessing/log_error_messages_verbatim" "400 with a message: the log line holds it verbatim, once" Pass Pass;
    N108 Main2026 Should "TestResponseProcessing/handle_large_error_body" "400 with 28 KB: dropped once, its first 200 characters logged once" Pass Pass;
    N109 Main2026 Must "TestResponseProcessing/handle_204_no_content" "204 (true and fixed counts): success, nothing sent again, nothing lost" Pass Pass;
    N110 Main2026 Must "TestResponseProcessing/handle_200_ok" "200 \"OK\" + Samples-Written: 1: success, nothing sent again" Pass Pass;
    N111 Main2026 Should "TestContentTypeNegotiation" "every request's Content-Type names its message, the first included" Pass Pass;
    N112 Main2026 Should "TestErrorHandling/handle_connection_refused" "closed port, then a receiver on it: retried, everything delivered, one warning" Pass Pass;
    N113 Main2026 Should "TestErrorHandling/handle_timeout" "first answer never comes: given up after --remote-timeout, same samples again, nothing lost" Pass Pass;
    N114 Main2026 Should "TestErrorHandling/handle_partial_write" "200 \"partial\" without counts: 1.0 taken; 2.0 sent again as 1.0 (a pre-2.0 receiver's answer), nothing lost" Pass Pass;
    N115 Main2026 Should "TestErrorHandling/handle_malformed_response" "200 with a text body, no counts: as N114" Pass Pass;
    N116 Main2026 Must "TestErrorHandling/sender_continues_after_errors" "500 to everything: keeps polling and retrying, then delivers everything; one warning" Pass Pass;
    N117 Main2026 Should "TestErrorHandling/handle_invalid_status_code" "status 999: each request dropped once as rejected (as Prometheus does), one warning, agent goes on" Pass Pass;
    N118 Main2026 Should "TestErrorHandling/handle_empty_response" "200, empty, no counts: as N114" Pass Pass;
    N119 Main2026 Should "TestErrorHandling/handle_large_error_response" "400 with 1 MiB: dropped once, a bounded read, one warning" Pass Pass;
    N120 Main2026 Should "TestNetworkErrors/dns_resolution_failure" "a host no resolver can look up (a 64-byte label: no DNS query leaves the machine): retried, polls kept" Pass Pass;
    N121 Main2026 Should "TestNetworkErrors/invalid_url_scheme" "`invalid://` URL: refused at startup naming --remote-url" (Deviation "refused at startup with an error naming --remote-url: no request can go to such a URL, so the mistake is reported at once (Prometheus accepts it and fails every request)") (Deviation "refused at startup with an error naming --remote-url: no request can go to such a URL, so the mistake is reported at once (Prometheus accepts it and fails every request)");
    N122 Main2026 Recommended "TestBatchingBehavior/multiple_series_per_request" "each scrape's request holds all six series, one scrape per request" Pass Pass;
    N123 Main2026 Recommended "TestBatchingBehavior/batch_size_reasonable" "12 000 series: keeping up, ceil(n / 2000) requests per scrape; catching up, one merged request > 10 000" (Deviation "while the agent keeps up a request holds at most --max-samples-per-send samples (2000); after an outage the backlog goes in merged requests of up to --max-catch-up-size (2 MiB compressed, about 75,000 samples), a few round trips instead of thousands") (Deviation "while the agent keeps up a request holds at most --max-samples-per-send samples (2000); after an outage the backlog goes in merged requests of up to --max-catch-up-size (2 MiB compressed, about 75,000 samples), a few round trips instead of thousands");
    N124 Main2026 Recommended "TestBatchingBehavior/handles_varying_cardinality" "each scrape's request holds all six series, labels and all" Pass Pass;
    N125 Main2026 Recommended "TestBatchingBehavior/efficient_symbol_reuse" "each symbol once per request; a shared value is one symbol for four series" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N126 Main2026 Recommended "TestBatchingBehavior/metadata_batching" "each series carries its type and help beside its samples" (NotApplicable "1.0 requests carry no metadata, see N155") Pass;
    N127 Main2026 May "TestConcurrentRequests" "with the first answer held, nothing else is sent; then everything, in order" (NotSupported "one request in flight per destination, so each series arrives in timestamp order after any outage; a backlog goes in merged requests instead") (NotSupported "one request in flight per destination, so each series arrives in timestamp order after any outage; a backlog goes in merged requests instead");
    N128 Main2026 Should "TestEdgeCases/empty_scrape" "an empty scrape succeeds: `up` 1, nothing scraped, only the target's own series" Pass Pass;
    N129 Main2026 Should "TestEdgeCases/huge_label_values" "a 10 000-byte label value arrives whole" Pass Pass;
    N130 Main2026 Must "TestEdgeCases/unicode_in_labels" "each Unicode label value arrives byte for byte" Pass Pass;
    N131 Main2026 Recommended "TestEdgeCases/many_timeseries" "the suite's exposition is invalid from line 11 (a generator bug) and is refused whole, as by Prometheus; we check the 100 series it meant arrive, a scrape's in one request" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N132 Main2026 Recommended "TestEdgeCases/high_cardinality" "the suite's exposition is invalid from line 11 (a generator bug) and is refused whole, as by Prometheus; we check the 50 series it meant arrive, a scrape's in one request" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N133 Main2026 Should "TestEdgeCases/very_long_metric_name" "a 757-character name arrives whole" Pass Pass;
    N134 Main2026 Must "TestEdgeCases/special_float_combinations" "all five of NaN/+Inf/−Inf/0/−123.45 arrive exact (the suite wants one)" Pass Pass;
    N135 Main2026 Should "TestEdgeCases/zero_timestamp" "`test_metric 42 0` is sent once, stamped 0" Pass Pass;
    N136 Main2026 Should "TestEdgeCases/future_timestamp" "the suite's timestamp is U+FFFD (a generator bug), refused whole; we check a sample 1 min ahead goes out with its time and one 1 day ahead does not" (Deviation FUTURE) (Deviation FUTURE);
    N137 Main2026 Must "TestEdgeCases/metric_name_with_colons" "`http:request:duration:seconds` arrives as written" Pass Pass;
    N138 Main2026 Should "TestEdgeCases/stale_marker" "the suite's `StaleNaN` value is not valid syntax, refused whole as by Prometheus; we check a vanished series gets one stale marker" Pass Pass;
    N139 Main2026 Must "TestEdgeCases/mixed_sample_and_histogram_families" "all four families (the suite wants two) with their values, a scrape's in one request" Pass Pass;
    N140 Main2026 Should "TestRobustnessUnderLoad" "the 200 series with their values, a scrape's in one request (the suite wants ≥ 50 in the last)" Pass Pass;
    N141 Main2026 Should "TestCombinedFeatures/samples_with_metadata" "both `http_requests_total` series, typed counter, with their HELP" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N142 Main2026 May "TestCombinedFeatures/samples_with_exemplars" "`request_count` present (Fatal) + exemplar; the suite's line (a counter sample without `_total`) is refused whole, `up` 0; checked on it named `_total`: the sample and its exemplar" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N143 Main2026 May "TestCombinedFeatures/histogram_with_metadata_and_exemplars" "histogram series present (Fatal) + metadata + exemplar; we check the parts with their values and metadata, and the bucket's exemplar" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N144 Main2026 Must "TestCombinedFeatures/multiple_metric_types" "counter, gauge and histogram, each typed, in one request per scrape (the suite wants one)" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N145 Main2026 Recommended "TestCombinedFeatures/high_cardinality_labels" "all six `http_requests_total` series with their labels, in one request per scrape" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N146 Main2026 Must "TestCombinedFeatures/complete_metric_family" "every request with a part of the histogram has all six parts, with their values" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N147 Main2026 Should "TestCombinedFeatures/mixed_labels_and_metadata" "the three `api_calls_total` series with all five labels, typed counter, with their HELP" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N148 Main2026 Must "TestCombinedFeatures/real_world_scenario" "every series named, none mixing samples and histograms, all names with their values; the exposition's `up` and ours sent as one" (NotApplicable "a Remote Write 2.0 feature") Pass;
    N149 Main2026 Should "TestRemoteWrite1Compatibility/rw1_version_header" "version 0.1.0 on every 1.0 request" Pass (NotApplicable "a 1.0 check");
    N150 Main2026 Should "TestRemoteWrite1Compatibility/rw1_content_type" "Content-Type exactly application/x-protobuf on every 1.0 request" Pass (NotApplicable "a 1.0 check");
    N151 Main2026 Must "TestRemoteWrite1Compatibility/rw1_samples_encoding" "value 100, a millisecond timestamp, nothing but 1.0 fields" Pass (NotApplicable "a 1.0 check");
    N152 Main2026 Must "TestRemoteWrite1Compatibility/rw1_labels_encoding" "verbatim (no final newline): scrape refused, up 0; with it: labels sorted, exact" Pass (NotApplicable "a 1.0 check");
    N153 Main2026 Must "TestRemoteWrite1Compatibility/rw1_no_native_histograms" "classic histogram as float series; nothing but 1.0 fields" Pass (NotApplicable "a 1.0 check");
    N154 Main2026 Must "TestRemoteWrite1Compatibility/rw1_no_start_timestamp" "counter as value and timestamp only; nothing but 1.0 fields" Pass (NotApplicable "a 1.0 check");
    N155 Main2026 May "TestRemoteWrite1Compatibility/rw1_metadata_handling" "1.0 requests hold samples and nothing else" (NotSupported "1.0 requests carry samples only; type, help and unit go with Remote Write 2.0") (NotApplicable "a 1.0 check");
    N156 Main2026 Must "TestRemoteWrite1Compatibility/rw1_symbol_table_not_used" "labels spelled out per series, no symbols, bare Content-Type" Pass (NotApplicable "a 1.0 check");
    N157 Main2026 Should "TestRemoteWrite1Configuration" "both versions configurable; version header 0.1.0 / 2.0.0 on every request" Pass Pass;
    L01 V1Adfa690 None "Counter" "`counter` values exactly 0,1,2,… in order" Pass Pass;
    L02 V1Adfa690 None "Gauge" "`now` value within 1 % of sample ts" Pass Pass;
    L03 V1Adfa690 None "Histogram" "buckets 1/2/2, sum 3, count 2, equal counts; `le` stays `1` (Prometheus 3 would write `1.0`)" Pass Pass;
    L04 V1Adfa690 None "Summary" "q0.5=2, q0.9=3, q0.99=3, sum 6, count 3" Pass Pass;
    L05 V1Adfa690 None "Up" "`up{job=\"test\"}` == 1" Pass Pass;
    L06 V1Adfa690 None "Invalid" "invalid scrape → `up{job=\"test\"}` == 0" Pass Pass;
    L07 V1Adfa690 None "JobLabel" "`gauge{job=\"test\"}` == 42" Pass Pass;
    L08 V1Adfa690 None "InstanceLabel" "every sample has `instance` ~ `127.0.0.1:\\d+`" Pass Pass;
    L09 V1Adfa690 None "SortedLabels" "wire labels sorted; `test{a,b}` == 1" Pass Pass;
    L10 V1Adfa690 None "RepeatedLabels" "duplicate label → nothing sent" Pass Pass;
    L11 V1Adfa690 None "EmptyLabels" "no empty label values; `test` == 1" Pass Pass;
    L12 V1Adfa690 None "NameLabel" "nameless series not sent" Pass Pass;
    L13 V1Adfa690 None "HonorLabels" "`exported_job`, `exported_instance`" Pass Pass;
    L14 V1Adfa690 None "Staleness" "StaleNaN after series vanishes" Pass Pass;
    L15 V1Adfa690 None "Timestamp" "all ts within run, globally non-decreasing" Pass Pass;
    L16 V1Adfa690 None "Headers" "exact snappy / x-protobuf / 0.1.0" Pass (NotApplicable "a 1.0 header check");
    L17 V1Adfa690 None "Ordering" "per-series strictly increasing under uneven receiver delays (ours 0-0.7 s, the suite 0-5 s)" Pass Pass;
    L18 V1Adfa690 None "Retries500" "sample rejected with 500 is re-delivered" Pass Pass;
    L19 V1Adfa690 None "Retries400" "sample rejected with 400 is not re-delivered" Pass Pass;
};
