//! Where a file named by a flag or the config file is found: in a Windows HostProcess
//! container, under the container's sandbox first ([`in_sandbox`]); and the pod's
//! service-account files, used when no kubelet token or CA is given.

use std::path::{Path, PathBuf};

/// Where a pod finds its service-account credentials; used when no token or CA file is given.
pub(super) const SA_DIR: &str = "var/run/secrets/kubernetes.io/serviceaccount";
pub(super) const SA_TOKEN: &str = "token";
pub(super) const SA_CA: &str = "ca.crt";

/// Set by containerd inside a Windows HostProcess container: the directory that holds the
/// container's own files and volume mounts. The process itself sees the host's file system,
/// so a volume mounted at `/var/run/secrets/...` appears under this directory (containerd
/// 1.6), or at `C:\var\run\secrets\...` where the runtime binds it in place (containerd 1.7+).
/// See [`in_sandbox`].
const SANDBOX_MOUNT_POINT: &str = "CONTAINER_SANDBOX_MOUNT_POINT";

/// The HostProcess sandbox this process runs in, if any. An empty value counts as none: joined
/// to it, `/etc/x` would become `etc/x`, relative to the working directory.
pub(super) fn sandbox_mount_point() -> Option<PathBuf> {
    std::env::var_os(SANDBOX_MOUNT_POINT)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The file a flag or the config file names, as this process finds it: when it runs in a
/// Windows HostProcess container (`sandbox` is [`SANDBOX_MOUNT_POINT`]), a rooted `path`
/// (`/etc/x`, `\etc\x`, `C:\etc\x`, `c:/etc/x`) that exists as a file under the sandbox is
/// taken from there; anything else is `path` as given. Why: a volume the pod mounts at
/// `/etc/x` is a link under the sandbox with containerd 1.6, and bound at `C:\etc\x` with
/// containerd 1.7+, which `/etc/x` names relative to the current drive's root; the manifest
/// cannot know which runtime a node has. The drive letter is dropped because the sandbox has
/// its own root. The result is what `check-config` prints and errors name, so a user sees
/// which file was used.
///
/// Not behind `cfg(windows)`: only containerd sets the variable, in HostProcess pods, so
/// elsewhere this returns `path` unchanged; compiled everywhere, the Linux tests exercise it.
pub(super) fn in_sandbox(path: &Path, sandbox: Option<&Path>) -> PathBuf {
    let given = || path.to_path_buf();
    let (Some(root), Some(text)) = (sandbox, path.to_str()) else {
        return given();
    };
    let bytes = text.as_bytes();
    let rest = if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        &text[2..]
    } else {
        text
    };
    // `C:x` is relative to drive C's working directory: not rooted, so not under the sandbox.
    if !rest.starts_with(['/', '\\']) {
        return given();
    }
    // Both separators, as Windows reads them; a path given with `/` and joined with `\`
    // (the service-account default) is one path.
    let mut inside = root.to_path_buf();
    let mut parts = 0;
    for part in rest.split(['/', '\\']).filter(|p| !p.is_empty()) {
        inside.push(part);
        parts += 1;
    }
    if parts > 0 && inside.is_file() {
        inside
    } else {
        given()
    }
}

/// The service-account file `name` of this pod, if it has one: under the HostProcess sandbox
/// when there is one, else at the standard path (on Windows relative to the current drive's
/// root, which is where containerd 1.7+ binds the volume).
pub(super) fn service_account_file(name: &str, sandbox: Option<&Path>) -> Option<PathBuf> {
    let path = in_sandbox(&Path::new("/").join(SA_DIR).join(name), sandbox);
    path.is_file().then_some(path)
}

/// `spec` with each of its files looked up [`in_sandbox`].
pub(super) fn access_in_sandbox(
    mut spec: crate::remote_write::access::AccessSpec,
    sandbox: Option<&Path>,
) -> crate::remote_write::access::AccessSpec {
    for file in spec.files_mut().into_iter().flatten() {
        *file = in_sandbox(file, sandbox);
    }
    spec
}
