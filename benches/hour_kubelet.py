#!/usr/bin/env python3
"""hour_kubelet.py: ../shared/bench/fake_kubelet.py on a clock that advances one stats period per
/stats/summary request, so an agent polling every 100 ms collects an hour of 1 s polls in six
minutes (issue 20's hour-long backlog, built by ``benches/wan.py --build-backlog``).

Everything fake_kubelet.py serves is unchanged: the same model (--pods, --containers-per-pod,
--seed), the same documents, the same /debug/produced.  Only its clock is replaced: it starts at
``--start-at`` (unix seconds) minus one period and moves one ``--stats-period`` forward just before
each /stats/summary request is answered.  So request n gets period start-at + (n - 1) x period,
every request a new period, whatever the agent's pace: the kubelet's "time" fields, the values
and the document sizes are those of a kubelet answering one poll per period of real time.
After ``--max-summaries`` requests, further /stats/summary requests are held (not answered) for
``--hold`` s, so no poll past the hour can reach the agent's buffer; the harness stops the agent
meanwhile.  ``GET /debug/summaries`` answers the number served so far.

Usage: python3 benches/hour_kubelet.py --start-at T --max-summaries 3600 [fake_kubelet.py args]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time as _time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench")))
import fake_kubelet  # noqa: E402


class StepClock:
    """Stands in for the `time` module inside fake_kubelet: time() is the stepped clock, the rest
    (perf_counter, sleep, ...) is the real module."""

    def __init__(self, start: float):
        self.now = start
        self.lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def step(self, by: float) -> None:
        with self.lock:
            self.now += by

    def __getattr__(self, name):
        return getattr(_time, name)


def main() -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--start-at", type=float, required=True)
    ap.add_argument("--max-summaries", type=int, required=True)
    ap.add_argument("--hold", type=float, default=600.0)
    ap.add_argument("--stats-period", type=float, default=1.0)
    own, rest = ap.parse_known_args()
    clock = StepClock(own.start_at - own.stats_period)
    served = {"n": 0}
    count_lock = threading.Lock()
    original = fake_kubelet.make_handler

    def make_handler(fk):
        base = original(fk)

        class Stepped(base):
            def do_GET(self):
                if self.path.startswith("/debug/summaries"):
                    self._send(200, str(served["n"]).encode(), "text/plain; charset=utf-8")
                    return
                if self.path.startswith("/stats/summary"):
                    with count_lock:
                        if served["n"] >= own.max_summaries:
                            hold = True
                        else:
                            hold = False
                            served["n"] += 1
                            clock.step(own.stats_period)
                    if hold:
                        _time.sleep(own.hold)
                        self._send(503, b"hour_kubelet: the hour is over\n", "text/plain; charset=utf-8")
                        return
                super().do_GET()

        return Stepped

    fake_kubelet.make_handler = make_handler
    fake_kubelet.time = clock
    return fake_kubelet.main(rest + ["--stats-period", str(own.stats_period)])


if __name__ == "__main__":
    sys.exit(main())
