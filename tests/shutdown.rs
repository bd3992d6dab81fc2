//! The `Telemetry` guard flushes on a tokio **current-thread** runtime, over
//! real OTLP/gRPC (the transport whose exporter needs a runtime to run on,
//! and whose shutdown deadlocks when called from a current-thread runtime
//! that owns it, see FIELD-NOTES), and its shutdown is bounded when the
//! collector is unreachable or never answers.
//!
//! The receiver runs on a multi-thread runtime of its own, so it keeps
//! serving while the test thread blocks in `drop`/`shutdown`. Each test
//! installs global telemetry, so they run one at a time (`serial`).

use jobsight_testkit::otlp::{self, Receiver, Span, brief, series};
use jobsight_testkit::{serial, unique};
use std::time::{Duration, Instant};

use jobsight_core::{JobMeta, JobMonitor};
use jobsight_otel::{Builder, Protocol, Telemetry};

const JOBS: u32 = 5;

fn receiver_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-receiver")
        .enable_all()
        .build()
        .expect("receiver runtime")
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime")
}

/// Records `JOBS` transactions on `queue` with the guard's own providers,
/// awaiting between them like a job runner would; the last one fails.
async fn record_jobs(telemetry: &Telemetry, queue: &str) {
    let monitor = JobMonitor::builder()
        .tracer_provider(telemetry.tracer_provider().expect("tracer provider"))
        .meter_provider(telemetry.meter_provider().expect("meter provider"))
        .build();
    for attempt in 1..=JOBS {
        let meta = JobMeta::builder("e2e-runner", queue.to_owned())
            .name("cleanup")
            .id(format!("job-{attempt}"))
            .attempt(1)
            .build();
        let tx = monitor.start(meta);
        tokio::time::sleep(Duration::from_millis(2)).await;
        if attempt == JOBS {
            tx.fail(&std::io::Error::other("disk full"));
        } else {
            tx.succeed();
        }
    }
}

/// Installs gRPC export to `rx` inside a current-thread runtime, records
/// jobs there, and ends the guard with `end` (drop or shutdown) while still
/// inside that runtime. Returns how long `end` took.
fn run_on_current_thread(endpoint: String, queue: &str, end: fn(Telemetry)) -> Duration {
    let rt = current_thread_runtime();
    rt.block_on(async {
        let telemetry = Builder::new()
            .service_name("jobsight-e2e-shutdown")
            .endpoint(endpoint)
            .protocol(Protocol::Grpc)
            .summary(false)
            .install()
            .expect("install telemetry");
        record_jobs(&telemetry, queue).await;
        let started = Instant::now();
        end(telemetry);
        started.elapsed()
    })
}

fn assert_flushed(rx: &Receiver, queue: &str, took: Duration) {
    // Nothing is waited for: the guard must have exported before returning.
    let spans: Vec<Span> = rx
        .spans()
        .into_iter()
        .filter(|s| s.name == format!("process {queue}"))
        .collect();
    assert_eq!(
        spans.len(),
        JOBS as usize,
        "every span was exported by the time the guard returned ({took:?}):\n{}",
        brief(&rx.spans())
    );
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.attr_str("job.outcome") == Some("failed"))
            .count(),
        1
    );
    let points = rx.metrics();
    let duration: u64 = series(&points, "messaging.process.duration")
        .iter()
        .filter(|s| s.attr_str("messaging.destination.name") == Some(queue))
        .map(|s| s.count)
        .sum();
    assert_eq!(
        duration,
        u64::from(JOBS),
        "messaging.process.duration points were exported: {points:#?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "a healthy collector is flushed well within the 5 s deadline, took {took:?}"
    );
}

#[test]
fn dropping_the_guard_on_a_current_thread_runtime_exports_everything() {
    let _serial = serial();
    let server = receiver_runtime();
    let rx = server.block_on(Receiver::grpc());
    let queue = unique("shutdown-drop");
    let took = run_on_current_thread(rx.endpoint(), &queue, drop);
    assert_flushed(&rx, &queue, took);
    server.block_on(rx.shutdown());
}

