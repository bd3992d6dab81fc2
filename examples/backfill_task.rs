//! A one-off task, rake-style: a program that runs one backfill and exits,
//! recorded as a task with its outcome, duration and progress, and flushed
//! before it exits.
//!
//! ```text
//! cargo run --example backfill_task              # local summary on stderr
//! cargo run --example backfill_task -- --fail    # the task fails: exit status 1
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run --example backfill_task
//! ```
//!
//! `Telemetry::run_task` returns only once the spans and metrics are
//! exported (or the 5 s deadline has passed), so `std::process::exit` right
//! after loses nothing: no "sleep and hope".

use std::time::Duration;

use jobsight_core::progress;

#[derive(Debug, thiserror::Error)]
enum BackfillError {
    #[error("user {0} has no email address")]
    MissingEmail(u64),
}

fn backfill_users(fail: bool) -> Result<u64, BackfillError> {
    let users: Vec<u64> = (1..=50).collect();
    progress::set_total(users.len() as u64);
    for user in &users {
        progress::set_element(format_args!("user {user}"));
        std::thread::sleep(Duration::from_millis(40));
        if fail && *user == 37 {
            // The span's exception event says: 36 ticks, element "user 37".
            return Err(BackfillError::MissingEmail(*user));
        }
        progress::tick(1);
    }
    Ok(users.len() as u64)
}

fn main() {
    let fail = std::env::args().any(|arg| arg == "--fail");
    let telemetry = match jobsight_otel::Builder::new()
        .service_name("backfill-example")
        .install()
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("telemetry: {error}");
            std::process::exit(2);
        }
    };
    let code = match telemetry.run_task("backfill_users", || backfill_users(fail)) {
        Ok(updated) => {
            println!("{updated} users updated");
            0
        }
        Err(error) => {
            eprintln!("backfill failed: {error}");
            1
        }
    };
    std::process::exit(code);
}
