//! Once-per-episode logging: [`Episode`] tracks one kind of repeating failure so it is logged
//! when it starts and when it ends, with a count, instead of once per attempt.
//!
//! It owns only the bookkeeping (a count and a start time); what to log, and at which level,
//! stays with the caller. It imports nothing from the crate, so every module can use it.

use std::time::Duration;
// tokio's clock is the system's monotonic clock in the agent; under a test's paused time it is
// the virtual one, so episodes can be tested without waiting.
use tokio::time::Instant;

/// Tracks one kind of repeating failure so it is logged when it starts and when it ends,
/// with a count, instead of once per attempt.
#[derive(Debug, Default)]
pub struct Episode {
    failures: u64,
    since: Option<Instant>,
}

impl Episode {
    /// Records a failure; true for the first one of an episode (log it).
    pub fn fail(&mut self) -> bool {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            return true;
        }
        false
    }

    /// Records a success; returns the failure count and duration of the episode it ends, if
    /// one was under way (log the recovery).
    pub fn recover(&mut self) -> Option<(u64, Duration)> {
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
