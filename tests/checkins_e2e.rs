//! Check-ins end to end: an apalis worker with `MonitorLayer` and a
//! check-in policy, pings to a local healthchecks-style receiver, the
//! watchdog on the real Redis, and telemetry over OTLP/gRPC to the
//! in-process receiver. Asserts what crossed each wire: the span events and
//! the ping URLs carry the same run ids, the last-success gauge, and the
//! watchdog's missed counter and span.

use jobsight_testkit::jobs::stop_after;
use jobsight_testkit::jobs::{monitor_of, telemetry_to};
use jobsight_testkit::otlp::{Receiver, Span};
use jobsight_testkit::{serial, unique};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use jobsight_apalis::MonitorLayer;
use jobsight_checkin::ping::{Healthchecks, PingOptions, PingSink};
use jobsight_checkin::watchdog::{Clock, ManualClock, Watchdog};
use jobsight_core::checkin::{CheckinPolicy, Checkins, Schedule};
use jobsight_otel::Builder;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Digest {
    fail: bool,
}

async fn digest(job: Digest) -> Result<(), BoxDynError> {
    if job.fail {
        return Err(std::io::Error::other("smtp down").into());
    }
    Ok(())
}

/// A local ping receiver: every request's path and query.
async fn ping_receiver() -> (Arc<Mutex<Vec<String>>>, String) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(request.uri().to_string());
            "OK"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, base)
}

/// A watchdog on the real Redis under a unique prefix, on a manual clock,
/// counting with `meters`.
fn manual_watchdog(
    prefix: &str,
    meters: &opentelemetry_sdk::metrics::SdkMeterProvider,
) -> (Watchdog, ManualClock, String) {
    let clock = ManualClock::now();
    let prefix = unique(prefix);
    let watchdog = Watchdog::builder("redis://127.0.0.1:6379/")
        .prefix(prefix.clone())
        .clock(Clock::Manual(clock.clone()))
        .meter_provider(meters)
        .build()
        .unwrap();
    (watchdog, clock, prefix)
}

