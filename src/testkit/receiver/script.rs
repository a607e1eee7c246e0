//! What only tests need from the receiver (compiled with the `test-support` feature or in unit
//! tests): every request kept with its path and headers, answers queued in advance (any
//! status, headers, body, a delay before answering), and waiting until a number of requests
//! arrived. The demo never calls any of it.

use std::collections::VecDeque;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use tokio::sync::watch;

use super::{ReceivedRequest, Receiver, Shared};
use crate::remote_write::proto::v1::TimeSeries;
use crate::remote_write::Protocol;

/// An answer queued with [`Receiver::push_response`] for the next valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (a receiver slower than the client's timeout). The wait
    /// is on tokio's clock, so under paused time it takes no wall time.
    pub delay: Option<Duration>,
    /// Answer only once the test calls [`Receiver::release`]: a request kept in flight for
    /// exactly as long as the test needs, whatever the machine's load.
    pub held: bool,
}

impl Response {
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: None,
            held: false,
        }
    }

    /// See [`Response::held`].
    pub fn held(mut self) -> Self {
        self.held = true;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits out the delay, then answers.
    pub(super) async fn answer(self) -> axum::response::Response {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        for (name, value) in self.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(n), Ok(v)) => {
                    response.headers_mut().append(n, v);
                }
                _ => tracing::warn!(%name, %value, "queued response header is not valid HTTP"),
            }
        }
        response
    }
}

/// How a receiver that predates Remote Write 2.0 answers a 2.0 body, as measured with real
/// ones; set with [`Receiver::answer_v2_like`]. 1.0 requests are answered as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldReceiver {
    /// 415 Unsupported Media Type: the receiver checks the `Content-Type`.
    Unsupported,
    /// 204 without the written headers, storing nothing: what Prometheus 2.42 and
    /// VictoriaMetrics 1.79 do (they read the 2.0 bytes as an empty 1.0 request).
    IgnoresIt,
}

/// The receiver state tests add.
#[derive(Default)]
pub(super) struct Script {
    pub(super) queue: VecDeque<Response>,
    /// The answer to every valid request once the queue is empty (see
    /// [`Receiver::answer_always`]).
    pub(super) always: Option<Response>,
    pub(super) old: Option<OldReceiver>,
    /// Answering like a receiver that takes only 2.0 (415 to 1.0), `Some(false)` also
    /// leaving the written headers out of its 2.0 answers.
    pub(super) only_v2: Option<bool>,
    /// The `Authorization` value a request must carry, as a receiver behind auth wants it.
    pub(super) authorization: Option<String>,
    /// A header (name lowercased, value) a request must carry, as a multi-tenant receiver
    /// wants its tenant header; answered 401 otherwise, as Mimir answers "no org id".
    pub(super) tenant: Option<(String, String)>,
}

/// 401 for a request without the `Authorization` value the test asked for (see
/// [`Receiver::require_authorization`]); else the verdict as it was.
pub(super) fn check_authorization(
    shared: &Shared,
    headers: &HeaderMap,
    verdict: (StatusCode, String, Option<String>),
) -> (StatusCode, String, Option<String>) {
    let tenant = shared.lock().script.tenant.clone();
    if let Some((name, value)) = tenant {
        if headers.get(name.as_str()).map(|v| v.as_bytes()) != Some(value.as_bytes()) {
            let message = format!(
                "no org id: the {name} header must be {value:?} (scripted multi-tenant receiver)"
            );
            return (
                StatusCode::UNAUTHORIZED,
                format!("{message}\n"),
                Some(message),
            );
        }
    }
    let Some(wanted) = shared.lock().script.authorization.clone() else {
        return verdict;
    };
    let got = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if got == Some(wanted.as_bytes()) {
        return verdict;
    }
    let message = "unauthorized (scripted receiver behind auth)";
    (
        StatusCode::UNAUTHORIZED,
        format!("{message}\n"),
        Some(message.to_owned()),
    )
}

