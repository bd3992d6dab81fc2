//! Progress of a running job: `tick(n)` against a `total`.
//!
//! # Turning it on
//! Progress costs each job a context entry (about 0.2–0.4 µs, measured
//! with `cargo test --release -p jobsight-core --test cost -- --ignored
//! --nocapture`), so a monitor records it only when asked:
//! [`JobMonitorBuilder::progress(true)`](crate::JobMonitorBuilder::progress)
//! (for apalis: `MonitorLayer::builder().progress(true)`).
//! Tasks ([`crate::task`]) and monitors with observers always have it.
//! Elsewhere the functions below do nothing; the first such call inside a
//! traced span prints one line on stderr saying how to turn progress on.
//!
//! # Reporting progress
//! Job code reaches its own job through the OpenTelemetry context: the
//! apalis layer and [`task::run`](crate::task::run) attach the
//! transaction's context around the job's code, so the free functions
//! [`tick`], [`set_total`] and [`set_element`] work anywhere in it (they do
//! nothing outside a job). Code that moves work to another thread or a
//! spawned task takes a [`Progress`] handle along ([`Progress::current`],
//! or [`Transaction::progress`](crate::Transaction::progress) for runners).
//!
//! ```
//! use jobsight_core::{JobMeta, JobMonitor, progress};
//! let monitor = JobMonitor::builder().progress(true).build();
//! let tx = monitor.start(JobMeta::builder("my-runner", "maintenance").name("backfill").build());
//! {
//!     let _attached = tx.context().clone().attach(); // what the runners do
//!     let users = ["ada", "grace", "linus"];
//!     progress::set_total(users.len() as u64);
//!     for user in users {
//!         progress::set_element(user);
//!         // ... process the user ...
//!         progress::tick(1);
//!     }
//! }
//! assert_eq!(tx.progress().unwrap().ticks(), 3);
//! tx.succeed();
//! ```
//!
//! # What it becomes
//! - **Span events, throttled.** A tick adds a `job.progress` event to the
//!   job's span (with `job.progress.ticks`, and `job.progress.total`,
//!   `job.progress.ratio`, `job.progress.eta` when a total is set) only when
//!   at least [`ProgressThrottle::min_interval`] (1 s) has passed since the
//!   last one (or since the start), **and** either the ratio grew by
//!   [`ProgressThrottle::step`] (10 percentage points) or
//!   [`ProgressThrottle::max_interval`] (30 s) has passed. A job therefore
//!   gets at most about ten progress events plus one per 30 s, never one
//!   per tick; a job shorter than a second gets none. The same ticks send a
//!   `Progressed` event to [observers](crate::observer), with an estimate of
//!   the time to completion (time running × ticks left ÷ ticks done).
//! - **Span attributes at the end.** A job that reported progress ends with
//!   `job.progress.ticks` and `job.progress.total` on its span; when it
//!   fails, the `exception` event carries `job.progress.ticks`,
//!   `job.progress.total` and `job.progress.element` (the element being
//!   processed), and so does the observers' `Failed` event.
//! - **A gauge.** `job.progress` (unit `1`, 0 to 1) per job kind
//!   (`messaging.system`, `messaging.destination.name`, `job.name`), read at
//!   each metric collection from the jobs running then that have a total:
//!   the sum of their ticks over the sum of their totals. A kind with no
//!   such job running reports no point.
//!
//! A tick costs an atomic add and a clock read; the throttle decides with
//! atomics, so ticking once per element from several threads is fine.

pub(crate) mod running;
#[cfg(test)]
mod tests;
pub(crate) mod throttle;

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use opentelemetry::metrics::AsyncInstrument;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

use crate::error::bounded_display;
use crate::kinds::JobKind;
use crate::observer::EventKind;
use crate::run_state::{NO_TOTAL, RunState};
use crate::semconv;

pub use throttle::ProgressThrottle;

/// The longest element description kept, in bytes.
pub const MAX_ELEMENT_LEN: usize = 256;

/// A handle on the progress of one running job. Cheap to clone; may be sent
/// to other threads. Does nothing once the job has finished.
#[derive(Clone, Debug)]
pub struct Progress {
    cx: Context,
}

impl Progress {
    /// The progress of the job whose context is current, if any.
    pub fn current() -> Option<Progress> {
        Self::from_context(&Context::current())
    }

