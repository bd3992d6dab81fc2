//! Percentiles from histogram buckets, by linear interpolation inside the
//! bucket that holds the wanted rank, clamped to the recorded min and max.
//!
//! The error is at most one bucket's width. With the base-2 exponential
//! histograms of the local summary (160 buckets) that is a few percent of
//! the value; with explicit buckets it is as coarse as the buckets are.

use std::collections::BTreeMap;

/// Where a histogram's counts sit.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Buckets {
    /// Base-2 exponential: bucket `i` holds `(b^i, b^(i+1)]` with
    /// `b = 2^(2^-scale)`; `zero_count` values were exactly zero.
    Exponential {
        scale: i8,
        zero_count: u64,
        counts: BTreeMap<i32, u64>,
    },
    /// Explicit: bucket `i` holds `(bounds[i-1], bounds[i]]`; the first is
    /// open below, the last (`counts.len() == bounds.len() + 1`) open above.
    Explicit { bounds: Vec<f64>, counts: Vec<u64> },
}

/// A histogram of non-negative values (durations), mergeable and queryable.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Distribution {
    pub(crate) buckets: Buckets,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
}

/// Two histograms with different explicit boundaries or different kinds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LayoutMismatch;

impl Distribution {
    /// An exponential histogram's positive half. `counts` start at bucket
    /// index `offset`.
    pub(crate) fn exponential(
        scale: i8,
        zero_count: u64,
        offset: i32,
        counts: impl IntoIterator<Item = u64>,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Self {
        let counts = (offset..)
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .collect();
        Distribution {
            buckets: Buckets::Exponential {
                scale,
                zero_count,
                counts,
            },
            min,
            max,
        }
    }

    /// An explicit-bucket histogram.
    pub(crate) fn explicit(
        bounds: Vec<f64>,
        counts: Vec<u64>,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Self {
        Distribution {
            buckets: Buckets::Explicit { bounds, counts },
            min,
            max,
        }
    }

    /// Number of recorded values.
    pub(crate) fn count(&self) -> u64 {
        match &self.buckets {
            Buckets::Exponential {
                zero_count, counts, ..
            } => zero_count + counts.values().sum::<u64>(),
            Buckets::Explicit { counts, .. } => counts.iter().sum(),
        }
    }

    /// Adds `other`'s values. Exponential histograms of different scales are
    /// merged at the coarser scale; explicit ones need equal boundaries.
    pub(crate) fn merge(&mut self, other: &Distribution) -> Result<(), LayoutMismatch> {
        match (&mut self.buckets, &other.buckets) {
            (
                Buckets::Exponential {
                    scale,
                    zero_count,
                    counts,
                },
                Buckets::Exponential {
                    scale: other_scale,
                    zero_count: other_zero,
                    counts: other_counts,
                },
            ) => {
                let target = (*scale).min(*other_scale);
                let mut merged = downscale(counts, *scale - target);
                for (index, count) in downscale(other_counts, *other_scale - target) {
                    *merged.entry(index).or_default() += count;
                }
                *scale = target;
                *counts = merged;
                *zero_count += other_zero;
            }
            (
                Buckets::Explicit { bounds, counts },
                Buckets::Explicit {
                    bounds: other_bounds,
                    counts: other_counts,
                },
            ) if bounds == other_bounds && counts.len() == other_counts.len() => {
                for (count, other) in counts.iter_mut().zip(other_counts) {
                    *count += other;
                }
            }
            _ => return Err(LayoutMismatch),
        }
        self.min = combine(self.min, other.min, f64::min);
        self.max = combine(self.max, other.max, f64::max);
        Ok(())
    }

    /// The `q`-quantile (`0.5` for p50), or `None` without values.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0.0;
        let mut last = None;
        for (low, high, count) in self.segments() {
            let (low, high) = self.clamp_bucket(low, high);
            let count = count as f64;
            if below + count >= rank {
                let value = low + (high - low) * ((rank - below) / count);
                return Some(self.clamp_value(value));
            }
            below += count;
            last = Some(high);
        }
        last.map(|value| self.clamp_value(value))
    }

    /// Non-empty buckets in ascending order as `(low, high, count)`.
    fn segments(&self) -> Vec<(f64, f64, u64)> {
        match &self.buckets {
            Buckets::Exponential {
                scale,
                zero_count,
                counts,
            } => {
                let width = (-f64::from(*scale)).exp2();
                let bound = |index: i32| (f64::from(index) * width).exp2();
                let zero = (*zero_count > 0).then_some((0.0, 0.0, *zero_count));
                zero.into_iter()
                    .chain(
                        counts
                            .iter()
                            .map(|(&index, &count)| (bound(index), bound(index + 1), count)),
                    )
                    .collect()
            }
            Buckets::Explicit { bounds, counts } => counts
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(i, &count)| {
                    let low = if i == 0 {
                        f64::NEG_INFINITY
                    } else {
                        bounds[i - 1]
                    };
                    let high = bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    (low, high, count)
                })
                .collect(),
        }
    }

