//! The README's receiver examples as a user pastes them: every `sh` block that starts with
//! `kubelet-push --remote-url` is taken by `check-config` (the files it names made first: a
//! token, a CA, a client certificate and its key), and shows each destination it names. The
//! Grafana Cloud example carries no `X-Scope-OrgID`: Grafana Cloud takes the tenant from the
//! basic-auth user, and a self-hosted Mimir example keeps the header.

use crate::access::{ca, leaf};
use crate::cli::{kubelet_push, stderr};

/// Each receiver example of the README, continuation lines joined, split into arguments.
fn receiver_examples() -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.starts_with("kubelet-push --remote-url"))
        .map(|block| {
            assert!(
                !block.contains(['\'', '"', '#', '$']),
                "an example this test cannot split like a shell: {block}"
            );
            block
                .replace("\\\n", " ")
                .split_whitespace()
                .skip(1)
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn the_readme_receiver_examples_pass_check_config() {
    let examples = receiver_examples();
    assert!(examples.len() >= 5, "found only {examples:?}");
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let client = leaf(&ca, &["kubelet-push"], true);
    let mut seen_grafana_cloud = false;
    let mut seen_mimir_tenant = false;
    for example in examples {
        // The paths the example names, made here with what each flag reads.
        let mut args = example.clone();
        for i in 1..args.len() {
            let content = match args[i - 1].as_str() {
                "--remote-ca-file" => ca.pem.clone(),
                "--remote-cert-file" => client.cert_pem.clone(),
                "--remote-key-file" => client.key_pem.clone(),
                flag if flag.ends_with("-file") => "a-secret-token\n".to_owned(),
                _ => continue,
            };
            let path = dir.path().join(format!("file-{i}"));
            std::fs::write(&path, content).unwrap();
            args[i] = path.to_str().unwrap().to_owned();
        }
        let mut argv = vec!["check-config"];
        argv.extend(args.iter().map(String::as_str));
        let out = kubelet_push(&argv);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example:?}: {}{text}",
            stderr(&out)
        );
        let urls: Vec<&String> = example
            .windows(2)
            .filter(|w| w[0] == "--remote-url")
            .map(|w| &w[1])
            .collect();
        for (n, url) in urls.iter().enumerate() {
            let line = format!("remote {} url: {url}\n", n + 1);
            assert!(text.contains(&line), "{line:?} missing:\n{text}");
        }
        let headers = text.to_ascii_lowercase();
        if urls.iter().any(|u| u.contains(".grafana.net/")) {
            seen_grafana_cloud = true;
            assert!(
                example.contains(&"--remote-basic-auth-username".to_owned()),
                "Grafana Cloud takes basic auth: {example:?}"
            );
            assert!(
                !headers.contains("x-scope-orgid"),
                "Grafana Cloud takes the tenant from the credentials, not a header: {example:?}"
            );
        } else if headers.contains("x-scope-orgid") {
            seen_mimir_tenant = true;
        }
    }
    assert!(seen_grafana_cloud, "no Grafana Cloud example found");
    assert!(
        seen_mimir_tenant,
        "no self-hosted Mimir example with a tenant found"
    );
}
