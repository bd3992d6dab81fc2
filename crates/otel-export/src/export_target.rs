//! Where and how each signal is exported: the environment and the
//! [`Builder`](crate::Builder) settings combined.
//!
//! Precedence, highest first: the builder, the signal's own variable
//! (`OTEL_EXPORTER_OTLP_TRACES_*`), the generic variable
//! (`OTEL_EXPORTER_OTLP_*`), the default. A signal without any endpoint is
//! not exported at all.

use std::time::Duration;

use crate::config::{EnvConfig, EnvPath};
use crate::headers::Headers;
use crate::{Protocol, Signal, endpoint};

/// The OTLP exporters' timeout when no variable sets one (the spec's 10 s).
pub(crate) const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The resolved OTLP export settings of one signal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExportTarget {
    pub(crate) signal: Signal,
    pub(crate) protocol: Protocol,
    /// The URL handed to the exporter, which uses it verbatim.
    pub(crate) endpoint: String,
    pub(crate) timeout: Duration,
    /// Whether failed exports are retried (the exporter's recommended
    /// policy) or tried once ([`crate::Builder::export_retries`]).
    pub(crate) retries: bool,
    pub(crate) headers: Headers,
    /// The TLS files for an `https://` endpoint (ignored for `http://`).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) tls: TlsFiles,
}

/// The TLS files of one signal, each from the signal's own variable or else
/// the generic one. Only paths: the files are read at install.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct TlsFiles {
    /// PEM CA bundle to trust instead of the built-in roots.
    pub(crate) certificate: Option<EnvPath>,
    /// PEM private key for mutual TLS.
    pub(crate) client_key: Option<EnvPath>,
    /// PEM certificate chain for mutual TLS.
    pub(crate) client_certificate: Option<EnvPath>,
}

impl ExportTarget {
    /// The target of `signal`, or `None` when no endpoint applies to it.
    ///
    /// A generic endpoint (from the builder or `OTEL_EXPORTER_OTLP_ENDPOINT`)
    /// gets `/v1/traces` or `/v1/metrics` appended for OTLP/HTTP; a
    /// signal-specific endpoint and any gRPC endpoint are used as given.
    pub(crate) fn resolve(
        env: &EnvConfig,
        signal: Signal,
        builder_endpoint: Option<&str>,
        builder_protocol: Option<Protocol>,
    ) -> Option<Self> {
        let specific = env.signal(signal);
        let protocol = builder_protocol
            .or(specific.protocol)
            .or(env.generic.protocol)
            .unwrap_or_default();
        let under_base = |base: &str| match protocol {
            Protocol::Grpc => base.to_owned(),
            Protocol::HttpProtobuf => endpoint::with_signal_path(base, signal),
        };
        let endpoint = match (builder_endpoint, &specific.endpoint) {
            (Some(base), _) => under_base(base),
            (None, Some(url)) => url.clone(),
            (None, None) => under_base(env.generic.endpoint.as_deref()?),
        };
        Some(ExportTarget {
            signal,
            protocol,
            endpoint,
            timeout: specific
                .timeout
                .or(env.generic.timeout)
                .unwrap_or(DEFAULT_EXPORT_TIMEOUT),
            retries: true,
            headers: env.generic.headers.overridden_by(&specific.headers),
            tls: TlsFiles {
                certificate: specific
                    .certificate
                    .clone()
                    .or_else(|| env.generic.certificate.clone()),
                client_key: specific
                    .client_key
                    .clone()
                    .or_else(|| env.generic.client_key.clone()),
                client_certificate: specific
                    .client_certificate
                    .clone()
                    .or_else(|| env.generic.client_certificate.clone()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env;

    fn url(env: &EnvConfig, signal: Signal) -> Option<String> {
        ExportTarget::resolve(env, signal, None, None).map(|t| t.endpoint)
    }

    #[test]
    fn no_endpoint_means_no_target() {
        let env = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(
            ExportTarget::resolve(&env, Signal::Traces, None, None),
            None
        );
        assert_eq!(
            ExportTarget::resolve(&env, Signal::Metrics, None, None),
            None
        );
    }

    #[test]
    fn generic_http_endpoint_gets_signal_paths() {
        let env = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            url(&env, Signal::Traces).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url(&env, Signal::Metrics).as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
    }

    #[test]
    fn signal_endpoints_are_verbatim_and_win() {
        let env = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://metrics:9090/otlp",
            ),
        ]);
        assert_eq!(
            url(&env, Signal::Metrics).as_deref(),
            Some("http://metrics:9090/otlp")
        );
        assert_eq!(
            url(&env, Signal::Traces).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
    }

    #[test]
    fn only_one_signal_configured_exports_only_that_signal() {
        let env = env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/v1/traces",
        )]);
        assert!(url(&env, Signal::Traces).is_some());
        assert_eq!(url(&env, Signal::Metrics), None);
    }

    #[test]
    fn grpc_endpoints_are_verbatim() {
        let env = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let target = ExportTarget::resolve(&env, Signal::Traces, None, None).unwrap();
        assert_eq!(target.protocol, Protocol::Grpc);
        assert_eq!(target.endpoint, "http://collector:4317");
    }

    #[test]
    fn builder_settings_override_the_environment() {
        let env = env(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let target = ExportTarget::resolve(
            &env,
            Signal::Traces,
            Some("http://local:4318"),
            Some(Protocol::HttpProtobuf),
        )
        .unwrap();
        assert_eq!(target.protocol, Protocol::HttpProtobuf);
        assert_eq!(target.endpoint, "http://local:4318/v1/traces");
    }

    #[test]
    fn tls_files_fall_back_from_signal_to_generic() {
        let env = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic-ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces-ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/key.pem"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                "/metrics.pem",
            ),
        ]);
        let traces = ExportTarget::resolve(&env, Signal::Traces, None, None).unwrap();
        let metrics = ExportTarget::resolve(&env, Signal::Metrics, None, None).unwrap();
        let variable = |file: &Option<EnvPath>| file.as_ref().map(|f| f.variable);
        assert_eq!(
            variable(&traces.tls.certificate),
            Some("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        );
        assert_eq!(
            variable(&metrics.tls.certificate),
            Some("OTEL_EXPORTER_OTLP_CERTIFICATE")
        );
        assert_eq!(
            variable(&metrics.tls.client_key),
            Some("OTEL_EXPORTER_OTLP_CLIENT_KEY")
        );
        assert_eq!(
            variable(&metrics.tls.client_certificate),
            Some("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE")
        );
        assert_eq!(traces.tls.client_certificate, None);
    }

    #[test]
    fn timeouts_and_protocols_fall_back_from_signal_to_generic_to_default() {
        let env = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        let traces = ExportTarget::resolve(&env, Signal::Traces, None, None).unwrap();
        let metrics = ExportTarget::resolve(&env, Signal::Metrics, None, None).unwrap();
        assert_eq!(traces.timeout, Duration::from_secs(3));
        assert_eq!(metrics.timeout, Duration::from_secs(1));
        assert_eq!(traces.protocol, Protocol::Grpc);
        assert_eq!(traces.endpoint, "http://collector:4318");
        assert_eq!(metrics.protocol, Protocol::HttpProtobuf);
        let defaults = crate::test_support::env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1")]);
        let target = ExportTarget::resolve(&defaults, Signal::Traces, None, None).unwrap();
        assert_eq!(target.timeout, DEFAULT_EXPORT_TIMEOUT);
    }
}
