//! The interleaved rounds and the table `cargo bench` prints (the README's
//! "Performance" table).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::alloc_count::{Counted, Counting};
use crate::workers::{Bench, Config};

/// Sizes of one table run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Jobs per worker run.
    pub jobs: u64,
    /// Interleaved rounds; each runs every configuration at each concurrency.
    pub rounds: usize,
    /// Jobs per run when counting allocations.
    pub alloc_jobs: u64,
    /// Jobs in the memory check, run in ten chunks.
    pub memory_jobs: u64,
    /// Each measurement of the table in a fresh process of this binary
    /// (see [`run_cell`]) rather than in this one.
    pub isolate: bool,
}

/// What one measurement in a child process reported.
struct Cell {
    ns_per_job: f64,
    cpu_per_job: Option<f64>,
    /// Jobs the child ran (warm-up included) and spans its pipeline
    /// exported, for the configurations whose exports are counted (log
    /// records for the logs rows).
    spans: Option<(u64, u64)>,
}

/// The child's side: `JOBSIGHT_BENCH=cell` with `JOBSIGHT_BENCH_CONFIG`
/// (a configuration's name, `floor` or `floor_bound`),
/// `JOBSIGHT_BENCH_CONCURRENCY` and `JOBSIGHT_BENCH_JOBS`. Runs a warm-up of
/// a fifth of the jobs (at most 20 000) in the same configuration, then the
/// measured run, and prints one line for the parent. A fresh process per
/// measurement is what a user runs — one configuration in a process — and
/// keeps one configuration's heap (freed by its exporter threads) from
/// weighing on the next one's allocations.
pub fn run_cell(bench: &Bench) {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let jobs: u64 = var("JOBSIGHT_BENCH_JOBS").parse().unwrap_or(100_000);
    let concurrency: usize = var("JOBSIGHT_BENCH_CONCURRENCY").parse().unwrap_or(1);
    let name = var("JOBSIGHT_BENCH_CONFIG");
    let warm = (jobs / 5).clamp(1, 20_000);
    let (took, cpu, spans) = if name == "floor" || name == "floor_bound" {
        let bound = name == "floor_bound";
        bench.run_floor(warm, bound);
        let before = thread_cpu_ns();
        let took = bench.run_floor(jobs, bound);
        (took, before.zip(thread_cpu_ns()), None)
    } else {
        let Some(config) = Config::from_name(&name) else {
            panic!("JOBSIGHT_BENCH_CONFIG: unknown configuration {name:?}");
        };
        let storage = bench.storage(warm);
        bench.run(config, concurrency, storage, warm);
        let storage = bench.storage(jobs);
        let before = thread_cpu_ns();
        let took = bench.run(config, concurrency, storage, jobs);
        let cpu = before.zip(thread_cpu_ns());
        let spans = match config {
            Config::Full | Config::Apalis => bench.pipeline(config).map(|pipeline| {
                let _ = pipeline.tracer_provider.force_flush();
                (warm + jobs, pipeline.stats.spans())
            }),
            Config::Logs | Config::ApalisLogs => Some((warm + jobs, bench.logs().exported())),
            _ => None,
        };
        (took, cpu, spans)
    };
    let cpu = cpu.map_or(-1.0, |(before, after)| {
        after.saturating_sub(before) as f64 / jobs as f64
    });
    let (made, exported) = spans.unwrap_or((0, 0));
    println!(
        "jobsight-cell {} {cpu} {made} {exported}",
        took.as_nanos() as f64 / jobs as f64
    );
}

/// The parent's side of [`run_cell`].
fn cell(name: &str, concurrency: usize, jobs: u64) -> Cell {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("the bench's own executable: {e}"),
    };
    let output = std::process::Command::new(exe)
        .env("JOBSIGHT_BENCH", "cell")
        .env("JOBSIGHT_BENCH_CONFIG", name)
        .env("JOBSIGHT_BENCH_CONCURRENCY", concurrency.to_string())
        .env("JOBSIGHT_BENCH_JOBS", jobs.to_string())
        .stderr(std::process::Stdio::inherit())
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => panic!("bench cell {name} c={concurrency}: {}", output.status),
        Err(e) => panic!("bench cell {name} c={concurrency}: {e}"),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("jobsight-cell ")) else {
        panic!("bench cell {name} c={concurrency}: no result in {text:?}");
    };
    let fields: Vec<f64> = line
        .split(' ')
        .map(|f| f.parse().unwrap_or(f64::NAN))
        .collect();
    let [ns_per_job, cpu, made, exported] = fields[..] else {
        panic!("bench cell {name} c={concurrency}: {line:?}");
    };
    Cell {
        ns_per_job,
        cpu_per_job: (cpu >= 0.0).then_some(cpu),
        spans: (made > 0.0).then_some((made as u64, exported as u64)),
    }
}

