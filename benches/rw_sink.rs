//! A Remote Write 1.0 / 2.0 receiver for `benches/wan.py`, in Rust because the harness's Python
//! one (`../shared/bench/rw_sink.py`) takes about 7.5 s to decode one 2 MiB catch-up request,
//! which made the hour-long drain of issue 20 measure the receiver instead of the agent.
//!
//! It speaks the same HTTP interface as `rw_sink.py`, so `wan.py` reads it the same way:
//! writes on any path of `--port`; on `--control-port` (which never goes down) `GET /stats`,
//! `/requests` (one row per accepted write: answered at, oldest and newest sample timestamp,
//! samples, body bytes, then what only this sink adds: decode ms, store ms), `/series?names=a,b`
//! (every timestamp received per series), `/control/down?mode=503` and `/control/up`.
//!
//! Bodies are read with the crate's own decoders (`remote_write::wire`, the ones the test
//! receiver in `testkit::receiver` uses). For every series (label set, sorted) it keeps the
//! sorted list of timestamps received, so a timestamp received again is a duplicate and one
//! older than the newest already received is out of order, counted as `rw_sink.py` counts them
//! (stale markers are counted apart and not stored).
//!
//! Round trip (`--response-delay`): a write is answered that long after its body arrived.
//! Decoding and storing happen inside that wait, so the answer comes at the round trip unless
//! the receiver's own work is longer; the rows say how long that work took, so a reader can
//! check it stayed inside the round trip. `rw_sink.py` waits first and decodes after.
//!
//! `cargo bench --bench rw_sink -- --port P --control-port C --response-delay 0.6 --out f.json`
//! (`--no-run` prints the executable's path). 127.0.0.1 only. Stops on SIGTERM, SIGINT or
//! `--max-runtime`, writing the `/stats` JSON to `--out`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use kubelet_push::remote_write::wire::{decode_v1, decode_v2, decompressed_len, labels_of};
use kubelet_push::remote_write::STALE_NAN_BITS;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Remote Write receiver for benches/wan.py (same HTTP interface as rw_sink.py)")]
struct Args {
    #[arg(long)]
    port: u16,
    #[arg(long)]
    control_port: u16,
    /// Seconds between a write's body arriving and its answer (a WAN round trip).
    #[arg(long, default_value_t = 0.0)]
    response_delay: f64,
    /// Write the /stats JSON here on exit.
    #[arg(long)]
    out: Option<String>,
    /// Exit after this many seconds (safety bound).
    #[arg(long, default_value_t = 7200.0)]
    max_runtime: f64,
    #[arg(long, default_value_t = 64 << 20)]
    max_body: usize,
}

#[derive(Default)]
struct Series {
    labels: Vec<(String, String)>,
    /// Every timestamp received, sorted (an out-of-order one is inserted in place).
    ts: Vec<i64>,
}

#[derive(Default)]
struct Counters {
    requests_total: u64,
    requests_accepted: u64,
    requests_rejected: u64,
    requests_bad: u64,
    v1_requests: u64,
    v2_requests: u64,
    body_bytes: u64,
    uncompressed_bytes: u64,
    series_entries: u64,
    samples: u64,
    stale_markers: u64,
    duplicates: u64,
    out_of_order: u64,
}

struct Outage {
    mode: String,
    down_at: f64,
    up_at: Option<f64>,
    first_accept_after_up_s: Option<f64>,
    backfill_done_after_up_s: Option<f64>,
    backfill_requests: u64,
}

/// One accepted write: answered at, min ts, max ts, samples, body bytes, decode ms, store ms.
type Row = (f64, Option<i64>, Option<i64>, u64, u64, f64, f64);

#[derive(Default)]
struct State {
    c: Counters,
    /// foldhash, not SipHash: a 2 MiB request looks up ~80,000 keys of ~200 bytes.
    index: HashMap<Vec<u8>, usize, foldhash::fast::FixedState>,
    series: Vec<Series>,
    rows: Vec<Row>,
    down: bool,
    outages: Vec<Outage>,
    first_accepted_at: Option<f64>,
    last_accepted_at: Option<f64>,
}

