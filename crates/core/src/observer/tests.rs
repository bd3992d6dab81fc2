//! Delivery, isolation and the events of a job's lifecycle, through a monitor.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::outcome::Outcome;
use crate::{JobMeta, JobMonitor};

fn meta() -> JobMeta {
    JobMeta::builder("test", "q").name("job").id("7").build()
}

fn collector() -> (Arc<Mutex<Vec<JobEvent>>>, impl Observer) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |e: &JobEvent| {
        sink.lock().unwrap().push(e.clone())
    })
}

#[test]
fn lifecycle_of_a_successful_job() {
    let (seen, observer) = collector();
    let monitor = JobMonitor::builder().observer(observer).build();
    monitor.observers().enqueued(&meta());
    monitor.start(meta()).succeed();
    assert!(monitor.observers().flush(Duration::from_secs(5)));
    let seen = seen.lock().unwrap();
    let kinds: Vec<_> = seen.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Enqueued,
            EventKind::Started,
            EventKind::Succeeded
        ]
    );
    let done = &seen[2];
    assert_eq!(done.outcome, Some(Outcome::Succeeded));
    assert_eq!(done.job.id(), Some("7"));
    assert!(done.run_id.is_some());
    assert_eq!(done.run_id, seen[1].run_id);
    assert!(done.started_at.is_some() && done.ended_at.is_some());
    assert!(done.running_for.is_some());
    assert!(seen[0].run_id.is_none());
}

#[test]
fn failures_retries_and_panics_map_to_events() {
    let (seen, observer) = collector();
    let monitor = JobMonitor::builder().observer(observer).build();
    let m = |attempt| {
        JobMeta::builder("test", "q")
            .attempt(attempt)
            .max_attempts(2)
            .build()
    };
    monitor.start(m(1)).fail(&std::io::Error::other("flaky"));
    monitor.start(m(2)).fail(&std::io::Error::other("down"));
    monitor.start(m(1)).panicked("boom");
    drop(monitor.start(m(1)));
    monitor.start(m(1)).cancelled();
    assert!(monitor.observers().flush(Duration::from_secs(5)));
    let seen = seen.lock().unwrap();
    let ends: Vec<_> = seen
        .iter()
        .filter(|e| e.kind != EventKind::Started)
        .map(|e| {
            (
                e.kind,
                e.outcome,
                e.error.as_ref().map(|r| r.message().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        ends,
        [
            (
                EventKind::Retried,
                Some(Outcome::Failed { retryable: true }),
                Some("flaky".into())
            ),
            (
                EventKind::Failed,
                Some(Outcome::Failed { retryable: false }),
                Some("down".into())
            ),
            (
                EventKind::Failed,
                Some(Outcome::Panicked),
                Some("boom".into())
            ),
            (EventKind::Abandoned, Some(Outcome::Abandoned), None),
            (EventKind::Cancelled, Some(Outcome::Abandoned), None),
        ]
    );
}

#[test]
fn a_panicking_observer_is_counted_and_the_others_still_hear_everything() {
    let (seen, good) = collector();
    let monitor = JobMonitor::builder()
        .observer_with(
            |_: &JobEvent| panic!("observer exploded"),
            ObserverOptions::new().name("bad"),
        )
        .observer_with(good, ObserverOptions::new().name("good"))
        .build();
    for _ in 0..3 {
        monitor.start(meta()).succeed();
    }
    assert!(monitor.observers().flush(Duration::from_secs(5)));
    assert_eq!(seen.lock().unwrap().len(), 6);
    let stats = monitor.observers().stats();
    assert_eq!(&*stats[0].name, "bad");
    assert_eq!((stats[0].panicked, stats[0].delivered), (6, 0));
    assert_eq!((stats[1].delivered, stats[1].dropped), (6, 0));
}

#[test]
fn a_hanging_observer_blocks_neither_jobs_nor_other_observers() {
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let gate = Arc::clone(&release);
    let hanging = move |_: &JobEvent| {
        let (lock, cond) = &*gate;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cond.wait(open).unwrap();
        }
    };
    let (seen, good) = collector();
    let monitor = JobMonitor::builder()
        .observer_with(
            hanging,
            ObserverOptions::new().name("stuck").queue_capacity(4),
        )
        .observer_with(
            good,
            ObserverOptions::new().name("good").queue_capacity(1000),
        )
        .build();
    let started = Instant::now();
    for _ in 0..100 {
        monitor.start(meta()).succeed();
    }
    // 200 events while one observer never returns: the jobs are not held up.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!monitor.observers().flush(Duration::from_millis(100)));
    let stats = monitor.observers().stats();
    // Four wait in the queue, perhaps one more is being handled, the
    // rest were dropped.
    let dropped = stats[0].dropped;
    assert!((195..=196).contains(&dropped), "{stats:?}");
    assert_eq!(stats[1].dropped, 0);
    let (lock, cond) = &*release;
    *lock.lock().unwrap() = true;
    cond.notify_all();
    assert!(monitor.observers().flush(Duration::from_secs(5)));
    assert_eq!(seen.lock().unwrap().len(), 200);
    assert_eq!(monitor.observers().stats()[0].delivered, 200 - dropped);
}

#[test]
fn failing_observers_are_counted() {
    struct Refuses;
    impl Observer for Refuses {
        fn observe(&mut self, _: &JobEvent) -> Result<(), ObserveError> {
            Err("webhook answered 500".into())
        }
    }
    let monitor = JobMonitor::builder().observer(Refuses).build();
    monitor.start(meta()).succeed();
    assert!(monitor.observers().flush(Duration::from_secs(5)));
    assert_eq!(monitor.observers().stats()[0].failed, 2);
}

#[test]
fn no_observer_no_event() {
    let monitor = JobMonitor::new();
    assert!(monitor.observers().is_empty());
    monitor.start(meta()).succeed();
    assert!(monitor.observers().flush(Duration::ZERO));
    assert!(monitor.observers().stats().is_empty());
}