/// The verdict on a request as an old receiver would give it, if the test asked for one and
/// this is a 2.0 request; else the verdict as it was. The request is recorded as not
/// accepted either way (nothing was stored), and takes no queued answer.
pub(super) fn as_old_receiver(
    shared: &Shared,
    protocol: Protocol,
    status: StatusCode,
    text: String,
    rejection: Option<String>,
) -> (StatusCode, String, Option<String>) {
    if protocol == Protocol::V1 && shared.lock().script.only_v2.is_some() {
        let message = "Remote Write 1.0 is not supported here (scripted 2.0-only receiver)";
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{message}\n"),
            Some(message.to_owned()),
        );
    }
    if protocol != Protocol::V2 {
        return (status, text, rejection);
    }
    match shared.lock().script.old {
        None => (status, text, rejection),
        Some(OldReceiver::Unsupported) => {
            let message = "Remote Write 2.0 is not supported here (scripted old receiver)";
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{message}\n"),
                Some(message.to_owned()),
            )
        }
        Some(OldReceiver::IgnoresIt) => (
            StatusCode::NO_CONTENT,
            String::new(),
            Some(
                "2.0 body read as an empty 1.0 request, nothing stored (scripted old receiver)"
                    .to_owned(),
            ),
        ),
    }
}

/// The number of requests recorded, for [`Receiver::wait_for_requests`].
pub(super) struct Waiters(watch::Sender<usize>);

/// Opened by [`Receiver::release`]; held answers wait for it.
pub(super) struct Gate(watch::Sender<bool>);

impl Default for Gate {
    fn default() -> Self {
        Gate(watch::Sender::new(false))
    }
}

/// Waits until the test released held answers (at once if it has).
pub(super) async fn released(shared: &Shared) {
    let mut rx = shared.gate.0.subscribe();
    // The sender lives as long as `shared`: `wait_for` only ends by the gate opening.
    let _ = rx.wait_for(|open| *open).await;
}

impl Default for Waiters {
    fn default() -> Self {
        Waiters(watch::Sender::new(0))
    }
}

/// Keeps `request` like the demo's receiver does, and takes the answer a test queued for it
/// if it is valid; both under one lock, so concurrent requests take queued answers in the order
/// they are recorded.
pub(super) fn keep(shared: &Shared, mut request: ReceivedRequest) -> Option<Response> {
    let mut state = shared.lock();
    let queued = if request.rejection.is_none() {
        let next = state.script.queue.pop_front();
        next.or_else(|| state.script.always.clone())
    } else {
        None
    };
    if let Some(q) = &queued {
        request.status = q.status;
    }
    state.keep(request);
    let recorded = state.recorded;
    drop(state);
    shared.waiters.0.send_replace(recorded);
    queued
}

