#!/usr/bin/env python3
"""wan.py: a long disk backlog drained over a slow, far link (issue 20, parts 1 and 5).

What it does, for one scenario:

    fake kubelet --(1 s polls)--> kubelet-push --> bandwidth-capping proxy --> rw_sink
                                   --buffer-dir      (this file, in-process)     --response-delay

1. Starts ../shared/bench/fake_kubelet.py (``--stats-period 1``, so every poll is new data),
   ../shared/bench/rw_sink.py (``--response-delay RTT``: every write is answered RTT seconds
   after its body arrived, the harness' model of a round trip) and a TCP proxy in this process
   that carries agent -> sink and sink -> agent at ``--mbit`` Mbit/s each way (one token bucket
   per direction, shared by all connections, like one uplink).
2. Starts the agent (``--bin``) with ``--buffer-dir`` in the run directory, a raised
   ``--buffer-max-size`` and ``--listen-address`` for its /metrics.
3. After ``--warmup`` s the sink answers 503 (``/control/down?mode=503``) for ``--outage`` s;
   the agent buffers on disk.  At the return the backlog is read twice: the agent's
   ``kubelet_push_buffer_bytes`` gauge and the size of the buffer directory.
4. The sink comes back (``/control/up``); the run waits until the backlog is stored (no
   request any more carries a sample stamped before the return and the agent's buffer is
   back to a few polls), at most ``--drain-max`` s, then runs ``--after`` s more and stops
   the agent with SIGTERM.
5. Every ``--sample-every`` s (1 s) it samples the agent's RSS and CPU from /proc (via
   peers.Sampler); every 5 s the buffer gauge and the directory size.  Timeline:
   ``timeline.jsonl``.  Per request on the proxy: bytes up, upload time, time to the first
   response byte (``proxy.jsonl``), which separates the link from the sink's own (Python)
   decoding time.

Results (``result.json`` in ``--out``, also printed): backlog bytes at the return, first write
accepted after the return, time from the return to the whole backlog stored (the last accepted
request still holding a sample stamped more than one stats period before the return, from the
sink's /requests rows), the bound 2 x (backlog bytes / bandwidth + 10 x RTT), requests and wire
bytes of the drain, peak RSS before the outage / during the outage / during the drain,
CPU seconds per phase, duplicates and out-of-order (the sink's counts), and lost: the kubelet's
six timestamped families x every 1 s stats period of the run, against what the sink holds
(peers.coverage), plus how fresh data flowed during the drain.

The receiver: ``--sink-bin`` runs benches/rw_sink.rs (``cargo bench --no-run --bench rw_sink``
prints its path), the same HTTP interface in Rust with the crate's own decoders, which answers
RTT after the body arrived with its decoding done inside that wait (its per-request decode and
store times are in /requests and ``sink_work_ms``); without it, ../shared/bench/rw_sink.py, which
decodes a 2 MiB catch-up request in about 7.5 s (so a long drain measures the receiver).

An hour of backlog without an hour of waiting (``--build-backlog``, then ``--from-backlog``):

1. ``--build-backlog --polls 3600 --bin <agent built with --features test-support>``: the
   receiver answers 503 throughout; the agent polls benches/hour_kubelet.py every
   ``--build-interval`` (100 ms; only a test-support build takes an interval under 1 s); that
   kubelet is fake_kubelet.py whose clock moves one stats period (1 s) per /stats/summary
   request, so poll n gets second n of an hour that ended a minute before the build began.
   After the last poll the agent is stopped (SIGTERM; the buffer stays on disk) and ``--out``
   keeps the buffer directory, a manifest (size and sha256 per file), and what the kubelet
   served.  The proxy must listen on a fixed ``--proxy-port``: the agent names its buffer's
   subdirectory after the remote URL's host and port.
2. ``--from-backlog DIR --bin <release build>`` (same ``--proxy-port``): copies DIR's buffer
   (checked against the manifest), sets the receiver to 503, starts the agent with 1 s polls
   against a real-time fake_kubelet.py (same seed, so the same series), waits ``--outage`` s
   (the agent reopens the buffer and buffers those polls on top), brings the receiver back and
   measures the drain as above.  "lost" then adds the built hour (every one of its periods x
   every timestamped series, against the build's kubelet) to the run's own periods.

Python 3.11 standard library (+ cramjam for rw_sink.py).  All traffic on 127.0.0.1; every
process started here is stopped by PID; every loop is bounded in time.

Run (from the repository root; the release binary of the commit under test copied aside):

    # bytes per poll for a node size (short outage; 110 pods x 2 gave 148 KB per poll on disk):
    python3 benches/wan.py --bin /tmp/kp-32afa93 --pods 110 --warmup 10 --outage 30 \
        --drain-max 60 --after 5 --out /tmp/wan-probe

    # the runs reported in docs/performance.md (2026-12-07, "catching up over slow links"):
    # three started 20 s apart, each with its own ports, directories and proxy
    python3 benches/wan.py --bin /tmp/kp-32afa93 --pods 70 --warmup 30 --outage 3600 --rtt 0.6 \
        --mbit 20 --drain-max 1500 --after 30 --out /tmp/wan-A      # also /tmp/wan-B, /tmp/wan-C

    # the hour-long drain with the Rust receiver (docs/performance.md, issue 20, 2026-12-07):
    # build the hour once (about 10 min), then drain a copy of it three times, one after another
    python3 benches/wan.py --build-backlog --bin /tmp/kp-595da2b-ts --sink-bin /tmp/rw_sink \
        --pods 70 --rtt 0.6 --mbit 20 --proxy-port 19731 --polls 3600 --out /tmp/wd-hour
    python3 benches/wan.py --from-backlog /tmp/wd-hour --bin /tmp/kp-595da2b --sink-bin /tmp/rw_sink \
        --pods 70 --rtt 0.6 --mbit 20 --proxy-port 19731 --outage 30 --drain-max 900 --after 30 \
        --out /tmp/wd-drain-1                                 # and -2, -3

    # a table from result.json files
    python3 benches/wan.py --summarize /tmp/wan-A /tmp/wan-B /tmp/wan-C

Reading the result: "lost" is the kubelet's timestamped samples of the whole run missing from
the sink when the agent was stopped; it includes polls still waiting in the disk buffer (the
agent logs them at shutdown) and stats periods the agent never fetched
(coverage.periods_never_fetched).  coverage.outage_completeness is the backlog window alone.
The drain ends when the buffer gauge is back to a few polls, or at --drain-max.  The
receiver (rw_sink.py, Python) decodes a few hundred KB of compressed protobuf per CPU second;
drain_proxy splits the drain into sending, waiting for answers (round trip + receiver) and
the agent's own time between requests.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import socket
import statistics
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
sys.path.insert(0, BENCH)
import peers  # noqa: E402  (the shared harness: Proc, Sampler, coverage, backlog_stats, free_port)

SIX = peers.TS_FAMILIES_DEFAULT


def get_json(url: str, timeout: float = 30.0):
    return json.loads(peers.http_get(url, timeout=timeout))


# --------------------------------------------------------------------------- the link

class Bucket:
    """Paces bytes at `rate` bytes/s: each chunk is scheduled after the previous one (virtual
    finishing time), with `burst` bytes of slack."""

    def __init__(self, rate: float, burst: int = 16384):
        self.rate = rate
        self.burst = burst
        self.t = 0.0
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.t = max(self.t, now - self.burst / self.rate) + n / self.rate
            due = self.t - self.burst / self.rate
        d = due - time.monotonic()
        if d > 0:
            time.sleep(d)


class Proxy:
    """TCP proxy 127.0.0.1:listen -> 127.0.0.1:target, `mbit` Mbit/s each way.  Logs, per
    request/response exchange on a connection: first and last byte up, bytes up, first byte
    down (so link time and server time can be told apart)."""

    CHUNK = 16384

    def __init__(self, target: int, mbit: float, log_path: str, deadline: float, port: int = 0):
        self.target = target
        self.up = Bucket(mbit * 1e6 / 8)
        self.down = Bucket(mbit * 1e6 / 8)
        self.log = open(log_path, "w")
        self.log_lock = threading.Lock()
        self.deadline = deadline
        self.stop = threading.Event()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(64)
        self.ls.settimeout(0.5)
        self.port = self.ls.getsockname()[1]
        self.bytes_up = 0
        self.bytes_down = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set() and time.time() < self.deadline:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()
        self.ls.close()

    def _conn(self, c: socket.socket):
        try:
            s = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        except OSError:
            c.close()
            return
        s.settimeout(None)
        # small kernel buffers so that the pacing here, not loopback buffering, sets the rate
        for sock in (c, s):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st = {"up_first": None, "up_last": None, "up_bytes": 0}
        lock = threading.Lock()

        def pump(src, dst, bucket, upward):
            try:
                while not self.stop.is_set():
                    b = src.recv(self.CHUNK)
                    if not b:
                        break
                    bucket.take(len(b))
                    dst.sendall(b)
                    now = time.time()
                    with lock:
                        if upward:
                            self.bytes_up += len(b)
                            if st["up_first"] is None:
                                st["up_first"] = now
                            st["up_last"] = now
                            st["up_bytes"] += len(b)
                        else:
                            self.bytes_down += len(b)
                            if st["up_bytes"]:
                                row = {"up_first": round(st["up_first"], 3), "up_last": round(st["up_last"], 3),
                                       "up_bytes": st["up_bytes"], "down_first": round(now, 3)}
                                st.update(up_first=None, up_last=None, up_bytes=0)
                                with self.log_lock:
                                    self.log.write(json.dumps(row) + "\n")
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t1 = threading.Thread(target=pump, args=(c, s, self.up, True), daemon=True)
        t2 = threading.Thread(target=pump, args=(s, c, self.down, False), daemon=True)
        t1.start()
        t2.start()
        t1.join()
        t2.join()
        c.close()
        s.close()

    def close(self):
        self.stop.set()
        try:
            self.ls.close()
        except OSError:
            pass
        with self.log_lock:
            self.log.flush()
            self.log.close()


# --------------------------------------------------------------------------- agent probes

def buffer_gauge(metrics_port: int) -> float | None:
    try:
        txt = peers.http_get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=3).decode()
    except Exception:  # noqa: BLE001
        return None
    tot = None
    for line in txt.splitlines():
        if line.startswith("kubelet_push_buffer_bytes"):
            try:
                tot = (tot or 0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return tot


def dir_bytes(path: str) -> int:
    n = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                n += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return n


# --------------------------------------------------------------------------- the receiver, the backlog

def start_sink(a, sport: int, cport: int, maxrt: str, out_name: str = "sink.json") -> peers.Proc:
    """The receiver: --sink-bin (benches/rw_sink.rs, the same HTTP interface) or rw_sink.py."""
    rest = ["--port", str(sport), "--control-port", str(cport), "--response-delay", str(a.rtt),
            "--out", os.path.join(a.out, out_name), "--max-runtime", maxrt]
    argv = [a.sink_bin] + rest if a.sink_bin else [sys.executable, os.path.join(BENCH, "rw_sink.py")] + rest
    sink = peers.Proc("rw_sink", argv, os.path.join(a.out, "rw_sink.log"))
    peers.wait_http(f"http://127.0.0.1:{cport}/stats", 30, sink.p)
    return sink


def manifest(path: str) -> dict:
    """Every file under path: size and sha256."""
    out = {}
    for root, _, files in os.walk(path):
        for f in sorted(files):
            full = os.path.join(root, f)
            h = hashlib.sha256()
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[os.path.relpath(full, path)] = [os.path.getsize(full), h.hexdigest()]
    return out


def build_backlog(a) -> dict:
    """--build-backlog: the agent (--bin, a build that takes a sub-second --interval, i.e. with the
    test-support feature) buffers --polls polls on disk while the receiver answers 503, polling
    benches/hour_kubelet.py every --build-interval; that kubelet's clock moves one stats period
    per poll, so the buffer holds --polls consecutive periods, as after that many seconds of an
    outage at 1 s polls.  The agent is stopped (SIGTERM) once the last poll was answered; the
    buffer directory, its manifest and what the kubelet served go to --out for --from-backlog."""
    os.makedirs(a.out, exist_ok=True)
    kport, sport, cport, mport = (peers.free_port() for _ in range(4))
    period = a.stats_period
    v_first = float(int(time.time()) - int(a.polls * period) - 60)
    procs: list[peers.Proc] = []
    proxy = None
    res: dict = {"args": vars(a)}
    t_start = time.time()
    try:
        kub = peers.Proc("hour_kubelet", [sys.executable, os.path.join(HERE, "hour_kubelet.py"),
                                          "--start-at", str(v_first), "--max-summaries", str(a.polls),
                                          "--stats-period", str(period), "--port", str(kport), "--pods", str(a.pods),
                                          "--containers-per-pod", str(a.containers_per_pod), "--seed", str(a.seed),
                                          "--max-runtime", "1000000"], os.path.join(a.out, "hour_kubelet.log"))
        procs.append(kub)
        peers.wait_http(f"http://127.0.0.1:{kport}/healthz", 30, kub.p)
        sink = start_sink(a, sport, cport, str(int(a.polls * 2 + 900)))
        procs.append(sink)
        proxy = Proxy(sport, a.mbit, os.path.join(a.out, "proxy.jsonl"), time.time() + a.polls * 2 + 900,
                      a.proxy_port)
        peers.http_get(f"http://127.0.0.1:{cport}/control/down?mode=503")
        bufdir = os.path.join(a.out, "buffer")
        os.makedirs(bufdir, exist_ok=True)
        argv = [a.bin, "--kubelet-url", f"http://127.0.0.1:{kport}",
                "--remote-url", f"http://127.0.0.1:{proxy.port}/api/v1/write",
                "--interval", a.build_interval, "--buffer-dir", bufdir, "--buffer-max-size", a.buffer_max_size,
                "--listen-address", f"127.0.0.1:{mport}"] + shlex.split(a.agent_args)
        res["agent_command"] = " ".join(shlex.quote(x) for x in argv)
        env = dict(os.environ, KUBELET_PUSH_TEST_SHORT_INTERVALS="1")
        agent = peers.Proc("agent", argv, os.path.join(a.out, "agent.log"), env=env)
        procs.append(agent)
        deadline = time.time() + a.polls * 2 + 600
        n = 0
        while time.time() < deadline:
            if not agent.alive():
                raise RuntimeError(f"agent exited early; see {a.out}/agent.log")
            n = int(peers.http_get(f"http://127.0.0.1:{kport}/debug/summaries").decode())
            if n >= a.polls:
                break
            time.sleep(0.02)
        if n < a.polls:
            raise RuntimeError(f"only {n} of {a.polls} polls in time")
        # the last poll answered: let the agent buffer it, then stop it (the next poll is held)
        time.sleep(0.5)
        res["gauge_at_stop"] = buffer_gauge(mport)
        res["stop"] = agent.stop(60)
        res["build_seconds"] = round(time.time() - t_start, 1)
        prod = get_json(f"http://127.0.0.1:{kport}/debug/produced", timeout=60)
        stats = get_json(f"http://127.0.0.1:{cport}/stats", timeout=60)
        res["sink_accepted"] = stats["requests_accepted"]
        res["kubelet_summaries"] = int(peers.http_get(f"http://127.0.0.1:{kport}/debug/summaries").decode())
        meta = {"polls": a.polls, "v_first": v_first, "v_last": v_first + (a.polls - 1) * period,
                "proxy_port": proxy.port, "produced": prod, "manifest": manifest(bufdir),
                "buffer_dir_bytes": dir_bytes(bufdir), "build_seconds": res["build_seconds"],
                "agent_command": res["agent_command"], "built_at": t_start}
        with open(os.path.join(a.out, "meta.json"), "w") as f:
            json.dump(meta, f)
        res.update({k: meta[k] for k in ("polls", "v_first", "v_last", "buffer_dir_bytes", "proxy_port")})
        res["periods_served"] = len(prod["periods_served"])
        res["periods_contiguous"] = prod["periods_served"] == [v_first + i * period for i in range(a.polls)]
        res["files"] = len(meta["manifest"])
        return res
    finally:
        for p in reversed(procs):
            if p.alive():
                p.stop(30)
        if proxy is not None and not proxy.stop.is_set():
            proxy.close()


# --------------------------------------------------------------------------- the scenario

def run(a) -> dict:
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()
    hard_end = t_start + a.warmup + a.outage + a.drain_max + a.after + 600
    procs: list[peers.Proc] = []
    proxy = None
    res: dict = {"args": vars(a)}
    tl = open(os.path.join(a.out, "timeline.jsonl"), "w")
    try:
        kport, sport, cport, mport = (peers.free_port() for _ in range(4))
        maxrt = str(int(hard_end - t_start + 300))
        kub = peers.Proc("fake_kubelet", [sys.executable, os.path.join(BENCH, "fake_kubelet.py"), "--port", str(kport),
                                          "--pods", str(a.pods), "--containers-per-pod", str(a.containers_per_pod),
                                          "--stats-period", str(a.stats_period), "--seed", str(a.seed),
                                          "--max-runtime", maxrt], os.path.join(a.out, "fake_kubelet.log"))
        procs.append(kub)
        peers.wait_http(f"http://127.0.0.1:{kport}/healthz", 30, kub.p)
        sink = start_sink(a, sport, cport, maxrt)
        procs.append(sink)
        proxy = Proxy(sport, a.mbit, os.path.join(a.out, "proxy.jsonl"), hard_end, a.proxy_port)
        bufdir = os.path.join(a.out, "buffer")
        meta = None
        if a.from_backlog:
            # the drain of a backlog built once (--build-backlog): an identical copy for each run
            with open(os.path.join(a.from_backlog, "meta.json")) as f:
                meta = json.load(f)
            if meta["proxy_port"] != proxy.port:
                raise RuntimeError(f"--proxy-port must be {meta['proxy_port']}, the port the backlog was built "
                                   "for (the agent names its buffer directory after the remote URL's host:port)")
            shutil.copytree(os.path.join(a.from_backlog, "buffer"), bufdir)
            res["backlog_copy_identical"] = manifest(bufdir) == meta["manifest"]
            if not res["backlog_copy_identical"]:
                raise RuntimeError(f"the copy of {a.from_backlog}/buffer differs from its manifest")
            # down before the agent starts: it comes up with its hour on disk and the receiver away
            peers.http_get(f"http://127.0.0.1:{cport}/control/down?mode=503")
            down_at = time.time()
        os.makedirs(bufdir, exist_ok=True)
        argv = [a.bin, "--kubelet-url", f"http://127.0.0.1:{kport}",
                "--remote-url", f"http://127.0.0.1:{proxy.port}/api/v1/write",
                "--interval", a.interval, "--buffer-dir", bufdir, "--buffer-max-size", a.buffer_max_size,
                "--listen-address", f"127.0.0.1:{mport}"] + shlex.split(a.agent_args)
        res["agent_command"] = " ".join(shlex.quote(x) for x in argv)
        res["load_before"] = os.getloadavg()
        t0 = time.time()
        agent = peers.Proc("agent", argv, os.path.join(a.out, "agent.log"))
        procs.append(agent)
        sampler = peers.Sampler(agent.pid)
        phase = "warmup"
        marks = {"t0": t0}
        gauge = None
        nxt = t0
        next_probe = t0
        up_at = None
        settled = 0
        loads: list[float] = []

        def tick():
            nonlocal nxt, next_probe, gauge
            now = time.time()
            if now >= nxt:
                s = sampler.sample()
                if s is None and not agent.alive():
                    raise RuntimeError(f"agent exited early (code {agent.p.returncode}); see {a.out}/agent.log")
                row = {"t": round(now - t0, 2), "phase": phase}
                if s:
                    row.update(rss_kb=s["rss_kb"], cpu_s=s["cpu_s"])
                if now >= next_probe:
                    gauge = buffer_gauge(mport)
                    loads.append(os.getloadavg()[0])
                    row.update(buffer_gauge=gauge, buffer_dir=dir_bytes(bufdir),
                               up_bytes=proxy.bytes_up, load1=os.getloadavg()[0])
                    next_probe += 5
                tl.write(json.dumps(row) + "\n")
                nxt += a.sample_every
            time.sleep(max(0.0, min(nxt, next_probe) - time.time()))

        if a.from_backlog:
            marks["down"] = down_at
        else:
            while time.time() < t0 + a.warmup:
                tick()
            peers.http_get(f"http://127.0.0.1:{cport}/control/down?mode=503")
            marks["down"] = time.time()
        phase = "outage"
        while time.time() < marks["down"] + a.outage:
            tick()
        # the backlog at the return
        res["backlog_gauge_bytes"] = buffer_gauge(mport)
        res["backlog_dir_bytes"] = dir_bytes(bufdir)
        peers.http_get(f"http://127.0.0.1:{cport}/control/up")
        up_at = time.time()
        marks["up"] = up_at
        phase = "drain"
        polls_buffered = a.outage / peers.parse_duration(a.interval) + (meta["polls"] if meta else 0)
        per_poll = res["backlog_dir_bytes"] / max(1.0, polls_buffered)
        last_check = 0.0
        while time.time() < up_at + a.drain_max:
            tick()
            if time.time() - last_check >= 2:
                last_check = time.time()
                rows = get_json(f"http://127.0.0.1:{cport}/requests")["requests"]
                cut = (up_at - a.stats_period) * 1000
                fresh = [r for r in rows if r[0] >= up_at and r[1] is not None and r[1] >= cut]
                g = buffer_gauge(mport)
                small = g is not None and g <= 10 * per_poll
                if fresh and small:
                    settled += 1
                    if settled >= 3:
                        break
                else:
                    settled = 0
        marks["drained_seen"] = time.time()
        phase = "after"
        while time.time() < marks["drained_seen"] + a.after:
            tick()
        last = sampler.sample() or sampler.samples[-1]
        marks["stop"] = time.time()
        stop_info = agent.stop(30, list(sampler.last_tree))
        time.sleep(1)
        res["stop"] = stop_info
        res["marks_s"] = {k: round(v - t0, 2) for k, v in marks.items()}

        # ---- what the sink got
        stats = get_json(f"http://127.0.0.1:{cport}/stats", timeout=120)
        reqlog = get_json(f"http://127.0.0.1:{cport}/requests", timeout=120)["requests"]
        with open(os.path.join(a.out, "requests.json"), "w") as f:
            json.dump(reqlog, f)
        o = stats["outages"][0]
        up = o["up_at"]
        bl = peers.backlog_stats(reqlog, (o["down_at"], up), a.stats_period)
        back = [r for r in reqlog if r[0] >= up and r[1] is not None and r[1] < (up - a.stats_period) * 1000]
        backlog_bytes = res["backlog_dir_bytes"]
        bw = a.mbit * 1e6 / 8
        bound = 2 * (backlog_bytes / bw + 10 * a.rtt)
        # freshness during the drain: for each accepted request during the drain, arrival - newest sample
        done_at = up + bl["backlog_done_after_up_s"]
        during = [r for r in reqlog if up <= r[0] <= done_at and r[2] is not None]
        newest = [r for r in during if r[2] >= up * 1000]
        prod = get_json(f"http://127.0.0.1:{kport}/debug/produced?since={t0}", timeout=120)
        drain_periods = [p for p in prod["periods_served"] if up <= p <= done_at]
        series = []
        for name in SIX:
            series += get_json(f"http://127.0.0.1:{cport}/series?names={name}", timeout=300)["series"]
        # completeness over the whole run up to the last poll that had time to land
        run_end = marks["stop"] - 5
        cov = peers.coverage(prod, series, t0, run_end, (o["down_at"], up), None, peers.parse_duration(a.interval))
        if meta:
            # the built hour, against what its kubelet served (every period of it, once each)
            bprod = meta["produced"]
            res["same_series_as_backlog"] = sorted(bprod["timestamped_series"]) == sorted(prod["timestamped_series"])
            cb = peers.coverage(bprod, series, meta["v_first"], meta["v_last"], None, None, 0.0)
            res["coverage_backlog_hour"] = {k: cb[k] for k in ("expected_series", "expected_periods",
                                                               "periods_never_fetched", "expected_samples",
                                                               "received_expected_samples", "missing_samples",
                                                               "completeness")}
            res["coverage_backlog_hour"]["gap_periods"] = cb["periods_with_gaps_s"][:50]
        del series
        rss = lambda lo, hi: [s["rss_kb"] for s in sampler.samples if lo <= s["t"] < hi]  # noqa: E731
        cpu_at = lambda t: min(sampler.samples, key=lambda s: abs(s["t"] - t))["cpu_s"]  # noqa: E731
        pk = lambda xs: round(max(xs) / 1024, 2) if xs else None  # noqa: E731
        md = lambda xs: round(statistics.median(xs) / 1024, 2) if xs else None  # noqa: E731
        proxy_rows = []
        proxy.close()
        with open(os.path.join(a.out, "proxy.jsonl")) as f:
            for line in f:
                proxy_rows.append(json.loads(line))
        drain_px = [p for p in proxy_rows if up <= p["up_first"] <= done_at + 1]
        drain_rows = [r for r in reqlog if up <= r[0] <= done_at + 0.001]
        if drain_rows and len(drain_rows[0]) >= 7:  # the Rust sink's own work per request
            res["sink_work_ms"] = {k: {"median": round(statistics.median(r[i] for r in drain_rows), 1),
                                       "max": round(max(r[i] for r in drain_rows), 1)}
                                   for k, i in (("decode", 5), ("store", 6))}
        res.update({
            "pods": a.pods, "containers_per_pod": a.containers_per_pod, "interval": a.interval,
            "stats_period_s": a.stats_period, "rtt_s": a.rtt, "mbit": a.mbit, "outage_s": a.outage,
            "backlog_bytes": backlog_bytes,
            "backlog_mib": round(backlog_bytes / 2**20, 1),
            "bytes_per_poll_on_disk": round(per_poll),
            "first_accept_after_up_s": o.get("first_accept_after_up_s"),
            "backlog_done_after_up_s": bl["backlog_done_after_up_s"],
            "bound_s": round(bound, 1),
            "bound_met": bl["backlog_done_after_up_s"] <= bound,
            "ideal_s": round(backlog_bytes / bw + 10 * a.rtt, 1),
            "backlog_requests": bl["backlog_requests"],
            "backlog_samples": bl["backlog_samples"],
            "backlog_wire_body_bytes": sum(r[4] for r in back),
            "max_request_samples_after_up": bl["max_request_samples_after_up"],
            "drain_requests_all": len(during),
            "drain_requests_with_new_polls": len(newest),
            "drain_kubelet_periods_served": len(drain_periods),
            "drain_seconds_polled_fraction": round(len(drain_periods) / max(1.0, done_at - up), 3),
            "drain_proxy": {
                "exchanges": len(drain_px),
                "upload_s_sum": round(sum(p["up_last"] - p["up_first"] for p in drain_px), 1),
                "server_s_sum": round(sum(p["down_first"] - p["up_last"] for p in drain_px), 1),
                "server_s_median": round(statistics.median(p["down_first"] - p["up_last"] for p in drain_px), 3)
                if drain_px else None,
                "idle_s_between": round(sum(max(0.0, drain_px[i + 1]["up_first"] - drain_px[i]["down_first"])
                                            for i in range(len(drain_px) - 1)), 1),
                "up_bytes": sum(p["up_bytes"] for p in drain_px),
            },
            "peak_rss_mb": {"warmup": pk(rss(t0, marks["down"])), "outage": pk(rss(marks["down"], up)),
                            "drain": pk(rss(up, done_at + 1)), "after": pk(rss(done_at + 1, marks["stop"] + 1))},
            "median_rss_mb": {"outage": md(rss(marks["down"], up)), "drain": md(rss(up, done_at + 1))},
            "vmhwm_mb": round(sampler.max_hwm_kb / 1024, 2),
            "cpu_seconds": {"total": round(last["cpu_s"], 2),
                            "outage": round(cpu_at(up) - cpu_at(marks["down"]), 2),
                            "drain": round(cpu_at(done_at + 1) - cpu_at(up), 2)},
            "sink": {k: stats[k] for k in ("requests_total", "requests_accepted", "requests_rejected", "samples",
                                           "unique_samples", "duplicates", "out_of_order", "body_bytes",
                                           "uncompressed_bytes", "unique_series")},
            "duplicates": stats["duplicates"],
            "out_of_order": stats["out_of_order"],
            "lost": cov["missing_samples"] + (res["coverage_backlog_hour"]["missing_samples"] if meta else 0),
            "coverage": {k: cov[k] for k in ("expected_series", "expected_periods", "periods_never_fetched",
                                             "expected_samples", "received_expected_samples", "missing_samples",
                                             "completeness", "outage_completeness")},
            "gap_periods_s": cov["periods_with_gaps_s"][:50],
            "load1": {"max": max(loads) if loads else None,
                      "median": statistics.median(loads) if loads else None},
            "load_after": os.getloadavg(),
        })
        if meta:
            res["backlog_built"] = {k: meta[k] for k in ("polls", "v_first", "v_last", "buffer_dir_bytes",
                                                         "build_seconds", "agent_command", "built_at")}
        return res
    finally:
        tl.close()
        for p in reversed(procs):
            if p.alive():
                p.stop(30)
        if proxy is not None and not proxy.stop.is_set():
            proxy.close()


def summarize(dirs: list[str]) -> int:
    """One row per run directory's result.json, then the median of each column."""
    def lost_fetched(r):
        """Lost of what the agent fetched: periods it never fetched (two polls in one stats
        period) are missing whole and are not a delivery loss."""
        c = r["coverage"]
        return r["lost"] - c["periods_never_fetched"] * c["expected_series"]

    def gap(r):
        """The agent's time between an answer and its next request, per drain request."""
        p = r["drain_proxy"]
        return round(p["idle_s_between"] / max(1, p["exchanges"] - 1), 3)

    cols = [("backlog MiB", lambda r: r["backlog_mib"]),
            ("first write after return s", lambda r: r["first_accept_after_up_s"]),
            ("backlog stored after s", lambda r: r["backlog_done_after_up_s"]),
            ("bound s", lambda r: r["bound_s"]),
            ("sink time beyond RTT s", lambda r: round(r["drain_proxy"]["server_s_sum"]
                                                       - r["rtt_s"] * r["drain_proxy"]["exchanges"], 1)),
            ("requests", lambda r: r["backlog_requests"]),
            ("upload s", lambda r: r["drain_proxy"]["upload_s_sum"]),
            ("answer wait s", lambda r: r["drain_proxy"]["server_s_sum"]),
            ("agent gap s", lambda r: r["drain_proxy"]["idle_s_between"]),
            ("agent gap s per request", gap),
            ("lost", lambda r: r["lost"]), ("lost of fetched", lost_fetched),
            ("periods never fetched", lambda r: r["coverage"]["periods_never_fetched"]),
            ("dups", lambda r: r["duplicates"]),
            ("out of order", lambda r: r["out_of_order"]),
            ("peak RSS MB outage", lambda r: r["peak_rss_mb"]["outage"]),
            ("peak RSS MB drain", lambda r: r["peak_rss_mb"]["drain"]),
            ("CPU s drain", lambda r: r["cpu_seconds"]["drain"]),
            ("CPU s total", lambda r: r["cpu_seconds"]["total"]),
            ("load1 median", lambda r: round(r["load1"]["median"], 2))]
    rows = []
    for d in dirs:
        with open(os.path.join(d, "result.json")) as f:
            rows.append((os.path.basename(d.rstrip("/")), json.load(f)))
    print("| run | " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for name, r in rows:
        print(f"| {name} | " + " | ".join(str(fn(r)) for _, fn in cols) + " |")
    print("| median | " + " | ".join(str(statistics.median(fn(r) for _, r in rows)) for _, fn in cols) + " |")
    return 0


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        return summarize(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the agent binary (kubelet-push)")
    ap.add_argument("--out", required=True, help="run directory (buffer, logs, result.json)")
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--containers-per-pod", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--stats-period", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--outage", type=float, default=3600)
    ap.add_argument("--rtt", type=float, default=0.6, help="sink response delay per write, s")
    ap.add_argument("--mbit", type=float, default=10, help="link rate each way, Mbit/s (0 = no cap)")
    ap.add_argument("--drain-max", type=float, default=1500)
    ap.add_argument("--after", type=float, default=30)
    ap.add_argument("--buffer-max-size", default="2GiB")
    ap.add_argument("--agent-args", default="")
    ap.add_argument("--sample-every", type=float, default=1.0)
    ap.add_argument("--sink-bin", default="",
                    help="the receiver: benches/rw_sink.rs's executable (default: ../shared/bench/rw_sink.py)")
    ap.add_argument("--proxy-port", type=int, default=0, help="the proxy's port (default: any free one)")
    ap.add_argument("--build-backlog", action="store_true",
                    help="only build a backlog of --polls polls in --out (see build_backlog)")
    ap.add_argument("--polls", type=int, default=3600)
    ap.add_argument("--build-interval", default="100ms")
    ap.add_argument("--from-backlog", default="",
                    help="a --build-backlog directory: drain a copy of its buffer (--outage s more of polls "
                         "are buffered on top first; --warmup is not used)")
    a = ap.parse_args(argv)
    res = build_backlog(a) if a.build_backlog else run(a)
    txt = json.dumps(res, indent=1)
    with open(os.path.join(a.out, "result.json"), "w") as f:
        f.write(txt + "\n")
    print(txt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
