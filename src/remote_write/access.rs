//! How the agent reaches one receiver: authentication (a bearer token file, or basic auth with
//! a password file), TLS (a CA bundle, a client certificate and key, a server name to verify
//! instead of the URL's host, or no verification at all) and the proxy. It owns validating
//! these settings ([`validate`], for the flags and for each config-file entry alike) and
//! keeping them current while the agent runs ([`Live`]): credentials and certificates rotate
//! (bound tokens hourly, cert-manager rewrites files in place), so each file is re-read before
//! every request and compared with what was last used. A changed token or password is used
//! from that request on; a changed CA, certificate or key rebuilds the HTTP client (new
//! connections, new handshakes). A file that disappears or stops parsing keeps its last good
//! value, with one warning per episode and one info line when it is good again.
//!
//! Not here: the request itself and its classification (`client`), retries (`sender`).
//!
//! TLS details worth knowing:
//! - With none of the TLS settings, reqwest's own setup is used (the platform's verifier and
//!   roots). With any of them, a `rustls::ClientConfig` is built here with the `ring` provider:
//!   roots from the CA file only (the platform's are not added: a private receiver's CA is
//!   the one to trust), else the platform verifier.
//! - `--remote-tls-server-name` changes which name the certificate must be valid for. SNI does
//!   **not** follow: the connection still sends the URL's host as SNI (none for an IP
//!   address), because reqwest derives it from the URL. Receivers that route by SNI need the
//!   URL to carry that name.
//! - `--remote-insecure-skip-verify` beside a CA file or a server name is refused: either
//!   would be silently ignored, and an operator who gave a CA meant it to be checked.
//! - Proxies: `--remote-proxy-url` wins over the environment; without it reqwest honours
//!   `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` (either case). Unlike Go, reqwest
//!   proxies loopback addresses too unless `NO_PROXY` names them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tracing::{info, warn};

use crate::episode::Episode;
use crate::http::ProxyUrl;
pub use crate::http::TlsHints;

/// What the flags, or one config-file entry, say; unvalidated.
#[derive(Debug, Clone, Default)]
pub struct AccessSpec {
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth_username: Option<String>,
    pub basic_auth_password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_verify: bool,
    pub proxy_url: Option<String>,
}

impl AccessSpec {
    /// The settings given, in the order of [`Field`]: for "cannot be given with" errors.
    pub fn given(&self) -> impl Iterator<Item = Field> {
        [
            (Field::BearerTokenFile, self.bearer_token_file.is_some()),
            (Field::BasicAuthUsername, self.basic_auth_username.is_some()),
            (
                Field::BasicAuthPasswordFile,
                self.basic_auth_password_file.is_some(),
            ),
            (Field::CaFile, self.ca_file.is_some()),
            (Field::CertFile, self.cert_file.is_some()),
            (Field::KeyFile, self.key_file.is_some()),
            (Field::TlsServerName, self.tls_server_name.is_some()),
            (Field::InsecureSkipVerify, self.insecure_skip_verify),
            (Field::ProxyUrl, self.proxy_url.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
    }

    /// Every file setting, so a caller can rewrite the paths (see
    /// `config::in_sandbox`); a file setting added above belongs here too.
    pub fn files_mut(&mut self) -> [&mut Option<PathBuf>; 5] {
        [
            &mut self.bearer_token_file,
            &mut self.basic_auth_password_file,
            &mut self.ca_file,
            &mut self.cert_file,
            &mut self.key_file,
        ]
    }
}

/// Which setting an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    BearerTokenFile,
    BasicAuthUsername,
    BasicAuthPasswordFile,
    CaFile,
    CertFile,
    KeyFile,
    TlsServerName,
    InsecureSkipVerify,
    ProxyUrl,
    Header,
    Url,
}

impl Field {
    /// The config-file key: `bearer-token-file`.
    pub const fn key(self) -> &'static str {
        match self {
            Field::BearerTokenFile => "bearer-token-file",
            Field::BasicAuthUsername => "basic-auth-username",
            Field::BasicAuthPasswordFile => "basic-auth-password-file",
            Field::CaFile => "ca-file",
            Field::CertFile => "cert-file",
            Field::KeyFile => "key-file",
            Field::TlsServerName => "tls-server-name",
            Field::InsecureSkipVerify => "insecure-skip-verify",
            Field::ProxyUrl => "proxy-url",
            Field::Header => "headers",
            Field::Url => "url",
        }
    }

