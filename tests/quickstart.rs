//! The quick start as a user runs it: the compiled `examples/quickstart`
//! binary as a child process, with a clean `OTEL_*` environment.
//!
//! - no `OTEL_*` variables: it exits 0 by itself and prints the per-queue
//!   summary;
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` + `OTEL_EXPORTER_OTLP_PROTOCOL` (gRPC and
//!   HTTP/protobuf): its spans and metrics reach the in-process receiver;
//! - a collector that rejects metrics: spans still arrive and stderr carries
//!   one warning, not one per export;
//! - a bad protocol or endpoint: it fails fast and names the variable.
//!
//! `cargo test` builds the examples; `cargo test --test quickstart` alone
//! does not, so run `cargo build --example quickstart` first in that case.

use jobsight_testkit::otlp::{Receiver, Signal, Span, Transport, brief, series};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous for a loaded 2-core machine: the quick start itself takes ~1 s.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn quickstart_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/quickstart-<hash> -> target/<profile>/examples/quickstart
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the quickstart example is not built at {}: run `cargo build --example quickstart` \
         (plain `cargo test` builds it; `cargo test --test quickstart` does not)",
        binary.display()
    );
    binary
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn output(&self) -> String {
        format!(
            "exit: {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs the quick start with every inherited `OTEL_*` variable removed and
/// `env` set; kills it and fails the test past `RUN_TIMEOUT`.
fn run_quickstart(env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(quickstart_binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn the quickstart example");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the quickstart") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the quickstart did not exit within {RUN_TIMEOUT:?}; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took,
    }
}

/// The summary row of `queue`: (jobs, failed).
fn summary_row(run: &Run, queue: &str) -> (u64, u64) {
    let text = format!("{}\n{}", run.stdout, run.stderr);
    let row = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some(queue))
        .unwrap_or_else(|| panic!("no summary row for `{queue}`:\n{}", run.output()));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let number = |i: usize| -> u64 {
        cells
            .get(i)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("summary row {row:?} has no count in column {i}"))
    };
    (number(1), number(2))
}

fn receiver_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("receiver runtime")
}

#[test]
fn without_otel_variables_it_exits_by_itself_and_prints_the_summary() {
    let run = run_quickstart(&[]);
    assert!(run.status.success(), "{}", run.output());
    let (emails, emails_failed) = summary_row(&run, "emails");
    let (reports, reports_failed) = summary_row(&run, "reports");
    assert!(emails > 0 && reports > 0, "{}", run.output());
    // The demo has emails that always fail and a report that panics.
    assert!(emails_failed > 0 && reports_failed > 0, "{}", run.output());
    assert!(
        emails_failed < emails && reports_failed < reports,
        "{}",
        run.output()
    );
    assert!(
        !run.stderr.contains("jobsight-otel: warning"),
        "nothing is exported, so nothing can fail:\n{}",
        run.output()
    );
}

const QUEUES: [&str; 2] = ["process emails", "process reports"];

fn outcomes_of(spans: &[Span]) -> Vec<String> {
    let mut outcomes: Vec<String> = spans
        .iter()
        .filter(|s| QUEUES.contains(&s.name.as_str()))
        .filter_map(|s| s.attr_str("job.outcome").map(str::to_owned))
        .collect();
    outcomes.sort();
    outcomes.dedup();
    outcomes
}

fn assert_spans_arrived(spans: &[Span], context: &str) {
    for name in QUEUES {
        assert!(
            spans.iter().any(|s| s.name == name),
            "no `{name}` span arrived ({context}):\n{}",
            brief(spans)
        );
    }
    let outcomes = outcomes_of(spans);
    for outcome in ["failed", "retried", "panicked", "succeeded"] {
        assert!(
            outcomes.iter().any(|o| o == outcome),
            "no `{outcome}` span ({context}); outcomes seen: {outcomes:?}"
        );
    }
    for s in spans.iter().filter(|s| QUEUES.contains(&s.name.as_str())) {
        assert!(
            s.resource
                .get("service.name")
                .and_then(|v| v.as_str())
                .is_some_and(|name| !name.is_empty()),
            "{:?}",
            s.resource
        );
    }
}

fn exports_to_the_receiver(transport: Transport, protocol: &str) {
    let server = receiver_runtime();
    let rx = server.block_on(Receiver::start(transport));
    let endpoint = rx.endpoint();
    let run = run_quickstart(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ]);
    assert!(run.status.success(), "{}", run.output());
    // The guard flushed before the process exited: no waiting needed, but
    // allow a moment for the last request to be recorded.
    let spans = server.block_on(rx.wait_for_spans(
        |s: &[Span]| outcomes_of(s).len() >= 4,
        Duration::from_secs(5),
    ));
    assert_spans_arrived(&spans, protocol);
    let points = rx.metrics();
    for queue in ["emails", "reports"] {
        let attempts: u64 = series(&points, "messaging.process.duration")
            .iter()
            .filter(|s| s.attr_str("messaging.destination.name") == Some(queue))
            .map(|s| s.count)
            .sum();
        assert!(attempts > 0, "no {queue} duration points over {protocol}");
    }
    assert!(
        !run.stderr.contains("jobsight-otel: warning"),
        "a healthy collector gives no warning:\n{}",
        run.output()
    );
    server.block_on(rx.shutdown());
}

#[test]
fn exports_spans_and_metrics_over_grpc() {
    exports_to_the_receiver(Transport::Grpc, "grpc");
}

#[test]
fn exports_spans_and_metrics_over_http_protobuf() {
    exports_to_the_receiver(Transport::Http, "http/protobuf");
}

fn rejected_metrics_cost_one_warning(transport: Transport, protocol: &str) {
    let server = receiver_runtime();
    let rx = server.block_on(Receiver::start(transport));
    rx.reject_metrics(true);
    let endpoint = rx.endpoint();
    let run = run_quickstart(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        // Export every 100 ms, so a run makes many failing metric exports.
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
    ]);
    assert!(run.status.success(), "{}", run.output());
    let spans = server.block_on(rx.wait_for_spans(
        |s: &[Span]| outcomes_of(s).len() >= 4,
        Duration::from_secs(5),
    ));
    assert_spans_arrived(&spans, protocol);
    let attempts = rx.request_count(Signal::Metrics);
    assert!(
        attempts >= 3,
        "the run should have made several metric exports, made {attempts}"
    );
    let lower = run.stderr.to_lowercase();
    let warnings = lower
        .lines()
        .filter(|l| l.contains("warning") && l.contains("metrics"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning about the metrics export for {attempts} failed exports:\n{}",
        run.output()
    );
    let mentions = lower.lines().filter(|l| l.contains("metric")).count();
    assert!(
        mentions <= 2,
        "at most the warning and the shutdown total mention metrics, got {mentions}:\n{}",
        run.output()
    );
    assert!(
        !lower
            .lines()
            .any(|l| l.contains("warning") && l.contains("traces")),
        "traces were accepted:\n{}",
        run.output()
    );
    server.block_on(rx.shutdown());
}

#[test]
fn a_collector_rejecting_metrics_costs_one_warning_over_grpc() {
    rejected_metrics_cost_one_warning(Transport::Grpc, "grpc");
}

#[test]
fn a_collector_rejecting_metrics_costs_one_warning_over_http_protobuf() {
    rejected_metrics_cost_one_warning(Transport::Http, "http/protobuf");
}

fn fails_fast_naming(variable: &str, env: &[(&str, &str)]) {
    let run = run_quickstart(env);
    assert!(
        !run.status.success(),
        "a bad {variable} must stop the program:\n{}",
        run.output()
    );
    assert!(
        run.took < Duration::from_secs(10),
        "it should fail at install, before running jobs:\n{}",
        run.output()
    );
    assert!(
        run.stderr.contains(variable),
        "the error names {variable}:\n{}",
        run.output()
    );
    assert!(
        !run.stderr.contains("jobs finished"),
        "no job ran:\n{}",
        run.output()
    );
}

#[test]
fn an_unknown_protocol_fails_fast_naming_the_variable() {
    fails_fast_naming(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")],
    );
}

#[test]
fn a_malformed_endpoint_fails_fast_naming_the_variable() {
    fails_fast_naming(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
    );
}
