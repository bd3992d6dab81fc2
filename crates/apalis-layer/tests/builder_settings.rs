//! Every pair of `MonitorLayer::builder()` settings, given in both orders,
//! on a real worker (apalis's in-memory backend, SDK in-memory exporters),
//! and every pair of `SendLayer::builder()` settings on a real push: each
//! setting of the pair must show its effect in what was recorded (spans,
//! metrics, observer and check-in events, the job's progress handle), or
//! the pair must be refused at `build` with an error naming the setting.
//!
//! `catch_panics` is not in the matrix (it needs a panicking job; see
//! `memory_backend.rs`). The two tests take turns: both install global
//! providers between runs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use jobsight_apalis::{
    ArgsPolicy, CaptureArgs, CheckinEvent, CheckinPolicy, Checkins, DefaultClassifier, Error,
    EventKind, JobEvent, JobMonitor, MonitorLayer, MonitorLayerBuilder, MonitorWorkerExt,
    ProgressThrottle, Propagation, progress,
};
use opentelemetry::trace::{Span as _, SpanId, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum S {
    Monitor,
    Classifier,
    Propagation,
    PropagationForQueue,
    PropagationForJob,
    TracerProvider,
    MeterProvider,
    Observer,
    Progress,
    ProgressThrottle,
    Traces,
    DurationBuckets,
    QueueTimeBuckets,
    MaxKinds,
    Queue,
    JobName,
    MaxAttempts,
    Retries,
    Checkin,
    Checkins,
    RecordArgs,
}

const ALL: [S; 21] = [
    S::Monitor,
    S::Classifier,
    S::Propagation,
    S::PropagationForQueue,
    S::PropagationForJob,
    S::TracerProvider,
    S::MeterProvider,
    S::Observer,
    S::Progress,
    S::ProgressThrottle,
    S::Traces,
    S::DurationBuckets,
    S::QueueTimeBuckets,
    S::MaxKinds,
    S::Queue,
    S::JobName,
    S::MaxAttempts,
    S::Retries,
    S::Checkin,
    S::Checkins,
    S::RecordArgs,
];

impl S {
    /// The builder method's name when it configures the monitor.
    fn monitor_setting(self) -> Option<&'static str> {
        Some(match self {
            S::Classifier => "classifier",
            S::Propagation => "propagation",
            S::PropagationForQueue => "propagation_for_queue",
            S::PropagationForJob => "propagation_for_job",
            S::TracerProvider => "tracer_provider",
            S::MeterProvider => "meter_provider",
            S::Observer => "observer",
            S::Progress => "progress",
            S::ProgressThrottle => "progress_throttle",
            S::Traces => "traces",
            S::DurationBuckets => "duration_buckets",
            S::QueueTimeBuckets => "queue_time_buckets",
            S::MaxKinds => "max_kinds",
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("boom")]
struct Boom;

const QUEUE: &str = "q-set";
const OTHER_QUEUE: &str = "q-other";
const THIRD_QUEUE: &str = "q-third";
const NAME: &str = "named";

/// Whether the last job saw a progress handle.
static PROGRESS_SEEN: AtomicBool = AtomicBool::new(false);

/// Jobs 1 and 2 fail with `Boom`, job 3 succeeds; each ticks progress
/// and opens a span of its own (`inner`, attribute `task`).
async fn job(n: u32) -> Result<(), BoxDynError> {
    if progress::Progress::current().is_some() {
        PROGRESS_SEEN.store(true, Ordering::SeqCst);
    }
    progress::set_total(4);
    for _ in 0..4 {
        progress::tick(1);
    }
    let tracer = global::tracer("test-job");
    tracer
        .span_builder("inner")
        .with_attributes(vec![KeyValue::new("task", i64::from(n))])
        .start(&tracer);
    match n {
        3 => Ok(()),
        _ => Err(Boom.into()),
    }
}

struct Sinks {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Sinks {
    fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporterBuilder::new()
            .with_temporality(Temporality::Delta)
            .build();
        Self {
            tracer: SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .build(),
            meter: SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics.clone()).build())
                .build(),
            spans,
            metrics,
        }
    }

    fn take(&self) -> (Vec<SpanData>, Vec<ResourceMetrics>) {
        self.meter.force_flush().unwrap();
        let spans = self.spans.get_finished_spans().unwrap();
        let metrics = self.metrics.get_finished_metrics().unwrap();
        self.spans.reset();
        self.metrics.reset();
        (spans, metrics)
    }
}

impl Sinks {
    /// Makes these the global providers.
    fn install(&self) {
        global::set_tracer_provider(self.tracer.clone());
        global::set_meter_provider(self.meter.clone());
    }
}

/// The global providers when the process's default monitor first recorded:
/// it keeps them (it fetches them once), so layers that use it record
/// there. Monitors built from settings fetch the global providers current
/// at their first job: each run installs fresh ones for them, so that an
/// instrument created by an earlier run (with other buckets) is not reused.
fn default_monitor_sinks() -> &'static Sinks {
    static DEFAULT: std::sync::OnceLock<Sinks> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        let sinks = Sinks::new();
        sinks.install();
        global::set_text_map_propagator(TraceContextPropagator::new());
        // Bind the default monitor to these providers now.
        let _ = jobsight_apalis::default_monitor()
            .start(jobsight_apalis::JobMeta::builder("test", "warm-up").build());
        sinks
    })
}

