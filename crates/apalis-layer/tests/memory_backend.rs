//! MonitorLayer on apalis's in-memory backend, recorded with the SDK's
//! in-memory exporter: what each kind of job run looks like as a span.
//! (The over-the-wire proof with OTLP and Redis is in the workspace's tests/.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use jobsight_apalis::{JobMonitor, MonitorLayer};
use jobsight_testkit::MemoryTelemetry;
use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;

/// A monitor recording to `telemetry`'s in-memory providers (the
/// telemetry keeps them alive: dropping the last handle of a provider shuts
/// it down).
fn monitor() -> (JobMonitor, MemoryTelemetry) {
    let telemetry = MemoryTelemetry::new();
    let monitor = JobMonitor::builder()
        .tracer_provider(telemetry.tracer_provider())
        .meter_provider(telemetry.meter_provider())
        .build();
    (monitor, telemetry)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn outcome(span: &SpanData) -> String {
    attr(span, "job.outcome")
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

/// Stops the worker after `n` finished runs (success or error).
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

async fn flaky(n: u32, attempt: Attempt) -> Result<u32, BoxDynError> {
    match n {
        0 => Ok(0),
        1 if attempt.current() < 2 => Err("first try fails".into()),
        1 => Ok(1),
        2 => Err(std::io::Error::other("always fails").into()),
        3 => panic!("job 3 exploded"),
        4 => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(4)
        }
        _ => Err(AbortError::new(std::io::Error::other("abort")).into()),
    }
}

async fn run_jobs(layer: MonitorLayer, jobs: &[u32], finished_runs: usize) {
    let mut storage = MemoryStorage::new();
    for j in jobs {
        storage.push(*j).await.unwrap();
    }
    let worker = WorkerBuilder::new(format!("w-{jobs:?}"))
        .backend(storage)
        .retry(RetryPolicy::retries(2))
        .layer(layer)
        .on_event(stop_after(finished_runs))
        .build(flaky);
    tokio::time::timeout(Duration::from_secs(20), worker.run())
        .await
        .expect("worker finished in time")
        .expect("worker ran");
}

#[tokio::test]
async fn success_records_a_consumer_span_with_apalis_fields() {
    let (monitor, spans) = monitor();
    run_jobs(
        MonitorLayer::builder()
            .monitor(monitor)
            .queue("numbers")
            .build()
            .unwrap(),
        &[0],
        1,
    )
    .await;
    let finished = spans.spans();
    assert_eq!(finished.len(), 1);
    let s = &finished[0];
    assert_eq!(s.name, "process numbers");
    assert_eq!(s.span_kind, opentelemetry::trace::SpanKind::Consumer);
    assert_eq!(attr(s, "messaging.system").unwrap().as_str(), "apalis");
    assert_eq!(attr(s, "job.name").unwrap().as_str(), "u32");
    assert_eq!(attr(s, "job.attempt"), Some(&Value::I64(1)));
    assert!(attr(s, "messaging.message.id").is_some());
    assert!(attr(s, "messaging.consumer.group.name").is_some());
    assert_eq!(outcome(s), "succeeded");
}

#[tokio::test]
async fn a_job_that_fails_then_succeeds_shows_both_attempts() {
    let (monitor, spans) = monitor();
    run_jobs(
        MonitorLayer::builder()
            .monitor(monitor)
            .max_attempts(3)
            .build()
            .unwrap(),
        &[1],
        1,
    )
    .await;
    let finished = spans.spans();
    let outcomes: Vec<_> = finished.iter().map(outcome).collect();
    assert_eq!(outcomes, ["retried", "succeeded"]);
    let attempts: Vec<_> = finished
        .iter()
        .map(|s| attr(s, "job.attempt").cloned())
        .collect();
    assert_eq!(attempts, [Some(Value::I64(1)), Some(Value::I64(2))]);
    assert_eq!(
        finished[0].status,
        Status::Unset,
        "a retried attempt is not an error event"
    );
    assert!(finished[0].events.iter().all(|e| e.name != "exception"));
}

#[tokio::test]
async fn a_job_that_always_fails_is_an_error_event_on_its_last_attempt() {
    let (monitor, spans) = monitor();
    run_jobs(
        MonitorLayer::builder()
            .monitor(monitor)
            .max_attempts(3)
            .build()
            .unwrap(),
        &[2],
        1,
    )
    .await;
    let finished = spans.spans();
    let outcomes: Vec<_> = finished.iter().map(outcome).collect();
    assert_eq!(outcomes, ["retried", "retried", "failed"]);
    let last = &finished[2];
    assert_eq!(last.status, Status::error("always fails"));
    assert_eq!(attr(last, "error.type").unwrap().as_str(), "std::io::Error");
    assert!(last.events.iter().any(|e| e.name == "exception"));
}

#[tokio::test]
async fn an_aborted_job_is_final_even_with_attempts_left() {
    let (monitor, spans) = monitor();
    run_jobs(
        MonitorLayer::builder()
            .monitor(monitor)
            .max_attempts(3)
            .build()
            .unwrap(),
        &[9],
        1,
    )
    .await;
    let finished = spans.spans();
    assert_eq!(finished.len(), 1);
    assert_eq!(outcome(&finished[0]), "failed");
    assert_eq!(
        attr(&finished[0], "error.type").unwrap().as_str(),
        "std::io::Error"
    );
}

#[tokio::test]
async fn a_panic_is_recorded_and_the_worker_keeps_running() {
    let (monitor, spans) = monitor();
    // The panicking job first, then a good one: the worker must survive to run it.
    run_jobs(
        MonitorLayer::builder().monitor(monitor).build().unwrap(),
        &[3, 0],
        2,
    )
    .await;
    let finished = spans.spans();
    let outcomes: Vec<_> = finished.iter().map(outcome).collect();
    assert!(outcomes.contains(&"panicked".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"succeeded".to_string()), "{outcomes:?}");
    let panicked = finished.iter().find(|s| outcome(s) == "panicked").unwrap();
    assert_eq!(panicked.status, Status::error("job 3 exploded"));
    assert_eq!(attr(panicked, "error.type").unwrap().as_str(), "panic");
}

#[tokio::test]
async fn a_job_cut_off_by_an_outer_timeout_is_abandoned() {
    let (monitor, spans) = monitor();
    let mut storage = MemoryStorage::new();
    storage.push(4u32).await.unwrap();
    let worker = WorkerBuilder::new("timeouts")
        .backend(storage)
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(50)))
        .layer(MonitorLayer::builder().monitor(monitor).build().unwrap())
        .on_event(stop_after(1))
        .build(flaky);
    tokio::time::timeout(Duration::from_secs(20), worker.run())
        .await
        .unwrap()
        .unwrap();
    let finished = spans.spans();
    assert_eq!(finished.len(), 1);
    assert_eq!(outcome(&finished[0]), "abandoned");
    assert_eq!(
        attr(&finished[0], "error.type").unwrap().as_str(),
        "abandoned"
    );
    assert!(matches!(finished[0].status, Status::Error { .. }));
}

