//! The watchdog: finds **missed** and **stuck** runs of monitored jobs, with
//! the shared state in Redis so that a fleet of workers reports each
//! incident once.
//!
//! # How it works
//! Every worker process has one [`Watchdog`]. Its [`Recorder`] is a
//! check-in sink (add it to the registry with `Checkins::sink`) that
//! writes this process's runs into Redis; its periodic check
//! ([`Watchdog::spawn`], or [`Watchdog::check`] by hand) reads every
//! monitor's state and judges it under the policy in force now:
//!
//! - **missed**, interval policy: no `ok` within interval + grace after the
//!   last `ok` (or after the fleet started watching, for a job that never
//!   ran), and no run in progress that started since and is within its
//!   maximum runtime. One incident per silence: the incident is keyed by
//!   the last success, so a job that stays down is reported once, not once
//!   per interval.
//! - **missed**, cron policy: the last scheduled time whose grace has passed
//!   has no `ok` at or after it (and no run in progress that started for
//!   it). One incident per scheduled time. Scheduled times before the fleet
//!   started watching are not judged.
//! - **stuck**: a run whose `in_progress` is older than the maximum runtime
//!   and that has not ended: a job that hangs, or one whose worker died
//!   mid-run (its run stays in Redis and the other workers find it).
//!
//! Each incident has a key every watchdog derives alike; the first to
//! `SET key NX` reports it, the others see it taken. An incident is reported
//! as a `job.checkin.missed` / `job.checkin.stuck` counter increment and a
//! zero-length span of that name (both with `job.name` = the monitor), and
//! to the callbacks given with [`WatchdogBuilder::on_incident`], and to the
//! lifecycle observers of a [`JobMonitor`] given with
//! [`WatchdogBuilder::observers`] (as `Missed` and `Stuck` events).
//!
//! # Time
//! "Now" is Redis's clock ([`Clock::Redis`]), and a run's times are Redis's
//! clock minus the event's age on the worker's monotonic clock: the workers'
//! wall clocks never enter, so clock skew between workers does not matter.
//!
//! # Redis going away
//! A check that cannot reach Redis pauses the watchdog: it says so once on
//! stderr, counts the error ([`WatchdogStats::errors`],
//! `job.checkin.watchdog.errors`) and tries again at the next tick. When
//! Redis answers again it says so once, and judges only deadlines after
//! that moment: an interval job gets a full interval + grace from the
//! return, a scheduled time that fell while Redis was away is not judged
//! (its `ok` may be among the events the recorders could not write). While
//! this process's recorder still has events to write, the check waits.
//! A Redis that restarts empty forgets runs in progress (no stuck report for
//! them) and the last successes (watching starts again).
//!
//! # Limits
//! - One Redis (a primary, with replicas if you like), not Redis Cluster:
//!   the recorder writes several monitors' keys in one `MULTI`.
//! - If more check-ins pile up while Redis is away than the recorder's
//!   queue holds ([`WatchdogBuilder::queue_capacity`]), the newest are
//!   dropped and counted ([`RecorderStats::dropped`]): a dropped
//!   `in_progress` hides that run from stuck detection, a dropped end makes
//!   its run look stuck once its maximum runtime has passed.
//! - Only the 1000 oldest runs in progress of a monitor are judged per check.
//!
//! # Keys
//! `{prefix}:{monitor}:running` (sorted set: run id → start ms),
//! `…:last_ok` (sorted set, one member: last success ms), `…:since` (ms),
//! `…:incident:{key}` (expires after [`WatchdogBuilder::incident_ttl`]).
//! Entries of `running` older than [`WatchdogBuilder::retention`] are
//! removed (after they were reported stuck).

mod judge;
mod link;
mod recorder;

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jobsight_core::checkin::{Check, Checkins};
use jobsight_core::observer::EventKind;
use jobsight_core::semconv;
use jobsight_core::{JobMeta, JobMonitor};
use opentelemetry::metrics::{Counter, MeterProvider};
use opentelemetry::trace::{Span, SpanKind, Tracer};
use opentelemetry::{InstrumentationScope, KeyValue};
use redis::aio::MultiplexedConnection;

