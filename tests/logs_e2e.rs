//! A job's logs beside its trace, end to end over the real wire: apalis
//! workers on the in-memory backend with `MonitorLayer`, `tracing` events
//! through `Telemetry::tracing_log_layer` and `log` records through
//! `Telemetry::log_bridge`, exported over OTLP/gRPC and OTLP/HTTP to the
//! in-process receiver. Every assertion reads what crossed the wire.

use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::queue::Queue;
use jobsight_apalis::MonitorLayer;
use jobsight_core::JobMonitor;
use jobsight_otel::{Builder, ExceptionEvents, LogBridge, Protocol, Telemetry};
use jobsight_testkit::jobs::stop_after;
use jobsight_testkit::otlp::{LogRecord, Receiver, Span, Transport, reserve_port};
use jobsight_testkit::{serial, unique};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;

const WAIT: Duration = Duration::from_secs(10);
/// The per-job cap the tests install.
const CAP: u32 = 5;
/// Lines the chatty job writes, far over the cap.
const CHATTY_LINES: usize = 200;
const BODY_LIMIT: usize = 256;

#[derive(Debug, Clone)]
enum Job {
    /// One `tracing` line (with fields) and one `log` line.
    Welcome,
    /// `CHATTY_LINES` lines in a loop.
    Chatty,
    /// A line far longer than the body limit, with 40 fields.
    Huge,
    /// Fails for good.
    Bounce,
}

#[derive(Debug, thiserror::Error)]
#[error("mailbox nobody@example.invalid does not exist")]
struct NoSuchMailbox;

async fn run_job(job: Job) -> Result<(), BoxDynError> {
    match job {
        Job::Welcome => {
            tracing::info!(user = "ada", retries = 2_i64, "sending the welcome email");
            log::warn!(target: "mailer", "smtp answered slowly");
            Ok(())
        }
        Job::Chatty => {
            for i in 0..CHATTY_LINES {
                tracing::info!("chatty line {i}");
            }
            Ok(())
        }
        Job::Huge => {
            let long = "x".repeat(100_000);
            tracing::warn!(
                f01 = 1,
                f02 = 2,
                f03 = 3,
                f04 = 4,
                f05 = 5,
                f06 = 6,
                f07 = 7,
                f08 = 8,
                f09 = 9,
                f10 = 10,
                f11 = 11,
                f12 = 12,
                f13 = 13,
                f14 = 14,
                f15 = 15,
                f16 = 16,
                f17 = 17,
                f18 = 18,
                f19 = 19,
                f20 = 20,
                big = long.as_str(),
                "{long}"
            );
            Ok(())
        }
        Job::Bounce => Err(NoSuchMailbox.into()),
    }
}

/// The `log` crate takes one logger per process: this one forwards to the
/// bridge of the telemetry installed by the running test.
struct SwitchLogger(RwLock<Option<LogBridge>>);

fn log_switch() -> &'static SwitchLogger {
    static SWITCH: OnceLock<&'static SwitchLogger> = OnceLock::new();
    SWITCH.get_or_init(|| {
        let switch: &'static SwitchLogger = Box::leak(Box::new(SwitchLogger(RwLock::new(None))));
        log::set_logger(switch).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        switch
    })
}

impl log::Log for SwitchLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0
            .read()
            .unwrap()
            .as_ref()
            .is_some_and(|bridge| bridge.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(bridge) = self.0.read().unwrap().as_ref() {
            bridge.log(record);
        }
    }

    fn flush(&self) {}
}

fn install(endpoint: String, protocol: Protocol, service: &str) -> Telemetry {
    let telemetry = Builder::new()
        .service_name(service)
        .endpoint(endpoint)
        .protocol(protocol)
        .summary(false)
        // apalis's own worker lines are not the jobs' (the collector-down
        // test counts exactly what the jobs logged).
        .log_filter("info,apalis=off,apalis_core=off")
        .max_log_records_per_job(CAP)
        .log_body_limit(BODY_LIMIT)
        .log_attribute_limits(10, 64)
        .exception_events(ExceptionEvents::Both)
        .shutdown_timeout(Duration::from_secs(5))
        .install()
        .expect("install telemetry");
    *log_switch().0.write().unwrap() = telemetry.log_bridge();
    telemetry
}

