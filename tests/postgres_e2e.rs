//! `MonitorLayer::backend(Postgres)` on `apalis_postgres::PostgresStorage`
//! against the PostgreSQL at 127.0.0.1:5432, exported over OTLP/gRPC to the
//! in-process receiver. Proves, at the receiver: the send and process spans
//! name the storage's queue; `job.backend` is `postgres`; attempts and max
//! attempts are the row's; every attempt links to its send span through
//! the `metadata` column and the producer's baggage reaches the job; and
//! `job.queue_time` is the measured wait on the first attempt (1.5 s in
//! the queue) and on each retry (milliseconds, not the time since the
//! whole-second `run_at`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use jobsight_apalis::backend::Postgres;
use jobsight_apalis::{MonitorLayer, SendLayer, TracedPush};
use jobsight_core::JobMonitor;
use jobsight_otel::{Builder, Protocol};
use jobsight_testkit::jobs::postgres::{PgQueue, pool};
use jobsight_testkit::otlp::{
    Receiver, Span, SpanKind, attr_f64, attr_i64, brief, jobs_by_id, outcomes,
};
use jobsight_testkit::unique;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(15);
/// How far `job.queue_time` may be from the wait the job measured itself.
const TOLERANCE: f64 = 0.25;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    number: u32,
    /// How many attempts fail before one succeeds.
    failures: usize,
}

/// (invoice, attempt, started, ended, baggage seen) of every attempt.
type Runs = Arc<Mutex<Vec<(u32, usize, SystemTime, SystemTime, Option<String>)>>>;

