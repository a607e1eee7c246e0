//! Delivery: one task per destination takes the oldest batch from the buffer, sends it until
//! the receiver takes it, and only then moves to the next, so every series arrives in
//! timestamp order after any outage. A buffer that has not been empty for a whole poll
//! interval is behind (an outage, a slow link): then the oldest batches go merged into one
//! request of up to `--max-catch-up-size` (`remote_write::rewrite::merge`), acknowledged
//! together; a 413 to a merged request halves that size for the destination, any other
//! rejection sends its batches again one at a time, so merging never drops what sending them
//! one by one would have delivered. A merged request that gets no answer (a timeout, a
//! connection lost once made) halves the size too, for this catch-up: a link too slow to carry
//! it within `--remote-timeout` would time it out again on every attempt. A request that goes
//! through in less than half the timeout doubles it back, up to the setting, so a catch-up that
//! starts small after an outage of unanswered connections (a firewall dropping them) grows back
//! within a few round trips. A receiver that refuses connections or answers 5xx changes nothing:
//! its outage says nothing about the size. But a merged request that fails is not retried as
//! it is: until the receiver takes something again, the oldest poll's request is the probe,
//! so a receiver that stays down is not sent megabytes per attempt and one that returns takes
//! the first request after one poll's upload.
//!
//! The retry rules are the Remote Write spec's and Prometheus's own sender's, but for refused
//! credentials: network errors, timeouts, 5xx and 401/403/407 (a credential is fixed by
//! rewriting the file the agent re-reads, and the buffer must survive until then; vmagent does
//! the same, Prometheus drops) are retried with exponential backoff (full jitter below
//! `--max-backoff`, then one attempt per `--max-backoff`: see [`Backoff`]) until they succeed;
//! 429 is retried after its `Retry-After` (at least `--min-backoff`, at most five minutes or
//! `--max-backoff` if longer); any other
//! 4xx drops that batch (counted, the receiver's message logged) and the next one goes. Batches are
//! dropped by age (`--max-sample-age`), never by attempt count. The HTTP client classifies each
//! answer (`SendError`); nothing here reads a status code.
//!
//! Remote Write 2.0 falls back here, per destination and for the life of the process: a 2.0
//! request the receiver shows it does not understand (`SendError::NotV2`: 415, or a 2xx
//! without the written-samples header, which receivers that predate 2.0 send while storing
//! nothing) is converted to 1.0 (`remote_write::rewrite`) and sent again, the shared
//! `Negotiated` switches to 1.0 so the poller encodes 1.0 from then on, and 2.0 requests still
//! buffered are converted as their turn comes. A 2.0 receiver that writes fewer samples than
//! a request held has refused the rest: counted (`receiver_refused`), not retried.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::Retryable;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::buffer::Queue;
use crate::clock::now_ms;
use crate::episode::Episode;
use crate::remote_write::{
    rewrite, Negotiated, Protocol, RemoteWriteClient, Request, SendError, Switch, Written,
};
use crate::rng::SplitMix64;
use crate::telemetry::{DestinationMetrics, DropReason};

