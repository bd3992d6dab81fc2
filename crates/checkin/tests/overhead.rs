//! What a check-in costs the job's path. Ignored by default (timing);
//! run with `cargo test --release -p jobsight-checkin --test overhead -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use jobsight_checkin::ping::{Healthchecks, PingOptions, PingSink};
use jobsight_core::checkin::{CheckinPolicy, CheckinStatus, Checkins};

const RUNS: u32 = 200_000;

fn per_run(checkins: &Checkins) -> Duration {
    let check = checkins.find("q", "job").unwrap();
    let started = Instant::now();
    for _ in 0..RUNS {
        checkins.start_run(&check).finish(CheckinStatus::Ok, 0);
    }
    started.elapsed() / RUNS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run in release by hand"]
async fn cost_per_run() {
    let bare = Checkins::new().policy(CheckinPolicy::job("job"));
    // A ping service that does not exist: the sink's queue fills and drops.
    let dead = PingSink::spawn(
        Healthchecks::slugs("pk").base_url("http://127.0.0.1:9"),
        PingOptions::default().retries(0),
    )
    .unwrap();
    let with_sink = Checkins::new()
        .policy(CheckinPolicy::job("job"))
        .sink(dead.clone());
    let lookup = {
        let started = Instant::now();
        for _ in 0..RUNS {
            std::hint::black_box(bare.find("q", "other"));
        }
        started.elapsed() / RUNS
    };
    let ids = {
        let started = Instant::now();
        for _ in 0..RUNS {
            std::hint::black_box(jobsight_core::checkin::RunId::new());
        }
        started.elapsed() / RUNS
    };
    println!("run id: {ids:?}");
    for round in 0..3 {
        println!(
            "round {round}: run without sinks {:?}, with a ping sink {:?}, lookup of a job without policy {:?}",
            per_run(&bare),
            per_run(&with_sink),
            lookup
        );
    }
    println!(
        "ping sink: {} queued, {} dropped",
        dead.stats().queued(),
        dead.stats().dropped()
    );
}
