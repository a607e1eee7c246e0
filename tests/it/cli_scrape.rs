//! The binary as an operator runs it, for scraping (issue 21): `check-config` on the scrape
//! flags, their environment twins and a config file's `scrape` list, the README's examples, and
//! `--help`. Beside `cli.rs`, which is at the line limit.

use std::process::Command;

use crate::cli::{kubelet_push, stderr};

/// `check-config` with the binary's own `--config-file` and environment handling: a `scrape`
/// list shaped like a real Prometheus configuration (the node_exporter guide's job, and a
/// windows_exporter behind TLS and basic auth as Prometheus users write it), beside the
/// scrape flags' environment twins. Every target is listed, in order, with the settings it
/// was given or defaulted to, and credentials by path only.
#[test]
fn check_config_takes_a_pasted_prometheus_scrape_list_and_the_environment_twins() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["exporter.example".to_owned()]).unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "hunter2\n").unwrap();
    let file = dir.path().join("kp.yaml");
    std::fs::write(
        &file,
        format!(
            "\
scrape:
  - job_name: 'node'
    scrape_interval: 15s
    static_configs:
      - targets: ['localhost:9100']
  - job_name: 'windows-exporter'
    honor_timestamps: true
    scrape_interval: 30s
    scrape_timeout: 10s
    metrics_path: /metrics
    scheme: https
    sample_limit: 0
    body_size_limit: 0
    tls_config:
      ca_file: {}
      server_name: exporter.example
    basic_auth:
      username: prometheus
      password_file: {}
    static_configs:
      - targets: ['127.0.0.1:9182']
        labels:
          os: windows
",
            ca_file.display(),
            password.display()
        ),
    )
    .unwrap();
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
            .arg("check-config")
            .env_remove("KUBELET_PUSH_REMOTE_URL")
            .env("KUBELET_PUSH_DRY_RUN", "1")
            .env("KUBELET_PUSH_KUBELET_URL", "https://10.0.0.1:10250")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    };
    let path = file.display().to_string();
    let scrape_env = [
        ("KUBELET_PUSH_CONFIG_FILE", path.as_str()),
        (
            "KUBELET_PUSH_SCRAPE",
            "app=http://127.0.0.1:8080/metrics,db=http://127.0.0.1:9187/metrics",
        ),
        ("KUBELET_PUSH_KUBELET_SCRAPE", "/metrics/probes,/metrics"),
        ("KUBELET_PUSH_SCRAPE_TIMEOUT", "3s"),
    ];
    let (code, text, err) = run(&scrape_env);
    assert_eq!(code, Some(0), "{err}");
    let scrape: Vec<&str> = text.lines().filter(|l| l.starts_with("scrape ")).collect();
    let want = [
        "scrape 1 job: app",
        "scrape 1 url: http://127.0.0.1:8080/metrics",
        "scrape 1 instance: 127.0.0.1:8080",
        "scrape 1 interval: 10s",
        "scrape 1 timeout: 3s",
        "scrape 1 honor-labels: false",
        "scrape 1 honor-timestamps: true",
        "scrape 1 sample-limit: none",
        "scrape 1 body-size-limit: none",
        "scrape 1 labels: []",
        "scrape 1 credentials: none",
        "scrape 2 job: db",
        "scrape 2 url: http://127.0.0.1:9187/metrics",
        "scrape 2 instance: 127.0.0.1:9187",
        "scrape 2 interval: 10s",
        "scrape 2 timeout: 3s",
        "scrape 2 honor-labels: false",
        "scrape 2 honor-timestamps: true",
        "scrape 2 sample-limit: none",
        "scrape 2 body-size-limit: none",
        "scrape 2 labels: []",
        "scrape 2 credentials: none",
        "scrape 3 job: kubelet",
        "scrape 3 kubelet path: /metrics/probes (through kubelet-url, with its token, CA and proxy)",
        "scrape 3 instance: (the node name)",
        "scrape 3 interval: 10s",
        "scrape 3 timeout: 3s",
        "scrape 3 honor-labels: false",
        "scrape 3 honor-timestamps: true",
        "scrape 3 sample-limit: none",
        "scrape 3 body-size-limit: none",
        "scrape 3 labels: [metrics_path=/metrics/probes]",
        "scrape 4 job: kubelet",
        "scrape 4 kubelet path: /metrics (through kubelet-url, with its token, CA and proxy)",
        "scrape 4 instance: (the node name)",
        "scrape 4 interval: 10s",
        "scrape 4 timeout: 3s",
        "scrape 4 honor-labels: false",
        "scrape 4 honor-timestamps: true",
        "scrape 4 sample-limit: none",
        "scrape 4 body-size-limit: none",
        "scrape 4 labels: [metrics_path=/metrics]",
        "scrape 5 job: node",
        "scrape 5 url: http://localhost:9100/metrics",
        "scrape 5 instance: localhost:9100",
        "scrape 5 interval: 15s",
        "scrape 5 timeout: 3s",
        "scrape 5 honor-labels: false",
        "scrape 5 honor-timestamps: true",
        "scrape 5 sample-limit: none",
        "scrape 5 body-size-limit: none",
        "scrape 5 labels: []",
        "scrape 5 credentials: none",
        "scrape 6 job: windows-exporter",
        "scrape 6 url: https://127.0.0.1:9182/metrics",
        "scrape 6 instance: 127.0.0.1:9182",
        "scrape 6 interval: 30s",
        "scrape 6 timeout: 10s",
        "scrape 6 honor-labels: false",
        "scrape 6 honor-timestamps: true",
        "scrape 6 sample-limit: none",
        "scrape 6 body-size-limit: none",
        "scrape 6 labels: [os=windows]",
    ];
    assert_eq!(scrape[..want.len()], want, "{text}");
    assert_eq!(
        scrape[want.len()..],
        [format!(
            "scrape 6 credentials: basic_auth.username prometheus, basic_auth.password_file {}, tls_config.ca_file {}, tls_config.server_name exporter.example",
            password.display(),
            ca_file.display()
        )],
        "{text}"
    );
    assert!(text.contains("kubelet-summary: true\n"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    // The summary off: only the targets; without any, nothing to push.
    let mut off = scrape_env.to_vec();
    off.push(("KUBELET_PUSH_KUBELET_SUMMARY", "0"));
    let (code, text, err) = run(&off);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("kubelet-summary: false\n"), "{text}");
    for (env, named) in [
        (
            &[("KUBELET_PUSH_KUBELET_SUMMARY", "off")][..],
            "--kubelet-summary: false leaves nothing to push",
        ),
        (
            &[("KUBELET_PUSH_KUBELET_SUMMARY", "maybe")],
            "KUBELET_PUSH_KUBELET_SUMMARY",
        ),
        (
            &[("KUBELET_PUSH_SCRAPE_TIMEOUT", "soon")],
            "--scrape-timeout",
        ),
        (
            &[("KUBELET_PUSH_SCRAPE", "http://127.0.0.1:9100/metrics")],
            "--scrape: \"http://127.0.0.1:9100/metrics\" is not JOB=URL",
        ),
        (
            &[("KUBELET_PUSH_KUBELET_SCRAPE", "/pods")],
            "--kubelet-scrape: \"/pods\" is not a metrics path of the kubelet",
        ),
    ] {
        let (code, _, err) = run(env);
        assert_eq!(code, Some(64), "{env:?}: {err}");
        assert!(err.contains(named), "{env:?}: {err}");
    }
    // A mistake in the file names its line and key.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("scrape_timeout: 10s", "scrape_timeout: 45s"),
    )
    .unwrap();
    let (code, _, err) = run(&scrape_env);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains(&format!(
            "--config-file: {path}:9:21: scrape[1].scrape_timeout: must not be longer than scrape_interval (30s)"
        )),
        "{err}"
    );
}

