//! The OpenTelemetry SDK side of jobsight: one call installs tracing and
//! metrics pipelines for the spans and metrics `jobsight-core` records
//! through the global `opentelemetry` API, and returns a guard that flushes
//! them with a deadline.
//!
//! # Quick start
//!
//! ```no_run
//! fn main() -> Result<(), jobsight_otel::Error> {
//!     let telemetry = jobsight_otel::init()?;
//!     // ... run the workers ...
//!     telemetry.shutdown() // or let it drop
//! }
//! ```
//!
//! With no OTLP endpoint configured nothing is exported and nothing tries to
//! connect; at shutdown a summary per queue is printed to stderr:
//!
//! ```text
//! jobsight: jobs per queue since start (queued = time waiting in the queue, run = processing time)
//!   queue    jobs  failed  queued p50  queued p95  queued p99  run p50  run p95  run p99
//!   email    1000      10       5.01s       9.50s       9.90s    500ms    950ms    990ms
//!   reports     1       0           -           -           -    2.00s    2.00s    2.00s
//! ```
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318` spans and metrics
//! go to that collector over OTLP/HTTP; add `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`
//! (and port 4317) for gRPC. [`Builder`] sets the same things in code.
//! Hosted backends take `https://` endpoints, usually with an API key header:
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=https://api.honeycomb.io
//! OTEL_EXPORTER_OTLP_HEADERS=x-honeycomb-team=YOUR_API_KEY
//! ```
//!
//! A collector whose certificate comes from a private CA needs that CA:
//! `OTEL_EXPORTER_OTLP_CERTIFICATE=/etc/otel/ca.pem` (see [TLS](#tls)).
//!
//! # Environment variables
//!
//! Read once by [`Builder::install`] and validated: a bad value is an
//! [`Error::InvalidEnv`] naming the variable and the accepted values (header
//! values are never shown). An empty value counts as unset. Settings made on
//! the [`Builder`] win over the environment.
//!
//! | Variable | Accepted values | Default |
//! | --- | --- | --- |
//! | `OTEL_SDK_DISABLED` | `true`, `false` | `false`; `true` installs nothing, the guard is a no-op |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://host:port[/path]` or `https://…`; OTLP/HTTP appends `/v1/traces`, `/v1/metrics` | unset: no OTLP export, local summary |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | full `http://` or `https://` URL, used as given | the generic endpoint; a signal with no endpoint is not exported |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (and `_TRACES_`, `_METRICS_` variants) | `grpc`, `http/protobuf` (`http/json` is not supported) | `http/protobuf` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (and `_TRACES_`, `_METRICS_` variants) | `key=value,key2=value2`, values percent-encoded | none |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` (and `_TRACES_`, `_METRICS_` variants) | milliseconds > 0, per export including retries | `10000` |
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE` (and `_TRACES_`, `_METRICS_` variants) | path of a PEM file of CA certificates, trusted *instead of* the built-in roots for `https://` endpoints | Mozilla's roots, built in |
//! | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_KEY` (and `_TRACES_`, `_METRICS_` variants) | paths of a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1), for mutual TLS; both or neither | no client certificate |
//! | `OTEL_SERVICE_NAME` | any string | `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<executable>` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,...`, values percent-encoded | none; see [Resource](#resource) for what is always set |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` | `parentbased_always_on` |
//! | `OTEL_TRACES_SAMPLER_ARG` | probability from 0 to 1, for the ratio samplers | `1.0` |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds > 0 | `60000` ([`Builder::metric_export_interval`]) |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | spans > 0 | `65536` (see below; [`Builder::span_queue_size`]) |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | spans > 0 | `512` |
//! | `OTEL_BSP_SCHEDULE_DELAY` | milliseconds > 0 | `5000` ([`Builder::span_schedule_delay`]) |
//! | `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (and the other `_LOGS_` variants of the rows above) | as for traces; OTLP/HTTP appends `/v1/logs` to a generic endpoint | the generic variables |
//! | `OTEL_LOGS_EXPORTER` | `otlp`, `none` | `otlp`: logs are exported when an endpoint applies to them |
//! | `OTEL_BLRP_MAX_QUEUE_SIZE` | records > 0 | `2048` ([`Builder::log_queue_size`]) |
//! | `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BLRP_SCHEDULE_DELAY` | records > 0, milliseconds > 0 | `512`, `1000` |
//! | `OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`, `OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT` | whole number > 0 | `32`, `2048` ([`Builder::log_attribute_limits`]) |
//! | `JOBSIGHT_LOG` | `RUST_LOG`-style directives: `info,my_crate=debug` | `info` ([`Builder::log_filter`]) |
//! | `OTEL_EXPORTER_OTLP_COMPRESSION` (and `_TRACES_`, `_METRICS_` variants) | `none` (built without gzip and zstd) | `none` |
//! | `OTEL_EXPORTER_OTLP_INSECURE` (and `_TRACES_`, `_METRICS_` variants) | `true`, `false` | `false` |
//! | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` | `cumulative`, `delta`, `lowmemory` | `cumulative` |
//! | `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`, `OTEL_SPAN_LINK_COUNT_LIMIT` | whole number > 0 | `128` |
//! | `OTEL_BSP_MAX_CONCURRENT_EXPORTS` | whole number > 0 | `1` |
//! | `OTEL_BSP_EXPORT_TIMEOUT`, `OTEL_METRIC_EXPORT_TIMEOUT` | milliseconds > 0 | `30000` |
//!
//! The last six rows are read by the SDK and the OTLP exporter themselves,
//! which would ignore a value they cannot use; they are checked at install
//! like the others (the threaded batch span processor has no export
//! timeout: `OTEL_BSP_EXPORT_TIMEOUT` is checked, then unused).
//!
//! **Span queue.** Spans wait in the batch processor's queue until exported;
//! a batch of `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans is exported as soon as
//! it is queued, the rest after `OTEL_BSP_SCHEDULE_DELAY` at most. When the
//! queue is full, a span that ends is dropped at once (the job never
//! waits) and counted as `queue_full` (see [Lost telemetry](#lost-telemetry)).
//! The SDK's 2048 drops spans in bursts of short jobs, so the default here is
//! 65 536 ([`DEFAULT_SPAN_QUEUE_SIZE`]). The exact limit: a span is dropped
//! when, as it ends, 65 536 spans have ended and not yet been handed to the
//! exporter. So a burst of up to 65 536 spans on an empty queue is never
//! dropped at the queue, however slow the collector (what the collector then
//! refuses is counted as `export_failed`); a longer burst is dropped in part
//! only if the jobs outrun the exporter by more than the queue. The queue is allocated up front when traces are
//! exported, about 23 MB (360 bytes a span); `OTEL_BSP_MAX_QUEUE_SIZE` (or
//! [`Builder::span_queue_size`]) still wins, e.g. `8192` for about 3 MB.
//!
//! # Resource
//!
//! Every span and data point carries the resource: `service.name` (see
//! [`Builder::service_name`]), `telemetry.sdk.*`, what
//! `OTEL_RESOURCE_ATTRIBUTES` adds, and this process's identity, so that
//! the series of N processes of one service stay N series (a backend
//! computing `rate()` over one series fed by several processes sees
//! counter resets):
//!
//! | Attribute | Default | Overridden by |
//! | --- | --- | --- |
//! | `service.instance.id` | a random UUID (v4), one per process ([`service_instance_id`]) | [`Builder::service_instance_id`], then `OTEL_RESOURCE_ATTRIBUTES` |
//! | `host.name` | the system's host name (`gethostname`): the pod's name in Kubernetes | `OTEL_RESOURCE_ATTRIBUTES` |
//! | `process.pid` | the process id | `OTEL_RESOURCE_ATTRIBUTES` |
//!
//! A restarted process gets a new UUID, so its counters start a new series
//! instead of looking like a reset of the old one. To use a stable name,
//! e.g. a Kubernetes pod's (from the downward API), set
//! `OTEL_RESOURCE_ATTRIBUTES=service.instance.id=$(POD_NAME)`; it must still
//! be unique among the processes that run at the same time.
//!
//! # Lost telemetry
//!
//! Telemetry is lost only where it must be, and then counted, exactly, by
//! signal and [`DropReason`]:
//!
//! - `queue_full`: spans that ended while the span queue was full;
//! - `export_failed`: the spans or metric data points of an export that
//!   still failed after the exporter's own retries (OTLP/HTTP retries 429,
//!   502, 503, 504 and network errors, gRPC `UNAVAILABLE` and a few more,
//!   3 times, 100 ms to 1.6 s apart, within `OTEL_EXPORTER_OTLP_TIMEOUT`;
//!   other refusals, e.g. gRPC `RESOURCE_EXHAUSTED` without a retry delay,
//!   are not retried);
//! - `shutdown_timeout`: what was still queued or in an export when the
//!   shutdown deadline passed.
//!
//! [`Telemetry::dropped`] reads the counts; the counter
//! `jobsight.telemetry.dropped` (unit `{item}`, attributes `jobsight.signal` =
//! `traces` | `metrics` and `jobsight.drop.reason`, scope `jobsight-otel`) exports the
//! first two with the other metrics, so it reaches the backend once the
//! collector is back. The first drop of each signal and reason is reported
//! in one line, the first failed export with its error; at shutdown one line
//! gives the totals, if anything was dropped. These lines go to stderr, or
//! to [`Builder::diagnostics_writer`]. Spans the queue took in are never
//! dropped by the SDK behind it: the queue is counted in front of the SDK's
//! batch processor, which is given room for all of them.
//!
//! # TLS
//!
//! An `https://` endpoint (with the `tls` feature, on by default) is reached
//! over TLS 1.2 or 1.3 (rustls), by gRPC and OTLP/HTTP alike, and both trust
//! the same roots:
//!
//! - by default Mozilla's root certificates, compiled in (webpki-roots): what
//!   hosted backends (Honeycomb, Grafana Cloud, Datadog, …) need, and the
//!   same on every machine, including minimal containers without
//!   `/etc/ssl/certs`. The operating system's trust store is not read.
//! - with `OTEL_EXPORTER_OTLP_CERTIFICATE` (or the signal's own variable),
//!   the CA certificates in that PEM file *instead*, as in the other
//!   OpenTelemetry SDKs: for a collector behind a private or self-signed CA,
//!   or a TLS-inspecting proxy. Put several in the file to trust several.
//!
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY`
//! add a client certificate (mutual TLS). The files are read once, by
//! [`Builder::install`], and only for `https://` endpoints: a missing or
//! unreadable file, one without a PEM certificate or key, or a key that does
//! not fit its certificate is an [`Error::InvalidEnv`] naming the variable
//! and the path (a key's content is never shown). A server certificate that
//! does not verify is an export failure like any other: counted, and
//! reported once with its cause (e.g. `invalid peer certificate:
//! UnknownIssuer`). Certificates are not reloaded while running.
//!
//! `OTEL_EXPORTER_OTLP_INSECURE` plays no part: the scheme of the endpoint
//! (which must be given) decides. Proxy variables (`HTTPS_PROXY`) are not
//! used for `https://` endpoints, by either transport.
//!
//! # Shutdown
//!
//! [`Telemetry::shutdown`], or dropping the guard, flushes and shuts down
//! traces, then metrics, and gives up after [`Builder::shutdown_timeout`]
//! (5 s) even when the collector is down. The work runs on a thread of its
//! own, and gRPC exporters (and the OTLP/HTTP client of `https://`
//! endpoints) run on a small runtime owned by this crate, so
//! the guard may be dropped inside a tokio current-thread runtime, a
//! multi-thread runtime or no runtime at all. [`Telemetry::force_flush`]
//! exports what is pending, with the same deadline.
//!
//! Failed exports are not errors: they are counted and reported once (see
//! [Lost telemetry](#lost-telemetry)). A backend that takes traces but
//! rejects metrics costs one warning.
//!
//! # One-off tasks
//!
//! A program that runs one task and exits — a backfill, a report, what a
//! Rails team runs as a rake task — uses [`Telemetry::run_task`] (or
//! [`Telemetry::run_task_async`]): it records the task through
//! `jobsight_core::task` (span `process {name}`, `messaging.system` =
//! `task`, outcome, duration, panics), then shuts telemetry down within the
//! deadline before it returns the task's output. Calling
//! `std::process::exit` right after loses nothing; past the deadline,
//! whatever was not exported is lost and a line on stderr says so.
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = jobsight_otel::init()?;
//!     telemetry.run_task("backfill_users", || -> Result<(), std::io::Error> {
//!         // ... the task ...
//!         Ok(())
//!     })?;
//!     Ok(())
//! }
//! ```
//!
//! # Local summary
//!
//! When on ([`Builder::summary`]; by default exactly when no OTLP endpoint is
//! configured), an in-process reader collects `messaging.process.duration`
//! and `job.queue_time` of the `jobsight` scope, and shutdown prints per
//! queue (`messaging.destination.name`): jobs (finished attempts: a retried
//! job counts once per attempt), failures (attempts with `error.type`), and
//! p50/p95/p99 of queue time and run time. Without OTLP
//! metrics export both histograms are base-2 exponential histograms (160
//! buckets), so percentiles are within a few percent. With OTLP metrics
//! export the exported histograms are left alone and the summary
//! interpolates within their explicit buckets, which is only as precise as
//! those buckets. [`Builder::summary_writer`] sends the table elsewhere.
//!
//! # Histograms
//!
//! jobsight's two histograms (`messaging.process.duration`,
//! `job.queue_time`) carry job-sized explicit buckets (set in
//! `jobsight-core`, overridable there). [`Builder::exponential_histograms`]
//! turns them into base-2 exponential histograms (160 buckets, a few percent
//! relative error at any scale) for backends that take OTLP exponential
//! histograms; the Prometheus scrape endpoint cannot serve those.
//!
//! # Prometheus scrape endpoint
//!
//! OTLP to a collector is the main path. With the cargo feature
//! `prometheus`, `Builder::prometheus_endpoint` also serves the metrics
//! for Prometheus to scrape (`GET /metrics`), named as an OpenTelemetry
//! Collector's `prometheus` exporter names them, so one dashboard serves
//! both paths (see the README's table of names).
//!
//! # Cargo features
//!
//! OTLP over gRPC (tonic) and over HTTP/protobuf (a blocking reqwest client
//! on the SDK's own threads) are both always built in.
//!
//! - `tls` (default): `https://` endpoints, see [TLS](#tls). rustls with the
//!   ring crypto provider (its C and assembly are built by the `cc` crate: a
//!   C compiler, no cmake, Go or Perl; aws-lc is never built) and
//!   webpki-roots. gRPC uses tonic's rustls support; OTLP/HTTP over https
//!   uses a small hyper client of this crate (HTTP/1.1, requests run on the
//!   export runtime), because reqwest 0.13 offers rustls only with aws-lc or
//!   with no crypto provider at all, and the latter would make every other
//!   reqwest client in the program panic. `http://` endpoints keep the
//!   exporter's own blocking reqwest client. If the application installs a
//!   process-default rustls `CryptoProvider` (e.g. for FIPS), both
//!   transports use it instead of ring; this crate never installs one.
//!   Without `tls`, an `https://` endpoint is refused at install with an
//!   error naming the feature, and the certificate variables are ignored.
//! - `prometheus` (off): the scrape endpoint; adds `opentelemetry-prometheus`
//!   and the `prometheus` crate (the scrape server runs on `hyper`, already
//!   in the tree for OTLP).
//! - `log` (off by default): `Telemetry::log_bridge` and
//!   `Telemetry::install_log_bridge`: `log` records become OTLP log
//!   records (see the README's "Logs").
//! - `tracing` (off by default): `Telemetry::tracing_log_layer` (events
//!   become OTLP log records), [`tracing_layer`] (usable before [`init`])
//!   and `Telemetry::tracing_layer`, a
//!   `tracing-subscriber` layer through `tracing-opentelemetry`, so the
//!   `tracing` spans a job makes are children of its `process {queue}` span
//!   (see `tracing_bridge`, which says how the parent is picked).

