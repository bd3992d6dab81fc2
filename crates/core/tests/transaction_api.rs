//! The public `Transaction` and `JobMeta` API as a custom runner uses it:
//! what each call leaves on the span, the metrics and the observers.

use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobsight_core::checkin::{CheckinPolicy, Checkins};
use jobsight_core::{
    ArgsPolicy, ErrorClass, ErrorRecord, EventKind, JobEvent, JobMeta, JobMonitor, Outcome,
};
use jobsight_testkit::{MemoryTelemetry, span_attr, span_attr_str};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::trace::SpanData;

fn monitor(t: &MemoryTelemetry) -> JobMonitor {
    JobMonitor::builder()
        .tracer_provider(t.tracer_provider())
        .meter_provider(t.meter_provider())
        .build()
}

fn meta() -> JobMeta {
    JobMeta::builder("test", "emails").name("welcome").build()
}

fn only_span(t: &MemoryTelemetry) -> SpanData {
    let spans = t.spans_named("process emails");
    assert_eq!(spans.len(), 1, "{spans:?}");
    spans.into_iter().next().unwrap()
}

/// (count, sum) of the f64 histogram `name` over every point.
fn histogram(t: &MemoryTelemetry, name: &str) -> (u64, f64) {
    let collections = t.collect();
    let mut out = (0, 0.0);
    if let Some(last) = collections.last() {
        for m in last
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .filter(|m| m.name() == name)
        {
            if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                for p in h.data_points() {
                    out.0 += p.count();
                    out.1 += p.sum();
                }
            }
        }
    }
    out
}

fn events(span: &SpanData) -> Vec<String> {
    span.events.iter().map(|e| e.name.to_string()).collect()
}

#[test]
fn active_jobs_go_up_at_start_and_back_down_however_the_attempt_ends() {
    let t = MemoryTelemetry::new();
    let m = monitor(&t);
    let a = m.start(meta());
    assert_eq!(t.sum_total("job.active"), 1);
    let b = m.start(meta());
    let c = m.start(meta());
    let d = m.start(meta());
    let e = m.start(meta());
    assert_eq!(t.sum_total("job.active"), 5);
    a.succeed();
    assert_eq!(t.sum_total("job.active"), 4);
    let _ = b.fail(&std::io::Error::other("x"));
    c.panicked("boom");
    d.finish(Outcome::Ignored);
    drop(e);
    assert_eq!(t.sum_total("job.active"), 0);
}

#[test]
fn event_lands_on_the_process_span_with_its_attributes() {
    let t = MemoryTelemetry::new();
    let tx = monitor(&t).start(meta());
    tx.event("cache.miss", vec![KeyValue::new("cache.key", "user:7")]);
    tx.succeed();
    let span = only_span(&t);
    let ev = span
        .events
        .iter()
        .find(|e| e.name == "cache.miss")
        .expect("the event");
    assert_eq!(ev.attributes, vec![KeyValue::new("cache.key", "user:7")]);
}

#[test]
fn paused_and_resumed_reach_the_span_and_the_observers() {
    let t = MemoryTelemetry::new();
    let (send, seen) = mpsc::channel();
    let m = JobMonitor::builder()
        .tracer_provider(t.tracer_provider())
        .meter_provider(t.meter_provider())
        .observer(move |e: &JobEvent| {
            let _ = send.send(e.kind);
        })
        .build();
    let tx = m.start(meta());
    tx.paused();
    tx.resumed();
    tx.succeed();
    assert!(m.observers().flush(Duration::from_secs(30)));
    let span = only_span(&t);
    let names = events(&span);
    assert_eq!(names, ["job.paused", "job.resumed"]);
    let kinds: Vec<EventKind> = seen.try_iter().collect();
    assert_eq!(
        kinds,
        [
            EventKind::Started,
            EventKind::Paused,
            EventKind::Resumed,
            EventKind::Succeeded
        ]
    );
}

