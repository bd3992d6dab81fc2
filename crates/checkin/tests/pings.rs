//! Pings over real HTTP to a local receiver: URL, method, status sequence
//! and pairing ids for each service's format; retries; a dead service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use jobsight_checkin::ping::{
    Cronitor, Healthchecks, PingFormat, PingOptions, PingSink, SentryCrons, UrlTemplate,
};
use jobsight_core::checkin::{CheckinPolicy, Checkins};
use jobsight_core::{JobMeta, JobMonitor};

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// Answer 503 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
}

async fn record(State(r): State<Receiver>, request: Request) -> StatusCode {
    let delay = *r.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    r.seen
        .lock()
        .unwrap()
        .push((request.method().to_string(), request.uri().to_string()));
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}

async fn serve() -> (Receiver, String) {
    let receiver = Receiver::default();
    let app = Router::new().fallback(record).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, base)
}

/// Runs one successful and one failing job named `nightly` through a
/// monitor with a check-in policy and `sink`.
fn two_runs(sink: PingSink) {
    let checkins = Checkins::new()
        .policy(CheckinPolicy::job("nightly"))
        .sink(sink);
    let monitor = JobMonitor::new();
    let check = checkins.find("reports", "nightly").unwrap();
    let meta = || {
        JobMeta::builder("test", "reports")
            .name("nightly")
            .attempt(1)
            .build()
    };

    let mut tx = monitor.start(meta());
    tx.checkin(&checkins, &check);
    tx.succeed();

    let mut tx = monitor.start(meta());
    tx.checkin(&checkins, &check);
    tx.fail(&std::io::Error::other("disk full"));
}

fn query(uri: &str, key: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

fn path(uri: &str) -> &str {
    uri.split_once('?').map_or(uri, |(p, _)| p)
}

async fn run_format(make: impl FnOnce(&str) -> PingSink) -> Vec<(String, String)> {
    let (receiver, base) = serve().await;
    let sink = make(&base);
    two_runs(sink.clone());
    assert!(
        sink.flush(Duration::from_secs(5)).await,
        "{:?}",
        sink.stats()
    );
    assert_eq!(sink.stats().sent(), 4, "{:?}", sink.stats().last_error());
    receiver.seen.lock().unwrap().clone()
}

/// Each request's `key` query value, one per request.
fn values(seen: &[(String, String)], key: &str) -> Vec<String> {
    seen.iter()
        .map(|(_, u)| query(u, key).unwrap_or_else(|| panic!("no {key} in {u}")))
        .collect()
}

/// Two runs of two pings each: the ids in `key` pair each run's pings and
/// differ between runs; they are UUIDs.
fn assert_paired(seen: &[(String, String)], key: &str) {
    let ids = values(seen, key);
    assert_eq!(ids.len(), 4, "{seen:?}");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[2], ids[3]);
    assert_ne!(ids[0], ids[2]);
    assert_eq!(ids[0].len(), 36);
}

/// A sink that retries `retries` times with a short backoff (5 ms, then
/// doubled up to 40 ms).
fn quick_retries(format: impl PingFormat, retries: u32) -> PingSink {
    PingSink::spawn(
        format,
        PingOptions::default()
            .retries(retries)
            .backoff(Duration::from_millis(5), Duration::from_millis(40)),
    )
    .unwrap()
}

fn spawn(format: impl PingFormat) -> PingSink {
    PingSink::spawn(format, PingOptions::default()).unwrap()
}

#[tokio::test]
async fn healthchecks_slug_form() {
    let seen = run_format(|base| spawn(Healthchecks::slugs("pk-123").base_url(base))).await;
    let paths: Vec<&str> = seen.iter().map(|(_, u)| path(u)).collect();
    assert_eq!(
        paths,
        [
            "/pk-123/nightly/start",
            "/pk-123/nightly",
            "/pk-123/nightly/start",
            "/pk-123/nightly/fail"
        ]
    );
    // POST: a check set to take only POST ignores GETs.
    assert!(seen.iter().all(|(m, _)| m == "POST"));
    assert_paired(&seen, "rid");
}

#[tokio::test]
async fn healthchecks_uuid_form_with_exit_status() {
    let uuid = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
    let seen = run_format(|base| {
        spawn(
            Healthchecks::uuids()
                .uuid("nightly", uuid)
                .exit_status(true)
                .base_url(base),
        )
    })
    .await;
    let paths: Vec<&str> = seen.iter().map(|(_, u)| path(u)).collect();
    assert_eq!(
        paths,
        [
            format!("/{uuid}/start"),
            format!("/{uuid}/0"),
            format!("/{uuid}/start"),
            format!("/{uuid}/1")
        ]
    );
    assert_paired(&seen, "rid");
}

