//! The cost per push of recording a send and injecting its context.
//!
//! ```text
//! cargo bench -p jobsight-apalis --bench push
//! ```
//!
//! Every case pushes a freshly built task into a service that accepts it at
//! once, so what is measured is jobsight's work, not a backend's:
//! - `bare`: the service alone (building the task, calling, polling);
//! - `inject`: only writing a span's W3C context into the task's metadata
//!   (`traceparent`, `tracestate`) — no span, no metrics;
//! - `send_layer/no_sdk`: [`SendLayer`] with no SDK installed (the
//!   `opentelemetry` API's no-op providers);
//! - `send_layer/sdk`: [`SendLayer`] recording with the SDK — a sampled
//!   `send {queue}` span through a batch processor whose exporter drops
//!   everything, and the two metric instruments — and injecting its
//!   context;
//! - `send_layer/sdk_ids`: the same, giving each task an id first
//!   (`messaging.message.id`), as `TracedPush` does;
//! - `send_layer/sdk_baggage`: the same, from a context carrying two
//!   baggage entries, which are injected too.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::task_id::RandomId;
use criterion::{Criterion, criterion_group, criterion_main};
use jobsight_apalis::carrier::MetadataInjector;
use jobsight_apalis::{JobMonitor, SendLayer, SendLayerBuilder};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use tower::{Layer, Service};

/// An exporter that drops every batch.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// The job's arguments.
#[derive(Clone)]
struct Report(u64);

/// Polls a future that is ready at once.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the bench's services are always ready"),
    }
}

fn accept_all()
-> impl Service<Task<Report>, Response = (), Error = std::io::Error, Future: Send> + Clone {
    tower::service_fn(|task: Task<Report>| {
        black_box(task.args.0);
        std::future::ready(Ok::<(), std::io::Error>(()))
    })
}

fn push<S: Service<Task<Report>, Error = std::io::Error>>(service: &mut S, n: u64) {
    let task = TaskBuilder::new(Report(n)).build();
    ready(service.call(task)).unwrap_or_else(|e| panic!("{e}"));
}

fn sdk() -> (SdkTracerProvider, SdkMeterProvider) {
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(Discard)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(65_536)
                        .with_scheduled_delay(Duration::from_millis(100))
                        .build(),
                )
                .build(),
        )
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(InMemoryMetricExporter::default())
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    (tracer_provider, meter_provider)
}

fn bench_push(c: &mut Criterion) {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let (tracer_provider, meter_provider) = sdk();
    let sdk_monitor = JobMonitor::builder()
        .tracer_provider(&tracer_provider)
        .meter_provider(&meter_provider)
        .build();
    // A request span, current while pushing, as in a web handler.
    let request = tracer_provider.tracer("bench").start("request");
    let request_cx = Context::current_with_span(request);
    let _current = request_cx.clone().attach();

    let mut group = c.benchmark_group("push");
    let mut n = 0u64;

    let mut bare = accept_all();
    group.bench_function("bare", |b| {
        b.iter(|| {
            n += 1;
            push(&mut bare, n);
        })
    });

    let mut inject = tower::service_fn({
        let mut inner = accept_all();
        move |mut task: Task<Report>| {
            let mut metadata = MetadataStore::new();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&Context::current(), &mut MetadataInjector(&mut metadata))
            });
            task = task.into_builder().with_metadata(metadata).build();
            inner.call(task)
        }
    });
    group.bench_function("inject", |b| {
        b.iter(|| {
            n += 1;
            push(&mut inject, n);
        })
    });

    let mut no_sdk = send_layer(
        SendLayer::builder()
            .monitor(JobMonitor::new())
            .queue("reports"),
    )
    .layer(accept_all());
    group.bench_function("send_layer/no_sdk", |b| {
        b.iter(|| {
            n += 1;
            push(&mut no_sdk, n);
        })
    });

    let mut with_sdk = send_layer(
        SendLayer::builder()
            .monitor(sdk_monitor.clone())
            .queue("reports"),
    )
    .layer(accept_all());
    group.bench_function("send_layer/sdk", |b| {
        b.iter(|| {
            n += 1;
            push(&mut with_sdk, n);
        })
    });

    let mut with_ids = send_layer(
        SendLayer::builder()
            .monitor(sdk_monitor.clone())
            .queue("reports")
            .generate_ids::<RandomId>(),
    )
    .layer(accept_all());
    group.bench_function("send_layer/sdk_ids", |b| {
        b.iter(|| {
            n += 1;
            push(&mut with_ids, n);
        })
    });

    let baggage_cx = request_cx.with_baggage(vec![
        KeyValue::new("tenant", "acme"),
        KeyValue::new("plan", "pro"),
    ]);
    let _with_baggage = baggage_cx.attach();
    group.bench_function("send_layer/sdk_baggage", |b| {
        b.iter(|| {
            n += 1;
            push(&mut with_sdk, n);
        })
    });
    group.finish();

    drop(_with_baggage);
    drop(_current);
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_push
}
criterion_main!(benches);

fn send_layer(builder: SendLayerBuilder) -> SendLayer {
    match builder.build() {
        Ok(layer) => layer,
        Err(e) => panic!("bench layer: {e}"),
    }
}
