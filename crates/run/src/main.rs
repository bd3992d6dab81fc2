//! `jobsight-run`: runs any command as a monitored one-off task.
//!
//! ```text
//! jobsight-run --name nightly-report -- ./report.sh --since yesterday
//! ```
//!
//! The command runs with this program's stdin, stdout and environment; its
//! stderr passes through to this program's stderr while the last lines are
//! kept. It is recorded as a task (`jobsight_core::task`): a span
//! `process {name}` with `messaging.system` = `task`, `job.name`,
//! `process.command` (the program only: arguments may hold secrets),
//! `process.pid`, `process.exit.code` or `job.signal`, `job.outcome`, and
//! on failure `error.type` (`exit_<code>`, `SIG<NAME>`, or `spawn_failed`),
//! the status message and `job.stderr_tail`; plus the jobs' metrics. The
//! command gets `TRACEPARENT` in its environment, so an instrumented
//! command can put its own spans in the same trace.
//!
//! The exit status is the command's: its exit code, 128+N when signal N
//! ended it, 127 when it was not found and 126 when it could not be started
//! (the shell's conventions), 2 for a usage error of `jobsight-run` itself.
//! A telemetry problem (a bad `OTEL_*` variable, a collector that is down)
//! never stops the command from running and never changes the status; at
//! exit, telemetry and the check-in ping get at most the shutdown deadline
//! (`JOBSIGHT_SHUTDOWN_TIMEOUT`, 5 s by default) together.
//!
//! Configured from options or, for cron, from the environment alone: see
//! [`config::USAGE`]. Termination signals are forwarded to the command (see
//! [`signals`]).
#![warn(missing_docs)]

mod command;
mod config;
mod ping;
mod signals;

use std::io::IsTerminal;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jobsight_core::semconv;
use jobsight_core::task::OneOffTask;
use jobsight_core::{ErrorClass, ErrorRecord, Transaction};
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt;

use crate::config::{Config, Parsed, USAGE};
use crate::ping::Pinger;

/// Exit status for a usage error.
const USAGE_ERROR: i32 = 2;
/// Exit status when the command could not be started (shell convention).
const CANNOT_EXECUTE: i32 = 126;
/// Exit status when the command was not found (shell convention).
const NOT_FOUND: i32 = 127;

fn main() {
    let parsed = config::parse(
        std::env::args_os().skip(1),
        |name| std::env::var(name).ok(),
        |warning| eprintln!("jobsight-run: {warning}"),
    );
    let code = match parsed {
        Ok(Parsed::Run(config)) => run(&config),
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            0
        }
        Ok(Parsed::Version) => {
            println!("jobsight-run {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Err(error) => {
            eprintln!("jobsight-run: {error}\n\n{USAGE}");
            USAGE_ERROR
        }
    };
    std::process::exit(code);
}

/// Runs the command, records it, flushes, and returns the exit status.
fn run(config: &Config) -> i32 {
    let telemetry = install_telemetry(config);
    if let Err(error) = signals::install() {
        eprintln!("jobsight-run: cannot forward signals to the command: {error}");
    }
    let mut pinger = config.ping_url.as_deref().and_then(|url| {
        Pinger::new(url, config.shutdown_timeout)
            .map_err(|error| eprintln!("jobsight-run: {error}; no check-in pings"))
            .ok()
    });
    if let Some(pinger) = &mut pinger {
        pinger.start();
    }

    let tx = OneOffTask::new(config.name.clone()).start();
    let program = config.program.to_string_lossy().into_owned();
    let span = tx.context().span();
    span.set_attribute(KeyValue::new(semconv::PROCESS_COMMAND, program.clone()));
    let mut env = Vec::new();
    if let Some(traceparent) = traceparent(&tx) {
        env.push(("TRACEPARENT", traceparent));
    }

    let (code, report, tail) =
        match command::spawn(&config.program, &config.args, &env, config.stderr_tail) {
            Ok(running) => {
                let pid = running.id();
                signals::set_child(pid);
                span.set_attribute(KeyValue::new(semconv::PROCESS_PID, i64::from(pid)));
                let waited = running.wait();
                signals::clear_child();
                match waited {
                    Ok(finished) => {
                        record_exit(&tx, &program, finished.status, finished.stderr_tail)
                    }
                    Err(error) => {
                        let message = format!("cannot wait for `{program}`: {error}");
                        eprintln!("jobsight-run: {message}");
                        (1, Some(ErrorRecord::new("wait_failed", message)), None)
                    }
                }
            }
            Err(error) => {
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
    // The failure ping's body: what happened, then the stderr tail.
    let body = match (&report, tail) {
        (Some(record), Some(tail)) => format!("{}\n\n{tail}", record.message()),
        (Some(record), None) => record.message().to_owned(),
        (None, _) => String::new(),
    };
    match report {
        None => tx.succeed(),
        Some(record) => {
            tx.fail_with(record, ErrorClass::Fail);
        }
    }

    finish(config, telemetry, pinger.map(|p| p.finish(code == 0, body)));
    code
}

/// Installs telemetry from the `OTEL_*` environment; a problem is reported
/// and the command runs anyway. The local summary is printed only to a
/// terminal (cron would mail it).
fn install_telemetry(config: &Config) -> Option<jobsight_otel::Telemetry> {
    let mut builder = jobsight_otel::Builder::new().shutdown_timeout(config.shutdown_timeout);
    if !std::io::stderr().is_terminal() {
        builder = builder.summary(false);
    }
    builder
        .install()
        .map_err(|error| eprintln!("jobsight-run: telemetry is off: {error}"))
        .ok()
}

/// Records how the command ended on the span; returns the exit status,
/// for a failure the error to finish the transaction with, and the stderr
/// tail of a failure.
fn record_exit(
    tx: &Transaction,
    program: &str,
    status: ExitStatus,
    stderr_tail: Option<String>,
) -> (i32, Option<ErrorRecord>, Option<String>) {
    let span = tx.context().span();
    let (code, record) = match (status.code(), signal_of(status)) {
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
    };
    let tail = stderr_tail.filter(|_| record.is_some());
    if let Some(tail) = &tail {
        span.set_attribute(KeyValue::new(semconv::JOB_STDERR_TAIL, tail.clone()));
    }
    (code, record, tail)
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

/// W3C `traceparent` of the task's span, for the command's environment.
fn traceparent(tx: &Transaction) -> Option<String> {
    let cx = tx.context().span().span_context().clone();
    cx.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        )
    })
}

/// Shuts telemetry down and waits for the last ping, both within the
/// shutdown deadline.
fn finish(
    config: &Config,
    telemetry: Option<jobsight_otel::Telemetry>,
    ping: Option<mpsc::Receiver<()>>,
) {
    let started = Instant::now();
    if let Some(telemetry) = telemetry
        && let Err(error) = telemetry.shutdown()
    {
        eprintln!("jobsight-run: {error}");
    }
    if let Some(ping) = ping {
        let left = config.shutdown_timeout.saturating_sub(started.elapsed());
        if ping
            .recv_timeout(left.max(Duration::from_millis(1)))
            .is_err()
        {
            eprintln!(
                "jobsight-run: the check-in ping did not finish within {:?}",
                config.shutdown_timeout
            );
        }
    }
}
