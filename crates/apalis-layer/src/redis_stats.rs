//! Queue statistics read from apalis-redis (cargo feature `redis`): per
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
//! Each with `messaging.system` = `apalis` and `messaging.destination.name`
//! = the queue (the same attributes `MonitorLayer`'s metrics carry, so
//! dashboards can put both side by side):
//! `job.queue.depth`, `job.queue.oldest_age` (s), `job.queue.scheduled`,
//! `job.queue.running`, `job.queue.done`, `job.queue.dead`. The callbacks
//! only copy the values of the last successful poll: they never touch the
//! network (the SDK runs them on its reader thread, with no timeout).
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
//! # When Redis is down
//! A poll that fails or takes longer than its timeout is counted in
//! `jobsight.queue_poll.errors` (per queue, with `error.type` =
//! `timeout`, `connection` or `response`) and in
//! [`QueueStatsHandle::errors`]; the gauges **keep reporting the values of
//! the last successful poll** (they stop updating; they do not vanish, so
//! alerts do not resolve because the poller cannot see), and the poller
//! tries again at the next interval. Nothing panics. Before the first
//! successful poll the gauges report nothing. After
//! [`QueueStatsHandle::stop`] (or dropping the handle) they report nothing.
//!
//! # The in-memory backend
//! apalis's `MemoryStorage` exposes no length: its channel is boxed behind
//! `dyn Sink`/`dyn Stream` and it implements none of apalis's introspection
//! traits, so there are no backend gauges for it. `job.active` (from the
//! layer) still shows the jobs in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobsight_core::semconv;
use opentelemetry::metrics::{AsyncInstrument, Counter, Meter, MeterProvider, ObservableGauge};
use opentelemetry::{InstrumentationScope, KeyValue, global};
use redis::Value;
use redis::aio::ConnectionLike;

use crate::errors::Error;

/// The default [`RedisQueueStats::interval`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// The default [`RedisQueueStats::worker_timeout`]: apalis-redis's default
/// heartbeat (30 s) times its default of missed heartbeats (2), after which
/// apalis itself treats a worker's jobs as orphans.
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`RedisQueueStats::poll_timeout`].
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// `messaging.system` on the gauges, as on the layer's metrics.
const SYSTEM: &str = "apalis";

/// What one poll learned about one queue.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct QueueSnapshot {
    /// The queue (apalis-redis's `Config::queue`).
    pub queue: Arc<str>,
    /// Jobs due and not yet taken by a worker.
    pub depth: u64,
    /// Seconds the oldest due job has waited; 0 when none waits.
    pub oldest_age: f64,
    /// Jobs due later (scheduled, or failed and waiting for their retry).
    pub scheduled: u64,
    /// Jobs held by live workers and not yet acknowledged.
    pub running: u64,
    /// Jobs in the backend's done set.
    pub done: u64,
    /// Jobs in the backend's dead set.
    pub dead: u64,
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
    queues: Vec<Arc<str>>,
    interval: Duration,
    worker_timeout: Duration,
    poll_timeout: Duration,
    meter: Option<Meter>,
}