const CONCURRENCY: [usize; 2] = [1, 4];

/// A target's row: label, the figures at concurrency 1 and 4, how to print
/// one, and whether one meets the target.
type TargetRow<'a> = (
    &'a str,
    [f64; 2],
    &'a dyn Fn(f64) -> String,
    &'a dyn Fn(f64) -> bool,
);

/// A row of the table: a worker configuration or the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Row {
    Worker(Config),
    /// The SDK floor, metric calls unbound (`bound` = false) or through
    /// bound instruments.
    Floor {
        bound: bool,
    },
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// CPU time this thread has run, in nanoseconds (the scheduler's
/// `sum_exec_runtime`): unlike the wall clock, it does not count the time
/// the thread waits for a CPU while other work has the machine.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// Runs the rounds, the allocation count and the memory check, and returns
/// the report in Markdown.
pub fn run(bench: &Bench, p: Params) -> String {
    // ns per job, per (row, concurrency), one value per round.
    let mut ns: HashMap<(Row, usize), Vec<f64>> = HashMap::new();
    // CPU time of the job's thread per job, per (worker configuration,
    // concurrency), one value per round.
    let mut cpu: HashMap<(Config, usize), Vec<f64>> = HashMap::new();
    let mut runs: HashMap<Config, u64> = HashMap::new();
    // Jobs run and spans exported in child processes, per configuration.
    let mut child_spans: HashMap<Config, (u64, u64)> = HashMap::new();
    let rows: Vec<Row> = Config::ALL
        .iter()
        .map(|c| Row::Worker(*c))
        .chain([Row::Floor { bound: false }, Row::Floor { bound: true }])
        .collect();
    // Spans exported before the table (criterion's runs use the same
    // pipelines), so that only the table's own are counted below.
    let exported_before: HashMap<Config, u64> = [Config::Full, Config::Apalis]
        .into_iter()
        .filter_map(|config| {
            let pipeline = bench.pipeline(config)?;
            let _ = pipeline.tracer_provider.force_flush();
            Some((config, pipeline.stats.spans()))
        })
        .collect();
    for round in 0..p.rounds {
        // Rotate the order so each configuration takes each position.
        let mut order = rows.clone();
        order.rotate_left(round % rows.len());
        for &concurrency in &CONCURRENCY {
            for &row in &order {
                let per_job = match row {
                    Row::Worker(config) if p.isolate => {
                        let result = cell(config.name(), concurrency, p.jobs);
                        if let Some(cpu_per_job) = result.cpu_per_job {
                            cpu.entry((config, concurrency))
                                .or_default()
                                .push(cpu_per_job);
                        }
                        if let Some((made, exported)) = result.spans {
                            let entry = child_spans.entry(config).or_default();
                            entry.0 += made;
                            entry.1 += exported;
                        }
                        result.ns_per_job
                    }
                    Row::Floor { bound } if p.isolate && concurrency == CONCURRENCY[0] => {
                        let name = if bound { "floor_bound" } else { "floor" };
                        cell(name, concurrency, p.jobs).ns_per_job
                    }
                    Row::Worker(config) => {
                        let storage = bench.storage(p.jobs);
                        let cpu_before = thread_cpu_ns();
                        let took = bench.run(config, concurrency, storage, p.jobs);
                        if let (Some(before), Some(after)) = (cpu_before, thread_cpu_ns()) {
                            cpu.entry((config, concurrency))
                                .or_default()
                                .push(after.saturating_sub(before) as f64 / p.jobs as f64);
                        }
                        *runs.entry(config).or_default() += p.jobs;
                        took.as_nanos() as f64 / p.jobs as f64
                    }
                    Row::Floor { bound } if concurrency == CONCURRENCY[0] => {
                        bench.run_floor(p.jobs, bound).as_nanos() as f64 / p.jobs as f64
                    }
                    Row::Floor { .. } => continue,
                };
                ns.entry((row, concurrency)).or_default().push(per_job);
            }
        }
        eprintln!("jobsight bench: round {} of {} done", round + 1, p.rounds);
    }

    let value = |row: Row, c: usize, round: usize| -> f64 {
        ns.get(&(row, c))
            .and_then(|v| v.get(round).copied())
            .unwrap_or(f64::NAN)
    };
    let med = |row: Row, c: usize| -> f64 {
        let mut v: Vec<f64> = ns.get(&(row, c)).cloned().unwrap_or_default();
        median(&mut v)
    };
    // Overhead: the configuration minus the bare worker of the same round.
    let overhead = |config: Config, c: usize| -> f64 {
        let mut v: Vec<f64> = (0..p.rounds)
            .map(|r| value(Row::Worker(config), c, r) - value(Row::Worker(Config::Bare), c, r))
            .collect();
        median(&mut v)
    };
    // Throughput of `config` relative to `Full` (collector up), same round.
    let throughput_vs_up = |config: Config, c: usize| -> f64 {
        let mut v: Vec<f64> = (0..p.rounds)
            .map(|r| value(Row::Worker(Config::Full), c, r) / value(Row::Worker(config), c, r))
            .collect();
        median(&mut v)
    };
    let floor = med(Row::Floor { bound: false }, 1);
    let floor_bound = med(Row::Floor { bound: true }, 1);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "jobsight per-job cost: apalis 1.0 worker, in-memory backend, no-op job; {} jobs a run, \
         median of {} interleaved rounds, {}; {} CPUs\n",
        p.jobs,
        p.rounds,
        if p.isolate {
            "each run in a fresh process after a warm-up"
        } else {
            "all in this process"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let _ = writeln!(
        out,
        "| configuration | ns/job, c=1 | overhead, c=1 | ns/job, c=4 | overhead, c=4 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for config in Config::ALL {
        let row = Row::Worker(config);
        if config == Config::Bare {
            let _ = writeln!(
                out,
                "| {} | {:.0} | — | {:.0} | — |",
                config.label(),
                med(row, 1),
                med(row, 4)
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:+.0} | {:.0} | {:+.0} |",
                config.label(),
                med(row, 1),
                overhead(config, 1),
                med(row, 4),
                overhead(config, 4)
            );
        }
    }
    let _ = writeln!(
        out,
        "| SDK floor: one span with the same attributes + the same metric calls, no worker | — | {floor:.0} | — | — |"
    );
    let _ = writeln!(
        out,
        "| SDK floor, metric instruments bound to the attribute sets | — | {floor_bound:.0} | — | — |\n"
    );

    // The job thread's CPU time, same runs.
    let cpu_value = |config: Config, c: usize, round: usize| -> f64 {
        cpu.get(&(config, c))
            .and_then(|v| v.get(round).copied())
            .unwrap_or(f64::NAN)
    };
    let cpu_med = |config: Config, c: usize| -> f64 {
        let mut v: Vec<f64> = cpu.get(&(config, c)).cloned().unwrap_or_default();
        median(&mut v)
    };
    let cpu_overhead = |config: Config, c: usize| -> f64 {
        let mut v: Vec<f64> = (0..p.rounds)
            .map(|r| cpu_value(config, c, r) - cpu_value(Config::Bare, c, r))
            .collect();
        median(&mut v)
    };
    let _ = writeln!(
        out,
        "| the job's thread, CPU time (same runs) | ns/job, c=1 | overhead, c=1 | ns/job, c=4 | overhead, c=4 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for config in Config::ALL {
        if config == Config::Bare {
            let _ = writeln!(
                out,
                "| {} | {:.0} | — | {:.0} | — |",
                config.label(),
                cpu_med(config, 1),
                cpu_med(config, 4)
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:+.0} | {:.0} | {:+.0} |",
                config.label(),
                cpu_med(config, 1),
                cpu_overhead(config, 1),
                cpu_med(config, 4),
                cpu_overhead(config, 4)
            );
        }
    }
    let _ = writeln!(out);

    // Targets.
    let full = [overhead(Config::Full, 1), overhead(Config::Full, 4)];
    let apalis = [overhead(Config::Apalis, 1), overhead(Config::Apalis, 4)];
    let metrics = [
        overhead(Config::MetricsOnly, 1),
        overhead(Config::MetricsOnly, 4),
    ];
    let no_traces = [overhead(Config::NoTraces, 1), overhead(Config::NoTraces, 4)];
    let metrics_cpu = [
        cpu_overhead(Config::MetricsOnly, 1),
        cpu_overhead(Config::MetricsOnly, 4),
    ];
    let no_traces_cpu = [
        cpu_overhead(Config::NoTraces, 1),
        cpu_overhead(Config::NoTraces, 4),
    ];
    let vs_floor = [full[0] / floor, full[1] / floor];
    let vs_floor_bound = [full[0] / floor_bound, full[1] / floor_bound];
    let vs_apalis = [full[0] / apalis[0], full[1] / apalis[1]];
    let apalis_metrics = [
        overhead(Config::ApalisMetrics, 1),
        overhead(Config::ApalisMetrics, 4),
    ];
    let sampled = [overhead(Config::Sampled1, 1), overhead(Config::Sampled1, 4)];
    let vs_apalis_metrics =
        |mine: [f64; 2]| [mine[0] / apalis_metrics[0], mine[1] / apalis_metrics[1]];
    let no_traces_vs_metrics = vs_apalis_metrics(no_traces);
    let sampled_vs_metrics = vs_apalis_metrics(sampled);
    let refusing = [
        throughput_vs_up(Config::FullRefusing, 1),
        throughput_vs_up(Config::FullRefusing, 4),
    ];
    let hanging = [
        throughput_vs_up(Config::FullHanging, 1),
        throughput_vs_up(Config::FullHanging, 4),
    ];
    let _ = writeln!(out, "| target | c=1 | c=4 | met |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    let ratio = |v: f64| format!("{v:.2}×");
    let nanos = |v: f64| format!("{v:.0} ns");
    let percent = |v: f64| format!("{:.0}%", v * 100.0);
    let targets: [TargetRow; 12] = [
        (
            "traces(false) overhead ≤ 0.5× apalis's metrics-only layer's overhead",
            no_traces_vs_metrics,
            &ratio,
            &|r| r <= 0.5,
        ),
        (
            "1%-sampled overhead ≤ 0.5× apalis's metrics-only layer's overhead",
            sampled_vs_metrics,
            &ratio,
            &|r| r <= 0.5,
        ),
        (
            "full monitoring overhead ≤ 0.2× apalis's tracing + metrics layers' overhead",
            vs_apalis,
            &ratio,
            &|r| r <= 0.2,
        ),
        (
            "full monitoring overhead ≤ 1.5× the SDK floor",
            vs_floor,
            &ratio,
            &|r| r <= 1.5,
        ),
        (
            "full monitoring overhead ≤ 1.5× the SDK floor with bound instruments",
            vs_floor_bound,
            &ratio,
            &|r| r <= 1.5,
        ),
        (
            "full monitoring overhead ≤ 0.5× apalis's tracing + metrics layers' overhead",
            vs_apalis,
            &ratio,
            &|r| r <= 0.5,
        ),
        (
            "metrics-only overhead ≤ 400 ns (traces sampled out)",
            metrics,
            &nanos,
            &|m| m <= 400.0,
        ),
        (
            "metrics-only overhead ≤ 400 ns (monitor with traces(false))",
            no_traces,
            &nanos,
            &|m| m <= 400.0,
        ),
        (
            "metrics-only overhead ≤ 400 ns, job thread's CPU time (traces sampled out)",
            metrics_cpu,
            &nanos,
            &|m| m <= 400.0,
        ),
        (
            "metrics-only overhead ≤ 400 ns, job thread's CPU time (traces(false))",
            no_traces_cpu,
            &nanos,
            &|m| m <= 400.0,
        ),
        (
            "collector refusing: throughput ≥ 95% of collector up",
            refusing,
            &percent,
            &|r| r >= 0.95,
        ),
        (
            "collector hanging: throughput ≥ 95% of collector up",
            hanging,
            &percent,
            &|r| r >= 0.95,
        ),
    ];
    for (label, figures, show, meets) in targets {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            show(figures[0]),
            show(figures[1]),
            yes_no(figures.iter().all(|f| meets(*f)))
        );
    }

    // The logs rows side by side: what logging one line inside a job adds
    // to the bare worker under each layer, in proportion.
    let logs_ratio = |c: usize| overhead(Config::Logs, c) / overhead(Config::ApalisLogs, c);
    let _ = writeln!(
        out,
        "| job that logs one line: MonitorLayer's overhead ÷ apalis TraceLayer's, same subscriber | {} | {} | (no target) |",
        ratio(logs_ratio(1)),
        ratio(logs_ratio(4))
    );

    // Memory over many jobs with the collector hanging (the span queue fills
    // and stays full), in ten chunks.
    let chunk = (p.memory_jobs / 10).max(1);
    // One chunk first, not counted: the span queue fills and the allocator
    // grows its arenas to their working size (in a fresh process this alone
    // adds ~28 MB, then RSS stays put).
    bench.run(Config::FullHanging, 1, bench.storage(chunk), chunk);
    let mut rss = Vec::new();
    for _ in 0..10 {
        let storage = bench.storage(chunk);
        bench.run(Config::FullHanging, 1, storage, chunk);
        rss.push(rss_bytes().unwrap_or(0));
        eprintln!(
            "jobsight bench: memory check, RSS after {} jobs: {:.1} MB",
            chunk * rss.len() as u64,
            mb(rss[rss.len() - 1])
        );
    }
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    let peak = rss.iter().copied().max().unwrap_or(0);
    let growth = last.saturating_sub(first);
    let _ = writeln!(
        out,
        "| memory flat over {} jobs, collector hanging (RSS after the first and the last {} jobs, after as many to warm up; peak) | {:.1} → {:.1} MB (peak {:.1}) | | {} |\n",
        chunk * 10,
        chunk,
        mb(first),
        mb(last),
        mb(peak),
        yes_no(growth < 8 * 1024 * 1024)
    );

    out.push_str(&allocations(bench, p.alloc_jobs));

    // Log records that reached the exporter, against the jobs that logged
    // a line: fewer means records were dropped (a full queue) or are still
    // queued; the worker's own `info` lines (two a run) come on top.
    for config in [Config::Logs, Config::ApalisLogs] {
        if let Some((jobs, exported)) = child_spans.get(&config) {
            let _ = writeln!(
                out,
                "log records exported, {}: {exported} for {jobs} jobs that logged a line",
                config.label(),
            );
        }
    }
    if let Some(logs) = bench.logs_if_built() {
        let jobs = runs.get(&Config::Logs).copied().unwrap_or(0)
            + runs.get(&Config::ApalisLogs).copied().unwrap_or(0)
            + 2 * p.alloc_jobs;
        let _ = writeln!(
            out,
            "log records exported in this process, both logs rows: {} for {jobs} jobs that logged a line",
            logs.exported()
        );
    }

    // Spans that reached the exporter (the rest were dropped by a full
    // queue, or are still queued).
    for config in [Config::Full, Config::Apalis] {
        if let Some(pipeline) = bench.pipeline(config) {
            let _ = pipeline.tracer_provider.force_flush();
            let (child_made, child_exported) =
                child_spans.get(&config).copied().unwrap_or_default();
            let made = runs.get(&config).copied().unwrap_or(0) + p.alloc_jobs + child_made;
            let exported = pipeline.stats.spans()
                - exported_before.get(&config).copied().unwrap_or(0)
                + child_exported;
            let _ = writeln!(
                out,
                "spans exported, {}: {} of {} ({:.2}% dropped)",
                config.label(),
                exported,
                made,
                100.0 * (1.0 - exported as f64 / made.max(1) as f64)
            );
        }
    }
    out
}

