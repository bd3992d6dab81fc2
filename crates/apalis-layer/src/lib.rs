//! Tower layers that make [apalis](https://docs.rs/apalis) workers observable
//! with OpenTelemetry.
//!
//! # Quick start
//! ```no_run
//! use apalis::prelude::*;
//! use jobsight_apalis::MonitorLayer;
//!
//! async fn send_email(to: String) -> Result<(), BoxDynError> { Ok(()) }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let _telemetry = jobsight_otel::init()?; // OTLP from OTEL_* variables
//! // "email-sender@{host}/{pid}": unique per process (see below).
//! WorkerBuilder::new(jobsight_apalis::worker_name("email-sender"))
//!     .backend(MemoryStorage::<String>::new())
//!     .layer(MonitorLayer::new())
//!     .build(send_email)
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Worker names
//! Give every process's worker a name of its own: [`worker_name`] appends
//! the host name and the process id. apalis-redis keys a worker's heartbeat
//! and its jobs in flight by name, so two processes with one name are
//! refused or share one in-flight set. Their telemetry is told apart by
//! the resource (`service.instance.id`, set by `jobsight-otel`).
//!
//! # Customization
//! [`MonitorLayer::builder`] takes every setting of the layer and of the
//! monitor it records through, in any order, and fails at
//! [`build`](MonitorLayerBuilder::build) naming settings that cannot both
//! hold; [`SendLayer::builder`] has the same shape for producers.
//! [`MonitorWorkerExt::monitor`] adds a layer to a worker together with
//! apalis's retry layer when the builder was given
//! [`retries`](MonitorLayerBuilder::retries), so the retry count is written
//! once. The types the builders take (`DefaultClassifier`, `Propagation`,
//! `CheckinPolicy`, `Checkins`, `ArgsPolicy`, observers…) are re-exported
//! here: a worker needs this crate and `jobsight-otel`, nothing else.
//!
//! ```
//! use std::time::Duration;
//! use apalis::prelude::*;
//! use jobsight_apalis::{CheckinPolicy, DefaultClassifier, MonitorLayer, MonitorWorkerExt, Schedule};
//!
//! async fn send_email(to: String) -> Result<(), BoxDynError> { Ok(()) }
//!
//! # fn main() -> Result<(), jobsight_apalis::Error> {
//! let worker = WorkerBuilder::new(jobsight_apalis::worker_name("email-sender"))
//!     .backend(MemoryStorage::<String>::new())
//!     .monitor(
//!         MonitorLayer::builder()
//!             .queue("emails")
//!             .retries(2)
//!             .classifier(DefaultClassifier::new().report_retries_from_attempt(2))
//!             .checkin(CheckinPolicy::queue("emails").schedule(Schedule::every(Duration::from_secs(60)))),
//!     )?
//!     .build(send_email);
//! # Ok(()) }
//! ```
//!
//! # Which monitor
//! The one rule, for every layer: the monitor given to the builder's
//! `.monitor(..)`; else, when a monitor setting (classifier, propagation,
//! providers, observers, progress, `traces`, buckets, max kinds) is given, a
//! monitor built from them; else the process's default monitor,
//! [`default_monitor`] (global providers; replace it once with
//! [`set_default_monitor`]). [`MonitorLayer::new`], [`SendLayer::new`] and
//! [`TracedPush`] use the default. The meter provider is a monitor setting:
//! it covers the job metrics and the check-in gauge.
//!
//! # Tracing
//! Each call of the worker's service is one attempt: a CONSUMER span
//! `process {queue}` that starts when the worker calls the job and ends when
//! the job's future completes, panics or is dropped. See
//! [`jobsight_core::transaction`] for what a retry, a failure and an
//! abandoned job look like, and [`task_meta`] for which apalis field feeds
//! which attribute.
//!
//! # Metrics
//! `messaging.process.duration`, `messaging.client.consumed.messages`,
//! `job.queue_time`, `job.outcomes` and `job.active`, per
//! `messaging.destination.name` and `job.name` (see the README's table).
//!
//! # Check-ins
//! [`MonitorLayerBuilder::checkin`] (or [`MonitorLayerBuilder::checkins`]
//! with a registry shared with the watchdog) gives jobs a check-in policy:
//! each attempt then sends `in_progress` and `ok`/`error` check-ins,
//! recorded as `job.checkin` span events and the `job.checkin.last_success`
//! gauge, and passed to the registry's sinks (pings and the Redis watchdog
//! live in `jobsight-checkin`). See [`jobsight_core::checkin`].
//!
//! # What apalis does not tell us
//! - apalis-redis keeps neither the queue nor the run-at on the task; the
//!   queue defaults to the `Args` type's path (apalis-redis's default queue
//!   name) unless set with [`MonitorLayerBuilder::queue`], and queue time
//!   comes from the ULID task id or from a [`stamped`] task's stamp.
//! - apalis's `RetryPolicy` does not write its limit on the task: the layer
//!   learns it from [`MonitorLayerBuilder::retries`] (or
//!   [`max_attempts`](MonitorLayerBuilder::max_attempts)).
//! - apalis-redis retries failed jobs up to 25 times whatever
//!   `max_attempts` says, so `job.max_attempts` is what the task asked for,
//!   not always what the backend does.
//!
//! # Queue gauges (feature `redis`)
//! `RedisQueueStats` polls apalis-redis for each queue's depth, oldest
//! waiting job's age, and scheduled, running, done and dead counts, and
//! reports them as observable gauges (`job.queue.*`). See `backend::redis`
//! for the Redis commands it sends and what happens when Redis is down.
//!
//! # Backends
//! What differs per apalis backend lives in [`backend`], one module each:
//! give the layer its backend with [`MonitorLayerBuilder::backend`]; the
//! queue gauges of PostgreSQL come from `PostgresQueueStats` (feature
//! `postgres`).
//!
//! # Cargo features
//! - `redis` (off): the queue gauges poller; adds `redis` (the client
//!   apalis-redis already uses), apalis-redis, `tokio` and `ulid`.
//! - `postgres` (off): `push_traced` names apalis-postgres's queue, and
//!   `PostgresQueueStats`; adds apalis-postgres, `sqlx` (postgres, tokio)
//!   and `tokio`.
//!
//! # Producers
//! [`TracedPush`] (`storage.push_traced(args)`) and [`SendLayer`] record
//! each push as a PRODUCER span `send {queue}` and stamp the task with its
//! context and enqueue time, so the job's `process {queue}` span links back
//! to it (see [`send`]). [`stamped`] only stamps the task with the current
//! context, without a send span: it is for producers that record no send
//! span of their own, where `push_traced` both records and stamps.
#![warn(missing_docs)]