impl<C> std::fmt::Debug for RedisQueueStats<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueStats")
            .field("queues", &self.queues)
            .field("interval", &self.interval)
            .field("worker_timeout", &self.worker_timeout)
            .field("poll_timeout", &self.poll_timeout)
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
            queues: Vec::new(),
            interval: DEFAULT_POLL_INTERVAL,
            worker_timeout: DEFAULT_WORKER_TIMEOUT,
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            meter: None,
        }
    }

    /// Adds a queue to poll. A queue given twice is polled once.
    pub fn queue(mut self, queue: impl AsRef<str>) -> Self {
        let queue = queue.as_ref();
        if !self.queues.iter().any(|q| &**q == queue) {
            self.queues.push(Arc::from(queue));
        }
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
        self.interval = interval.max(Duration::from_millis(10));
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
        self.poll_timeout = timeout;
        self
    }

    /// Records with a meter from `provider` instead of the global one.
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Registers the gauges and starts polling on the current tokio
    /// runtime; the first poll runs at once. Fails outside a tokio runtime.
    pub fn start(self) -> Result<QueueStatsHandle, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter_with_scope(scope()));
        let attributes = self
            .queues
            .iter()
            .map(|queue| {
                vec![
                    KeyValue::new(semconv::MESSAGING_SYSTEM, SYSTEM),
                    KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, queue.clone()),
                ]
            })
            .collect();
        let shared = Arc::new(Shared {
            attributes,
            snapshots: Mutex::new(Arc::new(Vec::new())),
            stopped: AtomicBool::new(false),
            polls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_duration: Mutex::new(None),
        });
        let gauges = Gauges::register(&meter, &shared);
        let errors = meter
            .u64_counter(semconv::METRIC_QUEUE_POLL_ERRORS)
            .with_unit("{error}")
            .with_description("Polls of the backend's queue statistics that failed.")
            .build();
        // Zero points, so that every queue has an error series from the start.
        for attrs in &shared.attributes {
            errors.add(0, attrs);
        }
        let poller = Poller {
            conn: self.conn,
            queues: self.queues,
            workers: Vec::new(),
            worker_timeout: self.worker_timeout,
            poll_timeout: self.poll_timeout.min(self.interval),
            shared: Arc::clone(&shared),
            errors,
        };
        let task = runtime.spawn(poller.run(self.interval));
        Ok(QueueStatsHandle {
            shared,
            task,
            _gauges: gauges,
        })
    }
}

/// The instrumentation scope of the gauges: jobsight's, like the layer's.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(semconv::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(semconv::SCHEMA_URL)
        .build()
}

/// The running poller. Dropping it (or [`stop`](Self::stop)) ends the
/// polling task; the gauges then report nothing.
#[derive(Debug)]
#[must_use = "dropping the handle stops the poller"]
pub struct QueueStatsHandle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    _gauges: Gauges,
}

impl QueueStatsHandle {
    /// The values of the last successful poll, one per queue in the order
    /// given; empty before the first one.
    pub fn snapshot(&self) -> Vec<QueueSnapshot> {
        self.shared.snapshots().to_vec()
    }

    /// Successful polls so far.
    pub fn polls(&self) -> u64 {
        self.shared.polls.load(Ordering::Relaxed)
    }

    /// Failed polls so far (each failed poll counts once here, and once per
    /// queue in `jobsight.queue_poll.errors`).
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// The error of the last failed poll, if any poll failed.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// How long the last successful poll took, round trip included.
    pub fn last_poll_duration(&self) -> Option<Duration> {
        *lock(&self.shared.last_duration)
    }

    /// Stops polling; the gauges report nothing from now on.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for QueueStatsHandle {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

/// What the polling task and the gauge callbacks share.
#[derive(Debug)]
struct Shared {
    /// Per queue, in the order of `snapshots`.
    attributes: Vec<Vec<KeyValue>>,
    /// Replaced whole after each successful poll; callbacks clone the `Arc`.
    snapshots: Mutex<Arc<Vec<QueueSnapshot>>>,
    stopped: AtomicBool,
    polls: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_duration: Mutex<Option<Duration>>,
}

impl Shared {
    fn snapshots(&self) -> Arc<Vec<QueueSnapshot>> {
        lock(&self.snapshots).clone()
    }

