//! The command line: options, each also read from an environment variable
//! (the option wins), parsed with `clap`.
//!
//! Every invalid value is a usage error: one line naming the option and its
//! variable, exit status 2, and the command does not run. An empty variable
//! counts as unset (cron files often carry `VAR=`).
//!
//! # Nesting
//! `jobsight-run` puts [`NESTED_VAR`] into the command's environment. A
//! `jobsight-run` that finds it is a step inside a monitored job: it does
//! not read the variables that name *one* check ([`PER_CHECK`]: task name,
//! ping URL, UUID, slug, monitor, schedule), which would otherwise make it
//! ping the outer job's check; service credentials (ping key, Cronitor key,
//! Sentry DSN) and the OpenTelemetry variables still apply. With
//! `--inherit-check` it reads them all.
// The doc comments here are clap's `--help` text, printed as written:
// URLs and `<placeholders>` in them are for a terminal, not for rustdoc.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

use std::ffi::OsString;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// Set in the command's environment (to the task name): tells a
/// `jobsight-run` inside the command that it is nested.
pub const NESTED_VAR: &str = "JOBSIGHT_RUN_PARENT";

/// The arguments whose variables a nested `jobsight-run` ignores.
pub const PER_CHECK: [&str; 10] = [
    "name",
    "ping_url",
    "healthchecks_uuid",
    "slug",
    "monitor",
    "schedule",
    "grace",
    "max_runtime",
    "create",
    "no_start_ping",
];

/// The options whose values hold keys.
const SECRET: [&str; 5] = [
    "--ping-url",
    "--healthchecks-uuid",
    "--ping-key",
    "--cronitor-key",
    "--sentry-dsn",
];

/// The default [`Cli::shutdown_timeout`]: see the option's help.
pub const DEFAULT_DEADLINE: &str = "2s";
/// The longest deadline accepted.
const MAX_DEADLINE: Duration = Duration::from_secs(600);
/// The largest output kept for a ping body.
const MAX_OUTPUT_LIMIT: usize = 1024 * 1024;

const EXAMPLES: &str = "\
Examples (crontab lines):
  # healthchecks.io, by check UUID
  0 3 * * * jobsight-run --healthchecks-uuid 5bf3a9f2-... -- /opt/jobs/backup.sh
  # healthchecks.io, by slug (created on first ping with --schedule or --create)
  0 3 * * * HC_PING_KEY=... jobsight-run --slug backup --schedule '0 3 * * *' -- /opt/jobs/backup.sh
  # Cronitor
  0 3 * * * CRONITOR_API_KEY=... jobsight-run --monitor backup -- /opt/jobs/backup.sh
  # Sentry Crons (the monitor is created or updated from --schedule)
  0 3 * * * SENTRY_DSN=https://key@o1.ingest.sentry.io/42 jobsight-run --monitor backup --schedule '0 3 * * *' --grace 10m -- /opt/jobs/backup.sh

Telemetry goes where the OTEL_* variables say (OTEL_EXPORTER_OTLP_ENDPOINT, ...).
Exit status: the command's; 128+N when signal N ended it; 127 when it was not
found, 126 when it could not be started; 2 for a usage error (nothing runs).
Nothing is printed when all is well; when telemetry or a ping fails, one line
(none with --quiet).";

/// Runs a command as a monitored task (OpenTelemetry span and metrics,
/// check-in pings) and exits with its status.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "jobsight-run",
    version,
    after_help = EXAMPLES,
    override_usage = "jobsight-run [OPTIONS] [--] COMMAND [ARGS]...",
    max_term_width = 100
)]
pub struct Cli {
    /// Task name (`job.name`), and the monitor's name when no --monitor or
    /// --slug is given [default: the script's name for `sh script.sh`,
    /// `bash script.sh`, `python3 script.py` ...; else the command's file name]
    #[arg(long, env = "JOBSIGHT_TASK_NAME", value_name = "NAME", value_parser = non_empty, hide_env_values = true, help_heading = "Task")]
    pub name: Option<String>,