/// The README's `scrape` example is valid as printed, and its "try it" command line is one
/// the binary takes (run here through `check-config`: scraping is the agent's part).
#[test]
fn the_readme_scrape_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```yaml\nscrape:").expect("the example") + "```yaml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kp.yaml");
    std::fs::write(&path, example).unwrap();
    let out = kubelet_push(&[
        "check-config",
        "--dry-run",
        "--config-file",
        path.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}{text}", stderr(&out));
    for line in [
        "scrape 1 job: node-exporter\n",
        "scrape 1 url: http://127.0.0.1:9100/metrics\n",
        "scrape 1 interval: 30s\n",
        "scrape 1 timeout: 10s\n",
        "scrape 1 sample-limit: 20000\n",
        "scrape 1 body-size-limit: 10485760 bytes\n",
        "scrape 1 labels: [pool=edge]\n",
        "scrape 2 url: https://127.0.0.1:9182/metrics\n",
        "scrape 2 credentials: tls_config.insecure_skip_verify true\n",
        "scrape 3 job: app\n",
        "scrape 3 url: http://127.0.0.1:8080/metrics\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    std::fs::write(
        &path,
        example.replace("scrape_timeout: 10s", "scrape_timeout: 45s"),
    )
    .unwrap();
    let out = kubelet_push(&[
        "check-config",
        "--dry-run",
        "--config-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    let line = example
        .lines()
        .position(|l| l.contains("scrape_timeout"))
        .unwrap()
        + 1;
    let wanted = format!("{}:{line}:21: scrape[0].scrape_timeout:", path.display());
    assert!(
        stderr(&out).contains(&wanted),
        "{wanted} in {}",
        stderr(&out)
    );

    // The command to try, its arguments as printed.
    let start = readme
        .find("cargo run --release -- --dry-run")
        .expect("the command to try");
    let command = &readme[start..start + readme[start..].find("\n```").unwrap()];
    let args: Vec<&str> = command
        .split_whitespace()
        .skip_while(|a| *a != "--")
        .skip(1)
        .filter(|a| *a != "\\")
        .collect();
    assert_eq!(args[0], "--dry-run", "{command}");
    let out = Command::new(env!("CARGO_BIN_EXE_kubelet-push"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check-config")
        .args(&args)
        .env_remove("KUBELET_PUSH_REMOTE_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    for line in [
        "mode: dry-run\n",
        "kubelet-url: file tests/fixtures/summaries/",
        "scrape 1 job: node\n",
        "scrape 1 url: http://127.0.0.1:9100/metrics\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let fixture = args
        .iter()
        .find_map(|a| a.strip_prefix("file://"))
        .expect("a file:// kubelet URL");
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(fixture)
            .is_file(),
        "{fixture} is not in the repository"
    );
}

/// The scrape flags are in `--help` with their environment twins; the kubelet ones do not
/// apply to the demo (it polls its own simulated kubelet, which serves no `/metrics*`).
#[test]
fn help_shows_the_scrape_flags_and_the_demo_refuses_the_kubelet_ones() {
    let out = kubelet_push(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "scrape",
        "scrape-timeout",
        "kubelet-scrape",
        "kubelet-summary",
    ] {
        assert!(
            help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}[")),
            "--{flag} missing:\n{help}"
        );
        let env = format!("KUBELET_PUSH_{}", flag.to_uppercase().replace('-', "_"));
        assert!(
            help.contains(&format!("[env: {env}")),
            "{env} missing from --help"
        );
    }
    for args in [
        &["demo", "--kubelet-scrape", "/metrics/probes"][..],
        &["--kubelet-scrape=/metrics", "demo"],
        &["demo", "--kubelet-summary=false"],
    ] {
        let out = kubelet_push(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        let flag = args
            .iter()
            .find(|a| a.starts_with("--"))
            .unwrap()
            .split('=')
            .next()
            .unwrap();
        assert!(
            err.contains(&format!("{flag}: does not apply to demo")),
            "{args:?}: {err}"
        );
    }
}