struct Sink {
    state: Mutex<State>,
    delay: Duration,
    max_body: usize,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One decoded series: canonical key (sorted `name\0value\0` pairs), labels, samples.
type Decoded = Vec<(Vec<u8>, Vec<(String, String)>, Vec<(i64, u64)>)>;

fn canonical(mut labels: Vec<(String, String)>) -> (Vec<u8>, Vec<(String, String)>) {
    labels.sort();
    let mut key = Vec::with_capacity(labels.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (n, v) in &labels {
        key.extend_from_slice(n.as_bytes());
        key.push(0);
        key.extend_from_slice(v.as_bytes());
        key.push(0);
    }
    (key, labels)
}

fn decode(body: &[u8], v2: bool) -> Result<(Decoded, usize), String> {
    let raw_len = decompressed_len(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if v2 {
        let req = decode_v2(body).map_err(|e| e.to_string())?;
        for ts in &req.timeseries {
            let labels = labels_of(&req, ts).map_err(|e| e.to_string())?;
            let labels = labels
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            let (key, labels) = canonical(labels);
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            out.push((key, labels, samples));
        }
    } else {
        let req = decode_v1(body).map_err(|e| e.to_string())?;
        for ts in req.timeseries {
            let labels = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            let (key, labels) = canonical(labels);
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            out.push((key, labels, samples));
        }
    }
    Ok((out, raw_len))
}

/// Stores a decoded request; returns (min ts, max ts, samples) of its non-stale samples.
fn store(st: &mut State, decoded: Decoded) -> (Option<i64>, Option<i64>, u64) {
    let (mut lo, mut hi, mut n) = (None::<i64>, None::<i64>, 0u64);
    for (key, labels, samples) in decoded {
        st.c.series_entries += 1;
        n += samples.len() as u64;
        let sid = match st.index.get(&key) {
            Some(&sid) => sid,
            None => {
                let sid = st.series.len();
                st.series.push(Series {
                    labels,
                    ts: Vec::new(),
                });
                st.index.insert(key, sid);
                sid
            }
        };
        let (mut dups, mut ooo, mut stale) = (0u64, 0u64, 0u64);
        let s = &mut st.series[sid];
        for (t, bits) in samples {
            if bits == STALE_NAN_BITS {
                stale += 1;
                continue;
            }
            lo = Some(lo.map_or(t, |x| x.min(t)));
            hi = Some(hi.map_or(t, |x| x.max(t)));
            match s.ts.last() {
                None => s.ts.push(t),
                Some(&last) if t > last => s.ts.push(t),
                Some(_) => match s.ts.binary_search(&t) {
                    Ok(_) => dups += 1,
                    Err(pos) => {
                        ooo += 1;
                        s.ts.insert(pos, t);
                    }
                },
            }
        }
        st.c.duplicates += dups;
        st.c.out_of_order += ooo;
        st.c.stale_markers += stale;
    }
    st.c.samples += n;
    (lo, hi, n)
}

async fn write(sink: Arc<Sink>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let v2 = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .contains("io.prometheus.write.v2.request")
        });
    let down = {
        let mut st = sink.lock();
        st.c.requests_total += 1;
        st.down
    };
    if body.len() > sink.max_body {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response();
    }
    if down {
        tokio::time::sleep_until((arrived + sink.delay).into()).await;
        sink.lock().c.requests_rejected += 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "sink is down (simulated outage)\n",
        )
            .into_response();
    }
    let len = body.len() as u64;
    let worker = Arc::clone(&sink);
    let done = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let decoded = decode(&body, v2);
        let decode_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let mut st = worker.lock();
        match decoded {
            Err(e) => {
                st.c.requests_bad += 1;
                Err(e)
            }
            Ok((decoded, raw_len)) => {
                st.c.uncompressed_bytes += raw_len as u64;
                let (lo, hi, n) = store(&mut st, decoded);
                Ok((lo, hi, n, decode_ms, t.elapsed().as_secs_f64() * 1000.0))
            }
        }
    })
    .await;
    let (lo, hi, n, decode_ms, store_ms) = match done {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            return (StatusCode::BAD_REQUEST, format!("decode error: {e}\n")).into_response()
        }
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
    };
    tokio::time::sleep_until((arrived + sink.delay).into()).await;
    let now = unix_now();
    let mut st = sink.lock();
    st.c.requests_accepted += 1;
    st.c.body_bytes += len;
    if v2 {
        st.c.v2_requests += 1;
    } else {
        st.c.v1_requests += 1;
    }
    st.first_accepted_at.get_or_insert(now);
    st.last_accepted_at = Some(now);
    st.rows.push((
        round3(now),
        lo,
        hi,
        n,
        len,
        round3(decode_ms),
        round3(store_ms),
    ));
    if let Some(o) = st.outages.last_mut() {
        if let Some(up) = o.up_at {
            o.first_accept_after_up_s.get_or_insert(round3(now - up));
            if lo.is_some_and(|lo| (lo as f64) < up * 1000.0) {
                o.backfill_done_after_up_s = Some(round3(now - up));
                o.backfill_requests += 1;
            }
        }
    }
    drop(st);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if v2 {
        for (k, v) in [
            ("x-prometheus-remote-write-samples-written", n.to_string()),
            ("x-prometheus-remote-write-histograms-written", "0".into()),
            ("x-prometheus-remote-write-exemplars-written", "0".into()),
        ] {
            if let Ok(v) = v.parse() {
                response.headers_mut().insert(k, v);
            }
        }
    }
    response
}

