//! [`ProgressThrottle`]: when ticks become events; [`ProgressSettings`]:
//! what a monitor is told about progress.

use std::time::Duration;

/// When ticks become span events and `Progressed` events (see the module
/// docs of [`crate::progress`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct ProgressThrottle {
    pub(crate) min_interval: Duration,
    step: f64,
    pub(crate) max_interval: Duration,
}

impl Default for ProgressThrottle {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            step: 0.10,
            max_interval: Duration::from_secs(30),
        }
    }
}

impl ProgressThrottle {
    /// The shortest time between two progress events. Defaults to 1 s.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// How much the ratio must grow (0 to 1) for a new event. Defaults to
    /// 0.10 (ten percentage points).
    pub fn step(mut self, step: f64) -> Self {
        self.step = if step.is_finite() {
            step.clamp(0.0, 1.0)
        } else {
            0.10
        };
        self
    }

    /// The longest time without an event while ticks arrive (jobs without a
    /// total, slow steps). Defaults to 30 s.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
        self
    }

    pub(crate) fn step_permille(&self) -> u64 {
        // A step of zero would report on every tick past the minimum interval.
        ((self.step * 1000.0).round() as u64).max(1)
    }
}

/// Throttle and gauge settings of a monitor: off, default throttle.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProgressSettings {
    pub(crate) enabled: bool,
    pub(crate) throttle: ProgressThrottle,
}
