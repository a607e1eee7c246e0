//! Pod metadata beside the polls: asks the kubelet's `GET /pods` in a background task, right
//! after a poll whose summary showed something the answer in hand cannot describe (a new pod,
//! a restarted container) or when that answer is old, and gives the next poll the answer once
//! it has arrived. Asking between polls keeps the two requests on one connection (two at once
//! would open a second, with its own buffers: 0.6 MB more peak memory at 110 pods). After the
//! first answer (or failure) a poll never waits for it. The first poll asks before its summary
//! and waits, at most `--kubelet-timeout`: without it every
//! agent start would send each container's series once without `image` and `name` and end
//! them at the next poll (two series per container and rollout in the receiver), and an agent
//! restarted within the kubelet's stats cache window could send those unlabelled series again
//! with timestamps older than the staleness markers its predecessor sent, which Prometheus
//! rejects with the whole request. `--once` and `--dry-run` are first polls too.
//!
//! A `/pods` that fails (403 without `nodes/proxy`, a timeout, a body that is not a pod list)
//! is logged once per episode, with its recovery; the last good answer is kept meanwhile, so
//! known pods keep their labels and new ones are sent without them. Requests are at most one
//! per `--interval` and never two at once; while they fail, the gap doubles up to
//! `kubelet::pods::MAX_AGE` (a kubelet that will never serve `/pods` costs a request every 5
//! minutes, not every poll).
//!
//! Not here: the cache and its refresh rule (`kubelet::pods`), the request
//! (`kubelet::client`), attaching labels (`convert`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::convert::Context;
use crate::clock::unix_ms;
use crate::episode::Episode;
use crate::kubelet::client::{KubeletClient, ScrapeError};
use crate::kubelet::pods::{self, PodMetadata};
use crate::telemetry::Metrics;

/// One `/pods` request's outcome.
struct Answer {
    /// Wall-clock time the request was sent (Unix ms): the answer describes the kubelet's
    /// pods at least as of then.
    asked_ms: i64,
    /// `None` when the summary comes from a file (never asked then).
    result: Option<Result<Vec<u8>, ScrapeError>>,
}

/// Why the last `/pods` attempt failed, worded for the log.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Fetch(ScrapeError),
    #[error("the answer is not a pod list")]
    Parse(#[source] serde_json::Error),
    #[error("the request task ended without an answer")]
    Task(#[source] tokio::task::JoinError),
}

pub struct PodSource {
    kubelet: Arc<KubeletClient>,
    metrics: Arc<Metrics>,
    meta: PodMetadata,
    pod_labels: Vec<(String, String)>,
    pending: Option<JoinHandle<Answer>>,
    failing: Episode,
    min_gap: Duration,
    /// The gap now: `min_gap`, doubled by each failure in a row.
    gap: Duration,
    /// Whether the last summary converted had pods or containers the metadata could not
    /// describe.
    incomplete: bool,
    /// Whether a request has completed, answered or failed.
    settled: bool,
}

impl PodSource {
    /// `pod_labels`: `--pod-label` pairs; `min_gap`: `--interval`.
    pub fn new(
        kubelet: Arc<KubeletClient>,
        metrics: Arc<Metrics>,
        pod_labels: Vec<(String, String)>,
        min_gap: Duration,
    ) -> Self {
        let keep = pod_labels.iter().map(|(name, _)| name.clone()).collect();
        PodSource {
            kubelet,
            metrics,
            meta: PodMetadata::new(keep),
            pod_labels,
            pending: None,
            failing: Episode::default(),
            min_gap,
            gap: min_gap,
            incomplete: false,
            settled: false,
        }
    }

    /// Takes `bytes` as a `/pods` answer received now, without asking: for benchmarks and
    /// tests that drive the poller without a kubelet.
    #[cfg(any(test, feature = "test-support"))]
    pub fn answered(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        let list = pods::parse(bytes)?;
        let now = Instant::now();
        self.meta.asked(now);
        self.meta.replace(&list, unix_ms(SystemTime::now()), now);
        self.settled = true;
        Ok(())
    }

    /// What the converter needs from the metadata.
    pub fn context(&self) -> Context<'_> {
        Context {
            pods: Some(&self.meta),
            pod_labels: &self.pod_labels,
        }
    }

    /// Records what the last conversion found the metadata lacking.
    pub fn converted(&mut self, undescribed: usize) {
        if undescribed > 0 && !self.incomplete {
            debug!(
                undescribed,
                "pods or containers without metadata; /pods will be asked again"
            );
        }
        self.incomplete = undescribed > 0;
        self.metrics.undescribed.set(undescribed as i64);
    }

    /// On the first poll: starts the first request (which that poll then waits for).
    pub fn ask_if_first(&mut self) {
        if !self.settled && self.pending.is_none() {
            self.ask_if_due();
        }
    }

    /// Starts a `/pods` request in the background when one is due and none is under way.
    pub fn ask_if_due(&mut self) {
        let now = Instant::now();
        if self.pending.is_some() || !self.meta.wants_refresh(self.incomplete, now, self.gap) {
            return;
        }
        self.meta.asked(now);
        let kubelet = self.kubelet.clone();
        self.pending = Some(tokio::spawn(async move {
            let asked_ms = unix_ms(SystemTime::now());
            let result = kubelet.fetch_pods().await;
            Answer { asked_ms, result }
        }));
    }

    /// Takes in the answer of the request under way if it has arrived, or when it arrives if
    /// no request has completed yet (see the module doc). Returns whether the metadata
    /// changed.
    pub async fn collect(&mut self) -> bool {
        let wait = !self.settled;
        let Some(handle) = self.pending.take_if(|h| wait || h.is_finished()) else {
            return false;
        };
        self.settled = true;
        let outcome = match handle.await {
            Ok(Answer { result: None, .. }) => return false,
            Ok(Answer {
                asked_ms,
                result: Some(Ok(bytes)),
            }) => match pods::parse(&bytes) {
                Ok(list) => {
                    self.meta.replace(&list, asked_ms, Instant::now());
                    Ok(())
                }
                Err(e) => Err(Failure::Parse(e)),
            },
            Ok(Answer {
                result: Some(Err(e)),
                ..
            }) => Err(Failure::Fetch(e)),
            Err(e) => Err(Failure::Task(e)),
        };
        self.metrics.pod_list_request(outcome.is_ok());
        self.gap = next_gap(self.gap, self.min_gap, outcome.is_ok());
        match outcome {
            Ok(()) => {
                if let Some((n, took)) = self.failing.recover() {
                    info!(failed_requests = n, after = ?Duration::from_secs(took.as_secs()), pods = self.meta.len(), "pod metadata (GET /pods) available again");
                } else {
                    debug!(pods = self.meta.len(), "pod metadata refreshed");
                }
                true
            }
            Err(failure) => {
                let error = crate::http::error_chain(&failure);
                if self.failing.fail() {
                    warn!(%error, hint = hint(&failure), "cannot get pod metadata from the kubelet (GET /pods); container series are pushed without image, name and pod labels until it answers; asking again, less and less often (at least every 5 minutes)");
                } else {
                    debug!(%error, "GET /pods failed again");
                }
                false
            }
        }
    }
}

