//! The worker half of the Redis example: runs the jobs `examples/producer.rs`
//! enqueued, in a process of its own, with `MonitorLayer`. Each job makes one
//! span with the `opentelemetry` API and one with `tracing` (through
//! `jobsight_otel`'s bridge): both are children of the job's
//! `process {queue}` span. The job reads the producer's baggage.
//!
//! ```text
//! cargo run --example producer -- --queue reports --jobs 3
//! cargo run --example worker -- --queue reports --runs 3 --propagation link
//! ```
//!
//! Options, each also read from an environment variable:
//!
//! | option | variable | default | meaning |
//! |---|---|---|---|
//! | `--queue` | `JOBSIGHT_QUEUE` | `reports` | apalis-redis queue (namespace) |
//! | `--runs` | `JOBSIGHT_RUNS` | `3` | attempts to run before exiting (a retried job counts once per attempt); `0`: run until stopped |
//! | `--propagation` | `JOBSIGHT_PROPAGATION` | `link` | `link`, `child` or `none` |
//! | `--worker` | `JOBSIGHT_WORKER` | `{queue}@{host}/{pid}` ([`jobsight_apalis::worker_name`]) | worker name, unique per process: apalis-redis keys heartbeats and jobs in flight by name, and refuses a name seen in the last heartbeat interval |
//! | `--job-ms` | `JOBSIGHT_JOB_MS` | `5` | how long each job works, in ms |
//! | `--concurrency` | `JOBSIGHT_CONCURRENCY` | `4` | jobs run at the same time |
//! | `--grace-ms` | `JOBSIGHT_GRACE_MS` | `5000` | after SIGTERM or Ctrl-C, how long jobs in flight may take to finish before they are cut off (recorded as `abandoned`) |
//! | `--timeout-secs` | `JOBSIGHT_TIMEOUT_SECS` | `60` | give up (exit code 2) after this long |
//! | `--redis` | `REDIS_URL` | `redis://127.0.0.1:6379` | Redis |
//!
//! When Redis goes away, apalis ends the worker at the first failed Redis
//! call; it is built again (as `{worker}-{n}`) and carries on when Redis is
//! back. SIGTERM or Ctrl-C stops it gracefully: no new jobs are taken, jobs in
//! flight get `--grace-ms` to finish, telemetry is flushed (within the
//! guard's deadline, 5 s), and it exits with status 0.
//!
//! Telemetry comes from the `OTEL_*` variables; with none set, a summary is
//! printed at exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use jobsight::demo::{self, BuildReport, Options};
use jobsight_apalis::MonitorLayer;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("report storage busy, try again")]
    StorageBusy,
}

async fn build_report(
    job: BuildReport,
    attempt: Attempt,
    work: Data<JobWork>,
) -> Result<(), BoxDynError> {
    // The producer's baggage, whatever the propagation mode.
    let tenant = Context::current()
        .baggage()
        .get("tenant")
        .map(|v| v.to_string())
        .unwrap_or_default();

    // A span made with the OpenTelemetry API: a child of `process {queue}`.
    global::tracer("jobsight-example-worker").in_span("render report", |cx| {
        cx.span()
            .set_attribute(KeyValue::new("app.tenant", tenant.clone()));
    });

    // A span made with `tracing`: also a child of `process {queue}`.
    let JobWork(duration) = *work;
    async { tokio::time::sleep(duration).await }
        .instrument(tracing::info_span!("store report", report = job.report, tenant = %tenant))
        .await;

    // apalis counts attempts from 1 once the job runs.
    if attempt.current() <= job.fail_attempts as usize {
        return Err(ReportError::StorageBusy.into());
    }
    Ok(())
}

