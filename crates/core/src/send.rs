//! [`SendTransaction`]: the producer side — enqueueing one job, as a
//! PRODUCER span and metric points.
//!
//! # When things happen
//! - [`JobMonitor::start_send`] opens the PRODUCER span `send {queue}` as a
//!   child of [`Context::current`], with `messaging.system`,
//!   `messaging.operation.name` = `send`, `messaging.operation.type` =
//!   `send`, `messaging.destination.name`, `job.name` and, when the job has
//!   an id, `messaging.message.id`.
//! - The runner writes [`SendTransaction::context`] into the job with
//!   [`SendTransaction::inject`] (W3C `traceparent`, `tracestate`, baggage):
//!   the creation context a consumer links to is the send span's.
//! - The runner pushes the job, then finishes the transaction with the
//!   result: [`succeed`](SendTransaction::succeed) or
//!   [`fail`](SendTransaction::fail) (status Error, `error.type`, an
//!   `exception` event). Either ends the span and records
//!   `messaging.client.sent.messages` and
//!   `messaging.client.operation.duration`, with `error.type` on failure.
//! - A send that succeeds is also the `Enqueued` event of the monitor's
//!   [observers](crate::observer), if it has any.
//! - A transaction **dropped** unfinished (the push future was cancelled)
//!   is recorded as a failure with `error.type` = `abandoned`: the job may
//!   or may not have reached the queue.
//!
//! Metric attributes: `messaging.system`, `messaging.destination.name`,
//! `job.name`, `messaging.operation.name`, and `error.type` on failure —
//! the same job kinds (and cardinality cap) as the consumer side.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::propagation::Injector;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

use crate::error::ErrorRecord;
use crate::job::JobMeta;
use crate::kinds::JobKind;
use crate::monitor::JobMonitor;
use crate::semconv;

/// Status message of a send that was cancelled before it completed.
const ABANDONED_MESSAGE: &str = "the send was cancelled before it completed";

impl JobMonitor {
    /// Starts recording the enqueueing of the job `meta` describes (system,
    /// queue, name and, when known, id): opens the PRODUCER span
    /// `send {queue}` as a child of the current context. Inject
    /// [`SendTransaction::context`] into the job, push it, then finish the
    /// transaction with the push's result.
    pub fn start_send(&self, meta: &JobMeta) -> SendTransaction {
        let kind = self.kind(meta.system(), meta.queue_arc(), meta.name());
        SendTransaction::start(self, kind, meta)
    }

    /// [`start_send`](Self::start_send) with a [`JobKind`] the caller looked
    /// up before with [`JobMonitor::kind`] and kept.
    pub fn start_send_with_kind(&self, kind: Arc<JobKind>, meta: &JobMeta) -> SendTransaction {
        SendTransaction::start(self, kind, meta)
    }
}

/// The enqueueing of one job, open until it is finished or dropped.
///
/// ```
/// use std::collections::HashMap;
/// use jobsight_core::{JobMeta, JobMonitor};
///
/// let monitor = JobMonitor::new();
/// let send = monitor.start_send(&JobMeta::builder("my-runner", "emails").id("42").build());
/// let mut headers = HashMap::new();
/// send.inject(&mut headers); // W3C traceparent of the send span, and baggage
/// let pushed: Result<(), std::io::Error> = Ok(()); // push the job with its headers here
/// match pushed {
///     Ok(()) => send.succeed(),
///     Err(e) => send.fail(&e),
/// }
/// ```
#[must_use = "a send transaction dropped without finishing is recorded as abandoned"]
pub struct SendTransaction {
    monitor: JobMonitor,
    kind: Arc<JobKind>,
    cx: Context,
    started: Instant,
    finished: bool,
    /// The job, kept for the observers' `Enqueued` event when there are any.
    observed: Option<JobMeta>,
}

