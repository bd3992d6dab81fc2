//! End to end over the real wire: apalis workers on the in-memory
//! backend with `MonitorLayer`, telemetry installed with
//! `jobsight_otel::Builder` and exported over OTLP/gRPC and OTLP/HTTP to the
//! in-process receiver of `jobsight_testkit::otlp`. Every assertion reads what crossed
//! the wire.
//!
//! Two queues:
//! - emails (`.retry(RetryPolicy::retries(1))` before `MonitorLayer`, tasks
//!   with `max_attempts(2)`): a success, a job that fails once then succeeds,
//!   a job that always fails, and a success that was *not* stamped with
//!   `stamped_builder` (so it has no queue time);
//! - reports (`.concurrency(1)`, then a 500 ms `TimeoutLayer`, both before
//!   `MonitorLayer`): a success, an error the classifier ignores, a panic, a
//!   job pushed after the panic (the worker must survive to run it), and a
//!   job cut off by the timeout.

use jobsight_testkit::jobs::stop_after;
use jobsight_testkit::otlp::{
    MetricKind, Receiver, Span, SpanKind, StatusCode, Transport, attr_f64, attr_i64, brief,
    expected_totals, jobs_by_id, outcomes, series, series_of_queue, totals_by,
};
use jobsight_testkit::{serial, unique};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::backend::queue::Queue;
use jobsight_apalis::{MonitorLayer, stamped_builder};
use jobsight_core::{DefaultClassifier, JobMonitor};
use jobsight_otel::{Builder, Protocol};

const WAIT: Duration = Duration::from_secs(10);
const PANIC_MESSAGE: &str = "report 5: index out of bounds";

#[derive(Debug, Clone)]
enum Email {
    Welcome,
    Flaky,
    Bounce,
}

#[derive(Debug, thiserror::Error)]
enum EmailError {
    #[error("mail server busy, try again")]
    ServerBusy,
    #[error("mailbox {0} does not exist")]
    NoSuchMailbox(String),
}

#[derive(Debug, Clone)]
enum Report {
    Quick,
    OptedOut,
    Explode,
    Slow,
}

/// The error the classifier is told to ignore.
#[derive(Debug, thiserror::Error)]
#[error("customer opted out of reports")]
struct OptedOutError;

async fn send_email(job: Email, attempt: Attempt) -> Result<(), BoxDynError> {
    match job {
        Email::Welcome => Ok(()),
        // apalis counts attempts from 1 once the job runs.
        Email::Flaky if attempt.current() <= 1 => Err(EmailError::ServerBusy.into()),
        Email::Flaky => Ok(()),
        Email::Bounce => Err(EmailError::NoSuchMailbox("nobody@example.invalid".into()).into()),
    }
}

async fn build_report(job: Report) -> Result<(), BoxDynError> {
    match job {
        Report::Quick => Ok(()),
        Report::OptedOut => Err(OptedOutError.into()),
        Report::Explode => panic!("{}", PANIC_MESSAGE),
        Report::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
    }
}

fn email_task(job: Email, queue: &str, stamped: bool, id: Option<&str>) -> Task<Email> {
    let mut builder = TaskBuilder::new(job)
        .queue(Queue::from(queue))
        .max_attempts(2);
    if let Some(id) = id {
        builder = builder.task_id(TaskId::from_string(id));
    }
    if stamped {
        builder = stamped_builder(builder);
    }
    builder.build()
}

fn report_task(job: Report, queue: &str, id: Option<&str>) -> Task<Report> {
    let mut builder = TaskBuilder::new(job).queue(Queue::from(queue));
    if let Some(id) = id {
        builder = builder.task_id(TaskId::from_string(id));
    }
    stamped_builder(builder).build()
}

struct Names {
    service: String,
    emails: String,
    reports: String,
    unstamped_id: String,
    after_panic_id: String,
}