#![warn(missing_docs)]

mod builder;
mod config;
mod dropped;
mod endpoint;
mod error;
mod export_failures;
mod export_runtime;
mod export_target;
mod exporter_wrap;
mod failure_log;
mod guard;
mod headers;
mod kv_list;
#[cfg(feature = "log")]
mod log_bridge;
mod log_filter;
mod log_limits;
mod log_queue;
#[cfg(any(feature = "tracing", feature = "log"))]
mod log_record_fields;
mod protocol;
mod providers;
mod reports;
mod resource;
mod sampler;
#[cfg(feature = "prometheus")]
mod scrape;
mod sdk_env;
mod self_metric;
mod signal;
mod span_queue;
mod summary;
mod task;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tracing")]
pub mod tracing_bridge;
#[cfg(feature = "tracing")]
mod tracing_logs;

pub use builder::{Builder, DEFAULT_SHUTDOWN_TIMEOUT};
pub use dropped::{DropCounts, DropReason, Dropped};
pub use error::Error;
pub use export_failures::ExportFailures;
pub use guard::Telemetry;
pub use jobsight_core::job_logs::ExceptionEvents;
#[cfg(feature = "log")]
pub use log_bridge::LogBridge;
pub use log_limits::{
    DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT, DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT, DEFAULT_LOG_BODY_LIMIT,
};
pub use log_queue::{
    DEFAULT_LOG_BATCH_SIZE, DEFAULT_LOG_QUEUE_SIZE, DEFAULT_LOG_SCHEDULE_DELAY,
    DEFAULT_MAX_LOG_RECORDS_PER_JOB,
};
pub use protocol::Protocol;
pub use providers::{
    DEFAULT_METRIC_EXPORT_INTERVAL, DEFAULT_SPAN_BATCH_SIZE, DEFAULT_SPAN_QUEUE_SIZE,
    DEFAULT_SPAN_SCHEDULE_DELAY,
};
pub use resource::service_instance_id;
pub use signal::Signal;
#[cfg(feature = "tracing")]
pub use tracing_bridge::{BridgeTracer, tracing_layer};
#[cfg(feature = "tracing")]
pub use tracing_logs::{LOGS_SCOPE_NAME, TracingLogLayer};