    /// `service.name` of the telemetry [default: `service.name` in
    /// OTEL_RESOURCE_ATTRIBUTES, else `cron`]
    #[arg(long, env = "OTEL_SERVICE_NAME", value_name = "NAME", value_parser = non_empty, hide_env_values = true, help_heading = "Task")]
    pub service_name: Option<String>,

    /// One ping URL whose service is recognised from its form:
    /// https://hc-ping.com/<uuid>, https://hc-ping.com/<ping key>/<slug>,
    /// https://cronitor.link/p/<key>/<monitor>, a Sentry DSN (with
    /// --monitor), a template with {status} {run_id} {exit_status}
    /// {duration_ms} {monitor}, or any other URL pinged healthchecks-style
    /// (URL/start, URL/<exit status>) [default: none]
    #[arg(long, env = "JOBSIGHT_PING_URL", value_name = "URL", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub ping_url: Option<String>,

    /// healthchecks.io check UUID [default: none]
    #[arg(long, env = "CHECK_UUID", value_name = "UUID", value_parser = uuid, hide_env_values = true, help_heading = "Check-ins")]
    pub healthchecks_uuid: Option<String>,

    /// healthchecks.io check slug, with --ping-key [default: none]
    #[arg(long, env = "CHECK_SLUG", value_name = "SLUG", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub slug: Option<String>,

    /// healthchecks.io project ping key, for --slug [default: none]
    #[arg(long, env = "HC_PING_KEY", value_name = "KEY", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub ping_key: Option<String>,

    /// healthchecks.io ping host (self-hosted: https://hc.example.com/ping)
    #[arg(long, env = "HC_API_URL", value_name = "URL", default_value = "https://hc-ping.com", value_parser = base_url, hide_env_values = true, help_heading = "Check-ins")]
    pub healthchecks_url: String,

    /// Create the healthchecks.io check of --slug if it does not exist yet
    /// (`?create=1`; implied by --schedule)
    #[arg(long, env = "JOBSIGHT_CREATE", value_parser = BoolishValueParser::new(), default_value_t = false, hide_env_values = true, help_heading = "Check-ins")]
    pub create: bool,

    /// Cronitor API key (telemetry scope); the monitor is --monitor
    /// [default: none]
    #[arg(long, env = "CRONITOR_API_KEY", value_name = "KEY", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub cronitor_key: Option<String>,

    /// Cronitor telemetry host
    #[arg(long, env = "CRONITOR_URL", value_name = "URL", default_value = "https://cronitor.link", value_parser = base_url, hide_env_values = true, help_heading = "Check-ins")]
    pub cronitor_url: String,

    /// Sentry project DSN; the monitor is --monitor [default: none]
    #[arg(long, env = "SENTRY_DSN", value_name = "DSN", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub sentry_dsn: Option<String>,

    /// Monitor name (Sentry monitor slug, Cronitor monitor key,
    /// healthchecks.io slug) [default: --slug, else --name when given]
    #[arg(long, env = "JOBSIGHT_MONITOR", value_name = "NAME", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub monitor: Option<String>,

    /// Environment of the check-ins (Sentry `environment`, Cronitor `env`)
    /// [default: none]
    #[arg(long, env = "SENTRY_ENVIRONMENT", value_name = "ENV", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub environment: Option<String>,

    /// Five-field cron schedule of the job, e.g. '0 3 * * *': creates or
    /// updates the Sentry monitor with it; creates a missing
    /// healthchecks.io slug check [default: none]
    #[arg(long, env = "JOBSIGHT_SCHEDULE", value_name = "CRON", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub schedule: Option<String>,