impl std::fmt::Debug for SendTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTransaction")
            .field("span", &self.kind.send.span_name)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl SendTransaction {
    fn start(monitor: &JobMonitor, kind: Arc<JobKind>, meta: &JobMeta) -> Self {
        let instruments = monitor.instruments();
        let mut attrs = Vec::with_capacity(kind.send.attributes.len() + 2);
        attrs.extend(kind.send.attributes.iter().cloned());
        attrs.push(KeyValue::new(
            semconv::MESSAGING_OPERATION_TYPE,
            semconv::OPERATION_SEND,
        ));
        if let Some(id) = meta.id_arc() {
            attrs.push(KeyValue::new(semconv::MESSAGING_MESSAGE_ID, id.clone()));
        }
        let builder = SpanBuilder::from_name(kind.send.span_name.clone())
            .with_kind(SpanKind::Producer)
            .with_attributes(attrs);
        let parent = Context::current();
        let span = instruments.tracer.build_with_context(builder, &parent);
        Self {
            monitor: monitor.clone(),
            kind,
            cx: parent.with_span(span),
            started: Instant::now(),
            finished: false,
            observed: monitor.observers().is_listening().then(|| meta.clone()),
        }
    }

    /// The context holding the send span, with the caller's baggage: what a
    /// consumer sees as the job's creation context. Attach it while pushing
    /// so that the backend client's own spans are children of the send span.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Writes [`context`](Self::context) into `carrier` with the global
    /// propagator (W3C `traceparent`, `tracestate` and `baggage` once
    /// `jobsight_otel` is installed).
    pub fn inject(&self, carrier: &mut dyn Injector) {
        crate::propagation::inject(&self.cx, carrier);
    }

    /// Finishes the send as succeeded: the job is in the queue.
    pub fn succeed(mut self) {
        self.complete(None);
        if let Some(meta) = self.observed.take() {
            self.monitor.observers().enqueued(&meta);
        }
    }

    /// Finishes the send as failed with `error`: status Error, `error.type`
    /// and an `exception` event on the span, `error.type` on the metrics.
    pub fn fail(self, error: &(dyn StdError + 'static)) {
        self.fail_with(ErrorRecord::from_error(error));
    }

    /// Finishes the send as failed with an error the runner has already
    /// recorded.
    pub fn fail_with(mut self, record: ErrorRecord) {
        self.complete(Some(record));
    }

    fn complete(&mut self, error: Option<ErrorRecord>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let elapsed = self.started.elapsed().as_secs_f64();
        let span = self.cx.span();
        if let Some(record) = &error
            && span.is_recording()
        {
            span.set_attribute(KeyValue::new(
                semconv::ERROR_TYPE,
                record.error_type_cow().clone(),
            ));
            if record.error_type() == semconv::ERROR_TYPE_ABANDONED {
                span.set_status(Status::error(ABANDONED_MESSAGE));
            } else {
                span.set_status(Status::error(record.message().to_owned()));
                span.add_event(
                    semconv::EXCEPTION_EVENT,
                    vec![
                        KeyValue::new(semconv::EXCEPTION_TYPE, record.error_type_cow().clone()),
                        KeyValue::new(semconv::EXCEPTION_MESSAGE, record.message().to_owned()),
                    ],
                );
            }
        }
        span.end();

        let instruments = self.monitor.instruments();
        let base = &self.kind.send.attributes;
        match error {
            None => {
                instruments.sent.add(1, base);
                instruments.send_duration.record(elapsed, base);
            }
            Some(record) => {
                let mut attrs = Vec::with_capacity(base.len() + 1);
                attrs.extend(base.iter().cloned());
                attrs.push(KeyValue::new(
                    semconv::ERROR_TYPE,
                    record.error_type_cow().clone(),
                ));
                instruments.sent.add(1, &attrs);
                instruments.send_duration.record(elapsed, &attrs);
            }
        }
    }
}

impl Drop for SendTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.complete(Some(ErrorRecord::new(
                semconv::ERROR_TYPE_ABANDONED,
                ABANDONED_MESSAGE,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use std::collections::HashMap;

    fn providers() -> (
        InMemorySpanExporter,
        SdkTracerProvider,
        InMemoryMetricExporter,
        SdkMeterProvider,
    ) {
        crate::propagation::tests::install();
        let t = jobsight_testkit::MemoryTelemetry::new();
        (
            t.span_exporter().clone(),
            t.tracer_provider().clone(),
            t.metric_exporter().clone(),
            t.meter_provider().clone(),
        )
    }

    fn sent_points(metrics: &InMemoryMetricExporter) -> Vec<Vec<(String, String)>> {
        let mut out = Vec::new();
        for rm in metrics.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    if m.name() != semconv::METRIC_SENT_MESSAGES {
                        continue;
                    }
                    if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                        for p in sum.data_points() {
                            let mut attrs: Vec<(String, String)> = p
                                .attributes()
                                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                                .collect();
                            attrs.sort();
                            out.push(attrs);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_send_is_a_producer_child_of_the_current_span_and_is_what_gets_injected() {
        let (spans, tp, metrics, mp) = providers();
        let monitor = JobMonitor::builder()
            .tracer_provider(&tp)
            .meter_provider(&mp)
            .build();
        let request = tp.tracer("test").start("request");
        let request_cx = Context::current_with_span(request);
        let mut carrier = HashMap::new();
        {
            let _guard = request_cx.clone().attach();
            let meta = JobMeta::builder("test", "emails")
                .name("welcome")
                .id("m-1")
                .build();
            let send = monitor.start_send(&meta);
            send.inject(&mut carrier);
            send.succeed();
        }
        request_cx.span().end();
        let finished = spans.get_finished_spans().unwrap();
        let send = finished.iter().find(|s| s.name == "send emails").unwrap();
        let request = finished.iter().find(|s| s.name == "request").unwrap();
        assert_eq!(send.span_kind, SpanKind::Producer);
        assert_eq!(send.parent_span_id, request.span_context.span_id());
        assert_eq!(
            send.span_context.trace_id(),
            request.span_context.trace_id()
        );
        let attr = |k: &str| {
            send.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attr("messaging.operation.type").as_deref(), Some("send"));
        assert_eq!(attr("messaging.operation.name").as_deref(), Some("send"));
        assert_eq!(attr("messaging.message.id").as_deref(), Some("m-1"));
        assert_eq!(
            attr("messaging.destination.name").as_deref(),
            Some("emails")
        );
        let injected = crate::propagation::extract(&carrier).unwrap();
        assert_eq!(injected.span_id(), send.span_context.span_id());

        mp.force_flush().unwrap();
        let points = sent_points(&metrics);
        assert_eq!(points.len(), 1);
        assert!(!points[0].iter().any(|(k, _)| k == "error.type"));
        assert!(points[0].contains(&("job.name".into(), "welcome".into())));
    }

    #[test]
    fn a_successful_send_is_the_observers_enqueued_event() {
        use crate::observer::{EventKind, JobEvent};
        use std::sync::{Arc, Mutex};
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let monitor = JobMonitor::builder()
            .observer(move |e: &JobEvent| {
                sink.lock()
                    .unwrap()
                    .push((e.kind, e.job.id().map(str::to_owned)))
            })
            .build();
        let meta = JobMeta::builder("test", "q").id("j-1").build();
        monitor.start_send(&meta).succeed();
        monitor
            .start_send(&meta)
            .fail(&std::io::Error::other("down"));
        assert!(monitor.observers().flush(std::time::Duration::from_secs(5)));
        assert_eq!(
            *seen.lock().unwrap(),
            [(EventKind::Enqueued, Some("j-1".to_owned()))]
        );
    }

    #[test]
    fn failed_and_dropped_sends_are_errors() {
        let (spans, tp, metrics, mp) = providers();
        let monitor = JobMonitor::builder()
            .tracer_provider(&tp)
            .meter_provider(&mp)
            .build();
        let meta = JobMeta::builder("test", "q").build();
        monitor
            .start_send(&meta)
            .fail(&std::io::Error::other("connection refused"));
        drop(monitor.start_send(&meta));
        let finished = spans.get_finished_spans().unwrap();
        assert_eq!(finished.len(), 2);
        assert_eq!(finished[0].status, Status::error("connection refused"));
        assert_eq!(finished[0].events.len(), 1);
        assert!(matches!(finished[1].status, Status::Error { .. }));
        mp.force_flush().unwrap();
        let mut types: Vec<String> = sent_points(&metrics)
            .into_iter()
            .filter_map(|p| {
                p.into_iter()
                    .find(|(k, _)| k == "error.type")
                    .map(|(_, v)| v)
            })
            .collect();
        types.sort();
        assert_eq!(types, ["abandoned", "std::io::Error"]);
    }
}
