//! apalis-postgres (cargo feature `postgres`): the queue a push goes to,
//! and queue statistics from one grouped SQL query.
//!
//! # On a job's path
//! See [`super::Postgres`]: queue, run-at, attempts and max attempts come
//! from the row (`job_type`, `run_at`, `attempts`, `max_attempts`; apalis
//! writes `max_attempts` = 25 unless the task says otherwise and enforces
//! it, whatever apalis's `RetryPolicy` says); trace context and baggage
//! travel in the `metadata` hstore column. The first attempt's queue time
//! runs from the producer's stamp or the ULID id (milliseconds), or from
//! `run_at` for a job scheduled later; a retry's from the end of the failed
//! attempt when this process ran it — never from `run_at`, which is in
//! whole seconds and not moved when an attempt fails.
//!
//! # How it reads PostgreSQL
//! A [`PostgresQueueStats`] poller sends **one statement** per poll for all
//! its queues (`unnest($1::text[])`), each queue read by two index scans:
//!
//! | part | rows read | index | gives |
//! |---|---|---|---|
//! | waiting | `status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)` | apalis's `idx_apalis_jobs_fetch_partial` (the fetch predicate) | depth (due now), scheduled (due later), the oldest due job's age |
//! | by status | every row of the queue | `jobsight_jobs_queue_status (job_type, status)`, made by [`PostgresQueueStats::create_index`] | running (`Queued` + `Running`), done, dead (`Killed`, and `Failed` with no attempts left) |
//!
//! A failed job with attempts left is due again from the moment its
//! failure was written (`done_at`), not from its stale `run_at`: its age
//! counts from `done_at`. Times are the database's `now()` against its own
//! `timestamptz` columns (microseconds), returned as `float8` seconds.
//!
//! apalis-postgres has no index on `(job_type, status)`: without
//! [`PostgresQueueStats::create_index`] the "by status" part reads the whole
//! table (a sequential scan). apalis's own `Metrics::fetch_by_queue` is not
//! used: its timestamps are `REAL` (f32, ±64 s today), its backlog leaves
//! out failed jobs waiting for their retry, and it counts `Queued` jobs
//! (fetched into a worker's buffer) nowhere.
//!
//! # What the counts mean here
//! - depth: jobs a worker would fetch now (pending or retryable, due);
//! - scheduled: the same, due later (`run_at` in the future);
//! - running: rows a worker holds, fetched into its buffer (`Queued`) or
//!   running (`Running`); a dead worker's rows count until apalis
//!   re-enqueues them (after `heartbeat_interval × missed_heartbeats`);
//! - done: `Done` rows (apalis keeps them until vacuumed);
//! - dead: `Killed` rows and `Failed` rows with no attempts left.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider;
use sqlx::PgPool;

use super::QueueConfig;
use super::stats::{PollError, QueueSnapshot, QueueStatsHandle, QueueStatsSource, StatsSettings};
use crate::errors::Error;

pub use super::stats::{DEFAULT_POLL_INTERVAL, DEFAULT_POLL_TIMEOUT};

impl QueueConfig for apalis_postgres::Config {
    fn queue_name(&self) -> Option<&str> {
        Some(self.queue.as_ref())
    }
}

/// The index [`PostgresQueueStats::create_index`] creates.
pub const INDEX_NAME: &str = "jobsight_jobs_queue_status";

const CREATE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS jobsight_jobs_queue_status ON apalis.jobs (job_type, status)";

/// The statistics of every queue in `$1`, in its order.
pub const STATS_QUERY: &str = r"
SELECT q.queue,
       w.due, w.later, w.oldest_age, w.retrying,
       s.running, s.done, s.failed, s.killed
FROM unnest($1::text[]) WITH ORDINALITY AS q(queue, pos)
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE status IN ('Queued', 'Running')) AS running,
           count(*) FILTER (WHERE status = 'Done') AS done,
           count(*) FILTER (WHERE status = 'Failed') AS failed,
           count(*) FILTER (WHERE status = 'Killed') AS killed
    FROM apalis.jobs
    WHERE job_type = q.queue
) s
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE due_at <= now()) AS due,
           count(*) FILTER (WHERE due_at > now()) AS later,
           count(*) FILTER (WHERE status = 'Failed') AS retrying,
           coalesce(extract(epoch FROM now() - min(due_at) FILTER (WHERE due_at <= now())), 0)::float8
               AS oldest_age
    FROM (
        SELECT status,
               CASE WHEN status = 'Failed' THEN greatest(run_at, coalesce(done_at, run_at))
                    ELSE run_at END AS due_at
        FROM apalis.jobs
        WHERE job_type = q.queue
          AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
    ) waiting
) w
ORDER BY q.pos";

/// Configures and starts the poller of apalis-postgres queue statistics.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use jobsight_apalis::PostgresQueueStats;
/// PostgresQueueStats::create_index(&pool).await?; // once, after apalis's migrations
/// let stats = PostgresQueueStats::new(pool.clone())
///     .queue("emails")
///     .start()?; // keep `stats` alive as long as the gauges should report
/// # drop(stats); Ok(()) }
/// ```
///
/// The queue names are apalis-postgres's `Config::queue` (the `job_type`
/// column; by default the job type's full path).
#[must_use]
#[derive(Debug)]
pub struct PostgresQueueStats {
    pool: PgPool,
    settings: StatsSettings,
}

impl PostgresQueueStats {
    /// A poller that reads through `pool` (the pool given to
    /// `PostgresStorage` will do: one connection for a few milliseconds
    /// per poll). No queues yet.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            settings: StatsSettings::default(),
        }
    }

    /// Creates the index on `apalis.jobs (job_type, status)` the running,
    /// done and dead counts use, if it does not exist. Run it once after
    /// apalis's migrations (`PostgresStorage::setup`); it takes a lock
    /// that blocks writes to `apalis.jobs` while it builds.
    pub async fn create_index(pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(CREATE_INDEX).execute(pool).await.map(|_| ())
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

    /// Time between polls. Defaults to [`DEFAULT_POLL_INTERVAL`] (15 s).
    /// Values under 10 ms are raised to 10 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.settings.set_interval(interval);
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
        self.settings.start(PostgresSource { pool: self.pool })
    }
}

/// Reads `apalis.jobs` with [`STATS_QUERY`].
struct PostgresSource {
    pool: PgPool,
}

type StatsRow = (String, i64, i64, f64, i64, i64, i64, i64, i64);

impl QueueStatsSource for PostgresSource {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn poll(&mut self, queues: &[Arc<str>]) -> Result<Vec<QueueSnapshot>, PollError> {
        let names: Vec<&str> = queues.iter().map(|q| &**q).collect();
        let rows: Vec<StatsRow> = sqlx::query_as(STATS_QUERY)
            .bind(&names)
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(queues
            .iter()
            .zip(rows)
            .map(
                |(queue, (_, due, later, oldest_age, retrying, running, done, failed, killed))| {
                    let count = |n: i64| u64::try_from(n).unwrap_or(0);
                    QueueSnapshot {
                        depth: count(due),
                        oldest_age: oldest_age.max(0.0),
                        scheduled: count(later),
                        running: count(running),
                        done: count(done),
                        dead: count(killed) + count(failed).saturating_sub(count(retrying)),
                        ..QueueSnapshot::empty(queue.clone())
                    }
                },
            )
            .collect())
    }
}

/// A sqlx error as a poll error: unreachable, or a bad answer.
fn from_sqlx(e: sqlx::Error) -> PollError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => PollError::Connection(Box::new(e)),
        other => PollError::Response(other.to_string()),
    }
}
