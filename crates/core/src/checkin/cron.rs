//! Cron expressions evaluated in a time zone (feature `cron`).
//!
//! Five fields — minute, hour, day of month, month, day of week — with `*`,
//! lists (`1,15`), ranges (`1-5`), steps (`*/10`, `0-30/5`), month and day
//! names (`jan`, `mon`), `7` for Sunday, and the shorthands `@hourly`,
//! `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`).
//! When both day of month and day of week are restricted, a day matching
//! either one matches (as in Vixie cron).
//!
//! # Daylight saving time
//! Times are wall-clock times in the schedule's zone (IANA name, read from
//! the system's tz database by `jiff`):
//! - a time skipped when clocks go forward (02:30 on a spring-forward night
//!   in Europe/Berlin) fires once, at the same distance after the gap
//!   (03:30 local), so a daily job is never lost;
//! - a time that occurs twice when clocks go back fires once, at its first
//!   occurrence (the earlier instant).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::error::CheckinError;

/// How many days a search looks ahead or back before giving up (five years
/// covers `0 0 29 2 mon`-like expressions).
const SEARCH_DAYS: usize = 5 * 366 + 1;

/// A parsed cron expression in a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    zone_name: String,
    zone: TimeZone,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Both day fields are restricted: a day matching either one matches.
    day_or: bool,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.zone_name == other.zone_name
    }
}

