//! The request each ping service expects for a check-in event.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jobsight_core::checkin::{CheckinEvent, CheckinPolicy, CheckinStatus, Schedule};

use super::slug;
use crate::error::Error;

/// Turns a check-in event into the request a ping service expects.
/// Implemented by [`Healthchecks`], [`Cronitor`], [`SentryCrons`] and
/// [`UrlTemplate`]; implement it for a service of your own.
pub trait PingFormat: Send + Sync + 'static {
    /// The request for `event`, or `None` to send nothing for it (a monitor
    /// this format has no address for).
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest>;

    /// Whether this format can address the monitor of `policy` (the
    /// service's slug rules): `Err` says why not, naming what to change.
    /// [`PingSink`](super::PingSink) answers
    /// `CheckinSink::check_policy` with it, so `Checkins::validate` refuses
    /// the policy. Accepts every policy unless a format says otherwise.
    fn check_policy(&self, policy: &CheckinPolicy) -> Result<(), String> {
        let _ = policy;
        Ok(())
    }

    /// Whether the format's own settings are usable; checked when the sink
    /// starts ([`PingSink::spawn`](super::PingSink::spawn)).
    fn check_settings(&self) -> Result<(), String> {
        Ok(())
    }

    /// Told what became of the request for `event`, once it is final (after
    /// retries and redirects): a format that learns from answers (a body
    /// limit, whether a monitor's configuration reached the service) does
    /// it here.
    fn answered(&self, event: &CheckinEvent, answer: &PingAnswer) {
        let _ = (event, answer);
    }

    /// How many check-ins a minute the service takes for one monitor
    /// before it drops or refuses them; `None` for no known limit. The sink
    /// coalesces what goes beyond it (see [`super`]).
    fn per_minute_limit(&self) -> Option<u32> {
        None
    }
}

/// A format chosen at run time (from a command line or a configuration
/// file): `Box<dyn PingFormat>` is a format too.
impl<F: PingFormat + ?Sized> PingFormat for Box<F> {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        (**self).request(event)
    }
    fn check_policy(&self, policy: &CheckinPolicy) -> Result<(), String> {
        (**self).check_policy(policy)
    }
    fn check_settings(&self) -> Result<(), String> {
        (**self).check_settings()
    }
    fn answered(&self, event: &CheckinEvent, answer: &PingAnswer) {
        (**self).answered(event, answer)
    }
    fn per_minute_limit(&self) -> Option<u32> {
        (**self).per_minute_limit()
    }
}

/// What became of a request, as a format sees it in
/// [`PingFormat::answered`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PingAnswer {
    /// The service accepted it (a 2xx answer, redirects followed).
    pub accepted: bool,
    /// The last HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The `Ping-Body-Limit` header of the answer, in bytes (Healthchecks).
    pub body_limit: Option<usize>,
}

/// One HTTP request: method, absolute URL and an optional body.
///
/// Its `Debug` shows only the URL's scheme and host: ping URLs carry their
/// key in the path or query.
#[derive(Clone, PartialEq, Eq)]
pub struct PingRequest {
    /// The method: `GET` without a body, `POST` with one.
    pub method: http::Method,
    /// The absolute URL.
    pub url: String,
    /// The body, if any.
    pub body: Option<PingBody>,
}

/// A request body and its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingBody {
    /// The `Content-Type` header (`text/plain; charset=utf-8`,
    /// `application/json`).
    pub content_type: &'static str,
    /// The bytes.
    pub data: Vec<u8>,
}

impl PingRequest {
    /// A `GET` of `url`.
    pub fn get(url: String) -> Self {
        PingRequest {
            method: http::Method::GET,
            url,
            body: None,
        }
    }

    /// A `POST` of `body` to `url`.
    pub fn post(url: String, body: PingBody) -> Self {
        PingRequest {
            method: http::Method::POST,
            url,
            body: Some(body),
        }
    }
}

impl std::fmt::Debug for PingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingRequest")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .field("body", &self.body.as_ref().map(|b| b.data.len()))
            .finish()
    }
}