/// Exponential backoff with full jitter below the cap and a jittered period at it, as a
/// value: `next_delay` is a pure function of the attempt count and the random state, so it is
/// tested without sleeping.
///
/// Below `max` each delay is uniform in `[0, ceiling]` (full jitter), so agents on many nodes
/// that failed together do not retry together. The first delay whose ceiling reaches `max` is
/// still uniform in `[0, max]`; every later one is `max` itself. A receiver that stays down
/// thus gets one attempt per `max` from each destination, never more, at a phase drawn at
/// random (so a fleet's attempts stay spread), and a receiver that comes back is noticed at
/// most `max` later (full jitter at the cap would spend two attempts per `max` on average for
/// the same worst case).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    /// Seeded per batch (`seed ^ seq`), so agents and batches that failed together draw
    /// different delays.
    rng: SplitMix64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The ceiling of the next delay: `min · 2^attempt`, at most `max`.
    pub fn ceiling(&self) -> Duration {
        self.ceiling_of(self.attempt)
    }

    fn ceiling_of(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay: full jitter below the cap and for the first delay at it, `max` after
    /// that (see [`Backoff`]).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        let at_cap_before = self.attempt > 0 && self.ceiling_of(self.attempt - 1) >= self.max;
        self.attempt = self.attempt.saturating_add(1);
        if at_cap_before {
            return self.max;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(match nanos.checked_add(1) {
            Some(n) => self.rng.below(n),
            None => self.rng.next_u64(),
        })
    }

    /// A receiver's `Retry-After`, honoured beyond `max` (a receiver that asks for a minute
    /// gets it) up to [`MAX_RETRY_AFTER`], so a bogus hour-long value cannot stall delivery,
    /// and at least `min`, so a zero cannot turn into a busy loop.
    pub fn clamp(&self, retry_after: Duration) -> Duration {
        retry_after.clamp(self.min, self.max.max(MAX_RETRY_AFTER))
    }

    /// The delay before retrying after `error`: the receiver's `Retry-After`, clamped, when
    /// it gave one; otherwise `drawn`, the backoff's own.
    pub fn after(&self, error: &SendError, drawn: Duration) -> Duration {
        match error {
            SendError::Retryable {
                retry_after: Some(after),
                ..
            } => self.clamp(*after),
            _ => drawn,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The longest `Retry-After` honoured (unless `--max-backoff` is longer).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// backon drives the retry loop; this is the delay sequence it sleeps by. It never ends: a
/// batch is retried until it succeeds or is dropped by age.
impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_sample_age: Option<Duration>,
    /// The most [`Request::size`] bytes of buffered requests merged into one catch-up request.
    pub max_catch_up_bytes: u64,
    /// The poll interval: a buffer that has not been empty for this long is behind, and its
    /// requests are merged (see [`run`]).
    pub interval: Duration,
}

/// Why one attempt did not deliver.
#[derive(Debug)]
enum Failure {
    Send(SendError),
    /// Every sample of the batch is older than `--max-sample-age`.
    TooOld,
    /// The buffer dropped the batch for room while it was being retried (already counted).
    Evicted,
    /// A 2.0 batch that had to go as 1.0 could not be converted (already counted).
    Unconvertible,
    /// The sender is retired ([`Ending::retire`]) and starts no attempt: the batch stays.
    Retired,
}

/// How a sender is told to end.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// Deliver what is buffered, then end (shutdown).
    pub drain: CancellationToken,
    /// End now, even in the middle of an attempt: the batch stays in the buffer, and a
    /// receiver that stored it but whose answer was cut will get it again.
    pub stop: CancellationToken,
    /// End before the next attempt: one in flight is answered and acknowledged first (at most
    /// `--remote-timeout`), so the sender that takes over never repeats a request the
    /// receiver has (a reload that changes a destination's settings). A child of `stop`.
    pub retire: CancellationToken,
}

impl Ending {
    pub fn new(drain: CancellationToken, stop: CancellationToken) -> Self {
        let retire = stop.child_token();
        Ending {
            drain,
            stop,
            retire,
        }
    }
}

/// Sends batches from `queue` until `ending` says so: at once on `stop`, between two attempts
/// on `retire`, once the queue is empty on `drain`.
///
/// `negotiated` is the destination's protocol, shared with the poller. When a 2.0 request is
/// answered in a way that shows the receiver does not speak 2.0 ([`SendError::NotV2`]), the
/// same request is converted to 1.0 and sent again, `negotiated` falls back to 1.0 for the life
/// of the process (the poller encodes 1.0 from then on), and every 2.0 request still in the
/// buffer is converted when its turn comes: nothing is dropped, the order is kept.
///
/// Everything logged while delivering (here, by the client or by the buffer) is inside a
/// `destination` span whose `url` field is the redacted URL: text logs show
/// `destination{url=…}:` before the message, JSON logs a `span` object with `url`.
#[tracing::instrument(name = "destination", skip_all, fields(url = client.display_url()))]
pub async fn run(
    client: RemoteWriteClient,
    queue: Arc<Queue>,
    metrics: Arc<DestinationMetrics>,
    settings: SenderSettings,
    negotiated: Negotiated,
    ending: Ending,
) {
    let Ending {
        drain,
        stop,
        retire,
    } = ending;
    metrics.remote_write_protocol(negotiated.get());
    let mut sender = Sender::new(client, queue, metrics, settings, negotiated);
    loop {
        let Some(run) = sender.next_run(&drain, &retire).await else {
            return;
        };
        let Prepared { parts, mut bodies } =
            prepare(run, &sender.negotiated, sender.settings.max_sample_age);
        let merged = bodies.len() > 1;
        let batch = match bodies.len() {
            0 => {
                sender.acknowledge(&parts);
                continue;
            }
            1 => bodies.pop().unwrap_or_else(|| unreachable!("one body")),
            _ => match rewrite::merge(bodies[0].protocol, &bodies) {
                Ok(m) => m,
                Err(error) => {
                    // Our own bodies; one that cannot be read goes alone, where the single
                    // path counts it.
                    debug!(%error, "cannot merge buffered requests; sending them one at a time");
                    sender.singles = parts.len();
                    continue;
                }
            },
        };
        let started = tokio::time::Instant::now();
        let Some((batch, result)) = sender
            .send(batch, parts[0].seq, merged, &stop, &retire)
            .await
        else {
            // The batch stays in the buffer: a disk buffer sends it after a restart.
            return;
        };
        match result {
            Err(Failure::Send(error @ SendError::Permanent { .. })) if merged => {
                sender.merged_rejected(&error, batch.size(), parts.len());
            }
            Err(Failure::Send(
                error @ SendError::Retryable {
                    unanswered: true, ..
                },
            )) if merged => {
                sender.merged_unanswered(&error, &batch, &retire).await;
            }
            Err(Failure::Send(error @ SendError::Retryable { .. })) if merged => {
                sender
                    .merged_failed(&error, &batch, parts[0].seq, &retire)
                    .await;
            }
            Err(Failure::Evicted) => {
                debug!(
                    samples = batch.samples,
                    "request evicted from the full buffer while retrying"
                );
                // Only its oldest part may be gone: the rest is read again, not acknowledged.
            }
            result => {
                if result.is_ok() {
                    sender.went_through(started.elapsed());
                }
                let evicted = sender.acknowledge(&parts);
                sender.settle(result, u64::from(batch.samples), evicted);
            }
        }
    }
}

/// One destination's sender between two runs: what it is sending to and with, and what it
/// remembers across runs (the log's episodes, the catch-up bound, whether it is behind).
struct Sender {
    client: RemoteWriteClient,
    queue: Arc<Queue>,
    metrics: Arc<DestinationMetrics>,
    settings: SenderSettings,
    negotiated: Negotiated,
    /// Seeds each batch's backoff (`seed ^ seq`).
    seed: u64,
    failing: Failing,
    read_errors: Episode,
    /// Failures to record a delivery in the buffer, logged when they start and when they end.
    ack_failing: Episode,
    /// A receiver that rejects every request (a tenant limit, a relabelling rule answering
    /// 400) would otherwise log once per poll forever: logged when rejections start or change
    /// status.
    rejecting: Episode,
    rejected_status: Option<reqwest::StatusCode>,
    /// A 2.0 receiver writing fewer samples than sent would do so on every poll (a limit, a
    /// relabelling that drops series): logged when it starts and when it ends.
    partial: Episode,
    /// The largest merged request this destination takes: `--max-catch-up-size`, halved by
    /// each 413 to a merged request, for the life of the process.
    limit: u64,
    /// The size merged requests are made up to now: at most `limit`, halved by a merged
    /// request left unanswered, doubled back by one that went through quickly.
    bound: u64,
    /// After a merged request was rejected, this many batches go one at a time, so a poll the
    /// receiver refuses takes no other poll down with it.
    singles: usize,
    /// Since when the buffer has held something: a buffer that empties every poll is keeping
    /// up, and a poll's requests go as the poller split them (`--max-samples-per-send`); one
    /// that has not been empty for a whole interval is behind (an outage, a slow link), and
    /// its requests go merged.
    waiting_since: Option<tokio::time::Instant>,
}

/// A run's batches made ready to send.
struct Prepared {
    /// Every batch of the run, oldest first: acknowledged together.
    parts: Vec<Part>,
    /// What is left to send of them, in the same order (a batch cut to nothing has none).
    bodies: Vec<Request>,
}

/// One batch of a run.
struct Part {
    seq: u64,
    /// Samples it sends, after the cuts.
    samples: u64,
    /// What preparing it cut out: counted when it is acknowledged, not when it is prepared,
    /// because a merged request given up (a rejection, an eviction) is read and prepared again.
    cut: Cut,
}

/// Samples cut out of a batch before it is sent, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cut {
    /// Older than `--max-sample-age`.
    too_old: u64,
    /// A 2.0 batch that had to go as 1.0 and could not be converted (counted as rejected).
    unconvertible: u64,
}