use crate::error::Error;
use judge::{MonitorState, Verdict, judge, to_time};
use link::Link;
pub use link::{Clock, ManualClock};
pub use recorder::{Recorder, RecorderStats};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "jobsight:checkin";

/// Counter (`{error}`): checks and writes of the watchdog that failed.
pub const METRIC_WATCHDOG_ERRORS: &str = "job.checkin.watchdog.errors";

/// An incident found by the watchdog.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Incident {
    /// The monitor's name.
    pub monitor: Arc<str>,
    /// What happened.
    pub kind: IncidentKind,
    /// When it was found (the watchdog's clock).
    pub detected_at: SystemTime,
}

/// What kind of incident.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncidentKind {
    /// A run was expected by `expected_at` (plus grace) and no success came.
    Missed {
        /// When the run was due.
        expected_at: SystemTime,
        /// The last success known, if any.
        last_success: Option<SystemTime>,
    },
    /// A run is older than the maximum runtime and has not ended.
    Stuck {
        /// The run's id (as in its check-ins).
        run_id: String,
        /// When it started.
        started_at: SystemTime,
    },
}

impl IncidentKind {
    /// `missed` or `stuck`.
    pub fn as_str(&self) -> &'static str {
        match self {
            IncidentKind::Missed { .. } => "missed",
            IncidentKind::Stuck { .. } => "stuck",
        }
    }
}

/// Counters of a [`Watchdog`].
#[derive(Debug, Default)]
pub struct WatchdogStats {
    checks: AtomicU64,
    errors: AtomicU64,
    missed: AtomicU64,
    stuck: AtomicU64,
    outages: AtomicU64,
}

impl WatchdogStats {
    /// Checks completed.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
    /// Checks that failed (Redis away or refusing).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Missed runs this watchdog reported.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
    /// Stuck runs this watchdog reported.
    pub fn stuck(&self) -> u64 {
        self.stuck.load(Ordering::Relaxed)
    }
    /// Times the watchdog paused because Redis went away (each announced
    /// once on stderr, however many checks failed meanwhile).
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }
}

type IncidentHook = Arc<dyn Fn(&Incident) + Send + Sync>;

/// Builder of a [`Watchdog`].
#[must_use]
pub struct WatchdogBuilder {
    url: String,
    prefix: String,
    interval: Duration,
    timeout: Duration,
    clock: Clock,
    skew: Duration,
    capacity: usize,
    incident_ttl: Duration,
    retention: Duration,
    hooks: Vec<IncidentHook>,
    meter: Option<opentelemetry::metrics::Meter>,
    quiet: bool,
    observers: Option<JobMonitor>,
}

