//! Reading a [`JobMeta`] from an apalis task.
//!
//! | jobsight | apalis source |
//! |---|---|
//! | system | `apalis` |
//! | queue | the task's `queue()`; else the queue given to [`crate::MonitorLayerBuilder::queue`]; else the `Args` type's full path (apalis-redis's default queue name) |
//! | job name | the name given to [`crate::MonitorLayerBuilder::job_name`]; else the `Args` type's short name |
//! | id | `task_id()` |
//! | attempt | `attempt() + 1` (apalis counts earlier runs when the layer is called) |
//! | max attempts | `max_attempts()`; else the value given to [`crate::MonitorLayerBuilder::max_attempts`], or the retry count + 1 given to [`crate::MonitorLayerBuilder::retries`] |
//! | run-at | `run_at()` (unix seconds), when the backend keeps it and it is this attempt's due time ([`crate::backend::Backend::run_at_is_due`]: the first attempt) |
//! | enqueued-at | first attempt: the backend's [`crate::backend::Backend::enqueued_at`] (by default metadata `jobsight.enqueued_at`, unix ms, set by [`crate::stamped`]; else the timestamp of a ULID task id); a retry: when it became due again, if this process ran the failed attempt on a backend that says when ([`crate::backend::Backend::retry_due_after`]), else none |
//! | priority | `priority()` |
//! | consumer | the worker's name |
//! | creation context, baggage | metadata `traceparent` / `tracestate` / `baggage`, read within the limits of [`jobsight_core::propagation`]; every attempt reads the same values, so every attempt links to the same creation context |

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_core::task::ExecutionContext;
use jobsight_core::JobMeta;
use jobsight_core::propagation::extract_propagated;

use crate::backend::Backend;
use crate::carrier::MetadataExtractor;

/// The `messaging.system` value for apalis jobs.
pub const SYSTEM: &str = "apalis";

/// Metadata key holding the enqueue time in unix milliseconds.
pub const ENQUEUED_AT_KEY: &str = "jobsight.enqueued_at";

pub(crate) fn job_meta(
    ctx: &ExecutionContext,
    queue: Arc<str>,
    name: &'static str,
    consumer: Option<Arc<str>>,
    default_max_attempts: Option<u32>,
    backend: &dyn Backend,
    retry_due: Option<SystemTime>,
) -> JobMeta {
    let attempt = u32::try_from(ctx.attempt().saturating_add(1)).unwrap_or(u32::MAX);
    let max_attempts = ctx
        .max_attempts()
        .map(|m| u32::try_from(m).unwrap_or(u32::MAX))
        .or(default_max_attempts);
    let scheduled_at = ctx
        .run_at()
        .filter(|_| backend.run_at_is_due(attempt))
        .map(|s| UNIX_EPOCH + Duration::from_secs(s));
    let priority = ctx.priority().map(|p| i64::try_from(p).unwrap_or(i64::MAX));
    // A string id (the memory backend's) is copied once, not formatted;
    // the span attribute shares that copy.
    let id: Option<Arc<str>> = ctx.task_id().map(|id| match id.as_string() {
        Some(id) => Arc::from(id),
        None => Arc::from(id.to_string()),
    });
    let enqueued_at = if attempt == 1 {
        backend.enqueued_at(ctx)
    } else {
        retry_due
    };
    let propagated = extract_propagated(&MetadataExtractor(ctx.metadata()));
    // Every value first, then one chain of setters with no call in between:
    // inlined, the chain writes the fields in place instead of copying the
    // whole `JobMeta` (about 300 bytes) at each step.
    JobMeta::builder(SYSTEM, queue)
        .name(name)
        .attempt(attempt)
        .maybe_max_attempts(max_attempts)
        .maybe_scheduled_at(scheduled_at)
        .maybe_priority(priority)
        .maybe_id(id)
        .maybe_enqueued_at(enqueued_at)
        .maybe_consumer(consumer)
        .propagated(propagated)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Memory;
    use apalis_core::task::builder::TaskBuilder;
    use apalis_core::task::metadata::MetadataStore;
    use apalis_core::task::task_id::TaskId;

    #[test]
    fn reads_the_apalis_fields() {
        let mut md = MetadataStore::new();
        md.insert(ENQUEUED_AT_KEY, "1700000000000").unwrap();
        let task = TaskBuilder::new(())
            .task_id(TaskId::from_int(42))
            .max_attempts(5)
            .priority(3)
            .run_at_timestamp(1_700_000_060)
            .with_metadata(md)
            .build();
        let meta = job_meta(
            task.ctx(),
            Arc::from("emails"),
            "Email",
            None,
            None,
            &Memory,
            None,
        );
        assert_eq!(meta.id(), Some("42"));
        assert_eq!(meta.attempt(), Some(1));
        assert_eq!(meta.max_attempts(), Some(5));
        assert_eq!(meta.priority(), Some(3));
        assert_eq!(
            meta.enqueued_at(),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000))
        );
        assert_eq!(
            meta.scheduled_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_060))
        );
        assert!(meta.creation_context().is_none());
    }

    #[test]
    fn ulid_ids_give_the_enqueue_time() {
        let ulid: TaskId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let task = TaskBuilder::new(()).task_id(ulid).build();
        let meta = job_meta(task.ctx(), Arc::from("q"), "J", None, None, &Memory, None);
        let at = meta.enqueued_at().expect("enqueue time from ULID");
        assert_eq!(
            at.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            1_469_922_850_259
        );
    }

    #[test]
    fn retries_do_not_claim_the_original_enqueue_time() {
        let ulid: TaskId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let task = TaskBuilder::new(()).task_id(ulid).attempt(1).build();
        let meta = job_meta(task.ctx(), Arc::from("q"), "J", None, None, &Memory, None);
        assert_eq!(meta.attempt(), Some(2));
        assert!(meta.enqueued_at().is_none());
    }
}
