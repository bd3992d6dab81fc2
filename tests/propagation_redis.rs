//! Traces that cross the queue, for real: the example producer and the
//! example worker run as separate processes over the Redis on
//! 127.0.0.1:6379 and export over OTLP/HTTP to an in-process receiver; the
//! assertions read trace ids, span ids and links as they crossed the wire.
//!
//! Each test has its own receiver, queue (namespace) and worker name, and
//! deletes its queue's keys at the end, also when it fails.
//!
//! `cargo test` (and `cargo test --workspace`) builds the examples before
//! running the tests; `cargo test --test propagation_redis` alone does not,
//! so run `cargo build --examples` first in that case.

use jobsight_testkit::jobs::{REDIS_ADDR, RedisKeys, example_command, example_path};
use jobsight_testkit::otlp::{self, Receiver, Span, SpanKind};
use jobsight_testkit::unique;
use std::process::Output;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::task::metadata::MetadataStore;
use apalis_redis::{Config, RedisStorage};
use jobsight::demo::BuildReport;

/// The longest a child process may run.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(5);
const PRODUCER: &str = "jobsight-example-producer";
const WORKER: &str = "jobsight-example-worker";

/// Runs an example to completion with telemetry pointed at `rx`; panics
/// with its output if it fails or runs past [`PROCESS_TIMEOUT`].
async fn run_example(name: &str, args: &[&str], rx: &Receiver) -> Output {
    let path = example_path(name);
    let mut child = example_command(&path, &rx.endpoint())
        .args(args)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        if child.try_wait().expect("wait for child").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().expect("child output");
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn service(span: &Span) -> &str {
    span.resource
        .get("service.name")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

fn spans_named<'a>(spans: &'a [Span], service_name: &str, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| service(s) == service_name && s.name == name)
        .collect()
}

fn by_id<'a>(spans: &'a [Span], span_id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.span_id == span_id)
        .unwrap_or_else(|| panic!("no span {span_id}"))
}

/// The producer's `send {queue}` span with the same message id as `process`.
fn send_of<'a>(spans: &'a [Span], queue: &str, process: &Span) -> &'a Span {
    let id = process
        .attr_str("messaging.message.id")
        .expect("process span has a message id");
    spans_named(spans, PRODUCER, &format!("send {queue}"))
        .into_iter()
        .find(|s| s.attr_str("messaging.message.id") == Some(id))
        .unwrap_or_else(|| panic!("no send span with message id {id}"))
}

/// The job's own spans: the OpenTelemetry API one and the `tracing` one,
/// both children of `process`, in its trace; returns the tenant the job saw.
fn job_children<'a>(spans: &'a [Span], process: &Span) -> &'a str {
    let child = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.parent_span_id.as_deref() == Some(&process.span_id))
            .unwrap_or_else(|| panic!("no {name} under {}", process.span_id))
    };
    let render = child("render report");
    let store = child("store report");
    assert_eq!(render.trace_id, process.trace_id);
    assert_eq!(store.trace_id, process.trace_id);
    assert_eq!(store.scope_name, "jobsight.tracing");
    render.attr_str("app.tenant").unwrap_or_default()
}

/// Producer (push style `style`) enqueues `jobs` jobs; the worker runs them
/// with `propagation`. Returns the queue, every span received, and the
/// producer's `messaging.client.sent.messages` points.
async fn round_trip(
    style: &str,
    propagation: &str,
    jobs: usize,
) -> (String, Vec<Span>, Vec<otlp::MetricPoint>) {
    let rx = Receiver::http().await;
    let queue = unique(&format!("jobsight-test-{propagation}"));
    let _keys = RedisKeys::new(&queue);
    let jobs_text = jobs.to_string();
    run_example(
        "producer",
        &["--queue", &queue, "--jobs", &jobs_text, "--style", style],
        &rx,
    )
    .await;
    run_example(
        "worker",
        &[
            "--queue",
            &queue,
            "--runs",
            &jobs_text,
            "--propagation",
            propagation,
        ],
        &rx,
    )
    .await;
    // Each job: request, send, process, render, store.
    let spans = rx.wait_for_spans(5 * jobs, WAIT).await;
    let sent = rx
        .wait_for_metric("messaging.client.sent.messages", WAIT)
        .await;
    (queue, spans, sent)
}

