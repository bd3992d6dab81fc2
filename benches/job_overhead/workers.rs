//! The configurations measured: an apalis worker on the in-memory backend
//! running no-op jobs, bare or behind a layer, and the SDK floor; and a job
//! that logs one line, under `MonitorLayer` and under apalis's `TraceLayer`
//! with the same subscriber.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apalis::layers::opentelemetry::OpenTelemetryMetricsLayer;
use apalis::layers::tracing::TraceLayer;
use apalis::prelude::*;
use jobsight_apalis::MonitorLayer;
use jobsight_core::JobMonitor;
use opentelemetry::metrics::{
    BoundCounter, BoundHistogram, BoundUpDownCounter, Counter, Histogram, MeterProvider as _,
    UpDownCounter,
};
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracer};
use tokio::runtime::Runtime;
use tracing::Dispatch;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::pipelines::{BenchLogExporter, Collector, Pipeline, SPAN_QUEUE};

/// The worker's name (`messaging.consumer.group.name`).
const WORKER: &str = "bench";

/// A way of running the same no-op jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Config {
    /// No layer: the baseline.
    Bare,
    /// `MonitorLayer`, spans sampled in, collector up.
    Full,
    /// `MonitorLayer`, spans sampled out: metrics only.
    MetricsOnly,
    /// `MonitorLayer` on a monitor built with `traces(false)`: metrics only,
    /// no span at all.
    NoTraces,
    /// apalis's `TraceLayer` through tracing-opentelemetry plus apalis's
    /// `OpenTelemetryMetricsLayer`, collector up.
    Apalis,
    /// `MonitorLayer` under a `ParentBased(TraceIdRatioBased(0.01))`
    /// sampler: 1% of jobs traced, metrics for all.
    Sampled1,
    /// apalis's `OpenTelemetryMetricsLayer` alone (two instruments, no span):
    /// the metrics-only peer.
    ApalisMetrics,
    /// `MonitorLayer` as `Full`, collector refusing every export.
    FullRefusing,
    /// `MonitorLayer` as `Full`, collector hanging on every export.
    FullHanging,
    /// `MonitorLayer` as `Full`, the job logs one `tracing::info!` line,
    /// jobsight's `tracing` log layer in the subscriber (see [`Logs`]).
    Logs,
    /// apalis's `TraceLayer` through tracing-opentelemetry, the same job,
    /// the same subscriber.
    ApalisLogs,
}

impl Config {
    /// Every worker configuration, in table order.
    pub const ALL: [Config; 11] = [
        Config::Bare,
        Config::Full,
        Config::MetricsOnly,
        Config::NoTraces,
        Config::Sampled1,
        Config::Apalis,
        Config::ApalisMetrics,
        Config::FullRefusing,
        Config::FullHanging,
        Config::Logs,
        Config::ApalisLogs,
    ];

    /// The name `JOBSIGHT_BENCH_CONFIG` takes.
    pub fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare",
            Config::Full => "full",
            Config::MetricsOnly => "metrics_only",
            Config::NoTraces => "no_traces",
            Config::Apalis => "apalis",
            Config::Sampled1 => "sampled_1pct",
            Config::ApalisMetrics => "apalis_metrics",
            Config::FullRefusing => "refusing",
            Config::FullHanging => "hanging",
            Config::Logs => "logs",
            Config::ApalisLogs => "apalis_logs",
        }
    }

    /// The configuration `name` stands for.
    pub fn from_name(name: &str) -> Option<Config> {
        Config::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Config::Bare => "bare worker (baseline)",
            Config::Full => "MonitorLayer, traces + metrics (100% sampled)",
            Config::MetricsOnly => "MonitorLayer, traces sampled out (metrics only)",
            Config::NoTraces => "MonitorLayer, monitor with traces(false) (metrics only, no span)",
            Config::Apalis => {
                "apalis TraceLayer + tracing-opentelemetry + OpenTelemetryMetricsLayer"
            }
            Config::Sampled1 => "MonitorLayer, ParentBased(TraceIdRatioBased(0.01)) sampler",
            Config::ApalisMetrics => "apalis OpenTelemetryMetricsLayer alone (metrics only)",
            Config::FullRefusing => "MonitorLayer, traces + metrics, collector refusing",
            Config::FullHanging => "MonitorLayer, traces + metrics, collector hanging",
            Config::Logs => {
                "job logs one line: MonitorLayer, traces + metrics + jobsight's tracing log layer"
            }
            Config::ApalisLogs => {
                "job logs one line: apalis TraceLayer, the same subscriber (tracing-opentelemetry + jobsight's tracing log layer)"
            }
        }
    }

    /// Whether the job logs a line through the logs subscriber.
    pub fn logs(self) -> bool {
        matches!(self, Config::Logs | Config::ApalisLogs)
    }
}