/// The exit status a run's end is reported with: `0` for `ok` whatever the
/// runner said, and for `error` the run's status when it is 1–255, `1` when
/// it is 0 or negative (an error is never reported as success), `255` above
/// 255 (what the services accept: healthchecks.io answers 400 above 255).
pub fn exit_code(status: CheckinStatus, exit_status: Option<i32>) -> u8 {
    match (status, exit_status) {
        (CheckinStatus::Ok, _) | (CheckinStatus::InProgress, _) => 0,
        (CheckinStatus::Error, Some(code @ 1..=255)) => code as u8,
        (CheckinStatus::Error, Some(code)) if code > 255 => 255,
        (CheckinStatus::Error, _) => 1,
    }
}

/// The last at most `limit` bytes of `text`, cut at a character boundary;
/// when something was cut, a line saying how much replaces the start.
pub fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let marker = |cut: usize| format!("[{cut} bytes cut]\n");
    let room = limit.saturating_sub(marker(text.len()).len());
    let mut start = text.len() - room;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let mut out = marker(start);
    if out.len() > limit {
        out.truncate(limit);
        return out;
    }
    out.push_str(&text[start..]);
    out
}

/// This machine's host name, for Cronitor's `host`: the kernel's
/// (`/proc/sys/kernel/hostname`), else `HOSTNAME`.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
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
/// - slug: `https://hc-ping.com/<ping-key>/<slug>[/start|/fail]?rid=…`
///   (the project's ping key, the monitor's name as a slug: see
///   [`super::slug`], `NightlyReport` → `nightlyreport`);
///   [`Healthchecks::create_missing`] adds `create=1`;
/// - UUID: `https://hc-ping.com/<uuid>[/start|/fail]?rid=…`, per monitor
///   with [`Healthchecks::uuid`] (lowercased); a monitor with a UUID uses
///   it in either form;
/// - with [`Healthchecks::exit_status`], the end of a run is
///   `/<exit status>` (`/0`, `/1`, `/101`, `/130`) instead of success and
///   `/fail`, as [`exit_code`] says (an error is never `/0`).
///
/// Every ping is a `POST` (Healthchecks takes `HEAD`, `GET` and `POST`; a
/// check set to take only `POST` ignores the others while answering 200):
/// the end of a run carries the event's message (the error, a command's
/// output) as a `text/plain` body, its last bytes when it is longer than
/// the body limit — 100 000 bytes on hc-ping.com, 10 000 elsewhere (a
/// self-hosted instance's default), lowered to what the service announces
/// in its `Ping-Body-Limit` answer header.
#[derive(Clone)]
#[must_use]
pub struct Healthchecks {
    base: String,
    ping_key: Option<String>,
    uuids: HashMap<String, String>,
    bad_uuid: Option<String>,
    exit_status: bool,
    create: bool,
    body_limit: Option<usize>,
    announced: Arc<AtomicUsize>,
    per_minute: Option<u32>,
}

/// healthchecks.io's ping host.
pub const HEALTHCHECKS_BASE: &str = "https://hc-ping.com";

/// The body healthchecks.io (hosted) keeps, in bytes.
pub const HEALTHCHECKS_HOSTED_BODY_LIMIT: usize = 100_000;

/// The body a self-hosted Healthchecks keeps by default, in bytes.
pub const HEALTHCHECKS_SELF_HOSTED_BODY_LIMIT: usize = 10_000;