    /// The progress of the job whose context is `cx`, if any.
    pub fn from_context(cx: &Context) -> Option<Progress> {
        cx.get::<RunState>()
            .is_some()
            .then(|| Progress { cx: cx.clone() })
    }

    fn run(&self) -> Option<&RunState> {
        self.cx.get::<RunState>()
    }

    /// Adds `n` ticks.
    pub fn tick(&self, n: u64) {
        if let Some(run) = self.run() {
            tick_run(run, &self.cx, n);
        }
    }

    /// Sets the total the ticks count towards.
    pub fn set_total(&self, total: u64) {
        if let Some(run) = self.run() {
            set_total_run(run, &self.cx, total);
        }
    }

    /// Sets the element being processed (e.g. `user 42`), cut at
    /// [`MAX_ELEMENT_LEN`] bytes; reported with errors.
    pub fn set_element(&self, element: impl Display) {
        if let Some(run) = self.run() {
            set_element_run(run, &element);
        }
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.run().map_or(0, RunState::ticks)
    }

    /// The total, when set.
    pub fn total(&self) -> Option<u64> {
        self.run().and_then(RunState::total)
    }

    /// Estimated time to completion (see
    /// [`ProgressSnapshot::eta`](crate::observer::ProgressSnapshot::eta)).
    pub fn eta(&self) -> Option<Duration> {
        self.run().and_then(RunState::eta)
    }
}

/// Adds `n` ticks to the job whose context is current; nothing outside a
/// job with progress on.
pub fn tick(n: u64) {
    Context::map_current(|cx| match cx.get::<RunState>() {
        Some(run) => tick_run(run, cx, n),
        None => warn_once(cx),
    });
}

/// Sets the total of the job whose context is current; nothing outside a
/// job with progress on.
pub fn set_total(total: u64) {
    Context::map_current(|cx| match cx.get::<RunState>() {
        Some(run) => set_total_run(run, cx, total),
        None => warn_once(cx),
    });
}

/// Sets the element being processed by the job whose context is current
/// (see [`Progress::set_element`]); nothing outside a job with progress on.
pub fn set_element(element: impl Display) {
    Context::map_current(|cx| match cx.get::<RunState>() {
        Some(run) => set_element_run(run, &element),
        None => warn_once(cx),
    });
}

/// Says once per process that progress was reported where it is off, when
/// that happened inside a traced span (likely a job whose monitor has
/// progress off; outside any span it is probably a test or a tool).
fn warn_once(cx: &Context) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if cx.span().span_context().is_valid() && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "jobsight: progress reported outside a job with progress on; ignored. \
             Build the job's monitor with JobMonitorBuilder::progress(true)."
        );
    }
}

/// Adds `n` ticks to the attempt of `run`.
fn tick_run(run: &RunState, cx: &Context, n: u64) {
    if run.is_finished() {
        return;
    }
    let ticks = run.ticks.fetch_add(n, Ordering::Relaxed).saturating_add(n);
    mark_used(run, cx);
    maybe_report(run, cx, ticks);
}

fn set_total_run(run: &RunState, cx: &Context, total: u64) {
    if run.is_finished() {
        return;
    }
    run.total.store(total.min(NO_TOTAL - 1), Ordering::Relaxed);
    mark_used(run, cx);
}

fn set_element_run(run: &RunState, element: &dyn Display) {
    if run.is_finished() {
        return;
    }
    let text: Arc<str> = Arc::from(bounded_display(element, MAX_ELEMENT_LEN));
    *run.element.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    run.used.store(true, Ordering::Relaxed);
}

/// On the attempt's first progress: join the monitor's gauge.
fn mark_used(run: &RunState, cx: &Context) {
    if run.used.swap(true, Ordering::SeqCst) {
        return;
    }
    let registry = &run.monitor.inner.progress_running;
    registry.ensure_gauge(&run.monitor.instruments().meter, observe_gauge);
    let mut running = registry.lock();
    // Checked under the lock `finish` takes: a job that finished
    // meanwhile is not registered again.
    if !run.finished.load(Ordering::SeqCst) {
        running.push(cx.clone());
    }
}