async fn send_invoice(job: Invoice, attempt: Attempt, runs: Data<Runs>) -> Result<(), BoxDynError> {
    let started = SystemTime::now();
    let tenant = Context::current()
        .baggage()
        .get("tenant")
        .map(|v| v.to_string());
    // apalis counts this run already when the job is called: 1, 2, 3…
    let failed = attempt.current() <= job.failures;
    runs.lock().unwrap().push((
        job.number,
        attempt.current(),
        started,
        SystemTime::now(),
        tenant,
    ));
    if failed {
        return Err("payment gateway timed out".into());
    }
    Ok(())
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_spans_name_the_queue_and_time_every_attempt() {
    let queue = unique("jobsight-e2e-pg");
    let pool = pool().await;
    let _rows = PgQueue {
        pool: pool.clone(),
        queue: queue.clone(),
    };
    let config = Config::default()
        .queue(&queue)
        .heartbeat_interval(Duration::from_millis(200));

    let rx = Receiver::grpc().await;
    let telemetry = Builder::new()
        .service_name(unique("jobsight-e2e-pg-svc"))
        .endpoint(rx.endpoint())
        .protocol(Protocol::Grpc)
        .summary(false)
        .install()
        .expect("install telemetry");
    let tracer_provider = telemetry.tracer_provider().expect("tracer provider");
    let monitor = JobMonitor::builder()
        .tracer_provider(tracer_provider)
        .meter_provider(telemetry.meter_provider().expect("meter provider"))
        .build();

    // The producer pushes with `push_task_traced_with` and no queue of its
    // own: the send span must name the storage's queue.
    let tracer = tracer_provider.tracer("jobsight-e2e-producer");
    let request = tracer.start("POST /invoices");
    let cx =
        Context::current_with_span(request).with_baggage(vec![KeyValue::new("tenant", "acme")]);
    let mut producer = PostgresStorage::<Invoice>::new(&pool).with_config(config.clone());
    let send = SendLayer::builder()
        .monitor(monitor.clone())
        .build()
        .unwrap();
    let pushed_at = SystemTime::now();
    {
        let _attached = cx.clone().attach();
        for (number, failures) in [(1, 0), (2, 2)] {
            let task = TaskBuilder::new(Invoice { number, failures })
                .max_attempts(3)
                .build();
            producer
                .push_task_traced_with(&send, task)
                .await
                .expect("push to PostgreSQL");
        }
    }
    cx.span().end();
    // The jobs wait 1.5 s in the queue before a worker exists.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let runs: Runs = Arc::default();
    // 4 attempts: invoice 1 once, invoice 2 three times (2 failures).
    let worker = WorkerBuilder::new(unique("pg-e2e-worker"))
        .backend(PostgresStorage::<Invoice>::new(&pool).with_config(config))
        .data(runs.clone())
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .backend(Postgres)
                .build()
                .unwrap(),
        )
        .build(send_invoice);
    let seen = runs.clone();
    let four_runs = async move {
        while seen.lock().unwrap().len() < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the last result reach the database.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<(), WorkerError>(())
    };
    let ran = tokio::time::timeout(Duration::from_secs(60), worker.run_until(four_runs)).await;
    if ran.is_err() {
        let rows: Vec<(String, String, i32, i32)> = sqlx::query_as(
            "SELECT id, status, attempts, max_attempts FROM apalis.jobs WHERE job_type = $1",
        )
        .bind(&queue)
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        panic!(
            "4 attempts within 60 s: runs {:?}, rows {rows:?}",
            runs.lock().unwrap()
        );
    }
    ran.unwrap().expect("PostgreSQL worker");
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
    let all = brief(&spans);
    let sends: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("send "))
        .collect();
    let process: Vec<Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("process "))
        .cloned()
        .collect();
    assert_eq!(sends.len(), 2, "{all}");
    assert_eq!(process.len(), 4, "{all}");
    for s in &sends {
        assert_eq!(
            s.name,
            format!("send {queue}"),
            "the storage's queue: {all}"
        );
        assert_eq!(
            s.attr_str("messaging.destination.name"),
            Some(queue.as_str())
        );
    }
    for s in &process {
        assert_eq!(s.name, format!("process {queue}"), "{all}");
        assert_eq!(s.kind, SpanKind::Consumer, "{all}");
        assert_eq!(
            s.attr_str("messaging.destination.name"),
            Some(queue.as_str())
        );
        assert_eq!(s.attr_str("job.backend"), Some("postgres"), "{all}");
        assert_eq!(attr_i64(s, "job.max_attempts"), Some(3), "the row's: {all}");
        // Every attempt links to the send span of its task.
        let id = s.attr_str("messaging.message.id").unwrap_or_default();
        let send = sends
            .iter()
            .find(|send| send.attr_str("messaging.message.id") == Some(id))
            .unwrap_or_else(|| panic!("no send span for {id}: {all}"));
        assert_eq!(s.links.len(), 1, "{all}");
        assert_eq!(
            (&s.links[0].trace_id, &s.links[0].span_id),
            (&send.trace_id, &send.span_id),
            "{all}"
        );
    }

    let jobs = jobs_by_id(&process, &queue);
    let retried = jobs
        .values()
        .find(|a| a.len() == 3)
        .unwrap_or_else(|| panic!("no task with 3 attempts: {all}"));
    assert_eq!(
        outcomes(retried),
        ["retried", "retried", "succeeded"],
        "{all}"
    );
    let runs = runs.lock().unwrap().clone();
    let run = |number: u32, attempt: usize| {
        runs.iter()
            .find(|r| r.0 == number && r.1 == attempt)
            .unwrap_or_else(|| panic!("no run {number}/{attempt}: {runs:?}"))
            .clone()
    };
    for r in &runs {
        assert_eq!(
            r.4.as_deref(),
            Some("acme"),
            "baggage reached the job: {runs:?}"
        );
    }
    let waited = |s: &Span| {
        attr_f64(s, "job.queue_time").unwrap_or_else(|| panic!("no job.queue_time: {all}"))
    };
    // First attempts: from the push to the start, about 1.5 s.
    for (number, attempts) in [
        (1, jobs.values().find(|a| a.len() == 1).unwrap()),
        (2, retried),
    ] {
        let measured = secs(run(number, 1).2) - secs(pushed_at);
        let recorded = waited(&attempts[0]);
        assert!(measured >= 1.4, "{measured}");
        assert!(
            (recorded - measured).abs() < TOLERANCE + 0.1,
            "attempt 1 of invoice {number}: queue time {recorded} s, measured {measured} s: {all}"
        );
    }
    // Retries: from the end of the failed attempt to the next start.
    for attempt in [2, 3] {
        let span = &retried[attempt - 1];
        assert_eq!(attr_i64(span, "job.attempt"), Some(attempt as i64), "{all}");
        let measured = secs(run(2, attempt).2) - secs(run(2, attempt - 1).3);
        let recorded = waited(span);
        assert!(
            (recorded - measured).abs() < TOLERANCE,
            "attempt {attempt}: queue time {recorded} s, measured {measured} s: {all}"
        );
    }
}
