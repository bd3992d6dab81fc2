//! The backend seam: everything jobsight does differently per apalis
//! backend, one module per backend.
//!
//! A backend answers three questions:
//! - **on a job's path** ([`Backend`], given to
//!   [`crate::MonitorLayerBuilder::backend`]): where the queue, enqueue time, run-at
//!   and attempt counters of a task come from, and when a failed attempt
//!   becomes due again (so a retry's queue time is measured from then, or
//!   left out — never from a stale column);
//! - **on the producer's path** ([`QueueConfig`], implemented for the
//!   storage's `BackendConfig::Config`): which queue a push goes to, so the
//!   send span and the process span name the same queue;
//! - **off both paths** (`QueueStatsSource`, with a backend feature): how the queue gauges are
//!   read, one round trip per poll for all queues (see the `stats` module, with a backend feature).
//!
//! | backend (feature) | profile | queue gauges |
//! |---|---|---|
//! | apalis-redis (`redis`) | [`Redis`] | `RedisQueueStats` |
//! | apalis-postgres (`postgres`) | [`Postgres`] | `PostgresQueueStats` |
//! | in-memory | [`Memory`] | none (the storage exposes no length) |
//!
//! Adding a backend is one module: a unit struct implementing [`Backend`],
//! [`QueueConfig`] for its config type, and a `QueueStatsSource` with a
//! small builder around the `stats` module's poller. Worker registries (live workers,
//! heartbeat age, jobs held) belong on the same per-backend modules, next to
//! the statistics they are read with.

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_core::task::ExecutionContext;

use crate::task_meta::ENQUEUED_AT_KEY;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub(crate) mod retry_clock;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub mod stats;

/// The attribute naming the backend (`redis`, `postgres`, …) on the queue
/// gauges and on the process spans of a layer given
/// [`crate::MonitorLayerBuilder::backend`].
pub const JOB_BACKEND: &str = "job.backend";

/// What differs between apalis backends on a job's path. Implemented by a
/// unit struct per backend ([`Redis`], [`Postgres`], [`Memory`]); give one
/// to [`crate::MonitorLayerBuilder::backend`].
pub trait Backend: Debug + Send + Sync + 'static {
    /// The `job.backend` attribute on process spans (`redis`, `postgres`…).
    fn name(&self) -> &'static str;

    /// When the first attempt of a task was enqueued: by default the
    /// producer's `jobsight.enqueued_at` stamp (unix ms), else the timestamp
    /// of a ULID task id.
    fn enqueued_at(&self, ctx: &ExecutionContext) -> Option<SystemTime> {
        stamped_or_ulid(ctx)
    }

    /// Whether the task's `run_at` is when *this* attempt became due.
    /// Defaults to true on the first attempt only.
    fn run_at_is_due(&self, attempt: u32) -> bool {
        attempt <= 1
    }

    /// How long after a failed attempt ends the backend makes the task due
    /// again, when the backend decides that alone (`Some(ZERO)` for a
    /// backend that re-fetches at once). `None` (the default) means the
    /// layer cannot know, and a retry's queue time is left out.
    fn retry_due_after(&self, failed_attempt: u32) -> Option<Duration> {
        let _ = failed_attempt;
        None
    }
}

/// The storage's configuration, as far as jobsight needs it: the queue a
/// push goes to. Implemented for each supported backend's `Config` (and for
/// `()`, the in-memory storage's), so that [`crate::TracedPush`] names the
/// queue the worker will report.
pub trait QueueConfig {
    /// The queue pushes go to; `None` when the configuration does not say
    /// (the task's queue, the layer's, or the `Args` type's path is used).
    fn queue_name(&self) -> Option<&str>;
}

impl QueueConfig for () {
    fn queue_name(&self) -> Option<&str> {
        None
    }
}

/// apalis's in-memory storage: no run-at, no queue, no statistics; queue
/// time from the producer's stamp only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory;

impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }
}

/// apalis-redis: the queue is not on the task (give it to the layer), the
/// enqueue time comes from the ULID id or the producer's stamp, and a failed
/// job is rescheduled `attempt` seconds after it failed (whole seconds: a
/// retry's queue time is left out rather than guessed).
#[derive(Clone, Copy, Debug, Default)]
pub struct Redis;

impl Backend for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }
}

/// apalis-postgres: queue, run-at and max attempts are always on the task;
/// `run_at` is in whole seconds and is not moved when an attempt fails, and
/// a failed job with attempts left is fetched again at once, so a retry's
/// queue time is measured from the end of the failed attempt when this
/// process ran it (else left out).
#[derive(Clone, Copy, Debug, Default)]
pub struct Postgres;

impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn retry_due_after(&self, _failed_attempt: u32) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

/// The producer's stamp, else the ULID id's time.
pub(crate) fn stamped_or_ulid(ctx: &ExecutionContext) -> Option<SystemTime> {
    if let Some(ms) = ctx
        .metadata()
        .get(ENQUEUED_AT_KEY)
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(UNIX_EPOCH + Duration::from_millis(ms));
    }
    let ulid = ctx.task_id()?.as_ulid()?;
    Some(UNIX_EPOCH + Duration::from_millis(ulid.timestamp_ms()))
}
