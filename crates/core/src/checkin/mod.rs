//! Check-ins: heartbeats and cron schedules for jobs.
//!
//! A job with a [`CheckinPolicy`] reports each run (each attempt) as
//! check-in events paired by a [`RunId`]: [`CheckinStatus::InProgress`] when
//! it starts, then [`CheckinStatus::Ok`] or [`CheckinStatus::Error`] when it
//! ends. The events go
//! - onto the job's process span, as `job.checkin` span events;
//! - into the `job.checkin.last_success` gauge (unix seconds of the last
//!   `ok`, per monitor), so "no success for X" is one alert rule;
//! - to every [`CheckinSink`] of the [`Checkins`] registry: HTTP pings to
//!   healthchecks.io, Cronitor or Sentry, and the Redis watchdog that finds
//!   missed and stuck runs across a fleet (both in `jobsight-checkin`).
//!
//! A job with no policy costs nothing: the runner looks its policy up once
//! per job kind ([`Checkins::find`]) and, finding none, does nothing more.
//!
//! # When events fire
//! - `in_progress`: when the transaction is given its check-in
//!   ([`crate::Transaction::checkin`]), right after the process span starts.
//! - `ok`: the attempt succeeded or its error was ignored by the classifier.
//! - `error`: the attempt failed (retried or final), panicked or was
//!   abandoned (dropped by a timeout or a shutdown). A retried attempt is an
//!   `error` of its own run, as Sentry's SDKs do; the retry is a new run.
//!
//! Exit statuses (healthchecks' `/{exit status}`, Cronitor's
//! `status_code`): `0` ok, `1` failed, `101` panicked (what Rust's runtime
//! exits with), `130` abandoned (as if interrupted).
//!
//! # Sinks never slow a job
//! [`CheckinSink::record`] is called on the job's path and must not block:
//! sinks queue the event and do their I/O elsewhere.

#[cfg(feature = "cron")]
pub mod cron;
mod error;
pub mod policy;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider, ObservableGauge};

use crate::outcome::Outcome;
use crate::semconv;

pub use error::CheckinError;
pub use policy::{CheckinPolicy, Schedule, Target};

/// The state a check-in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckinStatus {
    /// The run started.
    InProgress,
    /// The run ended well.
    Ok,
    /// The run failed, panicked or was abandoned.
    Error,
}

impl CheckinStatus {
    /// `in_progress`, `ok` or `error` (Sentry's words).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckinStatus::InProgress => "in_progress",
            CheckinStatus::Ok => "ok",
            CheckinStatus::Error => "error",
        }
    }

    /// The status and exit status that end a run with `outcome`.
    pub fn of_outcome(outcome: Outcome) -> (CheckinStatus, i32) {
        match outcome {
            Outcome::Succeeded | Outcome::Ignored => (CheckinStatus::Ok, 0),
            Outcome::Failed { .. } => (CheckinStatus::Error, 1),
            Outcome::Panicked => (CheckinStatus::Error, 101),
            Outcome::Abandoned => (CheckinStatus::Error, 130),
        }
    }
}

/// The id that pairs a run's check-ins: a random version-4 UUID (what
/// healthchecks.io's `rid`, Cronitor's `series` and Sentry's `check_in_id`
/// accept).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(u128);

impl RunId {
    /// A new random id: a per-process seed (std's random hasher keys, the
    /// clock and the process id, taken once) mixed with a counter through
    /// SplitMix64, so ids are distinct within a process and unpredictable
    /// across processes (unique, not cryptographic), at the cost of an
    /// atomic increment.
    pub fn new() -> Self {
        static SEED: OnceLock<(u64, u64)> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (a, b) = *SEED.get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let half = |salt: u64| {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u64(salt);
                h.write_u128(nanos);
                h.write_u32(std::process::id());
                h.finish()
            };
            (half(1), half(2))
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let raw = (u128::from(splitmix64(a ^ n)) << 64) | u128::from(splitmix64(b.wrapping_add(n)));
        // Version 4, variant 10.
        let raw = (raw & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
        RunId(raw)
    }

    /// The id as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

/// SplitMix64's output function: a bijection of `u64`, so distinct inputs
/// give distinct outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({self})")
    }
}