pub mod args;
pub mod backend;
pub mod carrier;
mod errors;
mod future;
mod layer;
mod layer_builder;
mod monitor_choice;
pub mod producer;
pub mod send;
mod send_builder;
mod service;
pub mod task_meta;
mod worker_ext;
mod worker_name;

pub use args::{ArgsCapture, ArgsOff, CaptureArgs};
#[cfg(feature = "postgres")]
pub use backend::postgres::PostgresQueueStats;
#[cfg(feature = "redis")]
pub use backend::redis::RedisQueueStats;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub use backend::stats::{PollError, QueueSnapshot, QueueStatsHandle, QueueStatsSource};
pub use backend::{Backend, QueueConfig};
pub use errors::{Error, JobPanicked};
pub use future::MonitorFuture;
pub use layer::MonitorLayer;
pub use layer_builder::MonitorLayerBuilder;
pub use producer::{Stamp, stamped, stamped_builder};
pub use send::{SendFuture, SendLayer, SendService, SinkService, TracedPush};
pub use send_builder::SendLayerBuilder;
pub use service::MonitorService;
pub use worker_ext::{MonitorLayers, MonitorWorkerExt};
pub use worker_name::worker_name;

// What the builders take, so that a worker imports this crate (and
// jobsight-otel) only. None of these names is in apalis's prelude.
pub use jobsight_core::checkin::{
    CheckinEvent, CheckinPolicy, CheckinSink, CheckinStatus, Checkins, Schedule,
};
pub use jobsight_core::observer::{
    EventKind, JobEvent, ObserveError, Observer, ObserverOptions, ObserverStats, Observers,
};
pub use jobsight_core::progress::ProgressThrottle;
pub use jobsight_core::{
    ArgsPolicy, Classify, DefaultClassifier, ErrorClass, JobMeta, JobMonitor, JobMonitorBuilder,
    Outcome, Propagation, default_monitor, progress, set_default_monitor,
};
