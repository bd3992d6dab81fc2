//! What the two bridges share: severity from a level, and the fields of an
//! event added as attributes within the record's limits.

use std::fmt::Write as _;

use opentelemetry::Key;
use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry_sdk::logs::SdkLogRecord;

use crate::log_filter::Level;
use crate::log_limits::{self, LogLimits};

/// `code.file.path` (OTel code conventions).
pub(crate) const CODE_FILE_PATH: &str = "code.file.path";
/// `code.line.number` (OTel code conventions).
pub(crate) const CODE_LINE_NUMBER: &str = "code.line.number";

/// The OTLP severity and its text of a level.
pub(crate) fn severity(level: Level) -> (Severity, &'static str) {
    match level {
        Level::Error | Level::Off => (Severity::Error, "ERROR"),
        Level::Warn => (Severity::Warn, "WARN"),
        Level::Info => (Severity::Info, "INFO"),
        Level::Debug => (Severity::Debug, "DEBUG"),
        Level::Trace => (Severity::Trace, "TRACE"),
    }
}

/// Fills one record: a body, then attributes up to the count limit (the
/// rest are counted in `jobsight.logs.dropped_attributes`, once, at the end).
pub(crate) struct RecordFields<'a> {
    pub(crate) record: &'a mut SdkLogRecord,
    pub(crate) limits: LogLimits,
    added: usize,
    dropped: usize,
}

/// The attribute that says how many of an event's fields were left out.
pub(crate) const DROPPED_ATTRIBUTES: &str = "jobsight.logs.dropped_attributes";

impl<'a> RecordFields<'a> {
    pub(crate) fn new(record: &'a mut SdkLogRecord, limits: LogLimits) -> Self {
        RecordFields {
            record,
            limits,
            added: 0,
            dropped: 0,
        }
    }

    /// Sets the body, cut to the body limit.
    pub(crate) fn body(&mut self, text: String) {
        self.record
            .set_body(log_limits::text_value(text, self.limits.body));
    }

    /// Adds one attribute unless the count limit is reached.
    pub(crate) fn attribute(&mut self, key: Key, value: AnyValue) {
        if self.added >= self.limits.attribute_count {
            self.dropped += 1;
            return;
        }
        self.added += 1;
        let value = match value {
            AnyValue::String(text) if text.as_str().len() > self.limits.attribute_value => {
                AnyValue::from(
                    log_limits::cut(text.as_str(), self.limits.attribute_value).into_owned(),
                )
            }
            other => other,
        };
        self.record.add_attribute(key, value);
    }

    /// Adds a text attribute from a `Debug` value.
    pub(crate) fn debug_attribute(&mut self, key: Key, value: &dyn std::fmt::Debug) {
        if self.added >= self.limits.attribute_count {
            self.dropped += 1;
            return;
        }
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.attribute(key, AnyValue::from(text));
    }

    /// Adds the code location and the count of fields left out.
    pub(crate) fn finish(self, file: Option<&str>, line: Option<u32>) {
        if let Some(file) = file {
            self.record
                .add_attribute(CODE_FILE_PATH, AnyValue::from(file.to_owned()));
        }
        if let Some(line) = line {
            self.record
                .add_attribute(CODE_LINE_NUMBER, AnyValue::from(i64::from(line)));
        }
        if self.dropped > 0 {
            self.record
                .add_attribute(DROPPED_ATTRIBUTES, AnyValue::from(self.dropped as i64));
        }
    }
}
