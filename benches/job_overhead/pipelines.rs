//! The SDK pipelines the configurations record into: a batch span processor
//! and a periodic metric reader, each in front of an exporter that stands in
//! for the collector (discarding, failing, or hanging); and a log exporter
//! that counts and discards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};

/// How long a hanging collector keeps an export waiting: the OTLP exporters'
/// default timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s).
const HANG_FOR: Duration = Duration::from_secs(10);

/// jobsight-otel's default span queue (`OTEL_BSP_MAX_QUEUE_SIZE`).
pub const SPAN_QUEUE: usize = 65_536;

/// What the exporter does with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collector {
    /// Takes it and throws it away (a collector that answers at once).
    Up,
    /// Refuses it at once (connection refused).
    Refusing,
    /// Holds the export for 10 s, then fails (a collector that hangs).
    Hanging,
}

/// Shared by an exporter and the bench: spans received, and the switch that
/// lets a hanging exporter go at the end.
#[derive(Debug, Default)]
pub struct ExportStats {
    spans: AtomicU64,
    released: AtomicBool,
}

impl ExportStats {
    /// Spans the exporter has been given (and dropped, failed or held).
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }

    /// Lets every hanging export return.
    pub fn release(&self) {
        self.released.store(true, Ordering::Relaxed);
    }

    fn answer(&self, collector: Collector) -> OTelSdkResult {
        match collector {
            Collector::Up => Ok(()),
            Collector::Refusing => Err(OTelSdkError::InternalFailure(
                "connection refused".to_owned(),
            )),
            Collector::Hanging => {
                let until = Instant::now() + HANG_FOR;
                while Instant::now() < until && !self.released.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(OTelSdkError::Timeout(HANG_FOR))
            }
        }
    }
}

/// A span exporter standing in for the collector.
#[derive(Debug, Clone)]
pub struct BenchSpanExporter {
    collector: Collector,
    stats: Arc<ExportStats>,
}

impl SpanExporter for BenchSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.stats
            .spans
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        drop(batch);
        self.stats.answer(self.collector)
    }
}

/// A log exporter standing in for a collector that answers at once: counts
/// the records it is given and throws them away.
#[derive(Debug, Clone, Default)]
pub struct BenchLogExporter {
    pub records: Arc<AtomicU64>,
}

impl LogExporter for BenchLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.records
            .fetch_add(batch.iter().count() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A metric exporter standing in for the collector.
#[derive(Debug, Clone)]
pub struct BenchMetricExporter {
    collector: Collector,
    stats: Arc<ExportStats>,
}

impl PushMetricExporter for BenchMetricExporter {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        self.stats.answer(self.collector)
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// How often the periodic reader collects: `JOBSIGHT_BENCH_READER_MS`, or
/// 60 s.
fn reader_interval() -> Duration {
    let ms = std::env::var("JOBSIGHT_BENCH_READER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    Duration::from_millis(ms)
}

/// A tracer provider and a meter provider in front of one stand-in collector.
pub struct Pipeline {
    pub tracer_provider: SdkTracerProvider,
    pub meter_provider: SdkMeterProvider,
    pub stats: Arc<ExportStats>,
}

impl Pipeline {
    /// Spans sampled by `sampler`, exported in batches through a queue as
    /// large as jobsight-otel's default; metrics read every 60 s (the SDK's
    /// and jobsight-otel's default interval), or every
    /// `JOBSIGHT_BENCH_READER_MS` milliseconds.
    pub fn new(collector: Collector, sampler: Sampler) -> Self {
        let stats = Arc::new(ExportStats::default());
        let spans = BenchSpanExporter {
            collector,
            stats: stats.clone(),
        };
        let processor = BatchSpanProcessor::builder(spans)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(SPAN_QUEUE)
                    .build(),
            )
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .build();
        let metrics = BenchMetricExporter {
            collector,
            stats: stats.clone(),
        };
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(metrics)
                    .with_interval(reader_interval())
                    .build(),
            )
            .build();
        Self {
            tracer_provider,
            meter_provider,
            stats,
        }
    }
}
