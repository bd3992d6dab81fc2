//! [`Error`]: what can go wrong in `jobsight-checkin`.

/// Errors of `jobsight-checkin`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A background task was asked for outside a tokio runtime.
    #[error("{0} must be started inside a tokio runtime")]
    NoRuntime(&'static str),
    /// The TLS configuration could not be built.
    #[error("cannot configure TLS for pings: {0}")]
    Tls(String),
    /// A ping format's setting is unusable (says which and why).
    #[error("ping settings: {0}")]
    PingSetting(String),
    /// The ping sender's thread or runtime could not be started.
    #[error("cannot start the ping sender: {0}")]
    Thread(String),
    /// A Sentry DSN that does not parse.
    #[error("invalid Sentry DSN: {0}")]
    InvalidDsn(String),
    /// The check-in configuration file could not be read.
    #[error("cannot read check-in configuration {path}: {source}")]
    ConfigFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The check-in configuration is not valid JSON of the expected shape.
    #[error("check-in configuration: {0}")]
    ConfigJson(#[from] serde_json::Error),
    /// A setting of the check-in configuration has a value that cannot be
    /// used.
    #[error("check-in configuration: {setting}: {reason}")]
    Setting {
        /// Where: `policies[1].grace`, `policies[0]`.
        setting: String,
        /// What is wrong and which values are accepted.
        reason: String,
    },
    /// A duration in the configuration that does not parse.
    #[error("duration `{0}`: {forms}", forms = crate::config::DURATION_FORMS)]
    Duration(String),
    /// A policy entry of the configuration that is inconsistent (no target,
    /// two schedules, a zero interval).
    #[error("check-in configuration: {0}")]
    InvalidPolicy(String),
    /// A cron expression or time zone of the configuration that does not
    /// parse.
    #[error(transparent)]
    Policy(#[from] jobsight_core::checkin::CheckinError),
    /// Redis refused or could not be reached.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}