pub(super) fn lowercased(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Receiver {
    /// Starts a receiver that keeps every request it records.
    pub async fn start() -> std::io::Result<Receiver> {
        Self::start_retaining(usize::MAX).await
    }

    /// Starts a receiver on a listener bound already (one coming back on a port its test
    /// kept reserved while it was down), keeping every request.
    pub fn start_on(listener: tokio::net::TcpListener) -> std::io::Result<Receiver> {
        Self::start_with(usize::MAX, listener)
    }

    /// Queues an answer for the next valid request instead of the default 204. Queued
    /// answers are used first in, first out.
    pub fn push_response(&self, r: Response) {
        self.shared.lock().script.queue.push_back(r);
    }

    /// From now on, answers every valid request with `r` once the queued answers are used up
    /// (`None`: 204 again), as a receiver stuck in one state does for as long as a test needs:
    /// no count of requests to queue in advance, and a large body is held once.
    pub fn answer_always(&self, r: Option<Response>) {
        self.shared.lock().script.always = r;
    }

    /// From now on, answers 2.0 requests like a receiver that predates 2.0 (`None`: speaks
    /// 2.0 again).
    pub fn answer_v2_like(&self, old: Option<OldReceiver>) {
        self.shared.lock().script.old = old;
    }

    /// From now on, answers 401 to requests without header `name` set to `value` (`None`: no
    /// tenant needed), as a multi-tenant receiver does.
    pub fn require_tenant(&self, tenant: Option<(&str, &str)>) {
        self.shared.lock().script.tenant =
            tenant.map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()));
    }

    /// From now on, answers like a receiver that takes only 2.0 (`None`: both again): 415 to
    /// 1.0, and 2.0 as usual, with the written headers when `written` (else without them, as
    /// a 2.0-only receiver that does not send them would).
    pub fn answer_only_v2(&self, written: Option<bool>) {
        self.shared.lock().script.only_v2 = written;
    }

    /// Whether 2.0 answers leave the written headers out.
    pub(super) fn omits_written(shared: &Shared) -> bool {
        shared.lock().script.only_v2 == Some(false)
    }

    /// From now on, answers 401 to requests whose `Authorization` header is not `value`
    /// (`None`: no authentication).
    pub fn require_authorization(&self, value: Option<&str>) {
        self.shared.lock().script.authorization = value.map(str::to_owned);
    }

    /// Answers the requests whose queued answer is [`Response::held`], and every later one.
    pub fn release(&self) {
        self.shared.gate.0.send_replace(true);
    }

    /// Forgets the queued answers and the standing one: from now on every valid request gets
    /// 204.
    pub fn clear_responses(&self) {
        let mut state = self.shared.lock();
        state.script.queue.clear();
        state.script.always = None;
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// All series of accepted requests, in arrival order.
    pub fn accepted_series(&self) -> Vec<TimeSeries> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.accepted())
            .filter_map(|r| r.write_request.as_ref())
            .flat_map(|w| w.timeseries.iter().cloned())
            .collect()
    }

    /// Waits until at least `n` requests (valid or not) have been recorded; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.waiters.0.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        matches!(reached, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn queued_responses_are_used_in_order() {
        let rx = Receiver::start().await.unwrap();
        rx.push_response(
            Response::status(503)
                .with_header("Retry-After", "2")
                .with_body("overloaded"),
        );
        rx.push_response(Response::status(200).with_body("ok"));
        let w = sample_request();
        let b = body(&w);

        // An invalid request does not consume the queue.
        let bad = with_header("Content-Encoding", Some("gzip"));
        assert_eq!(post(&rx.url(), &bad, &b).await.status, 400);

        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(r.body, "overloaded");
        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!(r.status, 204);

        let got = rx.requests();
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [400, 503, 200, 204]);
        assert!(!got[1].accepted());
        assert_eq!(got[1].rejection, None);
        assert_eq!(got[1].write_request.as_ref(), Some(&w));
        // Only the 200 and the 204 count as accepted.
        assert_eq!(rx.accepted_series().len(), 2 * w.timeseries.len());
    }

    #[tokio::test]
    async fn a_standing_answer_follows_the_queue_until_cleared() {
        let rx = Receiver::start().await.unwrap();
        rx.push_response(Response::status(429));
        rx.answer_always(Some(Response::status(503).with_body("down")));
        let b = body(&sample_request());
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(post(&rx.url(), GOOD_HEADERS, &b).await.status);
        }
        let r = post(&rx.url(), GOOD_HEADERS, &b).await;
        assert_eq!(r.body, "down");
        statuses.push(r.status);
        // An invalid request is still told why.
        let bad = with_header("Content-Encoding", Some("gzip"));
        statuses.push(post(&rx.url(), &bad, &b).await.status);
        rx.clear_responses();
        statuses.push(post(&rx.url(), GOOD_HEADERS, &b).await.status);
        assert_eq!(statuses, [429, 503, 503, 503, 400, 204]);
        let recorded: Vec<u16> = rx.requests().iter().map(|r| r.status).collect();
        assert_eq!(recorded, statuses);
    }
}
