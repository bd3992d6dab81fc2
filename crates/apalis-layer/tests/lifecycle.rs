//! Arguments, progress and observers through an apalis worker (in-memory
//! backend, SDK in-memory exporter).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use jobsight_apalis::{
    ArgsPolicy, EventKind, JobEvent, JobMonitor, MonitorLayer, ProgressThrottle, progress,
};
use jobsight_testkit::MemoryTelemetry;
use opentelemetry_sdk::trace::SpanData;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Backfill {
    table: String,
    rows: u64,
    login: Login,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn backfill(job: Backfill) -> Result<(), BoxDynError> {
    progress::set_total(job.rows);
    for row in 0..job.rows {
        progress::set_element(format_args!("{} row {row}", job.table));
        if job.table == "locked" && row == 3 {
            return Err("row is locked".into());
        }
        progress::tick(1);
    }
    Ok(())
}

/// Runs the worker until it stops, at most 20 s.
async fn run_to_the_end<E: std::fmt::Debug>(run: impl std::future::Future<Output = Result<(), E>>) {
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("worker finished in time")
        .expect("worker ran");
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test]
async fn args_progress_and_observers_reach_the_job() {
    let telemetry = MemoryTelemetry::new();
    let seen = Arc::new(Mutex::new(Vec::<JobEvent>::new()));
    let sink = Arc::clone(&seen);
    let monitor = JobMonitor::builder()
        .tracer_provider(telemetry.tracer_provider())
        .progress_throttle(ProgressThrottle::default().min_interval(Duration::ZERO))
        .observer(move |e: &JobEvent| sink.lock().unwrap().push(e.clone()))
        .build();

    let mut storage = MemoryStorage::new();
    for table in ["users", "locked"] {
        let task = TaskBuilder::new(Backfill {
            table: table.into(),
            rows: 10,
            login: Login {
                user: "etl".into(),
                password: "hunter2".into(),
            },
        })
        .metadata(&jobsight_apalis::Stamp::now())
        .build();
        storage.push_task(task).await.unwrap();
    }
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = WorkerBuilder::new("backfiller")
        .backend(storage)
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .record_args(ArgsPolicy::new().job("Backfill"))
                .build()
                .unwrap(),
        )
        .on_event(move |w: &WorkerContext, ev: &Event| {
            if matches!(ev, Event::Success(_) | Event::Error(_))
                && done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
            {
                let _ = w.stop();
            }
        })
        .build(backfill);
    run_to_the_end(worker.run()).await;
    assert!(monitor.observers().flush(Duration::from_secs(5)));

    let spans = telemetry.spans();
    let users = spans
        .iter()
        .find(|s| attr(s, "job.args").unwrap().contains("users"))
        .unwrap();
    let args = attr(users, "job.args").unwrap();
    assert_eq!(
        args,
        r#"{"table":"users","rows":10,"login":{"user":"etl","password":"[FILTERED]"}}"#
    );
    assert_eq!(attr(users, "job.progress.ticks").as_deref(), Some("10"));
    assert!(users.events.iter().any(|e| e.name == "job.progress"));

    let locked = spans
        .iter()
        .find(|s| attr(s, "job.args").unwrap().contains("locked"))
        .unwrap();
    let exception = locked
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap();
    let get = |k: &str| {
        exception
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(get("job.progress.ticks").as_deref(), Some("3"));
    assert_eq!(get("job.progress.element").as_deref(), Some("locked row 3"));

    let seen = seen.lock().unwrap();
    let failed = seen.iter().find(|e| e.kind == EventKind::Failed).unwrap();
    assert_eq!(failed.job.name(), "Backfill");
    assert!(failed.job.args().unwrap().as_str().contains("[FILTERED]"));
    assert!(
        failed
            .job
            .metadata()
            .iter()
            .any(|(k, _)| k == "jobsight.enqueued_at"),
        "{:?}",
        failed.job.metadata()
    );
    assert_eq!(failed.progress.as_ref().unwrap().ticks, 3);
    assert_eq!(failed.error.as_ref().unwrap().message(), "row is locked");
    assert!(seen.iter().any(|e| e.kind == EventKind::Progressed));
    assert_eq!(
        seen.iter().filter(|e| e.kind == EventKind::Started).count(),
        2
    );
}

#[tokio::test]
async fn args_are_not_recorded_for_other_jobs() {
    let telemetry = MemoryTelemetry::new();
    let monitor = JobMonitor::builder()
        .tracer_provider(telemetry.tracer_provider())
        .build();
    let mut storage = MemoryStorage::new();
    storage
        .push(Backfill {
            table: "t".into(),
            rows: 1,
            login: Login {
                user: "u".into(),
                password: "p".into(),
            },
        })
        .await
        .unwrap();
    let worker = WorkerBuilder::new("quiet")
        .backend(storage)
        .layer(
            MonitorLayer::builder()
                .monitor(monitor)
                .record_args(ArgsPolicy::new().job("SomethingElse"))
                .build()
                .unwrap(),
        )
        .on_event(|w: &WorkerContext, ev: &Event| {
            if matches!(ev, Event::Success(_) | Event::Error(_)) {
                let _ = w.stop();
            }
        })
        .build(backfill);
    run_to_the_end(worker.run()).await;
    let spans = telemetry.spans();
    assert_eq!(spans.len(), 1);
    assert!(attr(&spans[0], "job.args").is_none());
}