/// One check-in: a run of a monitored job started or ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckinEvent {
    /// The monitor's name ([`CheckinPolicy::monitor`]).
    pub monitor: Arc<str>,
    /// Pairs the `in_progress` of a run with its end.
    pub run_id: RunId,
    /// What is reported.
    pub status: CheckinStatus,
    /// Wall-clock time of the event on this machine.
    pub at: SystemTime,
    /// Monotonic time of the event, for sinks that send later and measure
    /// the event's age rather than trusting this machine's wall clock.
    pub instant: Instant,
    /// How long the run took (on `ok` and `error`).
    pub duration: Option<std::time::Duration>,
    /// The run's exit status (on `ok` and `error`; see the module docs).
    pub exit_status: Option<i32>,
    /// The policy in force when the event was made.
    pub policy: Arc<CheckinPolicy>,
    /// What to say about the run (on `ok` and `error`): the error's
    /// `error.type: message`, or a command's output. Ping services that
    /// take a body or a message carry it, bounded by their limits.
    pub message: Option<Arc<str>>,
}

impl CheckinEvent {
    /// An event of `policy`'s monitor for the run `run_id`, made now, with
    /// no duration, exit status or message. Runners get their events from
    /// [`Checkins::start_run`] and [`CheckinRun::finish`]; this is for a
    /// program that reports one run of its own (a command wrapper) and
    /// gives the events to a sink directly.
    pub fn new(policy: Arc<CheckinPolicy>, run_id: RunId, status: CheckinStatus) -> Self {
        Self {
            monitor: policy.monitor_arc().clone(),
            run_id,
            status,
            at: SystemTime::now(),
            instant: Instant::now(),
            duration: None,
            exit_status: None,
            policy,
            message: None,
        }
    }

    /// Sets how long the run took.
    #[must_use]
    pub fn with_duration(mut self, duration: std::time::Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Sets the run's exit status.
    #[must_use]
    pub fn with_exit_status(mut self, exit_status: i32) -> Self {
        self.exit_status = Some(exit_status);
        self
    }

    /// Sets the message (see [`CheckinEvent::message`]).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Arc<str>>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// Receives check-in events. Called on the job's path: must not block (queue
/// the event, do I/O elsewhere) and should not panic (a panic is caught and
/// the event is lost for this sink only).
pub trait CheckinSink: Send + Sync + 'static {
    /// Takes one event.
    fn record(&self, event: &CheckinEvent);

    /// Whether this sink can report the monitor of `policy` (a ping
    /// service's slug rules, for instance): `Err` says why not. Called by
    /// [`Checkins::validate`] for every policy and sink. Accepts every
    /// policy unless a sink says otherwise.
    fn check_policy(&self, policy: &CheckinPolicy) -> Result<(), String> {
        let _ = policy;
        Ok(())
    }
}

impl<F> CheckinSink for F
where
    F: Fn(&CheckinEvent) + Send + Sync + 'static,
{
    fn record(&self, event: &CheckinEvent) {
        self(event)
    }
}

/// One monitor: its policy (replaceable while running) and its last
/// success in this process.
pub struct Check {
    monitor: Arc<str>,
    policy: RwLock<Arc<CheckinPolicy>>,
    /// Unix seconds of the last `ok` seen in this process; 0 for none.
    last_success: AtomicI64,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("monitor", &self.monitor)
            .field("policy", &self.policy())
            .finish_non_exhaustive()
    }
}

