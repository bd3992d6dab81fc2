//! [`CheckinError`]: a cron schedule that cannot be used, or a policy a
//! sink cannot report.

/// What can go wrong while building a check-in [`Schedule`](super::Schedule)
/// (a cron expression or a time zone that does not parse) or validating a
/// registry ([`Checkins::validate`](super::Checkins::validate)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckinError {
    /// A cron expression that does not parse.
    #[error("cron expression `{expression}`: {reason}")]
    Cron {
        /// The expression as given.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A time zone the system's tz database does not know.
    #[error(
        "time zone `{zone}`: {reason}; expected an IANA time zone name such as `UTC` or `Europe/Berlin`"
    )]
    TimeZone {
        /// The zone as given.
        zone: String,
        /// Why it was refused.
        reason: String,
    },
    /// A sink cannot report a policy's monitor (see
    /// [`Checkins::validate`](super::Checkins::validate)).
    #[error("check-in policy `{monitor}`: {reason}")]
    Refused {
        /// The policy's monitor name.
        monitor: String,
        /// Why, and what would be accepted.
        reason: String,
    },
}
