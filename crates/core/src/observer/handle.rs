//! [`Observers`]: a monitor's observers, as producers, the check-in
//! watchdog and the code that flushes before exiting reach them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::delivery::{Delivery, Observer, ObserverOptions, ObserverStats};
use super::event::{EventKind, JobEvent};
use crate::job::JobMeta;

/// The observers of one [`JobMonitor`](crate::JobMonitor), from
/// [`JobMonitor::observers`](crate::JobMonitor::observers): tell them about
/// things the monitor does not see itself (a job enqueued, a check-in
/// incident), wait for them before the process exits, read their counts.
/// Every call is free when the monitor has no observer.
pub struct Observers {
    /// `None` when no observer is registered: the job's path then builds
    /// no event.
    delivery: Option<Delivery>,
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.delivery {
            Some(delivery) => delivery.fmt(f),
            None => f.write_str("[]"),
        }
    }
}

impl Observers {
    /// Starts one thread per observer (none for an empty list).
    pub(crate) fn start(observers: Vec<(Box<dyn Observer>, ObserverOptions)>) -> Self {
        Self {
            delivery: (!observers.is_empty()).then(|| Delivery::start(observers)),
        }
    }

    /// Whether no observer is registered.
    pub fn is_empty(&self) -> bool {
        self.delivery.is_none()
    }

    /// Whether an observer listens: the job's path builds events only then.
    #[inline]
    pub(crate) fn is_listening(&self) -> bool {
        self.delivery.is_some()
    }

    /// Offers `event` to every observer without blocking.
    pub(crate) fn dispatch(&self, event: JobEvent) {
        if let Some(delivery) = &self.delivery {
            delivery.dispatch(event);
        }
    }

    /// Tells the observers that a job was enqueued (for producers; nothing
    /// is recorded on any span or metric).
    pub fn enqueued(&self, meta: &JobMeta) {
        if let Some(delivery) = &self.delivery {
            delivery.dispatch(JobEvent::new(EventKind::Enqueued, Arc::new(meta.clone())));
        }
    }

    /// Tells the observers about a check-in incident: `kind` is
    /// [`EventKind::Missed`] or [`EventKind::Stuck`], `job` names the
    /// monitor (system `checkin`, queue and name = the monitor's name, unless
    /// the caller knows better), and a stuck run gives its `run_id` and
    /// `started_at`. Nothing is recorded on any span or metric here (the
    /// watchdog records its own).
    pub fn checkin_incident(
        &self,
        kind: EventKind,
        job: &JobMeta,
        run_id: Option<&str>,
        started_at: Option<SystemTime>,
    ) {
        if let Some(delivery) = &self.delivery {
            let mut event = JobEvent::new(kind, Arc::new(job.clone()));
            event.run_id = run_id.map(Arc::from);
            event.started_at = started_at;
            event.running_for = started_at.and_then(|at| event.at.duration_since(at).ok());
            delivery.dispatch(event);
        }
    }

    /// Waits until the observers have handled every event queued so far,
    /// at most `timeout`. Returns whether they did (`true` without
    /// observers). Call it before the process exits: observer threads do
    /// not keep it alive.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.delivery
            .as_ref()
            .is_none_or(|delivery| delivery.flush(timeout))
    }

    /// Delivery counts per observer, in registration order.
    pub fn stats(&self) -> Vec<ObserverStats> {
        self.delivery
            .as_ref()
            .map(Delivery::stats)
            .unwrap_or_default()
    }
}
