//! The URL each ping service expects for a check-in event.

use std::collections::HashMap;
use std::fmt::Write as _;

use jobsight_core::checkin::{CheckinEvent, CheckinStatus};

use crate::error::Error;

/// Turns a check-in event into the request a ping service expects.
/// Implemented by [`Healthchecks`], [`Cronitor`], [`SentryCrons`] and
/// [`UrlTemplate`]; implement it for a service of your own.
pub trait PingFormat: Send + Sync + 'static {
    /// The request for `event`, or `None` to send nothing for it (a monitor
    /// this format has no address for).
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest>;
}

/// One HTTP request: method and absolute URL (no body).
///
/// Its `Debug` shows only the URL's scheme and host: ping URLs carry their
/// key in the path or query.
#[derive(Clone, PartialEq, Eq)]
pub struct PingRequest {
    /// The method; every built-in format uses `GET`.
    pub method: http::Method,
    /// The absolute URL.
    pub url: String,
}

impl PingRequest {
    /// A `GET` of `url`.
    pub fn get(url: String) -> Self {
        PingRequest {
            method: http::Method::GET,
            url,
        }
    }
}

impl std::fmt::Debug for PingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingRequest")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .finish()
    }
}

/// What `Debug` shows instead of a key.
const REDACTED: &str = "[REDACTED]";

/// `scheme://host[:port]/[REDACTED]`: the URL without what may be a key
/// (user info, path, query). Placeholders such as `{monitor}` in a template
/// are not valid in a host, so a template's host shows only when it is
/// literal.
fn redacted_url(url: &str) -> String {
    let rest = url.split_once("://");
    match rest {
        Some((scheme, after)) => {
            let authority = after.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}/{REDACTED}")
        }
        None => REDACTED.to_owned(),
    }
}

/// Percent-encodes `text` for a URL path segment or query value: everything
/// but RFC 3986's unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_owned()
}

/// healthchecks.io (or a self-hosted Healthchecks): `/start` when a run
/// starts, the check's URL on success, `/fail` on failure, all with
/// `?rid=<run id>` so that Healthchecks pairs them and measures the run.
///
/// URL forms, with the default base `https://hc-ping.com`:
/// - slug: `https://hc-ping.com/<ping-key>/<monitor>[/start|/fail]?rid=…`
///   (the project's ping key, the monitor's name as the check's slug);
///   [`Healthchecks::create_missing`] adds `create=1`;
/// - UUID: `https://hc-ping.com/<uuid>[/start|/fail]?rid=…`, per monitor
///   with [`Healthchecks::uuid`]; a monitor with a UUID uses it in either
///   form;
/// - with [`Healthchecks::exit_status`], the end of a run is
///   `/<exit status>` (`/0`, `/1`, `/101`, `/130`) instead of success and
///   `/fail`.
#[derive(Clone)]
#[must_use]
pub struct Healthchecks {
    base: String,
    ping_key: Option<String>,
    uuids: HashMap<String, String>,
    exit_status: bool,
    create: bool,
}

/// healthchecks.io's ping host.
pub const HEALTHCHECKS_BASE: &str = "https://hc-ping.com";

/// Shows everything but the key.
impl std::fmt::Debug for Healthchecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Healthchecks")
            .field("base", &self.base)
            .field("ping_key", &self.ping_key.as_ref().map(|_| REDACTED))
            .field(
                "uuids",
                &self
                    .uuids
                    .keys()
                    .map(|m| (m, REDACTED))
                    .collect::<HashMap<_, _>>(),
            )
            .field("exit_status", &self.exit_status)
            .field("create", &self.create)
            .finish()
    }
}

impl Healthchecks {
    /// Slug URLs under the project's `ping_key`.
    pub fn slugs(ping_key: impl Into<String>) -> Self {
        Self {
            base: HEALTHCHECKS_BASE.to_owned(),
            ping_key: Some(ping_key.into()),
            uuids: HashMap::new(),
            exit_status: false,
            create: false,
        }
    }

    /// UUID URLs only: add each monitor with [`Healthchecks::uuid`].
    pub fn uuids() -> Self {
        Self {
            ping_key: None,
            ..Self::slugs("")
        }
    }

    /// The check UUID of `monitor`.
    pub fn uuid(mut self, monitor: impl Into<String>, uuid: impl Into<String>) -> Self {
        self.uuids.insert(monitor.into(), uuid.into());
        self
    }

    /// Another ping host (self-hosted Healthchecks: `https://hc.example.com/ping`).
    pub fn base_url(mut self, base: &str) -> Self {
        self.base = trim_base(base);
        self
    }

    /// Ends runs with `/<exit status>` instead of success and `/fail`.
    pub fn exit_status(mut self, on: bool) -> Self {
        self.exit_status = on;
        self
    }