/// Heap allocations per job at concurrency 1 (a counting allocator), each
/// configuration run over `jobs` jobs, as a Markdown table.
pub fn allocations(bench: &Bench, jobs: u64) -> String {
    let mut out = String::new();
    let mut allocs: Vec<(Config, Counted)> = Vec::new();
    for config in [
        Config::Bare,
        Config::Full,
        Config::MetricsOnly,
        Config::NoTraces,
        Config::Apalis,
        Config::Logs,
        Config::ApalisLogs,
    ] {
        let storage = bench.storage(jobs);
        Counting::start();
        bench.run(config, 1, storage, jobs);
        allocs.push((config, Counting::stop()));
    }
    Counting::start();
    bench.run_floor(jobs, true);
    let floor_allocs = Counting::stop();
    let per_job = |n: u64| n as f64 / jobs as f64;
    let bare = allocs[0].1;
    let _ = writeln!(
        out,
        "| heap allocations per job, c=1 | job's thread | all threads (incl. exporter) | added to the bare worker (job's thread / all) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (config, counted) in &allocs {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {} |",
            config.label(),
            per_job(counted.this_thread),
            per_job(counted.all_threads),
            if *config == Config::Bare {
                "—".to_owned()
            } else {
                format!(
                    "{:+.1} / {:+.1}",
                    per_job(counted.this_thread) - per_job(bare.this_thread),
                    per_job(counted.all_threads) - per_job(bare.all_threads)
                )
            }
        );
    }
    let _ = writeln!(
        out,
        "| SDK floor (bound instruments) | {:.1} | {:.1} | — |\n",
        per_job(floor_allocs.this_thread),
        per_job(floor_allocs.all_threads)
    );
    out
}
