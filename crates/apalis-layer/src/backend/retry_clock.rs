//! When failed attempts become due again, remembered by the process that
//! ran them, for backends that re-fetch a failed task after a delay they
//! decide alone ([`super::Backend::retry_due_after`]) and keep no exact
//! timestamp of it on the task.
//!
//! The worker that ran a failed attempt records the moment the task
//! becomes due again under its id; the next attempt, when this process
//! fetches it, takes that moment as its due time, so its `job.queue_time`
//! is the time it really waited. An attempt fetched by another process
//! finds nothing and has no queue time. At most [`CAPACITY`] tasks are
//! remembered; the oldest entry is forgotten first (its retry then has no
//! queue time either).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How many failed tasks one layer remembers.
pub(crate) const CAPACITY: usize = 1024;

/// Due times of failed tasks, by task id, oldest first.
#[derive(Debug, Default)]
pub(crate) struct RetryClock {
    due: Mutex<VecDeque<(Arc<str>, SystemTime)>>,
}

impl RetryClock {
    /// Remembers that task `id` is due again at `at`.
    pub(crate) fn failed(&self, id: Arc<str>, at: SystemTime) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        due.retain(|(seen, _)| *seen != id);
        if due.len() >= CAPACITY {
            due.pop_front();
        }
        due.push_back((id, at));
    }

    /// The due time recorded for task `id`, forgotten as it is taken.
    pub(crate) fn take(&self, id: &str) -> Option<SystemTime> {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let at = due.iter().position(|(seen, _)| &**seen == id)?;
        due.remove(at).map(|(_, at)| at)
    }
}

/// What a failing attempt records: its task, and how long after the
/// failure the backend makes it due again (`None`: unknown, nothing kept).
#[derive(Debug)]
pub(crate) struct RetryMark {
    pub(crate) clock: Arc<RetryClock>,
    pub(crate) id: Arc<str>,
    pub(crate) after: Option<Duration>,
}

impl RetryMark {
    /// The attempt failed now.
    pub(crate) fn failed(self) {
        if let Some(after) = self.after {
            self.clock.failed(self.id, SystemTime::now() + after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn takes_once_and_forgets_the_oldest() {
        let clock = RetryClock::default();
        let at = UNIX_EPOCH + Duration::from_secs(5);
        clock.failed(Arc::from("a"), at);
        assert_eq!(clock.take("a"), Some(at));
        assert_eq!(clock.take("a"), None);
        for i in 0..=CAPACITY {
            clock.failed(Arc::from(i.to_string()), at);
        }
        assert_eq!(clock.take("0"), None, "the oldest is forgotten");
        assert_eq!(clock.take(&CAPACITY.to_string()), Some(at));
    }
}