    /// Adds `create=1` to slug URLs: Healthchecks creates a check that does
    /// not exist yet.
    pub fn create_missing(mut self, on: bool) -> Self {
        self.create = on;
        self
    }
}

impl PingFormat for Healthchecks {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        let mut url = match (self.uuids.get(&*event.monitor), &self.ping_key) {
            (Some(uuid), _) => format!("{}/{}", self.base, encode(uuid)),
            (None, Some(key)) => {
                format!("{}/{}/{}", self.base, encode(key), encode(&event.monitor))
            }
            (None, None) => return None,
        };
        match (event.status, self.exit_status) {
            (CheckinStatus::InProgress, _) => url.push_str("/start"),
            (_, true) => {
                let _ = write!(url, "/{}", event.exit_status.unwrap_or(0));
            }
            (CheckinStatus::Ok, false) => {}
            (CheckinStatus::Error, false) => url.push_str("/fail"),
        }
        let _ = write!(url, "?rid={}", event.run_id);
        if self.create && self.ping_key.is_some() && !self.uuids.contains_key(&*event.monitor) {
            url.push_str("&create=1");
        }
        Some(PingRequest::get(url))
    }
}

/// Cronitor's telemetry API:
/// `https://cronitor.link/p/<api key>/<monitor>?state=run|complete|fail&series=<run id>`,
/// with `status_code=<exit status>` and `metric=duration:<seconds>` when a
/// run ends, and `env=` when set.
#[derive(Clone)]
#[must_use]
pub struct Cronitor {
    base: String,
    api_key: String,
    env: Option<String>,
}

/// Cronitor's telemetry host.
pub const CRONITOR_BASE: &str = "https://cronitor.link";

/// Shows everything but the key.
impl std::fmt::Debug for Cronitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cronitor")
            .field("base", &self.base)
            .field("api_key", &REDACTED)
            .field("env", &self.env)
            .finish()
    }
}

impl Cronitor {
    /// Telemetry with `api_key` (a key with the `monitor:telemetry` scope).
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base: CRONITOR_BASE.to_owned(),
            api_key: api_key.into(),
            env: None,
        }
    }

    /// Another telemetry host.
    pub fn base_url(mut self, base: &str) -> Self {
        self.base = trim_base(base);
        self
    }

    /// The environment (`env=`), e.g. `production`.
    pub fn env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }
}

impl PingFormat for Cronitor {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        let state = match event.status {
            CheckinStatus::InProgress => "run",
            CheckinStatus::Ok => "complete",
            CheckinStatus::Error => "fail",
        };
        let mut url = format!(
            "{}/p/{}/{}?state={state}&series={}",
            self.base,
            encode(&self.api_key),
            encode(&event.monitor),
            event.run_id
        );
        if let Some(code) = event.exit_status {
            let _ = write!(url, "&status_code={code}");
        }
        if let Some(d) = event.duration {
            let _ = write!(url, "&metric=duration%3A{:.3}", d.as_secs_f64());
        }
        if let Some(env) = &self.env {
            let _ = write!(url, "&env={}", encode(env));
        }
        Some(PingRequest::get(url))
    }
}

/// Sentry Crons' HTTP check-in endpoint, from the project's DSN
/// `https://<public key>@<host>/<project id>`:
/// `https://<host>/api/<project id>/cron/<monitor>/<public key>/?status=in_progress|ok|error&check_in_id=<run id>`,
/// with `duration=<seconds>` when a run ends and `environment=` when set.
#[derive(Clone)]
#[must_use]
pub struct SentryCrons {
    endpoint: String,
    public_key: String,
    environment: Option<String>,
}

/// Shows everything but the key.
impl std::fmt::Debug for SentryCrons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryCrons")
            .field("endpoint", &self.endpoint)
            .field("public_key", &REDACTED)
            .field("environment", &self.environment)
            .finish()
    }
}

impl SentryCrons {
    /// From a DSN, `https://<public key>@<host>[:port][/path]/<project id>`.
    pub fn from_dsn(dsn: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidDsn(why.to_owned());
        let (scheme, rest) = dsn.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (credentials, location) = rest.split_once('@').ok_or_else(|| bad("no public key"))?;
        let public_key = credentials.split(':').next().unwrap_or_default();
        let location = location.trim_end_matches('/');
        let (host_path, project) = location
            .rsplit_once('/')
            .ok_or_else(|| bad("no project id"))?;
        if public_key.is_empty() || project.is_empty() || host_path.is_empty() {
            return Err(bad("expected <scheme>://<public key>@<host>/<project id>"));
        }
        if !project.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the project id is not a number"));
        }
        Ok(Self {
            endpoint: format!("{scheme}://{host_path}/api/{project}/cron"),
            public_key: public_key.to_owned(),
            environment: None,
        })
    }

    /// The environment of the check-ins (`environment=`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }
}

