//! Ticks, the throttle, the gauge and the observers' `Progressed` events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;

use super::*;
use crate::observer::JobEvent;
use crate::observer::Observer;
use crate::{JobMeta, JobMonitor};
use opentelemetry_sdk::metrics::InMemoryMetricExporter;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

fn providers() -> (InMemorySpanExporter, SdkTracerProvider) {
    let telemetry = jobsight_testkit::MemoryTelemetry::new();
    (
        telemetry.span_exporter().clone(),
        telemetry.tracer_provider().clone(),
    )
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
    let seen = Arc::new(Mutex::new(Vec::<JobEvent>::new()));
    let sink = Arc::clone(&seen);
    let observer = move |e: &JobEvent| sink.lock().unwrap().push(e.clone());
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
    assert!(monitor.observers().flush(Duration::from_secs(5)));
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
    let telemetry = jobsight_testkit::MemoryTelemetry::new();
    let (metrics, meter_provider) = (
        telemetry.metric_exporter().clone(),
        telemetry.meter_provider().clone(),
    );
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
    assert!(monitor.inner.progress_running.lock().is_empty());
}

#[test]
fn progress_is_off_by_default_except_for_tasks_and_observers() {
    struct Nothing;
    impl Observer for Nothing {
        fn observe(&mut self, _: &JobEvent) -> Result<(), crate::observer::ObserveError> {
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
