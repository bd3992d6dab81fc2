//! SIGTERM while jobs are in flight: the example worker
//! (`examples/worker.rs`) runs as a child process on the Redis at
//! 127.0.0.1:6379 and exports over OTLP/HTTP to an in-process receiver; the
//! test pushes jobs that take a while, sends SIGTERM once several are
//! running, and counts at the receiver.
//!
//! Every job the worker started is known at the receiver before the signal:
//! each job makes a `render report` span (a child of its `process {queue}`
//! span) as it starts, and that span is exported on its own. So "none
//! missing" is checked on the wire: every `render report` has its
//! `process` parent, finished (`succeeded`) or `abandoned`.
//!
//! What apalis 1.0 does (apalis-core `worker/call_all.rs`,
//! `monitor/mod.rs`; apalis-redis `lib.rs`, `lua/*.lua`), which the tests
//! show: on the signal the worker takes no new job and **waits for the jobs
//! in flight**; then it puts the jobs it had fetched but not started back
//! on the queue and leaves. `Monitor::shutdown_timeout` bounds that wait:
//! past it the jobs' futures are dropped (jobsight records `abandoned`) and
//! they stay in Redis in the worker's in-flight set, with the fetched but
//! not started ones; a worker registering under the same name more than
//! one heartbeat later takes them all back and runs them again.
//!
//! `cargo test` builds the examples before running the tests;
//! `cargo test --test sigterm` alone does not: run
//! `cargo build --example worker` first in that case.

use jobsight_testkit::jobs::{REDIS_ADDR, RedisKeys, example_command, example_path};
use jobsight_testkit::otlp::{Receiver, Span, brief};
use jobsight_testkit::unique;
use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_core::backend::BackendConfig;
use apalis_core::task::task_id::GenerateId;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use jobsight::demo::BuildReport;

const WAIT: Duration = Duration::from_secs(30);
/// The telemetry guard's flush deadline (`jobsight_otel` default).
const GUARD_DEADLINE: Duration = Duration::from_secs(5);
/// Slack on top of grace + deadline for a loaded machine.
const MARGIN: Duration = Duration::from_secs(10);
const CONCURRENCY: usize = 4;
const JOBS: usize = 8;

type RedisId = <RedisStorage<BuildReport> as BackendConfig>::Id;

fn spawn_worker(rx: &Receiver, queue: &str, worker: &str, args: &[&str]) -> Child {
    example_command(&example_path("worker"), &rx.endpoint())
        .args(["--queue", queue, "--worker", worker])
        .args(["--concurrency", &CONCURRENCY.to_string()])
        .args(["--timeout-secs", "60"])
        .args(args)
        .spawn()
        .expect("start the example worker")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {}", child.id());
}

/// Waits for the child to exit (kills it after `limit`); its status, how
/// long it took, and its output.
async fn wait_exit(mut child: Child, limit: Duration) -> (ExitStatus, Duration, Output) {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for the worker").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let output = child.wait_with_output().expect("worker output");
    (output.status, took, output)
}

async fn push_jobs(conn: &ConnectionManager, queue: &str, n: usize) -> Vec<String> {
    let mut storage =
        RedisStorage::<BuildReport>::new(conn.clone()).with_config(Config::default().queue(queue));
    let mut ids = Vec::new();
    for report in 0..n {
        let id = <RedisId as GenerateId>::generate();
        let job = BuildReport {
            report: report as u32,
            fail_attempts: 0,
        };
        storage
            .push_task(TaskBuilder::new(job).task_id(id.clone()).build())
            .await
            .expect("push");
        ids.push(id.to_string());
    }
    ids
}

fn spans_named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// `(job id, outcome)` of the `process` span of every `render report` span:
/// every job that started. Panics if one has no `process` span.
fn started_jobs(spans: &[Span], queue: &str) -> BTreeMap<String, String> {
    let process = format!("process {queue}");
    let mut jobs = BTreeMap::new();
    for render in spans_named(spans, "render report") {
        let parent = spans
            .iter()
            .find(|s| Some(&s.span_id) == render.parent_span_id.as_ref() && s.name == process)
            .unwrap_or_else(|| {
                panic!(
                    "a job started (render report {}) but its process span never arrived:\n{}",
                    render.span_id,
                    brief(spans)
                )
            });
        let id = parent.attr_str("messaging.message.id").unwrap_or("-");
        let outcome = parent.attr_str("job.outcome").unwrap_or("<none>");
        jobs.insert(id.to_owned(), outcome.to_owned());
    }
    jobs
}

async fn redis() -> ConnectionManager {
    tokio::time::timeout(
        Duration::from_secs(5),
        apalis_redis::connect(format!("redis://{REDIS_ADDR}")),
    )
    .await
    .expect("connecting to Redis timed out")
    .unwrap_or_else(|e| panic!("these tests need Redis at {REDIS_ADDR}: {e}"))
}

async fn llen(conn: &mut ConnectionManager, key: &str) -> usize {
    redis::cmd("LLEN")
        .arg(key)
        .query_async(conn)
        .await
        .expect("LLEN")
}

async fn smembers(conn: &mut ConnectionManager, key: &str) -> Vec<String> {
    let mut members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(conn)
        .await
        .expect("SMEMBERS");
    members.sort();
    members
}

/// Runs `JOBS` jobs of `job_ms` each with `grace_ms` of shutdown grace and
/// sends SIGTERM once `CONCURRENCY` of them have started. Returns the
/// receiver, queue, worker name, pushed ids, the jobs that started (id →
/// outcome), the time from SIGTERM to exit.
struct Run {
    rx: Receiver,
    conn: ConnectionManager,
    queue: String,
    worker: String,
    pushed: Vec<String>,
    started: BTreeMap<String, String>,
    exit_after: Duration,
    _keys: RedisKeys,
}

