//! The OTLP transport protocol and its environment-variable spelling.

use std::fmt;

use crate::Error;

/// The OTLP transport: gRPC or HTTP with binary protobuf bodies.
///
/// Defaults to [`Protocol::HttpProtobuf`], as the OpenTelemetry specification
/// says. OTLP/HTTP with JSON bodies (`http/json`) is not supported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`), usually on port 4317. The endpoint is used as given.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`), usually on port 4318.
    /// A generic endpoint gets `/v1/traces` or `/v1/metrics` appended.
    #[default]
    HttpProtobuf,
}

const ACCEPTED: &str = "accepted values: `grpc`, `http/protobuf`";

impl Protocol {
    /// The spelling used by `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }

    /// Parses the value of the protocol variable `variable`.
    pub(crate) fn from_env(variable: &'static str, value: &str) -> Result<Self, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err(Error::env(
                variable,
                format!("`http/json` is not supported by jobsight-otel; {ACCEPTED}"),
            )),
            other => Err(Error::env(
                variable,
                format!("unknown protocol `{other}`; {ACCEPTED}"),
            )),
        }
    }

    /// The equivalent `opentelemetry_otlp` protocol.
    pub(crate) fn to_otlp(self) -> opentelemetry_otlp::Protocol {
        match self {
            Protocol::Grpc => opentelemetry_otlp::Protocol::Grpc,
            Protocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

    #[test]
    fn parses_the_two_supported_protocols() {
        assert_eq!(Protocol::from_env(VAR, "grpc").unwrap(), Protocol::Grpc);
        assert_eq!(
            Protocol::from_env(VAR, "http/protobuf").unwrap(),
            Protocol::HttpProtobuf
        );
        assert_eq!(Protocol::from_env(VAR, " GRPC ").unwrap(), Protocol::Grpc);
    }

    #[test]
    fn default_is_http_protobuf() {
        assert_eq!(Protocol::default(), Protocol::HttpProtobuf);
    }

    #[test]
    fn http_json_is_a_clear_not_supported_error() {
        let message = Protocol::from_env(VAR, "http/json")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with(VAR), "{message}");
        assert!(message.contains("not supported"), "{message}");
        assert!(message.contains("`grpc`, `http/protobuf`"), "{message}");
    }

    #[test]
    fn unknown_protocol_names_variable_and_accepted_values() {
        let message = Protocol::from_env(VAR, "thrift").unwrap_err().to_string();
        assert!(message.starts_with(VAR), "{message}");
        assert!(message.contains("`thrift`"), "{message}");
        assert!(message.contains("accepted values"), "{message}");
    }
}
