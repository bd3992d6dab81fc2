//! [`CheckinPolicy`]: what is expected of one job (or queue), and
//! [`CheckinConfig`], the same thing read from a configuration file.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::CheckinError;
#[cfg(feature = "cron")]
use super::cron::CronSchedule;

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

/// Check-in policies as read from a configuration file with serde; JSON
/// through `serde_json`, or any other serde format (TOML, YAML) the
/// application already uses:
///
/// ```json
/// { "policies": [
///     { "job": "NightlyReport", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
///       "grace": "10m", "max_runtime": "1h" },
///     { "queue": "emails", "interval": "5m", "grace": "1m", "monitor": "email-queue" }
/// ] }
/// ```
///
/// Durations are numbers of seconds or strings with a unit: `250ms`, `30s`,
/// `5m`, `2h`, `1d`. `timezone` defaults to `UTC`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinConfig {
    /// The policies, in the order given.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
}

/// One policy of a [`CheckinConfig`]: exactly one of `job` and `queue`, at
/// most one of `interval` and `cron`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// The job name the policy applies to.
    pub job: Option<String>,
    /// The queue the policy applies to.
    pub queue: Option<String>,
    /// The monitor's name; defaults to the job's or queue's name.
    pub monitor: Option<String>,
    /// A successful run expected at least this often.
    pub interval: Option<ConfigDuration>,
    /// A five-field cron expression (feature `cron`).
    pub cron: Option<String>,
    /// IANA time zone of `cron`; defaults to `UTC`.
    pub timezone: Option<String>,
    /// Grace margin; defaults to one minute.
    pub grace: Option<ConfigDuration>,
    /// Maximum runtime; defaults to none.
    pub max_runtime: Option<ConfigDuration>,
}

/// A duration in a configuration file: a number of seconds or a string with
/// a unit (`ms`, `s`, `m`, `h`, `d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Reads a number of seconds or a duration string; anything else is an
/// error saying which forms are accepted.
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = ConfigDuration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::DURATION_FORMS["expected ".len()..])
    }

    fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<ConfigDuration, E> {
        Ok(ConfigDuration(Duration::from_secs(seconds)))
    }

    /// Formats such as TOML give every integer as an `i64`.
    fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<ConfigDuration, E> {
        u64::try_from(seconds)
            .map(|s| ConfigDuration(Duration::from_secs(s)))
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(seconds), &self))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ConfigDuration, E> {
        parse_duration(text).map(ConfigDuration).map_err(E::custom)
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, CheckinError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || CheckinError::Duration(text.to_owned());
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(bad)
    };
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => Err(bad()),
    }
}

impl CheckinConfig {
    /// The policies, checked: every entry names a job or a queue, has at
    /// most one schedule, and its cron expression and time zone parse.
    pub fn into_policies(self) -> Result<Vec<CheckinPolicy>, CheckinError> {
        self.policies
            .into_iter()
            .map(PolicyEntry::into_policy)
            .collect()
    }
}

impl PolicyEntry {
    /// This entry as a policy.
    pub fn into_policy(self) -> Result<CheckinPolicy, CheckinError> {
        let invalid = |reason: &str| CheckinError::Config(reason.to_owned());
        let mut policy = match (self.job, self.queue) {
            (Some(job), None) => CheckinPolicy::job(job),
            (None, Some(queue)) => CheckinPolicy::queue(queue),
            _ => return Err(invalid("a policy needs exactly one of `job` and `queue`")),
        };
        if let Some(name) = self.monitor {
            policy = policy.monitor_name(name);
        }
        match (self.interval, self.cron) {
            (Some(_), Some(_)) => {
                return Err(invalid(&format!(
                    "policy `{}`: `interval` and `cron` exclude each other",
                    policy.monitor()
                )));
            }
            (Some(ConfigDuration(every)), None) => {
                if every.is_zero() {
                    return Err(invalid("`interval` must be more than zero"));
                }
                policy = policy.schedule(Schedule::every(every));
            }
            (None, Some(expression)) => {
                policy = policy.schedule(cron_schedule(&expression, self.timezone.as_deref())?)
            }
            (None, None) => {}
        }
        if let Some(ConfigDuration(grace)) = self.grace {
            policy = policy.grace(grace);
        }
        if let Some(ConfigDuration(max)) = self.max_runtime {
            policy = policy.max_runtime(max);
        }
        Ok(policy)
    }
}

#[cfg(feature = "cron")]
fn cron_schedule(expression: &str, zone: Option<&str>) -> Result<Schedule, CheckinError> {
    Schedule::cron(expression, zone.unwrap_or("UTC"))
}

#[cfg(not(feature = "cron"))]
fn cron_schedule(expression: &str, _zone: Option<&str>) -> Result<Schedule, CheckinError> {
    Err(CheckinError::Cron {
        expression: expression.to_owned(),
        reason: "cron schedules need jobsight-core's `cron` feature".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_durations_from_any_serde_format() {
        use serde::de::value::{Error, I64Deserializer, StrDeserializer, U64Deserializer};
        let seconds = ConfigDuration::deserialize(U64Deserializer::<Error>::new(90)).unwrap();
        assert_eq!(seconds.0, Duration::from_secs(90));
        let toml_int = ConfigDuration::deserialize(I64Deserializer::<Error>::new(5)).unwrap();
        assert_eq!(toml_int.0, Duration::from_secs(5));
        let text = ConfigDuration::deserialize(StrDeserializer::<Error>::new("2h")).unwrap();
        assert_eq!(text.0, Duration::from_secs(7200));
        let negative = ConfigDuration::deserialize(I64Deserializer::<Error>::new(-5));
        assert!(negative.unwrap_err().to_string().contains("`30s`"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "m", "5x", "-3s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_are_checked() {
        let entry = |job: Option<&str>, queue: Option<&str>| PolicyEntry {
            job: job.map(Into::into),
            queue: queue.map(Into::into),
            ..PolicyEntry::default()
        };
        assert!(entry(None, None).into_policy().is_err());
        assert!(entry(Some("a"), Some("b")).into_policy().is_err());
        let both = PolicyEntry {
            interval: Some(ConfigDuration(Duration::from_secs(1))),
            cron: Some("* * * * *".into()),
            ..entry(Some("a"), None)
        };
        assert!(both.into_policy().is_err());
        let p = PolicyEntry {
            interval: Some(ConfigDuration(Duration::from_secs(60))),
            grace: Some(ConfigDuration(Duration::from_secs(5))),
            monitor: Some("digest".into()),
            ..entry(None, Some("emails"))
        }
        .into_policy()
        .unwrap();
        assert_eq!(p.target(), &Target::Queue("emails".into()));
        assert_eq!(p.monitor(), "digest");
        assert_eq!(
            p.expected(),
            Some(&Schedule::every(Duration::from_secs(60)))
        );
        assert_eq!(p.grace_period(), Duration::from_secs(5));
    }
}