    /// The flag: `--remote-bearer-token-file`.
    pub const fn flag(self) -> &'static str {
        match self {
            Field::BearerTokenFile => "--remote-bearer-token-file",
            Field::BasicAuthUsername => "--remote-basic-auth-username",
            Field::BasicAuthPasswordFile => "--remote-basic-auth-password-file",
            Field::CaFile => "--remote-ca-file",
            Field::CertFile => "--remote-cert-file",
            Field::KeyFile => "--remote-key-file",
            Field::TlsServerName => "--remote-tls-server-name",
            Field::InsecureSkipVerify => "--remote-insecure-skip-verify",
            Field::ProxyUrl => "--remote-proxy-url",
            Field::Header => "--remote-header",
            Field::Url => "--remote-url",
        }
    }
}

/// A setting that cannot be used. `reason` does not repeat the field's own name (the caller
/// prefixes it, as a flag or a config key) but names any other setting involved, as the user
/// wrote it. It never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct AccessError {
    pub field: Field,
    pub reason: String,
}

/// Validated access settings: every file existed and parsed at start-up, and no two choices
/// conflict. Cloning is cheap enough (a few small buffers); `Debug` prints paths, never secrets.
#[derive(Clone)]
pub struct Access {
    auth: Option<Auth>,
    tls: Option<Tls>,
    proxy: Option<ProxyUrl>,
    /// How the user wrote the settings that TLS error messages point to.
    hints: TlsHints,
}

#[derive(Clone)]
enum Auth {
    Bearer { file: Watched },
    Basic { username: String, file: Watched },
}

#[derive(Clone)]
struct Tls {
    ca: Option<Watched>,
    cert: Option<Watched>,
    key: Option<Watched>,
    /// The name the receiver's certificate must be valid for, instead of the URL's host.
    server_name: Option<ServerName<'static>>,
    insecure_skip_verify: bool,
}

/// A file whose content is read at start-up and again before each request.
#[derive(Clone)]
struct Watched {
    path: PathBuf,
    /// How the user wrote the setting, for log lines.
    name: String,
    kind: Kind,
    /// The last content that parsed.
    good: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A token or password: one line, surrounding white space trimmed (as Prometheus does).
    Secret,
    /// PEM certificates, at least one.
    Certificates,
    /// A PEM private key.
    Key,
}

impl Watched {
    fn load(path: &Path, name: String, kind: Kind) -> Result<Self, String> {
        let bytes = read_small(path)?;
        check(kind, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Watched {
            path: path.to_owned(),
            name,
            kind,
            good: bytes.into(),
        })
    }
}

/// Bounds what a setting's file may hold: a token, a password or a PEM bundle is small, and a
/// path pointing at something huge by mistake must not be read before every request.
const MAX_FILE_BYTES: u64 = 1 << 20;

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    // Read on the runtime's only thread: a FIFO would block in open(2) and freeze the agent
    // (signals included), and neither a FIFO nor a device can be re-read before each request.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(format!("{} is not a regular file", path.display()));
        }
        _ => {}
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    Ok(bytes)
}

/// Whether `bytes` is usable as `kind`; the error never quotes the content.
fn check(kind: Kind, bytes: &[u8]) -> Result<(), String> {
    match kind {
        Kind::Secret => secret_text(bytes).map(|_| ()),
        Kind::Certificates => certificates(bytes).map(|_| ()),
        Kind::Key => private_key(bytes).map(|_| ()),
    }
}

fn secret_text(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "is not UTF-8 text".to_owned())?
        .trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.bytes().any(|b| b.is_ascii_control()) {
        return Err("holds more than one line or control characters".into());
    }
    Ok(text)
}

fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    // pki-types' errors can quote a line of the file: never for a key.
    PrivateKeyDer::from_pem_slice(bytes).map_err(|_| "holds no PEM private key".to_owned())
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Access");
        match &self.auth {
            Some(Auth::Bearer { file }) => d.field("bearer_token_file", &file.path),
            Some(Auth::Basic { username, file }) => d
                .field("basic_auth_username", username)
                .field("basic_auth_password_file", &file.path),
            None => d.field("auth", &"none"),
        };
        if let Some(tls) = &self.tls {
            d.field("ca_file", &tls.ca.as_ref().map(|w| &w.path))
                .field("cert_file", &tls.cert.as_ref().map(|w| &w.path))
                .field("key_file", &tls.key.as_ref().map(|w| &w.path))
                .field("tls_server_name", &tls.server_name)
                .field("insecure_skip_verify", &tls.insecure_skip_verify);
        }
        d.field("proxy", &self.proxy.as_ref().map(|p| &p.display));
        d.finish()
    }
}

impl Access {
    /// No authentication, reqwest's TLS, proxies from the environment.
    pub fn none() -> Self {
        Access {
            auth: None,
            tls: None,
            proxy: None,
            hints: TlsHints::remote_flags(),
        }
    }

    /// Lines for `check-config`, each setting with its value: paths and
    /// choices, never secrets; the proxy's password is redacted.
    pub fn describe(&self) -> Vec<(Field, String)> {
        let path = |w: Option<&Watched>| {
            w.map_or_else(|| "none".to_owned(), |w| w.path.display().to_string())
        };
        let mut out = Vec::new();
        let (token, user, password) = match &self.auth {
            Some(Auth::Bearer { file }) => (Some(file), None, None),
            Some(Auth::Basic { username, file }) => (None, Some(username.clone()), Some(file)),
            None => (None, None, None),
        };
        out.push((Field::BearerTokenFile, path(token)));
        out.push((
            Field::BasicAuthUsername,
            user.unwrap_or_else(|| "none".into()),
        ));
        out.push((Field::BasicAuthPasswordFile, path(password)));
        let tls = self.tls.as_ref();
        out.push((Field::CaFile, path(tls.and_then(|t| t.ca.as_ref()))));
        out.push((Field::CertFile, path(tls.and_then(|t| t.cert.as_ref()))));
        out.push((Field::KeyFile, path(tls.and_then(|t| t.key.as_ref()))));
        out.push((
            Field::TlsServerName,
            tls.and_then(|t| t.server_name.as_ref())
                .map_or_else(|| "none".to_owned(), |n| n.to_str().into_owned()),
        ));
        out.push((
            Field::InsecureSkipVerify,
            tls.is_some_and(|t| t.insecure_skip_verify).to_string(),
        ));
        out.push((
            Field::ProxyUrl,
            self.proxy.as_ref().map_or_else(
                || "none (HTTPS_PROXY, HTTP_PROXY, NO_PROXY from the environment)".to_owned(),
                |p| p.display.clone(),
            ),
        ));
        out
    }

    /// The proxy as it may be printed, when one is set explicitly.
    pub fn proxy_display(&self) -> Option<&str> {
        self.proxy.as_ref().map(|p| p.display.as_str())
    }
}