/// Runs `jobs` on one worker of `queue` with `monitor`, under a subscriber
/// with the trace and log layers of `telemetry`.
async fn run_worker(telemetry: &Telemetry, monitor: JobMonitor, queue: &str, jobs: Vec<Job>) {
    let subscriber = tracing_subscriber::registry()
        .with(telemetry.tracing_layer())
        .with(telemetry.tracing_log_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    let mut storage = MemoryStorage::new();
    let count = jobs.len();
    for job in jobs {
        let task = TaskBuilder::new(job)
            .queue(Queue::from(queue))
            .max_attempts(1)
            .build();
        storage.push_task(task).await.expect("push");
    }
    let worker = WorkerBuilder::new(unique("logs-worker"))
        .backend(storage)
        .layer(
            MonitorLayer::builder()
                .monitor(monitor)
                .build()
                .expect("monitor layer"),
        )
        .on_event(stop_after(count))
        .build(run_job);
    tokio::time::timeout(Duration::from_secs(30), worker.run())
        .await
        .expect("the worker finished its jobs within 30 s")
        .expect("worker ran");
}

fn monitor_of(telemetry: &Telemetry) -> JobMonitor {
    JobMonitor::builder()
        .tracer_provider(telemetry.tracer_provider().expect("tracer provider"))
        .meter_provider(telemetry.meter_provider().expect("meter provider"))
        .build()
}

async fn shutdown(telemetry: Telemetry) {
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("shutdown thread")
        .expect("telemetry shutdown");
}

fn of_queue<'a>(logs: &'a [LogRecord], queue: &str) -> Vec<&'a LogRecord> {
    logs.iter()
        .filter(|r| r.str_attr("messaging.destination.name") == Some(queue))
        .collect()
}

fn job_span<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.attr_str("messaging.message.id") == Some(id))
        .unwrap_or_else(|| panic!("no span of job {id}"))
}

#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
async fn logs_carry_the_job_and_its_span(transport: Transport) {
    let _lock = serial();
    let rx = Receiver::start(transport).await;
    let protocol = match transport {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    };
    let queue = unique("logs");
    let telemetry = install(rx.endpoint(), protocol, &unique("logs-svc"));
    run_worker(
        &telemetry,
        monitor_of(&telemetry),
        &queue,
        vec![Job::Welcome, Job::Chatty, Job::Huge, Job::Bounce],
    )
    .await;
    let dropped = telemetry.dropped();
    shutdown(telemetry).await;

    let spans = rx
        .wait_for_spans(
            |s: &[Span]| {
                s.iter()
                    .filter(|s| s.name == format!("process {queue}"))
                    .count()
                    >= 4
            },
            WAIT,
        )
        .await;
    // Welcome 2 + Chatty CAP + Huge 1 + Bounce's exception record 1.
    let expected = 2 + CAP as usize + 1 + 1;
    let logs = rx
        .wait_for_logs(
            |l: &[LogRecord]| of_queue(l, &queue).len() >= expected,
            WAIT,
        )
        .await;
    let ours = of_queue(&logs, &queue);
    let by_body = |text: &str| {
        ours.iter()
            .copied()
            .find(|r| r.body.as_deref().is_some_and(|b| b.contains(text)))
            .unwrap_or_else(|| panic!("no record with {text:?}: {ours:#?}"))
    };

    // A `tracing` line: the job span's ids, the job's attributes, severity,
    // target, fields and code location.
    let welcome = by_body("sending the welcome email");
    let id = welcome
        .str_attr("messaging.message.id")
        .expect("messaging.message.id")
        .to_owned();
    let span = job_span(&spans, &id);
    assert_eq!(welcome.trace_id, span.trace_id, "{welcome:#?}");
    assert_eq!(welcome.span_id, span.span_id, "{welcome:#?}");
    assert_eq!(welcome.severity_text, "INFO");
    assert_eq!(welcome.severity_number, 9);
    assert_eq!(welcome.str_attr("job.name"), span.attr_str("job.name"));
    assert_eq!(welcome.str_attr("messaging.system"), Some("apalis"));
    assert_eq!(
        welcome.attr("job.attempt").and_then(|v| v.as_i64()),
        Some(1)
    );
    assert_eq!(welcome.str_attr("user"), Some("ada"));
    assert_eq!(welcome.attr("retries").and_then(|v| v.as_i64()), Some(2));
    assert!(
        welcome
            .str_attr("code.file.path")
            .is_some_and(|f| f.ends_with("logs_e2e.rs")),
        "{welcome:#?}"
    );
    assert!(welcome.attr("code.line.number").is_some(), "{welcome:#?}");

    // A `log` line of the same job: same ids and attributes.
    let slow = by_body("smtp answered slowly");
    assert_eq!(slow.trace_id, span.trace_id);
    assert_eq!(slow.span_id, span.span_id);
    assert_eq!(slow.severity_text, "WARN");
    assert_eq!(slow.str_attr("messaging.message.id"), Some(id.as_str()));
    assert!(
        slow.str_attr("code.file.path")
            .is_some_and(|f| f.ends_with("logs_e2e.rs"))
    );

    // The per-job cap: CAP records of the chatty job, the rest counted.
    let chatty: Vec<_> = ours
        .iter()
        .filter(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| b.starts_with("chatty line"))
        })
        .collect();
    assert_eq!(chatty.len(), CAP as usize, "{chatty:#?}");
    let chatty_id = chatty[0].str_attr("messaging.message.id").unwrap();
    assert_eq!(
        job_span(&spans, chatty_id)
            .attr("job.logs.dropped")
            .and_then(|v| v.as_i64()),
        Some((CHATTY_LINES - CAP as usize) as i64)
    );
    assert_eq!(
        dropped.log_records.job_limit,
        (CHATTY_LINES - CAP as usize) as u64,
        "{dropped:?}"
    );

    // Per-record limits: the body cut to the limit, 10 attributes from the
    // fields, each value cut.
    let huge = ours
        .iter()
        .find(|r| r.severity_text == "WARN" && r.attr("f01").is_some())
        .expect("the huge record");
    let body = huge.body.as_deref().unwrap();
    assert!(body.len() <= BODY_LIMIT, "{}", body.len());
    assert!(body.ends_with("…[cut]"));
    let fields = huge
        .attributes
        .keys()
        .filter(|k| k.starts_with('f'))
        .count();
    assert_eq!(fields, 10, "{huge:#?}");
    assert_eq!(
        huge.attr("jobsight.logs.dropped_attributes")
            .and_then(|v| v.as_i64()),
        Some(11)
    );

    // The failed attempt's exception as a log record, with the span event too.
    let exception = ours
        .iter()
        .find(|r| r.event_name == "exception")
        .expect("an exception record");
    let bounce = job_span(&spans, exception.str_attr("messaging.message.id").unwrap());
    assert_eq!(exception.trace_id, bounce.trace_id);
    assert_eq!(exception.span_id, bounce.span_id);
    assert_eq!(exception.severity_text, "ERROR");
    assert_eq!(
        exception.str_attr("exception.message"),
        Some("mailbox nobody@example.invalid does not exist")
    );
    assert!(exception.str_attr("exception.type").is_some());
    assert!(bounce.events.iter().any(|e| e.name == "exception"));
}

