#!/usr/bin/env python3
"""scrape.py: scraping a node_exporter-shaped exposition, side by side (issue 21, part 6).

What it measures
----------------
Three agents scrape the same 10 000-series exposition every 1 s and push it by Remote Write to
the same receiver, one agent at a time, each for ``--duration`` s (60), ``--repeat`` rounds (3),
the order alternating each round (vmagent, prometheus, ours / ours, prometheus, vmagent / ...):

    exposition server (this process) <--GET /metrics every 1 s-- agent --POST--> sink (subprocess)

* ``vmagent``     ``-promscrape.config`` with one static target, ``scrape_interval: 1s``,
                  ``-remoteWrite.url`` to the sink, defaults otherwise (``peers.py``'s way).
* ``prometheus``  Prometheus in agent mode (``--enable-feature=agent`` on 2.x, ``--agent`` on 3.x,
                  chosen from ``prometheus --help``), the same scrape job, ``remote_write`` to the sink.
* ``ours``        ``--ours-cmd``, a template; default
                  ``{bin} --kubelet-summary=false --scrape node={target_url} --remote-url {remote_url} --interval {interval}``.
                  Placeholders: ``{bin}`` (``--bin``, default ``target/release/kubelet-push``),
                  ``{target_url}`` (``http://127.0.0.1:P/metrics``), ``{remote_url}``, ``{interval}``
                  (``1s``), ``{interval_seconds}``, ``{datadir}`` (an empty directory), ``{tmpdir}``,
                  ``{listen}`` (a free ``127.0.0.1:P``). A plain command line runs without a shell, so
                  the agent itself is the measured process (``peers.direct_argv``).
* ``standin``     this script's ``standin`` subcommand, a naive Python agent that takes our flags;
                  it exists to exercise the harness before our scrape loop lands. Not a reference.

The peers scrape with ``static_configs`` labels ``node: bench-node`` (we add ``node`` to every
sample too), so all three send job, instance and node; the exposition's own ``node`` label (NUMA
node numbers, as node_exporter exposes them) becomes ``exported_node``, as Prometheus does.

The exposition
--------------
Generated from the real node_exporter output in
``tests/fixtures/expositions/node_exporter__e2e-output.txt`` (3 027 series, 1 228 families;
node_exporter's own e2e fixture), scaled so that the family mix and label shapes stay
node_exporter's, with HELP and TYPE lines, families sorted by name and series sorted by label
values, as client_golang writes them. Values are formatted as Go's
``strconv.FormatFloat(v, 'g', -1, 64)`` (``5.35650714e+08``):

* CPUs 8 -> 32: every series with ``cpu="0"`` (cpu, interrupts, softirqs, softnet, schedstat,
  lnstat families) is cloned for ``cpu="8"`` .. ``cpu="31"`` (``node_cpu_isolated`` excepted);
* disks: ``node_disk_*`` of ``nvme0n1`` cloned for ``nvme1n1`` .. ``nvme8n1``;
* network interfaces: ``node_network_*`` of ``eth0`` cloned for 110 ``veth<8 hex>`` interfaces (one per
  pod at the kubelet's ``maxPods``), each with its own MAC, and the four families the fixture
  leaves empty (``node_network_{receive,transmit}_{bytes,packets}_total``) filled for every interface;
* filesystems (the fixture has none): node_exporter 1.5's seven ``node_filesystem_*`` families
  (labels ``device``, ``fstype``, ``mountpoint``) for ``/``, ``/boot/efi``, ``/run``,
  ``/var/lib/kubelet`` and one tmpfs ``kube-api-access`` projected volume per pod, as
  node_exporter reports them on a Kubernetes node;
* systemd units (collector ``systemd``; the fixture has none): ``node_systemd_unit_state``
  (``name``, ``state``, ``type``; five states per unit), ``node_systemd_units``,
  ``node_systemd_system_running``, ``node_systemd_socket_*`` per socket and
  ``node_systemd_timer_last_trigger_seconds`` per timer, as many units as make the total exactly
  ``--series`` (10 000);
* the ``go_*``, ``process_*``, ``node_time_seconds``, ``node_scrape_collector_duration_seconds`` and
  ``node_exporter_build_info`` families the fixture lists without samples (its e2e test strips
  what varies) get their samples back, with plausible values of our own (build labels: Debian's
  node_exporter 1.5.0).

What changes between scrapes, exactly: the value of every series of every ``counter`` family
(``# TYPE ... counter``; 4 700 series) advances once per wall-clock second:
``value(k) = base + step * k``, where ``k`` is the number of whole seconds since the server
started, ``base`` the fixture's value (or the clone's), and ``step`` ``1 + crc32(series) % 1000``,
divided by 100 when the base is fractional or the name has ``seconds``. Gauges, untyped series,
summaries, HELP and TYPE lines never change; so two scrapes in the same second get identical
bytes. The body is served as ``Content-Type: text/plain; version=0.0.4; charset=utf-8``, gzip'd
when the request's ``Accept-Encoding`` allows it (as node_exporter does; ``--gzip never`` turns it
off). Each second's body is rendered ahead by a background thread, so a scrape never waits for it.
``k = 0`` is committed as ``tests/fixtures/expositions/node_exporter_10k.prom`` (for the Rust
parser bench); ``python3 benches/scrape.py fixture`` rewrites it, ``check`` tests it is current.

The sink
--------
``rw_sink.py`` keeps every timestamp of every series and is too slow for 10 000 samples/s, so
this script has its own (``scrape.py sink``, a subprocess so its CPU can be read apart): snappy
(cramjam) + a protobuf walk that counts, per request, bytes, series and samples, and per sample
timestamp a one-byte-per-series table (what was received, and what twice). Series are identified by
the raw bytes of their labels, decoded once; ``job``/``instance`` are dropped and ``exported_X``
becomes ``X`` again (the target's ``X`` dropped), which names the exposition's series. Remote
Write 2.0 is decoded too. Its CPU share (``sink_cpu_pct``) is in every result: it must stay far
below 100 % of a core for the receiver not to be the bottleneck.

Figures per run (``<agent>-<round>.json``) and their medians (``result.json``, ``table.md``):

* ``cpu_seconds``: utime+stime of the agent's process tree from ``/proc`` at the last 1 s sample
  before SIGTERM (start-up included); ``steady_cpu_pct`` after ``--warmup`` s; ``cpu_ms_per_scrape``
  = ``cpu_seconds`` / scrapes answered (the agents do not start scraping equally soon: Prometheus
  about 5 s after its start here, vmagent and ours at once);
* ``peak_rss_mb``: the largest ``VmHWM`` (kernel peak RSS) seen; ``sampled_peak_rss_mb``,
  ``median_rss_mb``: ``VmRSS`` sampled every second (summed over the tree);
* ``body_bytes``: compressed request bodies accepted by the sink; ``bytes_on_wire`` adds the request
  line and headers; ``requests``; ``body_bytes_per_sample``;
* ``samples_received``: every sample accepted (stale markers apart: ``stale_markers``), of which
  ``exposition_samples_received`` are the exposition's (the rest: ``up``, ``scrape_*``);
* ``scrapes_answered``: ``GET /metrics`` the server answered while the agent ran;
  ``scrapes_in_window`` those in the first ``--duration`` s; ``expected_samples`` = series x
  ``scrapes_in_window``;
* ``lost``: for each scrape in the window, the exposition series missing at the sink with that
  scrape's timestamp (matched to the scrape: the sample timestamp nearest the request's arrival,
  within half an interval); a scrape with no timestamp at all loses every series;
* ``duplicates``: a (series, timestamp) received again.

The agent runs ``--duration`` + ``--tail`` (3 s, for what is in flight) and is stopped with SIGTERM
(SIGKILL after ``--stop-timeout``). Targets checked under the table (issue 21): our CPU <= 0.5x
vmagent's, peak RSS <= vmagent's, body bytes <= vmagent's, nothing lost in any run (medians).
Runs reported in docs/performance.md: ``benches/results/issue21-scrape/`` (``identity/``: the same
with ``--gzip never``).

Setup, run
----------
Python 3.11 standard library + cramjam (``pip install cramjam``); vmagent and prometheus from
Debian (``apt-get install victoria-metrics prometheus``: vmagent 1.79, Prometheus 2.42); the shared
harness in ``../shared/bench`` (``peers.py``: process control and /proc sampling). From the root:

    cargo build --release        # with nice -n 19 and your own CARGO_TARGET_DIR on shared machines
    python3 benches/scrape.py run --out /tmp/scrape-bench                     # all three, 60 s x 3
    python3 benches/scrape.py run --agents vmagent,prometheus --out /tmp/sb   # the peers only
    python3 benches/scrape.py run --agents vmagent,standin --duration 20 --repeat 1 --out /tmp/sb
    python3 benches/scrape.py run --bin /tmp/kp-abc1234 --out /tmp/sb         # a copied binary
    python3 benches/scrape.py table /tmp/scrape-bench      # the table again from saved runs
    python3 benches/scrape.py fixture                      # rewrite node_exporter_10k.prom
    python3 benches/scrape.py check                        # self-test: exposition, sink (a few s)
    python3 benches/scrape.py serve --port 9100            # the exposition alone, until Ctrl-C

Everything listens on 127.0.0.1; every process started here is stopped by PID; every loop is
bounded in time.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import cramjam
except ImportError:  # reported where it is needed
    cramjam = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
sys.path.insert(0, BENCH)
import peers  # noqa: E402  (the shared harness: Proc, Sampler, free_port, http_get, wait_http, direct_argv)

SOURCE = os.path.join(ROOT, "tests", "fixtures", "expositions", "node_exporter__e2e-output.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "expositions", "node_exporter_10k.prom")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STALE_NAN = (0x7FF0000000000002).to_bytes(8, "little")
DEFAULT_OURS = ("{bin} --kubelet-summary=false --scrape node={target_url} --remote-url {remote_url} "
                "--interval {interval}")
PEERS = ("vmagent", "prometheus")
TARGET_LABELS = ("job", "instance")  # added by every agent; "node" is handled in Keyer


# =========================================================================== the exposition

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,)?')


def unescape(v: str) -> str:
    if "\\" not in v:
        return v
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_sample(line: str):
    """'name{a="b",...} value' -> (name, [(label, value)], value text). No timestamps in the source."""
    m = NAME_RE.match(line)
    if not m:
        raise ValueError(f"not a sample line: {line!r}")
    name, i = m.group(0), m.end()
    labels = []
    if i < len(line) and line[i] == "{":
        i += 1
        while line[i] != "}":
            lm = LABEL_RE.match(line, i)
            if not lm:
                raise ValueError(f"bad labels in {line!r}")
            labels.append((lm.group(1), unescape(lm.group(2))))
            i = lm.end()
        i += 1
    rest = line[i:].split()
    if len(rest) != 1:
        raise ValueError(f"expected one value (no timestamp) in {line!r}")
    return name, labels, rest[0]


def go_float(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'g', -1, 64), which client_golang's text format uses."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign, digits, exp = Decimal(repr(v)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    nd, dp = len(ds), len(ds) + exp
    x = dp - 1
    s = "-" if sign else ""
    if x < -4 or x >= 6:  # shortest formatting decides %e against precision 6
        return f"{s}{ds[0]}{'.' + ds[1:] if nd > 1 else ''}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{s}0.{'0' * -dp}{ds}"
    if dp >= nd:
        return s + ds + "0" * (dp - nd)
    return f"{s}{ds[:dp]}.{ds[dp:]}"


def series_key(name: str, labels) -> str:
    """Identity of a series, as the sink rebuilds it from the wire (labels unescaped, sorted; a label
    with an empty value is no label, as in Prometheus, which drops them)."""
    return "\x00".join([name] + [f"{k}\x01{v}" for k, v in sorted(labels) if v != ""])


class Family:
    def __init__(self, name: str, help_line: str, mtype: str):
        self.name, self.help, self.type = name, help_line, mtype
        self.series: list[list] = []  # [name, labels, value text]

    def add(self, name, labels, value):
        self.series.append([name, list(labels), value])


def read_source(path: str) -> dict[str, Family]:
    fams: dict[str, Family] = {}
    cur = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                cur = fams.setdefault(name, Family(name, line, "untyped"))
                cur.help = line
            elif line.startswith("# TYPE "):
                _, _, name, mtype = line.split(" ", 3)
                cur = fams.setdefault(name, Family(name, f"# HELP {name} ", mtype))
                cur.type = mtype
            elif line.startswith("#"):
                continue
            else:
                name, labels, value = parse_sample(line)
                fam = cur if cur is not None and (name == cur.name or name.startswith(cur.name + "_")) else None
                if fam is None:
                    raise ValueError(f"sample outside its family: {line!r}")
                fam.series.append([name, labels, value])
    return fams


def h32(s: str) -> int:
    return zlib.crc32(s.encode())


def clone_dimension(fams, pick, label: str, exemplar: str, new_values, rewrite=None):
    """Copy every series of the picked families whose `label` is `exemplar` once per new value.
    `rewrite(labels, new_value)` may change other labels of the copy (a MAC address, say)."""
    for fam in fams.values():
        if not pick(fam.name):
            continue
        src = [s for s in fam.series if (label, exemplar) in s[1]]
        for nv in new_values:
            for name, labels, value in src:
                nl = [(k, nv if k == label else v) for k, v in labels]
                if rewrite:
                    nl = rewrite(nl, nv)
                fam.add(name, nl, value)


def mac(seed: str) -> str:
    x = h32(seed)
    return "0a:58:" + ":".join(f"{(x >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


FS_FAMILIES = [  # node_exporter 1.5, filesystem_common.go
    ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes."),
    ("node_filesystem_device_error", "Whether an error occurred while getting statistics for the given device."),
    ("node_filesystem_files", "Filesystem total file nodes."),
    ("node_filesystem_files_free", "Filesystem total free file nodes."),
    ("node_filesystem_free_bytes", "Filesystem free space in bytes."),
    ("node_filesystem_readonly", "Filesystem read-only status."),
    ("node_filesystem_size_bytes", "Filesystem size in bytes."),
]

# what the fixture lists without samples, with values read off a node_exporter 1.5 run
PROCESS_VALUES = {
    "go_gc_gogc_percent": "100", "go_gc_gomemlimit_bytes": "9.223372036854776e+18", "go_goroutines": "8",
    "go_memstats_alloc_bytes": "2.734824e+06", "go_memstats_alloc_bytes_total": "1.6374916792e+10",
    "go_memstats_buck_hash_sys_bytes": "1.57913e+06", "go_memstats_frees_total": "1.83456187e+08",
    "go_memstats_gc_sys_bytes": "4.27496e+06", "go_memstats_heap_alloc_bytes": "2.734824e+06",
    "go_memstats_heap_idle_bytes": "5.758976e+06", "go_memstats_heap_inuse_bytes": "4.45644e+06",
    "go_memstats_heap_objects": "20371", "go_memstats_heap_released_bytes": "4.21888e+06",
    "go_memstats_heap_sys_bytes": "1.0215424e+07", "go_memstats_last_gc_time_seconds": "1.7365152486264567e+09",
    "go_memstats_mallocs_total": "1.83476558e+08", "go_memstats_mcache_inuse_bytes": "9600",
    "go_memstats_mcache_sys_bytes": "15600", "go_memstats_mspan_inuse_bytes": "135200",
    "go_memstats_mspan_sys_bytes": "195840", "go_memstats_next_gc_bytes": "5.04264e+06",
    "go_memstats_other_sys_bytes": "1.243838e+06", "go_memstats_stack_inuse_bytes": "983040",
    "go_memstats_stack_sys_bytes": "983040", "go_memstats_sys_bytes": "1.8487832e+07",
    "go_sched_gomaxprocs_threads": "32", "go_threads": "14", "process_cpu_seconds_total": "8271.33",
    "process_max_fds": "1.048576e+06", "process_network_receive_bytes_total": "2.70315848e+08",
    "process_network_transmit_bytes_total": "1.1734891276e+10", "process_open_fds": "10",
    "process_resident_memory_bytes": "2.6247168e+07", "process_start_time_seconds": "1.73648937186e+09",
    "process_virtual_memory_bytes": "1.277976576e+09", "process_virtual_memory_max_bytes": "1.8446744073709552e+19",
    "node_time_seconds": "1.7365152517264314e+09", "node_time_zone_offset_seconds": None,
    "node_textfile_mtime_seconds": None, "node_scrape_collector_duration_seconds": None,
}

SYSTEMD_UNITS = [  # a Kubernetes node's own units; more are made from the templates below
    "containerd.service", "kubelet.service", "sshd.service", "systemd-journald.service",
    "systemd-logind.service", "systemd-networkd.service", "systemd-resolved.service",
    "systemd-timesyncd.service", "systemd-udevd.service", "dbus.service", "chronyd.service",
    "auditd.service", "cron.service", "rsyslog.service", "polkit.service", "irqbalance.service",
    "multipathd.service", "snapd.service", "unattended-upgrades.service", "networkd-dispatcher.service",
    "dbus.socket", "sshd.socket", "systemd-journald.socket", "systemd-udevd-control.socket",
    "logrotate.timer", "fstrim.timer", "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer",
    "systemd-tmpfiles-clean.timer", "multi-user.target", "network-online.target", "getty.target",
]
SERVICE_TYPES = ("simple", "notify", "oneshot", "forking", "exec")


def build_model(total: int = 10000, source: str = SOURCE) -> dict[str, Family]:
    fams = read_source(source)
    for name, value in PROCESS_VALUES.items():
        fam = fams.get(name)
        if value is not None and fam is not None and not fam.series:
            fam.add(name, [], value)
    gc = fams["go_gc_duration_seconds"]
    for q, v in (("0", "2.3e-05"), ("0.25", "4.1e-05"), ("0.5", "5.2e-05"), ("0.75", "7.4e-05"), ("1", "0.004127")):
        gc.add(gc.name, [("quantile", q)], v)
    gc.add(gc.name + "_sum", [], "1.834129873")
    gc.add(gc.name + "_count", [], "24617")
    fams["go_info"].add("go_info", [("version", "go1.19.8")], "1")
    fams["node_exporter_build_info"].add("node_exporter_build_info", [
        ("branch", "debian/sid"), ("goarch", "amd64"), ("goos", "linux"), ("goversion", "go1.19.8"),
        ("revision", "1.5.0-1+b6"), ("version", "1.5.0")], "1")
    sc = fams["node_scrape_collector_duration_seconds"]
    for name, labels, _ in fams["node_scrape_collector_success"].series:
        sc.add(sc.name, labels, go_float(1e-6 * (5 + h32(repr(labels)) % 9000)))

    # CPUs 8 -> 32
    clone_dimension(fams, lambda n: n != "node_cpu_isolated", "cpu", "0", [str(c) for c in range(8, 32)])
    # disks: 8 more NVMe namespaces
    clone_dimension(fams, lambda n: n.startswith("node_disk_"), "device", "nvme0n1",
                    [f"nvme{d}n1" for d in range(1, 9)],
                    lambda ls, nv: [(k, v.replace("nvme0n1", nv).replace("nvme0", nv[:-2])) for k, v in ls])
    # network: one veth per pod, and the four counters the fixture leaves empty
    veths = [f"veth{h32(f'pod-{p}'):08x}" for p in range(110)]

    def veth_labels(ls, nv):
        return [(k, mac(nv) if k == "address" else v) for k, v in ls]
    clone_dimension(fams, lambda n: n.startswith("node_network_"), "device", "eth0", veths, veth_labels)
    devices = sorted({v for f in fams.values() if f.name.startswith("node_network_")
                      for s in f.series for k, v in s[1] if k == "device"})
    for fname in ("node_network_receive_bytes_total", "node_network_receive_packets_total",
                  "node_network_transmit_bytes_total", "node_network_transmit_packets_total"):
        fam = fams[fname]
        for d in devices:
            base = h32(fname + d) % (10 ** (9 if "bytes" in fname else 7))
            fam.add(fname, [("device", d)], go_float(float(base)))

    # filesystems: the host's and one projected service-account volume per pod
    mounts = [("/dev/nvme0n1p1", "ext4", "/"), ("/dev/nvme0n1p15", "vfat", "/boot/efi"),
              ("tmpfs", "tmpfs", "/run"), ("/dev/nvme1n1", "xfs", "/var/lib/kubelet")]
    for p in range(110):
        uid = "%08x-%04x-4%03x-a%03x-%012x" % (h32(f"uid{p}"), h32(f"a{p}") & 0xFFFF, h32(f"b{p}") & 0xFFF,
                                                h32(f"c{p}") & 0xFFF, h32(f"d{p}") * 7919 & 0xFFFFFFFFFFFF)
        suffix = "".join("bcdfghjklmnpqrstvwxz2456789"[(h32(f"s{p}") >> (5 * i)) % 27] for i in range(5))
        mounts.append(("tmpfs", "tmpfs", f"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~projected/kube-api-access-{suffix}"))
    fs_values = {
        "ext4": (5.3315723264e+10, 1.6777216e+07, 1.6279491e+07, 6.2913921024e+10, 6.7370528768e+10),
        "vfat": (1.14334208e+08, 0, 0, 1.14334208e+08, 1.14352896e+08),
        "xfs": (4.06818709504e+11, 2.09715136e+08, 2.09710587e+08, 4.06818709504e+11, 4.29228294144e+11),
        "tmpfs": (1.3631488e+07, 4.108376e+06, 4.108367e+06, 1.3631488e+07, 1.3643776e+07),
    }
    for fname, help_text in FS_FAMILIES:
        fam = fams.setdefault(fname, Family(fname, f"# HELP {fname} {help_text}", "gauge"))
        for dev, fstype, mp in mounts:
            avail, files, ffree, free, size = fs_values[fstype]
            if mp == "/run":
                avail, free, size = 3.285196800e+09, 3.285196800e+09, 3.290316800e+09
            v = {"node_filesystem_avail_bytes": avail, "node_filesystem_device_error": 0,
                 "node_filesystem_files": files, "node_filesystem_files_free": ffree,
                 "node_filesystem_free_bytes": free, "node_filesystem_readonly": 0,
                 "node_filesystem_size_bytes": size}[fname]
            fam.add(fname, [("device", dev), ("fstype", fstype), ("mountpoint", mp)], go_float(float(v)))

    # systemd: as many units as make `total` series
    def add_fam(name, help_text, mtype):
        return fams.setdefault(name, Family(name, f"# HELP {name} {help_text}", mtype))
    unit_state = add_fam("node_systemd_unit_state", "Systemd unit", "gauge")
    units_sum = add_fam("node_systemd_units", "Summary of systemd unit states", "gauge")
    running = add_fam("node_systemd_system_running", "Whether the system is operational (see 'systemctl is-system-running')", "gauge")
    acc = add_fam("node_systemd_socket_accepted_connections_total", "Total number of accepted socket connections", "counter")
    cur = add_fam("node_systemd_socket_current_connections", "Current number of socket connections", "gauge")
    ref = add_fam("node_systemd_socket_refused_connections_total", "Total number of refused socket connections", "gauge")
    timer = add_fam("node_systemd_timer_last_trigger_seconds", "Seconds since epoch of last trigger.", "gauge")
    running.add(running.name, [], "1")
    # a unit costs 5 series (its states), a timer 1 more, a socket 3 more; node_systemd_units{state} 5
    room = total - sum(len(f.series) for f in fams.values()) - 5
    templates = ["getty@tty%d.service", "serial-getty@ttyS%d.service", "user@%d.service", "user-runtime-dir@%d.service",
                 "systemd-fsck@dev-disk-by\\x2duuid-%04x.service", "lvm2-pvscan@259:%d.service",
                 "modprobe@mod%d.service", "blk-availability%d.service", "app-agent-%d.service"]
    timers = [u for u in SYSTEMD_UNITS if u.endswith(".timer")]
    sockets = [u for u in SYSTEMD_UNITS if u.endswith(".socket")]
    plain = [u for u in SYSTEMD_UNITS if u not in timers and u not in sockets]
    plain += [t % i for i in range(100) for t in templates]
    fit = [(nt, ns) for nt in range(len(timers), -1, -1) for ns in range(len(sockets), -1, -1)
           if room - 6 * nt - 8 * ns >= 0 and (room - 6 * nt - 8 * ns) % 5 == 0
           and (room - 6 * nt - 8 * ns) // 5 <= len(plain)]
    if room < 0 or not fit:
        raise SystemExit(f"cannot make exactly {total} series; try another --series")
    nt, ns = fit[0]
    units = plain[:(room - 6 * nt - 8 * ns) // 5] + timers[:nt] + sockets[:ns]
    states = ("active", "activating", "deactivating", "inactive", "failed")
    counts = dict.fromkeys(states, 0)
    for u in units:
        st = "inactive" if u.startswith(("modprobe@", "systemd-fsck@", "lvm2")) else "active"
        counts[st] += 1
        utype = SERVICE_TYPES[h32(u) % len(SERVICE_TYPES)] if u.endswith(".service") else ""
        for s in states:
            unit_state.add(unit_state.name, [("name", u), ("state", s), ("type", utype)], "1" if s == st else "0")
        if u.endswith(".socket"):
            acc.add(acc.name, [("name", u)], str(h32(u) % 5000))
            cur.add(cur.name, [("name", u)], "0")
            ref.add(ref.name, [("name", u)], "0")
        if u.endswith(".timer"):
            timer.add(timer.name, [("name", u)], go_float(1.7365e9 + h32(u) % 86400))
    for s in states:
        units_sum.add(units_sum.name, [("state", s)], str(counts[s]))
    return fams


class Exposition:
    """The rendered exposition: constant text chunks and, between them, the counter values."""

    def __init__(self, total: int = 10000, source: str = SOURCE):
        fams = build_model(total, source)
        self.keys: list[str] = []
        self.counters = 0
        chunks: list[str] = []
        buf: list[str] = []
        slots = []  # (base Decimal, step Decimal)
        seen = set()
        for name in sorted(fams):
            fam = fams[name]
            if not fam.series:
                buf.append(f"{fam.help}\n# TYPE {name} {fam.type}\n")
                continue
            buf.append(f"{fam.help}\n# TYPE {name} {fam.type}\n")
            series = fam.series
            if fam.type not in ("summary", "histogram"):  # the fixture is already in this order
                series = sorted(series, key=lambda s: (s[0], [v for _, v in sorted(s[1])]))
            for sname, labels, value in series:
                key = series_key(sname, labels)
                if key in seen:
                    raise ValueError(f"duplicate series {sname}{labels}")
                seen.add(key)
                self.keys.append(key)
                lab = "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels) + "}" if labels else ""
                if fam.type == "counter" and value not in ("NaN", "+Inf", "-Inf"):
                    buf.append(f"{sname}{lab} ")
                    chunks.append("".join(buf))
                    buf = ["\n"]
                    base = Decimal(value)
                    step = Decimal(1 + h32(key) % 1000)
                    if base != base.to_integral_value() or "seconds" in sname:
                        step /= 100
                    while float(base + step) == float(base):  # a counter near 2^64 (one in the fixture)
                        step *= 10
                    slots.append((base, step))
                else:
                    buf.append(f"{sname}{lab} {value}\n")
        chunks.append("".join(buf))
        self.chunks = [c.encode() for c in chunks]
        self.slots = slots
        self.counters = len(slots)
        self.series = len(self.keys)

    def render(self, k: int) -> bytes:
        out = [self.chunks[0]]
        for (base, step), chunk in zip(self.slots, self.chunks[1:]):
            out.append(go_float(float(base + step * k)).encode())
            out.append(chunk)
        return b"".join(out)


# =========================================================================== the exposition server

class ExpoServer:
    """Serves the exposition on 127.0.0.1; logs every scrape of the current run."""

    def __init__(self, expo: Exposition, gzip_mode: str = "auto", port: int = 0):
        self.expo = expo
        self.gzip_mode = gzip_mode
        self.epoch = float(int(time.time()))
        self.cache: dict[int, tuple[bytes, bytes]] = {}
        self.cache_lock = threading.Lock()
        self.log: list[tuple] = []  # (arrival, k, encoding, bytes, user agent)
        self.log_lock = threading.Lock()
        self.stop = threading.Event()
        self.srv = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.body(0)
        self.body(1)
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        threading.Thread(target=self._prerender, daemon=True).start()

    def k_now(self) -> int:
        return int(time.time() - self.epoch)

    def body(self, k: int) -> tuple[bytes, bytes]:
        with self.cache_lock:
            b = self.cache.get(k)
            if b is None:
                raw = self.expo.render(k)
                b = (raw, gzip.compress(raw, compresslevel=6, mtime=0))  # Go's gzip.DefaultCompression is 6
                self.cache[k] = b
                for old in [x for x in self.cache if x < k - 2]:
                    del self.cache[old]
            return b

    def _prerender(self):
        while not self.stop.wait(max(0.05, self.epoch + self.k_now() + 0.5 - time.time())):
            self.body(self.k_now() + 1)
            time.sleep(0.5)

    def take_log(self) -> list[tuple]:
        with self.log_lock:
            out, self.log = self.log, []
        return out

    def close(self):
        self.stop.set()
        self.srv.shutdown()
        self.srv.server_close()

    def _handler(self):
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "node-exporter-bench"
            sys_version = ""

            def log_message(self, fmt, *a):
                pass

            def do_GET(self):
                now = time.time()
                if self.path.split("?")[0] != "/metrics":
                    body = b"ok\n"
                    self.send_response(200 if self.path in ("/", "/healthz") else 404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                k = int(now - server.epoch)
                raw, gz = server.body(k)
                use_gz = server.gzip_mode == "auto" and "gzip" in (self.headers.get("Accept-Encoding") or "")
                body = gz if use_gz else raw
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                if use_gz:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with server.log_lock:
                    server.log.append((now, k, "gzip" if use_gz else "identity", len(body),
                                       (self.headers.get("User-Agent") or "-").split(" ")[0]))

        return H


# =========================================================================== the sink

def _varint(b, i):
    x = b[i]
    if x < 0x80:
        return x, i + 1
    r, s = x & 0x7F, 7
    i += 1
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        if x < 0x80:
            return r, i
        s += 7
        if s > 63:
            raise ValueError("varint too long")


def _skip(b, i, wt):
    if wt == 0:
        return _varint(b, i)[1]
    if wt == 1:
        return i + 8
    if wt == 2:
        n, i = _varint(b, i)
        return i + n
    if wt == 5:
        return i + 4
    raise ValueError(f"wire type {wt}")


class Keyer:
    """Label pairs from the wire -> index of the exposition's series (or -1)."""

    def __init__(self, keys: list[str]):
        self.index = {k: i for i, k in enumerate(keys)}

    def lookup(self, pairs: list[tuple[str, str]]) -> int:
        d = dict(pairs)
        for t in TARGET_LABELS:
            d.pop(t, None)
        for k in [k for k in d if k.startswith("exported_")]:
            d[k[len("exported_"):]] = d.pop(k)  # the target's own label of that name is replaced
        name = d.pop("__name__", "")
        i = self.index.get(series_key(name, d.items()))
        if i is None and "node" in d:  # the target's node label, where the exposition has none
            d.pop("node")
            i = self.index.get(series_key(name, d.items()))
        return -1 if i is None else i


