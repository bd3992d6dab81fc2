//! A wrong setting, as a user meets it: a real program whose `main`
//! returns `jobsight_otel::init()?`'s error (this test binary, started
//! again as a child with `JOBSIGHT_CONFIG_CHILD=1`) exits at start with a
//! message naming the wrong `OTEL_*` variable and the values it accepts;
//! and the secrets of `OTEL_EXPORTER_OTLP_HEADERS` (well formed or not)
//! never reach its stderr.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHILD_VAR: &str = "JOBSIGHT_CONFIG_CHILD";
const SECRET: &str = "s3cr3t-0123456789-abcdef";

/// What `fn main() -> Result<(), Box<dyn Error>>` does with
/// `jobsight_otel::init()?`: print `Error: {:?}` and exit 1. Only runs as
/// the child.
#[test]
fn child_main() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    match jobsight_otel::Builder::default().summary(false).install() {
        Ok(telemetry) => {
            drop(telemetry);
            std::process::exit(0)
        }
        Err(error) => {
            let boxed: Box<dyn std::error::Error> = Box::new(error);
            eprintln!("Error: {boxed:?}");
            eprintln!("{boxed}");
            std::process::exit(1)
        }
    }
}

/// Runs `child_main` in a child process with only `vars` of the `OTEL_*`
/// family set; kills it past a generous deadline.
fn run_child(vars: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    // Nothing listens there; a valid setup would still start.
    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9");
    command.envs(vars.iter().copied());
    let child = command.spawn().expect("spawn child");
    let started = Instant::now();
    let output = child.wait_with_output().expect("child output");
    assert!(started.elapsed() < Duration::from_secs(60));
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_wrong_value_stops_the_program_at_start_naming_the_variable_and_accepted_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/xml",
            "accepted values: `grpc`, `http/protobuf`",
        ),
        (
            "OTEL_TRACES_SAMPLER",
            "sometimes",
            "accepted values: `always_on`",
        ),
        (
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "lots",
            "a whole number greater than 0",
        ),
        (
            "OTEL_SDK_DISABLED",
            "yes",
            "accepted values: `true`, `false`",
        ),
        // Read by the SDK itself, which would ignore it.
        (
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "zip",
            "accepted values: `none`",
        ),
        (
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            "lots",
            "a whole number greater than 0",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "collector:4318",
            "e.g. `http://localhost:4318`",
        ),
    ];
    for (variable, value, accepted) in cases {
        let output = run_child(&[(variable, value)]);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{variable}: {text}");
        let last = text.lines().last().unwrap_or_default();
        assert!(last.starts_with(variable), "{variable}: {text}");
        assert!(last.contains(accepted), "{variable}: {text}");
    }
    // The same program starts with good values.
    let output = run_child(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn header_secrets_never_reach_stderr() {
    for variable in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ] {
        for value in [
            format!("authorization=Bearer {SECRET},{SECRET}"),
            format!("api-key={SECRET}%ZZ"),
            format!("x-api-key={SECRET}%0D%0Ainjected"),
            format!("bad key={SECRET}"),
        ] {
            let output = run_child(&[(variable, &value)]);
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{variable}: {text}");
            assert!(text.contains(variable), "{text}");
            assert!(!text.contains(SECRET), "{variable} leaked: {text}");
        }
        // Well formed, with a wrong value elsewhere: the error is about the
        // other variable, and the headers stay hidden.
        let good = format!("authorization=Bearer%20{SECRET}");
        let output = run_child(&[(variable, &good), ("OTEL_TRACES_SAMPLER", "nope")]);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(!text.contains(SECRET), "{variable} leaked: {text}");
    }
}
