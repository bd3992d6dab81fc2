//! The workspace's examples run as child processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::REDIS_ADDR;

/// The example binary `name`, which `cargo test` builds next to the tests
/// (`target/<profile>/examples/<name>`); panics when it is missing.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("test executable: {e}"));
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()));
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --example {name}` first",
        path.display()
    );
    path
}

/// A command for the example at `path` exporting over OTLP/HTTP to
/// `endpoint` (batches every 200 ms), with Redis at [`REDIS_ADDR`], none of
/// the caller's `OTEL_*` settings that would change what it sends, and its
/// output piped.
pub fn example_command(path: &Path, endpoint: &str) -> Command {
    let mut command = Command::new(path);
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("REDIS_URL", format!("redis://{REDIS_ADDR}"))
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_SAMPLER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}
