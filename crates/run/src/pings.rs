//! Check-in pings of one run, through `jobsight-checkin`'s sinks (TLS,
//! retries with backoff, `rid`/`series`/`check_in_id` pairing, each
//! service's own URL form and body).
//!
//! # Which services
//! Each service configured is pinged (several may be):
//!
//! | service | configured by | monitor |
//! |---|---|---|
//! | healthchecks.io, UUID | `--healthchecks-uuid` (`CHECK_UUID`) | the UUID |
//! | healthchecks.io, slug | `--ping-key` (`HC_PING_KEY`) | `--slug`, `--monitor`, `--name` |
//! | Cronitor | `--cronitor-key` (`CRONITOR_API_KEY`) | `--monitor`, `--name` |
//! | Sentry Crons | `--sentry-dsn` (`SENTRY_DSN`) | `--monitor`, `--name` |
//! | any | `--ping-url` (`JOBSIGHT_PING_URL`), by its form | from the URL, or as above |
//!
//! A service whose credentials come only from the environment and that has
//! no monitor name is left alone (a fleet-wide `HC_PING_KEY` does not make
//! every command a check); given on the command line, it is a usage error.
//!
//! # When pings go
//! - At start, `in_progress` (healthchecks `/start`, Cronitor `state=run`,
//!   Sentry `in_progress` with its `monitor_config` when `--schedule` is
//!   given), unless `--no-start-ping`. Nobody waits for it.
//! - At the end, the outcome with the exit status (healthchecks
//!   `/<exit status>`, Cronitor `state=complete|fail&status_code=`, Sentry
//!   `ok|error` with the duration) and the tail of the output as the body.
//!   So that a service sees a short run's start before its end, the
//!   outcome waits for the start's answer until [`START_HEAD_START`] after
//!   the start was sent (a quarter of the deadline at most); after that it
//!   goes at once, even while the start ping is still in flight or being
//!   retried (each service's sink sends two requests at a time).
//! - The outcome gets the deadline from the end of the command, retries
//!   included; then the process exits, whatever is still in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobsight_checkin::ping::{
    Cronitor, Delivery, Healthchecks, PingFormat, PingOptions, PingSink, Receipt, SentryCrons,
    UrlTemplate,
};
use jobsight_core::checkin::{
    CheckinEvent, CheckinPolicy, CheckinSink, CheckinStatus, RunId, Schedule,
};

use crate::cli::{Cli, UsageError};
use crate::notice::seconds;
use crate::ping_url::PingUrl;

/// First wait before a retry; doubled each time, up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Retries of one ping (within the deadline).
const RETRIES: u32 = 3;
/// How long after the start ping was sent the outcome may wait for its
/// answer: a service answers in a few round trips, a TLS handshake
/// included; one that takes longer has the start request anyway.
pub const START_HEAD_START: Duration = Duration::from_millis(250);

/// One service to ping.
struct Service {
    label: String,
    sink: PingSink,
    policy: Arc<CheckinPolicy>,
}

/// The pings of one run.
pub struct Pings {
    services: Vec<Service>,
    run_id: RunId,
    start_pings: bool,
    started: Vec<Receipt>,
    start_sent: Option<Instant>,
    deadline: Duration,
}

/// A start ping: answered, or still waited for.
enum Start {
    Answered(Delivery),
    Waiting(Receipt),
}

/// Pings still on their way.
pub struct Outcome {
    sent: Vec<(String, Receipt)>,
    started: Vec<(String, Start)>,
}

/// What the ping settings ask for, checked.
pub struct PingPlan {
    targets: Vec<Target>,
    policy: CheckinPolicy,
    start_pings: bool,
    deadline: Duration,
}

enum Target {
    Healthchecks(Healthchecks, String),
    Cronitor(Cronitor, String),
    Sentry(SentryCrons, String),
    Template(UrlTemplate, String),
}

