//! Check-in pings in the healthchecks.io style — a minimal stand-in until
//! jobsight's check-in module (issue #5: policies, schedules, Cronitor and
//! Sentry conventions, a watchdog) replaces it. Keep this module's surface
//! small: [`Pinger::start`] and [`Pinger::finish`].
//!
//! Given a URL `U` (`JOBSIGHT_PING_URL` / `--ping-url`):
//! - when the command starts: `POST U/start`;
//! - when it succeeds: `POST U`;
//! - when it fails (non-zero exit, signal, could not start): `POST U/fail`
//!   with the last lines of stderr as the body (healthchecks.io shows it).
//!
//! The suffix goes before any query string (`U?rid=1` → `U/start?rid=1`).
//! Each ping is one attempt bounded by the exit deadline; a failed ping
//! prints one line on stderr with the URL's path hidden (it is the secret)
//! and changes nothing else. The finishing ping waits for the start ping, so
//! they arrive in order. The `reqwest` client here has no TLS (turning on
//! reqwest's rustls would change the OTLP/HTTP exporter's client too, which
//! shares the crate): `https://` URLs fail with a warning.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reqwest::Url;

/// Sends the pings of one run.
pub struct Pinger {
    base: Arc<Url>,
    timeout: Duration,
    start: Option<JoinHandle<()>>,
}

/// The ping URL is not usable.
#[derive(Debug, thiserror::Error)]
#[error(
    "JOBSIGHT_PING_URL / --ping-url: {url} is not an absolute http(s) URL; expected e.g. `http://hc.example/ping/<key>`"
)]
pub struct BadUrl {
    url: String,
}

impl Pinger {
    /// Validates `url`; each request may take up to `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, BadUrl> {
        let bad = || BadUrl {
            url: redact_str(url),
        };
        let base = Url::parse(url).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad());
        }
        Ok(Pinger {
            base: Arc::new(base),
            timeout,
            start: None,
        })
    }

    /// Sends `U/start` in the background.
    pub fn start(&mut self) {
        let url = with_suffix(&self.base, Some("start"));
        let timeout = self.timeout;
        self.start = thread::Builder::new()
            .name("ping-start".into())
            .spawn(move || send(&url, String::new(), timeout))
            .ok();
    }

    /// Sends `U` (success) or `U/fail` with `body`, after the start ping;
    /// the returned receiver gets a message when it is done.
    pub fn finish(self, success: bool, body: String) -> mpsc::Receiver<()> {
        let (done, finished) = mpsc::channel();
        let url = with_suffix(&self.base, (!success).then_some("fail"));
        let timeout = self.timeout;
        let start = self.start;
        let spawned = thread::Builder::new()
            .name("ping-finish".into())
            .spawn(move || {
                if let Some(start) = start {
                    let _ = start.join();
                }
                send(&url, body, timeout);
                let _ = done.send(());
            });
        if let Err(error) = spawned {
            eprintln!("jobsight-run: cannot send the check-in ping: {error}");
        }
        finished
    }
}

/// `base` with `/suffix` appended to its path.
fn with_suffix(base: &Url, suffix: Option<&str>) -> Url {
    let mut url = base.clone();
    if let Some(suffix) = suffix
        && let Ok(mut segments) = url.path_segments_mut()
    {
        segments.pop_if_empty().push(suffix);
    }
    url
}

fn send(url: &Url, body: String, timeout: Duration) {
    let started = Instant::now();
    let client = match reqwest::blocking::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("jobsight-run/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("jobsight-run: cannot send the check-in ping: {error}");
            return;
        }
    };
    let left = timeout.saturating_sub(started.elapsed());
    let result = client
        .post(url.clone())
        .timeout(left.max(Duration::from_millis(1)))
        .body(body)
        .send();
    match result {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => eprintln!(
            "jobsight-run: check-in ping to {} answered {}",
            redact(url),
            response.status()
        ),
        Err(error) => eprintln!(
            "jobsight-run: check-in ping to {} failed: {}",
            redact(url),
            without_url(&error)
        ),
    }
}

/// `scheme://host[:port]/…`: ping URLs carry their secret in the path.
fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

fn redact_str(url: &str) -> String {
    Url::parse(url)
        .map(|u| redact(&u))
        .unwrap_or_else(|_| "(unparsable)".to_owned())
}

/// The error's text without the URL reqwest puts in it.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut first = true;
    while let Some(e) = source {
        let part = if first {
            if error.is_timeout() {
                "timed out".to_owned()
            } else if error.is_connect() {
                "cannot connect".to_owned()
            } else if error.is_builder() {
                "unsupported URL (the ping client has no TLS: use http)".to_owned()
            } else {
                "request failed".to_owned()
            }
        } else {
            e.to_string()
        };
        if !first {
            text.push_str(": ");
        }
        text.push_str(&part);
        first = false;
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_into_the_path() {
        let base = Url::parse("https://hc-ping.com/abc-123").unwrap();
        assert_eq!(
            with_suffix(&base, Some("start")).as_str(),
            "https://hc-ping.com/abc-123/start"
        );
        assert_eq!(
            with_suffix(&base, None).as_str(),
            "https://hc-ping.com/abc-123"
        );
        let base = Url::parse("http://hc.local:8000/ping/k/slug/?rid=7").unwrap();
        assert_eq!(
            with_suffix(&base, Some("fail")).as_str(),
            "http://hc.local:8000/ping/k/slug/fail?rid=7"
        );
    }

    #[test]
    fn bad_urls_and_redaction() {
        assert!(Pinger::new("hc-ping.com/abc", Duration::from_secs(1)).is_err());
        assert!(Pinger::new("ftp://x/abc", Duration::from_secs(1)).is_err());
        assert!(Pinger::new("mailto:ops@example.com", Duration::from_secs(1)).is_err());
        let url = Url::parse("https://hc-ping.com/secret-uuid").unwrap();
        assert_eq!(redact(&url), "https://hc-ping.com/…");
        let error = Pinger::new("ftp://host/secret-uuid", Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
        assert!(
            error.starts_with("JOBSIGHT_PING_URL / --ping-url"),
            "{error}"
        );
        let debug = format!(
            "{:?}",
            Pinger::new("hc-ping.com/secret-uuid", Duration::from_secs(1)).err()
        );
        assert!(!debug.contains("secret"), "{debug}");
    }
}