/// Jobs finished in the current run, and how many the run is for.
static FINISHED: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(0);

/// The job: does nothing, and stops the worker after the last one.
async fn noop(_job: u64, worker: WorkerContext) -> Result<(), BoxDynError> {
    if FINISHED.fetch_add(1, Ordering::Relaxed) + 1 == TARGET.load(Ordering::Relaxed) {
        worker.stop()?;
    }
    Ok(())
}

/// The job of the logs rows: logs one line, then as [`noop`].
async fn log_one_line(job: u64, worker: WorkerContext) -> Result<(), BoxDynError> {
    tracing::info!(job, "job ran");
    noop(job, worker).await
}

/// What the logs rows record into: one pipeline for spans and metrics
/// (collector up), a logger provider with jobsight-otel's log processor in
/// front of a counting exporter (a queue as large as the span rows' one,
/// so that the records are exported rather than dropped at the door), and
/// one subscriber for both rows:
/// tracing-opentelemetry (apalis's task span, at DEBUG) and jobsight's
/// `tracing` log layer (default filter `info`).
pub struct Logs {
    pipeline: Pipeline,
    monitor: JobMonitor,
    dispatch: Dispatch,
    provider: SdkLoggerProvider,
    exporter: BenchLogExporter,
}

impl Logs {
    fn new() -> Self {
        let (pipeline, monitor) = monitored(Collector::Up, true);
        let exporter = BenchLogExporter::default();
        let (log_layer, provider) =
            jobsight_otel::bench_support::tracing_log_layer(exporter.clone(), SPAN_QUEUE);
        let tracer = pipeline.tracer_provider.tracer("apalis-bench");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(log_layer)
            .with(LevelFilter::DEBUG);
        Self {
            pipeline,
            monitor,
            dispatch: Dispatch::new(subscriber),
            provider,
            exporter,
        }
    }

    /// Log records the exporter has been given, after a flush.
    pub fn exported(&self) -> u64 {
        let _ = self.provider.force_flush();
        self.exporter.records.load(Ordering::Relaxed)
    }
}

/// Everything the configurations record into, built once and shared by all
/// runs (as in an application, the instruments live as long as the process).
pub struct Bench {
    runtime: Runtime,
    full: (Pipeline, JobMonitor),
    metrics_only: (Pipeline, JobMonitor),
    no_traces: (Pipeline, JobMonitor),
    sampled_1pct: (Pipeline, JobMonitor),
    refusing: (Pipeline, JobMonitor),
    hanging: (Pipeline, JobMonitor),
    apalis: (Pipeline, Dispatch),
    floor: (Pipeline, Floor),
    /// Built on the first logs run: making the log layer turns on
    /// jobsight-core's job scope, which the other rows must run without.
    logs: OnceLock<Logs>,
}

fn monitored(collector: Collector, sampled: bool) -> (Pipeline, JobMonitor) {
    monitored_with(collector, sampled, true)
}

fn monitored_with(collector: Collector, sampled: bool, traces: bool) -> (Pipeline, JobMonitor) {
    let sampler = if sampled {
        Sampler::AlwaysOn
    } else {
        Sampler::AlwaysOff
    };
    monitored_by(Pipeline::new(collector, sampler), traces)
}

fn monitored_by(pipeline: Pipeline, traces: bool) -> (Pipeline, JobMonitor) {
    let monitor = JobMonitor::builder()
        .tracer_provider(&pipeline.tracer_provider)
        .meter_provider(&pipeline.meter_provider)
        .traces(traces)
        .build();
    (pipeline, monitor)
}