#[test]
fn shutdown_on_a_current_thread_runtime_exports_everything() {
    let _serial = serial();
    let server = receiver_runtime();
    let rx = server.block_on(Receiver::grpc());
    let queue = unique("shutdown-call");
    let took = run_on_current_thread(rx.endpoint(), &queue, |telemetry| {
        telemetry
            .shutdown()
            .expect("shutdown with a healthy collector");
    });
    assert_flushed(&rx, &queue, took);
    server.block_on(rx.shutdown());
}

/// A port with nothing listening: bound, then closed.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Installs export to `endpoint` with a 1 s deadline on a current-thread
/// runtime, records jobs, and times `shutdown`.
fn timed_shutdown(
    endpoint: String,
    protocol: Protocol,
) -> (Result<(), jobsight_otel::Error>, Duration) {
    let rt = current_thread_runtime();
    rt.block_on(async {
        let telemetry = Builder::new()
            .endpoint(endpoint)
            .protocol(protocol)
            .summary(false)
            .shutdown_timeout(Duration::from_secs(1))
            .install()
            .expect("install telemetry");
        record_jobs(&telemetry, &unique("shutdown-unreachable")).await;
        let started = Instant::now();
        let result = telemetry.shutdown();
        (result, started.elapsed())
    })
}

const BOUND: Duration = Duration::from_secs(4);

#[test]
fn shutdown_with_the_collector_unreachable_is_bounded() {
    let _serial = serial();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let (result, took) =
            timed_shutdown(format!("http://127.0.0.1:{}", closed_port()), protocol);
        assert!(
            took < BOUND,
            "{protocol}: shutdown took {took:?} (deadline 1 s)"
        );
        // Refused connections are counted export failures, not errors; only
        // the deadline may become one.
        assert!(
            matches!(result, Ok(()) | Err(jobsight_otel::Error::Timeout { .. })),
            "{protocol}: {result:?}"
        );
    }
}

#[test]
fn shutdown_with_a_collector_that_never_answers_is_bounded() {
    let _serial = serial();
    // The kernel accepts the connections; nothing ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let (result, took) = timed_shutdown(endpoint.clone(), protocol);
        assert!(
            took < BOUND,
            "{protocol}: shutdown took {took:?} (deadline 1 s)"
        );
        assert!(
            matches!(result, Ok(()) | Err(jobsight_otel::Error::Timeout { .. })),
            "{protocol}: {result:?}"
        );
    }
    drop(silent);
}

#[test]
fn shutdown_waits_at_most_the_deadline_for_a_slow_collector() {
    let _serial = serial();
    let server = receiver_runtime();
    let rx = server.block_on(Receiver::grpc());
    // The receiver keeps each request, then answers only after 10 s.
    rx.set_mode(
        otlp::Signal::Traces,
        otlp::Mode::Delay(Duration::from_secs(10)),
    );
    rx.set_mode(
        otlp::Signal::Metrics,
        otlp::Mode::Delay(Duration::from_secs(10)),
    );
    let (result, took) = timed_shutdown(rx.endpoint(), Protocol::Grpc);
    assert!(took < BOUND, "shutdown took {took:?} (deadline 1 s)");
    assert!(
        matches!(result, Ok(()) | Err(jobsight_otel::Error::Timeout { .. })),
        "{result:?}"
    );
    // The spans did reach the collector; only its answer was late.
    let spans = server.block_on(rx.wait_for_spans(
        |s: &[Span]| {
            s.iter()
                .filter(|s| s.name.starts_with("process shutdown-unreachable"))
                .count()
                >= JOBS as usize
        },
        Duration::from_secs(5),
    ));
    assert!(
        spans
            .iter()
            .filter(|s| s.name.starts_with("process shutdown-unreachable"))
            .count()
            >= JOBS as usize,
        "{}",
        brief(&spans)
    );
    drop(server);
}
