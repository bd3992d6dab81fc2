//! The background sender of a [`PingSink`](super::PingSink): takes events
//! from the queue, keeps within the service's rate limit per monitor, and
//! sends each request with retries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jobsight_core::checkin::{CheckinEvent, CheckinStatus};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::client::{Answer, PingClient};
use super::format::{PingAnswer, PingFormat, PingRequest};
use super::{Delivery, PingOptions, PingStats};

/// The window a per-minute rate limit counts in.
const WINDOW: Duration = Duration::from_secs(60);

/// One queued event, and where to report its fate if someone waits.
pub(crate) struct Item {
    event: CheckinEvent,
    receipt: Option<std::sync::mpsc::SyncSender<Delivery>>,
}

impl Item {
    pub(crate) fn new(
        event: CheckinEvent,
        receipt: Option<std::sync::mpsc::SyncSender<Delivery>>,
    ) -> Self {
        Self { event, receipt }
    }

    fn report(&self, delivery: Delivery) {
        if let Some(receipt) = &self.receipt {
            let _ = receipt.try_send(delivery);
        }
    }
}

/// What the sender task needs; [`Sender::run`] is the task.
pub(crate) struct Sender {
    events: mpsc::Receiver<Item>,
    shared: Arc<Shared>,
}

struct Shared {
    format: Arc<dyn PingFormat>,
    client: PingClient,
    options: PingOptions,
    stats: Arc<PingStats>,
}

impl Sender {
    pub(crate) fn new(
        events: mpsc::Receiver<Item>,
        format: Arc<dyn PingFormat>,
        client: PingClient,
        options: PingOptions,
        stats: Arc<PingStats>,
    ) -> Self {
        Self {
            events,
            shared: Arc::new(Shared {
                format,
                client,
                options,
                stats,
            }),
        }
    }

    /// Runs until the queue is closed and empty and every request ended.
    pub(crate) async fn run(mut self) {
        let shared = self.shared;
        let concurrency = shared.options.concurrency;
        let permits = Arc::new(Semaphore::new(concurrency));
        let limit = shared
            .options
            .coalesce
            .then(|| shared.format.per_minute_limit())
            .flatten();
        let mut budget = Budget::new(limit);
        loop {
            let wake = budget.next_wake();
            let item = tokio::select! {
                item = self.events.recv() => match item {
                    Some(item) => Some(item),
                    None => break,
                },
                () = sleep_until(wake) => None,
            };
            let now = Instant::now();
            if let Some(item) = item {
                let (send, left_out) = budget.admit(item, now);
                if let Some(item) = left_out {
                    coalesced(&shared.stats, &mut budget.warned, &item, limit);
                }
                if let Some(item) = send {
                    dispatch(&shared, &permits, item).await;
                }
            }
            for item in budget.release(now) {
                dispatch(&shared, &permits, item).await;
            }
        }
        // The queue is closed: what waits for the budget goes now.
        for item in budget.pending.into_values() {
            dispatch(&shared, &permits, item).await;
        }
        let _ = permits.acquire_many(concurrency as u32).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn coalesced(stats: &PingStats, warned: &mut HashSet<Arc<str>>, item: &Item, limit: Option<u32>) {
    stats.coalesced.fetch_add(1, Ordering::Relaxed);
    if warned.insert(item.event.monitor.clone()) {
        stats.set_error(format!(
            "check-ins of monitor `{}` coalesced: more than the service's {} a minute",
            item.event.monitor,
            limit.unwrap_or(0)
        ));
    }
    item.report(Delivery::Coalesced);
}

/// Waits for a free slot, builds the request and sends it on a task of its
/// own; with one slot, requests go out one after the other.
async fn dispatch(shared: &Arc<Shared>, permits: &Arc<Semaphore>, item: Item) {
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return;
    };
    // Built once the previous request ended (with one slot), so that what
    // the format learnt from its answer applies.
    let Some(request) = shared.format.request(&item.event) else {
        shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
        item.report(Delivery::Skipped);
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        deliver(&shared, &item, &request).await;
        drop(permit);
    });
}

async fn deliver(shared: &Shared, item: &Item, request: &PingRequest) {
    let (options, stats) = (&shared.options, &shared.stats);
    let mut wait = options.backoff;
    let mut attempt = 0;
    loop {
        let (why, status) = match shared.client.send(request).await {
            Answer::Accepted { status, body_limit } => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let answer = PingAnswer {
                    accepted: true,
                    status: Some(status),
                    body_limit,
                };
                shared.format.answered(&item.event, &answer);
                item.report(Delivery::Accepted);
                return;
            }
            Answer::Retry(why) if attempt < options.retries => {
                stats.set_error(why);
                attempt += 1;
                stats.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(options.max_backoff);
                continue;
            }
            Answer::Retry(why) => (why, None),
            Answer::Refused { why, status } => (why, status),
        };
        stats.set_error(why.clone());
        stats.failed.fetch_add(1, Ordering::Relaxed);
        let answer = PingAnswer {
            accepted: false,
            status,
            body_limit: None,
        };
        shared.format.answered(&item.event, &answer);
        item.report(Delivery::Failed(why));
        return;
    }
}

/// Per monitor: when its last check-ins went out (within the window), and
/// the run end waiting for room.
struct Budget {
    limit: Option<u32>,
    sent: HashMap<Arc<str>, VecDeque<Instant>>,
    pending: HashMap<Arc<str>, Item>,
    warned: HashSet<Arc<str>>,
}

impl Budget {
    fn new(limit: Option<u32>) -> Self {
        Self {
            limit,
            sent: HashMap::new(),
            pending: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// What to send now, and what is left out, of `item`.
    fn admit(&mut self, item: Item, now: Instant) -> (Option<Item>, Option<Item>) {
        let Some(limit) = self.limit else {
            return (Some(item), None);
        };
        let monitor = item.event.monitor.clone();
        let window = self.sent.entry(monitor.clone()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            window.pop_front();
        }
        if window.len() < limit as usize && !self.pending.contains_key(&monitor) {
            window.push_back(now);
            return (Some(item), None);
        }
        if item.event.status == CheckinStatus::InProgress {
            return (None, Some(item));
        }
        match self.pending.remove(&monitor) {
            None => {
                self.pending.insert(monitor, item);
                (None, None)
            }
            Some(held)
                if held.event.status == CheckinStatus::Error
                    && item.event.status == CheckinStatus::Ok =>
            {
                self.pending.insert(monitor, held);
                (None, Some(item))
            }
            Some(held) => {
                self.pending.insert(monitor, item);
                (None, Some(held))
            }
        }
    }

    /// The held run ends whose monitor has room again.
    fn release(&mut self, now: Instant) -> Vec<Item> {
        let Some(limit) = self.limit else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        let monitors: Vec<Arc<str>> = self.pending.keys().cloned().collect();
        for monitor in monitors {
            let window = self.sent.entry(monitor.clone()).or_default();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                window.pop_front();
            }
            if window.len() < limit as usize
                && let Some(item) = self.pending.remove(&monitor)
            {
                window.push_back(now);
                ready.push(item);
            }
        }
        ready
    }

    /// When the earliest held run end gets room.
    fn next_wake(&self) -> Option<Instant> {
        self.pending
            .keys()
            .filter_map(|m| self.sent.get(m)?.front().map(|t| *t + WINDOW))
            .min()
    }
}