#[test]
fn finish_uses_the_recorded_error_and_marks_only_error_outcomes() {
    let t = MemoryTelemetry::new();
    let m = monitor(&t);
    let mut tx = m.start(meta());
    tx.record_error(ErrorRecord::new("smtp::Timeout", "no answer in 30 s"));
    tx.finish(Outcome::Failed { retryable: false });
    let span = only_span(&t);
    assert_eq!(span.status, Status::error("no answer in 30 s"));
    assert_eq!(
        span_attr_str(&span, "error.type").as_deref(),
        Some("smtp::Timeout")
    );
    assert_eq!(
        span_attr_str(&span, "job.outcome").as_deref(),
        Some("failed")
    );
    let ev = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    assert!(
        ev.attributes
            .contains(&KeyValue::new("exception.type", "smtp::Timeout"))
    );

    t.clear_spans();
    let mut tx = m.start(meta());
    tx.record_error(ErrorRecord::new("smtp::Timeout", "again"));
    tx.finish(Outcome::Failed { retryable: true });
    let span = only_span(&t);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(
        span_attr_str(&span, "job.outcome").as_deref(),
        Some("retried")
    );
    assert_eq!(
        span_attr_str(&span, "error.type").as_deref(),
        Some("smtp::Timeout")
    );

    t.clear_spans();
    m.start(meta()).finish(Outcome::Succeeded);
    let span = only_span(&t);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(
        span_attr_str(&span, "job.outcome").as_deref(),
        Some("succeeded")
    );

    t.clear_spans();
    m.start(meta()).finish(Outcome::Panicked);
    let span = only_span(&t);
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(span_attr_str(&span, "error.type").as_deref(), Some("panic"));
}

#[test]
fn outcomes_that_are_errors() {
    assert!(Outcome::Failed { retryable: false }.is_error());
    assert!(Outcome::Panicked.is_error());
    assert!(Outcome::Abandoned.is_error());
    assert!(!Outcome::Failed { retryable: true }.is_error());
    assert!(!Outcome::Succeeded.is_error());
    assert!(!Outcome::Ignored.is_error());
}

#[test]
fn elapsed_counts_from_the_start() {
    let t = MemoryTelemetry::new();
    let tx = monitor(&t).start(meta());
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        tx.elapsed() >= Duration::from_millis(20),
        "{:?}",
        tx.elapsed()
    );
    tx.succeed();
}

#[test]
fn a_second_checkin_call_is_ignored() {
    let t = MemoryTelemetry::new();
    let checkins = Checkins::new()
        .policy(CheckinPolicy::job("welcome"))
        .meter_provider(t.meter_provider());
    let check = checkins.find("emails", "welcome").expect("the check");
    let mut tx = monitor(&t).start(meta());
    tx.checkin(&checkins, &check);
    tx.checkin(&checkins, &check);
    tx.succeed();
    let span = only_span(&t);
    let statuses: Vec<String> = span
        .events
        .iter()
        .filter(|e| e.name == "job.checkin")
        .filter_map(|e| {
            e.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "job.checkin.status")
                .map(|kv| kv.value.to_string())
        })
        .collect();
    assert_eq!(statuses, ["in_progress", "ok"]);
}

#[test]
fn queue_time_is_recorded_without_traces_from_either_time() {
    let now = SystemTime::now();
    for (enqueued, scheduled) in [
        (Some(now - Duration::from_secs(5)), None),
        (None, Some(now - Duration::from_secs(5))),
    ] {
        let t = MemoryTelemetry::new();
        let m = JobMonitor::builder()
            .traces(false)
            .meter_provider(t.meter_provider())
            .build();
        let job = JobMeta::builder("test", "emails")
            .maybe_enqueued_at(enqueued)
            .maybe_scheduled_at(scheduled)
            .build();
        m.start(job).succeed();
        let (count, sum) = histogram(&t, "job.queue_time");
        assert_eq!(count, 1, "enqueued {enqueued:?} scheduled {scheduled:?}");
        assert!((4.9..600.0).contains(&sum), "{sum}");
    }
}

#[test]
fn the_span_starts_now_and_carries_the_job_times_in_unix_seconds() {
    let t = MemoryTelemetry::new();
    let enqueued = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let scheduled = SystemTime::now() - Duration::from_secs(3);
    let job = JobMeta::builder("test", "emails")
        .enqueued_at(enqueued)
        .scheduled_at(scheduled)
        .priority(-3)
        .consumer("workers-a")
        .build();
    let before = SystemTime::now();
    monitor(&t).start(job).succeed();
    let span = only_span(&t);
    assert_eq!(
        span_attr(&span, "job.enqueued_at"),
        Some(&Value::I64(1_700_000_000))
    );
    let scheduled_secs = scheduled.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        span_attr(&span, "job.scheduled_at"),
        Some(&Value::I64(scheduled_secs as i64))
    );
    assert_eq!(span_attr(&span, "job.priority"), Some(&Value::I64(-3)));
    assert_eq!(
        span_attr_str(&span, "messaging.consumer.group.name").as_deref(),
        Some("workers-a")
    );
    // Queue time runs from the later of the two times.
    match span_attr(&span, "job.queue_time") {
        Some(Value::F64(v)) => assert!((2.9..600.0).contains(v), "{v}"),
        other => panic!("queue time: {other:?}"),
    }
    let start_skew = before
        .duration_since(span.start_time)
        .unwrap_or_default()
        .as_secs();
    assert!(start_skew < 60, "span starts {start_skew} s before now");

    // Without any time, the span still starts at the wall clock.
    t.clear_spans();
    let before = SystemTime::now();
    monitor(&t).start(meta()).succeed();
    let span = only_span(&t);
    assert!(span.start_time >= before - Duration::from_secs(60));
    assert!(span_attr(&span, "job.enqueued_at").is_none());
}

