//! Check-ins: a scheduled job with a policy, a worker, the watchdog on
//! Redis, and pings to a local ping receiver.
//!
//! ```text
//! cargo run --example checkins          # needs Redis on 127.0.0.1:6379
//! ```
//!
//! The queue is apalis-redis and the watchdog's state is in the same Redis
//! (both under names unique to this run, deleted at the end). A scheduler
//! pushes a `Heartbeat` job every second for four seconds, then
//! stops. The policy (read from JSON, as from a config file) expects one
//! every 2 s with 1 s of grace and allows 3 s per run. The third run hangs
//! for 5 s: the watchdog reports it **stuck**; when the scheduler stops, it
//! reports the job **missed** — once each, however many workers run the
//! watchdog. Every run also pings a local healthchecks.io-style receiver
//! (`/start`, success, `/fail`, with `?rid=` pairing), printed as it
//! arrives. The second run fails (an `error` check-in; apalis-redis retries
//! it a second later, a new run).

use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use jobsight_apalis::MonitorLayer;
use jobsight_checkin::ping::{Healthchecks, PingOptions, PingSink};
use jobsight_checkin::watchdog::{Incident, IncidentKind, Watchdog};
use serde::{Deserialize, Serialize};

/// The scheduled job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    n: u32,
}

async fn heartbeat(job: Heartbeat, attempt: Attempt) -> Result<(), BoxDynError> {
    match job.n {
        // Hangs past the policy's maximum runtime.
        3 => tokio::time::sleep(Duration::from_secs(5)).await,
        // Fails once: an `error` check-in, then apalis-redis retries it.
        2 if attempt.current() <= 1 => return Err(std::io::Error::other("upstream refused").into()),
        _ => tokio::time::sleep(Duration::from_millis(100)).await,
    }
    Ok(())
}

/// What a config file would hold (`jobsight_checkin::load_config(path)`).
const POLICIES: &str = r#"{ "policies": [
  { "job": "Heartbeat", "monitor": "heartbeat", "interval": "2s", "grace": "1s", "max_runtime": "3s" },
  { "job": "NightlyReport", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "grace": "10m", "max_runtime": "1h" }
] }"#;

/// A local ping receiver standing in for hc-ping.com: prints every ping.
async fn ping_receiver() -> std::io::Result<String> {
    let app = axum::Router::new().fallback(|request: axum::extract::Request| async move {
        println!("  ping  {} {}", request.method(), request.uri());
        "OK"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

fn describe(incident: &Incident) {
    match &incident.kind {
        IncidentKind::Missed { expected_at, .. } => println!(
            "  WATCHDOG  {} missed: a run was due {:.1?} ago",
            incident.monitor,
            expected_at.elapsed().unwrap_or_default()
        ),
        IncidentKind::Stuck { run_id, started_at } => println!(
            "  WATCHDOG  {} stuck: run {run_id} started {:.1?} ago and has not ended",
            incident.monitor,
            started_at.elapsed().unwrap_or_default()
        ),
        other => println!("  WATCHDOG  {} {}", incident.monitor, other.as_str()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = jobsight_otel::init()?;

    let pings = PingSink::spawn(
        Healthchecks::slugs("my-ping-key").base_url(&ping_receiver().await?),
        PingOptions::default(),
    )?;
    // Names unique to this run: the queue and the watchdog's keys.
    let run = format!("jobsight-example-{}", std::process::id());
    let watchdog = Watchdog::builder("redis://127.0.0.1:6379/")
        .prefix(format!("{run}:checkin"))
        .interval(Duration::from_millis(500))
        .incident_ttl(Duration::from_secs(600))
        .retention(Duration::from_secs(600))
        .on_incident(describe)
        .build()?;
    let checkins = jobsight_checkin::parse_config(POLICIES)?
        .sink(pings.clone())
        .sink(watchdog.recorder());
    // Refuses, naming the policy, a monitor name a ping service cannot address.
    checkins.validate()?;
    let watching = watchdog.spawn(checkins.clone())?;

    let conn = apalis_redis::connect("redis://127.0.0.1:6379/").await?;
    // A 1 s heartbeat bounds apalis-core 1.0.0's interval-poll stall.
    let config = Config::default()
        .queue(format!("{run}:queue"))
        .heartbeat_interval(Duration::from_secs(1));
    let mut scheduler = RedisStorage::<Heartbeat>::new(conn.clone()).with_config(config.clone());
    tokio::spawn(async move {
        for n in 1..=4 {
            println!("scheduler: Heartbeat #{n}");
            let _ = scheduler.push(Heartbeat { n }).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!("scheduler: stopped (the next run will be missed)");
    });

    // Unique per process (host name and pid): apalis-redis keys heartbeats
    // and jobs in flight by worker name.
    WorkerBuilder::new(jobsight_apalis::worker_name("heartbeat"))
        .backend(
            RedisStorage::<Heartbeat>::new(conn.clone())
                .with_config(config)
                .poll_with_interval(Duration::from_millis(100)),
        )
        .layer(MonitorLayer::builder().checkins(checkins).build()?)
        .build(heartbeat)
        .run_until(async {
            tokio::time::sleep(Duration::from_secs(9)).await;
            Ok::<(), std::io::Error>(())
        })
        .await?;

    watching.abort();
    pings.flush(Duration::from_secs(2)).await;
    let stats = watchdog.stats();
    println!(
        "watchdog: {} missed, {} stuck, {} checks, {} errors",
        stats.missed(),
        stats.stuck(),
        stats.checks(),
        stats.errors()
    );
    println!(
        "pings: {} sent, {} failed, {} dropped",
        pings.stats().sent(),
        pings.stats().failed(),
        pings.stats().dropped()
    );
    // Tidy up this run's keys (a demo; production keeps them).
    let mut conn = conn;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{run}:*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    telemetry.shutdown()?;
    Ok(())
}
