//! A fault-injecting TCP proxy, ours, for the network cases ([`super::network`]): it listens
//! on 127.0.0.1, forwards every connection to one upstream address, and does to the bytes what
//! the [`Fault`] in force says: added latency, a bandwidth cap, a connection reset in the middle
//! of a request body, a blackhole, a response trickled a few bytes at a time, a TLS handshake
//! cut after the ClientHello. The fault can be switched at any time ([`Proxy::set`]).
//!
//! It keeps a log of what it did ([`Proxy::connections`]): every connection accepted, with the
//! fault in force then, and every HTTP request that started on it, with the fault it started
//! under, when it went on whole and when its answer came back, so a test can tell a retry on a
//! new connection from one on the same, and time a blackholed connection from its request to
//! the client giving up on it. And it decodes every request it passed on whole (Remote Write
//! 1.0) and counts each sample it carried ([`Proxy::passed`]): what reached the receiver, and
//! how many times.
//!
//! The client's side is read as it comes, even while a chunk is held back, so a client that
//! gives up is seen when it does; what it sent and the proxy had not passed on yet is then
//! dropped, as on a link where the bytes a sender had not put on the wire die with its
//! connection.
//!
//! What it does not do: it reads HTTP/1.1 requests framed by `Content-Length` (as the agent
//! sends them) to find where a request's body starts; anything else on a plain connection is
//! recorded as a problem ([`Proxy::problems`]), which the tests assert is empty. On a TLS
//! connection it reads only the first record: it can delay, slow and cut the handshake, not
//! frame requests.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections; every task it starts ends when the
//! proxy is dropped, including the blackholed connections it never closes on its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubelet_push::remote_write::proto::v1::WriteRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// More than any test makes: a test that retries a few times a second for a minute makes a
/// few hundred at most.
pub const MAX_CONNECTIONS: usize = 5000;

/// What the proxy does to the bytes it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Everything goes through as it comes.
    Pass,
    /// Every chunk read, in either direction, is written on this much later.
    Latency(Duration),
    /// Each direction carries at most this many bytes a second, written in slices of a
    /// twentieth of it.
    Bandwidth(u64),
    /// A request that starts while this is in force has its head and this many bytes of its
    /// body forwarded; then both of its connections are reset (RST, `SO_LINGER` 0): a
    /// connection broken in the middle of a request body, which the receiver never gets whole.
    ResetMidBody(u64),
    /// A request that starts while this is in force, and everything after it on its
    /// connection, is read and discarded: nothing reaches the receiver, nothing is answered,
    /// and the proxy never closes the connection (the client must give up on it).
    Blackhole,
    /// Response bytes go `bytes` at a time, `pause` apart.
    Trickle { bytes: usize, pause: Duration },
    /// A connection accepted while this is in force has its first TLS record, the ClientHello,
    /// forwarded, and is reset before anything comes back: a handshake cut in the middle.
    /// Setting it also resets every connection open then when its client next sends
    /// something, before any of it goes on (as a receiver that restarted between two
    /// requests): a client that kept one alive handshakes again, and no request the upstream
    /// may have taken is cut (resetting one in flight would lose an answer, and the client
    /// would rightly send that request again).
    CutHandshake,
}

/// One connection the proxy accepted.
#[derive(Debug, Clone)]
pub struct Connection {
    pub accepted: Instant,
    /// The fault in force when it was accepted.
    pub fault: Fault,
    /// The HTTP requests that started on it, in order (none on a TLS connection).
    pub requests: Vec<RequestSeen>,
    /// When the proxy began discarding it ([`Fault::Blackhole`]).
    pub blackholed: Option<Instant>,
    /// When the client closed it (or its side failed): for a blackholed or slowed connection
    /// with a request outstanding, when the client gave up.
    pub client_closed: Option<Instant>,
    /// When the proxy reset it (mid-body, mid-handshake, or when a cut was set).
    pub reset: Option<Instant>,
    /// Reset as its client began to send again after [`Fault::CutHandshake`] was set.
    pub reset_when_used: bool,
    /// A TLS connection cut after its ClientHello was forwarded ([`Fault::CutHandshake`]).
    pub handshake_cut: bool,
}