async fn sigterm_mid_run(job_ms: u64, grace_ms: u64) -> Run {
    let rx = Receiver::http().await;
    let queue = unique("jobsight-sigterm");
    let keys = RedisKeys::new(&queue);
    let worker = unique("sigterm-worker");
    let conn = redis().await;
    let pushed = push_jobs(&conn, &queue, JOBS).await;

    let child = spawn_worker(
        &rx,
        &queue,
        &worker,
        &[
            "--runs",
            "0",
            "--job-ms",
            &job_ms.to_string(),
            "--grace-ms",
            &grace_ms.to_string(),
        ],
    );
    rx.wait_for_spans(
        |spans: &[Span]| spans_named(spans, "render report").len() >= CONCURRENCY,
        WAIT,
    )
    .await;
    let signalled = SystemTime::now();
    sigterm(&child);
    let limit = Duration::from_millis(grace_ms) + GUARD_DEADLINE + MARGIN;
    let (status, exit_after, output) = wait_exit(child, limit).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        exit_after < limit,
        "still running {exit_after:?} after SIGTERM:\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM:\n{stderr}"
    );
    assert!(stderr.contains("SIGTERM"), "{stderr}");

    // Everything was flushed before the exit: no need to wait any more.
    let spans = rx.spans();
    let started = started_jobs(&spans, &queue);
    assert_eq!(
        started.len(),
        CONCURRENCY,
        "the jobs in flight at SIGTERM, and no new one after:\n{}",
        brief(&spans)
    );
    let process = spans_named(&spans, &format!("process {queue}"));
    assert_eq!(
        process.len(),
        started.len(),
        "one process span per started job:\n{}",
        brief(&spans)
    );
    let signalled = signalled
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    assert!(
        process.iter().all(|s| s.end_time_unix_nano > signalled),
        "every started job was still running at SIGTERM:\n{}",
        brief(&spans)
    );
    Run {
        rx,
        conn,
        queue,
        worker,
        pushed,
        started,
        exit_after,
        _keys: keys,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_jobs_in_flight_finish_and_requeues_the_rest() {
    let job_ms = 3000;
    let mut run = sigterm_mid_run(job_ms, 10_000).await;
    assert!(
        run.started.values().all(|o| o == "succeeded"),
        "{:?}",
        run.started
    );
    // The jobs finished after the signal: the worker waited for them.
    assert!(
        run.exit_after < Duration::from_millis(job_ms) + GUARD_DEADLINE + MARGIN,
        "{:?}",
        run.exit_after
    );

    // apalis put the jobs it had fetched but not started back on the queue.
    let active = llen(&mut run.conn, &format!("{}:active", run.queue)).await;
    let inflight = smembers(
        &mut run.conn,
        &format!("{}:inflight:{}", run.queue, run.worker),
    )
    .await;
    assert_eq!(active, JOBS - CONCURRENCY, "waiting again");
    assert!(inflight.is_empty(), "held by nobody: {inflight:?}");
    eprintln!(
        "SIGTERM with {CONCURRENCY} jobs of {job_ms} ms in flight, grace 10 s: exit 0 after {:?}; \
         outcomes {:?}; {active} of {JOBS} jobs back on the queue",
        run.exit_after,
        run.started.values().collect::<Vec<_>>()
    );
    run.rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_records_abandoned_jobs_that_the_next_worker_reruns() {
    let grace_ms = 500;
    let mut run = sigterm_mid_run(60_000, grace_ms).await;
    assert!(
        run.started.values().all(|o| o == "abandoned"),
        "{:?}",
        run.started
    );
    let spans = run.rx.spans();
    for span in spans_named(&spans, &format!("process {}", run.queue)) {
        assert_eq!(span.attr_str("error.type"), Some("abandoned"));
    }

    // In Redis the cut-off jobs, and those fetched but not started, stay
    // in the dead worker's in-flight set; nothing is waiting.
    let inflight = smembers(
        &mut run.conn,
        &format!("{}:inflight:{}", run.queue, run.worker),
    )
    .await;
    let mut pushed = run.pushed.clone();
    pushed.sort();
    assert_eq!(inflight, pushed, "held by the stopped worker");
    assert_eq!(
        llen(&mut run.conn, &format!("{}:active", run.queue)).await,
        0
    );

    // The same worker name, more than one heartbeat (1 s) later, takes them
    // back at registration and runs them all again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run.rx.clear();
    let child = spawn_worker(
        &run.rx,
        &run.queue,
        &run.worker,
        &["--runs", &JOBS.to_string(), "--job-ms", "10"],
    );
    let (status, took, output) = wait_exit(child, WAIT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let spans = run.rx.spans();
    let rerun = started_jobs(&spans, &run.queue);
    let mut ids: Vec<&String> = rerun.keys().collect();
    ids.sort();
    assert_eq!(ids, pushed.iter().collect::<Vec<_>>(), "every job ran");
    assert!(rerun.values().all(|o| o == "succeeded"), "{rerun:?}");
    let attempts: Vec<i64> = spans_named(&spans, &format!("process {}", run.queue))
        .iter()
        .filter_map(|s| jobsight_testkit::otlp::attr_i64(s, "job.attempt"))
        .collect();
    eprintln!(
        "SIGTERM with {CONCURRENCY} jobs of 60 s in flight, grace {grace_ms} ms: exit 0 after {:?}, \
         {} abandoned; {} jobs left in the worker's in-flight set, rerun by the same worker name \
         ({took:?}), job.attempt of the reruns: {attempts:?}",
        run.exit_after,
        run.started.len(),
        inflight.len()
    );
    run.rx.shutdown().await;
}
