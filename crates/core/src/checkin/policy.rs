//! [`CheckinPolicy`]: what is expected of one job (or queue).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[cfg(feature = "cron")]
use super::cron::CronSchedule;
#[cfg(feature = "cron")]
use super::error::CheckinError;

/// The grace margin when none is given: one minute.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// When runs are expected.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Schedule {
    /// A successful run at least every so often (a heartbeat).
    Interval(Duration),
    /// A run at each time of a cron expression in a time zone (feature
    /// `cron`).
    #[cfg(feature = "cron")]
    Cron(CronSchedule),
}

impl Schedule {
    /// A run expected at least every `interval`.
    pub fn every(interval: Duration) -> Self {
        Schedule::Interval(interval)
    }

    /// A run expected at each time of the five-field cron `expression` in
    /// the IANA time zone `zone` (see [`super::cron`] for the syntax and the
    /// daylight-saving rules).
    #[cfg(feature = "cron")]
    pub fn cron(expression: &str, zone: &str) -> Result<Self, CheckinError> {
        CronSchedule::parse(expression, zone).map(Schedule::Cron)
    }

    /// For a cron schedule, the last scheduled time at or before `at`;
    /// `None` for an interval.
    pub fn last_scheduled(&self, at: SystemTime) -> Option<SystemTime> {
        #[cfg(not(feature = "cron"))]
        let _ = at;
        match self {
            Schedule::Interval(_) => None,
            #[cfg(feature = "cron")]
            Schedule::Cron(cron) => cron.last_at_or_before(at),
        }
    }
}

/// Which jobs a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Jobs with this `job.name`.
    Job(Arc<str>),
    /// Every job of this queue that has no policy of its own by name.
    Queue(Arc<str>),
}

/// What is expected of the jobs of one name or queue: when they run (an
/// interval or a cron schedule), how late a run may be (`grace`), and how
/// long one may take (`max_runtime`).
///
/// ```
/// use std::time::Duration;
/// use jobsight_core::checkin::{CheckinPolicy, Schedule};
/// let policy = CheckinPolicy::job("SendDigest")
///     .schedule(Schedule::every(Duration::from_secs(600)))
///     .grace(Duration::from_secs(120))
///     .max_runtime(Duration::from_secs(300));
/// assert_eq!(policy.monitor(), "SendDigest");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct CheckinPolicy {
    target: Target,
    monitor: Arc<str>,
    schedule: Option<Schedule>,
    grace: Duration,
    max_runtime: Option<Duration>,
}

impl CheckinPolicy {
    /// A policy for the jobs named `name` (their `job.name`), with no
    /// schedule, [`DEFAULT_GRACE`] and no maximum runtime.
    pub fn job(name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        Self::new(Target::Job(name.clone()), name)
    }

    /// A policy for every job of `queue` that has no policy by name.
    pub fn queue(queue: impl Into<Arc<str>>) -> Self {
        let queue = queue.into();
        Self::new(Target::Queue(queue.clone()), queue)
    }

    fn new(target: Target, monitor: Arc<str>) -> Self {
        Self {
            target,
            monitor,
            schedule: None,
            grace: DEFAULT_GRACE,
            max_runtime: None,
        }
    }

    /// The monitor's name: the slug sent to ping services, the `job.name`
    /// of the check-in metrics and the key of the watchdog's state. Defaults
    /// to the job's name (or the queue's, for a queue policy).
    pub fn monitor_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.monitor = name.into();
        self
    }

    /// When runs are expected. Without one, only stuck runs are found.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// How late a run may be before it counts as missed. Defaults to
    /// [`DEFAULT_GRACE`] (one minute).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a run may take before it counts as stuck. Defaults to none
    /// (runs are never stuck).
    pub fn max_runtime(mut self, max: Duration) -> Self {
        self.max_runtime = Some(max);
        self
    }

    /// Which jobs the policy applies to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The monitor's name (see [`CheckinPolicy::monitor_name`]).
    pub fn monitor(&self) -> &str {
        &self.monitor
    }

    pub(crate) fn monitor_arc(&self) -> &Arc<str> {
        &self.monitor
    }

    /// The expected schedule, if any.
    pub fn expected(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The grace margin.
    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    /// The maximum runtime, if any.
    pub fn runtime_limit(&self) -> Option<Duration> {
        self.max_runtime
    }
}