/// A span event and a `Progressed` event, when the throttle lets one through.
fn maybe_report(run: &RunState, cx: &Context, ticks: u64) {
    let throttle = &run.monitor.inner.progress.throttle;
    let now_ms = millis(run.started.elapsed());
    let last = run.last_event_ms.load(Ordering::Relaxed);
    if now_ms < last.saturating_add(millis(throttle.min_interval)) {
        return;
    }
    let total = run.total();
    let permille = total.map(|total| permille(ticks, total));
    let stepped = permille.is_some_and(|p| {
        p >= run
            .last_event_permille
            .load(Ordering::Relaxed)
            .saturating_add(throttle.step_permille())
    });
    let overdue = now_ms >= last.saturating_add(millis(throttle.max_interval));
    if !(stepped || overdue) {
        return;
    }
    // One thread wins the right to report this step.
    if run
        .last_event_ms
        .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if let Some(p) = permille {
        run.last_event_permille.store(p, Ordering::Relaxed);
    }
    let span = cx.span();
    if span.is_recording() {
        let mut attrs = vec![KeyValue::new(semconv::JOB_PROGRESS_TICKS, as_i64(ticks))];
        if let Some(total) = total {
            attrs.push(KeyValue::new(semconv::JOB_PROGRESS_TOTAL, as_i64(total)));
            attrs.push(KeyValue::new(
                semconv::JOB_PROGRESS_RATIO,
                ratio(ticks, total),
            ));
        }
        if let Some(eta) = run.eta() {
            attrs.push(KeyValue::new(semconv::JOB_PROGRESS_ETA, eta.as_secs_f64()));
        }
        span.add_event(semconv::JOB_PROGRESS_EVENT, attrs);
    }
    crate::observer::attempt::notify(run, EventKind::Progressed);
}

/// The tick count, total and element, for the `exception` event of a job
/// that reported progress.
pub(crate) fn error_attributes(run: &RunState, attrs: &mut Vec<KeyValue>) {
    if !run.used.load(Ordering::Relaxed) {
        return;
    }
    attrs.push(KeyValue::new(
        semconv::JOB_PROGRESS_TICKS,
        as_i64(run.ticks()),
    ));
    if let Some(total) = run.total() {
        attrs.push(KeyValue::new(semconv::JOB_PROGRESS_TOTAL, as_i64(total)));
    }
    if let Some(element) = run.element() {
        attrs.push(KeyValue::new(semconv::JOB_PROGRESS_ELEMENT, element));
    }
}

/// Ends the attempt's progress: later ticks are ignored, a job that
/// reported progress gets its final ticks and total on the span and leaves
/// the gauge.
pub(crate) fn finish(run: &RunState, cx: &Context) {
    run.finished.store(true, Ordering::SeqCst);
    if !run.used.load(Ordering::SeqCst) {
        return;
    }
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        semconv::JOB_PROGRESS_TICKS,
        as_i64(run.ticks()),
    ));
    if let Some(total) = run.total() {
        span.set_attribute(KeyValue::new(semconv::JOB_PROGRESS_TOTAL, as_i64(total)));
    }
    let mut running = run.monitor.inner.progress_running.lock();
    running.retain(|other| {
        other
            .get::<RunState>()
            .is_none_or(|other| !std::ptr::eq(other, run))
    });
}

/// The `job.progress` gauge's reading: per job kind, the ticks of its
/// running attempts that set a total over the sum of those totals.
fn observe_gauge(running: &[Context], observer: &dyn AsyncInstrument<f64>) {
    let mut sums: Vec<(&Arc<JobKind>, u64, u64)> = Vec::new();
    for run in running.iter().filter_map(|cx| cx.get::<RunState>()) {
        let Some(total) = run.total() else { continue };
        let ticks = run.ticks().min(total);
        match sums.iter_mut().find(|(k, _, _)| Arc::ptr_eq(k, &run.kind)) {
            Some(entry) => {
                entry.1 = entry.1.saturating_add(ticks);
                entry.2 = entry.2.saturating_add(total);
            }
            None => sums.push((&run.kind, ticks, total)),
        }
    }
    for (kind, ticks, total) in sums {
        observer.observe(ratio(ticks, total), kind.attributes());
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ratio(ticks: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        (ticks as f64 / total as f64).min(1.0)
    }
}

fn permille(ticks: u64, total: u64) -> u64 {
    (ratio(ticks, total) * 1000.0) as u64
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