class Sink:
    def __init__(self, keys: list[str]):
        self.keyer = Keyer(keys)
        self.n = len(keys)
        self.lock = threading.Lock()
        self.c = dict(requests=0, requests_accepted=0, requests_bad=0, v1_requests=0, v2_requests=0,
                      body_bytes=0, header_bytes=0, uncompressed_bytes=0, series_entries=0, samples=0,
                      exposition_samples=0, stale_markers=0, duplicates=0, metadata_entries=0)
        self.raw2sid: dict[bytes, int] = {}
        self.names: list[str] = []  # per non-exposition sid (sid - n)
        self.other_by_name: dict[str, int] = {}
        self.by_ts: dict[int, bytearray] = {}
        self.req_ms: list[float] = []
        self.encodings: dict[str, int] = {}
        self.user_agents: dict[str, int] = {}

    def _sid(self, pairs) -> int:
        i = self.keyer.lookup(pairs)
        if i >= 0:
            return i
        self.names.append(dict(pairs).get("__name__", ""))
        return self.n + len(self.names) - 1

    def _labels_v1(self, raw, s, e):
        pairs, j = [], s
        while j < e:
            _, j = _varint(raw, j)  # 0x0A
            ln, j = _varint(raw, j)
            end, name, value, q = j + ln, "", "", j
            while q < end:
                key, q = _varint(raw, q)
                if key in (0x0A, 0x12):
                    l2, q = _varint(raw, q)
                    txt = raw[q:q + l2].decode("utf-8", "replace")
                    if key == 0x0A:
                        name = txt
                    else:
                        value = txt
                    q += l2
                else:
                    q = _skip(raw, q, key & 7)
            pairs.append((name, value))
            j = end
        return pairs

    def _sample(self, raw, j, end, sid):
        """One Sample{value=1 double, timestamp=2 int64}; returns 1 if it counted, 0 if stale."""
        ts = 0
        stale = False
        while j < end:
            key = raw[j]
            if key == 0x09:
                stale = raw[j + 1:j + 9] == STALE_NAN
                j += 9
            elif key == 0x10:
                ts, j = _varint(raw, j + 1)
            else:
                k2, j = _varint(raw, j)
                j = _skip(raw, j, k2 & 7)
        if stale:
            self.c["stale_markers"] += 1
            return 0
        if ts >= 1 << 63:
            ts -= 1 << 64
        seen = self.by_ts.get(ts)
        if seen is None:
            seen = self.by_ts[ts] = bytearray(max(self.n + len(self.names) + 64, self.n))
        if sid >= len(seen):
            seen.extend(bytes(sid + 64 - len(seen)))
        if seen[sid]:
            self.c["duplicates"] += 1
        else:
            seen[sid] = 1
        if sid < self.n:
            self.c["exposition_samples"] += 1
        else:
            nm = self.names[sid - self.n]
            self.other_by_name[nm] = self.other_by_name.get(nm, 0) + 1
        return 1

    def _ingest_v1(self, raw):
        n, i, samples, series = len(raw), 0, 0, 0
        while i < n:
            key, i = _varint(raw, i)
            if key == 0x0A:  # timeseries
                ln, i = _varint(raw, i)
                end = i + ln
                j = i
                while j < end and raw[j] == 0x0A:  # labels come first, as every sender writes them
                    l2, j = _varint(raw, j + 1)
                    j += l2
                lab = raw[i:j]
                sid = self.raw2sid.get(lab)
                if sid is None:
                    sid = self.raw2sid[lab] = self._sid(self._labels_v1(raw, i, j))
                series += 1
                while j < end:
                    k2, j = _varint(raw, j)
                    if k2 == 0x12:
                        l2, j = _varint(raw, j)
                        samples += self._sample(raw, j, j + l2, sid)
                        j += l2
                    elif k2 == 0x0A:
                        raise ValueError("labels after samples")
                    else:
                        j = _skip(raw, j, k2 & 7)
                if j != end:
                    raise ValueError("timeseries length mismatch")
                i = end
            elif key == 0x1A:
                self.c["metadata_entries"] += 1
                i = _skip(raw, i, 2)
            else:
                i = _skip(raw, i, key & 7)
        return series, samples

    def _ingest_v2(self, raw):
        n, i, symbols, ts_slices = len(raw), 0, [], []
        while i < n:
            key, i = _varint(raw, i)
            if key == 0x22:
                ln, i = _varint(raw, i)
                symbols.append(raw[i:i + ln].decode("utf-8", "replace"))
                i += ln
            elif key == 0x2A:
                ln, i = _varint(raw, i)
                ts_slices.append((i, i + ln))
                i += ln
            else:
                i = _skip(raw, i, key & 7)
        samples = 0
        for s, e in ts_slices:
            refs, smp, j = [], [], s
            while j < e:
                k2, j = _varint(raw, j)
                if k2 == 0x0A:
                    ln, j = _varint(raw, j)
                    stop = j + ln
                    while j < stop:
                        r, j = _varint(raw, j)
                        refs.append(r)
                elif k2 == 0x12:
                    ln, j = _varint(raw, j)
                    smp.append((j, j + ln))
                    j += ln
                else:
                    j = _skip(raw, j, k2 & 7)
            pairs = [(symbols[refs[x]], symbols[refs[x + 1]]) for x in range(0, len(refs) - 1, 2)]
            key = "\x00".join(f"{a}\x01{b}" for a, b in pairs).encode()
            sid = self.raw2sid.get(key)
            if sid is None:
                sid = self.raw2sid[key] = self._sid(pairs)
            for a, b in smp:
                samples += self._sample(raw, a, b, sid)
        return len(ts_slices), samples

    def ingest(self, body: bytes, headers, header_bytes: int) -> int:
        t = time.process_time()
        enc = (headers.get("Content-Encoding") or "").lower()
        v2 = "io.prometheus.write.v2.request" in (headers.get("Content-Type") or "").lower()
        with self.lock:
            self.c["requests"] += 1
            ua = (headers.get("User-Agent") or "-").split(" ")[0]
            self.user_agents[ua] = self.user_agents.get(ua, 0) + 1
            try:
                if enc == "snappy":
                    raw = bytes(cramjam.snappy.decompress_raw(body))
                elif enc == "zstd":
                    raw = bytes(cramjam.zstd.decompress(body))
                elif enc == "gzip":
                    raw = gzip.decompress(body)
                else:
                    raw = body
                series, samples = self._ingest_v2(raw) if v2 else self._ingest_v1(raw)
            except Exception as e:  # noqa: BLE001 - a malformed request is answered 400 and counted
                self.c["requests_bad"] += 1
                sys.stderr.write(f"sink: bad request: {e}\n")
                return 400
            c = self.c
            c["requests_accepted"] += 1
            c["v2_requests" if v2 else "v1_requests"] += 1
            c["body_bytes"] += len(body)
            c["header_bytes"] += header_bytes
            c["uncompressed_bytes"] += len(raw)
            c["series_entries"] += series
            c["samples"] += samples
            self.encodings[enc or "identity"] = self.encodings.get(enc or "identity", 0) + 1
            self.req_ms.append(1000 * (time.process_time() - t))
        return 204

    def stats(self) -> dict:
        with self.lock:
            ts_counts = {str(ts): seen[:self.n].count(1) for ts, seen in self.by_ts.items()}
            ms = sorted(self.req_ms)
            return {**self.c, "bytes_on_wire": self.c["body_bytes"] + self.c["header_bytes"],
                    "series_seen": len(self.raw2sid), "exposition_series": self.n,
                    "other_samples_by_name": dict(self.other_by_name), "encodings": dict(self.encodings),
                    "user_agents": dict(self.user_agents),
                    "request_cpu_ms": {"p50": ms[len(ms) // 2] if ms else None,
                                       "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else None,
                                       "max": ms[-1] if ms else None, "sum": round(sum(ms), 1)},
                    "exposition_series_per_ts": ts_counts}


def sink_main(args) -> int:
    with open(args.keys) as f:
        sink = Sink(json.load(f))

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "scrape-bench-sink"
        sys_version = ""

        def log_message(self, fmt, *a):
            pass

        def _reply(self, code, body=b"", ctype="text/plain"):
            self.send_response(code)
            if code != 204:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if code != 204:
                self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            hdr = len(self.raw_requestline) + sum(len(k) + len(v) + 4 for k, v in self.headers.items()) + 2
            self._reply(sink.ingest(body, self.headers, hdr))

        def do_GET(self):
            if self.path == "/stats":
                self._reply(200, json.dumps(sink.stats()).encode(), "application/json")
            else:
                self._reply(200, b"ok\n")

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), H)
    srv.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    deadline = time.time() + args.max_runtime
    while not stop.wait(0.5) and time.time() < deadline:
        pass
    srv.shutdown()
    return 0


