//! TLS for `https://` OTLP endpoints (the `tls` feature).
//!
//! [`ClientTls::load`] reads the files named by a signal's `…_CERTIFICATE`,
//! `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY` variables, checks them, and
//! keeps one set of trust anchors for both transports: the gRPC exporter gets
//! them in a tonic `ClientTlsConfig`, the HTTP exporter in the rustls
//! `ClientConfig` of its [`HttpsClient`]. Both trust exactly the same
//! roots: the CA bundle when one is configured (instead of the built-in
//! roots, as the other OpenTelemetry SDKs do), else Mozilla's roots compiled
//! in (webpki-roots); the operating system's store is never read.
//!
//! Crypto comes from the process-default rustls `CryptoProvider` when the
//! application installed one, else ring: the rule tonic applies too. This
//! crate never installs a process default itself.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_otlp::tonic_types::transport::{ClientTlsConfig, Identity};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio::runtime::Handle;

use crate::config::EnvPath;
use crate::export_target::TlsFiles;
use crate::exporter_wrap::TransportError;
use crate::{Error, Signal};

pub(crate) use http_client::HttpsClient;

mod http_client;
#[cfg(test)]
mod tests;

/// The checked TLS settings of one signal.
pub(crate) struct ClientTls {
    roots: Arc<RootCertStore>,
    /// The client certificate chain and key, as PEM, for tonic.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    /// For the HTTP exporter; building it checked the client key.
    config: ClientConfig,
}

impl ClientTls {
    /// Reads and checks the files of `files`: a missing, unreadable or
    /// unusable file is an [`Error::InvalidEnv`] naming its variable and
    /// path (never a key's content).
    pub(crate) fn load(signal: Signal, files: &TlsFiles) -> Result<Self, Error> {
        let roots = match &files.certificate {
            Some(file) => ca_bundle(file)?,
            None => builtin_roots(),
        };
        let identity = match (&files.client_certificate, &files.client_key) {
            (None, None) => None,
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (Some(only), None) => return Err(half_identity(only, "client key", "CLIENT_KEY")),
            (None, Some(only)) => {
                return Err(half_identity(
                    only,
                    "client certificate",
                    "CLIENT_CERTIFICATE",
                ));
            }
        };
        let roots = Arc::new(roots);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Exporter {
                signal,
                source: ExporterBuildError::InternalFailure(format!(
                    "cannot configure TLS: {error}"
                )),
            })?
            .with_root_certificates(Arc::clone(&roots));
        let (config, identity) = match identity {
            None => (builder.with_no_client_auth(), None),
            Some((certificate_file, key_file)) => {
                let certificate_pem = read(certificate_file)?;
                let chain = certificates(certificate_file, &certificate_pem)?;
                let key_pem = read(key_file)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                    invalid(
                        key_file,
                        "holds no PEM private key (PKCS#8, PKCS#1 or SEC1); \
                         the file's content is not shown",
                    )
                })?;
                let config = builder.with_client_auth_cert(chain, key).map_err(|error| {
                    invalid(
                        key_file,
                        format!(
                            "cannot be used with the client certificate `{}` ({error})",
                            certificate_file.path.display()
                        ),
                    )
                })?;
                (config, Some((certificate_pem, key_pem)))
            }
        };
        Ok(ClientTls {
            roots,
            identity,
            config,
        })
    }

    /// The gRPC exporter's TLS settings.
    pub(crate) fn tonic_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().trust_anchors(self.roots.roots.iter().cloned());
        match &self.identity {
            Some((certificate, key)) => config.identity(Identity::from_pem(certificate, key)),
            None => config,
        }
    }

    /// The HTTP exporter's client, with `timeout` per request, running its
    /// requests on `runtime` and keeping their failures in `last_error`.
    pub(crate) fn http_client(
        &self,
        runtime: Handle,
        timeout: Duration,
        last_error: Arc<TransportError>,
    ) -> HttpsClient {
        HttpsClient::new(self.config.clone(), runtime, timeout, last_error)
    }
}

/// The process-default provider if the application installed one, else ring.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Mozilla's root certificates, compiled in.
fn builtin_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Every certificate of the PEM bundle `file`, as trust anchors.
fn ca_bundle(file: &EnvPath) -> Result<RootCertStore, Error> {
    let pem = read(file)?;
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates(file, &pem)?.into_iter().enumerate() {
        roots.add(certificate).map_err(|error| {
            invalid(
                file,
                format!(
                    "certificate {} is not a usable CA certificate ({error})",
                    index + 1
                ),
            )
        })?;
    }
    Ok(roots)
}

/// The `CERTIFICATE` sections of `pem`, read from `file`; at least one.
fn certificates(file: &EnvPath, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(file, format!("is not a valid PEM file ({error})")))?;
    if certificates.is_empty() {
        return Err(invalid(
            file,
            "holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` section)",
        ));
    }
    Ok(certificates)
}

fn read(file: &EnvPath) -> Result<Vec<u8>, Error> {
    fs::read(&file.path).map_err(|error| {
        Error::env(
            file.variable,
            format!("cannot read `{}`: {error}", file.path.display()),
        )
    })
}

/// An [`Error::InvalidEnv`] about the file of `file`: "`path` {reason}".
fn invalid(file: &EnvPath, reason: impl std::fmt::Display) -> Error {
    Error::env(file.variable, format!("`{}` {reason}", file.path.display()))
}

/// One half of a client identity is configured, not the other.
fn half_identity(present: &EnvPath, missing: &str, missing_suffix: &str) -> Error {
    Error::env(
        present.variable,
        format!(
            "set without a {missing} (`OTEL_EXPORTER_OTLP_{missing_suffix}` or the \
             signal's own `OTEL_EXPORTER_OTLP_<SIGNAL>_{missing_suffix}`); \
             mutual TLS needs both the client certificate and its key"
        ),
    )
}
