//! The observers' events of one running attempt, made from its
//! [`RunState`]: `Started` when it begins, `Progressed` when a tick passes
//! the throttle, `Paused` and `Resumed` from the runner, and the event that
//! ends it (`Succeeded`, `Retried`, `Failed`, `Abandoned`, `Cancelled`).
//! Nothing is built when no observer listens.

use std::sync::Arc;

use super::event::{EventKind, JobEvent};
use crate::error::ErrorRecord;
use crate::outcome::Outcome;
use crate::run_state::RunState;

/// An event about the attempt of `run`, when observers listen.
fn event(run: &RunState, kind: EventKind) -> Option<JobEvent> {
    let notify = run.notify.as_ref()?;
    let mut event = JobEvent::new(kind, Arc::clone(&notify.job));
    event.run_id = Some(Arc::clone(&notify.run_id));
    event.trace_id = notify.trace_id.clone();
    event.started_at = Some(run.started_at);
    event.running_for = Some(run.started.elapsed());
    event.progress = run.snapshot();
    Some(event)
}

/// `Started`, `Progressed`, `Paused` or `Resumed`.
pub(crate) fn notify(run: &RunState, kind: EventKind) {
    if let Some(event) = event(run, kind) {
        run.monitor.observers().dispatch(event);
    }
}

/// The event that ends the attempt, with its outcome and error.
pub(crate) fn finished(
    run: &RunState,
    outcome: Outcome,
    error: Option<&ErrorRecord>,
    kind: EventKind,
) {
    if let Some(mut event) = event(run, kind) {
        event.ended_at = Some(event.at);
        event.outcome = Some(outcome);
        event.error = error.cloned();
        run.monitor.observers().dispatch(event);
    }
}
