//! Queries over what the receiver got: spans grouped by job, metric points
//! folded into series.

use std::collections::BTreeMap;

use super::model::{Attributes, MetricKind, MetricPoint, Span, Temporality};

/// The integer attribute `key` of a span.
pub fn attr_i64(span: &Span, key: &str) -> Option<i64> {
    span.attr(key).and_then(|v| v.as_i64())
}

/// The attribute `key` of a span as `f64` (ints widened).
pub fn attr_f64(span: &Span, key: &str) -> Option<f64> {
    span.attr(key).and_then(|v| v.as_f64())
}

/// The span's `job.outcome`, `<none>` when absent.
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

/// One metric stream (name + attribute set) folded over every export that
/// arrived: the latest point of a cumulative stream, the sum of a delta one.
#[derive(Clone, Debug)]
pub struct Series {
    /// The metric's name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Its temporality.
    pub temporality: Temporality,
    /// The series' attributes.
    pub attributes: Attributes,
    /// Sums and gauges.
    pub value: f64,
    /// Histograms.
    pub count: u64,
    /// Histograms: the sum.
    pub sum: f64,
    /// Histograms: the bucket bounds.
    pub explicit_bounds: Vec<f64>,
    /// Histograms: the bucket counts.
    pub bucket_counts: Vec<u64>,
}

impl Series {
    /// The attribute `key` as a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }

    /// The series' attribute keys, sorted.
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
pub fn expected_totals(pairs: &[(Option<&str>, u64)]) -> BTreeMap<Option<String>, u64> {
    pairs
        .iter()
        .map(|(k, v)| (k.map(str::to_owned), *v))
        .collect()
}
