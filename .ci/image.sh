#!/usr/bin/env bash
# Builds the Linux container image (deploy/image/Containerfile) into local containers-storage:
# installs what is missing (Debian's musl-tools, buildah, podman, runc, ca-certificates; the
# rustup target x86_64-unknown-linux-musl), builds the static release binary outside the image,
# checks it is static, stages a two-file build context, builds with buildah and prints sizes.
#
# Build output goes to stderr. stdout carries only the environment the end-to-end test
# (tests/it/e2e/image.rs) needs, as `export` lines, so a caller can do:
#
#   image_env=$(bash .ci/image.sh)   # an assignment, so `set -e` sees a failure
#   eval "$image_env"
#
# Environment (all optional):
#   KUBELET_PUSH_IMAGE      image name to build        (default localhost/kubelet-push:ci)
#   IMAGE_CARGO_TARGET_DIR  cargo target dir for the musl release build (default target/image,
#                           apart from target/ so it never waits on the lock of another build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$(date +%s)

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

image=${KUBELET_PUSH_IMAGE:-localhost/kubelet-push:ci}
target_dir=${IMAGE_CARGO_TARGET_DIR:-$repo/target/image}
target=x86_64-unknown-linux-musl
# runc, an empty default_ulimits and no systemd: see the comments in the file.
export CONTAINERS_CONF=$repo/.ci/podman/containers.conf

need_pkgs=()
for pkg in musl-tools buildah podman runc ca-certificates; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2

log "cargo build --release --target $target (target dir $target_dir)"
# ring's C code is compiled with musl-gcc (musl-tools), which cc-rs picks for musl targets.
CARGO_TARGET_DIR=$target_dir cargo build --release --locked --target "$target" >&2
binary=$target_dir/$target/release/kubelet-push

# Static means no program interpreter and no shared library needed. (A static-pie binary has
# a dynamic section for its own relocations, so "has a dynamic section" is not the test.)
if readelf -l "$binary" | grep -q 'INTERP' || readelf -d "$binary" | grep -q '(NEEDED)'; then
  echo "$binary is dynamically linked:" >&2
  readelf -d "$binary" | grep NEEDED >&2 || true
  exit 1
fi
if command -v ldd >/dev/null; then
  printf '%s: %s\n' "ldd" "$(ldd "$binary" 2>&1 | tr -d '\t' | head -1)" >&2
fi

log "staging the build context"
context=$target_dir/image-context
rm -rf "$context"
mkdir -p "$context"
install -m 0755 "$binary" "$context/kubelet-push"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"

log "buildah build -t $image"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
source_url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time as the image's creation time, and no buildah version label: the same
# binary and bundle give the same image digest.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
buildah build --quiet --pull=never --layers=false --identity-label=false --timestamp "$epoch" \
  -f "$repo/deploy/image/Containerfile" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
  -t "$image" "$context" >&2
new_id=$(podman image inspect --format '{{.Id}}' "$image")
# The previous build under this tag is now nameless: remove it, so repeated runs leave
# nothing behind (an image still used by a container stays).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || true
fi

binary_bytes=$(stat -c %s "$binary")
image_bytes=$(podman image inspect --format '{{.Size}}' "$image")
log "built $image (${new_id:0:12}) in $(($(date +%s) - started)) s"
printf 'binary: %s bytes (%s KiB), image: %s bytes (%s KiB)\n' \
  "$binary_bytes" $((binary_bytes / 1024)) "$image_bytes" $((image_bytes / 1024)) >&2

printf 'export KUBELET_PUSH_IMAGE=%q\n' "$image"
printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
