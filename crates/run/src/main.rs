//! `jobsight-run`: runs any command as a monitored one-off task, for cron.
//!
//! ```text
//! 0 3 * * * jobsight-run --healthchecks-uuid 5bf3a9f2-… -- /opt/jobs/backup.sh
//! ```
//!
//! The command runs with this program's stdin and environment; its stdout
//! and stderr pass through unchanged while their last bytes are kept (see
//! [`output`]). It is recorded as a task (`jobsight_core::task`): a span
//! `process {name}` with `messaging.system` = `task`, `job.name`,
//! `process.command` (the program only: arguments may hold secrets),
//! `process.pid`, `process.exit.code` or `job.signal`, `job.outcome`, and
//! on failure `error.type` (`exit_<code>`, `SIG<NAME>`, or `spawn_failed`),
//! the status message and `job.output_tail`; plus the jobs' metrics. With
//! `TRACEPARENT` in the environment the span is its child; the command gets
//! the span's own `TRACEPARENT`, so steps wrapped in their turn make one
//! trace. Check-ins go to the services configured (see [`pings`]).
//!
//! The exit status is the command's: its exit code, 128+N when signal N
//! ended it, 127 when it was not found and 126 when it could not be started
//! (the shell's conventions), 2 for a usage error of `jobsight-run` itself
//! (reported before the command would start). Monitoring never changes the
//! status. Once the command has ended, telemetry and the outcome ping get
//! one deadline together (`--shutdown-timeout`, 2 s by default), then the
//! process exits. Nothing is printed when all is well; see [`notice`].
//!
//! Options and variables: see [`cli`]. Termination signals are forwarded to
//! the command (see [`signals`]).
#![warn(missing_docs)]

mod cli;
mod notice;
mod output;
mod parent;
mod ping_url;
mod pings;
mod side_tail;
mod signals;
mod telemetry;

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use jobsight_core::semconv;
use jobsight_core::task::OneOffTask;
use jobsight_core::{ErrorClass, ErrorRecord, Transaction};
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt;

use crate::cli::{Cli, Parsed, UsageError};
use crate::pings::{PingPlan, Pings};
use crate::telemetry::RunTelemetry;

/// Exit status for a usage error.
const USAGE_ERROR: i32 = 2;
/// Exit status when the command could not be started (shell convention).
const CANNOT_EXECUTE: i32 = 126;
/// Exit status when the command was not found (shell convention).
const NOT_FOUND: i32 = 127;
/// The most output put on a failed span (`job.output_tail`).
const SPAN_TAIL_MAX: usize = 4096;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let code = match cli::parse(args, |name| std::env::var_os(name)) {
        Ok(Parsed::Print(text)) => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            0
        }
        Ok(Parsed::Run(cli, flags)) => match prepare(&cli, &flags) {
            Ok((name, pings)) => run(&cli, name, pings),
            Err(error) => usage(&error),
        },
        Err(error) => usage(&error),
    };
    std::process::exit(code);
}

fn usage(error: &UsageError) -> i32 {
    eprintln!("jobsight-run: {error}");
    USAGE_ERROR
}

/// Everything that can refuse the command line, before the command runs:
/// the task name and the started ping senders.
fn prepare(cli: &Cli, flags: &[String]) -> Result<(String, Option<Pings>), UsageError> {
    let name = cli
        .name
        .clone()
        .unwrap_or_else(|| cli::default_name(&cli.command));
    let plan = PingPlan::from_cli(cli, &name, flags)?;
    let pings = if plan.is_empty() {
        None
    } else {
        Some(plan.start()?)
    };
    Ok((name, pings))
}

