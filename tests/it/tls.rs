//! A kubelet behind HTTPS, as real ones are: verification with `--kubelet-ca-file`, the
//! self-signed case with `--kubelet-insecure-skip-verify`, and a clear failure otherwise.

use std::sync::Arc;

use kubelet_push::kubelet::ScrapeError;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::support::*;

pub const SUMMARY: &str = r#"{"node":{"nodeName":"tls-node","memory":{"time":"2020-01-01T00:00:00Z","workingSetBytes":42}}}"#;

/// A CA and a serving certificate for 127.0.0.1 signed by it, like a kubelet with a
/// cluster-signed serving certificate.
pub struct Pki {
    pub ca_pem: String,
    pub server: rustls::ServerConfig,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        )
        .unwrap();
    Pki {
        ca_pem: issuer.pem(),
        server,
    }
}

/// Serves `SUMMARY` over HTTPS on 127.0.0.1 for a bounded number of connections.
pub async fn serve(server: rustls::ServerConfig, connections: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        for _ in 0..connections {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = vec![0u8; 8192];
            let mut read = 0;
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SUMMARY}",
                SUMMARY.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

async fn poll(args: &[&str]) -> Polled {
    let mut args = args.to_vec();
    args.extend(["--dry-run", "--node-name", "n"]);
    polled(&mut crate::support::poller(&args)).await
}

#[tokio::test]
async fn verifies_the_kubelet_with_its_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    // Two connections: the first poll asks /pods, then the summary.
    let url = serve(pki.server, 2).await;
    let out = poll(&[
        "--kubelet-url",
        &url,
        "--kubelet-ca-file",
        ca.to_str().unwrap(),
    ])
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        only_value(&out.series, "node_memory_working_set_bytes"),
        42.0
    );
}

#[tokio::test]
async fn rejects_a_kubelet_signed_by_another_ca() {
    let pki = pki();
    let other = self::pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &other.ca_pem).unwrap();
    // Two connections: the first poll asks /pods, then the summary.
    let url = serve(pki.server, 2).await;
    let out = poll(&[
        "--kubelet-url",
        &url,
        "--kubelet-ca-file",
        ca.to_str().unwrap(),
    ])
    .await;
    let err = out.error.expect("verification must fail");
    assert!(matches!(err, ScrapeError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "the reason is named: {err}"
    );
    assert_eq!(only_value(&out.series, "up"), 0.0);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_unknown_certificate() {
    let pki = pki();
    // Two connections: the first poll asks /pods, then the summary.
    let url = serve(pki.server, 2).await;
    let out = poll(&["--kubelet-url", &url, "--kubelet-insecure-skip-verify"]).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        only_value(&out.series, "node_memory_working_set_bytes"),
        42.0
    );
}
