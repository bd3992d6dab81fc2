//! The `OTEL_*` environment, read once at install and validated: a bad value
//! is an [`Error::InvalidEnv`] naming the variable, never a silent default.
//!
//! [`EnvConfig::from_lookup`] is a pure function of its lookup closure, so
//! tests never touch the process environment. An empty value counts as unset.

use std::path::PathBuf;
use std::time::Duration;

use crate::headers::Headers;
use crate::kv_list::{self, Values};
use crate::log_filter::LogFilter;
use crate::sampler::{SAMPLER_ARG_VAR, SAMPLER_VAR, SamplerChoice};
use crate::signal::{GENERIC_VARS, OtlpVars};
use crate::{Error, Protocol, Signal, endpoint};

pub(crate) const SDK_DISABLED_VAR: &str = "OTEL_SDK_DISABLED";
pub(crate) const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
pub(crate) const RESOURCE_ATTRIBUTES_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
pub(crate) const METRIC_EXPORT_INTERVAL_VAR: &str = "OTEL_METRIC_EXPORT_INTERVAL";
pub(crate) const BSP_MAX_QUEUE_SIZE_VAR: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
pub(crate) const BSP_SCHEDULE_DELAY_VAR: &str = "OTEL_BSP_SCHEDULE_DELAY";
pub(crate) const BSP_MAX_EXPORT_BATCH_SIZE_VAR: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
pub(crate) const LOGS_EXPORTER_VAR: &str = "OTEL_LOGS_EXPORTER";
pub(crate) const BLRP_MAX_QUEUE_SIZE_VAR: &str = "OTEL_BLRP_MAX_QUEUE_SIZE";
pub(crate) const BLRP_SCHEDULE_DELAY_VAR: &str = "OTEL_BLRP_SCHEDULE_DELAY";
pub(crate) const BLRP_MAX_EXPORT_BATCH_SIZE_VAR: &str = "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE";
pub(crate) const LOG_ATTRIBUTE_COUNT_LIMIT_VAR: &str = "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT";
pub(crate) const LOG_ATTRIBUTE_VALUE_LENGTH_LIMIT_VAR: &str =
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT";
pub(crate) const LOG_FILTER_VAR: &str = "JOBSIGHT_LOG";

/// Everything this crate reads from the environment.
#[derive(Debug, Default)]
pub(crate) struct EnvConfig {
    /// `OTEL_SDK_DISABLED=true`: nothing else was read.
    pub(crate) disabled: bool,
    pub(crate) service_name: Option<String>,
    /// Decoded `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub(crate) resource_attributes: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_*`.
    pub(crate) generic: SignalEnv,
    /// `OTEL_EXPORTER_OTLP_TRACES_*`.
    pub(crate) traces: SignalEnv,
    /// `OTEL_EXPORTER_OTLP_METRICS_*`.
    pub(crate) metrics: SignalEnv,
    /// `OTEL_EXPORTER_OTLP_LOGS_*`.
    pub(crate) logs: SignalEnv,
    /// `OTEL_LOGS_EXPORTER=none`: no logs exported whatever the endpoint.
    pub(crate) logs_off: bool,
    /// `OTEL_BLRP_*`, the batch log processor's settings.
    pub(crate) log_batch: BatchEnv,
    /// `OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`.
    pub(crate) log_attribute_count: Option<usize>,
    /// `OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
    pub(crate) log_attribute_value_length: Option<usize>,
    /// `JOBSIGHT_LOG`, parsed.
    pub(crate) log_filter: Option<LogFilter>,
    pub(crate) sampler: SamplerChoice,
    pub(crate) metric_export_interval: Option<Duration>,
    pub(crate) batch: BatchEnv,
}

/// One set of `OTEL_EXPORTER_OTLP[_SIGNAL]_*` variables.
#[derive(Debug, Default)]
pub(crate) struct SignalEnv {
    /// Validated `http://` URL, as given.
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) headers: Headers,
    pub(crate) timeout: Option<Duration>,
    /// `…_CERTIFICATE`: PEM CA bundle for https endpoints. Read at install.
    pub(crate) certificate: Option<EnvPath>,
    /// `…_CLIENT_KEY`: PEM private key for mutual TLS. Read at install.
    pub(crate) client_key: Option<EnvPath>,
    /// `…_CLIENT_CERTIFICATE`: PEM certificate chain for mutual TLS.
    pub(crate) client_certificate: Option<EnvPath>,
}

/// A file named by an environment variable. Only the path is read here; the
/// file itself is read at install, and errors name `variable` and `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvPath {
    pub(crate) variable: &'static str,
    pub(crate) path: PathBuf,
}

/// `OTEL_BSP_*`, the batch span processor's settings (`OTEL_BSP_EXPORT_TIMEOUT`
/// is not read: the SDK's threaded processor has no export timeout; the
/// exporter's `OTEL_EXPORTER_OTLP_TIMEOUT` bounds each export).
#[derive(Debug, Default)]
pub(crate) struct BatchEnv {
    pub(crate) max_queue_size: Option<usize>,
    pub(crate) schedule_delay: Option<Duration>,
    pub(crate) max_export_batch_size: Option<usize>,
}

