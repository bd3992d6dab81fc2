//! Helpers shared by the unit tests that need the crate's internals (the
//! rest is in `jobsight-testkit`).

use std::collections::HashMap;

use crate::config::EnvConfig;

/// An environment made of `vars` only.
pub(crate) fn env(vars: &[(&str, &str)]) -> EnvConfig {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    EnvConfig::from_lookup(|name| map.get(name).cloned()).unwrap()
}
