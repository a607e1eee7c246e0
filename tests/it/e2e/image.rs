//! The Linux container image (`deploy/image/Containerfile`), as `.ci/image.sh` built it with
//! buildah, run with podman: the container polls a simulated Windows kubelet in this process
//! and pushes to a real Prometheus, both on 127.0.0.1 (`--network host`); what Prometheus
//! stores is compared with what the simulator served, and `podman stop` must end it cleanly
//! through SIGTERM. The image itself is checked from the outside: its config (user,
//! entrypoint, labels), its complete file list (two files, so no shell), the uid and
//! capabilities the running process really has, and that the agent in it takes its TLS roots
//! from the bundle at the path where the image puts one.
//!
//! The image name comes from `KUBELET_PUSH_IMAGE` (exported by `.ci/image.sh`). Without it the
//! tests fail in CI and say SKIPPED elsewhere. podman reads `CONTAINERS_CONF`, or this
//! repository's `.ci/podman/containers.conf` when it is unset.

use std::process::Output;

use kubelet_push::testkit::simulator::{KubeletServer, SimulatedKubelet};

use super::*;
use crate::support::{AgentProcess, PATIENCE};

/// The distroless "nonroot" uid and gid the Containerfile sets.
const NONROOT: u32 = 65_532;
const PODS: usize = 4;
const NODE: &str = "demo-win-node";

/// The image to test, or why the test cannot run.
fn image() -> Option<String> {
    match std::env::var("KUBELET_PUSH_IMAGE") {
        Ok(name) if !name.is_empty() => Some(name),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "KUBELET_PUSH_IMAGE is not set: .ci/run builds the image with .ci/image.sh and \
                 exports the variable it prints"
            );
            eprintln!(
                "SKIPPED: KUBELET_PUSH_IMAGE not set (image_env=$(bash .ci/image.sh) && eval \"$image_env\")"
            );
            None
        }
    }
}

fn podman_command() -> Command {
    let mut cmd = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        cmd.env(
            "CONTAINERS_CONF",
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/podman/containers.conf"),
        );
    }
    cmd.kill_on_drop(true);
    cmd
}

/// Runs `podman ARGS` to its end (at most a minute) and returns what it printed.
async fn podman(args: &[&str]) -> Output {
    let run = podman_command().args(args).stdin(Stdio::null()).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("podman {args:?} took over a minute"))
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