impl CronSchedule {
    /// Parses `expression` for the IANA time zone `zone` (`"UTC"`,
    /// `"Europe/Berlin"`).
    pub fn parse(expression: &str, zone: &str) -> Result<Self, CheckinError> {
        let bad = |reason: String| CheckinError::Cron {
            expression: expression.to_owned(),
            reason,
        };
        let tz = TimeZone::get(zone).map_err(|e| CheckinError::TimeZone {
            zone: zone.to_owned(),
            reason: e.to_string(),
        })?;
        let trimmed = expression.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            other if other.starts_with('@') => {
                return Err(bad(format!("unknown shorthand {other}")));
            }
            _ => trimmed.to_owned(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(bad(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let minutes = field(fields[0], 0, 59, &[]).map_err(&bad)?;
        let hours = field(fields[1], 0, 23, &[]).map_err(&bad)?;
        let days_of_month = field(fields[2], 1, 31, &[]).map_err(&bad)?;
        let months = field(fields[3], 1, 12, &MONTHS).map_err(&bad)?;
        let mut days_of_week = field(fields[4], 0, 7, &DAYS).map_err(&bad)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7f;
        }
        let dom_star = fields[2].starts_with('*');
        let dow_star = fields[4].starts_with('*');
        Ok(Self {
            expression: trimmed.to_owned(),
            zone_name: zone.to_owned(),
            zone: tz,
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            months: months as u16,
            days_of_week: days_of_week as u8,
            day_or: !dom_star && !dow_star,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name as given.
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    /// The first scheduled time strictly after `after`.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let after = to_timestamp(after)?;
        let mut date = after.to_zoned(self.zone.clone()).date();
        for _ in 0..SEARCH_DAYS {
            if let Some(found) = self.times_on(date).filter(|t| *t > after).min() {
                return from_timestamp(found);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The last scheduled time at or before `at`.
    pub fn last_at_or_before(&self, at: SystemTime) -> Option<SystemTime> {
        let at = to_timestamp(at)?;
        let mut date = at.to_zoned(self.zone.clone()).date();
        for _ in 0..SEARCH_DAYS {
            if let Some(found) = self.times_on(date).filter(|t| *t <= at).max() {
                return from_timestamp(found);
            }
            date = date.yesterday().ok()?;
        }
        None
    }

    fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.day_or { dom || dow } else { dom && dow }
    }

    /// Every scheduled instant on the local date `date` (none if the day
    /// does not match). A wall time in a gap maps past the gap, a wall time
    /// in a fold to its first instant (`compatible` disambiguation).
    fn times_on(&self, date: Date) -> impl Iterator<Item = Timestamp> + '_ {
        let matches = self.day_matches(date);
        (0..24i8)
            .filter(move |h| matches && self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(move |m| self.minutes & (1u64 << m) != 0)
                    .filter_map(move |m| {
                        self.zone
                            .to_ambiguous_timestamp(date.at(h, m, 0, 0))
                            .compatible()
                            .ok()
                    })
            })
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses one field into a bit set of the values in `min..=max`. `names`
/// are the names of the values from `min` on (`jan` = 1, `sun` = 0).
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u32);
        }
        let v: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
        if v < min || v > max {
            return Err(format!("{v} is out of range {min}-{max}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step `{s}`"))?;
                if step == 0 {
                    return Err("a step of 0".to_owned());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            (a, b)
        } else if range.is_empty() {
            return Err("an empty field".to_owned());
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn to_timestamp(at: SystemTime) -> Option<Timestamp> {
    let ms = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_millis()).ok()?,
    };
    Timestamp::from_millisecond(ms).ok()
}

fn from_timestamp(at: Timestamp) -> Option<SystemTime> {
    let ms = at.as_millisecond();
    if ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        let ts: Timestamp = s.parse().unwrap();
        from_timestamp(ts).unwrap()
    }
    fn show(t: SystemTime) -> String {
        to_timestamp(t).unwrap().to_string()
    }

    #[test]
    fn fields_and_shorthands() {
        let c = CronSchedule::parse("*/15 9-17 * * mon-fri", "UTC").unwrap();
        assert_eq!(
            show(c.next_after(at("2026-11-21T12:00:00Z")).unwrap()), // a Saturday
            "2026-11-23T09:00:00Z"
        );
        assert_eq!(
            show(c.next_after(at("2026-11-23T09:00:00Z")).unwrap()),
            "2026-11-23T09:15:00Z"
        );
        let d = CronSchedule::parse("@daily", "UTC").unwrap();
        assert_eq!(
            show(d.last_at_or_before(at("2026-11-23T09:00:00Z")).unwrap()),
            "2026-11-23T00:00:00Z"
        );
        let sunday = CronSchedule::parse("0 0 * * 7", "UTC").unwrap();
        assert_eq!(
            show(sunday.next_after(at("2026-11-23T00:00:00Z")).unwrap()),
            "2026-11-29T00:00:00Z"
        );
        for bad in [
            "* * * *",
            "61 * * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@often",
        ] {
            assert!(CronSchedule::parse(bad, "UTC").is_err(), "{bad}");
        }
        assert!(CronSchedule::parse("* * * * *", "Mars/Olympus").is_err());
    }

    #[test]
    fn spring_forward_gap_fires_after_the_gap() {
        // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST.
        let c = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let next = c.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        // 02:30 does not exist; fires at 03:30 CEST = 01:30 UTC.
        assert_eq!(show(next), "2026-03-29T01:30:00Z");
        // and the day after at 02:30 CEST = 00:30 UTC.
        assert_eq!(show(c.next_after(next).unwrap()), "2026-03-30T00:30:00Z");
    }

    #[test]
    fn fall_back_fold_fires_once() {
        // Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET; 02:30 happens twice.
        let c = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let first = c.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(show(first), "2026-10-25T00:30:00Z"); // 02:30 CEST
        assert_eq!(show(c.next_after(first).unwrap()), "2026-10-26T01:30:00Z");
        assert_eq!(
            show(c.last_at_or_before(at("2026-10-25T03:00:00Z")).unwrap()),
            "2026-10-25T00:30:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        let c = CronSchedule::parse("0 0 13 * fri", "UTC").unwrap();
        // 2026-11-20 is a Friday, before the 13th of December.
        assert_eq!(
            show(c.next_after(at("2026-11-14T00:00:00Z")).unwrap()),
            "2026-11-20T00:00:00Z"
        );
    }
}
