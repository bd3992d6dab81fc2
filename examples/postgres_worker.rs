//! A worker on apalis-postgres with jobsight: spans and metrics per job,
//! the producer's trace linked through the `metadata` column, and the
//! queue gauges read from `apalis.jobs` by one SQL query.
//!
//! ```sh
//! # PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), then:
//! cargo run --example postgres_worker                  # console summary at exit
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example postgres_worker
//! JOBSIGHT_METRICS_ADDR=127.0.0.1:9464 JOBSIGHT_DEMO_SECONDS=60 cargo run --example postgres_worker
//! ```
//!
//! It pushes `JOBSIGHT_DEMO_JOBS` emails (default 40) to the queue
//! `{JOBSIGHT_DEMO_PREFIX}emails` (prefix default `demo-`) with
//! `push_traced`, inside a `POST /signup` span; one email in ten fails twice
//! and succeeds on apalis-postgres's third attempt (it re-fetches failed
//! jobs at once, up to the task's `max_attempts`, here 3). It stops when
//! every email is sent, or after `JOBSIGHT_DEMO_SECONDS`.
//!
//! Environment: `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; apalis's migrations are
//! applied to it, in the schema `apalis`), `JOBSIGHT_METRICS_ADDR` (serve
//! Prometheus metrics there), `JOBSIGHT_POLL_MS` (gauges interval, default
//! 2000), plus the usual `OTEL_*` variables. The demo's rows are deleted on
//! exit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use jobsight_apalis::backend::Postgres;
use jobsight_apalis::{MonitorLayer, PostgresQueueStats, TracedPush};
use opentelemetry::global;
use opentelemetry::trace::{TraceContextExt, Tracer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SendEmail {
    n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("mail server busy, try again")]
struct ServerBusy;

/// Emails sent so far.
static SENT: AtomicU64 = AtomicU64::new(0);

async fn send_email(job: SendEmail, attempt: Attempt) -> Result<(), BoxDynError> {
    tokio::time::sleep(Duration::from_millis(10 + job.n % 30)).await;
    // apalis counts the current run: 1 on the first attempt.
    if job.n % 10 == 3 && attempt.current() <= 2 {
        return Err(ServerBusy.into());
    }
    SENT.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = env_or(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let queue = format!("{}emails", env_or("JOBSIGHT_DEMO_PREFIX", "demo-"));
    let jobs: u64 = env_or("JOBSIGHT_DEMO_JOBS", "40").parse()?;
    let poll = Duration::from_millis(env_or("JOBSIGHT_POLL_MS", "2000").parse()?);
    let run_for: Option<u64> = std::env::var("JOBSIGHT_DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());

    let mut builder = jobsight_otel::Builder::new().service_name("jobsight-postgres-demo");
    if let Ok(addr) = std::env::var("JOBSIGHT_METRICS_ADDR") {
        builder = builder.prometheus_endpoint(addr);
    }
    let telemetry = builder.install()?;
    if let Some(addr) = telemetry.prometheus_addr() {
        eprintln!("postgres_worker: metrics on http://{addr}/metrics");
    }

    let pool = PgPool::connect(&url).await?;
    PostgresStorage::setup(&pool).await?;
    PostgresQueueStats::create_index(&pool).await?;
    let stats = PostgresQueueStats::new(pool.clone())
        .queue(&queue)
        .interval(poll)
        .start()?;
    // An idle worker looks for new jobs at its heartbeat (30 s by default).
    let config = Config::default()
        .queue(&queue)
        .heartbeat_interval(Duration::from_secs(1));

    // The producer: a request span, each push a `send {queue}` span in it.
    let mut producer = PostgresStorage::<SendEmail>::new(&pool).with_config(config.clone());
    let tracer = global::tracer("postgres_worker");
    let request = tracer.start("POST /signup");
    let cx = opentelemetry::Context::current_with_span(request);
    {
        let _attached = cx.clone().attach();
        for n in 0..jobs {
            producer
                .push_task_traced(TaskBuilder::new(SendEmail { n }).max_attempts(3).build())
                .await?;
        }
    }
    cx.span().end();
    eprintln!("postgres_worker: pushed {jobs} emails to {queue}");

    let worker = WorkerBuilder::new("email-sender")
        .backend(PostgresStorage::<SendEmail>::new(&pool).with_config(config))
        .layer(MonitorLayer::builder().backend(Postgres).build()?)
        .concurrency(4)
        .build(send_email);
    let done = async move {
        let deadline = run_for.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let time_up = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            // With a deadline the demo keeps running (and being scraped) until it.
            if time_up || (deadline.is_none() && SENT.load(Ordering::SeqCst) >= jobs) {
                break;
            }
        }
        Ok::<(), WorkerError>(())
    };
    worker.run_until(done).await?;
    eprintln!(
        "postgres_worker: {} sent; last gauges {:?}",
        SENT.load(Ordering::SeqCst),
        stats.snapshot()
    );
    drop(stats);
    sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
        .bind(&queue)
        .execute(&pool)
        .await?;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
    Ok(())
}