impl PingPlan {
    /// The services `cli` configures, for the task `name`. `flags` names
    /// the options given on the command line (not from variables).
    pub fn from_cli(cli: &Cli, name: &str, flags: &[String]) -> Result<Self, UsageError> {
        let given = |id: &str| flags.iter().any(|f| f == id);
        let explicit_name = cli.name.clone();
        let monitor = cli
            .monitor
            .clone()
            .or_else(|| cli.slug.clone())
            .or(explicit_name);
        let mut policy = CheckinPolicy::job(name.to_owned());
        if let Some(expression) = &cli.schedule {
            let schedule = Schedule::cron(expression, &cli.tz).map_err(|e| {
                UsageError(format!(
                    "--schedule / --tz (or JOBSIGHT_SCHEDULE / CRON_TZ): {e}"
                ))
            })?;
            policy = policy.schedule(schedule);
        }
        if let Some(grace) = cli.grace {
            policy = policy.grace(grace);
        }
        if let Some(max) = cli.max_runtime {
            policy = policy.max_runtime(max);
        }
        let needs_monitor = |option: &str, var: &str| {
            UsageError(format!(
                "{option} (or {var}) needs a monitor name: give --monitor (or JOBSIGHT_MONITOR) or --name"
            ))
        };
        let mut targets = Vec::new();
        let hc_base = cli.healthchecks_url.as_str();
        if let Some(uuid) = &cli.healthchecks_uuid {
            let format = Healthchecks::uuids()
                .base_url(hc_base)
                .uuid(name, uuid.clone())
                .exit_status(true);
            targets.push(Target::Healthchecks(format, name.to_owned()));
        }
        match (&cli.ping_key, &cli.slug, &monitor) {
            (Some(key), _, Some(monitor)) if cli.healthchecks_uuid.is_none() => {
                let format = Healthchecks::slugs(key.clone())
                    .base_url(hc_base)
                    .exit_status(true)
                    .create_missing(cli.create || cli.schedule.is_some());
                targets.push(Target::Healthchecks(format, monitor.clone()));
            }
            (None, Some(_), _) if cli.healthchecks_uuid.is_none() => {
                return Err(UsageError(
                    "--slug (or CHECK_SLUG) needs the project's ping key: --ping-key (or HC_PING_KEY)"
                        .to_owned(),
                ));
            }
            (Some(_), _, None) if given("ping_key") => {
                return Err(needs_monitor("--ping-key", "HC_PING_KEY"));
            }
            _ => {}
        }
        if let Some(key) = &cli.cronitor_key {
            match &monitor {
                Some(monitor) => {
                    let mut format = Cronitor::new(key.clone()).base_url(&cli.cronitor_url);
                    if let Some(env) = &cli.environment {
                        format = format.env(env.clone());
                    }
                    targets.push(Target::Cronitor(format, monitor.clone()));
                }
                None if given("cronitor_key") => {
                    return Err(needs_monitor("--cronitor-key", "CRONITOR_API_KEY"));
                }
                None => {}
            }
        }
        if let Some(dsn) = &cli.sentry_dsn {
            match &monitor {
                Some(monitor) => targets.push(Target::Sentry(sentry(dsn, cli)?, monitor.clone())),
                None if given("sentry_dsn") => {
                    return Err(needs_monitor("--sentry-dsn", "SENTRY_DSN"));
                }
                None => {}
            }
        }
        if let Some(url) = &cli.ping_url {
            let bad = |why: String| UsageError(format!("--ping-url (or JOBSIGHT_PING_URL): {why}"));
            let target = match PingUrl::parse(url).map_err(bad)? {
                PingUrl::HealthchecksUuid { base, uuid } => Target::Healthchecks(
                    Healthchecks::uuids()
                        .base_url(&base)
                        .uuid(name, uuid)
                        .exit_status(true),
                    name.to_owned(),
                ),
                PingUrl::HealthchecksSlug { base, key, slug } => Target::Healthchecks(
                    Healthchecks::slugs(key)
                        .base_url(&base)
                        .exit_status(true)
                        .create_missing(cli.create || cli.schedule.is_some()),
                    slug,
                ),
                PingUrl::Cronitor { base, key, monitor } => {
                    let mut format = Cronitor::new(key).base_url(&base);
                    if let Some(env) = &cli.environment {
                        format = format.env(env.clone());
                    }
                    Target::Cronitor(format, monitor)
                }
                PingUrl::Sentry {
                    dsn,
                    monitor: from_url,
                } => {
                    let Some(monitor) = from_url.or_else(|| monitor.clone()) else {
                        return Err(bad(
                            "a Sentry DSN needs a monitor name: give --monitor or --name".into(),
                        ));
                    };
                    Target::Sentry(sentry(&dsn, cli)?, monitor)
                }
                PingUrl::Template(template) => Target::Template(
                    UrlTemplate::new(template).method(http::Method::POST),
                    monitor.clone().unwrap_or_else(|| name.to_owned()),
                ),
                PingUrl::Plain { base, last } => Target::Template(
                    UrlTemplate::new(format!("{base}/{last}/{{status}}{{exit_status}}"))
                        .method(http::Method::POST)
                        .status_words("start", "", ""),
                    name.to_owned(),
                ),
            };
            targets.push(target);
        }
        Ok(PingPlan {
            targets,
            policy,
            start_pings: !cli.no_start_ping,
            deadline: cli.shutdown_timeout,
        })
    }

