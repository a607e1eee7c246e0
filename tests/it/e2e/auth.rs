//! Real receivers behind TLS and authentication, and a real forward proxy.
//!
//! - Prometheus 2.42 with `--web.config.file`: `tls_server_config` (with
//!   `client_auth_type: RequireAndVerifyClientCert`) and `basic_auth_users` (bcrypt). The
//!   agent pushes with the right CA, client certificate and password, and the samples are
//!   queried back; a wrong password is one warning, and rewriting the password file while the
//!   agent runs delivers everything queued meanwhile (Prometheus's own sample count equals
//!   the agent's); a wrong CA and a missing client certificate are one clear warning each.
//! - VictoriaMetrics with `-tls -tlsCertFile -tlsKeyFile -httpAuth.username
//!   -httpAuth.password`.
//! - Debian's `tinyproxy` on 127.0.0.1: pushes go through it (its log shows the CONNECT or
//!   the POST) with `HTTPS_PROXY`, `HTTP_PROXY` and `--remote-proxy-url`; kubelet requests
//!   never do.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_rustls::rustls;

use super::{
    agent_command, available, metric_value, now_ms, stop_agent, wait_metrics,
    wait_metrics_and_stop, Kind, Real,
};
use crate::access::{ca, leaf, Ca, Leaf};
use crate::support::{eventually, AgentProcess, PATIENCE};

/// bcrypt (cost 10) of [`PASSWORD`], made once with libxcrypt:
/// `perl -e 'print crypt("e2e-pw-41d9", "\$2b\$10\$kubeletpushtestsaltsa.u")'`.
const PASSWORD_HASH: &str = "$2b$10$kubeletpushtestsaltsa.W805MltWR9aRDbAV7w9kEplMRlZiIBW";
const PASSWORD: &str = "e2e-pw-41d9";
const USER: &str = "e2e-user";

/// Prometheus behind TLS (and mTLS) and basic auth, with a client that can query it.
struct Secured {
    child: Child,
    port: u16,
    http: reqwest::Client,
    dir: std::path::PathBuf,
}

fn client_tls(ca: &Ca, client: Option<&Leaf>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert.clone()], c.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// Waits (up to [`PATIENCE`]) until the running agent's log has `line`; `case` names the
/// agent in the failure.
async fn wait_for_log(agent: &AgentProcess, line: &str, case: &str) {
    let what = format!("{case}: `{line}` in the agent's log");
    eventually(what, PATIENCE, async || {
        let log = agent.log();
        log.contains(line).then_some(()).ok_or(log)
    })
    .await;
}

/// The TCP port the process `pid` listens on: its one listening socket, found from its file
/// descriptors (`socket:[inode]`) in its network namespace's table of IPv4 sockets (state 0A is
/// LISTEN). `None` until it listens. For a receiver started on port 0, so that no port is
/// chosen before the receiver binds it, and that does not log the port it got
/// (VictoriaMetrics logs `:0`).
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&"0A") || !inodes.contains(*fields.get(9)?) {
            return None;
        }
        let (_, port) = fields[1].split_once(':')?;
        u16::from_str_radix(port, 16).ok()
    })
}

