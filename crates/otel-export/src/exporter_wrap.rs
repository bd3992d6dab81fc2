//! Exporter wrappers that make failures visible: each failed export is
//! counted in a shared [`FailureCounter`], its spans or data points in the
//! [`DropCounter`] (`export_failed`), and the first failure of a signal is
//! reported once. A backend that accepts traces but rejects metrics costs
//! one warning, not one line per export, and never an error. They also keep
//! the count of what is in an export, for the shutdown deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::Signal;
use crate::dropped::DropCounter;
use crate::export_failures::{FailureCounter, first_failure_warning};
use crate::span_queue::SpanQueue;

/// Where a wrapper exports to and whom it reports failures to.
#[derive(Debug, Clone)]
pub(crate) struct FailureReport {
    pub(crate) counter: Arc<FailureCounter>,
    pub(crate) drops: Arc<DropCounter>,
    /// Redacted endpoint, for the warning.
    pub(crate) endpoint: String,
    /// Set by our HTTP client (`tls` feature), whose failures the exporter
    /// itself reports only as "network error".
    pub(crate) transport_error: Arc<TransportError>,
}

impl FailureReport {
    /// Counts a failed export of `items`; `settle` takes it off the
    /// in-export count, under the lock that the shutdown deadline takes.
    fn failed(&self, signal: Signal, items: u64, error: &OTelSdkError, settle: impl FnOnce()) {
        let first = self.counter.record(signal, items);
        self.drops.record_failed_export(signal, items, settle);
        if first {
            let warning = match self.transport_error.get() {
                Some(cause) => first_failure_warning(
                    signal,
                    &self.endpoint,
                    &format_args!("{error} ({cause})"),
                ),
                None => first_failure_warning(signal, &self.endpoint, error),
            };
            self.drops.reports().line(&warning);
        }
    }
}

/// Why the last request of an HTTP client failed; `None` after a request
/// that got a response.
#[derive(Debug, Default)]
pub(crate) struct TransportError(Mutex<Option<String>>);

impl TransportError {
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn set(&self, cause: Option<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = cause;
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A [`SpanExporter`] that counts failed exports and tells the span queue
/// what left it.
#[derive(Debug)]
pub(crate) struct CountingSpanExporter<E> {
    pub(crate) inner: E,
    pub(crate) report: FailureReport,
    pub(crate) queue: Arc<SpanQueue>,
}

impl<E: SpanExporter> SpanExporter for CountingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        self.queue.taken(spans);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.queue.settled(spans),
            Err(error) => self
                .report
                .failed(Signal::Traces, spans, error, || self.queue.settled(spans)),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A [`LogExporter`] that counts failed exports and tells the log record
/// queue what left it.
#[derive(Debug)]
pub(crate) struct CountingLogExporter<E> {
    pub(crate) inner: E,
    pub(crate) report: FailureReport,
    pub(crate) queue: Arc<SpanQueue>,
}

impl<E: LogExporter> LogExporter for CountingLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count() as u64;
        self.queue.taken(records);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.queue.settled(records),
            Err(error) => self
                .report
                .failed(Signal::Logs, records, error, || self.queue.settled(records)),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A [`PushMetricExporter`] that counts failed exports.
#[derive(Debug)]
pub(crate) struct CountingMetricExporter<E> {
    pub(crate) inner: E,
    pub(crate) report: FailureReport,
    /// Data points in an export that has not returned yet.
    pub(crate) in_export: Arc<AtomicU64>,
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let points = count_data_points(metrics);
        self.in_export.fetch_add(points, Ordering::AcqRel);
        let result = self.inner.export(metrics).await;
        let settle = || {
            self.in_export.fetch_sub(points, Ordering::AcqRel);
        };
        match &result {
            Ok(()) => settle(),
            Err(error) => self.report.failed(Signal::Metrics, points, error, settle),
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Data points in one collection, over every metric.
fn count_data_points(metrics: &ResourceMetrics) -> u64 {
    fn points<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(gauge) => gauge.data_points().count(),
            MetricData::Sum(sum) => sum.data_points().count(),
            MetricData::Histogram(histogram) => histogram.data_points().count(),
            MetricData::ExponentialHistogram(histogram) => histogram.data_points().count(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(data) => points(data),
            AggregatedMetrics::U64(data) => points(data),
            AggregatedMetrics::I64(data) => points(data),
        } as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

    use super::*;
    use crate::ExportFailures;

    /// Fails every export, like a backend answering 404 on `/v1/metrics`.
    #[derive(Debug, Clone, Default)]
    struct Rejecting {
        shut_down: Arc<AtomicBool>,
    }

    impl SpanExporter for Rejecting {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Err(OTelSdkError::InternalFailure("HTTP 404".into()))
        }
    }

    impl PushMetricExporter for Rejecting {
        async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
            Err(OTelSdkError::InternalFailure("HTTP 404".into()))
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            self.shut_down.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    fn report() -> FailureReport {
        FailureReport {
            counter: Arc::default(),
            drops: Arc::new(DropCounter::new(crate::reports::Reports::default())),
            endpoint: "http://127.0.0.1:9/v1/metrics".into(),
            transport_error: Arc::default(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failed_span_exports_are_counted_with_their_spans() {
        let queue = Arc::new(SpanQueue::new(10));
        let exporter = CountingSpanExporter {
            inner: Rejecting::default(),
            report: report(),
            queue: Arc::clone(&queue),
        };
        assert!(exporter.export(Vec::new()).await.is_err());
        assert!(exporter.export(Vec::new()).await.is_err());
        let failures = exporter.report.counter.snapshot();
        assert_eq!(failures.failed_span_exports, 2);
        assert_eq!(failures.failed_metric_exports, 0);
        assert_eq!(queue.pending(), 0);
    }

    #[test]
    fn rejected_metrics_are_counted_per_data_point_and_shutdown_is_forwarded() {
        let inner = Rejecting::default();
        let shut_down = Arc::clone(&inner.shut_down);
        let report = report();
        let counter = Arc::clone(&report.counter);
        let drops = Arc::clone(&report.drops);
        let in_export = Arc::new(AtomicU64::new(0));
        let exporter = CountingMetricExporter {
            inner,
            report,
            in_export: Arc::clone(&in_export),
        };
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter).build())
            .build();
        let counter_instrument = provider.meter("test").u64_counter("jobs").build();
        counter_instrument.add(1, &[KeyValue::new("queue", "a")]);
        counter_instrument.add(1, &[KeyValue::new("queue", "b")]);
        assert!(provider.force_flush().is_err());
        assert!(provider.shutdown().is_err());
        assert!(shut_down.load(Ordering::SeqCst));
        assert_eq!(
            counter.snapshot(),
            ExportFailures {
                failed_metric_exports: 2,
                dropped_metric_points: 4,
                ..ExportFailures::default()
            }
        );
        assert_eq!(drops.snapshot().metric_points.export_failed, 4);
        assert_eq!(in_export.load(Ordering::SeqCst), 0);
    }
}
