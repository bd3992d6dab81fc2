//! apalis-redis (cargo feature `redis`): queue statistics: per
//! queue, how many jobs wait, how long the oldest has waited, and what the
//! backend knows about scheduled, running, done and dead jobs, as
//! OpenTelemetry observable gauges.
//!
//! # How it reads Redis
//! A [`RedisQueueStats`] poller runs on a tokio task of its own, never on a
//! job's path. Every interval it sends **one pipeline** (one round trip) for
//! all its queues, made only of O(1) and O(log n) commands on the keys
//! apalis-redis 1.0 writes (no `KEYS`, no `SCAN`, no Lua), per queue `q`:
//!
//! | command | gives |
//! |---|---|
//! | `ZCOUNT q:scheduled -inf now` + `LLEN q:active` | depth: jobs due and not taken |
//! | `ZRANGE q:scheduled 0 0 WITHSCORES`, `LINDEX q:active 0` | the oldest due job: its score (due time, s), or the ULID's enqueue time |
//! | `ZCOUNT q:scheduled (now +inf` | scheduled: jobs due later, retries waiting for their turn included |
//! | `ZRANGEBYSCORE q:workers (now-worker_timeout) +inf` | the live workers (heartbeat within `worker_timeout`) |
//! | `SCARD q:inflight:{worker}` for each live worker of the previous poll | running |
//! | `SCARD q:done`, `SCARD q:dead` | done, dead |
//!
//! apalis-redis's own introspection (`Metrics`, `ListQueues`, …) fails on
//! 1.0.0 and has no oldest-job age, hence the direct reads.
//!
//! # Gauges
//! The six `job.queue.*` gauges and the poll error counter of [`super::stats`],
//! with `job.backend` = `redis`; what happens when Redis is down is said
//! there too.
//!
//! # What is approximate
//! - `running` counts the workers seen alive by the *previous* poll: a new
//!   worker's jobs show one interval late; a worker whose heartbeat is older
//!   than `worker_timeout` is not counted (its jobs are orphans until
//!   apalis re-enqueues them).
//! - `oldest_age` for a job at the head of `q:active` comes from its ULID
//!   (the enqueue time): a retried or scheduled job that was promoted to
//!   `q:active` looks older than it is until a worker takes it. Tasks with
//!   ids of their own (not ULIDs) at the head of `q:active` are not aged.
//! - Times are the poller's clock against scores written with the
//!   producers' clocks (whole seconds).
//! - apalis-redis keeps no failed set (`q:failed` is never written): a
//!   failed attempt is either rescheduled (counted in `scheduled`) or dead.
//!
//! # The in-memory backend
//! apalis's `MemoryStorage` exposes no length: its channel is boxed behind
//! `dyn Sink`/`dyn Stream` and it implements none of apalis's introspection
//! traits, so there are no backend gauges for it. `job.active` (from the
//! layer) still shows the jobs in flight.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::MeterProvider;
use redis::Value;
use redis::aio::ConnectionLike;

use super::QueueConfig;
use super::stats::{PollError, QueueSnapshot, QueueStatsHandle, QueueStatsSource, StatsSettings};
use crate::errors::Error;

pub use super::stats::{DEFAULT_POLL_INTERVAL, DEFAULT_POLL_TIMEOUT};

/// The default [`RedisQueueStats::worker_timeout`]: apalis-redis's default
/// heartbeat (30 s) times its default of missed heartbeats (2), after which
/// apalis itself treats a worker's jobs as orphans.
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(60);

impl QueueConfig for apalis_redis::Config {
    fn queue_name(&self) -> Option<&str> {
        Some(self.queue.as_ref())
    }
}

/// Configures and starts the poller of apalis-redis queue statistics.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // Or a clone of the `ConnectionManager` from `apalis_redis::connect`.
/// let conn = redis::Client::open("redis://127.0.0.1/")?
///     .get_multiplexed_async_connection()
///     .await?;
/// let stats = jobsight_apalis::RedisQueueStats::new(conn)
///     .queue("emails")
///     .queue("reports")
///     .start()?; // keep `stats` alive as long as the gauges should report
/// # drop(stats); Ok(()) }
/// ```
///
/// The queue names are apalis-redis's `Config::queue` (by default the job
/// type's full path, `std::any::type_name::<Args>()`); give `MonitorLayer`
/// the same name ([`crate::MonitorLayerBuilder::queue`]) so both sets of series
/// share `messaging.destination.name`.
#[must_use]
pub struct RedisQueueStats<C> {
    conn: C,
    worker_timeout: Duration,
    settings: StatsSettings,
}

impl<C> std::fmt::Debug for RedisQueueStats<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueStats")
            .field("settings", &self.settings)
            .field("worker_timeout", &self.worker_timeout)
            .finish_non_exhaustive()
    }
}