/// `podman ARGS`, which must succeed; its stdout.
async fn podman_ok(args: &[&str]) -> String {
    let out = podman(args).await;
    assert!(
        out.status.success(),
        "podman {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A container started by a test, removed (with force) when dropped, so a failing test leaves
/// nothing running: killing the `podman run` client does not stop the container.
struct Container {
    name: String,
}

impl Container {
    fn named(what: &str) -> Container {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Container {
            name: format!("kubelet-push-it-{what}-{}-{n}", std::process::id()),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let mut cmd = podman_command().into_std();
        let _ = cmd
            .args(["rm", "--force", "--ignore", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `podman run --rm [OPTIONS] IMAGE ARGS`, in the foreground: run as a child of this process,
/// its exit code, stdout and stderr are the agent's.
fn run_command(image: &str, container: &Container, options: &[&str], args: &[&str]) -> Command {
    let mut cmd = podman_command();
    cmd.args([
        "run",
        "--rm",
        "--network",
        "host",
        "--name",
        &container.name,
    ])
    .args(options)
    .arg(image)
    .args(args)
    .stdin(Stdio::null());
    cmd
}

/// [`run_command`] started, with stdout and stderr captured.
fn run(image: &str, container: &Container, options: &[&str], args: &[&str]) -> Child {
    run_command(image, container, options, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn finish(child: Child, within: Duration) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the container did not exit within {within:?}"))
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Mounted read-only on the host while it lives.
struct MountedImage {
    image: String,
    root: PathBuf,
}

impl MountedImage {
    async fn mount(image: &str) -> MountedImage {
        let root = podman_ok(&["image", "mount", image]).await;
        MountedImage {
            image: image.to_owned(),
            root: PathBuf::from(root.trim()),
        }
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let mut cmd = podman_command().into_std();
        let _ = cmd
            .args(["image", "unmount", &self.image])
            .stdout(Stdio::null())
            .status();
    }
}

/// Every entry under `dir`, as (path relative to the root, metadata), depth first.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, std::fs::Metadata)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        out.push((rel, meta.clone()));
        if meta.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Whether an ELF executable asks for a program interpreter (`PT_INTERP`): every dynamically
/// linked executable does, a static or static-pie one does not.
fn elf_has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    (0..usize::from(phnum)).any(|i| {
        let at = phoff + i * usize::from(phentsize);
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

#[test]
fn a_dynamically_linked_executable_has_an_interpreter() {
    // This test binary is linked against glibc: the check above can tell.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(elf_has_interpreter(&me));
}

#[tokio::test]
async fn image_is_the_static_agent_and_a_ca_bundle_run_as_nonroot() {
    let Some(image) = image() else { return };

    let inspect = podman_ok(&["image", "inspect", &image]).await;
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    let img = &inspect[0];
    assert_eq!(img["Os"], "linux", "{img}");
    assert_eq!(img["Architecture"], "amd64", "{img}");
    let config = &img["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/kubelet-push"]));
    assert!(config["Cmd"].is_null(), "no default arguments: {config}");
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(labels["org.opencontainers.image.title"], "kubelet-push");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        env!("CARGO_PKG_REPOSITORY")
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or("");
    assert!(
        revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "a commit id: {labels}"
    );
    // One layer: nothing came from a base image.
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        1,
        "{img}"
    );

    // Everything in the image: the agent and the bundle, owned by root, so the agent (uid
    // 65532) cannot change either. No shell, no libc, nothing else to exec.
    let mounted = MountedImage::mount(&image).await;
    let mut entries = Vec::new();
    walk(&mounted.root, &mounted.root, &mut entries);
    let listing: Vec<String> = entries
        .iter()
        .map(|(path, meta)| {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            format!(
                "{path} {:o} {}:{}",
                meta.permissions().mode() & 0o7777,
                meta.uid(),
                meta.gid()
            )
        })
        .collect();
    assert_eq!(
        listing,
        [
            "etc 755 0:0",
            "etc/ssl 755 0:0",
            "etc/ssl/certs 755 0:0",
            "etc/ssl/certs/ca-certificates.crt 644 0:0",
            "kubelet-push 755 0:0",
        ],
        "the image's files"
    );
    let binary = std::fs::read(mounted.root.join("kubelet-push")).unwrap();
    assert!(
        !elf_has_interpreter(&binary),
        "/kubelet-push is dynamically linked"
    );
    let bundle =
        std::fs::read_to_string(mounted.root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let certs = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(certs >= 100, "a public CA bundle, not {certs} certificates");
    drop(mounted);

    // And so nothing but the agent can be started in it.
    let shell = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "true",
    ])
    .await;
    assert!(!shell.status.success(), "a shell ran in the image");
    let err = String::from_utf8_lossy(&shell.stderr);
    assert!(err.contains("/bin/sh"), "{err}");

    // The binary runs in it.
    let version = podman_ok(&["run", "--rm", &image, "--version"]).await;
    assert_eq!(
        version.trim(),
        format!("kubelet-push {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The real numbers of the summary the simulator serves at `t_s`.
fn served_at(reference: &mut SimulatedKubelet, t_s: i64) -> Value {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(t_s as u64);
    serde_json::from_str(&reference.summary_json(at)).unwrap()
}

fn json_f64(v: &Value) -> f64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}")) as f64
}

/// The process's `Uid:`/`Gid:` (real, effective, saved, fs) and effective capabilities, as
/// the host's /proc sees the container's first process.
fn proc_status(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"), field("CapEff:"))
}

#[tokio::test]
async fn container_pushes_what_the_kubelet_served_to_prometheus_and_stops_cleanly() {
    let Some(image) = image() else { return };
    if !available(Kind::Prometheus) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Real::launch(Kind::Prometheus, dir.path()).await;
    // The same inputs make the same node: `reference` answers what the server served at any
    // second.
    let booted = SystemTime::now() - Duration::from_secs(3600);
    let mut reference = SimulatedKubelet::new(PODS, 7, booted);
    let kubelet = KubeletServer::start(reference.clone()).await.unwrap();

    // The disk buffer on a host directory given to uid 65532, as the Linux DaemonSet's init
    // container does with its hostPath.
    let buffer = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(buffer.path(), Some(NONROOT), Some(NONROOT)).unwrap();
    let buffer_mount = format!("{}:/var/lib/kubelet-push", buffer.path().display());

    let container = Container::named("push");
    let started = Instant::now();
    let started_ms = now_ms();
    // The container shares the host's network (`--network host`): the agent binds
    // 127.0.0.1:0 there, and its log, which podman passes on, says which port it got.
    let (agent, listen) = AgentProcess::listening(
        run_command(
            &image,
            &container,
            // The Linux DaemonSet's securityContext: read-only root, no capabilities, no
            // privilege escalation.
            &[
                "--read-only",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--volume",
                &buffer_mount,
            ],
            &[
                "--kubelet-url",
                &kubelet.url(),
                "--remote-url",
                &prometheus.write_url(),
                "--interval",
                "1s",
                "--buffer-dir",
                "/var/lib/kubelet-push",
                "--self-metrics=false",
            ],
        )
        // Nothing on stdout without --dry-run; not piped, so nothing can fill a pipe no one reads.
        .stdout(Stdio::null()),
    )
    .await;

    // Ready (a poll and a send succeeded), as a kubelet's readiness probe would see it.
    let http = reqwest::Client::new();
    eventually("the container's agent ready", PATIENCE, async || {
        let ready = http
            .get(format!("http://{listen}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let ready = ready.is_ok_and(|r| r.status().is_success());
        ready.then_some(()).ok_or_else(|| agent.log())
    })
    .await;
    let ready_after = started.elapsed();

    // The process in the container, as the kernel sees it: uid and gid 65532 in all four
    // slots, and no capabilities.
    let pid: u32 = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &container.name])
        .await
        .trim()
        .parse()
        .unwrap();
    let (uid, gid, caps) = proc_status(pid);
    assert_eq!(uid, format!("{NONROOT} {NONROOT} {NONROOT} {NONROOT}"));
    assert_eq!(gid, format!("{NONROOT} {NONROOT} {NONROOT} {NONROOT}"));
    assert_eq!(caps, "0000000000000000", "effective capabilities");

    // A few polls' worth of node CPU in Prometheus. Every window below reaches back to before
    // the container's start (the simulator stamps a section at most 90 s before it serves it,
    // volumes' stats), so a slow run loses no sample off the window's far end; this
    // Prometheus holds nothing older.
    let since_start = || ((now_ms() - started_ms) / 1000 + 120) as u64;
    let cpu_selector = format!("node_cpu_usage_seconds_total{{node=\"{NODE}\"}}");
    eventually("4 node CPU samples", PATIENCE, async || {
        let raw = prometheus.raw(&cpu_selector, now_ms(), since_start()).await;
        let enough = raw.values().next().is_some_and(|s| s.len() >= 4);
        enough.then_some(()).ok_or_else(|| format!("{raw:?}"))
    })
    .await;

    // `podman stop` sends the image's stop signal (SIGTERM) to the agent, PID 1 in the
    // container, where only a signal with a handler does anything; then SIGKILL after 30 s.
    // What proves the SIGTERM was handled is the agent's own account, not how long podman
    // and runc took: a clean exit (0; a SIGKILL is 137), the agent saying it got SIGTERM,
    // and its final line, which an agent killed by SIGKILL never writes. (How long the stop
    // took is printed at the end, not asserted.)
    let stop_sent = Instant::now();
    podman_ok(&["stop", "--time", "30", &container.name]).await;
    let (status, log) = agent.wait().await;
    let stop_took = stop_sent.elapsed();
    assert_eq!(status.code(), Some(0), "exit code after podman stop: {log}");
    assert!(
        log.contains("shutting down (signal received)") && log.contains("SIGTERM"),
        "{log}"
    );
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.contains("kubelet-push stopped")
            && last.contains("polls_failed=0")
            && last.contains("samples_pending=0"),
        "a clean stop with everything delivered: {log}"
    );
    let sent = samples_sent(&log);
    // The buffer was written, by the agent's uid.
    let mut written = Vec::new();
    walk(buffer.path(), buffer.path(), &mut written);
    assert!(!written.is_empty(), "nothing in the disk buffer: {log}");
    for (path, meta) in &written {
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid()), (NONROOT, NONROOT), "{path}");
    }

    // What Prometheus holds is what the kubelet served, sample by sample.
    let end = now_ms();
    let raw = prometheus
        .raw(&format!("{{instance=\"{NODE}\"}}"), end, since_start())
        .await;
    let only = |name: &str| -> &Vec<(i64, f64)> {
        // Both are families the kubelet's resource endpoint has: metrics_path says so.
        let key = format!(
            "{name}{{instance=\"{NODE}\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"{NODE}\"}}"
        );
        raw.get(&key)
            .unwrap_or_else(|| panic!("{key} not stored: {:?}", raw.keys()))
    };
    let node_cpu = only("node_cpu_usage_seconds_total");
    let node_mem = only("node_memory_working_set_bytes");
    assert!(node_cpu.len() >= 4, "{node_cpu:?}");
    for (metric, samples, field) in [
        (
            "node_cpu_usage_seconds_total",
            node_cpu,
            &["cpu", "usageCoreNanoSeconds"],
        ),
        (
            "node_memory_working_set_bytes",
            node_mem,
            &["memory", "workingSetBytes"],
        ),
    ] {
        for &(t, v) in samples {
            assert_eq!(t % 1000, 0, "{metric}: the kubelet's whole-second time");
            let doc = served_at(&mut reference, t / 1000);
            let section = &doc["node"][field[0]];
            assert_eq!(
                section["time"],
                rfc3339(u64::try_from(t / 1000).unwrap()),
                "{metric} at {t}"
            );
            let mut expected = json_f64(&section[field[1]]);
            if metric.ends_with("_seconds_total") {
                expected /= 1e9;
            }
            assert_eq!(
                v.to_bits(),
                expected.to_bits(),
                "{metric} at {t}: stored {v}, the kubelet served {expected}"
            );
        }
    }

    // Each pod's memory: pod sections lag the node's by up to two seconds (the kubelet's cache),
    // so the document that carried a sample stamped `t` was served at `t`, `t+1` or `t+2`.
    let mut pods_checked = std::collections::BTreeSet::new();
    for (key, samples) in raw
        .iter()
        .filter(|(k, _)| k.starts_with("pod_memory_working_set_bytes{"))
    {
        let pod = key
            .split("pod=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        for &(t, v) in samples {
            let t_s = t / 1000;
            let served = (t_s..=t_s + 2).find_map(|now| {
                let doc = served_at(&mut reference, now);
                doc["pods"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| {
                        p["podRef"]["name"] == pod
                            && p["memory"]["time"] == rfc3339(u64::try_from(t_s).unwrap())
                    })
                    .map(|p| json_f64(&p["memory"]["workingSetBytes"]))
            });
            let served = served.unwrap_or_else(|| panic!("{key}: no document stamped {t}"));
            assert_eq!(v.to_bits(), served.to_bits(), "{key} at {t}");
        }
        pods_checked.insert(pod.to_owned());
    }
    assert!(
        pods_checked.len() >= PODS,
        "every pod's memory arrived: {pods_checked:?}"
    );
    prometheus.assert_nothing_rejected(sent).await;
    eprintln!(
        "image e2e: ready after {ready_after:?}, stopped in {stop_took:?}, {sent} samples sent, \
         {} node CPU samples and {} pods compared",
        node_cpu.len(),
        pods_checked.len()
    );
}

/// An HTTPS kubelet on 127.0.0.1 with a certificate from a throwaway CA (the TLS tests'
/// kubelet, serving `crate::tls::SUMMARY`): its CA's PEM, and the URL.
async fn tls_kubelet(connections: usize) -> (String, String) {
    let pki = crate::tls::pki();
    let url = crate::tls::serve(pki.server, connections).await;
    (pki.ca_pem, url)
}

/// The agent in the image trusts the bundle at /etc/ssl/certs/ca-certificates.crt, the one the
/// image carries: with it a kubelet signed by an unknown CA is refused as such (so roots were
/// loaded, and public ones do not vouch for it), and with a bundle holding that CA bind-mounted
/// over the same path, the same kubelet is trusted. No `--kubelet-ca-file` either time.
#[tokio::test]
async fn container_verifies_tls_with_the_bundle_at_the_standard_path() {
    let Some(image) = image() else { return };
    kubelet_push::http::install_crypto_provider();
    let (ca_pem, url) = tls_kubelet(4).await;
    let args = [
        "--dry-run",
        "--kubelet-url",
        url.as_str(),
        "--node-name",
        "n",
    ];

    let container = Container::named("tls-public");
    let child = run(&image, &container, &[], &args);
    let (code, stdout, log) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "a failed poll: {log}");
    assert!(
        stdout
            .contains("up{instance=\"n\",job=\"kubelet\",metrics_path=\"/metrics\",node=\"n\"} 0 "),
        "{stdout}"
    );
    assert!(
        log.contains("signed by an unknown authority; pass --kubelet-ca-file"),
        "refused as unknown, with the flag that fixes it: {log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca-certificates.crt");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let mount = format!("{}:/etc/ssl/certs/ca-certificates.crt:ro", bundle.display());
    let container = Container::named("tls-mounted");
    let child = run(&image, &container, &["--volume", &mount], &args);
    let (code, stdout, log) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        stdout.contains(
            "node_memory_working_set_bytes{instance=\"n\",job=\"kubelet\",metrics_path=\"/metrics/resource\",node=\"n\"} 42 "
        ),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("up{instance=\"n\",job=\"kubelet\",metrics_path=\"/metrics\",node=\"n\"} 1 "),
        "{stdout}"
    );
}