/// One HTTP request as the proxy saw it go by.
#[derive(Debug, Clone, Copy)]
pub struct RequestSeen {
    /// When its first byte arrived from the client.
    pub at: Instant,
    /// The fault in force then, which decides what happens to it.
    pub fault: Fault,
    /// Its `Content-Length`, once its head was read.
    pub body_len: Option<u64>,
    /// When the last of it (head and body) went on to the upstream, if it all did.
    pub forwarded: Option<Instant>,
    /// When the first chunk of the answer went on to the client, and its length.
    pub answered: Option<(Instant, usize)>,
}

/// What a proxied connection carries: the proxy reads HTTP requests on a plain one, and only
/// the first record of a TLS one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Http,
    Tls,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    _stop: DropGuard,
}

struct State {
    upstream: SocketAddr,
    wire: Wire,
    fault: Mutex<Fault>,
    /// Indexed by connection number.
    connections: Mutex<Vec<Connection>>,
    /// Each open connection's mark: once cancelled, the connection is reset when its client
    /// next sends something ([`Fault::CutHandshake`]).
    open: Mutex<Vec<(usize, CancellationToken)>>,
    problems: Mutex<Vec<String>>,
    /// How many times each sample (its labels, its timestamp) went on in a whole request.
    passed: Mutex<BTreeMap<(String, i64), u32>>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 (a port the kernel chose) forwarding to `upstream`, passing
    /// everything through until [`Proxy::set`] says otherwise.
    pub async fn start(upstream: SocketAddr, wire: Wire) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            wire,
            fault: Mutex::new(Fault::Pass),
            connections: Mutex::new(Vec::new()),
            open: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            passed: Mutex::new(BTreeMap::new()),
        });
        let stop = CancellationToken::new();
        let (accepting, stopped) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            for _ in 0..MAX_CONNECTIONS {
                let client = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let (cut, marked) = (stopped.child_token(), CancellationToken::new());
                let (id, fault) = accepting.accepted(marked.clone());
                tokio::spawn(serve(accepting.clone(), id, fault, client, cut, marked));
            }
        });
        Proxy {
            addr,
            state,
            _stop: stop.drop_guard(),
        }
    }

    /// From now on, `fault` (see [`Fault`] for when each one takes effect).
    ///
    /// A TLS proxy cannot frame requests, so it cannot reset one mid-body or blackhole one; a
    /// plain one has no handshake to cut: asking for either fails the test.
    pub fn set(&self, fault: Fault) {
        let framed = matches!(fault, Fault::ResetMidBody(_) | Fault::Blackhole);
        match self.state.wire {
            Wire::Tls => assert!(!framed, "{fault:?} needs a plain HTTP proxy"),
            Wire::Http => assert_ne!(fault, Fault::CutHandshake, "a plain proxy has no handshake"),
        }
        // Under the connections' lock, which `accepted` takes: a connection is either
        // accepted under the new fault or open (and marked here) when it comes.
        let _accepting = self.state.connections.lock().unwrap();
        *self.state.fault.lock().unwrap() = fault;
        if fault == Fault::CutHandshake {
            for (_, marked) in self.state.open.lock().unwrap().drain(..) {
                marked.cancel();
            }
        }
    }

    /// Every connection accepted so far, in order.
    pub fn connections(&self) -> Vec<Connection> {
        self.state.connections.lock().unwrap().clone()
    }

    /// Connections accepted while `fault` was in force.
    pub fn accepted_under(&self, fault: Fault) -> usize {
        self.connections()
            .iter()
            .filter(|c| c.fault == fault)
            .count()
    }

    /// Every request seen so far, in the order they started on their connections (and of the
    /// connections): `(connection number, request)`.
    pub fn requests(&self) -> Vec<(usize, RequestSeen)> {
        let mut all: Vec<(usize, RequestSeen)> = self
            .connections()
            .into_iter()
            .enumerate()
            .flat_map(|(id, c)| c.requests.into_iter().map(move |r| (id, r)))
            .collect();
        all.sort_by_key(|(_, r)| r.at);
        all
    }

    /// Each sample that went on to the upstream in a whole request (decoded from its body, as
    /// Remote Write 1.0), with the number of times it did: more than once, and a receiver that
    /// keeps duplicates has it twice.
    pub fn passed(&self) -> BTreeMap<(String, i64), u32> {
        self.state.passed.lock().unwrap().clone()
    }

    /// What the proxy could not handle as it should (a request it could not frame): a test
    /// asserts there is none, or its faults were not the ones it meant.
    pub fn problems(&self) -> Vec<String> {
        self.state.problems.lock().unwrap().clone()
    }
}

