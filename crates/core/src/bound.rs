//! [`KindMetrics`]: the metric calls of one job kind, through instruments
//! bound to the kind's attribute sets when the `bound-instruments` feature is
//! on.
//!
//! An unbound `add`/`record` makes the SDK hash and compare the attribute set
//! (SipHash over every key and value) and take its read lock on the
//! instrument's series table, shared by every thread recording into that
//! instrument: that was about 1 400 instructions per call, 7 000 of the
//! 12 800 the monitored path added to a job (callgrind, see the README's
//! "Performance"). A bound handle resolves the series once and then updates
//! it directly.
//!
//! Handles are bound on first use, not when the kind is created, so that a
//! series appears only once it has a value (a cumulative exporter exports
//! every bound series, empty ones included). Recordings with an `error.type`
//! stay unbound: their attribute sets are open-ended.
//!
//! Job kinds are shared between monitors (one table per process), and each
//! monitor has instruments of its own (its own providers, in tests and in
//! applications with several pipelines). A kind's handles belong to the
//! monitor that recorded it first; other monitors record that kind with
//! plain calls.
//!
//! Without the feature (or with an SDK built without its
//! `experimental_metrics_bound_instruments` feature, see the crate docs) every
//! call is the plain unbound one.

#[cfg(feature = "bound-instruments")]
use std::sync::OnceLock;

use opentelemetry::KeyValue;
#[cfg(feature = "bound-instruments")]
use opentelemetry::metrics::{BoundCounter, BoundHistogram, BoundUpDownCounter};

use crate::instruments::Instruments;
use crate::outcome::Outcome;

/// The metric calls of one job kind (see the module docs).
#[derive(Default)]
pub(crate) struct KindMetrics {
    /// [`Instruments::id`] of the monitor the handles below belong to.
    #[cfg(feature = "bound-instruments")]
    owner: OnceLock<u64>,
    #[cfg(feature = "bound-instruments")]
    active: OnceLock<BoundUpDownCounter<i64>>,
    #[cfg(feature = "bound-instruments")]
    queue_time: OnceLock<BoundHistogram<f64>>,
    #[cfg(feature = "bound-instruments")]
    duration: OnceLock<BoundHistogram<f64>>,
    #[cfg(feature = "bound-instruments")]
    consumed: OnceLock<BoundCounter<u64>>,
    #[cfg(feature = "bound-instruments")]
    outcomes: [OnceLock<BoundCounter<u64>>; Outcome::ALL.len()],
}

impl std::fmt::Debug for KindMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindMetrics")
            .field("bound", &cfg!(feature = "bound-instruments"))
            .finish()
    }
}

#[cfg(feature = "bound-instruments")]
impl KindMetrics {
    /// Whether the handles belong to `i`'s monitor (claimed by the first).
    fn owned_by(&self, i: &Instruments) -> bool {
        *self.owner.get_or_init(|| i.id) == i.id
    }

    /// `job.active` += `delta`, with the kind's base attributes.
    pub(crate) fn active(&self, i: &Instruments, base: &[KeyValue], delta: i64) {
        if !self.owned_by(i) {
            return i.active.add(delta, base);
        }
        self.active.get_or_init(|| i.active.bind(base)).add(delta);
    }

    /// Records `job.queue_time`, with the kind's base attributes.
    pub(crate) fn queue_time(&self, i: &Instruments, base: &[KeyValue], seconds: f64) {
        if !self.owned_by(i) {
            return i.queue_time.record(seconds, base);
        }
        self.queue_time
            .get_or_init(|| i.queue_time.bind(base))
            .record(seconds);
    }

    /// Records the duration and counts the message of an attempt without an
    /// `error.type`, with the kind's base attributes.
    pub(crate) fn processed(&self, i: &Instruments, base: &[KeyValue], seconds: f64) {
        if !self.owned_by(i) {
            i.duration.record(seconds, base);
            return i.consumed.add(1, base);
        }
        self.duration
            .get_or_init(|| i.duration.bind(base))
            .record(seconds);
        self.consumed.get_or_init(|| i.consumed.bind(base)).add(1);
    }

    /// Counts `outcome` in `job.outcomes`; `attributes` are the kind's base
    /// attributes plus `job.outcome`.
    pub(crate) fn outcome(&self, i: &Instruments, outcome: Outcome, attributes: &[KeyValue]) {
        if !self.owned_by(i) {
            return i.outcomes.add(1, attributes);
        }
        self.outcomes[outcome.index()]
            .get_or_init(|| i.outcomes.bind(attributes))
            .add(1);
    }
}

#[cfg(not(feature = "bound-instruments"))]
impl KindMetrics {
    /// `job.active` += `delta`, with the kind's base attributes.
    pub(crate) fn active(&self, i: &Instruments, base: &[KeyValue], delta: i64) {
        i.active.add(delta, base);
    }

    /// Records `job.queue_time`, with the kind's base attributes.
    pub(crate) fn queue_time(&self, i: &Instruments, base: &[KeyValue], seconds: f64) {
        i.queue_time.record(seconds, base);
    }

    /// Records the duration and counts the message of an attempt without an
    /// `error.type`, with the kind's base attributes.
    pub(crate) fn processed(&self, i: &Instruments, base: &[KeyValue], seconds: f64) {
        i.duration.record(seconds, base);
        i.consumed.add(1, base);
    }

    /// Counts `outcome` in `job.outcomes`; `attributes` are the kind's base
    /// attributes plus `job.outcome`.
    pub(crate) fn outcome(&self, i: &Instruments, _outcome: Outcome, attributes: &[KeyValue]) {
        i.outcomes.add(1, attributes);
    }
}
