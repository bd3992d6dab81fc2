//! The rake-style program pattern, proven over the wire: a child process
//! runs a task with `Telemetry::run_task` and calls `std::process::exit`
//! right after; its spans and metrics must already be at the in-process
//! OTLP receiver when it has exited.
//!
//! The child is this test binary itself, re-run with `--exact child_process`
//! and `JOBSIGHT_TEST_CHILD` naming what to do. The exporters keep their
//! defaults (spans batched every 5 s, metrics every 60 s), so anything that
//! arrives was flushed by the shutdown, not by a timer: the control case
//! (`std::process::exit` without `run_task`) shows that nothing arrives then.

use jobsight_testkit::otlp::{Receiver, Span, StatusCode, Transport};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CHILD_VAR: &str = "JOBSIGHT_TEST_CHILD";

/// The child's side: does nothing in a normal test run.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD_VAR) else {
        return;
    };
    let telemetry = match jobsight_otel::Builder::new()
        .service_name("task-exit-child")
        .shutdown_timeout(Duration::from_secs(5))
        .install()
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("child: {error}");
            std::process::exit(90);
        }
    };
    match mode.as_str() {
        "blocking-error" => {
            let result = telemetry.run_task("nightly_backfill", || {
                jobsight_core::progress::set_total(4);
                jobsight_core::progress::tick(3);
                Err::<(), _>(std::io::Error::other("table users is locked"))
            });
            std::process::exit(if result.is_ok() { 0 } else { 3 });
        }
        "async-ok" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|_| std::process::exit(91));
            let result = runtime.block_on(telemetry.run_task_async("send_reports", async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, std::io::Error>(7)
            }));
            std::process::exit(if result.ok() == Some(7) { 0 } else { 4 });
        }
        "panic" => {
            // The panic reaches the test harness (exit 101) after the flush.
            let _ = telemetry.run_task("exploding_report", || -> Result<(), String> {
                panic!("division by zero in the report")
            });
        }
        "no-flush" => {
            // The control: the task is recorded, nothing is flushed.
            jobsight_core::task::run_blocking("forgotten", || ());
            std::process::exit(0);
        }
        other => {
            eprintln!("child: unknown mode {other}");
            std::process::exit(92);
        }
    }
}

/// Runs the child in `mode` against `rx`; returns its output and how long it took.
async fn run_child(rx: &Receiver, mode: &str) -> (Output, Duration) {
    let exe = std::env::current_exe().expect("test binary path");
    let protocol = match rx.transport() {
        Transport::Grpc => "grpc",
        Transport::Http => "http/protobuf",
    };
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, mode)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol);
    for var in [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_SAMPLER",
    ] {
        command.env_remove(var);
    }
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().expect("child ran");
        (output, started.elapsed())
    })
    .await
    .expect("child thread")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn only_span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let matching: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(matching.len(), 1, "{name} in {spans:#?}");
    matching[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_task_that_fails_then_process_exit_loses_nothing() {
    let rx = Receiver::http().await;
    let (output, took) = run_child(&rx, "blocking-error").await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("child with run_task (HTTP) took {took:?} in all");
    // Read at once: the child has exited, so the data must be here already.
    let spans = rx.spans();
    let span = only_span(&spans, "process nightly_backfill");
    assert_eq!(span.attr_str("messaging.system"), Some("task"));
    assert_eq!(span.attr_str("job.name"), Some("nightly_backfill"));
    assert_eq!(span.attr_str("job.outcome"), Some("failed"));
    assert_eq!(span.attr_str("error.type"), Some("std::io::Error"));
    assert_eq!(span.status_code, StatusCode::Error);
    assert_eq!(span.status_message, "table users is locked");
    let exception = span.event("exception").expect("exception event");
    assert_eq!(
        exception
            .attributes
            .get("job.progress.ticks")
            .and_then(|v| v.as_i64()),
        Some(3)
    );
    assert_eq!(
        span.resource.get("service.name").and_then(|v| v.as_str()),
        Some("task-exit-child")
    );
    let durations = rx.metric("messaging.process.duration");
    let point = durations
        .iter()
        .find(|p| p.attr("job.name").and_then(|v| v.as_str()) == Some("nightly_backfill"))
        .unwrap_or_else(|| panic!("no duration point: {durations:#?}"));
    assert_eq!(
        point.attr("messaging.system").and_then(|v| v.as_str()),
        Some("task")
    );
    assert_eq!(
        point.attr("error.type").and_then(|v| v.as_str()),
        Some("std::io::Error")
    );
    assert_eq!(point.count, Some(1));
    let outcomes = rx.metric("job.outcomes");
    assert!(
        outcomes
            .iter()
            .any(|p| p.attr("job.outcome").and_then(|v| v.as_str()) == Some("failed")),
        "{outcomes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_task_on_a_current_thread_runtime_over_grpc() {
    let rx = Receiver::grpc().await;
    let (output, took) = run_child(&rx, "async-ok").await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("child with run_task_async (gRPC) took {took:?} in all");
    let spans = rx.spans();
    let span = only_span(&spans, "process send_reports");
    assert_eq!(span.attr_str("job.outcome"), Some("succeeded"));
    assert!(
        span.duration_nanos() >= 20_000_000,
        "{}",
        span.duration_nanos()
    );
    assert!(!rx.metric("messaging.process.duration").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_flushed_before_the_panic_ends_the_process() {
    let rx = Receiver::http().await;
    let (output, _) = run_child(&rx, "panic").await;
    // libtest reports the panic as a failed test: exit status 101.
    assert_eq!(output.status.code(), Some(101), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("division by zero")
            || String::from_utf8_lossy(&output.stdout).contains("division by zero")
    );
    let spans = rx.spans();
    let span = only_span(&spans, "process exploding_report");
    assert_eq!(span.attr_str("job.outcome"), Some("panicked"));
    assert_eq!(span.attr_str("error.type"), Some("panic"));
    assert_eq!(span.status_message, "division by zero in the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_exit_without_run_task_loses_the_spans() {
    let rx = Receiver::http().await;
    let (output, _) = run_child(&rx, "no-flush").await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.spans().is_empty(), "{:#?}", rx.spans());
}