/// Runs both workers to completion with telemetry exported to `rx`, then
/// shuts the guard down.
async fn run_jobs(rx: &Receiver, protocol: Protocol, names: &Names) {
    let telemetry = Builder::new()
        .service_name(names.service.clone())
        .endpoint(rx.endpoint())
        .protocol(protocol)
        .summary(false)
        .install()
        .expect("install telemetry");
    let monitor = JobMonitor::builder()
        .classifier(DefaultClassifier::new().ignore::<OptedOutError>())
        .tracer_provider(telemetry.tracer_provider().expect("tracer provider"))
        .meter_provider(telemetry.meter_provider().expect("meter provider"))
        .build();

    let mut emails = MemoryStorage::new();
    for task in [
        email_task(Email::Welcome, &names.emails, true, None),
        email_task(Email::Flaky, &names.emails, true, None),
        email_task(Email::Bounce, &names.emails, true, None),
        email_task(
            Email::Welcome,
            &names.emails,
            false,
            Some(&names.unstamped_id),
        ),
    ] {
        emails.push_task(task).await.expect("push email");
    }
    let mut reports = MemoryStorage::new();
    for task in [
        report_task(Report::Quick, &names.reports, None),
        report_task(Report::OptedOut, &names.reports, None),
        report_task(Report::Explode, &names.reports, None),
        report_task(Report::Quick, &names.reports, Some(&names.after_panic_id)),
        report_task(Report::Slow, &names.reports, None),
    ] {
        reports.push_task(task).await.expect("push report");
    }

    let email_worker = WorkerBuilder::new(unique("wire-email-sender"))
        .backend(emails)
        .retry(RetryPolicy::retries(1))
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .build()
                .unwrap(),
        )
        .on_event(stop_after(4))
        .build(send_email);
    let report_worker = WorkerBuilder::new(unique("wire-report-builder"))
        .backend(reports)
        .concurrency(1)
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            500,
        )))
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .build()
                .unwrap(),
        )
        .on_event(stop_after(5))
        .build(build_report);
    let (emails_run, reports_run) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(email_worker.run(), report_worker.run())
    })
    .await
    .expect("both workers finished their jobs within 30 s");
    emails_run.expect("email worker ran");
    reports_run.expect("report worker ran");
    drop(monitor);

    let (shutdown, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = telemetry.shutdown();
        (result, started.elapsed())
    })
    .await
    .expect("shutdown thread");
    shutdown.expect("telemetry shutdown");
    assert!(
        took < Duration::from_secs(6),
        "shutdown took {took:?} with a healthy collector"
    );
}

fn assert_common(span: &Span, queue: &str, job_name: &str, service: &str) {
    let all = brief(std::slice::from_ref(span));
    assert_eq!(span.name, format!("process {queue}"), "{all}");
    assert_eq!(span.kind, SpanKind::Consumer, "{all}");
    assert_eq!(span.attr_str("messaging.system"), Some("apalis"), "{all}");
    assert_eq!(
        span.attr_str("messaging.operation.name"),
        Some("process"),
        "{all}"
    );
    assert_eq!(
        span.attr_str("messaging.operation.type"),
        Some("process"),
        "{all}"
    );
    assert_eq!(
        span.attr_str("messaging.destination.name"),
        Some(queue),
        "{all}"
    );
    assert!(
        span.attr_str("messaging.message.id")
            .is_some_and(|id| !id.is_empty()),
        "messaging.message.id: {all}"
    );
    assert_eq!(span.attr_str("job.name"), Some(job_name), "{all}");
    assert!(
        attr_i64(span, "job.attempt").is_some(),
        "job.attempt: {all}"
    );
    assert_eq!(
        span.resource.get("service.name").and_then(|v| v.as_str()),
        Some(service),
        "resource: {:?}",
        span.resource
    );
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
}

fn assert_no_error_event(span: &Span) {
    let all = brief(std::slice::from_ref(span));
    assert_ne!(span.status_code, StatusCode::Error, "{all}");
    assert!(span.event("exception").is_none(), "{all}");
}