    /// How late a run may start before the monitor reports it missed, e.g.
    /// 10m (Sentry `checkin_margin`) [default: 1m with --schedule]
    #[arg(long, env = "JOBSIGHT_GRACE", value_name = "DURATION", value_parser = duration, hide_env_values = true, help_heading = "Check-ins")]
    pub grace: Option<Duration>,

    /// Time zone of --schedule (IANA name)
    #[arg(long, env = "CRON_TZ", value_name = "ZONE", default_value = "UTC", value_parser = non_empty, hide_env_values = true, help_heading = "Check-ins")]
    pub tz: String,

    /// Longest run before the monitor reports it as timed out, e.g. 2h
    /// (Sentry `max_runtime`) [default: none]
    #[arg(long, env = "JOBSIGHT_MAX_RUNTIME", value_name = "DURATION", value_parser = duration, hide_env_values = true, help_heading = "Check-ins")]
    pub max_runtime: Option<Duration>,

    /// Send no ping when the command starts, only its outcome
    #[arg(long, env = "JOBSIGHT_NO_START_PING", value_parser = BoolishValueParser::new(), default_value_t = false, hide_env_values = true, help_heading = "Check-ins")]
    pub no_start_ping: bool,

    /// How much of the command's output (stdout and stderr as written) to
    /// keep for the outcome ping's body and the failed span, e.g. 10KiB,
    /// 4096, 1MiB (at most); 0 passes the output through untouched
    #[arg(long, env = "JOBSIGHT_OUTPUT_LIMIT", value_name = "SIZE", default_value = "10KiB", value_parser = size, hide_env_values = true, help_heading = "Output")]
    pub output_limit: usize,

    /// Do not send the output in the outcome ping
    #[arg(long, env = "JOBSIGHT_NO_OUTPUT_IN_PING", value_parser = BoolishValueParser::new(), default_value_t = false, hide_env_values = true, help_heading = "Output")]
    pub no_output_in_ping: bool,

    /// Longest wait, once the command has ended, for telemetry and the
    /// outcome ping together, e.g. 500ms, 5s, 1m
    #[arg(long, visible_alias = "deadline", env = "JOBSIGHT_SHUTDOWN_TIMEOUT", value_name = "DURATION", default_value = DEFAULT_DEADLINE, value_parser = deadline, hide_env_values = true, help_heading = "Exit")]
    pub shutdown_timeout: Duration,

    /// Print nothing, even when telemetry or a ping fails
    #[arg(short, long, env = "JOBSIGHT_QUIET", value_parser = BoolishValueParser::new(), default_value_t = false, hide_env_values = true, help_heading = "Exit")]
    pub quiet: bool,

    /// Inside another jobsight-run, read the per-check variables too
    /// (JOBSIGHT_TASK_NAME, JOBSIGHT_PING_URL, CHECK_UUID, CHECK_SLUG,
    /// JOBSIGHT_MONITOR, JOBSIGHT_SCHEDULE, ...), which are ignored there
    #[arg(long, help_heading = "Exit")]
    pub inherit_check: bool,

    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run a command; the ids of the options given on the command line
    /// (rather than by a variable or a default).
    Run(Box<Cli>, Vec<String>),
    /// Print this text and exit 0 (`--help`, `--version`).
    Print(String),
}

/// A command line that cannot be used: one line, without the program's
/// name.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}; see --help")]
pub struct UsageError(pub String);