# =========================================================================== a stand-in for our agent

def _pb_varint(x: int) -> bytes:
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def _pb_bytes(field: int, b: bytes) -> bytes:
    return _pb_varint(field << 3 | 2) + _pb_varint(len(b)) + b


def encode_series(pairs, samples) -> bytes:
    """One prometheus.TimeSeries: labels (sorted by name) and (value, ts ms) samples."""
    import struct
    body = b"".join(_pb_bytes(1, _pb_bytes(1, k.encode()) + _pb_bytes(2, v.encode())) for k, v in sorted(pairs))
    for value, ts in samples:
        s = (b"\x09" + (value if isinstance(value, bytes) else struct.pack("<d", value))
             + b"\x10" + _pb_varint(ts & 0xFFFFFFFFFFFFFFFF))
        body += _pb_bytes(2, s)
    return _pb_bytes(1, body)


def standin_main(argv) -> int:
    """A naive agent taking our flags: scrape, parse, relabel as Prometheus does, one RW 1.0 request."""
    ap = argparse.ArgumentParser(prog="scrape.py standin")
    ap.add_argument("--kubelet-summary", default="true")
    ap.add_argument("--scrape", action="append", default=[])
    ap.add_argument("--remote-url", required=True)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--node-name", default="bench-node")
    ap.add_argument("--max-runtime", type=float, default=3600)
    a = ap.parse_args(argv)
    targets = [t.split("=", 1) for t in a.scrape]
    every = peers.parse_duration(a.interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    deadline = time.time() + a.max_runtime
    nxt = (int(time.time() / every) + 1) * every
    while not stop.wait(max(0.0, nxt - time.time())) and time.time() < deadline:
        start = nxt
        nxt += every
        ts = int(start * 1000)
        out = []
        for job, url in targets:
            host = url.split("/")[2]
            target = {"job": job, "instance": host, "node": a.node_name}
            try:
                req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
                with urllib.request.urlopen(req, timeout=every) as r:
                    body = r.read()
                    if r.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                up = 1.0
            except OSError as e:
                sys.stderr.write(f"standin: scrape {url}: {e}\n")
                body, up = b"", 0.0
            for line in body.decode().split("\n"):
                if not line or line[0] == "#":
                    continue
                name, labels, value = parse_sample(line)
                ls = {}
                for k, v in labels:
                    ls["exported_" + k if k in target else k] = v
                ls.update(target)
                ls["__name__"] = name
                out.append(encode_series(ls.items(), [(float(value), ts)]))
            out.append(encode_series([("__name__", "up"), *target.items()], [(up, ts)]))
        data = bytes(cramjam.snappy.compress_raw(b"".join(out)))
        req = urllib.request.Request(a.remote_url, data=data, method="POST", headers={
            "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "scrape-bench-standin/0"})
        try:
            urllib.request.urlopen(req, timeout=10).read()
        except OSError as e:
            sys.stderr.write(f"standin: remote write: {e}\n")
    return 0


# =========================================================================== one run

def prometheus_agent_flag(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=20)
        text = out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    return "--agent" if re.search(r"^\s+--agent\b", text, re.M) else "--enable-feature=agent"


def scrape_job(port: int, interval: str) -> str:
    return ("scrape_configs:\n"
            "  - job_name: node\n"
            f"    scrape_interval: {interval}\n"
            f"    scrape_timeout: {interval}\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
            "        labels:\n"
            "          node: bench-node\n")


def agent_command(args, agent: str, tmp: str, target_port: int, sink_port: int):
    remote = f"http://127.0.0.1:{sink_port}/api/v1/write"
    datadir = os.path.join(tmp, "agent-data")
    os.makedirs(datadir, exist_ok=True)
    listen = f"127.0.0.1:{peers.free_port()}"
    if agent == "vmagent":
        cfg = os.path.join(tmp, "scrape.yml")
        with open(cfg, "w") as f:
            f.write(scrape_job(target_port, args.interval))
        return [args.vmagent_bin, f"-promscrape.config={cfg}", f"-remoteWrite.url={remote}",
                f"-remoteWrite.tmpDataPath={datadir}", f"-httpListenAddr={listen}", "-loggerLevel=INFO"], None
    if agent == "prometheus":
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"global:\n  scrape_interval: {args.interval}\n  scrape_timeout: {args.interval}\n")
            f.write(scrape_job(target_port, args.interval))
            f.write(f"remote_write:\n  - url: {remote}\n")
        return [args.prometheus_bin, prometheus_agent_flag(args.prometheus_bin), f"--config.file={cfg}",
                f"--storage.agent.path={datadir}", f"--web.listen-address={listen}", "--log.level=info"], None
    template = args.ours_cmd if agent == "ours" else (
        f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))} standin --kubelet-summary=false "
        "--scrape node={target_url} --remote-url {remote_url} --interval {interval}")
    subs = {"{bin}": args.bin, "{target_url}": f"http://127.0.0.1:{target_port}/metrics", "{remote_url}": remote,
            "{interval}": args.interval, "{interval_seconds}": f"{peers.parse_duration(args.interval):g}",
            "{datadir}": datadir, "{tmpdir}": tmp, "{listen}": listen}
    cmd = template
    for k, v in subs.items():
        cmd = cmd.replace(k, v)
    d = peers.direct_argv(cmd)
    if d is not None:
        return d[1], (dict(os.environ, **d[0]) if d[0] else None)
    return cmd, None


