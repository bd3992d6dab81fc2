//! Progress of a running job: `tick(n)` against a `total`.
//!
//! # Turning it on
//! Progress costs each job a context entry (about 0.2–0.4 µs, measured
//! with `cargo test --release -p jobsight-core --test cost -- --ignored
//! --nocapture`), so a monitor records it only when asked:
//! [`JobMonitorBuilder::progress(true)`](crate::JobMonitorBuilder::progress)
//! (for apalis: `MonitorLayer::with_monitor(JobMonitor::builder().progress(true).build())`).
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

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::metrics::{Meter, ObservableGauge};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

use crate::error::{ErrorRecord, bounded_display};
use crate::job::JobMeta;
use crate::kinds::JobKind;
use crate::monitor::JobMonitor;
use crate::observer::{Event, EventKind, ProgressSnapshot};
use crate::outcome::Outcome;
use crate::semconv;

/// The longest element description kept, in bytes.
pub const MAX_ELEMENT_LEN: usize = 256;

const NO_TOTAL: u64 = u64::MAX;

/// When ticks become span events and `Progressed` events (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct ProgressThrottle {
    min_interval: Duration,
    step: f64,
    max_interval: Duration,
}

impl Default for ProgressThrottle {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            step: 0.10,
            max_interval: Duration::from_secs(30),
        }
    }
}

impl ProgressThrottle {
    /// The shortest time between two progress events. Defaults to 1 s.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// How much the ratio must grow (0 to 1) for a new event. Defaults to
    /// 0.10 (ten percentage points).
    pub fn step(mut self, step: f64) -> Self {
        self.step = if step.is_finite() {
            step.clamp(0.0, 1.0)
        } else {
            0.10
        };
        self
    }