    /// Whether no service is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Starts a sender per service and checks each monitor name against
    /// the service's rules (a usage error when it does not fit).
    pub fn start(self) -> Result<Pings, UsageError> {
        let options = PingOptions::default()
            .timeout(self.deadline)
            .retries(RETRIES)
            .backoff(BACKOFF, MAX_BACKOFF)
            .concurrency(2)
            .coalesce(false)
            .queue_capacity(4);
        let mut services = Vec::new();
        for target in self.targets {
            let (label, monitor, sink) = match target {
                Target::Healthchecks(f, m) => ("healthchecks.io", m, spawn(f, &options)?),
                Target::Cronitor(f, m) => ("Cronitor", m, spawn(f, &options)?),
                Target::Sentry(f, m) => ("Sentry", m, spawn(f, &options)?),
                Target::Template(f, m) => ("the ping URL", m, spawn(f, &options)?),
            };
            let policy = self.policy.clone().monitor_name(monitor);
            sink.check_policy(&policy)
                .map_err(|why| UsageError(format!("monitor name for {label}: {why}")))?;
            services.push(Service {
                label: label.to_owned(),
                sink,
                policy: Arc::new(policy),
            });
        }
        Ok(Pings {
            services,
            run_id: RunId::new(),
            start_pings: self.start_pings,
            started: Vec::new(),
            start_sent: None,
            deadline: self.deadline,
        })
    }
}

fn sentry(dsn: &str, cli: &Cli) -> Result<SentryCrons, UsageError> {
    let mut format = SentryCrons::from_dsn(dsn)
        .map_err(|e| UsageError(format!("--sentry-dsn (or SENTRY_DSN): {e}")))?;
    if let Some(env) = &cli.environment {
        format = format.environment(env.clone());
    }
    Ok(format)
}

fn spawn(format: impl PingFormat, options: &PingOptions) -> Result<PingSink, UsageError> {
    PingSink::spawn_thread(format, options.clone())
        .map_err(|e| UsageError(format!("check-in pings: {e}")))
}

impl Pings {
    /// Sends the start pings (nobody waits for them).
    pub fn start(&mut self) {
        if !self.start_pings {
            return;
        }
        self.start_sent = Some(Instant::now());
        for service in &self.services {
            let event = CheckinEvent::new(
                Arc::clone(&service.policy),
                self.run_id,
                CheckinStatus::InProgress,
            );
            self.started.push(service.sink.send(&event));
        }
    }

    /// Sends the outcome of the run: `exit_status` 0 is a success; the
    /// message is the body.
    pub fn finish(self, exit_status: i32, duration: Duration, message: Option<String>) -> Outcome {
        let hold = self
            .start_sent
            .map(|sent| (sent + START_HEAD_START).min(Instant::now() + self.deadline / 4));
        let started: Vec<(String, Start)> = self
            .services
            .iter()
            .map(|s| s.label.clone())
            .zip(self.started)
            .map(|(label, receipt)| {
                let left = hold.map_or(Duration::ZERO, |h| {
                    h.saturating_duration_since(Instant::now())
                });
                match receipt.wait(left) {
                    Delivery::Pending => (label, Start::Waiting(receipt)),
                    answered => (label, Start::Answered(answered)),
                }
            })
            .collect();
        let status = if exit_status == 0 {
            CheckinStatus::Ok
        } else {
            CheckinStatus::Error
        };
        let message: Option<Arc<str>> = message.map(Arc::from);
        let mut sent = Vec::new();
        for service in &self.services {
            let mut event = CheckinEvent::new(Arc::clone(&service.policy), self.run_id, status)
                .with_duration(duration)
                .with_exit_status(exit_status);
            if let Some(message) = &message {
                event = event.with_message(Arc::clone(message));
            }
            sent.push((service.label.clone(), service.sink.send(&event)));
        }
        Outcome { sent, started }
    }
}

impl Outcome {
    /// Waits for the outcome pings until `until`; returns what failed, in
    /// plain words.
    pub fn wait(self, until: Instant, deadline: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        for (label, receipt) in &self.sent {
            let left = until.saturating_duration_since(Instant::now());
            match receipt.wait(left) {
                Delivery::Failed(why) => {
                    problems.push(format!(
                        "the outcome ping to {label} failed ({})",
                        plain(&why)
                    ));
                }
                Delivery::Pending => problems.push(format!(
                    "the outcome ping to {label} got no answer within {}",
                    seconds(deadline)
                )),
                Delivery::Dropped => {
                    problems.push(format!("the outcome ping to {label} could not be sent"));
                }
                _ => {}
            }
        }
        for (label, start) in self.started {
            let delivery = match start {
                Start::Answered(delivery) => delivery,
                Start::Waiting(receipt) => receipt.wait(Duration::ZERO),
            };
            if let Delivery::Failed(why) = delivery {
                problems.push(format!(
                    "the start ping to {label} failed ({})",
                    plain(&why)
                ));
            }
        }
        problems
    }
}

/// A sender's reason in plain words, without any URL.
fn plain(why: &str) -> String {
    let lower = why.to_ascii_lowercase();
    if lower.contains("refused") {
        "connection refused".to_owned()
    } else if lower.contains("dns") || lower.contains("lookup") {
        "host name not found".to_owned()
    } else if lower.contains("certificate") || lower.contains("tls") {
        "TLS failed".to_owned()
    } else if lower.contains("within") || lower.contains("timed out") || lower.contains("timeout") {
        "no answer in time".to_owned()
    } else if let Some(i) = why.find("HTTP ") {
        why[i..].chars().take(40).collect()
    } else {
        "request failed".to_owned()
    }
}
