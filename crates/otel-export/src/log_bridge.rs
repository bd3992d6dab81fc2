//! The `log` crate bridge (cargo feature `log`): each `log` record that
//! passes the log filter becomes an OTLP log record (see
//! [`Telemetry::log_bridge`]).
//!
//! Written here rather than taken from `opentelemetry-appender-log`, for
//! the same reasons as the `tracing` bridge: attributes limited as they
//! are added, and one filter for both bridges.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_sdk::logs::SdkLogger;

use crate::log_filter::{Level, LogFilter};
use crate::log_limits::LogLimits;
use crate::log_record_fields::{RecordFields, severity};
use crate::{Error, Telemetry};

/// Instrumentation scope of the records the `log` bridge makes.
const SCOPE_NAME: &str = "jobsight.logs";

/// A [`log::Log`] that exports records as OTLP log records; see
/// [`Telemetry::log_bridge`].
#[derive(Debug)]
pub struct LogBridge {
    logger: SdkLogger,
    filter: Arc<LogFilter>,
    limits: LogLimits,
}

impl Telemetry {
    /// A [`log::Log`] that exports each `log` record passing the log filter
    /// ([`Builder::log_filter`](crate::Builder::log_filter), `JOBSIGHT_LOG`,
    /// default `info`) as an OTLP log record, with what
    /// [`tracing_log_layer`](Telemetry::tracing_log_layer) records carry
    /// (key-values as attributes). `None` when logs are not exported. For a
    /// program that already has a logger, call it from that logger's `log`;
    /// otherwise [`install_log_bridge`](Telemetry::install_log_bridge).
    ///
    /// Making the bridge turns on the job scope of `jobsight_core`, as the
    /// `tracing` layer does.
    pub fn log_bridge(&self) -> Option<LogBridge> {
        let (provider, settings) = self.log_pipeline()?;
        jobsight_core::job_logs::set_scope(true);
        let scope = InstrumentationScope::builder(SCOPE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Some(LogBridge {
            logger: provider.logger_with_scope(scope),
            filter: Arc::clone(&settings.filter),
            limits: settings.limits,
        })
    }

    /// Makes [`log_bridge`](Telemetry::log_bridge) the `log` crate's
    /// logger, with the most verbose level the filter enables as
    /// `log::max_level`. Does nothing when logs are not exported. An
    /// [`Error::LoggerAlreadySet`] when the program set a logger before.
    ///
    /// ```no_run
    /// let telemetry = jobsight_otel::init()?;
    /// telemetry.install_log_bridge()?;
    /// log::info!("exported as an OTLP log record");
    /// # Ok::<(), jobsight_otel::Error>(())
    /// ```
    pub fn install_log_bridge(&self) -> Result<(), Error> {
        let Some(bridge) = self.log_bridge() else {
            return Ok(());
        };
        let max = match bridge.filter.max_level() {
            Level::Off => log::LevelFilter::Off,
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
            Level::Trace => log::LevelFilter::Trace,
        };
        log::set_boxed_logger(Box::new(bridge)).map_err(|_| Error::LoggerAlreadySet)?;
        log::set_max_level(max);
        Ok(())
    }
}

fn level_of(level: log::Level) -> Level {
    match level {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

impl log::Log for LogBridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter
            .enabled(metadata.target(), level_of(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = level_of(record.level());
        if !self.filter.enabled(record.target(), level) {
            return;
        }
        let mut log_record = self.logger.create_log_record();
        let (number, text) = severity(level);
        log_record.set_severity_number(number);
        log_record.set_severity_text(text);
        log_record.set_target(record.target().to_owned());
        log_record.set_timestamp(SystemTime::now());
        let mut fields = RecordFields::new(&mut log_record, self.limits);
        fields.body(record.args().to_string());
        let _ = record.key_values().visit(&mut KeyValues(&mut fields));
        fields.finish(record.file(), record.line());
        self.logger.emit(log_record);
    }

    fn flush(&self) {}
}

/// Adds a record's key-values as attributes.
struct KeyValues<'a, 'b>(&'a mut RecordFields<'b>);

impl<'kvs> log::kv::VisitSource<'kvs> for KeyValues<'_, '_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let key = Key::new(key.as_str().to_owned());
        let value = if let Some(n) = value.to_i64() {
            AnyValue::from(n)
        } else if let Some(b) = value.to_bool() {
            AnyValue::from(b)
        } else if let Some(f) = value.to_f64() {
            AnyValue::from(f)
        } else {
            AnyValue::from(value.to_string())
        };
        self.0.attribute(key, value);
        Ok(())
    }
}
