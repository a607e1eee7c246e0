#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes, as CI runs it (`.ci/run`):
#   1. renders the kustomization (`kubectl kustomize`);
#   2. validates every rendered object, and the example Secret, strictly against the OpenAPI
#      schemas of the oldest and newest Kubernetes versions we support (PyPI's
#      kubernetes-validate, pinned in .ci/manifests/requirements.txt, in a venv outside the
#      repository);
#   3. hands each agent container's args and env to the real binary's check-config, which
#      must accept them (and must reject a misspelt flag);
#   4. checks the settings kustomization.yaml and the DaemonSets show commented out,
#      credentials and scrape targets included, the same way (openssl makes the certificates).
# Idempotent; installs what is missing (Debian packages, the venv), quick when nothing is.
#
# Environment:
#   KUBELET_PUSH_BIN        the binary to check flags with [default:
#                           ${CARGO_TARGET_DIR:-target}/release/kubelet-push, built when missing;
#                           a debug build does as well]
#   KUBELET_PUSH_MANIFESTS_VENV  where the venv lives [default:
#                           ${XDG_CACHE_HOME:-~/.cache}/kubelet-push/manifests-venv]
set -euo pipefail
cd "$(dirname "$0")/.."

# Oldest: HostProcess containers (the Windows DaemonSet) are GA since 1.26, and 1.26 is the
# oldest release kubernetes-validate 1.37.0 has schemas for that can run them. Newest: the
# newest it has schemas for. Raise both when the pin in requirements.txt moves.
versions=(1.26 1.37)
bin=${KUBELET_PUSH_BIN:-${CARGO_TARGET_DIR:-target}/release/kubelet-push}
venv=${KUBELET_PUSH_MANIFESTS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kubelet-push/manifests-venv}
requirements=.ci/manifests/requirements.txt

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_install() {
  log "installing $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# The renderer: any kubectl (kustomize is built in since 1.14). This machine image ships one
# (package `kubectl`, from the Google Cloud SDK repository, not Debian's); elsewhere Debian 12's
# `kubernetes-client` (kubectl 1.20, kustomize v2.0.3) renders this kustomization to the same
# objects, which is why it uses no newer kustomize field.
if ! command -v kubectl >/dev/null; then
  apt_install kubernetes-client
fi

# Certificates for the credential checks (usually present: ca-certificates needs it).
if ! command -v openssl >/dev/null; then
  apt_install openssl
fi

# Debian's own Python, not whatever python3 comes first on PATH (pyenv shims, say).
python=/usr/bin/python3
if ! installed python3-venv; then
  apt_install python3-venv
fi
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  log "creating $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # Every package is pinned, dependencies included: --no-deps keeps it that way, and
  # `pip check` proves the list complete.
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$requirements"
  "$venv/bin/pip" check >/dev/null
  cp "$requirements" "$venv/requirements.txt"
fi

if [ ! -x "$bin" ]; then
  log "building $bin"
  cargo build --release --locked --bin kubelet-push
fi

log "kubectl kustomize deploy/kubernetes ($(kubectl version --client 2>/dev/null | head -1))"
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
kubectl kustomize deploy/kubernetes >"$rendered"

log "validating against Kubernetes ${versions[*]}; flags with $bin"
version_args=()
for v in "${versions[@]}"; do version_args+=(--version "$v"); done
"$venv/bin/python" .ci/manifests/check.py --rendered "$rendered" \
  --example deploy/kubernetes/secret-example.yaml "${version_args[@]}" --bin "$bin" \
  --kustomization deploy/kubernetes/kustomization.yaml
