//! Telemetry for one run: installed from the `OTEL_*` environment for a
//! process that lives as long as its command, quiet, and flushed within the
//! deadline.
//!
//! - `service.name` defaults to [`DEFAULT_SERVICE_NAME`] (unless
//!   `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES` or
//!   `--service-name` says otherwise): cron jobs of a host are one service,
//!   told apart by `job.name`, hosts by `host.name`.
//! - Exports are not retried: with the collector down, each export fails at
//!   once (a refused connection costs about a millisecond) rather than
//!   after seconds of backoff; a collector that does not answer costs at
//!   most the deadline.
//! - jobsight-otel's own reports are collected, not printed: the run ends
//!   with at most one line about them (see [`crate::notice`]).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jobsight_otel::{Builder, Telemetry};

/// `service.name` when nothing else names the service.
pub const DEFAULT_SERVICE_NAME: &str = "cron";

/// Installed telemetry and what it had to say.
pub struct RunTelemetry {
    telemetry: Option<Telemetry>,
    reports: Arc<Mutex<Vec<u8>>>,
    problem: Option<String>,
}

/// A writer into a shared buffer, for jobsight-otel's reports.
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Write for Collected {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: the first report says enough.
        if all.len() < 4096 {
            all.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RunTelemetry {
    /// Installs telemetry; a configuration problem is kept for the notice
    /// and the command runs anyway.
    pub fn install(service_name: Option<&str>, deadline: Duration) -> Self {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let mut builder = Builder::new()
            .shutdown_timeout(deadline)
            .export_retries(false)
            .diagnostics_writer(Collected(Arc::clone(&reports)));
        match service_name {
            Some(name) => builder = builder.service_name(name),
            None if !resource_names_service() => {
                builder = builder.service_name(DEFAULT_SERVICE_NAME);
            }
            None => {}
        }
        // The local summary only on a terminal: cron would mail it.
        if !std::io::stderr().is_terminal() {
            builder = builder.summary(false);
        }
        match builder.install() {
            Ok(telemetry) => RunTelemetry {
                telemetry: Some(telemetry),
                reports,
                problem: None,
            },
            Err(error) => RunTelemetry {
                telemetry: None,
                reports,
                problem: Some(format!("telemetry is off: {error}")),
            },
        }
    }

    /// Flushes and shuts telemetry down within its deadline; returns what
    /// went wrong, in a few words, if anything did.
    pub fn finish(self) -> Option<String> {
        if let Some(problem) = self.problem {
            return Some(problem);
        }
        let telemetry = self.telemetry?;
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
        let shutdown = telemetry.shutdown();
        let reports =
            String::from_utf8_lossy(&self.reports.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned();
        if shutdown.is_ok() && reports.trim().is_empty() {
            return None;
        }
        let target = endpoint.as_deref().map(host_of).map_or_else(
            || "the collector".to_owned(),
            |h| format!("the collector at {h}"),
        );
        let why = match &shutdown {
            Err(jobsight_otel::Error::Timeout { deadline, .. }) => {
                format!("no answer within {}", crate::notice::seconds(*deadline))
            }
            _ => cause(&reports),
        };
        Some(format!("telemetry not delivered to {target} ({why})"))
    }
}

/// Whether `OTEL_RESOURCE_ATTRIBUTES` names the service.
fn resource_names_service() -> bool {
    std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attrs| {
        attrs.split(',').any(|kv| {
            kv.split('=')
                .next()
                .is_some_and(|k| k.trim() == "service.name")
        })
    })
}

/// `host:port` of a URL, without what may be secret (user info, path).
pub fn host_of(url: &str) -> String {
    let after = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

/// The cause of a failed export in plain words, from the exporter's report.
fn cause(report: &str) -> String {
    let lower = report.to_ascii_lowercase();
    let known = [
        ("connection refused", "connection refused"),
        ("network error", "cannot connect"),
        ("unavailable", "cannot connect"),
        ("timed out", "no answer in time"),
        ("timeout", "no answer in time"),
        ("deadline", "no answer in time"),
        ("dns", "host name not found"),
        ("failed to lookup", "host name not found"),
        ("certificate", "TLS certificate refused"),
        ("tls", "TLS handshake failed"),
        ("connection reset", "connection reset"),
        ("401", "HTTP 401: credentials refused"),
        ("403", "HTTP 403: credentials refused"),
        ("404", "HTTP 404: wrong path"),
        ("dropped", "telemetry dropped"),
    ];
    known
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map_or_else(
            || "export failed".to_owned(),
            |(_, plain)| (*plain).to_owned(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_causes() {
        assert_eq!(
            host_of("http://user:pw@127.0.0.1:4318/v1"),
            "127.0.0.1:4318"
        );
        assert_eq!(host_of("collector:4317"), "collector:4317");
        assert_eq!(
            cause("jobsight-otel: traces export failed: ... Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(cause("???"), "export failed");
    }
}