fn stats(sink: &Sink) -> Value {
    let st = sink.lock();
    let c = &st.c;
    let unique: usize = st.series.iter().map(|s| s.ts.len()).sum();
    let outages: Vec<Value> = st
        .outages
        .iter()
        .map(|o| {
            json!({"mode": o.mode, "down_at": o.down_at, "up_at": o.up_at,
                   "first_accept_after_up_s": o.first_accept_after_up_s,
                   "backfill_done_after_up_s": o.backfill_done_after_up_s,
                   "backfill_requests": o.backfill_requests})
        })
        .collect();
    json!({
        "requests_total": c.requests_total, "requests_accepted": c.requests_accepted,
        "requests_rejected": c.requests_rejected, "requests_bad": c.requests_bad,
        "v1_requests": c.v1_requests, "v2_requests": c.v2_requests,
        "body_bytes": c.body_bytes, "uncompressed_bytes": c.uncompressed_bytes,
        "series_entries": c.series_entries, "samples": c.samples, "stale_markers": c.stale_markers,
        "duplicates": c.duplicates, "out_of_order": c.out_of_order,
        "unique_series": st.series.len(), "unique_samples": unique,
        "first_accepted_at": st.first_accepted_at, "last_accepted_at": st.last_accepted_at,
        "down": st.down, "outages": outages,
    })
}