/// Status Error with `message` in its text, `error.type` = `error_type`, and
/// an `exception` event carrying both.
fn assert_error_event(span: &Span, error_type: &str, message: &str) {
    let all = brief(std::slice::from_ref(span));
    assert_eq!(span.status_code, StatusCode::Error, "{all}");
    assert!(
        span.status_message.contains(message),
        "status message should contain {message:?}: {all}"
    );
    assert_eq!(span.attr_str("error.type"), Some(error_type), "{all}");
    let event = span
        .event("exception")
        .unwrap_or_else(|| panic!("no exception event: {all}"));
    let get = |k: &str| event.attributes.get(k).and_then(|v| v.as_str());
    assert_eq!(get("exception.type"), Some(error_type), "{event:?}");
    assert!(
        get("exception.message").is_some_and(|m| m.contains(message)),
        "{event:?}"
    );
}

fn queue_time(span: &Span) -> Option<f64> {
    attr_f64(span, "job.queue_time")
}

fn assert_queue_time(span: &Span) {
    let waited = queue_time(span).unwrap_or_else(|| {
        panic!(
            "job.queue_time missing: {}",
            brief(std::slice::from_ref(span))
        )
    });
    assert!((0.0..60.0).contains(&waited), "job.queue_time = {waited} s");
}

fn check_email_spans(spans: &[Span], names: &Names) {
    let q = names.emails.as_str();
    let jobs = jobs_by_id(spans, q);
    let all = brief(spans);
    assert_eq!(jobs.len(), 4, "4 email jobs by message id:\n{all}");
    for attempts in jobs.values() {
        for s in attempts {
            assert_common(s, q, "Email", &names.service);
            assert_eq!(attr_i64(s, "job.max_attempts"), Some(2), "{all}");
        }
        let numbers: Vec<_> = attempts
            .iter()
            .map(|s| attr_i64(s, "job.attempt"))
            .collect();
        let want: Vec<_> = (1..=attempts.len() as i64).map(Some).collect();
        assert_eq!(numbers, want, "attempts of one job are 1, 2, …:\n{all}");
    }
    let mut by_outcomes: BTreeMap<Vec<&str>, Vec<&Vec<Span>>> = BTreeMap::new();
    for attempts in jobs.values() {
        by_outcomes
            .entry(outcomes(attempts))
            .or_default()
            .push(attempts);
    }
    let keys: Vec<_> = by_outcomes.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            vec!["retried", "failed"],
            vec!["retried", "succeeded"],
            vec!["succeeded"],
        ],
        "outcome sequences:\n{all}"
    );

    // Two plain successes: the stamped one has a queue time, the other not.
    let singles = &by_outcomes[&vec!["succeeded"]];
    assert_eq!(singles.len(), 2, "{all}");
    for job in singles {
        let s = &job[0];
        assert_no_error_event(s);
        assert!(s.attr("error.type").is_none(), "{all}");
        if s.attr_str("messaging.message.id") == Some(names.unstamped_id.as_str()) {
            assert!(
                queue_time(s).is_none(),
                "a task not stamped with stamped_builder has no queue time on the memory backend:\n{all}"
            );
        } else {
            assert_queue_time(s);
        }
    }
    assert!(
        singles
            .iter()
            .any(|j| j[0].attr_str("messaging.message.id") == Some(names.unstamped_id.as_str())),
        "the task id set with TaskBuilder::task_id is the messaging.message.id:\n{all}"
    );

    // Fails once, then succeeds: no error event on the retried attempt.
    let flaky = by_outcomes[&vec!["retried", "succeeded"]][0];
    assert_eq!(flaky[0].attr_str("error.type"), Some("ServerBusy"), "{all}");
    assert_no_error_event(&flaky[0]);
    assert_queue_time(&flaky[0]);
    assert_no_error_event(&flaky[1]);
    assert!(flaky[1].attr("error.type").is_none(), "{all}");
    assert!(
        flaky[1].start_time_unix_nano >= flaky[0].end_time_unix_nano,
        "the retry starts after the first attempt ended:\n{all}"
    );

    // Always fails: the retried attempt is quiet, the final one is an error event.
    let bounce = by_outcomes[&vec!["retried", "failed"]][0];
    assert_eq!(
        bounce[0].attr_str("error.type"),
        Some("NoSuchMailbox"),
        "{all}"
    );
    assert_no_error_event(&bounce[0]);
    assert_error_event(
        &bounce[1],
        "NoSuchMailbox",
        "mailbox nobody@example.invalid does not exist",
    );
}

