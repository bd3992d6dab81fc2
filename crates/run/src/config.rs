//! What to run and how: command-line options, then `JOBSIGHT_*` variables.
//!
//! Options win over variables. A variable with a bad value is reported on
//! stderr and its default used: the command still runs (a cron job must not
//! be skipped because of its monitoring). A bad *option* is a usage error
//! (exit status 2, nothing runs), since someone is there to read it.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
Runs a command as a monitored task and exits with its status.

Usage: jobsight-run [OPTIONS] [--] COMMAND [ARGS...]

Options:
  --name NAME               task name (job.name); env JOBSIGHT_TASK_NAME;
                            default: the command's file name
  --ping-url URL            check-in URL, healthchecks.io style: URL/start,
                            URL on success, URL/fail on failure;
                            env JOBSIGHT_PING_URL; default: none
  --shutdown-timeout MS     longest wait for telemetry and pings at exit, in
                            milliseconds; env JOBSIGHT_SHUTDOWN_TIMEOUT;
                            default: 5000
  --stderr-tail LINES       last stderr lines kept for a failure report, at
                            most 4 KiB; 0 leaves stderr alone;
                            env JOBSIGHT_STDERR_TAIL; default: 20
  -h, --help                print this text
  -V, --version             print the version

Telemetry goes where the OTEL_* variables say (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_SERVICE_NAME, ...). The exit status is the command's, 128+N when signal
N ended it, 127 when it was not found, 126 when it could not be started.";

/// Environment variable: the task name.
pub const TASK_NAME_VAR: &str = "JOBSIGHT_TASK_NAME";
/// Environment variable: the check-in ping URL.
pub const PING_URL_VAR: &str = "JOBSIGHT_PING_URL";
/// Environment variable: the exit deadline in milliseconds.
pub const SHUTDOWN_TIMEOUT_VAR: &str = "JOBSIGHT_SHUTDOWN_TIMEOUT";
/// Environment variable: stderr lines kept.
pub const STDERR_TAIL_VAR: &str = "JOBSIGHT_STDERR_TAIL";

/// Default exit deadline: the same as `jobsight-otel`'s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = jobsight_otel::DEFAULT_SHUTDOWN_TIMEOUT;
/// Default number of stderr lines kept.
pub const DEFAULT_STDERR_TAIL: usize = 20;

/// A command to run, and how to report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The task's name (`job.name`).
    pub name: String,
    /// The program, looked up in `PATH` like a shell does.
    pub program: OsString,
    /// Its arguments (never recorded: they may hold secrets).
    pub args: Vec<OsString>,
    /// The check-in ping URL.
    pub ping_url: Option<String>,
    /// Longest wait at exit for telemetry and pings.
    pub shutdown_timeout: Duration,
    /// Stderr lines kept for the failure report; 0 leaves stderr alone.
    pub stderr_tail: usize,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Run a command.
    Run(Config),
    /// Print the usage text.
    Help,
    /// Print the version.
    Version,
}

/// A command line that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UsageError {
    /// No command was given.
    #[error("no command given")]
    MissingCommand,
    /// An option that takes a value came last.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// An option this program does not know.
    #[error("unknown option {0}")]
    UnknownOption(String),
    /// An option's value is not usable.
    #[error("{option}: {reason}")]
    InvalidValue {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Parses the arguments after the program name; `env` looks variables up
/// (empty counts as unset); `warn` receives problems with variables.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
    mut warn: impl FnMut(String),
) -> Result<Parsed, UsageError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut name = None;
    let mut ping_url = None;
    let mut shutdown_timeout = None;
    let mut stderr_tail = None;
    let mut args = args.into_iter();
    let mut command = Vec::new();

    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            command.push(arg);
            break;
        };
        if text == "--" {
            break;
        }
        if !text.starts_with('-') || text == "-" {
            command.push(arg);
            break;
        }
        let (option, inline) = match text.split_once('=') {
            Some((option, value)) if option.starts_with("--") => (option, Some(value.to_owned())),
            _ => (text, None),
        };
        let mut value = |option: &'static str| -> Result<String, UsageError> {
            match &inline {
                Some(value) => Ok(value.clone()),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or(UsageError::MissingValue(option)),
            }
        };
        match option {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--name" => name = Some(value("--name")?),
            "--ping-url" => ping_url = Some(value("--ping-url")?),
            "--shutdown-timeout" => {
                let raw = value("--shutdown-timeout")?;
                shutdown_timeout =
                    Some(millis(&raw).map_err(|reason| UsageError::InvalidValue {
                        option: "--shutdown-timeout",
                        reason,
                    })?);
            }
            "--stderr-tail" => {
                let raw = value("--stderr-tail")?;
                stderr_tail = Some(raw.parse::<usize>().map_err(|_| UsageError::InvalidValue {
                    option: "--stderr-tail",
                    reason: format!("expected a number of lines, got {raw:?}"),
                })?);
            }
            _ => return Err(UsageError::UnknownOption(text.to_owned())),
        }
    }
    command.extend(args);
    let mut command = command.into_iter();
    let program = command.next().ok_or(UsageError::MissingCommand)?;

    let name = name
        .or_else(|| env(TASK_NAME_VAR))
        .unwrap_or_else(|| default_name(&program));
    let ping_url = ping_url.or_else(|| env(PING_URL_VAR));
    let shutdown_timeout = shutdown_timeout.unwrap_or_else(|| {
        env(SHUTDOWN_TIMEOUT_VAR)
            .and_then(|raw| {
                millis(&raw)
                    .map_err(|reason| {
                        warn(format!(
                            "{SHUTDOWN_TIMEOUT_VAR}: {reason}; using {DEFAULT_SHUTDOWN_TIMEOUT:?}"
                        ))
                    })
                    .ok()
            })
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)
    });
    let stderr_tail = stderr_tail.unwrap_or_else(|| {
        env(STDERR_TAIL_VAR)
            .and_then(|raw| {
                raw.parse::<usize>()
                    .map_err(|_| {
                        warn(format!(
                            "{STDERR_TAIL_VAR}: expected a number of lines, got {raw:?}; using {DEFAULT_STDERR_TAIL}"
                        ))
                    })
                    .ok()
            })
            .unwrap_or(DEFAULT_STDERR_TAIL)
    });
    Ok(Parsed::Run(Config {
        name,
        program,
        args: command.collect(),
        ping_url,
        shutdown_timeout,
        stderr_tail,
    }))
}

