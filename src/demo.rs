//! What the Redis examples (`examples/producer.rs`, `examples/worker.rs`)
//! share: the job they pass through Redis and their command-line options.
//! Not part of any published crate.

use std::collections::HashMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The job the example producer enqueues and the example worker runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildReport {
    /// Which report; only printed.
    pub report: u32,
    /// How many attempts fail before one succeeds (0: the first succeeds).
    pub fail_attempts: u32,
}

/// A bad command-line option or environment variable.
#[derive(Debug, thiserror::Error)]
#[error("bad value {value:?} for --{option}: {reason}")]
pub struct OptionError {
    option: String,
    value: String,
    reason: String,
}

/// `--name value` options, each with an environment variable as fallback.
#[derive(Debug, Default)]
pub struct Options {
    given: HashMap<String, String>,
}

impl Options {
    /// Reads `--name value` and `--name=value` pairs from the process's
    /// arguments; anything else is ignored.
    pub fn from_args() -> Self {
        Self::parse(std::env::args().skip(1))
    }

    /// Like [`Options::from_args`], from `args`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Self {
        let mut given = HashMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                continue;
            };
            match name.split_once('=') {
                Some((name, value)) => {
                    given.insert(name.to_owned(), value.to_owned());
                }
                None => {
                    let value = args.next_if(|v| !v.starts_with("--")).unwrap_or_default();
                    given.insert(name.to_owned(), value);
                }
            }
        }
        Self { given }
    }

    /// The option `--name`, else the environment variable `env`, else `default`.
    pub fn text(&self, name: &str, env: &str, default: &str) -> String {
        self.given
            .get(name)
            .cloned()
            .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| default.to_owned())
    }

    /// [`Options::text`], parsed.
    pub fn parsed<T>(&self, name: &str, env: &str, default: &str) -> Result<T, OptionError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let value = self.text(name, env, default);
        value.parse().map_err(|e: T::Err| OptionError {
            option: name.to_owned(),
            reason: e.to_string(),
            value,
        })
    }
}

/// Parses `link`, `child` or `none`.
pub fn propagation(text: &str) -> Result<jobsight_core::Propagation, OptionError> {
    match text {
        "link" => Ok(jobsight_core::Propagation::Link),
        "child" => Ok(jobsight_core::Propagation::Child),
        "none" => Ok(jobsight_core::Propagation::None),
        other => Err(OptionError {
            option: "propagation".to_owned(),
            value: other.to_owned(),
            reason: "expected link, child or none".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_both_forms_and_fall_back() {
        let o = Options::parse(
            ["--queue", "q1", "--jobs=3", "--flag", "--x", "y"]
                .into_iter()
                .map(String::from),
        );
        assert_eq!(o.text("queue", "JOBSIGHT_TEST_UNSET_1", "d"), "q1");
        assert_eq!(
            o.parsed::<u32>("jobs", "JOBSIGHT_TEST_UNSET_2", "1")
                .unwrap(),
            3
        );
        assert_eq!(o.text("flag", "JOBSIGHT_TEST_UNSET_3", "d"), "");
        assert_eq!(o.text("missing", "JOBSIGHT_TEST_UNSET_4", "d"), "d");
        assert!(
            o.parsed::<u32>("queue", "JOBSIGHT_TEST_UNSET_5", "1")
                .is_err()
        );
        assert!(propagation("parent").is_err());
    }
}
