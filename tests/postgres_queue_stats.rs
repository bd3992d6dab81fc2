//! The apalis-postgres queue gauges against the real PostgreSQL on
//! 127.0.0.1:5432, exported over OTLP/gRPC to the in-process receiver: the
//! six gauges match the rows the test wrote — jobs due, one waiting for its
//! retry (aged from its failure, not from its stale `run_at`), jobs
//! scheduled later, jobs in a worker's buffer (`Queued`) and running, done
//! and dead — per queue, with `job.backend` = `postgres`.

use std::time::{Duration, Instant};

use jobsight_apalis::PostgresQueueStats;
use jobsight_otel::{Builder, Protocol};
use jobsight_testkit::jobs::postgres::{PgQueue, pool};
use jobsight_testkit::otlp::{MetricPoint, Receiver};
use jobsight_testkit::unique;

const WAIT: Duration = Duration::from_secs(20);

/// (status, attempts, max attempts, run_at offset s, done_at offset s, held by the worker)
type Row = (&'static str, i32, i32, f64, Option<f64>, bool);

const ROWS: &[Row] = &[
    // Due now: three pending, one failed with attempts left whose `run_at`
    // is a minute old but which failed (became due again) 7.25 s ago.
    ("Pending", 0, 25, -1.0, None, false),
    ("Pending", 0, 25, -3.5, None, false),
    ("Pending", 0, 25, 0.0, None, false),
    ("Failed", 1, 25, -60.0, Some(-7.25), false),
    // Scheduled for later.
    ("Pending", 0, 25, 3600.0, None, false),
    ("Pending", 0, 25, 7200.0, None, false),
    // Held by a worker: two fetched into its buffer, one running.
    ("Queued", 0, 25, -2.0, None, true),
    ("Queued", 0, 25, -2.0, None, true),
    ("Running", 0, 25, -2.0, None, true),
    // Done.
    ("Done", 1, 25, -30.0, Some(-20.0), true),
    ("Done", 1, 25, -30.0, Some(-20.0), true),
    ("Done", 1, 25, -30.0, Some(-20.0), true),
    ("Done", 1, 25, -30.0, Some(-20.0), true),
    // Dead: out of attempts, and killed.
    ("Failed", 25, 25, -30.0, Some(-10.0), true),
    ("Killed", 1, 25, -30.0, Some(-10.0), true),
];

fn last(points: &[MetricPoint], name: &str, queue: &str) -> Option<f64> {
    points
        .iter()
        .filter(|p| {
            p.name == name
                && p.attr("messaging.destination.name")
                    .and_then(|v| v.as_str())
                    == Some(queue)
                && p.attr("job.backend").and_then(|v| v.as_str()) == Some("postgres")
        })
        .max_by_key(|p| p.time_unix_nano)
        .and_then(|p| p.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gauges_match_the_rows() {
    let pool = pool().await;
    let queue = unique("jobsight-pg-stats");
    let quiet = unique("jobsight-pg-stats-quiet");
    let _rows = PgQueue {
        pool: pool.clone(),
        queue: queue.clone(),
    };
    let _quiet_rows = PgQueue {
        pool: pool.clone(),
        queue: quiet.clone(),
    };
    let worker = unique("jobsight-pg-stats-worker");
    sqlx::query("INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ($1, $2, 'PgStorage', '', now())")
        .bind(&worker)
        .bind(&queue)
        .execute(&pool)
        .await
        .expect("worker row");
    let inserted = Instant::now();
    for (i, (status, attempts, max, run_at, done_at, held)) in ROWS.iter().enumerate() {
        sqlx::query(
            "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at, lock_by, lock_at, priority)
             VALUES ('null'::bytea, $1, $2, $3, $4, $5, now() + make_interval(secs => $6),
                     now() + make_interval(secs => $7), $8, CASE WHEN $8::text IS NULL THEN NULL ELSE now() END, 0)",
        )
        .bind(format!("{queue}-{i}"))
        .bind(&queue)
        .bind(status)
        .bind(attempts)
        .bind(max)
        .bind(run_at)
        .bind(done_at)
        .bind(held.then_some(worker.as_str()))
        .execute(&pool)
        .await
        .expect("job row");
    }
    // Another queue: one done row, nothing else.
    sqlx::query("INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at) VALUES ('null'::bytea, $1, $2, 'Done', 1, 25, now(), now())")
        .bind(format!("{quiet}-0"))
        .bind(&quiet)
        .execute(&pool)
        .await
        .expect("quiet row");

    let rx = Receiver::grpc().await;
    let telemetry = Builder::new()
        .service_name(unique("jobsight-pg-stats-svc"))
        .endpoint(rx.endpoint())
        .protocol(Protocol::Grpc)
        .summary(false)
        .metric_export_interval(Duration::from_millis(200))
        .install()
        .expect("install telemetry");
    let stats = PostgresQueueStats::new(pool.clone())
        .queue(&queue)
        .queue(&quiet)
        .interval(Duration::from_millis(100))
        .meter_provider(telemetry.meter_provider().expect("meter provider"))
        .start()
        .expect("start the poller");

    let points = rx
        .wait_for_metrics(
            |m: &[MetricPoint]| last(m, "job.queue.dead", &quiet).is_some(),
            WAIT,
        )
        .await;
    let age_bound = inserted.elapsed().as_secs_f64() + 7.25;
    assert_eq!(stats.errors(), 0, "{:?}", stats.last_error());
    let expect = [
        ("job.queue.depth", 4.0, 0.0),
        ("job.queue.scheduled", 2.0, 0.0),
        ("job.queue.running", 3.0, 0.0),
        ("job.queue.done", 4.0, 1.0),
        ("job.queue.dead", 2.0, 0.0),
    ];
    for (name, busy, idle) in expect {
        assert_eq!(last(&points, name, &queue), Some(busy), "{name} of {queue}");
        assert_eq!(last(&points, name, &quiet), Some(idle), "{name} of {quiet}");
    }
    let age = last(&points, "job.queue.oldest_age", &queue).expect("oldest_age");
    assert!(
        (7.25..=age_bound + 0.5).contains(&age),
        "the retry failed 7.25 s before the insert: oldest_age = {age}, at most {age_bound}"
    );
    assert_eq!(last(&points, "job.queue.oldest_age", &quiet), Some(0.0));
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.len(), 2);
    assert_eq!((snapshot[0].depth, snapshot[1].depth), (4, 0));
    drop(stats);
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("shutdown thread")
        .expect("telemetry shutdown");
}