impl Bench {
    /// Builds the pipelines, the monitors, the tracing subscriber apalis's
    /// layer records through, and a current-thread runtime: a worker polls
    /// its jobs inline on its own task, so one thread runs the worker and
    /// its jobs, while the exporters run on their own threads.
    pub fn new() -> Self {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("tokio runtime: {e}"),
        };
        let apalis_pipeline = Pipeline::new(Collector::Up, Sampler::AlwaysOn);
        // apalis's metrics layer records with the global meter.
        global::set_meter_provider(apalis_pipeline.meter_provider.clone());
        let tracer = apalis_pipeline.tracer_provider.tracer("apalis-bench");
        // apalis's task span is at DEBUG: the filter a user needs to see it.
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(LevelFilter::DEBUG);
        let dispatch = Dispatch::new(subscriber);
        let floor_pipeline = Pipeline::new(Collector::Up, Sampler::AlwaysOn);
        let one_percent = Pipeline::new(
            Collector::Up,
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.01))),
        );
        let floor = Floor::new(&floor_pipeline);
        Self {
            runtime,
            full: monitored(Collector::Up, true),
            metrics_only: monitored(Collector::Up, false),
            no_traces: monitored_with(Collector::Up, false, false),
            sampled_1pct: monitored_by(one_percent, true),
            refusing: monitored(Collector::Refusing, true),
            hanging: monitored(Collector::Hanging, true),
            apalis: (apalis_pipeline, dispatch),
            floor: (floor_pipeline, floor),
            logs: OnceLock::new(),
        }
    }

    /// The logs rows' pipelines and subscriber.
    pub fn logs(&self) -> &Logs {
        self.logs.get_or_init(Logs::new)
    }

    /// The same, when a logs row has run in this process.
    pub fn logs_if_built(&self) -> Option<&Logs> {
        self.logs.get()
    }

    /// The pipeline a configuration records into (none for the bare worker).
    pub fn pipeline(&self, config: Config) -> Option<&Pipeline> {
        match config {
            Config::Bare => None,
            Config::Full => Some(&self.full.0),
            Config::MetricsOnly => Some(&self.metrics_only.0),
            Config::NoTraces => Some(&self.no_traces.0),
            Config::Sampled1 => Some(&self.sampled_1pct.0),
            Config::Apalis | Config::ApalisMetrics => Some(&self.apalis.0),
            Config::FullRefusing => Some(&self.refusing.0),
            Config::FullHanging => Some(&self.hanging.0),
            Config::Logs | Config::ApalisLogs => Some(&self.logs().pipeline),
        }
    }

    /// Lets hanging exporters go.
    pub fn release(&self) {
        self.hanging.0.stats.release();
    }

    /// A memory backend holding `jobs` tasks, pushed outside the measurement.
    pub fn storage(&self, jobs: u64) -> MemoryStorage<u64> {
        let mut storage = MemoryStorage::new();
        self.runtime.block_on(async {
            for i in 0..jobs {
                if let Err(e) = storage.push(i).await {
                    panic!("push: {e}");
                }
            }
        });
        storage
    }

    /// Runs `storage`'s `jobs` tasks through a worker in `config` with
    /// `concurrency` and returns the time from start to the worker's exit.
    pub fn run(
        &self,
        config: Config,
        concurrency: usize,
        storage: MemoryStorage<u64>,
        jobs: u64,
    ) -> Duration {
        FINISHED.store(0, Ordering::Relaxed);
        TARGET.store(jobs, Ordering::Relaxed);
        let builder = WorkerBuilder::new(WORKER)
            .backend(storage)
            .concurrency(concurrency);
        // The job scope is on for the logs rows only, as in a process with
        // and without the log layer.
        if config.logs() {
            self.logs();
        }
        jobsight_core::job_logs::set_scope(config.logs());
        let start = Instant::now();
        let result = match config {
            Config::Bare => self.runtime.block_on(builder.build(noop).run()),
            Config::Full
            | Config::MetricsOnly
            | Config::NoTraces
            | Config::Sampled1
            | Config::FullRefusing
            | Config::FullHanging => {
                let monitor = match config {
                    Config::Full => &self.full.1,
                    Config::MetricsOnly => &self.metrics_only.1,
                    Config::NoTraces => &self.no_traces.1,
                    Config::Sampled1 => &self.sampled_1pct.1,
                    Config::FullRefusing => &self.refusing.1,
                    _ => &self.hanging.1,
                };
                let layer = match MonitorLayer::builder().monitor(monitor.clone()).build() {
                    Ok(layer) => layer,
                    Err(e) => panic!("bench layer: {e}"),
                };
                self.runtime
                    .block_on(builder.layer(layer).build(noop).run())
            }
            Config::Apalis => tracing::dispatcher::with_default(&self.apalis.1, || {
                self.runtime.block_on(
                    builder
                        .layer(TraceLayer::new())
                        .layer(OpenTelemetryMetricsLayer::default())
                        .build(noop)
                        .run(),
                )
            }),
            Config::ApalisMetrics => self.runtime.block_on(
                builder
                    .layer(OpenTelemetryMetricsLayer::default())
                    .build(noop)
                    .run(),
            ),
            Config::Logs | Config::ApalisLogs => {
                let logs = self.logs();
                tracing::dispatcher::with_default(&logs.dispatch, || {
                    if config == Config::Logs {
                        let layer = match MonitorLayer::builder()
                            .monitor(logs.monitor.clone())
                            .build()
                        {
                            Ok(layer) => layer,
                            Err(e) => panic!("bench layer: {e}"),
                        };
                        self.runtime
                            .block_on(builder.layer(layer).build(log_one_line).run())
                    } else {
                        self.runtime
                            .block_on(builder.layer(TraceLayer::new()).build(log_one_line).run())
                    }
                })
            }
        };
        let elapsed = start.elapsed();
        if let Err(e) = result {
            panic!("worker: {e}");
        }
        let done = FINISHED.load(Ordering::Relaxed);
        assert_eq!(done, jobs, "{config:?} ran {done} of {jobs} jobs");
        elapsed
    }

    /// Runs the floor `jobs` times and returns the time taken; with metric
    /// instruments bound to the attribute sets beforehand when `bound`.
    pub fn run_floor(&self, jobs: u64, bound: bool) -> Duration {
        let start = Instant::now();
        for i in 0..jobs {
            self.floor.1.one(i, bound);
        }
        start.elapsed()
    }

    /// One run of the floor.
    pub fn floor_once(&self, i: u64, bound: bool) {
        self.floor.1.one(i, bound);
    }
}

