//! A real backend: `MonitorLayer` on `apalis_redis::RedisStorage`
//! against the Redis at 127.0.0.1:6379, exported over OTLP/gRPC to the
//! in-process receiver. Proves, at the receiver, that the queue given to
//! `MonitorLayerBuilder::queue` names the spans (apalis-redis drops the task's
//! queue), that `messaging.message.id` is the ULID Redis assigned, that
//! `job.queue_time` is recorded, that a backend retry is attempt 2, and that
//! the producer's span context survives Redis as a span link.
//!
//! Each run uses its own queue (and so its own Redis keys) and worker name,
//! and deletes its keys at the end, even when an assertion fails.

use jobsight_testkit::jobs::{REDIS_ADDR, RedisKeys, monitor_of, stop_after, telemetry_to};
use jobsight_testkit::otlp::{
    Receiver, Span, SpanKind, StatusCode, attr_f64, attr_i64, brief, jobs_by_id, outcomes,
};
use jobsight_testkit::unique;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use jobsight_apalis::{MonitorLayer, stamped_builder};
use opentelemetry::Context;
use opentelemetry::trace::{SpanKind as ApiSpanKind, TraceContextExt, Tracer, TracerProvider};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    number: u32,
    /// Fails on its first attempt, succeeds on the backend's retry.
    flaky: bool,
}

#[derive(Debug, thiserror::Error)]
enum InvoiceError {
    #[error("payment gateway timed out")]
    GatewayTimeout,
}

async fn send_invoice(job: Invoice, attempt: Attempt) -> Result<(), BoxDynError> {
    if job.flaky && attempt.current() <= 1 {
        return Err(InvoiceError::GatewayTimeout.into());
    }
    Ok(())
}

// ------------------------------------------------------------ ULIDs