impl Cut {
    fn count(self, metrics: &DestinationMetrics) {
        for (reason, n) in [
            (DropReason::TooOld, self.too_old),
            (DropReason::Rejected, self.unconvertible),
        ] {
            if n > 0 {
                metrics.dropped(reason, n);
            }
        }
    }
}

/// Makes each batch of `run` ready to go in the destination's protocol: a 2.0 batch buffered
/// before a fall back to 1.0 (or by an earlier run, from disk) is converted to 1.0; with
/// `auto` on 2.0, a 1.0 batch (buffered before a switch to 2.0, or by an earlier run that had
/// fallen back) is converted to 2.0; and each is cut by age. One protocol per request: the
/// run ends before a batch of another.
fn prepare(
    run: Vec<(u64, Request)>,
    negotiated: &Negotiated,
    max_age: Option<Duration>,
) -> Prepared {
    let protocol = negotiated.get();
    let up = protocol == Protocol::V2 && negotiated.is_auto();
    let mut prepared = Prepared {
        parts: Vec::with_capacity(run.len()),
        bodies: Vec::with_capacity(run.len()),
    };
    for (seq, batch) in run {
        let mut cut = Cut::default();
        let batch = if batch.protocol == Protocol::V2 && protocol == Protocol::V1 {
            to_v1(&batch)
                .map_err(|samples| cut.unconvertible = samples)
                .ok()
        } else if batch.protocol == Protocol::V1 && up {
            let samples = u64::from(batch.samples);
            rewrite::to_v2(&batch.body)
                .map_err(|_| cut.unconvertible = samples)
                .ok()
        } else {
            Some(batch)
        };
        let batch = batch.and_then(|b| {
            let (kept, too_old) = trim_to_age(b, max_age);
            cut.too_old = too_old;
            kept
        });
        if let (Some(b), Some(first)) = (&batch, prepared.bodies.first()) {
            if b.protocol != first.protocol {
                break;
            }
        }
        prepared.parts.push(Part {
            seq,
            samples: batch.as_ref().map_or(0, |b| u64::from(b.samples)),
            cut,
        });
        prepared.bodies.extend(batch);
    }
    prepared
}