fn checkin_statuses(span: &SpanData) -> Vec<String> {
    span.events
        .iter()
        .filter(|e| e.name == "job.checkin")
        .flat_map(|e| e.attributes.iter())
        .filter(|kv| kv.key.as_str() == "job.checkin.status")
        .map(|kv| kv.value.as_str().into_owned())
        .collect()
}

#[tokio::test]
async fn a_checkin_policy_pairs_each_attempt_and_others_cost_nothing() {
    use jobsight_apalis::CheckinPolicy;
    let (numbers_monitor, spans) = monitor();
    let layer = MonitorLayer::builder()
        .monitor(numbers_monitor)
        .queue("numbers")
        .checkin(CheckinPolicy::queue("numbers").monitor_name("numbers-heartbeat"))
        .build()
        .unwrap();
    assert_eq!(layer.checkins().map(|c| c.checks().len()), Some(1));
    // Job 0 succeeds; job 1 fails once, then succeeds on the retry.
    run_jobs(layer, &[0, 1], 2).await;
    let finished = spans.spans();
    assert_eq!(finished.len(), 3);
    let mut runs: Vec<Vec<String>> = finished.iter().map(checkin_statuses).collect();
    runs.sort();
    assert_eq!(
        runs,
        [
            ["in_progress", "error"],
            ["in_progress", "ok"],
            ["in_progress", "ok"]
        ]
    );

    // A policy for another job: these jobs carry no check-in events.
    let (other_monitor, other_spans) = monitor();
    let layer = MonitorLayer::builder()
        .monitor(other_monitor)
        .checkin(CheckinPolicy::job("Other"))
        .build()
        .unwrap();
    run_jobs(layer, &[0], 1).await;
    let finished = other_spans.spans();
    assert!(checkin_statuses(&finished[0]).is_empty());
}

