//! [`PingSink`]: sends check-ins to a ping service from a background task.
//!
//! The job's thread only puts the event into a bounded queue
//! ([`PingOptions::queue_capacity`]); a full queue drops the event and
//! counts it ([`PingStats::dropped`]). A background tokio task sends the
//! pings — by default one after the other, in order (a run's start before
//! its end); [`PingOptions::concurrency`] lets a one-shot process send a
//! run's end while its start is still in flight — each with a timeout
//! ([`PingOptions::timeout`]), and retries connection errors, timeouts, 429
//! and 5xx answers with exponential backoff ([`PingOptions::retries`],
//! [`PingOptions::backoff`]). A slow or dead ping service therefore costs a
//! job one `try_send` and nothing more.
//!
//! A ping counts as sent only when the service answered 2xx: redirects are
//! followed (at most [`MAX_REDIRECTS`], method and body kept, never from
//! `https` to `http`), any other answer is a failure. Sentry's ingestion
//! answers 202 to every well-formed check-in, so for Sentry "sent" means
//! accepted by the relay.
//!
//! # Rate limits
//! healthchecks.io takes about 5 pings a minute per check and Sentry 6
//! check-ins a minute per monitor and environment; beyond that they refuse
//! (429) or drop them. A job that runs faster would lose most of its
//! pings, so the sink **coalesces** per monitor
//! ([`PingFormat::per_minute_limit`]): within a minute's budget every
//! check-in goes out; beyond it, starts are left out and of the run ends
//! waiting for the budget only the newest is sent (a failure is kept over
//! later successes until it went out), as soon as the budget allows. Each
//! event left out is counted in [`PingStats::coalesced`]. Turn it off with
//! [`PingOptions::coalesce`]. The healthchecks.io limit applies to
//! hc-ping.com only, unless `Healthchecks::per_minute` says otherwise.
//!
//! # From a blocking program
//! [`PingSink::spawn_thread`] runs the sender on a thread of its own (no
//! runtime needed), [`PingSink::send`] queues one event and returns a
//! [`Receipt`] to wait on with a deadline, and [`PingSink::flush_blocking`]
//! waits for everything queued.

mod client;
pub mod format;
mod sender;
pub mod slug;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jobsight_core::checkin::{CheckinEvent, CheckinPolicy, CheckinSink};
use tokio::sync::mpsc;

use crate::error::Error;
pub use client::MAX_REDIRECTS;
use client::PingClient;
pub use format::{
    Cronitor, Healthchecks, PingAnswer, PingBody, PingFormat, PingRequest, SentryCrons, UrlTemplate,
};
use sender::Item;

/// Settings of a [`PingSink`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PingOptions {
    queue_capacity: usize,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    concurrency: usize,
    coalesce: bool,
}

impl Default for PingOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            concurrency: 1,
            coalesce: true,
        }
    }
}

impl PingOptions {
    /// Events waiting to be sent, at most; more are dropped. Defaults to 1024.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Per request, connecting, redirects and reading the answer included.
    /// Defaults to 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Tries after the first that failed with a connection error, a
    /// timeout, 429 or 5xx. Defaults to 3.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Wait before the first retry, doubled for each next one up to `max`.
    /// Defaults to 500 ms, up to 8 s.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Requests in flight at once, at least 1. Defaults to 1: pings go out
    /// one after the other, in order. More lets a run's end go out while
    /// its start still waits for a slow service (a one-shot process that
    /// must not lose its outcome to its start).
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// Whether check-ins beyond the service's rate limit are coalesced (see
    /// the module docs). Defaults to on.
    pub fn coalesce(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }
}

/// Counters of a [`PingSink`].
#[derive(Debug, Default)]
pub struct PingStats {
    queued: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    coalesced: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl PingStats {
    /// Events accepted into the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
    /// Pings the service accepted (a 2xx answer).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Retries made.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Pings given up on: refused, redirected too often, or still failing
    /// after every retry.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Events dropped because the queue was full (or the sender stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Events the format had no request for (a monitor without an address).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    /// Events left out to stay within the service's rate limit (see the
    /// module docs).
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }
    /// Why the last failed request failed (`HTTP 503 Service Unavailable`,
    /// a connection error, a timeout), if one failed; or, once, that
    /// check-ins of a monitor were coalesced.
    pub fn last_error(&self) -> Option<String> {
        match self.last_error.lock() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    fn set_error(&self, error: String) {
        match self.last_error.lock() {
            Ok(mut e) => *e = Some(error),
            Err(poisoned) => *poisoned.into_inner() = Some(error),
        }
    }
    fn done(&self) -> u64 {
        self.sent() + self.failed() + self.skipped() + self.coalesced()
    }
}

/// What became of one event given to [`PingSink::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The service answered 2xx.
    Accepted,
    /// Refused, or still failing after every retry: why.
    Failed(String),
    /// The format had no request for it (see [`PingStats::skipped`]).
    Skipped,
    /// Left out to stay within the service's rate limit.
    Coalesced,
    /// Not queued: the queue was full or the sender had stopped.
    Dropped,
    /// Not known yet when the wait ended.
    Pending,
}