impl State {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    /// Records a connection as accepted now: its number, and the fault in force.
    fn accepted(&self, marked: CancellationToken) -> (usize, Fault) {
        // Under the connections' lock, as `set` changes the fault.
        let mut connections = self.connections.lock().unwrap();
        let (id, fault) = (connections.len(), self.fault());
        connections.push(Connection {
            accepted: Instant::now(),
            fault,
            requests: Vec::new(),
            blackholed: None,
            client_closed: None,
            reset: None,
            handshake_cut: false,
            reset_when_used: false,
        });
        self.open.lock().unwrap().push((id, marked));
        (id, fault)
    }

    fn with<T>(&self, id: usize, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut self.connections.lock().unwrap()[id])
    }

    fn problem(&self, what: String) {
        self.problems.lock().unwrap().push(what);
    }

    /// Counts the samples of a Remote Write 1.0 body that went on whole.
    fn passed(&self, id: usize, body: &[u8]) {
        use prost::Message;
        let decoded = snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|e| e.to_string())
            .and_then(|raw| WriteRequest::decode(raw.as_slice()).map_err(|e| e.to_string()));
        let request = match decoded {
            Ok(r) => r,
            Err(e) => return self.problem(format!("connection {id}: a body not 1.0: {e}")),
        };
        let mut passed = self.passed.lock().unwrap();
        for ts in request.timeseries {
            let mut labels: Vec<String> = ts
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            labels.sort();
            let key = labels.join(",");
            for sample in ts.samples {
                *passed.entry((key.clone(), sample.timestamp)).or_default() += 1;
            }
        }
    }
}

