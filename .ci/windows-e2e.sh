#!/usr/bin/env bash
# Prepares the Windows end-to-end tests (tests/it/e2e/windows.rs): a Wine prefix of their own,
# the Windows release .exe, and ctrl-event.exe (.ci/wine/ctrl-event.c), the helper that stops
# a Windows process the way containerd's Windows shim does. Prints, on stdout only, the
# variables the tests read, so that .ci/run can do:
#
#   eval "$(.ci/windows-e2e.sh)"
#
# Idempotent and quick when done before: installs Debian's wine, wine64 and
# gcc-mingw-w64-x86-64 and the rustup target x86_64-pc-windows-gnu only when missing (root
# for apt-get), cargo and the prefix setup do nothing when up to date, the helper is rebuilt
# only when its source changed.
#
# Env: WINE_E2E_PREFIX (default ~/.cache/kubelet-push/wine-e2e), CARGO_TARGET_DIR.
set -euo pipefail
[ $# = 0 ] || { echo "usage: eval \"\$($0)\"" >&2; exit 64; }
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
need_pkgs=()
for pkg in wine wine64 gcc-mingw-w64-x86-64; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "windows-e2e: need root to install ${need_pkgs[*]}" >&2; exit 1; }
  echo "windows-e2e: installing ${need_pkgs[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2

# A prefix of its own: the tests run several Windows processes at once in it, and nothing
# else (a `wineserver -k` of another suite, say) should end them.
prefix="$(WINEPREFIX="${WINE_E2E_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/kubelet-push/wine-e2e}" \
  .ci/wine/setup)"
[ -f "$prefix/drive_c/windows/system32/bcryptprimitives.dll" ] ||
  { echo "windows-e2e: $prefix has no bcryptprimitives.dll" >&2; exit 1; }
# Whatever an earlier, killed run left running in this prefix goes now, not mid-test.
WINEPREFIX="$prefix" wineserver -k 2>/dev/null || true
WINEPREFIX="$prefix" wineserver -w 2>/dev/null || true

# cargo reports on stderr; stdout stays for the variables.
cargo build --release --locked --target "$target" >&2
out="${CARGO_TARGET_DIR:-$PWD/target}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
exe="$out/$target/release/kubelet-push.exe"
[ -f "$exe" ] || { echo "windows-e2e: $exe was not built" >&2; exit 1; }

helper="$out/$target/ctrl-event.exe"
if [ ! -f "$helper" ] || [ .ci/wine/ctrl-event.c -nt "$helper" ]; then
  x86_64-w64-mingw32-gcc -O2 -Wall -Wextra -Werror -o "$helper.tmp" .ci/wine/ctrl-event.c
  mv "$helper.tmp" "$helper"
fi

printf 'export WINEPREFIX=%q\n' "$prefix"
printf 'export KUBELET_PUSH_WINDOWS_EXE=%q\n' "$exe"
printf 'export KUBELET_PUSH_CTRL_EVENT_EXE=%q\n' "$helper"
