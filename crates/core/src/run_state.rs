//! [`RunState`]: what one running attempt shares between its transaction,
//! the job's code (through the OpenTelemetry context) and the progress
//! gauge — the attempt's identity for observers, its clocks and its
//! progress counters. [`crate::progress`] moves the counters and
//! [`crate::observer`] turns the state into events; this module only holds
//! it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt;

use crate::job::JobMeta;
use crate::kinds::JobKind;
use crate::monitor::JobMonitor;
use crate::observer::event::ProgressSnapshot;
use crate::semconv;

/// The `total` of an attempt that set none.
pub(crate) const NO_TOTAL: u64 = u64::MAX;

/// The identity of one attempt for observers.
pub(crate) struct Notify {
    pub(crate) job: Arc<JobMeta>,
    pub(crate) run_id: Arc<str>,
    pub(crate) trace_id: Option<Arc<str>>,
}

/// What one running attempt shares between the transaction, the job's code
/// (through the context) and the progress gauge.
pub(crate) struct RunState {
    pub(crate) monitor: JobMonitor,
    pub(crate) kind: Arc<JobKind>,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) ticks: AtomicU64,
    pub(crate) total: AtomicU64,
    /// Whether the job reported any progress.
    pub(crate) used: AtomicBool,
    pub(crate) finished: AtomicBool,
    pub(crate) element: Mutex<Option<Arc<str>>>,
    /// When (ms since `started`) and at which ratio (‰) the last progress
    /// event was sent.
    pub(crate) last_event_ms: AtomicU64,
    pub(crate) last_event_permille: AtomicU64,
    /// `None` when no observer listens.
    pub(crate) notify: Option<Notify>,
}

/// Whether [`begin`] puts a run state into the job's context: progress is
/// on, observers listen, or the job is a [`crate::task`].
pub(crate) fn wanted(monitor: &JobMonitor, meta: &JobMeta) -> bool {
    monitor.observers().is_listening()
        || monitor.inner.progress.enabled
        || meta.system() == semconv::SYSTEM_TASK
}

/// `cx` with a new [`RunState`] in it when [`wanted`], else `None`.
pub(crate) fn begin(
    monitor: &JobMonitor,
    kind: &Arc<JobKind>,
    meta: &JobMeta,
    cx: &Context,
    started: Instant,
    started_at: SystemTime,
) -> Option<Context> {
    if !wanted(monitor, meta) {
        return None;
    }
    let notify = monitor.observers().is_listening().then(|| {
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
    Some(cx.with_value(RunState {
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
    }))
}

impl RunState {
    /// Ticks so far.
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// The total, when set.
    pub(crate) fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            NO_TOTAL => None,
            total => Some(total),
        }
    }

    /// The element being processed, when set.
    pub(crate) fn element(&self) -> Option<Arc<str>> {
        self.element
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Time running × ticks left ÷ ticks done.
    pub(crate) fn eta(&self) -> Option<Duration> {
        let (ticks, total) = (self.ticks(), self.total()?);
        if ticks == 0 {
            return None;
        }
        let left = total.saturating_sub(ticks) as f64;
        let per_tick = self.started.elapsed().as_secs_f64() / ticks as f64;
        Duration::try_from_secs_f64(per_tick * left).ok()
    }

    /// Whether the attempt has finished (progress reported later is
    /// ignored).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
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
}