/// One connection, until either side ends it, the proxy resets it, or the proxy is dropped.
async fn serve(
    state: Arc<State>,
    id: usize,
    fault: Fault,
    mut client: TcpStream,
    cut: CancellationToken,
    marked: CancellationToken,
) {
    let Ok(mut upstream) = TcpStream::connect(state.upstream).await else {
        state.problem(format!("connection {id}: the upstream refused"));
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let reset = if fault == Fault::CutHandshake {
        tokio::select! {
            _ = cut.cancelled() => true,
            forwarded = forward_first_record(&mut client, &mut upstream) => {
                if forwarded {
                    state.with(id, |c| c.handshake_cut = true);
                } else {
                    state.with(id, |c| c.client_closed = Some(Instant::now()));
                }
                forwarded
            }
        }
    } else {
        let (mut from_client, mut to_client) = client.split();
        let (mut from_upstream, mut to_upstream) = upstream.split();
        tokio::select! {
            _ = cut.cancelled() => true,
            _ = requests(&state, id, &mut from_client, &mut to_upstream, &cut, &marked) => false,
            _ = responses(&state, id, &mut from_upstream, &mut to_client) => false,
        }
    };
    // A request to be reset cancels `cut` and returns: either branch may have been taken.
    let reset = reset || cut.is_cancelled();
    state.open.lock().unwrap().retain(|(open, _)| *open != id);
    if reset {
        state.with(id, |c| c.reset = Some(Instant::now()));
        // Closed with `SO_LINGER` 0 when dropped below: a reset, not an orderly close.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
}

/// Client to upstream: reads what the client sends as it comes, and passes it on as the
/// fault says. Returns when the client is gone (it closed, or an I/O error), or (having
/// cancelled `cut`) when a request is to be reset, or the connection is `marked` and its
/// client sends something.
///
/// Reading goes on while a chunk is held back (latency, a bandwidth cap), so the client's
/// giving up is seen when it happens: from then on nothing more of its bytes goes on, as on
/// a link where what the sender had not put on the wire dies with its connection (a body
/// bigger than the sockets' buffers). The upstream then gets a request cut short, never one
/// whose client gave up on it arriving whole later.
async fn requests(
    state: &State,
    id: usize,
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    cut: &CancellationToken,
    marked: &CancellationToken,
) {
    let gone = CancellationToken::new();
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let reader = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    state.with(id, |c| c.client_closed = Some(Instant::now()));
                    gone.cancel();
                    return;
                }
                Ok(n) => {
                    if chunks.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async {
        forward_requests(state, id, &mut received, to, cut, marked, &gone).await;
        // Nothing more goes on: the reader need not wait for room.
        received.close();
    };
    tokio::join!(reader, writer);
}

/// The writing half of [`requests`]: frames the chunks the client sent (see the module doc),
/// applies the fault each request starts under, and stops once the client is `gone`.
async fn forward_requests(
    state: &State,
    id: usize,
    received: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    to: &mut (impl AsyncWrite + Unpin),
    cut: &CancellationToken,
    marked: &CancellationToken,
    gone: &CancellationToken,
) {
    let mut framing = Framing::Between;
    loop {
        let Some(buf) = received.recv().await else {
            return;
        };
        if gone.is_cancelled() {
            return;
        }
        let n = buf.len();
        if marked.is_cancelled() {
            state.with(id, |c| c.reset_when_used = true);
            cut.cancel();
            return;
        }
        if state.wire == Wire::Tls {
            if shaped_write(state, to, &buf[..n], Some(gone))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let mut out = Vec::with_capacity(n);
        let (mut reset_after, mut finished) = (false, 0);
        // The bodies of the requests this chunk completes.
        let mut whole = Vec::new();
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match &mut framing {
                Framing::Discarding => rest = &[],
                Framing::Between => {
                    let fault = state.fault();
                    state.with(id, |c| {
                        c.requests.push(RequestSeen {
                            at: Instant::now(),
                            fault,
                            body_len: None,
                            forwarded: None,
                            answered: None,
                        });
                        if fault == Fault::Blackhole {
                            c.blackholed = Some(Instant::now());
                        }
                    });
                    framing = if fault == Fault::Blackhole {
                        Framing::Discarding
                    } else {
                        Framing::Head {
                            read: Vec::new(),
                            fault,
                        }
                    };
                }
                Framing::Head { read, fault } => {
                    let before = read.len();
                    read.extend_from_slice(rest);
                    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
                        out.extend_from_slice(rest);
                        rest = &[];
                        continue;
                    };
                    let taken = end + 4 - before;
                    out.extend_from_slice(&rest[..taken]);
                    rest = &rest[taken..];
                    let Some(len) = content_length(&read[..end]) else {
                        state.problem(format!(
                            "connection {id}: a request without Content-Length: {}",
                            String::from_utf8_lossy(&read[..end])
                        ));
                        cut.cancel();
                        return;
                    };
                    state.with(id, |c| c.requests.last_mut().unwrap().body_len = Some(len));
                    framing = if len == 0 {
                        finished += 1;
                        Framing::Between
                    } else {
                        Framing::Body {
                            left: len,
                            sent: 0,
                            fault: *fault,
                            bytes: Vec::new(),
                        }
                    };
                }
                Framing::Body {
                    left,
                    sent,
                    fault,
                    bytes,
                } => {
                    let mut take = (*left).min(rest.len() as u64);
                    if let Fault::ResetMidBody(after) = *fault {
                        // Within the body: a reset after the last byte would be a reset
                        // after the request, which the receiver may have stored.
                        let after = after.min(*sent + *left - 1);
                        if *sent + take >= after {
                            take = after - *sent;
                            reset_after = true;
                        }
                    }
                    out.extend_from_slice(&rest[..take as usize]);
                    bytes.extend_from_slice(&rest[..take as usize]);
                    rest = &rest[take as usize..];
                    *left -= take;
                    *sent += take;
                    if reset_after {
                        break;
                    }
                    if *left == 0 {
                        finished += 1;
                        whole.push(std::mem::take(bytes));
                        framing = Framing::Between;
                    }
                }
            }
        }
        if shaped_write(state, to, &out, Some(gone)).await.is_err() {
            return;
        }
        if reset_after {
            let _ = to.flush().await;
            cut.cancel();
            return;
        }
        if finished > 0 {
            // Whole on the wire now: the last `finished` requests, but one begun since.
            let begun = usize::from(!matches!(framing, Framing::Between));
            state.with(id, |c| {
                let n = c.requests.len() - begun;
                for r in &mut c.requests[n - finished..n] {
                    r.forwarded = Some(Instant::now());
                }
            });
            for body in whole {
                state.passed(id, &body);
            }
        }
    }
}

/// Where the client-to-upstream byte stream is: between requests, in a request's head (the
/// bytes read of it so far), in its body, or in a blackhole (for good).
enum Framing {
    Between,
    Head {
        read: Vec<u8>,
        fault: Fault,
    },
    Body {
        left: u64,
        sent: u64,
        fault: Fault,
        /// The body so far, to decode once whole.
        bytes: Vec<u8>,
    },
    Discarding,
}

/// The `Content-Length` of a request head; `None` without one, or with a chunked body.
fn content_length(head: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(head).ok()?;
    let mut len = None;
    for line in head.split("\r\n").skip(1) {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            len = value.trim().parse().ok();
        }
    }
    len
}