fn check_report_spans(spans: &[Span], names: &Names) {
    let q = names.reports.as_str();
    let jobs = jobs_by_id(spans, q);
    let all = brief(spans);
    assert_eq!(jobs.len(), 5, "5 report jobs:\n{all}");
    let mut by_outcome: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for attempts in jobs.values() {
        assert_eq!(attempts.len(), 1, "no retries on the reports queue:\n{all}");
        let s = &attempts[0];
        assert_common(s, q, "Report", &names.service);
        assert_eq!(attr_i64(s, "job.attempt"), Some(1), "{all}");
        assert!(s.attr("job.max_attempts").is_none(), "{all}");
        assert_queue_time(s);
        by_outcome
            .entry(jobsight_testkit::otlp::outcome(s))
            .or_default()
            .push(s);
    }
    let counts: BTreeMap<&str, usize> = by_outcome.iter().map(|(k, v)| (*k, v.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("abandoned", 1),
            ("ignored", 1),
            ("panicked", 1),
            ("succeeded", 2)
        ]),
        "{all}"
    );

    let ignored = by_outcome["ignored"][0];
    assert_no_error_event(ignored);
    assert!(ignored.attr("error.type").is_none(), "{all}");

    let panicked = by_outcome["panicked"][0];
    assert_error_event(panicked, "panic", PANIC_MESSAGE);

    let abandoned = by_outcome["abandoned"][0];
    assert_eq!(abandoned.status_code, StatusCode::Error, "{all}");
    assert_eq!(abandoned.attr_str("error.type"), Some("abandoned"), "{all}");
    let ran_for = Duration::from_nanos(abandoned.duration_nanos());
    assert!(
        ran_for >= Duration::from_millis(400) && ran_for < Duration::from_secs(10),
        "the timed-out job's span ends when the 500 ms timeout drops it, took {ran_for:?}"
    );

    // The worker survived the panic: the job pushed after it ran, later.
    let after = jobs
        .get(&names.after_panic_id)
        .unwrap_or_else(|| panic!("the job pushed after the panic never ran:\n{all}"));
    assert_eq!(
        jobsight_testkit::otlp::outcome(&after[0]),
        "succeeded",
        "{all}"
    );
    assert!(
        after[0].start_time_unix_nano >= panicked.end_time_unix_nano,
        "concurrency(1): the later job starts after the panic:\n{all}"
    );
}

