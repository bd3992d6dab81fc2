//! The receiver's TLS material: a throw-away CA, a server certificate for
//! `localhost` and `127.0.0.1`, and a client certificate for mutual TLS, all
//! in `certs/` of this crate (see its README; never trust that CA anywhere
//! else).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// A file of `certs/` (e.g. `ca.pem`, `client.key`).
pub fn cert_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// The CA that issued the receiver's and the client's certificates.
pub fn ca_path() -> PathBuf {
    cert_path("ca.pem")
}

/// The client certificate for mutual TLS (its key: [`client_key_path`]).
pub fn client_cert_path() -> PathBuf {
    cert_path("client.pem")
}

/// The key of [`client_cert_path`].
pub fn client_key_path() -> PathBuf {
    cert_path("client.key")
}

fn read(name: &str) -> Vec<u8> {
    let path = cert_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// tonic's TLS settings for the gRPC front end.
pub(crate) fn tonic_config(require_client_certificate: bool) -> ServerTlsConfig {
    let tls =
        ServerTlsConfig::new().identity(Identity::from_pem(read("server.pem"), read("server.key")));
    if require_client_certificate {
        tls.client_ca_root(Certificate::from_pem(read("ca.pem")))
    } else {
        tls
    }
}

/// The rustls acceptor of the HTTP front end (ring provider).
pub(crate) fn acceptor(require_client_certificate: bool) -> TlsAcceptor {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("TLS versions: {e}"));
    let builder = if require_client_certificate {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&read("ca.pem")) {
            roots
                .add(certificate.unwrap_or_else(|e| panic!("ca.pem: {e}")))
                .unwrap_or_else(|e| panic!("ca.pem: {e}"));
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap_or_else(|e| panic!("client verifier: {e}"));
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let chain = CertificateDer::pem_slice_iter(&read("server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("server.pem: {e}"));
    let key = PrivateKeyDer::from_pem_slice(&read("server.key"))
        .unwrap_or_else(|e| panic!("server.key: {e}"));
    let config = builder
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| panic!("server certificate: {e}"));
    TlsAcceptor::from(Arc::new(config))
}