/// What one run of a combination needs and records.
struct Run {
    index: usize,
    set: BTreeSet<S>,
    global: Sinks,
    local: Sinks,
    given: Sinks,
    given_monitor: JobMonitor,
    observed: Arc<Mutex<Vec<JobEvent>>>,
    checkin_events: Arc<Mutex<Vec<CheckinEvent>>>,
}

impl Run {
    fn new(index: usize, order: &[S]) -> Self {
        let given = Sinks::new();
        let given_monitor = JobMonitor::builder()
            .tracer_provider(&given.tracer)
            .meter_provider(&given.meter)
            .build();
        Self {
            index,
            set: order.iter().copied().collect(),
            global: Sinks::new(),
            local: Sinks::new(),
            given,
            given_monitor,
            observed: Arc::default(),
            checkin_events: Arc::default(),
        }
    }

    fn has(&self, s: S) -> bool {
        self.set.contains(&s)
    }

    /// Whether the layer records through the process's default monitor.
    fn uses_default_monitor(&self) -> bool {
        !self.has(S::Monitor) && self.set.iter().all(|s| s.monitor_setting().is_none())
    }

    fn queue(&self) -> &'static str {
        if self.has(S::Queue) { QUEUE } else { "u32" }
    }

    fn name(&self) -> &'static str {
        if self.has(S::JobName) { NAME } else { "u32" }
    }

    fn checkin_monitor(&self) -> String {
        format!("heartbeat-{}", self.index)
    }

    fn apply<A>(&self, b: MonitorLayerBuilder<A>, s: S) -> MonitorLayerBuilder<A> {
        match s {
            S::Monitor => b.monitor(self.given_monitor.clone()),
            S::Classifier => b.classifier(DefaultClassifier::new().ignore::<Boom>()),
            S::Propagation => b.propagation(Propagation::None),
            S::PropagationForQueue => b.propagation_for_queue(OTHER_QUEUE, Propagation::Child),
            S::PropagationForJob => b.propagation_for_job(self.name(), Propagation::Child),
            S::TracerProvider => b.tracer_provider(&self.local.tracer),
            S::MeterProvider => b.meter_provider(&self.local.meter),
            S::Observer => {
                let seen = Arc::clone(&self.observed);
                b.observer(move |e: &JobEvent| seen.lock().unwrap().push(e.clone()))
            }
            S::Progress => b.progress(true),
            S::ProgressThrottle => b.progress_throttle(
                ProgressThrottle::default()
                    .min_interval(Duration::ZERO)
                    .step(0.0),
            ),
            S::Traces => b.traces(false),
            S::DurationBuckets => b.duration_buckets([0.25, 0.75]),
            S::QueueTimeBuckets => b.queue_time_buckets([0.125]),
            S::MaxKinds => b.max_kinds(2),
            S::Queue => b.queue(QUEUE),
            S::JobName => b.job_name(NAME.to_string()),
            S::MaxAttempts => b.max_attempts(3),
            S::Retries => b.retries(1),
            S::Checkin => {
                b.checkin(CheckinPolicy::job(self.name()).monitor_name(self.checkin_monitor()))
            }
            S::Checkins => {
                let events = Arc::clone(&self.checkin_events);
                b.checkins(
                    Checkins::new()
                        .policy(
                            CheckinPolicy::job(self.name())
                                .monitor_name(format!("{}-registry", self.checkin_monitor())),
                        )
                        .sink(move |e: &CheckinEvent| events.lock().unwrap().push(e.clone())),
                )
            }
            S::RecordArgs => unreachable!("record_args changes the builder's type"),
        }
    }
}