/// healthchecks.io's rate limit on pings of one check, a minute (hosted).
pub const HEALTHCHECKS_PER_MINUTE: u32 = 5;

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
            .field("body_limit", &self.limit())
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
            bad_uuid: None,
            exit_status: false,
            create: false,
            body_limit: None,
            announced: Arc::new(AtomicUsize::new(usize::MAX)),
            per_minute: None,
        }
    }

    /// UUID URLs only: add each monitor with [`Healthchecks::uuid`].
    pub fn uuids() -> Self {
        Self {
            ping_key: None,
            ..Self::slugs("")
        }
    }

    /// The check UUID of `monitor`, lowercased (healthchecks.io answers 404
    /// to an uppercase one). A value that is not a UUID makes
    /// [`PingSink::spawn`](super::PingSink::spawn) fail.
    pub fn uuid(mut self, monitor: impl Into<String>, uuid: impl Into<String>) -> Self {
        let monitor = monitor.into();
        let uuid = uuid.into();
        match slug::normalize_uuid(&uuid) {
            Ok(uuid) => {
                self.uuids.insert(monitor, uuid);
            }
            Err(_) => {
                self.bad_uuid.get_or_insert(monitor);
            }
        }
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

    /// The largest body sent, in bytes. Defaults to 100 000 on hc-ping.com
    /// and 10 000 elsewhere; a lower `Ping-Body-Limit` from the service
    /// wins.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Pings a minute per check the service takes (see the rate limits in
    /// [`super`]). Defaults to 5 on hc-ping.com and none elsewhere (a
    /// self-hosted instance has no such limit unless its operator set one).
    pub fn per_minute(mut self, pings: u32) -> Self {
        self.per_minute = Some(pings.max(1));
        self
    }

    fn limit(&self) -> usize {
        let ours = self
            .body_limit
            .unwrap_or(if self.base == HEALTHCHECKS_BASE {
                HEALTHCHECKS_HOSTED_BODY_LIMIT
            } else {
                HEALTHCHECKS_SELF_HOSTED_BODY_LIMIT
            });
        ours.min(self.announced.load(Ordering::Relaxed))
    }

    /// The path of `monitor` after the base: its UUID, or key and slug.
    fn address(&self, monitor: &str) -> Result<String, String> {
        match (self.uuids.get(monitor), &self.ping_key) {
            (Some(uuid), _) => Ok(uuid.clone()),
            (None, Some(key)) => Ok(format!(
                "{}/{}",
                encode(key),
                slug::healthchecks_slug(monitor)?
            )),
            (None, None) => Err(format!(
                "no healthchecks.io UUID for monitor `{monitor}`: add it with `Healthchecks::uuid`"
            )),
        }
    }
}

impl PingFormat for Healthchecks {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        let mut url = format!("{}/{}", self.base, self.address(&event.monitor).ok()?);
        match (event.status, self.exit_status) {
            (CheckinStatus::InProgress, _) => url.push_str("/start"),
            (status, true) => {
                let _ = write!(url, "/{}", exit_code(status, event.exit_status));
            }
            (CheckinStatus::Ok, false) => {}
            (CheckinStatus::Error, false) => url.push_str("/fail"),
        }
        let _ = write!(url, "?rid={}", event.run_id);
        if self.create && self.ping_key.is_some() && !self.uuids.contains_key(&*event.monitor) {
            url.push_str("&create=1");
        }
        let text = match (&event.message, event.status) {
            (Some(m), CheckinStatus::Ok | CheckinStatus::Error) => tail(m, self.limit()),
            _ => String::new(),
        };
        Some(PingRequest::post(
            url,
            PingBody {
                content_type: TEXT,
                data: text.into_bytes(),
            },
        ))
    }

    /// Refuses a monitor name that gives no slug. A monitor with neither a
    /// UUID nor a ping key is accepted: it is not pinged (counted in
    /// `PingStats::skipped`), as a registry may hold policies for other
    /// sinks only.
    fn check_policy(&self, policy: &CheckinPolicy) -> Result<(), String> {
        match (self.uuids.contains_key(policy.monitor()), &self.ping_key) {
            (false, Some(_)) => slug::healthchecks_slug(policy.monitor()).map(|_| ()),
            _ => Ok(()),
        }
    }

    fn check_settings(&self) -> Result<(), String> {
        match &self.bad_uuid {
            Some(monitor) => Err(format!(
                "Healthchecks::uuid for monitor `{monitor}`: not a check UUID (expected 8-4-4-4-12 hex digits)"
            )),
            None => Ok(()),
        }
    }

    fn answered(&self, _event: &CheckinEvent, answer: &PingAnswer) {
        if let Some(limit) = answer.body_limit {
            self.announced.store(limit, Ordering::Relaxed);
        }
    }

    fn per_minute_limit(&self) -> Option<u32> {
        self.per_minute
            .or((self.base == HEALTHCHECKS_BASE).then_some(HEALTHCHECKS_PER_MINUTE))
    }
}

/// `text/plain` in UTF-8.
const TEXT: &str = "text/plain; charset=utf-8";

