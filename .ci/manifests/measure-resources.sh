#!/usr/bin/env bash
# How the DaemonSets' requests and limits were sized (not part of CI): peak RSS and CPU
# seconds of the release binary at 30, 110 and 250 simulated pods, two ways.
#   whole: `kubelet-push demo` in one process: agent + simulated kubelet + decoding receiver
#          (an upper bound for the agent alone).
#   agent: the agent alone, as the DaemonSet runs it (disk buffer, health endpoints), polling
#          a separate demo process's simulated kubelet and pushing to that demo's receiver.
#   outage: the agent alone with its receiver gone (connection refused) for the whole run:
#          the disk buffer grows, the agent's memory must not.
#   indented (250 pods only): the agent alone, reading the simulated summary re-indented
#          to about 1 MiB by a small proxy: real kubelets indent their JSON and send 2-3x the
#          simulator's bytes per pod.
#   backlog/replay (250 pods only): an outage polled every second (60 polls a minute, a
#          backlog of several MiB on disk), then a restart on that buffer with the receiver
#          back: the replay must not hold the backlog in memory either.
# Usage: .ci/manifests/measure-resources.sh [SECONDS]   (KUBELET_PUSH_BIN as in manifests.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${KUBELET_PUSH_BIN:-target/release/kubelet-push}
secs=${1:-60}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# "max RSS KiB, CPU seconds (user+sys)" from a `/usr/bin/time -v` log.
usage() {
  awk -F': ' '/Maximum resident/ {rss=$2} /User time/ {u=$2} /System time/ {s=$2}
    END {printf "peak RSS %5.1f MiB, CPU %.2f s", rss/1024, u+s}' "$1"
}

printf '%-6s %-5s %s\n' mode pods result
for pods in 30 110 250; do
  # 10001ms, not 10s: the demo replaces an interval of exactly 10s (the agent's default)
  # with its own 2s default, so an explicit `--interval 10s` would poll every 2 s.
  /usr/bin/time -v -o "$work/whole.time" "$bin" demo --pods "$pods" --duration "${secs}s" \
    --interval 10001ms >"$work/whole.log" 2>&1
  printf '%-6s %-5s %s | %s\n' whole "$pods" "$(usage "$work/whole.time")" \
    "$(grep 'demo finished' "$work/whole.log")"

  # A demo process that lives longer than the agent: its simulated kubelet and its receiver.
  "$bin" demo --pods "$pods" --duration "$((secs + 30))s" --interval 10s \
    --log-format json >"$work/sim.log" 2>&1 &
  sim=$!
  for _ in $(seq 50); do grep -q '"remote"' "$work/sim.log" && break; sleep 0.1; done
  kubelet=$(grep -o '"kubelet":"[^"]*"' "$work/sim.log" | head -1 | cut -d'"' -f4)
  remote=$(grep -o '"remote":"[^"]*"' "$work/sim.log" | head -1 | cut -d'"' -f4)
  for mode in agent outage; do
    url=$remote
    [ "$mode" = outage ] && url=http://127.0.0.1:9/api/v1/write   # discard port: refused
    rm -rf "$work/buffer"
    /usr/bin/time -v -o "$work/$mode.time" timeout -s TERM "${secs}s" "$bin" \
      --kubelet-url "$kubelet" --remote-url "$url" --interval 10s \
      --buffer-dir "$work/buffer" --listen-address 127.0.0.1:0 --shutdown-timeout 2s \
      >"$work/$mode.log" 2>&1 || true
    printf '%-6s %-5s %s | buffer dir %s\n' "$mode" "$pods" "$(usage "$work/$mode.time")" \
      "$(du -sh "$work/buffer" | cut -f1)"
  done
  kill "$sim" 2>/dev/null || true
  wait "$sim" 2>/dev/null || true
done

# Backlog and replay at 250 pods.
pods=250
"$bin" demo --pods "$pods" --duration "$((2 * secs + 60))s" --interval 10s \
  --log-format json >"$work/sim.log" 2>&1 &
sim=$!
for _ in $(seq 50); do grep -q '"remote"' "$work/sim.log" && break; sleep 0.1; done
kubelet=$(grep -o '"kubelet":"[^"]*"' "$work/sim.log" | head -1 | cut -d'"' -f4)
remote=$(grep -o '"remote":"[^"]*"' "$work/sim.log" | head -1 | cut -d'"' -f4)
cat >"$work/indent.py" <<'PY'
import http.server, json, sys, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(json.load(urllib.request.urlopen(sys.argv[1] + self.path)), indent=6)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
PY
python3 "$work/indent.py" "$kubelet" 18931 &
proxy=$!
sleep 1
rm -rf "$work/buffer"
/usr/bin/time -v -o "$work/indented.time" timeout -s TERM "${secs}s" "$bin" \
  --kubelet-url http://127.0.0.1:18931 --remote-url "$remote" --interval 10s \
  --buffer-dir "$work/buffer" --listen-address 127.0.0.1:0 --shutdown-timeout 2s \
  >"$work/indented.log" 2>&1 || true
printf '%-6s %-5s %s | summary %s bytes\n' indent "$pods" "$(usage "$work/indented.time")" \
  "$(curl -s http://127.0.0.1:18931/stats/summary | wc -c)"
kill "$proxy"
rm -rf "$work/buffer"
/usr/bin/time -v -o "$work/backlog.time" timeout -s TERM "${secs}s" "$bin" \
  --kubelet-url "$kubelet" --remote-url http://127.0.0.1:9/api/v1/write --interval 1s \
  --buffer-dir "$work/buffer" --shutdown-timeout 1s >"$work/backlog.log" 2>&1 || true
printf '%-6s %-5s %s | buffer dir %s\n' backlog "$pods" "$(usage "$work/backlog.time")" \
  "$(du -sh "$work/buffer" | cut -f1)"
/usr/bin/time -v -o "$work/replay.time" timeout -s TERM 30s "$bin" \
  --kubelet-url "$kubelet" --remote-url "$remote" --interval 10s \
  --buffer-dir "$work/buffer" --shutdown-timeout 2s >"$work/replay.log" 2>&1 || true
printf '%-6s %-5s %s | buffer dir %s after 30 s\n' replay "$pods" "$(usage "$work/replay.time")" \
  "$(du -sh "$work/buffer" | cut -f1)"
kill "$sim" 2>/dev/null || true
wait "$sim" 2>/dev/null || true