/// The producer spans' ids, per task number.
type Producers = Vec<(u32, SpanId)>;

/// Pushes tasks 1 (no queue), 2 (`q-other`) and 3 (`q-third`), each
/// stamped inside a producer span of its own.
async fn push_tasks(storage: &mut MemoryStorage<u32>) -> Producers {
    let tracer = global::tracer("test-producer");
    let mut producers = Vec::new();
    for (n, queue) in [(1u32, None), (2, Some(OTHER_QUEUE)), (3, Some(THIRD_QUEUE))] {
        let span = tracer.start(format!("produce-{n}"));
        producers.push((n, span.span_context().span_id()));
        let cx = Context::current_with_span(span);
        let task = {
            let _attached = cx.clone().attach();
            let mut builder = jobsight_apalis::stamped_builder(TaskBuilder::new(n));
            if let Some(queue) = queue {
                builder = builder.queue(queue.into());
            }
            builder.build()
        };
        cx.span().end();
        storage.push_task(task).await.unwrap();
    }
    producers
}

fn stop_after(n: usize) -> impl Fn(&WorkerContext, &Event) + Send + Sync + 'static {
    let seen = Arc::new(AtomicUsize::new(0));
    move |w: &WorkerContext, ev: &Event| {
        if matches!(ev, Event::Success(_) | Event::Error(_))
            && seen.fetch_add(1, Ordering::SeqCst) + 1 == n
        {
            let _ = w.stop();
        }
    }
}

/// What a run left behind.
struct Evidence {
    /// Every span, from whichever provider got it.
    spans: Vec<SpanData>,
    /// The spans in the global, local and given tracer providers.
    process_in: [usize; 3],
    /// Metrics from the meter provider the monitor was meant to use, and
    /// whether any job metric reached another one.
    metrics: Vec<ResourceMetrics>,
    stray_metrics: bool,
    producers: Producers,
    /// The layer's monitor, when the layer was built on its own.
    monitor: Option<JobMonitor>,
    progress_seen: bool,
}

async fn run_worker<A>(
    run: &Run,
    builder: MonitorLayerBuilder<A>,
) -> Result<(Producers, Option<JobMonitor>), Error>
where
    A: CaptureArgs<u32>,
{
    let mut storage = MemoryStorage::new();
    let producers = push_tasks(&mut storage).await;
    let worker = WorkerBuilder::new(format!("pairs-{}", run.index))
        .backend(storage)
        .concurrency(1);
    // With `retries` only the worker can build the layer; otherwise build
    // it on its own, so that its monitor can be asked.
    if run.has(S::Retries) {
        let worker = worker.monitor(builder)?.on_event(stop_after(3)).build(job);
        finish(worker.run()).await;
        Ok((producers, None))
    } else {
        let layer = builder.build()?;
        let monitor = layer.monitor().clone();
        let worker = worker.layer(layer).on_event(stop_after(3)).build(job);
        finish(worker.run()).await;
        Ok((producers, Some(monitor)))
    }
}

