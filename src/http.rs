//! What every HTTP client of the agent shares: the TLS crypto provider and the `User-Agent`.

use std::sync::Once;

/// reqwest is built without a bundled crypto provider, so rustls needs one chosen before the
/// first client is made. ring cross-compiles to Windows with nothing but a C compiler.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
