//! Check-in sinks for jobsight: pings to the services people already use,
//! and a watchdog of our own on Redis.
//!
//! - [`ping`]: [`PingSink`](ping::PingSink) sends each check-in of a
//!   monitored job to healthchecks.io, Cronitor, Sentry Crons or any URL
//!   template, from a background task with a bounded queue, timeouts and
//!   retries. A slow or dead ping service never slows a job.
//! - [`watchdog`] (feature `redis`): records runs in Redis and finds
//!   **missed** runs (no success within the interval plus grace, or after a
//!   scheduled time plus grace) and **stuck** runs (running longer than the
//!   maximum runtime, or left behind by a worker that died), each reported
//!   once across a fleet of workers.
//! - [`load_config`]: check-in policies from a JSON file; [`config`]: the
//!   file's format ([`CheckinConfig`]), for other serde formats.
//!
//! What a job needs while it runs — policies, the registry, events and the
//! OpenTelemetry side (span events, the `job.checkin.last_success` gauge) —
//! lives in [`jobsight_core::checkin`].
//!
//! # Cargo features
//! - `tls` (default): `https://` pings, with rustls and ring.
//! - `redis`: the watchdog.
#![warn(missing_docs)]

pub mod config;
mod config_error;
mod error;
pub mod ping;
#[cfg(feature = "redis")]
pub mod watchdog;

use std::path::Path;

pub use config::{CheckinConfig, ConfigDuration, PolicyEntry, parse_duration};
pub use error::Error;
use jobsight_core::checkin::Checkins;

/// Reads check-in policies from the JSON file at `path` (the shape is
/// described at [`CheckinConfig`]) into a new registry. Add sinks to it,
/// then give it to the layer and the watchdog.
pub fn load_config(path: impl AsRef<Path>) -> Result<Checkins, Error> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_config(&text)
}

/// Parses check-in policies from JSON text (see [`load_config`]). A wrong
/// value is an [`Error::Setting`] naming it (`policies[2].grace`) and what
/// it accepts.
pub fn parse_config(json: &str) -> Result<Checkins, Error> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    let config: CheckinConfig = match serde_json::from_value(value.clone()) {
        Ok(config) => config,
        Err(error) => return Err(config_error::locate(&value).unwrap_or(Error::ConfigJson(error))),
    };
    let policies = config
        .policies
        .into_iter()
        .enumerate()
        .map(|(i, entry)| entry.into_policy().map_err(|e| config_error::policy(i, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Checkins::from_policies(policies))
}
