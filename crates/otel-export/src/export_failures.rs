//! What failed exports cost: counted in atomics, printed once per signal.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Signal;

/// Telemetry lost to failed OTLP exports since [`install`](crate::Builder::install).
///
/// Each count only grows. A failed export is one that still failed after the
/// exporter's own retries; its spans or data points are gone. Spans dropped
/// because the queue was full, and what the shutdown deadline cut off, are
/// not included: [`Telemetry::dropped`](crate::Telemetry::dropped) counts
/// everything that was lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportFailures {
    /// Span export calls that failed.
    pub failed_span_exports: u64,
    /// Spans in those calls.
    pub dropped_spans: u64,
    /// Metric export calls that failed.
    pub failed_metric_exports: u64,
    /// Metric data points in those calls.
    pub dropped_metric_points: u64,
    /// Log export calls that failed.
    pub failed_log_exports: u64,
    /// Log records in those calls.
    pub dropped_log_records: u64,
}

impl ExportFailures {
    /// True when no export has failed.
    pub fn is_empty(&self) -> bool {
        self.failed_span_exports == 0
            && self.failed_metric_exports == 0
            && self.failed_log_exports == 0
    }
}

impl fmt::Display for ExportFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed trace exports ({} spans dropped), {} failed metric exports ({} data points dropped), {} failed log exports ({} log records dropped)",
            self.failed_span_exports,
            self.dropped_spans,
            self.failed_metric_exports,
            self.dropped_metric_points,
            self.failed_log_exports,
            self.dropped_log_records
        )
    }
}

/// The shared, lock-free counters behind [`ExportFailures`].
#[derive(Debug, Default)]
pub(crate) struct FailureCounter {
    span_exports: AtomicU64,
    spans: AtomicU64,
    metric_exports: AtomicU64,
    metric_points: AtomicU64,
    log_exports: AtomicU64,
    log_records: AtomicU64,
}

impl FailureCounter {
    /// Counts one failed export of `items` spans or data points. True for the
    /// first failure of `signal`, the only one worth printing.
    pub(crate) fn record(&self, signal: Signal, items: u64) -> bool {
        let (exports, dropped) = match signal {
            Signal::Traces => (&self.span_exports, &self.spans),
            Signal::Metrics => (&self.metric_exports, &self.metric_points),
            Signal::Logs => (&self.log_exports, &self.log_records),
        };
        dropped.fetch_add(items, Ordering::Relaxed);
        exports.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// The counts now.
    pub(crate) fn snapshot(&self) -> ExportFailures {
        ExportFailures {
            failed_span_exports: self.span_exports.load(Ordering::Relaxed),
            dropped_spans: self.spans.load(Ordering::Relaxed),
            failed_metric_exports: self.metric_exports.load(Ordering::Relaxed),
            dropped_metric_points: self.metric_points.load(Ordering::Relaxed),
            failed_log_exports: self.log_exports.load(Ordering::Relaxed),
            dropped_log_records: self.log_records.load(Ordering::Relaxed),
        }
    }
}

/// The warning printed for the first failed export of a signal. `endpoint`
/// must already be redacted; `error` comes from the exporter, which never
/// puts request headers in its errors.
pub(crate) fn first_failure_warning(
    signal: Signal,
    endpoint: &str,
    error: &dyn fmt::Display,
) -> String {
    format!(
        "jobsight-otel: warning: exporting {signal} to {endpoint} failed: {error}. \
         The application keeps running; what further {signal} export failures drop is \
         counted in jobsight.telemetry.dropped (Telemetry::dropped), not printed."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failure_of_each_signal_is_reported() {
        let counter = FailureCounter::default();
        assert!(counter.record(Signal::Metrics, 10));
        assert!(!counter.record(Signal::Metrics, 5));
        assert!(counter.record(Signal::Traces, 512));
        assert!(!counter.record(Signal::Traces, 1));
        assert_eq!(
            counter.snapshot(),
            ExportFailures {
                failed_span_exports: 2,
                dropped_spans: 513,
                failed_metric_exports: 2,
                dropped_metric_points: 15,
                ..ExportFailures::default()
            }
        );
        assert!(!counter.snapshot().is_empty());
        assert!(FailureCounter::default().snapshot().is_empty());
    }

    #[test]
    fn warning_says_what_failed_and_that_more_are_counted() {
        let warning = first_failure_warning(Signal::Metrics, "http://c:4318/v1/metrics", &"404");
        assert!(warning.contains("exporting metrics to http://c:4318/v1/metrics failed: 404"));
        assert!(warning.contains("counted in jobsight.telemetry.dropped"));
    }
}
