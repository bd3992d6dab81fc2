//! Which `tracing` events and `log` records become OTLP log records: a
//! `RUST_LOG`-style list of directives (`JOBSIGHT_LOG`,
//! [`Builder::log_filter`](crate::Builder::log_filter)), plus the targets of
//! the export pipeline itself, which never do.

use std::fmt;

/// Targets whose events are never exported as log records, whatever the
/// filter says: the crates that carry the export itself. A debug line of
/// `h2` written while a batch of log records is sent would otherwise become
/// a log record, sent in the next batch, which writes more lines: a loop.
/// The export runtime's thread also runs with OpenTelemetry's suppression
/// flag set (the SDK then drops whatever is emitted there); this list
/// covers the threads that are not ours, such as the blocking HTTP
/// client's.
pub(crate) const EXPORT_PIPELINE_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "tonic",
    "tower",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "jobsight_otel",
];

/// A level, most severe first; `Off` turns a target off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "off" => Level::Off,
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }
}

/// The parsed directives (the default, with none: `info`). The most specific target wins (longest prefix on
/// a `::` boundary); a directive without a target sets the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogFilter {
    default: Level,
    /// Longest target first.
    targets: Vec<(String, Level)>,
}

impl Default for LogFilter {
    fn default() -> Self {
        LogFilter {
            default: Level::Info,
            targets: Vec::new(),
        }
    }
}

impl LogFilter {
    /// Parses `info,my_crate=debug,my_crate::noisy=off`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut filter = LogFilter::default();
        for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let bad = || {
                format!(
                    "`{directive}` is not a directive; expected `level` or `target=level`, \
                     levels `off`, `error`, `warn`, `info`, `debug`, `trace` (e.g. `info,my_crate=debug`)"
                )
            };
            match directive.split_once('=') {
                None => filter.default = Level::parse(directive).ok_or_else(bad)?,
                Some((target, level)) => {
                    let target = target.trim();
                    if target.is_empty() || target.contains(char::is_whitespace) {
                        return Err(bad());
                    }
                    let level = Level::parse(level).ok_or_else(bad)?;
                    filter.targets.retain(|(t, _)| t != target);
                    filter.targets.push((target.to_owned(), level));
                }
            }
        }
        filter
            .targets
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(filter)
    }

    /// Whether an event of `level` from `target` becomes a log record.
    pub(crate) fn enabled(&self, target: &str, level: Level) -> bool {
        if level == Level::Off || is_export_pipeline(target) {
            return false;
        }
        let max = self
            .targets
            .iter()
            .find(|(prefix, _)| under(target, prefix))
            .map_or(self.default, |(_, level)| *level);
        level <= max
    }

    /// The most verbose level any directive enables.
    pub(crate) fn max_level(&self) -> Level {
        self.targets
            .iter()
            .map(|(_, level)| *level)
            .fold(self.default, Ord::max)
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.default)?;
        for (target, level) in &self.targets {
            write!(f, ",{target}={level:?}")?;
        }
        Ok(())
    }
}

/// `target` is `prefix` or inside it (`prefix::…`).
fn under(target: &str, prefix: &str) -> bool {
    target
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

fn is_export_pipeline(target: &str) -> bool {
    EXPORT_PIPELINE_TARGETS
        .iter()
        .any(|prefix| under(target, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_directive_wins() {
        let filter = LogFilter::parse("warn, app=debug, app::db=off").unwrap();
        assert!(filter.enabled("other", Level::Warn));
        assert!(!filter.enabled("other", Level::Info));
        assert!(filter.enabled("app", Level::Debug));
        assert!(filter.enabled("app::mail", Level::Debug));
        assert!(!filter.enabled("app::mail", Level::Trace));
        assert!(!filter.enabled("app::db", Level::Error));
        assert!(!filter.enabled("app::db::pool", Level::Error));
        // A prefix counts on `::` boundaries only.
        assert!(!filter.enabled("application", Level::Debug));
        assert_eq!(filter.max_level(), Level::Debug);
    }

    #[test]
    fn the_default_is_info() {
        let filter = LogFilter::parse("info").unwrap();
        assert_eq!(filter, LogFilter::default());
        assert!(filter.enabled("app", Level::Info));
        assert!(!filter.enabled("app", Level::Debug));
    }

    #[test]
    fn the_export_pipeline_is_never_enabled() {
        let filter = LogFilter::parse("trace,h2=trace,tonic=trace").unwrap();
        for target in [
            "h2::codec",
            "tonic::transport",
            "hyper_util::client",
            "reqwest",
        ] {
            assert!(!filter.enabled(target, Level::Error), "{target}");
        }
        assert!(filter.enabled("h2o", Level::Trace));
    }

    #[test]
    fn bad_directives_say_what_is_accepted() {
        for bad in ["loud", "app=loud", "=info", "a b=info"] {
            let message = LogFilter::parse(bad).unwrap_err();
            assert!(message.contains("`trace`"), "{bad}: {message}");
        }
    }
}