/// Cronitor's telemetry API:
/// `https://cronitor.link/p/<api key>/<monitor>?state=run|complete|fail&series=<run id>&host=<host>`,
/// with `status_code=<exit status>` (see [`exit_code`]),
/// `metric=duration:<seconds>` and `message=` (the event's message, its
/// last 2000 characters) when a run ends, and `env=` when set. All in the
/// query of a `GET`, the form Cronitor documents.
#[derive(Clone)]
#[must_use]
pub struct Cronitor {
    base: String,
    api_key: String,
    env: Option<String>,
    host: Option<String>,
}

/// Cronitor's telemetry host.
pub const CRONITOR_BASE: &str = "https://cronitor.link";

/// The longest `message` Cronitor takes, in characters.
pub const CRONITOR_MESSAGE_MAX: usize = 2000;

/// Shows everything but the key.
impl std::fmt::Debug for Cronitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cronitor")
            .field("base", &self.base)
            .field("api_key", &REDACTED)
            .field("env", &self.env)
            .field("host", &self.host)
            .finish()
    }
}

impl Cronitor {
    /// Telemetry with `api_key` (a key with the `monitor:telemetry` scope),
    /// `host` set to this machine's host name.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base: CRONITOR_BASE.to_owned(),
            api_key: api_key.into(),
            env: None,
            host: host_name(),
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

    /// The host reported (`host=`); defaults to this machine's host name.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
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
        if event.status != CheckinStatus::InProgress {
            let _ = write!(
                url,
                "&status_code={}",
                exit_code(event.status, event.exit_status)
            );
        }
        if let Some(d) = event.duration {
            let _ = write!(url, "&metric=duration%3A{:.3}", d.as_secs_f64());
        }
        if let Some(env) = &self.env {
            let _ = write!(url, "&env={}", encode(env));
        }
        if let Some(host) = &self.host {
            let _ = write!(url, "&host={}", encode(host));
        }
        if let Some(message) = event.message.as_deref().filter(|m| !m.is_empty()) {
            let skip = message.chars().count().saturating_sub(CRONITOR_MESSAGE_MAX);
            let start = message.char_indices().nth(skip).map_or(0, |(i, _)| i);
            let _ = write!(url, "&message={}", encode(&message[start..]));
        }
        Some(PingRequest::get(url))
    }
}

/// Sentry Crons' HTTP check-in endpoint, from the project's DSN
/// `https://<public key>@<host>/<project id>`:
/// `https://<host>/api/<project id>/cron/<slug>/<public key>/`. The slug is
/// the monitor's name slugified as Sentry does (see [`super::slug`]).
///
/// - A check-in of a monitor whose policy has a schedule, the first of the
///   process or the first after the policy changed (and each one until the
///   service accepted one), is a `POST` of JSON: `check_in_id`, `status`,
///   `duration` (seconds), `environment`, and `monitor_config` built from
///   the policy — `schedule` (`{"type": "crontab", "value": …}` or
///   `{"type": "interval", "value": n, "unit": "minute"|"hour"|"day"|"week"}`),
///   `checkin_margin` (the grace, in whole minutes, rounded up, at least 1),
///   `max_runtime` (minutes, likewise), `timezone` (a cron schedule's) and
///   the thresholds when set. Sentry creates or updates the monitor from
///   it; without it, check-ins of a monitor that does not exist are
///   dropped.
/// - Every other check-in is a `GET` with
///   `?status=in_progress|ok|error&check_in_id=<run id>`, `duration=` when
///   a run ends and `environment=` when set.
///
/// Sentry's ingestion (Relay) answers 202 to any well-formed check-in:
/// "sent" means accepted by the relay, not that a monitor recorded it.
#[derive(Clone)]
#[must_use]
pub struct SentryCrons {
    endpoint: String,
    public_key: String,
    environment: Option<String>,
    failure_issue_threshold: Option<u32>,
    recovery_threshold: Option<u32>,
    upsert: bool,
    configured: Arc<Mutex<HashMap<Arc<str>, Arc<CheckinPolicy>>>>,
}

/// Sentry's rate limit on check-ins of one monitor and environment, a
/// minute.
pub const SENTRY_PER_MINUTE: u32 = 6;

/// The longest environment name Sentry keeps.
pub const SENTRY_ENVIRONMENT_MAX: usize = 64;

