#!/usr/bin/env bash
# Runs the unit and integration tests built for x86_64-pc-windows-gnu under Wine, and fails
# unless they really ran: every test binary must report, the number that ran must be the
# number each binary lists, and every test Linux has must run here too unless it is named in
# UNIX_ONLY below, with the reason.
#
# Installs what it needs when missing (Debian's wine, wine64, gcc-mingw-w64-x86-64 and the
# rustup target; root for apt-get). Uses a Wine prefix of its own (WINE_TESTS_PREFIX, default
# ~/.cache/kubelet-push/wine-tests), so ending its wineserver ends only what this script ran.
#
# Env: TEST_THREADS (default 4), WINE_TESTS_TIMEOUT (seconds for the run, default 900). No
# arguments: a filter would defeat the counts. To run some tests by hand, see the README.
set -euo pipefail
[ $# = 0 ] || { echo "usage: $0 (no arguments)" >&2; exit 64; }
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
threads="${TEST_THREADS:-4}"
run_timeout="${WINE_TESTS_TIMEOUT:-900}"
export WINEPREFIX="${WINE_TESTS_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/kubelet-push/wine-tests}"
export WINEDEBUG=-all
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/.ci/wine/runner"

# Tests that run on Linux but not on Windows, and why. A test missing from the Windows run
# that is not named here fails the script; so does a name here that Windows does run.
UNIX_ONLY=(
  # The end-to-end suite runs Prometheus and VictoriaMetrics, which are Linux binaries.
  'it e2e::*'
  # Graceful stop: a test process has no safe way to send one child a Windows console
  # control event (GenerateConsoleCtrlEvent is FFI and signals a whole process group); the
  # end-to-end suite stops the Windows .exe under Wine with the signals Wine turns into them.
  'it cli::a_signal_stops_the_demo_cleanly'
  'it delivery::sigterm_flushes_within_the_shutdown_timeout'
  'it disk::a_stopped_agent_keeps_what_it_could_not_send'
  # SIGHUP (Windows has none; POST /-/reload is tested on both) and the stopped line after SIGTERM.
  'it reload::sighup_reloads_and_the_memory_buffer_loses_nothing'
  'it reload::sighup_without_a_config_file_does_not_exit'
  # Mount a tmpfs (256 KiB: to fill the disk, through the agent and through the buffer; and
  # for a small volume).
  'it disk::a_full_disk_evicts_the_oldest_and_keeps_polling'
  'it disk::a_full_file_system_evicts_the_oldest_batches'
  'it disk::a_small_volume_with_a_healthy_receiver_loses_nothing'
  # Unix files: /dev/zero and FIFOs (mkfifo) have no Windows counterpart a file:// URL can
  # name; the size limit on a regular file is tested on both. The SIGTERM one also needs a
  # signal (see above).
  'it hostile_io::a_file_that_never_ends_is_read_up_to_the_limit'
  'it hostile_io::a_fifo_without_a_writer_times_out_and_stuck_reads_are_capped'
  'it hostile_io::sigterm_ends_an_agent_stuck_on_a_fifo'
  'it hostile_io::a_fifo_as_the_remote_token_file_is_refused'
  # Builds a Kubernetes Secret volume's layout, which is symlinks (..data, one per key):
  # creating one on Windows needs SeCreateSymbolicLinkPrivilege or developer mode. The
  # HostProcess sandbox lookup, the Windows side of mounted credentials, runs on both.
  'it access::a_secret_volume_update_loses_nothing'
)

log() { printf '\n==> %s\n' "$*"; }
die() { printf '\nwindows-tests: FAILED: %s\n' "$*" >&2; exit 1; }

# What this needs, installed when missing (quick when present): Wine, MinGW (the DLL
# stand-in and ring's C code), the Rust target.
need_pkgs=()
for pkg in wine wine64 gcc-mingw-w64-x86-64; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  [ "$(id -u)" = 0 ] || die "need root to install ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

work="$(mktemp -d)"
# Every process this run starts inherits this mark, so leftovers can be found by it alone.
export KUBELET_PUSH_WINE_RUN="$$-$RANDOM$RANDOM"
started_server=
cleanup() {
  local status=$? left=() env pid kv
  if [ -n "$started_server" ]; then
    wineserver -k 2>/dev/null || true
    wineserver -w 2>/dev/null || true
    # Bash builtins only in this loop, so nothing of our own shows up as a leftover.
    for env in /proc/[0-9]*/environ; do
      pid="${env#/proc/}" pid="${pid%/environ}"
      [ "$pid" = $$ ] && continue
      while IFS= read -r -d '' kv; do
        if [ "$kv" = "KUBELET_PUSH_WINE_RUN=$KUBELET_PUSH_WINE_RUN" ]; then left+=("$pid"); break; fi
      done 2>/dev/null <"$env" || true
    done
    if [ ${#left[@]} -gt 0 ]; then
      echo "windows-tests: killing processes this run left behind: ${left[*]}" >&2
      ps -o pid,args -p "$(IFS=,; echo "${left[*]}")" >&2 || true
      kill -9 "${left[@]}" 2>/dev/null || true
    fi
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

log "wine prefix $WINEPREFIX"
setup_start=$SECONDS
.ci/wine/setup >/dev/null
dll="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
[ -f "$dll" ] || die "$dll is missing: every Rust .exe would exit with 53 before running a test"
# One wineserver for the whole run, instead of one per test binary. `wineserver -p` exits
# with 2, silently, when one already runs for the prefix: one left by a run that was killed,
# since the prefix is this script's own. Stop it with -k (a plain kill leaves its Windows
# processes orphaned for good).
started_server=1
if ! wineserver -p; then
  echo "a wineserver already runs for $WINEPREFIX (left by a killed run?); stopping it"
  wineserver -k 2>/dev/null || true
  wineserver -w 2>/dev/null || true
  wineserver -p || die "cannot start a wineserver for $WINEPREFIX"
fi
echo "prefix ready in $((SECONDS - setup_start))s"

log "cargo test --no-run --target $target"
build_start=$SECONDS
cargo test --locked --target "$target" --lib --bins --tests --no-run
echo "built in $((SECONDS - build_start))s"

# Lists the tests of every binary as "<binary> <test name>" lines, ignored ones included.
# cargo names each binary on stderr ("Running unittests src/lib.rs (...)") before its list.
list_tests() {
  local out="$work/list.out"
  cargo test --locked --lib --bins --tests "$@" -- --list --format terse >"$out" 2>&1 ||
    { cat "$out" >&2; die "listing the tests failed (cargo test $* -- --list)"; }
  awk '
    /^ *Running / {
      bin = ($2 == "unittests") ? $3 : $2
      sub(/^src\/|^tests\//, "", bin); sub(/\.rs$/, "", bin); sub(/\/main$/, "", bin)
    }
    / (test|bench)$/ && bin != "" { sub(/: (test|bench)$/, ""); print bin, $0 }' "$out"
}

log "listing the tests (Windows under Wine, and Linux)"
list_tests --target "$target" | sort >"$work/windows.list"
list_tests | sort >"$work/linux.list"
[ -s "$work/windows.list" ] || die "no test listed under Wine (is the harness output reaching us?)"

log "cargo test --target $target under Wine (--test-threads $threads)"
run_start=$SECONDS
set +e
timeout --kill-after=30 "$run_timeout" \
  cargo test --locked --target "$target" --lib --bins --tests --no-fail-fast \
  -- --test-threads "$threads" 2>&1 | tee "$work/run.log"
status=${PIPESTATUS[0]}
set -e
run_secs=$((SECONDS - run_start))
[ "$status" = 124 ] && die "the run did not finish within ${run_timeout}s"
[ "$status" = 0 ] || die "cargo test exited with $status (see the failures above)"

# What ran: one "test result" line per binary, and as many tests as were listed.
results="$(grep -c '^test result: ' "$work/run.log" || true)"
binaries="$(cut -d' ' -f1 "$work/windows.list" | sort -u | wc -l)"
ran="$(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; [0-9]* failed; \([0-9]*\) ignored.*/\1 \2/p' \
  "$work/run.log" | awk '{ p += $1; i += $2 } END { print p + 0, i + 0 }')"
passed="${ran% *}" ignored="${ran#* }"
listed="$(wc -l <"$work/windows.list")"
[ "$results" -ge "$binaries" ] || die "$binaries test binaries, but only $results reported a result"
[ "$passed" -gt 0 ] || die "no test ran under Wine"
[ $((passed + ignored)) = "$listed" ] ||
  die "$listed tests listed, but $passed passed and $ignored were ignored"

# Linux tests that did not run here must be named in UNIX_ONLY, and vice versa.
missing="$(comm -23 "$work/linux.list" "$work/windows.list")"
unexplained=""
while IFS= read -r t; do
  [ -n "$t" ] || continue
  ok=
  for pattern in "${UNIX_ONLY[@]}"; do
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    [[ "$t" == $pattern ]] && ok=1 && break
  done
  [ -n "$ok" ] || unexplained+="  $t"$'\n'
done <<<"$missing"
[ -z "$unexplained" ] || die "these Linux tests did not run under Wine and UNIX_ONLY does not say why:
$unexplained"
for pattern in "${UNIX_ONLY[@]}"; do
  case "$pattern" in *'*'*) continue ;; esac
  ! grep -qxF "$pattern" "$work/windows.list" || die "UNIX_ONLY names '$pattern', which runs on Windows"
  grep -qxF "$pattern" "$work/linux.list" || die "UNIX_ONLY names '$pattern', which no longer exists"
done

per_bin="$(cut -d' ' -f1 "$work/windows.list" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }')"
linux_only="$(printf '%s' "$missing" | grep -c . || true)"
log "Windows tests under Wine: $passed passed ($per_bin), $ignored ignored, $linux_only Linux tests unix-only; run took ${run_secs}s"
