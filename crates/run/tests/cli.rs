//! `jobsight-run` as cron runs it: the real binary, configured through the
//! environment, exporting over real OTLP to the workspace's in-process
//! receiver (`jobsight_testkit::otlp`), or to a collector that is down.

use jobsight_testkit::otlp::{Receiver, Span, StatusCode, Transport};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jobsight-run");

/// `jobsight-run` with a clean environment for jobsight and OpenTelemetry.
fn jobsight_run() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_")
            || key.starts_with("JOBSIGHT_")
            || [
                "CHECK_UUID",
                "CHECK_SLUG",
                "HC_PING_KEY",
                "CRONITOR_API_KEY",
                "SENTRY_DSN",
                "TRACEPARENT",
            ]
            .contains(&&*key)
        {
            command.env_remove(&*key);
        }
    }
    command.env("OTEL_SERVICE_NAME", "jobsight-run-test");
    command
}

fn exporting_to(rx: &Receiver) -> Command {
    let mut command = jobsight_run();
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint())
        .env(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            match rx.transport() {
                Transport::Grpc => "grpc",
                Transport::Http => "http/protobuf",
            },
        );
    command
}

async fn run(mut command: Command) -> (Output, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().expect("jobsight-run ran");
        (output, started.elapsed())
    })
    .await
    .expect("runner thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn only_span(rx: &Receiver, name: &str) -> Span {
    let spans = rx.spans();
    let matching: Vec<_> = spans.iter().filter(|s| s.name == name).cloned().collect();
    assert_eq!(matching.len(), 1, "{name} in {spans:#?}");
    matching
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!())
}