/// Installs telemetry configured from the `OTEL_*` environment:
/// `Builder::default().install()`.
///
/// See [`Builder::install`].
pub fn init() -> Result<Telemetry, Error> {
    Builder::default().install()
}

#[cfg(test)]
mod env_errors_tests;
#[cfg(test)]
mod test_support;

/// Not part of the API: what `benches/span_end.rs` compares. May change
/// at any time.
#[doc(hidden)]
pub mod bench_support {
    use std::sync::Arc;

    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanExporter};

    use crate::dropped::DropCounter;
    use crate::exporter_wrap::{CountingSpanExporter, FailureReport};
    use crate::span_queue::{CountedBatchProcessor, SpanQueue};

    /// The SDK's batch processor with a queue of `queue_size` spans, as
    /// jobsight-otel configures it.
    pub fn sdk_batch_processor<E: SpanExporter + 'static>(
        exporter: E,
        queue_size: usize,
    ) -> BatchSpanProcessor {
        BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(queue_size)
                    .build(),
            )
            .build()
    }

    /// The same, behind jobsight-otel's counted admission: what
    /// `Builder::install` uses.
    pub fn counted_batch_processor<E: SpanExporter + 'static>(
        exporter: E,
        queue_size: usize,
    ) -> impl opentelemetry_sdk::trace::SpanProcessor {
        let queue = Arc::new(SpanQueue::new(queue_size));
        let drops = Arc::new(DropCounter::new(crate::reports::Reports::default()));
        let exporter = CountingSpanExporter {
            inner: exporter,
            report: FailureReport {
                counter: Arc::default(),
                drops: Arc::clone(&drops),
                endpoint: String::new(),
                transport_error: Arc::default(),
            },
            queue: Arc::clone(&queue),
        };
        CountedBatchProcessor::new(
            sdk_batch_processor(exporter, queue.capacity()),
            queue,
            drops,
        )
    }

    /// A logger provider with the log processor `Builder::install` builds
    /// (default batch settings, per-job cap and limits; a queue of
    /// `queue_size` records) in front of `exporter`, and a `tracing` log
    /// layer on it with the default filter (`info`): what
    /// `Telemetry::tracing_log_layer` gives, without OTLP. Turns on the job
    /// scope, as that method does.
    #[cfg(feature = "tracing")]
    pub fn tracing_log_layer<E: opentelemetry_sdk::logs::LogExporter + 'static>(
        exporter: E,
        queue_size: usize,
    ) -> (
        crate::TracingLogLayer,
        opentelemetry_sdk::logs::SdkLoggerProvider,
    ) {
        use opentelemetry_sdk::logs::{
            BatchConfigBuilder as LogBatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider,
        };

        use crate::exporter_wrap::CountingLogExporter;
        use crate::log_limits::LogLimits;
        use crate::log_queue::JobLogProcessor;

        let queue = Arc::new(SpanQueue::new(queue_size));
        let drops = Arc::new(DropCounter::new(crate::reports::Reports::default()));
        let exporter = CountingLogExporter {
            inner: exporter,
            report: FailureReport {
                counter: Arc::default(),
                drops: Arc::clone(&drops),
                endpoint: String::new(),
                transport_error: Arc::default(),
            },
            queue: Arc::clone(&queue),
        };
        let config = LogBatchConfigBuilder::default()
            .with_max_queue_size(queue.capacity())
            .with_max_export_batch_size(crate::DEFAULT_LOG_BATCH_SIZE)
            .with_scheduled_delay(crate::DEFAULT_LOG_SCHEDULE_DELAY)
            .build();
        let limits = LogLimits::default();
        let processor = JobLogProcessor::new(
            BatchLogProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
            queue,
            drops,
            crate::DEFAULT_MAX_LOG_RECORDS_PER_JOB,
            limits.body,
        );
        let provider = SdkLoggerProvider::builder()
            .with_log_processor(processor)
            .build();
        let layer = crate::TracingLogLayer::new(&provider, Arc::default(), limits);
        (layer, provider)
    }
}