async fn finish<E: std::fmt::Debug>(run: impl std::future::Future<Output = Result<(), E>>) {
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("worker finished in time")
        .expect("worker ran");
}

async fn execute(run: &Run, order: &[S]) -> Result<Evidence, Error> {
    PROGRESS_SEEN.store(false, Ordering::SeqCst);
    let default = default_monitor_sinks();
    default.take();
    run.global.install();
    let args = || ArgsPolicy::new().all_jobs();
    let (producers, monitor) = match order.iter().position(|s| *s == S::RecordArgs) {
        None => {
            let b = order
                .iter()
                .fold(MonitorLayer::builder(), |b, s| run.apply(b, *s));
            run_worker(run, b).await?
        }
        Some(i) => {
            let before = order[..i]
                .iter()
                .fold(MonitorLayer::builder(), |b, s| run.apply(b, *s));
            let b = order[i + 1..]
                .iter()
                .fold(before.record_args(args()), |b, s| run.apply(b, *s));
            run_worker(run, b).await?
        }
    };
    if let Some(monitor) = &monitor {
        assert!(monitor.observers().flush(Duration::from_secs(5)));
    } else {
        // Observer threads deliver asynchronously: wait for the last event.
        for _ in 0..200 {
            if !run.has(S::Observer) || run.observed.lock().unwrap().len() >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (d_spans, d_metrics) = default.take();
    let (mut g_spans, g_metrics) = run.global.take();
    g_spans.extend(d_spans);
    let g_metrics = if run.uses_default_monitor() {
        if has_job_metrics(&g_metrics) {
            panic!("a layer on the default monitor recorded on the current global provider");
        }
        d_metrics
    } else {
        if has_job_metrics(&d_metrics) {
            panic!("a layer with monitor settings recorded on the default monitor");
        }
        g_metrics
    };
    let (l_spans, l_metrics) = run.local.take();
    let (v_spans, v_metrics) = run.given.take();
    let process = |spans: &[SpanData]| {
        spans
            .iter()
            .filter(|s| s.name.starts_with("process "))
            .count()
    };
    let process_in = [process(&g_spans), process(&l_spans), process(&v_spans)];
    let (metrics, others) = if run.has(S::Monitor) {
        (v_metrics, [g_metrics, l_metrics])
    } else if run.has(S::MeterProvider) {
        (l_metrics, [g_metrics, v_metrics])
    } else {
        (g_metrics, [l_metrics, v_metrics])
    };
    let stray_metrics = others.iter().any(|m| has_job_metrics(m));
    let mut spans = g_spans;
    spans.extend(l_spans);
    spans.extend(v_spans);
    Ok(Evidence {
        spans,
        process_in,
        metrics,
        stray_metrics,
        producers,
        monitor,
        progress_seen: PROGRESS_SEEN.load(Ordering::SeqCst),
    })
}

fn has_job_metrics(metrics: &[ResourceMetrics]) -> bool {
    metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .any(|m| m.name() == "messaging.client.consumed.messages")
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The sums of a u64 counter per value of attribute `key`.
fn counter_by(metrics: &[ResourceMetrics], name: &str, key: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for m in metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
    {
        if m.name() != name {
            continue;
        }
        if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
            for p in sum.data_points() {
                let value = p
                    .attributes()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| kv.value.as_str().into_owned())
                    .unwrap_or_default();
                out.push((value, p.value()));
            }
        }
    }
    out
}

fn histogram_bounds(metrics: &[ResourceMetrics], name: &str) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for m in metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
    {
        if m.name() != name {
            continue;
        }
        if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
            out.extend(h.data_points().map(|p| p.bounds().collect::<Vec<_>>()));
        }
    }
    out
}