/// Upstream to client, shaped by the fault in force as each chunk arrives; the first chunk
/// after a request is recorded as its answer. Returns when the upstream closes (after passing
/// the close on) or on an I/O error.
async fn responses(
    state: &State,
    id: usize,
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                // The request being answered: the last one now, before the client has the
                // answer and can send the next.
                let answering = state.with(id, |c| c.requests.len().checked_sub(1));
                if shaped_write(state, to, &buf[..n], None).await.is_err() {
                    return;
                }
                state.with(id, |c| {
                    if let Some(r) = answering.and_then(|i| c.requests.get_mut(i)) {
                        r.answered.get_or_insert((Instant::now(), n));
                    }
                });
            }
        }
    }
}

/// Writes `bytes` as the fault in force says: late, slowly, or (an answer) a few at a time.
/// `gone` is the client's, for what goes to the upstream (`None` for answers): once it is
/// cancelled nothing more is written, and the write fails.
async fn shaped_write(
    state: &State,
    to: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    gone: Option<&CancellationToken>,
) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let answer = gone.is_none();
    let never = CancellationToken::new();
    let gone = gone.unwrap_or(&never);
    // Waits `pause`; an error if the client goes meanwhile.
    let wait = |pause: Duration| async move {
        tokio::select! {
            _ = tokio::time::sleep(pause) => Ok(()),
            _ = gone.cancelled() => Err(std::io::Error::other("the client is gone")),
        }
    };
    match state.fault() {
        Fault::Latency(delay) => {
            wait(delay).await?;
            to.write_all(bytes).await
        }
        Fault::Bandwidth(per_second) => {
            let slice = (per_second / 20).max(1) as usize;
            for part in bytes.chunks(slice) {
                to.write_all(part).await?;
                to.flush().await?;
                wait(Duration::from_secs_f64(
                    part.len() as f64 / per_second as f64,
                ))
                .await?;
            }
            Ok(())
        }
        Fault::Trickle { bytes: n, pause } if answer => {
            for (i, part) in bytes.chunks(n.max(1)).enumerate() {
                if i > 0 {
                    tokio::time::sleep(pause).await;
                }
                to.write_all(part).await?;
                to.flush().await?;
            }
            Ok(())
        }
        _ => to.write_all(bytes).await,
    }
}

/// Reads the client's first TLS record (a 5-byte header with its length, then that many
/// bytes) and writes it to the upstream. False if the client closed first.
async fn forward_first_record(client: &mut TcpStream, upstream: &mut TcpStream) -> bool {
    let mut header = [0u8; 5];
    if client.read_exact(&mut header).await.is_err() {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut record = vec![0u8; len];
    if client.read_exact(&mut record).await.is_err() {
        return false;
    }
    upstream.write_all(&header).await.is_ok() && upstream.write_all(&record).await.is_ok()
}
