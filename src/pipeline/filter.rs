//! `--metric-allow` / `--metric-deny`: which metric names a poll keeps. Applied to each
//! converted sample before the series model sees it, so a left-out series is never
//! deduplicated, buffered, encoded or marked stale, and costs one lookup per sample.
//!
//! Expressions are anchored at both ends, as Prometheus anchors relabelling regexes: `container_.*`
//! matches `container_cpu_usage_seconds_total`, `container` matches nothing but `container`.
//! A name is kept when it matches some allow expression (or none is given) and no deny
//! expression. The per-poll series (`up`, `scrape_*`) are not metrics of the summary and are
//! always sent, as Prometheus's own `metric_relabel_configs` never touch them.
//!
//! `regex-lite`: metric names are ASCII, so the full `regex` crate's Unicode tables and
//! literal optimisations would only add size to an agent whose memory is mostly its code.

use std::collections::HashMap;

use regex_lite::Regex;

/// The compiled expressions; decisions are cached per name by the poller.
#[derive(Debug, Clone)]
pub struct MetricFilter {
    allow: Option<Regex>,
    deny: Option<Regex>,
    /// The expressions as given, for `check-config`.
    shown: String,
}

impl MetricFilter {
    /// `None` when neither list has an expression. An expression that does not compile is an
    /// error naming its flag.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Option<Self>, (&'static str, String)> {
        if allow.is_empty() && deny.is_empty() {
            return Ok(None);
        }
        let compile = |flag: &'static str,
                       list: &[String]|
         -> Result<Option<Regex>, (&'static str, String)> {
            if list.is_empty() {
                return Ok(None);
            }
            for one in list {
                if one.trim().is_empty() {
                    return Err((flag, "an expression must not be empty".into()));
                }
                Regex::new(one)
                    .map_err(|e| (flag, format!("{one:?} is not a regular expression: {e}")))?;
            }
            let joined: Vec<String> = list.iter().map(|r| format!("(?:{r})")).collect();
            Regex::new(&format!("^(?:{})$", joined.join("|")))
                .map(Some)
                .map_err(|e| (flag, e.to_string()))
        };
        let shown = format!("allow [{}], deny [{}]", allow.join(", "), deny.join(", "));
        Ok(Some(MetricFilter {
            allow: compile("--metric-allow", allow)?,
            deny: compile("--metric-deny", deny)?,
            shown,
        }))
    }

    pub fn allows(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|r| r.is_match(name))
            && !self.deny.as_ref().is_some_and(|r| r.is_match(name))
    }
}

impl std::fmt::Display for MetricFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// A [`MetricFilter`] with its decisions remembered by name. The converter's names are
/// `&'static str`, so the address is the key: no hashing of the string per sample.
#[derive(Debug)]
pub struct CachedFilter {
    filter: MetricFilter,
    decided: HashMap<usize, bool>,
}

impl CachedFilter {
    pub fn new(filter: MetricFilter) -> Self {
        CachedFilter {
            filter,
            decided: HashMap::new(),
        }
    }

    pub fn allows(&mut self, name: &'static str) -> bool {
        let filter = &self.filter;
        *self
            .decided
            .entry(name.as_ptr() as usize)
            .or_insert_with(|| filter.allows(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], deny: &[&str]) -> MetricFilter {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        MetricFilter::new(&own(allow), &own(deny)).unwrap().unwrap()
    }

    #[test]
    fn anchored_allow_then_deny() {
        let f = filter(
            &["container_.*", "node_cpu_usage_seconds_total"],
            &[".*_fs_.*"],
        );
        assert!(f.allows("container_cpu_usage_seconds_total"));
        assert!(f.allows("node_cpu_usage_seconds_total"));
        assert!(
            !f.allows("node_cpu_usage_seconds_total_x"),
            "anchored at the end"
        );
        assert!(!f.allows("pod_container_x"), "anchored at the start");
        assert!(!f.allows("container_fs_usage_bytes"), "deny wins");
        let only_deny = filter(&[], &["kubelet_volume_stats_.*"]);
        assert!(only_deny.allows("container_memory_rss"));
        assert!(!only_deny.allows("kubelet_volume_stats_used_bytes"));
        // An alternation inside one expression stays inside its anchors.
        let alt = filter(&["a|b"], &[]);
        assert!(alt.allows("a") && alt.allows("b") && !alt.allows("ab"));
    }

    #[test]
    fn bad_expressions_name_their_flag() {
        let own = |s: &str| vec![s.to_owned()];
        assert!(MetricFilter::new(&[], &[]).unwrap().is_none());
        let (flag, why) = MetricFilter::new(&own("container_("), &[]).unwrap_err();
        assert_eq!(flag, "--metric-allow");
        assert!(why.contains("container_("), "{why}");
        let (flag, _) = MetricFilter::new(&[], &own(" ")).unwrap_err();
        assert_eq!(flag, "--metric-deny");
    }

    #[test]
    fn cache_gives_the_filters_answer() {
        let mut c = CachedFilter::new(filter(&["up|container_.*"], &[]));
        for _ in 0..2 {
            assert!(c.allows("container_memory_rss"));
            assert!(!c.allows("node_memory_rss_bytes"));
        }
    }
}
