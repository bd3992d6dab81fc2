//! The check-in configuration file format: [`CheckinConfig`] and its
//! [`PolicyEntry`]s, deserialized with serde from JSON (see
//! [`load_config`](crate::load_config)) or any other serde format, and
//! turned into [`CheckinPolicy`]s.

use std::time::Duration;

use jobsight_core::checkin::{CheckinPolicy, Schedule};
use serde::Deserialize;

use crate::Error;

/// What a duration in a check-in configuration may look like.
pub const DURATION_FORMS: &str =
    "expected a whole number of seconds or a string with a unit: `250ms`, `30s`, `5m`, `2h`, `1d`";

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
        f.write_str(&DURATION_FORMS["expected ".len()..])
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
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || Error::Duration(text.to_owned());
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
    pub fn into_policies(self) -> Result<Vec<CheckinPolicy>, Error> {
        self.policies
            .into_iter()
            .map(PolicyEntry::into_policy)
            .collect()
    }
}

impl PolicyEntry {
    /// This entry as a policy.
    pub fn into_policy(self) -> Result<CheckinPolicy, Error> {
        let invalid = |reason: &str| Error::InvalidPolicy(reason.to_owned());
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
                policy = policy.schedule(Schedule::cron(
                    &expression,
                    self.timezone.as_deref().unwrap_or("UTC"),
                )?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use jobsight_core::checkin::Target;

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