impl<C> RedisQueueStats<C>
where
    C: ConnectionLike + Send + 'static,
{
    /// A poller that reads through `conn`, e.g. a clone of the
    /// `ConnectionManager` given to `RedisStorage` (it reconnects by itself
    /// after an outage). No queues yet.
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            worker_timeout: DEFAULT_WORKER_TIMEOUT,
            settings: StatsSettings::default(),
        }
    }

    /// Adds a queue to poll. A queue given twice is polled once.
    pub fn queue(mut self, queue: impl AsRef<str>) -> Self {
        self.settings.add_queue(queue.as_ref());
        self
    }

    /// Adds several queues to poll.
    pub fn queues<I, Q>(self, queues: I) -> Self
    where
        I: IntoIterator<Item = Q>,
        Q: AsRef<str>,
    {
        queues.into_iter().fold(self, Self::queue)
    }

    /// Time between polls. Defaults to [`DEFAULT_POLL_INTERVAL`] (15 s, a
    /// common scrape interval). Values under 10 ms are raised to 10 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.settings.set_interval(interval);
        self
    }

    /// A worker whose last heartbeat is older than this no longer counts
    /// as running jobs. Defaults to [`DEFAULT_WORKER_TIMEOUT`] (60 s).
    pub fn worker_timeout(mut self, timeout: Duration) -> Self {
        self.worker_timeout = timeout;
        self
    }

    /// How long one poll may take before it counts as an error
    /// (`error.type` = `timeout`). Defaults to [`DEFAULT_POLL_TIMEOUT`]
    /// (5 s), and never more than the interval.
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.settings.poll_timeout = timeout;
        self
    }

    /// Records with a meter from `provider` instead of the global one.
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        self.settings.set_meter_provider(provider);
        self
    }

    /// Registers the gauges and starts polling on the current tokio
    /// runtime; the first poll runs at once. Fails outside a tokio runtime.
    pub fn start(self) -> Result<QueueStatsHandle, Error> {
        self.settings.start(RedisSource {
            conn: self.conn,
            workers: Vec::new(),
            worker_timeout: self.worker_timeout,
        })
    }
}

/// Reads apalis-redis's keys; remembers the live workers of the last poll.
struct RedisSource<C> {
    conn: C,
    /// Live workers per queue, from the previous poll.
    workers: Vec<Vec<String>>,
    worker_timeout: Duration,
}

impl<C: ConnectionLike + Send + 'static> QueueStatsSource for RedisSource<C> {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn poll(&mut self, queues: &[Arc<str>]) -> Result<Vec<QueueSnapshot>, PollError> {
        self.poll_all(queues).await
    }
}

/// A Redis error as a poll error: unreachable, or a bad answer.
fn from_redis(e: redis::RedisError) -> PollError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        PollError::Connection(Box::new(e))
    } else {
        PollError::Response(e.to_string())
    }
}

impl<C: ConnectionLike + Send + 'static> RedisSource<C> {
    /// One pipelined round trip for every queue.
    async fn poll_all(&mut self, queues: &[Arc<str>]) -> Result<Vec<QueueSnapshot>, PollError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now_s = now.as_secs();
        let live_since = now.saturating_sub(self.worker_timeout).as_secs();
        self.workers.resize(queues.len(), Vec::new());
        let mut pipe = redis::pipe();
        for (queue, workers) in queues.iter().zip(&self.workers) {
            let scheduled = format!("{queue}:scheduled");
            let active = format!("{queue}:active");
            pipe.cmd("ZCOUNT").arg(&scheduled).arg("-inf").arg(now_s);
            pipe.cmd("LLEN").arg(&active);
            pipe.cmd("ZRANGE")
                .arg(&scheduled)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
            pipe.cmd("LINDEX").arg(&active).arg(0);
            pipe.cmd("ZCOUNT")
                .arg(&scheduled)
                .arg(format!("({now_s}"))
                .arg("+inf");
            pipe.cmd("SCARD").arg(format!("{queue}:done"));
            pipe.cmd("SCARD").arg(format!("{queue}:dead"));
            pipe.cmd("ZRANGEBYSCORE")
                .arg(format!("{queue}:workers"))
                .arg(format!("({live_since}"))
                .arg("+inf");
            for worker in workers {
                pipe.cmd("SCARD").arg(format!("{queue}:inflight:{worker}"));
            }
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.conn).await.map_err(from_redis)?;
        let mut replies = replies.into_iter();
        let mut next = |what: &str| {
            replies
                .next()
                .ok_or_else(|| PollError::Response(format!("missing reply for {what}")))
        };
        let now_f = now.as_secs_f64();
        let mut snapshots = Vec::with_capacity(queues.len());
        for (queue, workers) in queues.iter().zip(self.workers.iter_mut()) {
            let due: u64 = parse(next("ZCOUNT due")?)?;
            let active: u64 = parse(next("LLEN")?)?;
            let head: Vec<(String, f64)> = parse(next("ZRANGE")?)?;
            let active_head: Option<String> = parse(next("LINDEX")?)?;
            let scheduled: u64 = parse(next("ZCOUNT later")?)?;
            let done: u64 = parse(next("SCARD done")?)?;
            let dead: u64 = parse(next("SCARD dead")?)?;
            let live: Vec<String> = parse(next("ZRANGEBYSCORE")?)?;
            let mut running = 0;
            for _ in 0..workers.len() {
                running += parse::<u64>(next("SCARD inflight")?)?;
            }
            *workers = live;

            let due_age = head
                .first()
                .map(|(_, due_at)| now_f - due_at)
                .filter(|age| *age >= 0.0);
            let active_age = active_head
                .and_then(|id| ulid::Ulid::from_string(&id).ok())
                .map(|id| (now_f - id.timestamp_ms() as f64 / 1000.0).max(0.0));
            let oldest_age = due_age.into_iter().chain(active_age).fold(0.0, f64::max);
            snapshots.push(QueueSnapshot {
                queue: queue.clone(),
                depth: due + active,
                oldest_age,
                scheduled,
                running,
                done,
                dead,
            });
        }
        Ok(snapshots)
    }
}

fn parse<T: redis::FromRedisValue>(value: Value) -> Result<T, PollError> {
    redis::from_redis_value(value).map_err(|e| PollError::Response(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_low_cardinality() {
        assert_eq!(
            PollError::Timeout(Duration::from_secs(1)).error_type(),
            "timeout"
        );
        assert_eq!(PollError::Response("x".into()).error_type(), "response");
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(from_redis(io).error_type(), "connection");
    }
}
