//! [`ArgsPolicy`]: which jobs' arguments are recorded, with which masks and
//! limits; [`CapturedArgs`]: the text it produced.

use std::collections::HashSet;
use std::fmt::{self, Display};
use std::sync::Arc;

use serde::Serialize;

use super::keys::{FILTERED, KeyMasks, MAX_KEY_LEN};
use super::serializer;

/// Default size limit of the captured text, in bytes.
pub const DEFAULT_MAX_LEN: usize = 4096;
/// Default nesting limit.
pub const DEFAULT_MAX_DEPTH: usize = 16;

/// Which jobs' arguments are recorded, which keys are masked, and how much
/// is kept. Off for every job until [`job`](Self::job) or
/// [`all_jobs`](Self::all_jobs) says otherwise.
#[derive(Clone, Debug)]
#[must_use]
pub struct ArgsPolicy {
    jobs: HashSet<Box<str>>,
    all: bool,
    masks: KeyMasks,
    max_len: usize,
    max_depth: usize,
}

impl Default for ArgsPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ArgsPolicy {
    /// A policy that records nothing, with the default mask list, size and
    /// depth limits.
    pub fn new() -> Self {
        Self {
            jobs: HashSet::new(),
            all: false,
            masks: KeyMasks::defaults(),
            max_len: DEFAULT_MAX_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Records the arguments of jobs named `name` (`job.name`, exact match).
    pub fn job(mut self, name: impl Into<Box<str>>) -> Self {
        self.jobs.insert(name.into());
        self
    }

    /// Records the arguments of every job. Defaults to off: prefer naming
    /// jobs with [`job`](Self::job), arguments often carry personal data.
    pub fn all_jobs(mut self) -> Self {
        self.all = true;
        self
    }

    /// Masks values under keys containing `pattern` as well as the defaults
    /// (see the module docs for the matching rule).
    pub fn mask(mut self, pattern: &str) -> Self {
        self.masks.add(pattern);
        self
    }

    /// The most bytes of captured text. Defaults to [`DEFAULT_MAX_LEN`];
    /// values below 64 are raised to 64.
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes.max(64);
        self
    }

    /// The deepest nesting written. Defaults to [`DEFAULT_MAX_DEPTH`];
    /// at most 128.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.min(128);
        self
    }

    /// Whether the arguments of jobs named `name` are recorded.
    pub fn records(&self, name: &str) -> bool {
        self.all || self.jobs.contains(name)
    }

    /// Whether a key is masked (a key longer than [`MAX_KEY_LEN`] always is).
    pub fn is_masked(&self, key: &str) -> bool {
        let mut buf = String::new();
        self.masks.is_masked(key, &mut buf)
    }

    /// Serializes `args` for the job `name`, masked and bounded, or `None`
    /// when that job's arguments are not recorded.
    pub fn capture<T: Serialize + ?Sized>(&self, name: &str, args: &T) -> Option<CapturedArgs> {
        self.records(name).then(|| self.capture_always(args))
    }

    /// Serializes `args`, masked and bounded, whatever the job (for callers
    /// that checked [`records`](Self::records) themselves).
    pub fn capture_always<T: Serialize + ?Sized>(&self, args: &T) -> CapturedArgs {
        let text = serializer::write(args, &self.masks, self.max_len, self.max_depth);
        CapturedArgs(Arc::from(text))
    }

    /// Masks a list of string pairs (a job's metadata, headers): values under
    /// masked keys become `[FILTERED]`, and each key and value is cut to the
    /// size limit.
    pub fn mask_pairs<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, String)> {
        let mut buf = String::new();
        pairs
            .into_iter()
            .map(|(k, v)| {
                let key = crate::error::truncate(k, MAX_KEY_LEN).to_owned();
                let value = if self.masks.is_masked(k, &mut buf) {
                    FILTERED.to_owned()
                } else {
                    crate::error::truncate(v, self.max_len).to_owned()
                };
                (key, value)
            })
            .collect()
    }
}

/// A job's arguments as recorded: masked, bounded JSON text (see the module
/// docs). Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedArgs(Arc<str>);

impl CapturedArgs {
    /// Text given as is, cut to `max_len` bytes (for runners that have
    /// their own representation; no masking is applied).
    pub fn from_text(text: &str, max_len: usize) -> Self {
        CapturedArgs(Arc::from(crate::error::truncate(text, max_len)))
    }

    /// The captured text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text, for attributes.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl Display for CapturedArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