async fn control(
    sink: Arc<Sink>,
    path: &str,
    q: HashMap<String, String>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
    const TEXT: [(&str, &str); 1] = [("content-type", "text/plain; charset=utf-8")];
    match path {
        "stats" => (StatusCode::OK, JSON, stats(&sink).to_string()),
        "requests" => {
            let rows: Vec<Value> = sink
                .lock()
                .rows
                .iter()
                .map(|r| json!([r.0, r.1, r.2, r.3, r.4, r.5, r.6]))
                .collect();
            let v = json!({"fields": ["arrival", "min_ts_ms", "max_ts_ms", "samples", "body_bytes",
                                      "decode_ms", "store_ms"], "requests": rows});
            (StatusCode::OK, JSON, v.to_string())
        }
        "series" => {
            let names: Option<Vec<&str>> = q.get("names").map(|n| n.split(',').collect());
            let st = sink.lock();
            let rows: Vec<Value> = st
                .series
                .iter()
                .filter(|s| {
                    names.as_ref().is_none_or(|names| {
                        s.labels
                            .iter()
                            .any(|(k, v)| k == "__name__" && names.contains(&v.as_str()))
                    })
                })
                .map(|s| {
                    let labels: serde_json::Map<String, Value> = s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                        .collect();
                    json!({"labels": labels, "ts": s.ts})
                })
                .collect();
            (StatusCode::OK, JSON, json!({"series": rows}).to_string())
        }
        "down" => {
            let mode = q.get("mode").cloned().unwrap_or_else(|| "503".into());
            if mode != "503" {
                return (StatusCode::BAD_REQUEST, TEXT, "only mode=503\n".into());
            }
            let mut st = sink.lock();
            if !st.down {
                st.down = true;
                st.outages.push(Outage {
                    mode,
                    down_at: unix_now(),
                    up_at: None,
                    first_accept_after_up_s: None,
                    backfill_done_after_up_s: None,
                    backfill_requests: 0,
                });
                eprintln!("rw_sink: DOWN (503)");
            }
            (StatusCode::OK, TEXT, "down\n".into())
        }
        "up" => {
            let mut st = sink.lock();
            if st.down {
                st.down = false;
                if let Some(o) = st.outages.last_mut() {
                    o.up_at = Some(unix_now());
                }
                eprintln!("rw_sink: UP");
            }
            (StatusCode::OK, TEXT, "up\n".into())
        }
        _ => (StatusCode::OK, TEXT, "ok\n".into()),
    }
}

/// `a=1&b=x,y` as a map; the harness sends plain values (no percent-escapes but `%2C`).
fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2C", ",").replace("%2c", ",")))
        .collect()
}

fn control_router(sink: Arc<Sink>) -> Router {
    let route = |name: &'static str, sink: &Arc<Sink>| {
        let sink = Arc::clone(sink);
        get(move |uri: Uri| {
            let sink = Arc::clone(&sink);
            async move { control(sink, name, query(&uri)).await }
        })
    };
    Router::new()
        .route("/stats", route("stats", &sink))
        .route("/requests", route("requests", &sink))
        .route("/series", route("series", &sink))
        .route("/control/down", route("down", &sink))
        .route("/control/up", route("up", &sink))
        .route("/healthz", route("healthz", &sink))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` runs every bench target with `--bench`: this one measures nothing itself.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv.iter().any(|a| a == "--bench") {
        eprintln!(
            "rw_sink: the receiver benches/wan.py runs (--sink-bin); nothing to measure here"
        );
        return Ok(());
    }
    let args = Args::parse();
    let sink = Arc::new(Sink {
        state: Mutex::new(State::default()),
        delay: Duration::from_secs_f64(args.response_delay.max(0.0)),
        max_body: args.max_body,
    });
    let w = Arc::clone(&sink);
    let writes = Router::new()
        .fallback(move |headers: HeaderMap, body: Bytes| {
            let sink = Arc::clone(&w);
            async move { write(sink, headers, body).await }
        })
        .layer(DefaultBodyLimit::max(args.max_body + 1));
    let wl = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let cl = tokio::net::TcpListener::bind(("127.0.0.1", args.control_port)).await?;
    tokio::spawn(async move { axum::serve(wl, writes).await });
    let ctl = control_router(Arc::clone(&sink));
    tokio::spawn(async move { axum::serve(cl, ctl).await });
    eprintln!(
        "rw_sink: listening on 127.0.0.1:{} control 127.0.0.1:{}",
        args.port, args.control_port
    );
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let terminated = term.recv();
    #[cfg(not(unix))]
    let terminated = std::future::pending::<Option<()>>();
    tokio::select! {
        _ = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = tokio::time::sleep(Duration::from_secs_f64(args.max_runtime)) => {
            eprintln!("rw_sink: --max-runtime reached, exiting");
        }
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&stats(&sink))?)
            .map_err(|e| format!("--out {out}: {e}"))?;
    }
    Ok(())
}