impl EnvConfig {
    /// Reads the process environment. A value that is not valid Unicode
    /// counts as unset.
    pub(crate) fn from_process_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every variable through `lookup` and validates it.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Lookup(&lookup);
        let disabled = match env.get(SDK_DISABLED_VAR) {
            None => false,
            Some(value) => parse_bool(SDK_DISABLED_VAR, &value)?,
        };
        if disabled {
            return Ok(EnvConfig {
                disabled,
                ..EnvConfig::default()
            });
        }
        crate::sdk_env::validate(&|name| env.get(name))?;
        let resource_attributes = match env.get(RESOURCE_ATTRIBUTES_VAR) {
            None => Vec::new(),
            Some(raw) => kv_list::parse(RESOURCE_ATTRIBUTES_VAR, &raw, Values::Shown)?
                .into_iter()
                .map(|entry| (entry.key, entry.value))
                .collect(),
        };
        Ok(EnvConfig {
            disabled,
            service_name: env.get(SERVICE_NAME_VAR),
            resource_attributes,
            generic: SignalEnv::read(&env, GENERIC_VARS)?,
            traces: SignalEnv::read(&env, Signal::Traces.vars())?,
            metrics: SignalEnv::read(&env, Signal::Metrics.vars())?,
            logs: SignalEnv::read(&env, Signal::Logs.vars())?,
            logs_off: match env.get(LOGS_EXPORTER_VAR) {
                None => false,
                Some(value) => parse_logs_exporter(&value)?,
            },
            log_batch: BatchEnv {
                max_queue_size: env.count(BLRP_MAX_QUEUE_SIZE_VAR)?,
                schedule_delay: env.millis(BLRP_SCHEDULE_DELAY_VAR)?,
                max_export_batch_size: env.count(BLRP_MAX_EXPORT_BATCH_SIZE_VAR)?,
            },
            log_attribute_count: env.count(LOG_ATTRIBUTE_COUNT_LIMIT_VAR)?,
            log_attribute_value_length: env.count(LOG_ATTRIBUTE_VALUE_LENGTH_LIMIT_VAR)?,
            log_filter: env
                .get(LOG_FILTER_VAR)
                .map(|value| {
                    LogFilter::parse(&value).map_err(|reason| Error::env(LOG_FILTER_VAR, reason))
                })
                .transpose()?,
            sampler: SamplerChoice::from_env(
                env.get(SAMPLER_VAR).as_deref(),
                env.get(SAMPLER_ARG_VAR).as_deref(),
            )?,
            metric_export_interval: env.millis(METRIC_EXPORT_INTERVAL_VAR)?,
            batch: BatchEnv {
                max_queue_size: env.count(BSP_MAX_QUEUE_SIZE_VAR)?,
                schedule_delay: env.millis(BSP_SCHEDULE_DELAY_VAR)?,
                max_export_batch_size: env.count(BSP_MAX_EXPORT_BATCH_SIZE_VAR)?,
            },
        })
    }

    /// The signal-specific variables of `signal`.
    pub(crate) fn signal(&self, signal: Signal) -> &SignalEnv {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    /// True when any OTLP endpoint variable is set.
    pub(crate) fn has_endpoint(&self) -> bool {
        [&self.generic, &self.traces, &self.metrics, &self.logs]
            .iter()
            .any(|env| env.endpoint.is_some())
    }
}

impl SignalEnv {
    fn read(env: &Lookup<'_>, vars: OtlpVars) -> Result<Self, Error> {
        let endpoint = env.get(vars.endpoint);
        if let Some(url) = &endpoint {
            endpoint::validate(url).map_err(|reason| Error::env(vars.endpoint, reason))?;
        }
        Ok(SignalEnv {
            endpoint,
            protocol: env
                .get(vars.protocol)
                .map(|value| Protocol::from_env(vars.protocol, &value))
                .transpose()?,
            headers: env
                .get(vars.headers)
                .map(|raw| Headers::from_env(vars.headers, &raw))
                .transpose()?
                .unwrap_or_default(),
            timeout: env.millis(vars.timeout)?,
            certificate: env.path(vars.certificate),
            client_key: env.path(vars.client_key),
            client_certificate: env.path(vars.client_certificate),
        })
    }
}

/// The lookup closure with "empty means unset" and typed getters.
struct Lookup<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Lookup<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// A file path, surrounding whitespace removed.
    fn path(&self, name: &'static str) -> Option<EnvPath> {
        self.get(name).map(|value| EnvPath {
            variable: name,
            path: PathBuf::from(value.trim()),
        })
    }

    /// A positive whole number of milliseconds.
    fn millis(&self, name: &'static str) -> Result<Option<Duration>, Error> {
        self.positive(
            name,
            "a whole number of milliseconds greater than 0, e.g. `5000`",
        )
        .map(|ms| ms.map(Duration::from_millis))
    }

    /// A positive count.
    fn count(&self, name: &'static str) -> Result<Option<usize>, Error> {
        self.positive(name, "a whole number greater than 0, e.g. `65536`")?
            .map(|n| usize::try_from(n).map_err(|_| Error::env(name, "the number is too large")))
            .transpose()
    }

    fn positive(&self, name: &'static str, expected: &str) -> Result<Option<u64>, Error> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::env(
                name,
                format!("`{value}` is not valid; expected {expected}"),
            )),
        }
    }
}

