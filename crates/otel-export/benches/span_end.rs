//! What the counted span queue costs the job's thread: ending one span
//! through the SDK's batch processor alone, and through jobsight-otel's
//! counted admission in front of it (one more atomic add), interleaved in
//! one run. The exporter discards, so the queue never fills.
//!
//! `cargo bench -p jobsight-otel --bench span_end`
//!
//! For an instruction count, which load on the machine does not change:
//! `JOBSIGHT_SPAN_END=sdk|counted JOBSIGHT_SPAN_END_N=20000` runs that many
//! span ends with one processor and exits, to run under
//! `valgrind --tool=callgrind --separate-threads=yes` (the job's thread is
//! thread 1; difference two counts to remove the fixed costs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

use jobsight_otel::bench_support::{counted_batch_processor, sdk_batch_processor};

const QUEUE: usize = 65_536;

/// Drops every batch.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(black_box(batch));
        Ok(())
    }
}

fn end_one_span(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("bench");
    let mut span = tracer
        .span_builder("process emails")
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.system", "apalis"),
            KeyValue::new("messaging.destination.name", "emails"),
        ])
        .start(&tracer);
    span.end();
}

fn span_end(c: &mut Criterion) {
    let sdk = SdkTracerProvider::builder()
        .with_span_processor(sdk_batch_processor(Discard, QUEUE))
        .build();
    let counted = SdkTracerProvider::builder()
        .with_span_processor(counted_batch_processor(Discard, QUEUE))
        .build();
    let mut group = c.benchmark_group("span start+end, batch processor");
    group.bench_function("SDK BatchSpanProcessor", |b| b.iter(|| end_one_span(&sdk)));
    group.bench_function("jobsight counted queue + SDK", |b| {
        b.iter(|| end_one_span(&counted))
    });
    group.finish();
    let _ = sdk.shutdown();
    let _ = counted.shutdown();
}

criterion_group!(benches, span_end);

fn main() {
    if let Ok(which) = std::env::var("JOBSIGHT_SPAN_END") {
        let n: usize = std::env::var("JOBSIGHT_SPAN_END_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let processor_provider = match which.as_str() {
            "sdk" => SdkTracerProvider::builder()
                .with_span_processor(sdk_batch_processor(Discard, QUEUE))
                .build(),
            _ => SdkTracerProvider::builder()
                .with_span_processor(counted_batch_processor(Discard, QUEUE))
                .build(),
        };
        for _ in 0..n {
            end_one_span(&processor_provider);
        }
        let _ = processor_provider.shutdown();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
