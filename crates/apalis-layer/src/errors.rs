//! apalis's own error wrappers, seen through, and the error a caught panic
//! becomes.

use std::error::Error as StdError;

use apalis_core::error::{AbortError, DeferredError, RetryAfterError};

/// The error a job's panic becomes when [`crate::MonitorLayer`] catches it
/// (the default). It reaches the worker wrapped in apalis's `AbortError`,
/// the same shape apalis's own `catch_panic` layer produces, so the job is
/// not retried and the worker keeps running.
#[derive(Debug, thiserror::Error)]
#[error("job panicked: {message}")]
pub struct JobPanicked {
    /// The panic's message.
    pub message: String,
}

/// What the layer learns from an error before classifying it.
pub(crate) struct Unwrapped<'a> {
    /// The error to report: the source of apalis's wrappers, or the error.
    pub(crate) error: &'a (dyn StdError + 'static),
    /// The job aborted: apalis will not retry it.
    pub(crate) aborted: bool,
    /// The panic message, when the error is a panic caught inside us
    /// (apalis's `catch_panic` layer, or another `MonitorLayer`).
    pub(crate) panic: Option<String>,
}

/// Sees through `AbortError`, `RetryAfterError` and `DeferredError`, and
/// recognises panics caught by apalis's `catch_panic` layer.
pub(crate) fn unwrap<'a>(error: &'a (dyn StdError + 'static)) -> Unwrapped<'a> {
    let mut aborted = false;
    let mut inner = error;
    if error.is::<AbortError>() {
        aborted = true;
        inner = error.source().unwrap_or(error);
    } else if error.is::<RetryAfterError>() || error.is::<DeferredError>() {
        inner = error.source().unwrap_or(error);
    }
    let panic = if let Some(p) = inner.downcast_ref::<JobPanicked>() {
        Some(p.message.clone())
    } else if error_type_name_is(inner, "PanicError") {
        Some(panic_text(inner))
    } else {
        None
    };
    Unwrapped {
        error: inner,
        aborted,
        panic,
    }
}

/// apalis's `PanicError` lives in the `apalis` crate, which this crate does
/// not depend on; it is recognised by its `Debug` form, `PanicError(..)`.
fn error_type_name_is(error: &(dyn StdError + 'static), name: &str) -> bool {
    jobsight_core::error::type_of(error) == name
}

fn panic_text(error: &(dyn StdError + 'static)) -> String {
    let record = jobsight_core::ErrorRecord::from_error(error);
    let message = record.message();
    message
        .strip_prefix("PanicError: ")
        .unwrap_or(message)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_through_abort() {
        let err = AbortError::new(std::io::Error::other("bad input"));
        let u = unwrap(&err);
        assert!(u.aborted);
        assert!(u.error.is::<std::io::Error>());
        assert!(u.panic.is_none());
    }

    #[test]
    fn recognises_our_panics() {
        let err = AbortError::new(JobPanicked {
            message: "boom".into(),
        });
        let u = unwrap(&err);
        assert_eq!(u.panic.as_deref(), Some("boom"));
    }

    #[test]
    fn plain_errors_pass() {
        let err = std::io::Error::other("x");
        let u = unwrap(&err);
        assert!(!u.aborted);
        assert!(u.error.is::<std::io::Error>());
    }
}

/// Errors of this crate's own setup calls: a builder told two things that
/// cannot both hold, or a poller started outside a runtime. The layers
/// themselves never fail a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A background task was asked for outside a tokio runtime.
    #[error("no tokio runtime: start the poller from within a tokio runtime")]
    NoRuntime,
    /// A builder was given a monitor with `.monitor(..)` and also a setting
    /// that configures a monitor (classifier, propagation, providers,
    /// observers, progress, traces, buckets, max kinds): the given monitor
    /// is already built, so the setting could not take effect.
    #[error(
        "{layer}: `.{setting}(..)` configures the monitor, but a built monitor was given with `.monitor(..)`; set `{setting}` on that monitor's `JobMonitor::builder()`, or leave `.monitor(..)` out"
    )]
    MonitorAndMonitorSetting {
        /// The builder (`MonitorLayer` or `SendLayer`).
        layer: &'static str,
        /// The first monitor setting given.
        setting: &'static str,
    },
    /// A `MonitorLayer` builder was given check-in policies with
    /// `.checkin(..)` and a whole registry with `.checkins(..)`.
    #[error(
        "MonitorLayer: check-in policies were added with `.checkin(..)` and a registry was given with `.checkins(..)`; add the policies to the registry (`Checkins::policy`) instead"
    )]
    CheckinAndCheckins,
    /// A setting was given an empty name.
    #[error("{layer}: `.{setting}(..)` was given an empty name")]
    EmptyName {
        /// The builder (`MonitorLayer` or `SendLayer`).
        layer: &'static str,
        /// The setting (`queue` or `job_name`).
        setting: &'static str,
    },
    /// `retries` was given to a builder built on its own: only the worker
    /// can add apalis's retry layer.
    #[error(
        "MonitorLayer: `.retries(..)` needs the worker to add apalis's retry layer: give the builder to `WorkerBuilder::monitor(..)` (jobsight_apalis::MonitorWorkerExt) instead of calling `.build()`"
    )]
    RetriesNeedTheWorker,
    /// Both `retries` and `max_attempts` were given: the attempt limit
    /// follows from the retry count.
    #[error(
        "MonitorLayer: `.retries(n)` and `.max_attempts(..)` were both given; `retries(n)` already means n + 1 attempts, leave `max_attempts` out"
    )]
    RetriesAndMaxAttempts,
    /// `max_attempts` was given 0 (a job gets at least one attempt).
    #[error("MonitorLayer: `.max_attempts(0)`: a job gets at least one attempt")]
    ZeroMaxAttempts,
}