/// `OTEL_LOGS_EXPORTER`: true for `none`.
fn parse_logs_exporter(value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "otlp" => Ok(false),
        "none" => Ok(true),
        _ => Err(Error::env(
            LOGS_EXPORTER_VAR,
            format!("`{value}` is not valid; accepted values: `otlp`, `none`"),
        )),
    }
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::env(
            name,
            format!("`{value}` is not valid; accepted values: `true`, `false`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<EnvConfig, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        config(vars).unwrap_err().to_string()
    }

    #[test]
    fn empty_environment_gives_defaults() {
        let config = config(&[]).unwrap();
        assert!(!config.disabled);
        assert!(!config.has_endpoint());
        assert_eq!(config.sampler, SamplerChoice::ParentBasedAlwaysOn);
        assert_eq!(config.generic.protocol, None);
        assert_eq!(config.batch.max_queue_size, None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", " "),
            ("OTEL_SDK_DISABLED", ""),
            ("OTEL_TRACES_SAMPLER", ""),
        ])
        .unwrap();
        assert!(!config.disabled);
        assert!(!config.has_endpoint());
        assert_eq!(config.generic.protocol, None);
    }

    #[test]
    fn reads_every_variable() {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=k"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "mailer"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod",
            ),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "10000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4096"),
        ])
        .unwrap();
        assert_eq!(
            config.generic.endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(
            config.traces.endpoint.as_deref(),
            Some("http://traces:4318/custom")
        );
        assert_eq!(config.generic.protocol, Some(Protocol::Grpc));
        assert_eq!(config.metrics.protocol, Some(Protocol::HttpProtobuf));
        assert!(!config.generic.headers.is_empty());
        assert_eq!(config.generic.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(config.service_name.as_deref(), Some("mailer"));
        assert_eq!(
            config.resource_attributes,
            vec![("deployment.environment.name".to_owned(), "prod".to_owned())]
        );
        assert_eq!(config.sampler, SamplerChoice::TraceIdRatio(0.1));
        assert_eq!(config.metric_export_interval, Some(Duration::from_secs(10)));
        assert_eq!(config.batch.max_queue_size, Some(4096));
    }

    #[test]
    fn tls_file_variables_are_paths_with_their_variable() {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", " /etc/otel/ca.pem\n"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/k.pem"),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "c.pem"),
        ])
        .unwrap();
        let ca = config.generic.certificate.unwrap();
        assert_eq!(ca.variable, "OTEL_EXPORTER_OTLP_CERTIFICATE");
        assert_eq!(ca.path, std::path::Path::new("/etc/otel/ca.pem"));
        assert_eq!(
            config.traces.client_key.unwrap().variable,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"
        );
        assert_eq!(
            config.metrics.client_certificate.unwrap().path,
            std::path::Path::new("c.pem")
        );
        assert_eq!(config.traces.certificate, None);
    }

    #[test]
    fn sdk_disabled_skips_everything_else() {
        let config = config(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ])
        .unwrap();
        assert!(config.disabled);
        assert!(!config.has_endpoint());
    }

    #[test]
    fn every_bad_value_names_its_variable_and_the_accepted_values() {
        let cases: &[(&str, &str, &str)] = &[
            ("OTEL_SDK_DISABLED", "yes", "`true`, `false`"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317", "http://"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x", "http://"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://", "http://"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "not supported"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "udp",
                "`grpc`, `http/protobuf`",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "milliseconds"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0", "milliseconds"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "-1", "milliseconds"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "whole number"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team", "key=value"),
            ("OTEL_TRACES_SAMPLER", "sometimes", "parentbased_always_on"),
            ("OTEL_LOGS_EXPORTER", "console", "`otlp`, `none`"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "collector:4318",
                "http://",
            ),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "0", "whole number"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "1s", "milliseconds"),
            ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "-3", "whole number"),
            ("JOBSIGHT_LOG", "my_crate=loud", "`trace`"),
        ];
        for (variable, value, accepted) in cases {
            let message = error(&[(variable, value)]);
            assert!(message.starts_with(variable), "{variable}: {message}");
            assert!(message.contains(accepted), "{variable}: {message}");
        }
    }

    #[test]
    fn header_errors_never_show_header_values() {
        for variable in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ] {
            for value in [
                "authorization=Bearer top-s3cr3t,s3cr3t-without-equals",
                "api-key=s3cr3t%ZZ",
                "api key=s3cr3t",
                "x-api-key=s3cr3t%0D%0A",
            ] {
                let message = error(&[(variable, value)]);
                assert!(message.starts_with(variable), "{message}");
                assert!(
                    !message.contains("s3cr3t"),
                    "leaks a header value: {message}"
                );
            }
        }
    }
}