/// Parses `args` (the program's name first); `env` looks variables up.
pub fn parse(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Parsed, UsageError> {
    let nested = env(NESTED_VAR).is_some_and(|v| !v.is_empty());
    let first = matches(args.clone(), &env, &[])?;
    let first = match first {
        Ok(m) => m,
        Err(text) => return Ok(Parsed::Print(text)),
    };
    let cli = Cli::from_arg_matches(&first).map_err(|e| one_line(&e))?;
    if !nested || cli.inherit_check {
        return Ok(Parsed::Run(Box::new(cli), given(&first)));
    }
    let again = matches(args, &env, &PER_CHECK)?
        .map_err(|_| UsageError("unexpected help request".into()))?;
    let cli = Cli::from_arg_matches(&again).map_err(|e| one_line(&e))?;
    Ok(Parsed::Run(Box::new(cli), given(&again)))
}

/// The ids of the options given on the command line.
fn given(matches: &ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

/// The matches, or the text of `--help`/`--version`. Variables are looked
/// up with `env` (empty is unset); those of `ignored` are not read.
fn matches(
    args: Vec<OsString>,
    env: &impl Fn(&str) -> Option<OsString>,
    ignored: &[&str],
) -> Result<Result<ArgMatches, String>, UsageError> {
    let mut command = Cli::command();
    let ids: Vec<(String, Option<String>)> = command
        .get_arguments()
        .map(|a| {
            (
                a.get_id().to_string(),
                a.get_env().map(|e| e.to_string_lossy().into_owned()),
            )
        })
        .collect();
    for (id, var) in ids {
        let Some(var) = var else { continue };
        let skip = ignored.contains(&id.as_str());
        let value = env(&var)
            .filter(|v| !v.is_empty() && !skip)
            .map(|v| v.to_string_lossy().into_owned());
        command = command.mut_arg(id, |arg| {
            // `Arg::env` reads the process environment (and takes an empty
            // value as set): the value found by `env` goes in as the default.
            let arg = arg.env(None::<&'static str>);
            match value {
                Some(value) => arg.default_value(value),
                None => arg,
            }
        });
    }
    match command.try_get_matches_from(args.clone()) {
        Ok(m) => Ok(Ok(m)),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // The help of the declared command: variables and defaults as
            // declared, not as found.
            let text = match Cli::command().try_get_matches_from(args) {
                Err(e) => e.render().to_string(),
                Ok(_) => e.render().to_string(),
            };
            Ok(Err(text))
        }
        Err(e) => Err(one_line(&e)),
    }
}

/// A clap error as one line: what is wrong and which option (with its
/// variable), without clap's usage block.
fn one_line(error: &clap::Error) -> UsageError {
    let rendered = error.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_owned();
    if error.kind() == ErrorKind::MissingRequiredArgument {
        return UsageError(
            "no command given: jobsight-run [OPTIONS] -- COMMAND [ARGS]...".to_owned(),
        );
    }
    let mut line = first;
    if let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) {
        let long = arg.split_whitespace().next().unwrap_or("");
        // The values of these hold keys: never echoed.
        if SECRET.contains(&long)
            && let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue)
            && !value.is_empty()
        {
            line = line.replacen(&format!("'{value}'"), "(not shown: it holds a key)", 1);
        }
        if let Some(var) = env_of(arg) {
            line = line.replacen(&format!("'{arg}'"), &format!("'{arg}' (or {var})"), 1);
        }
    }
    UsageError(line)
}

/// The variable of the option shown as `arg` in an error (`--name <NAME>`).
fn env_of(arg: &str) -> Option<String> {
    let long = arg.split_whitespace().next()?.trim_start_matches('-');
    let command = Cli::command();
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()
        .map(|e| e.to_string_lossy().into_owned())
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if text.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

/// A healthchecks.io check UUID: 8-4-4-4-12 hexadecimal digits.
fn uuid(text: &str) -> Result<String, String> {
    let t = text.trim();
    let groups: Vec<&str> = t.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(t.to_ascii_lowercase())
    } else {
        Err("expected a check UUID such as 5bf3a9f2-64b6-4b4c-a5a4-6a1c1f2e8b1d".to_owned())
    }
}

/// An absolute `http(s)://` URL without query.
fn base_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !t.contains(['?', '#']) => {
            Ok(t.trim_end_matches('/').to_owned())
        }
        _ => Err("expected an absolute http:// or https:// URL without a query".to_owned()),
    }
}