impl Check {
    /// The monitor's name.
    pub fn monitor(&self) -> &str {
        &self.monitor
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<CheckinPolicy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Unix seconds of the last successful run seen by this process.
    pub fn last_success(&self) -> Option<i64> {
        match self.last_success.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }
}

/// The registry of check-in policies and sinks, shared by the runner (which
/// starts runs) and the watchdog (which reads the policies). Clone it
/// freely; clones share everything. Add every policy and sink before the
/// first job runs: the methods that add return a new registry when this one
/// is already shared.
///
/// Lookup order: a policy for the job's name, then one for its queue.
#[derive(Clone, Default)]
pub struct Checkins {
    inner: Arc<Registry>,
}

#[derive(Clone, Default)]
struct Registry {
    checks: Vec<Arc<Check>>,
    by_job: HashMap<Arc<str>, usize>,
    by_queue: HashMap<Arc<str>, usize>,
    sinks: Vec<Arc<dyn CheckinSink>>,
    meter: Option<Meter>,
    gauge: OnceLock<ObservableGauge<i64>>,
}

impl fmt::Debug for Checkins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkins")
            .field("checks", &self.inner.checks)
            .field("sinks", &self.inner.sinks.len())
            .finish_non_exhaustive()
    }
}

impl Checkins {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with `policies` (e.g. read from a file by
    /// `jobsight_checkin::load_config`).
    pub fn from_policies(policies: impl IntoIterator<Item = CheckinPolicy>) -> Self {
        policies.into_iter().fold(Self::new(), Self::policy)
    }

    /// Adds `policy`. A policy whose target is already known replaces the
    /// old one; policies with the same monitor name share one monitor.
    #[must_use]
    pub fn policy(mut self, policy: CheckinPolicy) -> Self {
        let registry = Arc::make_mut(&mut self.inner);
        let index = match registry
            .checks
            .iter()
            .position(|c| c.monitor == *policy.monitor_arc())
        {
            Some(i) => {
                registry.checks[i] = Arc::new(Check {
                    monitor: policy.monitor_arc().clone(),
                    policy: RwLock::new(Arc::new(policy.clone())),
                    last_success: AtomicI64::new(0),
                });
                i
            }
            None => {
                registry.checks.push(Arc::new(Check {
                    monitor: policy.monitor_arc().clone(),
                    policy: RwLock::new(Arc::new(policy.clone())),
                    last_success: AtomicI64::new(0),
                }));
                registry.checks.len() - 1
            }
        };
        match policy.target() {
            Target::Job(name) => registry.by_job.insert(name.clone(), index),
            Target::Queue(queue) => registry.by_queue.insert(queue.clone(), index),
        };
        self
    }

    /// Checks every policy against every sink
    /// ([`CheckinSink::check_policy`]): the first policy a sink cannot
    /// report is an error naming it. Call it once the registry is built,
    /// before the first job runs (the apalis layer and `jobsight-run` do).
    pub fn validate(&self) -> Result<(), CheckinError> {
        for check in &self.inner.checks {
            let policy = check.policy();
            for sink in &self.inner.sinks {
                sink.check_policy(&policy)
                    .map_err(|reason| CheckinError::Refused {
                        monitor: policy.monitor().to_owned(),
                        reason,
                    })?;
            }
        }
        Ok(())
    }

    /// Adds a sink that receives every check-in event.
    #[must_use]
    pub fn sink(mut self, sink: impl CheckinSink) -> Self {
        Arc::make_mut(&mut self.inner).sinks.push(Arc::new(sink));
        self
    }

    /// Records the `job.checkin.last_success` gauge with a meter from
    /// `provider`. Defaults to the meter of the monitor whose job starts
    /// the first run (the provider given to that monitor, else the global
    /// one); a registry used without a monitor (the watchdog's own runs)
    /// uses the global provider. Set it here only for a registry whose gauge
    /// goes elsewhere than its jobs' metrics.
    #[must_use]
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        Arc::make_mut(&mut self.inner).meter =
            Some(provider.meter_with_scope(crate::instruments::scope()));
        self
    }

    /// The monitor for a job named `name` on `queue`, if a policy covers it.
    /// Runners call this once per job kind and keep the answer.
    pub fn find(&self, queue: &str, name: &str) -> Option<Arc<Check>> {
        let i = self
            .inner
            .by_job
            .get(name)
            .or_else(|| self.inner.by_queue.get(queue))?;
        self.inner.checks.get(*i).cloned()
    }

