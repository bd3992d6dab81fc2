//! The watchdog's verdicts, as a pure function of a monitor's state: what is
//! missed and what is stuck at a given time. All times are milliseconds on
//! one clock (Redis's by default), never a worker's wall clock.

use std::time::{Duration, UNIX_EPOCH};

use jobsight_core::checkin::{CheckinPolicy, Schedule};

/// What Redis holds about one monitor, read at `now`.
#[derive(Clone, Debug, Default)]
pub(crate) struct MonitorState {
    pub(crate) now: i64,
    /// The last `ok` (ms), if any.
    pub(crate) last_ok: Option<i64>,
    /// When the fleet started watching this monitor (ms).
    pub(crate) since: i64,
    /// Runs with an `in_progress` and no end yet: (run id, started ms).
    pub(crate) running: Vec<(String, i64)>,
}

/// An incident the state shows, keyed so that every watchdog of the fleet
/// derives the same key for the same incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Missed {
        key: String,
        expected_at: i64,
    },
    Stuck {
        key: String,
        run_id: String,
        started_at: i64,
    },
}

/// What `state` shows under `policy`.
///
/// - `watch_from`: deadlines before it are not judged (set when Redis comes
///   back after an outage: what happened meanwhile was not seen).
/// - `skew`: how much earlier than expected a run may have started and
///   still count (timestamps are the event's age subtracted from Redis's
///   clock, which is exact to a few milliseconds plus network delay).
pub(crate) fn judge(
    policy: &CheckinPolicy,
    state: &MonitorState,
    watch_from: i64,
    skew: i64,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let now = state.now;
    let grace = ms(policy.grace_period());
    let max_runtime = policy.runtime_limit().map(ms);

    // A running run "covers" an expected run if it started after `from`
    // and is not past the time it may take.
    let covered = |from: i64, cover: i64| {
        state
            .running
            .iter()
            .any(|(_, started)| *started >= from - skew && now < started + cover + grace)
    };

    match policy.expected() {
        Some(Schedule::Interval(every)) => {
            let every = ms(*every).max(1);
            let base = state.last_ok.unwrap_or(state.since).max(watch_from);
            let expected_at = base + every;
            if now >= expected_at + grace && !covered(base, max_runtime.unwrap_or(every)) {
                // One incident per silence: keyed by the last success (or
                // the start of watching), whatever the policy says.
                let key = match state.last_ok {
                    Some(ok) => format!("missed:ok:{ok}"),
                    None => format!("missed:since:{}", state.since),
                };
                verdicts.push(Verdict::Missed { key, expected_at });
            }
        }
        Some(schedule) => {
            if let Some(scheduled) = schedule.last_scheduled(to_time(now - grace)).map(from_time)
                && scheduled >= state.since.max(watch_from)
                && state.last_ok.is_none_or(|ok| ok < scheduled - skew)
            {
                let period = schedule_period(schedule, scheduled);
                if !covered(scheduled, max_runtime.unwrap_or(period)) {
                    verdicts.push(Verdict::Missed {
                        key: format!("missed:at:{scheduled}"),
                        expected_at: scheduled,
                    });
                }
            }
        }
        None => {}
    }

    if let Some(max) = max_runtime {
        for (run_id, started) in &state.running {
            if now - started > max {
                verdicts.push(Verdict::Stuck {
                    key: format!("stuck:{run_id}"),
                    run_id: run_id.clone(),
                    started_at: *started,
                });
            }
        }
    }
    verdicts
}

