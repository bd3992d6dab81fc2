//! What monitoring costs per job: an apalis 1.0 worker on the in-memory
//! backend running no-op jobs, bare and behind each layer, against the
//! OpenTelemetry SDK's own floor. See the README's "Performance" section.
//!
//! `cargo bench --bench job_overhead` runs, in this order:
//! 1. criterion benchmarks (`per_job/*`): the SDK floor and each worker
//!    configuration at concurrency 1, one after the other, with criterion's
//!    statistics (`-- --save-baseline before` / `-- --baseline before`
//!    compare two builds);
//! 2. the table: every configuration at concurrency 1 and 4 plus the floor,
//!    interleaved round by round so load on the machine hits all alike;
//!    medians, overhead against the bare worker of the same round, the
//!    targets of issue #7, allocations per job (a counting allocator), and
//!    memory over a million jobs with the collector hanging.
//!
//! Environment: `JOBSIGHT_BENCH=table` or `=criterion` runs one part only;
//! `JOBSIGHT_BENCH_JOBS` (default 100000 a run), `JOBSIGHT_BENCH_ROUNDS`
//! (7), `JOBSIGHT_BENCH_MEMORY_JOBS` (1000000). Under `cargo test` (no
//! `--bench` argument) both parts run once with tiny sizes, as a smoke test.
//!
//! `JOBSIGHT_BENCH=one JOBSIGHT_BENCH_CONFIG=<name> JOBSIGHT_BENCH_JOBS=<n>`
//! runs one configuration once (`bare`, `full`, `metrics_only`, `no_traces`,
//! `sampled_1pct`, `apalis`, `apalis_metrics`,
//! `refusing`, `hanging`, `logs`, `apalis_logs`, `floor`, `floor_bound`) at concurrency 1: for counting
//! instructions under callgrind (`scripts/bench-instructions`).
//! `JOBSIGHT_BENCH_ISOLATE=0` runs the table's rounds in this process
//! instead of one fresh process per measurement (the default, see
//! `report::run_cell`).
//! `JOBSIGHT_BENCH=allocs` prints the allocations-per-job table only
//! (`JOBSIGHT_BENCH_JOBS` jobs a configuration, default 20000).

mod alloc_count;
mod pipelines;
mod report;
mod workers;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};

use crate::report::Params;
use crate::workers::{Bench, Config};

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn criterion_benches(criterion: &mut Criterion, bench: &Bench) {
    let mut group = criterion.benchmark_group("per_job");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for (name, bound) in [("sdk_floor", false), ("sdk_floor_bound", true)] {
        group.bench_function(name, |b| {
            let mut i = 0_u64;
            b.iter(|| {
                bench.floor_once(i, bound);
                i += 1;
            });
        });
    }
    for (config, name) in [
        (Config::Bare, "bare"),
        (Config::Full, "monitor_full"),
        (Config::MetricsOnly, "monitor_metrics_only"),
        (Config::NoTraces, "monitor_no_traces"),
        (Config::Apalis, "apalis_layers"),
    ] {
        group.bench_function(BenchmarkId::new("worker_c1", name), |b| {
            b.iter_custom(|jobs| {
                let storage = bench.storage(jobs);
                bench.run(config, 1, storage, jobs)
            });
        });
    }
    group.finish();
}

fn run_one(bench: &Bench) {
    let jobs = env_u64("JOBSIGHT_BENCH_JOBS", 1000);
    let name = std::env::var("JOBSIGHT_BENCH_CONFIG").unwrap_or_default();
    if name == "floor" || name == "floor_bound" {
        bench.run_floor(jobs, name == "floor_bound");
        return;
    }
    let Some(config) = Config::from_name(&name) else {
        panic!("JOBSIGHT_BENCH_CONFIG: unknown configuration {name:?}");
    };
    let storage = bench.storage(jobs);
    bench.run(config, 1, storage, jobs);
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let which = std::env::var("JOBSIGHT_BENCH").unwrap_or_default();
    let bench = Bench::new();
    if which == "cell" {
        report::run_cell(&bench);
        bench.release();
        return;
    }
    if which == "one" {
        run_one(&bench);
        bench.release();
        return;
    }
    if which == "allocs" {
        println!(
            "{}",
            report::allocations(&bench, env_u64("JOBSIGHT_BENCH_JOBS", 20_000))
        );
        bench.release();
        return;
    }
    if which != "table" {
        let mut criterion = Criterion::default().configure_from_args();
        criterion_benches(&mut criterion, &bench);
        criterion.final_summary();
    }
    if which != "criterion" {
        let params = if bench_mode {
            Params {
                jobs: env_u64("JOBSIGHT_BENCH_JOBS", 100_000),
                rounds: env_u64("JOBSIGHT_BENCH_ROUNDS", 7) as usize,
                alloc_jobs: 20_000,
                memory_jobs: env_u64("JOBSIGHT_BENCH_MEMORY_JOBS", 1_000_000),
                isolate: std::env::var("JOBSIGHT_BENCH_ISOLATE").map_or(true, |v| v != "0"),
            }
        } else {
            Params {
                jobs: 200,
                rounds: 1,
                alloc_jobs: 200,
                memory_jobs: 1_000,
                isolate: false,
            }
        };
        let table = report::run(&bench, params);
        println!("\n{table}");
    }
    bench.release();
}