fn checkin_events(span: &Span) -> Vec<(String, String)> {
    span.events
        .iter()
        .filter(|e| e.name == "job.checkin")
        .map(|e| {
            let get = |k: &str| {
                e.attributes
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(get("job.checkin.monitor"), "nightly-digest");
            (get("job.checkin.status"), get("job.checkin.run_id"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
async fn checkins_cross_every_wire() {
    let _serial = serial();
    let rx = Receiver::grpc().await;
    let telemetry = telemetry_to(&rx, &unique("checkins-e2e"));
    let meters = telemetry.meter_provider().expect("meter provider");
    let monitor = monitor_of(&telemetry);

    let (pings, ping_base) = ping_receiver().await;
    let sink = PingSink::spawn(
        Healthchecks::slugs("ping-key").base_url(&ping_base),
        PingOptions::default(),
    )
    .unwrap();
    let (watchdog, clock, prefix) = manual_watchdog("jobsight-e2e", meters);
    let checkins = Checkins::new()
        .policy(
            CheckinPolicy::job("Digest")
                .monitor_name("nightly-digest")
                .schedule(Schedule::every(Duration::from_secs(600)))
                .grace(Duration::from_secs(60)),
        )
        .sink(sink.clone())
        .sink(watchdog.recorder())
        .meter_provider(meters);

    let mut storage = MemoryStorage::new();
    for fail in [false, true, false] {
        storage.push(Digest { fail }).await.unwrap();
    }
    let worker = WorkerBuilder::new(unique("digest-worker"))
        .backend(storage)
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .checkins(checkins.clone())
                .build()
                .unwrap(),
        )
        .on_event(stop_after(3))
        .build(digest);
    tokio::time::timeout(WAIT, worker.run())
        .await
        .expect("worker finished")
        .expect("worker ran");
    assert!(sink.flush(WAIT).await);
    assert!(watchdog.recorder().flush(WAIT).await);

    // The watchdog: nothing yet, then a missed run once the interval and
    // grace have passed since the last success.
    assert!(watchdog.check(&checkins).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(661));
    let incidents = watchdog.check(&checkins).await.unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");

    drop(monitor);
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap()
        .expect("telemetry shutdown");

    // Spans: three runs, each with a pair of check-in events.
    let spans = rx.wait_for_spans(4, WAIT).await;
    let runs: Vec<Vec<(String, String)>> = spans
        .iter()
        .filter(|s| s.name.starts_with("process "))
        .map(checkin_events)
        .collect();
    assert_eq!(runs.len(), 3);
    let mut statuses: Vec<&str> = runs.iter().map(|r| r[1].0.as_str()).collect();
    statuses.sort();
    assert_eq!(statuses, ["error", "ok", "ok"]);
    for run in &runs {
        assert_eq!(run.len(), 2);
        assert_eq!(run[0].0, "in_progress");
        assert_eq!(run[0].1, run[1].1, "paired by run id");
    }

    // Pings: the same runs, the same ids, start before end.
    let pings = pings.lock().unwrap().clone();
    assert_eq!(pings.len(), 6, "{pings:?}");
    for run in &runs {
        let of_run: Vec<&String> = pings
            .iter()
            .filter(|p| p.ends_with(&format!("?rid={}", run[0].1)))
            .collect();
        let expected_end = if run[1].0 == "ok" {
            "/ping-key/nightly-digest?"
        } else {
            "/ping-key/nightly-digest/fail?"
        };
        assert_eq!(of_run.len(), 2, "{pings:?}");
        assert!(of_run[0].starts_with("/ping-key/nightly-digest/start?"));
        assert!(of_run[1].starts_with(expected_end), "{of_run:?}");
    }

    // The watchdog's span.
    let missed = spans
        .iter()
        .find(|s| s.name == "job.checkin.missed")
        .expect("missed span");
    assert_eq!(missed.attr_str("job.name"), Some("nightly-digest"));

    // Metrics: the last success, and the missed counter.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let gauge = rx.wait_for_metric("job.checkin.last_success", WAIT).await;
    let point = gauge.last().expect("gauge point");
    assert_eq!(
        point.attributes.get("job.name").and_then(|v| v.as_str()),
        Some("nightly-digest")
    );
    let value = point.value.unwrap();
    assert!(
        (now - 60.0..=now + 1.0).contains(&value),
        "{value} vs {now}"
    );
    let counted = rx.wait_for_metric("job.checkin.missed", WAIT).await;
    assert_eq!(counted.last().and_then(|p| p.value), Some(1.0));

    let started = Instant::now();
    jobsight_testkit::jobs::RedisKeys::new(&prefix)
        .delete()
        .expect("delete the watchdog's Redis keys");
    assert!(started.elapsed() < WAIT);
}

/// The `checkins` example as a user runs it (built by `cargo test`; run
/// `cargo build --example checkins` first for `cargo test --test
/// checkins_e2e` alone): one stuck and one missed incident, and pings for
/// every run.
#[test]
fn the_checkins_example_reports_the_stuck_and_the_missed_run() {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(format!("checkins{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.is_file(), "build it: cargo build --example checkins");
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the checkins example did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().unwrap();
    assert!(status.success(), "{status:?}\n{stdout}");
    let count = |needle: &str| stdout.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("WATCHDOG  heartbeat stuck"), 1, "{stdout}");
    // Real time on a shared machine: exactly-once is proven with injected
    // time in jobsight-checkin's tests; here at least one missed run.
    assert!(count("WATCHDOG  heartbeat missed") >= 1, "{stdout}");
    assert!(count("/my-ping-key/heartbeat/start?rid=") >= 4, "{stdout}");
    assert_eq!(count("/my-ping-key/heartbeat/fail?rid="), 1, "{stdout}");
    assert!(stdout.contains(" missed, 1 stuck, "), "{stdout}");
}

/// The names `dashboards/checkin-alerts.yml` uses are the names a Prometheus
/// scrape of jobsight-otel's endpoint shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
async fn checkin_metrics_scrape_under_the_alert_rules_names() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let _serial = serial();
    let telemetry = Builder::new()
        .service_name(unique("checkins-scrape"))
        .prometheus_endpoint("127.0.0.1:0")
        .summary(false)
        .install()
        .expect("install telemetry");
    let meters = telemetry.meter_provider().expect("meter provider");
    let (watchdog, clock, prefix) = manual_watchdog("jobsight-e2e-scrape", meters);
    let checkins = Checkins::new()
        .policy(
            CheckinPolicy::job("export")
                .schedule(Schedule::every(Duration::from_secs(60)))
                .max_runtime(Duration::from_secs(30)),
        )
        .sink(watchdog.recorder())
        .meter_provider(meters);
    let check = checkins.find("q", "export").unwrap();
    checkins
        .start_run(&check)
        .finish(jobsight_core::checkin::CheckinStatus::Ok, 0);
    assert!(watchdog.recorder().flush(WAIT).await);
    assert!(watchdog.check(&checkins).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(200));
    assert_eq!(watchdog.check(&checkins).await.unwrap().len(), 1);

    let addr = telemetry.prometheus_addr().expect("scrape endpoint");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("job_name=\"export\""))
            .unwrap_or_else(|| panic!("no {name} series for export in:\n{text}"))
            .to_owned()
    };
    assert!(line("job_checkin_last_success_seconds").len() > 10);
    assert!(line("job_checkin_missed_total").ends_with(" 1"), "{text}");
    assert!(line("job_checkin_stuck_total").ends_with(" 0"), "{text}");
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap()
        .expect("telemetry shutdown");
    jobsight_testkit::jobs::RedisKeys::new(&prefix)
        .delete()
        .expect("delete the watchdog's Redis keys");
}
