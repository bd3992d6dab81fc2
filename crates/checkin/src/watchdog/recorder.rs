//! [`Recorder`]: the check-in sink that writes runs into Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jobsight_core::checkin::{CheckinEvent, CheckinSink, CheckinStatus};
use tokio::sync::mpsc;

use super::judge::ms;
use super::link::Link;

/// Most events written in one round trip.
const BATCH: usize = 64;

/// Counters of a [`Recorder`].
#[derive(Debug, Default)]
pub struct RecorderStats {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl RecorderStats {
    /// Events accepted into the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
    /// Events written to Redis.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Events dropped because the queue was full (Redis away for long).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Failed writes (each retried until it succeeds).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Events queued and not written yet.
    pub fn pending(&self) -> u64 {
        self.queued().saturating_sub(self.written())
    }
}

/// A [`CheckinSink`] that records this process's runs in Redis for the
/// watchdog: `in_progress` adds the run to `{prefix}:{monitor}:running`
/// (a sorted set scored by start time), its end removes it, and `ok` moves
/// `{prefix}:{monitor}:last_ok` forward. A background task writes the
/// events in batches; while Redis is away it keeps them (up to the queue's
/// capacity, then drops and counts) and retries with backoff. Times are
/// Redis's clock minus the event's age, measured on this machine's
/// monotonic clock: wall-clock skew between workers plays no part.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<CheckinEvent>,
    pub(crate) stats: Arc<RecorderStats>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Recorder {
    pub(crate) fn spawn(
        link: Arc<Link>,
        capacity: usize,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (queue, events) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(RecorderStats::default());
        runtime.spawn(write(link, events, stats.clone()));
        Recorder { queue, stats }
    }

    /// The recorder's counters.
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// Waits until every queued event is written, or `deadline` passes.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let wait = async {
            while self.stats.pending() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

impl CheckinSink for Recorder {
    fn record(&self, event: &CheckinEvent) {
        match self.queue.try_send(event.clone()) {
            Ok(()) => self.stats.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

async fn write(
    link: Arc<Link>,
    mut events: mpsc::Receiver<CheckinEvent>,
    stats: Arc<RecorderStats>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() {
            match events.recv().await {
                Some(event) => batch.push(event),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let mut wait = Duration::from_millis(100);
        loop {
            match write_batch(&link, &batch).await {
                Ok(()) => {
                    stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    break;
                }
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    link.reset().await;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

async fn write_batch(link: &Link, batch: &[CheckinEvent]) -> Result<(), redis::RedisError> {
    let mut conn = link.conn().await?;
    let now = link.now(&mut conn).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for event in batch {
        let at = now - ms(event.instant.elapsed());
        let running = link.key(&event.monitor, "running");
        let run = event.run_id.to_string();
        match event.status {
            CheckinStatus::InProgress => {
                pipe.cmd("ZADD").arg(&running).arg(at).arg(&run).ignore();
            }
            CheckinStatus::Ok => {
                pipe.cmd("ZREM").arg(&running).arg(&run).ignore();
                pipe.cmd("ZADD")
                    .arg(link.key(&event.monitor, "last_ok"))
                    .arg("GT")
                    .arg(at)
                    .arg("ok")
                    .ignore();
            }
            CheckinStatus::Error => {
                pipe.cmd("ZREM").arg(&running).arg(&run).ignore();
            }
        }
    }
    pipe.query_async::<()>(&mut conn).await
}
