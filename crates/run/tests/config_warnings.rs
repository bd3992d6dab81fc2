//! `jobsight-run` with wrong settings. Its own settings (options and their
//! `JOBSIGHT_*`/service variables) are refused before the command runs
//! (exit status 2, one line naming the setting and what it accepts);
//! wrong `OTEL_*` telemetry settings only turn telemetry off, and the
//! command runs. Neither ever shows the secrets of
//! `OTEL_EXPORTER_OTLP_HEADERS` or the key in a ping URL.

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
    let refused: Vec<(&str, String, &[&str])> = vec![
        (
            "JOBSIGHT_SHUTDOWN_TIMEOUT",
            "5 parsecs".into(),
            &["500ms, 5s"],
        ),
        ("JOBSIGHT_OUTPUT_LIMIT", "many".into(), &["10KiB"]),
        (
            "JOBSIGHT_PING_URL",
            format!("hc-ping.com/{SECRET}"),
            &["no scheme", "https://hc-ping.com/"],
        ),
        (
            "JOBSIGHT_PING_URL",
            format!("ftp://hc-ping.com/{SECRET}"),
            &["not http:// or https://"],
        ),
        ("CHECK_UUID", SECRET.into(), &["UUID such as"]),
        (
            "SENTRY_DSN",
            format!("https://o1.ingest.sentry.io/{SECRET}"),
            &["DSN"],
        ),
    ];
    for (variable, value, accepted) in &refused {
        let (code, stderr) =
            jobsight_run(&[(variable, value.clone()), ("JOBSIGHT_MONITOR", "m".into())]);
        assert_eq!(code, Some(2), "{variable}: must be refused: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable} not named: {stderr}");
        for part in *accepted {
            assert!(
                stderr.contains(part),
                "{variable}: {part:?} not in {stderr}"
            );
        }
        assert!(!stderr.contains(SECRET), "{variable} leaked: {stderr}");
    }
    let cases: Vec<(&str, String, &[&str])> = vec![
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
