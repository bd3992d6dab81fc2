//! Two worker processes of one service never share a metric series: the
//! example worker (`examples/worker.rs`) runs twice, as two child processes
//! on one apalis-redis queue (Redis at 127.0.0.1:6379), both exporting over
//! OTLP/HTTP to one in-process receiver, with their default settings (no
//! `--worker`, no `OTEL_RESOURCE_ATTRIBUTES`).
//!
//! A backend tells series apart by resource, metric and attributes. The test
//! groups every data point that arrived that way and checks, for every
//! metric: each series comes from one process only, has one start time, and
//! a monotonic counter or a histogram never goes down; each process's
//! resource has a `service.instance.id` of its own and its `process.pid`;
//! the two processes registered different worker names in Redis.
//!
//! `cargo test` builds the examples before running the tests;
//! `cargo test --test instance_identity` alone does not: run
//! `cargo build --example worker` first in that case.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use jobsight::demo::BuildReport;
use jobsight_testkit::jobs::{REDIS_ADDR, RedisKeys, example_command, example_path};
use jobsight_testkit::otlp::{MetricKind, MetricPoint, Receiver, Span};
use jobsight_testkit::unique;

const PROCESSES: usize = 2;
/// Jobs pushed, one at a time.
const JOBS: u32 = 30;
const WAIT: Duration = Duration::from_secs(60);
const CONSUMED: &str = "messaging.client.consumed.messages";

fn spawn_worker(rx: &Receiver, queue: &str) -> Child {
    example_command(&example_path("worker"), &rx.endpoint())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .args(["--queue", queue, "--runs", "0", "--job-ms", "40"])
        .args(["--concurrency", "1", "--timeout-secs", "90"])
        .spawn()
        .expect("start the example worker")
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

/// The worker names registered on `queue` (apalis-redis's `{queue}:workers`).
async fn workers(conn: &mut ConnectionManager, queue: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("{queue}:workers"))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("ZRANGE")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {}", child.id());
}

async fn wait_exit(mut child: Child, limit: Duration) -> (ExitStatus, Output) {
    let started = Instant::now();
    while child.try_wait().expect("wait for the worker").is_none() && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("worker output");
    (output.status, output)
}

fn resource_str<'a>(point: &'a MetricPoint, key: &str) -> Option<&'a str> {
    point.resource.get(key).and_then(|v| v.as_str())
}

fn pid(point: &MetricPoint) -> Option<i64> {
    point.resource.get("process.pid").and_then(|v| v.as_i64())
}

/// The runs a worker reported at exit (`worker: N runs on {queue}; …`).
fn ran(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("worker: ")?
                .split(" runs on ")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no run count in the worker's output:\n{stderr}"))
}

/// What a backend sees as one series: resource, metric and attributes.
fn series_key(point: &MetricPoint) -> String {
    format!(
        "{} {:?} resource {:?}",
        point.name, point.attributes, point.resource
    )
}

