//! A faulty collector and bursts: the collector is down at the
//! start, goes down mid-run and comes back on the same port, is slow
//! (seconds per export), refuses (HTTP 429/503, gRPC UNAVAILABLE and
//! RESOURCE_EXHAUSTED); and a burst as large as the span queue with a healthy one.
//!
//! Real apalis workers (in-memory backend, `MonitorLayer`) export over real
//! sockets on 127.0.0.1 to the in-process receiver of `jobsight_testkit::otlp`. For
//! every fault the test proves:
//! - each job's result, as the worker sees it *outside* `MonitorLayer`, is
//!   what the job returned (a results channel);
//! - export resumes after recovery: the spans of jobs run after it arrive;
//! - nothing is lost unaccounted: spans received + `Telemetry::dropped()`
//!   = jobs run, exactly, and the same drop counts arrive at the receiver
//!   as `jobsight.telemetry.dropped`;
//! - the drop is reported in one line, not one per span or per export
//!   (`Builder::diagnostics_writer`).
//!
//! The slow collector also proves that the job path does not wait for the
//! exporter: every job is finished before the collector has answered a
//! single export.

use jobsight_testkit::jobs::numbered::{assert_results, expected, run_jobs};
use jobsight_testkit::jobs::{flush, monitor_of, until_drops_received};
use jobsight_testkit::otlp::{Mode, Receiver, Signal, Transport, reserve_port};
use jobsight_testkit::{LogCapture, unique};
use std::time::{Duration, Instant};

use jobsight_core::JobMonitor;
use jobsight_otel::{Builder, Protocol, Telemetry};

/// Generous: a loaded 2-core CI machine in a debug build.
const WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------- telemetry

fn protocol_of(transport: Transport) -> Protocol {
    match transport {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    }
}

struct Setup {
    telemetry: Telemetry,
    monitor: JobMonitor,
    log: LogCapture,
}

/// Telemetry to `endpoint`, with short batch delays so that a test does not
/// wait 5 s for each export.
fn install(endpoint: &str, transport: Transport, tune: impl FnOnce(Builder) -> Builder) -> Setup {
    let log = LogCapture::default();
    let builder = Builder::new()
        .service_name(unique("collector-faults"))
        .endpoint(endpoint)
        .protocol(protocol_of(transport))
        .summary(false)
        .span_schedule_delay(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(20))
        .diagnostics_writer(log.clone());
    let telemetry = tune(builder).install().expect("install telemetry");
    let monitor = monitor_of(&telemetry);
    Setup {
        telemetry,
        monitor,
        log,
    }
}

/// `process {queue}` spans received.
fn received(rx: &Receiver, queue: &str) -> usize {
    rx.span_count(&format!("process {queue}"))
}

fn received_all(rx: &Receiver, queues: &[&str]) -> usize {
    queues.iter().map(|queue| received(rx, queue)).sum()
}

/// Polls `done` every 20 ms until it holds or `WAIT` passes.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shuts telemetry down off the runtime thread.
async fn shut_down(telemetry: Telemetry) {
    tokio::task::spawn_blocking(move || {
        telemetry.shutdown().expect("shutdown within the deadline")
    })
    .await
    .expect("shutdown thread");
}

// ---------------------------------------------------------------- faults

const PHASE: u64 = 1500;