/// `500ms`, `5s`, `1m`, `2h`, `1d` or a whole number of seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    jobsight_checkin::parse_duration(text)
        .map_err(|_| "expected a duration such as 500ms, 5s, 1m, 2h".to_owned())
}

/// A duration above zero, at most ten minutes.
fn deadline(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        Err("must be above zero (e.g. 500ms, 2s)".to_owned())
    } else if d > MAX_DEADLINE {
        Err("at most 10m".to_owned())
    } else {
        Ok(d)
    }
}

/// `10KiB`, `10k`, `4096`, `1MiB`, `0`: bytes, at most 1 MiB.
fn size(text: &str) -> Result<usize, String> {
    let bad = || "expected a size such as 10KiB, 4096 (bytes) or 1MiB".to_owned();
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number.parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(bad()),
    };
    match n.checked_mul(factor) {
        Some(bytes) if bytes <= MAX_OUTPUT_LIMIT => Ok(bytes),
        _ => Err("at most 1MiB".to_owned()),
    }
}

/// The task name when none is given: the script's file name for a shell
/// or an interpreter running a script (`bash /opt/jobs/backup.sh` →
/// `backup.sh`), the first word of `sh -c 'pg_dump …'` (`pg_dump`), else
/// the command's file name (`/usr/bin/pg_dump` → `pg_dump`).
pub fn default_name(command: &[OsString]) -> String {
    let file_name = |word: &str| {
        word.rsplit('/')
            .find(|part| !part.is_empty())
            .unwrap_or(word)
            .to_owned()
    };
    let Some(program) = command.first() else {
        return String::new();
    };
    let program = program.to_string_lossy();
    let base = file_name(&program);
    let interpreter = matches!(
        base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.'),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "python" | "perl" | "ruby" | "node" | "php"
    );
    if interpreter {
        let mut rest = command[1..].iter().map(|a| a.to_string_lossy());
        while let Some(arg) = rest.next() {
            if arg == "-c" {
                let script = rest.next().unwrap_or_default();
                return first_command(&script).map_or(base, |w| file_name(&w));
            }
            if arg.starts_with('-') {
                continue;
            }
            let name = file_name(&arg);
            return if name.is_empty() { base } else { name };
        }
    }
    base
}

