//! Building the tracer, meter and logger providers, with an OTLP exporter
//! for each signal that has a target, and the summary reader when asked for.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder as LogBatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

use crate::config::EnvConfig;
use crate::dropped::DropCounter;
use crate::export_failures::FailureCounter;
use crate::export_runtime::ExportRuntime;
use crate::export_target::ExportTarget;
use crate::exporter_wrap::{
    CountingLogExporter, CountingMetricExporter, CountingSpanExporter, FailureReport,
    TransportError,
};
use crate::log_limits::LogLimits;
use crate::log_queue::{
    DEFAULT_LOG_BATCH_SIZE, DEFAULT_LOG_QUEUE_SIZE, DEFAULT_LOG_SCHEDULE_DELAY, JobLogProcessor,
};
use crate::span_queue::{CountedBatchProcessor, SpanQueue};
use crate::summary::{SummaryReader, exponential_histogram_view};
#[cfg(feature = "tls")]
use crate::tls::ClientTls;
use crate::{Error, Protocol, Signal, endpoint};

/// The span queue of the batch processor when `OTEL_BSP_MAX_QUEUE_SIZE` is
/// unset: 32 times the SDK's 2048, so a burst of short jobs is absorbed
/// rather than dropped. The queue is allocated up front when traces
/// are exported: 360 bytes a slot (`SpanData` is 352), about 23 MB.
pub const DEFAULT_SPAN_QUEUE_SIZE: usize = 65_536;
/// Spans per export request when `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` is unset
/// (the SDK's default).
pub const DEFAULT_SPAN_BATCH_SIZE: usize = 512;
/// Longest wait before queued spans are exported when
/// `OTEL_BSP_SCHEDULE_DELAY` is unset (the SDK's default). A full batch is
/// exported at once, without waiting.
pub const DEFAULT_SPAN_SCHEDULE_DELAY: Duration = Duration::from_secs(5);
/// Metric export interval when `OTEL_METRIC_EXPORT_INTERVAL` is unset.
pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Batch settings made on the [`Builder`](crate::Builder); they win over
/// the environment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchOverrides {
    pub(crate) span_queue_size: Option<usize>,
    pub(crate) span_schedule_delay: Option<Duration>,
    pub(crate) metric_export_interval: Option<Duration>,
    pub(crate) log_queue_size: Option<usize>,
}

/// What to build.
pub(crate) struct Plan<'a> {
    pub(crate) env: &'a EnvConfig,
    pub(crate) resource: Resource,
    pub(crate) traces: Option<ExportTarget>,
    pub(crate) metrics: Option<ExportTarget>,
    pub(crate) logs: Option<ExportTarget>,
    /// Per-job cap and size limits of log records.
    pub(crate) log_settings: LogSettings,
    /// The summary's reader, when the summary is on.
    pub(crate) summary: Option<SummaryReader>,
    /// Exponential histograms for jobsight's histograms, asked for.
    pub(crate) exponential: bool,
    pub(crate) overrides: BatchOverrides,
    /// The Prometheus exporter (a pull reader), when scraping is on.
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<opentelemetry_prometheus::PrometheusExporter>,
}

/// The built providers and what keeps their exporters running.
pub(crate) struct Providers {
    pub(crate) tracer_provider: SdkTracerProvider,
    pub(crate) meter_provider: SdkMeterProvider,
    /// Present when logs are exported.
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    /// Present when a gRPC exporter was built.
    pub(crate) runtime: Option<ExportRuntime>,
    /// Signals with an OTLP exporter.
    pub(crate) otlp_signals: Vec<Signal>,
    /// What is not exported yet, for the shutdown deadline.
    pub(crate) pending: Pending,
}

/// Spans and data points not exported yet.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The span queue, when traces are exported.
    pub(crate) spans: Option<Arc<SpanQueue>>,
    /// Data points in a metric export that has not returned.
    pub(crate) metric_points: Arc<AtomicU64>,
    /// The log record queue, when logs are exported.
    pub(crate) log_records: Option<Arc<SpanQueue>>,
}

impl Pending {
    /// Spans, data points, then log records not exported yet.
    pub(crate) fn now(&self) -> [u64; 3] {
        [
            self.spans.as_ref().map_or(0, |queue| queue.pending()),
            self.metric_points
                .load(std::sync::atomic::Ordering::Acquire),
            self.log_records.as_ref().map_or(0, |queue| queue.pending()),
        ]
    }
}

/// How log records are bounded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogSettings {
    pub(crate) per_job: u32,
    pub(crate) limits: LogLimits,
}

