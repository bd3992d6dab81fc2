//! The span queue (and, with the same counter, the log record queue),
//! counted exactly: [`CountedBatchProcessor`] wraps the
//! SDK's `BatchSpanProcessor`, which drops spans when its queue is full but
//! only logs how many at shutdown.
//!
//! Here a span is admitted only while fewer than `limit` spans are
//! *queued*: ended, and not yet handed to an export. The exporter wrapper
//! takes a batch off that count the moment the batch processor hands it to
//! the exporter. Spans leave the SDK's channel a little before that, so the
//! SDK's channel (sized `limit` too) always holds at most as many spans as
//! are counted here and never overflows: every span that is not admitted is
//! dropped here, at the door, and counted as `queue_full`, and every
//! admitted span reaches the exporter. The job's thread pays one atomic add
//! for it (measured by `benches/span_end.rs`).
//!
//! Errors are shed last: a tenth more places than the configured queue size
//! ([`SpanQueue::reserve`]) are kept for error spans — those with an Error status (failed, panicked
//! and abandoned attempts) or an `error.type` attribute (attempts that
//! failed and will be retried). A span without either is dropped once the
//! queue holds the configured size, as without the reserve; an error span
//! only when the reserve is full too. The SDK's channel is sized for both. The span is inspected only when the queue is past its
//! share for other spans, so the common path stays one atomic add.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::Status;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanProcessor};

use crate::Signal;
use crate::dropped::{DropCounter, DropReason};

/// How many spans are queued and how many are in an export.
#[derive(Debug)]
pub(crate) struct SpanQueue {
    /// Spans admitted and not yet handed to an export.
    queued: AtomicU64,
    /// Spans handed to an export that has not returned yet.
    in_export: AtomicU64,
    limit: u64,
    /// Spans admitted while fewer than this many are queued, whatever they
    /// hold; past it, only error spans, up to `limit`.
    share: u64,
}

impl SpanQueue {
    /// A queue that holds `size` spans of any kind (at least 1), and a
    /// tenth more (rounded up, none for a queue of 1) for error spans only.
    pub(crate) fn new(size: usize) -> Self {
        let share = (size as u64).max(1);
        let reserve = if share > 1 { share.div_ceil(10) } else { 0 };
        SpanQueue {
            queued: AtomicU64::new(0),
            in_export: AtomicU64::new(0),
            limit: share + reserve,
            share,
        }
    }

    /// The most spans the queue holds, reserve included: the size of the
    /// SDK's channel behind it.
    pub(crate) fn capacity(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(usize::MAX)
    }

    /// Places kept for error spans.
    pub(crate) fn reserve(&self) -> u64 {
        self.limit - self.share
    }

