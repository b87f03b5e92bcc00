//! The TLS settings of every HTTPS client packd runs (artifact downloads,
//! the command-line client): rustls with ring, so the static build needs
//! no OpenSSL, trusting the Mozilla roots built in (the scratch image has
//! no system store), the system's store, and any extra roots given.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// A client configuration trusting the built-in roots, the system's (when
/// `system_store`: reading it costs a start-up that plain http need not
/// pay) and `extra`.
pub fn client_config(
    extra: &[CertificateDer<'static>],
    system_store: bool,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if system_store {
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is skipped, not fatal.
            let _ = roots.add(cert);
        }
    }
    for cert in extra {
        let _ = roots.add(cert.clone());
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