    /// Every monitor.
    pub fn checks(&self) -> &[Arc<Check>] {
        &self.inner.checks
    }

    /// Whether the registry has no policy.
    pub fn is_empty(&self) -> bool {
        self.inner.checks.is_empty()
    }

    /// Replaces, while running, the policy of the monitor with the same
    /// name (schedule, grace, maximum runtime; which jobs it covers stays as
    /// it was). Returns `false` if there is no such monitor. Runs that have
    /// started keep the policy they started with in their events; the
    /// watchdog uses the new one from its next check.
    pub fn update_policy(&self, policy: CheckinPolicy) -> bool {
        let Some(check) = self
            .inner
            .checks
            .iter()
            .find(|c| c.monitor == *policy.monitor_arc())
        else {
            return false;
        };
        match check.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
        true
    }

    /// Starts a run of `check`: sends `in_progress` to the sinks. Finish it
    /// with [`CheckinRun::finish`]; a run dropped unfinished ends as `error`
    /// with exit status 130.
    pub fn start_run(&self, check: &Arc<Check>) -> CheckinRun {
        self.start_run_metered(check, None)
    }

    /// [`start_run`](Self::start_run), with the meter the gauge falls back
    /// to when the registry has none of its own: a job's monitor's, so that
    /// the meter provider given to the monitor covers its check-ins too.
    pub(crate) fn start_run_metered(
        &self,
        check: &Arc<Check>,
        meter: Option<&Meter>,
    ) -> CheckinRun {
        self.ensure_gauge(meter);
        let run = CheckinRun {
            checkins: self.clone(),
            check: check.clone(),
            policy: check.policy(),
            run_id: RunId::new(),
            started: Instant::now(),
            finished: false,
        };
        self.emit(run.event(CheckinStatus::InProgress, None, None));
        run
    }

    fn emit(&self, event: CheckinEvent) {
        for sink in &self.inner.sinks {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.record(&event)));
        }
    }

    /// Registers the last-success gauge once. Its callback reads atomics
    /// only: it never blocks the metric reader.
    fn ensure_gauge(&self, fallback: Option<&Meter>) {
        self.inner.gauge.get_or_init(|| {
            let meter = self
                .inner
                .meter
                .clone()
                .or_else(|| fallback.cloned())
                .unwrap_or_else(|| {
                    opentelemetry::global::meter_with_scope(crate::instruments::scope())
                });
            let checks: Vec<(Arc<Check>, [KeyValue; 1])> = self
                .inner
                .checks
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        [KeyValue::new(semconv::JOB_NAME, c.monitor.to_string())],
                    )
                })
                .collect();
            meter
                .i64_observable_gauge(semconv::METRIC_CHECKIN_LAST_SUCCESS)
                .with_unit("s")
                .with_description(
                    "Unix time of the last successful run of a monitored job, per monitor.",
                )
                .with_callback(move |observer| {
                    for (check, attrs) in &checks {
                        let at = check.last_success.load(Ordering::Relaxed);
                        if at > 0 {
                            observer.observe(at, attrs);
                        }
                    }
                })
                .build()
        });
    }
}

/// A started run of a monitored job.
#[must_use = "a run dropped unfinished is reported as an error"]
pub struct CheckinRun {
    checkins: Checkins,
    check: Arc<Check>,
    policy: Arc<CheckinPolicy>,
    run_id: RunId,
    started: Instant,
    finished: bool,
}

