//! Job kinds: [`JobKind`], the attribute sets of one (system, queue, job
//! name) built once, and the table of kinds a monitor records series for,
//! with the limit that keeps it bounded.
//!
//! Monitors built without [`JobMonitorBuilder::max_kinds`] share one table
//! for the whole process, so the bound holds however many workers (and
//! `MonitorLayer`s) a process runs. A monitor given its own limit gets a
//! table of its own; layers built from clones of that monitor share it.
//!
//! [`JobMonitorBuilder::max_kinds`]: crate::JobMonitorBuilder::max_kinds

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::KeyValue;

use crate::bound::KindMetrics;
use crate::error::truncate;
use crate::instruments::{intern, interned_cow};
use crate::outcome::Outcome;
use crate::semconv;

/// The longest system, queue or job name a kind is recorded under, in
/// bytes: longer names are cut (on a character boundary) before the kind is
/// looked up, so that a name taken from input cannot put megabytes into
/// every span name, span attribute and metric series of its kind.
pub const MAX_NAME_LEN: usize = 256;

/// The `job.name` / queue value that job kinds past the limit are folded into.
pub const OVERFLOW_NAME: &str = "_other";

/// Default limit of distinct (queue, job name) pairs per monitor.
pub const DEFAULT_MAX_KINDS: usize = 500;

/// The attribute sets of one kind of job (system, queue, job name), built
/// once so that the per-job path copies no strings.
#[derive(Debug)]
pub struct JobKind {
    /// The interned strings the attribute sets are made of.
    pub(crate) names: KindNames,
    pub(crate) span_name: Cow<'static, str>,
    /// `messaging.system`, `messaging.destination.name`, `job.name`.
    pub(crate) base: Vec<KeyValue>,
    /// `base` plus `job.outcome`, one per [`Outcome::index`].
    pub(crate) by_outcome: [Vec<KeyValue>; 6],
    /// Made by folding a pair past the limit into `_other`.
    pub(crate) overflow: bool,
    /// What the producer side records: `send {queue}` and its attributes.
    pub(crate) send: SendKind,
    /// The metric calls with these attribute sets.
    pub(crate) metrics: KindMetrics,
}

impl JobKind {
    pub(crate) fn new(system: &str, queue: &Arc<str>, name: &str, overflow: bool) -> Self {
        let names = KindNames {
            system: intern(system.to_owned()),
            queue: intern(queue.to_string()),
            name: intern(name.to_owned()),
        };
        let base = names.base_attributes(0);
        let by_outcome = Outcome::ALL.map(|outcome| {
            let mut attrs = base.clone();
            attrs.push(KeyValue::new(semconv::JOB_OUTCOME, outcome.as_str()));
            attrs
        });
        Self {
            names,
            span_name: interned_cow(format!("process {queue}")),
            send: SendKind::new(queue, &base),
            base,
            by_outcome,
            overflow,
            metrics: Default::default(),
        }
    }

    /// The span name, `process {queue}`.
    pub fn span_name(&self) -> &str {
        &self.span_name
    }

    /// The metric attributes every series of this kind carries.
    pub fn attributes(&self) -> &[KeyValue] {
        &self.base
    }
}

/// A job kind's system, queue and name, interned for the life of the process
/// (bounded by the limit of job kinds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KindNames {
    pub(crate) system: &'static str,
    pub(crate) queue: &'static str,
    pub(crate) name: &'static str,
}

impl KindNames {
    /// `messaging.system`, `messaging.destination.name` and `job.name`, in a
    /// vector with room for `extra` more. Made from the static strings rather
    /// than cloned from [`JobKind::attributes`]: writing a `KeyValue` from a
    /// `&'static str` is a few stores, cloning one matches on every variant
    /// of its key and value.
    pub(crate) fn base_attributes(self, extra: usize) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(3 + extra);
        attrs.push(KeyValue::new(semconv::MESSAGING_SYSTEM, self.system));
        attrs.push(KeyValue::new(
            semconv::MESSAGING_DESTINATION_NAME,
            self.queue,
        ));
        attrs.push(KeyValue::new(semconv::JOB_NAME, self.name));
        attrs
    }
}

/// The producer-side names and attributes of one job kind, built once.
#[derive(Debug)]
pub(crate) struct SendKind {
    pub(crate) span_name: Cow<'static, str>,
    /// The kind's base attributes plus `messaging.operation.name` = `send`.
    pub(crate) attributes: Vec<KeyValue>,
}

impl SendKind {
    pub(crate) fn new(queue: &str, base: &[KeyValue]) -> Self {
        let mut attributes = Vec::with_capacity(base.len() + 1);
        attributes.extend(base.iter().cloned());
        attributes.push(KeyValue::new(
            semconv::MESSAGING_OPERATION_NAME,
            semconv::OPERATION_SEND,
        ));
        Self {
            span_name: interned_cow(format!("send {queue}")),
            attributes,
        }
    }
}