/// Checks `spec` for the receiver at `url` with the user's extra `headers`: conflicting
/// choices are refused, and every file must exist and parse now. `name` turns a [`Field`]
/// into how the user wrote it (a flag or a config key), for the messages.
pub fn validate(
    spec: &AccessSpec,
    url: &reqwest::Url,
    headers: &[(HeaderName, HeaderValue)],
    name: &dyn Fn(Field) -> String,
) -> Result<Access, AccessError> {
    let fail = |field: Field, reason: String| AccessError { field, reason };
    let auth_header = headers.iter().any(|(n, _)| *n == AUTHORIZATION);
    let userinfo = !url.username().is_empty() || url.password().is_some();

    // Authentication: at most one source of the Authorization header.
    let auth_field = match (&spec.bearer_token_file, &spec.basic_auth_username) {
        (Some(_), Some(_)) => {
            return Err(fail(
                Field::BearerTokenFile,
                format!(
                    "cannot be given with {} (choose one kind of authentication)",
                    name(Field::BasicAuthUsername)
                ),
            ))
        }
        (Some(_), None) => Some(Field::BearerTokenFile),
        (None, Some(_)) => Some(Field::BasicAuthUsername),
        (None, None) => None,
    };
    if spec.basic_auth_password_file.is_some() && spec.basic_auth_username.is_none() {
        return Err(fail(
            Field::BasicAuthPasswordFile,
            format!("needs {}", name(Field::BasicAuthUsername)),
        ));
    }
    if let Some(field) = auth_field {
        if auth_header {
            return Err(fail(
                field,
                format!(
                    "cannot be given with an Authorization {} (both set the Authorization header)",
                    name(Field::Header)
                ),
            ));
        }
        if userinfo {
            return Err(fail(
                field,
                format!(
                    "cannot be given with user:password in {} (both set the Authorization header)",
                    name(Field::Url)
                ),
            ));
        }
    }
    if auth_header && userinfo {
        return Err(fail(
            Field::Header,
            format!(
                "an Authorization header cannot be given with user:password in {} (the URL's would win silently)",
                name(Field::Url)
            ),
        ));
    }
    let auth = if let Some(path) = &spec.bearer_token_file {
        let file = Watched::load(path, name(Field::BearerTokenFile), Kind::Secret)
            .map_err(|e| fail(Field::BearerTokenFile, e))?;
        Some(Auth::Bearer { file })
    } else if let Some(username) = &spec.basic_auth_username {
        if username.is_empty() || username.contains(':') {
            return Err(fail(
                Field::BasicAuthUsername,
                "must not be empty or contain ':'".into(),
            ));
        }
        let Some(path) = &spec.basic_auth_password_file else {
            return Err(fail(
                Field::BasicAuthUsername,
                format!("needs {}", name(Field::BasicAuthPasswordFile)),
            ));
        };
        let file = Watched::load(path, name(Field::BasicAuthPasswordFile), Kind::Secret)
            .map_err(|e| fail(Field::BasicAuthPasswordFile, e))?;
        Some(Auth::Basic {
            username: username.clone(),
            file,
        })
    } else {
        None
    };

    // TLS.
    match (&spec.cert_file, &spec.key_file) {
        (Some(_), None) => {
            return Err(fail(
                Field::CertFile,
                format!(
                    "needs {} (the client certificate's key)",
                    name(Field::KeyFile)
                ),
            ))
        }
        (None, Some(_)) => {
            return Err(fail(
                Field::KeyFile,
                format!("needs {} (the client certificate)", name(Field::CertFile)),
            ))
        }
        _ => {}
    }
    if spec.insecure_skip_verify {
        for (given, field) in [
            (spec.ca_file.is_some(), Field::CaFile),
            (spec.tls_server_name.is_some(), Field::TlsServerName),
        ] {
            if given {
                return Err(fail(
                    Field::InsecureSkipVerify,
                    format!(
                        "cannot be given with {}, which it would make pointless (nothing is verified)",
                        name(field)
                    ),
                ));
            }
        }
    }
    let any_tls = spec.ca_file.is_some()
        || spec.cert_file.is_some()
        || spec.tls_server_name.is_some()
        || spec.insecure_skip_verify;
    let tls = if any_tls {
        if url.scheme() != "https" {
            let field = [
                (spec.ca_file.is_some(), Field::CaFile),
                (spec.cert_file.is_some(), Field::CertFile),
                (spec.tls_server_name.is_some(), Field::TlsServerName),
                (spec.insecure_skip_verify, Field::InsecureSkipVerify),
            ]
            .into_iter()
            .find_map(|(given, f)| given.then_some(f))
            .unwrap_or(Field::CaFile);
            return Err(fail(
                field,
                format!(
                    "needs an https {} (TLS settings do nothing for http)",
                    name(Field::Url)
                ),
            ));
        }
        let load = |path: &Option<PathBuf>, field: Field, kind: Kind| {
            path.as_ref()
                .map(|p| Watched::load(p, name(field), kind).map_err(|e| fail(field, e)))
                .transpose()
        };
        let server_name = spec
            .tls_server_name
            .as_ref()
            .map(|n| {
                ServerName::try_from(n.trim().to_owned()).map_err(|_| {
                    fail(
                        Field::TlsServerName,
                        format!("{n:?} is not a DNS name or IP address"),
                    )
                })
            })
            .transpose()?;
        let tls = Tls {
            ca: load(&spec.ca_file, Field::CaFile, Kind::Certificates)?,
            cert: load(&spec.cert_file, Field::CertFile, Kind::Certificates)?,
            key: load(&spec.key_file, Field::KeyFile, Kind::Key)?,
            server_name,
            insecure_skip_verify: spec.insecure_skip_verify,
        };
        // A key that does not belong to the certificate, found now rather than at the first
        // handshake.
        client_config(&tls, &TlsBytes::of(&tls)).map_err(|e| fail(Field::KeyFile, e))?;
        Some(tls)
    } else {
        None
    };

    let proxy = spec
        .proxy_url
        .as_deref()
        .map(|raw| ProxyUrl::parse(raw).map_err(|e| fail(Field::ProxyUrl, e)))
        .transpose()?;

    Ok(Access {
        auth,
        tls,
        proxy,
        hints: TlsHints {
            ca_file: name(Field::CaFile),
            cert_file: name(Field::CertFile),
            key_file: name(Field::KeyFile),
            tls_server_name: name(Field::TlsServerName),
            ca_given: spec.ca_file.is_some(),
            client_cert_given: spec.cert_file.is_some(),
        },
    })
}

