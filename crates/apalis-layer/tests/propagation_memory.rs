//! Producer and consumer on apalis's in-memory backend, recorded with the
//! SDK's in-memory exporter: the send span, what gets injected, and how the
//! process span relates to it in each propagation mode. (The same over
//! Redis, across processes and over OTLP, is in the workspace's tests/.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::task::metadata::MetadataStore;
use jobsight_apalis::{JobMonitor, MonitorLayer, Propagation, SendLayer, TracedPush};
use jobsight_testkit::MemoryTelemetry;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SpanData;
use tower::{Service, ServiceExt};

struct Harness {
    telemetry: MemoryTelemetry,
}

impl Harness {
    fn new() -> Self {
        opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        Self {
            telemetry: MemoryTelemetry::new(),
        }
    }

    fn monitor(&self, propagation: Propagation) -> JobMonitor {
        JobMonitor::builder()
            .propagation(propagation)
            .tracer_provider(self.telemetry.tracer_provider())
            .meter_provider(self.telemetry.meter_provider())
            .build()
    }

    fn finished(&self) -> Vec<SpanData> {
        self.telemetry.spans()
    }

    /// Runs `f` inside a `request` span carrying baggage `tenant=acme`, the
    /// way a web handler would enqueue a job.
    async fn in_request<F: Future>(&self, f: F) -> F::Output {
        use opentelemetry::trace::FutureExt as _;
        let span = self
            .telemetry
            .tracer_provider()
            .tracer("app")
            .start("request");
        let cx =
            Context::current_with_span(span).with_baggage(vec![KeyValue::new("tenant", "acme")]);
        let out = f.with_context(cx.clone()).await;
        cx.span().end();
        out
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

/// The job: puts the baggage it sees on its process span.
async fn job(_n: u32) -> Result<(), BoxDynError> {
    let cx = Context::current();
    if let Some(tenant) = cx.baggage().get("tenant") {
        cx.span()
            .set_attribute(KeyValue::new("test.tenant", tenant.to_string()));
    }
    Ok(())
}

async fn run_worker(storage: MemoryStorage<u32>, layer: MonitorLayer, runs: usize) {
    let seen = Arc::new(AtomicUsize::new(0));
    let worker = WorkerBuilder::new(format!("w-{}", std::process::id()))
        .backend(storage)
        .layer(layer)
        .on_event(move |w: &WorkerContext, ev: &Event| {
            if matches!(ev, Event::Success(_) | Event::Error(_))
                && seen.fetch_add(1, Ordering::SeqCst) + 1 == runs
            {
                let _ = w.stop();
            }
        })
        .build(job);
    tokio::time::timeout(Duration::from_secs(20), worker.run())
        .await
        .expect("worker finished in time")
        .expect("worker ran");
}

/// Pushes one job from inside a request span, runs it, returns all spans.
async fn round_trip(mode: Propagation) -> Vec<SpanData> {
    let h = Harness::new();
    let mut storage = MemoryStorage::new();
    let producer = SendLayer::builder()
        .monitor(h.monitor(Propagation::Link))
        .queue("numbers")
        .build()
        .unwrap();
    h.in_request(storage.push_task_traced_with(&producer, TaskBuilder::new(7u32).build()))
        .await
        .unwrap();
    let layer = MonitorLayer::builder()
        .monitor(h.monitor(mode))
        .queue("numbers")
        .build()
        .unwrap();
    run_worker(storage, layer, 1).await;
    h.finished()
}

#[tokio::test]
async fn link_mode_links_a_new_trace_to_the_send_span() {
    let spans = round_trip(Propagation::Link).await;
    let (request, send, process) = (
        named(&spans, "request"),
        named(&spans, "send numbers"),
        named(&spans, "process numbers"),
    );
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(send.parent_span_id, request.span_context.span_id());
    assert_eq!(
        send.span_context.trace_id(),
        request.span_context.trace_id()
    );
    assert_eq!(
        attr(send, "messaging.operation.type").unwrap().as_str(),
        "send"
    );

    assert_ne!(
        process.span_context.trace_id(),
        send.span_context.trace_id()
    );
    assert_eq!(
        process.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    let links = &process.links.links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].span_context.span_id(), send.span_context.span_id());
    assert_eq!(
        links[0].span_context.trace_id(),
        send.span_context.trace_id()
    );

    let id = attr(send, "messaging.message.id").expect("the producer set an id");
    assert_eq!(attr(process, "messaging.message.id"), Some(id));
    assert_eq!(attr(process, "test.tenant").unwrap().as_str(), "acme");
}

#[tokio::test]
async fn child_mode_continues_the_producer_trace() {
    let spans = round_trip(Propagation::Child).await;
    let (send, process) = (
        named(&spans, "send numbers"),
        named(&spans, "process numbers"),
    );
    assert_eq!(
        process.span_context.trace_id(),
        send.span_context.trace_id()
    );
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert!(process.links.links.is_empty());
    assert_eq!(attr(process, "test.tenant").unwrap().as_str(), "acme");
}

#[tokio::test]
async fn none_mode_ignores_the_context_but_keeps_the_baggage() {
    let spans = round_trip(Propagation::None).await;
    let (send, process) = (
        named(&spans, "send numbers"),
        named(&spans, "process numbers"),
    );
    assert_ne!(
        process.span_context.trace_id(),
        send.span_context.trace_id()
    );
    assert!(process.links.links.is_empty());
    assert_eq!(attr(process, "test.tenant").unwrap().as_str(), "acme");
}

#[tokio::test]
async fn a_queue_override_wins_over_the_layer_mode() {
    let h = Harness::new();
    let mut storage = MemoryStorage::new();
    let producer = SendLayer::builder()
        .monitor(h.monitor(Propagation::Link))
        .queue("numbers")
        .build()
        .unwrap();
    storage
        .push_task_traced_with(&producer, TaskBuilder::new(1u32).build())
        .await
        .unwrap();
    let monitor = JobMonitor::builder()
        .propagation(Propagation::Link)
        .propagation_for_queue("numbers", Propagation::Child)
        .tracer_provider(h.telemetry.tracer_provider())
        .meter_provider(h.telemetry.meter_provider())
        .build();
    run_worker(
        storage,
        MonitorLayer::builder()
            .monitor(monitor)
            .queue("numbers")
            .build()
            .unwrap(),
        1,
    )
    .await;
    let spans = h.finished();
    let (send, process) = (
        named(&spans, "send numbers"),
        named(&spans, "process numbers"),
    );
    assert_eq!(process.parent_span_id, send.span_context.span_id());
}

#[tokio::test]
async fn hostile_and_missing_metadata_give_a_root_span_and_are_counted() {
    let h = Harness::new();
    let mut storage = MemoryStorage::new();
    let hostile = [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033".to_owned(),
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        "00-00000000000000000000000000000000-0000000000000000-01".to_owned(),
        "\u{0}\u{1}garbage".repeat(2000),
    ];
    for value in &hostile {
        let mut md = MetadataStore::new();
        md.insert("traceparent", value.clone()).unwrap();
        storage
            .push_task(TaskBuilder::new(1u32).with_metadata(md).build())
            .await
            .unwrap();
    }
    // A producer that does not use jobsight.
    storage.push(2u32).await.unwrap();
    let monitor = h.monitor(Propagation::Link);
    run_worker(
        storage,
        MonitorLayer::builder()
            .monitor(monitor.clone())
            .queue("numbers")
            .build()
            .unwrap(),
        5,
    )
    .await;
    let spans = h.finished();
    assert_eq!(spans.len(), 5);
    for s in &spans {
        assert_eq!(s.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        assert!(s.links.links.is_empty());
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "succeeded");
    }
    assert_eq!(monitor.invalid_contexts(), 4);
}

#[derive(Debug, thiserror::Error)]
#[error("queue is full")]
struct QueueFull;

#[tokio::test]
async fn a_failed_push_is_an_error_on_the_send_span_and_returned_unchanged() {
    let h = Harness::new();
    let failing = tower::service_fn(|_task: Task<u32>| async { Err::<(), _>(QueueFull) });
    let mut service = tower::ServiceBuilder::new()
        .layer(
            SendLayer::builder()
                .monitor(h.monitor(Propagation::Link))
                .queue("numbers")
                .job_name("number")
                .build()
                .unwrap(),
        )
        .service(failing);
    let error = service
        .ready()
        .await
        .unwrap()
        .call(TaskBuilder::new(3u32).build())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "queue is full");
    let spans = h.finished();
    let send = named(&spans, "send numbers");
    assert_eq!(send.status, Status::error("queue is full"));
    assert_eq!(attr(send, "error.type").unwrap().as_str(), "QueueFull");
    assert_eq!(attr(send, "job.name").unwrap().as_str(), "number");
    assert!(
        attr(send, "messaging.message.id").is_none(),
        "the layer sets no id unless told"
    );
}