/// Sentry's largest `checkin_margin` and `max_runtime`, in minutes (28 days).
pub const SENTRY_MAX_MINUTES: u64 = 40_320;

/// Shows everything but the key.
impl std::fmt::Debug for SentryCrons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryCrons")
            .field("endpoint", &self.endpoint)
            .field("public_key", &REDACTED)
            .field("environment", &self.environment)
            .field("failure_issue_threshold", &self.failure_issue_threshold)
            .field("recovery_threshold", &self.recovery_threshold)
            .field("upsert", &self.upsert)
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
            failure_issue_threshold: None,
            recovery_threshold: None,
            upsert: true,
            configured: Arc::default(),
        })
    }

    /// The environment of the check-ins (`environment`). Sentry keeps at
    /// most 64 characters, without spaces, `/` or line breaks: another
    /// value makes [`PingSink::spawn`](super::PingSink::spawn) fail.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// `failure_issue_threshold` of the monitor configuration: failed
    /// check-ins in a row before Sentry opens an issue. Unset by default
    /// (Sentry's default, 1).
    pub fn failure_issue_threshold(mut self, n: u32) -> Self {
        self.failure_issue_threshold = Some(n);
        self
    }

    /// `recovery_threshold` of the monitor configuration: successful
    /// check-ins in a row before Sentry resolves the issue. Unset by default
    /// (Sentry's default, 1).
    pub fn recovery_threshold(mut self, n: u32) -> Self {
        self.recovery_threshold = Some(n);
        self
    }

    /// Whether check-ins carry the monitor configuration that creates or
    /// updates the monitor (see [`SentryCrons`]). Defaults to on; off leaves
    /// the monitor as configured in Sentry.
    pub fn upsert(mut self, on: bool) -> Self {
        self.upsert = on;
        self
    }

    /// Whether `event`'s policy still has to reach Sentry.
    fn needs_config(&self, event: &CheckinEvent) -> bool {
        if !self.upsert || event.policy.expected().is_none() {
            return false;
        }
        let configured = match self.configured.lock() {
            Ok(c) => c.get(&event.monitor).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&event.monitor).cloned(),
        };
        configured.is_none_or(|p| *p != *event.policy)
    }
}

/// The `monitor_config` of `policy`, or `None` without a schedule.
pub fn sentry_monitor_config(
    policy: &CheckinPolicy,
    failure_issue_threshold: Option<u32>,
    recovery_threshold: Option<u32>,
) -> Option<serde_json::Value> {
    let minutes = |d: std::time::Duration| d.as_secs().div_ceil(60).clamp(1, SENTRY_MAX_MINUTES);
    let mut config = serde_json::Map::new();
    match policy.expected()? {
        Schedule::Interval(every) => {
            let s = every.as_secs();
            let (value, unit) = match s {
                s if s >= 604_800 && s % 604_800 == 0 => (s / 604_800, "week"),
                s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
                s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
                s => (s.div_ceil(60).max(1), "minute"),
            };
            config.insert(
                "schedule".into(),
                serde_json::json!({"type": "interval", "value": value, "unit": unit}),
            );
        }
        Schedule::Cron(cron) => {
            config.insert(
                "schedule".into(),
                serde_json::json!({"type": "crontab", "value": cron.expression()}),
            );
            config.insert("timezone".into(), cron.time_zone().into());
        }
        _ => return None,
    }
    config.insert(
        "checkin_margin".into(),
        minutes(policy.grace_period()).into(),
    );
    if let Some(max) = policy.runtime_limit() {
        config.insert("max_runtime".into(), minutes(max).into());
    }
    if let Some(n) = failure_issue_threshold {
        config.insert("failure_issue_threshold".into(), n.into());
    }
    if let Some(n) = recovery_threshold {
        config.insert("recovery_threshold".into(), n.into());
    }
    Some(serde_json::Value::Object(config))
}