/// The current content of the TLS files, as last read and found good.
#[derive(Clone, PartialEq, Eq)]
struct TlsBytes {
    ca: Option<Arc<[u8]>>,
    cert: Option<Arc<[u8]>>,
    key: Option<Arc<[u8]>>,
}

impl TlsBytes {
    fn of(tls: &Tls) -> Self {
        TlsBytes {
            ca: tls.ca.as_ref().map(|w| w.good.clone()),
            cert: tls.cert.as_ref().map(|w| w.good.clone()),
            key: tls.key.as_ref().map(|w| w.good.clone()),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `tls` with the files' content `bytes`.
fn client_config(tls: &Tls, bytes: &TlsBytes) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let mut verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(NoVerification(provider.clone()))
    } else if let Some(ca) = &bytes.ca {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("the CA bundle cannot be used: {e}"))?
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| format!("the platform's certificate verifier: {e}"))?,
        )
    };
    if let Some(name) = &tls.server_name {
        verifier = Arc::new(VerifyAs {
            inner: verifier,
            name: name.clone(),
        });
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&bytes.cert, &bytes.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| format!("the client certificate and key cannot be used together: {e}")),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Checks the receiver's certificate against a configured name instead of the URL's host.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `--remote-insecure-skip-verify`: any certificate is accepted. The handshake signatures are
/// still checked, so the peer must at least hold the key of the certificate it shows.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a request needs from [`Live`]: the HTTP client to send with, and the `Authorization`
/// value (marked sensitive), if any.
pub struct Current {
    pub http: reqwest::Client,
    pub authorization: Option<HeaderValue>,
}

/// An [`Access`] kept current while the agent runs: the files re-read before each request,
/// the HTTP client rebuilt when the TLS material changes.
pub struct Live {
    access: Access,
    /// Builds the client without the access settings (headers, timeout, user agent): the
    /// caller's part, applied again on every rebuild.
    base: Box<dyn Fn() -> reqwest::ClientBuilder + Send + Sync>,
    state: Mutex<State>,
}

struct State {
    http: reqwest::Client,
    /// The files as last read and found good (start-up's content at first).
    auth: Option<Auth>,
    tls: Option<Tls>,
    /// The TLS content `http` was built with.
    tls_in_use: Option<TlsBytes>,
    /// One per watched file (auth, CA, cert, key): a file that keeps failing is logged when
    /// it starts and when it ends.
    episodes: [Episode; 4],
    /// A rebuild of the client that failed with the current files (a key that does not match
    /// the certificate while they are rewritten one after the other).
    rebuild: Episode,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the remote write HTTP client: {0}")]
pub struct BuildError(String);

impl Live {
    pub fn new(
        access: Access,
        base: Box<dyn Fn() -> reqwest::ClientBuilder + Send + Sync>,
    ) -> Result<Self, BuildError> {
        crate::http::install_crypto_provider();
        let tls_in_use = access.tls.as_ref().map(TlsBytes::of);
        let http = build(
            access.proxy.as_ref(),
            access.tls.as_ref().zip(tls_in_use.as_ref()),
            &base,
        )?;
        let state = State {
            http,
            auth: access.auth.clone(),
            tls: access.tls.clone(),
            tls_in_use,
            episodes: Default::default(),
            rebuild: Episode::default(),
        };
        Ok(Live {
            access,
            base,
            state: Mutex::new(state),
        })
    }