/// The value that a cumulative series must never lower.
fn cumulative_value(point: &MetricPoint) -> Option<f64> {
    match point.kind {
        MetricKind::Sum if point.monotonic == Some(true) => point.value,
        MetricKind::Histogram | MetricKind::ExpHistogram => point.count.map(|c| c as f64),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_export_one_series_each() {
    let rx = Receiver::http().await;
    let queue = unique("jobsight-instances");
    let _keys = RedisKeys::new(&queue);
    let mut conn = redis().await;

    // Both workers start and register before any job is pushed, so that
    // both take jobs.
    let mut children = Vec::new();
    for n in 1..=PROCESSES {
        children.push(spawn_worker(&rx, &queue));
        let deadline = Instant::now() + WAIT;
        while workers(&mut conn, &queue).await.len() < n {
            assert!(
                Instant::now() < deadline,
                "worker {n} did not register in Redis"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let names = workers(&mut conn, &queue).await;
    assert_eq!(
        names.len(),
        PROCESSES,
        "one registered worker per process, by default names: {names:?}"
    );

    // A job at a time, faster than one worker alone runs them: whichever
    // worker polls first takes it, so both get some.
    let mut storage =
        RedisStorage::<BuildReport>::new(conn.clone()).with_config(Config::default().queue(&queue));
    for report in 0..JOBS {
        storage
            .push(BuildReport {
                report,
                fail_attempts: 0,
            })
            .await
            .expect("push");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let process_span = format!("process {queue}");
    let spans = rx
        .wait_for_spans(
            |spans: &[Span]| {
                spans.iter().filter(|s| s.name == process_span).count() >= JOBS as usize
            },
            WAIT,
        )
        .await;
    assert_eq!(
        spans.iter().filter(|s| s.name == process_span).count(),
        JOBS as usize,
        "every job ran once"
    );
    // Cumulative metrics are exported every 200 ms: let a few more exports
    // of the final values arrive.
    tokio::time::sleep(Duration::from_millis(600)).await;

    for child in &children {
        sigterm(child);
    }
    let mut runs = BTreeMap::new();
    for child in children {
        let pid = i64::from(child.id());
        let (status, output) = wait_exit(child, Duration::from_secs(30)).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            status.code(),
            Some(0),
            "worker exit after SIGTERM:\n{stderr}"
        );
        runs.insert(pid, ran(&stderr));
    }
    assert!(
        runs.values().all(|&n| n > 0),
        "each process ran some of the jobs (the test needs both busy): {runs:?}"
    );
    assert_eq!(runs.values().sum::<u64>(), u64::from(JOBS), "{runs:?}");
    let pids: BTreeSet<i64> = runs.keys().copied().collect();

    let points: Vec<MetricPoint> = rx
        .metrics()
        .into_iter()
        .filter(|p| p.scope_name == "jobsight")
        .collect();

    // Each series (as a backend keys it): one process, one start time,
    // cumulative values that never go down.
    let mut by_series: BTreeMap<String, Vec<&MetricPoint>> = BTreeMap::new();
    for p in &points {
        by_series.entry(series_key(p)).or_default().push(p);
    }
    let mut per_metric: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (key, mut series) in by_series {
        series.sort_by_key(|p| p.time_unix_nano);
        let from: BTreeSet<Option<i64>> = series.iter().map(|p| pid(p)).collect();
        assert_eq!(from.len(), 1, "one series fed by several processes: {key}");
        let starts: BTreeSet<u64> = series.iter().map(|p| p.start_time_unix_nano).collect();
        // Gauges carry no start time of their own to compare.
        let cumulative = series[0].kind != MetricKind::Gauge;
        assert!(
            !cumulative || starts.len() == 1,
            "one series with several start times: {key}: {starts:?}"
        );
        let values: Vec<f64> = series.iter().filter_map(|p| cumulative_value(p)).collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "a cumulative series went down: {key}: {values:?}"
        );
        if let Some(Some(pid)) = from.into_iter().next() {
            per_metric
                .entry(series[0].name.as_str())
                .or_default()
                .insert(pid);
        }
    }
    // Each process: its own service.instance.id, the same for all its points.
    let mut instance_of: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for p in &points {
        let id = resource_str(p, "service.instance.id")
            .unwrap_or_else(|| panic!("no service.instance.id: {:?}", p.resource));
        let pid = pid(p).unwrap_or_else(|| panic!("no process.pid: {:?}", p.resource));
        assert!(
            resource_str(p, "host.name").is_some_and(|h| !h.is_empty()),
            "no host.name: {:?}",
            p.resource
        );
        instance_of.entry(pid).or_default().insert(id.to_owned());
    }
    assert_eq!(
        instance_of.keys().copied().collect::<BTreeSet<_>>(),
        pids,
        "points from every process and no other"
    );
    let ids: BTreeSet<&String> = instance_of.values().flatten().collect();
    assert!(
        instance_of.values().all(|ids| ids.len() == 1) && ids.len() == PROCESSES,
        "one service.instance.id per process, none shared: {instance_of:?}"
    );

    // The job metrics came from both processes, as series of their own.
    for metric in [
        CONSUMED,
        "messaging.process.duration",
        "job.outcomes",
        "job.queue_time",
    ] {
        assert_eq!(
            per_metric.get(metric),
            Some(&pids),
            "{metric}: a series from each process"
        );
    }
    // Their start times differ: each process started its own.
    let starts: BTreeMap<i64, BTreeSet<u64>> = points
        .iter()
        .filter(|p| p.name == CONSUMED)
        .filter_map(|p| Some((pid(p)?, p.start_time_unix_nano)))
        .fold(BTreeMap::new(), |mut acc, (pid, start)| {
            acc.entry(pid).or_insert_with(BTreeSet::new).insert(start);
            acc
        });
    let all: BTreeSet<u64> = starts.values().flatten().copied().collect();
    assert!(
        starts.values().all(|s| s.len() == 1) && all.len() == PROCESSES,
        "{CONSUMED}: one start time per process, different processes different times: {starts:?}"
    );
}