impl std::fmt::Debug for WatchdogBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchdogBuilder")
            .field("prefix", &self.prefix)
            .field("interval", &self.interval)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl WatchdogBuilder {
    /// Keys start with `prefix`. Defaults to [`DEFAULT_PREFIX`]. Every
    /// worker of a fleet must use the same.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time between checks ([`Watchdog::spawn`]). Defaults to 15 s.
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every;
        self
    }

    /// Connect and response timeout of each Redis call. Defaults to 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where "now" comes from. Defaults to [`Clock::Redis`].
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How much earlier than its scheduled time a run may have started and
    /// still count for it. Defaults to 1 s.
    pub fn skew_tolerance(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Events the recorder keeps while Redis is away; more are dropped and
    /// counted. Defaults to 4096.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long an incident key lives. Defaults to 7 days.
    pub fn incident_ttl(mut self, ttl: Duration) -> Self {
        self.incident_ttl = ttl;
        self
    }

    /// How long a run that never ended stays in Redis. Defaults to 7 days.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Calls `hook` for every incident this watchdog reports (once per
    /// incident across the fleet). Called on the watchdog's task: do not
    /// block in it.
    pub fn on_incident(mut self, hook: impl Fn(&Incident) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Tells the lifecycle observers of `monitor` about every incident this
    /// watchdog reports, as [`EventKind::Missed`] and [`EventKind::Stuck`]
    /// events (see [`Observers::checkin_incident`](jobsight_core::observer::Observers::checkin_incident)): the same observers
    /// that hear about the jobs' own lifecycle (Slack, webhooks).
    pub fn observers(mut self, monitor: JobMonitor) -> Self {
        self.observers = Some(monitor);
        self
    }

    /// Records the watchdog's counters with a meter from `provider` instead
    /// of the global one.
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Does not print the pause and resume notices on stderr.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Builds the watchdog and starts its recorder's writer on the current
    /// tokio runtime. Nothing connects yet: Redis may be away at start.
    pub fn build(self) -> Result<Watchdog, Error> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime("Watchdog"))?;
        let client = redis::Client::open(self.url.as_str())?;
        let link = Arc::new(Link::new(client, self.timeout, self.prefix, self.clock));
        let recorder = Recorder::spawn(link.clone(), self.capacity, &runtime);
        let meter = self
            .meter
            .unwrap_or_else(|| opentelemetry::global::meter_with_scope(scope()));
        let counter = |name: &'static str, unit: &'static str, what: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(what)
                .build()
        };
        Ok(Watchdog {
            inner: Arc::new(Inner {
                link,
                recorder,
                interval: self.interval,
                skew: judge::ms(self.skew),
                incident_ttl: self.incident_ttl,
                retention: judge::ms(self.retention),
                hooks: self.hooks,
                observers: self.observers,
                quiet: self.quiet,
                stats: WatchdogStats::default(),
                paused: Mutex::new(None),
                watch_from: AtomicI64::new(0),
                missed: counter(
                    semconv::METRIC_CHECKIN_MISSED,
                    "{run}",
                    "Runs the watchdog found missed.",
                ),
                stuck: counter(
                    semconv::METRIC_CHECKIN_STUCK,
                    "{run}",
                    "Runs the watchdog found stuck.",
                ),
                errors: counter(
                    METRIC_WATCHDOG_ERRORS,
                    "{error}",
                    "Watchdog checks that failed.",
                ),
            }),
        })
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(semconv::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(semconv::SCHEMA_URL)
        .build()
}

