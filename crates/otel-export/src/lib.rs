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
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://host:port[/path]`; OTLP/HTTP appends `/v1/traces`, `/v1/metrics` | unset: no OTLP export, local summary |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | full `http://` URL, used as given | the generic endpoint; a signal with no endpoint is not exported |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (and `_TRACES_`, `_METRICS_` variants) | `grpc`, `http/protobuf` (`http/json` is not supported) | `http/protobuf` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (and `_TRACES_`, `_METRICS_` variants) | `key=value,key2=value2`, values percent-encoded | none |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` (and `_TRACES_`, `_METRICS_` variants) | milliseconds > 0, per export including retries | `10000` |
//! | `OTEL_SERVICE_NAME` | any string | `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<executable>` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,...`, values percent-encoded | none |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` | `parentbased_always_on` |
//! | `OTEL_TRACES_SAMPLER_ARG` | probability from 0 to 1, for the ratio samplers | `1.0` |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds > 0 | `60000` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | spans > 0 | `65536` (see below) |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | spans > 0 | `512` |
//! | `OTEL_BSP_SCHEDULE_DELAY` | milliseconds > 0 | `5000` |
//!
//! The exporters themselves still read `OTEL_EXPORTER_OTLP_COMPRESSION`,
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` and the like.
//! `https://` endpoints are refused: this build has no TLS support yet.
//!
//! **Span queue.** Spans wait in the batch processor's queue until exported;
//! when it is full, new spans are dropped (the job never blocks). The SDK's
//! 2048 drops spans in bursts of short jobs, so the default here is 65 536.
//! The queue is allocated up front when traces are exported, about 23 MB
//! (360 bytes a span); `OTEL_BSP_MAX_QUEUE_SIZE` still wins, e.g. `8192`
//! for about 3 MB.
//!
//! # Shutdown
//!
//! [`Telemetry::shutdown`], or dropping the guard, flushes and shuts down
//! traces, then metrics, and gives up after [`Builder::shutdown_timeout`]
//! (5 s) even when the collector is down. The work runs on a thread of its
//! own, and gRPC exporters run on a small runtime owned by this crate, so
//! the guard may be dropped inside a tokio current-thread runtime, a
//! multi-thread runtime or no runtime at all. [`Telemetry::force_flush`]
//! exports what is pending, with the same deadline.
//!
//! Failed exports are not errors: the first failure of each signal is
//! printed to stderr once, later ones are counted in
//! [`Telemetry::export_failures`], and a total is printed at shutdown. A
//! backend that takes traces but rejects metrics costs one warning.
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
//! # Cargo features
//!
//! - `tracing` (off by default): [`Telemetry::tracing_layer`], a
//!   `tracing-subscriber` layer through `tracing-opentelemetry`, so the
//!   `tracing` spans a job makes are children of its `process {queue}` span
//!   (see `tracing_bridge`, which says how the parent is picked).
//!
//! OTLP over gRPC (tonic) and over HTTP/protobuf (a blocking reqwest client
//! on the SDK's own threads) are both always built in.

#![warn(missing_docs)]

mod builder;
mod config;
mod endpoint;
mod error;
mod export_failures;
mod export_runtime;
mod export_target;
mod exporter_wrap;
mod guard;
mod headers;
mod kv_list;
mod protocol;
mod providers;
mod resource;
mod sampler;
mod signal;
mod summary;
#[cfg(feature = "tracing")]
pub mod tracing_bridge;

pub use builder::{Builder, DEFAULT_SHUTDOWN_TIMEOUT};
pub use error::Error;
pub use export_failures::ExportFailures;
pub use guard::Telemetry;
pub use protocol::Protocol;
pub use signal::Signal;

/// Installs telemetry configured from the `OTEL_*` environment:
/// `Builder::default().install()`.
///
/// See [`Builder::install`].
pub fn init() -> Result<Telemetry, Error> {
    Builder::default().install()
}

#[cfg(test)]
mod test_support;