impl PingFormat for SentryCrons {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        let mut url = format!(
            "{}/{}/{}/?status={}&check_in_id={}",
            self.endpoint,
            encode(&event.monitor),
            encode(&self.public_key),
            event.status.as_str(),
            event.run_id
        );
        if let Some(d) = event.duration {
            let _ = write!(url, "&duration={:.3}", d.as_secs_f64());
        }
        if let Some(env) = &self.environment {
            let _ = write!(url, "&environment={}", encode(env));
        }
        Some(PingRequest::get(url))
    }
}

/// Any URL, with placeholders filled in (percent-encoded): `{monitor}`,
/// `{status}` (`in_progress`, `ok`, `error`, or the words given with
/// [`UrlTemplate::status_words`]), `{run_id}`, `{exit_status}` and
/// `{duration_ms}` (empty when a run starts).
///
/// `https://ping.example.com/{monitor}/{status}?run={run_id}`
///
/// Its `Debug` shows only the template's scheme and host: a key in the
/// path or query is not printed.
#[derive(Clone)]
#[must_use]
pub struct UrlTemplate {
    template: String,
    method: http::Method,
    words: [String; 3],
}

impl std::fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlTemplate")
            .field("template", &redacted_url(&self.template))
            .field("method", &self.method)
            .field("words", &self.words)
            .finish()
    }
}

impl UrlTemplate {
    /// A `GET` of `template`.
    pub fn new(template: impl Into<String>) -> Self {
        Self {
            template: template.into(),
            method: http::Method::GET,
            words: ["in_progress".into(), "ok".into(), "error".into()],
        }
    }

    /// Uses `method` (e.g. `POST`) instead of `GET`.
    pub fn method(mut self, method: http::Method) -> Self {
        self.method = method;
        self
    }

    /// The words `{status}` stands for: started, succeeded, failed.
    pub fn status_words(mut self, start: &str, ok: &str, error: &str) -> Self {
        self.words = [start.into(), ok.into(), error.into()];
        self
    }
}

impl PingFormat for UrlTemplate {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        let word = match event.status {
            CheckinStatus::InProgress => &self.words[0],
            CheckinStatus::Ok => &self.words[1],
            CheckinStatus::Error => &self.words[2],
        };
        let exit = event.exit_status.map(|c| c.to_string()).unwrap_or_default();
        let ms = event
            .duration
            .map(|d| d.as_millis().to_string())
            .unwrap_or_default();
        let url = self
            .template
            .replace("{monitor}", &encode(&event.monitor))
            .replace("{status}", &encode(word))
            .replace("{run_id}", &event.run_id.to_string())
            .replace("{exit_status}", &exit)
            .replace("{duration_ms}", &ms);
        Some(PingRequest {
            method: self.method.clone(),
            url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentry_dsn() {
        let s = SentryCrons::from_dsn("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(s.endpoint, "https://o1.ingest.sentry.io/api/42/cron");
        assert_eq!(s.public_key, "abc123");
        let s = SentryCrons::from_dsn("http://k:secret@localhost:9000/sentry/7").unwrap();
        assert_eq!(s.endpoint, "http://localhost:9000/sentry/api/7/cron");
        for bad in [
            "o1.ingest.sentry.io/42",
            "https://o1.ingest/42",
            "https://k@host/x",
            "https://k@host",
        ] {
            assert!(SentryCrons::from_dsn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("nightly report/2"), "nightly%20report%2F2");
        assert_eq!(encode("a-b_c.d~"), "a-b_c.d~");
    }

    #[test]
    fn debug_never_shows_keys() {
        let shown = [
            format!("{:?}", Healthchecks::slugs("pk-s3cr3t")),
            format!("{:?}", Healthchecks::uuids().uuid("nightly", "uuid-s3cr3t")),
            format!("{:?}", Cronitor::new("api-s3cr3t")),
            format!(
                "{:?}",
                SentryCrons::from_dsn("https://pub-s3cr3t@o1.ingest.sentry.io/42").unwrap()
            ),
            format!(
                "{:?}",
                UrlTemplate::new("https://user:pw-s3cr3t@ping.example.com/k-s3cr3t/{status}")
            ),
            format!(
                "{:?}",
                PingRequest::get("https://hc-ping.com/s3cr3t/nightly?rid=1".into())
            ),
            format!("{:?}", PingRequest::get("no-scheme-s3cr3t".into())),
        ];
        for text in shown {
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(text.contains(REDACTED), "{text}");
        }
        assert_eq!(
            redacted_url("http://user:pw@127.0.0.1:9000/key?x#y"),
            "http://127.0.0.1:9000/[REDACTED]"
        );
    }
}