    /// Calls `observe` with each queue's snapshot and attributes, unless
    /// stopped. Holds no lock while observing.
    fn each(&self, mut observe: impl FnMut(&QueueSnapshot, &[KeyValue])) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let snapshots = self.snapshots();
        for (snapshot, attrs) in snapshots.iter().zip(&self.attributes) {
            observe(snapshot, attrs);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The registered gauges, kept with the handle.
#[derive(Debug)]
struct Gauges {
    _counts: Vec<ObservableGauge<u64>>,
    _oldest_age: ObservableGauge<f64>,
}

impl Gauges {
    fn register(meter: &Meter, shared: &Arc<Shared>) -> Self {
        type Pick = fn(&QueueSnapshot) -> u64;
        let counts: [(&'static str, &'static str, Pick); 5] = [
            (
                semconv::METRIC_QUEUE_DEPTH,
                "Jobs due and waiting to be taken by a worker.",
                |s| s.depth,
            ),
            (
                semconv::METRIC_QUEUE_SCHEDULED,
                "Jobs due later: scheduled, or failed and waiting for their retry.",
                |s| s.scheduled,
            ),
            (
                semconv::METRIC_QUEUE_RUNNING,
                "Jobs held by live workers and not yet acknowledged.",
                |s| s.running,
            ),
            (
                semconv::METRIC_QUEUE_DONE,
                "Jobs in the backend's done set.",
                |s| s.done,
            ),
            (
                semconv::METRIC_QUEUE_DEAD,
                "Jobs the backend gave up on.",
                |s| s.dead,
            ),
        ];
        let counts = counts
            .into_iter()
            .map(|(name, description, pick)| {
                let shared = Arc::clone(shared);
                meter
                    .u64_observable_gauge(name)
                    .with_unit("{job}")
                    .with_description(description)
                    .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
                        shared.each(|snapshot, attrs| observer.observe(pick(snapshot), attrs));
                    })
                    .build()
            })
            .collect();
        let oldest_age = {
            let shared = Arc::clone(shared);
            meter
                .f64_observable_gauge(semconv::METRIC_QUEUE_OLDEST_AGE)
                .with_unit("s")
                .with_description(
                    "Seconds the oldest due job has waited (queue latency); 0 when none waits.",
                )
                .with_callback(move |observer: &dyn AsyncInstrument<f64>| {
                    shared.each(|snapshot, attrs| observer.observe(snapshot.oldest_age, attrs));
                })
                .build()
        };
        Self {
            _counts: counts,
            _oldest_age: oldest_age,
        }
    }
}

/// The polling task's state.
struct Poller<C> {
    conn: C,
    queues: Vec<Arc<str>>,
    /// Live workers per queue, from the previous poll.
    workers: Vec<Vec<String>>,
    worker_timeout: Duration,
    poll_timeout: Duration,
    shared: Arc<Shared>,
    errors: Counter<u64>,
}

/// Why a poll failed; the variant is the `error.type`.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply: {0}")]
    Reply(String),
}

impl PollError {
    fn error_type(&self) -> &'static str {
        match self {
            PollError::Timeout(_) => "timeout",
            PollError::Redis(e)
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
            {
                "connection"
            }
            PollError::Redis(_) | PollError::Reply(_) => "response",
        }
    }
}

impl<C: ConnectionLike + Send + 'static> Poller<C> {
    async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let result = match tokio::time::timeout(self.poll_timeout, self.poll()).await {
                Ok(result) => result,
                Err(_) => Err(PollError::Timeout(self.poll_timeout)),
            };
            match result {
                Ok(snapshots) => {
                    *lock(&self.shared.snapshots) = Arc::new(snapshots);
                    *lock(&self.shared.last_duration) = Some(started.elapsed());
                    self.shared.polls.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    let error_type = KeyValue::new(semconv::ERROR_TYPE, error.error_type());
                    for attrs in &self.shared.attributes {
                        let mut attrs = attrs.clone();
                        attrs.push(error_type.clone());
                        self.errors.add(1, &attrs);
                    }
                    *lock(&self.shared.last_error) = Some(error.to_string());
                }
            }
        }
    }

    /// One pipelined round trip for every queue.
    async fn poll(&mut self) -> Result<Vec<QueueSnapshot>, PollError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now_s = now.as_secs();
        let live_since = now.saturating_sub(self.worker_timeout).as_secs();
        self.workers.resize(self.queues.len(), Vec::new());
        let mut pipe = redis::pipe();
        for (queue, workers) in self.queues.iter().zip(&self.workers) {
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
        let replies: Vec<Value> = pipe.query_async(&mut self.conn).await?;
        let mut replies = replies.into_iter();
        let mut next = |what: &str| {
            replies
                .next()
                .ok_or_else(|| PollError::Reply(format!("missing reply for {what}")))
        };
        let now_f = now.as_secs_f64();
        let mut snapshots = Vec::with_capacity(self.queues.len());
        for (queue, workers) in self.queues.iter().zip(self.workers.iter_mut()) {
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
    redis::from_redis_value(value).map_err(|e| PollError::Reply(e.to_string()))
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
        assert_eq!(PollError::Reply("x".into()).error_type(), "response");
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(PollError::Redis(io).error_type(), "connection");
    }
}
