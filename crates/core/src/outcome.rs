//! How a job attempt ended ([`Outcome`]) and how an error is classified
//! ([`Classify`], [`DefaultClassifier`]).
//!
//! Deciding *whether* an error is worth reporting lives here; *how* it is
//! reported lives in [`crate::transaction`].

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::error::type_of;
use crate::job::JobMeta;

/// How one attempt of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The job returned success.
    Succeeded,
    /// The job returned an error. `retryable` tells whether the runner will
    /// try again (`job.outcome` = `retried`) or not (`failed`).
    Failed {
        /// Whether another attempt will follow.
        retryable: bool,
    },
    /// The job's code panicked.
    Panicked,
    /// The job was dropped before it finished: cancelled, timed out or cut
    /// off by shutdown.
    Abandoned,
    /// The job returned an error that the classifier ignores.
    Ignored,
}

impl Outcome {
    /// The `job.outcome` value: `succeeded`, `failed`, `retried`,
    /// `panicked`, `abandoned` or `ignored`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { retryable: false } => "failed",
            Outcome::Failed { retryable: true } => "retried",
            Outcome::Panicked => "panicked",
            Outcome::Abandoned => "abandoned",
            Outcome::Ignored => "ignored",
        }
    }

    /// All outcomes, in the order of [`Outcome::index`].
    pub const ALL: [Outcome; 6] = [
        Outcome::Succeeded,
        Outcome::Failed { retryable: false },
        Outcome::Failed { retryable: true },
        Outcome::Panicked,
        Outcome::Abandoned,
        Outcome::Ignored,
    ];

    /// A dense index, 0 to 5, for per-outcome tables.
    pub const fn index(self) -> usize {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed { retryable: false } => 1,
            Outcome::Failed { retryable: true } => 2,
            Outcome::Panicked => 3,
            Outcome::Abandoned => 4,
            Outcome::Ignored => 5,
        }
    }

    /// Whether this outcome sets the span's status to Error.
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Outcome::Failed { retryable: false } | Outcome::Panicked | Outcome::Abandoned
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a classifier decides about an error a job returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not a failure worth telling anyone about (`job.outcome` = `ignored`).
    Ignore,
    /// A failure the runner will retry. Reported as an error event only from
    /// the attempt set with [`DefaultClassifier::report_retries_from_attempt`].
    Retry,
    /// A final failure: always an error event.
    Fail,
}

