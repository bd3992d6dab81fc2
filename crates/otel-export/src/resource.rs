//! The resource every span and data point carries.
//!
//! `service.name`, highest precedence first: [`Builder::service_name`],
//! `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
//! `unknown_service:<executable>` (the specification's order; the SDK's own
//! detector lets `OTEL_RESOURCE_ATTRIBUTES` win, so it is not used).
//!
//! [`Builder::service_name`]: crate::Builder::service_name

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;

use crate::config::EnvConfig;

const SERVICE_NAME: &str = "service.name";

/// The resource from the environment and the builder's service name.
pub(crate) fn build(service_name: Option<&str>, env: &EnvConfig) -> Resource {
    let from_attributes = env
        .resource_attributes
        .iter()
        .rev()
        .find(|(key, _)| key == SERVICE_NAME)
        .map(|(_, value)| value.clone());
    let service_name = service_name
        .map(str::to_owned)
        .or_else(|| env.service_name.clone())
        .or(from_attributes)
        .unwrap_or_else(unknown_service);
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            env.resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(service_name)
        .build()
}

/// `unknown_service:<executable name>`, the specification's fallback.
fn unknown_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name()?.to_str().map(str::to_owned))
        .map_or_else(
            || "unknown_service".to_owned(),
            |name| format!("unknown_service:{name}"),
        )
}

#[cfg(test)]
mod tests {
    use opentelemetry::{Key, Value};

    use super::*;
    use crate::test_support::env;

    fn service(resource: &Resource) -> Option<Value> {
        resource.get(&Key::new(SERVICE_NAME))
    }

    #[test]
    fn service_name_precedence() {
        let attributes = (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,team=jobs",
        );
        let both = env(&[("OTEL_SERVICE_NAME", "from-env"), attributes]);
        assert_eq!(
            service(&build(Some("from-code"), &both)),
            Some("from-code".into())
        );
        assert_eq!(service(&build(None, &both)), Some("from-env".into()));
        let attributes_only = env(&[attributes]);
        let resource = build(None, &attributes_only);
        assert_eq!(service(&resource), Some("from-attrs".into()));
        assert_eq!(resource.get(&Key::new("team")), Some("jobs".into()));
        assert_eq!(
            resource.get(&Key::new("telemetry.sdk.language")),
            Some("rust".into())
        );
    }

    #[test]
    fn falls_back_to_unknown_service() {
        let name = service(&build(None, &env(&[]))).unwrap().to_string();
        assert!(name.starts_with("unknown_service"), "{name}");
    }
}
