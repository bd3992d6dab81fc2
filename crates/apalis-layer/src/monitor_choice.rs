//! Which monitor a layer records through, as its builder was told: a
//! monitor given whole, one built from the monitor settings given to the
//! layer's builder, or the process's default monitor.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use jobsight_core::{JobMonitor, JobMonitorBuilder};

use crate::errors::Error;

/// The monitor part of a layer builder.
#[derive(Debug, Default)]
pub(crate) struct MonitorChoice {
    given: Option<JobMonitor>,
    /// Monitor settings, and the name of the first one given (for the
    /// error when a monitor was given as well).
    settings: Option<(JobMonitorBuilder, &'static str)>,
}

impl MonitorChoice {
    pub(crate) fn give(&mut self, monitor: JobMonitor) {
        self.given = Some(monitor);
    }

    /// Applies one monitor setting, named `setting` in errors.
    pub(crate) fn set(
        &mut self,
        setting: &'static str,
        apply: impl FnOnce(JobMonitorBuilder) -> JobMonitorBuilder,
    ) {
        let (builder, first) = self
            .settings
            .take()
            .unwrap_or_else(|| (JobMonitor::builder(), setting));
        self.settings = Some((apply(builder), first));
    }

    /// The monitor: the one given, else one built from the settings, else
    /// the process's default. A monitor given together with monitor
    /// settings is an error: the settings could not take effect.
    pub(crate) fn build(self, layer: &'static str) -> Result<JobMonitor, Error> {
        match (self.given, self.settings) {
            (Some(_), Some((_, setting))) => {
                Err(Error::MonitorAndMonitorSetting { layer, setting })
            }
            (Some(monitor), None) => Ok(monitor),
            (None, Some((builder, _))) => Ok(builder.build()),
            (None, None) => Ok(jobsight_core::default_monitor().clone()),
        }
    }
}

/// A job name or queue given to a builder, checked not to be empty.
pub(crate) fn non_empty<T: AsRef<str>>(
    value: Option<T>,
    layer: &'static str,
    setting: &'static str,
) -> Result<Option<T>, Error> {
    match value {
        Some(v) if v.as_ref().is_empty() => Err(Error::EmptyName { layer, setting }),
        other => Ok(other),
    }
}

/// `name` as a string that lives as long as the process, so that each job
/// copies no string. Names given as `String` are kept once per distinct
/// name (a builder is built at start-up, not per job).
pub(crate) fn static_name(name: Cow<'static, str>) -> &'static str {
    match name {
        Cow::Borrowed(name) => name,
        Cow::Owned(name) => {
            static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
            let names = NAMES.get_or_init(|| Mutex::new(HashSet::new()));
            let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(found) = names.get(name.as_str()) {
                return found;
            }
            let kept: &'static str = Box::leak(name.into_boxed_str());
            names.insert(kept);
            kept
        }
    }
}