/// Runs the command, records it, pings, flushes, and returns the exit
/// status.
fn run(cli: &Cli, name: String, mut pings: Option<Pings>) -> i32 {
    let telemetry = RunTelemetry::install(cli.service_name.as_deref(), cli.shutdown_timeout);
    let mut problems = Vec::new();
    if let Err(error) = signals::install() {
        problems.push(format!("cannot forward signals to the command ({error})"));
    }
    let _parent = parent::attach_from_env();
    if let Some(pings) = &mut pings {
        pings.start();
    }

    let started = Instant::now();
    let tx = OneOffTask::new(name.clone()).start();
    let program = cli.command[0].to_string_lossy().into_owned();
    let span = tx.context().span();
    span.set_attribute(KeyValue::new(semconv::PROCESS_COMMAND, program.clone()));
    let mut command = Command::new(&cli.command[0]);
    command.args(&cli.command[1..]);
    command.env(cli::NESTED_VAR, &name);
    if let Some(traceparent) = parent::traceparent(&tx) {
        command.env("TRACEPARENT", traceparent);
    }

    let (code, record, output) = match output::spawn(command, cli.output_limit) {
        Ok(running) => {
            let pid = running.id();
            signals::set_child(pid);
            span.set_attribute(KeyValue::new(semconv::PROCESS_PID, i64::from(pid)));
            let waited = running.wait();
            signals::clear_child();
            match waited {
                Ok(finished) => {
                    let (code, record) = record_exit(&tx, &program, finished.status);
                    (code, record, output::text(&finished.output))
                }
                Err(error) => {
                    let message = format!("cannot wait for `{program}`: {error}");
                    eprintln!("jobsight-run: {message}");
                    (1, Some(ErrorRecord::new("wait_failed", message)), None)
                }
            }
        }
        Err(error) => {
            // What a shell would say: the command's own failure, printed
            // even with --quiet.
            let message = format!("cannot start `{program}`: {error}");
            eprintln!("jobsight-run: {message}");
            let code = if error.kind() == std::io::ErrorKind::NotFound {
                NOT_FOUND
            } else {
                CANNOT_EXECUTE
            };
            (code, Some(ErrorRecord::new("spawn_failed", message)), None)
        }
    };
    let ended = Instant::now();
    let failure_message = record.as_ref().map(|r| r.message().to_owned());
    match record {
        None => tx.succeed(),
        Some(record) => {
            if let Some(text) = &output {
                let tail = output::last_bytes(text, SPAN_TAIL_MAX).to_owned();
                tx.context()
                    .span()
                    .set_attribute(KeyValue::new(semconv::JOB_OUTPUT_TAIL, tail));
            }
            tx.fail_with(record, ErrorClass::Fail);
        }
    }

    // The outcome ping and telemetry's flush run side by side, both
    // bounded by the deadline from the command's end.
    let deadline = cli.shutdown_timeout;
    let until = ended + deadline;
    let outcome = pings.map(|pings| {
        let body = if cli.no_output_in_ping {
            None
        } else {
            output.or(failure_message)
        };
        pings.finish(code, ended - started, body)
    });
    let (flushed, flush) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("telemetry-flush".into())
        .spawn(move || {
            let _ = flushed.send(telemetry.finish());
        });
    if let Some(outcome) = outcome {
        problems.extend(outcome.wait(until, deadline));
    }
    if spawned.is_ok() {
        // jobsight-otel bounds its shutdown by the same deadline; the
        // margin covers the thread's start.
        let left = until.saturating_duration_since(Instant::now()) + Duration::from_millis(50);
        match flush.recv_timeout(left) {
            Ok(Some(problem)) => problems.push(problem),
            Ok(None) => {}
            Err(_) => problems.push(format!(
                "telemetry not flushed within {}",
                notice::seconds(deadline)
            )),
        }
    }
    notice::print(cli.quiet, &name, &problems);
    code
}

/// Records how the command ended on the span; returns the exit status and,
/// for a failure, the error to finish the transaction with.
fn record_exit(tx: &Transaction, program: &str, status: ExitStatus) -> (i32, Option<ErrorRecord>) {
    let span = tx.context().span();
    match (status.code(), signal_of(status)) {
        (Some(code), _) => {
            span.set_attribute(KeyValue::new(semconv::PROCESS_EXIT_CODE, i64::from(code)));
            let record = (code != 0).then(|| {
                ErrorRecord::new(
                    format!("exit_{code}"),
                    format!("`{program}` exited with status {code}"),
                )
            });
            (code, record)
        }
        (None, Some((signal, core_dumped))) => {
            let name = signals::name(signal);
            span.set_attribute(KeyValue::new(semconv::JOB_SIGNAL, name.clone()));
            let core = if core_dumped { " (core dumped)" } else { "" };
            let message = format!("`{program}` was ended by {name}{core}");
            (128 + signal, Some(ErrorRecord::new(name, message)))
        }
        (None, None) => (
            1,
            Some(ErrorRecord::new(
                "_OTHER",
                format!("`{program}` ended: {status}"),
            )),
        ),
    }
}

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<(i32, bool)> {
    use std::os::unix::process::ExitStatusExt;
    status.signal().map(|s| (s, status.core_dumped()))
}

#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<(i32, bool)> {
    None
}