impl Plan<'_> {
    /// Builds both providers. Nothing connects yet: exporters connect on
    /// their first export.
    pub(crate) fn build(
        self,
        failures: &Arc<FailureCounter>,
        drops: &Arc<DropCounter>,
    ) -> Result<Providers, Error> {
        let needs_runtime = [&self.traces, &self.metrics, &self.logs]
            .into_iter()
            .flatten()
            .any(needs_export_runtime);
        let runtime = needs_runtime.then(ExportRuntime::start).transpose()?;
        // gRPC exporters spawn their connection tasks on the current runtime.
        let _entered = runtime.as_ref().map(ExportRuntime::enter);
        let report = |target: &ExportTarget| FailureReport {
            counter: Arc::clone(failures),
            drops: Arc::clone(drops),
            endpoint: endpoint::redact(&target.endpoint),
            transport_error: Arc::default(),
        };

        let mut tracer_provider = SdkTracerProvider::builder()
            .with_resource(self.resource.clone())
            .with_sampler(self.env.sampler.to_sampler());
        let mut pending = Pending::default();
        if let Some(target) = &self.traces {
            let report = report(target);
            let batch = &self.env.batch;
            let queue_size = self
                .overrides
                .span_queue_size
                .or(batch.max_queue_size)
                .unwrap_or(DEFAULT_SPAN_QUEUE_SIZE);
            let queue = Arc::new(SpanQueue::new(queue_size));
            let exporter = CountingSpanExporter {
                inner: span_exporter(target, runtime.as_ref(), &report.transport_error)?,
                report,
                queue: Arc::clone(&queue),
            };
            let config = BatchConfigBuilder::default()
                .with_max_queue_size(queue.capacity())
                .with_max_export_batch_size(
                    batch
                        .max_export_batch_size
                        .unwrap_or(DEFAULT_SPAN_BATCH_SIZE),
                )
                .with_scheduled_delay(
                    self.overrides
                        .span_schedule_delay
                        .or(batch.schedule_delay)
                        .unwrap_or(DEFAULT_SPAN_SCHEDULE_DELAY),
                )
                .build();
            let batch_processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build();
            tracer_provider = tracer_provider.with_span_processor(CountedBatchProcessor::new(
                batch_processor,
                Arc::clone(&queue),
                Arc::clone(drops),
            ));
            pending.spans = Some(queue);
        }

        let mut meter_provider = SdkMeterProvider::builder().with_resource(self.resource.clone());
        if let Some(target) = &self.metrics {
            let report = report(target);
            let exporter = CountingMetricExporter {
                inner: metric_exporter(target, runtime.as_ref(), &report.transport_error)?,
                report,
                in_export: Arc::clone(&pending.metric_points),
            };
            let interval = self
                .overrides
                .metric_export_interval
                .or(self.env.metric_export_interval)
                .unwrap_or(DEFAULT_METRIC_EXPORT_INTERVAL);
            meter_provider = meter_provider.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(interval)
                    .build(),
            );
        }
        #[cfg(feature = "prometheus")]
        let scraped = self.prometheus.is_some();
        #[cfg(not(feature = "prometheus"))]
        let scraped = false;
        #[cfg(feature = "prometheus")]
        if let Some(reader) = self.prometheus {
            meter_provider = meter_provider.with_reader(reader);
        }
        let summary_on = self.summary.is_some();
        if let Some(reader) = self.summary {
            meter_provider = meter_provider.with_reader(reader);
        }
        // Views apply to every reader: without an explicit request they may
        // change the histograms' buckets only when nothing else reads them.
        if self.exponential || (summary_on && self.metrics.is_none() && !scraped) {
            meter_provider = meter_provider.with_view(exponential_histogram_view);
        }

        let logger_provider = match &self.logs {
            Some(target) => {
                let report = report(target);
                let batch = &self.env.log_batch;
                let queue_size = self
                    .overrides
                    .log_queue_size
                    .or(batch.max_queue_size)
                    .unwrap_or(DEFAULT_LOG_QUEUE_SIZE);
                let queue = Arc::new(SpanQueue::new(queue_size));
                let exporter = CountingLogExporter {
                    inner: log_exporter(target, runtime.as_ref(), &report.transport_error)?,
                    report,
                    queue: Arc::clone(&queue),
                };
                let config = LogBatchConfigBuilder::default()
                    .with_max_queue_size(queue.capacity())
                    .with_max_export_batch_size(
                        batch
                            .max_export_batch_size
                            .unwrap_or(DEFAULT_LOG_BATCH_SIZE),
                    )
                    .with_scheduled_delay(
                        batch.schedule_delay.unwrap_or(DEFAULT_LOG_SCHEDULE_DELAY),
                    )
                    .build();
                let processor = JobLogProcessor::new(
                    BatchLogProcessor::builder(exporter)
                        .with_batch_config(config)
                        .build(),
                    Arc::clone(&queue),
                    Arc::clone(drops),
                    self.log_settings.per_job,
                    self.log_settings.limits.body,
                );
                pending.log_records = Some(queue);
                Some(
                    SdkLoggerProvider::builder()
                        .with_resource(self.resource.clone())
                        .with_log_processor(processor)
                        .build(),
                )
            }
            None => None,
        };

        let otlp_signals = [&self.traces, &self.metrics, &self.logs]
            .into_iter()
            .flatten()
            .map(|target| target.signal)
            .collect();
        let meter_provider = meter_provider.build();
        crate::self_metric::register(&meter_provider, Arc::clone(drops));
        Ok(Providers {
            tracer_provider: tracer_provider.build(),
            meter_provider,
            logger_provider,
            runtime,
            otlp_signals,
            pending,
        })
    }
}

