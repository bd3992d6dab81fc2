//! `OTEL_*` variables that the OpenTelemetry SDK and the OTLP exporter read
//! by themselves, where this crate does not set the value in code. On a
//! value they cannot use they fall back to a default with, at most, a line
//! in their internal log; this crate checks them first, so that a wrong
//! value is an [`Error::InvalidEnv`] at install like every other variable.
//! The values are not kept: the SDK reads them again.

use crate::Error;

/// What the variables accept, each with the accepted values in words.
const CHECKS: &[(&str, Accepts)] = &[
    ("OTEL_EXPORTER_OTLP_COMPRESSION", Accepts::Compression),
    (
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        Accepts::Compression,
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        Accepts::Compression,
    ),
    ("OTEL_EXPORTER_OTLP_INSECURE", Accepts::Bool),
    ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", Accepts::Bool),
    ("OTEL_EXPORTER_OTLP_METRICS_INSECURE", Accepts::Bool),
    (
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        Accepts::Temporality,
    ),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", Accepts::Count),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", Accepts::Count),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", Accepts::Count),
    ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", Accepts::Count),
    ("OTEL_BSP_EXPORT_TIMEOUT", Accepts::Millis),
    ("OTEL_METRIC_EXPORT_TIMEOUT", Accepts::Millis),
    ("OTEL_BLRP_EXPORT_TIMEOUT", Accepts::Millis),
    ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", Accepts::Compression),
    ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", Accepts::Bool),
];

/// The variables checked here.
#[cfg(test)]
pub(crate) fn variables() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|(name, _)| *name)
}

#[derive(Clone, Copy)]
enum Accepts {
    /// `none` only: the exporters are built without gzip or zstd.
    Compression,
    Bool,
    Temporality,
    /// A whole number greater than 0.
    Count,
    /// A whole number of milliseconds greater than 0.
    Millis,
}

impl Accepts {
    fn check(self, value: &str) -> Result<(), String> {
        let v = value.trim().to_ascii_lowercase();
        let (ok, accepted) = match self {
            Accepts::Compression => (
                v == "none",
                "accepted values: `none` (jobsight-otel is built without gzip and zstd)",
            ),
            Accepts::Bool => (
                v == "true" || v == "false",
                "accepted values: `true`, `false`",
            ),
            Accepts::Temporality => (
                matches!(v.as_str(), "cumulative" | "delta" | "lowmemory"),
                "accepted values: `cumulative`, `delta`, `lowmemory`",
            ),
            Accepts::Count => (
                v.parse::<u32>().is_ok_and(|n| n > 0),
                "expected a whole number greater than 0, e.g. `128`",
            ),
            Accepts::Millis => (
                v.parse::<u64>().is_ok_and(|n| n > 0),
                "expected a whole number of milliseconds greater than 0, e.g. `5000`",
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("`{value}` is not valid; {accepted}"))
        }
    }
}

/// Checks every variable of [`CHECKS`] that `get` finds (empty counts as
/// unset, as `get` already arranges).
pub(crate) fn validate(get: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
    for (name, accepts) in CHECKS {
        if let Some(value) = get(name) {
            accepts
                .check(&value)
                .map_err(|reason| Error::env(name, reason))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_values_pass_and_case_does_not_matter() {
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "None"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "TRUE"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", " 256 "),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "30000"),
        ] {
            let get = |n: &str| (n == name).then(|| value.to_owned());
            assert!(validate(&get).is_ok(), "{name}={value}");
        }
    }
}