/// How long each job works (`--job-ms`).
#[derive(Clone, Copy, Debug)]
struct JobWork(Duration);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::from_args();
    let queue = options.text("queue", "JOBSIGHT_QUEUE", "reports");
    let runs: usize = options.parsed("runs", "JOBSIGHT_RUNS", "3")?;
    let propagation =
        demo::propagation(&options.text("propagation", "JOBSIGHT_PROPAGATION", "link"))?;
    // Host name and process id: unique per process, also in containers
    // where every process is pid 1.
    let default_name = jobsight_apalis::worker_name(&queue);
    let worker_name = options.text("worker", "JOBSIGHT_WORKER", &default_name);
    let job_ms: u64 = options.parsed("job-ms", "JOBSIGHT_JOB_MS", "5")?;
    let concurrency: usize = options.parsed("concurrency", "JOBSIGHT_CONCURRENCY", "4")?;
    let grace_ms: u64 = options.parsed("grace-ms", "JOBSIGHT_GRACE_MS", "5000")?;
    let timeout: u64 = options.parsed("timeout-secs", "JOBSIGHT_TIMEOUT_SECS", "60")?;
    let redis_url = options.text("redis", "REDIS_URL", "redis://127.0.0.1:6379");

    let telemetry = jobsight_otel::Builder::new()
        .service_name("jobsight-example-worker")
        .install()?;
    // `tracing` spans become OpenTelemetry spans.
    tracing_subscriber::registry()
        .with(telemetry.tracing_layer())
        .init();

    let conn = apalis_redis::connect(redis_url).await?;
    let config = Config::default()
        .queue(&queue)
        // apalis-core 1.0.0's interval poll strategy can stop ticking, after
        // which only the heartbeat (30 s by default) wakes an idle worker: a
        // short heartbeat bounds that stall. With one worker per queue its
        // other effect (orphaned jobs are taken back after two missed
        // heartbeats) does not matter.
        .heartbeat_interval(Duration::from_secs(1));
    let storage = RedisStorage::<BuildReport>::new(conn)
        .with_config(config)
        // Pick new jobs up within 100 ms, not at the next heartbeat.
        .poll_with_interval(Duration::from_millis(100));
    let layer = MonitorLayer::builder()
        .propagation(propagation)
        .queue(queue.as_str())
        .build()?;
    let monitor = layer.monitor().clone();

    let finished = Arc::new(AtomicUsize::new(0));
    let seen = finished.clone();
    let work = JobWork(Duration::from_millis(job_ms));
    let workers = Monitor::new()
        .register(move |run| {
            let seen = seen.clone();
            // A restarted worker needs a name of its own: apalis-redis
            // refuses one whose heartbeat is recent.
            let name = match run {
                0 => worker_name.clone(),
                n => format!("{worker_name}-{n}"),
            };
            WorkerBuilder::new(name)
                .backend(storage.clone())
                .layer(layer.clone())
                .data(work)
                .concurrency(concurrency)
                .on_event(move |w: &WorkerContext, event: &Event| {
                    if matches!(event, Event::Success(_) | Event::Error(_))
                        && seen.fetch_add(1, Ordering::SeqCst) + 1 == runs
                    {
                        let _ = w.stop();
                    }
                })
                .build(build_report)
        })
        // apalis-redis ends a worker at the first Redis call that fails
        // (Redis restarting, a network cut): build it again. Its first call
        // waits for the connection manager to reconnect.
        .should_restart(|_, error| matches!(error, WorkerError::BackendError(_)))
        // After the signal, jobs in flight get this long; then they are
        // dropped, which `MonitorLayer` records as `abandoned`.
        .shutdown_timeout(Duration::from_millis(grace_ms));

    let timed_out = Arc::new(AtomicBool::new(false));
    let gave_up = timed_out.clone();
    let signal = async move {
        tokio::select! {
            name = wait_for_signal() => {
                eprintln!("worker: {name}: taking no new jobs; jobs in flight get {grace_ms} ms");
            }
            () = tokio::time::sleep(Duration::from_secs(timeout)) => {
                gave_up.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    };
    let ran = workers.run_with_signal(signal).await;
    eprintln!(
        "worker: {} runs on {queue}; {} propagated contexts dropped as invalid",
        finished.load(Ordering::SeqCst),
        monitor.invalid_contexts()
    );
    // Flushes spans and metrics, jobs cut off by the grace period included,
    // within the guard's deadline (5 s).
    telemetry.shutdown()?;
    if timed_out.load(Ordering::SeqCst) {
        eprintln!("worker: gave up after {timeout} s");
        std::process::exit(2);
    }
    Ok(ran?)
}

/// Waits for SIGTERM (`kill`, `docker stop`, systemd) or Ctrl-C; returns
/// which one came.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
