//! Tests of `config`: flags and config files in, validated settings or the flag-naming error out.

use super::*;
use clap::Parser;

fn config(args: &[&str]) -> Result<Config, ConfigError> {
    let cli = crate::cli::Cli::try_parse_from(
        std::iter::once("kubelet-push").chain(args.iter().copied()),
    )
    .expect("flags parse");
    Config::from_args(&cli.agent)
}

#[test]
fn pod_labels_become_kube_state_metrics_names() {
    let c = config(&["--remote-url=http://r/w"]).unwrap();
    assert!(c.poll.kubelet_pods, "on by default");
    assert!(c.poll.pod_labels.is_empty());
    let c = config(&[
        "--remote-url=http://r/w",
        "--pod-label",
        "app.kubernetes.io/name",
        "--pod-label=team",
    ])
    .unwrap();
    assert_eq!(
        c.poll.pod_labels,
        vec![
            (
                "app.kubernetes.io/name".into(),
                "label_app_kubernetes_io_name".into()
            ),
            ("team".into(), "label_team".into()),
        ]
    );
    let c = config(&["--remote-url=http://r/w", "--kubelet-pods=false"]).unwrap();
    assert!(!c.poll.kubelet_pods);
    let refused = |args: &[&str], want: &str| {
        let mut all = vec!["--remote-url=http://r/w"];
        all.extend_from_slice(args);
        let e = config(&all).unwrap_err().to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    };
    refused(
        &["--pod-label=a.b", "--pod-label=a/b"],
        "both be sent as label_a_b",
    );
    refused(
        &["--pod-label=team", "--label=label_team=x"],
        "--label sets too",
    );
    refused(&["--pod-label="], "must not be empty");
    refused(
        &["--pod-label=app", "--kubelet-pods=false"],
        "--kubelet-pods=false",
    );
    refused(&["--label=metrics_path=x"], "set by kubelet-push itself");
    let eleven: Vec<String> = (0..11).map(|i| format!("--pod-label=l{i}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    refused(&eleven, "at most 10");
}

#[test]
fn defaults() {
    let c = config(&["--remote-url", "http://127.0.0.1:9090/api/v1/write"]).unwrap();
    assert_eq!(c.poll.interval, Duration::from_secs(10));
    assert_eq!(c.poll.max_stats_age, Duration::from_secs(120));
    assert_eq!(c.poll.job, "kubelet");
    assert_eq!(c.mode, Mode::Run);
    // `auto` (issue 22): 2.0 first, either way as the receiver shows.
    assert_eq!(
        (c.remotes[0].protocol, c.remotes[0].auto),
        (Protocol::V2, true)
    );
    assert_eq!(c.max_samples_per_send, 2000);
    // A receiver back from an outage is noticed within 3 s, so that the first write is
    // accepted within 5 s even over a 600 ms round trip with TLS (issue 20).
    assert_eq!(
        (c.delivery.min_backoff, c.delivery.max_backoff),
        (Duration::from_secs(1), Duration::from_secs(3))
    );
    match &c.poll.kubelet.source {
        Source::Http(u) => assert_eq!(u.as_str(), "https://127.0.0.1:10250/"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn remote_url_is_required_unless_dry_run() {
    let e = config(&[]).unwrap_err();
    assert_eq!(e.flag, "--remote-url");
    let c = config(&["--dry-run", "--kubelet-url", "file://x.json"]).unwrap();
    assert_eq!(c.mode, Mode::DryRun);
    assert!(c.remotes.is_empty());
    match c.poll.kubelet.source {
        Source::File(p) => assert_eq!(p, PathBuf::from("x.json")),
        other => panic!("{other:?}"),
    }
}

fn file_source(url: &str) -> PathBuf {
    match parse_kubelet_url(url).unwrap() {
        Source::File(p) => p,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn file_urls_are_urls_and_relative_paths_stay_literal() {
    assert_eq!(file_source("file://x.json"), PathBuf::from("x.json"));
    assert_eq!(
        file_source("file://captures/node a.json"),
        PathBuf::from("captures/node a.json")
    );
    #[cfg(unix)]
    {
        assert_eq!(file_source("file:///x/y.json"), PathBuf::from("/x/y.json"));
        assert_eq!(
            file_source("file:///x/node%20a.json"),
            PathBuf::from("/x/node a.json")
        );
        assert_eq!(
            file_source("file://localhost/x/y.json"),
            PathBuf::from("/x/y.json")
        );
    }
    #[cfg(windows)]
    {
        let want = PathBuf::from(r"C:\x\y.json");
        assert_eq!(file_source("file:///C:/x/y.json"), want);
        assert_eq!(file_source("file://C:/x/y.json"), want);
        assert_eq!(file_source(r"file://C:\x\y.json"), want);
        assert_eq!(
            file_source("file:///c:/x/y%20z.json"),
            PathBuf::from(r"c:\x\y z.json")
        );
        assert_eq!(file_source(r"file://x\y.json"), PathBuf::from(r"x\y.json"));
    }
}

#[test]
fn service_account_files_are_found_in_the_hostprocess_sandbox_first() {
    let sandbox = tempfile::tempdir().unwrap();
    let dir = sandbox.path().join(SA_DIR);
    assert_eq!(
        service_account_file(SA_TOKEN, Some(sandbox.path())),
        service_account_file(SA_TOKEN, None),
        "an empty sandbox falls back to the standard path"
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(SA_TOKEN), "t").unwrap();
    std::fs::write(dir.join(SA_CA), "c").unwrap();
    assert_eq!(
        service_account_file(SA_TOKEN, Some(sandbox.path())),
        Some(dir.join(SA_TOKEN))
    );
    assert_eq!(
        service_account_file(SA_CA, Some(sandbox.path())),
        Some(dir.join(SA_CA))
    );
}

#[test]
fn rooted_paths_are_found_in_the_hostprocess_sandbox_first() {
    let sandbox = tempfile::tempdir().unwrap();
    let root = Some(sandbox.path());
    // Unique, so nothing outside the sandbox answers for it.
    let dir = format!("kubelet-push-sandbox-test-{}", std::process::id());
    let inside = sandbox.path().join(&dir).join("remote").join("token");
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    std::fs::write(&inside, "t").unwrap();
    for given in [
        format!("/{dir}/remote/token"),
        format!("\\{dir}\\remote\\token"),
        format!("C:\\{dir}\\remote\\token"),
        format!("c:/{dir}/remote/token"),
        // Doubled and mixed separators (not leading: `//x` is a UNC share on Windows).
        format!("/{dir}//remote/\\token"),
    ] {
        assert!(
            !Path::new(&given).exists(),
            "{given} exists outside the sandbox"
        );
        assert_eq!(in_sandbox(Path::new(&given), root), inside, "{given}");
        assert_eq!(
            in_sandbox(Path::new(&given), None),
            PathBuf::from(&given),
            "no sandbox: {given}"
        );
    }
    for unchanged in [
        // Relative, also to a drive's working directory: never under the sandbox.
        format!("{dir}/remote/token"),
        format!("C:{dir}\\remote\\token"),
        // Not a file in the sandbox: the path as given, for the error to name.
        format!("/{dir}/remote/other"),
        format!("C:\\{dir}\\remote"),
        "/".to_owned(),
        "C:\\".to_owned(),
    ] {
        assert_eq!(
            in_sandbox(Path::new(&unchanged), root),
            PathBuf::from(&unchanged),
            "{unchanged}"
        );
    }
}

/// Every file flag, the config file and its keys: taken from the sandbox, and shown there
/// by `check-config`; a file missing from both places is named as given.
#[test]
fn every_file_setting_is_looked_up_in_the_sandbox() {
    let sandbox = tempfile::tempdir().unwrap();
    let dir = format!("kubelet-push-sandbox-flags-{}", std::process::id());
    let put = |name: &str, content: &str| {
        let p = sandbox.path().join(&dir).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        (format!("/{dir}/{name}"), p.display().to_string())
    };
    let ca = rcgen::generate_simple_self_signed(vec!["r.example".to_owned()]).unwrap();
    let (kubelet_token, kubelet_token_in) = put("kubelet-token", "k");
    let (kubelet_ca, kubelet_ca_in) = put("kubelet-ca.crt", &ca.cert.pem());
    let (password, password_in) = put("password", "p");
    let (remote_ca, remote_ca_in) = put("ca.crt", &ca.cert.pem());
    let (cert, cert_in) = put("tls.crt", &ca.cert.pem());
    let (key, key_in) = put("tls.key", &ca.signing_key.serialize_pem());
    let parse = |args: &[&str]| {
        crate::cli::Cli::try_parse_from(std::iter::once("kubelet-push").chain(args.iter().copied()))
            .expect("flags parse")
    };
    let flags = [
        "--remote-url=https://r.example/w",
        "--kubelet-token-file",
        &kubelet_token,
        "--kubelet-ca-file",
        &kubelet_ca,
        "--remote-basic-auth-username=u",
        "--remote-basic-auth-password-file",
        &password,
        "--remote-ca-file",
        &remote_ca,
        "--remote-cert-file",
        &cert,
        "--remote-key-file",
        &key,
    ];
    let c = Config::from_args_in(&parse(&flags).agent, Some(sandbox.path()), None).unwrap();
    let text = c.describe();
    for (name, path) in [
        ("kubelet-token-file", &kubelet_token_in),
        ("kubelet-ca-file", &kubelet_ca_in),
        ("remote 1 basic-auth-password-file", &password_in),
        ("remote 1 ca-file", &remote_ca_in),
        ("remote 1 cert-file", &cert_in),
        ("remote 1 key-file", &key_in),
    ] {
        assert!(
            text.contains(&format!("{name}: {path}\n")),
            "{name}: {text}"
        );
    }
    assert_eq!(
        c.poll.kubelet.token_file.as_deref(),
        Some(Path::new(&kubelet_token_in))
    );

    let (token, token_in) = put("token", "t");
    let (file, _) = put(
            "kp.yaml",
            &format!("remote-write:\n  - url: https://r.example/w\n    bearer-token-file: {token}\n    ca-file: {remote_ca}\n"),
        );
    let c = Config::from_args_in(
        &parse(&["--config-file", &file]).agent,
        Some(sandbox.path()),
        None,
    )
    .unwrap();
    let text = c.describe();
    for (name, path) in [
        ("remote 1 bearer-token-file", &token_in),
        ("remote 1 ca-file", &remote_ca_in),
    ] {
        assert!(
            text.contains(&format!("{name}: {path}\n")),
            "{name}: {text}"
        );
    }

    // Missing in the sandbox too: the error names the path as given.
    let missing = format!("/{dir}/missing");
    let e = Config::from_args_in(
        &parse(&["--remote-url=http://r/w", "--kubelet-token-file", &missing]).agent,
        Some(sandbox.path()),
        None,
    )
    .unwrap_err();
    assert_eq!(e.flag, "--kubelet-token-file");
    assert!(
        e.reason.starts_with(&format!("cannot read {missing}:")),
        "{e}"
    );
}

#[test]
fn bad_values_name_their_flag() {
    let r = ["--remote-url", "http://127.0.0.1:1/w"];
    let cases: &[(&[&str], &str)] = &[
        (&["--kubelet-url", "ftp://x"], "--kubelet-url"),
        (&["--kubelet-url", "file://"], "--kubelet-url"),
        (&["--label", "novalue"], "--label"),
        (&["--label", "1abc=x"], "--label"),
        (&["--label", "pod=x"], "--label"),
        (&["--label", "job=x"], "--label"),
        (&["--label", "__x=y"], "--label"),
        (&["--label", "a=x", "--label", "a=y"], "--label"),
        (&["--label", "a="], "--label"),
        (
            &["--remote-header", "Content-Type=text/plain"],
            "--remote-header",
        ),
        (&["--remote-header", "user-agent=x"], "--remote-header"),
        (&["--remote-header", "bad header=x"], "--remote-header"),
        (&["--max-samples-per-send", "0"], "--max-samples-per-send"),
        (&["--job", ""], "--job"),
        (
            &["--kubelet-token-file", "/nonexistent/token"],
            "--kubelet-token-file",
        ),
    ];
    for (extra, flag) in cases {
        let mut args: Vec<&str> = r.to_vec();
        args.extend_from_slice(extra);
        let e = config(&args).expect_err(&format!("{extra:?} should be rejected"));
        assert_eq!(e.flag, *flag, "{extra:?}: {e}");
    }
    let e = config(&["--remote-url", "localhost:9090"]).unwrap_err();
    assert_eq!(e.flag, "--remote-url");
}

#[test]
fn describe_names_every_setting_and_hides_secrets() {
    // A directory the agent can create: the start's check of --buffer-dir runs here too.
    let dir = tempfile::tempdir().unwrap();
    let buffer = dir.path().join("kubelet-push");
    let buffer = buffer.to_str().unwrap();
    let c = config(&[
        "--remote-url",
        "https://alice:hunter2@mimir.example:443/api/v1/push?api_key=s3cret",
        // Not Authorization: beside user:password in the URL that is refused.
        "--remote-header",
        "X-Api-Key=tok3n",
        "--label",
        "cluster=edge-7",
        "--buffer-dir",
        buffer,
    ])
    .unwrap();
    let text = c.describe();
    // A distinctive user name: "user" is part of the remote-basic-auth-username line.
    for secret in ["hunter2", "alice", "s3cret", "tok3n"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    for line in [
        "mode: run\n",
        "remote 1 url: https://redacted@mimir.example/api/v1/push?redacted\n",
        "remote 1 header: [x-api-key=(hidden)]\n",
        "remote 1 version: auto (2, then 1 if the receiver does not take 2; 2 again if it refuses 1)\n",
        "label: [cluster=edge-7]\n",
        &format!("buffer-dir: {buffer}\n"),
        "interval: 10s\n",
        "listen-address: off\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn remote_write_version_is_1_2_or_auto() {
    let r = "--remote-url=http://r/w";
    let c = config(&[r, "--remote-write-version", "2"]).unwrap();
    assert_eq!(c.remotes[0].protocol, Protocol::V2);
    assert!(c
        .describe()
        .contains("remote 1 version: 2 (1 if the receiver does not take 2)\n"));
    assert!(!c.remotes[0].auto);
    let c = config(&[r, "--remote-write-version=1"]).unwrap();
    assert_eq!(c.remotes[0].protocol, Protocol::V1);
    let c = config(&[r, "--remote-write-version=auto"]).unwrap();
    assert_eq!(
        (c.remotes[0].protocol, c.remotes[0].auto),
        (Protocol::V2, true)
    );
    assert!(c.describe().contains(
        "remote 1 version: auto (2, then 1 if the receiver does not take 2; 2 again if it refuses 1)\n"
    ));
    for bad in ["3", "2.0", "v2", "", "Auto"] {
        let e = config(&[r, "--remote-write-version", bad]).unwrap_err();
        assert_eq!(e.flag, "--remote-write-version", "{bad}");
        assert!(
            e.to_string()
                .contains("must be auto (2.0, or 1.0 for a receiver that does not take 2.0), 1"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn labels_and_headers_parse() {
    let c = config(&[
        "--remote-url",
        "http://127.0.0.1:1/w",
        "--label",
        "cluster=prod",
        "--label",
        "Region=eu-west",
        "--remote-header",
        "X-Scope-OrgID=team-a",
    ])
    .unwrap();
    assert_eq!(
        c.poll.external_labels,
        vec![
            ("cluster".into(), "prod".into()),
            ("Region".into(), "eu-west".into())
        ]
    );
    let h = &c.remotes[0].headers;
    assert_eq!(h[0].0.as_str(), "x-scope-orgid");
    assert_eq!(h[0].1.to_str().unwrap(), "team-a");
    assert!(h[0].1.is_sensitive());
}

#[test]
fn several_remote_urls_share_the_remote_flags() {
    let c = config(&[
        "--remote-url",
        "http://a:9090/api/v1/write",
        "--remote-url=https://b.example/push,https://c.example/push",
        "--remote-header",
        "X-Scope-OrgID=t1",
        "--remote-write-version",
        "2",
        "--remote-timeout",
        "7s",
    ])
    .unwrap();
    let urls: Vec<&str> = c.remotes.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://a:9090/api/v1/write",
            "https://b.example/push",
            "https://c.example/push"
        ]
    );
    for r in &c.remotes {
        assert_eq!(r.protocol, Protocol::V2);
        assert_eq!(r.timeout, Duration::from_secs(7));
        assert_eq!(r.headers[0].0.as_str(), "x-scope-orgid");
    }
    let e = config(&["--remote-url", "http://a/w", "--remote-url", "http://a/w"]).unwrap_err();
    assert_eq!(e.flag, "--remote-url");
    assert!(
        e.reason.contains("destinations 1 and 2 are the same URL"),
        "{e}"
    );
}

#[test]
fn buffer_subdirectories_are_stable_and_ignore_credentials() {
    let dir = |u: &str| RemoteSettings::new(u.parse().unwrap()).buffer_subdir();
    // Fixed: a release that changed these would strand every buffered backlog.
    assert_eq!(
        dir("http://prometheus:9090/api/v1/write"),
        "prometheus-9090-13c7591b9258bfb8"
    );
    assert_eq!(
        dir("https://u:p@mimir.example/api/v1/push"),
        dir("https://other:secret@mimir.example/api/v1/push")
    );
    assert!(dir("https://mimir.example/api/v1/push").starts_with("mimir.example-443-"));
    assert_ne!(dir("http://a/x?tenant=1"), dir("http://a/x?tenant=2"));
    assert!(dir("http://[::1]:9/w").starts_with("___1_-9-"));
}

fn config_file(text: &str) -> (tempfile::NamedTempFile, String) {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let path = f.path().display().to_string();
    (f, path)
}

#[test]
fn config_file_entries_have_their_own_access() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n\n").unwrap();
    let (_f, path) = config_file(&format!(
            "remote-write:\n  - url: http://a/w\n  - url: https://thanos.example/api/v1/receive\n    bearer-token-file: {}\n    proxy-url: http://proxy:3128\n",
            token.display()
        ));
    let c = config(&["--config-file", &path]).unwrap();
    let text = c.describe();
    assert!(
        text.contains("remote 1 bearer-token-file: none\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "remote 2 bearer-token-file: {}\n",
            token.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("remote 2 proxy-url: http://proxy:3128/\n"),
        "{text}"
    );
    assert!(!text.contains("t0k3n"), "{text}");
}

#[test]
fn config_file_gives_each_destination_its_settings() {
    let (_f, path) = config_file(
            "remote-write:\n  - url: http://a:9090/api/v1/write\n  - url: https://mimir.example/api/v1/push\n    version: 2\n    timeout: 5s\n    headers:\n      X-Scope-OrgID: tenant-1\n",
        );
    let c = config(&["--config-file", &path]).unwrap();
    assert_eq!(c.remotes.len(), 2);
    let (a, b) = (&c.remotes[0], &c.remotes[1]);
    assert_eq!(
        (a.protocol, a.auto, a.timeout),
        (Protocol::V2, true, DEFAULT_REMOTE_TIMEOUT)
    );
    assert!(a.headers.is_empty());
    assert_eq!(
        (b.protocol, b.timeout),
        (Protocol::V2, Duration::from_secs(5))
    );
    assert_eq!(b.headers[0].0.as_str(), "x-scope-orgid");
    assert_eq!(b.headers[0].1.to_str().unwrap(), "tenant-1");
    assert!(c
        .describe()
        .contains("remote 2 header: [x-scope-orgid=tenant-1]\n"));
}

/// Auth errors are retried unless the flag or the destination's file key says otherwise.
#[test]
fn retry_auth_errors_by_flag_and_file_key() {
    let r = "--remote-url=http://r/w";
    let c = config(&[r]).unwrap();
    assert!(c.remotes[0].retry_auth_errors);
    assert!(c
        .describe()
        .contains("remote 1 retry-auth-errors: true (401, 403 and 407 are retried"));
    for (flag, want) in [
        ("--remote-retry-auth-errors=false", false),
        ("--remote-retry-auth-errors=no", false),
        ("--remote-retry-auth-errors", true),
        ("--remote-retry-auth-errors=true", true),
    ] {
        let c = config(&[r, flag]).unwrap();
        assert_eq!(c.remotes[0].retry_auth_errors, want, "{flag}");
    }
    let c = config(&[r, "--remote-retry-auth-errors=false"]).unwrap();
    assert!(c
        .describe()
        .contains("remote 1 retry-auth-errors: false (401, 403 and 407 drop the request)"));
    let (_f, path) = config_file(
        "remote-write:\n  - url: http://a/w\n    retry-auth-errors: false\n  - url: http://b/w\n",
    );
    let c = config(&["--config-file", &path]).unwrap();
    assert!(!c.remotes[0].retry_auth_errors);
    assert!(c.remotes[1].retry_auth_errors);
}

#[test]
fn config_file_errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
            (
                "remote-write:\n  - url: http://a/w\n  - url: ftp://b/w\n",
                ":3:10: remote-write[1].url: scheme \"ftp\" is not http or https",
            ),
            (
                "remote-write:\n  - url: http://a/w\n    version: 3\n",
                ":3:14: remote-write[0].version: must be auto",
            ),
            (
                "remote-write:\n  - url: http://a/w\n    timeout: soon\n",
                ":3:14: remote-write[0].timeout:",
            ),
            (
                "remote-write:\n  - url: http://a/w\n    headers:\n      Content-Type: x\n",
                ":4:7: remote-write[0].headers.Content-Type: Content-Type is set by the Remote Write protocol",
            ),
            (
                "remote-write:\n  - url: http://a/w\n    tiemout: 5s\n",
                ":3:5: remote-write[0].tiemout: unknown key \"tiemout\"",
            ),
            ("remote-write: []\n", ": remote-write lists no destination"),
            (
                "remote-write:\n  - url: https://a/w\n    bearer-token-file: /nonexistent/token\n",
                ":3:24: remote-write[0].bearer-token-file: cannot read /nonexistent/token",
            ),
            // Access errors point at the value they are about (`Entry::span`): a text, a
            // boolean, or the URL.
            (
                "remote-write:\n  - url: https://a/w\n    bearer-token-file: /etc/hostname\n    basic-auth-username: u\n",
                ":3:24: remote-write[0].bearer-token-file: cannot be given with remote-write[0].basic-auth-username",
            ),
            (
                "remote-write:\n  - url: https://a/w\n    insecure-skip-verify: true\n    tls-server-name: b\n",
                ":3:27: remote-write[0].insecure-skip-verify: cannot be given with remote-write[0].tls-server-name",
            ),
            (
                "remote-write:\n  - url: https://a/w\n    ca-file: /etc/hostname\n    insecure-skip-verify: true\n",
                ":4:27: remote-write[0].insecure-skip-verify: cannot be given with remote-write[0].ca-file",
            ),
            (
                "remote-write:\n  - url: https://a/w\n    proxy-url: socks5://p:1\n",
                ":3:16: remote-write[0].proxy-url: must be an http:// or https:// URL",
            ),
            (
                "remote-write:\n  - url: http://a/w\n  - url: http://a/w\n",
                "destinations 1 and 2 are the same URL",
            ),
        ];
    for (text, wanted) in cases {
        let (_f, path) = config_file(text);
        let e = config(&["--config-file", &path]).unwrap_err();
        assert_eq!(e.flag, "--config-file", "{text}");
        assert!(e.reason.contains(wanted), "{text}: {e}");
        if wanted.starts_with(':') {
            assert!(e.reason.starts_with(&format!("{path}{wanted}")), "{e}");
        }
    }
    let e = config(&["--config-file", "/nonexistent/kp.yaml"]).unwrap_err();
    assert!(e.reason.contains("cannot read /nonexistent/kp.yaml"), "{e}");
}

#[test]
fn config_file_replaces_the_remote_flags() {
    let (_f, path) = config_file("remote-write:\n  - url: http://a/w\n");
    // Every remote flag, access settings included (`AccessSpec::given`).
    for extra in [
        &["--remote-url", "http://b/w"][..],
        &["--remote-header", "X-A=b"],
        &["--remote-timeout", "5s"],
        &["--remote-retry-auth-errors=false"],
        &["--remote-write-version", "2"],
        &["--remote-bearer-token-file", "/t"],
        &["--remote-basic-auth-username", "u"],
        &["--remote-basic-auth-password-file", "/p"],
        &["--remote-ca-file", "/ca"],
        &["--remote-cert-file", "/c"],
        &["--remote-key-file", "/k"],
        &["--remote-tls-server-name", "x"],
        &["--remote-insecure-skip-verify"],
        &["--remote-proxy-url", "http://p:3128"],
    ] {
        let mut args = vec!["--config-file", &path];
        args.extend(extra);
        let e = config(&args).unwrap_err();
        assert_eq!(e.flag, "--config-file");
        let flag = extra[0].split('=').next().unwrap();
        assert!(
            e.reason
                .starts_with(&format!("{flag} cannot be given with --config-file")),
            "{e}"
        );
    }
}

#[test]
fn metric_filters_are_checked_at_start() {
    let r = "--remote-url=http://r/w";
    let c = config(&[
        r,
        "--metric-allow",
        "container_.*",
        "--metric-deny",
        ".*_fs_.*",
    ])
    .unwrap();
    let f = c.poll.metric_filter.as_ref().unwrap();
    assert!(f.allows("container_cpu_usage_seconds_total"));
    assert!(!f.allows("container_fs_usage_bytes"));
    assert!(c
        .describe()
        .contains("metric filter: allow [container_.*], deny [.*_fs_.*]\n"));
    assert!(config(&[r]).unwrap().poll.metric_filter.is_none());
    let e = config(&[r, "--metric-deny", "(unclosed"]).unwrap_err();
    assert_eq!(e.flag, "--metric-deny");
}

#[path = "tests_layered.rs"]
mod layered_tests;
