//! Telemetry that was lost, by signal and reason: counted exactly in
//! atomics, read by [`Telemetry::dropped`](crate::Telemetry::dropped) and
//! exported as the `jobsight.telemetry.dropped` counter.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Signal;
use crate::reports::Reports;

/// Why telemetry was dropped: the `jobsight.drop.reason` attribute of
/// `jobsight.telemetry.dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A span ended while the span queue was full
    /// (`OTEL_BSP_MAX_QUEUE_SIZE` spans waiting to be exported). The job did
    /// not wait; the span was dropped at once. Traces only.
    QueueFull,
    /// The spans or data points of an export that still failed after the
    /// exporter's own retries (collector down, refusing, or slower than
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`).
    ExportFailed,
    /// Still queued, or in an export that had not finished, when the
    /// shutdown deadline ([`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout))
    /// passed.
    ShutdownTimeout,
    /// A log record made inside a job that had already made
    /// [`Builder::max_log_records_per_job`](crate::Builder::max_log_records_per_job)
    /// records. Logs only.
    JobLimit,
}

impl DropReason {
    /// Every reason, in the order of [`DropCounts`]'s fields.
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::ExportFailed,
        DropReason::ShutdownTimeout,
        DropReason::JobLimit,
    ];

    /// The value of the `jobsight.drop.reason` attribute: `queue_full`, `export_failed`,
    /// `shutdown_timeout` or `job_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ExportFailed => "export_failed",
            DropReason::ShutdownTimeout => "shutdown_timeout",
            DropReason::JobLimit => "job_limit",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::QueueFull => 0,
            DropReason::ExportFailed => 1,
            DropReason::ShutdownTimeout => 2,
            DropReason::JobLimit => 3,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Items of one signal dropped, by reason. Each count only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropCounts {
    /// See [`DropReason::QueueFull`].
    pub queue_full: u64,
    /// See [`DropReason::ExportFailed`].
    pub export_failed: u64,
    /// See [`DropReason::ShutdownTimeout`].
    pub shutdown_timeout: u64,
    /// See [`DropReason::JobLimit`].
    pub job_limit: u64,
}

impl DropCounts {
    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.queue_full,
            DropReason::ExportFailed => self.export_failed,
            DropReason::ShutdownTimeout => self.shutdown_timeout,
            DropReason::JobLimit => self.job_limit,
        }
    }

    /// All reasons together.
    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|reason| self.get(*reason)).sum()
    }
}

/// Telemetry dropped since [`install`](crate::Builder::install): spans,
/// metric data points and log records, by [`DropReason`]. The same numbers are exported as
/// the counter `jobsight.telemetry.dropped` (see the README's metrics table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// Spans dropped.
    pub spans: DropCounts,
    /// Metric data points dropped. With cumulative temporality (the
    /// default) the next export that gets through carries the totals again,
    /// so a dropped data point costs resolution, not counts.
    pub metric_points: DropCounts,
    /// Log records dropped.
    pub log_records: DropCounts,
    /// Of `spans.queue_full`, the error spans: those of failed, retried,
    /// panicked and abandoned attempts (an Error status or an `error.type`
    /// attribute). A tenth more places than the span queue's size are kept for them, so
    /// they are dropped only when even that is full.
    pub error_spans_queue_full: u64,
}

impl Dropped {
    /// The counts of one signal.
    pub fn of(&self, signal: Signal) -> DropCounts {
        match signal {
            Signal::Traces => self.spans,
            Signal::Metrics => self.metric_points,
            Signal::Logs => self.log_records,
        }
    }

    /// True when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        Signal::ALL
            .iter()
            .all(|signal| self.of(*signal).total() == 0)
    }
}

impl fmt::Display for Dropped {
    /// `1200 spans (queue_full 1000, export_failed 200), 0 metric data
    /// points, 0 log records`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (signal, noun) in [
            (Signal::Traces, "spans"),
            (Signal::Metrics, "metric data points"),
            (Signal::Logs, "log records"),
        ] {
            if signal != Signal::Traces {
                f.write_str(", ")?;
            }
            let counts = self.of(signal);
            write!(f, "{} {noun}", counts.total())?;
            let mut reasons = DropReason::ALL
                .iter()
                .filter(|reason| counts.get(**reason) > 0)
                .peekable();
            if reasons.peek().is_some() {
                f.write_str(" (")?;
                for (i, reason) in reasons.enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{reason} {}", counts.get(*reason))?;
                }
                f.write_str(")")?;
            }
        }
        Ok(())
    }
}

const SIGNALS: usize = Signal::ALL.len();
const REASONS: usize = DropReason::ALL.len();

fn signal_index(signal: Signal) -> usize {
    signal.index()
}