    pub fn hints(&self) -> &TlsHints {
        &self.access.hints
    }

    /// Re-reads the files, rebuilds the client if the TLS material changed, and returns what
    /// the next request uses. Blocking reads of a few small local files: cheaper than handing
    /// them to a thread, and the sender has one request in flight at a time anyway.
    pub fn current(&self) -> Current {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let State {
            http,
            auth,
            tls,
            tls_in_use,
            episodes,
            rebuild,
        } = &mut *guard;
        let [auth_ep, ca_ep, cert_ep, key_ep] = episodes;
        let authorization = match auth {
            Some(Auth::Bearer { file }) => {
                refresh(file, auth_ep);
                secret_text(&file.good)
                    .ok()
                    .and_then(|t| sensitive(&format!("Bearer {t}")))
            }
            Some(Auth::Basic { username, file }) => {
                refresh(file, auth_ep);
                secret_text(&file.good).ok().and_then(|p| {
                    sensitive(&format!("Basic {}", base64(&format!("{username}:{p}"))))
                })
            }
            None => None,
        };
        if let Some(tls) = tls {
            for (file, ep) in [
                (&mut tls.ca, ca_ep),
                (&mut tls.cert, cert_ep),
                (&mut tls.key, key_ep),
            ] {
                if let Some(file) = file {
                    refresh(file, ep);
                }
            }
            let now = TlsBytes::of(tls);
            if tls_in_use.as_ref() != Some(&now) {
                match build(self.access.proxy.as_ref(), Some((tls, &now)), &self.base) {
                    Ok(client) => {
                        *http = client;
                        *tls_in_use = Some(now);
                        rebuild.recover();
                        info!("TLS files changed; new connections use the new CA, certificate and key");
                    }
                    Err(error) => {
                        if rebuild.fail() {
                            warn!(%error, "the TLS files changed but cannot be used together; keeping the previous ones");
                        }
                    }
                }
            }
        }
        Current {
            http: http.clone(),
            authorization,
        }
    }
}

fn sensitive(s: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(s).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header; small enough not to
/// be worth a dependency.
fn base64(input: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Re-reads `file`; a new content that parses becomes its good value. A missing, unreadable
/// or unparsable file keeps the last good value: warned once per episode, and one info line
/// when the file is good again.
fn refresh(file: &mut Watched, episode: &mut Episode) {
    let result = read_small(&file.path).and_then(|bytes| {
        check(file.kind, &bytes)
            .map(|()| bytes)
            .map_err(|e| format!("{}: {e}", file.path.display()))
    });
    match result {
        Ok(bytes) => {
            if *bytes != *file.good {
                file.good = bytes.into();
            }
            if let Some((failures, _)) = episode.recover() {
                info!(setting = %file.name, path = %file.path.display(), failures, "file usable again");
            }
        }
        Err(error) => {
            if episode.fail() {
                warn!(setting = %file.name, %error, "cannot use the file; keeping its last good content");
            }
        }
    }
}

fn build(
    proxy: Option<&ProxyUrl>,
    tls: Option<(&Tls, &TlsBytes)>,
    base: &dyn Fn() -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, BuildError> {
    let mut builder = base();
    if let Some((spec, bytes)) = tls {
        builder = builder.use_preconfigured_tls(client_config(spec, bytes).map_err(BuildError)?);
    }
    if let Some(proxy) = proxy {
        let p = proxy.for_client().map_err(BuildError)?;
        builder = builder.proxy(p);
    }
    builder
        .build()
        .map_err(|e| BuildError(crate::http::error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(i), o, "{i:?}");
        }
    }
}
