//! The crate's error type.

use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkError;

use crate::Signal;

/// Everything that can go wrong when installing, flushing or shutting down
/// telemetry.
///
/// Messages name the environment variable at fault and the values it
/// accepts. They never contain the values of `OTEL_EXPORTER_OTLP_*HEADERS`
/// (those carry credentials).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An `OTEL_*` environment variable has a value this crate cannot use.
    #[error("{variable}: {reason}")]
    InvalidEnv {
        /// The variable, e.g. `OTEL_EXPORTER_OTLP_PROTOCOL`.
        variable: &'static str,
        /// What is wrong and which values are accepted.
        reason: String,
    },
    /// The endpoint given to [`Builder::endpoint`](crate::Builder::endpoint)
    /// is not usable.
    #[error("Builder::endpoint: {reason}")]
    InvalidEndpoint {
        /// What is wrong and which values are accepted.
        reason: String,
    },
    /// The OTLP exporter of a signal could not be built.
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// The signal whose exporter failed.
        signal: Signal,
        /// The exporter's own error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A background thread or the export runtime could not be started.
    #[error("cannot start the telemetry background thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A flush or shutdown did not finish before its deadline; telemetry not
    /// exported by then may be lost.
    #[error(
        "telemetry {operation} did not finish within {deadline:?}; telemetry not exported by then may be lost"
    )]
    Timeout {
        /// `"flush"` or `"shutdown"`.
        operation: &'static str,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The SDK reported a failure while flushing or shutting down a signal.
    #[error("{signal} {operation} failed: {source}")]
    Sdk {
        /// The signal that failed.
        signal: Signal,
        /// `"flush"` or `"shutdown"`.
        operation: &'static str,
        /// The SDK's error.
        #[source]
        source: OTelSdkError,
    },
    /// The local summary could not be written.
    #[error("cannot write the telemetry summary: {0}")]
    Summary(#[source] std::io::Error),
    /// The Prometheus scrape endpoint could not be started (feature
    /// `prometheus`).
    #[error("cannot serve Prometheus metrics on {address:?}: {source}")]
    Scrape {
        /// The address given to `Builder::prometheus_endpoint`.
        address: String,
        /// Why binding or starting failed.
        #[source]
        source: std::io::Error,
    },
    /// `Telemetry::install_log_bridge` (feature `log`) found a `log`
    /// logger already set; use `Telemetry::log_bridge` from that logger.
    #[error("a `log` logger is already set; call Telemetry::log_bridge from it instead")]
    LoggerAlreadySet,
    /// A value given to a [`Builder`](crate::Builder) setting is not usable.
    #[error("Builder::{setting}: {reason}")]
    InvalidSetting {
        /// The setting, e.g. `log_filter`.
        setting: &'static str,
        /// What is wrong and which values are accepted.
        reason: String,
    },
    /// Two settings on the [`Builder`](crate::Builder) cannot be used together.
    #[error("{reason}")]
    Conflict {
        /// Which settings, and why.
        reason: &'static str,
    },
}

impl Error {
    /// An [`Error::InvalidEnv`] for `variable`.
    pub(crate) fn env(variable: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidEnv {
            variable,
            reason: reason.into(),
        }
    }
}