/// The first word of a shell script that names a program: commands are
/// split at `;`, `&&`, `||`, `|` and line breaks; variable assignments and
/// wrappers (`exec`, `nice`, `nohup`, `env`, `time`) are skipped, and so are
/// commands that only set the shell up (`cd`, `set`, `export`, `exit`, …).
fn first_command(script: &str) -> Option<String> {
    const WRAPPERS: [&str; 6] = ["exec", "nice", "nohup", "env", "time", "command"];
    const SETUP: [&str; 14] = [
        "cd", "set", "export", "source", ".", "umask", "ulimit", "trap", ":", "exit", "true",
        "false", "unset", "shopt",
    ];
    let commands = script.split(['\n', ';', '|', '&']);
    for command in commands {
        let mut words = command
            .split_whitespace()
            .map(|w| w.trim_matches(['\'', '"', '(', ')', '{', '}']))
            .filter(|w| !w.is_empty())
            .skip_while(|w| (w.contains('=') && !w.starts_with('/')) || WRAPPERS.contains(w));
        match words.next() {
            Some(w) if SETUP.contains(&w) || w.starts_with('-') => continue,
            Some(w) => return Some(w.to_owned()),
            None => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Parsed, UsageError> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let mut all = vec![OsString::from("jobsight-run")];
        all.extend(args.iter().map(OsString::from));
        parse(all, |name| vars.get(name).cloned())
    }

    fn cli(args: &[&str], vars: &[(&str, &str)]) -> Cli {
        match parse_with(args, vars) {
            Ok(Parsed::Run(cli, _)) => *cli,
            other => panic!("{other:?}"),
        }
    }

    fn error(args: &[&str], vars: &[(&str, &str)]) -> String {
        match parse_with(args, vars) {
            Err(e) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_then_command() {
        let c = cli(
            &[
                "--name",
                "nightly",
                "--deadline=500ms",
                "--",
                "./report.sh",
                "--flag",
            ],
            &[],
        );
        assert_eq!(c.name.as_deref(), Some("nightly"));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(c.command, [OsString::from("./report.sh"), "--flag".into()]);
        assert_eq!(c.output_limit, 10 * 1024);
        let c = cli(&["/opt/jobs/x.sh", "--name", "y"], &[]);
        assert_eq!(c.name, None);
        assert_eq!(c.command.len(), 3);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
    }

    #[test]
    fn variables_and_their_precedence() {
        let c = cli(
            &["true"],
            &[
                ("JOBSIGHT_TASK_NAME", "backup"),
                ("JOBSIGHT_SHUTDOWN_TIMEOUT", "5s"),
                ("CHECK_UUID", "5BF3A9F2-64B6-4B4C-A5A4-6A1C1F2E8B1D"),
                ("JOBSIGHT_QUIET", "1"),
                ("JOBSIGHT_OUTPUT_LIMIT", "1MiB"),
                ("CHECK_SLUG", ""),
            ],
        );
        assert_eq!(c.name.as_deref(), Some("backup"));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(
            c.healthchecks_uuid.as_deref(),
            Some("5bf3a9f2-64b6-4b4c-a5a4-6a1c1f2e8b1d")
        );
        assert!(c.quiet);
        assert_eq!(c.slug, None, "empty is unset");
        assert_eq!(c.output_limit, 1024 * 1024);
        let c = cli(
            &["--name", "a", "--shutdown-timeout", "1m", "--", "true"],
            &[
                ("JOBSIGHT_TASK_NAME", "b"),
                ("JOBSIGHT_SHUTDOWN_TIMEOUT", "9s"),
            ],
        );
        assert_eq!(c.name.as_deref(), Some("a"));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(60));
    }

    #[test]
    fn invalid_values_are_one_line_naming_the_option() {
        let e = error(&["--shutdown-timeout", "0", "true"], &[]);
        assert!(e.contains("--shutdown-timeout"), "{e}");
        assert!(e.contains("JOBSIGHT_SHUTDOWN_TIMEOUT"), "{e}");
        assert!(e.contains("above zero"), "{e}");
        assert!(e.ends_with("; see --help"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = error(&["true"], &[("JOBSIGHT_SHUTDOWN_TIMEOUT", "5 parsecs")]);
        assert!(
            e.contains("JOBSIGHT_SHUTDOWN_TIMEOUT") && e.contains("500ms"),
            "{e}"
        );
        let e = error(&["--name=", "true"], &[]);
        assert!(e.contains("--name") && e.contains("empty"), "{e}");
        let e = error(&["--nmae", "x", "true"], &[]);
        assert!(e.contains("--nmae") && !e.contains('\n'), "{e}");
        let e = error(&["--name", "x"], &[]);
        assert!(e.starts_with("no command given"), "{e}");
        let e = error(&["--healthchecks-uuid", "abc", "true"], &[]);
        assert!(
            e.contains("CHECK_UUID") && e.contains("UUID such as"),
            "{e}"
        );
        let e = error(&["--output-limit", "10 lines", "true"], &[]);
        assert!(e.contains("10KiB"), "{e}");
        let e = error(&["--output-limit", "2MiB", "true"], &[]);
        assert!(e.contains("1MiB"), "{e}");
        let e = error(&["--healthchecks-url", "hc.example.com", "true"], &[]);
        assert!(e.contains("http://"), "{e}");
    }

    #[test]
    fn help_lists_every_option_with_its_variable_and_hides_values() {
        let Ok(Parsed::Print(help)) = parse_with(&["--help"], &[("HC_PING_KEY", "s3cr3t")]) else {
            panic!("no help")
        };
        for (flag, var) in [
            ("--name", "JOBSIGHT_TASK_NAME"),
            ("--ping-url", "JOBSIGHT_PING_URL"),
            ("--healthchecks-uuid", "CHECK_UUID"),
            ("--ping-key", "HC_PING_KEY"),
            ("--cronitor-key", "CRONITOR_API_KEY"),
            ("--sentry-dsn", "SENTRY_DSN"),
            ("--shutdown-timeout", "JOBSIGHT_SHUTDOWN_TIMEOUT"),
            ("--output-limit", "JOBSIGHT_OUTPUT_LIMIT"),
        ] {
            assert!(help.contains(flag) && help.contains(var), "{flag} {var}");
        }
        assert!(help.contains("[default: 2s]"), "{help}");
        assert!(help.contains("Examples"), "{help}");
        assert!(!help.contains("s3cr3t"), "{help}");
        assert!(matches!(
            parse_with(&["--version"], &[]),
            Ok(Parsed::Print(v)) if v.contains(env!("CARGO_PKG_VERSION"))
        ));
    }

    #[test]
    fn nested_runs_ignore_the_outer_check() {
        let outer = [
            (NESTED_VAR, "outer"),
            ("JOBSIGHT_TASK_NAME", "outer"),
            ("JOBSIGHT_PING_URL", "http://hc/ping/x"),
            ("CHECK_UUID", "5bf3a9f2-64b6-4b4c-a5a4-6a1c1f2e8b1d"),
            ("HC_PING_KEY", "key"),
            ("JOBSIGHT_SHUTDOWN_TIMEOUT", "3s"),
        ];
        let c = cli(&["--slug", "step1", "--", "true"], &outer);
        assert_eq!(c.name, None);
        assert_eq!(c.ping_url, None);
        assert_eq!(c.healthchecks_uuid, None);
        assert_eq!(c.slug.as_deref(), Some("step1"));
        assert_eq!(c.ping_key.as_deref(), Some("key"), "credentials are kept");
        assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
        let c = cli(&["--inherit-check", "true"], &outer);
        assert_eq!(c.name.as_deref(), Some("outer"));
        assert_eq!(c.ping_url.as_deref(), Some("http://hc/ping/x"));
    }

    #[test]
    fn default_names() {
        let name =
            |args: &[&str]| default_name(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(name(&["/usr/bin/pg_dump", "-Fc"]), "pg_dump");
        assert_eq!(name(&["sh", "/opt/jobs/backup.sh"]), "backup.sh");
        assert_eq!(name(&["bash", "-e", "./nightly.sh", "x"]), "nightly.sh");
        assert_eq!(name(&["/usr/bin/python3", "etl.py"]), "etl.py");
        assert_eq!(name(&["sh", "-c", "pg_dump -Fc db > /x"]), "pg_dump");
        assert_eq!(name(&["sh", "-c", "/opt/bin/sync --all"]), "sync");
        assert_eq!(
            name(&["sh", "-c", "cd /srv && PGHOST=db exec pg_dump x"]),
            "pg_dump"
        );
        assert_eq!(name(&["sh", "-c", "set -e; ./etl.sh"]), "etl.sh");
        assert_eq!(name(&["sh", "-c", "exit 3"]), "sh");
        assert_eq!(name(&["bash"]), "bash");
        assert_eq!(name(&["./report"]), "report");
    }

    #[test]
    fn values() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("10k"), Ok(10240));
        assert_eq!(size("4096"), Ok(4096));
        assert!(size("-1").is_err());
        assert_eq!(deadline("500ms"), Ok(Duration::from_millis(500)));
        assert!(deadline("11m").is_err());
        assert_eq!(
            base_url("https://hc.example.com/ping/").as_deref(),
            Ok("https://hc.example.com/ping")
        );
        assert!(base_url("https://x/?a=1").is_err());
    }
}
