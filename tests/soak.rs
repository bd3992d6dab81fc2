//! Soak: not in the default run. `scripts/soak` runs it
//! for `JOBSIGHT_SOAK_SECS` seconds (default 180):
//!
//! ```text
//! JOBSIGHT_SOAK_SECS=180 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! Rounds of jobs on three queues at once (three workers; every fifth job
//! fails), through apalis workers with `MonitorLayer`, exported over OTLP (`JOBSIGHT_SOAK_PROTOCOL`
//! = `http` (default) or `grpc`) to the in-process receiver, which flaps:
//! up `UP`, down `DOWN` (the port closed), again and again. It checks:
//! - every job of every round keeps its result;
//! - memory stays flat: the highest resident memory (`/proc/self/statm`,
//!   sampled after every round) in the last fifth of the run is within
//!   `RSS_TOLERANCE` of the highest during the warm-up (the first fifth, at
//!   least two flaps). The span queue is sized 8192 here, so that every
//!   outage fills it: its peak is reached in the warm-up, and what is
//!   measured afterwards is growth, not the queue filling up once.
//! - spans received + `Telemetry::dropped()` = spans produced (one `process`
//!   span a job), exactly, and the receiver got `jobsight.telemetry.dropped`
//!   with the same counts.
//!
//! The receiver counts spans and discards them, so its own memory stays
//! flat too.

use jobsight_testkit::jobs::numbered::{assert_results, run_jobs};
use jobsight_testkit::jobs::{monitor_of, until_drops_received};
use jobsight_testkit::otlp::{Receiver, Transport};
use jobsight_testkit::{LogCapture, unique};
use std::time::{Duration, Instant};

use jobsight_otel::{Builder, Protocol};

const UP: Duration = Duration::from_secs(4);
const DOWN: Duration = Duration::from_secs(3);
/// Jobs per queue per round.
const ROUND: u64 = 1000;
/// Spans that may wait for export: small, so every outage fills it.
const SPAN_QUEUE: usize = 8192;
/// The end's peak RSS may exceed the warm-up's by this fraction at most.
const RSS_TOLERANCE: f64 = 0.10;

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages in statm");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc_page_size() };
    pages * page
}

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
}

/// `sysconf(_SC_PAGESIZE)` (30 on Linux).
unsafe fn libc_page_size() -> u64 {
    // SAFETY: forwarded from the caller; sysconf only reads.
    let size = unsafe { sysconf(30) };
    u64::try_from(size).unwrap_or(4096)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: minutes long; run by scripts/soak"]
async fn soak_with_a_flapping_collector() {
    let secs: u64 = std::env::var("JOBSIGHT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180);
    let run_for = Duration::from_secs(secs);
    let transport = match std::env::var("JOBSIGHT_SOAK_PROTOCOL").as_deref() {
        Ok("grpc") => Transport::Grpc,
        _ => Transport::Http,
    };
    let mut rx = Receiver::start(transport).await;
    rx.discard_traces(true);
    let log = LogCapture::default();
    let telemetry = Builder::new()
        .service_name(unique("soak"))
        .endpoint(rx.endpoint())
        .protocol(match transport {
            Transport::Grpc => Protocol::Grpc,
            Transport::Http => Protocol::HttpProtobuf,
        })
        .summary(false)
        .metric_export_interval(Duration::from_secs(2))
        .span_schedule_delay(Duration::from_millis(500))
        .span_queue_size(SPAN_QUEUE)
        .shutdown_timeout(Duration::from_secs(30))
        .diagnostics_writer(log.clone())
        .install()
        .expect("install telemetry");
    let monitor = monitor_of(&telemetry);
    let queues = [
        unique("soak-emails"),
        unique("soak-reports"),
        unique("soak-billing"),
    ];

    let started = Instant::now();
    let warm_up = (run_for / 5).max(2 * (UP + DOWN));
    let last_fifth = run_for - run_for / 5;
    // Peak RSS in the warm-up and in the last fifth, and jobs run by then.
    let (mut warm_rss, mut end_rss, mut warm_jobs) = (0u64, 0u64, 0u64);
    let mut next_flap = started + UP;
    let (mut produced, mut rounds, mut flaps) = (0u64, 0u64, 0u64);
    while started.elapsed() < run_for {
        let first = rounds * 3 * ROUND;
        let ids = [
            first..first + ROUND,
            first + ROUND..first + 2 * ROUND,
            first + 2 * ROUND..first + 3 * ROUND,
        ];
        let ((emails, _), (reports, _), (billing, _)) = tokio::join!(
            run_jobs(&monitor, &queues[0], ids[0].clone()),
            run_jobs(&monitor, &queues[1], ids[1].clone()),
            run_jobs(&monitor, &queues[2], ids[2].clone()),
        );
        assert_results(&emails, ids[0].clone());
        assert_results(&reports, ids[1].clone());
        assert_results(&billing, ids[2].clone());
        produced += 3 * ROUND;
        rounds += 1;
        if Instant::now() >= next_flap {
            if rx.is_stopped() {
                rx.restart().await;
                next_flap = Instant::now() + UP;
            } else {
                rx.stop().await;
                next_flap = Instant::now() + DOWN;
            }
            flaps += 1;
        }
        let elapsed = started.elapsed();
        if elapsed <= warm_up {
            warm_rss = warm_rss.max(rss());
            warm_jobs = produced;
        } else if elapsed >= last_fifth {
            end_rss = end_rss.max(rss());
        }
    }
    rx.restart().await;
    let drained = Instant::now();
    let deadline = drained + Duration::from_secs(120);
    while rx.accepted_spans() as u64 + telemetry.dropped().spans.total() < produced {
        assert!(
            Instant::now() < deadline,
            "received {} + dropped {} < produced {produced}",
            rx.accepted_spans(),
            telemetry.dropped()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = telemetry.dropped();
    let received = rx.accepted_spans() as u64;
    // The self-metric arrives on the 2 s interval once the collector is up.
    until_drops_received(&rx, dropped, Duration::from_secs(30)).await;
    assert!(end_rss > 0, "the run is longer than the warm-up");
    let growth = end_rss as f64 / warm_rss as f64 - 1.0;
    eprintln!(
        "soak ({transport:?}): {:?}, {rounds} rounds, {produced} jobs, {flaps} flaps; \
         spans received {received} + dropped {} = {} ({dropped}); \
         peak RSS in the warm-up ({warm_jobs} jobs) {:.1} MiB, in the last fifth {:.1} MiB ({:+.1}%); \
         drained in {:?}",
        started.elapsed(),
        dropped.spans.total(),
        received + dropped.spans.total(),
        mib(warm_rss),
        mib(end_rss),
        growth * 100.0,
        drained.elapsed(),
    );
    assert_eq!(received + dropped.spans.total(), produced, "{dropped}");
    assert!(
        growth <= RSS_TOLERANCE,
        "RSS grew {:.1}% after the warm-up",
        growth * 100.0
    );
    eprintln!("log:\n{}", log.text());
    tokio::task::spawn_blocking(move || telemetry.shutdown().expect("shutdown"))
        .await
        .expect("shutdown thread");
}
