//! Recording a job's arguments: off by default, opt-in per job name, masked
//! and size-limited ([`ArgsPolicy`], [`CapturedArgs`]).
//!
//! # What is recorded
//! Nothing, unless the job's name was opted in with [`ArgsPolicy::job`] (or
//! every job with [`ArgsPolicy::all_jobs`]). For an opted-in job the
//! arguments are serialized with serde into compact JSON, written straight
//! into a bounded buffer (no intermediate `serde_json::Value`):
//!
//! - **Masking.** The value of every map key or struct field whose name
//!   matches the mask list is written as `"[FILTERED]"`, at any depth,
//!   inside arrays too, whatever the value's type (an object under a
//!   masked key is not descended into). A key matches when, lower-cased and
//!   with `_`, `-`, `.` and spaces removed, it *contains* a pattern
//!   normalized the same way: `api_key` masks `apiKey`, `X-Api-Key` and
//!   `stripe_api_key`; `token` masks `access_token` and `tokenizer` alike
//!   (masking too much is the safe side). The defaults are
//!   [`DEFAULT_MASKED_KEYS`]; [`ArgsPolicy::mask`] adds more. A key longer
//!   than [`MAX_KEY_LEN`] bytes is cut to that length in the output and its
//!   value is always masked: a pattern past the cut would go unseen.
//! - **Size.** Output stops at [`ArgsPolicy::max_len`] bytes (default
//!   [`DEFAULT_MAX_LEN`], 4 KiB): serialization is aborted there, a long
//!   string is copied only up to the room left, and the text ends with
//!   [`TRUNCATED_MARKER`] (it is then no longer valid JSON). A 100 MB string
//!   argument costs at most `max_len` bytes and one pass over its prefix.
//! - **Depth.** Values nested deeper than [`ArgsPolicy::max_depth`] (default
//!   [`DEFAULT_MAX_DEPTH`], 16; arrays, objects and wrappers such as
//!   `Option` or newtypes each count as a level) are written as `"[TOO DEEP]"` without
//!   calling their `Serialize` impl, so hostile or self-similar input (a
//!   million nested arrays, a `Serialize` impl that recurses forever) cannot
//!   overflow the stack.
//! - A `Serialize` impl that fails gives `"[UNSERIALIZABLE]"` after what was
//!   written; one that panics gives `"[UNSERIALIZABLE]"` alone.
//!
//! # Where it goes
//! The captured text is carried by [`JobMeta::args`](crate::JobMeta::args):
//! the span gets it as the `job.args` string attribute, set at start, and
//! observers get it in every [`JobEvent`](crate::observer::JobEvent). It is never
//! a metric attribute.
//!
//! ```
//! use jobsight_core::args::ArgsPolicy;
//! #[derive(serde::Serialize)]
//! struct Signup { email: String, password: String, tags: Vec<&'static str> }
//!
//! let policy = ArgsPolicy::new().job("signup");
//! let args = Signup { email: "ada@example.com".into(), password: "hunter2".into(), tags: vec!["a"] };
//! let captured = policy.capture("signup", &args).unwrap();
//! assert_eq!(
//!     captured.as_str(),
//!     r#"{"email":"ada@example.com","password":"[FILTERED]","tags":["a"]}"#
//! );
//! assert!(policy.capture("other_job", &args).is_none()); // not opted in
//! ```
//!
//! # Layout
//! - `policy.rs`: [`ArgsPolicy`] (which jobs, which keys, how much) and
//!   [`CapturedArgs`].
//! - `serializer.rs`: the masking, size-limited serde `Serializer` that
//!   writes the JSON text.
//! - `keys.rs`: which map keys are masked, and how a key of any type becomes
//!   text.

/// `Serializer` methods that write the value's `Display` text through the
/// serializer's own `text` method (used by both serializers below).
macro_rules! as_text {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<(), Self::Error> {
            self.text(v)
        }
    )*};
}

mod keys;
mod policy;
mod serializer;
#[cfg(test)]
mod tests;

pub use keys::{DEFAULT_MASKED_KEYS, FILTERED, MAX_KEY_LEN};
pub use policy::{ArgsPolicy, CapturedArgs, DEFAULT_MAX_DEPTH, DEFAULT_MAX_LEN};
pub use serializer::{TOO_DEEP, TRUNCATED_MARKER, UNSERIALIZABLE};
