//! The agent's own counters: polls, samples, requests. Shared between the poller, the sender
//! and whoever reports them (the shutdown log line today, `/metrics` later).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    /// Samples the converter produced, before dedupe.
    pub samples_scraped: AtomicU64,
    /// Samples handed to the sender (after dedupe, with stale markers and per-poll series).
    pub samples_queued: AtomicU64,
    pub samples_sent: AtomicU64,
    /// Samples lost: rejected by the receiver, failed to send, or no room in the queue.
    pub samples_dropped: AtomicU64,
    pub requests_ok: AtomicU64,
    pub requests_failed: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Tracks one kind of repeating failure so it is logged when it starts and when it ends,
/// with a count, instead of once per attempt.
#[derive(Debug, Default)]
pub struct Episode {
    failures: u64,
    since: Option<std::time::Instant>,
}

impl Episode {
    /// Records a failure; true for the first one of an episode (log it).
    pub fn fail(&mut self) -> bool {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(std::time::Instant::now());
            return true;
        }
        false
    }

    /// Records a success; returns the failure count and duration of the episode it ends, if
    /// one was under way (log the recovery).
    pub fn recover(&mut self) -> Option<(u64, std::time::Duration)> {
        let since = self.since.take()?;
        let n = std::mem::take(&mut self.failures);
        Some((n, since.elapsed()))
    }

    pub fn failing(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_logs_start_and_end_once() {
        let mut e = Episode::default();
        assert!(e.recover().is_none());
        assert!(e.fail());
        assert!(!e.fail());
        assert!(!e.fail());
        assert!(e.failing());
        assert_eq!(e.recover().map(|r| r.0), Some(3));
        assert!(e.recover().is_none());
        assert!(e.fail(), "a new episode starts after recovery");
    }
}
