//! A worker on apalis-redis with three queues, the queue gauges and the
//! Prometheus scrape endpoint: what `dashboards/` is checked against.
//!
//! ```sh
//! cargo run --example redis_queues      # then open http://127.0.0.1:9464/metrics
//! ```
//!
//! Queues (names prefixed with `JOBSIGHT_DEMO_PREFIX`, default `demo-`):
//! - `emails`: quick jobs; one in ten fails once and succeeds on apalis-redis's retry;
//! - `reports`: slower jobs; one in four is aborted (`failed`, then dead);
//! - `ledger`: stalls on purpose: after three jobs one hangs, and with a
//!   concurrency of one nothing else runs, so the queue falls behind.
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379/`),
//! `JOBSIGHT_METRICS_ADDR` (default `127.0.0.1:9464`), `JOBSIGHT_POLL_MS`
//! (queue gauges interval, default 2000), `JOBSIGHT_DEMO_SECONDS` (stop
//! after this long; default: run until Ctrl-C or SIGTERM), plus the usual
//! `OTEL_*` variables to export over OTLP too. On exit the demo's Redis
//! keys are deleted.
//!
//! Several copies may run at once on the same queues (the dashboards check
//! runs two): worker names carry the host name and process id
//! ([`jobsight_apalis::worker_name`]), and each process exports its own
//! series (`service.instance.id`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::error::AbortError;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use jobsight_apalis::{MonitorLayer, RedisQueueStats};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SendEmail {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BuildReport {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SyncLedger {
    n: u64,
}

#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("mail server busy, try again")]
    ServerBusy,
    #[error("report {0}: the spec names a column that does not exist")]
    InvalidSpec(u64),
}

async fn send_email(job: SendEmail, attempt: Attempt) -> Result<(), BoxDynError> {
    tokio::time::sleep(Duration::from_millis(5 + job.n % 20)).await;
    if job.n % 10 == 3 && attempt.current() <= 1 {
        return Err(DemoError::ServerBusy.into());
    }
    Ok(())
}

async fn build_report(job: BuildReport) -> Result<(), BoxDynError> {
    tokio::time::sleep(Duration::from_millis(50 + 30 * (job.n % 5))).await;
    if job.n % 4 == 1 {
        return Err(AbortError::new(DemoError::InvalidSpec(job.n)).into());
    }
    Ok(())
}

/// Jobs of the `ledger` queue run so far.
static LEDGER_RUNS: AtomicU64 = AtomicU64::new(0);

async fn sync_ledger(_job: SyncLedger) -> Result<(), BoxDynError> {
    if LEDGER_RUNS.fetch_add(1, Ordering::SeqCst) >= 3 {
        // Stuck: an external call that never returns.
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn storage<T>(conn: &ConnectionManager, queue: &str) -> RedisStorage<T> {
    // An idle apalis-redis worker looks for new jobs at its heartbeat
    // (30 s by default): beat every second so the demo keeps moving.
    let config = Config::default()
        .queue(queue)
        .heartbeat_interval(Duration::from_secs(1));
    RedisStorage::new(conn.clone()).with_config(config)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379/");
    let prefix = env_or("JOBSIGHT_DEMO_PREFIX", "demo-");
    let poll = Duration::from_millis(env_or("JOBSIGHT_POLL_MS", "2000").parse()?);
    let run_for: Option<u64> = std::env::var("JOBSIGHT_DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let [emails, reports, ledger] = ["emails", "reports", "ledger"].map(|q| format!("{prefix}{q}"));

    let telemetry = jobsight_otel::Builder::new()
        .service_name("jobsight-redis-demo")
        .prometheus_endpoint(env_or("JOBSIGHT_METRICS_ADDR", "127.0.0.1:9464"))
        .install()?;
    let addr = telemetry
        .prometheus_addr()
        .ok_or("the scrape endpoint did not start")?;

    let conn = apalis_redis::connect(redis_url.as_str()).await?;
    let stats = RedisQueueStats::new(conn.clone())
        .queues([&emails, &reports, &ledger])
        .interval(poll)
        .start()?;
    eprintln!(
        "redis_queues: metrics on http://{addr}/metrics; queues {emails}, {reports}, {ledger}"
    );

    // The producer: a steady trickle on each queue.
    let producer = {
        let (mut e, mut r, mut l) = (
            storage::<SendEmail>(&conn, &emails),
            storage::<BuildReport>(&conn, &reports),
            storage::<SyncLedger>(&conn, &ledger),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for n in 0u64.. {
                tick.tick().await;
                let pushed = async {
                    e.push(SendEmail { n }).await?;
                    if n % 4 == 0 {
                        r.push(BuildReport { n: n / 4 }).await?;
                    }
                    if n % 10 == 0 {
                        l.push(SyncLedger { n: n / 10 }).await?;
                    }
                    Ok::<(), BoxDynError>(())
                };
                if let Err(error) = pushed.await {
                    eprintln!("redis_queues: push failed: {error}");
                }
            }
        })
    };

    let (e, r, l) = (
        storage::<SendEmail>(&conn, &emails),
        storage::<BuildReport>(&conn, &reports),
        storage::<SyncLedger>(&conn, &ledger),
    );
    // One layer per worker, named for its queue (apalis-redis does not put
    // the queue on the task).
    let (me, mr, ml) = (
        MonitorLayer::builder().queue(emails.as_str()).build()?,
        MonitorLayer::builder().queue(reports.as_str()).build()?,
        MonitorLayer::builder().queue(ledger.as_str()).build()?,
    );
    let monitor = Monitor::new()
        .register(move |_| {
            WorkerBuilder::new(jobsight_apalis::worker_name("email-sender"))
                .backend(e.clone())
                .layer(me.clone())
                .concurrency(8)
                .build(send_email)
        })
        .register(move |_| {
            WorkerBuilder::new(jobsight_apalis::worker_name("report-builder"))
                .backend(r.clone())
                .layer(mr.clone())
                .concurrency(4)
                .build(build_report)
        })
        .register(move |_| {
            WorkerBuilder::new(jobsight_apalis::worker_name("ledger-sync"))
                .backend(l.clone())
                .layer(ml.clone())
                .concurrency(1)
                .build(sync_ledger)
        })
        .shutdown_timeout(Duration::from_secs(2));
    let signal = async move {
        let time_up = async {
            match run_for {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = time_up => {}
            () = wait_for_signal() => {}
        }
        Ok(())
    };
    if let Err(error) = monitor.run_with_signal(signal).await {
        eprintln!("redis_queues: {error}");
    }

    producer.abort();
    let _ = producer.await;
    eprintln!(
        "redis_queues: {} polls of the queue gauges (last one took {:?}), {} failed",
        stats.polls(),
        stats.last_poll_duration().unwrap_or_default(),
        stats.errors()
    );
    drop(stats);
    let mut conn = conn;
    for queue in [&emails, &reports, &ledger] {
        delete_queue(&mut conn, queue).await?;
    }
    telemetry.shutdown()?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Deletes the demo's keys for `queue` (at exit, not on any job's path).
async fn delete_queue(conn: &mut ConnectionManager, queue: &str) -> Result<(), redis::RedisError> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{queue}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(conn).await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let _: () = redis::cmd("ZREM")
        .arg("core:apalis:queues:list")
        .arg(format!("{queue}:workers"))
        .query_async(conn)
        .await?;
    Ok(())
}