/// The lock-free counters behind [`Dropped`], the one-line reports, and
/// the seal that makes the count at the shutdown deadline final.
#[derive(Debug)]
pub(crate) struct DropCounter {
    counts: [[AtomicU64; REASONS]; SIGNALS],
    /// Error spans among the spans dropped as `queue_full`.
    error_spans: AtomicU64,
    reports: Reports,
    /// Set when the shutdown deadline passed and what was pending was
    /// counted as [`DropReason::ShutdownTimeout`]: exports that fail later
    /// were already counted. Taken only on cold paths.
    sealed: Mutex<bool>,
}

impl DropCounter {
    pub(crate) fn new(reports: Reports) -> Self {
        DropCounter {
            counts: Default::default(),
            error_spans: AtomicU64::new(0),
            reports,
            sealed: Mutex::new(false),
        }
    }

    /// Where the one-line reports go.
    pub(crate) fn reports(&self) -> &Reports {
        &self.reports
    }

    /// Counts one error span among the spans dropped as `queue_full`
    /// (counted there too, by [`record`](Self::record)).
    pub(crate) fn record_error_span(&self) {
        self.error_spans.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `items` dropped. True for the first drop of this signal and
    /// reason, the only one worth a line in the log.
    pub(crate) fn record(&self, signal: Signal, reason: DropReason, items: u64) -> bool {
        self.counts[signal_index(signal)][reason.index()].fetch_add(items, Ordering::Relaxed) == 0
            && items > 0
    }

    /// Counts the items of an export that failed, unless the shutdown
    /// deadline already counted them; `settle` runs under the same lock
    /// (it takes the export off the in-flight count). True for the first.
    pub(crate) fn record_failed_export(
        &self,
        signal: Signal,
        items: u64,
        settle: impl FnOnce(),
    ) -> bool {
        let sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        settle();
        !*sealed && self.record(signal, DropReason::ExportFailed, items)
    }

    /// At the shutdown deadline: counts what `pending` says is still
    /// unexported as [`DropReason::ShutdownTimeout`], once, and makes later
    /// failures of those exports count for nothing.
    pub(crate) fn seal(&self, pending: impl FnOnce() -> [u64; SIGNALS]) {
        let mut sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        if *sealed {
            return;
        }
        *sealed = true;
        for (signal, items) in Signal::ALL.into_iter().zip(pending()) {
            if items > 0 {
                self.record(signal, DropReason::ShutdownTimeout, items);
            }
        }
    }

    /// The counts now.
    pub(crate) fn snapshot(&self) -> Dropped {
        let counts = |signal: Signal| {
            let row = &self.counts[signal_index(signal)];
            let get = |reason: DropReason| row[reason.index()].load(Ordering::Relaxed);
            DropCounts {
                queue_full: get(DropReason::QueueFull),
                export_failed: get(DropReason::ExportFailed),
                shutdown_timeout: get(DropReason::ShutdownTimeout),
                job_limit: get(DropReason::JobLimit),
            }
        };
        Dropped {
            spans: counts(Signal::Traces),
            metric_points: counts(Signal::Metrics),
            log_records: counts(Signal::Logs),
            error_spans_queue_full: self.error_spans.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_drop_of_each_signal_and_reason_is_reported() {
        let counter = DropCounter::new(Reports::default());
        assert!(counter.record(Signal::Traces, DropReason::QueueFull, 1));
        assert!(!counter.record(Signal::Traces, DropReason::QueueFull, 1));
        assert!(counter.record(Signal::Traces, DropReason::ExportFailed, 512));
        assert!(counter.record(Signal::Metrics, DropReason::ExportFailed, 7));
        assert!(!counter.record(Signal::Metrics, DropReason::ExportFailed, 3));
        let dropped = counter.snapshot();
        assert_eq!(dropped.spans.queue_full, 2);
        assert_eq!(dropped.spans.export_failed, 512);
        assert_eq!(dropped.of(Signal::Metrics).export_failed, 10);
        assert_eq!(dropped.spans.total(), 514);
        assert_eq!(
            dropped.to_string(),
            "514 spans (queue_full 2, export_failed 512), 10 metric data points (export_failed 10), 0 log records"
        );
        assert!(DropCounter::new(Reports::default()).snapshot().is_empty());
    }

    #[test]
    fn after_the_seal_failed_exports_are_not_counted_twice() {
        let counter = DropCounter::new(Reports::default());
        assert!(counter.record_failed_export(Signal::Traces, 5, || {}));
        counter.seal(|| [100, 4, 3]);
        counter.seal(|| [1000, 1000, 1000]);
        let mut settled = false;
        assert!(!counter.record_failed_export(Signal::Traces, 100, || settled = true));
        assert!(settled);
        let dropped = counter.snapshot();
        assert_eq!(dropped.spans.export_failed, 5);
        assert_eq!(dropped.spans.shutdown_timeout, 100);
        assert_eq!(dropped.metric_points.shutdown_timeout, 4);
        assert_eq!(dropped.log_records.shutdown_timeout, 3);
    }
}
