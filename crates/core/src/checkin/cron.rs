//! Cron expressions evaluated in a time zone (feature `cron`).
//!
//! Five fields — minute, hour, day of month, month, day of week — with `*`,
//! lists (`1,15`), ranges (`1-5`), steps (`*/10`, `0-30/5`), month and day
//! names (`jan`, `mon`), `7` for Sunday, and the shorthands `@hourly`,
//! `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`):
//! what crontab, Sentry Crons and healthchecks.io accept. Also, in a list
//! with the other forms:
//! - day of month: `L` (the last day), `L-3` (three days before it), `15W`
//!   (the weekday nearest the 15th, within the month), `LW` (the last
//!   weekday), `?` (same as `*`);
//! - day of week: `fri#2` or `5#2` (the second Friday of the month), `friL`
//!   or `5L` (the last Friday), `?` (same as `*`).
//!
//! When both day of month and day of week are restricted, a day matching
//! either one matches (as in Vixie cron and healthchecks.io).
//!
//! A sixth (seconds) field is refused with a clear error: check-ins are
//! checked at minute granularity, and neither Sentry Crons nor
//! healthchecks.io accept seconds. `@reboot` is refused too (it is not a
//! schedule).
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
    /// `L`, `L-n`, `nW`, `LW` of the day-of-month field.
    dom_rules: Vec<DomRule>,
    /// `x#n`, `xL` of the day-of-week field.
    dow_rules: Vec<DowRule>,
    /// Both day fields are restricted: a day matching either one matches.
    day_or: bool,
}

/// A day-of-month form that depends on the month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DomRule {
    /// `L` (0) or `L-n`: n days before the month's last day.
    Last(u8),
    /// `nW`: the weekday (Monday to Friday) nearest day n, in the month.
    NearestWeekday(u8),
    /// `LW`: the month's last weekday.
    LastWeekday,
}

