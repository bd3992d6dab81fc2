//! `jobsight-run` with wrong settings: the command still runs (a cron job
//! is never skipped because its monitoring is misconfigured), and stderr
//! names each wrong setting and what it accepts, without ever showing the
//! secrets of `OTEL_EXPORTER_OTLP_HEADERS` or the key in a ping URL.

use std::process::{Command, Stdio};

const SECRET: &str = "s3cr3t-0123456789-abcdef";

fn jobsight_run(vars: &[(&str, String)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobsight-run"));
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") || key.starts_with("JOBSIGHT_") {
            command.env_remove(key);
        }
    }
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_SERVICE_NAME", "jobsight-run-config-test")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["sh", "-c", "exit 3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = command.output().expect("run jobsight-run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn wrong_settings_are_named_with_what_they_accept_and_the_command_runs() {
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("JOBSIGHT_SHUTDOWN_TIMEOUT", "5s".into(), &["milliseconds"]),
        ("JOBSIGHT_STDERR_TAIL", "many".into(), &["number of lines"]),
        (
            "JOBSIGHT_PING_URL",
            format!("hc-ping.com/{SECRET}"),
            &["absolute http(s) URL", "e.g."],
        ),
        (
            "JOBSIGHT_PING_URL",
            format!("ftp://hc-ping.com/{SECRET}"),
            &["absolute http(s) URL"],
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "carrier-pigeon".into(),
            &["accepted values: `grpc`, `http/protobuf`"],
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer {SECRET},{SECRET}"),
            &["`key=value`"],
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("x-api-key={SECRET}%0A"),
            &["control characters"],
        ),
    ];
    for (variable, value, accepted) in &cases {
        let (code, stderr) = jobsight_run(&[(variable, value.clone())]);
        assert_eq!(code, Some(3), "{variable}: the command must run: {stderr}");
        assert!(stderr.contains(variable), "{variable} not named: {stderr}");
        for part in *accepted {
            assert!(
                stderr.contains(part),
                "{variable}: {part:?} not in {stderr}"
            );
        }
        assert!(!stderr.contains(SECRET), "{variable} leaked: {stderr}");
    }
}