/// Nothing listens at the start (a port reserved, then freed); the
/// collector comes up on that port later.
async fn collector_down_at_start(transport: Transport) {
    let port = reserve_port();
    let setup = install(&format!("http://127.0.0.1:{port}"), transport, |b| b);
    let (down, up) = (unique("down"), unique("up"));

    let (results, _) = run_jobs(&setup.monitor, &down, 0..PHASE).await;
    assert_results(&results, 0..PHASE);
    // Two failed exports: the second must not add a line to the log.
    until("two exports failed", || {
        setup.telemetry.export_failures().failed_span_exports >= 2
    })
    .await;

    let rx = Receiver::start_on(transport, port).await;
    let (results, _) = run_jobs(&setup.monitor, &up, PHASE..2 * PHASE).await;
    assert_results(&results, PHASE..2 * PHASE);
    let telemetry = flush(setup.telemetry).await;
    until("the jobs after recovery are received", || {
        received(&rx, &up) == PHASE as usize
    })
    .await;

    let dropped = telemetry.dropped();
    eprintln!(
        "{transport:?} down at start: received {} + {} (after recovery), dropped {dropped}",
        received(&rx, &down),
        received(&rx, &up)
    );
    assert_eq!(dropped.spans.queue_full, 0, "{dropped:?}");
    assert!(dropped.spans.export_failed > 0, "{dropped:?}");
    assert_eq!(
        received_all(&rx, &[&down, &up]) as u64 + dropped.spans.total(),
        2 * PHASE,
        "received + dropped = jobs run; {dropped:?}"
    );
    let telemetry = flush(telemetry).await;
    until_drops_received(&rx, dropped, WAIT).await;
    setup.log.assert_once("exporting traces to");

    shut_down(telemetry).await;
    setup.log.assert_once("telemetry dropped since start");
    let log = setup.log.text();
    let spans = format!(
        "since start: {} spans (export_failed {})",
        dropped.spans.total(),
        dropped.spans.export_failed
    );
    assert!(
        log.contains(&spans),
        "nothing more was lost at shutdown: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_at_start_http() {
    collector_down_at_start(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_at_start_grpc() {
    collector_down_at_start(Transport::Grpc).await;
}

/// Up, then down (the port closed), then up again on the same port. The
/// self-metric arrives by itself on the metric interval: no flush.
async fn collector_goes_down_and_restarts(transport: Transport) {
    let mut rx = Receiver::start(transport).await;
    let setup = install(&rx.endpoint(), transport, |b| {
        b.metric_export_interval(Duration::from_millis(500))
    });
    let (before, during, after) = (unique("before"), unique("during"), unique("after"));

    let (results, _) = run_jobs(&setup.monitor, &before, 0..PHASE).await;
    assert_results(&results, 0..PHASE);
    until("the jobs before the outage are received", || {
        received(&rx, &before) == PHASE as usize
    })
    .await;

    rx.stop().await;
    let (results, _) = run_jobs(&setup.monitor, &during, PHASE..2 * PHASE).await;
    assert_results(&results, PHASE..2 * PHASE);
    // Two failed exports: the second must not add a line to the log.
    until("two exports failed", || {
        setup.telemetry.export_failures().failed_span_exports >= 2
    })
    .await;

    rx.restart().await;
    let (results, _) = run_jobs(&setup.monitor, &after, 2 * PHASE..3 * PHASE).await;
    assert_results(&results, 2 * PHASE..3 * PHASE);
    until("the jobs after the restart are received", || {
        received(&rx, &after) == PHASE as usize
    })
    .await;
    let queues = [before.as_str(), during.as_str(), after.as_str()];
    until("every span is received or dropped", || {
        received_all(&rx, &queues) as u64 + setup.telemetry.dropped().spans.total() == 3 * PHASE
    })
    .await;

    let dropped = setup.telemetry.dropped();
    eprintln!(
        "{transport:?} down and restarted: received {} before, {} during, {} after; dropped {dropped}",
        received(&rx, &before),
        received(&rx, &during),
        received(&rx, &after)
    );
    assert_eq!(dropped.spans.queue_full, 0, "{dropped:?}");
    assert!(dropped.spans.export_failed > 0, "{dropped:?}");
    until_drops_received(&rx, dropped, WAIT).await;
    setup.log.assert_once("exporting traces to");
    shut_down(setup.telemetry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_goes_down_and_restarts_http() {
    collector_goes_down_and_restarts(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_goes_down_and_restarts_grpc() {
    collector_goes_down_and_restarts(Transport::Grpc).await;
}

/// The collector answers every trace export with `refusal`; `tries` is how
/// many requests the exporter sends for one export (1 + its retries).
async fn collector_refuses(transport: Transport, refusal: Mode, tries: usize) {
    let rx = Receiver::start(transport).await;
    rx.set_mode(Signal::Traces, refusal);
    let setup = install(&rx.endpoint(), transport, |b| b);
    let (refused, accepted) = (unique("refused"), unique("accepted"));

    let refusing_since = Instant::now();
    let (results, _) = run_jobs(&setup.monitor, &refused, 0..PHASE).await;
    assert_results(&results, 0..PHASE);
    // Every span of the refused phase is exported and refused before the
    // collector accepts again, so no export straddles the switch.
    until("every refused span is counted", || {
        setup.telemetry.dropped().spans.export_failed == PHASE
    })
    .await;
    let failed_exports = setup.telemetry.export_failures().failed_span_exports as usize;
    eprintln!(
        "{transport:?} {refusal:?}: {PHASE} spans refused in {failed_exports} exports, \
         {} requests, all counted after {:?}",
        rx.request_count(Signal::Traces),
        refusing_since.elapsed()
    );
    assert_eq!(
        rx.request_count(Signal::Traces),
        failed_exports * tries,
        "{refusal:?}: {failed_exports} failed exports"
    );

    rx.set_mode(Signal::Traces, Mode::Accept);
    let (results, _) = run_jobs(&setup.monitor, &accepted, PHASE..2 * PHASE).await;
    assert_results(&results, PHASE..2 * PHASE);
    let telemetry = flush(setup.telemetry).await;
    until("the jobs after recovery are received", || {
        received(&rx, &accepted) == PHASE as usize
    })
    .await;
    assert_eq!(received(&rx, &refused), 0);
    let dropped = telemetry.dropped();
    assert_eq!(dropped.spans.total(), PHASE, "{dropped:?}");
    let telemetry = flush(telemetry).await;
    until_drops_received(&rx, dropped, WAIT).await;
    setup.log.assert_once("exporting traces to");
    shut_down(telemetry).await;
}

/// OTLP/HTTP retries 429 and 503 three times (the SDK's default policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refuses_with_http_429() {
    collector_refuses(Transport::Http, Mode::Reject(429), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refuses_with_http_503() {
    collector_refuses(Transport::Http, Mode::Reject(503), 4).await;
}

/// gRPC UNAVAILABLE is retried three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refuses_with_grpc_unavailable() {
    collector_refuses(
        Transport::Grpc,
        Mode::GrpcStatus(tonic::Code::Unavailable),
        4,
    )
    .await;
}

/// gRPC RESOURCE_EXHAUSTED without RetryInfo is not retried (OTLP spec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refuses_with_grpc_resource_exhausted() {
    collector_refuses(
        Transport::Grpc,
        Mode::GrpcStatus(tonic::Code::ResourceExhausted),
        1,
    )
    .await;
}

/// Each export takes seconds (within the exporter's 10 s timeout, so it
/// succeeds); the span queue, sized 500 here, fills behind it.
async fn collector_is_slow(transport: Transport) {
    const JOBS: u64 = 2000;
    const SLOW: Duration = Duration::from_secs(5);
    let rx = Receiver::start(transport).await;
    rx.set_mode(Signal::Traces, Mode::Delay(SLOW));
    let setup = install(&rx.endpoint(), transport, |b| b.span_queue_size(500));
    let queue = unique("slow");

    let (results, took) = run_jobs(&setup.monitor, &queue, 0..JOBS).await;
    // The jobs did not wait for the exporter: all of them finished before
    // the collector answered its first export.
    let answered = rx.answered(Signal::Traces);
    assert_results(&results, 0..JOBS);
    assert_eq!(
        answered, 0,
        "the jobs took {took:?}, longer than one slow export ({SLOW:?})"
    );

    rx.set_mode(Signal::Traces, Mode::Accept);
    until("every span is received or dropped", || {
        received(&rx, &queue) as u64 + setup.telemetry.dropped().spans.total() == JOBS
    })
    .await;
    let dropped = setup.telemetry.dropped();
    eprintln!(
        "{transport:?} slow ({SLOW:?} an export): {JOBS} jobs in {took:?}; received {}, dropped {dropped}",
        received(&rx, &queue)
    );
    assert!(dropped.spans.queue_full > 0, "{dropped:?}");
    assert_eq!(dropped.spans.export_failed, 0, "{dropped:?}");
    setup.log.assert_once("span queue is full");
    let telemetry = flush(setup.telemetry).await;
    until_drops_received(&rx, dropped, WAIT).await;
    shut_down(telemetry).await;
    setup.log.assert_once("telemetry dropped since start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_is_slow_http() {
    collector_is_slow(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_is_slow_grpc() {
    collector_is_slow(Transport::Grpc).await;
}

// ----------------------------------------------------------------- burst

/// As many jobs at once as the default span queue holds (65 536), default
/// batch settings, a healthy collector: every `process` span arrives,
/// nothing is dropped, however fast the jobs end and however slowly the
/// exporter drains. `JOBSIGHT_BURST_JOBS` changes the number (past the
/// queue, the exporter's speed decides: for measuring it in a release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_as_large_as_the_queue_loses_no_span() {
    let jobs: u64 = std::env::var("JOBSIGHT_BURST_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(65_536);
    let rx = Receiver::http().await;
    let log = LogCapture::default();
    let telemetry = Builder::new()
        .service_name(unique("burst"))
        .endpoint(rx.endpoint())
        .summary(false)
        .diagnostics_writer(log.clone())
        .shutdown_timeout(Duration::from_secs(60))
        .install()
        .expect("install telemetry");
    let monitor = monitor_of(&telemetry);
    let queue = unique("burst");
    let started = Instant::now();
    let (results, took) = run_jobs(&monitor, &queue, 0..jobs).await;
    assert_eq!(results.len(), jobs as usize);
    assert!(results.iter().all(|(n, result)| *result == expected(*n)));
    let dropped = telemetry.dropped();
    shut_down(telemetry).await;
    let spans = received(&rx, &queue);
    eprintln!(
        "burst: {jobs} jobs in {took:?}, all exported in {:?}; received {spans}, dropped {dropped}",
        started.elapsed()
    );
    assert_eq!(
        spans,
        jobs as usize,
        "dropped: {dropped}; log: {}",
        log.text()
    );
    assert!(dropped.is_empty(), "{dropped}");
    assert_eq!(log.text(), "");
}