#[tokio::test]
async fn cronitor_states_and_series() {
    let seen =
        run_format(|base| spawn(Cronitor::new("KEY").base_url(base).env("production"))).await;
    assert!(seen.iter().all(|(_, u)| path(u) == "/p/KEY/nightly"));
    assert_eq!(values(&seen, "state"), ["run", "complete", "run", "fail"]);
    assert_paired(&seen, "series");
    assert_eq!(query(&seen[1].1, "status_code").as_deref(), Some("0"));
    assert_eq!(query(&seen[3].1, "status_code").as_deref(), Some("1"));
    assert_eq!(query(&seen[0].1, "env").as_deref(), Some("production"));
    assert!(
        query(&seen[1].1, "metric").is_some_and(|m| m.starts_with("duration%3A")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn sentry_crons_http_check_ins() {
    let seen = run_format(|base| {
        let dsn = base.replace("http://", "http://pubkey@") + "/42";
        spawn(SentryCrons::from_dsn(&dsn).unwrap().environment("prod"))
    })
    .await;
    assert!(
        seen.iter()
            .all(|(_, u)| path(u) == "/api/42/cron/nightly/pubkey/"),
        "{seen:?}"
    );
    assert_eq!(
        values(&seen, "status"),
        ["in_progress", "ok", "in_progress", "error"]
    );
    assert_paired(&seen, "check_in_id");
    assert_eq!(query(&seen[0].1, "environment").as_deref(), Some("prod"));
    assert!(query(&seen[0].1, "duration").is_none());
    assert!(query(&seen[3].1, "duration").is_some());
}

#[tokio::test]
async fn url_template() {
    let seen = run_format(|base| {
        let template =
            format!("{base}/hook/{{monitor}}/{{status}}?run={{run_id}}&code={{exit_status}}");
        spawn(
            UrlTemplate::new(template)
                .method(axum::http::Method::POST)
                .status_words("start", "done", "failed"),
        )
    })
    .await;
    let paths: Vec<&str> = seen.iter().map(|(_, u)| path(u)).collect();
    assert_eq!(
        paths,
        [
            "/hook/nightly/start",
            "/hook/nightly/done",
            "/hook/nightly/start",
            "/hook/nightly/failed"
        ]
    );
    assert!(seen.iter().all(|(m, _)| m == "POST"));
    assert_paired(&seen, "run");
    assert_eq!(query(&seen[0].1, "code").as_deref(), Some(""));
    assert_eq!(query(&seen[3].1, "code").as_deref(), Some("1"));
}

#[tokio::test]
async fn retries_until_the_service_recovers() {
    let (receiver, base) = serve().await;
    receiver.fail_first.store(3, Ordering::SeqCst);
    let sink = quick_retries(Healthchecks::slugs("pk").base_url(&base), 3);
    two_runs(sink.clone());
    assert!(sink.flush(Duration::from_secs(5)).await);
    let stats = sink.stats();
    assert_eq!((stats.sent(), stats.retried(), stats.failed()), (4, 3, 0));
    let seen = receiver.seen.lock().unwrap().clone();
    // The first ping was tried 4 times (3 answered 503), then the rest in order.
    let paths: Vec<&str> = seen.iter().map(|(_, u)| path(u)).collect();
    assert_eq!(
        paths,
        [
            "/pk/nightly/start",
            "/pk/nightly/start",
            "/pk/nightly/start",
            "/pk/nightly/start",
            "/pk/nightly",
            "/pk/nightly/start",
            "/pk/nightly/fail"
        ]
    );
    assert_eq!(query(&seen[0].1, "rid"), query(&seen[4].1, "rid"));
    assert!(stats.last_error().unwrap().contains("503"));
}

#[tokio::test]
async fn gives_up_after_the_retries_and_counts_it() {
    let (receiver, base) = serve().await;
    receiver.fail_first.store(usize::MAX, Ordering::SeqCst);
    let sink = quick_retries(Cronitor::new("K").base_url(&base), 1);
    two_runs(sink.clone());
    assert!(sink.flush(Duration::from_secs(5)).await);
    assert_eq!((sink.stats().sent(), sink.stats().failed()), (0, 4));
    assert_eq!(receiver.seen.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn a_slow_service_never_slows_the_job_and_drops_are_counted() {
    let (receiver, base) = serve().await;
    *receiver.delay.lock().unwrap() = Duration::from_secs(30);
    let sink = PingSink::spawn(
        Healthchecks::slugs("pk").base_url(&base),
        PingOptions::default()
            .queue_capacity(8)
            .timeout(Duration::from_millis(200))
            .retries(0),
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..50 {
        two_runs(sink.clone());
    }
    let spent = started.elapsed();
    // 200 check-ins against a service that answers after 30 s.
    assert!(spent < Duration::from_secs(1), "{spent:?}");
    assert!(sink.stats().dropped() >= 150, "{:?}", sink.stats());
    assert_eq!(sink.stats().queued() + sink.stats().dropped(), 200);
}

#[tokio::test]
async fn a_dead_service_costs_nothing_but_counts() {
    // Nothing listens on this port (bound then closed).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sink = quick_retries(Healthchecks::slugs("pk").base_url(&base), 1);
    two_runs(sink.clone());
    assert!(sink.flush(Duration::from_secs(5)).await);
    assert_eq!(sink.stats().failed(), 4);
    assert!(sink.stats().last_error().is_some());
}

#[test]
fn spawning_outside_a_runtime_is_an_error() {
    let err = PingSink::spawn(Healthchecks::slugs("pk"), PingOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
