//! Helpers shared by the end-to-end tests (`otlp_wire`, `redis_e2e`,
//! `shutdown`, `quickstart`): unique names, reading spans and metric series
//! as they arrived at the in-process receiver, stopping apalis workers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use apalis::prelude::{Event, WorkerContext};

use crate::support::{Attributes, MetricKind, MetricPoint, Span, Temporality};

mod children;
mod dropped_metric;
mod log_capture;
pub mod numbered_jobs;
pub mod postgres;
mod redis_keys;
#[allow(unused_imports)] // only the binaries that run examples or flush telemetry
pub use children::{example_command, example_path, flush};
#[allow(unused_imports)] // only the binaries that check jobsight-otel's drops
pub use dropped_metric::{DROPPED_METRIC, received_drop_count, until_drops_received};
#[allow(unused_imports)] // only the binaries that capture jobsight-otel's reports
pub use log_capture::Log;
#[allow(unused_imports)] // not every test binary talks to Redis
pub use redis_keys::{REDIS_ADDR, RedisKeys};

/// A name no other test, and no parallel run of this suite, uses:
/// `{prefix}-{pid}-{unix ms}-{counter}`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{ms}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serializes the tests of one binary that install global telemetry
/// (`jobsight_otel::Builder::install` sets the global providers and
/// propagator). A panicking test does not poison the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// An `on_event` handler that stops the worker once `n` tasks finished
/// (`Event::Success` or `Event::Error`; see /work/notes/apalis.md §6).
pub fn stop_after(n: usize) -> impl Fn(&WorkerContext, &Event) + Send + Sync + 'static {
    let seen = Arc::new(AtomicUsize::new(0));
    move |worker: &WorkerContext, event: &Event| {
        if matches!(event, Event::Success(_) | Event::Error(_))
            && seen.fetch_add(1, Ordering::SeqCst) + 1 == n
        {
            let _ = worker.stop();
        }
    }
}

// ---------------------------------------------------------------- spans

pub fn attr_i64(span: &Span, key: &str) -> Option<i64> {
    span.attr(key).and_then(|v| v.as_i64())
}

pub fn attr_f64(span: &Span, key: &str) -> Option<f64> {
    span.attr(key).and_then(|v| v.as_f64())
}

pub fn outcome(span: &Span) -> &str {
    span.attr_str("job.outcome").unwrap_or("<none>")
}

/// One line per span, for assertion messages.
pub fn brief(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {} id={} attempt={:?} outcome={} error.type={:?} status={:?}/{:?} events={:?} links={}\n",
                s.name,
                s.attr_str("messaging.message.id").unwrap_or("-"),
                attr_i64(s, "job.attempt"),
                outcome(s),
                s.attr_str("error.type"),
                s.status_code,
                s.status_message,
                s.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
                s.links.len(),
            )
        })
        .collect()
}

/// The spans of `queue` (by `messaging.destination.name`) grouped by
/// `messaging.message.id`, each group sorted by `job.attempt`.
pub fn jobs_by_id(spans: &[Span], queue: &str) -> BTreeMap<String, Vec<Span>> {
    let mut jobs: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for s in spans {
        if s.attr_str("messaging.destination.name") != Some(queue) {
            continue;
        }
        let id = s
            .attr_str("messaging.message.id")
            .unwrap_or("<no id>")
            .to_owned();
        jobs.entry(id).or_default().push(s.clone());
    }
    for attempts in jobs.values_mut() {
        attempts.sort_by_key(|s| attr_i64(s, "job.attempt"));
    }
    jobs
}

/// The outcomes of a job's attempts, in attempt order.
pub fn outcomes(attempts: &[Span]) -> Vec<&str> {
    attempts.iter().map(outcome).collect()
}

// ---------------------------------------------------------------- metrics

/// One metric stream (name + attribute set) folded over every export that
/// arrived: the latest point of a cumulative stream, the sum of a delta one.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub unit: String,
    pub kind: MetricKind,
    pub temporality: Temporality,
    pub attributes: Attributes,
    /// Sums and gauges.
    pub value: f64,
    /// Histograms.
    pub count: u64,
    pub sum: f64,
    pub explicit_bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
}

impl Series {
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }

    pub fn attr_keys(&self) -> Vec<&str> {
        self.attributes.keys().map(String::as_str).collect()
    }
}

/// Folds the points of metric `name` into one [`Series`] per attribute set.
pub fn series(points: &[MetricPoint], name: &str) -> Vec<Series> {
    let mut by_attrs: BTreeMap<String, (u64, Series)> = BTreeMap::new();
    for p in points.iter().filter(|p| p.name == name) {
        let key = format!("{:?}", p.attributes);
        let fresh = Series {
            name: p.name.clone(),
            unit: p.unit.clone(),
            kind: p.kind,
            temporality: p.temporality,
            attributes: p.attributes.clone(),
            value: p.value.unwrap_or(0.0),
            count: p.count.unwrap_or(0),
            sum: p.sum.unwrap_or(0.0),
            explicit_bounds: p.explicit_bounds.clone(),
            bucket_counts: p.bucket_counts.clone(),
        };
        match by_attrs.get_mut(&key) {
            None => {
                by_attrs.insert(key, (p.time_unix_nano, fresh));
            }
            Some((time, existing)) => match p.temporality {
                Temporality::Delta => {
                    existing.value += fresh.value;
                    existing.count += fresh.count;
                    existing.sum += fresh.sum;
                    for (a, b) in existing.bucket_counts.iter_mut().zip(&fresh.bucket_counts) {
                        *a += *b;
                    }
                }
                _ => {
                    if p.time_unix_nano >= *time {
                        *time = p.time_unix_nano;
                        *existing = fresh;
                    }
                }
            },
        }
    }
    by_attrs.into_values().map(|(_, s)| s).collect()
}

/// The series of `name` whose `messaging.destination.name` is `queue`.
pub fn series_of_queue(points: &[MetricPoint], name: &str, queue: &str) -> Vec<Series> {
    series(points, name)
        .into_iter()
        .filter(|s| s.attr_str("messaging.destination.name") == Some(queue))
        .collect()
}

/// Histogram counts (or counter values) of `name` on `queue`, keyed by the
/// value of attribute `by` (`None` when the series lacks it).
pub fn totals_by(
    points: &[MetricPoint],
    name: &str,
    queue: &str,
    by: &str,
) -> BTreeMap<Option<String>, u64> {
    let mut out = BTreeMap::new();
    for s in series_of_queue(points, name, queue) {
        let n = match s.kind {
            MetricKind::Histogram | MetricKind::ExpHistogram => s.count,
            _ => s.value as u64,
        };
        *out.entry(s.attr_str(by).map(str::to_owned)).or_insert(0) += n;
    }
    out
}

/// `[(Some("a"), 1), (None, 2)]` as a map, for comparing with [`totals_by`].
pub fn expected(pairs: &[(Option<&str>, u64)]) -> BTreeMap<Option<String>, u64> {
    pairs
        .iter()
        .map(|(k, v)| (k.map(str::to_owned), *v))
        .collect()
}