impl fmt::Debug for CheckinRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckinRun")
            .field("monitor", &self.check.monitor)
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl CheckinRun {
    /// The id pairing this run's events.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The monitor's name.
    pub fn monitor(&self) -> &str {
        &self.check.monitor
    }

    /// Ends the run with `status` and `exit_status`: sends the event to
    /// the sinks and, on `ok`, moves the last-success gauge.
    pub fn finish(mut self, status: CheckinStatus, exit_status: i32) {
        self.end(status, exit_status, None);
    }

    /// Like [`CheckinRun::finish`], with a message for the sinks that carry
    /// one (see [`CheckinEvent::message`]).
    pub fn finish_with_message(
        mut self,
        status: CheckinStatus,
        exit_status: i32,
        message: impl Into<Arc<str>>,
    ) {
        self.end(status, exit_status, Some(message.into()));
    }

    /// The attributes of the `job.checkin` span event for `status`.
    pub fn span_event_attributes(&self, status: CheckinStatus) -> Vec<KeyValue> {
        vec![
            KeyValue::new(semconv::CHECKIN_STATUS, status.as_str()),
            KeyValue::new(semconv::CHECKIN_RUN_ID, self.run_id.to_string()),
            KeyValue::new(semconv::CHECKIN_MONITOR, self.check.monitor.to_string()),
        ]
    }

    fn end(&mut self, status: CheckinStatus, exit_status: i32, message: Option<Arc<str>>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut event = self.event(status, Some(self.started.elapsed()), Some(exit_status));
        event.message = message;
        if status == CheckinStatus::Ok {
            let secs = event
                .at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.check.last_success.fetch_max(secs, Ordering::Relaxed);
        }
        self.checkins.emit(event);
    }

    fn event(
        &self,
        status: CheckinStatus,
        duration: Option<std::time::Duration>,
        exit_status: Option<i32>,
    ) -> CheckinEvent {
        CheckinEvent {
            monitor: self.check.monitor.clone(),
            run_id: self.run_id,
            status,
            at: SystemTime::now(),
            instant: Instant::now(),
            duration,
            exit_status,
            policy: self.policy.clone(),
            message: None,
        }
    }
}

impl Drop for CheckinRun {
    fn drop(&mut self) {
        self.end(CheckinStatus::Error, 130, Some(Arc::from("abandoned")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[test]
    fn run_ids_are_uuid_v4_and_distinct() {
        let a = RunId::new();
        let b = RunId::new();
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }

    #[test]
    fn lookup_by_job_then_queue_and_events_pair() {
        let seen: Arc<Mutex<Vec<CheckinEvent>>> = Arc::default();
        let sink = seen.clone();
        let checkins = Checkins::new()
            .policy(CheckinPolicy::job("report").schedule(Schedule::every(Duration::from_secs(60))))
            .policy(CheckinPolicy::queue("emails").max_runtime(Duration::from_secs(5)))
            .sink(move |e: &CheckinEvent| sink.lock().unwrap().push(e.clone()));
        assert_eq!(checkins.find("any", "report").unwrap().monitor(), "report");
        assert_eq!(
            checkins.find("emails", "welcome").unwrap().monitor(),
            "emails"
        );
        assert!(checkins.find("other", "welcome").is_none());

        let check = checkins.find("any", "report").unwrap();
        let run = checkins.start_run(&check);
        let id = run.run_id();
        run.finish(CheckinStatus::Ok, 0);
        drop(checkins.start_run(&check));
        let seen = seen.lock().unwrap();
        let statuses: Vec<_> = seen.iter().map(|e| (e.status, e.exit_status)).collect();
        assert_eq!(
            statuses,
            [
                (CheckinStatus::InProgress, None),
                (CheckinStatus::Ok, Some(0)),
                (CheckinStatus::InProgress, None),
                (CheckinStatus::Error, Some(130)),
            ]
        );
        assert_eq!(seen[0].run_id, id);
        assert_eq!(seen[1].run_id, id);
        assert_ne!(seen[2].run_id, id);
        assert!(check.last_success().is_some());
    }

    #[test]
    fn policy_updates_apply_to_new_runs() {
        let checkins =
            Checkins::new().policy(CheckinPolicy::job("a").grace(Duration::from_secs(1)));
        assert!(checkins.update_policy(CheckinPolicy::job("a").grace(Duration::from_secs(9))));
        assert!(!checkins.update_policy(CheckinPolicy::job("b")));
        let check = checkins.find("q", "a").unwrap();
        assert_eq!(check.policy().grace_period(), Duration::from_secs(9));
    }
}
