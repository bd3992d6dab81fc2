//! The three signals this crate exports, and the environment variables of each.

use std::fmt;

/// A telemetry signal exported over OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

/// The names of the `OTEL_EXPORTER_OTLP_*` variables of one signal (or of
/// the generic, all-signal set).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OtlpVars {
    pub(crate) endpoint: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) headers: &'static str,
    pub(crate) timeout: &'static str,
    /// PEM CA bundle trusted for https endpoints.
    pub(crate) certificate: &'static str,
    /// PEM private key for mutual TLS.
    pub(crate) client_key: &'static str,
    /// PEM certificate chain for mutual TLS.
    pub(crate) client_certificate: &'static str,
}

/// The variables that apply to every signal.
pub(crate) const GENERIC_VARS: OtlpVars = OtlpVars {
    endpoint: "OTEL_EXPORTER_OTLP_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_TIMEOUT",
    certificate: "OTEL_EXPORTER_OTLP_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    client_certificate: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
};

impl Signal {
    /// Every signal, in the order of flush and shutdown: logs last, so that
    /// what the others' shutdown logs (nothing, normally) still goes out.
    pub(crate) const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The signal's position in [`Signal::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Signal::Traces => 0,
            Signal::Metrics => 1,
            Signal::Logs => 2,
        }
    }

    /// The path appended to a generic OTLP/HTTP endpoint for this signal.
    pub(crate) fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Metrics => "v1/metrics",
            Signal::Logs => "v1/logs",
        }
    }

    /// The signal-specific variables, which win over [`GENERIC_VARS`].
    pub(crate) fn vars(self) -> OtlpVars {
        match self {
            Signal::Traces => OtlpVars {
                endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                certificate: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                client_key: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                client_certificate: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            },
            Signal::Metrics => OtlpVars {
                endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                certificate: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                client_key: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
                client_certificate: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
            },
            Signal::Logs => OtlpVars {
                endpoint: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                headers: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                timeout: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
                certificate: "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                client_key: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                client_certificate: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
            },
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        })
    }
}