/// The gap before the next request: `min_gap` after an answer, doubled by each failure in a
/// row up to `kubelet::pods::MAX_AGE` (or `min_gap`, if that is longer).
fn next_gap(gap: Duration, min_gap: Duration, answered: bool) -> Duration {
    if answered {
        return min_gap;
    }
    gap.saturating_mul(2)
        .clamp(min_gap, pods::MAX_AGE.max(min_gap))
}

/// What an operator can do about a failure, when there is something specific.
fn hint(failure: &Failure) -> &'static str {
    match failure {
        Failure::Fetch(ScrapeError::Status { status, .. }) if *status == StatusCode::FORBIDDEN => {
            "the service account needs get on nodes/proxy (kubelets with fine-grained authorization also accept nodes/pods); or set --kubelet-pods=false"
        }
        Failure::Fetch(ScrapeError::Status { status, .. }) if *status == StatusCode::NOT_FOUND => {
            "this --kubelet-url serves no /pods; set --kubelet-pods=false"
        }
        Failure::Fetch(ScrapeError::Timeout(_)) => {
            "the kubelet is slow to list its pods; raise --kubelet-timeout"
        }
        _ => "",
    }
}

impl Drop for PodSource {
    fn drop(&mut self) {
        if let Some(h) = &self.pending {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_gap_up_to_the_cap_and_an_answer_resets_it() {
        let ms = Duration::from_millis;
        let mut gap = ms(10);
        let mut gaps = Vec::new();
        for _ in 0..6 {
            gap = next_gap(gap, ms(10), false);
            gaps.push(gap);
        }
        assert_eq!(gaps, [ms(20), ms(40), ms(80), ms(160), ms(320), ms(640)]);
        assert_eq!(next_gap(gap, ms(10), true), ms(10));

        // 10 s polls: 20 s, 40 s, ... then five minutes, and five minutes after that.
        let s = Duration::from_secs;
        let mut gap = s(10);
        let mut gaps = Vec::new();
        for _ in 0..6 {
            gap = next_gap(gap, s(10), false);
            gaps.push(gap);
        }
        assert_eq!(gaps, [s(20), s(40), s(80), s(160), s(300), s(300)]);
        // An interval longer than the cap is never shortened by it.
        assert_eq!(next_gap(s(600), s(600), false), s(600));
        // A gap near the largest Duration saturates instead of overflowing.
        assert_eq!(next_gap(Duration::MAX, s(10), false), s(300));
    }
}
