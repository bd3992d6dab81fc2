//! The queue statistics poller every backend shares: settings, the polling
//! task, the observable gauges and the error counter. A backend only says
//! how to read its queues in one round trip ([`QueueStatsSource`]).
//!
//! # Gauges
//! Each with `messaging.system` = `apalis`, `messaging.destination.name` =
//! the queue (the same attributes `MonitorLayer`'s metrics carry, so
//! dashboards can put both side by side) and `job.backend` = the backend
//! (`redis`, `postgres`, …): `job.queue.depth`, `job.queue.oldest_age` (s),
//! `job.queue.scheduled`, `job.queue.running`, `job.queue.done`,
//! `job.queue.dead`. The callbacks only copy the values of the last
//! successful poll: they never touch the network (the SDK runs them on its
//! reader thread, with no timeout).
//!
//! # When the backend is down
//! A poll that fails or takes longer than its timeout is counted in
//! `jobsight.queue_poll.errors` (per queue, with `error.type` =
//! `timeout`, `connection` or `response`) and in
//! [`QueueStatsHandle::errors`]; the gauges **keep reporting the values of
//! the last successful poll** (they stop updating; they do not vanish, so
//! alerts do not resolve because the poller cannot see), and the poller
//! tries again at the next interval. Nothing panics. Before the first
//! successful poll the gauges report nothing. After
//! [`QueueStatsHandle::stop`] (or dropping the handle) they report nothing.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jobsight_core::semconv;
use opentelemetry::metrics::{AsyncInstrument, Counter, Meter, MeterProvider, ObservableGauge};
use opentelemetry::{InstrumentationScope, KeyValue, global};

use super::JOB_BACKEND;
use crate::errors::Error;
use crate::task_meta::SYSTEM;

/// The default poll interval of every backend's poller.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// The default time one poll may take.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// What one poll learned about one queue. The same six numbers on every
/// backend; the backend's module says how it counts each.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct QueueSnapshot {
    /// The queue.
    pub queue: Arc<str>,
    /// Jobs due and not yet taken by a worker.
    pub depth: u64,
    /// Seconds the oldest due job has waited; 0 when none waits.
    pub oldest_age: f64,
    /// Jobs due later (scheduled, or failed and waiting for their retry).
    pub scheduled: u64,
    /// Jobs held by live workers and not yet acknowledged.
    pub running: u64,
    /// Jobs the backend keeps as done.
    pub done: u64,
    /// Jobs the backend gave up on.
    pub dead: u64,
}

impl QueueSnapshot {
    /// A snapshot of `queue` with every count zero.
    pub fn empty(queue: Arc<str>) -> Self {
        Self {
            queue,
            depth: 0,
            oldest_age: 0.0,
            scheduled: 0,
            running: 0,
            done: 0,
            dead: 0,
        }
    }
}

/// Why a poll failed; the variant is the poll error's `error.type`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// The poll took longer than its timeout (`timeout`).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The backend could not be reached (`connection`).
    #[error("connection: {0}")]
    Connection(#[source] Box<dyn StdError + Send + Sync>),
    /// The backend answered with an error or an unexpected reply
    /// (`response`).
    #[error("unexpected reply: {0}")]
    Response(String),
}

impl PollError {
    /// The low-cardinality `error.type` of this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            PollError::Timeout(_) => "timeout",
            PollError::Connection(_) => "connection",
            PollError::Response(_) => "response",
        }
    }
}

/// How a backend reads the statistics of its queues: one round trip for
/// all of them per poll. Implemented once per backend module.
pub trait QueueStatsSource: Send + 'static {
    /// The `job.backend` value of the gauges (`redis`, `postgres`, …).
    fn backend(&self) -> &'static str;

    /// Reads `queues`, answering one snapshot per queue in the same order.
    /// Runs on the poller's task, never on a job's path, under the poll
    /// timeout.
    fn poll(
        &mut self,
        queues: &[Arc<str>],
    ) -> impl Future<Output = Result<Vec<QueueSnapshot>, PollError>> + Send;
}

/// The settings every backend's poller takes, with their defaults.
pub(crate) struct StatsSettings {
    pub(crate) queues: Vec<Arc<str>>,
    pub(crate) interval: Duration,
    pub(crate) poll_timeout: Duration,
    pub(crate) meter: Option<Meter>,
}

impl std::fmt::Debug for StatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSettings")
            .field("queues", &self.queues)
            .field("interval", &self.interval)
            .field("poll_timeout", &self.poll_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            interval: DEFAULT_POLL_INTERVAL,
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            meter: None,
        }
    }
}

impl StatsSettings {
    /// Adds a queue; a queue given twice is polled once.
    pub(crate) fn add_queue(&mut self, queue: &str) {
        if !self.queues.iter().any(|q| &**q == queue) {
            self.queues.push(Arc::from(queue));
        }
    }

    /// Values under 10 ms are raised to 10 ms.
    pub(crate) fn set_interval(&mut self, interval: Duration) {
        self.interval = interval.max(Duration::from_millis(10));
    }

    pub(crate) fn set_meter_provider(&mut self, provider: &dyn MeterProvider) {
        self.meter = Some(provider.meter_with_scope(scope()));
    }

    /// Registers the gauges and spawns the polling task on the current
    /// tokio runtime; the first poll runs at once.
    pub(crate) fn start<S: QueueStatsSource>(self, source: S) -> Result<QueueStatsHandle, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter_with_scope(scope()));
        let backend = source.backend();
        let attributes = self
            .queues
            .iter()
            .map(|queue| {
                vec![
                    KeyValue::new(semconv::MESSAGING_SYSTEM, SYSTEM),
                    KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, queue.clone()),
                    KeyValue::new(JOB_BACKEND, backend),
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
            source,
            queues: self.queues,
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
struct Poller<S> {
    source: S,
    queues: Vec<Arc<str>>,
    poll_timeout: Duration,
    shared: Arc<Shared>,
    errors: Counter<u64>,
}

impl<S: QueueStatsSource> Poller<S> {
    async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let result =
                match tokio::time::timeout(self.poll_timeout, self.source.poll(&self.queues)).await
                {
                    Ok(Ok(snapshots)) if snapshots.len() != self.queues.len() => {
                        Err(PollError::Response(format!(
                            "{} snapshots for {} queues",
                            snapshots.len(),
                            self.queues.len()
                        )))
                    }
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
}