/// The producer counted `jobs` successful sends on `queue`.
fn assert_sent(points: &[otlp::MetricPoint], queue: &str, jobs: usize) {
    let point = points
        .iter()
        .find(|p| {
            p.attr("messaging.destination.name")
                .and_then(|v| v.as_str())
                == Some(queue)
        })
        .unwrap_or_else(|| panic!("no sent-messages point: {points:#?}"));
    assert_eq!(point.value, Some(jobs as f64));
    assert!(point.attr("error.type").is_none());
    assert_eq!(
        point
            .attr("messaging.operation.name")
            .and_then(|v| v.as_str()),
        Some("send")
    );
    assert_eq!(
        point.attr("job.name").and_then(|v| v.as_str()),
        Some("BuildReport")
    );
}

/// What every mode has in common: the producer's spans, message ids, the
/// job's children and the baggage. Returns (process, send) pairs.
fn common_checks<'a>(queue: &str, spans: &'a [Span], jobs: usize) -> Vec<(&'a Span, &'a Span)> {
    let processes = spans_named(spans, WORKER, &format!("process {queue}"));
    assert_eq!(processes.len(), jobs, "{spans:#?}");
    processes
        .into_iter()
        .map(|process| {
            assert_eq!(process.kind, SpanKind::Consumer);
            let send = send_of(spans, queue, process);
            assert_eq!(send.kind, SpanKind::Producer);
            assert_eq!(send.attr_str("messaging.operation.type"), Some("send"));
            assert_eq!(send.attr_str("messaging.destination.name"), Some(queue));
            let request = by_id(
                spans,
                send.parent_span_id.as_deref().expect("send has a parent"),
            );
            assert_eq!(request.name, "POST /reports");
            assert_eq!(request.trace_id, send.trace_id);
            assert!(request.is_root());
            // The producer's baggage reached the job's code.
            assert_eq!(
                Some(job_children(spans, process)),
                request.attr_str("app.tenant"),
                "baggage"
            );
            (process, send)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_mode_starts_a_new_trace_linked_to_the_send_span() {
    let (queue, spans, sent) = round_trip("push", "link", 2).await;
    assert_sent(&sent, &queue, 2);
    for (process, send) in common_checks(&queue, &spans, 2) {
        assert!(process.is_root(), "{process:#?}");
        assert_ne!(process.trace_id, send.trace_id);
        assert_eq!(process.links.len(), 1);
        assert_eq!(process.links[0].trace_id, send.trace_id);
        assert_eq!(process.links[0].span_id, send.span_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_mode_continues_the_producer_trace() {
    let (queue, spans, sent) = round_trip("layer", "child", 2).await;
    assert_sent(&sent, &queue, 2);
    for (process, send) in common_checks(&queue, &spans, 2) {
        assert_eq!(process.trace_id, send.trace_id);
        assert_eq!(
            process.parent_span_id.as_deref(),
            Some(send.span_id.as_str())
        );
        assert!(process.links.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_ignores_the_trace_context_but_not_the_baggage() {
    let (queue, spans, _) = round_trip("push", "none", 1).await;
    for (process, send) in common_checks(&queue, &spans, 1) {
        assert!(process.is_root());
        assert_ne!(process.trace_id, send.trace_id);
        assert!(process.links.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_a_retried_job_links_to_the_one_creation_context() {
    let rx = Receiver::http().await;
    let queue = unique("jobsight-test-retry");
    let _keys = RedisKeys::new(&queue);
    run_example(
        "producer",
        &["--queue", &queue, "--jobs", "1", "--fail-attempts", "2"],
        &rx,
    )
    .await;
    // Redis retries in the backend, 1 s then 2 s later.
    run_example("worker", &["--queue", &queue, "--runs", "3"], &rx).await;
    let process_name = format!("process {queue}");
    let spans = rx
        .wait_for_spans(
            |s: &[Span]| s.iter().filter(|s| s.name == process_name).count() >= 3,
            WAIT,
        )
        .await;
    let sends = spans_named(&spans, PRODUCER, &format!("send {queue}"));
    assert_eq!(sends.len(), 1);
    let send = sends[0];
    let mut attempts = spans_named(&spans, WORKER, &process_name);
    attempts.sort_by_key(|s| s.attr("job.attempt").and_then(|v| v.as_i64()));
    let summary: Vec<(Option<i64>, Option<&str>)> = attempts
        .iter()
        .map(|s| {
            (
                s.attr("job.attempt").and_then(|v| v.as_i64()),
                s.attr_str("job.outcome"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some(1), Some("retried")),
            (Some(2), Some("retried")),
            (Some(3), Some("succeeded"))
        ]
    );
    let traces: std::collections::HashSet<&str> =
        attempts.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 3, "each attempt is a trace of its own");
    for attempt in &attempts {
        assert!(attempt.is_root());
        assert_eq!(attempt.links.len(), 1);
        assert_eq!(attempt.links[0].trace_id, send.trace_id);
        assert_eq!(attempt.links[0].span_id, send.span_id);
        assert_eq!(
            attempt.attr_str("messaging.message.id"),
            send.attr_str("messaging.message.id")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_or_missing_trace_context_runs_the_job_as_a_new_root_and_is_counted() {
    let rx = Receiver::http().await;
    let queue = unique("jobsight-test-hostile");
    let _keys = RedisKeys::new(&queue);
    // This test is the producer, one that does not use jobsight: raw
    // metadata, and one task with none.
    let conn = apalis_redis::connect(format!("redis://{REDIS_ADDR}"))
        .await
        .expect("Redis on 127.0.0.1:6379");
    let mut storage =
        RedisStorage::<BuildReport>::new(conn).with_config(Config::default().queue(&queue));
    let garbage = "\u{1b}[31m<script>".repeat(10 * 1024 / 12);
    let hostile = [
        // truncated span id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
        // wrong version
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        // all-zero ids
        "00-00000000000000000000000000000000-0000000000000000-01",
        // not a traceparent at all
        "hello",
        // 10 KB of garbage
        garbage.as_str(),
    ];
    for (report, value) in (0u32..).zip(hostile) {
        let mut md = MetadataStore::new();
        md.insert("traceparent", value.to_owned())
            .expect("metadata");
        let task = TaskBuilder::new(BuildReport {
            report,
            fail_attempts: 0,
        })
        .with_metadata(md)
        .build();
        storage.push_task(task).await.expect("push");
    }
    storage
        .push(BuildReport {
            report: 99,
            fail_attempts: 0,
        })
        .await
        .expect("push");
    let worker = run_example("worker", &["--queue", &queue, "--runs", "6"], &rx).await;

    let process_name = format!("process {queue}");
    let spans = rx
        .wait_for_spans(
            |s: &[Span]| s.iter().filter(|s| s.name == process_name).count() >= 6,
            WAIT,
        )
        .await;
    let processes = spans_named(&spans, WORKER, &process_name);
    assert_eq!(processes.len(), 6);
    for process in processes {
        assert!(process.is_root(), "{process:#?}");
        assert!(process.links.is_empty(), "{process:#?}");
        assert_eq!(process.attr_str("job.outcome"), Some("succeeded"));
        assert_eq!(job_children(&spans, process), "", "no baggage");
    }

    // Counted, not logged: one line from the example, none from jobsight.
    let stderr = String::from_utf8_lossy(&worker.stderr);
    assert!(stderr.contains("5 propagated contexts dropped"), "{stderr}");
    assert!(!stderr.contains("traceparent"), "{stderr}");
    let points = rx
        .wait_for_metric("jobsight.propagation.invalid", WAIT)
        .await;
    let count = |problem: &str| -> f64 {
        points
            .iter()
            .filter(|p| p.attr("error.type").and_then(|v| v.as_str()) == Some(problem))
            .filter_map(|p| p.value)
            .fold(0.0, f64::max)
    };
    assert_eq!(count("invalid"), 4.0, "{points:#?}");
    assert_eq!(count("too_long"), 1.0, "{points:#?}");
}
