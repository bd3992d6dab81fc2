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
//! WorkerBuilder::new("email-sender")
//!     .backend(MemoryStorage::<String>::new())
//!     .layer(MonitorLayer::new())
//!     .build(send_email)
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
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
//! [`MonitorLayer::checkin`] (or [`MonitorLayer::with_checkins`] with a
//! shared registry) gives jobs a check-in policy: each attempt then sends
//! `in_progress` and `ok`/`error` check-ins, recorded as `job.checkin` span
//! events and the `job.checkin.last_success` gauge, and passed to the
//! registry's sinks (pings and the Redis watchdog live in
//! `jobsight-checkin`). See [`jobsight_core::checkin`].
//!
//! # What apalis does not tell us
//! - apalis-redis keeps neither the queue nor the run-at on the task; the
//!   queue defaults to the `Args` type's path (apalis-redis's default queue
//!   name) unless set with [`MonitorLayer::queue`], and queue time comes from
//!   the ULID task id or from a [`traced`] task's stamp.
//! - apalis-redis retries failed jobs up to 25 times whatever
//!   `max_attempts` says, so `job.max_attempts` is what the task asked for,
//!   not always what the backend does.
//! - apalis-postgres keeps `run_at` in whole seconds and does not move it
//!   when an attempt fails, and re-fetches a failed job at once until its
//!   `max_attempts` (25 by default): with [`MonitorLayer::backend`]`(Postgres)`
//!   a retry's queue time runs from the end of the failed attempt when this
//!   process ran it, else it is left out (see `backend::postgres`).
//!
//! # Queue gauges (feature `redis`)
//! `RedisQueueStats` polls apalis-redis for each queue's depth, oldest
//! waiting job's age, and scheduled, running, done and dead counts, and
//! reports them as observable gauges (`job.queue.*`). See `backend::redis`
//! for the Redis commands it sends and what happens when Redis is down.
//!
//! # Backends
//! What differs per apalis backend lives in [`backend`], one module each:
//! give the layer its backend with [`MonitorLayer::backend`]; the queue
//! gauges of PostgreSQL come from `PostgresQueueStats` (feature `postgres`).
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
//! to it (see [`send`]). [`traced`] only stamps the task with the current
//! context, without a send span.
#![warn(missing_docs)]

pub mod args;
pub mod backend;
pub mod carrier;
mod errors;
mod future;
mod layer;
pub mod producer;
pub mod send;
mod service;
pub mod task_meta;

pub use args::{RecordArgsLayer, RecordArgsService};
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
pub use producer::{Stamp, traced, traced_builder};
pub use send::{SendFuture, SendLayer, SendService, SinkService, TracedPush};
pub use service::MonitorService;