impl PingFormat for SentryCrons {
    fn request(&self, event: &CheckinEvent) -> Option<PingRequest> {
        let slug = slug::sentry_slug(&event.monitor).ok()?;
        let url = format!("{}/{}/{}/", self.endpoint, slug, encode(&self.public_key));
        let config = if self.needs_config(event) {
            sentry_monitor_config(
                &event.policy,
                self.failure_issue_threshold,
                self.recovery_threshold,
            )
        } else {
            None
        };
        if let Some(config) = config {
            let mut body = serde_json::json!({
                "check_in_id": event.run_id.to_string(),
                "status": event.status.as_str(),
                "monitor_config": config,
            });
            if let Some(d) = event.duration {
                body["duration"] = d.as_secs_f64().into();
            }
            if let Some(env) = &self.environment {
                body["environment"] = env.as_str().into();
            }
            return Some(PingRequest::post(
                url,
                PingBody {
                    content_type: "application/json",
                    data: body.to_string().into_bytes(),
                },
            ));
        }
        let mut url = format!(
            "{url}?status={}&check_in_id={}",
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

    fn check_policy(&self, policy: &CheckinPolicy) -> Result<(), String> {
        slug::sentry_slug(policy.monitor()).map(|_| ())
    }

    fn check_settings(&self) -> Result<(), String> {
        if let Some(env) = &self.environment {
            let chars = env.chars().count();
            if chars == 0 || chars > SENTRY_ENVIRONMENT_MAX {
                return Err(format!(
                    "SentryCrons::environment: `{env}` has {chars} characters; Sentry keeps environments of 1 to {SENTRY_ENVIRONMENT_MAX}"
                ));
            }
            if env.contains(|c: char| c.is_whitespace() || c == '/') || env == "None" {
                return Err(format!(
                    "SentryCrons::environment: `{}` has a space, `/` or a line break, or is `None`: Sentry refuses such environments",
                    env.escape_debug()
                ));
            }
        }
        for (name, value) in [
            ("failure_issue_threshold", self.failure_issue_threshold),
            ("recovery_threshold", self.recovery_threshold),
        ] {
            if value == Some(0) {
                return Err(format!("SentryCrons::{name}: must be at least 1"));
            }
        }
        Ok(())
    }

    fn answered(&self, event: &CheckinEvent, answer: &PingAnswer) {
        if answer.accepted && self.needs_config(event) {
            let mut configured = match self.configured.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            configured.insert(event.monitor.clone(), event.policy.clone());
        }
    }

    fn per_minute_limit(&self) -> Option<u32> {
        Some(SENTRY_PER_MINUTE)
    }
}

/// Any URL, with placeholders filled in (percent-encoded): `{monitor}`,
/// `{status}` (`in_progress`, `ok`, `error`, or the words given with
/// [`UrlTemplate::status_words`]), `{run_id}`, `{exit_status}` (see
/// [`exit_code`]) and `{duration_ms}` (both empty when a run starts).
///
/// `https://ping.example.com/{monitor}/{status}?run={run_id}`
///
/// A `POST` template sends the event's message as a `text/plain` body
/// (empty when there is none).
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
        let exit = match event.status {
            CheckinStatus::InProgress => String::new(),
            status => exit_code(status, event.exit_status).to_string(),
        };
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
        let body = (self.method == http::Method::POST).then(|| PingBody {
            content_type: TEXT,
            data: event
                .message
                .as_deref()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
        });
        Some(PingRequest {
            method: self.method.clone(),
            url,
            body,
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
    fn tails_keep_the_end_within_the_limit() {
        assert_eq!(tail("short", 10), "short");
        let long = format!("{}END", "é".repeat(100));
        for limit in [0, 5, 20, 64, 150] {
            let cut = tail(&long, limit);
            assert!(cut.len() <= limit, "{limit}: {}", cut.len());
            if limit >= 20 {
                assert!(cut.ends_with("END") && cut.starts_with('['), "{cut}");
            }
        }
    }

    #[test]
    fn exit_codes_follow_the_status() {
        use CheckinStatus::{Error, Ok};
        assert_eq!(exit_code(Ok, Some(3)), 0);
        assert_eq!(exit_code(Error, Some(0)), 1);
        assert_eq!(exit_code(Error, None), 1);
        assert_eq!(exit_code(Error, Some(-9)), 1);
        assert_eq!(exit_code(Error, Some(256)), 255);
        assert_eq!(exit_code(Error, Some(130)), 130);
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
            format!(
                "{:?}",
                Healthchecks::uuids().uuid("nightly", "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278")
            )
            .replace("5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278", "s3cr3t"),
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
