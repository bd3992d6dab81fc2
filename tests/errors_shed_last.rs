//! Errors are shed last: with a slow collector the span queue fills with
//! spans of successful jobs, while a few jobs fail. Every failed job's span
//! still reaches the in-process receiver (over real OTLP/HTTP), and every
//! span is accounted for: received + `Telemetry::dropped()` = jobs, with no
//! error span among the drops.

use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::backend::queue::Queue;
use jobsight_apalis::MonitorLayer;
use jobsight_otel::Builder;
use jobsight_testkit::jobs::{flush, monitor_of, stop_after};
use jobsight_testkit::otlp::{Mode, Receiver, Signal, outcome};
use jobsight_testkit::{LogCapture, unique};

const JOBS: u64 = 3000;
/// The span queue; its last tenth (30) is kept for error spans.
const QUEUE: usize = 300;
/// Job numbers that fail: ten of them, spread over the run.
const FAILS_EVERY: u64 = 300;
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("job {0} failed on purpose")]
struct Refused(u64);

async fn job(n: u64) -> Result<u64, BoxDynError> {
    if n % FAILS_EVERY == 7 {
        Err(Refused(n).into())
    } else {
        Ok(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_keep_their_spans_when_the_queue_is_full() {
    let rx = Receiver::http().await;
    // Each export waits 3 s: the queue fills behind the first batch.
    rx.set_mode(Signal::Traces, Mode::Delay(Duration::from_secs(3)));
    let log = LogCapture::default();
    let telemetry = Builder::new()
        .service_name(unique("errors-last"))
        .endpoint(rx.endpoint())
        .summary(false)
        .span_queue_size(QUEUE)
        .span_schedule_delay(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(30))
        .diagnostics_writer(log.clone())
        .install()
        .expect("install telemetry");
    let monitor = monitor_of(&telemetry);
    let queue = unique("errors-last");

    let mut storage = MemoryStorage::new();
    for n in 0..JOBS {
        storage
            .push_task(
                TaskBuilder::new(n)
                    .queue(Queue::from(queue.as_str()))
                    .build(),
            )
            .await
            .expect("push");
    }
    let worker = WorkerBuilder::new(unique("errors-last-worker"))
        .backend(storage)
        .layer(MonitorLayer::builder().monitor(monitor).build().unwrap())
        .on_event(stop_after(JOBS as usize))
        .build(job);
    tokio::time::timeout(Duration::from_secs(120), worker.run())
        .await
        .expect("the jobs finish within 120 s")
        .expect("the worker");

    let failures = (0..JOBS).filter(|n| n % FAILS_EVERY == 7).count();
    let name = format!("process {queue}");
    let deadline = Instant::now() + WAIT;
    loop {
        let received = rx.span_count(&name) as u64;
        if received + telemetry.dropped().spans.total() == JOBS {
            break;
        }
        assert!(Instant::now() < deadline, "received {received} of {JOBS}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = telemetry.dropped();
    // The queue really overflowed.
    assert!(dropped.spans.queue_full > 0, "{dropped:?}");
    assert_eq!(dropped.spans.export_failed, 0, "{dropped:?}");
    assert_eq!(dropped.error_spans_queue_full, 0, "{dropped:?}");
    let spans: Vec<_> = rx
        .spans()
        .into_iter()
        .filter(|span| span.name == name)
        .collect();
    let failed = spans
        .iter()
        .filter(|span| outcome(span) == "failed")
        .count();
    assert_eq!(failed, failures, "every failed job's span arrived");
    assert_eq!(spans.len() as u64 + dropped.spans.total(), JOBS);
    eprintln!(
        "{JOBS} jobs, queue {QUEUE}: received {} spans ({failed} failed), dropped {dropped}",
        spans.len()
    );
    let telemetry = flush(telemetry).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown().expect("shutdown"))
        .await
        .expect("shutdown thread");
    log.assert_once("span queue is full");
}