/// Finds missed and stuck runs; see the module docs. Clone it freely.
#[derive(Clone)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    recorder: Recorder,
    interval: Duration,
    skew: i64,
    incident_ttl: Duration,
    retention: i64,
    hooks: Vec<IncidentHook>,
    observers: Option<JobMonitor>,
    quiet: bool,
    stats: WatchdogStats,
    /// When the current outage started, if Redis is away.
    paused: Mutex<Option<Instant>>,
    /// Deadlines before this (ms) are not judged: set when Redis returns.
    watch_from: AtomicI64,
    missed: Counter<u64>,
    stuck: Counter<u64>,
    errors: Counter<u64>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("prefix", &self.inner.link.prefix)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// A builder for a watchdog on the Redis at `url`
    /// (`redis://127.0.0.1:6379/`).
    pub fn builder(url: impl Into<String>) -> WatchdogBuilder {
        WatchdogBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            clock: Clock::Redis,
            skew: Duration::from_secs(1),
            capacity: 4096,
            incident_ttl: Duration::from_secs(7 * 86_400),
            retention: Duration::from_secs(7 * 86_400),
            hooks: Vec::new(),
            meter: None,
            quiet: false,
            observers: None,
        }
    }

    /// The sink that records this process's runs: add it to the registry
    /// (`Checkins::sink(watchdog.recorder())`).
    pub fn recorder(&self) -> Recorder {
        self.inner.recorder.clone()
    }

    /// The watchdog's counters.
    pub fn stats(&self) -> &WatchdogStats {
        &self.inner.stats
    }

    /// Whether the watchdog is paused because Redis is away.
    pub fn is_paused(&self) -> bool {
        lock(&self.inner.paused).is_some()
    }

    /// Checks `checkins` every interval on the current tokio runtime until
    /// the returned handle is aborted or the runtime stops.
    pub fn spawn(&self, checkins: Checkins) -> Result<tokio::task::JoinHandle<()>, Error> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime("Watchdog"))?;
        let watchdog = self.clone();
        Ok(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(watchdog.inner.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // Errors are counted and announced inside.
                let _ = watchdog.check(&checkins).await;
            }
        }))
    }

    /// Runs one check of every monitor of `checkins` now and returns the
    /// incidents this watchdog reported (those another watchdog reported
    /// first are not returned). An error means Redis could not be used: the
    /// watchdog is then paused until a check succeeds.
    pub async fn check(&self, checkins: &Checkins) -> Result<Vec<Incident>, Error> {
        match self.try_check(checkins).await {
            Ok(incidents) => {
                self.inner.stats.checks.fetch_add(1, Ordering::Relaxed);
                Ok(incidents)
            }
            Err(error) => {
                self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.inner.errors.add(1, &[]);
                self.inner.link.reset().await;
                let mut paused = lock(&self.inner.paused);
                if paused.is_none() {
                    *paused = Some(Instant::now());
                    self.inner.stats.outages.fetch_add(1, Ordering::Relaxed);
                    if !self.inner.quiet {
                        eprintln!(
                            "jobsight watchdog: Redis is unavailable ({error}); check-in watchdog paused until it answers"
                        );
                    }
                }
                Err(error.into())
            }
        }
    }

    async fn try_check(&self, checkins: &Checkins) -> Result<Vec<Incident>, redis::RedisError> {
        let inner = &self.inner;
        let mut conn = inner.link.conn().await?;
        let now = inner.link.now(&mut conn).await?;
        let was_paused = lock(&inner.paused).take();
        if let Some(since) = was_paused {
            inner.watch_from.store(now, Ordering::SeqCst);
            if !inner.quiet {
                eprintln!(
                    "jobsight watchdog: Redis is back after {:.1?}; deadlines that fell while it was away are not judged",
                    since.elapsed()
                );
            }
        }
        // Let this process's own events that waited for Redis land first.
        if inner.recorder.stats.pending() > 0 {
            return Ok(Vec::new());
        }
        let watch_from = inner.watch_from.load(Ordering::SeqCst);
        let mut incidents = Vec::new();
        for check in checkins.checks() {
            // Every monitor's counters exist from the first check on (at
            // 0), so that a rate or `increase()` sees the first incident.
            let attrs = [KeyValue::new(semconv::JOB_NAME, check.monitor().to_owned())];
            inner.missed.add(0, &attrs);
            inner.stuck.add(0, &attrs);
            self.check_one(&mut conn, check, now, watch_from, &mut incidents)
                .await?;
        }
        Ok(incidents)
    }

    async fn check_one(
        &self,
        conn: &mut MultiplexedConnection,
        check: &Arc<Check>,
        now: i64,
        watch_from: i64,
        incidents: &mut Vec<Incident>,
    ) -> Result<(), redis::RedisError> {
        let inner = &self.inner;
        let link = &inner.link;
        let monitor = check.monitor();
        let policy = check.policy();
        let running_key = link.key(monitor, "running");
        let since_key = link.key(monitor, "since");
        let (last_ok, since, running): (Option<i64>, i64, Vec<(String, i64)>) = redis::pipe()
            .cmd("ZSCORE")
            .arg(link.key(monitor, "last_ok"))
            .arg("ok")
            .cmd("SET")
            .arg(&since_key)
            .arg(now)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&since_key)
            .cmd("ZRANGE")
            .arg(&running_key)
            .arg(0)
            .arg(999)
            .arg("WITHSCORES")
            .query_async(conn)
            .await?;
        let state = MonitorState {
            now,
            last_ok,
            since,
            running,
        };
        for verdict in judge(&policy, &state, watch_from, inner.skew) {
            let (key, kind) = match verdict {
                Verdict::Missed { key, expected_at } => (
                    key,
                    IncidentKind::Missed {
                        expected_at: to_time(expected_at),
                        last_success: last_ok.map(to_time),
                    },
                ),
                Verdict::Stuck {
                    key,
                    run_id,
                    started_at,
                } => (
                    key,
                    IncidentKind::Stuck {
                        run_id,
                        started_at: to_time(started_at),
                    },
                ),
            };
            let first: Option<String> = redis::cmd("SET")
                .arg(link.key(monitor, &format!("incident:{key}")))
                .arg(now)
                .arg("NX")
                .arg("PX")
                .arg(judge::ms(inner.incident_ttl).max(1))
                .query_async(conn)
                .await?;
            if first.is_some() {
                let incident = Incident {
                    monitor: Arc::from(monitor),
                    kind,
                    detected_at: to_time(now),
                };
                self.report(&incident);
                incidents.push(incident);
            }
        }
        // Runs that never ended, long reported: forget them.
        let cutoff = now
            - inner
                .retention
                .max(policy.runtime_limit().map_or(0, judge::ms));
        let _: () = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&running_key)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .query_async(conn)
            .await?;
        Ok(())
    }

    fn report(&self, incident: &Incident) {
        let inner = &self.inner;
        let attrs = [KeyValue::new(
            semconv::JOB_NAME,
            incident.monitor.to_string(),
        )];
        let name: &'static str = match &incident.kind {
            IncidentKind::Missed { .. } => {
                inner.stats.missed.fetch_add(1, Ordering::Relaxed);
                inner.missed.add(1, &attrs);
                semconv::METRIC_CHECKIN_MISSED
            }
            IncidentKind::Stuck { .. } => {
                inner.stats.stuck.fetch_add(1, Ordering::Relaxed);
                inner.stuck.add(1, &attrs);
                semconv::METRIC_CHECKIN_STUCK
            }
        };
        let tracer = opentelemetry::global::tracer_with_scope(scope());
        let mut span_attrs = attrs.to_vec();
        match &incident.kind {
            IncidentKind::Missed {
                expected_at,
                last_success,
            } => {
                span_attrs.push(KeyValue::new("job.checkin.expected_at", unix(*expected_at)));
                if let Some(at) = last_success {
                    span_attrs.push(KeyValue::new("job.checkin.last_success", unix(*at)));
                }
            }
            IncidentKind::Stuck { run_id, started_at } => {
                span_attrs.push(KeyValue::new(semconv::CHECKIN_RUN_ID, run_id.clone()));
                span_attrs.push(KeyValue::new("job.checkin.started_at", unix(*started_at)));
            }
        }
        let mut span = tracer
            .span_builder(Cow::Borrowed(name))
            .with_kind(SpanKind::Internal)
            .with_attributes(span_attrs)
            .start(&tracer);
        span.end();
        if let Some(monitor) = &inner.observers {
            let name: Arc<str> = incident.monitor.clone();
            let job = JobMeta::builder("checkin", name.clone())
                .name(name.to_string())
                .build();
            match &incident.kind {
                IncidentKind::Missed { .. } => {
                    monitor
                        .observers()
                        .checkin_incident(EventKind::Missed, &job, None, None);
                }
                IncidentKind::Stuck { run_id, started_at } => monitor.observers().checkin_incident(
                    EventKind::Stuck,
                    &job,
                    Some(run_id),
                    Some(*started_at),
                ),
            }
        }
        for hook in &inner.hooks {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(incident)));
        }
    }
}

fn unix(at: SystemTime) -> i64 {
    judge::from_time(at) / 1000
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
