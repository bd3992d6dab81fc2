//! apalis's task metadata as a carrier for trace context.
//!
//! [`MetadataStore`] is the string map apalis serializes with a task (Redis
//! keeps it in the task's meta hash), so W3C `traceparent` / `tracestate`
//! and baggage put there survive the trip through the backend.

use apalis_core::task::metadata::MetadataStore;
use opentelemetry::propagation::{Extractor, Injector};

/// Reads propagation fields from a task's metadata.
#[derive(Debug)]
pub struct MetadataExtractor<'a>(pub &'a MetadataStore);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Writes propagation fields into a task's metadata, replacing old values.
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut MetadataStore);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.replace(key, value);
    }
}
