//! The one line a run may print about its monitoring.
//!
//! Nothing is printed when all went well. When telemetry or a ping failed,
//! one line on stderr says what, in plain words, for the whole run (cron
//! mails whatever a job prints: one line a run at most); `--quiet` turns
//! even that off. Usage errors are not notices: they stop the run before
//! the command starts.

use std::io::Write;
use std::time::Duration;

/// Prints `problems` as one line about the task `name`, unless `quiet` or
/// there are none.
pub fn print(quiet: bool, name: &str, problems: &[String]) {
    if quiet || problems.is_empty() {
        return;
    }
    let line = format!("jobsight-run: {name}: {}\n", problems.join("; "));
    // A closed stderr is no reason to fail.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `2s`, `1.5s` or `500ms`.
pub fn seconds(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(seconds(Duration::from_millis(500)), "500ms");
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }
}
