//! [`PingSink`]: sends check-ins to a ping service from a background task.
//!
//! The job's thread only puts the event into a bounded queue
//! ([`PingOptions::queue_capacity`]); a full queue drops the event and
//! counts it ([`PingStats::dropped`]). A background tokio task sends the
//! pings one after the other, in order (a run's start before its end), each
//! with a timeout ([`PingOptions::timeout`]), and retries connection errors,
//! timeouts, 429 and 5xx answers with exponential backoff
//! ([`PingOptions::retries`], [`PingOptions::backoff`]). A slow or dead
//! ping service therefore costs a job one `try_send` and nothing more.

mod client;
pub mod format;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jobsight_core::checkin::{CheckinEvent, CheckinSink};
use tokio::sync::mpsc;

use crate::error::Error;
use client::{Answer, PingClient};
pub use format::{Cronitor, Healthchecks, PingFormat, PingRequest, SentryCrons, UrlTemplate};

/// Settings of a [`PingSink`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PingOptions {
    queue_capacity: usize,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
}

impl Default for PingOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl PingOptions {
    /// Events waiting to be sent, at most; more are dropped. Defaults to 1024.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Per request, connecting and reading the answer included. Defaults to
    /// 10 s.
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
    last_error: std::sync::Mutex<Option<String>>,
}

impl PingStats {
    /// Events accepted into the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
    /// Pings the service accepted.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Retries made.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Pings given up on: refused, or still failing after every retry.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Events dropped because the queue was full (or the sender stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Events the format had no URL for (a monitor without an address).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    /// Why the last failed request failed (`HTTP 503 Service Unavailable`,
    /// a connection error, a timeout), if one failed.
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
        self.sent() + self.failed() + self.skipped()
    }
}

/// A [`CheckinSink`] that pings a service: add it to the registry with
/// `Checkins::sink`.
///
/// ```no_run
/// # async fn run() -> Result<(), jobsight_checkin::Error> {
/// use jobsight_checkin::ping::{Healthchecks, PingOptions, PingSink};
/// use jobsight_core::checkin::{CheckinPolicy, Checkins};
/// let pings = PingSink::spawn(Healthchecks::slugs("my-ping-key"), PingOptions::default())?;
/// let checkins = Checkins::new()
///     .policy(CheckinPolicy::job("NightlyReport"))
///     .sink(pings.clone());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PingSink {
    queue: mpsc::Sender<CheckinEvent>,
    stats: Arc<PingStats>,
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
    /// every clone of the sink is dropped and the queue is empty.
    pub fn spawn(format: impl PingFormat, options: PingOptions) -> Result<Self, Error> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime("PingSink"))?;
        let client = PingClient::new(options.timeout)?;
        let (queue, events) = mpsc::channel(options.queue_capacity);
        let stats = Arc::new(PingStats::default());
        runtime.spawn(run(events, format, client, options, stats.clone()));
        Ok(Self { queue, stats })
    }

    /// The sink's counters.
    pub fn stats(&self) -> &PingStats {
        &self.stats
    }

    /// Waits until every event queued so far was sent, given up on or
    /// skipped, or `deadline` passed. Returns whether the queue was drained.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let target = self.stats.queued();
        let wait = async {
            while self.stats.done() < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

impl CheckinSink for PingSink {
    fn record(&self, event: &CheckinEvent) {
        match self.queue.try_send(event.clone()) {
            Ok(()) => self.stats.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

async fn run(
    mut events: mpsc::Receiver<CheckinEvent>,
    format: impl PingFormat,
    client: PingClient,
    options: PingOptions,
    stats: Arc<PingStats>,
) {
    while let Some(event) = events.recv().await {
        let Some(request) = format.request(&event) else {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut wait = options.backoff;
        let mut attempt = 0;
        loop {
            match client.send(&request).await {
                Answer::Accepted => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Answer::Retry(why) if attempt < options.retries => {
                    stats.set_error(why);
                    attempt += 1;
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(options.max_backoff);
                }
                Answer::Retry(why) | Answer::Refused(why) => {
                    stats.set_error(why);
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}