/// The answer to come for one event: see [`PingSink::send`].
#[derive(Debug)]
#[must_use]
pub struct Receipt {
    answer: std::sync::mpsc::Receiver<Delivery>,
}

impl Receipt {
    fn ready(delivery: Delivery) -> Self {
        let (tx, answer) = std::sync::mpsc::sync_channel(1);
        let _ = tx.send(delivery);
        Receipt { answer }
    }

    /// Blocks until the event's fate is known or `deadline` passed
    /// ([`Delivery::Pending`]). Not for async code: use
    /// [`PingSink::flush`] there.
    pub fn wait(&self, deadline: Duration) -> Delivery {
        match self.answer.recv_timeout(deadline) {
            Ok(delivery) => delivery,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Delivery::Pending,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Delivery::Dropped,
        }
    }
}

/// A [`CheckinSink`] that pings a service: add it to the registry with
/// `Checkins::sink`, then call `Checkins::validate` to refuse at start the
/// policies whose monitor names the service cannot address.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use jobsight_checkin::ping::{Healthchecks, PingOptions, PingSink};
/// use jobsight_core::checkin::{CheckinPolicy, Checkins};
/// let pings = PingSink::spawn(Healthchecks::slugs("my-ping-key"), PingOptions::default())?;
/// let checkins = Checkins::new()
///     .policy(CheckinPolicy::job("NightlyReport")) // pinged as `nightlyreport`
///     .sink(pings.clone());
/// checkins.validate()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PingSink {
    queue: mpsc::Sender<Item>,
    stats: Arc<PingStats>,
    format: Arc<dyn PingFormat>,
}

impl std::fmt::Debug for PingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingSink")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl PingSink {
    /// Starts the sender task on the current tokio runtime. It stops when
    /// every clone of the sink is dropped and the queue is empty. Fails
    /// outside a runtime and when the format's settings are unusable
    /// ([`PingFormat::check_settings`]).
    pub fn spawn(format: impl PingFormat, options: PingOptions) -> Result<Self, Error> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime("PingSink"))?;
        let (sink, sender) = Self::prepare(format, options)?;
        runtime.spawn(sender.run());
        Ok(sink)
    }

    /// Starts the sender on a thread of its own, with a runtime of its own:
    /// for a program without tokio, or one that blocks. The thread ends when
    /// every clone of the sink is dropped and the queue is empty.
    pub fn spawn_thread(format: impl PingFormat, options: PingOptions) -> Result<Self, Error> {
        let (sink, sender) = Self::prepare(format, options)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Thread(e.to_string()))?;
        std::thread::Builder::new()
            .name("jobsight-pings".into())
            .spawn(move || runtime.block_on(sender.run()))
            .map_err(|e| Error::Thread(e.to_string()))?;
        Ok(sink)
    }

    fn prepare(
        format: impl PingFormat,
        options: PingOptions,
    ) -> Result<(Self, sender::Sender), Error> {
        format.check_settings().map_err(Error::PingSetting)?;
        let format: Arc<dyn PingFormat> = Arc::new(format);
        let client = PingClient::new(options.timeout)?;
        let (queue, events) = mpsc::channel(options.queue_capacity);
        let stats = Arc::new(PingStats::default());
        let sender = sender::Sender::new(events, format.clone(), client, options, stats.clone());
        Ok((
            Self {
                queue,
                stats,
                format,
            },
            sender,
        ))
    }

    /// The sink's counters.
    pub fn stats(&self) -> &PingStats {
        &self.stats
    }

    /// Queues `event` like [`CheckinSink::record`] and returns a receipt
    /// that tells, when waited on, whether the service accepted it.
    pub fn send(&self, event: &CheckinEvent) -> Receipt {
        let (tx, answer) = std::sync::mpsc::sync_channel(1);
        if self.enqueue(Item::new(event.clone(), Some(tx))) {
            Receipt { answer }
        } else {
            Receipt::ready(Delivery::Dropped)
        }
    }

    fn enqueue(&self, item: Item) -> bool {
        match self.queue.try_send(item) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Waits until every event queued so far was sent, given up on,
    /// skipped or coalesced, or `deadline` passed. Returns whether the queue
    /// was drained.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let target = self.stats.queued();
        let wait = async {
            while self.stats.done() < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }

    /// [`PingSink::flush`] for a blocking program: blocks the calling
    /// thread (never call it on a runtime's thread).
    pub fn flush_blocking(&self, deadline: Duration) -> bool {
        let target = self.stats.queued();
        let until = std::time::Instant::now() + deadline;
        while self.stats.done() < target {
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl CheckinSink for PingSink {
    fn record(&self, event: &CheckinEvent) {
        self.enqueue(Item::new(event.clone(), None));
    }

    fn check_policy(&self, policy: &CheckinPolicy) -> Result<(), String> {
        self.format.check_policy(policy)
    }
}