    /// The most spans the queue holds.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes a place in the queue for a span; `is_error` is asked only
    /// when the queue is past the share of other spans. False when there is
    /// no place for it.
    #[inline]
    pub(crate) fn admit(&self, is_error: impl FnOnce() -> bool) -> bool {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        if before < self.share || (before < self.limit && is_error()) {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// `spans` were handed to an export.
    pub(crate) fn taken(&self, spans: u64) {
        self.queued.fetch_sub(spans, Ordering::AcqRel);
        self.in_export.fetch_add(spans, Ordering::AcqRel);
    }

    /// An export of `spans` returned, whatever its result.
    pub(crate) fn settled(&self, spans: u64) {
        self.in_export.fetch_sub(spans, Ordering::AcqRel);
    }

    /// Spans not exported yet: queued or in an export.
    pub(crate) fn pending(&self) -> u64 {
        self.queued.load(Ordering::Acquire) + self.in_export.load(Ordering::Acquire)
    }
}

/// The SDK's batch span processor behind a counted admission (see the
/// module docs).
#[derive(Debug)]
pub(crate) struct CountedBatchProcessor {
    inner: BatchSpanProcessor,
    queue: Arc<SpanQueue>,
    drops: Arc<DropCounter>,
}

impl CountedBatchProcessor {
    /// `inner`'s queue must hold at least `queue.limit()` spans, and its
    /// exporter must report to `queue` (`taken`, `settled`).
    pub(crate) fn new(
        inner: BatchSpanProcessor,
        queue: Arc<SpanQueue>,
        drops: Arc<DropCounter>,
    ) -> Self {
        CountedBatchProcessor {
            inner,
            queue,
            drops,
        }
    }

    #[cold]
    fn queue_full(&self, span: &SpanData) {
        if is_error_span(span) {
            self.drops.record_error_span();
        }
        if self.drops.record(Signal::Traces, DropReason::QueueFull, 1) {
            self.drops.reports().line(&queue_full_warning(
                self.queue.limit() - self.queue.reserve(),
                self.queue.reserve(),
            ));
        }
    }
}

impl SpanProcessor for CountedBatchProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    #[inline]
    fn on_end(&self, span: SpanData) {
        if self.queue.admit(|| is_error_span(&span)) {
            self.inner.on_end(span);
        } else {
            self.queue_full(&span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Whether `span` tells of an error: an Error status, or an `error.type`
/// attribute (an attempt that failed and will be retried).
fn is_error_span(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
        || span
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == ERROR_TYPE)
}

/// The attribute that marks a span as an error without an Error status.
const ERROR_TYPE: &str = "error.type";

/// The line printed at the first span dropped because the queue is full.
fn queue_full_warning(limit: u64, reserve: u64) -> String {
    format!(
        "jobsight-otel: warning: the span queue is full ({limit} spans waiting for export, \
         OTEL_BSP_MAX_QUEUE_SIZE, {reserve} more places kept for error spans): new spans are \
         dropped, error spans last, jobs do not wait. Dropped spans are \
         counted in jobsight.telemetry.dropped (Telemetry::dropped), not printed again."
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracerProvider, SpanExporter};

    use super::*;
    use crate::reports::Reports;
    use jobsight_testkit::LogCapture;

    /// Blocks every export until told to go on, then keeps the spans.
    #[derive(Debug, Clone)]
    struct Gate {
        queue: Arc<SpanQueue>,
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        exported: Arc<AtomicU64>,
    }

    impl Gate {
        fn release(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl SpanExporter for Gate {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let spans = batch.len() as u64;
            self.queue.taken(spans);
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            self.exported.fetch_add(spans, Ordering::SeqCst);
            self.queue.settled(spans);
            Ok(())
        }
    }

    fn provider(
        limit: usize,
        batch: usize,
    ) -> (SdkTracerProvider, Gate, Arc<DropCounter>, LogCapture) {
        let queue = Arc::new(SpanQueue::new(limit));
        let captured = LogCapture::default();
        let drops = Arc::new(DropCounter::new(Reports::to_writer(Box::new(
            captured.clone(),
        ))));
        let gate = Gate {
            queue: Arc::clone(&queue),
            open: Arc::default(),
            exported: Arc::default(),
        };
        let inner = BatchSpanProcessor::builder(gate.clone())
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(queue.capacity())
                    .with_max_export_batch_size(batch)
                    .with_scheduled_delay(Duration::from_millis(10))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountedBatchProcessor::new(inner, queue, Arc::clone(&drops)))
            .build();
        (provider, gate, drops, captured)
    }

    #[test]
    fn every_span_is_either_exported_or_counted_and_reported_once() {
        const LIMIT: usize = 100;
        const SPANS: u64 = 1000;
        let (provider, gate, drops, captured) = provider(LIMIT, 10);
        let tracer = provider.tracer("test");
        // The first export blocks with its batch; the queue fills behind it.
        for _ in 0..SPANS {
            tracer.in_span("process q", |_| {});
        }
        let dropped = drops.snapshot().spans.queue_full;
        // At most the queue and the one blocked batch got in.
        assert!(dropped >= SPANS - LIMIT as u64 - 10, "{dropped}");
        gate.release();
        provider.force_flush().unwrap();
        let exported = gate.exported.load(Ordering::SeqCst);
        assert_eq!(
            exported + dropped,
            SPANS,
            "exported {exported}, dropped {dropped}"
        );
        assert_eq!(drops.snapshot().spans.total(), dropped);
        let text = captured.text();
        assert_eq!(text.matches("span queue is full").count(), 1, "{text}");
        assert!(text.contains("100 spans"), "{text}");
        provider.shutdown().unwrap();
    }

    #[test]
    fn pending_counts_queued_and_exporting_spans() {
        let queue = SpanQueue::new(3);
        for _ in 0..4 {
            assert!(queue.admit(|| true));
        }
        assert!(!queue.admit(|| true));
        queue.taken(2);
        assert_eq!(queue.pending(), 4);
        assert!(queue.admit(|| true));
        queue.settled(2);
        assert_eq!(queue.pending(), 3);
    }

    #[test]
    fn a_tenth_more_is_kept_for_error_spans() {
        let queue = SpanQueue::new(20);
        assert_eq!(queue.reserve(), 2);
        assert_eq!(queue.capacity(), 22);
        let mut asked = 0;
        for _ in 0..20 {
            assert!(queue.admit(|| {
                asked += 1;
                false
            }));
        }
        assert_eq!(asked, 0, "below its share a span is not inspected");
        assert!(!queue.admit(|| false), "other spans stop at the share");
        assert!(queue.admit(|| true));
        assert!(queue.admit(|| true));
        assert!(!queue.admit(|| true), "error spans stop at the limit");
        assert_eq!(queue.pending(), 22);
        queue.taken(22);
        queue.settled(22);
        assert!(queue.admit(|| false));
        assert_eq!(SpanQueue::new(1).reserve(), 0);
        assert_eq!(SpanQueue::new(65_536).reserve(), 6554);
    }

    #[test]
    fn error_spans_are_those_with_an_error_status_or_an_error_type() {
        use opentelemetry::trace::TraceContextExt as _;
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let kept = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = kept.tracer("test");
        tracer.in_span("ok", |_| {});
        tracer.in_span("failed", |cx| {
            cx.span().set_status(Status::error("boom"));
        });
        tracer.in_span("retried", |cx| {
            cx.span()
                .set_attribute(opentelemetry::KeyValue::new("error.type", "Refused"));
        });
        let spans = exporter.get_finished_spans().unwrap();
        let errors: Vec<_> = spans
            .iter()
            .map(|span| (span.name.as_ref(), is_error_span(span)))
            .collect();
        assert_eq!(errors, [("ok", false), ("failed", true), ("retried", true)]);
    }
}