fn gauge_names(metrics: &[ResourceMetrics], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
    {
        if m.name() != name {
            continue;
        }
        if let AggregatedMetrics::I64(MetricData::Gauge(g)) = m.data() {
            for p in g.data_points() {
                out.extend(
                    p.attributes()
                        .filter(|kv| kv.key.as_str() == "job.name")
                        .map(|kv| kv.value.as_str().into_owned()),
                );
            }
        }
    }
    out
}

impl Evidence {
    fn process_spans(&self, queue: &str) -> Vec<&SpanData> {
        let name = format!("process {queue}");
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    fn inner_span(&self, task: u32) -> &SpanData {
        self.spans
            .iter()
            .find(|s| s.name == "inner" && attr(s, "task") == Some(task.to_string()))
            .expect("the job's own span")
    }

    fn producer(&self, task: u32) -> SpanId {
        self.producers
            .iter()
            .find(|(n, _)| *n == task)
            .map(|(_, id)| *id)
            .expect("producer span")
    }

    fn outcomes(&self) -> BTreeSet<String> {
        counter_by(&self.metrics, "job.outcomes", "job.outcome")
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }

    /// Whether task `n` (on `queue`) was run as a child of its producer.
    fn is_child(&self, run: &Run, n: u32, queue: &str) -> bool {
        let producer = self.producer(n);
        if run.has(S::Traces) {
            self.inner_span(n).parent_span_id == producer
        } else {
            let spans = self.process_spans(queue);
            !spans.is_empty() && spans.iter().all(|s| s.parent_span_id == producer)
        }
    }

    fn resolver(&self) -> &JobMonitor {
        self.monitor.as_ref().expect("the layer's monitor")
    }
}

/// Asserts that `s` took effect in `run`; panics naming it otherwise.
fn check(s: S, run: &Run, e: &Evidence) {
    let traces = !run.has(S::Traces);
    let observed = run.observed.lock().unwrap().clone();
    let queue = run.queue();
    match s {
        S::Monitor => {
            assert!(e.process_in[2] > 0 || !traces, "spans in the given monitor");
            assert!(
                !e.stray_metrics,
                "metrics only in the given monitor's meter"
            );
            assert!(!e.metrics.is_empty());
        }
        S::Classifier => {
            let outcomes = e.outcomes();
            assert!(outcomes.contains("ignored"), "{outcomes:?}");
            assert!(
                !outcomes.contains("failed") && !outcomes.contains("retried"),
                "{outcomes:?}"
            );
        }
        S::Propagation => {
            if traces && !run.has(S::PropagationForJob) {
                for s in e.process_spans(queue) {
                    assert!(s.links.links.is_empty(), "no link in mode None");
                    assert_eq!(s.parent_span_id, SpanId::INVALID);
                }
                assert!(!e.process_spans(queue).is_empty());
            } else {
                assert_eq!(
                    e.resolver().propagation_for("elsewhere", "nobody"),
                    Propagation::None
                );
            }
        }
        S::PropagationForQueue => {
            if run.has(S::PropagationForJob) {
                assert_eq!(
                    e.resolver().propagation_for(OTHER_QUEUE, "nobody"),
                    Propagation::Child
                );
            } else {
                assert!(
                    e.is_child(run, 2, OTHER_QUEUE),
                    "task 2 on {OTHER_QUEUE} is a child"
                );
            }
        }
        S::PropagationForJob => {
            assert!(
                e.is_child(run, 1, queue),
                "task 1 is a child by its job name"
            );
        }
        S::TracerProvider => {
            assert_eq!(e.process_in[0], 0, "no process span on the global provider");
            assert!(
                e.process_in[1] > 0 || !traces,
                "process spans on the given provider"
            );
        }
        S::MeterProvider => {
            assert!(
                !e.stray_metrics,
                "job metrics only on the given meter provider"
            );
            assert!(!e.metrics.is_empty());
        }
        S::Observer => {
            let started = observed
                .iter()
                .filter(|ev| ev.kind == EventKind::Started)
                .count();
            assert!(started >= 3, "observer saw {started} starts");
        }
        S::Progress => assert!(e.progress_seen, "the job had a progress handle"),
        S::ProgressThrottle => {
            if e.progress_seen {
                let in_spans = e
                    .spans
                    .iter()
                    .flat_map(|s| s.events.iter())
                    .filter(|ev| ev.name == "job.progress")
                    .count();
                let in_events = observed
                    .iter()
                    .filter(|ev| ev.kind == EventKind::Progressed)
                    .count();
                assert!(
                    in_spans + in_events >= 3,
                    "unthrottled progress: {in_spans} + {in_events}"
                );
            }
            // Progress off: the throttle has nothing to act on.
        }
        S::Traces => {
            assert_eq!(e.process_in, [0, 0, 0], "no process span");
            assert!(e.spans.iter().any(|s| s.name == "inner"));
        }
        S::DurationBuckets => {
            let bounds = histogram_bounds(&e.metrics, "messaging.process.duration");
            assert!(!bounds.is_empty());
            assert!(bounds.iter().all(|b| b == &[0.25, 0.75]), "{bounds:?}");
        }
        S::QueueTimeBuckets => {
            let bounds = histogram_bounds(&e.metrics, "job.queue_time");
            assert!(!bounds.is_empty());
            assert!(bounds.iter().all(|b| b == &[0.125]), "{bounds:?}");
        }
        S::MaxKinds => {
            let queues = counter_by(
                &e.metrics,
                "messaging.client.consumed.messages",
                "messaging.destination.name",
            );
            assert!(queues.iter().any(|(q, _)| q == "_other"), "{queues:?}");
        }
        S::Queue => {
            let queues = counter_by(
                &e.metrics,
                "messaging.client.consumed.messages",
                "messaging.destination.name",
            );
            assert!(queues.iter().any(|(q, _)| q == QUEUE), "{queues:?}");
        }
        S::JobName => {
            let names = counter_by(&e.metrics, "messaging.client.consumed.messages", "job.name");
            assert!(names.iter().any(|(n, _)| n == NAME), "{names:?}");
            assert!(!names.iter().any(|(n, _)| n == "u32"), "{names:?}");
        }
        S::MaxAttempts => {
            if traces {
                for s in e.process_spans(queue) {
                    assert_eq!(attr(s, "job.max_attempts").as_deref(), Some("3"));
                }
            } else {
                assert!(e.outcomes().contains("retried"), "{:?}", e.outcomes());
            }
        }
        S::Retries => {
            let runs: u64 =
                counter_by(&e.metrics, "messaging.client.consumed.messages", "job.name")
                    .iter()
                    .map(|(_, n)| n)
                    .sum();
            assert_eq!(runs, 5, "tasks 1 and 2 run twice, task 3 once");
        }
        S::Checkin => {
            let names = gauge_names(&e.metrics, "job.checkin.last_success");
            assert!(names.contains(&run.checkin_monitor()), "{names:?}");
        }
        S::Checkins => {
            let events = run.checkin_events.lock().unwrap();
            assert!(
                events.len() >= 6,
                "in_progress and an end for 3 runs: {}",
                events.len()
            );
        }
        S::RecordArgs => {
            if traces {
                let spans = e.process_spans(queue);
                assert!(!spans.is_empty());
                for s in spans {
                    assert_eq!(attr(s, "job.args").as_deref(), Some("1"));
                }
            } else if run.has(S::Observer) {
                assert!(
                    observed
                        .iter()
                        .any(|ev| ev.job.args().map(|a| a.as_str()) == Some("1"))
                );
            }
            // Neither spans nor observers: arguments have nowhere to go.
        }
    }
}

/// The error a pair must be refused with, if any.
fn refusal(a: S, b: S) -> Option<fn(&Error, S, S) -> bool> {
    let pair = |x: S, y: S| (a == x && b == y) || (a == y && b == x);
    if pair(S::Checkin, S::Checkins) {
        return Some(|e, _, _| matches!(e, Error::CheckinAndCheckins));
    }
    if pair(S::Retries, S::MaxAttempts) {
        return Some(|e, _, _| matches!(e, Error::RetriesAndMaxAttempts));
    }
    if (a == S::Monitor && b.monitor_setting().is_some())
        || (b == S::Monitor && a.monitor_setting().is_some())
    {
        return Some(|e, a, b| {
            let setting = a.monitor_setting().or(b.monitor_setting());
            matches!(e, Error::MonitorAndMonitorSetting { setting: s, .. } if Some(*s) == setting)
        });
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_of_settings_keeps_both_in_either_order() {
    let _one = SEQUENTIAL.lock().await;
    default_monitor_sinks();
    let mut index = 0;
    for (i, &a) in ALL.iter().enumerate() {
        for &b in &ALL[i + 1..] {
            for order in [[a, b], [b, a]] {
                index += 1;
                let run = Run::new(index, &order);
                let result = execute(&run, &order).await;
                match (refusal(a, b), result) {
                    (Some(expected), Err(error)) => {
                        assert!(expected(&error, a, b), "{order:?}: wrong error {error}");
                    }
                    (Some(_), Ok(_)) => panic!("{order:?}: should have been refused"),
                    (None, Err(error)) => panic!("{order:?}: refused: {error}"),
                    (None, Ok(evidence)) => {
                        for s in order {
                            let checked =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    check(s, &run, &evidence)
                                }));
                            if checked.is_err() {
                                panic!("{order:?}: {s:?} did not take effect");
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(index, 21 * 20);
}

/// The settings of `SendLayer::builder()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum P {
    Monitor,
    TracerProvider,
    MeterProvider,
    Observer,
    MaxKinds,
    Queue,
    JobName,
    GenerateIds,
}

const ALL_SEND: [P; 8] = [
    P::Monitor,
    P::TracerProvider,
    P::MeterProvider,
    P::Observer,
    P::MaxKinds,
    P::Queue,
    P::JobName,
    P::GenerateIds,
];

impl P {
    fn monitor_setting(self) -> Option<&'static str> {
        Some(match self {
            P::TracerProvider => "tracer_provider",
            P::MeterProvider => "meter_provider",
            P::Observer => "observer",
            P::MaxKinds => "max_kinds",
            _ => return None,
        })
    }
}

fn apply_send(
    b: jobsight_apalis::SendLayerBuilder,
    p: P,
    run: &Run,
) -> jobsight_apalis::SendLayerBuilder {
    match p {
        P::Monitor => b.monitor(run.given_monitor.clone()),
        P::TracerProvider => b.tracer_provider(&run.local.tracer),
        P::MeterProvider => b.meter_provider(&run.local.meter),
        P::Observer => {
            let seen = Arc::clone(&run.observed);
            b.observer(move |e: &JobEvent| seen.lock().unwrap().push(e.clone()))
        }
        P::MaxKinds => b.max_kinds(2),
        P::Queue => b.queue(QUEUE),
        P::JobName => b.job_name(NAME),
        P::GenerateIds => b.generate_ids::<apalis_core::task::task_id::RandomId>(),
    }
}

/// Pushes tasks 1 (no queue), 2 and 3 (queues of their own) through a
/// `SendLayer` built with `order`, and checks each setting's effect.
async fn send_pair(index: usize, order: [P; 2]) -> Result<(), Error> {
    use tower::{Layer as _, Service as _, ServiceExt as _};
    let run = Run::new(index, &[]);
    let has = |p: P| order.contains(&p);
    let default = default_monitor_sinks();
    default.take();
    run.global.install();
    let layer = order
        .iter()
        .fold(jobsight_apalis::SendLayer::builder(), |b, p| {
            apply_send(b, *p, &run)
        })
        .build()?;
    let accept = tower::service_fn(|_task: Task<u32>| async { Ok::<_, std::io::Error>(()) });
    let mut service = layer.layer(accept);
    for (n, queue) in [(1u32, None), (2, Some(OTHER_QUEUE)), (3, Some(THIRD_QUEUE))] {
        let mut builder = TaskBuilder::new(n);
        if let Some(queue) = queue {
            builder = builder.queue(queue.into());
        }
        service
            .ready()
            .await
            .unwrap()
            .call(builder.build())
            .await
            .unwrap();
    }
    assert!(layer.monitor().observers().flush(Duration::from_secs(5)));
    let monitor_settings = order.iter().any(|p| p.monitor_setting().is_some());
    let (d_spans, d_metrics) = default.take();
    let (g_spans, g_metrics) = run.global.take();
    let (l_spans, l_metrics) = run.local.take();
    let (v_spans, v_metrics) = run.given.take();
    let (spans, metrics, stray) = if has(P::Monitor) {
        (v_spans, v_metrics, [d_metrics, g_metrics, l_metrics])
    } else if has(P::MeterProvider) || has(P::TracerProvider) {
        let spans = if has(P::TracerProvider) {
            l_spans
        } else {
            g_spans
        };
        let (metrics, stray) = if has(P::MeterProvider) {
            (l_metrics, [d_metrics, g_metrics, v_metrics])
        } else {
            (g_metrics, [d_metrics, l_metrics, v_metrics])
        };
        (spans, metrics, stray)
    } else if monitor_settings {
        (g_spans, g_metrics, [d_metrics, l_metrics, v_metrics])
    } else {
        (d_spans, d_metrics, [g_metrics, l_metrics, v_metrics])
    };
    let sends: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("send "))
        .collect();
    let sent = |key: &str| counter_by(&metrics, "messaging.client.sent.messages", key);
    let stray_sent = stray
        .iter()
        .any(|m| !counter_by(m, "messaging.client.sent.messages", "job.name").is_empty());
    for p in order {
        let ok = match p {
            P::Monitor | P::MeterProvider => !stray_sent && !sent("job.name").is_empty(),
            P::TracerProvider => sends.len() == 3,
            P::Observer => {
                let observed = run.observed.lock().unwrap();
                observed
                    .iter()
                    .filter(|e| e.kind == EventKind::Enqueued)
                    .count()
                    == 3
            }
            P::MaxKinds => sent("messaging.destination.name")
                .iter()
                .any(|(q, _)| q == "_other"),
            P::Queue => sends.iter().any(|s| s.name == format!("send {QUEUE}")),
            P::JobName => sent("job.name").iter().any(|(n, _)| n == NAME),
            P::GenerateIds => {
                sends.len() == 3
                    && sends
                        .iter()
                        .all(|s| attr(s, "messaging.message.id").is_some())
            }
        };
        assert!(ok, "SendLayer {order:?}: {p:?} did not take effect");
    }
    assert_eq!(
        sends.len(),
        3,
        "SendLayer {order:?}: every push is a send span where expected"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_of_send_settings_keeps_both_in_either_order() {
    // Both matrices swap the global providers: one at a time.
    let _one = SEQUENTIAL.lock().await;
    let mut index = 10_000;
    for (i, &a) in ALL_SEND.iter().enumerate() {
        for &b in &ALL_SEND[i + 1..] {
            for order in [[a, b], [b, a]] {
                index += 1;
                let conflict = (a == P::Monitor && b.monitor_setting().is_some())
                    || (b == P::Monitor && a.monitor_setting().is_some());
                match (conflict, send_pair(index, order).await) {
                    (true, Err(Error::MonitorAndMonitorSetting { setting, layer })) => {
                        assert_eq!(layer, "SendLayer");
                        assert_eq!(Some(setting), a.monitor_setting().or(b.monitor_setting()));
                    }
                    (true, other) => {
                        panic!("SendLayer {order:?}: should be refused, got {other:?}")
                    }
                    (false, Err(error)) => panic!("SendLayer {order:?}: refused: {error}"),
                    (false, Ok(())) => {}
                }
            }
        }
    }
    assert_eq!(index, 10_000 + 8 * 7);
}

static SEQUENTIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
