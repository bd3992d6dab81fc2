//! What jobsight-otel does with a failed attempt's error besides the span
//! (see `jobsight_core::job_logs`): the `exception` log record, when asked
//! for, and the last error of each queue, for the local summary.

use std::collections::BTreeMap;
use std::sync::Mutex;

use jobsight_core::job_logs::{Failure, FailureLog};
use jobsight_core::{ErrorRecord, JobMeta, semconv};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};

use crate::log_limits::{self, LogLimits};

/// Instrumentation scope of the `exception` log records.
pub(crate) const EXCEPTION_SCOPE: &str = "jobsight";
/// Queues the summary keeps a last error for; a queue past that keeps none
/// (the summary has one row per queue, bounded by the job kinds limit).
const MAX_QUEUES: usize = 500;
/// Bytes of a last error kept for the summary.
pub(crate) const LAST_ERROR_LIMIT: usize = 200;

/// The sinks registered with `jobsight_core::job_logs::set_failure_log`.
pub(crate) struct FailureSinks {
    pub(crate) exceptions: Option<ExceptionRecords>,
    pub(crate) last_errors: Option<std::sync::Arc<LastErrors>>,
}

impl FailureLog for FailureSinks {
    fn failed(&self, cx: &Context, meta: &JobMeta, error: &ErrorRecord, failure: Failure) {
        if let Some(last) = &self.last_errors {
            last.record(meta.queue(), error.message());
        }
        if failure.exception_record
            && let Some(exceptions) = &self.exceptions
        {
            exceptions.emit(cx, meta, error);
        }
    }
}

/// Emits `exception` log records.
pub(crate) struct ExceptionRecords {
    logger: SdkLogger,
    limits: LogLimits,
}

impl ExceptionRecords {
    pub(crate) fn new(provider: &SdkLoggerProvider, limits: LogLimits) -> Self {
        use opentelemetry::logs::LoggerProvider as _;
        let scope = InstrumentationScope::builder(EXCEPTION_SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        ExceptionRecords {
            logger: provider.logger_with_scope(scope),
            limits,
        }
    }

    /// One record: severity ERROR, event name `exception`, the message as
    /// body, `exception.*` and the job's attributes, the job span's ids. It
    /// is emitted outside the job's context so that the job's cap on
    /// records never hides it.
    fn emit(&self, cx: &Context, meta: &JobMeta, error: &ErrorRecord) {
        let mut record = self.logger.create_log_record();
        record.set_event_name(semconv::EXCEPTION_EVENT);
        record.set_severity_number(Severity::Error);
        record.set_severity_text("ERROR");
        record.set_target(semconv::SCOPE_NAME);
        record.set_timestamp(std::time::SystemTime::now());
        record.set_body(log_limits::text_value(
            error.message().to_owned(),
            self.limits.body,
        ));
        record.add_attribute(
            semconv::EXCEPTION_TYPE,
            AnyValue::from(error.error_type().to_owned()),
        );
        record.add_attribute(
            semconv::EXCEPTION_MESSAGE,
            log_limits::text_value(error.message().to_owned(), self.limits.attribute_value),
        );
        if let Some(trace) = error.stacktrace() {
            record.add_attribute(
                semconv::EXCEPTION_STACKTRACE,
                log_limits::text_value(trace.to_owned(), self.limits.body),
            );
        }
        record.add_attribute(semconv::MESSAGING_SYSTEM, meta.system().to_owned());
        record.add_attribute(semconv::MESSAGING_DESTINATION_NAME, meta.queue().to_owned());
        record.add_attribute(semconv::JOB_NAME, meta.name().to_owned());
        if let Some(id) = meta.id_arc() {
            record.add_attribute(semconv::MESSAGING_MESSAGE_ID, id.to_string());
        }
        if let Some(attempt) = meta.attempt() {
            record.add_attribute(semconv::JOB_ATTEMPT, i64::from(attempt));
        }
        let span_context = cx.span().span_context().clone();
        if span_context.is_valid() {
            record.set_trace_context(
                span_context.trace_id(),
                span_context.span_id(),
                Some(span_context.trace_flags()),
            );
        }
        let _outside_the_job = Context::new().attach();
        self.logger.emit(record);
    }
}

/// The last error message of each queue.
#[derive(Debug, Default)]
pub(crate) struct LastErrors(Mutex<BTreeMap<String, String>>);

impl LastErrors {
    fn record(&self, queue: &str, message: &str) {
        let one_line: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let message = log_limits::cut(&one_line, LAST_ERROR_LIMIT).into_owned();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get_mut(queue) {
            *slot = message;
        } else if map.len() < MAX_QUEUES {
            map.insert(queue.to_owned(), message);
        }
    }

    /// The last error of `queue`, if any.
    pub(crate) fn of(&self, queue: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .cloned()
    }
}
