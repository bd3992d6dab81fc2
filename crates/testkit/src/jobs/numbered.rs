//! Numbered jobs with known results, run through apalis workers (in-memory
//! backend) with `MonitorLayer`, each result read *outside* the layer: for
//! tests that prove monitoring never changes what a job returns.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::backend::queue::Queue;
use jobsight_apalis::MonitorLayer;
use jobsight_core::JobMonitor;

use super::stop_after;
use crate::unique;

/// The error of a job that fails on purpose (its job number).
#[derive(Debug, thiserror::Error)]
#[error("job {0} failed on purpose")]
pub struct Refused(pub u64);

/// Every fifth job fails; the others return three times their number.
pub fn expected(n: u64) -> Result<u64, String> {
    if n % 5 == 3 {
        Err(Refused(n).to_string())
    } else {
        Ok(n * 3)
    }
}

/// The job: [`expected`] as an apalis handler.
pub async fn job(n: u64) -> Result<u64, BoxDynError> {
    expected(n).map_err(|_| Refused(n).into())
}

/// The job number a result belongs to.
pub fn job_of(result: &Result<u64, String>) -> u64 {
    match result {
        Ok(value) => value / 3,
        Err(message) => message
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX),
    }
}

/// Runs jobs `ids` on `queue` through a worker with `MonitorLayer`; returns
/// each job's result as seen outside the layer, by job number, and how long
/// the worker took.
pub async fn run_jobs(
    monitor: &JobMonitor,
    queue: &str,
    ids: Range<u64>,
) -> (BTreeMap<u64, Result<u64, String>>, Duration) {
    let count = (ids.end - ids.start) as usize;
    let mut storage = MemoryStorage::new();
    for n in ids {
        storage
            .push_task(TaskBuilder::new(n).queue(Queue::from(queue)).build())
            .await
            .unwrap_or_else(|e| panic!("push: {e}"));
    }
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let seen = Arc::clone(&results);
    let worker = WorkerBuilder::new(unique("faults-worker"))
        .backend(storage)
        .layer(tower::util::MapResultLayer::new(
            move |result: Result<u64, BoxDynError>| {
                let kept = result.as_ref().copied().map_err(|e| e.to_string());
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job_of(&kept), kept);
                result
            },
        ))
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .build()
                .unwrap(),
        )
        .on_event(stop_after(count))
        .build(job);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(120), worker.run())
        .await
        .unwrap_or_else(|_| panic!("the jobs did not finish within 120 s"))
        .unwrap_or_else(|e| panic!("the worker: {e}"));
    let took = started.elapsed();
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    (results, took)
}

/// Panics unless `results` holds exactly the jobs `ids`, each with its [`expected`] result.
pub fn assert_results(results: &BTreeMap<u64, Result<u64, String>>, ids: Range<u64>) {
    let want: BTreeMap<u64, Result<u64, String>> = ids.map(|n| (n, expected(n))).collect();
    assert_eq!(results.len(), want.len(), "every job ran once");
    assert_eq!(results, &want, "each job kept its own result");
}