/// A day-of-week form that depends on the month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DowRule {
    /// `x#n`: the n-th (1 to 5) day x (0 = Sunday) of the month.
    Nth(u8, u8),
    /// `xL`: the last day x of the month.
    Last(u8),
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
            "@reboot" => {
                return Err(bad(
                    "@reboot is not a schedule: give the times the job runs at".to_owned(),
                ));
            }
            other if other.starts_with('@') => {
                return Err(bad(format!(
                    "unknown shorthand {other} (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
                )));
            }
            _ => trimmed.to_owned(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() == 6 {
            return Err(bad(
                "6 fields: a seconds field is not supported (check-ins run at minute \
                 granularity); use 5 fields: minute hour day-of-month month day-of-week"
                    .to_owned(),
            ));
        }
        if fields.len() != 5 {
            return Err(bad(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let minutes = field(fields[0], 0, 59, &[]).map_err(&bad)?;
        let hours = field(fields[1], 0, 23, &[]).map_err(&bad)?;
        let (days_of_month, dom_rules) = day_of_month_field(fields[2]).map_err(&bad)?;
        let months = field(fields[3], 1, 12, &MONTHS).map_err(&bad)?;
        let (mut days_of_week, dow_rules) = day_of_week_field(fields[4]).map_err(&bad)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7f;
        }
        let dom_star = fields[2].starts_with('*') || fields[2] == "?";
        let dow_star = fields[4].starts_with('*') || fields[4] == "?";
        Ok(Self {
            expression: trimmed.to_owned(),
            zone_name: zone.to_owned(),
            zone: tz,
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            months: months as u16,
            days_of_week: days_of_week as u8,
            dom_rules,
            dow_rules,
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
        let dom = self.days_of_month & (1 << date.day()) != 0
            || self.dom_rules.iter().any(|rule| rule.matches(date));
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0
            || self.dow_rules.iter().any(|rule| rule.matches(date));
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

impl DomRule {
    fn matches(self, date: Date) -> bool {
        let last = date.days_in_month();
        let day = date.day();
        match self {
            DomRule::Last(before) => i16::from(last) - i16::from(before) == i16::from(day),
            DomRule::NearestWeekday(n) => nearest_weekday(date, (n as i8).min(last)) == day,
            DomRule::LastWeekday => nearest_weekday(date, last) == day,
        }
    }
}

/// The weekday nearest day `n` of `date`'s month without leaving the month:
/// a Saturday moves to the Friday before (or the Monday after, on the 1st),
/// a Sunday to the Monday after (or the Friday before, on the last day).
fn nearest_weekday(date: Date, n: i8) -> i8 {
    let last = date.days_in_month();
    let weekday = date
        .first_of_month()
        .checked_add(jiff::Span::new().days(i64::from(n - 1)))
        .map(|d| d.weekday().to_sunday_zero_offset())
        .unwrap_or(1);
    match weekday {
        6 if n == 1 => 3,
        6 => n - 1,
        0 if n == last => n - 2,
        0 => n + 1,
        _ => n,
    }
}

impl DowRule {
    fn matches(self, date: Date) -> bool {
        let weekday = date.weekday().to_sunday_zero_offset() as u8;
        let day = date.day();
        match self {
            DowRule::Nth(x, n) => weekday == x && (day - 1) / 7 + 1 == n as i8,
            DowRule::Last(x) => weekday == x && day + 7 > date.days_in_month(),
        }
    }
}

/// The day-of-month field: plain values as bits, `L`, `L-n`, `nW`, `LW` as rules.
fn day_of_month_field(text: &str) -> Result<(u64, Vec<DomRule>), String> {
    if text == "?" {
        return field("*", 1, 31, &[]).map(|bits| (bits, Vec::new()));
    }
    let mut bits = 0;
    let mut rules = Vec::new();
    for part in text.split(',') {
        let upper = part.to_ascii_uppercase();
        if upper == "L" {
            rules.push(DomRule::Last(0));
        } else if upper == "LW" {
            rules.push(DomRule::LastWeekday);
        } else if let Some(before) = upper.strip_prefix("L-") {
            let before: u8 = before
                .parse()
                .ok()
                .filter(|n| (1..=30).contains(n))
                .ok_or_else(|| format!("`{part}`: L-n needs n in 1-30"))?;
            rules.push(DomRule::Last(before));
        } else if let Some(day) = upper.strip_suffix('W') {
            let day: u8 = day
                .parse()
                .ok()
                .filter(|n| (1..=31).contains(n))
                .ok_or_else(|| format!("`{part}`: nW needs a day 1-31"))?;
            rules.push(DomRule::NearestWeekday(day));
        } else {
            bits |= field(part, 1, 31, &[])?;
        }
    }
    Ok((bits, rules))
}

/// The day-of-week field: plain values as bits, `x#n` and `xL` as rules.
fn day_of_week_field(text: &str) -> Result<(u64, Vec<DowRule>), String> {
    if text == "?" {
        return field("*", 0, 7, &DAYS).map(|bits| (bits, Vec::new()));
    }
    let weekday = |s: &str| -> Result<u8, String> {
        let bits = field(s, 0, 7, &DAYS)?;
        match bits.trailing_zeros() {
            7 => Ok(0),
            n if bits.count_ones() == 1 => Ok(n as u8),
            _ => Err(format!("`{s}` is not one day")),
        }
    };
    let mut bits = 0;
    let mut rules = Vec::new();
    for part in text.split(',') {
        if let Some((day, nth)) = part.split_once('#') {
            let nth: u8 = nth
                .parse()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| format!("`{part}`: x#n needs n in 1-5"))?;
            rules.push(DowRule::Nth(weekday(day)?, nth));
        } else if part.len() > 1
            && let Some(day) = part.strip_suffix(['L', 'l'])
        {
            rules.push(DowRule::Last(weekday(day)?));
        } else {
            bits |= field(part, 0, 7, &DAYS)?;
        }
    }
    Ok((bits, rules))
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

    /// The next `n` times after `from`, as UTC text.
    fn next_n(expression: &str, from: &str, n: usize) -> Vec<String> {
        let c = CronSchedule::parse(expression, "UTC").unwrap();
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = c.next_after(t).unwrap();
                show(t)
            })
            .collect()
    }

    #[test]
    fn shorthands_sentry_and_healthchecks_accept() {
        for (shorthand, same) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("@DAILY", "0 0 * * *"),
        ] {
            assert_eq!(
                next_n(shorthand, "2026-11-21T12:34:00Z", 3),
                next_n(same, "2026-11-21T12:34:00Z", 3),
                "{shorthand}"
            );
        }
    }

    #[test]
    fn last_day_of_month_and_days_before_it() {
        assert_eq!(
            next_n("0 0 L * *", "2027-01-15T00:00:00Z", 3),
            [
                "2027-01-31T00:00:00Z",
                "2027-02-28T00:00:00Z",
                "2027-03-31T00:00:00Z"
            ]
        );
        assert_eq!(
            next_n("0 0 L-2 * *", "2028-02-01T00:00:00Z", 2), // 2028 is a leap year
            ["2028-02-27T00:00:00Z", "2028-03-29T00:00:00Z"]
        );
        // In a list with plain days.
        assert_eq!(
            next_n("0 0 1,L * *", "2027-01-15T00:00:00Z", 3),
            [
                "2027-01-31T00:00:00Z",
                "2027-02-01T00:00:00Z",
                "2027-02-28T00:00:00Z"
            ]
        );
    }

    #[test]
    fn nearest_weekday_and_last_weekday() {
        // 2027-05-15 is a Saturday: 15W is Friday the 14th; 2027-08-15 a Sunday: Monday the 16th.
        assert_eq!(
            next_n("0 9 15W 5,8 *", "2027-01-01T00:00:00Z", 2),
            ["2027-05-14T09:00:00Z", "2027-08-16T09:00:00Z"]
        );
        // 2027-05-01 is a Saturday: 1W stays in May, Monday the 3rd.
        assert_eq!(
            next_n("0 9 1W 5 *", "2027-01-01T00:00:00Z", 1),
            ["2027-05-03T09:00:00Z"]
        );
        // 2027-01-31 is a Sunday: the last weekday is Friday the 29th.
        assert_eq!(
            next_n("0 18 LW * *", "2027-01-01T00:00:00Z", 2),
            ["2027-01-29T18:00:00Z", "2027-02-26T18:00:00Z"]
        );
    }

    #[test]
    fn nth_and_last_weekday_of_the_month() {
        // The second Friday: 2027-01-08, 2027-02-12.
        for expression in ["0 0 * * fri#2", "0 0 * * 5#2", "0 0 ? * FRI#2"] {
            assert_eq!(
                next_n(expression, "2027-01-01T00:00:00Z", 2),
                ["2027-01-08T00:00:00Z", "2027-02-12T00:00:00Z"],
                "{expression}"
            );
        }
        // The last Friday: 2027-01-29, 2027-02-26.
        for expression in ["0 0 * * friL", "0 0 * * 5L"] {
            assert_eq!(
                next_n(expression, "2027-01-01T00:00:00Z", 2),
                ["2027-01-29T00:00:00Z", "2027-02-26T00:00:00Z"],
                "{expression}"
            );
        }
        // The last Sunday, as 7L and 0L.
        assert_eq!(
            next_n("0 0 * * 7L", "2027-01-01T00:00:00Z", 1),
            next_n("0 0 * * 0L", "2027-01-01T00:00:00Z", 1)
        );
        assert_eq!(
            last(&next_n("0 0 * * 0L", "2027-01-01T00:00:00Z", 1)),
            "2027-01-31T00:00:00Z"
        );
    }

    fn last(v: &[String]) -> &str {
        v.last().map(String::as_str).unwrap_or("")
    }

    #[test]
    fn seconds_reboot_and_malformed_forms_are_refused_clearly() {
        let error = CronSchedule::parse("0 */5 * * * *", "UTC").unwrap_err();
        assert!(error.to_string().contains("seconds"), "{error}");
        let error = CronSchedule::parse("@reboot", "UTC").unwrap_err();
        assert!(error.to_string().contains("@reboot"), "{error}");
        for bad in [
            "0 0 L-31 * *",
            "0 0 32W * *",
            "0 0 W * *",
            "0 0 * * fri#6",
            "0 0 * * fri#0",
            "0 0 * * mon-fri#2",
            "0 0 * * 8L",
        ] {
            assert!(CronSchedule::parse(bad, "UTC").is_err(), "{bad}");
        }
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