fn int(span: &Span, key: &str) -> Option<i64> {
    span.attr(key).and_then(|v| v.as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeding_command() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command.args(["--name", "nightly-report", "--", "sh", "-c", "echo hello"]);
    let (output, took) = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hello\n");
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("collector up: jobsight-run took {took:?} in all");
    // The process has exited: everything must be at the receiver already.
    let span = only_span(&rx, "process nightly-report");
    assert_eq!(span.attr_str("messaging.system"), Some("task"));
    assert_eq!(span.attr_str("job.name"), Some("nightly-report"));
    assert_eq!(span.attr_str("job.outcome"), Some("succeeded"));
    assert_eq!(span.attr_str("process.command"), Some("sh"));
    assert_eq!(int(&span, "process.exit.code"), Some(0));
    assert!(int(&span, "process.pid").is_some_and(|pid| pid > 0));
    assert!(span.attr("error.type").is_none());
    assert!(span.attr("job.output_tail").is_none());
    assert_eq!(span.status_code, StatusCode::Unset);
    let points = rx.metric("messaging.process.duration");
    assert!(
        points
            .iter()
            .any(|p| p.attr("messaging.system").and_then(|v| v.as_str()) == Some("task")),
        "{points:#?}"
    );
    // The process's own identity, the same on spans and metrics.
    let instance = span.resource.get("service.instance.id");
    assert!(
        instance
            .and_then(|v| v.as_str())
            .is_some_and(|id| id.len() == 36),
        "a UUID: {:?}",
        span.resource
    );
    assert!(
        span.resource.contains_key("host.name"),
        "{:?}",
        span.resource
    );
    assert!(
        span.resource.contains_key("process.pid"),
        "{:?}",
        span.resource
    );
    assert!(
        points
            .iter()
            .all(|p| p.resource.get("service.instance.id") == instance)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_reports_the_tail_of_its_output() {
    let rx = Receiver::grpc().await;
    let mut command = exporting_to(&rx);
    command.env("JOBSIGHT_TASK_NAME", "db-backup").args([
        "sh",
        "-c",
        "echo to-stdout; for i in 1 2 3 4 5; do echo \"line $i\" >&2; done; exit 3",
    ]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(text(&output.stdout), "to-stdout\n");
    // stderr still reaches the terminal, all of it.
    let stderr = text(&output.stderr);
    for i in 1..=5 {
        assert!(stderr.contains(&format!("line {i}\n")), "{stderr}");
    }
    let span = only_span(&rx, "process db-backup");
    assert_eq!(span.attr_str("job.outcome"), Some("failed"));
    assert_eq!(span.attr_str("error.type"), Some("exit_3"));
    assert_eq!(int(&span, "process.exit.code"), Some(3));
    assert_eq!(span.status_code, StatusCode::Error);
    assert_eq!(span.status_message, "`sh` exited with status 3");
    // stdout and stderr (two pipes here: their relative order is the
    // order of arrival).
    let tail = span.attr_str("job.output_tail").unwrap_or_default();
    assert!(tail.contains("to-stdout"), "{tail}");
    assert!(
        tail.contains("line 1\nline 2\nline 3\nline 4\nline 5"),
        "{tail}"
    );
    assert!(span.event("exception").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_on_the_span_is_the_last_bytes() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command
        .env("JOBSIGHT_OUTPUT_LIMIT", "30")
        .args(["--name", "tail", "--", "sh", "-c"])
        .arg("for i in 1 2 3 4 5; do echo \"line $i\" >&2; done; exit 1");
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    let span = only_span(&rx, "process tail");
    // 30 bytes: "1\nline 2\n…line 5\n", the final line break dropped.
    assert_eq!(
        span.attr_str("job.output_tail"),
        Some("1\nline 2\nline 3\nline 4\nline 5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signalled_command_exits_with_128_plus_the_signal() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command.args([
        "--name",
        "oom",
        "--",
        "sh",
        "-c",
        "echo dying >&2; kill -KILL $$",
    ]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(128 + 9));
    let span = only_span(&rx, "process oom");
    assert_eq!(span.attr_str("error.type"), Some("SIGKILL"));
    assert_eq!(span.attr_str("job.signal"), Some("SIGKILL"));
    assert!(span.attr("process.exit.code").is_none());
    assert_eq!(span.status_message, "`sh` was ended by SIGKILL");
    assert_eq!(span.attr_str("job.output_tail"), Some("dying"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_jobsight_run_is_forwarded_and_recorded() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command
        .args([
            "--name",
            "long",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (status, took) = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("started");
        // The command runs: jobsight-run's handlers are in place.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line, "started\n");
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = child.wait().expect("waited");
        (status, started.elapsed())
    })
    .await
    .expect("thread");
    assert_eq!(status.code(), Some(128 + 15));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let span = only_span(&rx, "process long");
    assert_eq!(span.attr_str("error.type"), Some("SIGTERM"));
    assert!(span.duration_nanos() >= 100_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_is_not_found() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command.args(["--name", "typo", "--", "/nonexistent/report.sh"]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(127));
    assert!(text(&output.stderr).contains("cannot start `/nonexistent/report.sh`"));
    let span = only_span(&rx, "process typo");
    assert_eq!(span.attr_str("error.type"), Some("spawn_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_gets_the_trace_context() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command.args([
        "--name",
        "traced",
        "--",
        "sh",
        "-c",
        "echo \"$TRACEPARENT\"",
    ]);
    let (output, _) = run(command).await;
    let span = only_span(&rx, "process traced");
    assert_eq!(
        text(&output.stdout).trim(),
        format!("00-{}-{}-01", span.trace_id, span.span_id)
    );
}

/// A port where nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_the_command_runs_and_one_plain_line_is_printed() {
    for protocol in ["http/protobuf", "grpc"] {
        let mut command = jobsight_run();
        command
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", closed_port()),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("JOBSIGHT_SHUTDOWN_TIMEOUT", "5s")
            .args(["--name", "nightly", "--", "sh", "-c", "echo ran; exit 4"]);
        let (output, took) = run(command).await;
        assert_eq!(output.status.code(), Some(4), "{protocol}");
        assert_eq!(text(&output.stdout), "ran\n");
        // A refused connection fails at once: no retries, no waiting for
        // the deadline (measured in the note: tens of milliseconds).
        assert!(took < Duration::from_millis(1500), "{protocol}: {took:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{protocol}: {stderr}");
        assert!(
            stderr.starts_with(
                "jobsight-run: nightly: telemetry not delivered to the collector at 127.0.0.1:"
            ),
            "{protocol}: {stderr}"
        );
        assert!(
            stderr.contains("connection refused") || stderr.contains("cannot connect"),
            "{protocol}: {stderr}"
        );
        for internal in [
            "Telemetry::",
            "jobsight-otel",
            "keeps running",
            "Error",
            "::",
        ] {
            assert!(
                !stderr.contains(internal),
                "{protocol}: {internal} in {stderr}"
            );
        }
        eprintln!("collector down ({protocol}): exited after {took:?}");

        // --quiet: not even that line.
        let mut command = jobsight_run();
        command
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", closed_port()),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .args(["--quiet", "--", "sh", "-c", "exit 4"]);
        let (output, _) = run(command).await;
        assert_eq!(output.status.code(), Some(4));
        assert_eq!(text(&output.stderr), "", "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_collector_that_never_answers_the_exit_waits_only_the_deadline() {
    // Accepts connections and reads nothing: every export hangs until the
    // exporter's own 10 s timeout; jobsight-run must not wait for it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
        }
    });
    for protocol in ["http/protobuf", "grpc"] {
        let mut command = jobsight_run();
        command
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("JOBSIGHT_SHUTDOWN_TIMEOUT", "1s")
            .args(["--name", "hung", "--", "sh", "-c", "exit 0"]);
        let (output, took) = run(command).await;
        assert_eq!(output.status.code(), Some(0), "{protocol}");
        assert!(took >= Duration::from_millis(1000), "{protocol}: {took:?}");
        assert!(
            took < Duration::from_millis(1000 + 1500),
            "{protocol}: {took:?}"
        );
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{protocol}: {stderr}");
        assert!(
            stderr.contains("no answer within 1s"),
            "{protocol}: {stderr}"
        );
        eprintln!("collector hung ({protocol}): exited after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_otel_variable_does_not_stop_the_command() {
    let mut command = jobsight_run();
    command
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        .args(["sh", "-c", "exit 5"]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(5));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("telemetry is off"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_in_one_line_without_running_anything() {
    /// Arguments, variables, and what the error must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (&["--nmae", "x"], &[], "--nmae"),
        (&["--name="], &[], "--name"),
        (&["--shutdown-timeout", "0"], &[], "--shutdown-timeout"),
        (
            &[],
            &[("JOBSIGHT_SHUTDOWN_TIMEOUT", "soon")],
            "JOBSIGHT_SHUTDOWN_TIMEOUT",
        ),
        (
            &["--ping-url", "hc-ping.com/abc"],
            &[],
            "https://hc-ping.com/",
        ),
    ];
    for (args, vars, named) in cases {
        let mut command = jobsight_run();
        command.envs(vars.iter().copied()).args(args).args([
            "--",
            "sh",
            "-c",
            "echo should-not-run",
        ]);
        let (output, _) = run(command).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stdout).is_empty(), "{args:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{named} not in {stderr}");
        assert!(stderr.trim_end().ends_with("see --help"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_with_units_are_accepted() {
    let mut command = jobsight_run();
    command
        .env("OTEL_SDK_DISABLED", "true")
        .env("JOBSIGHT_SHUTDOWN_TIMEOUT", "5s")
        .args(["sh", "-c", "exit 0"]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stderr), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_makes_one_trace_of_nested_runs() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    command
        .env("TRACEPARENT", format!("00-{parent_trace}-{parent_span}-01"))
        .args([
            "--name",
            "nightly",
            "--",
            "sh",
            "-c",
            &format!("{BIN} --name step1 -- true && {BIN} --name step2 -- true"),
        ]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let outer = only_span(&rx, "process nightly");
    assert_eq!(outer.trace_id, parent_trace);
    assert_eq!(outer.parent_span_id.as_deref(), Some(parent_span));
    for step in ["process step1", "process step2"] {
        let inner = only_span(&rx, step);
        assert_eq!(inner.trace_id, parent_trace, "{step}");
        assert_eq!(
            inner.parent_span_id.as_deref(),
            Some(&*outer.span_id),
            "{step}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_defaults_service_and_task_names() {
    let rx = Receiver::http().await;
    let mut command = exporting_to(&rx);
    command.env_remove("OTEL_SERVICE_NAME");
    let dir = std::env::temp_dir().join(format!("jobsight-run-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("backup.sh");
    std::fs::write(&script, "exit 0\n").expect("script");
    command.args(["sh", &script.to_string_lossy()]);
    let (output, _) = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let span = only_span(&rx, "process backup.sh");
    assert_eq!(span.attr_str("job.name"), Some("backup.sh"));
    assert_eq!(
        span.resource.get("service.name").and_then(|v| v.as_str()),
        Some("cron")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