/// Waits (up to [`PATIENCE`]) for `child`, a server told to listen on 127.0.0.1:0, to listen;
/// the port it bound. Fails, with `log()`, if it exits first.
async fn bound_port(child: &mut Child, what: &str, log: impl Fn() -> String) -> u16 {
    let pid = child
        .id()
        .unwrap_or_else(|| panic!("{what} exited at once: {}", log()));
    eventually(format!("{what} listens"), PATIENCE, async || {
        if let Some(port) = listening_port(pid) {
            return Ok(port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening:\n{}", log());
        }
        Err(log())
    })
    .await
}

impl Secured {
    async fn start(dir: &Path, ca: &Ca, server: &Leaf, client: &Leaf) -> Secured {
        kubelet_push::http::install_crypto_provider();
        std::fs::write(dir.join("server.crt"), &server.cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
        std::fs::write(dir.join("client-ca.crt"), &ca.pem).unwrap();
        let web = format!(
            "tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/client-ca.crt\nbasic_auth_users:\n  {USER}: '{PASSWORD_HASH}'\n",
            d = dir.display()
        );
        std::fs::write(dir.join("web.yml"), web).unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 1h\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("receiver.log")).unwrap();
        // Port 0: Prometheus binds a port no one holds and the kernel's table says which.
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}/prometheus.yml", dir.display()))
            .arg(format!("--storage.tsdb.path={}/data", dir.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--web.config.file={}/web.yml", dir.display()))
            .arg("--web.enable-remote-write-receiver")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let log_path = dir.join("receiver.log");
        let port = bound_port(&mut child, "prometheus", || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        })
        .await;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls(ca, Some(client)))
            .no_proxy()
            .build()
            .unwrap();
        let secured = Secured {
            child,
            port,
            http,
            dir: dir.to_owned(),
        };
        eventually("prometheus ready", PATIENCE, async || {
            let r = secured.get("/-/ready", &[]).await;
            let ready = r.as_ref().is_ok_and(|r| r.status().is_success());
            ready
                .then_some(())
                .ok_or_else(|| format!("{r:?}\n{}", secured.log()))
        })
        .await;
        secured
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("receiver.log")).unwrap_or_default()
    }

    fn write_url(&self) -> String {
        format!("https://127.0.0.1:{}/api/v1/write", self.port)
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> reqwest::Result<reqwest::Response> {
        let mut url =
            reqwest::Url::parse(&format!("https://127.0.0.1:{}{path}", self.port)).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        self.http
            .get(url)
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
    }

    async fn query(&self, promql: &str) -> Vec<Value> {
        self.query_at(promql, now_ms()).await
    }

    async fn query_at(&self, promql: &str, time_ms: i64) -> Vec<Value> {
        let time = format!("{:.3}", time_ms as f64 / 1000.0);
        let text = self
            .get("/api/v1/query", &[("query", promql), ("time", &time)])
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn samples_appended(&self) -> f64 {
        let text = self
            .get("/metrics", &[])
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // A counter vector: absent until the first sample is appended.
        metric_value(
            &text,
            "prometheus_tsdb_head_samples_appended_total{type=\"float\"}",
        )
        .unwrap_or(0.0)
    }
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The samples the agent's `/metrics` text says it sent.
fn sent_in(text: &str) -> f64 {
    metric_value(text, "kubelet_push_samples_sent_total").unwrap_or(0.0)
}

/// Whether an agent's `/metrics` text shows `at_least` samples sent and none pending.
fn delivered(at_least: f64) -> impl Fn(&str) -> bool {
    move |text| {
        sent_in(text) >= at_least
            && metric_value(text, "kubelet_push_samples_pending").unwrap_or(1.0) == 0.0
    }
}

/// Waits until the agent has delivered `first` (and everything polled before), then more polls
/// after it, and stops it cleanly ([`wait_metrics_and_stop`]): its `/metrics` text at each of
/// the two points, and its log.
async fn deliver_more_then_stop(
    mut agent: AgentProcess,
    listen: &str,
    first: &str,
) -> (String, String, String) {
    let text = wait_metrics(
        &mut agent,
        listen,
        format!("{first} delivered"),
        delivered(1.0),
    )
    .await;
    let (text_after, log) = wait_metrics_and_stop(
        agent,
        listen,
        format!("more polls delivered after {first}"),
        delivered(sent_in(&text) + 1.0),
    )
    .await;
    (text, text_after, log)
}

fn dropped_nothing(text: &str) {
    for line in text
        .lines()
        .filter(|l| l.starts_with("kubelet_push_samples_dropped_total{"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test]
async fn prometheus_behind_mtls_and_basic_auth() {
    if !available(Kind::Prometheus) {
        return;
    }
    // Where the window that finds everything the agent sent starts.
    let started = now_ms();
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca();
    let server = leaf(&ca1, &["127.0.0.1"], false);
    let client = leaf(&ca1, &["kubelet-push"], true);
    let prom = Secured::start(dir.path(), &ca1, &server, &client).await;
    let kubelet = crate::support::simulated_kubelet(3, 11).await;
    let files = tempfile::tempdir().unwrap();
    let f = |name: &str, content: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let ca_file = f("ca.crt", &ca1.pem);
    let cert = f("tls.crt", &client.cert_pem);
    let key = f("tls.key", &client.key_pem);
    let password = f("password", "not-the-password\n");
    let mut args = vec![
        "--remote-ca-file",
        &ca_file,
        "--remote-cert-file",
        &cert,
        "--remote-key-file",
        &key,
        "--remote-basic-auth-username",
        USER,
        "--remote-basic-auth-password-file",
        &password,
        "--kubelet-pods=false",
    ];
    args.extend(super::ONE_SECOND_POLLS);
    let (child, listen) =
        AgentProcess::listening(&mut agent_command(&kubelet.url(), &prom.write_url(), &args)).await;

    // Wrong password: the first request is refused (the agent says so once), nothing is
    // stored, the agent keeps what it polled. Waiting for the refusal, not for a time, makes
    // sure a request with samples polled before the fix was refused before the fix.
    wait_for_log(&child, "remote write failed", "the wrong password").await;
    assert_eq!(prom.samples_appended().await, 0.0);
    let before_fix = now_ms();
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    // The backlog delivered, and more polls after it.
    let (text, text_after, log) = deliver_more_then_stop(child, &listen, "the backlog").await;
    dropped_nothing(&text);
    dropped_nothing(&text_after);
    let sent = super::samples_sent(&log);
    assert!(sent > 0);
    assert_eq!(
        prom.samples_appended().await,
        sent as f64,
        "Prometheus stored every sample the agent sent, backlog included"
    );
    // The backlog is there: samples polled while the password was wrong. The range reaches
    // back to before the test's start (the simulator stamps the node's memory with the
    // second it serves it), so it holds every sample however long the run took.
    let end = now_ms();
    let window_s = (end - started) / 1000 + 30;
    let stored = prom
        .query_at(
            &format!("node_memory_working_set_bytes{{job=\"kubelet\"}}[{window_s}s]"),
            end,
        )
        .await;
    let stamps: Vec<f64> = stored
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|pair| pair[0].as_f64().unwrap())
        .collect();
    assert!(
        stamps.iter().any(|t| *t * 1000.0 < before_fix as f64),
        "no sample from before the fix ({before_fix} ms): {stamps:?}"
    );
    let memory = prom.query("node_memory_working_set_bytes").await;
    assert_eq!(memory.len(), 1, "{memory:?}");
    let value: f64 = memory[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value > 0.0);
    assert_eq!(log.matches("remote write failed").count(), 1, "{log}");
    assert!(log.contains("401"), "{log}");
    assert_eq!(log.matches("remote write recovered").count(), 1, "{log}");
    assert!(
        !log.contains(PASSWORD) && !log.contains("not-the-password"),
        "{log}"
    );

    // Credentials Prometheus turns away at the TLS handshake: one warning that says why. The
    // agent is stopped once it has said it (its retries after the first failure log at debug
    // only).
    let other = ca();
    let wrong_ca = f("other-ca.crt", &other.pem);
    let refused = [
        (
            "a CA that did not sign Prometheus's certificate",
            vec![
                "--remote-ca-file",
                &wrong_ca,
                "--remote-cert-file",
                &cert,
                "--remote-key-file",
                &key,
            ],
            "signed by an unknown authority, not by the CA in --remote-ca-file",
        ),
        (
            "no client certificate, which Prometheus requires",
            vec!["--remote-ca-file", &ca_file],
            "requires a client certificate; pass --remote-cert-file and --remote-key-file",
        ),
    ];
    for (case, mut args, says) in refused {
        args.extend([
            "--remote-basic-auth-username",
            USER,
            "--remote-basic-auth-password-file",
            &password,
            "--kubelet-pods=false",
            "--shutdown-timeout",
            "1s",
        ]);
        args.extend(super::ONE_SECOND_POLLS);
        let child =
            AgentProcess::spawn(&mut agent_command(&kubelet.url(), &prom.write_url(), &args));
        wait_for_log(&child, "remote write failed", case).await;
        let log = stop_agent(child).await.1;
        assert_eq!(
            log.matches("remote write failed").count(),
            1,
            "{case}: {log}"
        );
        assert!(log.contains(says), "{case}: {log}");
        assert!(!log.contains("ERROR"), "{case}: {log}");
    }
}

#[tokio::test]
async fn victoria_metrics_behind_tls_and_basic_auth() {
    if !available(Kind::VictoriaMetrics) {
        return;
    }
    kubelet_push::http::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca();
    let server = leaf(&ca1, &["127.0.0.1"], false);
    let d = dir.path();
    std::fs::write(d.join("server.crt"), &server.cert_pem).unwrap();
    std::fs::write(d.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(d.join("ca.crt"), &ca1.pem).unwrap();
    std::fs::write(d.join("password"), format!("{PASSWORD}\n")).unwrap();
    let log = std::fs::File::create(d.join("receiver.log")).unwrap();
    // Port 0: VictoriaMetrics binds a port no one holds; the kernel's table says which.
    let mut vm = Command::new("victoria-metrics")
        .arg("-httpListenAddr=127.0.0.1:0")
        .arg(format!("-storageDataPath={}/data", d.display()))
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-retentionPeriod=100y")
        .arg("-tls")
        .arg(format!("-tlsCertFile={}/server.crt", d.display()))
        .arg(format!("-tlsKeyFile={}/server.key", d.display()))
        .arg(format!("-httpAuth.username={USER}"))
        .arg(format!("-httpAuth.password={PASSWORD}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start victoria-metrics");
    let port = bound_port(&mut vm, "victoria-metrics", || {
        std::fs::read_to_string(d.join("receiver.log")).unwrap_or_default()
    })
    .await;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(&ca1, None))
        .no_proxy()
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
    };
    eventually("victoria-metrics ready", PATIENCE, async || {
        let r = get("/health".into()).await;
        let ready = r.as_ref().is_ok_and(|r| r.status().is_success());
        ready.then_some(()).ok_or_else(|| format!("{r:?}"))
    })
    .await;
    // Without credentials VictoriaMetrics refuses: the auth is real.
    let anonymous = http
        .get(format!("{base}/api/v1/query?query=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let kubelet = crate::support::simulated_kubelet(3, 12).await;
    let (ca_file, pw) = (
        d.join("ca.crt").to_str().unwrap().to_owned(),
        d.join("password").to_str().unwrap().to_owned(),
    );
    let mut args = vec![
        "--remote-ca-file",
        &ca_file,
        "--remote-basic-auth-username",
        USER,
        "--remote-basic-auth-password-file",
        &pw,
        "--kubelet-pods=false",
        // The log must have no warning, so the stop's drain must finish: a healthy one returns
        // at once, and this bound is far above what a loaded machine needs for it.
        "--shutdown-timeout",
        "30s",
    ];
    args.extend(super::ONE_SECOND_POLLS);
    let write_url = format!("{base}/api/v1/write");
    let (child, listen) =
        AgentProcess::listening(&mut agent_command(&kubelet.url(), &write_url, &args)).await;
    // A first delivery, and more polls after it.
    let (text, _, log) = deliver_more_then_stop(child, &listen, "the first poll").await;
    dropped_nothing(&text);
    let sent = super::samples_sent(&log);
    assert!(get("/internal/force_flush".into())
        .await
        .unwrap()
        .status()
        .is_success());
    let metrics = get("/metrics".into()).await.unwrap().text().await.unwrap();
    assert_eq!(
        metric_value(&metrics, "vm_rows_inserted_total{type=\"promremotewrite\"}"),
        Some(sent as f64),
        "{log}"
    );
    let time = format!("{:.3}", now_ms() as f64 / 1000.0);
    let body = get(format!(
        "/api/v1/query?query=node_memory_working_set_bytes&time={time}"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert!(!log.contains(PASSWORD), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

/// Debian's tinyproxy on 127.0.0.1 with its own configuration; its log records every
/// request it forwards or tunnels.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

/// How tinyproxy says it could not bind its port (exit status 71).
const PORT_TAKEN: &str = "Could not create listening sockets";

/// A port for tinyproxy, which refuses `Port 0`: a random one outside the kernel's ephemeral
/// range, so that no `bind(0)` elsewhere (an agent on 127.0.0.1:0, a receiver, a
/// `ReservedPort`, an outgoing connection) is handed it while tinyproxy starts. A service on a
/// fixed port may hold it: then tinyproxy exits saying [`PORT_TAKEN`] and gets another.
fn proxy_port(attempt: u64) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|n| n.parse::<u32>().ok());
    let (low, high) = (
        bounds.next().unwrap_or(32768),
        bounds.next().unwrap_or(60999),
    );
    // Below the range from 10000 (above the well-known services), or else above it.
    let (from, to) = if low > 11_000 {
        (10_000, low)
    } else {
        (high + 1, 65_536)
    };
    assert!(
        to > from + 100,
        "no room outside the ephemeral ports {low}-{high}"
    );
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u64(attempt);
    random.write_u32(std::process::id());
    random.write_i64(now_ms());
    (from + (random.finish() % u64::from(to - from)) as u32) as u16
}

impl Tinyproxy {
    async fn start(dir: &Path) -> Option<Tinyproxy> {
        if !Path::new("/usr/bin/tinyproxy").is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tinyproxy is not installed; .ci/run installs it with apt-get"
            );
            eprintln!("SKIPPED: tinyproxy not installed (apt-get install tinyproxy)");
            return None;
        }
        let log = dir.join("tinyproxy.log");
        // A start-up, not a retry of a test: each attempt that finds its port taken tries
        // another; ten in a row taken would mean something else is wrong.
        for attempt in 0..10 {
            let port = proxy_port(attempt);
            let _ = std::fs::remove_file(&log);
            // Foreground (-d), no user switch (runs as whoever runs the test), only 127.0.0.1,
            // CONNECT to any port (receivers listen on free ports, not 443).
            let config = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nLogFile \"{}\"\nLogLevel Info\nAllow 127.0.0.1\nDisableViaHeader Yes\nBasicAuth proxyuser proxy-pw-93e1\n",
                log.display()
            );
            std::fs::write(dir.join("tinyproxy.conf"), config).unwrap();
            let mut child = Command::new("/usr/bin/tinyproxy")
                .args(["-d", "-c"])
                .arg(dir.join("tinyproxy.conf"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start tinyproxy");
            // tinyproxy logs this once it listens: it, not another process that happens to
            // hold the port, is the one answering there. `false`: it exited, its port taken.
            let listens = eventually("tinyproxy starts", PATIENCE, async || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Accepting connections") {
                    return Ok(true);
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    use tokio::io::AsyncReadExt;
                    let _ = child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut stderr)
                        .await;
                    assert!(
                        stderr.contains(PORT_TAKEN),
                        "tinyproxy exited ({status}): {stderr}\n{text}"
                    );
                    return Ok(false);
                }
                Err(text)
            })
            .await;
            if listens {
                return Some(Tinyproxy { child, port, log });
            }
        }
        panic!("tinyproxy found its port taken ten times in a row");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://proxyuser:proxy-pw-93e1@127.0.0.1:{}", self.port)
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The agent with proxy settings `env` and `extra` flags, pushing to `remote` from `kubelet`
/// until `done` holds of its `/metrics` text (up to [`PATIENCE`]: what the caller is about
/// happened), then stopped, cleanly; its log.
async fn through_proxy(
    kubelet: &str,
    remote: &str,
    env: &[(&str, &str)],
    extra: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut cmd = agent_command(kubelet, remote, extra);
    cmd.args([
        "--kubelet-pods=false",
        "--log-level",
        "trace",
        // The callers require a log without warnings, so the stop's drain must finish: a
        // healthy one returns at once, and this bound is far above what a loaded machine
        // needs for it.
        "--shutdown-timeout",
        "30s",
    ])
    .args(super::ONE_SECOND_POLLS)
    .env_remove("HTTPS_PROXY")
    .env_remove("HTTP_PROXY")
    .env_remove("NO_PROXY")
    .env_remove("https_proxy")
    .env_remove("http_proxy")
    .env_remove("no_proxy")
    .env_remove("ALL_PROXY")
    .env_remove("all_proxy");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (agent, listen) = AgentProcess::listening(&mut cmd).await;
    wait_metrics_and_stop(agent, &listen, what, done).await.1
}

#[tokio::test]
async fn pushes_go_through_a_real_forward_proxy() {
    if !available(Kind::Prometheus) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(proxy) = Tinyproxy::start(dir.path()).await else {
        return;
    };
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = Real::launch(Kind::Prometheus, prom_dir.path()).await;
    let kubelet = crate::support::simulated_kubelet(2, 13).await;
    let k = kubelet.url();
    let post = format!("POST http://127.0.0.1:{}/api/v1/write", prom.port);
    let (p, post) = (&proxy, post.as_str());

    // HTTP_PROXY for an http receiver: tinyproxy forwards the POST itself. With `auto`,
    // Prometheus 2.42 answers the first 2.0 request 204 without counts, and the 1.0 resend
    // follows at once on the pooled connection tinyproxy closes after each answer: the client
    // sends it again on a new connection, without a warning (no WARN is asserted below).
    let log = through_proxy(
        &k,
        &prom.write_url(),
        &[("HTTP_PROXY", &proxy.url())],
        &[],
        "a push through the proxy",
        |m| p.log().contains(post) && sent_in(m) > 0.0,
    )
    .await;
    assert!(!log.contains("WARN"), "{log}");
    let plog = proxy.log();
    assert!(plog.contains(post), "tinyproxy saw no POST:\n{plog}");
    let kubelet_port = reqwest::Url::parse(&k).unwrap().port().unwrap();
    assert!(
        !plog.contains(&format!("127.0.0.1:{kubelet_port}")),
        "a kubelet request went through the proxy:\n{plog}"
    );
    for secret in ["proxy-pw-93e1", "cHJveHl1c2VyOnByb3h5LXB3LTkzZTE"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    // --remote-proxy-url wins over the environment (which here points nowhere).
    let before = proxy.log().len();
    let log = through_proxy(
        &k,
        &prom.write_url(),
        &[
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ],
        &["--remote-proxy-url", &proxy.url()],
        "a push through --remote-proxy-url",
        |m| p.log()[before..].contains(post) && sent_in(m) > 0.0,
    )
    .await;
    assert!(!log.contains("WARN"), "{log}");
    let plog = proxy.log();
    assert!(
        plog[before..].contains(post),
        "--remote-proxy-url not used:\n{plog}"
    );
    for secret in ["proxy-pw-93e1", "cHJveHl1c2VyOnByb3h5LXB3LTkzZTE"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    // NO_PROXY naming the receiver: direct, the proxy sees nothing new. The agent is stopped
    // once it has delivered, so there was a push for the proxy not to see.
    let before = proxy.log().len();
    let log = through_proxy(
        &k,
        &prom.write_url(),
        &[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")],
        &[],
        "a push with NO_PROXY",
        |m| sent_in(m) > 0.0,
    )
    .await;
    assert!(!log.contains("WARN"), "{log}");
    assert!(super::samples_sent(&log) > 0, "{log}");
    assert!(
        !proxy.log()[before..].contains("POST"),
        "NO_PROXY ignored:\n{}",
        proxy.log()
    );
    prom.make_visible().await;
    assert!(!prom
        .query("node_memory_working_set_bytes", now_ms())
        .await
        .is_empty());
}

/// HTTPS_PROXY for an https receiver: the agent tunnels (CONNECT) through tinyproxy, TLS
/// end to end with the receiver.
#[tokio::test]
async fn https_pushes_tunnel_through_the_proxy() {
    if !available(Kind::Prometheus) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(proxy) = Tinyproxy::start(dir.path()).await else {
        return;
    };
    let prom_dir = tempfile::tempdir().unwrap();
    let ca1 = ca();
    let server = leaf(&ca1, &["127.0.0.1"], false);
    let client = leaf(&ca1, &["kubelet-push"], true);
    let prom = Secured::start(prom_dir.path(), &ca1, &server, &client).await;
    let files = tempfile::tempdir().unwrap();
    let f = |name: &str, content: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (ca_file, cert, key, pw) = (
        f("ca.crt", &ca1.pem),
        f("tls.crt", &client.cert_pem),
        f("tls.key", &client.key_pem),
        f("pw", PASSWORD),
    );
    let kubelet = crate::support::simulated_kubelet(2, 14).await;
    let connect = format!("CONNECT 127.0.0.1:{}", prom.port);
    let (p, connect) = (&proxy, connect.as_str());
    let log = through_proxy(
        &kubelet.url(),
        &prom.write_url(),
        &[("https_proxy", &proxy.url())],
        &[
            "--remote-ca-file",
            &ca_file,
            "--remote-cert-file",
            &cert,
            "--remote-key-file",
            &key,
            "--remote-basic-auth-username",
            USER,
            "--remote-basic-auth-password-file",
            &pw,
        ],
        "a push tunnelled through the proxy",
        |m| p.log().contains(connect) && sent_in(m) > 0.0,
    )
    .await;
    assert!(!log.contains("WARN"), "{log}");
    let plog = proxy.log();
    assert!(
        plog.contains(connect),
        "no CONNECT in the proxy's log:\n{plog}"
    );
    assert!(prom.samples_appended().await > 0.0);
    for secret in [PASSWORD, "proxy-pw-93e1", "cHJveHl1c2VyOnByb3h5LXB3LTkzZTE"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// The `up` values the receiver accepted.
fn ups(rx: &kubelet_push::testkit::receiver::Receiver) -> Vec<f64> {
    let series = rx.accepted_series();
    crate::support::named(&series, "up")
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.value))
        .collect()
}

/// The kubelet goes through a proxy only when `--kubelet-proxy-url` asks: the proxy's log
/// shows the summary's GET, the receiver (reached directly) gets the polls, and the proxy's
/// password is in no log line.
#[tokio::test]
async fn the_kubelet_is_reached_through_a_proxy_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let Some(proxy) = Tinyproxy::start(dir.path()).await else {
        return;
    };
    let rx = kubelet_push::testkit::receiver::Receiver::start()
        .await
        .unwrap();
    let kubelet = crate::support::simulated_kubelet(2, 15).await;
    let kubelet_port = reqwest::Url::parse(&kubelet.url()).unwrap().port().unwrap();
    let summary_get = format!("GET http://127.0.0.1:{kubelet_port}/stats/summary");
    let (p, r, get) = (&proxy, &rx, summary_get.as_str());
    let log = through_proxy(
        &kubelet.url(),
        &rx.url(),
        &[],
        &["--kubelet-proxy-url", &proxy.url()],
        "two polls through the proxy delivered",
        |_| p.log().contains(get) && ups(r).len() >= 2,
    )
    .await;
    assert!(!log.contains("WARN"), "{log}");
    let plog = proxy.log();
    assert!(
        plog.contains(&summary_get),
        "no summary GET in the proxy's log:\n{plog}"
    );
    assert!(
        !plog.contains("POST"),
        "the receiver went through the proxy:\n{plog}"
    );
    let ups = ups(&rx);
    assert!(
        ups.len() >= 2 && ups.iter().all(|v| *v == 1.0),
        "up: {ups:?}"
    );
    for secret in ["proxy-pw-93e1", "cHJveHl1c2VyOnByb3h5LXB3LTkzZTE"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    // HTTP_PROXY alone is for the receiver: the kubelet is reached directly. The agent is
    // stopped once a poll was delivered, so there was a poll for the proxy not to see.
    let before = proxy.log().len();
    let log = through_proxy(
        &kubelet.url(),
        &rx.url(),
        &[("HTTP_PROXY", &proxy.url())],
        &[],
        "a push through the proxy",
        |m| p.log()[before..].contains("POST") && sent_in(m) > 0.0,
    )
    .await;
    assert!(!log.contains("WARN"), "{log}");
    let plog = proxy.log();
    assert!(
        !plog[before..].contains(&summary_get),
        "HTTP_PROXY took the kubelet:\n{plog}"
    );
    assert!(
        plog[before..].contains("POST"),
        "HTTP_PROXY not used for the receiver:\n{plog}"
    );
}