/// The time from `scheduled` to the next scheduled time (for how long a run
/// that started on time covers it when there is no maximum runtime).
fn schedule_period(schedule: &Schedule, scheduled: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    match schedule {
        Schedule::Interval(every) => ms(*every),
        Schedule::Cron(cron) => cron
            .next_after(to_time(scheduled))
            .map_or(DAY, |next| from_time(next) - scheduled),
        _ => DAY,
    }
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

pub(crate) fn to_time(ms: i64) -> std::time::SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

pub(crate) fn from_time(at: std::time::SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn every(minutes: u64) -> CheckinPolicy {
        CheckinPolicy::job("j")
            .schedule(Schedule::every(Duration::from_secs(minutes * 60)))
            .grace(Duration::from_secs(60))
            .max_runtime(Duration::from_secs(5 * 60))
    }

    fn state(now: i64, last_ok: Option<i64>, running: &[(&str, i64)]) -> MonitorState {
        MonitorState {
            now,
            last_ok,
            since: 0,
            running: running.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn interval_missed_after_interval_plus_grace_keyed_by_last_success() {
        let p = every(10);
        assert!(judge(&p, &state(10 * MIN + 59_999, Some(0), &[]), 0, 1000).is_empty());
        let v = judge(&p, &state(11 * MIN, Some(0), &[]), 0, 1000);
        assert_eq!(
            v,
            [Verdict::Missed {
                key: "missed:ok:0".into(),
                expected_at: 10 * MIN
            }]
        );
        // Hours later, still the same incident.
        let v = judge(&p, &state(300 * MIN, Some(0), &[]), 0, 1000);
        assert_eq!(
            v[0],
            Verdict::Missed {
                key: "missed:ok:0".into(),
                expected_at: 10 * MIN
            }
        );
        // A policy change (interval 20 min) keeps the key: reported once.
        let v = judge(&every(20), &state(300 * MIN, Some(0), &[]), 0, 1000);
        assert!(matches!(&v[0], Verdict::Missed { key, .. } if key == "missed:ok:0"));
    }

    #[test]
    fn a_run_in_progress_covers_until_its_max_runtime() {
        let p = every(10);
        assert!(judge(&p, &state(11 * MIN, Some(0), &[("r", 9 * MIN)]), 0, 1000).is_empty());
        // Past the max runtime (+grace): missed and stuck.
        let v = judge(&p, &state(16 * MIN, Some(0), &[("r", 9 * MIN)]), 0, 1000);
        assert!(v.iter().any(|v| matches!(v, Verdict::Missed { .. })));
        assert!(v.contains(&Verdict::Stuck {
            key: "stuck:r".into(),
            run_id: "r".into(),
            started_at: 9 * MIN
        }));
    }

    #[test]
    fn after_an_outage_the_job_gets_a_full_interval() {
        let p = every(10);
        // Redis came back at minute 30; the last ok we know is at 0.
        assert!(judge(&p, &state(35 * MIN, Some(0), &[]), 30 * MIN, 1000).is_empty());
        let v = judge(&p, &state(41 * MIN, Some(0), &[]), 30 * MIN, 1000);
        assert_eq!(
            v,
            [Verdict::Missed {
                key: "missed:ok:0".into(),
                expected_at: 40 * MIN
            }]
        );
    }

    #[test]
    fn never_ran_is_missed_from_when_watching_started() {
        let p = every(10);
        let mut s = state(11 * MIN, None, &[]);
        s.since = 0;
        assert_eq!(
            judge(&p, &s, 0, 1000),
            [Verdict::Missed {
                key: "missed:since:0".into(),
                expected_at: 10 * MIN
            }]
        );
    }

    #[test]
    fn cron_missed_per_scheduled_time_not_before_watching() {
        // Every hour at :00 UTC; grace 1 min.
        let p = CheckinPolicy::job("j")
            .schedule(Schedule::cron("0 * * * *", "UTC").unwrap())
            .grace(Duration::from_secs(60));
        let hour = 60 * MIN;
        let base = 1_800_000_000_000 / hour * hour; // a whole hour
        let mut s = state(base + hour + 2 * MIN, Some(base + 10_000), &[]);
        s.since = base - hour;
        let v = judge(&p, &s, 0, 1000);
        assert_eq!(
            v,
            [Verdict::Missed {
                key: format!("missed:at:{}", base + hour),
                expected_at: base + hour
            }]
        );
        // Within grace: nothing yet.
        s.now = base + hour + 30_000;
        assert!(judge(&p, &s, 0, 1000).is_empty());
        // Ok for that hour (slightly early by clock skew): nothing.
        s.now = base + hour + 2 * MIN;
        s.last_ok = Some(base + hour - 500);
        assert!(judge(&p, &s, 0, 1000).is_empty());
        // Watching started after the scheduled time: not judged.
        s.last_ok = None;
        s.since = base + hour + MIN;
        assert!(judge(&p, &s, 0, 1000).is_empty());
    }
}