impl Sender {
    fn new(
        client: RemoteWriteClient,
        queue: Arc<Queue>,
        metrics: Arc<DestinationMetrics>,
        settings: SenderSettings,
        negotiated: Negotiated,
    ) -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Sender {
            client,
            queue,
            metrics,
            limit: settings.max_catch_up_bytes,
            bound: settings.max_catch_up_bytes,
            settings,
            negotiated,
            seed,
            failing: Failing::default(),
            read_errors: Episode::default(),
            ack_failing: Episode::default(),
            rejecting: Episode::default(),
            rejected_status: None,
            partial: Episode::default(),
            singles: 0,
            waiting_since: None,
        }
    }

    /// The next run of batches to send: the oldest alone, or, when behind, the oldest merged
    /// up to the catch-up bound. Waits while the buffer is empty; `None` when the sender is
    /// to end (`retire`, or `drain` with nothing left).
    async fn next_run(
        &mut self,
        drain: &CancellationToken,
        retire: &CancellationToken,
    ) -> Option<Vec<(u64, Request)>> {
        loop {
            if retire.is_cancelled() {
                return None;
            }
            if self.waiting_since.is_none() && !self.queue.is_empty() {
                self.waiting_since = Some(tokio::time::Instant::now());
            }
            let behind = self
                .waiting_since
                .is_some_and(|t| t.elapsed() >= self.settings.interval);
            let max_bytes = if self.singles > 0 || !behind {
                0
            } else {
                self.bound
            };
            match self.queue.run(max_bytes) {
                Ok(run) if !run.is_empty() => {
                    if let Some((n, _)) = self.read_errors.recover() {
                        info!(failed_reads = n, "buffer readable again");
                    }
                    return Some(run);
                }
                Ok(_) => {
                    self.waiting_since = None;
                    if drain.is_cancelled() {
                        return None;
                    }
                    tokio::select! {
                        _ = self.queue.changed() => {}
                        _ = drain.cancelled() => {}
                        _ = retire.cancelled() => return None,
                    }
                }
                Err(error) => {
                    if self.read_errors.fail() {
                        warn!(%error, "cannot read the buffer; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.max_backoff) => {}
                        _ = retire.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// Sends `batch` (the run starting at `seq`, `merged` if it holds several) until it is
    /// delivered or given up, and gives it back as it went last with the outcome. At most three
    /// rounds: the batch as it is; when a 2.0 batch shows the receiver does not take 2.0, the
    /// same samples as 1.0; and, with `auto`, when the receiver answers 415 to 1.0, the same
    /// samples as 2.0 again (see [`Negotiated`]). `None` once `stop` is cancelled, or
    /// `retire` before an attempt.
    async fn send(
        &mut self,
        mut batch: Request,
        seq: u64,
        merged: bool,
        stop: &CancellationToken,
        retire: &CancellationToken,
    ) -> Option<(Request, Result<Option<Written>, Failure>)> {
        loop {
            let result = tokio::select! {
                r = deliver(&self.client, &self.queue, &self.metrics, &self.settings, self.seed, seq, merged, &batch, &mut self.failing, retire) => r,
                _ = stop.cancelled() => return None,
            };
            match result {
                Err(Failure::Retired) => return None,
                Err(Failure::Send(SendError::NotV2 { status }))
                    if batch.protocol == Protocol::V2 =>
                {
                    match self.negotiated.fall_back_to_v1() {
                        Switch::Switched => {
                            self.metrics.remote_write_protocol(Protocol::V1);
                            info!(
                                remote = self.client.display_url(),
                                status = status.as_u16(),
                                "the receiver does not take Remote Write 2.0; sending this request and every later one as 1.0"
                            );
                        }
                        Switch::Already => {}
                        // `auto` switched to 2.0 because the receiver refused 1.0: a 2xx
                        // without the written-samples header is its answer to 2.0 (taken as
                        // written), and a 415 means it takes neither.
                        Switch::Refused if status.is_success() => {
                            return Some((batch, Ok(None)));
                        }
                        Switch::Refused => {
                            let error = SendError::Permanent {
                                status,
                                message: "the receiver refuses Remote Write 1.0 and 2.0 alike"
                                    .into(),
                            };
                            return Some((batch, Err(Failure::Send(error))));
                        }
                    }
                    match to_v1(&batch) {
                        Ok(b) => batch = b,
                        Err(_) => return Some((batch, Err(Failure::Unconvertible))),
                    }
                }
                Err(Failure::Send(SendError::Permanent { status, message }))
                    if batch.protocol == Protocol::V1
                        && status == reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE =>
                {
                    match self.negotiated.switch_to_v2() {
                        Switch::Switched => {
                            self.metrics.remote_write_protocol(Protocol::V2);
                            info!(
                                remote = self.client.display_url(),
                                "the receiver does not take Remote Write 1.0 (415); sending this request and every later one as 2.0"
                            );
                        }
                        Switch::Already => {}
                        Switch::Refused => {
                            let error = SendError::Permanent { status, message };
                            return Some((batch, Err(Failure::Send(error))));
                        }
                    }
                    match rewrite::to_v2(&batch.body) {
                        Ok(b) => batch = b,
                        Err(_) => return Some((batch, Err(Failure::Unconvertible))),
                    }
                }
                other => return Some((batch, other)),
            }
        }
    }

    /// A merged request the receiver rejected: nothing is dropped. A 413 halves the bound;
    /// any other rejection sends the same polls one at a time, and the single path decides.
    fn merged_rejected(&mut self, error: &SendError, size: u64, batches: usize) {
        if error.status() == Some(reqwest::StatusCode::PAYLOAD_TOO_LARGE) {
            self.limit = (size / 2).min(self.limit / 2);
            self.bound = self.bound.min(self.limit);
            info!(%error, max_bytes = self.limit, "the receiver refused a catch-up request as too large; sending smaller ones");
        } else {
            self.singles = batches;
            debug!(%error, requests = batches, "a catch-up request was rejected; sending its requests one at a time");
        }
    }

    /// A merged request that got no answer (a timeout: a link too slow to carry it within
    /// `--remote-timeout`; a connection lost) is not tried again as it is, since on that link
    /// it would time out every time: the catch-up goes on in requests half its size (down to
    /// one batch each, retried as any other). The attempt counts in the episode as any failed
    /// one does, and the next waits `--min-backoff`, so a connection lost at once cannot
    /// spin.
    async fn merged_unanswered(
        &mut self,
        error: &SendError,
        batch: &Request,
        retire: &CancellationToken,
    ) {
        self.bound = (batch.size() / 2).min(self.bound / 2);
        self.metrics.retries.inc();
        tell(
            &mut self.failing,
            error,
            self.settings.min_backoff,
            batch.samples,
        );
        debug!(%error, max_bytes = self.bound, "a catch-up request got no answer; sending smaller ones");
        tokio::select! {
            _ = tokio::time::sleep(self.settings.min_backoff) => {}
            _ = retire.cancelled() => {}
        }
    }

    /// A merged request that failed in a way worth retrying (a refused connection, a 5xx, a
    /// 429) is not retried as it is: until the receiver takes something, the oldest poll's
    /// request goes alone (`singles`), retried with the usual backoff, and the catch-up goes
    /// on merged, at the same size, once it went through. A receiver that stays down thus
    /// gets one poll's request per attempt, not megabytes of backlog (a load balancer
    /// answering 503 for it takes the whole body each time, on a metered uplink), and one
    /// that returns takes the first request after one poll's upload, not after a whole
    /// catch-up request's: on a 20 Mbit/s link a 2 MiB request is 0.8 s of upload, on a
    /// 2 Mbit/s one 8 s. The wait before it is the backoff's first delay, or the receiver's
    /// `Retry-After`.
    async fn merged_failed(
        &mut self,
        error: &SendError,
        batch: &Request,
        seq: u64,
        retire: &CancellationToken,
    ) {
        let mut backoff = Backoff::new(
            self.settings.min_backoff,
            self.settings.max_backoff,
            self.seed ^ seq,
        );
        let drawn = backoff.next_delay();
        let delay = backoff.after(error, drawn);
        self.singles = 1;
        self.metrics.retries.inc();
        tell(&mut self.failing, error, delay, batch.samples);
        debug!(%error, "a catch-up request failed; probing with the oldest poll's request alone");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = retire.cancelled() => {}
        }
    }

    /// A request that went through in `took`: if that was less than half the timeout, a
    /// request twice the size would likely go through too, and the bound grows back.
    fn went_through(&mut self, took: Duration) {
        if took < self.client.timeout() / 2 {
            self.bound = self.bound.saturating_mul(2).min(self.limit);
        }
    }

    /// Removes the run's batches from the buffer, oldest first, counting what preparing each
    /// cut out; returns the samples (as sent) of those the buffer evicted for room while they
    /// were in flight. Those the eviction counted as dropped already: they count as nothing
    /// else, whatever the receiver answered.
    fn acknowledge(&mut self, parts: &[Part]) -> u64 {
        let mut evicted = 0;
        // One record of the delivery for the whole run (a disk buffer writes its read
        // position once, not once per part).
        let seqs: Vec<u64> = parts.iter().map(|p| p.seq).collect();
        let (levels, acked) = self.queue.ack_run(&seqs);
        self.metrics.buffer_levels(levels);
        match acked.error {
            None => {
                if let Some((n, _)) = self.ack_failing.recover() {
                    info!(failed = n, "recording deliveries in the buffer works again");
                }
            }
            // Found, and removed in memory: the batches may be sent again after a restart.
            Some(error) => {
                if self.ack_failing.fail() {
                    warn!(%error, "cannot record delivery in the buffer; requests may be sent again after a restart");
                }
            }
        }
        for (part, found) in parts.iter().zip(acked.found) {
            if !found {
                evicted += part.samples;
                continue;
            }
            part.cut.count(&self.metrics);
        }
        self.singles = self.singles.saturating_sub(parts.len());
        evicted
    }

    /// Counts and logs how an acknowledged request of `samples` samples ended; `evicted` of
    /// them were counted as dropped by the buffer already.
    fn settle(&mut self, result: Result<Option<Written>, Failure>, samples: u64, evicted: u64) {
        let ours = |n: u64| n.saturating_sub(evicted);
        match result {
            Ok(written) => {
                let stored = written.map_or(samples, |w| w.samples.min(samples));
                self.metrics.sent(ours(stored));
                if stored < samples {
                    self.metrics
                        .dropped(DropReason::ReceiverRefused, samples - stored);
                    if self.partial.fail() {
                        warn!(
                            sent = samples,
                            written = stored,
                            "the receiver wrote fewer samples than the request held; the rest are dropped (reason receiver_refused)"
                        );
                    } else {
                        debug!(
                            sent = samples,
                            written = stored,
                            "the receiver wrote fewer samples again"
                        );
                    }
                } else if let Some((n, _)) = self.partial.recover() {
                    info!(
                        partial_requests = n,
                        "the receiver writes every sample again"
                    );
                }
                if let Some((n, took)) = self.failing.recover() {
                    info!(failed_attempts = n, after = ?Duration::from_secs(took.as_secs()), "remote write recovered");
                }
                if let Some((n, _)) = self.rejecting.recover() {
                    info!(rejected_requests = n, "receiver accepts requests again");
                    self.rejected_status = None;
                }
            }
            Err(Failure::Send(error @ SendError::Permanent { .. })) => {
                self.metrics.dropped(DropReason::Rejected, ours(samples));
                if let Some(status) = error.status() {
                    self.metrics.rejected(status);
                }
                let first = self.rejecting.fail();
                if first || self.rejected_status != error.status() {
                    self.rejected_status = error.status();
                    warn!(%error, samples, "remote write rejected by the receiver; request dropped");
                } else {
                    debug!(%error, samples, "remote write rejected again; request dropped");
                }
            }
            Err(Failure::Unconvertible) => {
                self.metrics.dropped(DropReason::Rejected, ours(samples));
            }
            // `send` gives neither back: an evicted batch is not acknowledged, and a retired
            // sender ends with its batch in the buffer.
            Err(Failure::Evicted | Failure::Retired) => {}
            Err(Failure::TooOld) => {
                self.metrics.dropped(DropReason::TooOld, ours(samples));
                debug!(
                    samples,
                    "request aged past --max-sample-age while retrying; dropped"
                );
            }
            Err(Failure::Send(error)) => {
                // `when` retries every retryable error and the backoff never ends; NotV2 only
                // comes for 2.0 bodies, which were converted above.
                warn!(%error, "remote write gave up unexpectedly; request dropped");
                self.metrics.dropped(DropReason::Rejected, ours(samples));
            }
        }
    }
}

/// Sends `batch` until it is delivered, rejected, evicted or too old, or, `merged`, fails in
/// a way worth retrying (see [`Sender::merged_unanswered`] and [`Sender::merged_failed`]). `Ok` carries what a 2.0 receiver said it wrote
/// (`None` for 1.0).
#[allow(clippy::too_many_arguments)]
async fn deliver(
    client: &RemoteWriteClient,
    queue: &Queue,
    metrics: &DestinationMetrics,
    settings: &SenderSettings,
    seed: u64,
    seq: u64,
    merged: bool,
    batch: &Request,
    failing: &mut Failing,
    retire: &CancellationToken,
) -> Result<Option<Written>, Failure> {
    let backoff = Backoff::new(settings.min_backoff, settings.max_backoff, seed ^ seq);
    let limits = backoff.clone();
    let retired = retire.clone();
    let max_age = settings.max_sample_age;
    let attempt = || {
        let body = batch.body.clone();
        let protocol = batch.protocol;
        let newest = batch.newest_ms;
        async move {
            if retire.is_cancelled() {
                return Err(Failure::Retired);
            }
            if max_age.is_some_and(|age| too_old(newest, age)) {
                return Err(Failure::TooOld);
            }
            // A long outage can fill the buffer; once this batch is evicted, sending it
            // would deliver samples already counted as dropped.
            if !matches!(queue.front(), Ok(Some((front, _))) if front == seq) {
                return Err(Failure::Evicted);
            }
            let bytes = body.len();
            let started = std::time::Instant::now();
            let answer = client.send(protocol, body).await;
            metrics.attempted(bytes, started.elapsed());
            match answer {
                Ok(accepted) => {
                    metrics.request(Some(accepted.status.as_u16()));
                    Ok(accepted.written)
                }
                Err(e) => {
                    metrics.request(e.status().map(|s| s.as_u16()));
                    Err(Failure::Send(e))
                }
            }
        }
    };
    attempt
        .retry(backoff)
        // A retired sender does not wait out its backoff: the next attempt finds it retired.
        .sleep(move |delay| {
            let retire = retired.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = retire.cancelled() => {}
                }
            }
        })
        // A merged request that failed goes back to the caller: made smaller when it was left
        // unanswered, replaced by the oldest poll's request alone otherwise.
        .when(|f| matches!(f, Failure::Send(SendError::Retryable { .. })) && !merged)
        .adjust(|f, delay| match f {
            Failure::Send(error) => delay.map(|drawn| limits.after(error, drawn)),
            _ => delay,
        })
        .notify(|f, delay| {
            metrics.retries.inc();
            if let Failure::Send(error) = f {
                tell(failing, error, delay, batch.samples);
            }
        })
        .await
}

/// Counts a failed attempt of a request of `samples` samples in the episode, and logs it as
/// [`Failing`] says: the first and each new cause at warn, the rest at debug.
fn tell(failing: &mut Failing, error: &SendError, delay: Duration, samples: u32) {
    match failing.fail(error) {
        Said::First => {
            warn!(%error, retry_in_ms = delay.as_millis() as u64, samples, "remote write failed; retrying until it succeeds");
        }
        Said::NewCause => {
            warn!(%error, retry_in_ms = delay.as_millis() as u64, "remote write still failing, now for another reason");
        }
        Said::Again => {
            debug!(%error, retry_in_ms = delay.as_millis() as u64, "remote write failed again");
        }
    }
}

/// One outage of the receiver as the log tells it: a warning when it starts, and again when
/// the reason changes to one not seen yet in this outage (a receiver that restarts with new
/// certificates first drops connections, then fails the handshake: the second reason is the
/// one to act on), at most [`Failing::MAX_CAUSES`] reasons; every other attempt at debug.
#[derive(Debug, Default)]
struct Failing {
    episode: Episode,
    /// The reasons said in this outage: the status code, or the text of a failure without one.
    causes: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Said {
    First,
    NewCause,
    Again,
}

impl Failing {
    const MAX_CAUSES: usize = 4;

    fn fail(&mut self, error: &SendError) -> Said {
        let cause = match error.status() {
            Some(status) => status.as_str().to_owned(),
            None => error.to_string(),
        };
        let first = self.episode.fail();
        if self.causes.contains(&cause) {
            return Said::Again;
        }
        if first {
            self.causes.push(cause);
            return Said::First;
        }
        if self.causes.len() >= Self::MAX_CAUSES {
            return Said::Again;
        }
        self.causes.push(cause);
        Said::NewCause
    }

    fn recover(&mut self) -> Option<(u64, Duration)> {
        self.causes.clear();
        self.episode.recover()
    }
}

/// A 2.0 batch as the 1.0 batch with the same series and samples. A body that cannot be read
/// is logged and its samples are returned, to be counted as rejected (what a 1.0 receiver
/// would do with it; the agent wrote it, so this means damage the disk buffer's checksum did
/// not catch).
fn to_v1(batch: &Request) -> Result<Request, u64> {
    rewrite::to_v1(&batch.body).map_err(|error| {
        warn!(%error, samples = batch.samples, "a Remote Write 2.0 request cannot be converted to 1.0; dropped");
        u64::from(batch.samples)
    })
}

fn too_old(timestamp_ms: i64, max_age: Duration) -> bool {
    now_ms().saturating_sub(timestamp_ms) > i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX)
}

/// Applies `--max-sample-age` before a batch is sent, returning what is left of it and how
/// many samples were cut: all too old → `None`; partly too old → the old samples are cut out
/// of the body (1.0 or 2.0, which stays what it was); else unchanged. The caller counts the
/// cut as dropped.
///
/// The common cases need no decoding: the batch's time bounds, kept beside the body (and in
/// every disk record), decide "all too old" and "none too old". Only a batch that straddles
/// the limit is decoded, filtered and encoded again. That happens at most once per batch
/// (before its first attempt), only with `--max-sample-age` set, and only for the few batches
/// a long outage leaves right at the limit; `cargo bench --bench pipeline` measures it at about
/// 1 ms for a 2,000-sample batch (docs/performance.md), so keeping per-series time bounds
/// beside every body was not worth the bytes it would add to the buffer.
pub fn trim_to_age(batch: Request, max_age: Option<Duration>) -> (Option<Request>, u64) {
    let Some(age) = max_age else {
        return (Some(batch), 0);
    };
    if too_old(batch.newest_ms, age) {
        return (None, u64::from(batch.samples));
    }
    if !too_old(batch.oldest_ms, age) {
        return (Some(batch), 0);
    }
    let Ok((kept, cut)) = rewrite::retain(batch.protocol, &batch.body, |ts| !too_old(ts, age))
    else {
        // Our own encoding; if it cannot be read the receiver could not either. Send as is.
        return (Some(batch), 0);
    };
    let kept = kept.map(|kept| Request {
        newest_ms: batch.newest_ms,
        ..kept
    });
    (kept, cut)
}

#[cfg(test)]
mod tests;