fn check_metrics(rx: &Receiver, names: &Names) {
    let points = rx.metrics();
    let (emails, reports) = (names.emails.as_str(), names.reports.as_str());

    // messaging.process.duration: one point per attempt, error.type only on failures.
    let duration = series(&points, "messaging.process.duration");
    assert!(!duration.is_empty(), "no messaging.process.duration");
    for s in &duration {
        assert_eq!(s.kind, MetricKind::Histogram, "{s:?}");
        assert_eq!(s.unit, "s", "{s:?}");
        assert!(
            s.explicit_bounds.last().is_some_and(|b| *b >= 600.0),
            "buckets must reach at least 600 s: {:?}",
            s.explicit_bounds
        );
        assert_eq!(s.attr_str("messaging.system"), Some("apalis"), "{s:?}");
        assert!(s.attr_str("job.name").is_some(), "{s:?}");
        for key in s.attr_keys() {
            assert!(
                [
                    "messaging.system",
                    "messaging.destination.name",
                    "job.name",
                    "error.type"
                ]
                .contains(&key),
                "unexpected metric attribute {key}: {s:?}"
            );
        }
    }
    assert_eq!(
        totals_by(&points, "messaging.process.duration", emails, "error.type"),
        expected_totals(&[
            (None, 3),
            (Some("ServerBusy"), 1),
            (Some("NoSuchMailbox"), 2)
        ]),
        "email attempts by error.type"
    );
    assert_eq!(
        totals_by(&points, "messaging.process.duration", reports, "error.type"),
        expected_totals(&[(None, 3), (Some("panic"), 1), (Some("abandoned"), 1)]),
        "report attempts by error.type (ignored errors have none)"
    );
    for (queue, name) in [(emails, "Email"), (reports, "Report")] {
        let s = series_of_queue(&points, "messaging.process.duration", queue);
        assert!(
            s.iter().all(|s| s.attr_str("job.name") == Some(name)),
            "{s:?}"
        );
    }

    // messaging.client.consumed.messages: a counter, one per attempt.
    for s in series(&points, "messaging.client.consumed.messages") {
        assert_eq!(s.kind, MetricKind::Sum, "{s:?}");
    }
    let consumed = |q| {
        totals_by(
            &points,
            "messaging.client.consumed.messages",
            q,
            "messaging.system",
        )
    };
    assert_eq!(consumed(emails), expected_totals(&[(Some("apalis"), 6)]));
    assert_eq!(consumed(reports), expected_totals(&[(Some("apalis"), 5)]));

    // job.queue_time: first attempts of stamped tasks only.
    for s in series(&points, "job.queue_time") {
        assert_eq!(s.kind, MetricKind::Histogram, "{s:?}");
        assert_eq!(s.unit, "s", "{s:?}");
        assert!(s.sum >= 0.0, "{s:?}");
    }
    let queued = |q| totals_by(&points, "job.queue_time", q, "messaging.system");
    assert_eq!(queued(emails), expected_totals(&[(Some("apalis"), 3)]));
    assert_eq!(queued(reports), expected_totals(&[(Some("apalis"), 5)]));

    // job.outcomes by job.outcome.
    assert_eq!(
        totals_by(&points, "job.outcomes", emails, "job.outcome"),
        expected_totals(&[
            (Some("succeeded"), 3),
            (Some("retried"), 2),
            (Some("failed"), 1)
        ]),
    );
    assert_eq!(
        totals_by(&points, "job.outcomes", reports, "job.outcome"),
        expected_totals(&[
            (Some("succeeded"), 2),
            (Some("ignored"), 1),
            (Some("panicked"), 1),
            (Some("abandoned"), 1)
        ]),
    );
    for p in points
        .iter()
        .filter(|p| p.name.starts_with("messaging.") || p.name.starts_with("job."))
    {
        assert_eq!(
            p.resource.get("service.name").and_then(|v| v.as_str()),
            Some(names.service.as_str()),
            "{p:?}"
        );
    }
}

// The lock serializes the two tests (each installs global telemetry); it is
// held on the test's own `block_on` thread, which is what we want.
#[allow(clippy::await_holding_lock)]
async fn wire_test(transport: Transport) {
    let _serial = serial();
    let rx = Receiver::start(transport).await;
    let protocol = match transport {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    };
    let names = Names {
        service: unique("jobsight-e2e-wire"),
        emails: unique("emails"),
        reports: unique("reports"),
        unstamped_id: unique("unstamped"),
        after_panic_id: unique("after-panic"),
    };
    run_jobs(&rx, protocol, &names).await;

    // 6 email attempts + 5 report attempts; everything was flushed by shutdown.
    let spans = rx
        .wait_for_spans(
            |s: &[Span]| s.iter().filter(|s| s.name.starts_with("process ")).count() >= 11,
            WAIT,
        )
        .await;
    let process: Vec<Span> = spans
        .into_iter()
        .filter(|s| s.name.starts_with("process "))
        .collect();
    assert_eq!(process.len(), 11, "process spans:\n{}", brief(&process));
    check_email_spans(&process, &names);
    check_report_spans(&process, &names);
    check_metrics(&rx, &names);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_carries_spans_and_metrics_of_every_outcome() {
    wire_test(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_carries_spans_and_metrics_of_every_outcome() {
    wire_test(Transport::Http).await;
}