/// A bounded table of job kinds, with the count of lookups that were
/// folded into `_other`.
pub(crate) struct KindRegistry {
    table: RwLock<KindTable>,
    max: usize,
    overflowed: AtomicU64,
}

impl KindRegistry {
    /// A table of its own with room for `max` kinds.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            table: RwLock::new(KindTable::default()),
            max,
            overflowed: AtomicU64::new(0),
        }
    }

    /// The table every monitor without a limit of its own shares.
    pub(crate) fn process() -> Arc<Self> {
        static PROCESS: OnceLock<Arc<KindRegistry>> = OnceLock::new();
        PROCESS
            .get_or_init(|| Arc::new(KindRegistry::new(DEFAULT_MAX_KINDS)))
            .clone()
    }

    /// The limit of distinct kinds.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// How many lookups were folded into `_other`.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Kinds in the table, `_other` ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        read(&self.table).len
    }

    /// The kind for (queue, name), created when new. Past the limit, new
    /// names are folded into `_other` within a queue that already has an
    /// `_other` kind, else into the (`_other`, `_other`) kind; the table
    /// then holds at most `max + 1` kinds.
    pub(crate) fn get_or_insert(&self, system: &str, queue: &Arc<str>, name: &str) -> Arc<JobKind> {
        if queue.len() > MAX_NAME_LEN {
            let cut: Arc<str> = Arc::from(truncate(queue, MAX_NAME_LEN));
            return self.get_or_insert(system, &cut, name);
        }
        let (system, name) = (truncate(system, MAX_NAME_LEN), truncate(name, MAX_NAME_LEN));
        if let Some(kind) = read(&self.table).get(system, queue, name) {
            return kind.clone();
        }
        let mut table = match self.table.write() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(kind) = table.get(system, queue, name) {
            return kind.clone();
        }
        let (mut queue, mut name, mut overflow) = (queue.clone(), name, false);
        if table.len >= self.max {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            overflow = true;
            name = OVERFLOW_NAME;
            if table.get(system, &queue, name).is_none() {
                queue = Arc::from(OVERFLOW_NAME);
            }
            if let Some(kind) = table.get(system, &queue, name) {
                return kind.clone();
            }
        }
        let kind = Arc::new(JobKind::new(system, &queue, name, overflow));
        table.insert(system, queue, name, kind.clone());
        kind
    }
}

fn read(table: &RwLock<KindTable>) -> std::sync::RwLockReadGuard<'_, KindTable> {
    match table.read() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Kinds of one queue, by job name.
type ByName = HashMap<Box<str>, Arc<JobKind>>;
/// Kinds of one system, by queue.
type ByQueue = HashMap<Arc<str>, ByName>;

/// Job kinds by system, queue, then name: looked up with borrowed strings.
#[derive(Default)]
struct KindTable {
    by_system: HashMap<Box<str>, ByQueue>,
    len: usize,
}

impl KindTable {
    fn get(&self, system: &str, queue: &str, name: &str) -> Option<&Arc<JobKind>> {
        self.by_system.get(system)?.get(queue)?.get(name)
    }

    fn insert(&mut self, system: &str, queue: Arc<str>, name: &str, kind: Arc<JobKind>) {
        let names = self
            .by_system
            .entry(system.into())
            .or_default()
            .entry(queue)
            .or_default();
        if names.insert(name.into(), kind).is_none() {
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};

    use super::OVERFLOW_NAME;
    use crate::{JobMeta, JobMonitor, semconv};

    #[test]
    fn kinds_are_shared_and_capped() {
        let monitor = JobMonitor::builder().max_kinds(3).build();
        let q: Arc<str> = Arc::from("q");
        let a1 = monitor.kind("t", &q, "a");
        let a2 = monitor.kind("t", &q, "a");
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(a1.span_name(), "process q");
        for i in 0..100 {
            monitor.kind("t", &q, &format!("dyn-{i}"));
        }
        let folded = monitor.kind("t", &q, "another");
        let name = folded
            .attributes()
            .iter()
            .find(|kv| kv.key.as_str() == semconv::JOB_NAME)
            .map(|kv| kv.value.as_str().into_owned());
        assert_eq!(name.as_deref(), Some(OVERFLOW_NAME));
        assert!(monitor.overflowed() >= 99);
        assert!(folded.overflow);
        assert!(monitor.inner.kinds.len() <= 4);
    }

    fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
        let telemetry = jobsight_testkit::MemoryTelemetry::new();
        (
            telemetry.meter_provider().clone(),
            telemetry.metric_exporter().clone(),
        )
    }

    fn last(exporter: &InMemoryMetricExporter) -> ResourceMetrics {
        exporter
            .get_finished_metrics()
            .unwrap()
            .pop()
            .expect("one collection")
    }