/// The SDK alone doing what one monitored job records, with no worker and
/// no layer: one CONSUMER span with the same attributes (the message id as
/// an owned string, as a task id must be) and `job.outcome` set at the end,
/// and the same metric calls (`job.active` up and down, the duration
/// histogram, the two counters) with attribute sets built beforehand, either
/// as plain calls or through instruments bound to those sets beforehand
/// (opentelemetry's `experimental_metrics_bound_instruments`).
pub struct Floor {
    tracer: SdkTracer,
    duration: Histogram<f64>,
    consumed: Counter<u64>,
    outcomes: Counter<u64>,
    active: UpDownCounter<i64>,
    base: Vec<KeyValue>,
    by_outcome: Vec<KeyValue>,
    bound: (
        BoundHistogram<f64>,
        BoundCounter<u64>,
        BoundCounter<u64>,
        BoundUpDownCounter<i64>,
    ),
}

impl Floor {
    fn new(pipeline: &Pipeline) -> Self {
        let meter = pipeline.meter_provider.meter("floor");
        let base = vec![
            KeyValue::new("messaging.system", "apalis"),
            KeyValue::new("messaging.destination.name", "u64"),
            KeyValue::new("job.name", "u64"),
        ];
        let mut by_outcome = base.clone();
        by_outcome.push(KeyValue::new("job.outcome", "succeeded"));
        let duration = meter
            .f64_histogram("messaging.process.duration")
            .with_boundaries(jobsight_core::semconv::DURATION_BUCKETS.to_vec())
            .build();
        let consumed = meter
            .u64_counter("messaging.client.consumed.messages")
            .build();
        let outcomes = meter.u64_counter("job.outcomes").build();
        let active = meter.i64_up_down_counter("job.active").build();
        let bound = (
            duration.bind(&base),
            consumed.bind(&base),
            outcomes.bind(&by_outcome),
            active.bind(&base),
        );
        Self {
            tracer: pipeline.tracer_provider.tracer("floor"),
            duration,
            consumed,
            outcomes,
            active,
            base,
            by_outcome,
            bound,
        }
    }

    fn one(&self, i: u64, bound: bool) {
        let started = Instant::now();
        // Room for `job.outcome`, set at the end: without it the SDK grows
        // the vector then (a reallocation and copy, ≈ 500 instructions).
        let mut attributes = Vec::with_capacity(9);
        attributes.extend([
            self.base[0].clone(),
            self.base[1].clone(),
            self.base[2].clone(),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.message.id", i.to_string()),
            KeyValue::new("messaging.consumer.group.name", WORKER),
            KeyValue::new("job.attempt", 1_i64),
        ]);
        let mut span = self.tracer.build(
            SpanBuilder::from_name("process u64")
                .with_kind(SpanKind::Consumer)
                .with_attributes(attributes),
        );
        if bound {
            self.bound.3.add(1);
        } else {
            self.active.add(1, &self.base);
        }
        span.set_attribute(KeyValue::new("job.outcome", "succeeded"));
        span.end();
        let seconds = started.elapsed().as_secs_f64();
        if bound {
            let (duration, consumed, outcomes, active) = &self.bound;
            duration.record(seconds);
            consumed.add(1);
            outcomes.add(1);
            active.add(-1);
        } else {
            self.duration.record(seconds, &self.base);
            self.consumed.add(1, &self.base);
            self.outcomes.add(1, &self.by_outcome);
            self.active.add(-1, &self.base);
        }
    }
}