def match_scrapes(scrape_times: list[float], ts_counts: dict[int, int], half_interval_ms: float):
    """Pairs each scrape (arrival, s) with the sample timestamp (ms) nearest to it within half an
    interval, each timestamp used once. Returns [(arrival, ts or None)], unmatched timestamps."""
    stamps = sorted(ts_counts)
    used = set()
    out = []
    j = 0
    for a in sorted(scrape_times):
        am = a * 1000
        while j < len(stamps) and stamps[j] < am - half_interval_ms:
            j += 1
        best = None
        q = j
        while q < len(stamps) and stamps[q] <= am + half_interval_ms:
            if stamps[q] not in used and (best is None or abs(stamps[q] - am) < abs(best - am)):
                best = stamps[q]
            q += 1
        if best is not None:
            used.add(best)
        out.append((a, best))
    return out, [t for t in stamps if t not in used]


def run_one(args, expo: Exposition, server: ExpoServer, agent: str, rnd: int, keys_path: str) -> dict:
    tmp = tempfile.mkdtemp(prefix=f"scrape-{agent}-")
    procs = []
    res = {"agent": agent, "round": rnd}
    try:
        sport = peers.free_port()
        sink = peers.Proc("sink", [sys.executable, os.path.abspath(__file__), "sink", "--port", str(sport),
                                   "--keys", keys_path, "--max-runtime", str(args.duration + 600)],
                          os.path.join(tmp, "sink.log"))
        procs.append(sink)
        peers.wait_http(f"http://127.0.0.1:{sport}/healthz", 20, sink.p)
        argv, env = agent_command(args, agent, tmp, server.port, sport)
        res["command"] = argv if isinstance(argv, str) else " ".join(shlex.quote(a) for a in argv)
        server.take_log()
        sink_sampler = peers.Sampler(sink.pid)
        s0 = sink_sampler.sample()
        h0 = os.times()
        t0 = time.time()
        proc = peers.Proc(agent, argv, os.path.join(tmp, "agent.log"), shell=isinstance(argv, str), env=env)
        procs.append(proc)
        sampler = peers.Sampler(proc.pid)
        window_end, stop_at = t0 + args.duration, t0 + args.duration + args.tail
        warm = None
        nxt = t0
        while True:
            now = time.time()
            if now >= nxt:
                s = sampler.sample()
                if not proc.alive():
                    raise RuntimeError(f"{agent} exited early (code {proc.p.returncode}); see {tmp}/agent.log:\n"
                                       + open(os.path.join(tmp, "agent.log"), errors="replace").read()[-2000:])
                if s and warm is None and s["t"] >= t0 + args.warmup:
                    warm = s
                nxt += 1.0
            if now >= stop_at:
                break
            time.sleep(max(0.0, min(nxt, stop_at) - time.time()))
        last = sampler.sample() or sampler.samples[-1]
        stop = proc.stop(args.stop_timeout, list(sampler.last_tree))
        time.sleep(args.settle)
        s1 = sink_sampler.sample()
        h1 = os.times()
        t1 = time.time()
        stats = json.loads(peers.http_get(f"http://127.0.0.1:{sport}/stats", timeout=60))
        log = server.take_log()
        sink.stop(15)

        ts_counts = {int(k): v for k, v in stats.pop("exposition_series_per_ts").items()}
        in_window = [r[0] for r in log if t0 <= r[0] <= window_end]
        if not in_window:
            raise RuntimeError(f"{agent} did not scrape in {args.duration:g} s; see {tmp}/agent.log (--keep-tmp)")
        half = 500 * peers.parse_duration(args.interval)
        pairs, unmatched = match_scrapes([r[0] for r in log], ts_counts, half)
        n = expo.series
        lost = sum(n - (ts_counts[ts] if ts is not None else 0) for a, ts in pairs if t0 <= a <= window_end)
        rss = [s["rss_kb"] for s in sampler.samples]
        served_enc: dict[str, int] = {}
        for r in log:
            served_enc[r[2]] = served_enc.get(r[2], 0) + 1
        res.update({
            "duration_s": args.duration, "interval": args.interval, "series": n, "counters": expo.counters,
            "cpu_seconds": round(last["cpu_s"], 3),
            "cpu_seconds_incl_shutdown": round(max(stop["cpu_total_s"] or 0, last["cpu_s"]), 3),
            # the agents start scraping at different times (Prometheus after about 5 s here)
            "cpu_ms_per_scrape": round(1000 * last["cpu_s"] / len(log), 2) if log else None,
            "steady_cpu_pct": round(100 * (last["cpu_s"] - warm["cpu_s"]) / (last["t"] - warm["t"]), 2)
            if warm and last["t"] > warm["t"] else None,
            "peak_rss_mb": round(max(sampler.max_hwm_kb, max(rss, default=0)) / 1024, 2),
            "sampled_peak_rss_mb": round(max(rss, default=0) / 1024, 2),
            "median_rss_mb": round(statistics.median(rss) / 1024, 2) if rss else None,
            "processes": max((s["nproc"] for s in sampler.samples), default=0),
            "requests": stats["requests_accepted"], "requests_bad": stats["requests_bad"],
            "body_bytes": stats["body_bytes"], "bytes_on_wire": stats["bytes_on_wire"],
            "uncompressed_bytes": stats["uncompressed_bytes"],
            "body_bytes_per_sample": round(stats["body_bytes"] / stats["samples"], 3) if stats["samples"] else None,
            "samples_received": stats["samples"], "exposition_samples_received": stats["exposition_samples"],
            "other_samples_by_name": stats["other_samples_by_name"], "stale_markers": stats["stale_markers"],
            "metadata_entries": stats["metadata_entries"], "series_seen": stats["series_seen"],
            "scrapes_answered": len(log), "scrapes_in_window": len(in_window),
            "first_scrape_after_s": round(min(r[0] for r in log) - t0, 3),
            "expected_samples": n * len(in_window), "lost": lost,
            "scrapes_without_samples": sum(1 for a, ts in pairs if ts is None and t0 <= a <= window_end),
            "unmatched_timestamps": len(unmatched), "duplicates": stats["duplicates"],
            # per scrape answered: seconds after the agent started, sample timestamp - arrival (ms), series received
            "per_scrape": [[round(a - t0, 3), (ts - round(a * 1000)) if ts is not None else None,
                            ts_counts[ts] if ts is not None else 0] for a, ts in pairs],
            "served": {"encodings": served_enc, "bytes": sum(r[3] for r in log),
                       "user_agents": sorted({r[4] for r in log})},
            "sink": {"cpu_pct": round(100 * (s1["cpu_s"] - s0["cpu_s"]) / (t1 - t0), 2) if s0 and s1 else None,
                     "request_cpu_ms": stats["request_cpu_ms"], "encodings": stats["encodings"],
                     "user_agents": stats["user_agents"], "v2_requests": stats["v2_requests"]},
            "harness_cpu_pct": round(100 * ((h1.user + h1.system) - (h0.user + h0.system)) / (t1 - t0), 2),
            "stop": stop,
        })
        return res
    finally:
        for p in reversed(procs):
            if p.alive():
                p.stop(15)
        if args.keep_tmp:
            res["tmpdir"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# =========================================================================== tables

COLUMNS = [  # key, header, format, compared with vmagent
    ("cpu_seconds", "CPU s", "{:.2f}", True),
    ("cpu_ms_per_scrape", "CPU ms/scrape", "{:.1f}", True),
    ("steady_cpu_pct", "steady CPU %", "{:.1f}", False),
    ("peak_rss_mb", "peak RSS MB", "{:.1f}", True),
    ("median_rss_mb", "median RSS MB", "{:.1f}", False),
    ("body_bytes", "body bytes", "{:,.0f}", True),
    ("body_bytes_per_sample", "B/sample", "{:.2f}", False),
    ("requests", "requests", "{:.0f}", False),
    ("scrapes_answered", "scrapes", "{:.0f}", False),
    ("samples_received", "samples", "{:,.0f}", False),
    ("expected_samples", "expected", "{:,.0f}", False),
    ("lost", "lost", "{:.0f}", False),
    ("duplicates", "dups", "{:.0f}", False),
    ("sink.cpu_pct", "sink CPU %", "{:.1f}", False),
]


def get(d, key):
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def aggregate(results: dict[str, list[dict]]) -> dict:
    agg = {}
    for a, rows in results.items():
        if not rows:
            continue
        m = {"runs": len(rows)}
        for key, *_ in COLUMNS + [("scrapes_in_window",), ("bytes_on_wire",), ("first_scrape_after_s",),
                                  ("exposition_samples_received",), ("cpu_seconds_incl_shutdown",),
                                  ("harness_cpu_pct",)]:
            vals = [get(r, key) for r in rows if isinstance(get(r, key), (int, float))]
            m[key] = statistics.median(vals) if vals else None
        m["lost_per_run"] = [r["lost"] for r in rows]
        m["cpu_seconds_per_run"] = [r["cpu_seconds"] for r in rows]
        m["peak_rss_mb_per_run"] = [r["peak_rss_mb"] for r in rows]
        m["body_bytes_per_run"] = [r["body_bytes"] for r in rows]
        agg[a] = m
    return agg


def fmt(v, f):
    return "-" if v is None else f.format(v)


def targets(agg: dict, who: str) -> list[str]:
    """Issue 21's targets for `who` against vmagent in the same run."""
    o, v = agg.get(who), agg.get("vmagent")
    if not o or not v:
        return []
    out = []

    def line(ok, text):
        out.append(f"- {'met' if ok else 'MISSED'}: {text}")
    line(o["cpu_seconds"] <= 0.5 * v["cpu_seconds"],
         f"CPU {o['cpu_seconds']:.2f} s <= 0.5x vmagent's {v['cpu_seconds']:.2f} s "
         f"({o['cpu_seconds'] / v['cpu_seconds']:.2f}x)")
    line(o["peak_rss_mb"] <= v["peak_rss_mb"],
         f"peak RSS {o['peak_rss_mb']:.1f} MB <= vmagent's {v['peak_rss_mb']:.1f} MB")
    line(o["body_bytes"] <= v["body_bytes"],
         f"bytes on the wire {o['body_bytes']:,.0f} <= vmagent's {v['body_bytes']:,.0f} "
         f"({o['body_bytes'] / v['body_bytes']:.2f}x)")
    line(max(o["lost_per_run"]) == 0, f"nothing lost (lost per run: {o['lost_per_run']})")
    return out


def table(agg: dict, title: str) -> str:
    hdr = ["agent", "runs"] + [c[1] for c in COLUMNS]
    lines = [f"### {title}", "", "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    v = agg.get("vmagent")
    for a, m in agg.items():
        cells = [a, str(m["runs"])]
        for key, _, f, cmp in COLUMNS:
            cell = fmt(m.get(key), f)
            if cmp and v and a != "vmagent" and m.get(key) is not None and v.get(key):
                cell += f" ({m[key] / v[key]:.2f}x)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Medians of the runs; (x) = ratio to vmagent. lost and dups: exposition series x scrapes. "
              "body bytes: compressed Remote Write bodies the sink accepted."]
    for who in [a for a in agg if a not in PEERS]:
        t = targets(agg, who)
        if t:
            lines += ["", f"Issue 21 targets for {who}:", ""] + t
    return "\n".join(lines) + "\n"


def write_summary(out_dir: str, results: dict, args_d: dict) -> str:
    agg = aggregate(results)
    first = next((r[0] for r in results.values() if r), {})
    title = (f"{first.get('series', '?')} series (node_exporter-shaped), scraped every {first.get('interval', '?')}, "
             f"{first.get('duration_s', '?')} s per run, median of {max((len(r) for r in results.values()), default=0)}")
    txt = table(agg, title)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(txt)
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump({"args": args_d, "medians": agg,
                   "targets": {a: targets(agg, a) for a in agg if a not in PEERS},
                   "runs": {a: [{k: v for k, v in r.items() if k != "per_scrape"} for r in rows]
                            for a, rows in results.items()}}, f, indent=1)
        f.write("\n")
    return txt


# =========================================================================== subcommands

def run_main(args) -> int:
    agents = [a for a in args.agents.split(",") if a]
    for a in agents:
        if a not in ("vmagent", "prometheus", "ours", "standin"):
            raise SystemExit(f"--agents: unknown agent {a!r} (vmagent, prometheus, ours, standin)")
    if "ours" in agents and "{bin}" in args.ours_cmd and not os.path.exists(args.bin):
        raise SystemExit(f"--bin: {args.bin} does not exist (cargo build --release, or --agents without ours)")
    os.makedirs(args.out, exist_ok=True)
    expo = Exposition(args.series)
    if args.series == 10000 and os.path.exists(FIXTURE):
        with open(FIXTURE, "rb") as f:
            if f.read() != expo.render(0):
                sys.stderr.write(f"[scrape] warning: {FIXTURE} differs from the generated exposition "
                                 "(python3 benches/scrape.py fixture)\n")
    keys_dir = tempfile.mkdtemp(prefix="scrape-keys-")
    keys_path = os.path.join(keys_dir, "series-keys.json")
    with open(keys_path, "w") as f:
        json.dump(expo.keys, f)
    server = ExpoServer(expo, args.gzip)
    sys.stderr.write(f"[scrape] {expo.series} series ({expo.counters} counters), "
                     f"{len(expo.render(0))} bytes, on {server.url}\n")
    results: dict[str, list[dict]] = {a: [] for a in agents}
    try:
        for r in range(args.repeat):
            order = agents if r % 2 == 0 else list(reversed(agents))
            for a in order:
                sys.stderr.write(f"[scrape] round {r + 1}/{args.repeat}: {a} ...\n")
                t = time.time()
                try:
                    res = run_one(args, expo, server, a, r + 1, keys_path)
                except Exception as e:  # noqa: BLE001 - one failed run must not lose the others
                    sys.stderr.write(f"[scrape]   {a} failed: {e}\n")
                    continue
                with open(os.path.join(args.out, f"{a}-{r + 1}.json"), "w") as f:
                    json.dump(res, f, indent=1)
                results[a].append(res)
                sys.stderr.write(f"[scrape]   {time.time() - t:.0f} s: cpu {res['cpu_seconds']} s, peak rss "
                                 f"{res['peak_rss_mb']} MB, body {res['body_bytes']} B in {res['requests']} requests, "
                                 f"samples {res['samples_received']}, expected {res['expected_samples']}, lost "
                                 f"{res['lost']}, dups {res['duplicates']}, sink cpu {res['sink']['cpu_pct']} %\n")
                time.sleep(args.pause)
    finally:
        server.close()
        shutil.rmtree(keys_dir, ignore_errors=True)
    d = {k: v for k, v in vars(args).items() if k != "func"}
    print(write_summary(args.out, results, d))
    return 0


def table_main(args) -> int:
    results: dict[str, list[dict]] = {}
    for fn in sorted(os.listdir(args.dir)):
        m = re.fullmatch(r"(\w+)-(\d+)\.json", fn)
        if m:
            with open(os.path.join(args.dir, fn)) as f:
                results.setdefault(m.group(1), []).append(json.load(f))
    order = [a for a in ("vmagent", "prometheus", "ours", "standin") if a in results]
    prev = {}
    try:
        with open(os.path.join(args.dir, "result.json")) as f:
            prev = json.load(f).get("args", {})
    except (OSError, ValueError):
        pass
    print(write_summary(args.dir, {a: results[a] for a in order}, prev or {"from_dir": args.dir}))
    return 0


def fixture_main(args) -> int:
    body = Exposition(args.series).render(0)
    if len(body) >= 2 << 20:
        raise SystemExit(f"{len(body)} bytes: over 2 MB, not written")
    with open(args.path, "wb") as f:
        f.write(body)
    print(f"{args.path}: {len(body)} bytes")
    return 0


def serve_main(args) -> int:
    expo = Exposition(args.series)
    server = ExpoServer(expo, args.gzip, args.port)
    print(f"serving {expo.series} series on {server.url} for at most {args.max_runtime:g} s", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    stop.wait(args.max_runtime)
    server.close()
    return 0


def check_main(args) -> int:
    """Self-test: the exposition is what the docstring says, the sink counts what was sent."""
    fails = []

    def expect(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            fails.append(what)
    src_values = [line for line in open(SOURCE, encoding="utf-8").read().split("\n") if line and line[0] != "#"]
    expect(all(go_float(float(parse_sample(s)[2])) == parse_sample(s)[2] for s in src_values),
           "go_float reproduces every value of the node_exporter fixture")
    expo = Exposition(10000)
    b0, b0b, b1 = expo.render(0), expo.render(0), expo.render(1)
    expect(expo.series == 10000, f"10 000 series ({expo.series}), {expo.counters} counters")
    expect(b0 == b0b, "the same second renders the same bytes")
    lines0 = set(b0.decode().split("\n"))
    expect(all(s in lines0 for s in src_values), "every sample line of the fixture is in the exposition, as written")
    expect(b0.decode().count("# HELP ") == b0.decode().count("# TYPE "), "every family has HELP and TYPE")
    l0, l1 = b0.decode().split("\n"), b1.decode().split("\n")
    changed = [(a, b) for a, b in zip(l0, l1) if a != b]
    expect(len(l0) == len(l1) and len(changed) == expo.counters,
           f"one second later exactly the {expo.counters} counter lines change ({len(changed)})")
    expect(all(float(b.rsplit(" ", 1)[1]) > float(a.rsplit(" ", 1)[1]) for a, b in changed), "and they increase")
    if os.path.exists(FIXTURE):
        expect(open(FIXTURE, "rb").read() == b0, f"{os.path.relpath(FIXTURE, ROOT)} is current")
    # the sink: a request as Prometheus would send it, with a duplicate, a stale marker, an extra series
    sink = Sink(expo.keys)
    parts = []
    for i, key in enumerate(expo.keys):
        name, *lab = key.split("\x00")
        ls = dict(x.split("\x01", 1) for x in lab)
        if "node" in ls:
            ls["exported_node"] = ls.pop("node")
        ls.update({"__name__": name, "job": "node", "instance": "127.0.0.1:1", "node": "bench-node"})
        parts.append(encode_series(ls.items(), [(1.0, 1000)] if i else [(1.0, 1000), (1.0, 1000)]))
    parts.append(encode_series([("__name__", "up"), ("job", "node")], [(1.0, 1000), (STALE_NAN, 2000)]))
    body = bytes(cramjam.snappy.compress_raw(b"".join(parts)))
    code = sink.ingest(body, {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}, 100)
    st = sink.stats()
    expect(code == 204 and st["exposition_series_per_ts"] == {"1000": 10000}, "sink: every series found at its timestamp")
    expect(st["samples"] == 10002 and st["duplicates"] == 1 and st["stale_markers"] == 1
           and st["other_samples_by_name"] == {"up": 1}, f"sink: samples, duplicates, stale, others ({st['samples']}, "
           f"{st['duplicates']}, {st['stale_markers']}, {st['other_samples_by_name']})")
    t = time.process_time()
    for _ in range(3):
        sink.ingest(body, {"Content-Encoding": "snappy"}, 100)
    per = (time.process_time() - t) / 3
    print(f"info  sink: {per * 1000:.0f} ms CPU per 10 000-sample request (once the series are known)")
    print(f"info  exposition: {len(b0)} bytes, {len(gzip.compress(b0))} gzip'd")
    return 1 if fails else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["standin"]:
        return standin_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the side-by-side comparison")
    r.add_argument("--agents", default="vmagent,prometheus,ours", help="comma list of vmagent, prometheus, ours, standin")
    r.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "kubelet-push"))
    r.add_argument("--ours-cmd", default=DEFAULT_OURS)
    r.add_argument("--duration", type=float, default=60)
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--interval", default="1s")
    r.add_argument("--series", type=int, default=10000)
    r.add_argument("--gzip", choices=["auto", "never"], default="auto")
    r.add_argument("--tail", type=float, default=3, help="seconds after --duration before SIGTERM")
    r.add_argument("--warmup", type=float, default=10)
    r.add_argument("--stop-timeout", type=float, default=30)
    r.add_argument("--settle", type=float, default=0.5)
    r.add_argument("--pause", type=float, default=2)
    r.add_argument("--vmagent-bin", default=shutil.which("vmagent") or "/usr/bin/vmagent")
    r.add_argument("--prometheus-bin", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    r.add_argument("--keep-tmp", action="store_true")
    r.add_argument("--out", required=True)
    r.set_defaults(func=run_main)
    t = sub.add_parser("table", help="table.md and result.json again from <agent>-<n>.json in DIR")
    t.add_argument("dir")
    t.set_defaults(func=table_main)
    f = sub.add_parser("fixture", help="write the exposition (second 0)")
    f.add_argument("--series", type=int, default=10000)
    f.add_argument("--path", default=FIXTURE)
    f.set_defaults(func=fixture_main)
    s = sub.add_parser("serve", help="serve the exposition alone")
    s.add_argument("--port", type=int, default=9100)
    s.add_argument("--series", type=int, default=10000)
    s.add_argument("--gzip", choices=["auto", "never"], default="auto")
    s.add_argument("--max-runtime", type=float, default=3600)
    s.set_defaults(func=serve_main)
    k = sub.add_parser("sink", help="(internal) the receiver")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--keys", required=True)
    k.add_argument("--max-runtime", type=float, default=7200)
    k.set_defaults(func=sink_main)
    c = sub.add_parser("check", help="self-test")
    c.set_defaults(func=check_main)
    sub.add_parser("standin", help="a naive Python agent taking our flags (see standin --help)")
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
