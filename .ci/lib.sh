# Shared by .ci/run and .ci/stress (sourced, not run): what the tests need on a fresh machine,
# the builds, and the suites. Each suite is one function that runs one suite to its end and
# returns its exit status; .ci/run runs each once, .ci/stress runs them round after round
# under load. Expects `set -euo pipefail` and the repository as the current directory.

log() { printf '\n==> %s\n' "$*"; }

# Disk. CI machines can have little of it (one run died of "No space left on device" while
# compiling), and every build here lands in one target directory: Linux and Windows, debug and
# release. A fresh clone gains nothing from incremental caches, and line tables are all the
# debug information a test failure's backtrace needs (file and line), so both are dropped:
# the Linux test build (`cargo test --no-run`) takes 1.0 GB instead of 2.2 GB. `disk` says
# what is free, at the start and after the builds, so a full disk shows as what it is.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
disk() {
  local target="${CARGO_TARGET_DIR:-$PWD/target}"
  log "disk: $(df -h --output=avail "$PWD" | tail -1 | tr -d ' ') free; target directory $(du -sh "$target" 2>/dev/null | cut -f1 || echo 0)"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

# One .ci/run or .ci/stress at a time on a machine: they share Wine prefixes (and stop their
# wineservers), the image tag and the manifests' venv under ~/.cache/kubelet-push, so a second
# run, from another clone say, would end the first one's Windows processes or replace the
# image it is testing. The second waits, and says so. The lock goes with the process.
one_run_at_a_time() {
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/kubelet-push"
  mkdir -p "$dir"
  exec 9>"$dir/ci.lock"
  if ! flock -n 9; then
    log "another .ci/run or .ci/stress runs on this machine; waiting for it to end"
    # Bounded: a process the other run left behind keeps the lock (children inherit it).
    flock -w 5400 9 || { echo "$dir/ci.lock still held after 90 min: $(fuser "$dir/ci.lock" 2>&1)" >&2; exit 1; }
  fi
}

# Debian packages, in one apt-get run (each suite's script also installs its own when run
# alone), plus any given as arguments:
# - gcc-mingw-w64-x86-64: ring's C code for the Windows build, and the Wine DLL stand-in;
# - prometheus, victoria-metrics: the real receivers of the end-to-end tests (tests/it/e2e);
# - prometheus-node-exporter: the real exporter the scrape end-to-end test scrapes (each test
#   starts its own on 127.0.0.1; the package's system service is not used);
# - tinyproxy: the forward proxy of tests/it/e2e/auth.rs (each test starts its own on
#   127.0.0.1 with its own configuration; the package's system service is not used);
# - wine, wine64: the Windows tests (.ci/windows-tests.sh, .ci/windows-e2e.sh);
# - musl-tools, buildah, podman, runc, ca-certificates: the Linux image (.ci/image.sh);
# - python3-venv: kubernetes-validate's venv (.ci/manifests.sh).
# Then the Rust components and targets.
install_deps() {
  local need_pkgs=() pkg target
  for pkg in gcc-mingw-w64-x86-64 prometheus prometheus-node-exporter victoria-metrics tinyproxy wine wine64 musl-tools \
    buildah podman runc ca-certificates python3-venv "$@"; do
    # "install ok installed" only: a removed package keeps its config files and a dpkg entry.
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$pkg")
  done
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  fi
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
  for target in x86_64-pc-windows-gnu x86_64-unknown-linux-musl; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  done
}

# Everything the suites run, one build at a time (two cores: builds side by side only slow
# each other down). Exports what the end-to-end tests read (the Windows .exe, the image).
build_all() {
  log "build: Linux tests and binary"
  cargo test --locked --lib --bins --tests --no-run

  log "build: benchmarks (run them with: cargo bench)"
  cargo bench --locked --no-run

  log "build: Windows release .exe and the end-to-end helpers (.ci/windows-e2e.sh)"
  local windows_e2e_env image_env
  windows_e2e_env=$(.ci/windows-e2e.sh)
  eval "$windows_e2e_env"

  log "build: Windows tests"
  cargo test --locked --target x86_64-pc-windows-gnu --lib --bins --tests --no-run

  log "build: Linux image (.ci/image.sh)"
  image_env=$(.ci/image.sh)
  eval "$image_env"
}

# The suites. The Windows tests and the Windows .exe end to end run alone, one after the
# other: under a loaded CPU Wine now and then fails to start a process at all (Windows error
# 1359, which Wine returns when a new process dies while starting), which is Wine's trouble,
# not ours. The rest run side by side (see .ci/run).
suite_windows_tests() { .ci/windows-tests.sh; }

suite_windows_e2e() {
  cargo test --locked --test it -- --test-threads 2 e2e::windows::
}

suite_manifests() {
  KUBELET_PUSH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/kubelet-push" .ci/manifests.sh
}

# The end-to-end tests mostly wait on receivers and outages, so more threads than cores lets
# them overlap.
suite_linux_tests() {
  cargo test --locked --lib --bins --tests -- --test-threads 8 --skip e2e::windows::
}