    /// The longest time without an event while ticks arrive (jobs without a
    /// total, slow steps). Defaults to 30 s.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
        self
    }

    fn step_permille(&self) -> u64 {
        // A step of zero would report on every tick past the minimum interval.
        ((self.step * 1000.0).round() as u64).max(1)
    }
}

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
            run.tick(&self.cx, n);
        }
    }

    /// Sets the total the ticks count towards.
    pub fn set_total(&self, total: u64) {
        if let Some(run) = self.run() {
            run.set_total(&self.cx, total);
        }
    }

    /// Sets the element being processed (e.g. `user 42`), cut at
    /// [`MAX_ELEMENT_LEN`] bytes; reported with errors.
    pub fn set_element(&self, element: impl Display) {
        if let Some(run) = self.run() {
            run.set_element(&element);
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

    /// Estimated time to completion (see [`ProgressSnapshot::eta`]).
    pub fn eta(&self) -> Option<Duration> {
        self.run().and_then(RunState::eta)
    }
}

/// Adds `n` ticks to the job whose context is current; nothing outside a
/// job with progress on.
pub fn tick(n: u64) {
    Context::map_current(|cx| match cx.get::<RunState>() {
        Some(run) => run.tick(cx, n),
        None => warn_once(cx),
    });
}

/// Sets the total of the job whose context is current; nothing outside a
/// job with progress on.
pub fn set_total(total: u64) {
    Context::map_current(|cx| match cx.get::<RunState>() {
        Some(run) => run.set_total(cx, total),
        None => warn_once(cx),
    });
}

/// Sets the element being processed by the job whose context is current
/// (see [`Progress::set_element`]); nothing outside a job with progress on.
pub fn set_element(element: impl Display) {
    Context::map_current(|cx| match cx.get::<RunState>() {
        Some(run) => run.set_element(&element),
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

/// The identity of one attempt for observers.
pub(crate) struct Notify {
    pub(crate) job: Arc<JobMeta>,
    pub(crate) run_id: Arc<str>,
    pub(crate) trace_id: Option<Arc<str>>,
}

/// What one running attempt shares between the transaction, the job's code
/// (through the context) and the progress gauge.
pub(crate) struct RunState {
    monitor: JobMonitor,
    kind: Arc<JobKind>,
    started: Instant,
    started_at: SystemTime,
    ticks: AtomicU64,
    total: AtomicU64,
    used: AtomicBool,
    finished: AtomicBool,
    element: Mutex<Option<Arc<str>>>,
    last_event_ms: AtomicU64,
    last_event_permille: AtomicU64,
    notify: Option<Notify>,
}

/// Whether [`begin`] puts a run state into the job's context: progress is
/// on, observers listen, or the job is a [`crate::task`].
pub(crate) fn wanted(monitor: &JobMonitor, meta: &JobMeta) -> bool {
    monitor.observers().is_some()
        || monitor.inner.progress.enabled
        || meta.system() == semconv::SYSTEM_TASK
}

/// Puts a [`RunState`] into `cx` when progress is on or observers listen,
/// and tells the observers the attempt started.
pub(crate) fn begin(
    monitor: &JobMonitor,
    kind: &Arc<JobKind>,
    meta: &JobMeta,
    cx: Context,
    started: Instant,
    started_at: SystemTime,
) -> Context {
    if !wanted(monitor, meta) {
        return cx;
    }
    let observers = monitor.observers();
    let notify = observers.map(|_| {
        let span_context = cx.span().span_context().clone();
        // Without a process span of the monitor's own, the context's span
        // (if any) is the caller's, shared by many jobs: not a run id.
        let (run_id, trace_id) = if monitor.inner.traces && span_context.is_valid() {
            (
                Arc::from(span_context.span_id().to_string()),
                Some(Arc::from(span_context.trace_id().to_string())),
            )
        } else {
            static RUNS: AtomicU64 = AtomicU64::new(1);
            let n = RUNS.fetch_add(1, Ordering::Relaxed);
            (Arc::from(format!("{}-{n}", std::process::id())), None)
        };
        Notify {
            job: Arc::new(meta.clone()),
            run_id,
            trace_id,
        }
    });
    let run = RunState {
        monitor: monitor.clone(),
        kind: Arc::clone(kind),
        started,
        started_at,
        ticks: AtomicU64::new(0),
        total: AtomicU64::new(NO_TOTAL),
        used: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        element: Mutex::new(None),
        last_event_ms: AtomicU64::new(0),
        last_event_permille: AtomicU64::new(0),
        notify,
    };
    if let Some(observers) = observers
        && let Some(event) = run.event(EventKind::Started)
    {
        observers.dispatch(event);
    }
    cx.with_value(run)
}

impl RunState {
    fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            NO_TOTAL => None,
            total => Some(total),
        }
    }

    fn element(&self) -> Option<Arc<str>> {
        self.element
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn eta(&self) -> Option<Duration> {
        let (ticks, total) = (self.ticks(), self.total()?);
        if ticks == 0 {
            return None;
        }
        let left = total.saturating_sub(ticks) as f64;
        let per_tick = self.started.elapsed().as_secs_f64() / ticks as f64;
        Duration::try_from_secs_f64(per_tick * left).ok()
    }

    /// The progress so far, when the job reported any.
    pub(crate) fn snapshot(&self) -> Option<ProgressSnapshot> {
        self.used.load(Ordering::Relaxed).then(|| ProgressSnapshot {
            ticks: self.ticks(),
            total: self.total(),
            eta: self.eta(),
            element: self.element(),
        })
    }

    fn tick(&self, cx: &Context, n: u64) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        let ticks = self.ticks.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        self.mark_used(cx);
        self.maybe_report(cx, ticks);
    }

    fn set_total(&self, cx: &Context, total: u64) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        self.total.store(total.min(NO_TOTAL - 1), Ordering::Relaxed);
        self.mark_used(cx);
    }

    fn set_element(&self, element: &dyn Display) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        let text: Arc<str> = Arc::from(bounded_display(element, MAX_ELEMENT_LEN));
        *self.element.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
        self.used.store(true, Ordering::Relaxed);
    }

    /// On first use: join the monitor's gauge registry.
    fn mark_used(&self, cx: &Context) {
        if self.used.swap(true, Ordering::SeqCst) {
            return;
        }
        let registry = &self.monitor.inner.progress_registry;
        registry.ensure_gauge(&self.monitor.instruments().meter);
        let mut running = registry.lock();
        // Checked under the lock `finish` takes: a job that finished
        // meanwhile is not registered again.
        if !self.finished.load(Ordering::SeqCst) {
            running.push(cx.clone());
        }
    }

    fn maybe_report(&self, cx: &Context, ticks: u64) {
        let throttle = &self.monitor.inner.progress.throttle;
        let now_ms = millis(self.started.elapsed());
        let last = self.last_event_ms.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(millis(throttle.min_interval)) {
            return;
        }
        let total = self.total();
        let permille = total.map(|total| permille(ticks, total));
        let stepped = permille.is_some_and(|p| {
            p >= self
                .last_event_permille
                .load(Ordering::Relaxed)
                .saturating_add(throttle.step_permille())
        });
        let overdue = now_ms >= last.saturating_add(millis(throttle.max_interval));
        if !(stepped || overdue) {
            return;
        }
        // One thread wins the right to report this step.
        if self
            .last_event_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if let Some(p) = permille {
            self.last_event_permille.store(p, Ordering::Relaxed);
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
            if let Some(eta) = self.eta() {
                attrs.push(KeyValue::new(semconv::JOB_PROGRESS_ETA, eta.as_secs_f64()));
            }
            span.add_event(semconv::JOB_PROGRESS_EVENT, attrs);
        }
        if let Some(observers) = self.monitor.observers()
            && let Some(event) = self.event(EventKind::Progressed)
        {
            observers.dispatch(event);
        }
    }

    /// The tick count, total and element for an `exception` event.
    pub(crate) fn error_context(&self, attrs: &mut Vec<KeyValue>) {
        if !self.used.load(Ordering::Relaxed) {
            return;
        }
        attrs.push(KeyValue::new(
            semconv::JOB_PROGRESS_TICKS,
            as_i64(self.ticks()),
        ));
        if let Some(total) = self.total() {
            attrs.push(KeyValue::new(semconv::JOB_PROGRESS_TOTAL, as_i64(total)));
        }
        if let Some(element) = self.element() {
            attrs.push(KeyValue::new(semconv::JOB_PROGRESS_ELEMENT, element));
        }
    }

    /// An event about this attempt, when observers listen.
    pub(crate) fn event(&self, kind: EventKind) -> Option<Event> {
        let notify = self.notify.as_ref()?;
        let mut event = Event::new(kind, Arc::clone(&notify.job));
        event.run_id = Some(Arc::clone(&notify.run_id));
        event.trace_id = notify.trace_id.clone();
        event.started_at = Some(self.started_at);
        event.running_for = Some(self.started.elapsed());
        event.progress = self.snapshot();
        Some(event)
    }

    /// Ends the attempt: final progress attributes on the span, out of the
    /// gauge, and the closing event to observers.
    pub(crate) fn finish(
        &self,
        cx: &Context,
        outcome: Outcome,
        error: Option<&ErrorRecord>,
        kind: EventKind,
    ) {
        self.finished.store(true, Ordering::SeqCst);
        if self.used.load(Ordering::SeqCst) {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                semconv::JOB_PROGRESS_TICKS,
                as_i64(self.ticks()),
            ));
            if let Some(total) = self.total() {
                span.set_attribute(KeyValue::new(semconv::JOB_PROGRESS_TOTAL, as_i64(total)));
            }
            let mut running = self.monitor.inner.progress_registry.lock();
            running.retain(|other| {
                other
                    .get::<RunState>()
                    .is_none_or(|other| !std::ptr::eq(other, self))
            });
        }
        if let Some(observers) = self.monitor.observers()
            && let Some(mut event) = self.event(kind)
        {
            event.ended_at = Some(event.at);
            event.outcome = Some(outcome);
            event.error = error.cloned();
            observers.dispatch(event);
        }
    }

    /// A `Paused` or `Resumed` event.
    pub(crate) fn notify(&self, kind: EventKind) {
        if let Some(observers) = self.monitor.observers()
            && let Some(event) = self.event(kind)
        {
            observers.dispatch(event);
        }
    }
}