/// The command's file name: `nightly.sh` for `/opt/jobs/nightly.sh`.
fn default_name(program: &OsString) -> String {
    Path::new(program)
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned()
}

fn millis(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err(format!("expected milliseconds, got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> (Result<Parsed, UsageError>, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut warnings = Vec::new();
        let parsed = parse(
            args.iter().map(OsString::from),
            |name| vars.get(name).cloned(),
            |w| warnings.push(w),
        );
        (parsed, warnings)
    }

    fn config(args: &[&str], vars: &[(&str, &str)]) -> Config {
        match parse_with(args, vars).0 {
            Ok(Parsed::Run(config)) => config,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_then_command() {
        let c = config(
            &[
                "--name",
                "nightly-report",
                "--ping-url=http://x/p",
                "--",
                "./report.sh",
                "--flag",
            ],
            &[],
        );
        assert_eq!(c.name, "nightly-report");
        assert_eq!(c.program, "./report.sh");
        assert_eq!(c.args, [OsString::from("--flag")]);
        assert_eq!(c.ping_url.as_deref(), Some("http://x/p"));
        assert_eq!(c.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(c.stderr_tail, DEFAULT_STDERR_TAIL);
    }

    #[test]
    fn the_command_may_start_without_a_double_dash() {
        let c = config(&["/opt/jobs/nightly.sh", "--name", "x"], &[]);
        assert_eq!(c.name, "nightly.sh");
        assert_eq!(c.program, "/opt/jobs/nightly.sh");
        assert_eq!(c.args, [OsString::from("--name"), OsString::from("x")]);
    }

    #[test]
    fn environment_only_for_cron() {
        let c = config(
            &["backup"],
            &[
                (TASK_NAME_VAR, "db-backup"),
                (PING_URL_VAR, "http://hc/ping/abc"),
                (SHUTDOWN_TIMEOUT_VAR, "1500"),
                (STDERR_TAIL_VAR, "5"),
            ],
        );
        assert_eq!(c.name, "db-backup");
        assert_eq!(c.ping_url.as_deref(), Some("http://hc/ping/abc"));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(1500));
        assert_eq!(c.stderr_tail, 5);
    }

    #[test]
    fn options_win_over_the_environment() {
        let c = config(
            &["--name", "a", "--shutdown-timeout", "200", "--", "true"],
            &[(TASK_NAME_VAR, "b"), (SHUTDOWN_TIMEOUT_VAR, "9000")],
        );
        assert_eq!(c.name, "a");
        assert_eq!(c.shutdown_timeout, Duration::from_millis(200));
    }

    #[test]
    fn bad_variables_warn_and_fall_back() {
        let (parsed, warnings) = parse_with(
            &["true"],
            &[
                (SHUTDOWN_TIMEOUT_VAR, "5s"),
                (STDERR_TAIL_VAR, "many"),
                (TASK_NAME_VAR, ""),
            ],
        );
        let Ok(Parsed::Run(c)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(c.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(c.stderr_tail, DEFAULT_STDERR_TAIL);
        assert_eq!(c.name, "true");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains(SHUTDOWN_TIMEOUT_VAR));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse_with(&[], &[]).0, Err(UsageError::MissingCommand));
        assert_eq!(
            parse_with(&["--name", "x"], &[]).0,
            Err(UsageError::MissingCommand)
        );
        assert_eq!(
            parse_with(&["--name"], &[]).0,
            Err(UsageError::MissingValue("--name"))
        );
        assert_eq!(
            parse_with(&["--nmae", "x", "true"], &[]).0,
            Err(UsageError::UnknownOption("--nmae".into()))
        );
        assert!(matches!(
            parse_with(&["--shutdown-timeout", "soon", "true"], &[]).0,
            Err(UsageError::InvalidValue { .. })
        ));
        assert_eq!(parse_with(&["-h", "true"], &[]).0, Ok(Parsed::Help));
        assert_eq!(parse_with(&["--version"], &[]).0, Ok(Parsed::Version));
    }
}