#[tokio::test]
async fn logs_carry_the_job_and_its_span_over_grpc() {
    logs_carry_the_job_and_its_span(Transport::Grpc).await;
}

#[tokio::test]
async fn logs_carry_the_job_and_its_span_over_http() {
    logs_carry_the_job_and_its_span(Transport::Http).await;
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
async fn a_sampled_out_jobs_logs_carry_its_trace_id() {
    let _lock = serial();
    let rx = Receiver::grpc().await;
    let queue = unique("logs-unsampled");
    let telemetry = install(rx.endpoint(), Protocol::Grpc, &unique("logs-svc"));
    let never = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOff)
        .build();
    let monitor = JobMonitor::builder()
        .tracer_provider(&never)
        .meter_provider(telemetry.meter_provider().unwrap())
        .build();
    run_worker(
        &telemetry,
        monitor,
        &queue,
        vec![Job::Welcome, Job::Welcome],
    )
    .await;
    shutdown(telemetry).await;
    let logs = rx
        .wait_for_logs(|l: &[LogRecord]| of_queue(l, &queue).len() >= 4, WAIT)
        .await;
    let ours = of_queue(&logs, &queue);
    assert_eq!(ours.len(), 4, "{ours:#?}");
    let mut traces: Vec<&str> = ours.iter().map(|r| r.trace_id.as_str()).collect();
    for record in &ours {
        assert_eq!(record.trace_id.len(), 32, "{record:#?}");
        assert_ne!(record.trace_id, "0".repeat(32), "{record:#?}");
        assert_eq!(record.flags & 1, 0, "not sampled: {record:#?}");
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 2, "one trace per job: {ours:#?}");
    assert!(
        rx.spans()
            .iter()
            .all(|s| s.name != format!("process {queue}"))
    );
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
async fn with_the_collector_down_logs_are_dropped_and_counted_and_jobs_run() {
    let _lock = serial();
    let port = reserve_port();
    let queue = unique("logs-down");
    let telemetry = install(
        format!("http://127.0.0.1:{port}"),
        Protocol::Grpc,
        &unique("logs-svc"),
    );
    run_worker(
        &telemetry,
        monitor_of(&telemetry),
        &queue,
        vec![Job::Welcome, Job::Welcome, Job::Welcome],
    )
    .await;
    let telemetry = tokio::task::spawn_blocking(move || {
        let _ = telemetry.force_flush();
        telemetry
    })
    .await
    .unwrap();
    let dropped = telemetry.dropped().log_records;
    assert_eq!(
        dropped.export_failed + dropped.shutdown_timeout,
        6,
        "two records a job, all lost and counted: {dropped:?}"
    );
    assert_eq!(telemetry.export_failures().dropped_log_records, 6);
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
}