/// The running jobs that reported progress, for the `job.progress` gauge.
#[derive(Default)]
pub(crate) struct ProgressRegistry {
    running: Arc<Mutex<Vec<Context>>>,
    gauge: OnceLock<ObservableGauge<f64>>,
}

impl ProgressRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Context>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ensure_gauge(&self, meter: &Meter) {
        self.gauge.get_or_init(|| {
            let running = Arc::clone(&self.running);
            meter
                .f64_observable_gauge(semconv::METRIC_PROGRESS)
                .with_unit("1")
                .with_description(
                    "Progress of the running jobs of a kind that set a total: their ticks over their totals.",
                )
                .with_callback(move |observer| {
                    let running = running.lock().unwrap_or_else(PoisonError::into_inner);
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
                })
                .build()
        });
    }
}

/// Throttle and gauge settings of a monitor: off, default throttle.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProgressSettings {
    pub(crate) enabled: bool,
    pub(crate) throttle: ProgressThrottle,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::Observer;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    fn providers() -> (InMemorySpanExporter, SdkTracerProvider) {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        (spans, provider)
    }

    /// A monitor with progress on, recording spans in memory.
    fn traced_monitor() -> (InMemorySpanExporter, JobMonitor) {
        let (spans, provider) = providers();
        let monitor = JobMonitor::builder()
            .tracer_provider(&provider)
            .progress(true)
            .build();
        (spans, monitor)
    }

    /// The value of `key` among `attributes`.
    fn value_of(attributes: &[KeyValue], key: &str) -> Option<opentelemetry::Value> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    fn fast_throttle() -> ProgressThrottle {
        ProgressThrottle::default()
            .min_interval(Duration::ZERO)
            .max_interval(Duration::from_secs(3600))
    }

    fn meta() -> JobMeta {
        JobMeta::builder("test", "maintenance")
            .name("backfill")
            .build()
    }

    #[test]
    fn ticks_become_throttled_span_events_and_final_attributes() {
        let (spans, provider) = providers();
        let monitor = JobMonitor::builder()
            .tracer_provider(&provider)
            .progress(true)
            .progress_throttle(fast_throttle())
            .build();
        let tx = monitor.start(meta());
        {
            let _attached = tx.context().clone().attach();
            set_total(1000);
            for _ in 0..1000 {
                tick(1);
            }
        }
        tx.succeed();
        let span = &spans.get_finished_spans().unwrap()[0];
        let events: Vec<_> = span
            .events
            .iter()
            .filter(|e| e.name == semconv::JOB_PROGRESS_EVENT)
            .collect();
        // One per 10 %: 1000 ticks, 10 events, not 1000.
        assert_eq!(events.len(), 10, "{events:?}");
        let last_ticks = value_of(&events[9].attributes, semconv::JOB_PROGRESS_TICKS);
        assert_eq!(last_ticks, Some(opentelemetry::Value::I64(1000)));
        let attr = |k: &str| value_of(&span.attributes, k);
        assert_eq!(
            attr(semconv::JOB_PROGRESS_TICKS),
            Some(opentelemetry::Value::I64(1000))
        );
        assert_eq!(
            attr(semconv::JOB_PROGRESS_TOTAL),
            Some(opentelemetry::Value::I64(1000))
        );
    }

    #[test]
    fn the_default_throttle_keeps_a_short_job_quiet() {
        let (spans, monitor) = traced_monitor();
        let tx = monitor.start(meta());
        let progress = tx.progress().unwrap();
        progress.set_total(10);
        for _ in 0..10 {
            progress.tick(1);
        }
        tx.succeed();
        let span = &spans.get_finished_spans().unwrap()[0];
        assert!(span.events.is_empty(), "{:?}", span.events);
        // Ticks after the end change nothing.
        progress.tick(5);
        assert_eq!(progress.ticks(), 10);
    }

    #[test]
    fn errors_carry_the_tick_count_and_element() {
        let (spans, monitor) = traced_monitor();
        let tx = monitor.start(meta());
        {
            let _attached = tx.context().clone().attach();
            set_total(10);
            tick(3);
            set_element(format_args!("user {}", 42));
        }
        tx.fail(&std::io::Error::other("row locked"));
        let span = &spans.get_finished_spans().unwrap()[0];
        let exception = span.events.iter().find(|e| e.name == "exception").unwrap();
        let get = |k: &str| value_of(&exception.attributes, k);
        assert_eq!(
            get(semconv::JOB_PROGRESS_TICKS),
            Some(opentelemetry::Value::I64(3))
        );
        assert_eq!(
            get(semconv::JOB_PROGRESS_TOTAL),
            Some(opentelemetry::Value::I64(10))
        );
        assert_eq!(
            get(semconv::JOB_PROGRESS_ELEMENT).map(|v| v.as_str().into_owned()),
            Some("user 42".to_owned())
        );
    }

    #[test]
    fn observers_get_progress_with_an_eta_and_the_failure_context() {
        let seen = Arc::new(Mutex::new(Vec::<Event>::new()));
        let sink = Arc::clone(&seen);
        let observer = move |e: &Event| sink.lock().unwrap().push(e.clone());
        let monitor = JobMonitor::builder()
            .observer(observer)
            .progress_throttle(fast_throttle())
            .build();
        let tx = monitor.start(meta());
        let progress = tx.progress().unwrap();
        progress.set_total(4);
        std::thread::sleep(Duration::from_millis(20));
        progress.tick(1);
        progress.set_element("row 2");
        tx.fail(&std::io::Error::other("boom"));
        assert!(monitor.flush_observers(Duration::from_secs(5)));
        let seen = seen.lock().unwrap();
        let progressed = seen
            .iter()
            .find(|e| e.kind == EventKind::Progressed)
            .unwrap();
        let snapshot = progressed.progress.as_ref().unwrap();
        assert_eq!((snapshot.ticks, snapshot.total), (1, Some(4)));
        let eta = snapshot.eta.unwrap();
        assert!(eta >= Duration::from_millis(50), "{eta:?}");
        let failed = seen.iter().find(|e| e.kind == EventKind::Failed).unwrap();
        let snapshot = failed.progress.as_ref().unwrap();
        assert_eq!(snapshot.ticks, 1);
        assert_eq!(snapshot.element.as_deref(), Some("row 2"));
        assert_eq!(failed.error.as_ref().unwrap().message(), "boom");
    }

    #[test]
    fn gauge_reports_running_jobs_per_kind_only() {
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        let monitor = JobMonitor::builder()
            .meter_provider(&meter_provider)
            .progress(true)
            .build();
        let a = monitor.start(meta());
        let b = monitor.start(meta());
        for (tx, ticks) in [(&a, 10), (&b, 30)] {
            let progress = tx.progress().unwrap();
            progress.set_total(100);
            progress.tick(ticks);
        }
        let read = |exporter: &InMemoryMetricExporter| -> Vec<f64> {
            meter_provider.force_flush().unwrap();
            let mut values = Vec::new();
            for rm in exporter.get_finished_metrics().unwrap() {
                for sm in rm.scope_metrics() {
                    for m in sm.metrics() {
                        if m.name() != semconv::METRIC_PROGRESS {
                            continue;
                        }
                        if let AggregatedMetrics::F64(MetricData::Gauge(g)) = m.data() {
                            values.extend(g.data_points().map(|p| p.value()));
                        }
                    }
                }
            }
            exporter.reset();
            values
        };
        assert_eq!(read(&metrics), [0.2]);
        a.succeed();
        b.succeed();
        assert!(read(&metrics).is_empty());
        assert!(monitor.inner.progress_registry.lock().is_empty());
    }

    #[test]
    fn progress_is_off_by_default_except_for_tasks_and_observers() {
        struct Nothing;
        impl Observer for Nothing {
            fn observe(&mut self, _: &Event) -> Result<(), crate::observer::ObserveError> {
                Ok(())
            }
        }
        let monitor = JobMonitor::new();
        let tx = monitor.start(meta());
        assert!(tx.progress().is_none());
        tx.succeed();
        let task = monitor.start(JobMeta::builder(semconv::SYSTEM_TASK, "t").build());
        assert!(task.progress().is_some());
        task.succeed();
        // Observers still see progress: they need the run state anyway.
        let monitor = JobMonitor::builder()
            .progress(false)
            .observer(Nothing)
            .build();
        let tx = monitor.start(meta());
        assert!(tx.progress().is_some());
        tx.succeed();
    }
}
