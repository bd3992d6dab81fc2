//! Per-job cost of a transaction (start + succeed), for the numbers in the
//! README and the issue notes. Ignored by default; run with
//! `cargo test --release -p jobsight-core --test cost -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use jobsight_core::{JobMeta, JobMonitor};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

const JOBS: u32 = 200_000;
const ROUNDS: usize = 7;

fn per_job(monitor: &JobMonitor) -> Duration {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..JOBS {
            let meta = JobMeta::builder("bench", "q")
                .name("job")
                .attempt(1)
                .max_attempts(1)
                .build();
            let tx = monitor.start(meta);
            std::hint::black_box(&tx);
            tx.succeed();
        }
        samples.push(started.elapsed() / JOBS);
    }
    samples.sort();
    samples[ROUNDS / 2]
}

#[test]
#[ignore = "a measurement, not a check: run with --release --ignored --nocapture"]
fn transaction_cost() {
    // No SDK: the API's no-op tracer and meter.
    let noop = JobMonitor::new();
    println!("no SDK:                  {:?} a job", per_job(&noop));
    let noop_progress = JobMonitor::builder().progress(true).build();
    println!(
        "no SDK, progress on:     {:?} a job",
        per_job(&noop_progress)
    );
    let observed = JobMonitor::builder()
        .observer(|e: &jobsight_core::JobEvent| {
            std::hint::black_box(e);
        })
        .build();
    println!("no SDK, one observer:    {:?} a job", per_job(&observed));

    // SDK, sampled out, metrics on (no reader export during the run).
    let tracer_provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOff)
        .build();
    let meter_provider = SdkMeterProvider::builder().build();
    let sdk_off = JobMonitor::builder()
        .tracer_provider(&tracer_provider)
        .meter_provider(&meter_provider)
        .build();
    println!("SDK, sampled out:        {:?} a job", per_job(&sdk_off));

    // SDK, sampled, no span processor (spans are built and dropped).
    let tracer_provider = SdkTracerProvider::builder().build();
    let sdk_on = JobMonitor::builder()
        .tracer_provider(&tracer_provider)
        .meter_provider(&meter_provider)
        .build();
    println!("SDK, sampled, no export: {:?} a job", per_job(&sdk_on));
    let sdk_progress = JobMonitor::builder()
        .tracer_provider(&tracer_provider)
        .meter_provider(&meter_provider)
        .progress(true)
        .build();
    println!(
        "SDK, sampled, progress:  {:?} a job",
        per_job(&sdk_progress)
    );
}
