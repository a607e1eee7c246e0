//! Per-series memory between polls: which samples are worth sending and which series vanished.
//!
//! - A label set repeated within one poll (the same interface or PVC listed twice) is sent once,
//!   the first time.
//! - The kubelet caches stats for 10-15 s, so polls often repeat a timestamp. A sample is sent
//!   only when its timestamp is newer than the last one sent for its series: receivers answer
//!   400 to a repeated timestamp with a different value and drop the whole request with it.
//! - A series that was in the previous successful poll and is missing from this one gets one
//!   stale marker (Prometheus's special NaN) so queries stop showing it at once. A failed poll
//!   calls neither `begin_poll` nor `finish_poll` for the summary's series, so it marks nothing
//!   stale.
//!
//! Pure: no I/O, no clock. Keys are built in a reused buffer, so a known series costs no
//! allocation; a new series costs one key and one copy of its labels.

use std::collections::HashMap;

use crate::convert::Sample;

/// What to do with one converted sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// New series, or a newer timestamp: send it.
    Send,
    /// Same label set already seen in this poll: drop it.
    Duplicate,
    /// Timestamp not newer than the last one sent for this series: drop it.
    NotNewer,
}

/// A series known from an earlier poll, kept to detect when it goes away.
struct Entry {
    last_sent_ms: i64,
    /// Generation of the last poll that saw it; older than the current one means "vanished".
    seen: u64,
    name: &'static str,
    labels: Box<[(&'static str, Box<str>)]>,
}

#[derive(Default)]
pub struct SeriesTracker {
    series: HashMap<Box<str>, Entry>,
    generation: u64,
    key: String,
}

impl SeriesTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of series remembered.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Starts a successful poll: every series it does not admit is stale at `finish_poll`.
    pub fn begin_poll(&mut self) {
        self.generation += 1;
    }

    /// Decides whether `sample` is sent, and remembers it.
    pub fn admit(&mut self, sample: &Sample<'_>) -> Admit {
        self.key.clear();
        self.key.push_str(sample.name);
        for (name, value) in sample.labels.as_slice() {
            // \0 and \x01 cannot occur in Kubernetes names, so the key is unambiguous.
            self.key.push('\0');
            self.key.push_str(name);
            self.key.push('\x01');
            self.key.push_str(value);
        }
        let generation = self.generation;
        if let Some(entry) = self.series.get_mut(self.key.as_str()) {
            if entry.seen == generation {
                return Admit::Duplicate;
            }
            entry.seen = generation;
            if sample.timestamp_ms <= entry.last_sent_ms {
                return Admit::NotNewer;
            }
            entry.last_sent_ms = sample.timestamp_ms;
            return Admit::Send;
        }
        let labels = sample
            .labels
            .as_slice()
            .iter()
            .map(|&(n, v)| (n, Box::<str>::from(v)))
            .collect();
        self.series.insert(
            self.key.as_str().into(),
            Entry {
                last_sent_ms: sample.timestamp_ms,
                seen: generation,
                name: sample.name,
                labels,
            },
        );
        Admit::Send
    }

    /// Ends a successful poll: every remembered series this poll did not see is forgotten and
    /// handed to `stale` with the timestamp its marker must carry (`now_ms`, or just after the
    /// series' last sample if the kubelet's clock runs ahead of ours).
    pub fn finish_poll(
        &mut self,
        now_ms: i64,
        mut stale: impl FnMut(&'static str, &[(&'static str, Box<str>)], i64),
    ) {
        let generation = self.generation;
        self.series.retain(|_, e| {
            if e.seen == generation {
                return true;
            }
            stale(e.name, &e.labels, now_ms.max(e.last_sent_ms + 1));
            false
        });
    }

    /// Forgets every series without marking anything stale (the common labels changed, so
    /// nothing sent so far can be matched any more).
    pub fn clear(&mut self) {
        self.series.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Labels;

    fn sample<'a>(name: &'static str, pod: &'a str, ts: i64) -> Sample<'a> {
        Sample {
            name,
            labels: Labels::new().with("namespace", "ns").with("pod", pod),
            value: 1.0,
            timestamp_ms: ts,
        }
    }

    fn stale_of(t: &mut SeriesTracker, now: i64) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        t.finish_poll(now, |name, labels, ts| {
            let pod = labels
                .iter()
                .find(|l| l.0 == "pod")
                .map(|l| &*l.1)
                .unwrap_or("");
            out.push((format!("{name}/{pod}"), ts));
        });
        out.sort();
        out
    }

    #[test]
    fn sends_only_newer_timestamps() {
        let mut t = SeriesTracker::new();
        t.begin_poll();
        assert_eq!(t.admit(&sample("m", "a", 1000)), Admit::Send);
        assert!(stale_of(&mut t, 5000).is_empty());
        t.begin_poll();
        assert_eq!(t.admit(&sample("m", "a", 1000)), Admit::NotNewer);
        assert!(stale_of(&mut t, 6000).is_empty());
        t.begin_poll();
        assert_eq!(t.admit(&sample("m", "a", 999)), Admit::NotNewer);
        assert_eq!(t.admit(&sample("m", "b", 999)), Admit::Send);
        assert!(stale_of(&mut t, 7000).is_empty());
        t.begin_poll();
        assert_eq!(t.admit(&sample("m", "a", 1001)), Admit::Send);
    }

    #[test]
    fn drops_repeated_label_sets_within_a_poll() {
        let mut t = SeriesTracker::new();
        t.begin_poll();
        assert_eq!(t.admit(&sample("m", "a", 1000)), Admit::Send);
        assert_eq!(t.admit(&sample("m", "a", 2000)), Admit::Duplicate);
        assert_eq!(t.admit(&sample("other", "a", 1000)), Admit::Send);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn marks_vanished_series_stale_once() {
        let mut t = SeriesTracker::new();
        t.begin_poll();
        t.admit(&sample("m", "a", 1000));
        t.admit(&sample("m", "b", 1000));
        assert!(stale_of(&mut t, 1500).is_empty());
        t.begin_poll();
        t.admit(&sample("m", "a", 2000));
        assert_eq!(stale_of(&mut t, 2500), vec![("m/b".to_owned(), 2500)]);
        t.begin_poll();
        t.admit(&sample("m", "a", 3000));
        assert!(
            stale_of(&mut t, 3500).is_empty(),
            "a stale marker is sent once"
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn stale_marker_follows_the_last_sample_when_the_kubelet_clock_is_ahead() {
        let mut t = SeriesTracker::new();
        t.begin_poll();
        t.admit(&sample("m", "a", 10_000));
        stale_of(&mut t, 0);
        t.begin_poll();
        assert_eq!(stale_of(&mut t, 9_000), vec![("m/a".to_owned(), 10_001)]);
    }

    #[test]
    fn a_series_that_returns_is_new_again() {
        let mut t = SeriesTracker::new();
        t.begin_poll();
        t.admit(&sample("m", "a", 1000));
        stale_of(&mut t, 1000);
        t.begin_poll();
        assert_eq!(stale_of(&mut t, 2000).len(), 1);
        assert!(t.is_empty());
        t.begin_poll();
        assert_eq!(t.admit(&sample("m", "a", 3000)), Admit::Send);
        assert_eq!(t.len(), 1);
    }
}