/// Decides what an error a job returned means. Implemented by
/// [`DefaultClassifier`] and by any closure
/// `Fn(&(dyn Error + 'static), &JobMeta) -> ErrorClass`.
pub trait Classify: Send + Sync + 'static {
    /// Classifies `error`, returned by the attempt described by `job`.
    fn classify(&self, error: &(dyn StdError + 'static), job: &JobMeta) -> ErrorClass;

    /// Whether an error of class `class` on this attempt is recorded as an
    /// error event (span status Error and an `exception` event). Defaults to
    /// final failures only.
    fn report(&self, class: ErrorClass, job: &JobMeta) -> bool {
        let _ = job;
        class == ErrorClass::Fail
    }
}

impl<F> Classify for F
where
    F: Fn(&(dyn StdError + 'static), &JobMeta) -> ErrorClass + Send + Sync + 'static,
{
    fn classify(&self, error: &(dyn StdError + 'static), job: &JobMeta) -> ErrorClass {
        self(error, job)
    }
}

type Predicate = Arc<dyn Fn(&(dyn StdError + 'static)) -> bool + Send + Sync>;

/// The classifier used unless you give another.
///
/// - An error is **ignored** when any error in its source chain is of a type
///   given to [`ignore`](Self::ignore), has an `error.type` given to
///   [`ignore_type_name`](Self::ignore_type_name), or matches a predicate
///   given to [`ignore_if`](Self::ignore_if). Defaults to none.
/// - Otherwise it is **retryable** when the job's metadata says attempts are
///   left (attempt < max attempts) and no predicate given to
///   [`final_if`](Self::final_if) matches; a job whose maximum is unknown is
///   treated as final, so its errors are never hidden.
/// - A retryable error is reported as an error event only from the attempt
///   set with [`report_retries_from_attempt`](Self::report_retries_from_attempt)
///   (defaults to never: errors that will be retried are not error events).
#[derive(Clone, Default)]
pub struct DefaultClassifier {
    ignored: Vec<Predicate>,
    ignored_names: Vec<Arc<str>>,
    finals: Vec<Predicate>,
    report_retries_from: Option<u32>,
}

impl fmt::Debug for DefaultClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultClassifier")
            .field("ignored_predicates", &self.ignored.len())
            .field("ignored_names", &self.ignored_names)
            .field("final_predicates", &self.finals.len())
            .field("report_retries_from", &self.report_retries_from)
            .finish()
    }
}

impl DefaultClassifier {
    /// A classifier with the defaults described on the type.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ignores errors of type `E` anywhere in the source chain.
    #[must_use]
    pub fn ignore<E: StdError + 'static>(mut self) -> Self {
        self.ignored
            .push(Arc::new(|e: &(dyn StdError + 'static)| e.is::<E>()));
        self
    }

    /// Ignores errors whose `error.type` (see [`crate::error`]) is `name`.
    #[must_use]
    pub fn ignore_type_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.ignored_names.push(name.into());
        self
    }

    /// Ignores errors for which `predicate` returns true (checked on every
    /// error of the source chain).
    #[must_use]
    pub fn ignore_if(
        mut self,
        predicate: impl Fn(&(dyn StdError + 'static)) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.ignored.push(Arc::new(predicate));
        self
    }

    /// Treats errors for which `predicate` returns true as final even when
    /// attempts are left (the runner will not retry them, e.g. an abort).
    #[must_use]
    pub fn final_if(
        mut self,
        predicate: impl Fn(&(dyn StdError + 'static)) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.finals.push(Arc::new(predicate));
        self
    }

    /// Reports retryable errors as error events from attempt `attempt` on
    /// (1 reports every failed attempt). Defaults to never.
    #[must_use]
    pub fn report_retries_from_attempt(mut self, attempt: u32) -> Self {
        self.report_retries_from = Some(attempt);
        self
    }

    fn chain_matches(&self, error: &(dyn StdError + 'static), predicates: &[Predicate]) -> bool {
        if predicates.is_empty() {
            return false;
        }
        let mut current: Option<&(dyn StdError + 'static)> = Some(error);
        // Bounded walk: a cyclic or absurdly deep chain cannot hang a job.
        for _ in 0..32 {
            let Some(e) = current else { break };
            if predicates.iter().any(|p| p(e)) {
                return true;
            }
            current = e.source();
        }
        false
    }
}

impl Classify for DefaultClassifier {
    fn classify(&self, error: &(dyn StdError + 'static), job: &JobMeta) -> ErrorClass {
        if self.chain_matches(error, &self.ignored) {
            return ErrorClass::Ignore;
        }
        if !self.ignored_names.is_empty() {
            let name = type_of(error);
            if self.ignored_names.iter().any(|n| **n == *name) {
                return ErrorClass::Ignore;
            }
        }
        if self.chain_matches(error, &self.finals) {
            return ErrorClass::Fail;
        }
        match job.has_attempts_left() {
            Some(true) => ErrorClass::Retry,
            _ => ErrorClass::Fail,
        }
    }

    fn report(&self, class: ErrorClass, job: &JobMeta) -> bool {
        match class {
            ErrorClass::Fail => true,
            ErrorClass::Ignore => false,
            ErrorClass::Retry => match (self.report_retries_from, job.attempt()) {
                (Some(from), Some(attempt)) => attempt >= from,
                (Some(_), None) => true,
                (None, _) => false,
            },
        }
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "<non-string panic payload>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NotFound;
    impl fmt::Display for NotFound {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("not found")
        }
    }
    impl StdError for NotFound {}

    #[derive(Debug)]
    struct Wrapped(NotFound);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn meta(attempt: u32, max: u32) -> JobMeta {
        JobMeta::builder("t", "q")
            .attempt(attempt)
            .max_attempts(max)
            .build()
    }

    #[test]
    fn retryable_until_the_last_attempt() {
        let c = DefaultClassifier::new();
        let err = std::io::Error::other("x");
        assert_eq!(c.classify(&err, &meta(1, 3)), ErrorClass::Retry);
        assert_eq!(c.classify(&err, &meta(3, 3)), ErrorClass::Fail);
        let unknown = JobMeta::builder("t", "q").build();
        assert_eq!(c.classify(&err, &unknown), ErrorClass::Fail);
    }

    #[test]
    fn ignores_by_type_anywhere_in_the_chain() {
        let c = DefaultClassifier::new().ignore::<NotFound>();
        assert_eq!(
            c.classify(&Wrapped(NotFound), &meta(3, 3)),
            ErrorClass::Ignore
        );
        assert_eq!(
            c.classify(&std::io::Error::other("x"), &meta(3, 3)),
            ErrorClass::Fail
        );
    }

    #[test]
    fn ignores_by_type_name_and_predicate() {
        let c = DefaultClassifier::new().ignore_type_name("Wrapped");
        assert_eq!(
            c.classify(&Wrapped(NotFound), &meta(1, 1)),
            ErrorClass::Ignore
        );
        let c = DefaultClassifier::new().ignore_if(|e| e.to_string() == "not found");
        assert_eq!(c.classify(&NotFound, &meta(1, 1)), ErrorClass::Ignore);
    }

    #[test]
    fn final_if_overrides_attempts_left() {
        let c = DefaultClassifier::new().final_if(|e| e.is::<NotFound>());
        assert_eq!(c.classify(&NotFound, &meta(1, 5)), ErrorClass::Fail);
    }

    #[test]
    fn retries_reported_only_from_the_configured_attempt() {
        let c = DefaultClassifier::new();
        assert!(!c.report(ErrorClass::Retry, &meta(2, 5)));
        assert!(c.report(ErrorClass::Fail, &meta(1, 1)));
        assert!(!c.report(ErrorClass::Ignore, &meta(1, 1)));
        let c = DefaultClassifier::new().report_retries_from_attempt(3);
        assert!(!c.report(ErrorClass::Retry, &meta(2, 5)));
        assert!(c.report(ErrorClass::Retry, &meta(3, 5)));
    }

    #[test]
    fn closures_classify() {
        let c = |_: &(dyn StdError + 'static), _: &JobMeta| ErrorClass::Ignore;
        assert_eq!(
            Classify::classify(&c, &NotFound, &meta(1, 1)),
            ErrorClass::Ignore
        );
        assert!(!Classify::report(&c, ErrorClass::Retry, &meta(1, 1)));
    }

    #[test]
    fn outcome_names() {
        let names: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "succeeded",
                "failed",
                "retried",
                "panicked",
                "abandoned",
                "ignored"
            ]
        );
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
