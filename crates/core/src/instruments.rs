//! The tracer and the metric instruments one [`crate::JobMonitor`] records with.

use std::borrow::Cow;

use opentelemetry::InstrumentationScope;
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

use crate::semconv;

/// The tracer and instruments, built once per monitor.
pub(crate) struct Instruments {
    pub(crate) tracer: BoxedTracer,
    /// For instruments registered on first use (the progress gauge).
    pub(crate) meter: Meter,
    pub(crate) duration: Histogram<f64>,
    pub(crate) queue_time: Histogram<f64>,
    pub(crate) consumed: Counter<u64>,
    pub(crate) outcomes: Counter<u64>,
    pub(crate) active: UpDownCounter<i64>,
    /// Producer side (see `crate::send`).
    pub(crate) sent: Counter<u64>,
    pub(crate) send_duration: Histogram<f64>,
    /// Propagated contexts dropped as too long or invalid.
    pub(crate) propagation_invalid: Counter<u64>,
    pub(crate) retries: Counter<u64>,
    pub(crate) overflow: Counter<u64>,
    /// Unique in the process: which monitor's instruments a job kind's
    /// bound handles belong to (see `bound.rs`; read only with the
    /// `bound-instruments` feature).
    #[cfg_attr(not(feature = "bound-instruments"), allow(dead_code))]
    pub(crate) id: u64,
}

/// Histogram bucket boundaries (s) the instruments are built with.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buckets {
    pub(crate) duration: Option<Vec<f64>>,
    pub(crate) queue_time: Option<Vec<f64>>,
}

/// The instrumentation scope jobsight records under: crate name and version.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(semconv::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(semconv::SCHEMA_URL)
        .build()
}

impl Instruments {
    /// Builds the instruments from `tracer` and `meter`, or from the global
    /// providers where they are not given.
    pub(crate) fn new(
        tracer: Option<BoxedTracer>,
        meter: Option<Meter>,
        buckets: &Buckets,
    ) -> Self {
        let tracer = tracer.unwrap_or_else(|| global::tracer_with_scope(scope()));
        let meter = meter.unwrap_or_else(|| global::meter_with_scope(scope()));
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tracer,
            meter: meter.clone(),
            duration: meter
                .f64_histogram(semconv::METRIC_PROCESS_DURATION)
                .with_unit("s")
                .with_description("Duration of processing one attempt of a job.")
                .with_boundaries(
                    buckets
                        .duration
                        .clone()
                        .unwrap_or_else(|| semconv::DURATION_BUCKETS.to_vec()),
                )
                .build(),
            queue_time: meter
                .f64_histogram(semconv::METRIC_QUEUE_TIME)
                .with_unit("s")
                .with_description("Time a job waited between becoming due and starting.")
                .with_boundaries(
                    buckets
                        .queue_time
                        .clone()
                        .unwrap_or_else(|| semconv::QUEUE_TIME_BUCKETS.to_vec()),
                )
                .build(),
            consumed: meter
                .u64_counter(semconv::METRIC_CONSUMED_MESSAGES)
                .with_unit("{message}")
                .with_description("Jobs taken from a queue and processed, per attempt.")
                .build(),
            outcomes: meter
                .u64_counter(semconv::METRIC_OUTCOMES)
                .with_unit("{attempt}")
                .with_description("Job attempts by outcome.")
                .build(),
            active: meter
                .i64_up_down_counter(semconv::METRIC_ACTIVE)
                .with_unit("{job}")
                .with_description("Jobs running now.")
                .build(),
            sent: meter
                .u64_counter(semconv::METRIC_SENT_MESSAGES)
                .with_unit("{message}")
                .with_description("Jobs a producer tried to enqueue.")
                .build(),
            send_duration: meter
                .f64_histogram(semconv::METRIC_CLIENT_OPERATION_DURATION)
                .with_unit("s")
                .with_description("Duration of enqueueing one job.")
                .with_boundaries(semconv::CLIENT_OPERATION_BUCKETS.to_vec())
                .build(),
            propagation_invalid: meter
                .u64_counter(semconv::METRIC_PROPAGATION_INVALID)
                .with_unit("{attempt}")
                .with_description(
                    "Job attempts whose propagated trace context was dropped as too long or invalid.",
                )
                .build(),
            retries: meter
                .u64_counter(semconv::METRIC_RETRIES)
                .with_unit("{attempt}")
                .with_description("Job attempts that started as a retry (attempt > 1).")
                .build(),
            overflow: meter
                .u64_counter(semconv::METRIC_CARDINALITY_OVERFLOW)
                .with_unit("{attempt}")
                .with_description(
                    "Job attempts recorded under `_other`: the limit of distinct (queue, job name) pairs was reached.",
                )
                .build(),
        }
    }
}

/// Interns `text` for the life of the process. Used for span names, which the
/// tracing API wants as `Cow<'static, str>`: interning once per job kind
/// keeps the per-job path free of string copies. Bounded by the number of
/// job kinds, which the monitor caps.
pub(crate) fn intern(text: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Mutex::new(HashSet::new()));
    let mut names = match names.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(found) = names.get(text.as_str()) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// `Cow` from an interned name.
pub(crate) fn interned_cow(text: String) -> Cow<'static, str> {
    Cow::Borrowed(intern(text))
}