/// gRPC exporters run on the export runtime, and so does the client of
/// OTLP/HTTP over https.
fn needs_export_runtime(target: &ExportTarget) -> bool {
    match target.protocol {
        Protocol::Grpc => true,
        Protocol::HttpProtobuf => cfg!(feature = "tls") && endpoint::is_https(&target.endpoint),
    }
}

fn span_exporter(
    target: &ExportTarget,
    runtime: Option<&ExportRuntime>,
    transport_error: &Arc<TransportError>,
) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match target.protocol {
        Protocol::Grpc => with_tonic_settings(builder.with_tonic(), target)?.build(),
        Protocol::HttpProtobuf => {
            with_http_settings(builder.with_http(), target, runtime, transport_error)?.build()
        }
    }
    .map_err(|source| Error::Exporter {
        signal: Signal::Traces,
        source,
    })
}

fn metric_exporter(
    target: &ExportTarget,
    runtime: Option<&ExportRuntime>,
    transport_error: &Arc<TransportError>,
) -> Result<opentelemetry_otlp::MetricExporter, Error> {
    let builder = opentelemetry_otlp::MetricExporter::builder();
    match target.protocol {
        Protocol::Grpc => with_tonic_settings(builder.with_tonic(), target)?.build(),
        Protocol::HttpProtobuf => {
            with_http_settings(builder.with_http(), target, runtime, transport_error)?.build()
        }
    }
    .map_err(|source| Error::Exporter {
        signal: Signal::Metrics,
        source,
    })
}

fn log_exporter(
    target: &ExportTarget,
    runtime: Option<&ExportRuntime>,
    transport_error: &Arc<TransportError>,
) -> Result<opentelemetry_otlp::LogExporter, Error> {
    let builder = opentelemetry_otlp::LogExporter::builder();
    match target.protocol {
        Protocol::Grpc => with_tonic_settings(builder.with_tonic(), target)?.build(),
        Protocol::HttpProtobuf => {
            with_http_settings(builder.with_http(), target, runtime, transport_error)?.build()
        }
    }
    .map_err(|source| Error::Exporter {
        signal: Signal::Logs,
        source,
    })
}

/// Everything set in code, so the exporter's own environment reading
/// (lenient, and differently ordered) cannot override what we validated.
/// An `https://` endpoint gets our TLS settings (the exporter's default
/// would trust no root at all).
fn with_tonic_settings<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    target: &ExportTarget,
) -> Result<B, Error> {
    let mut builder = builder
        .with_endpoint(target.endpoint.clone())
        .with_protocol(target.protocol.to_otlp())
        .with_timeout(target.timeout);
    if !target.retries {
        builder = builder.with_retry_policy(RetryPolicy::disabled());
    }
    if !target.headers.is_empty() {
        builder = builder.with_metadata(MetadataMap::from_headers(target.headers.to_header_map()));
    }
    #[cfg(feature = "tls")]
    if endpoint::is_https(&target.endpoint) {
        let tls = ClientTls::load(target.signal, &target.tls)?;
        builder = builder.with_tls_config(tls.tonic_config());
    }
    Ok(builder)
}

/// As [`with_tonic_settings`]. An `https://` endpoint gets our own client
/// (running on `runtime`, keeping its failures' causes in
/// `transport_error`); an `http://` one the exporter's blocking reqwest
/// client, which needs no runtime.
#[cfg_attr(not(feature = "tls"), allow(unused_variables, unused_mut))]
fn with_http_settings<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    target: &ExportTarget,
    runtime: Option<&ExportRuntime>,
    transport_error: &Arc<TransportError>,
) -> Result<B, Error> {
    let mut builder = builder
        .with_endpoint(target.endpoint.clone())
        .with_protocol(target.protocol.to_otlp())
        .with_timeout(target.timeout)
        .with_headers(target.headers.to_http_map());
    if !target.retries {
        builder = builder.with_retry_policy(RetryPolicy::disabled());
    }
    #[cfg(feature = "tls")]
    if endpoint::is_https(&target.endpoint) {
        let runtime = runtime.expect("the export runtime runs for https endpoints");
        let tls = ClientTls::load(target.signal, &target.tls)?;
        builder = builder.with_http_client(tls.http_client(
            runtime.handle(),
            target.timeout,
            Arc::clone(transport_error),
        ));
    }
    Ok(builder)
}