const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The millisecond timestamp of a canonical ULID, `None` if `s` is not one.
fn ulid_ms(s: &str) -> Option<u64> {
    if s.len() != 26 || !s.chars().all(|c| CROCKFORD.contains(c)) || s.as_bytes()[0] > b'7' {
        return None;
    }
    s[..10]
        .chars()
        .try_fold(0u64, |acc, c| Some(acc * 32 + CROCKFORD.find(c)? as u64))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_jobs_carry_queue_ulid_queue_time_retries_and_producer_links() {
    // The only test of this binary: it may install global telemetry freely.
    let queue = unique("jobsight-e2e-redis");
    let mut keys = RedisKeys::new(&queue);
    let service = unique("jobsight-e2e-redis-svc");

    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        apalis_redis::connect(format!("redis://{REDIS_ADDR}")),
    )
    .await
    .expect("connecting to Redis timed out")
    .unwrap_or_else(|e| panic!("these tests need Redis at {REDIS_ADDR}: {e}"));
    // Pick-up: `poll_with_interval` below fetches every 100 ms. apalis-core
    // 1.0.0's IntervalStrategy can stop ticking (when its timer fires in the
    // same wake-up as a fetch completes, it re-arms a Delay it never polls),
    // after which only the heartbeat wakes an idle worker (default 30 s):
    // a 1 s heartbeat bounds that stall.
    let config = Config::default()
        .queue(&queue)
        .heartbeat_interval(Duration::from_secs(1));

    let rx = Receiver::grpc().await;
    let telemetry = telemetry_to(&rx, &service);
    let tracer_provider = telemetry.tracer_provider().expect("tracer provider");
    let monitor = monitor_of(&telemetry);

    // The producer: two tasks stamped inside a span of its own, one outside any span.
    let tracer = tracer_provider.tracer("jobsight-e2e-producer");
    let producer_span = tracer
        .span_builder("enqueue invoices")
        .with_kind(ApiSpanKind::Producer)
        .start(&tracer);
    let producer_cx = Context::current_with_span(producer_span);
    let producer_ids = {
        let sc = producer_cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    };
    let pushed_from = SystemTime::now();
    let (linked, flaky) = {
        let _attached = producer_cx.clone().attach();
        (
            stamped_builder(TaskBuilder::new(Invoice {
                number: 1,
                flaky: false,
            }))
            .build(),
            stamped_builder(
                TaskBuilder::new(Invoice {
                    number: 2,
                    flaky: true,
                })
                .max_attempts(3),
            )
            .build(),
        )
    };
    let unlinked = stamped_builder(TaskBuilder::new(Invoice {
        number: 3,
        flaky: false,
    }))
    .build();
    let mut producer = RedisStorage::<Invoice>::new(conn.clone()).with_config(config.clone());
    for task in [linked, flaky, unlinked] {
        producer.push_task(task).await.expect("push to Redis");
    }
    let pushed_until = SystemTime::now();
    producer_cx.span().end();

    // 4 runs: invoice 1, invoice 2 twice (Redis retries it ~1 s later), invoice 3.
    let started = Instant::now();
    let worker = WorkerBuilder::new(unique("redis-e2e-worker"))
        .backend(
            RedisStorage::<Invoice>::new(conn.clone())
                .with_config(config.clone())
                .poll_with_interval(Duration::from_millis(100)),
        )
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .queue(queue.clone())
                .build()
                .unwrap(),
        )
        .on_event(stop_after(4))
        .build(send_invoice);
    tokio::time::timeout(Duration::from_secs(30), worker.run())
        .await
        .expect("the Redis worker ran its 4 attempts within 30 s")
        .expect("Redis worker");
    let worked_for = started.elapsed();
    drop(monitor);
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("shutdown thread")
        .expect("telemetry shutdown");

    let spans = rx
        .wait_for_spans(
            |s: &[Span]| s.iter().filter(|s| s.name.starts_with("process ")).count() >= 4,
            WAIT,
        )
        .await;
    let process: Vec<Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("process "))
        .cloned()
        .collect();
    let all = brief(&spans);
    assert_eq!(process.len(), 4, "{all}");

    for s in &process {
        assert_eq!(s.name, format!("process {queue}"), "{all}");
        assert_eq!(s.kind, SpanKind::Consumer, "{all}");
        assert_eq!(s.attr_str("messaging.system"), Some("apalis"), "{all}");
        assert_eq!(
            s.attr_str("messaging.destination.name"),
            Some(queue.as_str()),
            "the queue given to MonitorLayerBuilder::queue: {all}"
        );
        assert_eq!(s.attr_str("job.name"), Some("Invoice"), "{all}");
        let id = s.attr_str("messaging.message.id").unwrap_or_default();
        let ms = ulid_ms(id).unwrap_or_else(|| panic!("message id {id:?} is not a ULID: {all}"));
        assert!(
            ms + 1000 >= unix_ms(pushed_from) && ms <= unix_ms(pushed_until) + 1000,
            "the ULID's time ({ms}) is the push time ({}..{})",
            unix_ms(pushed_from),
            unix_ms(pushed_until)
        );
        assert_eq!(
            s.resource.get("service.name").and_then(|v| v.as_str()),
            Some(service.as_str())
        );
    }

    let jobs = jobs_by_id(&process, &queue);
    assert_eq!(jobs.len(), 3, "3 tasks by message id: {all}");
    let first_attempt = |attempts: &Vec<Span>| {
        let s = attempts[0].clone();
        assert_eq!(attr_i64(&s, "job.attempt"), Some(1), "{all}");
        let waited = attr_f64(&s, "job.queue_time")
            .unwrap_or_else(|| panic!("job.queue_time missing: {all}"));
        assert!(
            waited >= 0.0 && waited <= worked_for.as_secs_f64() + 5.0,
            "job.queue_time = {waited}: {all}"
        );
        s
    };

    // The retried task: attempt 1 `retried` (quiet), attempt 2 `succeeded`, ~1 s later.
    let retried = jobs
        .values()
        .find(|a| a.len() == 2)
        .unwrap_or_else(|| panic!("no task with two attempts: {all}"));
    assert_eq!(outcomes(retried), ["retried", "succeeded"], "{all}");
    let first = first_attempt(retried);
    assert_eq!(attr_i64(&first, "job.max_attempts"), Some(3), "{all}");
    assert_eq!(
        first.attr_str("error.type"),
        Some("GatewayTimeout"),
        "{all}"
    );
    assert_ne!(first.status_code, StatusCode::Error, "{all}");
    assert!(first.event("exception").is_none(), "{all}");
    let second = &retried[1];
    assert_eq!(attr_i64(second, "job.attempt"), Some(2), "{all}");
    assert!(
        second.start_time_unix_nano >= first.end_time_unix_nano,
        "the backend's retry runs after the first attempt: {all}"
    );

    // Links: both tasks stamped inside the producer span link to it, on
    // every attempt; the one stamped outside any span has no link.
    let link_ids = |s: &Span| -> Vec<(String, String)> {
        s.links
            .iter()
            .map(|l| (l.trace_id.clone(), l.span_id.clone()))
            .collect()
    };
    let mut linked_jobs = 0;
    for attempts in jobs.values() {
        for s in attempts {
            if attempts.len() == 2 || !s.links.is_empty() {
                assert_eq!(
                    link_ids(s),
                    vec![producer_ids.clone()],
                    "process span links to the producer span: {all}"
                );
                assert!(s.is_root(), "a link, not a parent: {all}");
                assert_ne!(s.trace_id, producer_ids.0, "a trace of its own: {all}");
            }
        }
        if attempts.len() == 1 {
            let s = first_attempt(attempts);
            assert_eq!(outcomes(attempts), ["succeeded"], "{all}");
            if !s.links.is_empty() {
                linked_jobs += 1;
            }
        }
    }
    assert_eq!(
        linked_jobs, 1,
        "exactly one single-attempt task was stamped inside the producer span: {all}"
    );

    // The producer span itself reached the receiver with the ids linked to.
    let producer = spans
        .iter()
        .find(|s| s.name == "enqueue invoices")
        .unwrap_or_else(|| panic!("no producer span: {all}"));
    assert_eq!(
        (producer.trace_id.clone(), producer.span_id.clone()),
        producer_ids
    );

    rx.shutdown().await;
    let deleted = keys.delete().expect("delete the test's Redis keys");
    assert!(deleted > 0, "the queue's keys were found and deleted");
}