    /// A bucket's edges narrowed to `[min, max]`; infinite edges replaced.
    fn clamp_bucket(&self, low: f64, high: f64) -> (f64, f64) {
        let low = self.min.map_or(low, |min| low.max(min));
        let high = self.max.map_or(high, |max| high.min(max));
        let low = if low.is_finite() {
            low
        } else if high.is_finite() {
            high
        } else {
            0.0
        };
        let high = if high.is_finite() { high } else { low };
        (low.min(high), high)
    }

    fn clamp_value(&self, value: f64) -> f64 {
        let value = self.min.map_or(value, |min| value.max(min));
        self.max.map_or(value, |max| value.min(max))
    }
}

/// Exponential bucket counts at a scale `by` steps coarser.
fn downscale(counts: &BTreeMap<i32, u64>, by: i8) -> BTreeMap<i32, u64> {
    let mut out = BTreeMap::new();
    for (&index, &count) in counts {
        *out.entry(index >> by).or_default() += count;
    }
    out
}

fn combine(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: Option<f64>, expected: f64, tolerance: f64) {
        let actual = actual.expect("a value");
        assert!(
            (actual - expected).abs() <= tolerance,
            "got {actual}, expected {expected} ± {tolerance}"
        );
    }

    /// The values 1..=100 in buckets of width 10.
    fn one_to_hundred() -> Distribution {
        let bounds: Vec<f64> = (1..=10).map(|i| f64::from(i * 10)).collect();
        let mut counts = vec![10; 10];
        counts.push(0);
        Distribution::explicit(bounds, counts, Some(1.0), Some(100.0))
    }

    #[test]
    fn explicit_buckets_interpolate_exactly_on_uniform_data() {
        let d = one_to_hundred();
        assert_eq!(d.count(), 100);
        close(d.quantile(0.5), 50.0, 1e-9);
        close(d.quantile(0.95), 95.0, 1e-9);
        close(d.quantile(0.99), 99.0, 1e-9);
        close(d.quantile(0.0), 1.0, 1e-9);
        close(d.quantile(1.0), 100.0, 1e-9);
    }

    #[test]
    fn open_ended_buckets_are_bounded_by_min_and_max() {
        // 10 values in (-inf, 1], 10 in (5, +inf), with min 0.5 and max 9.
        let d = Distribution::explicit(vec![1.0, 5.0], vec![10, 0, 10], Some(0.5), Some(9.0));
        close(d.quantile(0.25), 0.75, 1e-9);
        close(d.quantile(1.0), 9.0, 1e-9);
        close(d.quantile(0.75), 7.0, 1e-9);
    }

    #[test]
    fn single_value_is_exact() {
        let d =
            Distribution::explicit(vec![0.1, 1.0, 10.0], vec![0, 0, 1, 0], Some(3.0), Some(3.0));
        close(d.quantile(0.5), 3.0, 1e-12);
        close(d.quantile(0.99), 3.0, 1e-12);
    }

    #[test]
    fn exponential_buckets_at_scale_zero() {
        // 50 values in (1, 2], 50 in (2, 4].
        let d = Distribution::exponential(0, 0, 0, [50, 50], Some(1.0), Some(4.0));
        close(d.quantile(0.5), 2.0, 1e-9);
        close(d.quantile(0.75), 3.0, 1e-9);
        close(d.quantile(0.99), 3.96, 1e-9);
    }

    #[test]
    fn zero_values_come_first() {
        let d = Distribution::exponential(3, 10, 0, [10], Some(0.0), Some(1.09));
        assert_eq!(d.count(), 20);
        close(d.quantile(0.25), 0.0, 1e-12);
    }

    #[test]
    fn exponential_merge_downscales_to_the_coarser_scale() {
        // Scale 1: bucket -1 = (0.707, 1], 0 = (1, 1.414], 1 = (1.414, 2].
        let mut fine = Distribution::exponential(1, 0, -1, [4, 3, 2], Some(0.8), Some(1.9));
        let coarse = Distribution::exponential(0, 1, 1, [5], Some(2.5), Some(3.5));
        fine.merge(&coarse).unwrap();
        let Buckets::Exponential {
            scale,
            zero_count,
            counts,
        } = &fine.buckets
        else {
            panic!("kind changed");
        };
        assert_eq!(*scale, 0);
        assert_eq!(*zero_count, 1);
        assert_eq!(counts, &BTreeMap::from([(-1, 4), (0, 5), (1, 5)]));
        assert_eq!((fine.min, fine.max), (Some(0.8), Some(3.5)));
        assert_eq!(fine.count(), 15);
    }

    #[test]
    fn explicit_merge_adds_counts_and_refuses_other_layouts() {
        let mut a = one_to_hundred();
        a.merge(&one_to_hundred()).unwrap();
        assert_eq!(a.count(), 200);
        close(a.quantile(0.5), 50.0, 1e-9);
        let other = Distribution::explicit(vec![1.0], vec![1, 1], None, None);
        assert_eq!(a.merge(&other), Err(LayoutMismatch));
        let exponential = Distribution::exponential(0, 0, 0, [1], None, None);
        assert_eq!(a.merge(&exponential), Err(LayoutMismatch));
    }

    #[test]
    fn empty_has_no_quantiles() {
        let d = Distribution::explicit(vec![1.0], vec![0, 0], None, None);
        assert_eq!(d.quantile(0.5), None);
    }
}