#[test]
fn job_meta_keeps_what_the_runner_gave() {
    let enqueued = UNIX_EPOCH + Duration::from_secs(1_000);
    let scheduled = UNIX_EPOCH + Duration::from_secs(2_000);
    let job = JobMeta::builder("test", "emails")
        .enqueued_at(enqueued)
        .scheduled_at(scheduled)
        .priority(7)
        .consumer("group-1")
        .build();
    assert_eq!(job.enqueued_at(), Some(enqueued));
    assert_eq!(job.scheduled_at(), Some(scheduled));
    assert_eq!(job.priority(), Some(7));
    assert_eq!(job.consumer().map(|c| &**c), Some("group-1"));
    let bare = meta();
    assert_eq!(bare.enqueued_at(), None);
    assert_eq!(bare.scheduled_at(), None);
    assert_eq!(bare.priority(), None);
    assert_eq!(bare.consumer(), None);
}

#[test]
fn metadata_and_arguments_set_on_the_meta_reach_observers_and_the_span() {
    let t = MemoryTelemetry::new();
    let (send, seen) = mpsc::channel();
    let m = JobMonitor::builder()
        .tracer_provider(t.tracer_provider())
        .meter_provider(t.meter_provider())
        .observer(move |e: &JobEvent| {
            if e.kind == EventKind::Started {
                let _ = send.send((
                    e.job.metadata().to_vec(),
                    e.job.args().map(|a| a.as_str().to_owned()),
                ));
            }
        })
        .build();
    let mut job = meta();
    assert!(job.metadata().is_empty());
    job.set_metadata(vec![("tenant".to_owned(), "acme".to_owned())]);
    assert_eq!(job.metadata(), [("tenant".to_owned(), "acme".to_owned())]);
    let args = ArgsPolicy::new().capture_always(&serde_json::json!({"to": "a@b.c"}));
    job.set_args(Some(args));
    assert!(job.args().is_some());
    m.start(job.clone()).succeed();
    assert!(m.observers().flush(Duration::from_secs(30)));
    let (metadata, seen_args) = seen.try_recv().expect("a Started event");
    assert_eq!(metadata, [("tenant".to_owned(), "acme".to_owned())]);
    let seen_args = seen_args.expect("arguments on the event");
    assert!(seen_args.contains("a@b.c"), "{seen_args}");
    let span = only_span(&t);
    assert_eq!(span_attr_str(&span, "job.args"), Some(seen_args));

    job.set_args(None);
    assert!(job.args().is_none());
    job.set_metadata(Vec::new());
    assert!(job.metadata().is_empty());
}

#[test]
fn a_closure_classifier_reports_final_failures_only() {
    let t = MemoryTelemetry::new();
    let final_failures = JobMonitor::builder()
        .tracer_provider(t.tracer_provider())
        .classifier(|_: &(dyn std::error::Error + 'static), _: &JobMeta| ErrorClass::Fail)
        .build();
    let outcome = final_failures
        .start(meta())
        .fail(&std::io::Error::other("down"));
    assert_eq!(outcome, Outcome::Failed { retryable: false });
    let span = only_span(&t);
    assert_eq!(span.status, Status::error("down"));
    assert!(events(&span).contains(&"exception".to_owned()));

    t.clear_spans();
    let retries = JobMonitor::builder()
        .tracer_provider(t.tracer_provider())
        .classifier(|_: &(dyn std::error::Error + 'static), _: &JobMeta| ErrorClass::Retry)
        .build();
    let outcome = retries.start(meta()).fail(&std::io::Error::other("flaky"));
    assert_eq!(outcome, Outcome::Failed { retryable: true });
    let span = only_span(&t);
    assert_eq!(span.status, Status::Unset);
    assert!(!events(&span).contains(&"exception".to_owned()));
}

#[test]
fn attach_makes_the_process_span_current_while_the_guard_lives() {
    let t = MemoryTelemetry::new();
    let tx = monitor(&t).start(meta());
    let process = tx.context().span().span_context().clone();
    assert!(process.is_valid());
    {
        let _guard = tx.attach().expect("a span to attach");
        assert_eq!(Context::current().span().span_context(), &process);
    }
    assert_ne!(Context::current().span().span_context(), &process);
    tx.succeed();
}