/// Runs `jobs` on a worker whose only retry configuration is the layer
/// builder's `retries(1)`, added with `MonitorWorkerExt::monitor`.
async fn run_with_retries_written_once(monitor: JobMonitor, jobs: &[u32], finished_runs: usize) {
    use jobsight_apalis::MonitorWorkerExt;
    let mut storage = MemoryStorage::new();
    for j in jobs {
        storage.push(*j).await.unwrap();
    }
    let worker = WorkerBuilder::new(format!("retries-once-{jobs:?}"))
        .backend(storage)
        .monitor(MonitorLayer::builder().monitor(monitor).retries(1))
        .unwrap()
        .on_event(stop_after(finished_runs))
        .build(flaky);
    tokio::time::timeout(Duration::from_secs(20), worker.run())
        .await
        .expect("worker finished in time")
        .expect("worker ran");
}

#[tokio::test]
async fn retries_written_once_retry_the_job_and_record_the_attempt_as_retried() {
    let (monitor, spans) = monitor();
    // Job 1 fails on its first attempt and succeeds on its second.
    run_with_retries_written_once(monitor, &[1], 1).await;
    let finished = spans.spans();
    let outcomes: Vec<_> = finished.iter().map(outcome).collect();
    assert_eq!(outcomes, ["retried", "succeeded"]);
    for s in &finished {
        assert_eq!(attr(s, "job.max_attempts"), Some(&Value::I64(2)));
    }
    assert_eq!(finished[0].status, Status::Unset);
    assert!(finished[0].events.iter().all(|e| e.name != "exception"));
}

#[tokio::test]
async fn retries_written_once_stop_after_the_limit_and_the_last_attempt_is_failed() {
    let (monitor, spans) = monitor();
    // Job 2 always fails: apalis runs it twice (retries(1)), no more.
    run_with_retries_written_once(monitor, &[2], 1).await;
    let finished = spans.spans();
    let outcomes: Vec<_> = finished.iter().map(outcome).collect();
    assert_eq!(outcomes, ["retried", "failed"]);
    assert!(finished[1].events.iter().any(|e| e.name == "exception"));
}

#[test]
fn retries_need_the_worker_and_exclude_max_attempts() {
    use jobsight_apalis::{Error, MonitorWorkerExt};
    let refused = MonitorLayer::builder().retries(2).build();
    assert!(
        matches!(refused, Err(Error::RetriesNeedTheWorker)),
        "{refused:?}"
    );
    let both = WorkerBuilder::new("both")
        .backend(MemoryStorage::<u32>::new())
        .monitor(MonitorLayer::builder().retries(2).max_attempts(3))
        .map(|_| ());
    assert!(
        matches!(both, Err(Error::RetriesAndMaxAttempts)),
        "{both:?}"
    );
}