    /// Sum of a u64 counter's points, with the points' `job.name`s.
    fn counter(rm: &ResourceMetrics, name: &str) -> (u64, Vec<String>) {
        let mut total = 0;
        let mut names = Vec::new();
        for m in rm.scope_metrics().flat_map(|sm| sm.metrics()) {
            if m.name() != name {
                continue;
            }
            if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                for p in sum.data_points() {
                    total += p.value();
                    names.extend(
                        p.attributes()
                            .filter(|kv| kv.key.as_str() == semconv::JOB_NAME)
                            .map(|kv| kv.value.as_str().into_owned()),
                    );
                }
            }
        }
        (total, names)
    }

    #[test]
    fn retries_and_overflow_are_counted() {
        let (provider, exporter) = provider();
        let monitor = JobMonitor::builder()
            .meter_provider(&provider)
            .max_kinds(2)
            .build();
        for attempt in 1..=3 {
            let meta = JobMeta::builder("t", "q")
                .name("a")
                .attempt(attempt)
                .build();
            monitor.start(meta).succeed();
        }
        monitor
            .start(JobMeta::builder("t", "q").name("b").build())
            .succeed();
        for i in 0..5 {
            let meta = JobMeta::builder("t", "q").name(format!("dyn-{i}")).build();
            monitor.start(meta).succeed();
        }
        provider.force_flush().unwrap();
        let rm = last(&exporter);
        assert_eq!(counter(&rm, semconv::METRIC_RETRIES).0, 2);
        assert_eq!(counter(&rm, semconv::METRIC_CARDINALITY_OVERFLOW).0, 5);
        let (consumed, mut names) = counter(&rm, semconv::METRIC_CONSUMED_MESSAGES);
        assert_eq!(consumed, 9);
        names.sort();
        assert_eq!(names, ["_other", "a", "b"]);
        assert_eq!(monitor.overflowed(), 5);
    }

    #[test]
    fn bucket_boundaries_can_be_overridden() {
        let (provider, exporter) = provider();
        let monitor = JobMonitor::builder()
            .meter_provider(&provider)
            .duration_buckets(vec![1.0, 2.0])
            .queue_time_buckets([0.5])
            .build();
        let meta = JobMeta::builder("t", "q")
            .enqueued_at(std::time::SystemTime::now())
            .build();
        monitor.start(meta).succeed();
        provider.force_flush().unwrap();
        let rm = last(&exporter);
        let mut seen = Vec::new();
        for m in rm.scope_metrics().flat_map(|sm| sm.metrics()) {
            if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                for p in h.data_points() {
                    seen.push((m.name().to_owned(), p.bounds().collect::<Vec<_>>()));
                }
            }
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            [
                ("job.queue_time".to_owned(), vec![0.5]),
                ("messaging.process.duration".to_owned(), vec![1.0, 2.0]),
            ]
        );
    }

    #[test]
    fn names_longer_than_the_limit_are_cut() {
        use super::MAX_NAME_LEN;
        let monitor = JobMonitor::builder().max_kinds(10).build();
        let long_queue: Arc<str> = Arc::from("q".repeat(1 << 20));
        let long_name = format!("{}é", "n".repeat(MAX_NAME_LEN - 1));
        let kind = monitor.kind(&"s".repeat(1000), &long_queue, &long_name);
        let attr = |key: &str| {
            kind.attributes()
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str().into_owned())
                .unwrap_or_default()
        };
        assert_eq!(
            attr(semconv::MESSAGING_DESTINATION_NAME).len(),
            MAX_NAME_LEN
        );
        assert_eq!(attr(semconv::MESSAGING_SYSTEM).len(), MAX_NAME_LEN);
        // Cut on a character boundary: the two-byte `é` does not fit.
        assert_eq!(attr(semconv::JOB_NAME), "n".repeat(MAX_NAME_LEN - 1));
        assert!(kind.span_name().len() <= "process ".len() + MAX_NAME_LEN);
        // The same long names find the same kind.
        let again = monitor.kind(&"s".repeat(1000), &long_queue, &long_name);
        assert!(Arc::ptr_eq(&kind, &again));
    }

    #[test]
    fn monitors_without_a_limit_share_the_process_table() {
        let a = JobMonitor::new();
        let b = JobMonitor::new();
        let q: Arc<str> = Arc::from("shared-table-queue");
        assert!(Arc::ptr_eq(&a.kind("t", &q, "x"), &b.kind("t", &q, "x")));
        let own = JobMonitor::builder().max_kinds(10).build();
        assert!(!Arc::ptr_eq(&a.kind("t", &q, "x"), &own.kind("t", &q, "x")));
        let other_system = b.kind("u", &q, "x");
        let system = |kind: &crate::JobKind| {
            kind.attributes()
                .iter()
                .find(|kv| kv.key.as_str() == semconv::MESSAGING_SYSTEM)
                .map(|kv| kv.value.as_str().into_owned())
        };
        assert_eq!(system(&other_system).as_deref(), Some("u"));
    }
}
